"""The HTTP side of the Mastodon source: Mastodon.py's ``Mastodon`` on a session of ours, and
:meth:`MastodonClient.call`, the one place a request is made and what failed classified.

Mastodon.py is used unmodified, with ``ratelimit_method="throw"``: it would otherwise sleep
inside the call (up to five minutes), and nobody sleeps in a worker. A ``requests`` response
hook keeps each answer's response, so the connector reads the JSON as the server sent it (the
raw body a quarantined item is kept with) and its ``X-RateLimit-*`` headers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from mastodon import Mastodon
from mastodon.errors import (
    MastodonAPIError,
    MastodonError,
    MastodonNetworkError,
    MastodonNotFoundError,
    MastodonRatelimitError,
    MastodonServerError,
    MastodonUnauthorizedError,
)

from connectors._http import ResponseReporter, RewritingAdapter, mount
from connectors.mastodon.parse import NETWORK, clip, reset_at
from syncd.contracts import ResponseObserver
from syncd.contracts.secrets import masked
from syncd.errors import (
    AuthError,
    ExternalError,
    MalformedAnswer,
    NotFound,
    RateLimited,
    SyncdError,
    TransientError,
)

# Mastodon's shortest window (300 requests per 5 minutes): the wait when a 429 says nothing.
_RATE_WINDOW = timedelta(minutes=5)


class MastodonClient:
    """One Mastodon.py client for the brand's token, on a session that goes through the shared
    plumbing (whole-request deadline, plain HTTP to loopback only)."""

    def __init__(self, access_token: str, *, api_base_url: str, timeout: float) -> None:
        self._token = access_token
        self.session = requests.Session()
        mount(self.session, RewritingAdapter({}, timeout))
        self._local = threading.local()
        # When the instance said no request is left in its window (X-RateLimit-Remaining: 0),
        # until its X-RateLimit-Reset: calls wait for it instead of drawing a 429.
        self._spent_until: datetime | None = None
        self._reporter = ResponseReporter()
        self.session.hooks["response"] += [self._remember, self._reporter.requests_hook]
        self.api: Any = Mastodon(
            access_token=access_token,
            api_base_url=api_base_url,
            ratelimit_method="throw",
            request_timeout=timeout,
            # "none": no GET /api/v1/instance on construction; the endpoints used here are
            # all in Mastodon 4.3 and later (the notification policy v2 came with 4.3).
            version_check_mode="none",
            session=self.session,
        )

    def call(self, method: Callable[..., Any], **params: Any) -> tuple[Any, Any, Mapping[str, str]]:
        """``method(**params)`` (a Mastodon.py method): the library's result (it carries the
        ``Link`` header's pagination), the body as the server sent it, and the headers.
        What failed is raised as the :mod:`syncd.errors` class that tells the runner what to do."""
        now = datetime.now(UTC)
        if self._spent_until is not None and self._spent_until > now:
            raise RateLimited(
                "Mastodon's rate limit is spent (X-RateLimit-Remaining: 0)",
                resume_at=self._spent_until,
                system=NETWORK,
            )
        self._local.response = None
        error: SyncdError | None = None
        result: Any = None
        try:
            result = method(**params)
        except (MastodonError, requests.RequestException) as exc:
            error = classify(exc, self._local.response)
        response: requests.Response | None = self._local.response
        self._local.response = None
        if error is not None:
            # Raised outside the except block: no traceback chains to the library's exception.
            raise self.redact(error)
        headers: Mapping[str, str] = response.headers if response is not None else {}
        self._pace(headers)
        if response is None:
            return result, None, headers
        try:
            body = response.json()
        except ValueError as exc:
            raise MalformedAnswer(
                f"Mastodon sent a body that is not JSON: {clip(str(exc))}", system=NETWORK
            ) from None
        return result, body, headers

    def observe_responses(self, callback: ResponseObserver) -> None:
        """``callback`` told of every answer Mastodon.py gets on this client's session."""
        self._reporter.add(callback)

    def _pace(self, headers: Mapping[str, str]) -> None:
        remaining = headers.get("x-ratelimit-remaining")
        self._spent_until = (
            reset_at(headers) if remaining is not None and remaining.strip() == "0" else None
        )

    def redact(self, error: SyncdError) -> SyncdError:
        text = masked(str(error), [self._token])
        if text != str(error):
            error.args = (text,)
        return error

    def close(self) -> None:
        self.session.close()

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._local.response = response


def classify(exc: Exception, response: requests.Response | None) -> SyncdError:
    """The one table from what Mastodon.py raised to what the runner must do. The status is
    read from the response itself where there is one: the library's 429 carries no headers."""
    status = response.status_code if response is not None else None
    detail = clip(" ".join(str(a) for a in exc.args if a is not None) or type(exc).__name__)
    message = f"Mastodon API {status}: {detail}" if status else f"Mastodon request failed: {detail}"
    now = datetime.now(UTC)
    if isinstance(exc, MastodonRatelimitError) or status == 429:
        resume = (
            reset_at(response.headers) if response is not None else None
        ) or now + _RATE_WINDOW
        return RateLimited(message, resume_at=max(resume, now), system=NETWORK, status=429)
    if isinstance(exc, MastodonUnauthorizedError) or status in (401, 403):
        return AuthError(message, system=NETWORK, status=status)
    if isinstance(exc, MastodonNotFoundError) or status == 404:
        return NotFound(message, system=NETWORK, status=status)
    if isinstance(exc, MastodonServerError) or (status is not None and status >= 500):
        return TransientError(message, system=NETWORK, status=status)
    if isinstance(exc, MastodonNetworkError | requests.RequestException):
        return TransientError(message, system=NETWORK)
    if isinstance(exc, MastodonAPIError) and status is not None and 200 <= status < 300:
        # Mastodon.py's "Could not parse response as JSON" on a 200: the answer is unreadable.
        return MalformedAnswer(f"Mastodon sent an unreadable body: {detail}", system=NETWORK)
    return ExternalError(message, system=NETWORK, status=status)
