"""connectors.x.source: parsing real recorded X bodies, tweepy replay, error classification, bad
items.

Everything is offline: recorded bodies and cassettes under tests/fixtures/, and loopback HTTP
servers started in-process.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import vcr
from support import FIXTURES

import connectors
from connectors.x.fields import EXPANSIONS, TWEET_FIELDS
from connectors.x.parse import parse_page
from connectors.x.source import XSettings, XSource
from sandbox.server import Request, Response, SandboxServer
from sandbox.x.api import XSandbox
from syncd.errors import (
    AuthError,
    ExternalError,
    MalformedAnswer,
    NotFound,
    PaginationExpired,
    RateLimited,
    SyncdError,
    TransientError,
    UsageCapped,
)
from syncd.model import (
    Account,
    Author,
    Cursor,
    Direction,
    Interaction,
    Page,
    RateInfo,
    Segment,
    Stream,
)

TOKEN = "AAAA-test-bearer-0123456789-SECRET"

# The academictwitteR recordings: @adil_iis's mentions and timeline, 30 May - 2 June 2021.
ADIL = Account("x", "adil_iis", "1145936974064177152")
FOBLEH = "1249336678398877696"  # the author of every post in adil_iis's mentions page


def recorded(name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(body, x-rate-limit headers) of a file in fixtures/x-api-v2-json/."""
    doc = json.loads((FIXTURES / "x-api-v2-json" / f"{name}.json").read_text(encoding="utf-8"))
    return doc["body"], doc["rate_limit_headers"]


def mentions_body() -> dict[str, Any]:
    return recorded("users_1145936974064177152_mentions-d24b15")[0]


def tweets_body() -> dict[str, Any]:
    return recorded("users_1145936974064177152_tweets-d24b15")[0]


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# -- 1. parse_page on recorded bodies --------------------------------------------------------
def test_mentions_with_expansions() -> None:
    body, headers = recorded("users_1145936974064177152_mentions-d24b15")
    page = parse_page(body, account=ADIL, stream=Stream.MENTIONS, cursor=Cursor(), headers=headers)

    assert [i.post_id for i in page.interactions] == [
        "1400118288307277824",
        "1399690181385486341",
        "1399688059608702976",
        "1399620292780052480",
        "1399274651012931596",
        "1399273854279708682",
    ]
    first = page.interactions[0]
    assert first == Interaction(
        network="x",
        post_id="1400118288307277824",
        account="adil_iis",
        stream=Stream.MENTIONS,
        direction=Direction.INBOUND,
        author_id=FOBLEH,
        counterpart_id=FOBLEH,
        text=body["data"][0]["text"],
        created_at=utc(2021, 6, 2, 15, 53, 7),
        url="https://x.com/FOBLeh/status/1400118288307277824",
        conversation_id="1400118288307277824",
        in_reply_to_post_id=None,
        # X names the first user a post starting with @handles answers (@MoHFW_INDIA).
        in_reply_to_user_id="2596143056",
    )
    assert first.raw is body["data"][0]
    assert first.external_id == "x:1400118288307277824"
    assert all(i.direction is Direction.INBOUND for i in page.interactions)
    assert {i.counterpart_id for i in page.interactions} == {FOBLEH}
    # Starts with @handles, so X sets in_reply_to_user_id, yet no post is a reply to a post.
    assert all(i.in_reply_to_post_id is None for i in page.interactions)

    assert len(page.authors) == 14
    by_handle = {a.handle: a for a in page.authors}
    assert by_handle["FOBLeh"] == Author(
        network="x",
        user_id=FOBLEH,
        handle="FOBLeh",
        display_name="@FOBLeh",
        description=(
            "Official Handle of Field Outreach Bureau\nMinistry of Information and Broadcasting"
            " GoI \nregarding Publicity activities of Government of India in UT of Ladakh"
        ),
        location=None,
        url="http://davp.nic.in",  # expanded, not https://t.co/Zyf8RHx0rW
    )
    assert by_handle["MoHFW_INDIA"].location == "Nirman Bhawan"
    assert by_handle["DvCom_Secretary"].url is None  # X sends "" for no url
    assert by_handle["adil_iis"].user_id == ADIL.user_id

    assert page.next_cursor == Cursor(since_id="1400118288307277824")
    assert page.walk_complete
    assert page.rate == RateInfo(limit=450, remaining=433, reset_at=utc(2022, 6, 3, 14, 23, 51))
    assert page.quarantined == () and page.warnings == ()


