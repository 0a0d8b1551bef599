"""X's own count of the app's project against its billing cap: ``GET /2/usage/tweets``, and
when a ``usage-capped`` refusal may be retried.

The endpoint answers (app bearer token, 50 requests per 15 minutes) with ``project_usage``
(posts read this billing period), ``project_cap`` (the monthly cap), ``cap_reset_day`` (the
day of the month the cap resets) and, asked for, ``daily_project_usage`` (per UTC day). Spec
2.159 types the counts as integers, spec 2.167 and the API itself as numeric strings: both
are read, through the app client (:class:`connectors.x.client.XClient`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import requests

from connectors.x.parse import NETWORK
from syncd.errors import TransientError
from syncd.model import ProjectUsage

if TYPE_CHECKING:  # the client imports cap_resume from here
    from connectors.x.client import XClient

USAGE_ROUTE = "/2/usage/tweets"
USAGE_FIELDS = "cap_reset_day,daily_project_usage,project_cap,project_usage"
# A monthly cap's refusal says nothing of when the cap resets (the x-rate-limit-reset it may
# carry is the rate window's); without the usage figures the refusal is re-checked hourly.
USAGE_CAP_RECHECK = timedelta(hours=1)


def project_usage(client: XClient) -> ProjectUsage:
    """The app's usage figures now: one ``GET /2/usage/tweets`` with the app bearer token."""
    body, _ = client.call(_get_usage, client=client.app)
    return parse_usage(body)


def _get_usage(client: Any) -> Any:
    # tweepy 4.17 has no method for this endpoint; its generic request() sends the app bearer
    # token and raises its usual HTTP exceptions, which XClient.call classifies like any other.
    response = client.request("GET", USAGE_ROUTE, params={"usage.fields": USAGE_FIELDS, "days": 1})
    return response.json()


def parse_usage(body: object) -> ProjectUsage:
    """The usage figures of a ``GET /2/usage/tweets`` body; a figure X left out is None. Of
    the daily breakdown only the latest day is kept (the one still counting: today)."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise TransientError("X sent an unreadable usage answer", system=NETWORK)
    reset_day = _count(data.get("cap_reset_day"))
    daily = data.get("daily_project_usage")
    entries = daily.get("usage") if isinstance(daily, dict) else None
    days = [
        (day, _count(entry.get("usage")))
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict) and (day := _day(entry.get("date"))) is not None
    ]
    latest = max(days, key=lambda d: d[0], default=(None, None))
    return ProjectUsage(
        posts=_count(data.get("project_usage")),
        cap=_count(data.get("project_cap")),
        reset_day=reset_day if reset_day is not None and 1 <= reset_day <= 31 else None,
        day=latest[0],
        day_posts=latest[1],
    )


def cap_resume(response: requests.Response, now: datetime) -> tuple[datetime, str | None]:
    """When a ``usage-capped`` refusal may be retried, and the cap's period. A daily cap
    resets at the next UTC midnight; a monthly one on its reset day, which only the usage
    figures tell (the budget guard knows them), so until then: an hour."""
    try:
        body = response.json()
    except requests.JSONDecodeError:
        body = None
    period = body.get("period") if isinstance(body, dict) else None
    period = period if isinstance(period, str) else None
    if period == "Daily":
        return datetime.combine(now.date() + timedelta(days=1), time(), UTC), period
    return now + USAGE_CAP_RECHECK, period


def _count(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _day(value: object) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (moment.astimezone(UTC) if moment.tzinfo else moment).date()
