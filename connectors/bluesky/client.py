"""The HTTP side of the Bluesky source: the atproto SDK's ``Client``, its session kept in a
private file, and :meth:`BlueskyClient.query`, the one place a request is made and what failed
classified onto :mod:`syncd.errors`.

The session. ``createSession`` (a login) is limited to 30 per 5 minutes and 300 a day per
account, so the access and refresh JWTs live in ``session_file`` and a poll never logs in: the
client imports the stored session, refreshes it (``refreshSession``) as the SDK does, 15
minutes before the access token expires, and writes every new pair back. A login happens
only when no usable session is stored, at most once per process (:class:`SessionStore`).
The SDK does not recover when the server itself says ``ExpiredToken`` (a clock skew, a token
revoked early): that answer is caught, the session refreshed once and the call made again.

Requests go through the SDK's own XRPC layer (``invoke_query``) with its lexicon parameter
models, and the answer is kept as JSON: the generated response models validate a whole page
at once, and one malformed notification must be quarantined, not cost its page.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from atproto_client import Client, models
from atproto_client.client.session import SessionEvent
from atproto_client.exceptions import (
    BadRequestError,
    InvokeTimeoutError,
    LoginRequiredError,
    NetworkError,
    RateLimitExceededError,
    RequestErrorBase,
    UnauthorizedError,
)
from atproto_client.models.common import XrpcError
from atproto_client.request import Request
from atproto_core.exceptions import AtProtocolError

from connectors._http import DeadlineTransport, ResponseReporter
from connectors.bluesky.parse import NETWORK
from syncd.contracts import ResponseObserver
from syncd.contracts import files as private_files
from syncd.contracts.secrets import masked
from syncd.contracts.urls import plain_http_to_elsewhere
from syncd.errors import (
    AuthError,
    ExternalError,
    MalformedAnswer,
    NotFound,
    RateLimited,
    SyncdError,
    TransientError,
)

__all__ = ["BlueskyClient", "SessionStore", "classify"]

# The PDS counts 3,000 requests per 5 minutes per IP; a 429 without RateLimit-Reset waits that.
RATE_WINDOW = timedelta(minutes=5)
# The server-side refusals of an access token the client still thought good.
_EXPIRED = frozenset({"ExpiredToken", "InvalidToken"})
_SESSION_REFUSED = frozenset({"ExpiredToken", "InvalidToken", "AccountTakedown"})


class SessionStore:
    """The file one account's session (the SDK's session string: handle, DID, both JWTs,
    PDS) lives in: 0600, never read through a link, replaced whole by rename."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"SessionStore({str(self.path)!r})"

    def read(self) -> str | None:
        """The stored session string; None when there is none (a first start)."""
        try:
            fd = private_files.open_file(self.path, os.O_RDONLY, create=False)
        except FileNotFoundError:
            return None
        except (private_files.UnsafeFile, OSError) as exc:
            raise AuthError(f"session file unusable: {exc}", system=NETWORK) from None
        with os.fdopen(fd, encoding="utf-8") as f:
            text = f.read().strip()
        return text or None

    def write(self, session: str) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            private_files.check_directory(directory)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    os.fchmod(f.fileno(), 0o600)
                    f.write(session + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)  # a link planted at the name is replaced, not followed
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        except (private_files.UnsafeFile, OSError) as exc:
            raise ExternalError(
                f"cannot keep the session in {self.path}: {exc}", system=NETWORK
            ) from None


