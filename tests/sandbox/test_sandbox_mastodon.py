"""sandbox.mastodon against the bodies a real Mastodon 4.5 answered (tests/fixtures/mastodon/):
the same fields with the same JSON types, the same error bodies, the same Link and
X-RateLimit headers, the same mention markup; and its pagination and limits as documented."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests
import yaml
from support import FIXTURES

from sandbox.mastodon.api import MastodonSandbox

TOKEN = "sandbox-mastodon-token"
RECORDED = FIXTURES / "mastodon"


def interactions(name: str) -> list[dict[str, Any]]:
    doc = yaml.safe_load((RECORDED / f"{name}.yaml").read_text())
    return list(doc["interactions"])


def recorded(
    name: str, method: str, path: str, nth: int = 0
) -> tuple[int, Any, dict[str, list[str]]]:
    """The status, JSON body and headers of the ``nth`` recorded ``method path…`` answer."""
    for item in interactions(name):
        req, resp = item["request"], item["response"]
        if req["method"] == method and re.fullmatch(path, req["uri"].split("localhost:3000")[1]):
            if nth:
                nth -= 1
                continue
            body = json.loads(resp["body"]["string"])
            return resp["status"]["code"], body, resp["headers"]
    raise LookupError(f"{name}: no {method} {path}")


@pytest.fixture
def sb() -> Iterator[MastodonSandbox]:
    with MastodonSandbox() as sandbox:
        sandbox.add_token(TOKEN, "brand")
        yield sandbox


def get(sb: MastodonSandbox, path: str, token: str = TOKEN, **params: Any) -> requests.Response:
    return requests.get(
        sb.url + path, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def assert_same_shape(ours: Any, real: Any, where: str = "") -> None:
    """Every field the stand-in sends is one the real server sends, with the same JSON type
    (null on either side allowed); objects and lists compared inside."""
    if isinstance(ours, dict):
        assert isinstance(real, dict), where
        invented = set(ours) - set(real)
        assert not invented, f"{where}: fields a real server does not send: {invented}"
        for key, value in ours.items():
            assert_same_shape(value, real[key], f"{where}.{key}")
    elif isinstance(ours, list) and isinstance(real, list):
        for value in ours:
            if real:
                assert_same_shape(value, real[0], f"{where}[]")
    elif ours is not None and real is not None:
        assert kind(ours) == kind(real), f"{where}: {kind(ours)} here, {kind(real)} recorded"


def test_mention_notifications_have_the_recorded_shape(sb: MastodonSandbox) -> None:
    _, real, headers = recorded(
        "test_notifications_mentions_only", "GET", r"/api/v1/notifications\?types%5B%5D=mention"
    )
    brand = sb.add_account("brand")
    fan = sb.add_account("fan")
    sb.add_status(fan.id, "@brand hello!")
    resp = get(sb, "/api/v1/notifications", **{"types[]": "mention"})
    assert resp.status_code == 200
    ours = resp.json()
    assert [n["type"] for n in ours] == ["mention"] and ours[0]["status"]["mentions"][0][
        "id"
    ] == brand.id
    assert_same_shape(ours, real, "notifications")
    # The mention markup, as the real server renders it (same username, this host).
    real_content = real[0]["status"]["content"].replace("mastodonpy_test", "brand")
    assert ours[0]["status"]["content"] == real_content.replace("http://localhost:3000", sb.url)
    # Times as the server writes them: milliseconds and a Z.
    pattern = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.fullmatch(pattern, real[0]["created_at"]) and re.fullmatch(
        pattern, ours[0]["created_at"]
    )
    # Link: older page by max_id, newer by min_id, the filter kept.
    real_link = headers["link"][0]
    assert 'rel="next"' in real_link and "max_id=21&types%5B%5D=mention" in real_link
    link = resp.headers["Link"]
    first = ours[0]["id"]
    assert f'{sb.url}/api/v1/notifications?types%5B%5D=mention&max_id={first}>; rel="next"' in link
    assert f'types%5B%5D=mention&min_id={first}>; rel="prev"' in link


def test_rate_limit_headers_are_the_recorded_ones(sb: MastodonSandbox) -> None:
    _, _, headers = recorded(
        "test_notifications_mentions_only", "GET", r"/api/v1/notifications\?types%5B%5D=mention"
    )
    sb.add_account("brand")
    resp = get(sb, "/api/v1/notifications")
    for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
        assert name in headers and name in {k.lower() for k in resp.headers}
    assert headers["x-ratelimit-limit"] == [resp.headers["X-RateLimit-Limit"]] == ["300"]
    # An ISO time, not epoch seconds, on both.
    for value in (headers["x-ratelimit-reset"][0], resp.headers["X-RateLimit-Reset"]):
        assert datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


def test_a_follow_is_not_a_mention(sb: MastodonSandbox) -> None:
    _, real, _ = recorded(
        "test_notifications_types",
        "GET",
        r"/api/v1/notifications\?types%5B%5D=follow&types%5B%5D=mention",
    )
    # The recording holds the mention only; a follow carries no status (documented).
    assert [n["type"] for n in real] == ["mention"]
    brand, fan = sb.add_account("brand"), sb.add_account("fan")
    sb.add_notification(brand.id, "follow", fan.id)
    sb.add_status(fan.id, "@brand hi")
    query: dict[str, Any] = {"types[]": ["follow", "mention"]}
    both = get(sb, "/api/v1/notifications", **query).json()
    assert [n["type"] for n in both] == ["mention", "follow"]
    follow = next(n for n in both if n["type"] == "follow")
    assert "status" not in follow
    assert_same_shape(follow, real[0], "follow")
    only = get(sb, "/api/v1/notifications", **{"types[]": "mention"}).json()
    assert [n["type"] for n in only] == ["mention"]


def test_statuses_and_replies_have_the_recorded_shape(sb: MastodonSandbox) -> None:
    _, real_page, headers = recorded(
        "test_get_pagination_info", "GET", r"/api/v1/accounts/\d+/statuses\?limit=5"
    )
    _, real_reply, _ = recorded("test_status_reply", "POST", r"/api/v1/statuses", nth=1)
    assert real_reply["in_reply_to_id"] and real_reply["in_reply_to_account_id"]
    brand, fan = sb.add_account("brand"), sb.add_account("fan")
    asked = sb.add_status(fan.id, "@brand help")
    for k in range(6):
        sb.add_status(brand.id, f"post {k}")
    answer = sb.add_status(brand.id, "@fan done", in_reply_to=asked.id)
    resp = get(sb, f"/api/v1/accounts/{brand.id}/statuses", limit=5)
    page = resp.json()
    assert len(page) == 5 and page[0]["id"] == answer.id
    assert_same_shape(page, real_page, "statuses")
    ours = get(sb, f"/api/v1/statuses/{answer.id}").json()
    assert_same_shape(ours, real_reply, "reply")
    assert (ours["in_reply_to_id"], ours["in_reply_to_account_id"]) == (asked.id, fan.id)
    real_link = headers["link"][0]
    assert re.search(r"statuses\?limit=5&max_id=\d+>;\s*rel=\"next\"", real_link)
    link = resp.headers["Link"]
    assert f'statuses?limit=5&max_id={page[-1]["id"]}>; rel="next"' in link
    assert f'statuses?limit=5&min_id={page[0]["id"]}>; rel="prev"' in link


def test_a_missing_status_and_account_answer_as_recorded(sb: MastodonSandbox) -> None:
    status, real, _ = recorded("test_status_missing", "GET", r"/api/v1/statuses/0")
    assert (status, real) == (404, {"error": "Not Found"})
    fan = sb.add_account("fan")
    gone = sb.add_status(fan.id, "soon deleted")
    sb.add_account("brand")
    sb.delete_status(gone.id)
    resp = get(sb, f"/api/v1/statuses/{gone.id}")
    assert (resp.status_code, resp.json()) == (404, real)
    resp = get(sb, "/api/v1/accounts/lookup", acct="nobody")
    assert (resp.status_code, resp.json()) == (404, {"error": "Record not found"})


def test_min_id_reads_the_page_right_after_it(sb: MastodonSandbox) -> None:
    brand, fan = sb.add_account("brand"), sb.add_account("fan")
    for k in range(10):
        sb.add_status(fan.id, f"@brand {k}")
    ids = [n.id for n in sb.notifications]
    after = get(sb, "/api/v1/notifications", min_id=ids[2], limit=3).json()
    assert [n["id"] for n in after] == [ids[5], ids[4], ids[3]]  # newest first, right above
    newest = get(sb, "/api/v1/notifications", since_id=ids[2], limit=3).json()
    assert [n["id"] for n in newest] == [ids[9], ids[8], ids[7]]  # the newest of the range
    bounded = get(sb, "/api/v1/notifications", min_id=ids[2], max_id=ids[5], limit=5).json()
    assert [n["id"] for n in bounded] == [ids[4], ids[3]]
    assert brand.id != fan.id


def test_limits_cap_the_page_size(sb: MastodonSandbox) -> None:
    brand, fan = sb.add_account("brand"), sb.add_account("fan")
    for k in range(90):
        sb.add_status(fan.id, f"@brand {k}")
        sb.add_status(brand.id, f"post {k}")
    assert len(get(sb, "/api/v1/notifications", limit=500).json()) == 80
    assert len(get(sb, "/api/v1/notifications").json()) == 40
    assert len(get(sb, f"/api/v1/accounts/{brand.id}/statuses", limit=500).json()) == 40
    assert len(get(sb, f"/api/v1/accounts/{brand.id}/statuses").json()) == 20


def test_paginated_requests_have_their_own_tighter_limit() -> None:
    with MastodonSandbox(limits={"paginated": (2, 900.0)}) as sb:
        sb.add_token(TOKEN, "brand")
        sb.add_account("brand")
        assert get(sb, "/api/v1/notifications", min_id="0").headers["X-RateLimit-Remaining"] == "1"
        assert get(sb, "/api/v1/notifications", min_id="0").status_code == 200
        refused = get(sb, "/api/v1/notifications", max_id="9")
        assert refused.status_code == 429 and refused.json() == {"error": "Too many requests"}
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        # Unpaginated requests count only against the general limit.
        assert get(sb, "/api/v1/notifications").status_code == 200


def test_a_refused_token_is_401(sb: MastodonSandbox) -> None:
    sb.add_account("brand")
    resp = get(sb, "/api/v1/accounts/verify_credentials", token="wrong")
    assert resp.status_code == 401 and resp.json() == {"error": "The access token is invalid"}
    assert get(sb, "/api/v1/accounts/verify_credentials").json()["acct"] == "brand"


def test_the_policy_has_the_documented_fields(sb: MastodonSandbox) -> None:
    # Not recorded: docs.joinmastodon.org/entities/NotificationPolicy (v2, Mastodon 4.3).
    sb.add_account("brand")
    policy = get(sb, "/api/v2/notifications/policy").json()
    assert set(policy) == {
        "for_not_following", "for_not_followers", "for_new_accounts", "for_private_mentions",
        "for_limited_accounts", "summary",
    }  # fmt: skip
    assert {policy[k] for k in policy if k != "summary"} <= {"accept", "filter", "drop"}


def test_batched_reads_leave_out_what_is_missing(sb: MastodonSandbox) -> None:
    # Not recorded: docs.joinmastodon.org methods/statuses#index and methods/accounts#index.
    brand, fan = sb.add_account("brand"), sb.add_account("fan")
    kept, gone = sb.add_status(fan.id, "kept"), sb.add_status(fan.id, "gone")
    sb.delete_status(gone.id)
    query: dict[str, Any] = {"id[]": [gone.id, kept.id, "1"]}
    statuses = get(sb, "/api/v1/statuses", **query).json()
    assert [s["id"] for s in statuses] == [kept.id]
    _, real, _ = recorded("test_status_reply", "POST", r"/api/v1/statuses", nth=1)
    assert_same_shape(statuses, [real], "statuses")
    query = {"id[]": [fan.id, "1", brand.id]}
    assert [a["id"] for a in get(sb, "/api/v1/accounts", **query).json()] == [fan.id, brand.id]
