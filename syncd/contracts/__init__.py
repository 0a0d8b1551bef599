"""The two contracts every connector implements. The core depends on these, never on a connector.

Connectors do no database work and no sleeping: they translate one API exchange into domain
objects and raise the errors of :mod:`syncd.errors`. This package is also all a connector may
use of the core besides :mod:`syncd.model` and :mod:`syncd.errors`: how its settings carry
secrets (:mod:`.secrets`), where plain HTTP may go (:mod:`.urls`), how it keeps a private file
(:mod:`.files`) and the shared text helpers (:mod:`.text`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Annotated, Any, ClassVar, Protocol, Self, runtime_checkable

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from syncd.model import (
    Account,
    Author,
    BulkProgress,
    CasePolicy,
    CaseRequest,
    CaseResult,
    CrmRef,
    Cursor,
    GapPlan,
    HistoryRecord,
    IdentityKey,
    KeysPage,
    Match,
    Page,
    PeopleChanges,
    PeopleQuery,
    PersonRecord,
    PostCount,
    Profile,
    ProjectUsage,
    Segment,
    Stream,
    WebhookHint,
    WriteResult,
)


class ConnectorSettings(BaseModel):
    """Base of each connector's settings model; unknown keys are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: str

    def for_networks(self, networks: Sequence[str]) -> Self:
        """These settings for a deployment whose sources read ``networks`` (config order).

        Called once the whole config is read: a CRM connector whose per-network settings have
        documented defaults fills them in here for the networks in use, and only for those,
        so a network nobody reads never asks the CRM for fields it need not have. Unchanged
        by default."""
        return self


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$")
# Two or more number+unit groups ("1h30", "1h30m"): a common guess, not a supported form.
_COMPOUND = re.compile(r"^\d+(?:\.\d+)?\s*([a-zA-Z]+)\s*\d")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Spellings people write for the units above; recognised only to suggest the right one.
_UNIT_SPELLINGS = {
    "msec": "ms", "millis": "ms", "milliseconds": "ms", "sec": "s", "secs": "s",
    "second": "s", "seconds": "s", "min": "m", "mins": "m", "minute": "m", "minutes": "m",
    "hr": "h", "hrs": "h", "hour": "h", "hours": "h", "day": "d", "days": "d",
}  # fmt: skip
# A longer wait is always a typo, and beyond timedelta's range a number would crash later.
MAX_DURATION = 365 * 86400.0
DURATION_FORMS = "a number of seconds, or one number with a unit: '250ms', '60s', '5m', '1h', '1d'"


def parse_duration(value: Any, *, allow_zero: bool = False) -> float:
    """``"60s"``, ``"5m"``, ``"1h"``, ``"250ms"`` or a number of seconds → seconds (float).

    Every refusal says what was wrong and shows the valid forms, because a config author
    cannot look up "the duration grammar" from a one-line error.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be a duration, not {toml_kind(value)}: use {DURATION_FORMS}")
    seconds = _parse_text(value) if isinstance(value, str) else float(value)
    shown = repr(_clip(value)) if isinstance(value, str) else f"{value}"
    if not math.isfinite(seconds):  # TOML has inf and nan literals
        raise ValueError(f"must be a finite duration, got {shown}: use {DURATION_FORMS}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "greater than zero"
        raise ValueError(f"must be {bound}, got {shown}: use {DURATION_FORMS}")
    if seconds > MAX_DURATION:
        raise ValueError(f"must be at most '365d', got {shown}")
    return seconds


def _parse_text(value: str) -> float:
    text = value.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.removeprefix("-").strip()
    if m := _DURATION.match(body):
        number, unit = m.group(1), m.group(2) or "s"
        if unit in _UNITS:
            return sign * float(number) * _UNITS[unit]
        hint = _UNIT_SPELLINGS.get(unit.lower()) or (unit.lower() if unit.lower() in _UNITS else "")
        suggestion = f"; did you mean '{number}{hint}'?" if hint else ""
        raise ValueError(
            f"{_clip(value)!r} has an unknown unit {_clip(unit)!r}{suggestion} "
            f"(use {DURATION_FORMS})"
        )
    compound = _COMPOUND.match(body)
    if compound and compound.group(1).lower() in {*_UNITS, *_UNIT_SPELLINGS}:
        raise ValueError(
            f"{_clip(value)!r} combines several units, which is not supported: write it "
            f"with one unit, e.g. '90m' instead of '1h30' (use {DURATION_FORMS})"
        )
    raise ValueError(f"{_clip(value)!r} is not a duration: use {DURATION_FORMS}")


def _clip(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def toml_kind(value: Any) -> str:
    """The TOML name of a parsed value's type, for messages a config author reads."""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "a boolean"
    kinds = [
        (str, "a string"), (int, "an integer"), (float, "a float"), (list, "a list"),
        (dict, "a table"), (datetime | date | time, "a date/time"),
    ]  # fmt: skip
    return next((name for t, name in kinds if isinstance(value, t)), type(value).__name__)


