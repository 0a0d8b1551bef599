"""A writer that has sent a person's records to the CRM, and not yet stored the answer, when
`syncd forget` runs: nothing of theirs is left in the CRM once both are done, and a post of
someone else naming them, written unredacted in that same batch, is written again redacted.
On PostgreSQL forget waits for the writer's claim; on SQLite (nothing claimed) the writer
deletes the record itself when it stores the answer. Real CRM calls to the sandbox; the
writer is held between the call and storing its answer by events, never by sleeps."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from support.e2e import World, make_world, poll_once, tasks

from connectors.salesforce.crm import SalesforceCrm
from sandbox.seed import seed
from syncd.compliance import forget as forgetting
from syncd.config import settings as config
from syncd.contracts import Crm
from syncd.model import HistoryRecord, WriteResult
from syncd.pipeline import DeliverResult, Pipeline
from syncd.service.app import App
from syncd.state.coordination import shared
from syncd.state.db import Database
from syncd.state.tables import deliveries, metadata

KAY_ID, KAY, KAY_NAME = "4242424242424242", "kay_forgetme", "Kay Forget"


@pytest.fixture
def world(migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(migrated_url, tmp_path, monkeypatch) as w:
        w.config.write_text(
            w.config.read_text().replace("[resolver]\n", '[resolver]\nunmatched = "lead"\n', 1)
        )
        yield w


class HeldWriter:
    """The CRM, except that the first history upsert, once the CRM has answered it, waits
    for ``go`` before handing the answer back (a writer slow to store its answer)."""

    def __init__(self, crm: Crm) -> None:
        self.crm = crm
        self.sent = threading.Event()
        self.go = threading.Event()
        self._first = True

    def upsert_history(self, records: Sequence[HistoryRecord]) -> Sequence[WriteResult]:
        answers = self.crm.upsert_history(records)
        if self._first:
            self._first = False
            self.sent.set()
            assert self.go.wait(60), "never let go"
        return answers

    def __getattr__(self, name: str) -> Any:
        return getattr(self.crm, name)


def names_kay(value: Any) -> bool:
    blob = json.dumps(value, default=str).lower()
    return KAY_ID in blob or KAY in blob or KAY_NAME.lower() in blob


def test_a_write_under_way_when_forget_runs_leaves_nothing_behind(world: World) -> None:
    x, sf = world.x, world.sf
    sf.add_field("Lead", "X_User_Id__c", external_id=True, unique=True)
    people = seed(x, sf, customers=4)
    bob = next(c for c in people.customers if c.kind == "contact_by_id")
    assert poll_once(world)[0] == 0  # the first start
    x.add_user(KAY, KAY_NAME, user_id=KAY_ID)
    x.add_post(KAY_ID, "@acme where is my parcel?")
    bobs = x.add_post(bob.user_id, f"@acme @{KAY} has the same problem")

    loaded = config.load(world.config)
    app = App(loaded)
    held = HeldWriter(app.crm)
    app.pipeline.writer.crm = held  # type: ignore[assignment]
    other_db = Database(loaded.state.url)  # forget's, as another process's would be
    crm = SalesforceCrm.from_settings(loaded.crm)
    try:
        for job in app.jobs("acme-x"):
            app.poll(job)
        assert app.pipeline.resolve().leads == 1  # Kay's Lead
        wrote: list[DeliverResult] = []
        writer = threading.Thread(target=lambda: wrote.append(app.pipeline.deliver()))
        writer.start()
        assert held.sent.wait(60)
        assert len(tasks(sf)) == 2  # Kay's and Bob's, the answers not yet stored

        waiting = threading.Event()
        done: list[forgetting.Forgotten] = []
        failed: list[BaseException] = []

        def step(what: str) -> None:
            if what == "waiting for writes under way":
                waiting.set()

        def forget() -> None:
            try:
                done.append(
                    forgetting.forget(
                        other_db, "x", KAY, crm_name=loaded.crm.name, crm=crm, lease=60.0,
                        progress=step,
                    )
                )  # fmt: skip
            except BaseException as exc:
                failed.append(exc)
                raise
            finally:
                waiting.set()

        forgetter = threading.Thread(target=forget)
        forgetter.start()
        if shared(other_db.dialect):
            # The writer's claim holds forget until the answer is stored.
            assert waiting.wait(60) and forgetter.is_alive()
        else:
            # Nothing is claimed: forget returns while the write is still under way.
            forgetter.join(60)
            assert done and len(tasks(sf)) == 2
        held.go.set()
        writer.join(60)
        forgetter.join(60)
        assert not writer.is_alive() and not forgetter.is_alive() and not failed
        assert wrote and done
        # The writer wrote Bob's post again with Kay redacted (SQLite), or forget did (after
        # waiting for the writer's claim, PostgreSQL): either way, once both are done…
        assert tasks(sf)[f"x:{bobs['id']}"]["Description"].startswith(
            "@acme @[forgotten] has the same problem"
        )
        with sf.lock:
            objects = [t.name for t in sf.store.tables()]
        assert [(o, r) for o in objects for r in sf.records(o) if names_kay(r)] == []
        with other_db.connect() as conn:
            rows = [
                (t.name, tuple(r))
                for t in metadata.sorted_tables
                for r in conn.execute(select(t))
                if names_kay([str(v) for v in r])
            ]
            states = conn.scalars(select(deliveries.c.state)).all()
        assert rows == []
        assert states == ["written"]  # Bob's, written again
    finally:
        held.go.set()
        crm.close()
        other_db.dispose()
        app.close()


class ForgetDuringLead:
    """The CRM, except that right after it made a Lead, the person is forgotten (another
    process's `syncd forget --crm`, run here where the resolver would be storing the link)."""

    def __init__(self, crm: Crm, forget: Any) -> None:
        self.crm = crm
        self.forget = forget
        self.forgotten: list[forgetting.Forgotten] = []

    def upsert_lead(self, profile: Any) -> Any:
        made = self.crm.upsert_lead(profile)
        self.forgotten.append(self.forget())
        return made

    def __getattr__(self, name: str) -> Any:
        return getattr(self.crm, name)


def test_a_lead_made_while_forget_runs_is_deleted_and_the_resolver_goes_on(
    world: World,
) -> None:
    x, sf = world.x, world.sf
    sf.add_field("Lead", "X_User_Id__c", external_id=True, unique=True)
    seed(x, sf, customers=4)
    assert poll_once(world)[0] == 0  # the first start
    x.add_user(KAY, KAY_NAME, user_id=KAY_ID)
    x.add_post(KAY_ID, "@acme where is my parcel?")
    loaded = config.load(world.config)
    app = App(loaded)
    other_db = Database(loaded.state.url)
    crm = SalesforceCrm.from_settings(loaded.crm)
    racing = ForgetDuringLead(
        app.crm,
        lambda: forgetting.forget(other_db, "x", KAY, crm_name=loaded.crm.name, crm=crm, lease=60),
    )
    app.pipeline.crm = racing  # type: ignore[assignment]
    try:
        for job in app.jobs("acme-x"):
            app.poll(job)
        # The resolver's own run (not the daemon's job, which forget would wait for on
        # PostgreSQL): it asked the CRM about Kay before forget, and stores after it.
        result = Pipeline.resolve(app.pipeline)
        assert racing.forgotten and result.leads == 0
        assert [r for r in sf.records("Lead") if r.get("X_User_Id__c") == KAY_ID] == []
        with other_db.connect() as conn:
            rows = [
                (t.name, tuple(r))
                for t in metadata.sorted_tables
                for r in conn.execute(select(t))
                if names_kay([str(v) for v in r])
            ]
        assert rows == []
    finally:
        crm.close()
        other_db.dispose()
        app.close()
