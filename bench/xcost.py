"""What a day of X costs syncd: reads per new interaction, user objects per new author, owned
and ordinary reads, the estimated bill, and mentions lost (must be none).

A simulated day runs on the stand-ins, compressed into ``--day-seconds`` of wall time:
``--quiet`` mentions spread over 24 hours, and an outage at the brand bringing ``--burst``
mentions in one hour, during which syncd happens to be down (stopped, then started again an
hour later: the mentions timeline holds only the newest 800, so the rest is a gap that recent
search must close). The daemon is restarted once more late in the day. One brand in twenty
of the mentions is answered by the brand (outbound history, read from its own timeline).

The day before, most customers already wrote once, so syncd knows them: ``--new-share`` of
today's authors are new. The first ``--owned`` brand accounts have user credentials (OAuth
1.0a), so their timelines are owned reads ($0.001 a post); the others read with the app's
bearer token ($0.005), as does every search. Figures come from the X stand-in's usage meter,
which counts every post and user object X would bill (raw, and once per UTC day); syncd's own
count (``syncd status --json``) is printed beside it.

    python bench/xcost.py                    # 2,000 quiet + 30,000 burst mentions, 90 s day
    python bench/xcost.py --burst 5000 --day-seconds 40

Exit status 0 only if every target is met.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import SECRETS, UNLIMITED, People, salesforce_standin, seed, x_standin
from sqlalchemy import select

from sandbox.config import TomlValue, syncd_config
from sandbox.x.api import XSandbox
from syncd.state.db import Database
from syncd.state.tables import identities, interactions

TARGET_POSTS_PER_NEW = 1.02
TARGET_USERS_PER_NEW_AUTHOR = 1.0
PRICES = {"post": 0.005, "owned_post": 0.001, "user": 0.010}
DAY = 24 * 3600.0
OUTBOUND_SHARE = 0.05
STALL_SECONDS = 60.0  # nothing new stored this long (gap recovery waits ~30 s for search)
CONSUMER = ("xcost-consumer-key", "xcost-consumer-secret")
CONSUMER_ENV = {"XCOST_CONSUMER_KEY": CONSUMER[0], "XCOST_CONSUMER_SECRET": CONSUMER[1]}
RATES = UNLIMITED | {"users_me": 10**7}


def user_auth(n: int) -> dict[str, str]:
    """The ``n``-th owned brand account's OAuth 1.0a credentials, as environment references."""
    return {
        "type": "oauth1",
        "consumer_key": "env:XCOST_CONSUMER_KEY",
        "consumer_secret": "env:XCOST_CONSUMER_SECRET",
        "access_token": f"env:XCOST_TOKEN_{n}",
        "access_token_secret": f"env:XCOST_TOKEN_SECRET_{n}",
    }


@dataclass
class Options:
    quiet: int = 2_000
    burst: int = 30_000
    burst_hour: int = 14
    authors: int = 3_000
    new_share: float = 0.1
    brands: int = 3
    owned: int = 2
    day_seconds: float = 90.0
    seed: int = 11


@dataclass
class Report:
    mentions: int = 0
    replies: int = 0
    stored_today: int = 0
    lost: int = 0
    new_authors: int = 0
    posts_returned: int = 0
    posts_billed: int = 0
    owned_posts_billed: int = 0
    unowned_posts_billed: int = 0
    users_returned: int = 0
    users_billed: int = 0  # distinct user ids first read this UTC day
    cost: float = 0.0
    naive_cost: float = 0.0
    x_requests: dict[str, int] = field(default_factory=dict)
    syncd_count: dict[str, Any] = field(default_factory=dict)
    gaps: list[dict[str, Any]] = field(default_factory=list)  # not closed
    gaps_closed: int = 0
    recovered: int = 0  # posts gap recovery stored
    restarts: int = 0
    horizon_cuts: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def posts_per_new(self) -> float:
        return self.posts_returned / max(self.stored_today, 1)

    @property
    def users_per_new_author(self) -> float:
        return self.users_returned / max(self.new_authors, 1)


@dataclass(frozen=True)
class Post:
    at: float  # seconds into the simulated day
    author: str
    brand: int