Duration = Annotated[float, BeforeValidator(parse_duration)]
# A duration where zero is meaningful ("no jitter"), so only negatives are refused.
DurationOrZero = Annotated[float, BeforeValidator(partial(parse_duration, allow_zero=True))]

START_FORMS = (
    "'now', a duration before the first start ('7d', '12h'), or a UTC date or time in "
    "quotes ('2026-11-01', '2026-11-01T08:00:00Z')"
)


def parse_start(value: Any) -> str:
    """A source's ``start`` checked, kept as written: it is resolved against the moment of
    each stream's first walk (:func:`start_moment`), which the config cannot know."""
    if not isinstance(value, str):
        raise ValueError(f"must be text, not {toml_kind(value)}: use {START_FORMS}")
    text = value.strip()
    if text.lower() == "now":
        return "now"
    if _start_time(text) is not None:
        return text
    try:
        parse_duration(text, allow_zero=True)
    except ValueError:
        raise ValueError(f"{_clip(value)!r} is not a start: use {START_FORMS}") from None
    return text


def start_moment(start: str, now: datetime) -> datetime:
    """The moment a checked ``start`` names, for a first walk made at ``now``."""
    if start == "now":
        return now
    moment = _start_time(start)
    if moment is not None:
        return moment
    return now - timedelta(seconds=parse_duration(start, allow_zero=True))


def _start_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    # A date or time without an offset is UTC, as everywhere in syncd's settings.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


Start = Annotated[str, BeforeValidator(parse_start)]


class SourceSettings(ConnectorSettings):
    """Keys every source has, whatever its network."""

    accounts: list[str] = Field(min_length=1)
    streams: list[Stream] = Field(default=[Stream.MENTIONS, Stream.REPLIES], min_length=1)
    interval: Duration = 60.0
    # How far back a stream's first walk reads (see Starting): posts made before are left to
    # `syncd backfill`; ones made after are read, through a gap search if the walk is cut.
    start: Start = "now"

    @field_validator("accounts")
    @classmethod
    def _handles(cls, value: list[str]) -> list[str]:
        handles = [h.strip().removeprefix("@") for h in value]
        if any(not h for h in handles):
            raise ValueError("handles must not be empty")
        if len({h.lower() for h in handles}) != len(handles):
            raise ValueError("handles must not repeat")
        return handles


@dataclass(frozen=True)
class CheckRow:
    """One line of ``syncd check``: a thing syncd needs from an outside system, whether it is
    usable, and when not, what to do about it. Never carries a secret."""

    item: str  # what was checked: "login", "@acme", "Task.Social_Post_Id__c"
    ok: bool
    detail: str = ""  # what was found, or what is wrong
    fix: str = ""  # when not ok: the change that makes it ok


# The profiles state already holds, fresh enough to use, of the given network user ids: a
# source reads (and pays for) only the others. Provided by the pipeline; no database here.
KnownAuthors = Callable[[Collection[str]], Mapping[str, Author]]


