"""`syncd forget` is a block: ingest drops a forgotten person's posts and redacts them from
others', the list holds only keyed hashes, `--unsuppress` lifts it; quarantined items whose
ids arrived as JSON numbers are forgotten too. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select

from syncd.compliance import forget as forgetting
from syncd.model import (
    Account,
    Author,
    CrmRef,
    Cursor,
    Direction,
    Interaction,
    KeyOnFile,
    KeysOnFile,
    Page,
    Quarantined,
    Stream,
)
from syncd.state import crm_keys as keys_state
from syncd.state import ingest
from syncd.state.db import Database
from syncd.state.tables import (
    crm_keys,
    deliveries,
    identities,
    interactions,
    metadata,
    quarantine,
    suppressed,
)

BRAND = Account("x", "acme", "100")
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
KAY_ID, KAY, KAY_NAME = "4242424242424242", "kay_forgetme", "Kay Forget"
BOB_ID = "5151"


def post(post_id: str, author_id: str, text: str, raw: dict[str, Any] | None = None) -> Interaction:
    return Interaction(
        network="x",
        post_id=post_id,
        account="acme",
        stream=Stream.MENTIONS,
        direction=Direction.INBOUND,
        author_id=author_id,
        counterpart_id=author_id,
        text=text,
        created_at=T0 + timedelta(minutes=int(post_id) % 1000),
        url=f"https://x.com/u/status/{post_id}",
        raw=raw or {"id": post_id, "author_id": author_id, "text": text},
    )


def reply_to_kay(post_id: str) -> Interaction:
    return Interaction(
        network="x",
        post_id=post_id,
        account="acme",
        stream=Stream.REPLIES,
        direction=Direction.OUTBOUND,
        author_id=BRAND.user_id,
        counterpart_id=KAY_ID,
        text=f"@{KAY} on its way",
        created_at=T0,
        url=f"https://x.com/acme/status/{post_id}",
        raw={"id": post_id, "in_reply_to_user_id": KAY_ID},
    )


KAY_AUTHOR = Author("x", KAY_ID, KAY, KAY_NAME)
BOB_AUTHOR = Author("x", BOB_ID, "bob", "Bob Other", description="friend of @kay_forgetme")


def bob_naming_kay(post_id: str) -> Interaction:
    return post(
        post_id,
        BOB_ID,
        f"@acme @{KAY} has the same problem",
        {
            "id": post_id,
            "author_id": BOB_ID,
            "text": f"@acme @{KAY} has the same problem",
            "entities": {"mentions": [{"username": KAY, "id": KAY_ID}]},
            # An API (or proxy) sending ids unquoted: still Kay's id.
            "in_reply_to_user_id": int(KAY_ID),
        },
    )


def store(db: Database, *items: Interaction, bad: tuple[Quarantined, ...] = ()) -> Any:
    authors = tuple(a for a in (KAY_AUTHOR, BOB_AUTHOR) if any(a.user_id in
                    (i.author_id, i.counterpart_id) for i in items))  # fmt: skip
    with db.transaction() as conn:
        return ingest.store_page(
            conn,
            source="src",
            network="x",
            account=BRAND,
            page=Page(items, authors, Cursor(), quarantined=bad),
            crms=["sf"],
            brand_ids={BRAND.user_id},
            now=T0,
        )


def naming_kay(db: Database) -> list[tuple[str, str]]:
    """Every row of every state table holding Kay's id, handle or name in any column."""
    found = []
    with db.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                blob = json.dumps([str(v) for v in row], default=str)
                if names_kay(blob):
                    found.append((table.name, blob))
    return found


def names_kay(blob: str) -> bool:
    low = blob.lower()
    return KAY_ID in blob or KAY in low or KAY_NAME.lower() in low


def forget(db: Database, user: str) -> forgetting.Forgotten:
    return forgetting.forget(db, "x", user, crm_name="sf", crm=None, lease=60.0)


