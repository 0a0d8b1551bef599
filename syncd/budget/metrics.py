"""The read budget on ``/metrics``: per source billed per resource, what it read today and this
billing period, the estimated cost, the budget and the share used, the network's own figures,
and whether backfills are paused or the network capped it. Read from state at scrape time
(the truth every instance shares) through the read model ``syncd status`` reads too, reused
for :data:`MAX_AGE` seconds."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric

from syncd.model import Standing
from syncd.state import status as read_model

if TYPE_CHECKING:
    from syncd.service.app import App

log = logging.getLogger("syncd.metrics")
MAX_AGE = 10.0


class BudgetCollector:
    def __init__(self, app: Callable[[], App]) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Standing]] | None = None

    def standings(self) -> list[Standing]:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < MAX_AGE:
                return self._cached[1]
            app = self._app()
            now = app.pipeline.clock()
            with app.db.connect() as conn:
                found = read_model.standings(conn, app.guard.budgets, now)
            self._cached = (time.monotonic(), found)
            return found

    def collect(self) -> Iterator[Metric]:
        try:
            standings = self.standings()
        except Exception:  # syncd_state_up says the database did not answer
            log.debug("metrics: budget figures not read", exc_info=True)
            return
        yield from _gauges(standings)


def _gauges(standings: list[Standing]) -> Iterator[Metric]:
    reads = GaugeMetricFamily(
        "syncd_budget_reads",
        "Resources a source's pages returned, as the network bills them, today (UTC) and "
        "this billing period.",
        labels=["source", "period", "resource"],
    )
    cost = GaugeMetricFamily(
        "syncd_budget_cost_dollars",
        "Estimated cost of what a source read, today and this billing period (the period "
        "counts posts only the network counted too).",
        labels=["source", "period"],
    )
    limit = GaugeMetricFamily(
        "syncd_budget_limit", "A source's configured monthly budget.", labels=["source", "unit"]
    )
    ratio = GaugeMetricFamily(
        "syncd_budget_used_ratio",
        "Share of the configured budget used this period (1: all of it).",
        labels=["source"],
    )
    network = GaugeMetricFamily(
        "syncd_budget_network_posts",
        "The network's own count of posts read by the app's project this period, and its cap.",
        labels=["source", "what"],
    )
    paused = GaugeMetricFamily(
        "syncd_budget_backfills_paused",
        "1 while a source's backfills wait: 90% of its budget or of the cap used, or capped.",
        labels=["source"],
    )
    capped = GaugeMetricFamily(
        "syncd_budget_capped",
        "1 while the network refuses a source for its usage cap.",
        labels=["source"],
    )
    until = GaugeMetricFamily(
        "syncd_budget_capped_until_timestamp_seconds",
        "When a capped source's cap resets (Unix time).",
        labels=["source"],
    )
    for st in standings:
        for period, counts in (("today", st.today), ("period", st.month)):
            reads.add_metric([st.source, period, "posts"], counts.posts)
            reads.add_metric([st.source, period, "users"], counts.users)
            reads.add_metric([st.source, period, "owned_posts"], counts.owned_posts)
        cost.add_metric([st.source, "today"], st.today_cost)
        cost.add_metric([st.source, "period"], st.cost)
        if st.budget_posts:
            limit.add_metric([st.source, "posts"], st.budget_posts)
        if st.budget_dollars:
            limit.add_metric([st.source, "dollars"], st.budget_dollars)
        if st.percent is not None:
            ratio.add_metric([st.source], st.percent / 100)
        if st.network_posts is not None:
            network.add_metric([st.source, "used"], st.network_posts)
        if st.network_cap is not None:
            network.add_metric([st.source, "cap"], st.network_cap)
        paused.add_metric([st.source], 1 if st.backfills_paused else 0)
        capped.add_metric([st.source], 1 if st.capped_until is not None else 0)
        if st.capped_until is not None:
            until.add_metric([st.source], st.capped_until.timestamp())
    yield from (reads, cost, limit, ratio, network, paused, capped, until)
