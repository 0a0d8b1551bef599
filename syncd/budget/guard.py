"""The budget guard: keeps each source billed per resource within its monthly budget, and off
the network once the network capped it (see the figures in :mod:`syncd.model`).

- Before a poll: while the source is capped the poll is refused before any request
  (:class:`~syncd.budget.ledger.CappedSource`, whose ``resume_at`` the daemon moves the job to); a
  cap whose reset has come is lifted; the network's usage figures are read when due, at most
  every :data:`USAGE_INTERVAL` whichever instance asks.
- When the network answers ``usage-capped``: the whole source is capped until the cap's
  reset (its reset day from the usage figures; a daily cap at midnight UTC; else the
  connector's guess), logged once, kept in state for every instance and ``syncd status``.
- After a poll, and before each backfill request: where the source stands; each threshold
  crossed is logged once (one instance logs it); from :data:`~syncd.model.PAUSE_AT` percent,
  or while capped, a backfill step is refused (:class:`~syncd.budget.ledger.BudgetHeld`). Live polls
  never are, short of the network's cap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, time, timedelta

from syncd.budget.ledger import BudgetHeld, CappedSource
from syncd.contracts import Source, UsageReporter
from syncd.errors import ExternalError, UsageCapped
from syncd.model import PAUSE_AT, SPENT_AT, WARN_AT, Budget, Ledger, Standing, period
from syncd.state import usage
from syncd.state.db import Database

log = logging.getLogger("syncd.budget")

# The network's figures are asked for at most this often (X allows 50 a window; they move
# slowly, and each instance's own count fills the time between).
USAGE_INTERVAL = timedelta(minutes=15)


class BudgetGuard:
    def __init__(
        self,
        db: Database,
        budgets: Mapping[str, Budget],
        sources: Mapping[str, Source],
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.budgets = dict(budgets)
        self.sources = dict(sources)
        self.clock = clock
        self._unread: set[str] = set()  # sources whose last usage read failed (said once)

    # -- polls ---------------------------------------------------------------------------
    def before_poll(self, name: str) -> None:
        """Refuse a read of a capped source (:class:`CappedSource`); lift a cap whose reset
        has come; read the network's usage figures when due."""
        if name not in self.budgets:
            return
        now = self.clock()
        kept = self._ledger(name)
        if kept.capped_until is not None:
            if kept.capped_until > now:
                raise self._refusal(name, kept.capped_until, kept.capped_reason or "capped")
            with self.db.transaction() as conn:
                lifted = usage.lift_cap(conn, name, now)
            if lifted:
                log.info("%s: the network's usage cap has reset: polls and backfills resume", name)
        self.refresh(name, kept, now)

    def capped(self, name: str, exc: UsageCapped) -> CappedSource:
        """The network refused ``name`` for its usage cap: cap the whole source until the
        cap resets (logged once, by whoever capped it) and return the refusal to raise."""
        now = self.clock()
        kept = self._ledger(name)
        if exc.period != "Daily" and kept.cap_reset_day is None:
            self.refresh(name, kept, now)  # the reset day, unless asked for just now
            kept = self._ledger(name)
        if exc.period != "Daily" and kept.cap_reset_day is not None:
            until = period(now, kept.cap_reset_day)[1]
        else:
            until = exc.resume_at
        with self.db.transaction() as conn:
            began = usage.cap(conn, name, until, str(exc), now)
        if began:
            log.warning(
                "%s: %s: the network's usage cap is reached; nothing of this source is read "
                "(polls, backfills) until %s UTC",
                name,
                exc,
                f"{until:%Y-%m-%d %H:%M}",
            )
        return self._refusal(name, until, str(exc))

    def review(self, name: str) -> Standing | None:
        """Where ``name`` stands; log each threshold crossed since the last look, once."""
        budget = self.budgets.get(name)
        if budget is None:
            return None
        now = self.clock()
        with self.db.connect() as conn:
            kept = usage.ledger(conn, name)
            now_standing = usage.standing(conn, name, budget, now, kept)
        # A level said in an earlier period is not this one's (the period itself may move
        # once the network tells its reset day: the moment it was said decides).
        start = datetime.combine(now_standing.period_start, time(), UTC)
        current = kept.alerted_at is not None and kept.alerted_at >= start
        said = kept.alert_level if current else 0
        band = now_standing.band
        if band != said:
            with self.db.transaction() as conn:
                moved = usage.move_alert(conn, name, kept, band, now)
            if moved:
                _say(now_standing, said, band)
        return now_standing

    # -- backfills -----------------------------------------------------------------------
    def before_backfill(self, name: str) -> None:
        """Refuse a backfill request (:class:`BudgetHeld`) while the source is capped or
        has used :data:`PAUSE_AT` percent of its budget or of the network's cap."""
        if name not in self.budgets:
            return
        try:
            self.before_poll(name)
        except CappedSource as exc:
            raise BudgetHeld(f"backfill waits: {exc}", until=exc.resume_at) from None
        st = self.review(name)
        if st is not None and st.backfills_paused:
            raise BudgetHeld(
                f"backfill waits: {name} has used {st.pressure:.0f}% of this period's "
                f"budget ({PAUSE_AT}% pauses backfills) until it resets on "
                f"{st.resets_at:%Y-%m-%d %H:%M} UTC",
                until=st.resets_at,
            )

    def holds_backfill(self, name: str) -> bool:
        try:
            self.before_backfill(name)
        except BudgetHeld:
            return True
        return False

    def backfill_capped(self, name: str, exc: UsageCapped) -> BudgetHeld:
        refusal = self.capped(name, exc)
        return BudgetHeld(f"backfill waits: {refusal}", until=refusal.resume_at)

    # -- the network's figures -----------------------------------------------------------
    def refresh(self, name: str, kept: Ledger | None = None, now: datetime | None = None) -> None:
        """Read the network's usage figures for ``name`` if nobody did in the last
        :data:`USAGE_INTERVAL`. A failure is logged once; the local count carries on alone."""
        source = self.sources.get(name)
        if not isinstance(source, UsageReporter):
            return
        now = now or self.clock()
        checked = kept.checked_at if kept is not None else None
        if checked is not None and checked > now - USAGE_INTERVAL:
            return  # asked lately: no need to ask the database for the claim either
        with self.db.transaction() as conn:
            if not usage.claim_check(conn, name, now, USAGE_INTERVAL):
                return
        try:
            figures = source.project_usage()
        except ExternalError as exc:
            if name not in self._unread:
                self._unread.add(name)
                log.warning(
                    "%s: the network's usage figures could not be read (%s: %s); the "
                    "budget is measured on syncd's own count until they can",
                    name,
                    type(exc).__name__,
                    exc,
                )
            return
        if name in self._unread:
            self._unread.discard(name)
            log.info("%s: the network's usage figures are read again", name)
        with self.db.transaction() as conn:
            usage.store_figures(conn, name, figures, now)

    # -- helpers -------------------------------------------------------------------------
    def _ledger(self, name: str) -> Ledger:
        with self.db.connect() as conn:
            return usage.ledger(conn, name)

    def _refusal(self, name: str, until: datetime, reason: str) -> CappedSource:
        source = self.sources.get(name)
        return CappedSource(
            f"{name}: capped by the network until {until:%Y-%m-%d %H:%M} UTC ({reason})",
            resume_at=until,
            system=source.network if source is not None else "",
        )


