"""Frozen domain types shared by the core and every connector.

Connectors translate API pages into these; the core never sees a network's or a CRM's own shapes.
The states stored in state (as StrEnums), the resolver's candidates and the read budget's pure
figures are here too: state stores them and its read model reports them, and it imports
nothing of the layers above it.
"""

from __future__ import annotations

import calendar
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

JsonObject = dict[str, Any]


class Stream(enum.StrEnum):
    """What a poll job reads for one brand account."""

    MENTIONS = "mentions"  # posts by others that mention the brand account (inbound)
    REPLIES = "replies"  # the brand account's own replies to other people (outbound)


# The history target of a CRM that names none (Crm.history_targets), and of every delivery
# stored before CRMs had several: the one record per interaction they wrote then.
DEFAULT_TARGET = "task"


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


# -- states as stored ----------------------------------------------------------------------
# Stored as their values (the members are str), so a row reads the same whichever version
# wrote it: a value never changes once released.


class DeliveryState(enum.StrEnum):
    """Where one interaction stands with one CRM (``deliveries.state``)."""

    PENDING = "pending"  # written once its author has a link
    WRITTEN = "written"  # in the CRM history; crm_record_id holds the record
    DEAD = "dead"  # refused for good: a dead letter, for an admin
    SKIPPED = "skipped"  # the author matched no one and the network's unmatched policy is "skip"
    # The author was forgotten (``syncd forget``): never written; a writer that was writing it
    # when forget began stores the record id it got (forget deletes the record) and keeps this.
    FORGOTTEN = "forgotten"
    DELETED = "deleted"  # the network said the post was deleted before it was written
    DROPPED = "dropped"  # a dead letter an admin dropped


class BackfillState(enum.StrEnum):
    """A backfill job's ``status``."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


class GapState(enum.StrEnum):
    """A gap's ``state``: recovered by a backfill job, or out of reach."""

    OPEN = "open"
    CLOSING = "closing"  # a backfill job reads it
    CLOSED = "closed"
    UNCLOSABLE = "unclosable"  # no configured search reaches it


class ReviewState(enum.StrEnum):
    """A review queue candidate's ``state``."""

    OPEN = "open"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Account:
    """A brand account on a network, with the immutable id resolved once and stored.

    ``display_name``: how the brand is named to people where its handle is no name (a
    Facebook Page configured by its id); None: the handle serves."""

    network: str
    handle: str
    user_id: str
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class Author:
    """A person (or brand) on a network, as a page describes them.

    Keyed on the immutable ``user_id``; ``handle`` is whatever the network says today.
    """

    network: str
    user_id: str
    handle: str | None = None
    display_name: str | None = None
    description: str | None = None
    location: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Interaction:
    """One post that belongs in a customer's history.

    ``counterpart_id`` is the customer side: the author of an inbound mention, or the user the
    brand replied to for an outbound reply.

    None where the network withholds who wrote it (Meta leaves ``from`` out for an app without
    Advanced Access, and on a person's post tagging a Page): ``author_id`` is then None for the
    item itself, ``counterpart_id`` for it and for the brand's replies to it. Such an
    interaction is stored once like any other but has no identity and no delivery: nothing
    links it to a person, so it is not written to a CRM (``syncd status`` counts them). A
    later read of the same post that names the author fills the stored one in (author,
    customer) and gives it its delivery then.
    Never guessed: a name or username is not an id, and one placeholder id would make all
    such strangers one person.
    """

    network: str
    post_id: str
    account: str  # brand handle whose stream surfaced it
    stream: Stream
    direction: Direction
    author_id: str | None
    counterpart_id: str | None
    text: str
    created_at: datetime  # timezone-aware UTC
    url: str
    conversation_id: str | None = None
    in_reply_to_post_id: str | None = None
    raw: JsonObject = field(default_factory=dict, compare=False, hash=False)
    # The network's own address for reading this post again where its key cannot serve (a
    # status of another instance is known to the one that read it by a local id its uri does
    # not tell); kept in state and handed back to Source.lookup_posts. None: the key serves.
    ref: str | None = None
    # Who wrote the post this one answers, where the network says (X's in_reply_to_user_id,
    # Mastodon's in_reply_to_account_id, the DID in a Bluesky parent's URI, the Page or
    # account whose post a Meta comment is under): whether a post answers the brand, which
    # decides whether it may open a Case ([crm.cases] open = "replies").
    in_reply_to_user_id: str | None = None
    # A private message (Messenger, Instagram Direct), not a public post: it reads as one
    # in the CRM (SocialPost.MessageType Private/Direct).
    private: bool = False

    @property
    def external_id(self) -> str:
        return f"{self.network}:{self.post_id}"


