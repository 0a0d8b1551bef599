"""connectors.meta.client: the Graph API client against a loopback server answering with the
recorded bodies (tests/fixtures/meta/, README there) and the headers the research and the
recordings give (python-facebook's bodies carry none: the server supplies them).

What each test pins: the token only in the Authorization header, the proof beside it, the
pinned version in the path; paging by Graph's ``next`` without the token it echoes; the usage
headers read, and no call made once a figure passes the threshold; the error table; no
secret in any message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from support import FIXTURES

from connectors.meta.client import (
    DEFAULT_VERSION,
    GraphClient,
    PermissionDenied,
    classify,
    next_query,
    read_usage,
)
from syncd.errors import (
    AuthError,
    BadItem,
    ExternalError,
    MalformedAnswer,
    NotFound,
    PaginationLoop,
    RateLimited,
    TransientError,
)

META = FIXTURES / "meta"
PF = META / "python-facebook"
TOKEN = "EAAB-page-token-secret-value"
APP_SECRET = "app-secret-value-123"
# The value python-facebook's tests use for the header (research §3.2, the doc's shape).
BUC = (
    '{"112130216863063":[{"type":"pages","call_count":1,"total_cputime":1,'
    '"total_time":1,"estimated_time_to_regain_access":0,'
    '"ads_api_access_tier":"development_access"}]}'
)


def body(path: str) -> Any:
    return json.loads((META / path).read_text(encoding="utf-8"))


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


class _Server(ThreadingHTTPServer):
    answers: list[Answer]
    seen: list[Seen]


class _Graph(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        parts = urlsplit(self.path)
        server.seen.append(
            Seen(parts.path, parse_qs(parts.query, keep_blank_values=True), dict(self.headers))
        )
        answer = server.answers.pop(0) if server.answers else Answer(500, b"no answer left")
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def graph() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Graph)
    server.answers, server.seen = [], []
    # A short poll: shutdown() waits for the loop to look, 0.5 s by default.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def client_for(server: _Server, **kwargs: Any) -> GraphClient:
    host, port = server.server_address[:2]
    return GraphClient(TOKEN, api_base_url=f"http://{host!s}:{port}", **kwargs)


def answer(
    payload: Any,
    status: int = 200,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    data = raw if raw is not None else json.dumps(payload).encode()
    return Answer(status, data, {"Content-Type": "application/json", **(headers or {})})


# -- requests -----------------------------------------------------------------------------------
def test_the_token_travels_in_the_header_and_the_proof_beside_it(graph: _Server) -> None:
    graph.answers.append(answer(body("python-facebook/facebook/models/comment.json")))
    client = client_for(graph, app_secret=APP_SECRET)
    got = client.get("2954961744718970_2966313500250461", {"fields": "id,from,message"})
    assert got["from"]["name"] == "Kun Liu"
    [seen] = graph.seen
    assert seen.path == f"/{DEFAULT_VERSION}/2954961744718970_2966313500250461"
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    proof = hmac.new(APP_SECRET.encode(), TOKEN.encode(), hashlib.sha256).hexdigest()
    assert seen.query == {"fields": ["id,from,message"], "appsecret_proof": [proof]}
    assert TOKEN not in repr(client) and APP_SECRET not in repr(client)


def test_no_proof_without_an_app_secret_and_the_version_is_a_setting(graph: _Server) -> None:
    graph.answers.append(answer({"id": "1"}))
    client_for(graph, version="v24.0").get("me")
    assert graph.seen[0].path == "/v24.0/me"
    assert "appsecret_proof" not in graph.seen[0].query


@pytest.mark.parametrize("path", ["../me", "me/../../x", "me?access_token=x", "a/b#c", "1 2", ""])
def test_a_path_that_could_leave_the_graph_is_refused(graph: _Server, path: str) -> None:
    with pytest.raises(ValueError, match="not a Graph API path"):
        client_for(graph).get(path)
    assert graph.seen == []


def test_a_token_passed_as_a_parameter_is_refused(graph: _Server) -> None:
    with pytest.raises(ValueError, match="not a parameter"):
        client_for(graph).get("me", {"access_token": TOKEN})
    assert graph.seen == []


def test_instagram_login_uses_its_own_host() -> None:
    client = GraphClient(TOKEN, instagram_login=True)
    assert client.base == "https://graph.instagram.com"
    assert client.token_name == "Instagram token"
    assert GraphClient(TOKEN).base == "https://graph.facebook.com"
    with pytest.raises(ValueError, match=r"v25\.0"):
        GraphClient(TOKEN, version="25")
    with pytest.raises(ValueError, match="unencrypted"):
        GraphClient(TOKEN, api_base_url="http://graph.example.com")


# -- paging -----------------------------------------------------------------------------------
def test_pages_follow_next_without_the_token_graph_echoes(graph: _Server) -> None:
    first = body("python-facebook/facebook/apidata/posts/feeds_default_fields_p1.json")
    last = body("python-facebook/facebook/apidata/posts/feeds_default_fields_p2.json")
    assert "access_token=access_token" in first["paging"]["next"]  # as recorded
    graph.answers += [answer(first), answer(last)]
    client = client_for(graph, app_secret=APP_SECRET)
    pages = list(client.pages("19292868552/feed", {"fields": "id,updated_time", "limit": 5}))
    assert [len(p.data) for p in pages] == [5, 5]
    assert pages[-1].next_query is None
    one, two = graph.seen
    assert one.query["limit"] == ["5"] and "after" not in one.query
    # The second request is Graph's next link's query, on our path, with our proof.
    assert two.path == f"/{DEFAULT_VERSION}/19292868552/feed"
    assert two.query["after"] == ["after"] and two.query["limit"] == ["5"]
    assert "comments.filter(stream).summary(true).limit(0)" in two.query["fields"][0]
    assert "access_token" not in two.query
    assert len(two.query["appsecret_proof"]) == 1
    assert all(s.headers["Authorization"] == f"Bearer {TOKEN}" for s in graph.seen)


def test_time_paging_carries_until_and_the_paging_token(graph: _Server) -> None:
    first = body("python-facebook/facebook/apidata/posts/feed_fields_p1.json")
    graph.answers += [
        answer(first),
        answer(body("python-facebook/facebook/apidata/posts/feed_fields_p2.json")),
    ]
    pages = list(client_for(graph).pages("4/posts", {"fields": "id,message,created_time"}))
    assert len(pages) == 2
    second = graph.seen[1].query
    assert second["until"] == ["1624385168"]
    assert second["__paging_token"] == ["__paging_token"]
    assert "access_token" not in second


def test_a_stored_next_query_reads_the_next_page_later(graph: _Server) -> None:
    comments = body("python-facebook/facebook/apidata/comments/comments_p1.json")
    stored = next_query(comments)
    assert stored is not None and "access_token" not in stored
    graph.answers.append(answer(body("python-facebook/facebook/apidata/comments/comments_p2.json")))
    page = client_for(graph).page("19292868552_10158407654328553/comments", after=stored)
    assert len(page.data) == 5 and page.next_query is None
    assert graph.seen[0].query["filter"] == ["stream"]
    assert graph.seen[0].query["after"] == ["after"]


def test_an_empty_page_with_next_is_not_the_end(graph: _Server) -> None:
    graph.answers += [
        answer({"data": [], "paging": {"next": "https://graph.facebook.com/v25.0/1/feed?after=B"}}),
        answer({"data": [{"id": "1_2"}]}),
    ]
    pages = list(client_for(graph).pages("1/feed"))
    assert [len(p.data) for p in pages] == [0, 1]


def test_a_repeated_next_page_is_a_loop(graph: _Server) -> None:
    looping = {"data": [{"id": "1_2"}], "paging": {"next": "https://graph.facebook.com/x?after=A"}}
    graph.answers += [answer(looping), answer(looping), answer(looping)]
    with pytest.raises(PaginationLoop):
        list(client_for(graph).pages("1/feed"))
    assert len(graph.seen) == 2


def test_a_list_answer_without_data_is_malformed(graph: _Server) -> None:
    graph.answers.append(answer({"id": "1"}))
    with pytest.raises(MalformedAnswer):
        client_for(graph).page("1/feed")


# -- usage and pacing -------------------------------------------------------------------------
def _batch_headers(path: str) -> dict[str, str]:
    [first, *_] = body(path)
    return {h["name"]: h["value"] for h in first["headers"]}


def test_usage_headers_as_recorded_and_documented() -> None:
    recorded = _batch_headers("restfb/batch/batch-simple.json")
    usage = read_usage(recorded)
    assert usage.app == {"call_count": 2.0, "total_cputime": 2.0, "total_time": 2.0}
    assert usage.api_version == "v2.3"
    buc = read_usage({"X-Business-Use-Case-Usage": BUC})
    [entry] = buc.business
    assert (entry.business_id, entry.type, entry.call_count, entry.regain) == (
        "112130216863063",
        "pages",
        1.0,
        None,
    )
    assert buc.peak == 1.0 and buc.wait() is None
    ads = read_usage({"X-Ad-Account-Usage": '{"acc_id_util_pct":9.67,"reset_time_duration":100}'})
    assert ads.ad_account == 9.67 and ads.ad_account_reset == timedelta(seconds=100)
    # Absent or unreadable headers say nothing: no figure, no wait.
    assert read_usage({"X-App-Usage": "not json"}).peak == 0.0
    assert read_usage({}).wait() is None


def test_usage_ratios_keep_each_figure_s_latest_share_the_higher_of_one_use_case(
    graph: _Server,
) -> None:
    two_pages = json.dumps(
        {
            "1": [{"type": "pages", "call_count": 12, "total_cputime": 3, "total_time": 4}],
            "2": [{"type": "pages", "call_count": 40, "total_cputime": 1, "total_time": 2}],
        }
    )
    app = '{"call_count":7,"total_cputime":2,"total_time":5}'
    graph.answers += [
        answer({"id": "1"}, headers={"X-App-Usage": app, "X-Business-Use-Case-Usage": two_pages}),
        answer({"id": "1"}, headers={"X-App-Usage": '{"call_count":9}'}),
        answer({"id": "1"}),  # no usage headers: the figures stand as last said
    ]
    client = client_for(graph)
    assert client.usage_ratios() == {}
    for _ in range(3):
        client.get("me")
    assert client.usage_ratios() == {
        "app.call_count": 0.09,
        "app.total_cputime": 0.02,
        "app.total_time": 0.05,
        "buc.pages.call_count": 0.40,
        "buc.pages.total_cputime": 0.03,
        "buc.pages.total_time": 0.04,
    }


def test_past_the_threshold_the_next_call_waits_for_the_regain_time(graph: _Server) -> None:
    hot = BUC.replace('"call_count":1', '"call_count":95').replace(
        '"estimated_time_to_regain_access":0', '"estimated_time_to_regain_access":7'
    )
    graph.answers += [answer({"id": "1"}, headers={"X-Business-Use-Case-Usage": hot}), answer({})]
    client = client_for(graph)
    before = datetime.now(UTC)
    assert client.get("me") == {"id": "1"}  # the answer that says so is still used
    with pytest.raises(RateLimited) as caught:
        client.get("me")
    assert len(graph.seen) == 1  # the second call never left
    assert before + timedelta(minutes=7) <= caught.value.resume_at
    assert caught.value.resume_at <= datetime.now(UTC) + timedelta(minutes=7)
    assert client.usage is not None and client.usage.peak == 95.0


def test_app_usage_past_the_threshold_without_a_time_still_stops_calls(graph: _Server) -> None:
    graph.answers.append(
        answer(
            {"id": "1"},
            headers={"X-App-Usage": '{"call_count":91,"total_time":3,"total_cputime":3}'},
        )
    )
    client = client_for(graph)
    client.get("me")
    with pytest.raises(RateLimited, match="91%"):
        client.get("me")
    assert len(graph.seen) == 1


def test_below_the_threshold_calls_go_on(graph: _Server) -> None:
    usage = '{"call_count":89,"total_time":3,"total_cputime":3}'
    graph.answers += [answer({"id": "1"}, headers={"X-App-Usage": usage}), answer({"id": "2"})]
    client = client_for(graph)
    assert [client.get("me")["id"], client.get("me")["id"]] == ["1", "2"]


def test_another_api_version_is_said_once(graph: _Server, caplog: pytest.LogCaptureFixture) -> None:
    headers = _batch_headers("restfb/batch/batch-simple.json")  # Facebook-API-Version: v2.3
    graph.answers += [answer({"id": "1"}, headers=headers) for _ in range(3)]
    client = client_for(graph)
    with caplog.at_level(logging.WARNING, logger="connectors.meta.client"):
        for _ in range(3):
            client.get("me")
    said = [r for r in caplog.records if "v2.3" in r.getMessage()]
    assert len(said) == 1 and DEFAULT_VERSION in said[0].getMessage()


# -- errors -----------------------------------------------------------------------------------
def error(code: int, message: str = "m", **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code, **extra}}


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80001, 80002, 80006])
def test_throttles_wait_for_the_usage_headers_regain_time(graph: _Server, code: int) -> None:
    regain = BUC.replace(
        '"estimated_time_to_regain_access":0', '"estimated_time_to_regain_access":12'
    )
    graph.answers.append(answer(error(code), 400, headers={"X-Business-Use-Case-Usage": regain}))
    client = client_for(graph)
    before = datetime.now(UTC)
    with pytest.raises(RateLimited) as caught:
        client.get("me")
    assert caught.value.resume_at >= before + timedelta(minutes=12)
    with pytest.raises(RateLimited):  # and the client keeps still until then
        client.get("me")
    assert len(graph.seen) == 1


def test_a_throttle_without_usage_headers_still_pauses_the_client(graph: _Server) -> None:
    graph.answers.append(answer(error(80001, "There have been too many calls"), 400))
    client = client_for(graph)
    with pytest.raises(RateLimited):
        client.get("me")
    with pytest.raises(RateLimited):
        client.get("me")
    assert len(graph.seen) == 1


@pytest.mark.parametrize(
    ("subcode", "named"),
    [
        (463, "expired"),
        (460, "password"),
        (492, "role on the Page"),
        (458, "removed"),
        (465, "465"),
    ],
)
def test_an_expired_or_revoked_token_asks_for_a_new_page_token(
    graph: _Server, subcode: int, named: str
) -> None:
    graph.answers.append(
        answer(error(190, "Error validating access token", error_subcode=subcode), 400)
    )
    with pytest.raises(AuthError, match="issue a new Page token") as caught:
        client_for(graph).get("me")
    assert named in str(caught.value)


def test_an_instagram_login_token_is_named_as_such(graph: _Server) -> None:
    graph.answers.append(answer(error(190, error_subcode=463), 400))
    host, port = graph.server_address[:2]
    client = GraphClient(TOKEN, api_base_url=f"http://{host!s}:{port}", instagram_login=True)
    with pytest.raises(AuthError, match="issue a new Instagram token"):
        client.get("me")


@pytest.mark.parametrize(
    ("code", "message", "permissions"),
    [
        (
            10,
            "(#10) Requires pages_read_engagement permission to manage the object",
            ("pages_read_engagement",),
        ),
        (200, "(#200) Requires extended permission: pages_messaging", ("pages_messaging",)),
        (
            10,
            "This endpoint requires the 'pages_read_engagement' permission or the "
            "'instagram_manage_comments' permission",
            ("pages_read_engagement", "instagram_manage_comments"),
        ),
        (299, "(#299) Permission denied", ()),
    ],
)
def test_a_missing_permission_is_named(
    graph: _Server, code: int, message: str, permissions: tuple[str, ...]
) -> None:
    graph.answers.append(answer(error(code, message), 403))
    with pytest.raises(PermissionDenied) as caught:
        client_for(graph).get("me")
    assert caught.value.permissions == permissions
    wanted = ", ".join(permissions) or "the permission Meta's message names"
    assert f"grant {wanted} to the app" in str(caught.value)
    assert not isinstance(caught.value, AuthError | TransientError)


def test_a_deleted_object_is_not_found_as_recorded_without_a_subcode(graph: _Server) -> None:
    [refused, _] = body("restfb/batch/batch-first-error.json")
    graph.answers.append(answer(None, refused["code"], raw=refused["body"].encode()))
    with pytest.raises(NotFound, match="does not exist"):
        client_for(graph).get("2")


def test_subcode_33_is_not_found(graph: _Server) -> None:
    graph.answers.append(answer(error(100, "Unsupported get request.", error_subcode=33), 400))
    with pytest.raises(NotFound):
        client_for(graph).get("1_2")


def test_an_unreadable_object_is_one_items_problem(graph: _Server) -> None:
    # Deleted or not readable, Meta does not say which: never taken for a deletion.
    graph.answers.append(answer(body("python-facebook/base/error_data.json"), 400))
    with pytest.raises(BadItem, match="pages_read_engagement") as caught:
        client_for(graph).get("1_2")
    assert not isinstance(caught.value, NotFound)


def test_a_policy_block_is_one_items_problem(graph: _Server) -> None:
    graph.answers.append(answer(error(368, "temporarily blocked for policies violations"), 400))
    with pytest.raises(BadItem):
        client_for(graph).get("1_2")


def test_app_secret_proof_wanted_is_a_setup_problem(graph: _Server) -> None:
    graph.answers.append(answer(body("python-facebook/error.json"), 400))
    with pytest.raises(ExternalError, match="configure the app secret") as caught:
        client_for(graph).get("1/feed")
    assert not isinstance(caught.value, BadItem | NotFound)


def test_transient_errors(graph: _Server) -> None:
    graph.answers += [
        answer(error(2, "Service temporarily unavailable"), 500),
        answer(error(1, "An unknown error occurred"), 500),
        answer(error(99, "something", is_transient=True), 400),
        Answer(502, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"}),
    ]
    client = client_for(graph)
    for _ in range(4):
        with pytest.raises(TransientError) as caught:
            client.get("me")
        assert not isinstance(caught.value, MalformedAnswer)


def test_code_1_that_says_it_is_not_transient_is_not_retried(graph: _Server) -> None:
    recorded = body("restfb/oauthExampleError.json")  # code 1, is_transient: false
    graph.answers.append(answer(recorded, 400))
    with pytest.raises(ExternalError, match="Fundraisers Have a 90 Day Limit") as caught:
        client_for(graph).get("me")
    assert not isinstance(caught.value, TransientError)


def test_a_200_that_is_not_json_is_malformed(graph: _Server) -> None:
    graph.answers.append(Answer(200, b"<html>captive portal</html>", {"Content-Type": "text/html"}))
    with pytest.raises(MalformedAnswer):
        client_for(graph).get("me")


def test_a_refused_connection_is_transient() -> None:
    # Held bound, never listening, so the port refuses and cannot be given to anyone else.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        client = GraphClient(TOKEN, api_base_url=f"http://127.0.0.1:{port}", timeout=2)
        with pytest.raises(TransientError):
            client.get("me")


def test_secrets_never_reach_a_message(graph: _Server) -> None:
    proof = hmac.new(APP_SECRET.encode(), TOKEN.encode(), hashlib.sha256).hexdigest()
    echoed = f"Invalid OAuth access token {TOKEN} (proof {proof}, secret {APP_SECRET})"
    graph.answers += [answer(error(190, echoed), 400), answer(error(100, echoed), 400)]
    client = client_for(graph, app_secret=APP_SECRET)
    for _ in range(2):
        with pytest.raises(ExternalError) as caught:
            client.get("me")
        text = str(caught.value)
        assert TOKEN not in text and APP_SECRET not in text and proof not in text
        assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_classify_without_an_error_body_goes_by_status() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert isinstance(classify(503, None, now=now), TransientError)
    assert isinstance(classify(401, "nope", now=now), AuthError)
    assert isinstance(classify(404, None, now=now), NotFound)
    limited = classify(429, None, now=now)
    assert isinstance(limited, RateLimited) and limited.resume_at > now
    assert type(classify(418, None, now=now)) is ExternalError


def test_fixtures_are_beside_their_licences() -> None:
    for folder in ("python-facebook", "restfb"):
        assert (META / folder / "LICENSE").is_file()
    assert Path(META / "README.md").is_file()
