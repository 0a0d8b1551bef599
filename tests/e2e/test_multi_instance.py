"""Three ``syncd run`` share one PostgreSQL state database; one is SIGKILLed mid-write.

The X and Salesforce stand-ins run in this process; a feeder thread posts mentions of the
brand accounts (and the brand's replies) while three daemons with the same configuration poll,
resolve and write. When the first Task upsert whose deliveries a daemon has claimed reaches
Salesforce, that daemon is killed (as in bench/chaos.py's "crm-batch" kill): its claims stay in
state, and the others must take them over once its lease lapses. At the end every post is one
Task, every delivery is written, nothing but the dead daemon's claim was sent twice, and the
work was shared: several daemons wrote (Salesforce sessions) and polled (their logs).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import BRAND_HANDLES, World, next_post, seed
from sandbox.server import Request
from sandbox.x.api import XSandbox
from syncd.state.db import Database
from syncd.state.tables import deliveries, interactions

pytestmark = pytest.mark.postgres

INSTANCES = 3
POSTS = 240
FEED_SECONDS = 8.0
LEASE_SECONDS = 3.0
CONVERGE_SECONDS = 40.0

CONFIG = """
[state]
url = "{state_url}"

[daemon]
write_interval = "500ms"
resolve_interval = "500ms"
jitter = "200ms"
lease = "{lease}s"

[resolver]
retry_after = "1s"
max_retry_after = "2s"

[writer]
batch_size = 10  # claims of 5 batches: many small ones, for the daemons to share

[[sources]]
name = "x"
type = "x"
bearer_token = "env:MULTI_X_BEARER"
api_base_url = "{x_url}"
accounts = {accounts}
interval = "1s"
page_size = 20
start = "1d"

[crm]
type = "salesforce"
login_url = "{sf_url}"
username = "integration@sandbox.example"
password = "env:MULTI_SF_PASSWORD"
security_token = "env:MULTI_SF_TOKEN"
"""


class Child:
    """One ``syncd run`` (at DEBUG: its log tells which streams it walked)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log_path = log
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "--config", str(config), "--log-level", "DEBUG", "run"],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=os.environ.copy(),
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()


class Feeder(threading.Thread):
    """Posts ``n`` mentions and brand replies over ``seconds``; remembers every post id."""

    def __init__(self, x: XSandbox, world: World, n: int, seconds: float) -> None:
        super().__init__(name="feeder", daemon=True)
        self.x, self.world, self.n, self.seconds = x, world, n, seconds
        self.rng = random.Random(11)
        self.post_ids: list[str] = []

    def run(self) -> None:
        start = time.monotonic()
        for i in range(self.n):
            self.post_ids.append(next_post(self.x, self.world, self.rng)[1])
            time.sleep(max(0.0, start + (i + 1) * self.seconds / self.n - time.monotonic()))


class Writes:
    """Every Task upsert Salesforce received: which session (daemon) sent which posts; and
    the kill: the first daemon caught sending deliveries it claimed, once armed."""

    def __init__(self, db: Database, children: list[Child]) -> None:
        self.db, self.children = db, children
        self.sent: list[tuple[str, str, bool]] = []  # session, post key, after the kill
        self.armed = threading.Event()
        self.killed: Child | None = None
        self.orphans: set[int] = set()  # deliveries the dead daemon held claimed
        self._lock = threading.Lock()

    def __call__(self, req: Request) -> None:
        keys = [str(r["Social_Post_Id__c"]) for r in req.json()["records"]]
        session = req.header("authorization") or ""
        with self._lock:
            if self.armed.is_set() and self.killed is None:
                self._kill_the_sender(keys)
            self.sent += [(session, k, self.killed is not None) for k in keys]

    def _kill_the_sender(self, keys: list[str]) -> None:
        post_ids = [k.removeprefix("x:") for k in keys]
        with self.db.connect() as conn:
            owners = conn.scalars(
                select(deliveries.c.claimed_by)
                .join(interactions, interactions.c.id == deliveries.c.interaction_id)
                .where(interactions.c.post_id.in_(post_ids), deliveries.c.claimed_by.is_not(None))
                .distinct()
            ).all()
        by_pid = {str(c.proc.pid): c for c in self.children}
        for owner in owners:  # host:pid:nonce
            child = by_pid.get(owner.rsplit(":", 2)[1])
            if child is None:
                continue
            child.proc.send_signal(signal.SIGKILL)
            child.proc.wait(10)
            self.killed = child
            with self.db.connect() as conn:
                self.orphans = set(
                    conn.scalars(select(deliveries.c.id).where(deliveries.c.claimed_by == owner))
                )
            return


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[XSandbox, SalesforceSandbox, World]]:
    monkeypatch.setenv("MULTI_X_BEARER", "multi-x-bearer")
    monkeypatch.setenv("MULTI_SF_PASSWORD", "sandbox-password")
    monkeypatch.setenv("MULTI_SF_TOKEN", "sandbox-token")
    unlimited = {n: 10**7 for n in ("mentions", "user_tweets", "user_lookup", "tweet_lookup")}
    with (
        XSandbox(bearer_token="multi-x-bearer", rate_limits=unlimited) as x,
        SalesforceSandbox() as sf,
    ):
        assert isinstance(x, XSandbox) and isinstance(sf, SalesforceSandbox)
        people = seed(x, sf, customers=30, rng_seed=5)
        # Every author is someone the CRM knows: each post has exactly one right Task.
        for c in people.customers:
            if c.crm_id is None:
                c.crm_id = sf.insert("Contact", {"LastName": c.last, "X_User_Id__c": c.user_id})
        yield x, sf, people