@dataclass(frozen=True, slots=True)
class Quarantined:
    """An API item that could not be translated; kept with its raw payload and the reason."""

    network: str
    reason: str
    raw: JsonObject
    item_id: str | None = None


HINT_ID_MAX = 255  # characters of a webhook hint's object id
HINT_KIND_MAX = 64  # characters of its kind


@dataclass(frozen=True, slots=True)
class WebhookHint:
    """An object a source's webhook said changed, for its poller to read through the API.

    Never content: whatever else a delivery said is dropped, so a forged or replayed one can
    add nothing the API does not confirm. ``account_id`` is the brand account's network id
    (:attr:`Account.user_id`) the delivery was for, ``object_id`` the network's id of the
    object, ``kind`` what the source needs to read it (e.g. ``mentions:comment``): both
    opaque to the core, which stores each (source, object_id, kind) once."""

    account_id: str
    object_id: str
    kind: str


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a stream's walk stands.

    ``since_id`` is the newest post stored by the last *complete* walk. While a walk is in
    progress, ``pagination_token`` names the next page and ``pending_since_id`` the value
    ``since_id`` takes once the walk ends; both are stored with each page so a crash replays
    at most one page.

    ``marks`` are the stream's per-object marks as stored with it (read-only, loaded with the
    cursor): where the source stands in each object it re-reads, e.g. the last comment read
    under each post of a watch window, or the newest message of each thread. Opaque to the
    core; a source changes them through :attr:`Page.marks`, never here.
    """

    since_id: str | None = None
    pagination_token: str | None = None
    pending_since_id: str | None = None
    # Compared, not hashed: a cursor stays usable as a key (a test's scripted walk).
    marks: Mapping[str, str] = field(default_factory=dict, hash=False)
    # The account's webhook hints not yet taken (oldest first, a bounded batch), for a
    # source with a webhook; it says which it read in Page.taken_hints (see Source.fetch).
    hints: tuple[WebhookHint, ...] = field(default=(), hash=False)

    @property
    def in_walk(self) -> bool:
        return self.pagination_token is not None


MARK_KEY_MAX = 255  # characters of a mark's key (an object id); its value has no bound


def merge_marks(marks: Mapping[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    """``marks`` with a page's changes applied: a None value removes its key."""
    merged = dict(marks)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True, slots=True)
