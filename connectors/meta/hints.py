"""Webhook hints, read: each object a signed Meta delivery named (:mod:`.receiver` stored it
as a :class:`~syncd.model.WebhookHint`), read again through the Graph API by a walk.

A hint is never content: a walk's page reads the object by its id, keeps what the API
returns, and names the hint in :attr:`~syncd.model.Page.taken_hints`, so the hint is taken in
the transaction that stores what it led to. An object the API refuses as not found or not
permitted (a forged hint, a deleted comment, another Page's object) is taken with nothing
stored: the API confirmed nothing, and asking again would change nothing. A transient error
leaves the hint, and those after it, untaken for the next page or walk; a throttle or a
refused token ends the fetch as for any call.

Only the ``mentions`` stream reads hints: what a webhook alone tells of (the brand
@-mentioned in someone else's Instagram caption or comment, the Page mentioned elsewhere)
is people writing to the brand. A hinted object the brand wrote is left to the ``replies``
walk, which reads it where its poll finds it (the comments of a moved post). Messenger is
the exception: a hinted message is stored whichever side wrote it (the interaction carries
its own stream), since a thread's older messages are beyond any later walk.

A hinted object the API returns but that does not concern the account (a comment on another
Page's post, a conversation of another Page: a forged delivery may name any object the token
can read) is dropped by its reader; the reader says so through ``dropped`` (logged and
counted by the source), as does :func:`read` for an object the API refuses.

Kinds (``network:field:item``, :func:`connectors.meta.receiver.hint_kind`) a source does not
read, or an id of the wrong shape, are taken with nothing read: left untaken they would be
offered to every walk, and fill the batch the core offers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from connectors.meta.client import PermissionDenied
from syncd.errors import BadItem, NotFound, TransientError
from syncd.model import Account, Cursor, Page, Stream, WebhookHint

if TYPE_CHECKING:  # the walk's fetch reads hints (walk.py imports this module)
    from connectors.meta.walk import Collected

# Hints one page reads (one call each): a flood of deliveries is read over the walk's pages
# and the next walks, not in one page's transaction.
PER_PAGE = 25

# Reads the hinted object into the collection; raises the client's errors.
Reader = Callable[[Account, str, "Collected"], None]
# Told of a hint taken with nothing stored: the hint and why (for a log line and a count).
Dropped = Callable[[WebhookHint, str], None]


def read(
    readers: Mapping[str, Reader],
    account: Account,
    stream: Stream,
    cursor: Cursor,
    got: Collected,
    dropped: Dropped | None = None,
) -> tuple[WebhookHint, ...]:
    """This page's reading of the walk's untaken hints, into ``got``; the hints it took."""
    taken: list[WebhookHint] = []
    if stream is not Stream.MENTIONS:
        return ()
    for hint in cursor.hints:
        if len(taken) >= PER_PAGE:
            break
        reader = readers.get(hint.kind)
        if reader is None or hint.account_id != account.user_id:
            taken.append(hint)  # nothing this source reads
            continue
        try:
            reader(account, hint.object_id, got)
        except (NotFound, PermissionDenied, BadItem) as exc:
            # The API confirms nothing: taken, nothing stored.
            if dropped is not None:
                dropped(hint, f"the API refused it ({type(exc).__name__})")
        except TransientError as exc:
            got.warnings.append(f"a webhook hint is left for later: {exc}")
            break
        taken.append(hint)
    return tuple(taken)


def merged(page: Page, got: Collected, taken: tuple[WebhookHint, ...]) -> Page:
    """The walk's page with what the hints read: stored in its transaction, the hints taken
    in it. What the walk's own reading found on this page is kept once. The page's cursor
    and its oldest are the walk's: a hinted object may be of any age."""
    if not taken and not got.warnings:
        return page
    read_here = {i.post_id for i in page.interactions}
    fresh = [i for i in got.interactions if i.post_id not in read_here]
    authors = {a.user_id: a for a in (*page.authors, *got.authors.values())}
    return replace(
        page,
        marks={**got.marks, **page.marks},
        interactions=(*page.interactions, *fresh),
        authors=tuple(authors.values()),
        quarantined=(*page.quarantined, *got.quarantined),
        warnings=(*page.warnings, *got.warnings),
        returned=page.returned + len(fresh) + len(got.quarantined),
        taken_hints=taken,
    )