def test_user_timeline_keeps_only_replies_to_others() -> None:
    body, headers = recorded("users_1145936974064177152_tweets-d24b15")
    page = parse_page(body, account=ADIL, stream=Stream.REPLIES, cursor=Cursor(), headers=headers)

    # 19 posts: 13 retweets, 2 quotes, 1 original and 3 replies.
    assert len(body["data"]) == 19
    assert [(i.post_id, i.counterpart_id) for i in page.interactions] == [
        ("1400118725597032452", "17670329"),  # @sidhant
        ("1400118458478518274", "2596143056"),  # @MoHFW_INDIA
        ("1399797416765759490", "17880989"),  # @NatComm
    ]
    reply = page.interactions[0]
    assert reply.direction is Direction.OUTBOUND
    assert reply.author_id == ADIL.user_id
    assert reply.stream is Stream.REPLIES
    assert reply.url == "https://x.com/adil_iis/status/1400118725597032452"
    assert reply.created_at == utc(2021, 6, 2, 15, 54, 51)
    assert reply.text == "@sidhant https://t.co/cEuwOTfk8o"
    assert reply.in_reply_to_post_id is None  # X sets the user, but names no replied-to post
    assert {a.handle for a in page.authors} >= {"sidhant", "MoHFW_INDIA", "NatComm", "WHO"}
    assert len(page.authors) == 28
    # The cursor moves past every post read, the newest being a retweet that was filtered out.
    assert page.next_cursor == Cursor(since_id="1400119370865512449")
    assert page.rate == RateInfo(limit=1500, remaining=1497, reset_at=utc(2021, 7, 4, 12, 43, 20))
    assert page.quarantined == ()


def test_empty_page_keeps_since_id() -> None:
    body, headers = recorded("users_17880989_mentions-d24b15")
    assert body == {"meta": {"result_count": 0}}
    account = Account("x", "NatComm", "17880989")
    page = parse_page(
        body, account=account, stream=Stream.MENTIONS, cursor=Cursor("1399"), headers=headers
    )
    assert page.interactions == () and page.authors == () and page.quarantined == ()
    assert page.next_cursor == Cursor(since_id="1399")
    assert page.rate is not None and page.rate.remaining == 432


def test_suspended_user_is_an_empty_page_with_a_warning() -> None:
    body, _ = recorded("users_45648666_mentions-d24b15")
    account = Account("x", "suspended", "45648666")
    page = parse_page(body, account=account, stream=Stream.MENTIONS, cursor=Cursor("7"))
    assert page.interactions == () and page.quarantined == ()
    assert page.warnings == ("Forbidden: User has been suspended: [45648666].",)
    assert page.next_cursor == Cursor(since_id="7")
    assert page.rate is None


def test_partial_errors_beside_data_become_warnings() -> None:
    errors = recorded("tweets-0b8bd2")[0]["errors"]
    assert len(errors) == 15
    body = {**mentions_body(), "errors": errors}
    page = parse_page(body, account=ADIL, stream=Stream.MENTIONS, cursor=Cursor())
    assert len(page.interactions) == 6
    assert len(page.warnings) == 15
    assert page.warnings[0] == "Not Found Error: Could not find tweet with ids: [1]."
    assert page.warnings[14] == "Not Found Error: Could not find tweet with ids: [15]."

    only_errors = parse_page(
        recorded("tweets-0b8bd2")[0], account=ADIL, stream=Stream.MENTIONS, cursor=Cursor("3")
    )
    assert only_errors.interactions == () and len(only_errors.warnings) == 15
    assert only_errors.next_cursor == Cursor("3")


def _tweets_with_replied_to_only() -> dict[str, Any]:
    """The recorded timeline, with the @sidhant reply naming its post instead of its user.

    1399685062006767622 (by @sidhant, 17670329) is in the recorded includes.tweets.
    """
    body = tweets_body()
    post = next(p for p in body["data"] if p["id"] == "1400118725597032452")
    del post["in_reply_to_user_id"]
    post["referenced_tweets"] = [{"type": "replied_to", "id": "1399685062006767622"}]
    return body


@pytest.mark.parametrize("name", ["tweets", "posts"])
def test_referenced_posts_under_either_name(name: str) -> None:
    body = _tweets_with_replied_to_only()
    body["includes"][name] = body["includes"].pop("tweets")  # spec 2.167 says "posts"
    page = parse_page(body, account=ADIL, stream=Stream.REPLIES, cursor=Cursor())
    reply = page.interactions[0]
    assert (reply.post_id, reply.counterpart_id) == ("1400118725597032452", "17670329")
    assert reply.in_reply_to_post_id == "1399685062006767622"
    assert len(page.interactions) == 3 and page.quarantined == ()

    same = parse_page(tweets_body(), account=ADIL, stream=Stream.REPLIES, cursor=Cursor())
    assert page.authors == same.authors
    assert page.next_cursor == same.next_cursor


def test_mentions_posts_renamed_to_posts_parse_the_same() -> None:
    body = mentions_body()
    body["includes"]["posts"] = body["includes"].pop("tweets")
    renamed = parse_page(body, account=ADIL, stream=Stream.MENTIONS, cursor=Cursor())
    original = parse_page(mentions_body(), account=ADIL, stream=Stream.MENTIONS, cursor=Cursor())
    assert renamed == original


# -- cursor rules ------------------------------------------------------------------------------
def _page_meta(**meta: str) -> dict[str, Any]:
    body = mentions_body()
    body["meta"] = {"result_count": 6, "oldest_id": "1399273854279708682", **meta}
    return body


