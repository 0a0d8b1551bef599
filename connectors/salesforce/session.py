"""The Salesforce session: one login, the API calls made through it, and the error table.

simple-salesforce 1.12 is used unmodified, but never with its own login: ``Salesforce(username=…)``
re-logs-in by itself on ``INVALID_SESSION_ID`` (up to four times per request through
``restful``/``query``, without limit through ``sf.Obj.*``, upstream issue #804), and it refuses a
username + password without a security token although its ``SalesforceLogin`` handles that
(IP-allow-listed orgs). So we log in with ``SalesforceLogin`` and hand ``Salesforce`` only the
session: it cannot re-login, and :meth:`SalesforceSession.run` allows one re-login per
:class:`Budget` (one per public call of the CRM).
"""

from __future__ import annotations

import html
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit
from xml.parsers.expat import ExpatError

import jwt
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)
from simple_salesforce.login import SalesforceLogin

from connectors._http import RewritingAdapter, mount
from connectors.salesforce.records import SYSTEM, describe_errors
from connectors.salesforce.settings import SalesforceSettings
from syncd.contracts.secrets import Secret, masked
from syncd.errors import AuthError, ExternalError, NotFound, RateLimited, TransientError

log = logging.getLogger("connectors.salesforce.crm")
T = TypeVar("T")

# The API allocation is a rolling 24 h window: Salesforce names no reset time.
RATE_LIMIT_PAUSE = timedelta(hours=1)

_API_USAGE = re.compile(r"(?:^|[^-])api-usage=(\d+)/(\d+)")
_LOGIN_PATHS = ("/services/Soap/u/", "/services/oauth2/token")


# -- errors --------------------------------------------------------------------------------


def _shorten(text: str, limit: int = 1000) -> str:
    # A query error quotes the whole query before saying what is wrong: keep both ends.
    text = text.strip()
    return text if len(text) <= limit else f"{text[:200]} … {text[200 - limit :]}"


def _error_details(content: Any) -> tuple[str | None, str]:
    """Error code and message of a body simple-salesforce kept as JSON, text or bytes."""
    if isinstance(content, bytes | str):
        try:
            content = json.loads(content)
        except ValueError:
            text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
            return None, _shorten(text)
    content = [content] if isinstance(content, Mapping) else content
    if isinstance(content, list) and content:
        code, message = describe_errors(content)
        return code, _shorten(message)
    return None, _shorten(str(content))


# What the runner must do, by exception and Salesforce error code (None: any); first match wins.
# A 5xx is transient whatever raised it; anything else unlisted is a plain ExternalError.
_ERROR_TABLE: tuple[tuple[type[SalesforceError], str | None, type[ExternalError]], ...] = (
    (SalesforceAuthenticationFailed, "REQUEST_LIMIT_EXCEEDED", RateLimited),
    (SalesforceAuthenticationFailed, "LOGIN_RATE_EXCEEDED", RateLimited),
    # The login service failing, not the credentials: SOAP faults (sent with HTTP 500, as is
    # INVALID_LOGIN, so the status cannot tell) and OAuth's "retry your request".
    (SalesforceAuthenticationFailed, "UNKNOWN_EXCEPTION", TransientError),
    (SalesforceAuthenticationFailed, "SERVER_UNAVAILABLE", TransientError),
    (SalesforceAuthenticationFailed, "unknown_error", TransientError),
    (SalesforceAuthenticationFailed, None, AuthError),
    (SalesforceExpiredSession, None, AuthError),
    (SalesforceRefusedRequest, "REQUEST_LIMIT_EXCEEDED", RateLimited),  # a bare 403 otherwise
    (SalesforceRefusedRequest, None, AuthError),  # insufficient access
    (SalesforceMalformedRequest, "UNABLE_TO_LOCK_ROW", TransientError),
    (SalesforceMalformedRequest, None, ExternalError),  # INVALID_FIELD …: a setup problem
    (SalesforceResourceNotFound, None, NotFound),
)
_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
_UNREADABLE = (requests.exceptions.JSONDecodeError, json.JSONDecodeError, ExpatError)


