"""The walk of a Meta inbox, Messenger's or Instagram Direct's: the same Conversations API
[doc: messenger conversations; IG conversations-api], asked with a different ``platform``.

A walk reads the inbox's threads, most recently active first, back to the walk's floor, and
each thread that moved since its mark (``thread:<id>``: its ``updated_time`` and the newest
message read) for its new messages, in one call: Graph details only a thread's 20 newest
messages, so more than that since the mark is a gap no poll can close (:class:`Collected`
``gap``; the walk ends ``cut``). Each stream keeps its own marks, as the posts' walk does.

The messaging webhook (Messenger's ``messages`` and ``message_echoes`` fields, Instagram's
``messages``) is the one way past the 20: each message a delivery names is read by id while
it is still among its thread's 20 newest (:func:`read_hinted`), and remembered on the mentions
walk's marks (``msg:<id>``, its creation time) until a thread walk passes it. A busy thread
whose messages beyond the 20 were all read so records no gap (:func:`_hinted_beyond`).

What differs between the two inboxes is an :class:`Inbox`: the platform, the path of the
conversations edge, what a warning calls a thread, and the setting that turns the reading
off. The account whose messages are outbound, and the scope of a participant's id, are the
walked :class:`~syncd.model.Account`'s id (:func:`~connectors.meta.parse.parse_messages`): the
Page for Messenger (its Page-scoped ids), the Instagram account for Direct (its IGSIDs, the
same ids its comments carry, so the resolver meets one person in both)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from connectors.meta import hints
from connectors.meta.client import GraphPage, PermissionDenied
from connectors.meta.parse import clip, conversation_url, parse_messages
from connectors.meta.walk import (
    OBJECT_ID,
    Collected,
    MetaSource,
    Phase,
    Walk,
    WalkToken,
    after_cursor,
    as_int,
    data_time,
    iso,
    left_for_next_walk,
    mark_fields,
    moved_mark,
)
from connectors.meta.webhook import MESSAGE_ID
from syncd.errors import NotFound
from syncd.model import Account, Stream, WebhookHint

__all__ = [
    "HINTED",
    "MESSAGES_PAGE",
    "MESSAGE_DETAILS",
    "MESSAGE_FIELDS",
    "MESSAGE_ID_PAGES",
    "THREADS",
    "THREAD_FIELDS",
    "Inbox",
    "Threads",
    "inbox_phase",
    "message_readers",
    "read_hinted",
    "walk_threads",
]


MESSAGE_DETAILS = 20  # "you can only get details about the 20 most recent messages"
MESSAGES_PAGE = 25  # one messages call: more than the 20 with details, to see a gap
THREAD_FIELDS = "id,updated_time,link,participants"  # Messenger's (``link``: its inbox URL)
MESSAGE_FIELDS = "id,created_time,from,to,message"
THREADS = "threads"  # the walk's phase (WalkToken.phase) while it reads an inbox
_MARK = "thread:"
# A message read by a webhook hint is marked ``msg:<id>`` (its creation time) in the mentions
# walk's marks, until a thread walk passes it: a message beyond a thread's 20 newest that was
# read so is no gap. Only the mentions walk reads hints (a hint is taken once), so only its
# marks know them: the replies walk of such a thread still records its gap, though the hints
# stored the brand's own messages too. Deciding so keeps a gap from ever being hidden; the
# other way would take a hint per stream, each message read twice.
HINTED = "msg:"
# Message ids a busy thread's walk lists beyond its first page, to learn whether hints read
# them all (pages of MESSAGES_PAGE): past that, the walk calls it a gap without asking on.
MESSAGE_ID_PAGES = 4

# A thread as a hinted message is kept: its id, link and participants (None: Graph lists none).
Thread = tuple[str, str, list[Any]]
# The threads one fetch's hints found, by the person they are with (one lookup a person).
Threads = dict[str, Thread | None]


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


def inbox_phase(source: MetaSource, inbox: Inbox, *, on: bool) -> Phase:
    """The inbox as a phase of the source's walk (``on``: its setting), after the posts; a
    backfill does not read it (only a thread's 20 newest messages are detailed)."""
    return Phase(THREADS, partial(walk_threads, source, inbox), on=on, backfill=False)


def walk_threads(source: MetaSource, inbox: Inbox, w: Walk) -> WalkToken | None:
    """One page of the inbox's threads and the new messages of those that moved; the next
    page's token, or None at the walk's end. A refusal for want of a permission ends the
    walk with a warning: the inbox is not read, what the walk read before it stands (a raise
    would leave the walk's token on this phase, and every later poll would stop here)."""
    floor = int(w.floor.timestamp())
    params = w.listing(inbox.fields, source.page_size, platform=inbox.platform)
    try:
        listing = source._list(inbox.path, params)
    except PermissionDenied as exc:
        named = ", ".join(exc.permissions) or inbox.needs
        said = (
            f"{inbox.thread}s not read: Meta refused for want of a permission ({named}; "
            f"it needs {inbox.needs}); grant it and issue a new token, or set "
            f"{inbox.setting} = false"
        )
        w.got.warnings.append(said)
        return None
    threads = [t for t in listing.data if isinstance(t, dict)]
    # Hinted messages: those of earlier fetches (stored marks) and of this one's hints.
    marks = {**w.cursor.marks, **w.got.marks}
    hinted = {k[len(HINTED) :] for k, v in marks.items() if k.startswith(HINTED) and v}
    for thread in threads:
        thread_id = thread.get("id")
        updated = data_time(thread, "updated_time")
        if not isinstance(thread_id, str) or not OBJECT_ID.fullmatch(thread_id):
            continue
        if updated is None:
            continue
        key = f"{_MARK}{thread_id}"
        mark = w.cursor.marks.get(key)
        was_updated, read_to, last_id = mark_fields(mark, 3)
        if mark is None and updated < floor:
            continue
        if mark is not None and (as_int(was_updated) or 0) >= updated:
            continue
        since = as_int(read_to) if mark is not None and as_int(read_to) is not None else floor
        left = f"{updated - 1}|{since or 0}|{last_id}"  # not read: its messages from since
        with left_for_next_walk(w.got, key, left, f"{inbox.thread} {clip(thread_id, 40)}"):
            _messages(source, inbox, w, thread, since or 0, last_id, key, updated, hinted)
    following = source._next_page(w, listing, threads, "updated_time", floor, undated=False)
    if following is not None:
        return following
    edge = int((w.now - source.watch_window).timestamp())
    for key, value in marks.items():
        # A hinted message's mark whose thread no walk passed (its thread left the window
        # unread): gone with the window too. Not one this walk read.
        if key.startswith((_MARK, HINTED)) and value and key not in w.got.marks:
            moved = as_int(mark_fields(value, 1)[0])
            if moved is not None and moved < edge:
                w.got.marks[key] = None
    return None


def _since_mark(
    items: Sequence[dict[str, Any]], since: int, last_id: str
) -> tuple[list[dict[str, Any]], bool]:
    """A thread's messages (newest first) newer than its mark, and whether the mark (the
    last message read, or its time) was reached."""
    fresh: list[dict[str, Any]] = []
    for message in items:
        at = data_time(message, "created_time")
        if message.get("id") == last_id or (at is not None and at < since):
            return fresh, True
        fresh.append(message)
    return fresh, False


def _messages(
    source: MetaSource,
    inbox: Inbox,
    w: Walk,
    thread: Mapping[str, Any],
    since: int,
    last_id: str,
    key: str,
    updated: int,
    hinted: Collection[str],
) -> None:
    """A moved thread's messages newer than its mark, newest first, one call: Graph details
    only the 20 newest, so more than that since the mark is a gap, unless the webhook's
    hints read every one of them (``hinted``: their ids)."""
    thread_id = str(thread["id"])
    answer = source._list(
        f"{thread_id}/messages", {"fields": MESSAGE_FIELDS, "limit": MESSAGES_PAGE}
    )
    items = [m for m in answer.data if isinstance(m, dict)]
    fresh, reached = _since_mark(items, since, last_id)
    detailed = [m for m in fresh if "from" in m or "message" in m]
    beyond = [m for m in fresh if m not in detailed]
    more = not reached and answer.next_query is not None
    if (beyond or more) and hinted and all(m.get("id") in hinted for m in beyond):
        listed = _hinted_beyond(source, thread_id, answer, since, last_id, hinted) if more else []
        if listed is not None:
            beyond, more = [], False
            fresh = fresh + listed
    for message in fresh:
        if message.get("id") in hinted:
            w.got.marks[f"{HINTED}{message['id']}"] = None  # the thread's mark passes it
    if beyond or more:
        stamps = [t for m in beyond or fresh if (t := data_time(m, "created_time"))]
        w.got.gap = iso(datetime.fromtimestamp(max(stamps) if stamps else updated, UTC))
        w.got.warnings.append(
            f"{inbox.thread} {clip(thread_id, 40)}: more than {MESSAGE_DETAILS} messages "
            "arrived since the last poll; Graph details only the 20 newest (a gap)"
        )
    participants = thread.get("participants")
    people = participants.get("data") if isinstance(participants, dict) else None
    translated = parse_messages(
        detailed,
        w.account,
        network=source.network,
        conversation_id=thread_id,
        conversation_url=conversation_url(thread.get("link")),
        participants=people if isinstance(people, list) else (),
    )
    w.got.add(translated, w.stream)
    newest = next(
        ((t, str(m["id"])) for m in detailed if (t := data_time(m, "created_time"))), None
    )
    read_to, read_id = (str(newest[0]), newest[1]) if newest else (str(since), last_id)
    w.got.marks[key] = f"{moved_mark(updated, source.clock())}|{read_to}|{read_id}"


def _hinted_beyond(
    source: MetaSource,
    thread_id: str,
    answer: GraphPage,
    since: int,
    last_id: str,
    hinted: Collection[str],
) -> list[dict[str, Any]] | None:
    """The thread's messages past the first page down to its mark, by id, when hints read
    every one of them (at most :data:`MESSAGE_ID_PAGES` more calls); None when one was not,
    or the mark is further back: a gap, as without the webhook."""
    listed: list[dict[str, Any]] = []
    page = answer
    for _ in range(MESSAGE_ID_PAGES):
        after = after_cursor(page, source.network)
        if after is None:
            return listed  # the thread's first message reached
        page = source._list(
            f"{thread_id}/messages",
            {"fields": "id,created_time", "limit": MESSAGES_PAGE, "after": after},
        )
        items = [m for m in page.data if isinstance(m, dict)]
        fresh, reached = _since_mark(items, since, last_id)
        if any(m.get("id") not in hinted for m in fresh):
            return None
        listed += fresh
        if reached:
            return listed
    return None


# -- messages named by the webhook -------------------------------------------------------------
def message_readers(
    source: MetaSource, inbox: Inbox, kinds: Sequence[str]
) -> dict[str, hints.Reader]:
    """A reader (:func:`read_hinted`) for each hint kind naming one of the inbox's messages,
    sharing one fetch's thread lookups (one a person)."""
    threads: Threads = {}
    return {kind: partial(read_hinted, source, inbox, kind=kind, threads=threads) for kind in kinds}


def read_hinted(
    source: MetaSource,
    inbox: Inbox,
    account: Account,
    message_id: str,
    got: Collected,
    *,
    kind: str,
    threads: Threads,
) -> None:
    """``GET /{message-id}`` with the thread walk's message fields [research §1d], kept as
    the walk keeps it: the same id, the thread (the inbox's conversations ``?user_id=`` the
    person, once per person a fetch), the person it is with; stored whichever side wrote it
    (the brand's own: outbound, attributed to the person answered). It must be the walked
    account's: ``from`` or ``to`` names it (a forged delivery may name any message the token
    can read). Graph answers a message older than its thread's 20 newest as deleted:
    dropped, said and counted, never an error (the walk it is read in would stop for
    nothing it can change)."""
    hint = WebhookHint(account.user_id, message_id, kind)
    if not MESSAGE_ID.fullmatch(message_id):
        return
    try:
        body = source._get(message_id, {"fields": MESSAGE_FIELDS})
    except NotFound:
        # Graph's answer for a message older than its thread's 20 newest, and for an
        # unsent one or another account's: none of them can be read again.
        source._drop_hint(hint, "Graph answers it as deleted (beyond its thread's 20 newest?)")
        return
    parties = [body.get("from"), *_data_of(body.get("to"))]
    ids = [p.get("id") for p in parties if isinstance(p, dict)]
    if account.user_id not in ids:
        source._drop_hint(hint, "not a conversation of this account")
        return
    person = next((i for i in ids if isinstance(i, str) and i != account.user_id), None)
    if person is not None and person not in threads:
        threads[person] = _thread_of(source, inbox, person)
    thread_id, url, people = threads.get(person or "") or (None, "", [])
    translated = parse_messages(
        [body],
        account,
        network=source.network,
        conversation_id=thread_id,
        conversation_url=url,
        participants=people,
    )
    for stream in (Stream.MENTIONS, Stream.REPLIES):
        got.add(translated, stream)
    at = data_time(body, "created_time")
    if translated.interactions and isinstance(body.get("id"), str) and at is not None:
        got.marks[f"{HINTED}{body['id']}"] = str(at)


def _thread_of(source: MetaSource, inbox: Inbox, person: str) -> Thread | None:
    """The account's thread with a person (its id, link and participants), as the thread
    walk reads them; None when Graph lists none (Messenger's Requests folder after 30 days)."""
    listing = source._list(
        inbox.path,
        {"platform": inbox.platform, "user_id": person, "fields": inbox.fields, "limit": 1},
    )
    thread = next((t for t in listing.data if isinstance(t, dict)), None)
    if thread is None or not isinstance(thread.get("id"), str):
        return None
    return (
        thread["id"],
        conversation_url(thread.get("link")),
        _data_of(thread.get("participants")),
    )


def _data_of(value: Any) -> list[Any]:
    data = value.get("data") if isinstance(value, dict) else None
    return data if isinstance(data, list) else []