def test_cursor_through_a_walk() -> None:
    def cursor_after(body: dict[str, Any], cursor: Cursor) -> Cursor:
        return parse_page(body, account=ADIL, stream=Stream.MENTIONS, cursor=cursor).next_cursor

    start = Cursor(since_id="100")
    first = cursor_after(_page_meta(newest_id="900", next_token="t1"), start)
    assert first == Cursor(since_id="100", pagination_token="t1", pending_since_id="900")
    assert first.in_walk
    # A later page's newest id is older: the first page's value is the one kept.
    second = cursor_after(_page_meta(newest_id="500", next_token="t2"), first)
    assert second == Cursor(since_id="100", pagination_token="t2", pending_since_id="900")
    done = cursor_after(_page_meta(newest_id="300"), second)
    assert done == Cursor(since_id="900")
    # A last page with nothing on it still ends the walk at the first page's newest id.
    assert cursor_after({"meta": {"result_count": 0}}, second) == Cursor(since_id="900")
    # A stale pending id outside a walk is ignored.
    assert cursor_after(_page_meta(newest_id="950"), Cursor("100", None, "1")) == Cursor("950")


def test_missing_newest_id_falls_back_to_the_posts() -> None:
    body = mentions_body()
    del body["meta"]
    page = parse_page(body, account=ADIL, stream=Stream.MENTIONS, cursor=Cursor())
    assert page.next_cursor == Cursor(since_id="1400118288307277824")


# -- 4. bad items --------------------------------------------------------------------------
def test_bad_posts_are_quarantined_and_the_rest_goes_through() -> None:
    body = mentions_body()
    data = body["data"]
    del data[0]["id"]
    data[1]["created_at"] = "yesterday"
    data[2]["text"] = 42
    del data[3]["author_id"]
    data[4]["created_at"] = "2021-05-31T08:00:48"  # no zone
    data.append("not a post")
    page = parse_page(body, account=ADIL, stream=Stream.MENTIONS, cursor=Cursor())

    assert [i.post_id for i in page.interactions] == ["1399273854279708682"]
    reasons = [(q.item_id, q.reason) for q in page.quarantined]
    assert reasons == [
        (None, "post has no id"),
        (
            "1399690181385486341",
            "created_at is missing or not a zoned ISO 8601 time: 'yesterday'",
        ),
        ("1399688059608702976", "text is not a string"),
        ("1399620292780052480", "post has no author_id"),
        (
            "1399274651012931596",
            "created_at is missing or not a zoned ISO 8601 time: '2021-05-31T08:00:48'",
        ),
        (None, "post is not a JSON object"),
    ]
    assert page.quarantined[1].raw is data[1]
    assert page.quarantined[5].raw == {"value": "not a post"}
    assert all(q.network == "x" for q in page.quarantined)
    assert page.next_cursor == Cursor(since_id="1400118288307277824")


def test_bad_replies_are_quarantined_self_threads_dropped() -> None:
    body = tweets_body()
    posts = {p["id"]: p for p in body["data"]}
    # Claims to answer a post that was not expanded, and names no user: quarantined.
    del posts["1400118725597032452"]["in_reply_to_user_id"]
    posts["1400118725597032452"]["referenced_tweets"] = [{"type": "replied_to", "id": "42"}]
    # The brand continuing its own thread: not a customer's history.
    posts["1400118458478518274"]["in_reply_to_user_id"] = ADIL.user_id
    # Someone else's post on the brand's timeline: quarantined.
    posts["1399797416765759490"]["author_id"] = "999"
    page = parse_page(body, account=ADIL, stream=Stream.REPLIES, cursor=Cursor())
    assert page.interactions == ()
    assert [(q.item_id, q.reason) for q in page.quarantined] == [
        ("1400118725597032452", "reply has no in_reply_to_user_id"),
        ("1399797416765759490", "post on the timeline of 1145936974064177152 is by 999"),
    ]
    assert page.next_cursor == Cursor(since_id="1400119370865512449")


def test_brand_mentioning_itself_is_skipped() -> None:
    brand = Account("x", "FOBLeh", FOBLEH)
    page = parse_page(mentions_body(), account=brand, stream=Stream.MENTIONS, cursor=Cursor())
    assert page.interactions == () and page.quarantined == ()
    assert page.next_cursor == Cursor(since_id="1400118288307277824")


@pytest.mark.parametrize(
    "body",
    [[], "text", None, {"data": {"id": "1"}}, {"data": [], "includes": []}, {"meta": "x"}],
)
def test_broken_bodies_are_transient(body: object) -> None:
    with pytest.raises(TransientError):
        parse_page(body, account=ADIL, stream=Stream.MENTIONS, cursor=Cursor())


def test_unknown_author_gets_the_generic_url() -> None:
    body = mentions_body()
    body["includes"]["users"] = []
    page = parse_page(body, account=ADIL, stream=Stream.MENTIONS, cursor=Cursor())
    assert page.interactions[0].url == "https://x.com/i/web/status/1400118288307277824"
    assert page.authors == ()


