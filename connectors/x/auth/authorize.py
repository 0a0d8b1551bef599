"""``syncd x authorize``: OAuth 2.0 Authorization Code with PKCE for one brand account.

An admin opens the authorize URL signed in to X as the brand account, approves, and pastes
back the address X then sent the browser to (or only its code). The PKCE verifier, and the
``state`` that tells this authorization's answer from any other, wait 0600 beside the token
file meanwhile, so the address can also be handed over by a later run (``--redirect-url``,
for scripts). The token is saved only once ``GET /2/users/me`` says it is the account's own.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import requests

from connectors._http import RewritingAdapter, mount
from connectors.x.auth.auth import OAuth2UserAuth
from connectors.x.auth.oauth2 import SCOPES, Clock, TokenEndpoint, whoami
from connectors.x.auth.token_file import (
    TokenFile,
    TokenFileProblem,
    UserToken,
    read_private,
    write_private,
)
from syncd.contracts.files import UnsafeFile
from syncd.errors import ExternalError, UserError

AUTHORIZE_URL = "https://x.com/i/oauth2/authorize"
# How long a started authorization may wait for its answer. X's codes themselves live only
# 30 seconds once issued, so this bounds the admin's walk to the browser, not the code.
PENDING_FOR = timedelta(minutes=15)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def session_for(api_base_url: str, timeout: float) -> requests.Session:
    """A session whose requests to api.x.com go to ``api_base_url`` (a proxy, the sandbox)."""
    session = requests.Session()
    mount(session, RewritingAdapter({"https://api.x.com": api_base_url}, timeout))
    return session


@dataclass(frozen=True)
class Pending:
    """An authorization whose answer has not come back yet. ``repr`` shows no secret."""

    state: str = field(repr=False)
    verifier: str = field(repr=False)
    client_id: str
    redirect_uri: str
    started: datetime

    @classmethod
    def new(cls, client_id: str, redirect_uri: str, now: datetime) -> Pending:
        # RFC 7636: a verifier of 43 to 128 characters from the unreserved set.
        return cls(
            secrets.token_urlsafe(24), secrets.token_urlsafe(64), client_id, redirect_uri, now
        )

    def url(self) -> str:
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(SCOPES),
            "state": self.state,
            "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
        return f"{AUTHORIZE_URL}?{urlencode(query, quote_via=quote)}"  # spaces as %20

    def to_json(self) -> str:
        doc = {k: getattr(self, k) for k in ("state", "verifier", "client_id", "redirect_uri")}
        return json.dumps({**doc, "started": self.started.isoformat()})

    @classmethod
    def from_json(cls, text: str) -> Pending:
        doc = json.loads(text)
        return cls(
            str(doc["state"]),
            str(doc["verifier"]),
            str(doc["client_id"]),
            str(doc["redirect_uri"]),
            datetime.fromisoformat(doc["started"]),
        )


class Authorization:
    """Authorizing syncd for one account, as configured in ``[sources.user_auth.HANDLE]``."""

    def __init__(
        self,
        handle: str,
        auth: OAuth2UserAuth,
        session: requests.Session,
        *,
        clock: Clock = _utcnow,
    ) -> None:
        self.handle = handle
        self.auth = auth
        self.session = session
        self.clock = clock
        self.pending_path = auth.token_file.with_name(auth.token_file.name + ".pending")
        secret = auth.client_secret.reveal() if auth.client_secret is not None else None
        self.endpoint = TokenEndpoint(session, auth.client_id, secret, clock=clock)

    def start(self) -> Pending:
        """The waiting authorization, or a new one: a second run shows the same URL again."""
        pending = self.pending()
        if pending is None:
            pending = Pending.new(self.auth.client_id, self.auth.redirect_uri, self.clock())
            try:
                write_private(self.pending_path, pending.to_json())
            except UnsafeFile as exc:
                raise UserError(str(exc)) from None
            except OSError as exc:
                raise UserError(f"cannot write {self.pending_path} ({exc.strerror})") from None
        return pending

    def pending(self) -> Pending | None:
        """The authorization still waiting for its answer with the configured client."""
        try:
            # Run as root in the service user's directory: never read through a link.
            pending = Pending.from_json(read_private(self.pending_path))
        except UnsafeFile as exc:
            raise UserError(str(exc)) from None
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable or from another version: start afresh
        current = (self.auth.client_id, self.auth.redirect_uri)
        fresh = self.clock() - pending.started < PENDING_FOR
        return pending if fresh and (pending.client_id, pending.redirect_uri) == current else None

    def finish(self, pasted: str, *, bare_code: bool = False) -> UserToken:
        """Exchange the answer for tokens, check whose they are, save them; nothing is saved
        unless they are this account's."""
        pending = self.pending()
        if pending is None:
            raise UserError(
                f"no authorization of @{self.handle} is waiting (none started in the last "
                f"{PENDING_FOR.seconds // 60} minutes): run `syncd x authorize {self.handle}`"
            )
        code = pasted.strip() if bare_code else _code(pasted, pending)
        try:
            token = self.endpoint.exchange(code, pending.verifier, pending.redirect_uri)
        except ExternalError as exc:
            self._forget_pending()  # a code is good for one exchange, whatever came of it
            raise UserError(f"X did not give a token for that answer: {exc}") from None
        self._forget_pending()
        try:
            user_id, username = whoami(self.session, token.access_token)
        except ExternalError as exc:
            raise UserError(f"could not ask X whose token this is: {exc}") from None
        if username.lower() != self.handle.lower():
            raise UserError(
                f"X authorized @{username}, not @{self.handle}; nothing was saved. Sign in to "
                f"X as @{self.handle} (or sign out of @{username}) and run "
                f"`syncd x authorize {self.handle}` again"
            )
        token = replace(token, user_id=user_id, username=username)
        try:
            TokenFile(self.auth.token_file).write(token)
        except TokenFileProblem as exc:
            raise UserError(str(exc)) from None
        return token

    def _forget_pending(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pending_path.unlink()


def _code(pasted: str, pending: Pending) -> str:
    """The code of a pasted redirect address, after checking it answers ``pending``; a bare
    code (no ``code=``) is taken as it is, bound to this authorization by its PKCE verifier."""
    text = pasted.strip()
    if not text:
        raise UserError("nothing was pasted")
    if "code=" not in text and "error=" not in text and "state=" not in text:
        return text
    query = dict(parse_qsl(urlsplit(text).query if "://" in text else text.lstrip("?")))
    if "error" in query:
        said = "; ".join(query[k] for k in ("error", "error_description") if query.get(k))
        raise UserError(f"X did not authorize syncd ({said}): run the command again")
    if not hmac.compare_digest(query.get("state", ""), pending.state):
        raise UserError(
            "the pasted address answers another authorization (its state does not match): "
            "paste the address the URL printed last led to"
        )
    code = query.get("code")
    if not code:
        raise UserError("the pasted address has no code=…: copy the whole address")
    return code
