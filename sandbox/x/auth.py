"""Who is calling the X stand-in: the app's bearer token, OAuth 2.0 user tokens it issued, or
an OAuth 1.0a signed request, each checked as X checks it.

OAuth 2.0 Authorization Code with PKCE: :meth:`XAuth.approve` stands in for the consent page
(it answers the redirect X would send the browser to, with a code valid 30 seconds), and
``POST /2/oauth2/token`` (:meth:`XAuth.token_endpoint`) exchanges the code, verifying the PKCE
verifier, and refreshes, rotating the refresh token as X does: the old one is refused after.
Access tokens last ``access_token_lifetime`` seconds of the stand-in's clock (X: two hours),
short in tests so refreshing is exercised. X's error bodies: ``invalid_request`` "Value passed
for the token was invalid." for a dead refresh token, ``unauthorized_client`` "Missing valid
authorization header" for a confidential client that did not send HTTP Basic.

OAuth 1.0a: the HMAC-SHA1 signature is recomputed (RFC 5849 §3.4) over the request as the
client signed it. Clients sign the https URL of the host they believe they talk to (tweepy:
api.twitter.com) before an adapter re-routes the request here, so each known X origin is
tried. Timestamps and nonces are not checked: the stand-in's clock is often a test's fixed one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from sandbox.server import Request, Response

JsonObject = dict[str, object]
X_ORIGINS = ("https://api.twitter.com", "https://api.x.com")
# The scopes a user token needs for the read endpoints the stand-in serves.
READ_SCOPES = frozenset({"tweet.read", "users.read"})
KNOWN_SCOPES = READ_SCOPES | {"offline.access", "like.read", "follows.read", "list.read"}
_BEARER = re.compile(r"^Bearer\s+(\S+)$")
_BASIC = re.compile(r"^Basic\s+(\S+)$")
_OAUTH_PARAM = re.compile(r'\s*([A-Za-z_]+)="([^"]*)"\s*(?:,|$)')


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    rate_key: str  # whose rate-limit windows the request counts against
    user_id: str | None = None  # the user a user token acts for; None: the app itself
    scopes: frozenset[str] | None = None  # an OAuth 2.0 user token's; None: not scoped

    def may_read(self) -> bool:
        return self.scopes is None or self.scopes >= READ_SCOPES


@dataclass(frozen=True)
class _Client:
    secret: str | None  # None: a public client
    redirect_uris: tuple[str, ...]


@dataclass(frozen=True)
class _Code:
    client_id: str
    user_id: str
    redirect_uri: str
    challenge: str
    method: str
    scopes: frozenset[str]
    expires: datetime


@dataclass(frozen=True)
class _Grant:
    client_id: str
    user_id: str
    scopes: frozenset[str]
    expires: datetime | None = None  # access tokens only


class XAuth:
    """Credentials the stand-in knows, and the checks on each request."""

    def __init__(
        self,
        bearer_token: str,
        clock: Callable[[], datetime],
        *,
        access_token_lifetime: float = 7200.0,
        code_lifetime: float = 30.0,
    ) -> None:
        self.bearer_token = bearer_token
        self.clock = clock
        self.access_token_lifetime = timedelta(seconds=access_token_lifetime)
        self.code_lifetime = timedelta(seconds=code_lifetime)
        self._lock = threading.Lock()
        self._clients: dict[str, _Client] = {}
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}
        self._consumers: dict[str, str] = {}  # consumer key -> secret
        self._oauth1: dict[str, tuple[str, str, str]] = {}  # token -> (secret, consumer, user)
        # Every token handed out, for tests that look for them where they must never be.
        self.issued: list[str] = []

    # -- registration (what a developer console would hold) ----------------------------------
    def add_client(
        self,
        client_id: str,
        secret: str | None = None,
        redirect_uris: Iterable[str] = ("http://127.0.0.1/callback",),
    ) -> None:
        with self._lock:
            self._clients[client_id] = _Client(secret, tuple(redirect_uris))

    def add_consumer(self, key: str, secret: str) -> None:
        with self._lock:
            self._consumers[key] = secret

    def issue_oauth1_token(self, consumer_key: str, user_id: str) -> tuple[str, str]:
        """An access token pair for ``user_id``, shaped like X's (``<user id>-<random>``)."""
        with self._lock:
            if consumer_key not in self._consumers:
                raise KeyError(f"no consumer {consumer_key!r}")
            token = f"{user_id}-{secrets.token_urlsafe(24)}"
            secret = secrets.token_urlsafe(32)
            self._oauth1[token] = (secret, consumer_key, user_id)
            self.issued += [token, secret]
            return token, secret

    def approve(self, authorize_url: str, user_id: str) -> str:
        """The consent page, approved by ``user_id``: the URL X redirects the browser to."""
        q = dict(parse_qsl(urlsplit(authorize_url).query))
        client = self._clients.get(q.get("client_id", ""))
        if client is None:
            raise ValueError("unknown client_id")
        redirect = q.get("redirect_uri", "")
        if redirect not in client.redirect_uris:
            raise ValueError(f"redirect_uri {redirect!r} is not one of the client's")
        scopes = frozenset(q.get("scope", "").split())
        if q.get("response_type") != "code" or not q.get("state") or not scopes <= KNOWN_SCOPES:
            raise ValueError("response_type, state and scope are required, scope from X's")
        method = q.get("code_challenge_method", "plain")
        if method not in ("S256", "plain") or not q.get("code_challenge"):
            raise ValueError("a code_challenge (S256 or plain) is required")
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = _Code(
                q["client_id"],
                user_id,
                redirect,
                q["code_challenge"],
                method,
                scopes,
                self.clock() + self.code_lifetime,
            )
        return f"{redirect}?{urlencode({'state': q['state'], 'code': code})}"

    def issue_tokens(
        self, client_id: str, user_id: str, scopes: Iterable[str] = (*READ_SCOPES, "offline.access")
    ) -> JsonObject:
        """The token endpoint's answer for a code ``user_id`` approved, without the flow."""
        with self._lock:
            return self._issue(client_id, user_id, frozenset(scopes))

    def revoke_access_tokens(self, user_id: str) -> int:
        """Access tokens of ``user_id`` refused from now on (refresh tokens stay good)."""
        with self._lock:
            gone = [t for t, g in self._access.items() if g.user_id == user_id]
            for token in gone:
                del self._access[token]
            return len(gone)

    def revoke_refresh_tokens(self, user_id: str) -> int:
        with self._lock:
            gone = [t for t, g in self._refresh.items() if g.user_id == user_id]
            for token in gone:
                del self._refresh[token]
            return len(gone)

    # -- checking requests -------------------------------------------------------------------
    def authenticate(self, req: Request, own_url: str) -> Principal | None:
        header = req.header("authorization") or ""
        if header.startswith("OAuth "):
            return self._oauth1_principal(req, header, own_url)
        match = _BEARER.match(header)
        if match is None:
            return None
        token = match.group(1)
        if hmac.compare_digest(token, self.bearer_token):
            return Principal(token)
        with self._lock:
            grant = self._access.get(token)
            if grant is None or (grant.expires is not None and grant.expires <= self.clock()):
                return None
            return Principal(f"user:{grant.user_id}", grant.user_id, grant.scopes)

    def token_endpoint(self, req: Request) -> Response:
        """``POST /2/oauth2/token``: authorization_code (PKCE) and refresh_token grants."""
        form = dict(parse_qsl(req.body.decode("utf-8", "replace")))
        client_id, refusal = self._client_of(req, form)
        if refusal is not None:
            return refusal
        grant_type = form.get("grant_type")
        with self._lock:
            if grant_type == "authorization_code":
                return self._exchange(client_id, form)
            if grant_type == "refresh_token":
                return self._rotate(client_id, form)
        return _oauth_error(400, "unsupported_grant_type", "The grant type is not supported.")

    # -- OAuth 2.0 internals -----------------------------------------------------------------
    def _client_of(self, req: Request, form: Mapping[str, str]) -> tuple[str, Response | None]:
        basic = _BASIC.match(req.header("authorization") or "")
        if basic is not None:
            try:
                pair = base64.b64decode(basic.group(1), validate=True).decode("utf-8")
            except ValueError:
                pair = ""
            client_id, _, secret = pair.partition(":")
        else:
            client_id, secret = form.get("client_id", ""), ""
        client = self._clients.get(client_id)
        if client is None:
            return client_id, _oauth_error(401, "invalid_client", "Invalid client id.")
        if client.secret is not None and (
            basic is None or not hmac.compare_digest(secret, client.secret)
        ):
            return client_id, _oauth_error(
                401, "unauthorized_client", "Missing valid authorization header"
            )
        return client_id, None

    def _exchange(self, client_id: str, form: Mapping[str, str]) -> Response:
        code = self._codes.pop(form.get("code", ""), None)  # single use, whatever happens
        verifier = form.get("code_verifier", "")
        if (
            code is None
            or code.client_id != client_id
            or code.expires <= self.clock()
            or code.redirect_uri != form.get("redirect_uri")
            or not hmac.compare_digest(_challenge(verifier, code.method), code.challenge)
        ):
            return _oauth_error(
                400, "invalid_request", "Value passed for the authorization code was invalid."
            )
        return Response.json(self._issue(client_id, code.user_id, code.scopes))

    def _rotate(self, client_id: str, form: Mapping[str, str]) -> Response:
        token = form.get("refresh_token", "")
        grant = self._refresh.get(token)
        if grant is None or grant.client_id != client_id:
            return _oauth_error(400, "invalid_request", "Value passed for the token was invalid.")
        del self._refresh[token]
        return Response.json(self._issue(client_id, grant.user_id, grant.scopes))

    def _issue(self, client_id: str, user_id: str, scopes: frozenset[str]) -> JsonObject:
        access = secrets.token_urlsafe(40)
        expires = self.clock() + self.access_token_lifetime
        self._access[access] = _Grant(client_id, user_id, scopes, expires)
        self.issued.append(access)
        answer: JsonObject = {
            "token_type": "bearer",
            "expires_in": int(self.access_token_lifetime.total_seconds()),
            "access_token": access,
            "scope": " ".join(sorted(scopes)),
        }
        if "offline.access" in scopes:
            refresh = secrets.token_urlsafe(40)
            self._refresh[refresh] = _Grant(client_id, user_id, scopes)
            self.issued.append(refresh)
            answer["refresh_token"] = refresh
        return answer

    # -- OAuth 1.0a internals ----------------------------------------------------------------
    def _oauth1_principal(self, req: Request, header: str, own_url: str) -> Principal | None:
        oauth = {unquote(k): unquote(v) for k, v in _OAUTH_PARAM.findall(header[len("OAuth ") :])}
        signature = oauth.pop("oauth_signature", "")
        oauth.pop("realm", None)
        if oauth.get("oauth_signature_method") != "HMAC-SHA1":
            return None
        with self._lock:
            consumer_secret = self._consumers.get(oauth.get("oauth_consumer_key", ""))
            token = self._oauth1.get(oauth.get("oauth_token", ""))
        if consumer_secret is None or token is None:
            return None
        token_secret, consumer_key, user_id = token
        if consumer_key != oauth["oauth_consumer_key"]:
            return None
        params = [*req.query.items(), *oauth.items()]
        if "x-www-form-urlencoded" in (req.header("content-type") or ""):
            params += parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        key = f"{_enc(consumer_secret)}&{_enc(token_secret)}".encode()
        for origin in (*X_ORIGINS, own_url):
            expected = base64.b64encode(
                hmac.new(key, _base_string(req.method, origin + req.path, params), "sha1").digest()
            ).decode()
            if hmac.compare_digest(expected, signature):
                return Principal(f"user:{user_id}", user_id)
        return None


def _enc(text: str) -> str:
    return quote(text, safe="~")  # RFC 3986 unreserved characters only


def _base_string(method: str, uri: str, params: Iterable[tuple[str, str]]) -> bytes:
    pairs = sorted((_enc(k), _enc(v)) for k, v in params)
    normalized = "&".join(f"{k}={v}" for k, v in pairs)
    return f"{method.upper()}&{_enc(uri)}&{_enc(normalized)}".encode()


def _challenge(verifier: str, method: str) -> str:
    if method == "plain":
        return verifier
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _oauth_error(status: int, error: str, description: str) -> Response:
    body = {
        "error": error,
        "error_description": description,
        "errors": [{"code": status, "message": description}],
    }
    return Response.json(body, status)
