"""Query-parameter parsing for the X sandbox, with X's 400 wording, and its pagination tokens."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime

from syncd.sandbox.server import Request
from syncd.sandbox.x_store import ID_PATTERN


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


def _token_check(kind: str, user_id: str, boundary: int) -> int:
    return zlib.crc32(f"{kind}:{user_id}:{boundary}".encode())


def encode_token(kind: str, user_id: str, boundary: int) -> str:
    """Opaque token for "posts older than ``boundary``": stable however many posts arrive."""
    return _base36((boundary << 32) | _token_check(kind, user_id, boundary))


def decode_token(kind: str, user_id: str, token: str) -> int:
    try:
        n = int(token, 36)
    except ValueError:
        n = -1
    boundary = n >> 32 if n > 0 else 0
    if n <= 0 or n & 0xFFFFFFFF != _token_check(kind, user_id, boundary):
        raise InvalidRequest(
            "pagination_token",
            token,
            f"The `pagination_token` query parameter value [{token}] is not valid",
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


def max_results(raw: str | None) -> int:
    if raw is None:
        return 10
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 5 <= value <= 100:
        raise InvalidRequest(
            "max_results",
            raw,
            f"The `max_results` query parameter value [{raw}] is not between 5 and 100",
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
