"""The X stand-in's limits, lifted for a benchmark: no endpoint a backfill (or a poll) uses
answers 429, whatever limits it was built with.

bench/backfill.py once lifted the limits of four groups only; the users look-up that fills in
new authors (300 per 15 minutes) answered 429 after some 86,000 mentions, and the child slept
out the window. Here every group allows one request, full archive one a second and the project
one post: the second request of each endpoint is refused unless the limits are lifted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.x.api import ENDPOINTS, RATE_LIMIT_DEFAULTS, XSandbox

TOKEN = "limits-bearer"
TINY = dict.fromkeys(RATE_LIMIT_DEFAULTS, 1)
QUERY = {"query": "@acme"}
# Every endpoint an app token may call, with what a backfill or a poll asks of it.
REQUESTS: dict[str, tuple[str, dict[str, str]]] = {
    "user_by_username": ("/2/users/by/username/acme", {}),
    "users_by": ("/2/users/by", {"usernames": "acme,fan"}),
    "mentions": ("/2/users/{acme}/mentions", {"max_results": "100"}),
    "user_tweets": ("/2/users/{acme}/tweets", {"max_results": "100"}),
    "user": ("/2/users/{fan}", {}),
    "users": ("/2/users", {"ids": "{fan}"}),
    "tweet": ("/2/tweets/{post}", {}),
    "tweets": ("/2/tweets", {"ids": "{post}"}),
    "search_recent": ("/2/tweets/search/recent", QUERY),
    "search_all": ("/2/tweets/search/all", {**QUERY, "max_results": "500"}),
    "counts_recent": ("/2/tweets/counts/recent", QUERY),
    "counts_all": ("/2/tweets/counts/all", QUERY),
    "usage_tweets": ("/2/usage/tweets", {}),
}


def test_every_app_endpoint_is_covered() -> None:
    # A new endpoint must be added here, so the bench cannot meet a limit no test lifted.
    assert set(REQUESTS) == set(ENDPOINTS.values()) - {"users_me", "oauth2_token"}


def stand_in(lifted: bool) -> XSandbox:
    return XSandbox(
        bearer_token=TOKEN,
        rate_limits=TINY,
        full_archive_per_second=1,
        project_cap=1,
        limits_lifted=lifted,
    )


@pytest.fixture(params=[True, False], ids=["lifted", "as-built"])
def x(request: pytest.FixtureRequest) -> Iterator[tuple[XSandbox, dict[str, str]]]:
    with stand_in(request.param) as sandbox:
        acme = sandbox.add_user("acme")["id"]
        fan = sandbox.add_user("fan")["id"]
        post = sandbox.add_post(fan, "@acme hello")["id"]
        yield sandbox, {"acme": acme, "fan": fan, "post": post}


def statuses(sandbox: XSandbox, names: dict[str, str], endpoint: str, times: int) -> list[int]:
    path, params = REQUESTS[endpoint]
    url = sandbox.url + path.format(**names)
    query = {k: v.format(**names) for k, v in params.items()}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return [requests.get(url, params=query, headers=headers, timeout=10).status_code
            for _ in range(times)]  # fmt: skip


@pytest.mark.parametrize("endpoint", sorted(REQUESTS))
def test_no_endpoint_answers_429_once_limits_are_lifted(
    x: tuple[XSandbox, dict[str, Any]], endpoint: str
) -> None:
    sandbox, names = x
    got = statuses(sandbox, names, endpoint, 3)
    if sandbox.limits_lifted:
        assert got == [200, 200, 200]
        assert sandbox.refused == 0
    else:  # the same requests against the limits it was built with: refused
        assert got[0] in (200, 429) and got[1:] == [429, 429]
        assert sandbox.refused >= 2