class RateInfo:
    """Rate-limit figures a response carried (``x-rate-limit-*``, ``Sforce-Limit-Info`` …)."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Reads:
    """What one API answer returned, counted as the network bills it (X: per post and per
    user object). ``owned``: the answer was the brand account's own timeline read with its
    own user token, whose ``posts`` X bills at the cheaper owned-read price; ``expanded``
    posts beside them (a replied-to post) are ordinary reads either way."""

    posts: int = 0  # the answer's own posts (``data``)
    expanded: int = 0  # posts expanded beside them and not among them (``includes``)
    users: int = 0
    owned: bool = False


@dataclass(frozen=True, slots=True)
class ProjectUsage:
    """What the network itself counts against the app's project this billing period (X:
    ``GET /2/usage/tweets``). ``reset_day`` is the day of the month (UTC) the cap resets;
    ``day_posts`` the network's count for its latest UTC ``day``. None: not said."""

    posts: int | None = None
    cap: int | None = None
    reset_day: int | None = None
    day: date | None = None
    day_posts: int | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One API page translated: what to store, and the cursor to store with it."""

    interactions: tuple[Interaction, ...]
    authors: tuple[Author, ...]
    next_cursor: Cursor
    rate: RateInfo | None = None
    quarantined: tuple[Quarantined, ...] = ()
    # Partial errors a 200 carried (deleted or suspended referenced posts): informational.
    warnings: tuple[str, ...] = ()
    # What tells a walk that met since_id from one the endpoint cut short (the network never
    # says): the posts the API returned, history or not, the oldest of their ids, and the
    # endpoint's horizon, when it reaches only the newest ``horizon`` posts (None: no limit).
    returned: int = 0
    oldest_id: str | None = None
    horizon: int | None = None
    # Set on a walk's last page when the source knows the walk ended without meeting its
    # since_id (the endpoint ran out of pages first, e.g. it dropped older items): a gap,
    # whatever the walk saw. The horizon is for endpoints that never say so.
    cut: bool = False
    # The resources the answer carried, for the budget: counted in the page's transaction.
    reads: Reads = Reads()
    # The stream's per-object marks this page changed (see Cursor.marks), stored with its
    # cursor in the page's transaction; None removes a mark (an object that left the source's
    # window). Only a live walk's pages keep marks: a backfill's are not stored.
    marks: Mapping[str, str | None] = field(default_factory=dict, hash=False)
    # The hints of Cursor.hints this page read through the API (what the API returned for
    # them is on this page, or the API said they are gone): marked taken in the page's
    # transaction, so a hint is never taken without what it led to being stored.
    taken_hints: tuple[WebhookHint, ...] = ()

    @property
    def walk_complete(self) -> bool:
        return not self.next_cursor.in_walk


@dataclass(frozen=True, slots=True)
class IdentityKey:
    """What the CRM is asked about an author: the immutable id, and the handle as a fallback."""

    network: str
    user_id: str
    handle: str | None = None


CrmObject = Literal["Contact", "Lead"]


@dataclass(frozen=True, slots=True)
class CrmRef:
    """A CRM person record."""

    object: str  # "Contact", "Lead", …
    id: str
    name: str | None = None
    # The customer's priority value as the CRM holds it (a tier, an SLA level; None: none
    # read), read by the same query that found the person and mapped to a record's
    # priority by the CRM's connector: opaque here. Not part of which record this is.
    priority: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Match:
    """A CRM person found for an identity key, and which field matched."""

    ref: CrmRef
    matcher: str  # "crm_user_id" or "crm_handle"
    # A "crm_handle" hit on a record holding ANOTHER user id of the key's network: the
    # handle changed owners or the record is wrong. Never a match, a question for a person.
    held_user_id: str | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """What the resolver knows of an author: the key it asks by, and their public profile."""

    key: IdentityKey
    display_name: str | None = None
    description: str | None = None  # the bio: contact points are looked for here
    location: str | None = None
    url: str | None = None  # the profile's website
    past_handles: tuple[str, ...] = ()  # handles this user id had before (renames)


@dataclass(frozen=True, slots=True)
class PersonRecord:
    """A CRM person (Contact, Lead …) as the resolver scores it. Unknown fields are None."""

    ref: CrmRef
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    city: str | None = None
    company: str | None = None  # the Contact's Account name, the Lead's Company
    website: str | None = None  # the Contact's Account website, the Lead's Website
    user_id: str | None = None  # the network user-id field, if set
    handle: str | None = None  # the network handle field, if set
    # A CRM holding several networks' fields: each network's, and then an author is scored
    # on its own network's alone (user_id and handle above are one network's, for display).
    # Empty: user_id and handle are the author's network's.
    keys: tuple[KeyOnFile, ...] = ()

    def own(self, network: str) -> tuple[str | None, str | None]:
        """The user id and handle this record holds for ``network``."""
        if not self.keys:
            return self.user_id, self.handle
        mine = next((k for k in self.keys if k.network == network), None)
        return (mine.user_id, mine.handle) if mine is not None else (None, None)


@dataclass(frozen=True, slots=True)
class PeopleChanges:
    """People created or changed in the CRM since a mark, so held authors are asked again.

    ``mark`` is opaque to the core: stored as given and handed back on the next call.
    ``complete`` is False when more changed than one answer lists (a bulk import): anyone
    may match now. A CRM that cannot tell answers no people and no mark.
    """

    people: tuple[PersonRecord, ...] = ()
    mark: str | None = None
    complete: bool = True
    # What each changed person now carries in its network id and handle fields (possibly
    # nothing), so a local copy of them (:class:`KeysPage`) stays current.
    on_file: tuple[KeysOnFile, ...] = ()


@dataclass(frozen=True, slots=True)
class KeyOnFile:
    """One network's user id and handle as a CRM person's fields hold them."""

    network: str
    user_id: str | None = None
    handle: str | None = None


@dataclass(frozen=True, slots=True)
class KeysOnFile:
    """The network user ids and handles one CRM person carries.

    ``rank`` orders the person objects as the CRM searches them (Salesforce: Contacts before
    Leads); a match on a lower rank settles a key. ``stamp`` is when the record last changed,
    an opaque string that sorts in time order: an older copy never overwrites a newer one.
    """

    ref: CrmRef
    keys: tuple[KeyOnFile, ...] = ()
    rank: int = 0
    stamp: str = ""


@dataclass(frozen=True, slots=True)
class KeysPage:
    """One page of every CRM person carrying a network id or handle; ``next`` asks for the
    following page (None: that was the last)."""

    people: tuple[KeysOnFile, ...] = ()
    next: str | None = None


@dataclass(frozen=True, slots=True)
class PeopleQuery:
    """A batched candidate search: every CRM person matching ANY of these, per object.

    Values arrive normalised: e-mails lower-case; phones digits only (with country code when
    the bio had one); name prefixes lower-case, at least three letters, matched against the
    start of first OR last names (for a one-word name); ``names`` are (first-name prefix,
    last-name prefix) pairs, lower-case, matched together: the first name starts with the one
    AND the last name with the other (``("j", "smi")`` finds John Smith, not every Smith nor
    every John). Names compare without case or accents, but a CRM search may be exact about
    accents, so a name's pairs come both as typed and accent-folded. Domains are lower-case
    without ``www.``, matched against the e-mail domain and the (Account) website; ids are
    CRM record ids, as an admin types them when linking by hand.
    """

    emails: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()
    name_prefixes: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    names: frozenset[tuple[str, str]] = frozenset()

    def __bool__(self) -> bool:
        return bool(
            self.emails
            or self.phones
            or self.name_prefixes
            or self.domains
            or self.ids
            or self.names
        )


@dataclass(frozen=True, slots=True)
class Persona:
    """The network account a history record is about (the person linked, whichever way the
    post went), for a CRM that keeps a record per account (a Salesforce SocialPersona)."""

    user_id: str  # the network's immutable id for the account
    handle: str | None = None
    name: str | None = None
    # The url the network gave with the profile (identities.url, Author.url): the account's
    # own page on Mastodon (its ``url``), a website the person links elsewhere (X). Which it
    # is, is the CRM connector's to know by network. None: none given.
    url: str | None = None
    # The CRM's record for the account, written before with the record's person as its
    # parent: not written again. None: written (or found) with this record.
    persona_id: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One interaction ready to be appended to a CRM person's history."""

    external_id: str  # "x:1399688059608702976"; the CRM upsert key
    who: CrmRef
    network: str
    direction: Direction
    subject: str
    description: str
    occurred_at: datetime
    handle: str | None
    url: str
    conversation_id: str | None = None
    # Which of the CRM's history targets (Crm.history_targets) the record is written to.
    target: str = DEFAULT_TARGET
    in_reply_to: str | None = None  # the network's id of the post this one answers
    # The brand account that read it: its name where it has one (a Facebook Page), else its
    # handle. The author of an outbound record.
    brand: str | None = None
    author: Persona | None = None
    # The CRM's record of this target for the post it answers (in_reply_to), once written.
    reply_to_id: str | None = None
    # The CRM's case of the conversation the post belongs to (None: none).
    case_id: str | None = None
    # A private message (Messenger, Instagram Direct): Interaction.private.
    private: bool = False