class Source(Protocol):
    """A social network: reads brand accounts' streams."""

    network: ClassVar[str]
    Settings: ClassVar[type[ConnectorSettings]]
    # Most post ids one :meth:`lookup_posts` call takes: the compliance check asks in batches
    # of it, each stored before the next is asked.
    post_check_batch: ClassVar[int]

    @classmethod
    def from_settings(cls, settings: Any) -> Self: ...

    def resolve_accounts(self, handles: Sequence[str]) -> Mapping[str, Account]:
        """Look up brand handles (one batched call). Unknown handles are absent from the result."""
        ...

    def fetch(
        self, account: Account, stream: Stream, cursor: Cursor, known: KnownAuthors | None = None
    ) -> Page:
        """Read one page of ``stream`` after ``cursor``. The page carries the cursor to store.
        With ``known``, only the profiles of authors it lacks are read (networks bill them).

        Where the network withholds who wrote an item, its interaction has None for
        ``author_id`` and ``counterpart_id`` (a brand reply to it: None for
        ``counterpart_id``) and no author on the page: it is stored, linked to no one and
        never written to a CRM. A username or a name never stands in for the missing id.

        A source that re-reads objects on every walk (a watch window of posts whose new
        comments it reads, a thread per conversation) keeps where it stands in each as a
        per-object mark: ``cursor.marks`` holds them as stored (the walk's earlier pages'
        changes included), and the page says what it changed in :attr:`Page.marks` (None
        removes a mark, e.g. a post that left the window). They are stored with the page's
        cursor in one transaction, so they never run ahead of the pages stored: a page read
        again after a crash is read with the marks it was first read with. A mark's key is at
        most :data:`~syncd.model.MARK_KEY_MAX` characters, its value any length; both are the
        network's object ids and positions, never a person's id, name or words (``forget``
        does not look in them). ``next_cursor.marks`` is not read. A backfill's pages
        (:meth:`Backfiller.fetch_segment`) keep no marks.

        A :class:`WebhookSource` finds its account's untaken webhook hints in
        ``cursor.hints`` and names those it read in :attr:`Page.taken_hints` of the page
        carrying what the API returned for them, stored in that page's transaction (see
        :class:`WebhookSource`). ``next_cursor.hints`` is not read."""
        ...

    def lookup_posts(
        self, post_ids: Sequence[str], refs: Mapping[str, str] | None = None
    ) -> tuple[set[str], set[str]]:
        """Which of these posts still stand and which the network says are deleted, batched
        (:attr:`post_check_batch` ids a call). An id in neither set could not be told (e.g. a
        protected post): ask again later, never act on it.

        ``refs``: post id → the ``ref`` its interaction was read with
        (:attr:`syncd.model.Interaction.ref`), for the posts that have one. A source that
        sets no refs ignores it; the core passes it only when some post has a ref, so a
        source written before refs existed keeps working."""
        ...

    def check(self, handles: Sequence[str]) -> Sequence[CheckRow]:
        """``syncd check``: reach the network, authenticate and look up the brand
        ``handles``, one row per thing checked. An outside failure is a failed row, never
        raised."""
        ...

    def close(self) -> None: ...


class Backfiller(Protocol):
    """A source that can also read a past window (optional: ``syncd backfill`` checks)."""

    network: ClassVar[str]
    # The routes of its segments whose rate limit live polls spend too: a backfill on one of
    # them leaves polls a reserve of the window (empty: every backfill route has its own).
    shared_routes: ClassVar[frozenset[str]]

    def plan_backfill(
        self,
        account: Account,
        streams: Sequence[Stream],
        since: datetime,
        until: datetime,
        now: datetime,
    ) -> list[Segment]:
        """The segments that read ``[since, until)`` with the configured access, each with
        the endpoint that reaches it; a segment no endpoint fully reaches says so in its
        ``note``. No network call."""
        ...

    def count_posts(self, account: Account, segment: Segment) -> PostCount:
        """How many posts the segment holds: the network's counts endpoint where it has
        one, else a sample page extrapolated."""
        ...

    def fetch_segment(
        self,
        account: Account,
        segment: Segment,
        token: str | None,
        known: KnownAuthors | None = None,
    ) -> Page:
        """One page of a segment; the next token is ``page.next_cursor.pagination_token``
        (None at the end of the segment). ``known`` as for :meth:`Source.fetch`."""
        ...


