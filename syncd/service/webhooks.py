"""What the HTTP listener's ``/webhooks/<source>`` is served from (:class:`syncd.service.http.
Webhooks`): the configured sources that receive webhooks, and the hint store in state."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from syncd.contracts import WebhookEndpoint, WebhookSource
from syncd.model import WebhookHint
from syncd.state import hints
from syncd.state.db import Database


class SourceWebhooks:
    """Each source by its configured name; one delivery's hints stored in one transaction.
    Read through callables, so a reload's sources and database are the ones served."""

    def __init__(
        self,
        sources: Callable[[], Mapping[str, object]],
        db: Callable[[], Database],
        clock: Callable[[], datetime],
        hinted: Callable[[str], object] | None = None,
    ) -> None:
        self._sources = sources
        self._db = db
        self._clock = clock
        # Told a source's name once a delivery stored new hints (the daemon polls it early).
        self._hinted = hinted

    def endpoint(self, source: str) -> WebhookEndpoint | None:
        found = self._sources().get(source)
        return found.webhook() if isinstance(found, WebhookSource) else None

    def store(self, source: str, received: Sequence[WebhookHint]) -> int:
        with self._db().transaction() as conn:
            new = hints.add(conn, source, received, self._clock())
        if new and self._hinted is not None:
            self._hinted(source)
        return new