def classify(exc: BaseException, action: str) -> ExternalError | None:
    """Map what simple-salesforce and requests raise; ``None``: not an outside failure, a bug."""
    if isinstance(exc, _TRANSIENT + _UNREADABLE):
        why = "unreadable response" if isinstance(exc, _UNREADABLE) else type(exc).__name__
        return TransientError(f"salesforce {action}: {why}: {exc}", system=SYSTEM)
    if not isinstance(exc, SalesforceError):
        return None
    code: str | None
    if isinstance(exc, SalesforceAuthenticationFailed):
        # Its code is Salesforce's exception code, or the HTTP status of an unparsable answer.
        code = None if exc.code is None else str(exc.code)
        status = exc.code if isinstance(exc.code, int) else None
        detail = f"login failed: {_shorten(exc.auth_message)}"
    else:
        (code, detail), status = _error_details(exc.content), exc.status
    kind = next((k for c, e, k in _ERROR_TABLE if isinstance(exc, c) and e in (None, code)), None)
    if status is not None and status >= 500:
        kind = TransientError
    elif isinstance(exc, SalesforceAuthenticationFailed) and status is not None and status < 400:
        # The token endpoint said 200 with a body that is not JSON: unreadable, not refused.
        kind = TransientError
    where = f"HTTP {status} " if status else ""
    text = f"salesforce {action}: {where}{code + ': ' if code else ''}{detail}"
    if kind is RateLimited:
        resume_at = datetime.now(UTC) + RATE_LIMIT_PAUSE
        return RateLimited(text, resume_at=resume_at, system=SYSTEM, status=status)
    return (kind or ExternalError)(text, system=SYSTEM, status=status)


@dataclass
class Budget:
    """One public call's allowance of re-logins: never loop on a dead session (issue #804)."""

    relogins: int = 1


