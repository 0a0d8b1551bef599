"""A stateful stand-in for the X API v2 read endpoints syncd uses, served on loopback.

The real tweepy ``Client`` talks to it once its session carries a URL-rewriting adapter. It
answers like X: the app's bearer token, or a user's OAuth 2.0 token or OAuth 1.0a signature
(:mod:`.x_auth`, which also serves ``POST /2/oauth2/token``; ``GET /2/users/me`` answers the
user), ``x-rate-limit-*`` headers per endpoint and token, partial errors
inside a 200, X's 400 bodies, newest-first timelines with opaque pagination tokens and the
mentions/timeline horizons beyond which older posts are unreachable. Recent and full-archive
search and counts (:mod:`.x_search`) reach past those horizons; full archive needs access
(``full_archive``, else X's 403) and allows one request per second besides its 15-minute window.

Rate limits are configured per group (``RATE_LIMIT_DEFAULTS`` keys); every endpoint of a group
counts separately, as on X. ``limits_lifted`` turns every limit that answers 429 off (windows,
full archive's per-second limit, the project cap), for benchmarks measuring syncd, not X.
Faults (:mod:`.faults`) add ``rate_limit`` to the common kinds; the endpoint names are
:data:`ENDPOINTS`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import ClassVar, Literal

from sandbox.faults import FaultRule, Kind, kinds, reason
from sandbox.server import Handler, Request, Response, SandboxServer
from sandbox.x import cap as xc
from sandbox.x import params as xp
from sandbox.x import render as xr
from sandbox.x import search as xs
from sandbox.x.auth import Principal, XAuth
from sandbox.x.store import (
    ID_PATTERN,
    USERNAME_PATTERN,
    JsonObject,
    StoredPost,
    StoredUser,
    XStore,
)
from sandbox.x.usage import UNBILLED_ENDPOINTS, Usage

RATE_LIMIT_DEFAULTS: dict[str, int] = {
    "mentions": 450,
    "user_tweets": 1500,
    "user_lookup": 300,
    "users_me": 75,
    "tweet_lookup": 300,
    "search_recent": 450,
    "search_all": 300,
    "counts": 300,  # counts_recent and counts_all, each in its own window
    "usage": 50,
}
RATE_LIMIT_WINDOW = timedelta(minutes=15)
# Requests per window every endpoint allows once limits are lifted: no run reaches it.
LIFTED_LIMIT = 10**9
# Route pattern -> the endpoint name faults and request hooks match on.
ENDPOINTS: dict[str, str] = {
    "/2/users/by/username/{username}": "user_by_username",
    "/2/users/by": "users_by",
    "/2/users/{id}/mentions": "mentions",
    "/2/users/{id}/tweets": "user_tweets",
    "/2/users/me": "users_me",
    "/2/users/{id}": "user",
    "/2/users": "users",
    "/2/tweets/{id}": "tweet",
    "/2/tweets": "tweets",
    "/2/tweets/search/recent": "search_recent",
    "/2/tweets/search/all": "search_all",
    "/2/tweets/counts/recent": "counts_recent",
    "/2/tweets/counts/all": "counts_all",
    "/2/oauth2/token": "oauth2_token",
    "/2/usage/tweets": "usage_tweets",
}
FULL_ARCHIVE = frozenset({"search_all", "counts_all"})
# An account's own timelines: read with its own user token, what they return is owned reads.
OWNED_ENDPOINTS = frozenset({"mentions", "user_tweets"})
USER_CONTEXT_ONLY = frozenset({"users_me"})  # an app token gets X's 403
OAUTH2_TOKEN = "/2/oauth2/token"
_JSON = {"Content-Type": "application/json; charset=utf-8"}
Timeline = Literal["mentions", "tweets"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class XSandbox(SandboxServer):
    name = "x-sandbox"
    fault_kinds: ClassVar[Mapping[str, Kind]] = kinds(
        {
            "rate_limit": Kind(frozenset({"reset", "seconds"}), {"reset": True, "seconds": 900.0}),
            "bad_item": Kind(
                frozenset({"fields", "how"}), {"fields": ["created_at"], "how": "bad_value"}
            ),
            "repeat_token": Kind(),
        }
    )

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        bearer_token: str = "sandbox-x-bearer",
        includes_key: str = "tweets",
        mentions_horizon: int = 800,
        timeline_horizon: int = 3200,
        rate_limits: dict[str, int] | None = None,
        clock: Callable[[], datetime] | None = None,
        full_archive: bool = True,
        full_archive_per_second: int | None = 1,
        search_lag: float = 10.0,
        access_token_lifetime: float = 7200.0,
        project_cap: int = 2_000_000,
        cap_reset_day: int = 1,
        cap_status: int = 429,
        limits_lifted: bool = False,
        latency: float = 0.0,
    ) -> None:
        unknown = set(rate_limits or {}) - set(RATE_LIMIT_DEFAULTS)
        if unknown:
            raise ValueError(
                f"unknown rate-limit keys {sorted(unknown)}; use {RATE_LIMIT_DEFAULTS}"
            )
        self.dialect = xr.Dialect.for_includes_key(includes_key)  # fail before binding a port
        super().__init__(host, port, latency=latency)
        self.mentions_horizon = mentions_horizon
        self.timeline_horizon = timeline_horizon
        self.rate_limits = {**RATE_LIMIT_DEFAULTS, **(rate_limits or {})}
        self.clock = clock or _utcnow
        self.store = XStore(self.clock)
        # Who may call: the app token, and the user credentials tests register here.
        self.auth = XAuth(bearer_token, self.clock, access_token_lifetime=access_token_lifetime)
        # The caller of the request this thread serves, for the handlers that answer per user.
        self._caller = threading.local()
        self.usage = Usage()  # posts and users handed out, raw and as X bills them
        self.full_archive = full_archive  # False: search_all and counts_all answer 403
        self.full_archive_per_second = full_archive_per_second  # None: no per-second limit
        self.search_lag = timedelta(seconds=search_lag)  # how old end_time must be
        # Posts billed per cap period (pay-per-use: 2M a month) before billed endpoints answer
        # usage-capped, with this status (429; X also sends 403), until the cap_reset_day.
        self.project_cap = project_cap
        self.cap_reset_day = cap_reset_day
        self.cap_status = cap_status
        # A benchmark measuring syncd, not X: no 15-minute window, per-second limit or cap
        # answers 429, whatever the other arguments say (faults still do, when injected).
        self.limits_lifted = limits_lifted
        self.refused = 0  # requests a rate limit or the cap answered (injected faults aside)
        # (token, endpoint) -> [window end (epoch s), requests used in the window]
        self._windows: dict[tuple[str, str], tuple[int, int]] = {}
        self._seconds = xs.PerSecond()
        self._groups: dict[str, str] = {}  # endpoint name -> rate-limit group
        q = self._query
        for pattern, group, fn in (
            ("/2/users/by/username/{username}", "user_lookup", self._get_user_by_username),
            ("/2/users/by", "user_lookup", self._get_users_by_usernames),
            ("/2/users/{id}/mentions", "mentions", self._get_mentions),
            ("/2/users/{id}/tweets", "user_tweets", self._get_user_tweets),
            ("/2/users/me", "users_me", self._get_me),
            ("/2/users/{id}", "user_lookup", self._get_user),
            ("/2/users", "user_lookup", self._get_users),
            ("/2/tweets/{id}", "tweet_lookup", self._get_tweet),
            ("/2/tweets", "tweet_lookup", self._get_tweets),
            ("/2/tweets/search/recent", "search_recent", partial(q, archive=False, counts=False)),
            ("/2/tweets/search/all", "search_all", partial(q, archive=True, counts=False)),
            ("/2/tweets/counts/recent", "counts", partial(q, archive=False, counts=True)),
            ("/2/tweets/counts/all", "counts", partial(q, archive=True, counts=True)),
            ("/2/usage/tweets", "usage", self._get_usage),
        ):
            self._groups[ENDPOINTS[pattern]] = group
            self.route("GET", pattern, self._endpoint(pattern, group, fn), ENDPOINTS[pattern])
        self.route("POST", OAUTH2_TOKEN, self.auth.token_endpoint, ENDPOINTS[OAUTH2_TOKEN])

    # -- lifecycle (narrowed return types for callers) -----------------------------------
    def start(self) -> XSandbox:
        super().start()
        return self

    def __enter__(self) -> XSandbox:
        return self.start()

    @property
    def bearer_token(self) -> str:
        return self.auth.bearer_token

    # -- state, for tests and demos ------------------------------------------------------
    def add_user(
        self,
        username: str,
        name: str | None = None,
        *,
        user_id: str | None = None,
        description: str | None = None,
        location: str | None = None,
        url: str | None = None,
    ) -> JsonObject:
        with self.lock:
            user = self.store.add_user(
                username,
                name,
                user_id=user_id,
                description=description,
                location=location,
                url=url,
            )
            return user.as_dict()

    def add_post(
        self,
        author_id: str,
        text: str,
        *,
        in_reply_to: str | None = None,
        created_at: datetime | None = None,
        post_id: str | None = None,
    ) -> JsonObject:
        with self.lock:
            post = self.store.add_post(
                author_id, text, in_reply_to=in_reply_to, created_at=created_at, post_id=post_id
            )
            return post.as_dict()

    def add_retweet(self, user_id: str, post_id: str) -> JsonObject:
        with self.lock:
            return self.store.add_retweet(user_id, post_id).as_dict()

    def delete_post(self, post_id: str) -> None:
        with self.lock:
            self.store.delete_post(post_id)

    def suspend_user(self, user_id: str) -> None:
        with self.lock:
            self.store.suspend_user(user_id)

    def approve(self, authorize_url: str, username: str) -> str:
        """The consent page approved by ``@username``: where X sends the browser back."""
        with self.lock:
            user = self.store.user_by_username(username)
        if user is None:
            raise KeyError(f"no user @{username}")
        return self.auth.approve(authorize_url, user.id)

    def user_by_username(self, username: str) -> JsonObject | None:
        with self.lock:
            user = self.store.user_by_username(username)
            return user.as_dict(self.store.post_count(user.id)) if user else None

    def post(self, post_id: str) -> JsonObject | None:
        with self.lock:
            post = self.store.post(post_id)
            return post.as_dict() if post else None

    def reset_rate_limits(self) -> None:
        with self.lock:
            self._windows.clear()
            self._seconds.clear()

    def matching_ids(
        self, query: str, *, start: datetime | None = None, end: datetime | None = None
    ) -> list[str]:
        """Every visible post ``query`` matches (``start <= created_at < end``), newest first:
        the answer a complete backfill must reach, without any API limit."""
        with self.lock:
            return xs.matching_ids(self.store, query, start, end)

    # -- faults ----------------------------------------------------------------------------
    def fault_response(
        self, rule: FaultRule, req: Request, handler: Handler, answered: Response | None
    ) -> Response:
        if rule.kind == "bad_item":
            return xr.break_first_item(answered or handler(req), rule)
        if rule.kind == "repeat_token":
            return xr.repeat_token(answered or handler(req), req)
        if rule.kind != "rate_limit":
            return super().fault_response(rule, req, handler, answered)
        headers = dict(_JSON)
        if rule.reset:
            group = self._groups.get(req.endpoint)  # the token endpoint has no window here
            reset = math.ceil(self.clock().timestamp() + (rule.seconds or 0.0))
            if group is not None:
                headers["x-rate-limit-limit"] = str(self.rate_limits[group])
            headers["x-rate-limit-remaining"] = "0"
            headers["x-rate-limit-reset"] = str(reset)
        return Response.json(xr.TOO_MANY_REQUESTS, 429, headers)

    def status_response(self, status: int, req: Request) -> Response:
        # X answers server errors with the same problem shape as its 4xx.
        title = reason(status)
        body = {"title": title, "detail": title, "type": "about:blank", "status": status}
        return Response.json(body, status, _JSON)

    def malformed_response(self, req: Request) -> Response:
        return Response(200, b'{"data":[{"id":"1399688059608702976","text":"cut sh', _JSON)

    # -- request plumbing ----------------------------------------------------------------
    def _endpoint(
        self, endpoint: str, group: str, fn: Callable[[Request], JsonObject]
    ) -> Callable[[Request], Response]:
        name = ENDPOINTS[endpoint]

        def handle(req: Request) -> Response:
            caller = self.auth.authenticate(req, self.url)
            if caller is None:
                return Response.json(xr.UNAUTHORIZED, 401, _JSON)
            if not caller.may_read():
                return Response.json(xr.FORBIDDEN, 403, _JSON)
            if name in USER_CONTEXT_ONLY and caller.user_id is None:
                return Response.json(xr.unsupported_authentication(self.dialect), 403, _JSON)
            if name in FULL_ARCHIVE and not self.full_archive:
                return Response.json(xr.client_forbidden(self.dialect), 403, _JSON)
            with self.lock:
                archive = name == "search_all" and not self.limits_lifted
                per_second = self.full_archive_per_second if archive else None
                key, now = (caller.rate_key, endpoint), self.clock()
                allowed, headers = self._seconds.take(key, now, per_second)
                if allowed:
                    allowed, headers = self._take(caller.rate_key, endpoint, group)
                if not allowed:
                    self.refused += 1
                    return Response.json(xr.TOO_MANY_REQUESTS, 429, {**_JSON, **headers})
                if name not in UNBILLED_ENDPOINTS and not self.limits_lifted and self._capped(now):
                    self.refused += 1
                    return Response.json(xc.USAGE_CAPPED, self.cap_status, {**_JSON, **headers})
                try:
                    self._caller.principal = caller
                    status, body = 200, fn(req)
                    owned = _owned(name, req, caller)
                    self.usage.record(name, body, now.astimezone(UTC).date(), owned=owned)
                except xp.InvalidRequest as exc:
                    status = 400
                    body = xr.invalid_request(self.dialect, exc.parameter, exc.raw, exc.message)
            return Response.json(body, status, {**_JSON, **headers})

        return handle

    def _capped(self, now: datetime) -> bool:
        return xc.used(self.usage, now, self.cap_reset_day) >= self.project_cap

    def _take(self, token: str, endpoint: str, group: str) -> tuple[bool, dict[str, str]]:
        """Count one request against its window; X opens a window at its first request."""
        now = self.clock().timestamp()
        reset, used = self._windows.get((token, endpoint), (0, 0))
        if now >= reset:
            reset, used = math.ceil(now + RATE_LIMIT_WINDOW.total_seconds()), 0
        limit = LIFTED_LIMIT if self.limits_lifted else self.rate_limits[group]
        allowed = used < limit
        used += 1 if allowed else 0
        self._windows[(token, endpoint)] = (reset, used)
        return allowed, {
            "x-rate-limit-limit": str(limit),
            "x-rate-limit-remaining": str(max(0, limit - used)),
            "x-rate-limit-reset": str(reset),
        }

    def _renderer(self, req: Request, *, for_users: bool) -> xr.Renderer:
        expansions = xr.USER_EXPANSIONS if for_users else xr.POST_EXPANSIONS
        return xr.Renderer(
            self.store,
            self.dialect,
            post_fields=xp.choices(req, "tweet.fields", xr.POST_FIELDS),
            user_fields=xp.choices(req, "user.fields", xr.USER_FIELDS),
            expansions=xp.choices(req, "expansions", expansions),
        )

    # -- users ---------------------------------------------------------------------------
    def _user_or_error(
        self, r: xr.Renderer, user: StoredUser | None, parameter: str, value: str
    ) -> JsonObject | None:
        if user is None:
            r.errors.append(xr.not_found(self.dialect, "user", parameter, value))
        elif user.suspended:
            r.errors.append(xr.suspended(self.dialect, parameter, value))
        else:
            return r.user(user)
        return None

    def _get_user_by_username(self, req: Request) -> JsonObject:
        username = xp.match(req.params["username"], "username", USERNAME_PATTERN)
        r = self._renderer(req, for_users=True)
        user = self.store.user_by_username(username)
        return r.body(self._user_or_error(r, user, "username", username))

    def _get_users_by_usernames(self, req: Request) -> JsonObject:
        r = self._renderer(req, for_users=True)
        data = []
        for name in xp.value_list(req, "usernames", USERNAME_PATTERN):
            found = self._user_or_error(r, self.store.user_by_username(name), "usernames", name)
            data += [found] if found else []
        return r.body(data)

    def _get_user(self, req: Request) -> JsonObject:
        uid = xp.match(req.params["id"], "id", ID_PATTERN)
        r = self._renderer(req, for_users=True)
        return r.body(self._user_or_error(r, self.store.users.get(uid), "id", uid))

    def _get_me(self, req: Request) -> JsonObject:
        caller: Principal = self._caller.principal
        r = self._renderer(req, for_users=True)
        uid = caller.user_id or ""
        return r.body(self._user_or_error(r, self.store.users.get(uid), "id", uid))

    def _get_users(self, req: Request) -> JsonObject:
        r = self._renderer(req, for_users=True)
        data = []
        for uid in xp.value_list(req, "ids", ID_PATTERN):
            found = self._user_or_error(r, self.store.users.get(uid), "ids", uid)
            data += [found] if found else []
        return r.body(data)

    # -- posts ---------------------------------------------------------------------------
    def _lookup_posts(self, r: xr.Renderer, ids: Iterable[str], parameter: str) -> list[StoredPost]:
        found = []
        for pid in ids:
            post = self.store.visible_post(pid)
            if post is None:
                r.errors.append(xr.not_found(self.dialect, "tweet", parameter, pid))
            else:
                found.append(post)
        r.expand(found)
        return found

    def _get_tweet(self, req: Request) -> JsonObject:
        pid = xp.match(req.params["id"], "id", ID_PATTERN)
        r = self._renderer(req, for_users=False)
        found = self._lookup_posts(r, [pid], "id")
        return r.body(r.post(found[0]) if found else None)

    def _get_tweets(self, req: Request) -> JsonObject:
        r = self._renderer(req, for_users=False)
        found = self._lookup_posts(r, xp.value_list(req, "ids", ID_PATTERN), "ids")
        return r.body([r.post(p) for p in found])

    # -- timelines -----------------------------------------------------------------------
    def _get_mentions(self, req: Request) -> JsonObject:
        return self._timeline(req, "mentions")

    def _get_user_tweets(self, req: Request) -> JsonObject:
        return self._timeline(req, "tweets")

    def _timeline(self, req: Request, kind: Timeline) -> JsonObject:
        uid = xp.match(req.params["id"], "id", ID_PATTERN)
        p = xp.timeline_params(req, kind, uid)
        r = self._renderer(req, for_users=False)

        user = self.store.users.get(uid)
        if user is None or user.suspended:
            self._user_or_error(r, user, "id", uid)
            return r.body()
        if kind == "mentions":
            index, horizon = self.store.mentions_index(uid), self.mentions_horizon
        else:
            index, horizon = self.store.authored_index(uid), self.timeline_horizon
        page, more = self.store.walk(
            index,
            horizon,
            limit=p.limit,
            newer_than=p.since,
            older_than=p.older_than,
            start=p.start,
            end=p.end,
            skip_replies=p.skip_replies,
            skip_retweets=p.skip_retweets,
        )
        r.expand(page)
        meta: JsonObject = {"result_count": len(page)}
        if page:
            meta["newest_id"] = str(page[0].id)
            meta["oldest_id"] = str(page[-1].id)
        if more:
            meta["next_token"] = xp.encode_token(kind, uid, page[-1].id)
        return r.body([r.post(p) for p in page], meta)

    # -- usage ---------------------------------------------------------------------------
    def _get_usage(self, req: Request) -> JsonObject:
        return xc.usage_body(
            req, self.usage, self.clock(), cap=self.project_cap, reset_day=self.cap_reset_day
        )

    # -- search and counts ---------------------------------------------------------------
    def _query(self, req: Request, *, archive: bool, counts: bool) -> JsonObject:
        now, lag = self.clock(), self.search_lag
        if counts:
            return xs.counts(req, self.store, self.dialect, now, lag, archive=archive)
        return xs.search(req, self._renderer(req, for_users=False), now, lag, archive=archive)


def _owned(endpoint: str, req: Request, caller: Principal) -> bool:
    """X bills a user's own timelines read with that user's own token as owned reads; the
    same timelines read for another user (which X serves) are ordinary reads."""
    return (
        endpoint in OWNED_ENDPOINTS
        and caller.user_id is not None
        and req.params.get("id") == caller.user_id
    )
