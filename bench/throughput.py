"""Live throughput, measured against the naive way: 10 brands, 100,000 interactions arriving.

Both stand-ins run in this process (:mod:`common`); ``syncd run`` runs as child processes
(one per ``--instances``) against them, as a service would, and the posts arrive while it
runs. Measured for syncd: interactions/s end to end (from the first post's creation to the
last CRM write), X requests, X posts read per new interaction (as returned, and as X bills:
once per UTC day), Salesforce API calls per 1,000 interactions (look-ups included), p50/p95
latency from a post's creation to its CRM write, the daemon's peak RSS and CPU, and the
stand-ins' own CPU (they must not be the bottleneck).

Then the naive pattern of the integration samples (``bench/naive.py``, run as a script of its
own: per post, one look-up query and one create call) runs on the same workload, and the
ratios are printed. ``--scale`` hands over to ``bench/growth.py``.

``--state postgresql+psycopg://…`` runs the same workload on SQLite first, in the same run,
and prints PostgreSQL's interactions/s as a ratio of SQLite's (target ≥ 0.9); with
``--instances 1,2,3``, each count's against one instance's (target ≥ 0.9), every instance's
peak RSS against SQLite's, the seconds sessions spent waiting for locks per 1,000
interactions (sampled from ``pg_stat_activity``), and the claim conflicts: records the CRM
was sent again after it had stored them (a writer whose claim lapsed under another's).

``--latency real`` makes every stand-in answer each HTTP request as late as the real API would
(X, Mastodon, Bluesky, Meta 150 ms, Salesforce 200 ms; ``none``, the default, is loopback
speed); the naive pattern runs under the same latency, so the ratios are a real org's.

    python bench/throughput.py                              # 100,000 interactions
    python bench/throughput.py --interactions 20000 --no-naive
    python bench/throughput.py --interactions 5000 --latency real --naive-interactions 1000
    python bench/throughput.py --instances 1,2,3 --state postgresql+psycopg://postgres@127.0.0.1/test
    python bench/throughput.py --scale                      # per-interaction cost at 10k…1M rows
    python bench/throughput.py --networks x,mastodon,bluesky --no-naive
    python bench/throughput.py --networks meta --no-naive  # X, a Facebook Page, Instagram

``--networks`` (default ``x``: the figures stay comparable with earlier runs) spreads the
interactions evenly over X and the brand's accounts on the Mastodon and Bluesky stand-ins
and its Facebook Page and Instagram account on the Meta stand-in (one brand account there
each, ``--authors`` customers of their own on each; on Meta they comment on the brand's
posts of the last weeks). The X figures
then count X's share; the naive pattern reads X alone, so it is left out.

Exit status 0 only if every target is met.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from common import (
    BLUESKY_UNLIMITED,
    LATENCIES,
    MASTODON_UNLIMITED,
    META_UNLIMITED,
    SECRETS,
    SOCIAL_POST_KEY,
    UNLIMITED,
    Elsewhere,
    Feeder,
    NaiveReport,
    Options,
    WriteClock,
    daemon_config,
    describe_latency,
    latency_arg,
    networks_arg,
    percentile,
    salesforce_standin,
    seed,
    seed_elsewhere,
    service_environment,
    show_naive,
    x_standin,
)
from sqlalchemy import create_engine, func, select, text

from sandbox.bluesky.api import BlueskySandbox
from sandbox.mastodon.api import MastodonSandbox
from sandbox.meta.api import MetaSandbox
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.server import Request
from sandbox.x.api import XSandbox
from syncd.state.db import Database
from syncd.state.tables import interactions, links

TARGET_RATE = 3000.0  # interactions per second, end to end
TARGET_SPEEDUP = 20.0  # × the naive pattern's wall time
TARGET_SF_PER_1000 = 5.2  # per history target (issue 21: live writes at the batch limit)
TARGET_POSTS_PER_NEW = 1.02
TARGET_LATENCY_SLACK = 2.0  # p95 latency ≤ poll interval + this
TARGET_RSS_MB = 150.0  # the daemon's peak RSS; on PostgreSQL per instance, and ≤ SQLite's
TARGET_PG_RATIO = 0.9  # PostgreSQL, one instance: × SQLite's interactions/s in the same run
TARGET_INSTANCES_RATIO = 0.9  # several instances together: × one instance's interactions/s
HERE = Path(__file__).resolve().parent


@dataclass
class Report:
    instances: int = 1
    interactions: int = 0
    stored: int = 0
    written: int = 0
    expected_written: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    x_requests: int = 0
    x_by_endpoint: dict[str, int] = field(default_factory=dict)
    posts_returned: int = 0
    posts_billed: int = 0
    posts_per_new: float = 0.0
    billed_posts_per_new: float = 0.0
    users_returned: int = 0
    sf_calls: int = 0
    sf_by_endpoint: dict[str, int] = field(default_factory=dict)
    sf_per_1000: float = 0.0
    # Salesforce calls by what they do (a composite call by what its queries are):
    # the look-ups, the candidate search, the change watch, the copy of the keys, writes.
    sf_by_kind: dict[str, int] = field(default_factory=dict)
    sf_queries_by_kind: dict[str, int] = field(default_factory=dict)  # queries, composite's too
    p50: float = 0.0
    p95: float = 0.0
    p95_read: float = 0.0  # from the post to its poll's store
    p95_linked: float = 0.0  # from its store to its author's link (0: linked before)
    p95_after_linked: float = 0.0  # from both to its CRM write
    peak_rss_mb: float = 0.0
    daemon_cpu: float = 0.0
    standin_cpu: float = 0.0
    horizon_cuts: int = 0
    networks: list[str] = field(default_factory=lambda: ["x"])
    history: list[str] = field(default_factory=lambda: ["task"])  # [crm] history
    cases: int = -1  # Cases opened with [crm.cases] (-1: without)
    stored_by_network: dict[str, int] = field(default_factory=dict)
    requests_by_network: dict[str, int] = field(default_factory=dict)  # beside X's
    p95_by_network: dict[str, float] = field(default_factory=dict)
    complete: bool = False
    errors: list[str] = field(default_factory=list)
    latency: dict[str, float] = field(default_factory=dict)  # per request, by stand-in
    state: str = "sqlite"  # or "postgresql"
    # PostgreSQL: seconds syncd's sessions spent waiting for a lock, sampled from
    # pg_stat_activity every 50 ms, by what they waited for (row, transaction, advisory…).
    lock_waits: dict[str, float] = field(default_factory=dict)
    server_cpu: float = 0.0  # PostgreSQL's CPU seconds during the run (local server only)
    # Records the CRM was sent again after it had stored them: a writer whose claim lapsed
    # under another's, an answer lost to a crash, a reply written again with its parent.
    rewrites: int = 0


def _fresh_state(opts: Options, tmp: Path, run: str) -> tuple[str, str | None]:
    """A state URL, and the PostgreSQL schema to drop afterwards."""
    if opts.state is None:
        return f"sqlite:///{tmp / f'state-{run}.db'}", None
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(opts.state)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in opts.state else "?"
    return f"{opts.state}{sep}options=-csearch_path%3D{schema}", schema


def _drop(opts: Options, schema: str | None) -> None:
    if opts.state is None or schema is None:
        return
    engine = create_engine(opts.state)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def _stored(url: str) -> int:
    return sum(_stored_by_network(url).values())


def _stored_by_network(url: str) -> dict[str, int]:
    db = Database(url)
    try:
        with db.connect() as conn:
            rows = conn.execute(
                select(interactions.c.network, func.count()).group_by(interactions.c.network)
            ).all()
            return {str(network): int(n) for network, n in rows}
    finally:
        db.dispose()


def _stage_times(url: str) -> dict[str, tuple[float, float]]:
    """When the daemon stored each post (``fetched_at``) and when its author was linked, by
    the bench's key for it (X's bare ids, other networks' ``network:id``), as epoch seconds."""
    db = Database(url)
    try:
        with db.connect() as conn:
            rows = conn.execute(
                select(
                    interactions.c.network,
                    interactions.c.post_id,
                    interactions.c.fetched_at,
                    func.min(links.c.created_at),
                )
                .join(links, links.c.identity_id == interactions.c.counterpart_identity_id)
                .group_by(interactions.c.id)
            ).all()
    finally:
        db.dispose()

    def epoch(at: datetime) -> float:
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()

    return {
        (post_id if network == "x" else f"{network}:{post_id}"): (epoch(read), epoch(linked))
        for network, post_id, read, linked in rows
    }