@runtime_checkable
class GapCloser(Protocol):
    """A backfiller that can also plan reading a gap: the posts after ``since_id`` and before
    ``until_id`` (both exclusive) that a live walk of ``stream`` could not reach, because the
    endpoint holds only its newest posts (optional: a source without it leaves gaps open)."""

    def plan_gap(
        self, account: Account, stream: Stream, since_id: str, until_id: str, now: datetime
    ) -> GapPlan:
        """The segments that read the gap with the configured access, or why none can.
        No network call."""
        ...


@runtime_checkable
class Starting(Protocol):
    """A source whose streams' first walk reads back to the configured ``start`` and no
    further (optional: a source without it reads, on a first walk, whatever its timelines
    hold, and a first walk cut at their horizon goes unnoticed)."""

    def start_after(self, now: datetime) -> str:
        """The since_id a stream's first walk, made at ``now``, starts after: every post made
        at or after the configured ``start`` has a larger id. No network call."""
        ...


@runtime_checkable
class UsageReporter(Protocol):
    """A source whose network counts the app's reads against a billing cap and says so
    (optional: the budget guard asks at most every 15 minutes, see :mod:`syncd.budget.guard`)."""

    def project_usage(self) -> ProjectUsage:
        """The network's own figures for the app's project this billing period."""
        ...


@runtime_checkable
class RateLimited(Protocol):
    """A source whose answers say where it stands in its rate limit (optional: /metrics shows
    it, from what :class:`ObservedResponses` reports): the response headers holding the
    requests left in the window, and the window's size, named in lower case."""

    rate_limit_headers: ClassVar[tuple[str, str]]


@runtime_checkable
class UsageRatios(Protocol):
    """A source whose answers say how much of an allowance the app has used as a share of
    it, rather than as the requests left in a window (optional: /metrics shows them, which
    :class:`RateLimited`'s two headers cannot say)."""

    def usage_ratios(self) -> Mapping[str, float]:
        """Each figure's share of its allowance used, 0 to 1 (over 1 when the network lets
        it run over), as the latest answer that gave it said; empty until one did. A
        figure's name stays the same from answer to answer and names no account or person
        (such as ``app.call_count``). No network call: it is read when /metrics is scraped,
        on another thread than the one polling."""
        ...


@runtime_checkable
class DroppedHints(Protocol):
    """A :class:`WebhookSource` that counts the hints it took with nothing stored, by why:
    the API refused the object, or it does not concern the account (a forged or misdirected
    delivery). Optional: /metrics shows them."""

    @property
    def dropped_hints(self) -> Mapping[str, int]:
        """Hints dropped since the source was made, by reason: a short fixed text per kind
        of reason, never an id. Read when /metrics is scraped, on another thread."""
        ...


# One answer a network sent: its route (the request's path with its ids replaced, such as
# ``/2/users/:id/mentions``: one series per endpoint, not one per account or post), its HTTP
# status and its headers, their names in lower case.
ResponseObserver = Callable[[str, int, Mapping[str, str]], None]


@runtime_checkable
class ObservedResponses(Protocol):
    """A source that tells of each answer its network sends (optional: /metrics counts its
    API calls, and reads its :class:`RateLimited` headers, only through this). The core
    cannot know which HTTP library a connector uses, nor how many clients it holds: the
    connector reports from its own transport, every request included (logins, token
    refreshes, retries of its own, each answer of a redirect)."""

    def observe_responses(self, callback: ResponseObserver) -> None:
        """Call ``callback`` with each answer from now on, on the thread that made the
        request, for as long as the source lives (a client it rebuilds keeps reporting).
        Given the same callback again, it is still called once an answer. The callback must
        be quick and must not raise: it runs inside the connector's call."""
        ...


