"""The Mastodon REST API of one instance, as far as syncd reads it, on loopback.

Shapes follow the bodies recorded from a real Mastodon 4.5 (the Mastodon.py test cassettes:
accounts, statuses with their ``h-card`` mention markup, mention notifications, the
``{"error": "Not Found"}`` of a deleted status and ``{"error": "Record not found"}`` of an
unknown account, ``Link`` pagination and ISO ``X-RateLimit-Reset``). The notification policy
(``GET /api/v2/notifications/policy``) and the batched ``GET /api/v1/statuses?id[]=`` /
``GET /api/v1/accounts?id[]=`` are not in the recordings: they follow the published API
documentation (docs.joinmastodon.org, methods/notifications and methods/statuses).

Rate limits as Mastodon's defaults: 300 requests per 5 minutes per token, and separately 300
paginated requests (``min_id``, ``max_id`` or ``since_id``) per 15 minutes per user; the
headers describe the tighter of the two.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote, urlencode, urlsplit

from sandbox.faults import FaultRule, Kind, kinds
from sandbox.server import Request, Response, SandboxServer

JsonObject = dict[str, Any]
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_]+)(?:@([A-Za-z0-9.-]+))?")
_ISO_MS = "%Y-%m-%dT%H:%M:%S.%f"

NOTIFICATIONS_LIMIT = (40, 80)  # (default, most) of ?limit=
STATUSES_LIMIT = (20, 40)
MANY_IDS = 20  # ids[] a multiple-statuses or -accounts call takes (documented default)
LIMITS = {"all": (300, 300.0), "paginated": (300, 900.0)}  # (requests, window seconds)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_ISO_MS)[:-3] + "Z"


@dataclass
class MAccount:
    id: str
    username: str
    domain: str | None  # None: an account of this instance
    created_at: datetime
    display_name: str = ""
    note: str = ""
    uri: str = ""
    url: str = ""

    @property
    def acct(self) -> str:
        return self.username if self.domain is None else f"{self.username}@{self.domain}"


@dataclass
class MStatus:
    id: str
    account_id: str
    text: str
    created_at: datetime
    uri: str
    url: str
    in_reply_to_id: str | None = None
    in_reply_to_account_id: str | None = None
    mentions: list[str] = field(default_factory=list)  # account ids
    reblog_of: str | None = None


@dataclass
class MNotification:
    id: str
    recipient_id: str
    type: str
    from_id: str
    status_id: str | None
    created_at: datetime


@dataclass
class _Window:
    started: float
    used: int = 0


class MastodonSandbox(SandboxServer):
    name = "mastodon-sandbox"
    fault_kinds: ClassVar[Mapping[str, Kind]] = kinds(
        {
            "rate_limit": Kind(frozenset({"seconds"}), {"seconds": 300.0}),
            "bad_item": Kind(frozenset({"fields"}), {"fields": ["created_at"]}),
        }
    )

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], datetime] | None = None,
        limits: Mapping[str, tuple[int, float]] | None = None,
        latency: float = 0.0,
    ) -> None:
        super().__init__(host, port, latency=latency)
        self.clock = clock or _utcnow
        self.limits = {**LIMITS, **(limits or {})}
        self.accounts: dict[str, MAccount] = {}
        self.statuses: dict[str, MStatus] = {}
        self.notifications: list[MNotification] = []
        self.tokens: dict[str, str] = {}  # access token → username of the local account
        self.policy: JsonObject = {
            "for_not_following": "accept",
            "for_not_followers": "accept",
            "for_new_accounts": "accept",
            "for_private_mentions": "filter",
            "for_limited_accounts": "filter",
            "summary": {"pending_requests_count": 0, "pending_notifications_count": 0},
        }
        self._ids = itertools.count(1)
        self._notification_ids = itertools.count(1)  # a sequence, as Mastodon's are
        self._windows: dict[tuple[str, str], _Window] = {}
        self._caller = threading.local()
        for method, pattern, handler, endpoint in (
            ("GET", "/api/v1/accounts/verify_credentials", self._verify, "verify_credentials"),
            ("GET", "/api/v1/accounts/lookup", self._lookup, "account_lookup"),
            ("GET", "/api/v1/accounts/{id}/statuses", self._account_statuses, "account_statuses"),
            ("GET", "/api/v1/accounts", self._many_accounts, "accounts"),
            ("GET", "/api/v1/notifications", self._notifications, "notifications"),
            ("GET", "/api/v1/statuses/{id}", self._status, "status"),
            ("GET", "/api/v1/statuses", self._many_statuses, "statuses"),
            ("GET", "/api/v2/notifications/policy", self._policy, "notifications_policy"),
        ):
            self.route(method, pattern, self._guarded(handler), endpoint)

    def start(self) -> MastodonSandbox:
        super().start()
        return self

    def __enter__(self) -> MastodonSandbox:
        return self.start()

    # -- the store, for tests and the demo --------------------------------------------------
    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    def _snowflake(self) -> str:
        """A status or account id: the clock's milliseconds << 16 and a sequence, as
        Mastodon's (a status made at an earlier time has a smaller id, as an import does)."""
        ms = int(self.clock().timestamp() * 1000)
        return str((ms << 16) + next(self._ids) % 65536)

    def add_account(
        self, username: str, *, domain: str | None = None, display_name: str = "", note: str = ""
    ) -> MAccount:
        with self.lock:
            account_id = self._snowflake()
            if domain is None:
                uri = f"{self.url}/users/{username}"
                url = f"{self.url}/@{username}"
            else:
                uri, url = f"https://{domain}/users/{username}", f"https://{domain}/@{username}"
            account = MAccount(
                account_id, username, domain, self.clock(), display_name, note, uri, url
            )
            self.accounts[account_id] = account
            return account

    def add_token(self, token: str, username: str) -> None:
        """``token`` is the access token of the local account ``username`` (which may be
        created later: the token is checked at each request)."""
        with self.lock:
            self.tokens[token] = username

    def by_acct(self, acct: str) -> MAccount | None:
        name, _, domain = acct.removeprefix("@").partition("@")
        local_domain = urlsplit(self.url).netloc.lower()
        want = None if domain.lower() in ("", local_domain) else domain.lower()
        for account in self.accounts.values():
            if account.username.lower() == name.lower() and ((account.domain or None) == want):
                return account
        return None

    def add_status(self, account_id: str, text: str, *, in_reply_to: str | None = None) -> MStatus:
        """A status; ``@user`` or ``@user@domain`` in ``text`` mentions (and notifies) that
        account of this instance, as Mastodon's mention processing does. An account of
        another domain's status is this instance's copy of one federated to it: ``id`` is
        this instance's, its uri and url carry the id its own instance gave it."""
        with self.lock:
            author = self.accounts[account_id]
            status_id = self._snowflake()
            if author.domain is None:
                uri = f"{self.url}/users/{author.username}/statuses/{status_id}"
                url = f"{self.url}/@{author.username}/{status_id}"
            else:
                # Its own instance's id, not this one's: this instance knows the status by a
                # local id of its own that the uri does not tell.
                theirs = self._snowflake()
                uri = f"https://{author.domain}/users/{author.username}/statuses/{theirs}"
                url = f"https://{author.domain}/@{author.username}/{theirs}"
            parent = self.statuses.get(in_reply_to) if in_reply_to else None
            mentioned = []
            for m in _MENTION.finditer(text):
                target = self.by_acct(m.group(0))
                if target is not None and target.id not in mentioned:
                    mentioned.append(target.id)
            status = MStatus(
                status_id, account_id, text, self.clock(), uri, url,
                in_reply_to_id=parent.id if parent else None,
                in_reply_to_account_id=parent.account_id if parent else None,
                mentions=mentioned,
            )  # fmt: skip
            self.statuses[status_id] = status
            for target_id in mentioned:
                if target_id != account_id and self.accounts[target_id].domain is None:
                    self.notifications.append(
                        MNotification(
                            str(next(self._notification_ids)),
                            target_id,
                            "mention",
                            account_id,
                            status_id,
                            self.clock(),
                        )
                    )
            return status

    def add_notification(self, recipient_id: str, type_: str, from_id: str) -> MNotification:
        """A notification of another type (a follow, a favourite): the stream must skip it."""
        with self.lock:
            note = MNotification(
                str(next(self._notification_ids)), recipient_id, type_, from_id, None, self.clock()
            )
            self.notifications.append(note)
            return note

    def delete_status(self, status_id: str) -> None:
        """Gone: 404 from then on, and its notifications leave the list (as Mastodon's do).
        For a status of another domain (by its id here) this is its author deleting it on
        their instance: the Delete activity federates and this instance removes its copy."""
        with self.lock:
            self.statuses.pop(status_id, None)
            self.notifications = [n for n in self.notifications if n.status_id != status_id]

    def move_account(self, account_id: str, username: str) -> None:
        """A new acct for the same actor (a rename); the uri stays."""
        with self.lock:
            self.accounts[account_id].username = username

    # -- rendering ---------------------------------------------------------------------------
    def render_account(self, account: MAccount) -> JsonObject:
        return {
            "id": account.id, "username": account.username, "acct": account.acct,
            "display_name": account.display_name, "locked": False, "bot": False,
            "discoverable": None, "indexable": False, "group": False,
            "created_at": account.created_at.strftime("%Y-%m-%dT00:00:00.000Z"),
            "note": f"<p>{html.escape(account.note)}</p>" if account.note else "",
            "url": account.url, "uri": account.uri,
            "avatar": f"{self.url}/avatars/original/missing.png",
            "avatar_static": f"{self.url}/avatars/original/missing.png",
            "header": f"{self.url}/headers/original/missing.png",
            "header_static": f"{self.url}/headers/original/missing.png",
            "followers_count": 0, "following_count": 0,
            "statuses_count": sum(1 for s in self.statuses.values() if s.account_id == account.id),
            "last_status_at": None, "emojis": [], "fields": [],
        }  # fmt: skip

    def _content(self, status: MStatus) -> str:
        """The text as Mastodon renders it: mentions as ``h-card`` links, URLs as links with
        their shown part cut (``invisible``/``ellipsis`` spans), in a paragraph."""

        def link(m: re.Match[str]) -> str:
            word = m.group(0)
            if word.startswith("@"):
                target = self.by_acct(word)
                if target is None:
                    return html.escape(word)
                return (
                    f'<span class="h-card" translate="no"><a href="{html.escape(target.url)}" '
                    f'class="u-url mention">@<span>{html.escape(target.username)}</span></a></span>'
                )
            scheme, _, rest = word.partition("://")
            shown, hidden = rest[:23], rest[23:]
            return (
                f'<a href="{html.escape(word)}" target="_blank" rel="nofollow noopener" '
                f'translate="no"><span class="invisible">{scheme}://</span><span class="'
                f'{"ellipsis" if hidden else ""}">{html.escape(shown)}</span><span class="'
                f'invisible">{html.escape(hidden)}</span></a>'
            )

        pattern = re.compile(r"https?://\S+|" + _MENTION.pattern)
        paragraphs = []
        for block in status.text.split("\n\n"):
            parts, last = [], 0
            for m in pattern.finditer(block):
                parts.append(html.escape(block[last : m.start()]).replace("\n", "<br />"))
                parts.append(link(m))
                last = m.end()
            parts.append(html.escape(block[last:]).replace("\n", "<br />"))
            paragraphs.append(f"<p>{''.join(parts)}</p>")
        return "".join(paragraphs)

    def render_status(self, status: MStatus) -> JsonObject:
        return {
            "id": status.id, "created_at": _iso(status.created_at),
            "in_reply_to_id": status.in_reply_to_id,
            "in_reply_to_account_id": status.in_reply_to_account_id,
            "sensitive": False, "spoiler_text": "", "visibility": "public", "language": "en",
            "uri": status.uri, "url": status.url, "replies_count": 0, "reblogs_count": 0,
            "favourites_count": 0, "quotes_count": 0, "edited_at": None,
            "favourited": False, "reblogged": False, "muted": False, "bookmarked": False,
            "content": self._content(status), "filtered": [], "reblog": None,
            "account": self.render_account(self.accounts[status.account_id]),
            "media_attachments": [],
            "mentions": [
                {"id": a.id, "username": a.username, "url": a.url, "acct": a.acct}
                for a in (self.accounts[i] for i in status.mentions)
            ],
            "tags": [], "emojis": [], "quote": None, "card": None, "poll": None,
        }  # fmt: skip

    def render_notification(self, note: MNotification) -> JsonObject:
        body: JsonObject = {
            "id": note.id, "type": note.type, "created_at": _iso(note.created_at),
            "group_key": f"ungrouped-{note.id}",
            "account": self.render_account(self.accounts[note.from_id]),
        }  # fmt: skip
        if note.status_id is not None:
            body["status"] = self.render_status(self.statuses[note.status_id])
        return body

    # -- requests ----------------------------------------------------------------------------
    def _guarded(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def serve(req: Request) -> Response:
            with self.lock:
                me = self._authenticate(req)
                if me is None:
                    return Response.json({"error": "The access token is invalid"}, 401)
                self._caller.account = me
                refused, headers = self._count(req, me)
                if refused:
                    return Response.json({"error": "Too many requests"}, 429, headers)
                resp = handler(req)
            resp.headers.update(headers)
            return resp

        return serve

    def _authenticate(self, req: Request) -> MAccount | None:
        auth = req.header("authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or token not in self.tokens:
            return None
        return self.by_acct(self.tokens[token])

    def _count(self, req: Request, me: MAccount) -> tuple[bool, dict[str, str]]:
        """Mastodon's throttles (rack-attack): every request per token, paginated ones per
        user too; a request over either is refused, and the headers show the tighter one."""
        now = self.clock().timestamp()
        groups = ["all"]
        if any(k in req.query for k in ("min_id", "max_id", "since_id")):
            groups.append("paginated")
        shown: tuple[int, int, float] | None = None
        refused = False
        for group in groups:
            limit, span = self.limits[group]
            start = now - now % span  # rack-attack's fixed windows
            window = self._windows.get((group, me.id))
            if window is None or window.started != start:
                window = self._windows[(group, me.id)] = _Window(start)
            window.used += 1
            refused = refused or window.used > limit
            left = max(limit - window.used, 0)
            if shown is None or left < shown[1]:
                shown = (limit, left, start + span)
        assert shown is not None
        reset = datetime.fromtimestamp(shown[2], UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return refused, {
            "X-RateLimit-Limit": str(shown[0]),
            "X-RateLimit-Remaining": str(shown[1]),
            "X-RateLimit-Reset": reset,
        }

    def _verify(self, req: Request) -> Response:
        return Response.json(self.render_account(self._caller.account))

    def _lookup(self, req: Request) -> Response:
        account = self.by_acct(req.query.get("acct", ""))
        if account is None:
            return Response.json({"error": "Record not found"}, 404)
        return Response.json(self.render_account(account))

    def _many_accounts(self, req: Request) -> Response:
        ids = req.multi.get("id[]", [])[:MANY_IDS]
        return Response.json(
            [self.render_account(self.accounts[i]) for i in ids if i in self.accounts]
        )

    def _status(self, req: Request) -> Response:
        status = self.statuses.get(req.params["id"])
        if status is None:
            return Response.json({"error": "Not Found"}, 404)
        return Response.json(self.render_status(status))

    def _many_statuses(self, req: Request) -> Response:
        ids = req.multi.get("id[]", [])[:MANY_IDS]
        return Response.json(
            [self.render_status(self.statuses[i]) for i in ids if i in self.statuses]
        )

    def _policy(self, req: Request) -> Response:
        return Response.json(self.policy)

    def _notifications(self, req: Request) -> Response:
        me = self._caller.account
        types = set(req.multi.get("types[]", []))
        mine = [
            n for n in self.notifications
            if n.recipient_id == me.id and (not types or n.type in types)
        ]  # fmt: skip
        return self._paginated(req, mine, NOTIFICATIONS_LIMIT, self.render_notification)

    def _account_statuses(self, req: Request) -> Response:
        account = self.accounts.get(req.params["id"])
        if account is None:
            return Response.json({"error": "Record not found"}, 404)
        exclude_reblogs = req.query.get("exclude_reblogs", "").lower() in ("true", "1")
        theirs = [
            s for s in self.statuses.values()
            if s.account_id == account.id and not (exclude_reblogs and s.reblog_of)
        ]  # fmt: skip
        return self._paginated(req, theirs, STATUSES_LIMIT, self.render_status)

    def _paginated(
        self,
        req: Request,
        items: list[Any],
        limits: tuple[int, int],
        render: Callable[[Any], JsonObject],
    ) -> Response:
        """Mastodon's id pagination: newest first; ``max_id`` below, ``since_id`` above (the
        newest page of that range), ``min_id`` above (the page right after it); a ``Link``
        header with ``rel="next"`` (older) and ``rel="prev"`` (newer) when the page has items."""
        try:
            limit = int(req.query.get("limit") or limits[0])
        except ValueError:
            limit = limits[0]
        limit = max(1, min(limit, limits[1]))
        key: Callable[[Any], int] = lambda item: int(item.id)  # noqa: E731
        ordered = sorted(items, key=key)
        if (max_id := req.query.get("max_id")) and max_id.isdigit():
            ordered = [i for i in ordered if key(i) < int(max_id)]
        if (since_id := req.query.get("since_id")) and since_id.isdigit():
            ordered = [i for i in ordered if key(i) > int(since_id)]
        if (min_id := req.query.get("min_id")) and min_id.isdigit():
            page = [i for i in ordered if key(i) > int(min_id)][:limit]
        else:
            page = ordered[-limit:]
        page.reverse()
        headers: dict[str, str] = {}
        if page:
            base = {k: v for k, v in req.multi.items() if k not in ("max_id", "min_id", "since_id")}

            def link(**bound: str) -> str:
                pairs = [(k, v) for k, vs in base.items() for v in vs] + list(bound.items())
                return f"{self.url}{req.path}?{urlencode(pairs, quote_via=quote)}"

            headers["Link"] = (
                f'<{link(max_id=page[-1].id)}>; rel="next", <{link(min_id=page[0].id)}>; rel="prev"'
            )
        return Response.json([render(i) for i in page], headers=headers)

    # -- faults ------------------------------------------------------------------------------
    def fault_response(
        self, rule: FaultRule, req: Request, handler: Callable[[Request], Response],
        answered: Response | None,
    ) -> Response:  # fmt: skip
        if rule.kind == "rate_limit":
            reset = self.clock() + timedelta(seconds=rule.seconds or 300.0)
            headers = {
                "X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }  # fmt: skip
            return Response.json({"error": "Too many requests"}, 429, headers)
        if rule.kind == "bad_item":
            resp = answered or handler(req)
            return _break_first(resp, rule.fields or ["created_at"])
        return super().fault_response(rule, req, handler, answered)

    def status_response(self, status: int, req: Request) -> Response:
        return Response.json({"error": "We're sorry, but something went wrong on our end."}, status)

    def malformed_response(self, req: Request) -> Response:
        return Response(200, b'[{"id":"1', {"Content-Type": "application/json; charset=utf-8"})


def _break_first(resp: Response, fields: list[str]) -> Response:
    """The answer with its first item's (or first item's status's) ``fields`` set to
    nonsense of the right type: what a parser must quarantine while the rest goes through."""
    body = json.loads(resp.body or b"null")
    if isinstance(body, list) and body and isinstance(body[0], dict):
        status = body[0].get("status")
        target: JsonObject = status if isinstance(status, dict) else body[0]
        for name in fields:
            target[name] = "not a time" if name == "created_at" else None
    return Response(resp.status, json.dumps(body).encode(), dict(resp.headers))
