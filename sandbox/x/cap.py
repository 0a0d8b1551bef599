"""The X stand-in's project cap: ``GET /2/usage/tweets`` and the ``usage-capped`` refusal.

The project's usage is the posts the meter (:mod:`.x_usage`) billed since the cap last reset,
at 00:00 UTC on ``cap_reset_day`` (a shorter month's last day). Once it reaches the cap, every
billed endpoint answers ``usage-capped`` (a 429, or a 403 as X also sends) until the reset.
Figures are numeric strings, as the API sends them and spec 2.167 types them (2.159 says
int32, which the documented example's 5,000,000,000 does not even fit).
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta

from sandbox.server import Request
from sandbox.x import params as xp
from sandbox.x.render import SANDBOX_CLIENT_ID
from sandbox.x.store import JsonObject
from sandbox.x.usage import Usage

SANDBOX_PROJECT_ID = "1369785403853424"
USAGE_FIELDS = frozenset(
    {
        "cap_reset_day",
        "daily_client_app_usage",
        "daily_project_usage",
        "project_cap",
        "project_id",
        "project_usage",
    }
)
# What X sends without usage.fields (its documented example).
DEFAULT_USAGE_FIELDS = ("cap_reset_day", "project_cap", "project_id", "project_usage")

# The body X sends at the cap, whole (not inside errors[]), with an api.twitter.com type even
# from api.x.com: recorded in xdevplatform/xdk#25 (a 429, February 2026); spec 2.159 names it
# UsageCapExceededProblem. tweepy finds no errors[] in it.
USAGE_CAPPED: JsonObject = {
    "account_id": "1500000000000000001",
    "product_name": "standard-basic",
    "title": "UsageCapExceeded",
    "period": "Monthly",
    "scope": "Product",
    "detail": "Usage cap exceeded: Monthly product cap",
    "type": "https://api.twitter.com/2/problems/usage-capped",
}


def cap_period(now: datetime, reset_day: int) -> tuple[datetime, datetime]:
    """The cap period holding ``now``: from the last reset to the next."""

    def reset(year: int, month: int) -> datetime:
        day = min(reset_day, calendar.monthrange(year, month)[1])
        return datetime.combine(date(year, month, day), time(), UTC)

    now = now.astimezone(UTC)
    this = reset(now.year, now.month)
    if now >= this:
        return this, reset(*((now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)))
    return reset(*((now.year - 1, 12) if now.month == 1 else (now.year, now.month - 1))), this


def used(usage: Usage, now: datetime, reset_day: int) -> int:
    """Posts billed this cap period."""
    start, _ = cap_period(now, reset_day)
    return usage.posts_billed_between(start.date(), now.astimezone(UTC).date())


def usage_body(
    req: Request, usage: Usage, now: datetime, *, cap: int, reset_day: int
) -> JsonObject:
    """``GET /2/usage/tweets``: the fields asked for (``usage.fields``), the daily breakdown
    over the last ``days`` UTC days (1 to 90, 7 by default), today included."""
    fields = xp.choices(req, "usage.fields", USAGE_FIELDS) or list(DEFAULT_USAGE_FIELDS)
    days = _days(req.query.get("days"))
    today = now.astimezone(UTC).date()
    daily = [
        {
            "date": f"{day.isoformat()}T00:00:00.000Z",
            "usage": str(usage.posts_billed_between(day, day)),
        }
        for day in (today - timedelta(days=n) for n in range(days - 1, -1, -1))
    ]
    values: JsonObject = {
        "cap_reset_day": reset_day,
        "project_cap": str(cap),
        "project_id": SANDBOX_PROJECT_ID,
        "project_usage": str(used(usage, now, reset_day)),
        "daily_project_usage": {"project_id": SANDBOX_PROJECT_ID, "usage": daily},
        "daily_client_app_usage": [
            {"client_app_id": SANDBOX_CLIENT_ID, "usage": daily, "usage_result_count": days}
        ],
    }
    return {"data": {k: v for k, v in values.items() if k in fields}}


def _days(raw: str | None) -> int:
    if raw is None:
        return 7
    value = int(raw) if raw.isascii() and raw.isdigit() else 0
    if not 1 <= value <= 90:
        raise xp.InvalidRequest(
            "days", raw, f"The `days` query parameter value [{raw}] is not between 1 and 90"
        )
    return value
