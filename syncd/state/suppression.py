"""Forgotten people stay forgotten: a suppression list of keyed hashes, and redaction.

``syncd forget`` removes a person from state; without more, the next poll or backfill that
meets one of their posts would store them again. So forget also records them here, as
HMAC-SHA256 digests (under a random key made once per installation, kept in state) of their
network user id and of every handle they had, never the values themselves. Ingest asks the
list in the transaction that stores each page: posts by a forgotten person (or the brand's
replies to them) are dropped and counted, their profile is not stored, and others' posts
that name them are stored with the naming redacted.

The hashes only hide the values from someone reading the table: anyone holding the state
database (and so the key) can still test whether a given id or handle was forgotten. That is
what a block list is for.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from syncd.model import Interaction, Page
from syncd.state.coordination import shared
from syncd.state.tables import forget_state, suppressed

USER_ID = "user_id"
HANDLE = "handle"
REDACTED = "[forgotten]"
# Dict keys whose whole string value is a handle (X: entities.mentions[].username).
HANDLE_KEYS = frozenset({"username", "handle", "screen_name"})
_MENTION = re.compile(r"(?<![A-Za-z0-9_])@([A-Za-z0-9_]+)")
_DIGITS = re.compile(r"(?<![0-9])[0-9]+(?![0-9])")
_BARE_HANDLE = re.compile(r"@?[A-Za-z0-9_]+")


def fold(handle: str) -> str:
    return handle.strip().removeprefix("@").casefold()


def _key(conn: Connection) -> bytes | None:
    salt = conn.scalar(select(forget_state.c.salt).where(forget_state.c.id == 1))
    return bytes.fromhex(salt) if salt else None


def _insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT with ON CONFLICT (as ``ingest.insert_for``, which imports this)."""
    return (postgresql.insert if shared(conn) else sqlite.insert)(table)


def _ensure_key(conn: Connection, now: datetime) -> bytes:
    conn.execute(
        _insert(conn, forget_state).on_conflict_do_nothing(),
        {"id": 1, "salt": secrets.token_hex(32), "generation": 0, "updated_at": now},
    )
    key = _key(conn)
    assert key is not None
    return key


def digest(key: bytes, network: str, kind: str, value: str) -> str:
    message = f"{network}\x00{kind}\x00{value}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def generation(conn: Connection) -> int:
    """How many forgets this installation has run: a writer compares it before and after a
    CRM write to tell whether anyone was forgotten while the write was under way."""
    return int(conn.scalar(select(forget_state.c.generation).where(forget_state.c.id == 1)) or 0)


def suppress(
    conn: Connection, network: str, user_id: str, handles: Iterable[str], now: datetime
) -> None:
    """Add the person (their user id and every handle) to the list, and count a forget."""
    key = _ensure_key(conn, now)
    person = digest(key, network, USER_ID, user_id)
    rows = [{"kind": USER_ID, "digest": person}] + [
        {"kind": HANDLE, "digest": digest(key, network, HANDLE, fold(h))}
        for h in sorted({fold(h) for h in handles if fold(h)})
    ]
    conn.execute(
        _insert(conn, suppressed).on_conflict_do_nothing(),
        [{**r, "network": network, "person": person, "created_at": now} for r in rows],
    )
    conn.execute(
        update(forget_state)
        .where(forget_state.c.id == 1)
        .values(generation=forget_state.c.generation + 1, updated_at=now)
    )


def lift(conn: Connection, network: str, user: str) -> int:
    """Take the person named by a user id or any handle of theirs off the list (every row of
    theirs); returns the rows removed."""
    key = _key(conn)
    if key is None:
        return 0
    given = user.strip().removeprefix("@")
    asked = [digest(key, network, USER_ID, given), digest(key, network, HANDLE, fold(given))]
    people = select(suppressed.c.person).where(
        suppressed.c.network == network, suppressed.c.digest.in_(asked)
    )
    stmt = delete(suppressed).where(
        suppressed.c.network == network, suppressed.c.person.in_(people)
    )
    return int(conn.execute(stmt).rowcount)


def count(conn: Connection) -> int:
    """People on the list."""
    stmt = select(func.count(func.distinct(suppressed.c.person)))
    return int(conn.scalar(stmt) or 0)