class Refusal(enum.StrEnum):
    """What a CRM's refusal of one history record means to the writer. Only the CRM's
    connector can tell from the CRM's own codes, so it says it with each failed result."""

    FINAL = "final"  # the record itself is refused: a dead letter, for a person to look at
    RETRY = "retry"  # the CRM could not take it now (a locked row, an overload): try later
    GONE = "gone"  # the person it points at was deleted or merged away: resolve again


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The CRM's answer for one record of an upsert batch."""

    external_id: str
    ok: bool
    crm_id: str | None = None
    created: bool | None = None
    error_code: str | None = None
    error_message: str | None = None
    # Read only when not ok. FINAL unless the connector knows better: an unknown refusal is
    # dead-lettered, never retried blindly.
    refusal: Refusal = Refusal.FINAL
    # The CRM's record for the author's account the record was written with (Persona): kept,
    # so the next records of the same author are written without writing it again.
    persona_id: str | None = None
    # Written without the record of the post it answers (not written yet), which the CRM
    # links it to: written again once that one is.
    awaits_reply_to: bool = False


LookupResult = Mapping[IdentityKey, Match]


@dataclass(frozen=True, slots=True)
class BulkProgress:
    """Where a CRM's bulk job stands (:class:`syncd.contracts.BulkWriting`)."""

    done: bool  # finished: its results can be read (whatever became of each record)
    # Never closed: the writer stopped between making it and sending its records. It is
    # aborted, and its records go out again.
    unsent: bool = False
    error: str | None = None  # the CRM's word on a job that failed as a whole