class WebhookEndpoint(Protocol):
    """What a source's webhook answers on the HTTP listener, at ``/webhooks/<source name>``
    (``[daemon] listen``). The listener bounds the body, refuses other methods, stores the
    hints and answers; the endpoint does the network's checks, in constant time, and makes
    no API call (the network waits for the answer: a few seconds at most).

    Hints, never content: whatever a delivery says besides which objects changed is
    dropped. The poller hands a stream's walk the account's untaken hints
    (:attr:`~syncd.model.Cursor.hints`) and the source reads each object through the API;
    a forged or replayed delivery can add nothing the API does not confirm."""

    def subscribe(self, params: Mapping[str, str]) -> str | None:
        """A ``GET`` (the network's subscription check), its query parameters (the first
        value of each): the text to answer 200 with, or None to refuse it (403)."""
        ...

    def receive(self, body: bytes, headers: Mapping[str, str]) -> Sequence[WebhookHint] | None:
        """A ``POST``, its exact body bytes and its headers (names in lower case): the hints
        it names, possibly none, or None when it is refused (unsigned, wrongly signed: 403,
        nothing stored). Each hint's ``account_id`` is the brand account's network id; the
        listener stores them in one transaction and answers 200."""
        ...


@runtime_checkable
class WebhookSource(Protocol):
    """A source that can receive its network's webhooks (optional: a source without it is
    only polled). Storing, taking and the listener are the core's; the source says what to
    answer and which hints a delivery names, and reads them in :meth:`Source.fetch`.

    The contract of a hint, from delivery to CRM: the listener stores each (source, object
    id, kind) once, in one transaction per delivery; every walk of the account's streams is
    offered the untaken ones in ``cursor.hints`` (a bounded batch, oldest first, the same
    all walk long less those taken); the stream a hint belongs to reads its object through
    the API and names it in :attr:`~syncd.model.Page.taken_hints` of the page that carries
    what the API returned (or, when the API says the object is gone or is not the
    account's, of any page of that walk); the poller marks it taken in that page's
    transaction. A crash before leaves it untaken, offered again; a hint no stream takes
    is offered again on every walk. A backfill's pages take none."""

    def webhook(self) -> WebhookEndpoint | None:
        """The endpoint, or None when the source's settings configure no webhook."""
        ...


@dataclass(frozen=True)
class RecordOutcome:
    """What became of one CRM history record asked to be deleted or marked: ``ok`` also when
    it was already gone (deleted before), so a retry is never needed for it."""

    record_id: str
    ok: bool
    error_code: str | None = None
    error: str | None = None


