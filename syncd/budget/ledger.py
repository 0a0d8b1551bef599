"""The monthly read budget of a source billed per resource returned (X since February 2026):
prices, the billing period, and where a source stands in it. Pure: no database, no network.

X bills every post a response carries ($0.005), every user object ($0.010) and every post
read with the account's own user token ($0.001), once per resource per UTC day, under a
monthly project cap; past the cap it answers ``usage-capped`` until the cap resets on its
reset day. A source's use of the period is the larger of syncd's own count (every resource
its pages returned, :mod:`syncd.state.usage`) and the network's (``GET /2/usage/tweets``):
syncd's own misses the project's other apps, the network's lags. At :data:`WARN_AT` percent
of the budget (or of the network's cap) syncd warns; at :data:`PAUSE_AT` backfills, gap
recovery among them, wait for the next period; live polling goes on until the network
refuses. :mod:`syncd.budget.guard` acts on this.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Protocol, runtime_checkable

from syncd.errors import UsageCapped, UserError

WARN_AT = 80  # percent: a warning, once per crossing
PAUSE_AT = 90  # percent: backfills (and gap recovery) wait for the next period
SPENT_AT = 100  # percent: said once more; live polling still goes on
BANDS = (SPENT_AT, PAUSE_AT, WARN_AT)


@dataclass(frozen=True)
class Prices:
    """Dollars per resource read, as the source's settings declare them (MeteredSettings)."""

    post: float
    user: float
    owned_post: float


@dataclass(frozen=True)
class Budget:
    """A source's monthly budget: posts (owned ones included), dollars, both, or neither
    (then only the network's own cap counts); reads cost ``prices``."""

    prices: Prices
    posts: int | None = None
    dollars: float | None = None


@runtime_checkable
class MeteredSettings(Protocol):
    """The settings of a source billed per resource (``[[sources]]`` of type x)."""

    @property
    def name(self) -> str: ...
    @property
    def budget_posts(self) -> int | None: ...
    @property
    def budget_dollars(self) -> float | None: ...
    @property
    def price_per_post(self) -> float: ...
    @property
    def price_per_user(self) -> float: ...
    @property
    def price_per_owned_post(self) -> float: ...


def budgets(sources: Iterable[object]) -> dict[str, Budget]:
    """The budget of each configured source that is billed per resource, by source name."""
    return {
        s.name: Budget(
            posts=s.budget_posts,
            dollars=s.budget_dollars,
            prices=Prices(s.price_per_post, s.price_per_user, s.price_per_owned_post),
        )
        for s in sources
        if isinstance(s, MeteredSettings)
    }


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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


class CappedSource(UsageCapped):
    """A read of a source the network capped, refused by syncd before any request: the cap
    was logged once for the source when it began; each job just waits for ``resume_at``."""


class BudgetHeld(UserError):
    """A backfill step refused because its source's budget (or the network's cap) is nearly
    spent: the job is queued again, for the daemon to go on with once the period resets at
    ``until``."""

    def __init__(self, message: str, *, until: datetime) -> None:
        super().__init__(f"{message}; the job is queued for the daemon to go on with then")
        self.until = until
