"""OAuth 2.0 user tokens for X: the token endpoint, and refreshing what the token file holds.

X's user access tokens last two hours. With the ``offline.access`` scope a refresh token comes
with them, and every refresh answers a new refresh token and retires the old one (rotation).
So the pair lives in a file that syncd itself rewrites on each refresh, atomically and 0600.
A refresh first re-reads that file under a lock: another syncd process on the host (``syncd
check``, a one-off poll) may have rotated it meanwhile, and refreshing with the retired token
would fail and park the account.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from connectors.x.auth.token_file import TokenFile, TokenFileProblem, UserToken
from connectors.x.parse import NETWORK, clip, is_x_id, reset_at
from syncd.errors import AuthError, ExternalError, RateLimited, TransientError

# The library origin the rewriting adapter knows, as for tweepy's own requests.
TOKEN_URL = "https://api.x.com/2/oauth2/token"
ME_URL = "https://api.x.com/2/users/me"
SCOPES = ("tweet.read", "users.read", "offline.access")
# Refreshed this long before X would refuse the token: a poll never starts with a token that
# dies in flight, and a clock a little off does not matter.
REFRESH_MARGIN = timedelta(minutes=5)
_DEFAULT_LIFETIME = 7200  # seconds; X documents two hours and always says expires_in
_RATE_WINDOW = timedelta(minutes=15)
# X answers a refused code or refresh token with invalid_request ("Value passed for the token
# was invalid."), where RFC 6749 says invalid_grant: both mean the grant is gone.
_GRANT_REFUSED = frozenset({"invalid_grant", "invalid_request"})

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _from_answer(body: object, now: datetime) -> UserToken:
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise TransientError("X's token endpoint sent an unreadable answer", system=NETWORK)
    lifetime = body.get("expires_in")
    seconds = lifetime if isinstance(lifetime, int) and lifetime > 0 else _DEFAULT_LIFETIME
    refresh = body.get("refresh_token")
    return UserToken(
        body["access_token"],
        refresh if isinstance(refresh, str) and refresh else None,
        now + timedelta(seconds=seconds),
        str(body.get("scope") or ""),
    )


class TokenRefused(AuthError):
    """X refused a token request. ``grant``: the code or refresh token itself was refused (a
    new authorization is needed), rather than the client's id or secret."""

    def __init__(self, message: str, *, grant: bool, status: int) -> None:
        super().__init__(message, system=NETWORK, status=status)
        self.grant = grant


