"""The stand-ins' per-request latency (issue 21): one delay per HTTP request, a Composite
call's subrequests included in their call's, served side by side, never by the clock alone.

Every assertion is on what the server recorded it applied (``latency_waits``,
``latency_seconds``, ``latency_peak``), not on how long anything took.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest
import requests
from support.salesforce import V, login, raw

from sandbox.bluesky.api import BlueskySandbox
from sandbox.mastodon.api import MastodonSandbox
from sandbox.meta.api import MetaSandbox
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.server import CONTROL_PATH, Request, Response, SandboxServer
from sandbox.x.api import XSandbox

SHORT = 0.005  # long enough to be a wait, short enough to keep the tests fast


def query(soql: str, ref: str) -> dict[str, str]:
    url = f"/services/data/v{V}/query?q={quote(soql)}"
    return {"method": "GET", "url": url, "referenceId": ref}


def test_a_composite_call_waits_once_for_all_its_subrequests(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    sb.latency = SHORT  # settable on a running server: the next request reads it
    waits, seconds, dispatched = sb.latency_waits, sb.latency_seconds, sb.request_count
    subs = [query("SELECT Id FROM Contact", f"r{i}") for i in range(3)]
    answer = raw(sb, sf, "POST", "composite", json={"compositeRequest": subs})
    assert answer.status_code == 200
    assert [s["httpStatusCode"] for s in answer.json()["compositeResponse"]] == [200] * 3
    # The call and its three subrequests were each dispatched; one HTTP request was delayed.
    assert sb.request_count - dispatched == 4
    assert sb.latency_waits - waits == 1
    assert sb.latency_seconds - seconds == pytest.approx(SHORT)


def test_each_plain_call_waits_once_and_the_control_endpoint_not_at_all(
    sb: SalesforceSandbox,
) -> None:
    sf = login(sb)
    sb.latency = SHORT
    waits = sb.latency_waits
    assert raw(sb, sf, "GET", "query", params={"q": "SELECT Id FROM Contact"}).ok
    assert raw(sb, sf, "GET", "sobjects/Nope__c/describe").status_code == 404  # answered too
    assert requests.get(sb.url + CONTROL_PATH, timeout=10).ok  # the harness's, not the API's
    assert sb.latency_waits - waits == 2


def test_no_latency_by_default(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    assert raw(sb, sf, "GET", "query", params={"q": "SELECT Id FROM Contact"}).ok
    assert sb.latency == 0.0 and sb.latency_waits == 0 and sb.latency_seconds == 0.0


@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_a_latency_must_be_seconds_to_wait(bad: float) -> None:
    with pytest.raises(ValueError, match="latency"):
        SandboxServer(latency=bad)


STANDINS: list[Callable[[float], SandboxServer]] = [
    lambda s: XSandbox(latency=s),
    lambda s: MastodonSandbox(latency=s),
    lambda s: BlueskySandbox(latency=s),
    lambda s: MetaSandbox(latency=s),
    lambda s: SalesforceSandbox(latency=s),
]


@pytest.mark.parametrize("make", STANDINS, ids=["x", "mastodon", "bluesky", "meta", "salesforce"])
def test_every_standin_takes_a_latency(make: Callable[[float], SandboxServer]) -> None:
    with make(SHORT) as server:
        assert server.latency == SHORT
        requests.get(server.url + "/no/such/resource", timeout=10)  # unrouted: answered late too
        assert server.latency_waits == 1
        assert server.latency_seconds == pytest.approx(SHORT)


@pytest.fixture
def slow() -> Iterator[SandboxServer]:
    """A server whose requests would wait a minute: only stopping it ends their wait."""
    server = SandboxServer(latency=60.0)
    server.route("GET", "/ping", lambda req: Response.json({"pong": True}), "ping")
    server.start()
    yield server
    server.stop()


def test_requests_wait_side_by_side_not_in_turn(slow: SandboxServer) -> None:
    callers = 4

    def call() -> None:
        # The server stops under it: what it recorded is what counts, not the answer.
        with contextlib.suppress(requests.RequestException):
            requests.get(slow.url + "/ping", timeout=90)

    threads = [threading.Thread(target=call, daemon=True) for _ in range(callers)]
    for t in threads:
        t.start()
    # Waiting in turn (a lock held through the delay), only one would ever be waiting: the
    # count would stay at 1 and this loop give up.
    give_up = time.monotonic() + 20
    while slow.latency_peak < callers and time.monotonic() < give_up:
        time.sleep(0.01)
    assert slow.latency_peak == callers
    assert slow.latency_waits == callers
    slow.stop()  # ends the waits; the answers then go out
    for t in threads:
        t.join(10)
    assert slow.request_count == callers  # each dispatched once its wait ended


def test_a_hook_sees_the_request_after_its_wait() -> None:
    """The delay comes before the handler: a write lands when the request has travelled."""
    seen: list[int] = []
    server = SandboxServer(latency=SHORT)
    server.route("GET", "/ping", lambda req: Response.json({}), "ping")

    def hook(req: Request) -> None:
        seen.append(server.latency_waits)

    server.on_request("ping", hook)
    with server:
        requests.get(server.url + "/ping", timeout=10)
    assert seen == [1]