def plan_day(o: Options, authors: list[str], rng: random.Random) -> list[Post]:
    """Today's mentions in time order: quiet ones over the day, the burst in one hour."""
    start, end = o.burst_hour * 3600.0, (o.burst_hour + 1) * 3600.0
    quiet = [rng.uniform(0, DAY) for _ in range(o.quiet)]
    burst = [rng.uniform(start, end) for _ in range(o.burst)]
    # Every author posts at least once, the new ones included, so "new" means seen today.
    who = authors + [rng.choice(authors) for _ in range(o.quiet + o.burst - len(authors))]
    rng.shuffle(who)
    return [Post(at, who[i], rng.randrange(o.brands)) for i, at in enumerate(sorted(quiet + burst))]


class Service:
    """``syncd run`` as a child process, stopped and started as the day asks."""

    def __init__(self, base: list[str], env: dict[str, str], log: Path) -> None:
        self.base, self.env, self.log = base, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.failures: list[str] = []

    def start(self) -> None:
        out = self.log.open("a")
        self.proc = subprocess.Popen([*self.base, "run"], env=self.env, stdout=out, stderr=out)
        self.starts += 1

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        if code not in (0, -signal.SIGTERM):
            self.failures.append(f"syncd run exited {code}")
        self.proc = None


def run(o: Options) -> Report:
    rng = random.Random(o.seed)
    report = Report()
    with (
        tempfile.TemporaryDirectory() as tmp_dir,
        x_standin(rate_limits=RATES, search_lag=1.0) as x,
        salesforce_standin() as sf,
    ):
        assert isinstance(x, XSandbox)
        tmp = Path(tmp_dir)
        people = seed(x, sf, accounts=o.brands, authors=o.authors, linked=0.8, seed=o.seed)
        env = os.environ | SECRETS.environ() | CONSUMER_ENV
        x.auth.add_consumer(*CONSUMER)
        owned: dict[str, TomlValue] = {}
        for n, (handle, uid) in enumerate(people.brands[: o.owned]):
            token, secret = x.auth.issue_oauth1_token(CONSUMER[0], uid)
            env |= {f"XCOST_TOKEN_{n}": token, f"XCOST_TOKEN_SECRET_{n}": secret}
            owned[handle] = user_auth(n)
        state = f"sqlite:///{tmp / 'state.db'}"
        config = tmp / "config.toml"
        config.write_text(
            syncd_config(
                state_url=state,
                x_url=x.url,
                salesforce_url=sf.url,
                accounts=[h for h, _ in people.brands],
                secrets=SECRETS,
                source_name="x",
                source={
                    "interval": "1s",
                    "search_access": "recent",
                    **({"user_auth": owned} if owned else {}),
                },
                tables={
                    "logging": {"level": "WARNING"},
                    "daemon": {"write_interval": "1s", "resolve_interval": "1s", "jitter": "0s"},
                    "backfill": {"interval": "1s"},
                },
            )
        )
        base = [sys.executable, "-m", "syncd", "--config", str(config)]
        ids = [uid for uid, _ in people.authors]
        cut = int(len(ids) * (1 - o.new_share))
        _yesterday(x, people, ids[:cut], base, env)
        posts = plan_day(o, ids, rng)
        # New: today's authors whose profiles syncd did not hold when the day began.
        report.new_authors = len({p.author for p in posts} - _profiled(state))

        meter = _Meter(x)
        service = Service(base, env, tmp / "daemon.log")
        service.start()
        today: dict[str, str] = {}  # post id → "mention" or "reply"
        feeder = threading.Thread(
            target=_feed, args=(x, people, posts, o, today, rng, service), daemon=True
        )
        began = time.monotonic()
        feeder.start()
        feeder.join()
        _settle(state, today, service)
        _gaps_closed(base, env)
        service.stop()
        report.seconds = time.monotonic() - began
        report.restarts = service.starts - 1
        report.errors += service.failures
        meter.close(report)
        report.mentions = sum(1 for kind in today.values() if kind == "mention")
        report.replies = len(today) - report.mentions
        stored = _stored_ids(state, set(today))
        report.stored_today = len(stored)
        report.lost = sum(1 for p, kind in today.items() if kind == "mention" and p not in stored)
        report.naive_cost = len(today) * (PRICES["post"] + PRICES["user"])
        report.horizon_cuts = x.store.horizon_cuts
        st = _status(base, env)
        report.syncd_count = {
            k: v for k, v in (st.get("budgets") or [{}])[0].items() if "today" in k
        }
        gaps = st.get("gaps") or {}
        report.gaps = list(gaps.get("unclosed") or [])
        report.gaps_closed, report.recovered = gaps.get("closed", 0), gaps.get("recovered", 0)
        if keep := os.environ.get("BENCH_KEEP"):  # a directory for the state and the log
            shutil.copytree(tmp, keep, dirs_exist_ok=True)
    return report