@pytest.mark.parametrize("state_url", ["postgresql"], indirect=True)
def test_three_instances_share_the_work_and_survive_one_killed(
    state_url: str, tmp_path: Path, world: tuple[XSandbox, SalesforceSandbox, World]
) -> None:
    x, sf, people = world
    config = tmp_path / "config.toml"
    config.write_text(
        CONFIG.format(
            state_url=state_url,
            x_url=x.url,
            sf_url=sf.url,
            accounts=json.dumps(list(BRAND_HANDLES)),
            lease=LEASE_SECONDS,
        )
    )
    db = Database(state_url)
    children = [Child(config, tmp_path / f"syncd-{n}.log") for n in range(INSTANCES)]
    writes = Writes(db, children)
    sf.on_request("composite", writes, phase="before")
    try:
        wait_for(
            lambda: all("syncd running" in c.log for c in children), 60, "the daemons to start"
        )
        feeder = Feeder(x, people, POSTS, FEED_SECONDS)
        feeder.start()
        wait_for(lambda: len(feeder.post_ids) >= POSTS // 3, 60, "a third of the posts")
        writes.armed.set()
        wait_for(lambda: writes.killed is not None, 60, "a daemon to be killed mid-write")
        feeder.join(FEED_SECONDS * 3)
        expected = {f"x:{p}" for p in feeder.post_ids}

        def settled() -> bool:
            with db.connect() as conn:
                stored = conn.execute(select(func.count()).select_from(deliveries)).scalar_one()
                open_ = conn.execute(
                    select(func.count()).where(
                        (deliveries.c.state != "written") | deliveries.c.claimed_by.is_not(None)
                    )
                ).scalar_one()
            tasks = {str(t["Social_Post_Id__c"]) for t in sf.records("Task")}
            return expected <= tasks and stored == len(expected) and open_ == 0

        wait_for(settled, CONVERGE_SECONDS, "every post to reach Salesforce")
        survivors = [c for c in children if c is not writes.killed]
        assert [c.stop() for c in survivors] == [0] * (INSTANCES - 1)
    finally:
        sf.remove_hooks()
        for c in children:
            if c.proc.poll() is None:
                c.stop(signal.SIGKILL)
        db.dispose()
    assert writes.killed is not None and writes.killed.proc.returncode == -signal.SIGKILL

    # Exactly one Task per post, nothing else.
    tasks = Counter(str(t["Social_Post_Id__c"]) for t in sf.records("Task"))
    assert set(tasks) == expected
    assert [k for k, n in tasks.items() if n != 1] == []

    # The dead daemon held a claim; the others took it over after its lease.
    assert writes.orphans, "the killed daemon had nothing claimed"
    with Database(state_url).engine.connect() as conn:
        orphan_keys = set(
            conn.scalars(
                select(interactions.c.post_id)
                .join(deliveries, deliveries.c.interaction_id == interactions.c.id)
                .where(deliveries.c.id.in_(writes.orphans))
            )
        )
    orphan_keys = {f"x:{p}" for p in orphan_keys}
    after_kill = {k for _, k, after in writes.sent if after}
    assert orphan_keys <= after_kill

    # Claims kept the daemons apart: a post went to Salesforce twice only when its first
    # sender died holding it.
    sends = Counter(k for _, k, _ in writes.sent)
    assert {k for k, n in sends.items() if n > 1} <= orphan_keys

    # The work was shared: several daemons wrote. One daemon walks each stream while it
    # polls and another takes it over once it stops: every stream with new posts was
    # walked by a daemon that lived, those the killed one walked after it died.
    assert len({session for session, _, _ in writes.sent}) >= 2
    walks = re.compile(r"syncd\.x\.(\S+): (\w+): \d+ new, ")
    streams = {m.groups() for c in children for m in walks.finditer(c.log)}
    survived = {m.groups() for c in survivors for m in walks.finditer(c.log)}
    assert len(streams) == 2 * len(BRAND_HANDLES) and survived == streams
    for c in children:
        assert "Traceback" not in c.log, c.log[-3000:]
