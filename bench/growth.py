"""Per-interaction cost by state size (issue 7): ``python bench/growth.py``, or
``python bench/throughput.py --scale``, which hands over to it with its workload options.

For each size N (10k, 100k, 1M), a fresh SQLite state database is brought where a running
service stands (one untimed ``App.cycle``: brands known, cursors at the head, the CRM's ids
copied), then filled in bulk, timed apart, with N written interactions and N/5 authors (80 %
linked; the rest held, with 2 % of N deliveries pending). NEW mentions are then posted at once
to the stand-ins of :mod:`common` and ``App.cycle`` (poll, resolve, deliver) runs in this
process until every linked one is in the CRM stand-in. Per interaction: wall and CPU (this
process: syncd and the stand-ins), time in the state database, statements. The outbox's and
resolver's hot queries and the daemon's metrics snapshot are timed at every size, and their
query plans printed at the largest, wide reads of big tables flagged (``!`` the table, ``~``
a whole index, or a range bounded only by CRM, network or state). State is never ANALYZEd,
as syncd never does: these are the plans it gets.

    BENCH_SCALE_SIZES=2000,20000   other sizes, comma-separated
    BENCH_SCALE_NEW=1000           mentions in the measured workload (default 5,000)

Exit 0 when the CPU per interaction at the largest size is within 1.5x the smallest's (CPU:
wall time also shows other work on the machine) and every linked post was written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from common import (
    SECRETS,
    UNLIMITED,
    Feeder,
    Options,
    WriteClock,
    daemon_config,
    salesforce_standin,
    seed,
    x_standin,
)
from sqlalchemy import Engine, event

from syncd.config.settings import load
from syncd.model import IdentityKey
from syncd.service.app import App
from syncd.service.metrics import StateView
from syncd.state import crm_keys, outbox

SIZES = (10_000, 100_000, 1_000_000)
NEW = 5_000
CRITERION = 1.5  # largest size's CPU per interaction ≤ this × the smallest's
LINKED = 0.8  # of the prefilled authors
HELD_EVERY = 50  # one prefilled interaction in 50 (2 %) is pending, for a held author
MAX_CYCLES = 10
PREFILL_USER = 9_000_000_000  # prefilled X user ids: far above the stand-in's (1,000,000,001…)
PREFILL_POST = 1_700_000_000_000_000_000  # prefilled post ids: below the stand-in's (older)
CHUNK = 50_000  # rows per prefill transaction
BIG = "interactions|deliveries|identities|links|link_events|identity_handles|crm_keys"
SCAN = re.compile(rf"\bSCAN ({BIG})\b")
SEARCH = re.compile(rf"\bSEARCH ({BIG}) USING .*INDEX \S+ \((.*)\)")
NARROW = ("crm", "network", "state")  # a few values each: a range on them alone is wide


@dataclass
class Row:
    size: int
    setup_s: float = 0.0  # seeding the stand-ins and the first cycle (not measured)
    prefill_s: float = 0.0
    new: int = 0
    complete: bool = False
    cycles: int = 0
    workload_s: float = 0.0
    wall_ms: float = 0.0  # all per new interaction
    cpu_ms: float = 0.0
    db_ms: float = 0.0
    statements: float = 0.0
    db_mb: float = 0.0
    peak_rss_mb: float = 0.0  # this process so far: stand-ins and the prefill's cache too
    hot_ms: dict[str, float] = field(default_factory=dict)
    top_us: dict[str, float] = field(default_factory=dict)  # µs per interaction, top 20


class Meter:
    """Time and count every statement the state database runs, by statement shape."""

    def __init__(self, engine: Engine) -> None:
        self.seconds, self.statements = 0.0, 0
        self.by_sql: dict[str, float] = {}
        self.captured: list[tuple[str, Any]] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, _cur: Any, sql: str, params: Any, *_: Any) -> None:
        conn.info.setdefault("meter", []).append(time.perf_counter())
        self.captured.append((sql, params))

    def _after(self, conn: Any, _cur: Any, sql: str, *_: Any) -> None:
        took = time.perf_counter() - conn.info["meter"].pop()
        self.seconds += took
        self.statements += 1
        # IN lists render one "?" per value: one shape whatever their length.
        shape = re.sub(r"\?(, \?)+", "?…", " ".join(sql.split()))
        self.by_sql[shape] = self.by_sql.get(shape, 0.0) + took


def _ts(t: datetime) -> str:
    """A UTC datetime as SQLAlchemy stores it on SQLite."""
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _bulk(db: sqlite3.Connection, table: str, cols: str, rows: Iterable[tuple[Any, ...]]) -> None:
    sql = f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(cols.split(',')))})"
    it = iter(rows)
    while chunk := list(islice(it, CHUNK)):
        db.execute("BEGIN")
        db.executemany(sql, chunk)
        db.execute("COMMIT")


def prefill(path: Path, n: int, crm: str, brands: list[str], now: datetime) -> None:
    """N written interactions and their authors, as a long-running service would hold them.
    Raw sqlite3 with synchronous=OFF: a crash can only lose this fixture."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-262144")
    top = {
        t: db.execute(f"SELECT coalesce(max(id), 0) FROM {t}").fetchone()[0]
        for t in ("identities", "interactions")
    }
    people = max(n // 5, 2)
    linked = int(people * LINKED)
    first = top["identities"] + 1
    at, stamp = _ts(now - timedelta(days=30)), now.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    later = _ts(now + timedelta(hours=6))  # the held are in back-off: not due now
    _bulk(db, "identities", "id, network, user_id, handle, display_name, first_seen_at, "
          "updated_at, resolve_after, resolve_attempts", (
        (first + k, "x", str(PREFILL_USER + k), f"pre{k}", f"Prefilled Person {k}", at, at,
         None if k < linked else later, 0 if k < linked else 5) for k in range(people)
    ))  # fmt: skip
    _bulk(db, "identity_handles", "identity_id, handle, first_seen_at, last_seen_at",
          ((first + k, f"pre{k}", at, at) for k in range(people)))  # fmt: skip
    _bulk(db, "links", "identity_id, crm, crm_object, crm_id, crm_name, matcher, score, "
          "reasons, created_by, created_at",
          ((first + k, crm, "Contact", f"003{k:015d}", f"Person {k}", "crm_user_id", 1.0,
            '["X user id on file"]', "resolver", at) for k in range(linked)))  # fmt: skip
    _bulk(db, "link_events", "identity_id, crm, action, crm_object, crm_id, matcher, actor, at",
          ((first + k, crm, "link", "Contact", f"003{k:015d}", "crm_user_id", "resolver", at)
           for k in range(linked)))  # fmt: skip
    _bulk(db, "crm_keys", "crm, record_id, object, name, rank, stamp, network, user_id, seen_at",
          ((crm, f"003{k:015d}", "Contact", f"Person {k}", 0, stamp, "x",
            str(PREFILL_USER + k), _ts(now)) for k in range(linked)))  # fmt: skip

    def author(i: int) -> int:  # the held's share of posts is small: they post once or twice
        if i % HELD_EVERY == 0:
            return linked + (i // HELD_EVERY) % (people - linked)
        return (i * 7919) % linked

    def when(i: int) -> str:  # two months of history, oldest first
        return _ts(now - timedelta(days=60) + i * timedelta(days=59) / n)

    def posts() -> Iterator[tuple[Any, ...]]:
        for i in range(n):
            k, pid, t, brand = author(i), str(PREFILL_POST + i), when(i), brands[i % len(brands)]
            text, user = f"@{brand} question {i} about my order", str(PREFILL_USER + k)
            raw = (
                f'{{"id": "{pid}", "author_id": "{user}", "created_at": "{t}", "lang": "en", '
                f'"conversation_id": "{pid}", "text": "{text}", "edit_history_tweet_ids": '
                f'["{pid}"], "entities": {{"mentions": [{{"start": 0, "username": "{brand}"}}]}}}}'
            )  # about the size of the payloads the stand-in serves
            yield (top["interactions"] + 1 + i, "x", pid, "x", brand, "mentions", "inbound",
                   user, first + k, text, t, f"https://x.com/pre{k}/status/{pid}", pid, raw,
                   t)  # fmt: skip

    _bulk(db, "interactions", "id, network, post_id, source, account, stream, direction, "
          "author_id, counterpart_identity_id, text, created_at, url, conversation_id, raw, "
          "fetched_at", posts())  # fmt: skip

    def outbox_rows() -> Iterator[tuple[Any, ...]]:
        for i in range(n):
            t, held = when(i), i % HELD_EVERY == 0
            yield (top["interactions"] + 1 + i, first + author(i), crm,
                   "pending" if held else "written", 0 if held else 1,
                   None if held else f"00T{i:015d}", t, t, None if held else t)  # fmt: skip

    _bulk(db, "deliveries", "interaction_id, identity_id, crm, state, attempts, crm_record_id, "
          "created_at, updated_at, written_at", outbox_rows())  # fmt: skip
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the measured run starts with a small WAL
    db.close()


def _hot(app: App) -> dict[str, Callable[[], object]]:
    """The outbox's and resolver's queries, with the limits the pipeline uses, and the
    metrics snapshot (``syncd run`` reads it every 15 s under systemd, and per scrape)."""
    crm, now = app.settings.crm.name, app.pipeline.clock()
    keys = [IdentityKey("x", str(PREFILL_USER + k), f"pre{k}") for k in range(0, 2000, 10)]

    def reading(fn: Callable[[Any], object]) -> Callable[[], object]:
        def run() -> object:
            with app.db.connect() as conn:
                return fn(conn)

        return run

    return {
        "ready_deliveries": reading(lambda c: outbox.ready_deliveries(c, crm, now, 5000)),
        "identities_to_resolve": reading(lambda c: outbox.identities_to_resolve(c, crm, now, 200)),
        "held_count": reading(lambda c: outbox.held_count(c, crm)),
        "crm_keys.find (200)": reading(lambda c: crm_keys.find(c, crm, keys)),
        "metrics snapshot": lambda: StateView(lambda: app).snapshot(max_age=0),
    }


def _flag(detail: str) -> str:
    """'!' a big table read whole; '~' a whole index, or a range only a CRM, network or
    state bounds (every pending delivery, every key of the CRM): its cost grows with state."""
    if SCAN.search(detail):
        return "~" if "INDEX" in detail else "!"
    found = SEARCH.search(detail)
    if found and all(term.split("=")[0] in NARROW for term in found[2].split(" AND ")):
        return "~"
    return " "


def _plans(app: App, meter: Meter) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN of every SELECT each hot query ran, indented, scans flagged."""
    out: dict[str, list[str]] = {}
    for name, call in _hot(app).items():
        meter.captured.clear()
        call()
        lines: list[str] = []
        for sql, params in [c for c in meter.captured if c[0].lstrip().startswith("SELECT")]:
            lines.append("-- " + " ".join(sql.split())[:150])
            with app.db.connect() as conn:
                plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all()
            depth: dict[int, int] = {0: 0}
            for node, parent, _, detail in plan:
                depth[node] = depth.get(parent, 0) + 1
                lines.append(f"{_flag(detail)} {'  ' * depth[node]}{detail}")
        out[name] = lines
    return out


def measure(opts: Options, size: int, new: int, explain: bool) -> tuple[Row, dict[str, Any]]:
    row = Row(size=size)
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as tmp,
        x_standin(rate_limits=UNLIMITED) as x,
        salesforce_standin() as sf,
    ):
        people = seed(
            x, sf, accounts=opts.accounts, authors=opts.authors, linked=opts.linked, seed=opts.seed
        )
        clock = WriteClock(sf)
        path = Path(tmp) / "state.db"
        config = Path(tmp) / "config.toml"
        brands = [handle for handle, _ in people.brands]
        config.write_text(daemon_config(f"sqlite:///{path}", x.url, sf.url, brands, opts.poll))
        os.environ.update(SECRETS.environ())
        app = App(load(config))
        try:
            app.open()
            app.cycle()  # as a live service: brands' ids known, cursors at the head, CRM ids copied
            row.setup_s = time.perf_counter() - started
            t0 = time.perf_counter()
            prefill(path, size, app.settings.crm.name, brands, app.pipeline.clock())
            row.prefill_s = time.perf_counter() - t0
            feeder = Feeder(x, people, new, rate=1e12, seed=opts.seed)  # all at once
            feeder.start()
            feeder.join()
            meter = Meter(app.db.engine)
            w0, c0 = time.perf_counter(), time.process_time()
            while row.cycles < MAX_CYCLES and not row.complete:
                report = app.cycle()
                row.cycles += 1
                row.new += sum(p.new for p in report.polls.values())
                row.complete = feeder.linked <= clock.written.keys()
            row.workload_s = time.perf_counter() - w0
            per = 1000 / max(row.new, 1)
            row.wall_ms, row.cpu_ms = row.workload_s * per, (time.process_time() - c0) * per
            row.db_ms, row.statements = meter.seconds * per, meter.statements / max(row.new, 1)
            top = sorted(meter.by_sql.items(), key=lambda kv: -kv[1])[:20]
            row.top_us = {sql: s * 1e6 / max(row.new, 1) for sql, s in top}
            row.hot_ms = {  # one call, the median of three
                name: statistics.median(timeit.repeat(call, number=1, repeat=3)) * 1000
                for name, call in _hot(app).items()
            }
            plans = _plans(app, meter) if explain else {}
        finally:
            app.close()
        row.db_mb = sum(p.stat().st_size for p in Path(tmp).glob("state.db*")) / 2**20
    row.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row, plans


def show(rows: list[Row], plans: dict[str, list[str]], good: bool, why: str) -> None:
    print("state rows  setup s  prefill s  workload s  new   ms/int  CPU ms/int  DB ms/int  "
          "stmts/int  DB MB  peak RSS MB")  # fmt: skip
    for r in rows:
        print(f"{r.size:>10,} {r.setup_s:>8.1f} {r.prefill_s:>10.1f} {r.workload_s:>11.2f} "
              f"{r.new:>5,} {r.wall_ms:>7.3f} {r.cpu_ms:>11.3f} {r.db_ms:>10.3f} "
              f"{r.statements:>10.3f} {r.db_mb:>6.0f} {r.peak_rss_mb:>12.0f}"
              f"{'' if r.complete else '  INCOMPLETE'}")  # fmt: skip
    print("\nhot query, ms per call  " + "".join(f"{r.size:>12,}" for r in rows))
    for name in rows[0].hot_ms:
        print(f"  {name:<22}" + "".join(f"{r.hot_ms[name]:>12.2f}" for r in rows))
    print(f"\nslowest statements at {rows[-1].size:,} rows, µs per interaction (at each size)")
    for sql, _ in list(rows[-1].top_us.items())[:5]:
        at = [f"{r.top_us[sql]:>9.1f}" if sql in r.top_us else f"{'-':>9}" for r in rows]
        print("  " + "".join(at) + f"  {sql[:90]}")
    for name, lines in plans.items():
        print(f"\nquery plan: {name} at {rows[-1].size:,} rows")
        for line in lines:
            print("  " + line)
    print(f"\n{why}: {'ok' if good else 'MISSED'}")


def main(opts: Options, as_json: bool = False) -> int:
    sizes = [int(s) for s in os.environ.get("BENCH_SCALE_SIZES", "").split(",") if s.strip()]
    sizes = sorted(sizes or SIZES)
    new = int(os.environ.get("BENCH_SCALE_NEW") or NEW)
    if opts.state:
        print("--scale measures SQLite state; --state is not used", file=sys.stderr)
    rows: list[Row] = []
    plans: dict[str, list[str]] = {}
    for size in sizes:
        print(f"{size:,} state rows …", file=sys.stderr)
        row, found = measure(opts, size, new, explain=size == sizes[-1])
        rows.append(row)
        plans = found or plans
    first, last = rows[0], rows[-1]
    ratio = last.cpu_ms / first.cpu_ms if first.cpu_ms else float("inf")
    db_ratio = last.db_ms / first.db_ms if first.db_ms else float("inf")
    good = ratio <= CRITERION and all(r.complete for r in rows)
    why = (f"CPU per interaction at {last.size:,} rows = {ratio:.2f}x that at {first.size:,} "
           f"(target ≤ {CRITERION}x, every linked post written; time in the state database: "
           f"{db_ratio:.2f}x)")  # fmt: skip
    if as_json:
        print(json.dumps({"sizes": [asdict(r) for r in rows], "plans": plans, "ratio": ratio,
                          "db_ratio": db_ratio, "criterion": why, "ok": good}))  # fmt: skip
    else:
        show(rows, plans, good, why)
    return 0 if good else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    Options.add_arguments(parser)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()
    sys.exit(main(Options.from_args(ns), as_json=ns.json))