def test_forget_blocks_later_pages_and_redacts_others(db: Database) -> None:
    store(db, post("201", KAY_ID, "@acme where is my parcel?"), reply_to_kay("202"))
    store(db, bob_naming_kay("203"))
    with db.connect() as conn:
        # Bob's post arrived before forget: stored as it came.
        assert (
            KAY
            in conn.execute(
                select(interactions.c.text).where(interactions.c.post_id == "203")
            ).scalar_one()
        )

    done = forget(db, f"@{KAY}")
    assert done.removed["interactions"] == 2 and done.redacted == 1
    assert naming_kay(db) == []  # the list holds hashes only
    with db.connect() as conn:
        assert conn.scalar(select(interactions.c.text).where(interactions.c.post_id == "203")) == (
            "@acme @[forgotten] has the same problem"
        )
        assert len(conn.execute(select(suppressed)).all()) == 2  # their id and their handle

    # A later poll (or backfill: the same function stores its pages) meets Kay again.
    result = store(
        db,
        post("301", KAY_ID, "@acme still waiting"),
        reply_to_kay("302"),
        bob_naming_kay("303"),
        bad=(Quarantined("x", "bad created_at", {"id": 304, "author_id": int(KAY_ID)}),),
    )
    assert result.suppressed == 2 and result.new == 1 and result.queued == 1
    assert naming_kay(db) == []
    with db.connect() as conn:
        assert conn.scalar(select(identities.c.id).where(identities.c.user_id == KAY_ID)) is None
        assert conn.scalars(
            select(interactions.c.post_id).order_by(interactions.c.post_id)
        ).all() == [
            "203",
            "303",
        ]
        bob = conn.execute(select(identities).where(identities.c.user_id == BOB_ID)).one()
        assert bob.description == "friend of @[forgotten]"
        bobs = select(interactions.c.id).where(interactions.c.post_id == "303")
        delivery = select(deliveries.c.identity_id).where(deliveries.c.interaction_id.in_(bobs))
        assert conn.scalar(delivery) == bob.id

    # Lifted: the next page stores Kay again.
    assert forgetting.unsuppress(db, "x", KAY) == 2
    assert forgetting.unsuppress(db, "x", KAY) == 0
    assert store(db, post("401", KAY_ID, "@acme hello again")).new == 1
    with db.connect() as conn:
        assert conn.scalar(select(identities.c.handle).where(identities.c.user_id == KAY_ID)) == KAY


def test_numeric_ids_in_quarantine_are_forgotten(db: Database) -> None:
    store(db, post("201", KAY_ID, "@acme hi"))
    now = datetime.now(UTC)
    items = [
        # The author's id arrived as a JSON number.
        {"id": 900, "author_id": int(KAY_ID), "text": "hi"},
        # Kay's own post again, its id a number: the item has no item_id then.
        {"id": 201, "text": "@acme hi"},
        # Someone else's bad item stays.
        {"id": 901, "author_id": int(BOB_ID), "text": "hello"},
    ]
    with db.transaction() as conn:
        for raw in items:
            conn.execute(
                insert(quarantine).values(
                    source="src", network="x", item_id=None, reason="post id is not an X id",
                    raw=raw, created_at=now,
                )
            )  # fmt: skip
    done = forget(db, KAY_ID)
    assert done.removed["quarantine"] == 2
    with db.connect() as conn:
        left = [r["id"] for r in conn.scalars(select(quarantine.c.raw))]
    assert left == [901]


def test_a_forgotten_persons_crm_keys_are_not_copied_again(db: Database) -> None:
    store(db, post("201", KAY_ID, "@acme hi"))
    kays_contact = KeysOnFile(
        CrmRef("Contact", "003000000000001", KAY_NAME), (KeyOnFile("x", KAY_ID, KAY),), 0, "1"
    )
    other = KeysOnFile(CrmRef("Contact", "003000000000002", "Bob Other"), (KeyOnFile("x", BOB_ID),))
    with db.transaction() as conn:
        keys_state.put(conn, "sf", [kays_contact, other], T0)
    forget(db, KAY)
    with db.transaction() as conn:  # the next load of the CRM's keys
        keys_state.put(conn, "sf", [kays_contact, other], T0 + timedelta(days=1))
    with db.connect() as conn:
        assert conn.scalars(select(crm_keys.c.user_id)).all() == [BOB_ID]
    assert naming_kay(db) == []


def test_the_hash_key_is_per_installation(db: Database, tmp_path: Any) -> None:
    store(db, post("201", KAY_ID, "@acme hi"))
    forget(db, KAY)
    other = Database(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        other.upgrade()
        store(other, post("201", KAY_ID, "@acme hi"))
        forget(other, KAY)
        with db.connect() as a, other.connect() as b:
            mine = set(a.scalars(select(suppressed.c.digest)))
            theirs = set(b.scalars(select(suppressed.c.digest)))
        assert len(mine) == 2 and not mine & theirs
    finally:
        other.dispose()