class BlueskyClient:
    """One account's atproto client, logged in from the stored session."""

    def __init__(
        self,
        *,
        service: str,
        identifier: str,
        app_password: str,
        session: SessionStore,
        timeout: float,
    ) -> None:
        self._identifier = identifier
        self._password = app_password
        self._store = session
        self._lock = threading.Lock()
        self._logged_in = False
        self._logins = 0
        self._reporter = ResponseReporter()
        # Every request and every redirect (the SDK follows them) is refused over plain HTTP
        # to anything but this host: a redirect keeps a refresh token's Authorization header.
        # The SDK's Request hands these to the httpx.Client it builds, and keeps them for
        # any it builds again (Request.clone): the answers' reporter goes with them.
        request = Request(
            timeout=timeout,
            transport=DeadlineTransport(timeout),  # the timeout bounds each whole request
            event_hooks={
                "request": [_refuse_plain_http],
                "response": [self._reporter.httpx_hook],
            },
        )
        self.sdk = Client(base_url=service, request=request)
        self.sdk.on_session_change(self._keep)

    # -- the session ------------------------------------------------------------------------
    def _keep(self, event: SessionEvent, session: Any) -> None:
        if event in (SessionEvent.CREATE, SessionEvent.REFRESH):
            self._store.write(session.encode())
        _refuse_plain_pds(getattr(session, "pds_endpoint", None))

    def ensure_session(self) -> None:
        """The stored session imported (no request), or one login if none is stored."""
        with self._lock:
            if self._logged_in:
                return
            stored = self._store.read()
            unusable = AuthError(
                f"the session kept in {self._store.path} is not one syncd wrote (or its tokens "
                "do not decode): remove the file, and syncd logs in once",
                system=NETWORK,
            )
            try:
                if stored is not None:
                    self.sdk.login(session_string=stored, fetch_bsky_profile=False)
                    # The SDK reads the tokens' expiry before every call: check them now.
                    session = self.sdk._session
                    _ = (session.access_jwt_payload.exp, session.refresh_jwt_payload.exp)
                else:
                    self._login()
            except ValueError:
                raise unusable from None
            except (AtProtocolError, httpx.HTTPError) as exc:
                if stored is not None and not isinstance(exc, RequestErrorBase | httpx.HTTPError):
                    raise unusable from None
                raise self.redact(classify(exc)) from None
            self._logged_in = True

    def _login(self) -> None:
        if self._logins:
            raise AuthError(
                "the Bluesky session was refused and syncd logged in once already: check "
                "identifier and app_password (createSession is limited to 30 per 5 minutes)",
                system=NETWORK,
            )
        self._logins += 1
        self.sdk.login(self._identifier, self._password, fetch_bsky_profile=False)

    def did(self) -> str | None:
        session = self.sdk._session  # the SDK exposes the session only so
        return session.did if session is not None else None

    # -- requests ---------------------------------------------------------------------------
    def observe_responses(self, callback: ResponseObserver) -> None:
        """``callback`` told of every answer: queries, logins, refreshes."""
        self._reporter.add(callback)

    def query(self, nsid: str, params: Any) -> tuple[Any, Mapping[str, str]]:
        """``nsid`` queried with ``params`` (a lexicon params model): the JSON body and the
        headers. A server-side ``ExpiredToken`` refreshes the session once and asks again; a
        refused refresh token logs in (once a process); anything else is classified."""
        self.ensure_session()
        for attempt in range(2):
            try:
                response = self.sdk.invoke_query(nsid, params=params)
            except (BadRequestError, UnauthorizedError) as exc:
                # 400 ExpiredToken: the server's clock says expired where the SDK's did not;
                # 401 InvalidToken: the access token was revoked. A refresh mends both.
                if attempt == 0 and _error_name(exc) in _EXPIRED:
                    self._renew()
                    continue
                raise self.redact(classify(exc)) from None
            except (AtProtocolError, httpx.HTTPError) as exc:
                raise self.redact(classify(exc)) from None
            except ValueError:  # pydantic_core.from_json: a JSON body cut short
                raise MalformedAnswer(
                    f"Bluesky sent a {nsid} body that is not JSON", system=NETWORK
                ) from None
            if not isinstance(response.content, dict):
                raise MalformedAnswer(
                    f"Bluesky sent a {nsid} body that is not JSON", system=NETWORK
                )
            return response.content, response.headers
        raise AuthError("Bluesky kept refusing a freshly refreshed session", system=NETWORK)

    def _renew(self) -> None:
        with self._lock:
            try:
                # The SDK's own refresh (refreshSession with the refresh JWT); it has no public
                # name, and the SDK calls it only before expiry, never after a refusal.
                self.sdk._refresh_and_set_session()
            except (BadRequestError, UnauthorizedError, LoginRequiredError) as exc:
                name = _error_name(exc) if isinstance(exc, RequestErrorBase) else ""
                if name not in _SESSION_REFUSED | {""}:
                    raise self.redact(classify(exc)) from None
                if self._kept_by_another():
                    return
                try:
                    self._login()
                except (AtProtocolError, httpx.HTTPError) as again:
                    raise self.redact(classify(again)) from None
            # The SDK lets the transport's own errors (a dropped connection) through as they are.
            except (AtProtocolError, httpx.HTTPError) as exc:
                raise self.redact(classify(exc)) from None

    def _kept_by_another(self) -> bool:
        """Whether another process sharing the session file refreshed first (the server then
        refuses the refresh token it rotated out): its session, from the file, is used."""
        stored = self._store.read()
        session = self.sdk._session
        if stored is None or (session is not None and stored == session.encode()):
            return False
        try:
            self.sdk.login(session_string=stored, fetch_bsky_profile=False)
        except (AtProtocolError, httpx.HTTPError, ValueError):
            return False
        return True

    def redact(self, error: SyncdError) -> SyncdError:
        """``error`` with the app password and the session's tokens masked out."""
        session = self.sdk._session
        secrets = [self._password]
        if session is not None:
            secrets += [session.access_jwt, session.refresh_jwt]
        text = masked(str(error), [s for s in secrets if s])
        if text != str(error):
            error.args = (text,)
        return error

    def close(self) -> None:
        self.sdk.request.close()


