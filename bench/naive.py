"""The naive twitter → Salesforce pattern, written honestly, on the same workload.

This is what the integration samples do (Apache Camel's and Syndesis's twitter→salesforce
examples): a timer polls each account's mentions and posts with ``since_id``, and for every
post makes one look-up query for the person and, when found, one create call for the
activity. Same libraries as syncd (tweepy, simple-salesforce), same stand-ins, same arrivals;
one thread, as those routes run. It has no outbox, no batching and no retry: what it gets
right is reported as it is (posts by people the CRM lacks are simply dropped). Its X stand-in
has no 800-mention horizon, or it would lose most of a burst: its wall time is how long it
takes to catch up.

Its wall time is bound by two Salesforce calls per post, so a run on fewer posts than
``--interactions`` projects linearly to that count; the projection is labelled.
``bench/throughput.py`` runs this script beside syncd on the same workload
(``--naive-interactions``) and prints the ratios.

    python bench/naive.py                      # 5,000 interactions
    python bench/naive.py 5000 --interactions 100000 --json
    python bench/naive.py 1000 --latency real  # each call as slow as the real APIs'

Its Salesforce stand-in gets the daily API allocation the run needs (two calls a post): with
the default 100,000 a long run stops at REQUEST_LIMIT_EXCEEDED part way, and its figures would
not be for the same work as syncd's.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import asdict
from typing import Any

import requests
import tweepy
from common import (
    LATENCIES,
    SECRETS,
    UNLIMITED,
    Feeder,
    NaiveReport,
    Options,
    WriteClock,
    latency_arg,
    percentile,
    salesforce_standin,
    seed,
    show_naive,
    x_standin,
)
from simple_salesforce import Salesforce

from connectors._http import RewritingAdapter, mount
from sandbox.config import SALESFORCE_USERNAME
from sandbox.x.api import XSandbox

FIELDS = ["created_at", "author_id", "in_reply_to_user_id", "conversation_id"]


class NaiveSync:
    """The sample's route: poll, and for each post look up and create."""

    def __init__(self, x_url: str, sf_url: str, brands: list[tuple[str, str]]) -> None:
        self.client = tweepy.Client(bearer_token=SECRETS.x_bearer)
        mount(self.client.session, RewritingAdapter({"https://api.twitter.com": x_url}))
        session = requests.Session()
        adapter = RewritingAdapter({"https://login.salesforce.com": sf_url})
        mount(session, adapter)
        self.sf = Salesforce(
            username=SALESFORCE_USERNAME,
            password=SECRETS.salesforce_password,
            security_token=SECRETS.salesforce_token,
            session=session,
        )
        adapter.add(f"https://{self.sf.sf_instance}", sf_url)
        self.brands = brands
        self.since: dict[tuple[str, str], str | None] = {}
        self.stop = threading.Event()

    def run(self, interval: float) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            for _, brand_id in self.brands:
                self._poll(brand_id, self.client.get_users_mentions, inbound=True)
                self._poll(brand_id, self.client.get_users_tweets, inbound=False)
            self.stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def _poll(self, brand_id: str, method: Any, *, inbound: bool) -> None:
        key = (brand_id, "mentions" if inbound else "tweets")
        posts: list[Any] = []
        for page in tweepy.Paginator(
            method,
            brand_id,
            since_id=self.since.get(key),
            max_results=100,
            tweet_fields=FIELDS,
            expansions=["author_id"],
        ):
            posts += page.data or []
        if posts:
            self.since[key] = str(max(int(p.id) for p in posts))
        for post in reversed(posts):  # oldest first
            who = post.author_id if inbound else post.in_reply_to_user_id
            if who is None or str(who) == brand_id:
                continue
            found = self.sf.query(f"SELECT Id FROM Contact WHERE X_User_Id__c = '{who}' LIMIT 1")
            if not found["records"]:
                continue
            self.sf.Task.create(
                {
                    "WhoId": found["records"][0]["Id"],
                    "Subject": "X mention" if inbound else "X reply",
                    "Description": post.text,
                    "ActivityDate": post.created_at.date().isoformat(),
                    "Status": "Completed",
                    "Social_Post_Id__c": f"x:{post.id}",
                }
            )


