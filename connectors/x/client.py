"""The HTTP side of the X source: tweepy's v2 ``Client`` for the app, the accounts' user-token
clients, and :meth:`XClient.call`, the one place a request is made and what failed classified.

tweepy is used unmodified. ``return_type=dict`` hands back the JSON only, so a ``requests``
response hook keeps the ``x-rate-limit-*`` headers, and a URL-rewriting adapter points every
client at ``api_base_url`` (the sandbox, a proxy). Nothing here retries or sleeps: errors are
classified (:func:`classify`) and the pipeline decides.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import tweepy

from connectors._http import ResponseReporter, RewritingAdapter, mount
from connectors.x.auth.auth import OAuth1UserAuth, OAuth2UserAuth, OwnedReads
from connectors.x.parse import NETWORK, clip, reset_at
from connectors.x.usage import cap_resume
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
    UsageCapped,
)

# tweepy hard-codes api.twitter.com; newer code and docs say api.x.com. Both go to api_base_url.
_LIBRARY_ORIGINS = ("https://api.twitter.com", "https://api.x.com")
# X sends no Retry-After; without x-rate-limit-reset a 15-minute window is the safe guess. A
# usage cap (billing) lasts until the cap period resets: see connectors.x.usage.cap_resume.
_RATE_WINDOW = timedelta(minutes=15)

# tweepy logs every request's headers, bearer token included, at DEBUG. A service that turns on
# debug logging must not write the token to its journal.
_BEARER = re.compile(r"Bearer [^\s'\",}]+")


def _redact_bearer(record: logging.LogRecord) -> bool:
    if isinstance(record.msg, str) and "Bearer " in record.msg:
        record.msg = _BEARER.sub("Bearer [redacted]", record.msg)
    return True


logging.getLogger("tweepy.client").addFilter(_redact_bearer)


class XClient:
    """The app's tweepy client (``app``, bearer token) and, per account with user credentials,
    the client its own timelines are read with (``owned``: :mod:`connectors.x.auth.auth`), all on
    sessions that share one rewriting adapter and one response hook."""

    def __init__(
        self,
        bearer_token: str,
        *,
        api_base_url: str,
        timeout: float,
        user_auth: Mapping[str, OAuth1UserAuth | OAuth2UserAuth],
    ) -> None:
        self._token = bearer_token
        # Never wait_on_rate_limit: tweepy would sleep inside the call, and retry forever when a
        # 429 lacks x-rate-limit-reset.
        self.app: Any = tweepy.Client(
            bearer_token=bearer_token, return_type=dict, wait_on_rate_limit=False
        )
        rewrites = dict.fromkeys(_LIBRARY_ORIGINS, api_base_url)
        self._adapter = RewritingAdapter(rewrites, timeout)
        mount(self.app.session, self._adapter)
        # Jobs for several accounts of one source run in parallel threads on these sessions.
        self._local = threading.local()
        self._reporter = ResponseReporter()
        self.app.session.hooks["response"] += [self._remember, self._reporter.requests_hook]
        self.owned = OwnedReads(self.app, user_auth, self._new_session)

    @property
    def session(self) -> requests.Session:
        """The app client's HTTP session."""
        session: requests.Session = self.app.session
        return session

    def observe_responses(self, callback: ResponseObserver) -> None:
        """``callback`` told of every answer of every session: the app's and each account's
        (its reads and its OAuth 2.0 token refreshes)."""
        self._reporter.add(callback)

    def call(self, method: Callable[..., Any], **params: Any) -> tuple[Any, Mapping[str, str]]:
        """``method(**params)`` (a tweepy client's), its body and its response's headers; what
        failed raised as the :mod:`syncd.errors` class that tells the runner what to do."""
        self._local.response = None
        error: SyncdError | None = None
        try:
            body = method(**params)
        except (tweepy.HTTPException, requests.RequestException) as exc:
            error = classify(exc)
        except (AttributeError, TypeError, ValueError):
            # tweepy builds its exception from the error body and chokes on JSON that is not
            # X's error shape (or on a non-numeric x-rate-limit-reset): classify by status.
            response = self._local.response
            if response is None or response.ok:
                raise
            error = classify(tweepy.HTTPException(response, response_json={}))
        response = self._local.response
        self._local.response = None
        if error is not None:
            # Raised outside the except block so no traceback chains to the tweepy exception,
            # whose request still carries the Authorization header.
            raise self.redact(error)
        return body, (response.headers if response is not None else {})

    def redact(self, error: SyncdError) -> SyncdError:
        """``error`` with every token this client holds masked out of its message."""
        text = masked(str(error), [s for s in (self._token, *self.owned.secrets()) if s])
        if text != str(error):
            error.args = (text,)
        return error

    def close(self) -> None:
        self.app.session.close()
        self.owned.close()

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._local.response = response

    def _new_session(self) -> requests.Session:
        """A session like the app client's (same adapter, same hook), for one account."""
        session = requests.Session()
        mount(session, self._adapter)
        session.hooks["response"] += [self._remember, self._reporter.requests_hook]
        return session


def classify(exc: Exception) -> SyncdError:
    """The one table from what the X client raised to what the runner must do.

    tweepy picks its exception class (BadRequest, Unauthorized, Forbidden, NotFound,
    TooManyRequests, TwitterServerError) from the status alone; reading the status here is the
    same table, and also serves a bare ``HTTPException`` built when tweepy's own failed.
    """
    if isinstance(exc, requests.JSONDecodeError):
        # A 200 whose body is not JSON (cut short, a proxy's HTML page): counted per stream.
        reason = clip(str(exc) or type(exc).__name__)
        return MalformedAnswer(f"X sent a body that is not JSON: {reason}", system=NETWORK)
    if isinstance(exc, requests.RequestException):
        # Connection refused or reset, timeouts, a body cut short.
        reason = clip(str(exc) or type(exc).__name__)
        return TransientError(f"X request failed: {reason}", system=NETWORK)
    if not isinstance(exc, tweepy.HTTPException):
        raise TypeError(f"not an X client error: {exc!r}")
    response: requests.Response = exc.response
    status = response.status_code
    detail = "; ".join(str(m) for m in exc.api_messages) or str(exc).replace("\n", "; ")
    message = f"X API {status}: {clip(detail)}"
    now = datetime.now(UTC)
    if status in (403, 429) and _usage_capped(response):  # billing cap, not a credential issue
        # Not x-rate-limit-reset: that is the rate window's end, and the cap outlasts it.
        resume, period = cap_resume(response, now)
        return UsageCapped(message, resume_at=resume, system=NETWORK, status=status, period=period)
    if status == 429:
        resume = reset_at(response.headers) or now + _RATE_WINDOW
        return RateLimited(message, resume_at=resume, system=NETWORK, status=status)
    if status in (401, 403):
        return AuthError(message, system=NETWORK, status=status)
    if status == 404:
        return NotFound(message, system=NETWORK, status=status)
    if status >= 500:
        return TransientError(message, system=NETWORK, status=status)
    # 400 (with a page token sent: expired_token, where the call knows it) and any other 4xx.
    return ExternalError(message, system=NETWORK, status=status)


def _usage_capped(response: requests.Response) -> bool:
    # Spec 2.159's UsageCapExceededProblem: type ".../problems/usage-capped" (api.twitter.com
    # even from api.x.com), title "UsageCapExceeded", as the whole body, not inside errors[].
    text = response.text.lower()
    return "usage-capped" in text or "usagecapexceeded" in text
