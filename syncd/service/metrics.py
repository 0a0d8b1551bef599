"""Prometheus metrics for ``syncd run``, on a registry of their own (never the global one).

Two kinds of figures:

- counters fed by what the daemon's jobs already get back (``PollResult``, ``ResolveResult``,
  ``DeliverResult``) and by the errors they raise, so the pipeline itself carries no metrics
  code; API calls and rate-limit headers are counted from what each source reports of its
  answers (:class:`syncd.contracts.ObservedResponses`, from whatever HTTP library its
  connector uses), and read from the CRM connector's own counters;
- what a source says of itself when scraped, where it tells (the optional
  :class:`syncd.contracts.UsageRatios` and :class:`syncd.contracts.DroppedHints`): the share
  of each allowance its network says is used, and the webhook hints it dropped;
- gauges read from the state database when scraped (deliveries by state, poll lag, backfill
  progress, parked accounts, gaps, interactions whose author the network withheld): the
  database is the truth, shared with any other process, and read through the read model
  ``syncd status`` reads it through (:mod:`syncd.state.status`). They are cached for
  :data:`STATE_MAX_AGE` so a burst of scrapes, or a scrape beside the sd_notify status line,
  costs one set of queries.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from syncd.backfill.gap_metrics import gap_metrics
from syncd.budget.metrics import BudgetCollector
from syncd.contracts import (
    DroppedHints,
    ObservedResponses,
    RateLimited,
    ResponseObserver,
    UsageRatios,
)
from syncd.model import Direction, Stream
from syncd.service.http import Run
from syncd.state import status as read_model
from syncd.state.status import Snapshot

if TYPE_CHECKING:
    from syncd.service.app import App, Job

log = logging.getLogger("syncd.metrics")

STATE_MAX_AGE = 10.0  # seconds a state snapshot is reused
_DIRECTION = {Stream.MENTIONS: Direction.INBOUND, Stream.REPLIES: Direction.OUTBOUND}


class StateView:
    """Cached read of the state database for metrics and the sd_notify status line."""

    def __init__(self, app: Callable[[], App]) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._cached: tuple[float, Snapshot] | None = None
        self._took = 0.0  # seconds the last read took

    def snapshot(self, max_age: float = STATE_MAX_AGE) -> Snapshot:
        # Counting deliveries by network and direction reads every delivery: 6.5 s at a
        # million (bench/growth.py). Never re-read sooner than 10× the last read took, so
        # metrics cost at most a tenth of a core, and a long read snapshot does not hold up
        # SQLite's checkpoints every 15 s.
        with self._lock:  # one query set at a time; the others wait and share it
            age = max(max_age, 10 * self._took)
            if self._cached is not None and time.monotonic() - self._cached[0] < age:
                return self._cached[1]
            started = time.monotonic()
            snap = self._read()
            self._took = time.monotonic() - started
            self._cached = (time.monotonic(), snap)
            return snap

    def _read(self) -> Snapshot:
        app = self._app()
        with app.db.connect() as conn:
            return read_model.snapshot(conn, app.settings.crm.name, app.pipeline.clock())


def status_line(state: StateView, crm: str, parked: set[str]) -> str | None:
    """The sd_notify STATUS= line: backlog and last successful poll; None if state is down."""
    try:
        snap = state.snapshot()
    except Exception:  # the jobs report a database outage; the shown line just stays old
        log.debug("no status line: state not readable", exc_info=True)
        return None
    last = snap.latest_success()
    return (
        f"STATUS=backlog {snap.pending(crm)} pending; last successful poll "
        + (f"{last:%Y-%m-%d %H:%M:%S} UTC" if last else "none yet")
        + (f"; parked: {', '.join(sorted(parked))}" if parked else "")
    )


class ApiStats:
    """HTTP calls and the latest rate-limit headers, per API client and endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: dict[tuple[str, str, str, str], int] = {}  # api, client, endpoint, code
        self.remaining: dict[tuple[str, str, str], tuple[int, int | None]] = {}

    def observer(
        self, api: str, client: str, rate_headers: tuple[str, str] | None = None
    ) -> ResponseObserver:
        """What counts ``client``'s calls; with ``rate_headers`` (the names of the headers
        holding the requests left and the window's size), its rate limit too."""

        def on_response(endpoint: str, status: int, headers: Mapping[str, str]) -> None:
            code = f"{status // 100}xx"
            remaining = limit = None
            if rate_headers is not None:
                remaining = _int(headers.get(rate_headers[0].lower()))
                limit = _int(headers.get(rate_headers[1].lower()))
            with self._lock:
                key = (api, client, endpoint, code)
                self.calls[key] = self.calls.get(key, 0) + 1
                if remaining is not None:
                    self.remaining[(api, client, endpoint)] = (remaining, limit)

        return on_response


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class Metrics:
    """The daemon's registry; ``observe`` and ``error`` are called from its jobs."""

    def __init__(
        self,
        app: Callable[[], App],
        last_tick: Callable[[], float | None],
        runs: Callable[[], Sequence[Run]] = tuple,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.state = StateView(app)
        self.api = ApiStats()
        self._app = app
        self._last_tick = last_tick
        self._runs = runs
        # Weak: a source of an app dropped on reload must not be kept, nor its id reused.
        self._observed: weakref.WeakSet[ObservedResponses] = weakref.WeakSet()
        reg = self.registry
        self.fetched = Counter(
            "syncd_interactions_fetched",
            "Interactions read from a network by live polls.",
            ["network", "direction"],
            registry=reg,
        )
        self.stored = Counter(
            "syncd_interactions_stored",
            "Interactions stored new by live polls (the rest had been read before).",
            ["network", "direction"],
            registry=reg,
        )
        self.quarantined = Counter(
            "syncd_items_quarantined", "API items that could not be translated.", ["network"],
            registry=reg,
        )  # fmt: skip
        self.written = Counter(
            "syncd_writer_records",
            "CRM history records the writer handled, by outcome.",
            ["crm", "outcome"],
            registry=reg,
        )
        self.resolved = Counter(
            "syncd_resolver_authors",
            "Authors the resolver handled, by outcome.",
            ["outcome"],
            registry=reg,
        )
        self.errors = Counter(
            "syncd_errors", "Failed job runs, by job and error class.", ["job", "error"],
            registry=reg,
        )  # fmt: skip
        reg.register(_Collector(self))
        reg.register(BudgetCollector(app))  # reads, cost and budget per metered source

    def attach(self, app: App) -> None:
        """Count the API calls of ``app``'s sources that report their answers (once each:
        attached again after a reload, a source kept is not counted twice)."""
        for name, (_, source) in app.sources.items():
            if isinstance(source, ObservedResponses) and source not in self._observed:
                self._observed.add(source)
                headers = source.rate_limit_headers if isinstance(source, RateLimited) else None
                source.observe_responses(self.api.observer(source.network, name, headers))

    def observe(self, job_id: str, job: Job | None, result: Any) -> None:
        """Count what a job's successful run returned."""
        kind = job_id.split(":", 1)[0]
        if kind == "poll" and job is not None:
            labels = (job.account.network, str(_DIRECTION.get(job.stream, job.stream)))
            self.fetched.labels(*labels).inc(result.seen)
            self.stored.labels(*labels).inc(result.new)
            if result.quarantined:
                self.quarantined.labels(job.account.network).inc(result.quarantined)
        elif kind == "resolve":
            for outcome in ("linked", "review", "leads", "skipped", "unmatched", "woken"):
                if value := getattr(result, outcome, 0):
                    self.resolved.labels(outcome).inc(value)
        elif kind == "write":
            crm = self._app().settings.crm.name
            for outcome in ("written", "retrying", "dead", "relinking"):
                if value := getattr(result, outcome, 0):
                    self.written.labels(crm, outcome).inc(value)

    def error(self, job_id: str, exc: BaseException) -> None:
        self.errors.labels(job_id, type(exc).__name__).inc()


class _Collector:
    """Gauges computed at scrape time, from state and from the CRM connector."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._api()
        yield from _source_figures(self.m._app())
        yield from _job_runs(self.m._runs(), time.monotonic())
        tick = self.m._last_tick()
        if tick is not None:
            g = GaugeMetricFamily(
                "syncd_scheduler_last_tick_timestamp_seconds",
                "When the scheduler last proved it is dispatching jobs (Unix time).",
            )
            g.add_metric([], tick)
            yield g
        up = GaugeMetricFamily("syncd_state_up", "1 if the state database answered this scrape.")
        try:
            snap = self.m.state.snapshot()
        except Exception:  # a scrape must still answer, saying the database did not
            log.warning("metrics: state database did not answer", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _state_metrics(snap)

    def _api(self) -> Iterable[Metric]:
        calls = CounterMetricFamily(
            "syncd_api_calls", "HTTP calls made to outside APIs.",
            labels=["api", "client", "endpoint", "code"],
        )  # fmt: skip
        remaining = GaugeMetricFamily(
            "syncd_api_rate_limit_remaining",
            "Requests left in the current rate-limit window, from the latest response.",
            labels=["api", "client", "endpoint"],
        )
        limit = GaugeMetricFamily(
            "syncd_api_rate_limit", "Size of the rate-limit window, from the latest response.",
            labels=["api", "client", "endpoint"],
        )  # fmt: skip
        with self.m.api._lock:
            for key, n in self.m.api.calls.items():
                calls.add_metric(list(key), n)
            for key3, (left, size) in self.m.api.remaining.items():
                remaining.add_metric(list(key3), left)
                if size is not None:
                    limit.add_metric(list(key3), size)
        app = self.m._app()
        crm, name = app.crm, app.settings.crm.name
        api_calls, usage = getattr(crm, "api_calls", None), getattr(crm, "api_usage", None)
        if isinstance(api_calls, int):
            calls.add_metric([app.settings.crm.type, name, "*", "all"], api_calls)
        if isinstance(usage, tuple) and len(usage) == 2:  # Salesforce's rolling 24 h allocation
            used, size = usage
            remaining.add_metric([app.settings.crm.type, name, "daily"], size - used)
            limit.add_metric([app.settings.crm.type, name, "daily"], size)
        return [calls, remaining, limit]


def _source_figures(app: App) -> Iterator[Metric]:
    """What sources say of themselves beyond their answers' headers: the share of each
    allowance used, and the webhook hints dropped (each only from a source that tells)."""
    ratio = GaugeMetricFamily(
        "syncd_source_usage_ratio",
        "Share of an allowance the source's network says the app has used (1: all of it), "
        "per figure, from the latest answer that gave it.",
        labels=["source", "figure"],
    )
    dropped = CounterMetricFamily(
        "syncd_webhook_hints_dropped",
        "Webhook hints taken with nothing stored: the API refused the object, or it does "
        "not concern the account (a forged or misdirected delivery).",
        labels=["source", "reason"],
    )
    for name, (_, source) in sorted(app.sources.items()):
        if isinstance(source, UsageRatios):
            for figure, value in sorted(source.usage_ratios().items()):
                ratio.add_metric([name, figure], value)
        if isinstance(source, DroppedHints):
            # A copy first: the poll threads count on while the scrape reads.
            for reason, n in sorted(dict(source.dropped_hints).items()):
                dropped.add_metric([name, reason], n)
    yield ratio
    yield dropped


def _job_runs(runs: Sequence[Run], now: float) -> Iterator[Metric]:
    # The same judgement /healthz makes, as numbers an alert rule can watch over time.
    running = GaugeMetricFamily(
        "syncd_job_running_seconds", "How long each job run in progress has lasted.", labels=["job"]
    )
    stuck = GaugeMetricFamily(
        "syncd_job_stuck",
        "1 while a job run has lasted past its stuck limit ([daemon] stuck_after or three "
        "of its intervals); /healthz fails meanwhile.",
        labels=["job"],
    )
    for run in runs:
        running.add_metric([run.job], now - run.started)
        stuck.add_metric([run.job], 1.0 if now - run.started > run.limit else 0.0)
    yield running
    yield stuck


def _state_metrics(snap: Snapshot) -> Iterator[Metric]:
    d = GaugeMetricFamily(
        "syncd_deliveries",
        "Interactions per CRM by delivery state (written: in the CRM history).",
        labels=["crm", "network", "direction", "state"],
    )
    for key, n in sorted(snap.deliveries.items()):
        d.add_metric(list(key), n)
    yield d
    lag = GaugeMetricFamily(
        "syncd_poll_lag_seconds",
        "Seconds since the stream's last successful poll.",
        labels=["source", "account", "stream"],
    )
    last = GaugeMetricFamily(
        "syncd_poll_last_success_timestamp_seconds",
        "When the stream last polled successfully (Unix time).",
        labels=["source", "account", "stream"],
    )
    for stream, at in sorted(snap.last_success.items()):
        if at is not None:
            lag.add_metric(list(stream), max(0.0, (snap.taken - at).total_seconds()))
            last.add_metric(list(stream), at.timestamp())
    yield lag
    yield last
    progress = GaugeMetricFamily(
        "syncd_backfill_posts",
        "Progress of active backfills: posts read, stored new, written, held, estimated.",
        labels=["id", "source", "account", "what"],
    )
    status = GaugeMetricFamily(
        "syncd_backfill_status", "1 for an active backfill's status.",
        labels=["id", "source", "account", "status"],
    )  # fmt: skip
    for job in snap.backfills:
        ids = [str(job.id), job.source, job.account]
        status.add_metric([*ids, job.status], 1)
        figures: tuple[tuple[str, int | None], ...] = (
            ("read", job.read),
            ("new", job.new),
            ("written", job.written),
            ("held", job.held),
            ("estimated", job.estimated),
        )
        for what, value in figures:
            if value is not None:
                progress.add_metric([*ids, what], value)
    yield progress
    yield status
    parked = GaugeMetricFamily(
        "syncd_parked",
        "1 for each account (or the CRM) parked on auth failures, and each stream "
        "(source:handle:stream) parked on unreadable answers.",
        labels=["name"],
    )
    for name in sorted(snap.parked):
        parked.add_metric([name], 1)
    yield parked
    withheld = GaugeMetricFamily(
        "syncd_interactions_author_withheld",
        "Interactions stored whose author the network withheld: linked to no one, never "
        "written to the CRM.",
        labels=["source", "network"],
    )
    for w in snap.withheld:
        withheld.add_metric([w.source, w.network], w.interactions)
    yield withheld
    yield from gap_metrics(snap.gaps)