class SalesforceSession:
    """Logs in lazily, on the first call, and makes every API call of one CRM: callers take
    turns (the resolver and the writer run in different scheduler threads; one session, one
    login). Counts the REST calls and keeps the org's last reported API usage."""

    def __init__(self, settings: SalesforceSettings) -> None:
        self.settings = settings
        self.api_calls = 0  # REST calls made (logins excluded: they do not count against it)
        self.api_usage: tuple[int, int] | None = None  # last Sforce-Limit-Info api-usage=N/M
        self.logins = 0
        self._login_status = 0
        # The resolver and the writer run in different scheduler threads; one session, one
        # login, so calls take turns.
        self._lock = threading.RLock()
        self._sf: Salesforce | None = None
        self._secrets: dict[str, set[str]] = {}  # values to scrub from every message
        self._adapter = RewritingAdapter({}, timeout=settings.timeout)
        self._session = requests.Session()
        mount(self._session, self._adapter)
        self._session.hooks["response"].append(self._on_response)
        self.adapter = RewritingAdapter({}, timeout=settings.timeout)
        self.http = requests.Session()
        mount(self.http, self.adapter)
        self.http.hooks["response"].append(self._on_response)
        self.domain, login_target = settings.login_route
        if login_target:  # any login host but a *.salesforce.com one goes through the adapter
            self.adapter.add("https://login.salesforce.com", login_target)

    # -- the calls ---------------------------------------------------------------------------
    def query(
        self, action: str, soql: str, budget: Budget, *, include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        """Every row of ``soql`` (follows nextRecordsUrl); ``include_deleted`` asks queryAll."""

        def rows(sf: Salesforce) -> list[dict[str, Any]]:
            return list(sf.query_all(soql, include_deleted=include_deleted)["records"])

        return self.run(action, rows, budget)

    def restful(self, action: str, path: str, budget: Budget, **kwargs: Any) -> Any:
        """One REST call under ``services/data/vXX.X/`` (sObject rows, collections, composite
        upserts, describes): ``kwargs`` as for requests (``method``, ``params``, ``json``)."""
        return self.run(action, lambda sf: sf.restful(path, **kwargs), budget)

    def run(self, action: str, op: Callable[[Salesforce], T], budget: Budget) -> T:
        """``op`` on the logged-in client; an expired session logs in again once per
        ``budget``, and what failed is raised as a :mod:`syncd.errors` class, secrets scrubbed."""
        with self._lock:
            return self._run(action, op, budget)

    def _run(self, action: str, op: Callable[[Salesforce], T], budget: Budget) -> T:
        try:
            try:
                return op(self._client())
            except SalesforceExpiredSession:
                if budget.relogins <= 0 or self.settings.auth_method == "session":
                    raise
                budget.relogins -= 1
                log.info("%s: session expired, logging in again", SYSTEM)
                self._sf = None
                return op(self._client())
        except Exception as exc:
            mapped = classify(exc, action)
            if mapped is None:
                raise
            mapped.args = (self._scrub(str(mapped)),)
            # The original carries URLs and raw bodies: keep it out of tracebacks.
            raise mapped from None

    def _client(self) -> Salesforce:
        if self._sf is None:
            session_id, instance = self._login()
            self._secrets["session"] = {session_id}
            self._sf = Salesforce(
                session_id=session_id,
                instance=instance,
                session=self.http,
                version=self.settings.api_version,
                object_pairs_hook=dict,
            )
        return self._sf

    def _login(self) -> tuple[str, str]:
        s = self.settings
        if s.auth_method == "session":
            assert s.session_id is not None and s.instance_url is not None
            host = urlsplit(s.instance_url).netloc
            if s.instance_url != f"https://{host}":  # simple-salesforce knows only https://host
                self.adapter.add(f"https://{host}", s.instance_url)
            return self._reveal("session_id", s.session_id), host
        if s.auth_method == "jwt":
            assert s.private_key_file is not None
            try:  # read here, not by the library, so only key problems say "private key"
                key = s.private_key_file.read_text(encoding="utf-8")
            except (OSError, UnicodeError) as exc:
                raise AuthError(
                    f"salesforce private_key_file {s.private_key_file} cannot be read ({exc})",
                    system=SYSTEM,
                ) from None
            kwargs: dict[str, Any] = {"consumer_key": s.consumer_key, "privatekey": key}
        else:
            assert s.password is not None
            kwargs = {"password": self._reveal("password", s.password)}
            if s.security_token is not None:
                kwargs["security_token"] = self._reveal("security_token", s.security_token)
        self.logins += 1
        try:
            session_id, instance = SalesforceLogin(
                username=s.username,
                sf_version=s.api_version,
                domain=self.domain,
                session=self.http,
                **kwargs,
            )
        except SalesforceAuthenticationFailed as exc:
            # An error page that parses as XML loses its HTTP status in simple-salesforce
            # (code None); a 5xx without a Salesforce exception code is an outage.
            if exc.code is None and self._login_status >= 500:
                raise SalesforceAuthenticationFailed(self._login_status, exc.auth_message) from None
            raise
        except jwt.PyJWTError as exc:
            raise AuthError(
                f"salesforce private_key_file {s.private_key_file} cannot sign a JWT ({exc})",
                system=SYSTEM,
            ) from None
        if s.login_url.startswith("http://"):  # a stand-in answers with its own http address
            self.adapter.add(f"https://{instance}", f"http://{instance}")
        return session_id, instance

    def _reveal(self, name: str, secret: Secret) -> str:
        try:
            value = secret.reveal()
        except ValueError as exc:
            raise AuthError(f"salesforce {name}: {exc}", system=SYSTEM) from None
        # The SOAP login sends the password XML-escaped; an echo may show either form.
        self._secrets[name] = {value, html.escape(value)}
        return value

    def _scrub(self, text: str) -> str:
        return masked(text, {value for values in self._secrets.values() for value in values}, "***")

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if any(p in urlsplit(response.url).path for p in _LOGIN_PATHS):
            self._login_status = response.status_code
            return
        self.api_calls += 1
        if m := _API_USAGE.search(response.headers.get("Sforce-Limit-Info", "")):
            self.api_usage = (int(m.group(1)), int(m.group(2)))

    def close(self) -> None:
        self._sf = None
        self.http.close()