def _yesterday(
    x: XSandbox, people: People, known: list[str], base: list[str], env: dict[str, str]
) -> None:
    """Yesterday: most customers wrote once, and syncd read them (their profiles with): in
    bites well inside the timeline's horizon, so yesterday needs no gap recovery."""
    brands = people.brands
    poll = [*base, "poll", "--once"]
    subprocess.run(poll, env=env, check=True, capture_output=True)  # brands, cursors
    bite = 200 * len(brands)
    for start in range(0, len(known), bite):
        for n, uid in enumerate(known[start : start + bite]):
            x.add_post(uid, f"@{brands[n % len(brands)][0]} hello from yesterday")
        subprocess.run(poll, env=env, check=True, capture_output=True)


def _feed(
    x: XSandbox,
    people: People,
    posts: list[Post],
    o: Options,
    today: dict[str, str],
    rng: random.Random,
    service: Service,
) -> None:
    """Post the day in compressed time; syncd is down for the hour after the burst begins,
    and restarted once more at 20:00."""
    scale = o.day_seconds / DAY
    began = time.monotonic()
    down_at, up_at = o.burst_hour * 3600.0, (o.burst_hour + 2) * 3600.0
    restart_at = 20 * 3600.0
    stage = 0
    for post in posts:
        if stage == 0 and post.at >= down_at:
            service.stop()
            stage = 1
        if stage == 1 and post.at >= up_at:
            service.start()
            stage = 2
        if stage == 2 and post.at >= restart_at:
            service.stop()
            service.start()
            stage = 3
        pause = began + post.at * scale - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        handle, brand_id = people.brands[post.brand]
        p = x.add_post(post.author, f"@{handle} is it down for you too?")
        today[str(p["id"])] = "mention"
        if rng.random() < OUTBOUND_SHARE:
            name = x.store.users[post.author].username
            r = x.add_post(brand_id, f"@{name} we are on it", in_reply_to=str(p["id"]))
            today[str(r["id"])] = "reply"
    if stage == 1:
        service.start()


def _settle(state: str, today: dict[str, str], service: Service) -> None:
    """Until every post of the day is stored, or nothing new is for STALL_SECONDS."""
    wanted = set(today)
    last, progress = time.monotonic(), -1
    while time.monotonic() - last < STALL_SECONDS:
        n = len(_stored_ids(state, wanted))
        if n == len(wanted):
            return
        if n != progress:
            progress, last = n, time.monotonic()
        time.sleep(1.0)


def _gaps_closed(base: list[str], env: dict[str, str], patience: float = 20.0) -> None:
    """A gap's last page is stored a tick before the gap is marked closed: wait for that."""
    until = time.monotonic() + patience
    while time.monotonic() < until and (_status(base, env).get("gaps") or {}).get("unclosed"):
        time.sleep(1.0)


def _profiled(state: str) -> set[str]:
    db = Database(state)
    try:
        with db.connect() as conn:
            q = select(identities.c.user_id).where(identities.c.profile_read_at.is_not(None))
            return set(conn.scalars(q))
    finally:
        db.dispose()


def _stored_ids(state: str, wanted: set[str]) -> set[str]:
    db = Database(state)
    try:
        with db.connect() as conn:
            return {p for p in conn.scalars(select(interactions.c.post_id)) if p in wanted}
    finally:
        db.dispose()


def _status(base: list[str], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [*base, "status", "--json"], env=env, check=True, capture_output=True, text=True
    )
    return dict(json.loads(out.stdout))


