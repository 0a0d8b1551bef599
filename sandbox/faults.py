"""Fault injection for the sandbox stand-ins: rules that make requests fail in a chosen way.

A rule names a *kind* of failure, an *endpoint* (a short stable route name, or ``"*"`` for
every route of that server) and how often it fires: ``count`` (the next N matching requests,
or N records for per-record kinds), ``rate`` (each matching request or record with that
probability, drawn from a seeded ``random.Random`` so a run replays exactly), or both (at that
rate, at most N times). With neither, ``count=1``. Exhausted rules drop out of
:attr:`Faults.rules`. A *mix* (``server.inject_mix(menu, rate)``) is several kinds failing
``rate`` of the requests between them, each kind an equal share.

Tests call ``server.inject(kind, endpoint=…, count=…, rate=…, **options)``; other processes use
the control endpoint ``/__sandbox/faults`` of the same server (``POST`` a JSON rule, ``GET`` the
active rules and counters, ``DELETE`` to clear), which is itself never faulted nor counted.
A faulted request still counts in the server's ``request_count`` (it arrived); Salesforce's
``api_calls`` counts only what the org processed (phase "after").
Clearing removes the rules and keeps the counters of what fired. ``faults.seed = n`` (or a
POSTed ``{"seed": n}``) restarts the random draws. ``server.on_request(endpoint, callback,
phase)`` calls back at the same two points a fault can strike.

Kinds on both servers (``phase="before"``: the request is not processed; ``phase="after"``: the
handler runs and its effects are stored, then the answer is replaced, which models "the CRM
accepted it but the client never heard"):

- ``status``: ``status`` 500/502/503 (any 5xx; default 503) with that server's body.
- ``stall``: wait ``seconds`` (default 5.0) without holding the server lock. Before: then close
  without an answer. After: then send the real answer (slow, or too late for the client).
- ``drop``: close the connection without any response.
- ``malformed``: 200 with a cut-off JSON (or SOAP) body; after: the real body, cut in half.

X (:mod:`.x_api`) endpoints: ``user_by_username`` (/2/users/by/username/{username}),
``users_by`` (/2/users/by), ``mentions`` (/2/users/{id}/mentions), ``user_tweets``
(/2/users/{id}/tweets), ``user`` (/2/users/{id}), ``users`` (/2/users), ``tweet``
(/2/tweets/{id}), ``tweets`` (/2/tweets), ``search_recent`` (/2/tweets/search/recent),
``search_all`` (/2/tweets/search/all), ``counts_recent`` (/2/tweets/counts/recent),
``counts_all`` (/2/tweets/counts/all). Its own kind:

- ``bad_item``: a 200 page whose first item is broken: ``fields`` (default ``["created_at"]``)
  are removed (``how="missing"``), given the wrong JSON type (``"wrong_type"``) or a value
  of the right type that means nothing (``"bad_value"``, the default). The page's other items
  are untouched: what a parser must quarantine while the rest goes through.
- ``repeat_token``: a 200 page whose ``meta.next_token`` is the very token the request sent
  (an API or proxy that never ends a walk); a request without a token, or a last page, is
  answered as usual.
- ``rate_limit``: 429 with X's body; ``reset=True`` (default) sends ``x-rate-limit-limit``,
  ``-remaining: 0`` and ``-reset`` = now + ``seconds`` (default 900), ``reset=False`` none.

Salesforce (:mod:`.salesforce_api`) endpoints: ``login`` (SOAP login and OAuth token),
``versions`` (/services/data), ``resources`` (/services/data/vXX.X), ``limits``, ``sobject``
(everything under /sobjects: describe, CRUD, upsert by external id), ``query`` (query, queryAll
and their cursors), ``composite`` (sObject Collections), ``composite_request`` (the Composite
resource; its subrequests also meet the faults of their own endpoints), and Bulk API 2.0 ingest
(:mod:`.salesforce.bulk2`): ``bulk2_create`` (POST jobs/ingest), ``bulk2_list`` (GET
jobs/ingest), ``bulk2_upload`` (PUT its batches), ``bulk2_state`` (PATCH: close or abort),
``bulk2_job`` (GET a job: the poll), ``bulk2_delete`` and ``bulk2_results`` (the three result
CSVs). Its own kinds, on data endpoints only:

- ``session_expired``: every issued session dies; the request gets 401 INVALID_SESSION_ID and
  a new login works.
- ``request_limit``: 403 REQUEST_LIMIT_EXCEEDED.
- ``lock_row``: 400 UNABLE_TO_LOCK_ROW for the whole request.
- ``record_error``: on ``composite`` only, per *record*: ``code`` (DUPLICATE_VALUE,
  FIELD_CUSTOM_VALIDATION_EXCEPTION, ENTITY_IS_DELETED, INVALID_CROSS_REFERENCE_KEY,
  UNABLE_TO_LOCK_ROW or any other code), optional ``message`` and ``fields``. Hit records are
  not stored and answer ``{"success": false, "errors": [...]}``; the others are written as
  ``allOrNone`` says.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from http import HTTPStatus
from typing import Any

PHASES = ("before", "after")
BAD_ITEM_HOW = ("missing", "wrong_type", "bad_value")
_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass(frozen=True)
class Kind:
    """What a kind of fault accepts and where it applies."""

    options: frozenset[str] = frozenset()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    phased: bool = False  # accepts phase="after"
    per_record: bool = False  # fires per record of a request, not per request
    endpoints: frozenset[str] | None = None  # None: every endpoint
    required: frozenset[str] = frozenset()


COMMON_KINDS: Mapping[str, Kind] = {
    "status": Kind(frozenset({"status"}), {"status": 503}, phased=True),
    "stall": Kind(frozenset({"seconds"}), {"seconds": 5.0}, phased=True),
    "drop": Kind(phased=True),
    "malformed": Kind(phased=True),
}


@dataclass
class FaultRule:
    """One active rule. ``count`` goes down as it fires; ``fired`` counts the hits."""

    kind: str
    endpoint: str = "*"
    count: int | None = None
    rate: float | None = None
    phase: str = "before"
    status: int | None = None
    seconds: float | None = None
    reset: bool | None = None
    code: str | None = None
    message: str | None = None
    fields: list[str] | None = None
    how: str | None = None
    id: int = 0
    fired: int = 0

    def as_dict(self) -> dict[str, Any]:
        always = {"id", "kind", "endpoint", "count", "rate", "phase", "fired"}
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name in always or getattr(self, f.name) is not None
        }


class Faults:
    """The thread-safe rule registry of one server."""

    def __init__(self, kinds: Mapping[str, Kind], seed: int = 0) -> None:
        self.kinds = dict(kinds)
        self.endpoints: set[str] = set()  # the server adds its route names
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._serial = 0
        self._seed = seed
        self._rng = random.Random(seed)
        self._injected = 0
        self._by_kind: dict[str, int] = {}

    # -- rules ---------------------------------------------------------------------------
    def add(
        self,
        kind: str,
        *,
        endpoint: str = "*",
        count: int | None = None,
        rate: float | None = None,
        **options: Any,
    ) -> FaultRule:
        """Add a rule (ValueError on anything it cannot honour) and return it, live."""
        rule = self._validated(kind, endpoint, count, rate, options)
        with self._lock:
            self._serial += 1
            rule.id = self._serial
            self._rules.append(rule)
        return rule

    def add_mix(
        self, menu: Sequence[tuple[str, Mapping[str, Any]]], rate: float, endpoint: str = "*"
    ) -> list[FaultRule]:
        """Rules for several kinds that together fail ``rate`` of the requests, each kind
        an equal share (``rate / len(menu)``), whatever its place in ``menu``.

        A request meets the rules one after another (those of phase "before", then those of
        "after", each in the order added) and the first that fires answers it: a rule is
        drawn only for the requests every rule before it let pass. The same rate for all
        would have the last kind fail the fewest requests; here each rule's own rate is its
        share over what the rules drawn before it leave. A kind that applies to fewer
        endpoints fails its share of those.
        """
        if not menu or not 0.0 < rate <= 1.0:
            raise ValueError(f"a mix needs kinds and a rate in (0, 1], not {len(menu)}, {rate}")
        share = rate / len(menu)
        order = sorted(range(len(menu)), key=lambda i: menu[i][1].get("phase") == "after")
        drawn_before = {i: n for n, i in enumerate(order)}
        return [
            self.add(kind, endpoint=endpoint, rate=share / (1 - drawn_before[i] * share), **options)
            for i, (kind, options) in enumerate(menu)
        ]

    def clear(self) -> None:
        """Remove every rule; the counters of what already fired stay."""
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return [replace(r) for r in self._rules]

    @property
    def injected(self) -> int:
        with self._lock:
            return self._injected

    @property
    def injected_by_kind(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_kind)

    @property
    def seed(self) -> int:
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        with self._lock:
            self._seed = value
            self._rng.seed(value)

    def snapshot(self) -> dict[str, Any]:
        """What ``GET /__sandbox/faults`` answers."""
        with self._lock:
            return {
                "rules": [r.as_dict() for r in self._rules],
                "injected": self._injected,
                "injected_by_kind": dict(self._by_kind),
                "seed": self._seed,
                "kinds": sorted(self.kinds),
                "endpoints": sorted(self.endpoints),
            }

    # -- firing --------------------------------------------------------------------------
    def draw(self, endpoint: str, phase: str) -> FaultRule | None:
        """The rule that fires for one request at ``phase``, if any (and count it)."""
        with self._lock:
            for rule in self._rules:
                kind = self.kinds[rule.kind]
                if not kind.per_record and rule.phase == phase and self._fires(rule, endpoint):
                    return rule
        return None

    def draw_records(self, endpoint: str, n: int) -> list[FaultRule | None]:
        """For each of ``n`` records of one request, the per-record rule that hits it."""
        picks: list[FaultRule | None] = []
        with self._lock:
            for _ in range(n):
                hit = None
                for rule in self._rules:
                    if self.kinds[rule.kind].per_record and self._fires(rule, endpoint):
                        hit = rule
                        break
                picks.append(hit)
        return picks

    def _fires(self, rule: FaultRule, endpoint: str) -> bool:
        """Match, draw and count down; called with the lock held."""
        allowed = self.kinds[rule.kind].endpoints
        if rule.endpoint not in ("*", endpoint) or (
            allowed is not None and endpoint not in allowed
        ):
            return False
        # Only a matching request draws a number, so other traffic leaves a seeded run intact.
        if rule.rate is not None and self._rng.random() >= rule.rate:
            return False
        rule.fired += 1
        self._injected += 1
        self._by_kind[rule.kind] = self._by_kind.get(rule.kind, 0) + 1
        if rule.count is not None:
            rule.count -= 1
            if rule.count <= 0:
                self._rules.remove(rule)
        return True

    # -- validation ----------------------------------------------------------------------
    def _validated(
        self, kind: str, endpoint: str, count: int | None, rate: float | None, options: Any
    ) -> FaultRule:
        spec = self.kinds.get(kind)
        if spec is None:
            raise ValueError(f"unknown fault kind {kind!r}; this server knows {sorted(self.kinds)}")
        where = spec.endpoints if spec.endpoints is not None else self.endpoints
        if endpoint != "*" and endpoint not in where:
            raise ValueError(f"{kind}: unknown endpoint {endpoint!r}; use '*' or {sorted(where)}")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise ValueError(f"count must be a whole number, not {count!r}")
        if count is not None and count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)):
            raise ValueError(f"rate must be a number, not {rate!r}")
        if rate is not None and not 0.0 < rate <= 1.0:
            raise ValueError(f"rate must be in (0, 1], not {rate}")
        phase = options.pop("phase", "before")
        if phase not in (PHASES if spec.phased else PHASES[:1]):
            raise ValueError(f"{kind}: phase must be one of {PHASES if spec.phased else 'before'}")
        unknown = set(options) - spec.options
        if unknown:
            raise ValueError(
                f"{kind}: unknown options {sorted(unknown)}; it takes {sorted(spec.options)}"
            )
        if missing := spec.required - set(options):
            raise ValueError(f"{kind}: missing options {sorted(missing)}")
        values = {**spec.defaults, **options}
        _check_options(kind, values)
        if values.get("seconds") is not None:
            values["seconds"] = float(values["seconds"])
        if count is None and rate is None:
            count = 1
        return FaultRule(
            kind, endpoint, count, None if rate is None else float(rate), phase, **values
        )


def _check_options(kind: str, values: Mapping[str, Any]) -> None:
    status, seconds = values.get("status"), values.get("seconds")
    if status is not None and (not isinstance(status, int) or not 500 <= status <= 599):
        raise ValueError(f"{kind}: status must be a 5xx code, not {status!r}")
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0
    ):
        raise ValueError(f"{kind}: seconds must be a number >= 0, not {seconds!r}")
    if "reset" in values and not isinstance(values["reset"], bool):
        raise ValueError(f"{kind}: reset must be true or false")
    code = values.get("code")
    if code is not None and (not isinstance(code, str) or not _CODE.match(code)):
        raise ValueError(f"{kind}: code must be a Salesforce error code, not {code!r}")
    if values.get("message") is not None and not isinstance(values["message"], str):
        raise ValueError(f"{kind}: message must be text")
    how = values.get("how")
    if how is not None and how not in BAD_ITEM_HOW:
        raise ValueError(f"{kind}: how must be one of {', '.join(BAD_ITEM_HOW)}, not {how!r}")
    names = values.get("fields")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
    ):
        raise ValueError(f"{kind}: fields must be a list of field names")


def kinds(*extra: Mapping[str, Kind]) -> dict[str, Kind]:
    """The common kinds plus a server's own."""
    merged = dict(COMMON_KINDS)
    for more in extra:
        merged.update(more)
    return merged


def reason(status: int) -> str:
    """The reason phrase of an HTTP status, for fault bodies."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a 5xx HTTP never named
        return "Server Error"