# -- cases ---------------------------------------------------------------------------------
# A CRM that works conversations as cases (a Salesforce Case) says how through its
# CasePolicy; the core groups posts into conversations by it, and asks the CRM to open, join
# or reopen each conversation's case (Crm.file_cases) before their records are written.


class CaseOpening(enum.StrEnum):
    """Which inbound posts open a case (posts of an open conversation join it whatever this
    says; the brand's own posts never open one)."""

    ALL = "all"  # every inbound post from a linked customer
    REPLIES = "replies"  # only posts answering the brand (one of its posts or replies)
    NONE = "none"  # none: posts only join cases opened before


@dataclass(frozen=True, slots=True)
class CasePolicy:
    opening: CaseOpening
    # A post with no reply chain to a case joins its author's latest case if that case's
    # last post is at most this old when it is written.
    join_window: timedelta
    # The CRM person objects a case can be opened for (a Salesforce Case names a Contact,
    # never a Lead): posts of people linked to another object open none.
    owners: frozenset[str]


@dataclass(frozen=True, slots=True)
class CaseRequest:
    """A post that needs its conversation's case: one to open (``case_id`` None), or the
    case its conversation has (``case_id``), which the CRM joins, reopens when it was closed
    since, or replaces with a new one under ``key`` when it was closed too long ago."""

    key: str  # the post's external id: the key a case it opens is upserted on
    who: CrmRef
    network: str
    subject: str
    description: str
    occurred_at: datetime
    url: str
    case_id: str | None = None


class CaseOutcome(enum.StrEnum):
    JOINED = "joined"  # the case given, as it was (open, or closed after this post)
    REOPENED = "reopened"  # the case given, closed since and reopened for this post
    OPENED = "opened"  # a new case under the request's key


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The CRM's answer for one :class:`CaseRequest`."""

    key: str
    ok: bool
    case_id: str | None = None
    outcome: CaseOutcome | None = None
    error_code: str | None = None
    error_message: str | None = None
    refusal: Refusal = Refusal.FINAL