class TokenEndpoint:
    """``POST /2/oauth2/token``: exchanging an authorization code, refreshing a token.

    A confidential client authenticates with HTTP Basic (client id : secret); a public one
    names its client id in the form. ``session`` carries the URL-rewriting adapter.
    """

    def __init__(
        self,
        session: requests.Session,
        client_id: str,
        client_secret: str | None = None,
        *,
        clock: Clock = _utcnow,
    ) -> None:
        self.session = session
        self.client_id = client_id
        self._secret = client_secret
        self._clock = clock

    def __repr__(self) -> str:
        kind = "confidential" if self._secret else "public"
        return f"TokenEndpoint(client_id={self.client_id!r}, {kind})"

    def exchange(self, code: str, verifier: str, redirect_uri: str) -> UserToken:
        return self._post(
            {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": redirect_uri,
            }
        )

    def refresh(self, refresh_token: str) -> UserToken:
        return self._post({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def _post(self, form: dict[str, str]) -> UserToken:
        form["client_id"] = self.client_id
        auth = (self.client_id, self._secret) if self._secret else None
        try:
            response = self.session.post(
                TOKEN_URL, data=form, auth=auth, headers={"Accept": "application/json"}
            )
        except requests.RequestException as exc:  # the form is never part of its text
            reason = clip(str(exc) or type(exc).__name__)
            raise TransientError(f"X token endpoint: {reason}", system=NETWORK) from None
        body = _json(response)
        if response.ok:
            return _from_answer(body, self._clock())
        raise _refusal(response, body if isinstance(body, dict) else {})


def _refusal(response: requests.Response, body: Mapping[str, Any]) -> ExternalError:
    status = response.status_code
    error = body.get("error") if isinstance(body.get("error"), str) else ""
    description = body.get("error_description")
    said = "; ".join(str(s) for s in (error, description) if s) or response.reason or "refused"
    message = f"X token endpoint {status}: {clip(said, 200)}"
    if status == 429:
        resume = reset_at(response.headers) or datetime.now(UTC) + _RATE_WINDOW
        return RateLimited(message, resume_at=resume, system=NETWORK, status=status)
    if status >= 500:
        return TransientError(message, system=NETWORK, status=status)
    if status in (400, 401) and error in _GRANT_REFUSED:
        return TokenRefused(message, grant=True, status=status)
    if status in (401, 403) or error in ("invalid_client", "unauthorized_client"):
        return TokenRefused(message, grant=False, status=status)
    return ExternalError(message, system=NETWORK, status=status)


def whoami(session: requests.Session, access_token: str) -> tuple[str, str]:
    """(user id, username) of the account an OAuth 2.0 user token belongs to."""
    headers = {"Authorization": f"Bearer {access_token}"}
    try:
        response = session.get(ME_URL, headers=headers)
    except requests.RequestException as exc:
        raise TransientError(f"X users/me: {clip(str(exc))}", system=NETWORK) from None
    body = _json(response)
    data = body.get("data") if isinstance(body, dict) else None
    if response.ok and isinstance(data, dict):
        user_id, username = data.get("id"), data.get("username")
        if is_x_id(user_id) and isinstance(username, str):
            return user_id, username
    status = response.status_code
    said = body.get("detail") or body.get("title") if isinstance(body, dict) else None
    message = f"X users/me {status}: {clip(str(said or response.reason or 'unreadable'))}"
    if status in (401, 403):
        raise AuthError(message, system=NETWORK, status=status)
    raise TransientError(message, system=NETWORK, status=status)


def _json(response: requests.Response) -> object:
    try:
        return response.json()
    except ValueError:  # requests' JSONDecodeError included; the status still says enough
        return None


# -- refreshing -------------------------------------------------------------------------------
class RefreshingToken:
    """The usable access token of one account: refreshed before it expires and after X
    refuses it (a 401), the rotated refresh token saved before it is used anywhere.

    Every failure is an :class:`AuthError` whose message says how to fix it; a refused refresh
    token is remembered, so X is not asked again until the file changes (``syncd x
    authorize`` wrote a new one).
    """

    def __init__(
        self,
        handle: str,
        file: TokenFile,
        endpoint: TokenEndpoint,
        *,
        clock: Clock = _utcnow,
        margin: timedelta = REFRESH_MARGIN,
    ) -> None:
        self.handle = handle
        self.file = file
        self.endpoint = endpoint
        self._clock = clock
        self._margin = margin
        self._lock = threading.Lock()
        self._token: UserToken | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._refused: tuple[tuple[int, int, int] | None, str] | None = None

    def __repr__(self) -> str:
        return f"RefreshingToken(@{self.handle}, {self.file!r})"

    def current(self) -> UserToken:
        with self._lock:
            token = self._load()
            if token.expires_within(self._margin, self._clock()):
                token = self._refresh(token.access_token)
            return token

    def renew(self, rejected: str) -> UserToken:
        """After X refused the access token ``rejected``: refresh, unless that happened since."""
        with self._lock:
            token = self._load()
            return token if token.access_token != rejected else self._refresh(rejected)

    def secrets(self) -> tuple[str, ...]:
        token = self._token
        return tuple(s for s in (token.access_token, token.refresh_token) if s) if token else ()

    def _load(self) -> UserToken:
        stamp = self.file.stamp()
        if self._refused is not None and self._refused[0] == stamp:
            raise AuthError(self._refused[1], system=NETWORK)
        if self._token is None or stamp != self._stamp:
            try:
                token = self.file.read()
            except TokenFileProblem as exc:
                raise AuthError(f"{exc}: {self._authorize}", system=NETWORK) from None
            self._token, self._stamp, self._refused = token, stamp, None
        return self._token

    def _refresh(self, stale: str) -> UserToken:
        try:
            with self.file.lock():
                token = self._load()  # another process may have refreshed meanwhile
                if token.access_token != stale and not token.expires_within(
                    self._margin, self._clock()
                ):
                    return token
                return self._rotate(token)
        except TokenFileProblem as exc:
            raise AuthError(f"{exc}: give syncd a directory it can write", system=NETWORK) from None

    def _rotate(self, token: UserToken) -> UserToken:
        if token.refresh_token is None:
            message = (
                f"the OAuth 2.0 token of @{self.handle} expired and came without a refresh "
                f"token (the offline.access scope): {self._authorize}"
            )
            self._refused = (self._stamp, message)
            raise AuthError(message, system=NETWORK)
        try:
            fresh = self.endpoint.refresh(token.refresh_token)
        except TokenRefused as exc:
            if not exc.grant:
                raise TokenRefused(
                    f"{exc}: check client_id and client_secret of user_auth.{self.handle}",
                    grant=False,
                    status=exc.status or 401,
                ) from None
            message = f"X refused the refresh token of @{self.handle} ({exc}): {self._authorize}"
            self._refused = (self._stamp, message)
            raise AuthError(message, system=NETWORK, status=exc.status) from None
        fresh = replace(fresh, user_id=token.user_id, username=token.username)
        # The old refresh token is dead from here on: the new one must be kept even if saving
        # it fails, so this process goes on; a restart would need a new authorization.
        self._token = fresh
        self.file.write(fresh)
        self._stamp = self.file.stamp()
        return fresh

    @property
    def _authorize(self) -> str:
        return f"run `syncd x authorize {self.handle}`"
