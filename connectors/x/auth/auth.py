"""Per-account user credentials for X, and the owned reads they buy.

X bills a post read with the app's bearer token at $0.005, but an account's own mentions and
posts read with that account's own user token at $0.001 ("owned reads"). An X source may
therefore carry, per brand account, OAuth 1.0a user context (``type = "oauth1"``: the app's
consumer key pair and the account's access token pair) or an OAuth 2.0 user token
(``type = "oauth2"``: a client id, and tokens in a file syncd refreshes, see
:mod:`connectors.x.auth.oauth2`). :class:`OwnedReads` picks, per account, the client that reads
its timelines; everything else (search, lookups) stays on the app token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

import requests
import tweepy
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from connectors.x.auth.oauth2 import RefreshingToken, TokenEndpoint
from connectors.x.auth.token_file import TokenFile
from connectors.x.parse import NETWORK
from syncd.contracts import CheckRow
from syncd.contracts.secrets import SecretRef, masked
from syncd.contracts.text import did_you_mean
from syncd.errors import AuthError, ExternalError
from syncd.model import Account

T = TypeVar("T")
# What reads an account's timelines: called with a tweepy client and its ``user_auth`` flag
# (OAuth 1.0a signs each request; bearer tokens, app or user, do not).
Read = Callable[[Any, bool], T]


# -- settings ---------------------------------------------------------------------------------
def _absolute(path: Path) -> Path:
    if not path.is_absolute():
        # The daemon's working directory is '/' under systemd.
        raise ValueError("must be an absolute path, e.g. '/var/lib/syncd/x-acme.json'")
    if path.is_dir():
        raise ValueError("is a directory: name the file syncd keeps the tokens in")
    return path


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ValueError("must be an http:// or https:// URL, e.g. 'http://127.0.0.1/callback'")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OAuth1UserAuth(_Strict):
    """OAuth 1.0a user context: every request signed with both key pairs."""

    type: Literal["oauth1"]
    consumer_key: SecretRef  # the app's API key …
    consumer_secret: SecretRef  # … and its secret
    access_token: SecretRef  # the account's access token …
    access_token_secret: SecretRef  # … and its secret


class OAuth2UserAuth(_Strict):
    """An OAuth 2.0 user token, authorized once with ``syncd x authorize`` and refreshed
    by syncd in ``token_file``."""

    type: Literal["oauth2"]
    client_id: str = Field(min_length=1)
    client_secret: SecretRef | None = None  # confidential clients only
    token_file: Annotated[Path, AfterValidator(_absolute)]
    # Where X sends the browser after consent; one of the app's callback URIs.
    redirect_uri: Annotated[str, AfterValidator(_http_url)] = "http://127.0.0.1/callback"


UserAuth = Annotated[OAuth1UserAuth | OAuth2UserAuth, Field(discriminator="type")]


def check_user_auth(
    user_auth: Mapping[str, OAuth1UserAuth | OAuth2UserAuth], accounts: Sequence[str] | None
) -> dict[str, OAuth1UserAuth | OAuth2UserAuth]:
    """``[sources.user_auth.HANDLE]`` tables keyed by lower-case handle, each naming one of
    the source's ``accounts``, no two sharing a token file."""
    handles = {a.lower() for a in accounts or ()}
    found: dict[str, OAuth1UserAuth | OAuth2UserAuth] = {}
    files: dict[Path, str] = {}
    for key, auth in user_auth.items():
        handle = key.strip().removeprefix("@").lower()
        if accounts is not None and handle not in handles:
            guess = did_you_mean(key, accounts)
            raise ValueError(f"{key!r} is not one of this source's accounts{guess}")
        if handle in found:
            raise ValueError(f"{key!r} names @{handle} a second time")
        if isinstance(auth, OAuth2UserAuth):
            first = files.setdefault(auth.token_file, key)
            if first != key:
                raise ValueError(
                    f"{first!r} and {key!r} share token_file {auth.token_file}: "
                    "each account needs its own"
                )
        found[handle] = auth
    return found


# -- log redaction ----------------------------------------------------------------------------
class _Redactor(logging.Filter):
    """requests-oauthlib and oauthlib log, at DEBUG, the signed Authorization header, the
    signature base string and their client's key and token: the credential values are taken
    out of those records before any handler sees them."""

    _SIGNATURE = re.compile(r"(oauth_signature[\"']?(?:=|%3D|,\s*)[\"']?|Signature: )[^\s\"'&,)]+")

    def __init__(self) -> None:
        super().__init__()
        self._values: set[str] = set()

    def protect(self, values: Iterable[str]) -> None:
        self._values.update(values)

    def filter(self, record: logging.LogRecord) -> bool:
        text = masked(record.getMessage(), self._values)
        record.msg, record.args = self._SIGNATURE.sub(r"\1[redacted]", text), None
        return True


_REDACTOR = _Redactor()
for _name in ("requests_oauthlib.oauth1_auth", "oauthlib.oauth1.rfc5849"):
    logging.getLogger(_name).addFilter(_REDACTOR)


# -- credentials ------------------------------------------------------------------------------
def _tweepy_client(session: requests.Session, **credentials: str | None) -> Any:
    # Never wait_on_rate_limit (see connectors.x.client); the session carries the rewriting adapter.
    client = tweepy.Client(**credentials, return_type=dict, wait_on_rate_limit=False)
    client.session.close()
    client.session = session
    return client


