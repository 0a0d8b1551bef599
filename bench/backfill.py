"""A large backfill, measured: interactions per second end to end, API calls, peak memory.

Both stand-ins run in this process; ``syncd backfill`` runs as a child process against them
(so its peak RSS is its own), reading a window that holds ``--interactions`` mentions of a
brand account by ``--authors`` customers, most of them Contacts carrying their X user id,
the rest unknown to the CRM (held, as the default policy says). The child fetches the
window page by page, stores each page, resolves the authors and writes the Tasks.

Printed: interactions stored and written, seconds, interactions per second, X requests
(and posts per request), Salesforce API calls (and per 1,000 interactions), the child's
peak RSS, and every rate-limit wait the child met, as it meets it (the stand-in's limits are
lifted, so there should be none: a wait means a limit was not, and fails the run). Exit
status 0 only if the targets are met, every post was stored once and nothing waited.

    python bench/backfill.py                        # 200,000 interactions, full archive
    python bench/backfill.py --interactions 5000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import SECRETS, salesforce_standin, service_environment, x_standin
from sqlalchemy import func, select

from sandbox.config import syncd_config
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import set_up_org
from sandbox.server import Request
from sandbox.x.api import XSandbox
from syncd.state.db import Database
from syncd.state.tables import interactions

Author = tuple[str, bool]  # X user id, known to the CRM
# X's own limits (300 full-archive requests per 15 minutes, one per second, and 300 users
# look-ups per 15 minutes, which the authors of 200,000 mentions need more of) would make this
# a measure of X: all are lifted in the stand-in, and the time at X's limits is reported from
# the estimate instead.
TARGET_RATE = 2000.0  # interactions per second, end to end
TARGET_RSS_MB = 250.0
# Salesforce calls that write history, per 100,000 records written: Bulk API 2.0 jobs
# ([writer] bulk_threshold), where sObject Collections would take 500.
TARGET_WRITES_PER_100K = 20.0


@dataclass
class Report:
    interactions: int
    authors: int
    stored: int = 0
    written: int = 0
    held: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    x_requests: int = 0
    posts_per_request: float = 0.0
    sf_calls: int = 0
    sf_calls_per_1000: float = 0.0
    # The calls that wrote history: Bulk 2.0 ingest requests and Task collection upserts.
    sf_write_calls: int = 0
    sf_bulk_calls: int = 0
    sf_writes_per_100k: float = 0.0
    peak_rss_mb: float = 0.0
    duplicates: int = 0
    x_bound_seconds: float = 0.0  # the estimate: the same window at X's real rate limits
    rate_limit_waits: int = 0  # times the child waited for a rate limit (limits are lifted)
    x_429s: int = 0  # requests a rate limit (or the cap) of the X stand-in refused

    @property
    def ok(self) -> bool:
        return (
            self.stored == self.interactions
            and self.duplicates == 0
            and self.rate >= TARGET_RATE
            and self.peak_rss_mb <= TARGET_RSS_MB
            and self.rate_limit_waits == 0
            and self.sf_writes_per_100k <= TARGET_WRITES_PER_100K
        )


def people(x: XSandbox, sf: SalesforceSandbox, authors: int, rng: random.Random) -> list[Author]:
    """The brand and ``authors`` customers, 9 in 10 of them Contacts by X user id."""
    set_up_org(sf)
    x.add_user("acme", "Acme Inc")
    account = sf.insert("Account", {"Name": "Acme Customers"})
    people: list[Author] = []
    for i in range(authors):
        user = x.add_user(f"cust{i}", f"Customer {i}")
        known = rng.random() < 0.9
        if known:
            sf.insert(
                "Contact",
                {"LastName": f"Customer {i}", "AccountId": account, "X_User_Id__c": user["id"]},
            )
        people.append((user["id"], known))
    return people


def mentions(x: XSandbox, people: list[Author], n: int, rng: random.Random) -> int:
    """``n`` mentions over the last year; how many are by authors the CRM knows."""
    start = datetime.now(UTC) - timedelta(days=365)
    step = timedelta(days=364) / max(n, 1)
    linked = 0
    for i in range(n):
        user_id, known = rng.choice(people)
        linked += known
        x.add_post(user_id, f"@acme question {i}", created_at=start + step * i)
    return linked


def run(n: int, authors: int, access: str, seed: int, keep: bool) -> Report:
    report = Report(n, authors)
    env = os.environ | SECRETS.environ() | service_environment()
    rng = random.Random(seed)
    with (
        tempfile.TemporaryDirectory() as tmp,
        x_standin(limits_lifted=True) as x,
        salesforce_standin() as sf,
    ):
        assert isinstance(x, XSandbox) and isinstance(sf, SalesforceSandbox)
        customers = people(x, sf, authors, rng)
        state = Path(tmp) / "state.db"
        config = Path(tmp) / "config.toml"
        config.write_text(
            syncd_config(
                state_url=f"sqlite:///{state}",
                x_url=x.url,
                salesforce_url=sf.url,
                accounts=["acme"],
                secrets=SECRETS,
                source_name="x",
                source={
                    "search_access": access,
                    # X serves one full-archive request per second (500 posts/s at most); the
                    # stand-in is told not to, so the figures are syncd's own capacity.
                    "full_archive_interval": "0s",
                },
            )
        )
        since = (datetime.now(UTC) - timedelta(days=366)).strftime("%Y-%m-%d")
        # BENCH_PYSPY=FILE profiles the child with py-spy (not a dependency: pip install it).
        spy = os.environ.get("BENCH_PYSPY")
        py_spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
        prof = [py_spy, "record", "-r", "200", "-f", "raw", "-o", spy, "--"] if spy else []
        base = [*prof, sys.executable, "-m", "syncd", "--config", str(config)]
        # Learn the brand account first, as a live daemon would have.
        subprocess.run([*base, "poll", "--once"], env=env, check=True, capture_output=True)
        print(f"posting {n:,} mentions by {authors:,} authors …", file=sys.stderr)
        linked = mentions(x, customers, n, rng)
        x_before, sf_before = x.request_count, sf.api_calls
        writes: Counter[str] = Counter()

        def count_write(req: Request) -> None:
            if req.subrequest:
                return
            if "/jobs/ingest" in req.path:
                writes["bulk"] += 1
            elif req.method == "PATCH" and "/composite/sobjects/Task/" in req.path:
                writes["collections"] += 1

        sf.on_request("*", count_write)
        args = ["backfill", "--source", "x", "--account", "acme", "--since", since]
        started = time.monotonic()
        stdout, code = _progress(
            [*base, *args, "--streams", "mentions", "--yes", "--json"], env, report
        )
        report.seconds = time.monotonic() - started
        report.x_429s = x.refused
        if code != 0:
            raise SystemExit(f"syncd backfill failed ({code}):\n{''.join(stdout)}")
        report.peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        report.x_requests = x.request_count - x_before
        report.sf_calls = sf.api_calls - sf_before
        report.sf_bulk_calls = writes["bulk"]
        report.sf_write_calls = writes["bulk"] + writes["collections"]
        lines = [json.loads(x) for x in stdout if x.startswith("{")]
        last = lines[-1]
        report.x_bound_seconds = lines[0].get("estimate", {}).get("seconds", 0.0)
        report.written, report.held = last["written"], last["held"]
        db = Database(f"sqlite:///{state}")
        with db.connect() as conn:
            report.stored = conn.execute(
                select(func.count()).select_from(interactions)
            ).scalar_one()
        db.dispose()
        per_post = Counter(str(t["Social_Post_Id__c"]) for t in sf.records("Task"))
        report.duplicates = sum(c - 1 for c in per_post.values())
        if report.written != linked:
            print(f"warning: {linked:,} by linked authors, {report.written:,} written",
                  file=sys.stderr)  # fmt: skip
        if keep:
            kept = Path(tempfile.gettempdir()) / "syncd-bench-backfill.db"
            shutil.copy(state, kept)
            print(f"state kept at {kept}", file=sys.stderr)
    report.rate = report.stored / report.seconds if report.seconds else 0.0
    report.posts_per_request = report.stored / max(report.x_requests, 1)
    report.sf_calls_per_1000 = report.sf_calls * 1000 / max(report.stored, 1)
    report.sf_writes_per_100k = report.sf_write_calls * 100_000 / max(report.written, 1)
    return report


def _progress(command: list[str], env: dict[str, str], report: Report) -> tuple[list[str], int]:
    """Run the backfill child, reading its JSON progress lines as they come: a rate-limit
    wait is said on stderr when it starts (never a silent sleep) and counted."""
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    lines: list[str] = []
    waiting: str | None = None
    for line in child.stdout:
        lines.append(line)
        if not line.startswith("{"):
            continue
        until = json.loads(line).get("waiting_until")
        if until and until != waiting:
            report.rate_limit_waits += 1
            print(f"rate-limited: the backfill waits until {until} (limits are lifted: a "
                  "limit was not)", file=sys.stderr, flush=True)  # fmt: skip
        waiting = until
    return lines, child.wait()


def show(r: Report) -> None:
    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(f"backfill of {r.interactions:,} mentions by {r.authors:,} authors")
    print(f"  stored             {r.stored:,} (duplicates in the CRM: {r.duplicates})")
    print(f"  written / held     {r.written:,} / {r.held:,} (held: authors the CRM lacks)")
    print(f"  seconds            {r.seconds:.1f}")
    print(
        f"  interactions/s     {r.rate:,.0f}   target ≥ {TARGET_RATE:,.0f}  "
        f"{mark(r.rate >= TARGET_RATE)}"
    )
    print(f"  X requests         {r.x_requests:,} ({r.posts_per_request:.0f} posts each)")
    print(f"  at X's rate limits {r.x_bound_seconds / 60:,.0f} min (the estimate; lifted here)")
    print(
        f"  rate-limit waits   {r.rate_limit_waits} ({r.x_429s} requests refused with 429)   "
        f"target 0  {mark(r.rate_limit_waits == 0)}"
    )
    print(f"  Salesforce calls   {r.sf_calls:,} ({r.sf_calls_per_1000:.1f} per 1,000)")
    print(
        f"  history writes     {r.sf_write_calls:,} calls ({r.sf_bulk_calls:,} Bulk 2.0), "
        f"{r.sf_writes_per_100k:.1f} per 100,000 written   target ≤ "
        f"{TARGET_WRITES_PER_100K:.0f}  {mark(r.sf_writes_per_100k <= TARGET_WRITES_PER_100K)}"
    )
    print(
        f"  peak RSS           {r.peak_rss_mb:.0f} MB   target ≤ {TARGET_RSS_MB:.0f} MB  "
        f"{mark(r.peak_rss_mb <= TARGET_RSS_MB)}  (as its systemd unit runs it: "
        f"{' '.join(f'{k}={v}' for k, v in service_environment().items()) or 'no variables'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", type=int, default=200_000)
    parser.add_argument("--authors", type=int, default=20_000)
    parser.add_argument("--access", choices=["all", "recent", "none"], default="all")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="Keep the state database.")
    parser.add_argument("--json", action="store_true", help="One JSON object, no table.")
    ns = parser.parse_args()
    report = run(ns.interactions, ns.authors, ns.access, ns.seed, ns.keep)
    if ns.json:
        print(json.dumps({**asdict(report), "ok": report.ok}))
    else:
        show(report)
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