@dataclass(frozen=True)
class Redactor:
    """Removes a person from text and JSON: ``@handle`` mentions, their user id where it
    stands alone as digits, a handle standing alone under a handle key, their name."""

    is_id: Callable[[str], bool]
    is_handle: Callable[[str], bool]  # given a case-folded handle without '@'
    names: tuple[str, ...] = ()

    def text(self, value: str) -> str:
        out = _MENTION.sub(
            lambda m: "@" + REDACTED if self.is_handle(m.group(1).casefold()) else m.group(0),
            value,
        )
        out = _DIGITS.sub(lambda m: REDACTED if self.is_id(m.group(0)) else m.group(0), out)
        for name in self.names:
            out = re.sub(
                r"(?<!\w)" + re.escape(name) + r"(?!\w)", REDACTED, out, flags=re.IGNORECASE
            )
        return out

    def value(self, value: Any, key: str | None = None) -> Any:
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            return REDACTED if self.is_id(str(value)) else value
        if isinstance(value, str):
            if key in HANDLE_KEYS and _BARE_HANDLE.fullmatch(value) and self.is_handle(fold(value)):
                return REDACTED
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value


def for_person(user_id: str, handles: Iterable[str], name: str | None) -> Redactor:
    """A redactor for one known person (``forget`` itself). A name is redacted only where it
    stands whole, and only one of three characters or more: a shorter one would take letters
    out of everyone's words."""
    folded = frozenset(fold(h) for h in handles if fold(h))
    names = (name.strip(),) if name and len(name.strip()) >= 3 else ()
    return Redactor(lambda s: s == user_id, folded.__contains__, names)


@dataclass(frozen=True)
class Blocklist:
    """The list for one network, as ingest asks it (values hashed as they come)."""

    network: str
    key: bytes
    user_ids: frozenset[str]
    handles: frozenset[str]

    def blocks_user(self, user_id: str | None) -> bool:
        return bool(user_id) and digest(self.key, self.network, USER_ID, str(user_id)) in (
            self.user_ids
        )

    def blocks_handle(self, handle: str | None) -> bool:
        return bool(handle) and digest(self.key, self.network, HANDLE, fold(str(handle))) in (
            self.handles
        )

    def redactor(self) -> Redactor:
        # Only digit runs and handles are hashed and asked: a name cannot be, since the list
        # keeps none (a forgotten person's name in others' words stays a limit, see README).
        return Redactor(self.blocks_user, self.blocks_handle)


def blocklist(conn: Connection, network: str) -> Blocklist | None:
    """The network's list, or None when nobody on it was forgotten (then ingest does nothing
    more: one indexed read per page)."""
    rows = conn.execute(
        select(suppressed.c.kind, suppressed.c.digest).where(suppressed.c.network == network)
    ).all()
    if not rows:
        return None
    key = _key(conn)
    if key is None:  # rows without a key cannot be matched; not expected
        return None
    ids = frozenset(d for k, d in rows if k == USER_ID)
    handles = frozenset(d for k, d in rows if k == HANDLE)
    return Blocklist(network, key, ids, handles)


def screen(conn: Connection, network: str, page: Page) -> tuple[Page, int]:
    """The page as ingest may store it, and how many posts it dropped: posts by a
    forgotten person and the brand's replies to one are dropped, their profile too; others'
    posts, profiles and bad items naming them are kept, redacted."""
    blocked = blocklist(conn, network)
    if blocked is None:
        return page, 0
    redactor = blocked.redactor()
    kept: list[Interaction] = []
    for i in page.interactions:
        if blocked.blocks_user(i.author_id) or blocked.blocks_user(i.counterpart_id):
            continue
        text, raw = redactor.text(i.text), redactor.value(i.raw)
        kept.append(i if text == i.text and raw == i.raw else replace(i, text=text, raw=raw))
    authors = tuple(
        a if a.description is None else replace(a, description=redactor.text(a.description))
        for a in page.authors
        if a.network != network or not blocked.blocks_user(a.user_id)
    )
    bad = tuple(replace(q, raw=redactor.value(q.raw)) for q in page.quarantined)
    screened = replace(page, interactions=tuple(kept), authors=authors, quarantined=bad)
    return screened, len(page.interactions) - len(kept)


def unforgotten_keys(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the local copy of CRM keys (``crm_keys``) that name nobody forgotten: a
    Contact a rep keeps with a forgotten person's id or handle stays in the CRM, but
    syncd's copy of it is not made again by a later load."""
    lists: dict[str, Blocklist | None] = {}
    kept = []
    for row in rows:
        network = str(row["network"])
        if network not in lists:
            lists[network] = blocklist(conn, network)
        blocked = lists[network]
        if blocked is None or not (
            blocked.blocks_user(row.get("user_id")) or blocked.blocks_handle(row.get("handle"))
        ):
            kept.append(row)
    return kept
