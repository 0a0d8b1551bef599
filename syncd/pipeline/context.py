"""What the stages of one pipeline share: its settings, state, clock, stop flag and retry policy."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_when_event_set,
    wait_random_exponential,
)

from syncd.errors import TransientError
from syncd.model import DEFAULT_TARGET
from syncd.resolver.stage import ResolveSettings
from syncd.state.db import Database

T = TypeVar("T")
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PipelineSettings:
    retries: int = 3  # extra attempts for a transient failure of an idempotent call
    retry_max_wait: float = 10.0  # seconds, cap of the jittered exponential backoff
    write_batch: int = 200  # records per CRM upsert call
    # Matchers, thresholds, the unmatched policy, the resolution back-off.
    resolve: ResolveSettings = field(default_factory=ResolveSettings)
    record_max_attempts: int = 8  # per-record retryable errors before the dead letter
    # Ready records of one target from which a bulk job writes them (0: never), where the
    # CRM has bulk jobs (syncd.pipeline.bulk).
    bulk_threshold: int = 10_000
    # Seconds a live write round holds back less than one CRM call's worth of records
    # while its oldest post is younger than this, for more to join them (0: never).
    batch_wait: float = 0.0
    lease: float = 60.0  # seconds a claim on deliveries lasts (PostgreSQL, several instances)
    # A stored author profile younger than this is not read from the network again.
    profile_max_age: timedelta = timedelta(days=7)
    # Pages one poll of a stream reads at most ([daemon] max_pages_per_walk): X's deepest
    # timeline walk is 32 pages (3,200 posts, 100 a page), so only an API or proxy that
    # never ends a walk meets it; the walk goes on from its stored cursor next poll.
    max_pages_per_walk: int = 100
    # A delivery whose post was last seen standing longer ago than this is looked up on its
    # network before its write ([compliance] before_write; None: never), see
    # syncd.compliance.deleted.before_write.
    check_before_write: timedelta | None = None


@dataclass(frozen=True)
class Context:
    """One pipeline's shared ground, handed to its poller and its writer."""

    db: Database
    crm_name: str
    settings: PipelineSettings
    clock: Clock
    # The CRM's history targets (Crm.history_targets): each interaction is one delivery per
    # target, written, retried and dead-lettered on its own.
    targets: tuple[str, ...] = (DEFAULT_TARGET,)
    # Set on shutdown: loops stop between pages and batches. Each page and batch is its
    # own transaction, so what was done is kept and the next start resumes from there.
    stopping: threading.Event = field(default_factory=threading.Event)

    def _pause(self, seconds: float) -> None:
        self.stopping.wait(seconds)

    def retrying(self, call: Callable[[], T]) -> T:
        """Run an idempotent call, retrying transient failures with jittered backoff."""
        for attempt in Retrying(
            retry=retry_if_exception_type(TransientError),
            # Shutdown ends the back-off at once: a stopping daemon must not sit in a sleep.
            stop=stop_after_attempt(self.settings.retries + 1) | stop_when_event_set(self.stopping),
            wait=wait_random_exponential(multiplier=0.5, max=self.settings.retry_max_wait),
            sleep=self._pause,
            reraise=True,
        ):
            with attempt:
                return call()
        raise AssertionError("unreachable")  # pragma: no cover