def _say(st: Standing, said: int, band: int) -> None:
    """Log a threshold crossing: up, each threshold's consequence; down, that backfills go on."""
    used = _figures(st)
    resets = f"{st.resets_at:%Y-%m-%d %H:%M} UTC"
    if band > said and band >= SPENT_AT:
        log.warning(
            "%s: budget spent: %s; backfills stay paused until %s, live polling goes on "
            "until the network's cap",
            st.source,
            used,
            resets,
        )
    elif band > said and band >= PAUSE_AT:
        log.warning(
            "%s: %s; backfills and gap recovery pause until %s, live polling goes on",
            st.source,
            used,
            resets,
        )
    elif band > said and band >= WARN_AT:
        log.warning("%s: %s; backfills pause at %d%%", st.source, used, PAUSE_AT)
    elif said >= PAUSE_AT > band:
        log.info(
            "%s: back under %d%% of the budget (%s): backfills resume", st.source, PAUSE_AT, used
        )


def _figures(st: Standing) -> str:
    limits = [f"budget {st.budget_posts:,} posts"] if st.budget_posts else []
    limits += [f"budget ${st.budget_dollars:,.2f}"] if st.budget_dollars else []
    limits += [f"the network's cap {st.network_cap:,} posts"] if st.network_cap else []
    return (
        f"{st.pressure:.0f}% used this period: {st.posts_used:,} posts, ${st.cost:,.2f} "
        f"({'; '.join(limits)})"
    )
