"""The Meta stand-in's fault kinds, on the shared mechanism (:mod:`sandbox.faults`).

Graph errors carry numbers (``code`` 80001, ``error_subcode`` 463) that the shared rule's
options, written for X and Salesforce, do not hold; this registry adds four options for the
Meta kinds only and leaves everything else (counts, rates, seeds, the control endpoint) to the
shared code.

- ``throttle``: the call is refused as Graph refuses a spent budget: ``error_code`` 4, 17, 32,
  613, 80001, 80002 or 80006 (default: the budget of the endpoint called: 80001 for a Page,
  80002 for an Instagram account, 80006 for Messenger), usage headers at 100 % and
  ``estimated_time_to_regain_access`` = ``minutes`` (default 5).
- ``expired_token``: 190 with ``subcode`` (default 463, expired; 458, 459, 460, 464, 467, 492).
- ``withheld_from``: the answer as an app without Advanced Access gets it: no ``from`` on
  comments and posts by people who have no role on the app.
- ``late_comment``: before the answer, a new person comments on the Page's oldest post (a
  comment on an old post moves that post's ``updated_time``, not its place in the feed).
- ``busy_thread``: before the answer, ``messages`` (default 25) new messages arrive in the Page's
  most recently active Messenger thread (more than the 20 whose details Graph gives).
- common: ``status`` (5xx with Graph's transient error body, ``is_transient: true``),
  ``stall``, ``drop``, ``malformed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sandbox.faults import FaultRule, Faults, Kind, kinds

THROTTLE_CODES = (4, 17, 32, 613, 80001, 80002, 80006)
TOKEN_SUBCODES = (458, 459, 460, 463, 464, 467, 492)

META_KINDS: Mapping[str, Kind] = kinds(
    {
        "throttle": Kind(),
        "expired_token": Kind(),
        "withheld_from": Kind(),
        "late_comment": Kind(endpoints=frozenset({"feed", "posts"})),
        "busy_thread": Kind(endpoints=frozenset({"conversations"})),
    }
)

# The options only Meta kinds take, with their defaults (None: chosen per request).
_EXTRA: Mapping[str, Mapping[str, Any]] = {
    "throttle": {"error_code": None, "minutes": 5},
    "expired_token": {"subcode": 463},
    "busy_thread": {"messages": 25},
}


@dataclass
class MetaFaultRule(FaultRule):
    error_code: int | None = None
    subcode: int | None = None
    minutes: int | None = None
    messages: int | None = None


class MetaFaults(Faults):
    def _validated(
        self, kind: str, endpoint: str, count: int | None, rate: float | None, options: Any
    ) -> FaultRule:
        extra_names = {"error_code", "subcode", "minutes", "messages"}
        extra = {k: options.pop(k) for k in list(options) if k in extra_names}
        takes = _EXTRA.get(kind, {})
        if unknown := set(extra) - set(takes):
            raise ValueError(f"{kind}: unknown options {sorted(unknown)}; it takes {sorted(takes)}")
        values = {**takes, **extra}
        _check(kind, values)
        base = super()._validated(kind, endpoint, count, rate, options)
        return MetaFaultRule(**asdict(base), **values)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(kind: str, values: Mapping[str, Any]) -> None:
    code = values.get("error_code")
    if code is not None and (not _whole(code) or code not in THROTTLE_CODES):
        raise ValueError(f"{kind}: error_code must be one of {THROTTLE_CODES}, not {code!r}")
    subcode = values.get("subcode")
    if subcode is not None and (not _whole(subcode) or subcode not in TOKEN_SUBCODES):
        raise ValueError(f"{kind}: subcode must be one of {TOKEN_SUBCODES}, not {subcode!r}")
    for name in ("minutes", "messages"):
        value = values.get(name)
        if value is not None and (not _whole(value) or value < 1):
            raise ValueError(f"{kind}: {name} must be a whole number >= 1, not {value!r}")