class Crm(Protocol):
    """A CRM: finds people and appends history to them."""

    Settings: ClassVar[type[ConnectorSettings]]

    @classmethod
    def from_settings(cls, settings: Any) -> Self: ...

    def lookup(self, keys: Sequence[IdentityKey]) -> Mapping[IdentityKey, Match]:
        """Find CRM people for identity keys, batched. Keys with no match are absent."""
        ...

    @property
    def history_targets(self) -> Sequence[str]:
        """The history targets this CRM writes each interaction to, by names of its own
        (Salesforce: ``task``, ``social_post``). The core keeps one delivery per interaction
        and target and hands each record its target (``HistoryRecord.target``)."""
        ...

    def upsert_history(self, records: Sequence[HistoryRecord]) -> Sequence[WriteResult]:
        """Upsert history records by external id, each to its ``target``; one result per
        record, in order. When some targets' records were answered and another target failed
        as a whole, :class:`syncd.errors.PartialWrite` carries the answers (the writer keeps
        them and sends the rest again)."""
        ...

    def personas(self, keys: Sequence[IdentityKey]) -> Mapping[IdentityKey, Sequence[CrmRef]]:
        """People whose social persona records name these authors (the network's own
        records, e.g. Salesforce SocialPersona: by external user id, then by handle).
        Batched; keys with none are absent; empty when the CRM has no such records."""
        ...

    def find_people(self, query: PeopleQuery) -> Sequence[PersonRecord]:
        """Candidates for scoring: every person matching any value of ``query``, with the
        fields the resolver scores. Batched: at most ceil(values / 200) queries per object."""
        ...

    def people_changes(self, mark: str | None) -> PeopleChanges:
        """People created or changed since ``mark`` (a previous answer's), with the fields
        the resolver scores. With no mark: none, only the mark to start from. One query per
        person object."""
        ...

    def keys_on_file(self, after: str | None) -> KeysPage | None:
        """Every person carrying a network user id or handle, a page at a time (``after``:
        the previous page's ``next``), so the resolver can keep a local copy of the id and
        handle matchers' data, kept current by :meth:`people_changes`. None: this CRM
        cannot list them, and :meth:`lookup` is asked each time instead."""
        ...

    def survivors(self, refs: Sequence[CrmRef]) -> Mapping[CrmRef, CrmRef | None]:
        """For people that no longer exist: the record each was merged into, or None when
        deleted outright. People that still exist are absent."""
        ...

    def upsert_lead(self, profile: Profile) -> CrmRef:
        """Create (or find, by the network user-id field as external id) a Lead for an
        author no one knows. Idempotent: calling it twice gives the same Lead."""
        ...

    def delete_history(self, record_ids: Sequence[str]) -> Sequence[RecordOutcome]:
        """Delete history records syncd wrote (by CRM record id, of any of its targets),
        batched; one outcome per id, in order. A record already deleted counts as done."""
        ...

    def mark_history_deleted(self, record_ids: Sequence[str]) -> Sequence[RecordOutcome]:
        """Mark history records as standing for a post deleted on the network (a status
        field set, the post's text blanked), batched; one outcome per id, in order. A record
        no longer in the CRM counts as done."""
        ...

    def check(self) -> Sequence[CheckRow]:
        """``syncd check``: reach the CRM, log in, run one small query and verify every
        object and field syncd is configured to use, one row per thing checked. An outside
        failure is a failed row, never raised."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class CaseFiling(Protocol):
    """A CRM that works conversations as cases (optional: a Salesforce Case per social
    conversation). ``case_policy`` None: configured without cases. The core groups posts
    into conversations by the policy and has each one's case filed before its records are
    written (:mod:`syncd.pipeline.cases`), which then carry its id (HistoryRecord.case_id)."""

    @property
    def case_policy(self) -> CasePolicy | None: ...

    def file_cases(self, requests: Sequence[CaseRequest]) -> Sequence[CaseResult]:
        """Each request's case: joined as it is, reopened, or a new one opened under the
        request's key (an upsert: sent again, it finds the one it made); one result per
        request, in order. A case the CRM refuses is a failed result with its Refusal."""
        ...


@runtime_checkable
class BulkWriting(Protocol):
    """A CRM that writes a large backlog of history in bulk jobs (optional: Salesforce's Bulk
    API 2.0), at a few calls per job where batches cost one per 200 records. The writer
    makes a job, stores its id, then sends the records, and reads the results on a later
    run, once the job is done (:mod:`syncd.pipeline.bulk`)."""

    @property
    def bulk_targets(self) -> Sequence[str]:
        """The history targets bulk jobs can write (others go in batches)."""
        ...

    def start_bulk(self, target: str) -> str:
        """A new, empty job for ``target``'s records: its id."""
        ...

    def send_bulk(self, job_id: str, target: str, records: Iterable[HistoryRecord]) -> int:
        """The job's records sent and the job closed: the CRM processes it from here. Takes
        the records in order, as many as one job's upload holds, and returns how many."""
        ...

    def bulk_progress(self, job_id: str, target: str) -> BulkProgress: ...

    def bulk_results(self, job_id: str, target: str) -> Mapping[str, WriteResult]:
        """A done job's result for each record it processed, by the record's external id
        (a record it did not process has none: the writer sends it again)."""
        ...

    def abort_bulk(self, job_id: str, target: str) -> None: ...
