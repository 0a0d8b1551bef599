"""The monthly read budget of a source billed per resource returned (X since February 2026):
each configured source's budget, and the two ways a read is refused for it. The figures
themselves (prices, the billing period, where a source stands in it) are pure value types in
:mod:`syncd.model`, which state stores and the read model reports without reaching up here.

X bills every post a response carries ($0.005), every user object ($0.010) and every post
read with the account's own user token ($0.001), once per resource per UTC day, under a
monthly project cap; past the cap it answers ``usage-capped`` until the cap resets on its
reset day. A source's use of the period is the larger of syncd's own count (every resource
its pages returned, :mod:`syncd.state.usage`) and the network's (``GET /2/usage/tweets``):
syncd's own misses the project's other apps, the network's lags. At
:data:`~syncd.model.WARN_AT` percent of the budget (or of the network's cap) syncd warns; at
:data:`~syncd.model.PAUSE_AT` backfills, gap recovery among them, wait for the next period;
live polling goes on until the network refuses. :mod:`syncd.budget.guard` acts on this.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol, runtime_checkable

from syncd.errors import UsageCapped, UserError
from syncd.model import Budget, Prices


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
