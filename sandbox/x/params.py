"""Query-parameter parsing for the X sandbox, with X's 400 wording, and its pagination tokens."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sandbox.server import Request
from sandbox.x.store import ID_PATTERN


class InvalidRequest(Exception):
    """A parameter X would reject with a 400 ``invalid-request`` problem."""

    def __init__(self, parameter: str, raw: str, message: str) -> None:
        super().__init__(message)
        self.parameter, self.raw, self.message = parameter, raw, message


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def _token_check(kind: str, scope: str, boundary: int) -> int:
    return zlib.crc32(f"{kind}:{scope}:{boundary}".encode())


def encode_token(kind: str, scope: str, boundary: int) -> str:
    """Opaque token for "items older than ``boundary``" of one walk (``kind`` and ``scope``: a
    timeline and its user, a search and its query): stable however many posts arrive."""
    return _base36((boundary << 32) | _token_check(kind, scope, boundary))


def decode_token(kind: str, scope: str, token: str, parameter: str = "pagination_token") -> int:
    try:
        n = int(token, 36)
    except ValueError:
        n = -1
    boundary = n >> 32 if n > 0 else 0
    if n <= 0 or n & 0xFFFFFFFF != _token_check(kind, scope, boundary):
        raise InvalidRequest(
            parameter, token, f"The `{parameter}` query parameter value [{token}] is not valid"
        )
    return boundary


def match(value: str, parameter: str, pattern: re.Pattern[str]) -> str:
    if not pattern.match(value):
        raise InvalidRequest(
            parameter,
            value,
            f"The `{parameter}` query parameter value [{value}] does not match {pattern.pattern}",
        )
    return value


def optional_id(value: str | None, parameter: str) -> int | None:
    return None if value is None else int(match(value, parameter, ID_PATTERN))


def value_list(req: Request, parameter: str, pattern: re.Pattern[str]) -> list[str]:
    raw = req.query.get(parameter, "")
    if not raw:
        raise InvalidRequest(parameter, raw, f"The `{parameter}` query parameter can not be empty")
    values = list(dict.fromkeys(raw.split(",")))
    if len(values) > 100:
        raise InvalidRequest(
            parameter,
            raw,
            f"The number of values in the `{parameter}` query parameter list "
            f"[{len(values)}] is not between 1 and 100",
        )
    for value in values:
        if not pattern.match(value):
            raise InvalidRequest(
                parameter,
                raw,
                f"The `{parameter}` query parameter value [{value}] does not match "
                f"{pattern.pattern}",
            )
    return values


def choices(req: Request, parameter: str, allowed: Iterable[str]) -> list[str]:
    raw = req.query.get(parameter)
    if raw is None:
        return []
    allowed = set(allowed)
    values = raw.split(",")
    for value in values:
        if value not in allowed:
            raise InvalidRequest(
                parameter,
                raw,
                f"The `{parameter}` query parameter value [{value}] is not one of "
                f"[{','.join(sorted(allowed))}]",
            )
    return values


def max_results(raw: str | None, low: int = 5, high: int = 100, default: int = 10) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise InvalidRequest(
            "max_results",
            raw,
            f"The `max_results` query parameter value [{raw}] is not between {low} and {high}",
        )
    return value


def one_of(req: Request, parameter: str, allowed: Iterable[str], default: str) -> str:
    """A single-valued enum parameter, with X's wording when the value is not allowed."""
    value, options = req.query.get(parameter), sorted(set(allowed))
    if value is None:
        return default
    if value not in options:
        raise InvalidRequest(
            parameter,
            value,
            f"The `{parameter}` query parameter value [{value}] is not one of "
            f"[{','.join(options)}]",
        )
    return value


def timestamp(raw: str | None, parameter: str) -> datetime | None:
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(
            parameter,
            raw,
            f"The `{parameter}` query parameter value [{raw}] is not a valid RFC 3339 date-time",
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TimelineParams:
    limit: int
    since: int | None
    older_than: int | None  # until_id or the pagination token's boundary, the lower one
    start: datetime | None
    end: datetime | None
    skip_replies: bool
    skip_retweets: bool


def timeline_params(req: Request, kind: str, user_id: str) -> TimelineParams:
    """The mentions / user-posts timeline parameters, checked as X checks them."""
    q = req.query
    limit = max_results(q.get("max_results"))
    since = optional_id(q.get("since_id"), "since_id")
    until = optional_id(q.get("until_id"), "until_id")
    # The spec: since_id/until_id take precedence over start_time/end_time.
    start = None if since is not None else timestamp(q.get("start_time"), "start_time")
    end = None if until is not None else timestamp(q.get("end_time"), "end_time")
    if start and end and start >= end:
        raise InvalidRequest(
            "start_time",
            q["start_time"],
            f"Invalid 'start_time':'{q['start_time']}'. "
            f"'start_time' must be before 'end_time':'{q['end_time']}'",
        )
    exclude = set(choices(req, "exclude", {"replies", "retweets"})) if kind == "tweets" else set()
    token = q.get("pagination_token")
    older_than = until
    if token is not None:
        boundary = decode_token(kind, user_id, token)
        older_than = boundary if older_than is None else min(older_than, boundary)
    return TimelineParams(
        limit, since, older_than, start, end, "replies" in exclude, "retweets" in exclude
    )