class _Meter:
    """The stand-in's usage meter, from now on."""

    def __init__(self, x: XSandbox) -> None:
        self.x = x
        u = x.usage
        self.start = (
            u.posts_returned,
            u.posts_billed,
            u.owned_posts_billed,
            u.unowned_posts_billed,
            u.users_returned,
            u.users_billed,
        )
        self.routes = dict(x.requests_by_route)

    def close(self, r: Report) -> None:
        u = self.x.usage
        now = (
            u.posts_returned,
            u.posts_billed,
            u.owned_posts_billed,
            u.unowned_posts_billed,
            u.users_returned,
            u.users_billed,
        )
        d = [b - a for a, b in zip(self.start, now, strict=True)]
        r.posts_returned, r.posts_billed, r.owned_posts_billed = d[0], d[1], d[2]
        r.unowned_posts_billed, r.users_returned, r.users_billed = d[3], d[4], d[5]
        # Users billed today are at most those returned today: the raw count is the bill's
        # ceiling, so the estimate uses it.
        r.cost = (
            r.owned_posts_billed * PRICES["owned_post"]
            + r.unowned_posts_billed * PRICES["post"]
            + r.users_returned * PRICES["user"]
        )
        for route, n in self.x.requests_by_route.items():
            if n - self.routes.get(route, 0):
                name = route.split(" ", 1)[1].strip("^$").replace("(?P<id>[0-9]+)", ":id")
                r.x_requests[name] = n - self.routes.get(route, 0)


def print_report(r: Report, o: Options) -> bool:
    posts_ok = r.posts_per_new <= TARGET_POSTS_PER_NEW
    users_ok = r.users_per_new_author <= TARGET_USERS_PER_NEW_AUTHOR
    lost_ok = r.lost == 0 and not r.errors

    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(
        f"a day on X: {o.quiet:,} mentions over 24 h + {o.burst:,} in one hour while syncd was "
        f"down; {o.brands} brands ({o.owned} with user tokens), {o.authors:,} authors "
        f"({o.new_share:.0%} new today), syncd restarted {r.restarts}×, {r.seconds:.0f} s wall"
    )
    print(f"  interactions today       {r.mentions:,} mentions + {r.replies:,} brand replies")
    print(
        f"  X posts read / new       {r.posts_per_new:.3f} "
        f"({r.posts_returned:,} returned, {r.posts_billed:,} billed, "
        f"{r.stored_today:,} new)   target ≤ {TARGET_POSTS_PER_NEW}  {mark(posts_ok)}"
    )
    print(
        f"  user objects / new author {r.users_per_new_author:.3f} "
        f"({r.users_returned:,} returned, {r.users_billed:,} billed, for {r.new_authors:,} "
        "new authors)   "
        f"target ≤ {TARGET_USERS_PER_NEW_AUTHOR}  {mark(users_ok)}"
    )
    print(
        f"  owned / ordinary posts   {r.owned_posts_billed:,} / {r.unowned_posts_billed:,} billed"
    )
    print(
        f"  estimated cost           ${r.cost:,.2f} (the same day read with the app token and "
        f"an author per post: ${r.naive_cost:,.2f})"
    )
    print(f"  mentions lost            {r.lost:,}   target 0  {mark(lost_ok)}")
    print(
        f"  walks cut at the horizon {r.horizon_cuts}; gaps closed {r.gaps_closed} "
        f"({r.recovered:,} posts recovered by search), not closed: {_gaps(r.gaps)}"
    )
    print("  X requests               " + ", ".join(f"{k} {v:,}" for k, v in r.x_requests.items()))
    if r.syncd_count:
        print("  syncd's own count today  " + json.dumps(r.syncd_count, default=str))
    for e in r.errors:
        print(f"  error: {e}")
    return posts_ok and users_ok and lost_ok


def _gaps(gaps: list[dict[str, Any]]) -> str:
    if not gaps:
        return "none"
    return ", ".join(
        f"{g.get('account')}/{g.get('stream')} {g.get('state')} {g.get('reason') or ''}".strip()
        for g in gaps
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = Options()
    p.add_argument("--quiet", type=int, default=d.quiet)
    p.add_argument("--burst", type=int, default=d.burst)
    p.add_argument("--authors", type=int, default=d.authors)
    p.add_argument("--new-share", type=float, default=d.new_share)
    p.add_argument("--brands", type=int, default=d.brands)
    p.add_argument("--owned", type=int, default=d.owned)
    p.add_argument("--day-seconds", type=float, default=d.day_seconds)
    p.add_argument("--seed", type=int, default=d.seed)
    a = p.parse_args()
    o = Options(
        quiet=a.quiet,
        burst=a.burst,
        authors=a.authors,
        new_share=a.new_share,
        brands=a.brands,
        owned=min(a.owned, a.brands),
        day_seconds=a.day_seconds,
        seed=a.seed,
    )
    ok = print_report(run(o), o)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