# -- loopback servers --------------------------------------------------------------------------
Handler = Callable[[Request], Response]


ROUTES = {
    "mentions": "/2/users/{id}/mentions",
    "tweets": "/2/users/{id}/tweets",
    "users_by": "/2/users/by",
}


class Loopback:
    """One server for the module (stopping one costs half a second); each test sets handlers."""

    def __init__(self) -> None:
        self.server = SandboxServer()
        self.handlers: dict[str, Handler] = {}
        for name, pattern in ROUTES.items():
            self.server.route("GET", pattern, functools.partial(self._dispatch, name))

    def _dispatch(self, name: str, req: Request) -> Response:
        return self.handlers[name](req)

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def loopback() -> Iterator[Loopback]:
    api = Loopback()
    api.server.start()
    yield api
    api.server.stop()


@pytest.fixture
def api(loopback: Loopback) -> Loopback:
    loopback.handlers.clear()
    return loopback


@contextlib.contextmanager
def raw_server(reply: bytes | None) -> Iterator[str]:
    """Answers every connection with ``reply`` (possibly cut short), then hangs up.

    With ``None`` it reads the request and stalls, never answering.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                if reply is None:
                    stop.wait(5)
                else:
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=2)
        listener.close()


def source_for(url: str, **kwargs: Any) -> XSource:
    return XSource(TOKEN, api_base_url=url, **kwargs)


def fetch_error(source: XSource, user_id: str = "1") -> SyncdError:
    with pytest.raises(SyncdError) as info:
        source.fetch(Account("x", "brand", user_id), Stream.MENTIONS, Cursor())
    return info.value


def assert_no_token(error: BaseException) -> None:
    assert TOKEN not in str(error) and TOKEN not in repr(error)
    # No chained tweepy exception whose request carries the Authorization header.
    assert error.__cause__ is None and error.__context__ is None


# -- 2. tweepy + vcrpy replay of the real cassettes --------------------------------------------
REPLAY = vcr.VCR(decode_compressed_response=True, record_mode="none", match_on=["method", "path"])


def _capture_urls(source: XSource) -> list[str]:
    urls: list[str] = []
    source.client.session.hooks["response"].append(lambda r, *a, **k: urls.append(r.url))
    return urls


def test_replay_mentions_cassette() -> None:
    source = source_for("https://api.twitter.com")
    urls = _capture_urls(source)
    account = Account("x", "Twitter", "783214")
    cassette_path = str(FIXTURES / "tweepy" / "test_client_get_users_mentions.yaml")
    with REPLAY.use_cassette(cassette_path) as cassette:
        page = source.fetch(account, Stream.MENTIONS, Cursor())
    assert cassette.play_count == 1
    assert urls[0].startswith("https://api.twitter.com/2/users/783214/mentions?")
    sent = urlsplit(urls[0]).query
    assert "max_results=100" in sent and "since_id" not in sent
    assert "tweet.fields=" + "%2C".join(TWEET_FIELDS) in sent
    assert "expansions=" + "%2C".join(EXPANSIONS) in sent

    # tweepy's recording asked for default fields only: no author_id, no created_at. Every post
    # is quarantined, yet the walk and the rate figures move on.
    assert page.interactions == ()
    assert len(page.quarantined) == 10
    assert {q.reason for q in page.quarantined} == {"post has no author_id"}
    assert page.quarantined[0].item_id == "1578516295611748353"
    assert page.next_cursor == Cursor(
        since_id=None,
        pagination_token="7140dibdnow9c7btw423i3sy3u5zupmkcpofxcsmxj48j",
        pending_since_id="1578516295611748353",
    )
    assert page.rate == RateInfo(limit=450, remaining=448, reset_at=utc(2022, 10, 7, 22, 53, 48))


def test_replay_user_tweets_cassette() -> None:
    source = source_for("https://api.twitter.com")
    urls = _capture_urls(source)
    account = Account("x", "Twitter", "783214")
    cassette_path = str(FIXTURES / "tweepy" / "test_client_get_users_tweets.yaml")
    with REPLAY.use_cassette(cassette_path) as cassette:
        page = source.fetch(account, Stream.REPLIES, Cursor(since_id="1500000000000000000"))
    assert cassette.play_count == 1
    assert "/2/users/783214/tweets?" in urls[0]
    # Retweets are read too: they count toward the timeline's 3,200 (syncd.state.horizon).
    assert "exclude=" not in urls[0] and "since_id=1500000000000000000" in urls[0]
    # Two original posts, no replies: nothing to store, nothing wrong.
    assert page.interactions == () and page.quarantined == ()
    assert page.next_cursor == Cursor(
        since_id="1500000000000000000",
        pagination_token="7140dibdnow9c7btw4232poeq0wapgnwgwqwvuwn3peex",
        pending_since_id="1577730467436138524",
    )
    assert page.rate == RateInfo(limit=1500, remaining=1498, reset_at=utc(2022, 10, 7, 22, 53, 48))


# -- fetch through a loopback server ------------------------------------------------------------
def test_fetch_sends_the_cursor_and_reads_rate_headers(api: Loopback) -> None:
    seen: list[dict[str, str]] = []
    body, headers = recorded("users_1145936974064177152_mentions-d24b15")

    def mentions(req: Request) -> Response:
        seen.append(req.query | {"auth": req.header("authorization") or ""})
        return Response.json(body, headers=headers)

    api.handlers["mentions"] = mentions
    source = source_for(api.url + "/", page_size=5)
    cursor = Cursor(since_id="1399", pagination_token="tok", pending_since_id="1400")
    page = source.fetch(ADIL, Stream.MENTIONS, cursor)
    source.close()
    assert seen[0]["since_id"] == "1399" and seen[0]["pagination_token"] == "tok"
    assert seen[0]["max_results"] == "5" and seen[0]["auth"] == f"Bearer {TOKEN}"
    assert len(page.interactions) == 6
    assert page.next_cursor == Cursor(since_id="1400")
    assert page.rate is not None and page.rate.remaining == 433


def test_a_post_mentioning_two_brand_accounts(api: Loopback) -> None:
    # @neha_jalali (177670568) is mentioned beside @adil_iis in 5 of the 6 recorded posts.
    neha = Account("x", "neha_jalali", "177670568")
    api.handlers["mentions"] = lambda r: Response.json(mentions_body())
    source = source_for(api.url)
    pages = [source.fetch(a, Stream.MENTIONS, Cursor()) for a in (ADIL, neha)]
    for account, page in zip((ADIL, neha), pages, strict=True):
        ids = [i.post_id for i in page.interactions]
        assert len(ids) == len(set(ids)) == 6
        assert {i.account for i in page.interactions} == {account.handle}
    both = {i.external_id for i in pages[0].interactions} & {
        i.external_id for i in pages[1].interactions
    }
    assert "x:1399690181385486341" in both


def test_parallel_fetches_keep_their_own_rate_headers(api: Loopback) -> None:
    def mentions(req: Request) -> Response:
        time.sleep(0.05 * (int(req.params["id"]) % 3))
        headers = {"x-rate-limit-remaining": req.params["id"], "x-rate-limit-limit": "450"}
        return Response.json({"meta": {"result_count": 0}}, headers=headers)

    results: dict[str, int | None] = {}
    api.handlers["mentions"] = mentions
    source = source_for(api.url)

    def run(user_id: str) -> None:
        page = source.fetch(Account("x", user_id, user_id), Stream.MENTIONS, Cursor())
        results[user_id] = page.rate.remaining if page.rate else None

    threads = [threading.Thread(target=run, args=(str(n),)) for n in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {str(n): n for n in range(1, 9)}


# -- 3. error classification --------------------------------------------------------------------
NOW_PLUS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1)}
USAGE_CAPPED = {
    "title": "UsageCapExceeded",
    "detail": "Usage cap exceeded: Monthly product cap",
    "type": "https://api.twitter.com/2/problems/usage-capped",
    "period": "Monthly",
    "scope": "Product",
}


def _problem(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"title": title, "detail": detail, "type": "about:blank", "status": status}


ERROR_CASES: dict[str, Handler] = {
    "429-reset": lambda r: Response.json(
        _problem(429, "Too Many Requests", "Too Many Requests"),
        429,
        {"x-rate-limit-reset": "2000000000", "x-rate-limit-remaining": "0"},
    ),
    "429-no-reset": lambda r: Response.json(_problem(429, "Too Many Requests", "slow down"), 429),
    "429-bad-reset": lambda r: Response.json({}, 429, {"x-rate-limit-reset": "soon"}),
    "429-capped": lambda r: Response.json(USAGE_CAPPED, 429, {"x-rate-limit-reset": "2000000000"}),
    # A hostile or buggy server echoing the credentials must not put them in a message.
    "401": lambda r: Response.json(
        _problem(401, "Unauthorized", f"bad {r.header('authorization')}"), 401
    ),
    "403": lambda r: Response.json(
        _problem(403, "Forbidden", "client-not-enrolled: attach an App to a Project"), 403
    ),
    "403-capped": lambda r: Response.json(USAGE_CAPPED, 403),
    "404": lambda r: Response.json(_problem(404, "Not Found", "no such user"), 404),
    "400": lambda r: Response.json(recorded("users-208538")[0], 400),
    "503-html": lambda r: Response.text("<html>over capacity</html>", 503, "text/html"),
    "503-list": lambda r: Response.json(["not", "x's", "error", "shape"], 503),
    "500-errors-int": lambda r: Response.json({"errors": 5, "error": "boom"}, 500),
    "200-not-json": lambda r: Response.text('{"data": [', 200, "application/json"),
    "200-list": lambda r: Response.json([1, 2], 200),
}


@pytest.fixture
def error_server(api: Loopback) -> Loopback:
    api.handlers["mentions"] = lambda req: ERROR_CASES[req.params["id"]](req)
    return api


@pytest.mark.parametrize(
    ("case", "kind", "status", "resume"),
    [
        ("429-reset", RateLimited, 429, utc(2033, 5, 18, 3, 33, 20)),
        ("429-no-reset", RateLimited, 429, "15m"),
        ("429-bad-reset", RateLimited, 429, "15m"),
        # Never x-rate-limit-reset: a monthly cap outlasts the rate window it names.
        ("429-capped", UsageCapped, 429, "1h"),
        ("401", AuthError, 401, None),
        ("403", AuthError, 403, None),
        ("403-capped", UsageCapped, 403, "1h"),
        ("404", NotFound, 404, None),
        ("400", ExternalError, 400, None),
        ("503-html", TransientError, 503, None),
        ("503-list", TransientError, 503, None),
        ("500-errors-int", TransientError, 500, None),
        # Unreadable answers: transient, and counted per stream toward parking it.
        ("200-not-json", MalformedAnswer, None, None),
        ("200-list", MalformedAnswer, None, None),
    ],
)
def test_errors_are_classified(
    error_server: Loopback,
    case: str,
    kind: type[SyncdError],
    status: int | None,
    resume: datetime | str | None,
) -> None:
    source = source_for(error_server.url, timeout=0.5)
    before = datetime.now(UTC)
    error = fetch_error(source, case)
    assert type(error) is kind
    assert isinstance(error, ExternalError)
    assert error.system == "x" and error.status == status
    if isinstance(resume, datetime):
        assert isinstance(error, RateLimited) and error.resume_at == resume
    elif isinstance(resume, str):
        assert isinstance(error, RateLimited)
        expected = before + NOW_PLUS[resume]
        assert expected <= error.resume_at <= datetime.now(UTC) + NOW_PLUS[resume]
    assert_no_token(error)


def test_error_messages_carry_x_s_text(error_server: Loopback) -> None:
    source = source_for(error_server.url)
    bad_request = fetch_error(source, "400")
    assert str(bad_request) == (
        "X API 400: The `ids` query parameter value [NA] does not match ^[0-9]{1,19}$"
    )
    unauthorized = fetch_error(source, "401")
    assert str(unauthorized) == "X API 401: bad Bearer [redacted]"
    assert "client-not-enrolled" in str(fetch_error(source, "403"))
    assert str(fetch_error(source, "503-html")) == "X API 503: 503 Service Unavailable"


def test_connection_refused_is_transient() -> None:
    # Bound, never listening: the port refuses connections and no other test (or xdist
    # worker) can be given it while this one counts on the refusal.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        error = fetch_error(source_for(f"http://127.0.0.1:{port}"))
    assert isinstance(error, TransientError)
    assert_no_token(error)


@pytest.mark.parametrize(
    "reply",
    [
        # Headers promise 1000 bytes, the connection closes after 12.
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        b'{"data": [{"',
        b"",  # closed before any response
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{"data": [',
        None,  # reads the request and never answers: the 0.5 s timeout fires
    ],
    ids=["cut-short", "no-response", "chunk-cut", "stall"],
)
def test_connection_closed_or_stalled_is_transient(reply: bytes | None) -> None:
    with raw_server(reply) as url:
        started = time.monotonic()
        error = fetch_error(source_for(url, timeout=0.5))
        assert time.monotonic() - started < 2
    assert isinstance(error, TransientError)
    assert_no_token(error)


def test_debug_logging_does_not_leak_the_token(
    error_server: Loopback, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="tweepy.client"):
        fetch_error(source_for(error_server.url), "404")
    assert "Making API request" in caplog.text
    assert "Bearer [redacted]" in caplog.text
    assert TOKEN not in caplog.text


# -- resolve_accounts ---------------------------------------------------------------------------
def test_resolve_accounts_batches_and_drops_unknown_handles(api: Loopback) -> None:
    lookups: list[list[str]] = []

    def users_by(req: Request) -> Response:
        names = req.query["usernames"].split(",")
        lookups.append(names)
        known = [n for n in names if not n.startswith("gone")]
        data = [{"id": str(1000 + int(n[4:])), "name": n, "username": n.upper()} for n in known]
        errors = [
            {"title": "Not Found Error", "detail": f"Could not find user with username: [{n}]."}
            for n in names
            if n.startswith("gone")
        ]
        return Response.json({"data": data, "errors": errors} if data else {"errors": errors})

    handles = [f"user{n}" for n in range(140)] + ["@gone1", "not a handle!", "User7"]
    api.handlers["users_by"] = users_by
    accounts = source_for(api.url).resolve_accounts(handles)
    # One call per 100 distinct valid handles; the invalid one is never sent (X would 400 the
    # whole batch), and "User7" repeats "user7".
    assert [len(batch) for batch in lookups] == [100, 41]
    assert not any("not a handle!" in batch for batch in lookups)
    assert len(accounts) == 141
    assert accounts["user0"] == Account("x", "user0", "1000")
    assert accounts["User7"] == Account("x", "User7", "1007")
    assert "@gone1" not in accounts and "not a handle!" not in accounts


def test_resolve_accounts_classifies_errors(api: Loopback) -> None:
    api.handlers["users_by"] = ERROR_CASES["401"]
    with pytest.raises(AuthError) as info:
        source_for(api.url).resolve_accounts(["brand"])
    assert_no_token(info.value)


# -- settings and registry ----------------------------------------------------------------------
def test_settings_and_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_TOKEN", TOKEN)
    settings = XSettings.model_validate(
        {
            "name": "brand-x",
            "type": "x",
            "accounts": ["@brand"],
            "bearer_token": "env:X_TOKEN",
            "api_base_url": "http://127.0.0.1:8080/",
            "page_size": 5,
            "timeout": "500ms",
        }
    )
    assert settings.api_base_url == "http://127.0.0.1:8080"
    assert settings.timeout == 0.5 and settings.accounts == ["brand"]
    source = XSource.from_settings(settings)
    assert source.page_size == 5
    assert TOKEN not in repr(source) and TOKEN not in repr(settings)
    assert connectors.source_class("x") is XSource
    assert XSource.Settings is XSettings and XSource.network == "x"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("api_base_url", "api.x.com"),
        ("api_base_url", "ftp://api.x.com"),
        ("api_base_url", "http://127.0.0.1:notaport"),
        ("api_base_url", "https://api.x.com/?a=1"),
        ("page_size", 4),
        ("page_size", 101),
        ("timeout", 0),
        ("type", "mastodon"),
        ("bearer_token", "X_TOKEN"),
        ("surprise", 1),
    ],
)
def test_settings_reject(monkeypatch: pytest.MonkeyPatch, key: str, value: object) -> None:
    monkeypatch.setenv("X_TOKEN", TOKEN)
    base: dict[str, Any] = {
        "name": "x",
        "type": "x",
        "accounts": ["brand"],
        "bearer_token": "env:X_TOKEN",
    }
    with pytest.raises(ValueError):
        XSettings.model_validate(base | {key: value})


def test_mutating_a_parsed_page_body_does_not_matter() -> None:
    body = mentions_body()
    snapshot = copy.deepcopy(body)
    parse_page(body, account=ADIL, stream=Stream.MENTIONS, cursor=Cursor())
    assert body == snapshot  # parse_page reads, never rewrites, what X sent


# -- 5. round trip against the X sandbox --------------------------------------------------------
def walk(
    source: XSource, account: Account, stream: Stream, cursor: Cursor
) -> tuple[list[Page], Cursor]:
    """Fetch pages from ``cursor`` until the walk completes, as the pipeline would."""
    pages: list[Page] = []
    while True:
        pages.append(source.fetch(account, stream, cursor))
        cursor = pages[-1].next_cursor
        if pages[-1].walk_complete or len(pages) > 50:
            return pages, cursor


def post_ids(pages: list[Page]) -> list[str]:
    return [i.post_id for page in pages for i in page.interactions]


@pytest.mark.parametrize("includes_key", ["tweets", "posts"])
def test_round_trip_against_the_x_sandbox(includes_key: str) -> None:
    sandbox = XSandbox(bearer_token=TOKEN, includes_key=includes_key).start()
    try:
        brand = sandbox.add_user("acme", "Acme Support")
        alice = sandbox.add_user("alice", "Alice", location="Lyon", url="https://alice.example")
        bob = sandbox.add_user("bob", "Bob")
        asks = [
            sandbox.add_post((alice if n % 2 else bob)["id"], f"@acme question {n}")
            for n in range(12)
        ]
        answer_bob = sandbox.add_post(brand["id"], "on it", in_reply_to=asks[0]["id"])
        answer_alice = sandbox.add_post(brand["id"], "fixed", in_reply_to=asks[1]["id"])
        sandbox.add_post(brand["id"], "New release today")  # original: not history
        sandbox.add_post(brand["id"], "more below", in_reply_to=answer_alice["id"])  # self-thread

        source = XSource(TOKEN, api_base_url=sandbox.url, page_size=5)
        accounts = source.resolve_accounts(["acme", "@Alice", "ghost"])
        assert accounts == {
            "acme": Account("x", "acme", brand["id"]),
            "@Alice": Account("x", "Alice", alice["id"]),
        }
        acme = accounts["acme"]

        # First page of the first walk: 5 of 12, and the newest id held back until the end.
        first = source.fetch(acme, Stream.MENTIONS, Cursor())
        newest = asks[-1]["id"]
        assert post_ids([first]) == [p["id"] for p in asks[::-1][:5]]
        assert first.next_cursor.since_id is None
        assert first.next_cursor.pending_since_id == newest and first.next_cursor.in_walk
        assert first.rate is not None and first.rate.limit == 450 and first.rate.remaining == 449
        # The process dies; a new one resumes from the stored cursor.
        source.close()
        resumed = XSource(TOKEN, api_base_url=sandbox.url, page_size=5)
        pages, done = walk(resumed, acme, Stream.MENTIONS, first.next_cursor)
        assert [len(p.interactions) for p in pages] == [5, 2]
        assert post_ids([first, *pages]) == [p["id"] for p in reversed(asks)]
        assert done == Cursor(since_id=newest)
        mention = pages[-1].interactions[-1]
        assert mention.post_id == asks[0]["id"]
        assert (mention.author_id, mention.counterpart_id) == (bob["id"], bob["id"])
        assert mention.direction is Direction.INBOUND
        assert mention.url == f"https://x.com/bob/status/{asks[0]['id']}"
        authors = {a.user_id: a for p in [first, *pages] for a in p.authors}
        assert authors[alice["id"]] == Author(
            "x", alice["id"], "alice", "Alice", None, "Lyon", "https://alice.example"
        )

        # The next walk sees only what arrived since, including a reply to the brand's answer.
        thanks = sandbox.add_post(alice["id"], "thanks!", in_reply_to=answer_alice["id"])
        later = sandbox.add_post(bob["id"], "@acme one more thing")
        pages, again = walk(resumed, acme, Stream.MENTIONS, done)
        assert post_ids(pages) == [later["id"], thanks["id"]]
        assert pages[0].interactions[1].in_reply_to_post_id == answer_alice["id"]
        assert pages[0].interactions[1].text == "@acme thanks!"
        assert again == Cursor(since_id=later["id"])
        # Nothing new: one empty page, the cursor stays.
        pages, idle = walk(resumed, acme, Stream.MENTIONS, again)
        assert len(pages) == 1 and pages[0].interactions == () and idle == again

        # The brand's replies to customers, not its own posts or its self-thread.
        pages, replies_done = walk(resumed, acme, Stream.REPLIES, Cursor())
        outbound = [i for p in pages for i in p.interactions]
        assert [(i.post_id, i.counterpart_id, i.in_reply_to_post_id) for i in outbound] == [
            (answer_alice["id"], alice["id"], asks[1]["id"]),
            (answer_bob["id"], bob["id"], asks[0]["id"]),
        ]
        assert all(i.direction is Direction.OUTBOUND for i in outbound)
        assert outbound[0].url == f"https://x.com/acme/status/{answer_alice['id']}"
        assert outbound[0].text == "@alice fixed"
        assert outbound[0].conversation_id == asks[1]["id"]
        # The cursor passes the newest post read (the self-thread), not the newest reply kept.
        assert replies_done.since_id is not None
        assert int(replies_done.since_id) > int(answer_alice["id"])
        assert not any(p.quarantined or p.warnings for p in pages)
        resumed.close()
    finally:
        sandbox.stop()


def test_sandbox_rate_limit_suspension_and_bad_token() -> None:
    sandbox = XSandbox(bearer_token=TOKEN, rate_limits={"mentions": 2}).start()
    try:
        brand = sandbox.add_user("acme")
        account = Account("x", "acme", brand["id"])
        source = XSource(TOKEN, api_base_url=sandbox.url)
        first = source.fetch(account, Stream.MENTIONS, Cursor())
        assert first.rate is not None and first.rate.reset_at is not None
        source.fetch(account, Stream.MENTIONS, Cursor())
        with pytest.raises(RateLimited) as info:
            source.fetch(account, Stream.MENTIONS, Cursor())
        assert info.value.resume_at == first.rate.reset_at

        sandbox.reset_rate_limits()
        sandbox.suspend_user(brand["id"])
        page = source.fetch(account, Stream.MENTIONS, Cursor("5"))
        assert page.interactions == () and page.next_cursor == Cursor("5")
        assert page.warnings == (f"Forbidden: User has been suspended: [{brand['id']}].",)
        assert source.resolve_accounts(["acme"]) == {}

        with pytest.raises(AuthError) as denied:
            XSource("wrong-token", api_base_url=sandbox.url).fetch(
                account, Stream.REPLIES, Cursor()
            )
        assert "wrong-token" not in str(denied.value)
    finally:
        sandbox.stop()


def test_a_refused_page_token_is_pagination_expired() -> None:
    """X answers 400 to a page token it does not take: with one sent, the source says the walk
    (or the backfill segment) must start again; the same 400 without one is a bad request."""
    sandbox = XSandbox(bearer_token=TOKEN).start()
    try:
        brand = sandbox.add_user("acme")
        account = Account("x", "acme", brand["id"])
        source = XSource(TOKEN, api_base_url=sandbox.url)
        with pytest.raises(PaginationExpired) as walk:
            source.fetch(account, Stream.MENTIONS, Cursor("5", "stale", "9"))
        now = datetime.now(UTC)
        search = Segment(
            Stream.MENTIONS,
            "search_recent",
            now - timedelta(days=1),
            now - timedelta(minutes=1),
            "@acme",
        )
        with pytest.raises(PaginationExpired) as segment:
            source.fetch_segment(account, search, "garbage!")
        for error in (walk.value, segment.value):
            assert (error.system, error.status) == ("x", 400)
            # Chained to X's own answer, as classified: no tweepy exception behind it.
            assert type(error.__cause__) is ExternalError
            assert_no_token(error.__cause__)
        assert type(fetch_error(source, "x")) is ExternalError  # no token: not an expiry
    finally:
        sandbox.stop()