def _refuse_plain_http(request: httpx.Request) -> None:
    if plain_http_to_elsewhere(str(request.url)):
        raise httpx.UnsupportedProtocol(
            f"refused: plain HTTP to {request.url.host} (only loopback may be reached without TLS)"
        )


def _refuse_plain_pds(endpoint: str | None) -> None:
    # A session names the account's PDS (from its DID document), and the SDK moves to it.
    if endpoint and plain_http_to_elsewhere(endpoint):
        raise AuthError(f"the session names a PDS over plain HTTP: {endpoint}", system=NETWORK)


def _error_name(exc: RequestErrorBase) -> str:
    content = exc.response.content if exc.response is not None else None
    if isinstance(content, XrpcError):
        return content.error or ""
    if isinstance(content, dict):
        return str(content.get("error") or "")
    return ""


def _detail(exc: RequestErrorBase) -> str:
    content = exc.response.content if exc.response is not None else None
    if isinstance(content, XrpcError):
        text = f"{content.error}: {content.message}" if content.message else content.error
    else:
        text = type(exc).__name__
    return " ".join(str(text).split())[:300]


def classify(exc: Exception) -> SyncdError:
    """The one table from what the atproto SDK raised to what the runner must do."""
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ExternalError(f"Bluesky request refused: {exc}", system=NETWORK)
    if isinstance(exc, InvokeTimeoutError | NetworkError) and (exc.response is None):
        cause = exc.__cause__ or exc
        return TransientError(f"Bluesky request failed: {type(cause).__name__}", system=NETWORK)
    if isinstance(exc, httpx.HTTPError):
        return TransientError(f"Bluesky request failed: {type(exc).__name__}", system=NETWORK)
    if isinstance(exc, LoginRequiredError):
        return AuthError("Bluesky: not logged in", system=NETWORK)
    if not isinstance(exc, RequestErrorBase) or exc.response is None:
        return MalformedAnswer(f"Bluesky answer unreadable: {type(exc).__name__}", system=NETWORK)
    status = exc.response.status_code
    name = _error_name(exc)
    message = f"Bluesky {status}: {_detail(exc)}"
    if isinstance(exc, RateLimitExceededError) or status == 429:
        reset = exc.reset_at if isinstance(exc, RateLimitExceededError) else None
        after = exc.retry_after if isinstance(exc, RateLimitExceededError) else None
        now = datetime.now(UTC)
        resume = reset or (now + timedelta(seconds=after) if after else now + RATE_WINDOW)
        return RateLimited(message, resume_at=resume, system=NETWORK, status=status)
    if status in (401, 403) or name in _SESSION_REFUSED | {"AuthenticationRequired", "AuthMissing"}:
        return AuthError(message, system=NETWORK, status=status)
    if name == "NotFound" or status == 404:
        return NotFound(message, system=NETWORK, status=status)
    if status >= 500 or status in (409, 413):
        return TransientError(message, system=NETWORK, status=status)
    return ExternalError(message, system=NETWORK, status=status)


def params(model: type[Any], **values: Any) -> Any:
    """A lexicon params model (``models.AppBsky….Params``) of the given values."""
    return model(**{k: v for k, v in values.items() if v is not None})


LEXICON = models  # the SDK's generated lexicon models, for the source's parameters