# At most a look-up and a create per post; the margin covers nothing the route is known to
# make, it only keeps a miscount from turning into a run cut short.
CALLS_PER_POST = 2
ALLOCATION_MARGIN = 1_000
DEFAULT_ALLOCATION = 100_000  # the stand-in's default: an Enterprise org's base allocation


def allocation(n: int) -> int:
    """The daily API allocation the naive pattern needs for ``n`` posts."""
    return max(DEFAULT_ALLOCATION, CALLS_PER_POST * n + ALLOCATION_MARGIN)


def run(opts: Options, n: int, latency: str = "none") -> NaiveReport:
    delays = LATENCIES[latency]
    report = NaiveReport(
        interactions=n, full=opts.interactions, latency=dict(delays), daily_api_limit=allocation(n)
    )
    # No 800-mention horizon here: one call pair per post falls far behind a burst, and with
    # X's horizon it would lose most of it; measured is how long it takes to catch up.
    far = 10**9
    with (
        x_standin(
            rate_limits=UNLIMITED,
            mentions_horizon=far,
            timeline_horizon=far,
            latency=delays["x"],
        ) as x,
        salesforce_standin(
            latency=delays["salesforce"], daily_api_limit=report.daily_api_limit
        ) as sf,
    ):
        assert isinstance(x, XSandbox)
        people = seed(
            x, sf, accounts=opts.accounts, authors=opts.authors, linked=opts.linked, seed=opts.seed
        )
        clock = WriteClock(sf)
        sync = NaiveSync(x.url, sf.url, people.brands)
        for _, brand_id in people.brands:  # start from now, as a route deployed today would
            for key in ("mentions", "tweets"):
                newest = (x.store.mentions_index if key == "mentions" else x.store.authored_index)(
                    brand_id
                )
                sync.since[(brand_id, key)] = str(newest[-1]) if newest else None
        worker = threading.Thread(target=sync.run, args=(opts.poll,), daemon=True)
        feeder = Feeder(x, people, n, opts.rate, opts.seed)
        calls0 = sf.api_calls
        worker.start()
        feeder.start()
        progress, moved = -1, time.monotonic()
        while worker.is_alive():
            time.sleep(0.5)
            if feeder.done and feeder.linked <= clock.written.keys():
                report.complete = True
                break
            if len(clock.written) != progress:
                progress, moved = len(clock.written), time.monotonic()
            elif feeder.done and time.monotonic() - moved > 30:
                break  # stalled: reported as incomplete
        sync.stop.set()
        worker.join(30)
        linked = feeder.linked
        report.expected_written = len(linked)
        report.written = len(linked & clock.written.keys())
        ends = [clock.written[p] for p in linked if p in clock.written]
        report.seconds = (max(ends) if ends else time.time()) - feeder.first
        report.projected_seconds = report.seconds * opts.interactions / max(n, 1)
        report.rate = n / report.seconds if report.seconds else 0.0
        latencies = [clock.written[p] - feeder.created[p] for p in linked if p in clock.written]
        report.p50, report.p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
        report.x_requests = x.request_count
        report.sf_calls = sf.api_calls - calls0
        report.sf_per_1000 = report.sf_calls * 1000 / max(n, 1)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", type=int, nargs="?", default=5000, help="Interactions run.")
    Options.add_arguments(parser)
    parser.set_defaults(interactions=None)  # the count it is projected to: default, the run's
    latency_arg(parser)
    parser.add_argument("--json", action="store_true", help="One JSON object, no table.")
    ns = parser.parse_args(argv)
    ns.interactions = ns.interactions or ns.count
    report = run(Options.from_args(ns), ns.count, ns.latency)
    if ns.json:
        print(json.dumps(asdict(report)))
    else:
        show_naive(report)


if __name__ == "__main__":
    main()