def run_syncd(
    opts: Options,
    instances: int,
    tmp: Path,
    networks: tuple[str, ...] = ("x",),
    history: tuple[str, ...] = ("task",),
    latency: str = "none",
    cases: bool = False,
) -> Report:
    delay = LATENCIES[latency]
    report = Report(
        instances=instances,
        interactions=opts.interactions,
        networks=list(networks),
        history=list(history),
        latency=dict(delay),
        state="sqlite" if opts.state is None else "postgresql",
    )
    with contextlib.ExitStack() as stack:
        x = stack.enter_context(x_standin(rate_limits=UNLIMITED, latency=delay["x"]))
        sf = stack.enter_context(salesforce_standin(latency=delay["salesforce"]))
        assert isinstance(x, XSandbox)
        people = seed(
            x, sf, accounts=opts.accounts, authors=opts.authors, linked=opts.linked, seed=opts.seed
        )
        elsewhere: Elsewhere | None = None
        if len(networks) > 1:
            mastodon = bluesky = None
            if "mastodon" in networks:
                mastodon = MastodonSandbox(limits=MASTODON_UNLIMITED, latency=delay["mastodon"])
                stack.enter_context(mastodon)
            if "bluesky" in networks:
                bluesky = BlueskySandbox(
                    requests_per_window=BLUESKY_UNLIMITED, latency=delay["bluesky"]
                )
                stack.enter_context(bluesky)
            meta_networks = tuple(n for n in networks if n in ("facebook", "instagram"))
            meta = None
            if meta_networks:
                meta = MetaSandbox(budgets=META_UNLIMITED, latency=delay["meta"])
                stack.enter_context(meta)
            elsewhere = seed_elsewhere(
                sf,
                mastodon,
                bluesky,
                authors=opts.authors,
                linked=opts.linked,
                seed=opts.seed,
                meta=meta,
                meta_networks=meta_networks,
            )
        social_posts = "social_post" in history
        # As `syncd salesforce fields` makes them: the upsert keys.
        keyed = (("SocialPost", "SocialPersona") if social_posts else ()) + (
            ("Case",) if cases else ()
        )
        for sobject in keyed:
            sf.add_field(sobject, SOCIAL_POST_KEY, external_id=True, unique=True)
        # A post is written once all its records are (its Task, its SocialPost).
        clock = WriteClock(sf, social_posts=social_posts)
        kinds = CallKinds(sf)
        url, schema = _fresh_state(opts, tmp, f"{instances}")
        config = tmp / f"config-{instances}.toml"
        accounts = [handle for handle, _ in people.brands]
        session = str(tmp / f"bluesky-{instances}.session")
        config.write_text(
            daemon_config(
                url, x.url, sf.url, accounts, opts.poll, elsewhere, session, history, cases
            )
        )
        env = os.environ | SECRETS.environ() | service_environment()
        base = [sys.executable, "-m", "syncd", "--config", str(config)]
        # As a live service would have: the brands' ids known, the CRM's people loaded.
        subprocess.run([*base, "poll", "--once"], env=env, check=True, capture_output=True)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        logs = [open(tmp / f"daemon-{instances}-{i}.log", "w") for i in range(instances)]  # noqa: SIM115
        daemons = [
            subprocess.Popen([*base, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
            for log in logs
        ]
        spy = _profile(daemons[0].pid)
        waits = LockWaits(opts.state, schema)
        server0 = server_cpu(opts.state)
        try:
            time.sleep(opts.poll + 1.0)  # every stream polled once: the walks start from here
            feeder = Feeder(x, people, opts.interactions, opts.rate, opts.seed, elsewhere)
            feeder.start()
            waits.start()
            report.complete = _wait(feeder, clock, url, daemons, opts)
        finally:
            report.lock_waits = waits.stop()
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait()
            rusage = []
            for d in daemons:
                if d.poll() is None:
                    d.send_signal(signal.SIGTERM)
                _, status, usage = os.wait4(d.pid, 0)
                d.returncode = os.waitstatus_to_exitcode(status)
                rusage.append(usage)
            for log in logs:
                log.close()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        server1 = server_cpu(opts.state)
        if server0 is not None and server1 is not None:
            report.server_cpu = server1 - server0
        for i, d in enumerate(daemons):
            if d.returncode not in (0, -signal.SIGTERM):
                report.errors.append(f"daemon {i} exited {d.returncode}")
        report.peak_rss_mb = max(u.ru_maxrss for u in rusage) / 1024
        report.daemon_cpu = sum(u.ru_utime + u.ru_stime for u in rusage)
        busy = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        report.standin_cpu = busy - feeder.cpu_seconds
        report.stored_by_network = _stored_by_network(url)
        report.stored = sum(report.stored_by_network.values())
        linked = feeder.linked
        report.expected_written = len(linked)
        report.written = len(linked & clock.written.keys())
        report.rewrites = clock.writes - clock.firsts
        per_post = Counter(str(t.get("Social_Post_Id__c")) for t in sf.records("Task"))
        report.duplicates = sum(n - 1 for n in per_post.values())
        if social_posts:
            per_post = Counter(str(p.get(SOCIAL_POST_KEY)) for p in sf.records("SocialPost"))
            report.duplicates += sum(n - 1 for n in per_post.values())
        if cases:
            made = Counter(str(c.get(SOCIAL_POST_KEY)) for c in sf.records("Case"))
            report.cases = len(made)
            report.duplicates += sum(n - 1 for n in made.values())
        ends = [clock.written[p] for p in linked if p in clock.written]
        report.seconds = (max(ends) if ends else time.time()) - feeder.first
        report.rate = report.stored / report.seconds if report.seconds else 0.0
        latencies = [clock.written[p] - feeder.created[p] for p in linked if p in clock.written]
        report.p50, report.p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
        # Where the time goes: from the post to its poll's store, and from there to the CRM.
        stages = _stage_times(url)
        timed = [(p, *stages[p]) for p in linked if p in clock.written and p in stages]
        report.p95_read = percentile([read - feeder.created[p] for p, read, _ in timed], 0.95)
        report.p95_linked = percentile([max(0.0, at - read) for _, read, at in timed], 0.95)
        report.p95_after_linked = percentile(
            [clock.written[p] - max(read, at) for p, read, at in timed], 0.95
        )
        if len(networks) > 1:
            by_network: dict[str, list[float]] = {}
            for p in linked & clock.written.keys():
                network = p.split(":", 1)[0] if ":" in p else "x"  # X's are bare ids
                by_network.setdefault(network, []).append(clock.written[p] - feeder.created[p])
            report.p95_by_network = {n: percentile(v, 0.95) for n, v in by_network.items()}
        report.x_requests = x.request_count
        report.x_by_endpoint = _by_endpoint(x.requests_by_route)
        report.posts_returned, report.posts_billed = x.usage.posts_returned, x.usage.posts_billed
        report.users_returned = x.usage.users_returned
        # X's reads per new X interaction: the other networks' are not X's to bill.
        x_new = max(report.stored_by_network.get("x", 0), 1)
        report.posts_per_new = report.posts_returned / x_new
        report.billed_posts_per_new = report.posts_billed / x_new
        new = max(report.stored, 1)
        report.sf_calls = sf.api_calls
        report.sf_by_endpoint = _by_endpoint(sf.requests_by_route)
        report.sf_per_1000 = sf.api_calls * 1000 / new
        report.sf_by_kind = dict(kinds.calls.most_common())
        report.sf_queries_by_kind = dict(kinds.queries.most_common())
        report.horizon_cuts = x.store.horizon_cuts
        if elsewhere is not None:
            for name, server in (
                ("mastodon", elsewhere.mastodon),
                ("bluesky", elsewhere.bluesky),
                ("meta", elsewhere.meta),
            ):
                if server is not None:
                    report.requests_by_network[name] = server.request_count
        _drop(opts, schema)
    return report


class LockWaits(threading.Thread):
    """Samples the sessions of the bench's PostgreSQL database every 50 ms: how many wait
    for a lock, and for which kind (issue 21: several instances must not lose throughput to
    lock waits). Every session of that database counts, so nothing else should use it
    during a run. Reading pg_stat_activity costs the server little; nothing on SQLite."""

    EVERY = 0.05

    def __init__(self, url: str | None, schema: str | None) -> None:
        super().__init__(daemon=True)
        self.url, self.schema = url, schema
        self.seconds: Counter[str] = Counter()
        self._done = threading.Event()

    def run(self) -> None:
        if self.url is None or self.schema is None:
            return
        engine = create_engine(self.url)
        query = text(
            "SELECT a.wait_event FROM pg_stat_activity a WHERE a.wait_event_type = 'Lock' "
            "AND a.datname = current_database() AND a.pid <> pg_backend_pid()"
        )
        try:
            with engine.connect() as conn:
                while not self._done.wait(self.EVERY):
                    for (event,) in conn.execute(query):
                        self.seconds[str(event)] += self.EVERY
                    conn.rollback()
        finally:
            engine.dispose()

    def stop(self) -> dict[str, float]:
        self._done.set()
        if self.is_alive():
            self.join(5)
        return dict(self.seconds.most_common())


def server_cpu(url: str | None) -> float | None:
    """CPU seconds the local PostgreSQL server has used so far: its postmaster and every
    process it started, ended ones included (reaped, they count in the postmaster's children
    times). None on SQLite, or when the server is not on this machine."""
    if url is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")

    def fields(pid: int) -> list[str]:
        raw = Path(f"/proc/{pid}/stat").read_text()
        return raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "

    engine = create_engine(url)
    try:
        with engine.connect() as conn:  # its backend's parent, read while it lives
            backend = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
            postmaster = int(fields(backend)[1])
    except OSError:
        return None  # not on this machine
    finally:
        engine.dispose()
    try:
        own = fields(postmaster)
        total = sum(int(v) for v in own[11:15])  # utime stime cutime cstime
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    f = fields(int(entry.name))
                    if int(f[1]) == postmaster:
                        total += int(f[11]) + int(f[12])
    except OSError:
        return None  # not on this machine
    return total / tick


def soql_kind(soql: str) -> str:
    """What a query the resolver or writer sends is for, by its shape (see
    connectors/salesforce/identity/)."""
    q = " ".join(soql.split())
    if "FROM SocialPersona" in q:
        return "personas"
    if "MasterRecordId" in q:
        return "survivors"
    if "SystemModstamp" in q and "ORDER BY SystemModstamp" in q:
        return "changes"
    if "ORDER BY Id LIMIT" in q:
        return "keys copy"
    if re.search(r"LIMIT \d+$", q):
        return "candidates"
    if re.match(r"SELECT Id, \w+ FROM \w+ WHERE Id IN", q):
        return "persona parents"
    if " IN (" in q:
        return "lookup"
    return "other query"


class CallKinds:
    """Counts the Salesforce stand-in's calls (as billed: a composite is one) by kind, and
    every query by kind, composite subrequests included."""

    def __init__(self, sf: SalesforceSandbox) -> None:
        self.calls: Counter[str] = Counter()
        self.queries: Counter[str] = Counter()
        self._lock = threading.Lock()
        sf.on_request("*", self._see)

    def _see(self, req: Request) -> None:
        if req.endpoint == "query":
            kind = soql_kind(req.query.get("q", ""))
            with self._lock:
                self.queries[kind] += 1
                if not req.subrequest:
                    self.calls[kind] += 1
            return
        if req.subrequest:
            return
        if req.endpoint == "composite_request":
            subs = (req.json() or {}).get("compositeRequest") or []
            kind = "+".join(sorted({_sub_kind(s) for s in subs}))
        else:
            kind = f"{req.method} {req.endpoint} {req.params.get('sobject', '')}".strip()
        with self._lock:
            self.calls[kind] += 1


def _sub_kind(sub: dict[str, object]) -> str:
    """A composite subrequest's kind: its query's, or the write it makes (``PATCH Task``)."""
    url = urlsplit(str(sub.get("url")))
    if q := parse_qs(url.query).get("q"):
        return soql_kind(q[0])
    parts = url.path.split("/sobjects/", 1)
    sobject = parts[1].split("/", 1)[0] if len(parts) == 2 else url.path.rsplit("/", 1)[-1]
    return f"{sub.get('method')} {sobject}"


def _by_endpoint(routes: dict[str, int]) -> dict[str, int]:
    """Request counts by a readable route: ``GET /2/users/:id/mentions``."""
    out: dict[str, int] = {}
    for route, n in routes.items():
        method, pattern = route.split(" ", 1)
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r":\1", pattern.strip("^$").removesuffix("/?"))
        name = f"{method} {path.removeprefix('/services/data/v:version')}"
        out[name] = out.get(name, 0) + n
    return {k: v for k, v in out.items() if v}


def _profile(pid: int) -> subprocess.Popen[bytes] | None:
    """BENCH_PYSPY=FILE samples the first daemon with py-spy (pip install py-spy)."""
    out = os.environ.get("BENCH_PYSPY")
    if not out:
        return None
    py_spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    cmd = [py_spy, "record", "-r", "100", "-f", "raw", "--gil", "-o", out, "--pid", str(pid)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# Nothing more written this long after the last post: stop waiting. Longer than gap recovery
# waits for X's search to catch up (30 s), so posts recovered past the horizon are counted.
STALL_SECONDS = 45.0


def _wait(
    feeder: Feeder, clock: WriteClock, url: str, daemons: list[subprocess.Popen[bytes]], o: Options
) -> bool:
    """Until every interaction is stored and every linked one written, or it stalls (posts
    lost past X's horizon are never written)."""
    progress, last_change = -1, time.monotonic()
    while True:
        time.sleep(0.2)
        if all(d.poll() is not None for d in daemons):
            return False
        if len(clock.written) != progress:
            progress, last_change = len(clock.written), time.monotonic()
        if not feeder.done:
            continue
        if feeder.linked <= clock.written.keys() and _stored(url) >= o.interactions:
            return True
        if time.monotonic() - last_change > STALL_SECONDS:
            return False


def sf_target(r: Report) -> float:
    """The Salesforce calls per 1,000 a run may make: each history target's writes are
    their own calls (issue 20: at most 12 with a Task and a SocialPost per post)."""
    return TARGET_SF_PER_1000 * len(r.history)


def ok(r: Report, o: Options) -> dict[str, bool]:
    return {
        "rate": r.rate >= TARGET_RATE,
        "sf": r.sf_per_1000 <= sf_target(r),
        "posts": r.posts_per_new <= TARGET_POSTS_PER_NEW,
        "latency": r.p95 <= o.poll + TARGET_LATENCY_SLACK,
        "rss": r.peak_rss_mb <= TARGET_RSS_MB,
        "complete": r.complete and r.written == r.expected_written and r.duplicates == 0,
    }


def show(r: Report, o: Options, baseline: NaiveReport | None) -> None:
    def mark(good: bool) -> str:
        return "ok" if good else "MISSED"

    k = ok(r, o)
    print(
        f"syncd, {r.instances} instance(s): {r.interactions:,} interactions to {o.accounts} "
        f"brands at {o.rate:,.0f}/s, {o.authors:,} authors ({o.linked:.0%} linked), "
        f"polled every {o.poll:g} s, API latency {describe_latency(r.latency)}"
    )
    print(f"  stored / written     {r.stored:,} / {r.written:,} of {r.expected_written:,} "
          f"(duplicates in the CRM: {r.duplicates})  {mark(k['complete'])}")  # fmt: skip
    if r.networks != ["x"]:
        stored = ", ".join(f"{n} {c:,}" for n, c in sorted(r.stored_by_network.items()))
        asked = ", ".join(f"{n} {c:,}" for n, c in r.requests_by_network.items())
        print(f"  networks             {', '.join(r.networks)}: stored {stored}; requests {asked}")
        p95 = ", ".join(f"{n} {v:.2f} s" for n, v in sorted(r.p95_by_network.items()))
        print(f"  p95 latency by network  {p95}")
    print(f"  seconds              {r.seconds:.1f}")
    print(f"  interactions/s       {r.rate:,.0f}   target ≥ {TARGET_RATE:,.0f}  {mark(k['rate'])}")
    by = ", ".join(f"{e} {n:,}" for e, n in sorted(r.x_by_endpoint.items(), key=lambda i: -i[1]))
    print(f"  X requests           {r.x_requests:,} ({by})")
    print(f"  X posts read / new   {r.posts_per_new:.3f} as returned, "
          f"{r.billed_posts_per_new:.3f} as billed   target ≤ {TARGET_POSTS_PER_NEW}  "
          f"{mark(k['posts'])}")  # fmt: skip
    print(f"  X user objects read  {r.users_returned:,}")
    if r.history != ["task"]:
        print(f"  history              {', '.join(r.history)} (each post written once to each)")
    if r.cases >= 0:
        print(f"  cases                {r.cases:,} opened ([crm.cases]: their calls are counted)")
    print(f"  Salesforce calls     {r.sf_calls:,} ({r.sf_per_1000:.2f} per 1,000)   "
          f"target ≤ {sf_target(r):g}  {mark(k['sf'])}")  # fmt: skip
    top = sorted(r.sf_by_endpoint.items(), key=lambda i: -i[1])
    print("    " + ", ".join(f"{e} {n:,}" for e, n in top))
    print("    calls by kind: " + ", ".join(f"{k} {n:,}" for k, n in r.sf_by_kind.items()))
    print(
        "    queries by kind: " + ", ".join(f"{k} {n:,}" for k, n in r.sf_queries_by_kind.items())
    )
    print(f"  latency p50 / p95    {r.p50:.2f} s / {r.p95:.2f} s   "
          f"target p95 ≤ {o.poll + TARGET_LATENCY_SLACK:g} s  {mark(k['latency'])}")  # fmt: skip
    print(f"    p95 by stage: post → stored {r.p95_read:.2f} s, stored → author linked "
          f"{r.p95_linked:.2f} s, both → written {r.p95_after_linked:.2f} s")  # fmt: skip
    unit = " ".join(f"{k}={v}" for k, v in service_environment().items())
    print(f"  peak RSS             {r.peak_rss_mb:.0f} MB   target ≤ {TARGET_RSS_MB:.0f} MB  "
          f"{mark(k['rss'])}  (as its systemd unit runs it: {unit or 'no variables'})")  # fmt: skip
    total = r.daemon_cpu + r.standin_cpu
    print(f"  CPU seconds          syncd {r.daemon_cpu:.1f}, stand-ins {r.standin_cpu:.1f} "
          f"({r.standin_cpu / total if total else 0:.0%} of both)")  # fmt: skip
    per = 1000 / max(r.stored, 1)
    server = f", PostgreSQL {r.server_cpu * per:.2f} s" if r.state == "postgresql" else ""
    print(f"  CPU per 1,000        syncd {r.daemon_cpu * per:.2f} s{server}, stand-ins "
          f"{r.standin_cpu * per:.2f} s (2 cores: 2 CPU-seconds a second in all)")  # fmt: skip
    if r.state == "postgresql":
        waited = sum(r.lock_waits.values())
        per = waited * 1000 / max(r.stored, 1)
        kinds = ", ".join(f"{k} {v:.1f} s" for k, v in r.lock_waits.items()) or "none seen"
        print(f"  lock waits           {waited:.1f} s in all, {per:.2f} s per 1,000 ({kinds})")
    per = 1000 / max(r.stored, 1)
    print(f"  claim conflicts      {r.rewrites:,} records sent again after they were stored "
          f"({r.rewrites * per:.2f} per 1,000; polls duplicated show in X requests)")  # fmt: skip
    if r.horizon_cuts:
        print(f"  walks cut at X's 800-mention horizon: {r.horizon_cuts} (gap recovery searched)")
    for e in r.errors:
        print(f"  error: {e}")
    if baseline is None:
        return
    show_naive(baseline)
    speedup = baseline.projected_seconds / r.seconds if r.seconds else 0.0
    sf_ratio = r.sf_per_1000 / baseline.sf_per_1000 if baseline.sf_per_1000 else 0.0
    print("syncd / naive")
    # The ratios compare equal work only if both wrote all they should, under one latency.
    equal = (
        r.written == r.expected_written
        and baseline.written == baseline.expected_written
        and r.latency == baseline.latency
    )
    print(f"  written              syncd {r.written:,} of {r.expected_written:,}, naive "
          f"{baseline.written:,} of {baseline.expected_written:,} "
          f"(on {baseline.interactions:,} interactions)  "
          f"{'equal work' if equal else 'UNEQUAL WORK: the ratios below mislead'}")  # fmt: skip
    print(f"  wall time            1 / {speedup:,.1f}   target ≥ {TARGET_SPEEDUP:g}×  "
          f"{mark(speedup >= TARGET_SPEEDUP)}")  # fmt: skip
    print(f"  Salesforce calls     {sf_ratio:.4f}")
    print(f"  p95 latency          {r.p95 / baseline.p95 if baseline.p95 else 0:.4f}")


def state_ratios(
    reports: list[Report], sqlite: Report | None
) -> list[tuple[str, float, float, bool]]:
    """PostgreSQL against SQLite (one instance each), several instances against one, and
    each PostgreSQL instance's peak RSS against SQLite's: (what, ratio, target, met)."""
    out: list[tuple[str, float, float, bool]] = []
    one = next((r for r in reports if r.instances == 1), None)
    if sqlite is not None and one is not None and one.state == "postgresql":
        ratio = one.rate / sqlite.rate if sqlite.rate else 0.0
        out.append(("PostgreSQL / SQLite interactions/s", ratio, TARGET_PG_RATIO,
                    ratio >= TARGET_PG_RATIO))  # fmt: skip
    if sqlite is not None:
        for r in reports:
            # SQLite's over PostgreSQL's: at least 1 when an instance takes no more.
            ratio = sqlite.peak_rss_mb / r.peak_rss_mb if r.peak_rss_mb else 0.0
            out.append((f"peak RSS, SQLite / each of {r.instances} on PostgreSQL", ratio,
                        1.0, ratio >= 1.0))  # fmt: skip
    for r in reports:
        if one is not None and r.instances > 1:
            ratio = r.rate / one.rate if one.rate else 0.0
            out.append((f"{r.instances} instances / 1 instance interactions/s", ratio,
                        TARGET_INSTANCES_RATIO, ratio >= TARGET_INSTANCES_RATIO))  # fmt: skip
    return out


def _naive(opts: Options, n: int, latency: str) -> NaiveReport:
    """``bench/naive.py`` on ``n`` of the workload's interactions, projected to all of them,
    under the same ``latency`` as syncd's run."""
    done = subprocess.run(
        [sys.executable, HERE / "naive.py", str(n), *opts.argv(), f"--latency={latency}", "--json"],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return NaiveReport(**json.loads(done.stdout.splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    Options.add_arguments(parser)
    parser.add_argument("--instances", default="1", help="e.g. 1,2,3 (PostgreSQL only above 1)")
    parser.add_argument("--naive", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--naive-interactions",
        type=int,
        default=None,
        help="Run the naive pattern on fewer interactions and project its wall time linearly "
        "(it is bound by two calls per post). Default: the same number as syncd.",
    )
    parser.add_argument("--scale", action="store_true", help="Per-interaction cost by state size.")
    networks_arg(parser)
    latency_arg(parser)
    parser.add_argument(
        "--history",
        default="task",
        help="[crm] history: task, social_post or task,social_post (default: task).",
    )
    parser.add_argument(
        "--cases",
        action="store_true",
        help='[crm.cases] open = "all": each conversation a Case (its calls are counted).',
    )
    parser.add_argument(
        "--sqlite-baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="With --state postgresql…: run the same workload on SQLite first and print "
        "PostgreSQL's ratio to it (default).",
    )
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()
    opts = Options.from_args(ns)
    if ns.scale:
        json_flag = ["--json"] if ns.json else []
        raise SystemExit(
            subprocess.call([sys.executable, HERE / "growth.py", *opts.argv(), *json_flag])
        )
    counts = [int(c) for c in ns.instances.split(",")]
    postgresql = (opts.state or "").startswith("postgresql")
    if ns.networks != ("x",) and ns.naive:
        print("the naive pattern reads X alone: left out with --networks", file=sys.stderr)
        ns.naive = False
    if max(counts) > 1 and not postgresql:
        parser.error("--instances above 1 needs --state postgresql+psycopg://… (SQLite state "
                     "is single-instance)")  # fmt: skip
    reports: list[Report] = []
    sqlite: Report | None = None
    history = tuple(ns.history.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        if postgresql and ns.sqlite_baseline:
            # The same workload on SQLite first, in this run: the ratio PostgreSQL must reach.
            print("syncd on SQLite (the baseline) …", file=sys.stderr)
            lite = replace(opts, state=None)
            sqlite = run_syncd(lite, 1, Path(tmp), ns.networks, history, ns.latency, ns.cases)
        for n in counts:
            print(f"syncd with {n} instance(s) …", file=sys.stderr)
            reports.append(
                run_syncd(opts, n, Path(tmp), ns.networks, history, ns.latency, ns.cases)
            )
    baseline = None
    if ns.naive:
        n = ns.naive_interactions or opts.interactions
        print(f"the naive pattern on {n:,} interactions …", file=sys.stderr)
        baseline = _naive(opts, n, ns.latency)
    good = all(all(ok(r, opts).values()) for r in reports)
    scaling = state_ratios(reports, sqlite)
    good = good and all(met for _, _, _, met in scaling)
    if baseline is not None:
        # A naive run cut short (stalled, out of API calls) measured less work than syncd's.
        equal = baseline.written == baseline.expected_written
        good = good and equal and baseline.projected_seconds >= TARGET_SPEEDUP * reports[0].seconds
    if ns.json:
        out = {"syncd": [asdict(r) for r in reports], "ok": good}
        if sqlite is not None:
            out["sqlite"] = asdict(sqlite)
        if baseline is not None:
            out["naive"] = asdict(baseline)
        print(json.dumps(out))
    else:
        if sqlite is not None:
            show(sqlite, opts, None)
        for r in reports:
            show(r, opts, baseline if r is reports[0] else None)
        if len(reports) > 1 or sqlite is not None:
            # A walk cut at X's horizon is caught up by search once X has indexed the posts
            # (tens of seconds): that run's interactions/s measures the wait, not the work.
            print("state        instances  interactions/s   p95 s  peak RSS MB  lock waits s/1,000"
                  "  sent again/1,000  walks cut")  # fmt: skip
            for r in ([sqlite] if sqlite else []) + reports:
                waits = sum(r.lock_waits.values()) * 1000 / max(r.stored, 1)
                again = r.rewrites * 1000 / max(r.stored, 1)
                print(f"  {r.state:<12} {r.instances:<8} {r.rate:>14,.0f} {r.p95:>7.2f} "
                      f"{r.peak_rss_mb:>12.0f} {waits:>12.2f} {again:>17.2f} "
                      f"{r.horizon_cuts:>10}")  # fmt: skip
            for what, ratio, target, met in scaling:
                mark = "ok" if met else "MISSED"
                print(f"  {what:<52} {ratio:.2f}×   target ≥ {target:g}×  {mark}")
    raise SystemExit(0 if good else 1)


if __name__ == "__main__":
    main()