class _Credentials(Protocol):
    kind: str

    def read(self, account: Account, call: Read[T]) -> T: ...

    def fix(self, handle: str) -> str: ...

    def secrets(self) -> tuple[str, ...]: ...


class _OAuth1:
    kind = "OAuth 1.0a"

    def __init__(self, auth: OAuth1UserAuth, session: requests.Session) -> None:
        names = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
        values = {name: getattr(auth, name).reveal() for name in names}
        self._secrets = tuple(values.values())
        _REDACTOR.protect(self._secrets)
        self._client = _tweepy_client(session, **values)

    def __repr__(self) -> str:
        return "OAuth1 user context"

    def read(self, account: Account, call: Read[T]) -> T:
        # Whose the tokens are is not known here (X tells only through users/me, a billed
        # user read): `syncd check` verifies it.
        return call(self._client, True)

    def fix(self, handle: str) -> str:
        return (
            f"check user_auth.{handle}: consumer_key and consumer_secret are the app's, "
            f"access_token and access_token_secret those of @{handle}"
        )

    def secrets(self) -> tuple[str, ...]:
        return self._secrets


class _OAuth2:
    kind = "OAuth 2.0"

    def __init__(self, auth: OAuth2UserAuth, handle: str, session: requests.Session) -> None:
        secret = auth.client_secret.reveal() if auth.client_secret is not None else None
        endpoint = TokenEndpoint(session, auth.client_id, secret)
        self.token = RefreshingToken(handle, TokenFile(auth.token_file), endpoint)
        self._session = session
        self._secret = secret

    def __repr__(self) -> str:
        return f"OAuth2 user token ({self.token.file.path})"

    def read(self, account: Account, call: Read[T]) -> T:
        token = self.token.current()
        if token.user_id is not None and token.user_id != account.user_id:
            raise AuthError(
                f"{self.token.file.path} holds the token of @{token.username} (user id "
                f"{token.user_id}), not @{account.handle}'s: run `syncd x authorize "
                f"{account.handle}` signed in to X as @{account.handle}",
                system=NETWORK,
            )
        try:
            return call(_tweepy_client(self._session, bearer_token=token.access_token), False)
        except AuthError as exc:
            if exc.status != 401:
                raise
        # Revoked or expired early: one refresh, one more try.
        token = self.token.renew(token.access_token)
        return call(_tweepy_client(self._session, bearer_token=token.access_token), False)

    def fix(self, handle: str) -> str:
        return f"run `syncd x authorize {handle}` (see user_auth.{handle})"

    def secrets(self) -> tuple[str, ...]:
        return (*self.token.secrets(), *((self._secret,) if self._secret else ()))


class OwnedReads:
    """Per account, the client its own timelines are read with: its user credentials where
    configured, else the app client. ``new_session`` makes a session carrying the same
    adapter and response hook as the app client's, one per account (no shared cookies)."""

    def __init__(
        self,
        app_client: Any,
        user_auth: Mapping[str, OAuth1UserAuth | OAuth2UserAuth],
        new_session: Callable[[], requests.Session],
    ) -> None:
        self._app = app_client
        self._sessions: list[requests.Session] = []
        self._users: dict[str, _Credentials] = {}
        for handle, auth in user_auth.items():
            session = new_session()
            self._sessions.append(session)
            self._users[handle.lower()] = (
                _OAuth1(auth, session)
                if isinstance(auth, OAuth1UserAuth)
                else _OAuth2(auth, handle, session)
            )

    def __repr__(self) -> str:
        return f"OwnedReads({sorted(self._users)})"

    def covers(self, account: Account) -> bool:
        """Whether the account's timelines are read with its own user token."""
        return account.handle.lower() in self._users

    def read(self, account: Account, call: Read[T]) -> T:
        credentials = self._users.get(account.handle.lower())
        if credentials is None:
            return call(self._app, False)
        return credentials.read(account, call)

    def check(self, accounts: Mapping[str, Account], call: Read[Any]) -> list[CheckRow]:
        """One row per account with user credentials: ``GET /2/users/me`` with them must
        answer that very account."""
        rows: list[CheckRow] = []
        for account in accounts.values():
            credentials = self._users.get(account.handle.lower())
            if credentials is None:
                continue
            item = f"@{account.handle} user token"
            try:
                body = credentials.read(account, call)
            except ExternalError as exc:
                rows.append(CheckRow(item, False, str(exc), credentials.fix(account.handle)))
                continue
            me = body.get("data") if isinstance(body, dict) else None
            me = me if isinstance(me, dict) else {}
            if me.get("id") == account.user_id:
                detail = f"{credentials.kind} user context: mentions and own posts are owned reads"
                rows.append(CheckRow(item, True, detail))
            else:
                detail = f"the {credentials.kind} token is @{me.get('username')}'s, not this one's"
                rows.append(CheckRow(item, False, detail, credentials.fix(account.handle)))
        return rows

    def secrets(self) -> list[str]:
        return [s for credentials in self._users.values() for s in credentials.secrets()]

    def close(self) -> None:
        for session in self._sessions:
            session.close()
