"""The walk of a Meta inbox, Messenger's or Instagram Direct's: the same Conversations API
[doc: messenger conversations; IG conversations-api], asked with a different ``platform``.

A walk reads the inbox's threads, most recently active first, back to the walk's floor, and
each thread that moved since its mark (``thread:<id>``: its ``updated_time`` and the newest
message read) for its new messages, in one call: Graph details only a thread's 20 newest
messages, so more than that since the mark is a gap no poll can close (:class:`Collected`
``gap``; the walk ends ``cut``). Each stream keeps its own marks, as the posts' walk does.

What differs between the two inboxes is an :class:`Inbox`: the platform, the path of the
conversations edge, what a warning calls a thread, and the setting that turns the reading
off. The account whose messages are outbound, and the scope of a participant's id, are the
walked :class:`~syncd.model.Account`'s id (:func:`~connectors.meta.parse.parse_messages`): the
Page for Messenger (its Page-scoped ids), the Instagram account for Direct (its IGSIDs, the
same ids its comments carry, so the resolver meets one person in both)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.meta.client import PermissionDenied
from connectors.meta.parse import clip, conversation_url, parse_messages
from connectors.meta.walk import (
    OBJECT_ID,
    Collected,
    MetaSource,
    WalkToken,
    after_cursor,
    as_int,
    data_time,
    iso,
    left_for_next_walk,
    mark_fields,
    moved_mark,
)
from syncd.model import Account, Cursor, Stream

__all__ = [
    "MESSAGES_PAGE",
    "MESSAGE_DETAILS",
    "THREADS",
    "THREAD_FIELDS",
    "Inbox",
    "walk_threads",
]


MESSAGE_DETAILS = 20  # "you can only get details about the 20 most recent messages"
MESSAGES_PAGE = 25  # one messages call: more than the 20 with details, to see a gap
THREAD_FIELDS = "id,updated_time,link,participants"  # Messenger's (``link``: its inbox URL)
MESSAGE_FIELDS = "id,created_time,from,to,message"
THREADS = "threads"  # the walk's phase (WalkToken.phase) while it reads an inbox
_MARK = "thread:"


@dataclass(frozen=True)
class Inbox:
    """One inbox as a source reads it.

    ``platform``: the Conversations API's ``platform`` (``messenger``, ``instagram``);
    ``path``: its conversations edge (``{page-id}/conversations``, ``me/conversations``);
    ``fields``: a thread's fields asked for (``id``, ``updated_time`` and ``participants``
    at least: the one answered when the brand's message names no recipient); ``thread``:
    what a warning calls one of its threads; ``setting``: the source setting that stops
    reading it; ``needs``: the permissions it takes, named when Meta refuses without naming
    one."""

    platform: str
    path: str
    fields: str
    thread: str
    setting: str
    needs: str


def walk_threads(
    source: MetaSource,
    inbox: Inbox,
    account: Account,
    stream: Stream,
    cursor: Cursor,
    token: WalkToken,
    got: Collected,
    now: datetime,
) -> WalkToken | None:
    """One page of the inbox's threads and the new messages of those that moved; the next
    page's token, or None at the walk's end. A refusal for want of a permission ends the
    walk with a warning: the inbox is not read, what the walk read before it stands (a raise
    would leave the walk's token on this phase, and every later poll would stop here)."""
    floor = int(source._floor(cursor, now).timestamp())
    params: dict[str, str | int] = {
        "platform": inbox.platform,
        "fields": inbox.fields,
        "limit": source.page_size,
    }
    if token.after is not None:
        params["after"] = token.after
    try:
        listing = source._list(inbox.path, params)
    except PermissionDenied as exc:
        named = ", ".join(exc.permissions) or inbox.needs
        said = (
            f"{inbox.thread}s not read: Meta refused for want of a permission ({named}; "
            f"it needs {inbox.needs}); grant it and issue a new token, or set "
            f"{inbox.setting} = false"
        )
        got.warnings.append(said)
        return None
    threads = [t for t in listing.data if isinstance(t, dict)]
    for thread in threads:
        thread_id = thread.get("id")
        updated = data_time(thread, "updated_time")
        if not isinstance(thread_id, str) or not OBJECT_ID.fullmatch(thread_id):
            continue
        if updated is None:
            continue
        key = f"{_MARK}{thread_id}"
        mark = cursor.marks.get(key)
        was_updated, read_to, last_id = mark_fields(mark, 3)
        if mark is None and updated < floor:
            continue
        if mark is not None and (as_int(was_updated) or 0) >= updated:
            continue
        since = as_int(read_to) if mark is not None and as_int(read_to) is not None else floor
        left = f"{updated - 1}|{since or 0}|{last_id}"  # not read: its messages from since
        with left_for_next_walk(got, key, left, f"{inbox.thread} {clip(thread_id, 40)}"):
            _messages(
                source, inbox, account, stream, thread, since or 0, last_id, got, key, updated
            )
    nxt = after_cursor(listing, source.network)
    oldest = min((t for th in threads if (t := data_time(th, "updated_time"))), default=None)
    if nxt is not None and oldest is not None and oldest >= floor:
        return WalkToken(THREADS, after=nxt)
    edge = int((now - source.watch_window).timestamp())
    for key, value in cursor.marks.items():
        if key.startswith(_MARK) and key not in got.marks:  # not one this walk read
            moved = as_int(mark_fields(value, 1)[0])
            if moved is not None and moved < edge:
                got.marks[key] = None
    return None


def _messages(
    source: MetaSource,
    inbox: Inbox,
    account: Account,
    stream: Stream,
    thread: Mapping[str, Any],
    since: int,
    last_id: str,
    got: Collected,
    key: str,
    updated: int,
) -> None:
    """A moved thread's messages newer than its mark, newest first, one call: Graph
    details only the 20 newest, so more than that since the mark is a gap."""
    thread_id = str(thread["id"])
    answer = source._list(
        f"{thread_id}/messages", {"fields": MESSAGE_FIELDS, "limit": MESSAGES_PAGE}
    )
    items = [m for m in answer.data if isinstance(m, dict)]
    fresh: list[dict[str, Any]] = []
    reached = False
    for message in items:
        at = data_time(message, "created_time")
        if message.get("id") == last_id or (at is not None and at < since):
            reached = True
            break
        fresh.append(message)
    detailed = [m for m in fresh if "from" in m or "message" in m]
    beyond = [m for m in fresh if m not in detailed]
    if beyond or (not reached and answer.next_query is not None):
        stamps = [t for m in beyond or fresh if (t := data_time(m, "created_time"))]
        got.gap = iso(datetime.fromtimestamp(max(stamps) if stamps else updated, UTC))
        got.warnings.append(
            f"{inbox.thread} {clip(thread_id, 40)}: more than {MESSAGE_DETAILS} messages "
            "arrived since the last poll; Graph details only the 20 newest (a gap)"
        )
    participants = thread.get("participants")
    people = participants.get("data") if isinstance(participants, dict) else None
    translated = parse_messages(
        detailed,
        account,
        network=source.network,
        conversation_id=thread_id,
        conversation_url=conversation_url(thread.get("link")),
        participants=people if isinstance(people, list) else (),
    )
    got.add(translated, stream)
    newest = next(
        ((t, str(m["id"])) for m in detailed if (t := data_time(m, "created_time"))), None
    )
    read_to, read_id = (str(newest[0]), newest[1]) if newest else (str(since), last_id)
    got.marks[key] = f"{moved_mark(updated, source.clock())}|{read_to}|{read_id}"