@dataclass(frozen=True, slots=True)
class Segment:
    """One part of a backfill window and the endpoint that reads it.

    A source plans a window as segments (the last 7 days by recent search, older ones by
    full-archive search or a timeline); a job walks them in order, page by page. ``horizon``
    is set when the endpoint reaches only the newest N posts, so part of the window may be
    out of reach; ``note`` says so in words.
    """

    stream: Stream
    route: str  # the source's name for the endpoint, e.g. "search_recent"
    since: datetime
    until: datetime
    query: str | None = None
    page_size: int = 100
    requests_per_window: int = 0  # the endpoint's rate limit per rate_window (0: unknown)
    horizon: int | None = None
    note: str | None = None
    min_interval: float = 0.0  # seconds between two requests, if the endpoint wants spacing
    # Post id bounds, both exclusive, inside the time window: a gap's exact edges.
    since_id: str | None = None
    until_id: str | None = None
    rate_window: float = 0.0  # seconds the endpoint's rate limit counts requests over

    def as_json(self) -> JsonObject:
        return {
            "stream": str(self.stream),
            "route": self.route,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "query": self.query,
            "page_size": self.page_size,
            "requests_per_window": self.requests_per_window,
            "horizon": self.horizon,
            "note": self.note,
            "min_interval": self.min_interval,
            "since_id": self.since_id,
            "until_id": self.until_id,
            "rate_window": self.rate_window,
        }

    @classmethod
    def from_json(cls, value: JsonObject) -> Segment:
        return cls(
            stream=Stream(value["stream"]),
            route=str(value["route"]),
            since=datetime.fromisoformat(value["since"]),
            until=datetime.fromisoformat(value["until"]),
            query=value.get("query"),
            page_size=int(value.get("page_size") or 100),
            requests_per_window=int(value.get("requests_per_window") or 0),
            horizon=value.get("horizon"),
            note=value.get("note"),
            min_interval=float(value.get("min_interval") or 0.0),
            since_id=value.get("since_id"),
            until_id=value.get("until_id"),
            rate_window=float(value.get("rate_window") or 0.0),
        )


@dataclass(frozen=True, slots=True)
class GapPlan:
    """How a source would read the posts a live walk could not reach (a gap).

    ``segments`` read what the configured access reaches (none: nothing does); ``unreachable``
    says in words which part no access reaches, and why; ``ready_at`` is set when the gap is
    too recent for search yet, and it should be planned again then.
    """

    segments: tuple[Segment, ...] = ()
    unreachable: str | None = None
    ready_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PostCount:
    """How many posts a segment holds: counted by the API (``exact``) or sampled."""

    posts: int
    exact: bool
    requests: int = 1  # what finding out cost
    # The requests reading the segment takes, where the source can tell better than a page
    # per ``page_size`` posts (an endpoint asked once per item found, not once per page).
    reads: int | None = None
    # What was counted and what extrapolated, in words, where the count is not a plain
    # total: the estimate shows it beside the segments' notes.
    basis: str | None = None


# -- resolution ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """A CRM person the resolver (or the review queue) offers for one author."""

    ref: CrmRef
    score: float
    matcher: str
    reasons: tuple[str, ...]
    review_only: bool = False  # never linked by the resolver, always shown for review
    name_only: bool = False  # found by a name and nothing else


@dataclass(frozen=True, slots=True)
class Decision:
    """``link`` when sure; else ``review`` (best first), possibly empty: unmatched."""

    link: Candidate | None = None
    review: tuple[Candidate, ...] = ()


# -- the read budget -----------------------------------------------------------------------
# Pure figures (see syncd.budget.ledger for what they mean and syncd.budget.guard for what is
# done with them): here because state stores them and the read model reports them.

WARN_AT = 80  # percent: a warning, once per crossing
PAUSE_AT = 90  # percent: backfills (and gap recovery) wait for the next period
SPENT_AT = 100  # percent: said once more; live polling still goes on
BANDS = (SPENT_AT, PAUSE_AT, WARN_AT)


@dataclass(frozen=True, slots=True)
class Prices:
    """Dollars per resource read, as the source's settings declare them (MeteredSettings)."""

    post: float
    user: float
    owned_post: float


@dataclass(frozen=True, slots=True)
class Budget:
    """A source's monthly budget: posts (owned ones included), dollars, both, or neither
    (then only the network's own cap counts); reads cost ``prices``."""

    prices: Prices
    posts: int | None = None
    dollars: float | None = None


def period(now: datetime, reset_day: int | None) -> tuple[datetime, datetime]:
    """The billing period holding ``now``: from the last reset to the next, each at 00:00 UTC
    on ``reset_day`` (a month's last day when it is shorter); calendar months when unknown."""
    day = reset_day or 1
    this = _reset(now.year, now.month, day)
    if now >= this:
        year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
        return this, _reset(year, month, day)
    year, month = (now.year - 1, 12) if now.month == 1 else (now.year, now.month - 1)
    return _reset(year, month, day), this


