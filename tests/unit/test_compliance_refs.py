"""The deleted-posts check hands each source the refs its posts were read with
(``Interaction.ref``, kept in state), so a post whose key cannot be looked up where it was read
(a Mastodon status of another instance) is checked too; a source that sets no refs is asked as
before, without them. Against the fake source, on both backends."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select, update
from support.fake_crm import FakeCrm
from support.fake_source import T0, FakeNetwork, FakeSource

from syncd.compliance import deleted as compliance
from syncd.contracts import RecordOutcome
from syncd.model import Account, Cursor, DeliveryState, Stream
from syncd.state import ingest
from syncd.state.db import Database
from syncd.state.tables import deliveries, interactions

DAY = timedelta(days=1)


def read_in(
    db: Database, net: FakeNetwork, source: FakeSource, targets: Sequence[str] = ("task",)
) -> Account:
    account = net.accounts(["acme"])["acme"]
    page = source.fetch(account, Stream.MENTIONS, Cursor())
    with db.transaction() as conn:
        ingest.ingest_page(
            conn,
            source="src",
            network="fake",
            account=account,
            stream=Stream.MENTIONS,
            page=page,
            crms=["sf"],
            brand_ids={account.user_id},
            now=T0,
            targets=targets,
        )
    return account


def written(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute(update(deliveries).values(state=DeliveryState.WRITTEN, written_at=T0))


def check(db: Database, source: FakeSource) -> compliance.ComplianceReport:
    return compliance.run(
        db,
        "sf",
        FakeCrm(),
        {"src": source},
        horizon=30 * DAY,
        interval=DAY,
        action="delete",
        now=T0 + 2 * DAY,
    )


def world() -> tuple[FakeNetwork, FakeSource]:
    net = FakeNetwork()
    net.add_user("acme")
    net.add_user("fan")
    return net, FakeSource(net)


def test_a_post_read_by_its_ref_is_checked_by_it(db: Database) -> None:
    net, source = world()
    fan = net.by_handle("fan")
    assert fan is not None
    remote = net.add_post(fan.id, "@acme my order number is 12345", ref="here/1")
    plain = net.add_post(fan.id, "@acme thanks")
    read_in(db, net, source)
    written(db)
    with db.connect() as conn:
        stored = dict(conn.execute(select(interactions.c.post_id, interactions.c.ref)).all())
    assert stored == {remote.id: "here/1", plain.id: None}
    net.delete_post(remote.id)
    report = check(db, source)
    assert (report.checked, report.deleted, report.undecided) == (2, 1, 0)
    assert source.looked_up == [([remote.id, plain.id], {remote.id: "here/1"})]


def test_a_source_that_sets_no_refs_is_asked_without_them(db: Database) -> None:
    class BeforeRefs(FakeSource):
        """A connector written before refs existed: lookup_posts takes the ids alone."""

        # Narrower than the contract on purpose: the core must not pass what it cannot take.
        def lookup_posts(self, post_ids: Sequence[str]) -> tuple[set[str], set[str]]:  # type: ignore[override]
            return super().lookup_posts(post_ids)

    net = FakeNetwork()
    net.add_user("acme")
    fan = net.add_user("fan")
    source = BeforeRefs(net)
    gone = net.add_post(fan.id, "@acme one")
    net.add_post(fan.id, "@acme two")
    read_in(db, net, source)
    written(db)
    net.delete_post(gone.id)
    report = check(db, source)
    assert (report.checked, report.deleted, report.undecided) == (2, 1, 0)
    assert [refs for _, refs in source.looked_up] == [None]


def test_a_post_deleted_before_its_write_is_found_by_its_ref(db: Database) -> None:
    net, source = world()
    fan = net.by_handle("fan")
    assert fan is not None
    remote = net.add_post(fan.id, "@acme my order number is 12345", ref="here/1")
    read_in(db, net, source)
    with db.connect() as conn:
        pending = list(conn.scalars(select(deliveries.c.id)))
    net.delete_post(remote.id)
    held = compliance.before_write(
        db, {"src": source}, pending, seen_before=T0 + DAY, now=T0 + 2 * DAY
    )
    assert held == set(pending)
    assert source.looked_up == [([remote.id], {remote.id: "here/1"})]


class RefusingCrm(FakeCrm):
    """Refuses to delete the records whose id starts with ``refuse`` (a second target's)."""

    def __init__(self, refuse: str | None) -> None:
        super().__init__()
        self.refuse = refuse
        self.asked: list[str] = []

    def delete_history(self, record_ids: Sequence[str]) -> list[RecordOutcome]:
        self.asked += record_ids
        return [
            RecordOutcome(i, False, "INSUFFICIENT_ACCESS", "no")
            if self.refuse and i.startswith(self.refuse)
            else RecordOutcome(i, True)
            for i in record_ids
        ]


def test_a_post_written_to_two_targets_is_acted_on_once_both_records_are(db: Database) -> None:
    net, source = world()
    fan = net.by_handle("fan")
    assert fan is not None
    doomed = net.add_post(fan.id, "@acme my card number is 4111")
    read_in(db, net, source, ("task", "social_post"))
    with db.transaction() as conn:
        for target, prefix in (("task", "00T"), ("social_post", "0ST")):
            conn.execute(
                update(deliveries)
                .where(deliveries.c.target == target)
                .values(state=DeliveryState.WRITTEN, written_at=T0, crm_record_id=prefix + "1")
            )
    net.delete_post(doomed.id)

    def run(crm: FakeCrm) -> compliance.ComplianceReport:
        return compliance.run(
            db, "sf", crm, {"src": source}, horizon=30 * DAY, interval=DAY,
            action="delete", now=T0 + 2 * DAY,
        )  # fmt: skip

    refusing = RefusingCrm("0ST")
    report = run(refusing)
    assert (report.checked, report.deleted, report.acted, report.failed) == (1, 1, 1, 1)
    assert sorted(refusing.asked) == ["00T1", "0ST1"]
    # Not done: the next run deletes both again (the Task's delete is harmless twice).
    willing = RefusingCrm(None)
    report = run(willing)
    assert (report.acted, report.failed) == (2, 0)
    assert sorted(willing.asked) == ["00T1", "0ST1"]
    assert run(RefusingCrm(None)).acted == 0
