"""The Bluesky XRPC stand-in: what the Bluesky source uses, with the real shapes and limits.

Written from the lexicons (../shared/fixtures/atproto/lexicons) and the recorded bodies beside
them; where neither records a shape, from the published API docs (docs.bsky.app), said where
so. Served under ``/xrpc/<nsid>``:

- ``com.atproto.server.createSession`` / ``refreshSession``: JWT pairs (access 2 hours, refresh
  60 days, refresh tokens rotate); createSession limited to 30 per 5 minutes and 300 a day per
  account (429 ``RateLimitExceeded``). An expired access token answers 400 ``ExpiredToken``,
  a token never issued 401 ``InvalidToken``, as the PDS does.
- ``app.bsky.actor.getProfiles`` (≤ 25 actors), ``app.bsky.notification.listNotifications``
  (``reasons`` filter, limit 1..100, opaque cursor, ``seenAt`` refused with 400),
  ``app.bsky.feed.getAuthorFeed`` (``posts_with_replies``), ``app.bsky.feed.getPosts`` (≤ 25
  uris, missing posts left out), ``app.bsky.feed.getPostThread`` (400 ``NotFound`` for a
  deleted post; a blocked one is a ``blockedPost``; the reply tree ``depth`` levels down,
  newest first, a blocked reply a ``blockedPost``, a deleted one left out with what lies
  below it; the parents ``parentHeight`` levels up, a deleted one a ``notFoundPost``),
  ``app.bsky.feed.getQuotes`` (``uri``, limit 1..100, an opaque cursor; newest first by sort
  time, blocked and deleted quotes left out), ``app.bsky.feed.searchPosts`` (``q``,
  ``mentions``, ``author``, ``since`` inclusive and ``until`` exclusive on the sort time,
  ``sort``, ``cursor``: an offset, refused past 10,000 as Bluesky's search service does).
- Every answer carries ``RateLimit-Limit/-Remaining/-Reset/-Policy``: 3,000 requests per 5
  minutes per IP; past it, 429.

Faults (:mod:`sandbox.faults`), beside the common kinds: ``rate_limit`` (429 with a reset
``seconds`` away), ``bad_item`` (a page's first item without its author, or a wrong one) and
``expired_token`` (400 ``ExpiredToken`` to a still-valid access JWT, as a PDS whose clock runs
ahead says it; only on the endpoints that take one, :data:`AUTHED`).

Notifications sort by the older of a post's index time and its ``createdAt``, so a backdated
post lands below newer ones. As the appview indexes them (bluesky-social/atproto,
packages/bsky/src/data-plane/server/indexing/plugins/post.ts): a post notifies each account
once, first for a mention, then for a quote, then for a reply; a reply notifies the authors
of its ancestors up to 4 levels above it (``REPLY_NOTIF_DEPTH`` 5, ``height < 5``).
Nothing here imports syncd: a mistake syncd makes about the API cannot be here too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from sandbox.faults import FaultRule, Kind, kinds
from sandbox.server import Handler, Request, Response, SandboxServer

__all__ = ["BlueskySandbox"]

JsonObject = dict[str, Any]
_JSON = {"Content-Type": "application/json; charset=utf-8"}
_WINDOW = 300.0  # seconds: the PDS's per-IP window
# Bluesky's search service (Palomar, bluesky-social/indigo search/) reads the cursor as an
# offset into the hits and refuses one over 10,000 ("can't paginate so deep"), and a page
# whose offset plus size passes 10,000.
SEARCH_DEPTH = 10_000
ACCESS_LIFETIME = timedelta(hours=2)
REFRESH_LIFETIME = timedelta(days=60)
_B32 = "234567abcdefghijklmnopqrstuvwxyz"  # base32-sortable, the TID alphabet
REPLY_NOTIF_DEPTH = 5  # the appview's: ancestors at heights 1..4 hear of a reply


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class User:
    did: str
    handle: str
    display_name: str
    description: str
    created_at: datetime
    password: str | None = None


@dataclass
class Post:
    uri: str
    cid: str
    did: str
    text: str
    created_at: datetime
    indexed_at: datetime
    parent: str | None = None
    root: str | None = None
    mentions: tuple[str, ...] = ()
    quote: str | None = None
    deleted: bool = False
    seq: int = 0

    @property
    def sort_at(self) -> datetime:
        # The appview sorts by the older of index and creation time (a backdated post).
        return min(self.indexed_at, self.created_at)


@dataclass
class Notification:
    uri: str
    recipient: str
    reason: str
    reason_subject: str | None
    sort_at: datetime
    seq: int


@dataclass
class Session:
    did: str
    access: str
    refresh: str
    access_exp: datetime
    refresh_exp: datetime
    logins: list[datetime] = field(default_factory=list)


# The endpoints that take the access JWT. ExpiredToken is the PDS's answer to an access token
# past its expiry: createSession takes a password, and a refused refreshSession (its refresh
# JWT expired or revoked) is another failure, met by logging in again, which is limited.
AUTHED = frozenset(
    {
        "getProfiles",
        "listNotifications",
        "getAuthorFeed",
        "searchPosts",
        "getPosts",
        "getPostThread",
    }
)


class BlueskySandbox(SandboxServer):
    name = "bluesky-sandbox"
    fault_kinds: ClassVar[Mapping[str, Kind]] = kinds(
        {
            "rate_limit": Kind(frozenset({"seconds"}), {"seconds": 300.0}),
            "bad_item": Kind(frozenset({"how"}), {"how": "missing"}),
            "expired_token": Kind(endpoints=AUTHED),
        }
    )

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], datetime] | None = None,
        requests_per_window: int = 3000,
        search_depth: int = SEARCH_DEPTH,
        latency: float = 0.0,
    ) -> None:
        super().__init__(host, port, latency=latency)
        self.clock = clock or _now
        self.requests_per_window = requests_per_window
        self.search_depth = search_depth  # the deepest cursor (offset) search accepts
        self.users: dict[str, User] = {}
        self.posts: dict[str, Post] = {}
        self.notifications: list[Notification] = []
        self.blocked: set[str] = set()  # post uris the viewer may not see (a block)
        self.sessions: dict[str, Session] = {}  # by access JWT
        self._refresh: dict[str, Session] = {}
        self.logins: dict[str, list[datetime]] = {}
        self._window: list[float] = []
        self._seq = 0
        self._tid = 0
        self._tid_lock = threading.Lock()
        x = "/xrpc/"
        self.route(
            "POST", x + "com.atproto.server.createSession", self._create_session, "createSession"
        )
        self.route(
            "POST", x + "com.atproto.server.refreshSession", self._refresh_session, "refreshSession"
        )
        self.route(
            "GET", x + "app.bsky.actor.getProfiles", self._authed(self._get_profiles), "getProfiles"
        )
        self.route(
            "GET",
            x + "app.bsky.notification.listNotifications",
            self._authed(self._list_notifications),
            "listNotifications",
        )
        self.route(
            "GET",
            x + "app.bsky.feed.getAuthorFeed",
            self._authed(self._author_feed),
            "getAuthorFeed",
        )
        self.route(
            "GET",
            x + "app.bsky.feed.searchPosts",
            self._authed(self._search_posts),
            "searchPosts",
        )
        self.route("GET", x + "app.bsky.feed.getPosts", self._authed(self._get_posts), "getPosts")
        self.route(
            "GET",
            x + "app.bsky.feed.getPostThread",
            self._authed(self._post_thread),
            "getPostThread",
        )
        self.route("GET", x + "app.bsky.feed.getQuotes", self._authed(self._quotes), "getQuotes")

    # -- the world ---------------------------------------------------------------------------
    def add_user(self, handle: str, *, password: str | None = None, display_name: str = "") -> User:
        with self.lock:
            digest = hashlib.sha256(f"{handle}{len(self.users)}".encode()).digest()
            did = "did:plc:" + "".join(_B32[b % 32] for b in digest[:24])
            user = User(did, handle.lower(), display_name, "", self.clock(), password)
            self.users[did] = user
            return user

    def user_by_handle(self, handle: str) -> User | None:
        return next((u for u in self.users.values() if u.handle == handle.lower()), None)

    def _next_tid(self) -> str:
        with self._tid_lock:
            micros = max(int(self.clock().timestamp() * 1_000_000), self._tid + 1)
            self._tid = micros
        value = (micros << 10) | 1  # a TID: microseconds and a clock id, 13 base32 characters
        return "".join(_B32[(value >> (5 * i)) & 31] for i in reversed(range(13)))

    def add_post(
        self,
        did: str,
        text: str,
        *,
        in_reply_to: str | None = None,
        mentions: tuple[str, ...] = (),
        quote: str | None = None,
        created_at: datetime | None = None,
    ) -> Post:
        """A post by ``did``; ``mentions`` are DIDs (a client writes them as facets)."""
        with self.lock:
            rkey = self._next_tid()
            uri = f"at://{did}/app.bsky.feed.post/{rkey}"
            cid = "bafyrei" + hashlib.sha256(uri.encode()).hexdigest()[:52]
            now = self.clock()
            parent = self.posts.get(in_reply_to) if in_reply_to else None
            root = (parent.root or parent.uri) if parent else None
            self._seq += 1
            post = Post(
                uri, cid, did, text, created_at or now, now, in_reply_to, root, mentions, quote
            )
            post.seq = self._seq
            self.posts[uri] = post
            self._notify(post)
            return post

    def _notify(self, post: Post) -> None:
        told: set[str] = set()

        def tell(recipient: str | None, reason: str, subject: str | None) -> None:
            if recipient is None or recipient == post.did or recipient in told:
                return
            told.add(recipient)
            self._seq += 1
            self.notifications.append(
                Notification(post.uri, recipient, reason, subject, post.sort_at, self._seq)
            )

        # One notification per recipient, in the appview's order: mentions, the quoted post's
        # author, then the authors of the ancestors (a reply that mentions them is a mention).
        for did in post.mentions:
            tell(did, "mention", None)
        if post.quote is not None:
            quoted = self.posts.get(post.quote)
            tell(quoted.did if quoted else None, "quote", post.quote)
        ancestor, height = self.posts.get(post.parent or ""), 1
        while ancestor is not None and height < REPLY_NOTIF_DEPTH:
            tell(ancestor.did, "reply", ancestor.uri)
            ancestor, height = self.posts.get(ancestor.parent or ""), height + 1

    def delete_post(self, uri: str) -> None:
        with self.lock:
            self.posts[uri].deleted = True
            # The appview drops the notifications of a deleted post.
            self.notifications = [n for n in self.notifications if n.uri != uri]

    def expire_sessions(self) -> None:
        """Every access token issued so far is past its expiry (as after a clock skew)."""
        with self.lock:
            for session in self.sessions.values():
                session.access_exp = self.clock() - timedelta(seconds=1)

    # -- sessions ----------------------------------------------------------------------------
    def _jwt(self, did: str, scope: str, exp: datetime) -> str:
        header = _b64(json.dumps({"typ": "at+jwt", "alg": "ES256K"}).encode())
        claims = {
            "scope": scope,
            "sub": did,
            "iat": int(self.clock().timestamp()),
            "exp": int(exp.timestamp()),
        }
        if scope == "com.atproto.refresh":
            claims["jti"] = secrets.token_urlsafe(16)
        payload = _b64(json.dumps(claims).encode())
        return f"{header}.{payload}.{_b64(secrets.token_bytes(32))}"

    def _issue(self, user: User) -> JsonObject:
        now = self.clock()
        access_exp, refresh_exp = now + ACCESS_LIFETIME, now + REFRESH_LIFETIME
        session = Session(
            user.did,
            self._jwt(user.did, "com.atproto.appPass", access_exp),
            self._jwt(user.did, "com.atproto.refresh", refresh_exp),
            access_exp,
            refresh_exp,
        )
        self.sessions[session.access] = session
        self._refresh[session.refresh] = session
        # The didDoc names the PDS; this stand-in is its own PDS (an http loopback URL).
        did_doc = {
            "@context": [
                "https://www.w3.org/ns/did/v1",
                "https://w3id.org/security/multikey/v1",
                "https://w3id.org/security/suites/secp256k1-2019/v1",
            ],
            "id": user.did,
            "alsoKnownAs": [f"at://{user.handle}"],
            "verificationMethod": [
                {
                    "id": f"{user.did}#atproto",
                    "type": "Multikey",
                    "controller": user.did,
                    # A signing key's shape; the stand-in signs nothing with it.
                    "publicKeyMultibase": "zQ3sh"
                    + hashlib.sha256(user.did.encode()).hexdigest()[:44],
                }
            ],
            "service": [
                {
                    "id": "#atproto_pds",
                    "type": "AtprotoPersonalDataServer",
                    "serviceEndpoint": self.url,
                }
            ],
        }
        return {
            "accessJwt": session.access,
            "refreshJwt": session.refresh,
            "handle": user.handle,
            "did": user.did,
            "didDoc": did_doc,
            "active": True,
        }

    def _create_session(self, req: Request) -> Response:
        body = req.json() or {}
        ident, password = str(body.get("identifier") or ""), body.get("password")
        with self.lock:
            user = self.users.get(ident) or self.user_by_handle(ident)
            key = user.did if user else ident
            now = self.clock()
            recent = [t for t in self.logins.get(key, []) if t > now - timedelta(days=1)]
            self.logins[key] = recent
            in_window = [t for t in recent if t > now - timedelta(minutes=5)]
            if len(in_window) >= 30 or len(recent) >= 300:
                first = (in_window if len(in_window) >= 30 else recent)[0]
                reset = first + (
                    timedelta(minutes=5) if len(in_window) >= 30 else timedelta(days=1)
                )
                headers = {
                    **_JSON,
                    "RateLimit-Limit": "30" if len(in_window) >= 30 else "300",
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": str(math.ceil(reset.timestamp())),
                    "RateLimit-Policy": "30;w=300" if len(in_window) >= 30 else "300;w=86400",
                }
                return Response.json(
                    {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}, 429, headers
                )
            recent.append(now)
            if user is None or user.password is None or password != user.password:
                return _error(401, "AuthenticationRequired", "Invalid identifier or password")
            return self._answer(self._issue(user))

    def _refresh_session(self, req: Request) -> Response:
        token = _bearer(req)
        with self.lock:
            session = self._refresh.pop(token, None) if token else None
            if session is None:
                return _error(400, "InvalidToken", "Token could not be verified")
            if session.refresh_exp <= self.clock():
                return _error(400, "ExpiredToken", "Token has expired")
            # The old access token stays good until it expires (a JWT); the refresh token is
            # rotated: used once, refused after (the PDS's grace period is not modelled).
            user = self.users[session.did]
            answer = self._issue(user)
            answer.pop("active")
            return self._answer(answer)

    def _authed(self, fn: Callable[[Request, str], JsonObject | Response]) -> Handler:
        def handler(req: Request) -> Response:
            token = _bearer(req)
            with self.lock:
                limited = self._count()
                if limited is not None:
                    return limited
                session = self.sessions.get(token or "")
                if session is None:
                    if token is None:
                        return _error(401, "AuthMissing", "Authentication Required")
                    return _error(401, "InvalidToken", "Bad token scope")
                if session.access_exp <= self.clock():
                    return _error(400, "ExpiredToken", "Token has expired")
                answer = fn(req, session.did)
            return answer if isinstance(answer, Response) else self._answer(answer)

        return handler

    # -- rate limits -------------------------------------------------------------------------
    def _count(self) -> Response | None:
        now = self.clock().timestamp()
        self._window = [t for t in self._window if t > now - _WINDOW]
        if len(self._window) >= self.requests_per_window:
            return Response.json(
                {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
                429,
                self._rate_headers(),
            )
        self._window.append(now)
        return None

    def _rate_headers(self) -> dict[str, str]:
        start = self._window[0] if self._window else self.clock().timestamp()
        return {
            **_JSON,
            "RateLimit-Limit": str(self.requests_per_window),
            "RateLimit-Remaining": str(max(self.requests_per_window - len(self._window), 0)),
            "RateLimit-Reset": str(math.ceil(start + _WINDOW)),
            "RateLimit-Policy": f"{self.requests_per_window};w={int(_WINDOW)}",
        }

    def _answer(self, body: JsonObject) -> Response:
        return Response.json(body, 200, self._rate_headers())

    # -- views -------------------------------------------------------------------------------
    def _profile(self, user: User, *, basic: bool = False, detailed: bool = False) -> JsonObject:
        # Shape of the recorded profile views (get_follows.json, the thread's author).
        view: JsonObject = {
            "did": user.did,
            "handle": user.handle,
            "displayName": user.display_name,
            "associated": {"chat": {"allowIncoming": "all"}},
            "viewer": {"muted": False, "blockedBy": False},
            "labels": [],
            "createdAt": _iso(user.created_at),
        }
        if not basic:
            view["description"] = user.description
            view["indexedAt"] = _iso(user.created_at)
        if detailed:
            counts = sum(1 for p in self.posts.values() if p.did == user.did and not p.deleted)
            view.update({"followersCount": 0, "followsCount": 0, "postsCount": counts})
        return view

    def _record(self, post: Post) -> JsonObject:
        record: JsonObject = {
            "$type": "app.bsky.feed.post",
            "createdAt": _iso(post.created_at),
            "text": post.text,
        }
        facets = []
        for did in post.mentions:
            handle = self.users[did].handle
            at = post.text.encode().find(f"@{handle.split('.')[0]}".encode())
            if at >= 0:
                end = at + len(f"@{handle.split('.')[0]}".encode())
                facets.append(
                    {
                        "$type": "app.bsky.richtext.facet",
                        "features": [{"$type": "app.bsky.richtext.facet#mention", "did": did}],
                        "index": {"byteStart": at, "byteEnd": end},
                    }
                )
        if facets:
            record["facets"] = facets
        record["langs"] = ["en"]
        if post.parent is not None:
            parent, root = self.posts.get(post.parent), self.posts.get(post.root or post.parent)
            record["reply"] = {
                "parent": {"cid": parent.cid if parent else "", "uri": post.parent},
                "root": {"cid": root.cid if root else "", "uri": post.root or post.parent},
            }
        if post.quote is not None:
            quoted = self.posts.get(post.quote)
            record["embed"] = {
                "$type": "app.bsky.embed.record",
                "record": {"cid": quoted.cid if quoted else "", "uri": post.quote},
            }
        return record

    def _counts(self, post: Post) -> JsonObject:
        live = [p for p in self.posts.values() if not p.deleted]
        return {
            "replyCount": sum(1 for p in live if p.parent == post.uri),
            "repostCount": 0,
            "likeCount": 0,
            "quoteCount": sum(1 for p in live if p.quote == post.uri),
        }

    def _embed_view(self, uri: str) -> JsonObject:
        # Shape of the recorded embed (thread_view_post_with_embed_media.json, its record).
        quoted = self.posts.get(uri)
        if quoted is None or quoted.deleted:
            inner: JsonObject = {
                "$type": "app.bsky.embed.record#viewNotFound", "uri": uri, "notFound": True,
            }  # fmt: skip
        elif uri in self.blocked:
            inner = {
                "$type": "app.bsky.embed.record#viewBlocked",
                "uri": uri,
                "blocked": True,
                "author": {"did": quoted.did, "viewer": {"blockedBy": True}},
            }
        else:
            inner = {
                "$type": "app.bsky.embed.record#viewRecord",
                "uri": quoted.uri,
                "cid": quoted.cid,
                "author": self._profile(self.users[quoted.did], basic=True),
                "value": self._record(quoted),
                "labels": [],
                **self._counts(quoted),
                "indexedAt": _iso(quoted.indexed_at),
                "embeds": [],
            }
        return {"$type": "app.bsky.embed.record#view", "record": inner}

    def _post_view(self, post: Post) -> JsonObject:
        # Shape of the recorded post view (thread_view_post_with_embed_media.json).
        view: JsonObject = {
            "uri": post.uri,
            "cid": post.cid,
            "author": self._profile(self.users[post.did], basic=True),
            "record": self._record(post),
        }
        if post.quote is not None:
            view["embed"] = self._embed_view(post.quote)
        return {
            **view,
            "bookmarkCount": 0,
            **self._counts(post),
            "indexedAt": _iso(post.indexed_at),
            "viewer": {"bookmarked": False, "threadMuted": False, "embeddingDisabled": False},
            "labels": [],
        }

    def _ref_view(self, uri: str) -> JsonObject:
        post = self.posts.get(uri)
        if post is None or post.deleted:
            return {"$type": "app.bsky.feed.defs#notFoundPost", "uri": uri, "notFound": True}
        if uri in self.blocked:
            return {
                "$type": "app.bsky.feed.defs#blockedPost",
                "uri": uri,
                "blocked": True,
                "author": {"did": post.did, "viewer": {"blockedBy": True}},
            }
        return {"$type": "app.bsky.feed.defs#postView", **self._post_view(post)}

    # -- endpoints ---------------------------------------------------------------------------
    def _get_profiles(self, req: Request, viewer: str) -> JsonObject | Response:
        actors = req.multi.get("actors", [])
        if not actors or len(actors) > 25:
            return _error(
                400, "InvalidRequest", "Error: actors must not have more than 25 elements"
            )
        found = []
        for actor in actors:
            if not (
                actor.startswith("did:")
                or re.fullmatch(r"([a-z0-9-]+\.)+[a-z][a-z0-9-]*", actor.lower())
            ):
                return _error(
                    400, "InvalidRequest", "Error: actors/0 must be a valid did or a handle"
                )
            user = self.users.get(actor) or self.user_by_handle(actor)
            if user is not None:
                found.append(self._profile(user, detailed=True))
        return {"profiles": found}

    def _limit(self, req: Request, default: int = 50) -> int | Response:
        raw = req.query.get("limit", str(default))
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            return _error(400, "InvalidRequest", "Error: limit can not be greater than 100")
        return int(raw)

    def _list_notifications(self, req: Request, viewer: str) -> JsonObject | Response:
        if "seenAt" in req.query:  # found by testing the real API: the parameter is refused
            return _error(
                400, "InvalidRequest", 'Error: Params must have the property "seenAt" removed'
            )
        limit = self._limit(req)
        if isinstance(limit, Response):
            return limit
        reasons = set(req.multi.get("reasons", []))
        mine = [
            n
            for n in self.notifications
            if n.recipient == viewer and (not reasons or n.reason in reasons)
        ]
        mine.sort(key=lambda n: (n.sort_at, n.seq), reverse=True)
        page, nxt = _paginate(mine, req.query.get("cursor"), limit, lambda n: (n.sort_at, n.seq))
        if isinstance(page, Response):
            return page
        items = []
        for n in page:
            post = self.posts[n.uri]
            item: JsonObject = {
                "uri": post.uri,
                "cid": post.cid,
                "author": self._profile(self.users[post.did]),
                "reason": n.reason,
                "record": self._record(post),
                "isRead": False,
                "indexedAt": _iso(n.sort_at),
                "labels": [],
            }
            if n.reason_subject:
                item["reasonSubject"] = n.reason_subject
            items.append(item)
        body: JsonObject = {"notifications": items, "priority": False}
        if nxt:
            body["cursor"] = nxt
        return body

    def _author_feed(self, req: Request, viewer: str) -> JsonObject | Response:
        actor = req.query.get("actor", "")
        user = self.users.get(actor) or self.user_by_handle(actor)
        if user is None:
            return _error(400, "InvalidRequest", "Profile not found")
        if req.query.get("filter", "posts_with_replies") not in (
            "posts_with_replies", "posts_no_replies", "posts_with_media",
            "posts_and_author_threads", "posts_with_video",
        ):  # fmt: skip
            return _error(400, "InvalidRequest", "Error: filter must be one of the known values")
        limit = self._limit(req)
        if isinstance(limit, Response):
            return limit
        posts = [p for p in self.posts.values() if p.did == user.did and not p.deleted]
        if req.query.get("filter") == "posts_no_replies":
            posts = [p for p in posts if p.parent is None]
        posts.sort(key=lambda p: (p.sort_at, p.seq), reverse=True)
        page, nxt = _paginate(posts, req.query.get("cursor"), limit, lambda p: (p.sort_at, p.seq))
        if isinstance(page, Response):
            return page
        feed = []
        for post in page:
            item: JsonObject = {"post": self._post_view(post)}
            if post.parent is not None:
                item["reply"] = {
                    "root": self._ref_view(post.root or post.parent),
                    "parent": self._ref_view(post.parent),
                }
            feed.append(item)
        body: JsonObject = {"feed": feed}
        if nxt:
            body["cursor"] = nxt
        return body

    def _search_posts(self, req: Request, viewer: str) -> JsonObject | Response:
        # The lexicon (app.bsky.feed.searchPosts) requires q; the query syntax is the
        # service's: "*" matches every post (Palomar's own query when only filters are
        # given) and other words must all be in the text.
        q = req.query.get("q", "").strip()
        if not q:
            return _error(400, "InvalidRequest", 'Error: Params must have the property "q"')
        limit = self._limit(req, 25)
        if isinstance(limit, Response):
            return limit
        raw = req.query.get("cursor", "").strip()
        if raw and not raw.isdigit():
            return _error(400, "InvalidRequest", f"invalid value for 'cursor': {raw}")
        offset = int(raw or 0)
        if offset > self.search_depth:
            return _error(
                400, "InvalidRequest", "invalid value for 'cursor' (can't paginate so deep)"
            )
        if offset + limit > self.search_depth:
            # The search backend refuses a page ending past its depth too (checkParams); the
            # status the AppView gives that is not documented: 400 here.
            return _error(400, "InvalidRequest", "disallowed size/offset parameters")
        bounds: list[datetime | None] = []
        for name in ("since", "until"):
            value = req.query.get(name)
            moment = _moment(value) if value else None
            if value and moment is None:
                return _error(400, "InvalidRequest", f"Error: {name} must be a valid datetime")
            bounds.append(moment)
        since, until = bounds
        who: list[str | None] = []
        for name in ("mentions", "author"):
            actor = req.query.get(name)
            user = (self.users.get(actor) or self.user_by_handle(actor)) if actor else None
            if actor and user is None:
                return {"posts": [], "hitsTotal": 0}  # an unknown actor matches nothing
            who.append(user.did if user else None)
        mentions, author = who
        words = [w.lower() for w in q.split() if w != "*"]
        hits = [
            p
            for p in self.posts.values()
            if not p.deleted
            and p.uri not in self.blocked
            and (mentions is None or mentions in p.mentions)
            and (author is None or p.did == author)
            and (since is None or p.sort_at >= since)
            and (until is None or p.sort_at < until)
            and all(w in p.text.lower() for w in words)
        ]
        hits.sort(key=lambda p: (p.sort_at, p.seq), reverse=True)  # "latest" (and "top" here)
        page = hits[offset : offset + limit]
        body: JsonObject = {"posts": [self._post_view(p) for p in page], "hitsTotal": len(hits)}
        if offset + limit < len(hits):
            body["cursor"] = str(offset + limit)
        return body

    def _get_posts(self, req: Request, viewer: str) -> JsonObject | Response:
        uris = req.multi.get("uris", [])
        if len(uris) > 25:
            return _error(400, "InvalidRequest", "Error: uris must not have more than 25 elements")
        found = [self.posts[u] for u in uris if u in self.posts and not self.posts[u].deleted]
        return {"posts": [self._post_view(p) for p in found if p.uri not in self.blocked]}

    def _post_thread(self, req: Request, viewer: str) -> JsonObject | Response:
        uri = req.query.get("uri", "")
        levels: list[int] = []
        for name, default in (("depth", 6), ("parentHeight", 80)):  # the lexicon's defaults
            raw = req.query.get(name, str(default))
            if not raw.isdigit() or int(raw) > 1000:
                return _error(400, "InvalidRequest", f"Error: {name} must be 0..1000")
            levels.append(int(raw))
        depth, height = levels
        post = self.posts.get(uri)
        if post is None or post.deleted:
            return _error(400, "NotFound", f"Post not found: {uri}")
        view = self._ref_view(uri)
        if view["$type"] == "app.bsky.feed.defs#blockedPost":
            return {"thread": view}
        thread = self._thread_view(post, depth)
        parent = self._parent_view(post, height)
        if parent is not None:
            thread["parent"] = parent
        return {"thread": thread}

    def _thread_view(self, post: Post, depth: int) -> JsonObject:
        """A post and its replies ``depth`` levels down (the appview's ``threadReplies``)."""
        thread: JsonObject = {
            "$type": "app.bsky.feed.defs#threadViewPost",
            "post": self._post_view(post),
        }
        if depth < 1:
            return thread
        children = [p for p in self.posts.values() if p.parent == post.uri and not p.deleted]
        children.sort(key=lambda p: (p.sort_at, p.seq), reverse=True)
        replies: list[JsonObject] = []
        for child in children:
            if child.uri in self.blocked:
                replies.append(self._ref_view(child.uri))  # a blockedPost
            else:
                replies.append(self._thread_view(child, depth - 1))
        thread["replies"] = replies
        return thread

    def _parent_view(self, post: Post, height: int) -> JsonObject | None:
        if height < 1 or post.parent is None:
            return None
        view = self._ref_view(post.parent)
        if view["$type"] != "app.bsky.feed.defs#postView":
            return view  # notFoundPost or blockedPost
        parent = self.posts[post.parent]
        thread: JsonObject = {
            "$type": "app.bsky.feed.defs#threadViewPost",
            "post": self._post_view(parent),
        }
        above = self._parent_view(parent, height - 1)
        if above is not None:
            thread["parent"] = above
        return thread

    def _quotes(self, req: Request, viewer: str) -> JsonObject | Response:
        uri = req.query.get("uri", "")
        if not uri:
            return _error(400, "InvalidRequest", 'Error: Params must have the property "uri"')
        limit = self._limit(req)
        if isinstance(limit, Response):
            return limit
        quotes = [
            p
            for p in self.posts.values()
            if p.quote == uri and not p.deleted and p.uri not in self.blocked
        ]
        quotes.sort(key=lambda p: (p.sort_at, p.seq), reverse=True)
        page, nxt = _paginate(quotes, req.query.get("cursor"), limit, lambda p: (p.sort_at, p.seq))
        if isinstance(page, Response):
            return page
        body: JsonObject = {"uri": uri, "posts": [self._post_view(p) for p in page]}
        if "cid" in req.query:
            body["cid"] = req.query["cid"]
        if nxt:
            body["cursor"] = nxt
        return body

    # -- faults ------------------------------------------------------------------------------
    def fault_response(
        self, rule: FaultRule, req: Request, handler: Handler, answered: Response | None
    ) -> Response:
        if rule.kind == "rate_limit":
            headers = {
                **_JSON,
                "RateLimit-Limit": str(self.requests_per_window),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(math.ceil(self.clock().timestamp() + (rule.seconds or 0.0))),
                "RateLimit-Policy": f"{self.requests_per_window};w={int(_WINDOW)}",
            }
            return Response.json(
                {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}, 429, headers
            )
        if rule.kind == "expired_token":
            return _error(400, "ExpiredToken", "Token has expired")
        if rule.kind == "bad_item":
            done = answered or handler(req)
            body = json.loads(done.body)
            key = next((k for k in ("notifications", "feed", "posts") if k in body), None)
            if key and body[key]:
                first = body[key][0]
                target = first.get("post", first)
                target.pop("author", None) if rule.how == "missing" else target.update(
                    author="nobody"
                )
            return Response(done.status, json.dumps(body).encode(), done.headers)
        return super().fault_response(rule, req, handler, answered)

    def status_response(self, status: int, req: Request) -> Response:
        name = {500: "InternalServerError", 502: "UpstreamFailure", 503: "NotEnoughResources"}
        return _error(status, name.get(status, "InternalServerError"), "Internal Server Error")

    def malformed_response(self, req: Request) -> Response:
        return Response(200, b'{"notifications":[{"uri":"at://did:plc:', dict(_JSON))


def _paginate(
    items: list[Any], cursor: str | None, limit: int, key: Callable[[Any], tuple[datetime, int]]
) -> tuple[list[Any] | Response, str | None]:
    """A page after the opaque ``cursor`` (``<sort time µs>::<tie>``); the cursor of the next
    page only when more remain."""
    if cursor:
        micros, sep, tie = cursor.partition("::")
        if not sep or not micros.isdigit() or not tie.isdigit():
            return _error(400, "InvalidRequest", "Malformed cursor"), None
        after = (int(micros), int(tie))
        items = [i for i in items if (_ms(key(i)[0]), key(i)[1]) < after]
    page = items[:limit]
    nxt = None
    if len(items) > limit:
        last_at, last_tie = key(page[-1])
        nxt = f"{_ms(last_at)}::{last_tie}"
    return page, nxt


def _moment(value: str) -> datetime | None:
    """A searchPosts bound: a datetime with a zone, or an ISO date (midnight UTC)."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _bearer(req: Request) -> str | None:
    value = req.header("authorization") or ""
    return value[7:] if value.startswith("Bearer ") else None


def _error(status: int, name: str, message: str) -> Response:
    return Response.json({"error": name, "message": message}, status, dict(_JSON))
