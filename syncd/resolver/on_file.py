"""The id and handle matchers from a local copy of what the CRM has on file.

Asking the CRM which people carry a batch's user ids and handles costs a query or two per
object for every 200 authors, for data that changes rarely. When the CRM can list those
people (``keys_on_file``) and tell what changed (``people_changes``), the resolver keeps a
copy in state: loaded page by page (resumable), kept current by the change watch, reloaded
whole once a day (a deletion shows up no other way; a write that finds its person gone
drops it at once). Until a first load ends, look-ups go to the CRM as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from syncd.contracts import Crm
from syncd.errors import AuthError, ExternalError
from syncd.model import CrmRef, IdentityKey, KeysOnFile, KeysPage, Match
from syncd.resolver.chain import Lookup
from syncd.state import crm_keys
from syncd.state.db import Database

log = logging.getLogger("syncd.resolver")

RELOAD_EVERY = timedelta(days=1)


def matches(keys: Sequence[IdentityKey], people: Sequence[KeysOnFile]) -> dict[IdentityKey, Match]:
    """Decide each key as the CRM look-up does: object by object in the CRM's order (a
    Contact before a Lead), the immutable user id before the handle; two people matching
    the same way is ambiguous and never guessed (nor is a later object asked). A handle
    held by a person carrying another user id of the network is no match: it is returned
    as that (``held_user_id``) only when no later object holds the key's own user id."""
    by_id: dict[tuple[int, str, str], dict[str, CrmRef]] = {}
    by_handle: dict[tuple[int, str, str], dict[str, tuple[CrmRef, str | None]]] = {}
    for person in people:
        for k in person.keys:
            user_id = (k.user_id or "").strip()
            if user_id:
                by_id.setdefault((person.rank, k.network, user_id), {})[person.ref.id] = person.ref
            if handle := crm_keys.fold_handle(k.handle):
                by_handle.setdefault((person.rank, k.network, handle), {})[person.ref.id] = (
                    person.ref,
                    user_id or None,
                )
    ranks = sorted({p.rank for p in people})
    found: dict[IdentityKey, Match] = {}
    for key in keys:
        handle, user_id = crm_keys.fold_handle(key.handle), key.user_id.strip()
        other_owner: Match | None = None
        for rank in ranks:
            if ids := by_id.get((rank, key.network, user_id), {}):
                if len(ids) == 1:
                    found[key] = Match(next(iter(ids.values())), "crm_user_id")
                else:
                    log.warning("%d people match %s by crm_user_id: not guessed", len(ids), key)
                break
            hits = by_handle.get((rank, key.network, handle), {}) if handle else {}
            if other_owner is not None or not hits:
                continue  # after another owner's handle, only the key's own id decides
            if len(hits) > 1:
                log.warning("%d people match %s by crm_handle: not guessed", len(hits), key)
                break
            ((ref, held),) = hits.values()
            if held is None or held == user_id:
                found[key] = Match(ref, "crm_handle")
                break
            other_owner = Match(ref, "crm_handle", held)
        else:
            if other_owner is not None:
                found[key] = other_owner
    return found


def lookup(db: Database, crm_name: str) -> Lookup:
    """The look-up the resolver's id and handle step calls, answered from the copy."""

    def ask(keys: Sequence[IdentityKey]) -> Mapping[IdentityKey, Match]:
        with db.connect() as conn:
            people = crm_keys.find(conn, crm_name, keys)
        return matches(keys, people)

    return ask


def refresh(
    db: Database,
    crm_name: str,
    crm: Crm,
    clock: Callable[[], datetime],
    retrying: Callable[[Callable[[], Any]], Any],
    stopping: Callable[[], bool],
) -> bool:
    """Load the copy when it is due (never loaded, a load under way, or a day old) and
    say whether it can be used. Each page is stored in its own transaction with the cursor,
    so a stop resumes where it was; a failing CRM leaves the copy as it was (used if it was
    ever whole) and the load goes on next round."""
    with db.connect() as conn:
        state = crm_keys.load_state(conn, crm_name)
    now = clock()
    due = (
        state.started_at is not None
        or state.loaded_at is None
        or now - state.loaded_at >= RELOAD_EVERY
    )
    cursor = state.cursor if state.started_at is not None else None
    try:
        while due and not stopping():
            page: KeysPage | None = retrying(partial(crm.keys_on_file, cursor))
            if page is None:
                return False  # this CRM cannot list them: look-ups go to the CRM
            with db.transaction() as conn:
                if state.started_at is None:
                    crm_keys.begin_load(conn, crm_name, now)
                    state = crm_keys.LoadState(None, now, state.loaded_at)
                done = crm_keys.store_page(conn, crm_name, page, clock())
            if done:
                log.info("copy of the CRM's network ids and handles loaded")
                break
            cursor = page.next
    except AuthError:
        raise
    except ExternalError as exc:
        log.warning("could not load the CRM's network ids and handles (will go on): %s", exc)
    with db.connect() as conn:
        return crm_keys.load_state(conn, crm_name).loaded_at is not None


def reload_soon(db: Database, crm_name: str, now: datetime) -> None:
    """More people changed than one watch answer lists: read them all again, now."""
    with db.transaction() as conn:
        if crm_keys.load_state(conn, crm_name).started_at is None:
            crm_keys.begin_load(conn, crm_name, now)