def _reset(year: int, month: int, day: int) -> datetime:
    last = calendar.monthrange(year, month)[1]
    return datetime.combine(date(year, month, min(day, last)), time(), UTC)


@dataclass(frozen=True, slots=True)
class ReadCounts:
    """Resources read over some UTC days, as syncd counted them."""

    posts: int = 0
    users: int = 0
    owned_posts: int = 0

    def cost(self, prices: Prices) -> float:
        return (
            self.posts * prices.post
            + self.users * prices.user
            + self.owned_posts * prices.owned_post
        )


@dataclass(frozen=True, slots=True)
class Ledger:
    """What state keeps per source beside its daily counts: the network's last figures, the
    cap (``capped_until``), and the highest threshold said, when (``alerted_at``)."""

    checked_at: datetime | None = None  # when a usage read was last started (any instance)
    read_at: datetime | None = None  # when the network last answered one
    project_posts: int | None = None
    project_cap: int | None = None
    cap_reset_day: int | None = None
    project_day: date | None = None  # the network's latest day, and its count
    project_day_posts: int | None = None
    capped_until: datetime | None = None
    capped_reason: str | None = None
    alert_level: int = 0
    alerted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a source stands in its billing period: for the guard, status and metrics."""

    source: str
    period_start: date
    resets_at: datetime
    today: ReadCounts
    today_cost: float
    month: ReadCounts  # this billing period, as syncd counted
    posts_used: int  # the larger of syncd's count and the network's
    cost: float  # this period, dollars; posts only the network counted at the post price
    network_posts: int | None  # the network's count this period (None: not known)
    network_cap: int | None
    network_today: int | None
    network_read_at: datetime | None
    budget_posts: int | None
    budget_dollars: float | None
    percent: float | None  # of the configured budget (None: none configured)
    cap_percent: float | None  # of the network's cap (None: not known)
    capped_until: datetime | None  # the network refuses until then (None: not capped)
    capped_reason: str | None
    backfills_paused: bool

    @property
    def pressure(self) -> float:
        """The higher of the two percentages: what thresholds are measured on."""
        return max(self.percent or 0.0, self.cap_percent or 0.0)

    @property
    def band(self) -> int:
        """The highest threshold reached (0: none)."""
        return next((b for b in BANDS if self.pressure >= b), 0)


def standing(
    source: str,
    budget: Budget,
    ledger: Ledger,
    today: ReadCounts,
    month: ReadCounts,
    now: datetime,
) -> Standing:
    start, end = period(now, ledger.cap_reset_day)
    # The network's figures count only when read in this period: last period's are not ours.
    current = ledger.read_at is not None and ledger.read_at >= start
    network_posts = ledger.project_posts if current else None
    network_cap = ledger.project_cap if current else None
    counted = month.posts + month.owned_posts
    used = max(counted, network_posts or 0)
    # Posts the network counted beyond syncd's own (other apps, a lost count) at the full price.
    cost = month.cost(budget.prices) + (used - counted) * budget.prices.post
    shares = [
        100.0 * used / budget.posts if budget.posts else None,
        100.0 * cost / budget.dollars if budget.dollars else None,
    ]
    known = [s for s in shares if s is not None]
    percent = max(known) if known else None
    cap_percent = 100.0 * used / network_cap if network_cap else None
    capped = ledger.capped_until if ledger.capped_until and ledger.capped_until > now else None
    pressure = max(percent or 0.0, cap_percent or 0.0)
    return Standing(
        source=source,
        period_start=start.date(),
        resets_at=end,
        today=today,
        today_cost=today.cost(budget.prices),
        month=month,
        posts_used=used,
        cost=cost,
        network_posts=network_posts,
        network_cap=network_cap,
        network_today=ledger.project_day_posts if ledger.project_day == now.date() else None,
        network_read_at=ledger.read_at,
        budget_posts=budget.posts,
        budget_dollars=budget.dollars,
        percent=percent,
        cap_percent=cap_percent,
        capped_until=capped,
        capped_reason=ledger.capped_reason if capped else None,
        backfills_paused=capped is not None or pressure >= PAUSE_AT,
    )
