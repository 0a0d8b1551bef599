"""The Meta Graph API (Facebook Pages, Messenger, Instagram with Facebook Login) on loopback.

Shapes follow the bodies recorded from graph.facebook.com by python-facebook and restfb
(../shared/fixtures/meta/, copies of those the tests use in tests/fixtures/meta/); where no
recording exists, Meta's published references (named beside the code). Served under
``/{version}/`` (v21.0 to v26.0 are available; an expired version is answered as the oldest
available one, as Meta's versioning guide says, and ``Facebook-API-Version`` names the version
that answered):

- Facebook Page: ``/{page-id}`` (``me`` with a Page token), ``/{page-id}/feed`` (the Page's
  posts, visitor posts and posts tagging it; cursor paging as recorded), ``/{page-id}/posts``
  (the Page's own; time-based paging, ``until``/``since`` + ``__paging_token``, as recorded),
  ``/{page-id}/visitor_posts``, ``/{page-id}/tagged`` (no ``from`` on people's posts, as the
  reference says), ``/{post-id}``, ``/{post-id}/comments`` (``filter=toplevel|stream``,
  ``order=chronological|reverse_chronological``, ``summary``, ``since``/``until`` on
  ``created_time``, ``limit``, cursors), ``/{comment-id}`` and ``/{comment-id}/comments``.
  Field expansion with modifiers and nested fields, edges expanded with their own paging
  (``comments.filter(stream).summary(true).limit(0){from,message}``). Posts newest first;
  a comment moves its post's ``updated_time``, not its place.
- Messenger: ``/{page-id}/conversations?platform=messenger`` (most recently active first,
  ``user_id=<PSID>``; cursor paging only), ``/{conversation-id}``,
  ``/{conversation-id}/messages`` and the ``messages{...}`` expansion (newest first; only the
  20 newest messages carry details, older ones give ``id`` and ``created_time``, and a direct
  read of one answers the object-does-not-exist error), ``/{message-id}``.
- Instagram (via the Page token): ``/{ig-user-id}`` (with ``mentioned_media.media_id(…)`` and
  ``mentioned_comment.comment_id(…)``), ``/{ig-user-id}/media``, ``/{ig-user-id}/tags``,
  ``/{ig-media-id}``, ``/{ig-media-id}/comments`` (top-level only, newest first, at most 50
  a call), ``/{ig-comment-id}``, ``/{ig-comment-id}/replies``.
- Instagram Direct (``platform=instagram``) through the Page, and through an Instagram User
  token (Instagram Login: ``me`` is the account, which reads its media, comments and
  Direct): :mod:`sandbox.meta.direct`, shaped on Messenger's recordings (none of Direct exists).
- ``/me``, ``/me/accounts`` (user token: the Pages with their tokens), ``/debug_token``
  (``granular_scopes`` with ``target_ids`` when a grant names some Pages or accounts only:
  :meth:`MetaSandbox.grant`), ``/{page-id}/subscribed_apps`` (the apps subscribed to the
  Page's webhooks and their fields, to a Page token with pages_manage_metadata:
  :meth:`MetaSandbox.subscribe_app`).
- Tokens as ``access_token`` or ``Authorization: Bearer``/``OAuth``; ``appsecret_proof``
  checked when sent (required when ``require_appsecret_proof``). No token: code 104; unknown:
  190; expired: 190/463; invalidated: 190 with its subcode (460 password changed, 492 Page
  role lost, ...).
- Deleted objects: 100/33 "Object with ID … does not exist"; they leave every list.
- ``from`` as Meta gives it: left out on comments and posts of people without a role on the
  app while the Page's app has no Advanced Access (``Page.advanced_access``), on an item with
  ``withhold_from``, and on people's posts that tag the Page; their Messenger threads are then
  not listed at all.
- Usage: ``X-App-Usage`` on every answer to a valid token (a refused token's answer carries
  none here) and ``X-Business-Use-Case-Usage`` on every answer to a Page token (keyed by the
  Page or Instagram account id, type ``pages``, ``instagram`` or ``messenger``), percentages
  of configurable budgets over rolling windows, with ``estimated_time_to_regain_access`` in
  minutes. A spent budget answers 80001 (Page), 80002 (Instagram), 80006 (Messenger), or 4
  for a user token's app budget; refused calls count too ("Continuing to make calls will
  continue to increase your call count").
- Faults: :mod:`sandbox.meta.faults`. Webhook deliveries: :mod:`sandbox.meta.webhooks`.

Not served: writes (POST/DELETE), the Batch API and ``?ids=``, a separate host for
graph.instagram.com (one server answers both), reactions beyond an empty summary,
attachments, Page Public Content Access on other Pages, the Conversations API's 2 calls a
second, unversioned paths. Fields Graph has but the
stand-in does not model (``attachments``, ``full_picture``, ``shares``, ...) are left out of
answers, as Graph leaves out fields without a value; a field Graph does not have is refused
with "(#100) Tried accessing nonexisting field".
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from sandbox.faults import FaultRule, Kind
from sandbox.meta import errors, webhooks
from sandbox.meta.direct import DirectViews
from sandbox.meta.errors import GraphError
from sandbox.meta.faults import META_KINDS, MetaFaultRule, MetaFaults
from sandbox.meta.fields import FieldSpec, FieldSyntaxError, parse_fields
from sandbox.meta.store import (
    INSTAGRAM_LOGIN_SCOPES,
    Actor,
    Comment,
    Conversation,
    DirectMessage,
    DirectThread,
    IGAccount,
    IGComment,
    IGUser,
    Media,
    Message,
    Page,
    Person,
    Post,
    Store,
    Token,
)
from sandbox.meta.views import Ctx
from sandbox.meta.webhooks import WebhookSender
from sandbox.server import Handler, Request, Response, SandboxServer

__all__ = ["MetaSandbox"]

JsonObject = dict[str, Any]
Usage = Literal["pages", "instagram", "messenger"]

# Available on 2026-11-22 (Graph changelog, versions): v20.0 expired 2026-09-24.
VERSIONS = ("v21.0", "v22.0", "v23.0", "v24.0", "v25.0", "v26.0")
DAY = 86_400.0
# Budgets per rolling window (research/meta.md §3.1), for ENGAGED users of each Page and
# impressions of each Instagram account: Pages 4800 x engaged users / 24 h, Instagram 4800 x
# impressions / 24 h, Messenger 200 x engaged users / 24 h; the app's platform budget for user
# tokens 200 x daily users / hour.
ENGAGED = 10
BUDGETS: Mapping[str, tuple[int, float]] = {
    "pages": (4800 * ENGAGED, DAY),
    "instagram": (4800 * ENGAGED, DAY),
    "messenger": (200 * ENGAGED, DAY),
    "app": (200 * ENGAGED, 3600.0),
}
THROTTLE_CODE: Mapping[str, int] = {"pages": 80001, "instagram": 80002, "messenger": 80006}
_JSON = {"Content-Type": "application/json; charset=UTF-8"}
_ENDPOINT_USAGE: Mapping[str, Usage] = {
    "feed": "pages",
    "posts": "pages",
    "visitor_posts": "pages",
    "tagged": "pages",
    "accounts": "pages",
    "debug_token": "pages",
    "conversations": "messenger",
    "messages": "messenger",
    "media": "instagram",
    "tags": "instagram",
    "replies": "instagram",
}
_CURSOR_PARAMS = ("after", "before", "until", "since", "__paging_token", "__previous")


def _now() -> datetime:
    return datetime.now(UTC)


class MetaSandbox(DirectViews, SandboxServer):
    name = "meta-sandbox"
    fault_kinds: ClassVar[Mapping[str, Kind]] = META_KINDS

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], datetime] | None = None,
        budgets: Mapping[str, tuple[int, float]] | None = None,
        app_id: str = "1234567890123456",
        app_name: str = "syncd sandbox",
        app_secret: str = "sandbox-meta-app-secret",
        require_appsecret_proof: bool = False,
        latency: float = 0.0,
    ) -> None:
        super().__init__(host, port, latency=latency)
        self.faults = self._fault_rules = MetaFaults(self.fault_kinds)
        self.clock = clock or _now
        self.store = Store(self.clock)
        self.budgets = {**BUDGETS, **(budgets or {})}
        self.app_id = app_id
        self.app_name = app_name
        self.app_secret = app_secret
        self.require_appsecret_proof = require_appsecret_proof
        self.link_base = self.url
        self._calls: dict[tuple[str, str], deque[float]] = {}
        self._local = threading.local()
        self._late = itertools.count(1)
        v = "/{version}"
        for pattern, endpoint in (
            (v + "/debug_token", "debug_token"),
            (v + "/{id}/subscribed_apps", "subscribed_apps"),
            (v + "/{id}/accounts", "accounts"),
            (v + "/{id}/feed", "feed"),
            (v + "/{id}/posts", "posts"),
            (v + "/{id}/visitor_posts", "visitor_posts"),
            (v + "/{id}/tagged", "tagged"),
            (v + "/{id}/comments", "comments"),
            (v + "/{id}/replies", "replies"),
            (v + "/{id}/conversations", "conversations"),
            (v + "/{id}/messages", "messages"),
            (v + "/{id}/media", "media"),
            (v + "/{id}/tags", "tags"),
            (v + "/{id}", "node"),
        ):
            self.route("GET", pattern, self._graph(endpoint), endpoint)

    def start(self) -> MetaSandbox:
        super().start()
        return self

    def __enter__(self) -> MetaSandbox:
        return self.start()

    # -- the world, for tests and the demo ---------------------------------------------------
    def add_page(
        self,
        name: str,
        *,
        token: str | None = None,
        admin_token: str | None = None,
        advanced_access: bool = True,
    ) -> Page:
        """A Page; ``token`` becomes its (long-lived) Page token, ``admin_token`` a user
        token of its admin (``/me/accounts`` lists the Page with its token)."""
        with self.lock:
            page = self.store.add_page(name, advanced_access=advanced_access)
            admin = self.store.add_person(f"{name} Admin", has_role=True)
            if token is not None:
                self.store.add_token(token, "PAGE", user_id=admin.uid, page_id=page.id)
            if admin_token is not None:
                self.store.add_token(
                    admin_token, "USER", user_id=admin.uid, lifetime=timedelta(days=60)
                )
            return page

    def add_token(
        self,
        value: str,
        page_id: str | None = None,
        *,
        lifetime: timedelta | None = None,
        scopes: tuple[str, ...] | None = None,
    ) -> Token:
        """Another token: a Page token for ``page_id``, or a user token without it."""
        with self.lock:
            kind: Literal["PAGE", "USER"] = "PAGE" if page_id else "USER"
            extra = {} if scopes is None else {"scopes": scopes}
            return self.store.add_token(
                value,
                kind,
                user_id=self.store.number("1", 15),
                page_id=page_id,
                lifetime=lifetime,
                **extra,
            )

    def invalidate_token(self, value: str, subcode: int = 460) -> None:
        """For good: 460 password changed, 492 Page role lost, 458 app removed, ..."""
        with self.lock:
            self.store.tokens[value].invalid_subcode = subcode

    def expire_token(self, value: str) -> None:
        with self.lock:
            self.store.tokens[value].expires_at = self.clock() - timedelta(seconds=1)

    def grant(
        self,
        value: str,
        *,
        scopes: tuple[str, ...] | None = None,
        targets: Mapping[str, tuple[str, ...]] | None = None,
        expires_at: datetime | None = None,
        data_access_until: datetime | None = None,
    ) -> Token:
        """What ``debug_token`` says of a token: its permissions, those granted for some
        Pages or accounts only (``targets``, permission -> ids), when it expires, when the
        app's access to the data lapses. Unnamed: left as they are."""
        with self.lock:
            token = self.store.tokens[value]
            if scopes is not None:
                token.scopes = scopes
            if targets is not None:
                token.targets = dict(targets)
            if expires_at is not None:
                token.expires_at = expires_at
            if data_access_until is not None:
                token.data_access_expires_at = data_access_until
            return token

    def subscribe_app(
        self, page_id: str, fields: Iterable[str], *, app_id: str | None = None, name: str = ""
    ) -> None:
        """An app subscribed to the Page's webhook ``fields`` (this stand-in's app unless
        ``app_id`` names another); no fields: unsubscribed."""
        with self.lock:
            apps = self.store.pages[page_id].subscribed_apps
            app = app_id or self.app_id
            wanted = tuple(fields)
            if wanted:
                apps[app] = (name or (self.app_name if app == self.app_id else app), wanted)
            else:
                apps.pop(app, None)

    def _subscribed_apps(self, target: str, ctx: Ctx) -> JsonObject:
        """``GET /{page-id}/subscribed_apps``: "A Page access token … The
        pages_manage_metadata permission" [doc: page/subscribed_apps]."""
        page = self.store.pages.get(target)
        if page is None:
            raise errors.not_found(target)
        if ctx.token.type != "PAGE" or ctx.token.page_id != target:
            raise GraphError(
                210, "(#210) A page access token is required to request this resource."
            )
        if "pages_manage_metadata" not in ctx.token.scopes:
            raise GraphError(
                200,
                "(#200) Requires pages_manage_metadata permission to manage the object",
            )
        data = [
            {
                "name": name,
                "id": app_id,
                "subscribed_fields": list(fields),
            }
            for app_id, (name, fields) in page.subscribed_apps.items()
        ]
        return {"data": data}

    def add_person(self, name: str, *, has_role: bool = False) -> Person:
        with self.lock:
            return self.store.add_person(name, has_role=has_role)

    def scoped_id(self, person: Person, page_id: str) -> str:
        """The person's id on that Page (in comments and in Messenger alike)."""
        with self.lock:
            return self.store.scoped_id(person, page_id)

    def rename_person(self, person: Person, name: str) -> None:
        with self.lock:
            person.name = name

    def add_post(self, page_id: str, message: str, *, at: datetime | None = None) -> Post:
        """A post by the Page."""
        with self.lock:
            return self.store.add_post(page_id, message, at=at)

    def add_visitor_post(
        self, page_id: str, person: Person, message: str, *, at: datetime | None = None
    ) -> Post:
        with self.lock:
            self.store.scoped_id(person, page_id)
            return self.store.add_post(
                page_id, message, author=("person", person.key), kind="visitor", at=at
            )

    def add_tagged_post(
        self, page_id: str, person: Person, message: str, *, at: datetime | None = None
    ) -> Post:
        """A post on the person's own timeline that tags the Page."""
        with self.lock:
            return self.store.add_post(
                page_id, message, author=("person", person.key), kind="tagged", at=at
            )

    def add_comment(
        self,
        post_id: str,
        author: Person | Page,
        message: str,
        *,
        at: datetime | None = None,
        withhold_from: bool = False,
    ) -> Comment:
        with self.lock:
            return self.store.add_comment(
                post_id,
                message,
                author=self._actor(author, self.store.posts[post_id].page_id),
                at=at,
                withhold_from=withhold_from,
            )

    def add_reply(
        self,
        comment_id: str,
        author: Person | Page,
        message: str,
        *,
        at: datetime | None = None,
        withhold_from: bool = False,
    ) -> Comment:
        with self.lock:
            parent = self.store.comments[comment_id]
            page_id = self.store.posts[parent.post_id].page_id
            return self.store.add_comment(
                parent.post_id,
                message,
                author=self._actor(author, page_id),
                parent_id=comment_id,
                at=at,
                withhold_from=withhold_from,
            )

    def _actor(self, who: Person | Page, page_id: str) -> Actor:
        if isinstance(who, Page):
            return ("page", who.id)
        self.store.scoped_id(who, page_id)
        return ("person", who.key)

    def add_message(
        self,
        page_id: str,
        person: Person,
        text: str,
        *,
        from_page: bool = False,
        at: datetime | None = None,
    ) -> Message:
        """A Messenger message between the Page and the person (their thread is made on
        first use); ``from_page``: the Page's answer."""
        with self.lock:
            conv = self.store.conversation_with(page_id, person)
            return self.store.add_message(conv, text, from_page=from_page, at=at)

    def conversation(self, page_id: str, person: Person) -> Conversation:
        with self.lock:
            return self.store.conversation_with(page_id, person)

    def add_direct_message(
        self,
        account_id: str,
        user: IGUser,
        text: str,
        *,
        from_account: bool = False,
        at: datetime | None = None,
    ) -> DirectMessage:
        """An Instagram Direct message between our account and the person (their thread is
        made on first use); ``from_account``: the account's answer."""
        with self.lock:
            thread = self.store.direct_thread_with(account_id, user)
            return self.store.add_direct_message(thread, text, from_account=from_account, at=at)

    def direct_thread(self, account_id: str, user: IGUser) -> DirectThread:
        with self.lock:
            return self.store.direct_thread_with(account_id, user)

    def add_instagram_login_token(
        self, value: str, account_id: str, *, scopes: tuple[str, ...] = INSTAGRAM_LOGIN_SCOPES
    ) -> Token:
        """An Instagram User token of the account (Instagram Login, graph.instagram.com):
        ``me`` is the account, and it reads the account's media, comments and Direct."""
        with self.lock:
            return self.store.add_token(
                value, "INSTAGRAM", user_id=account_id, scopes=scopes, lifetime=timedelta(days=60)
            )

    def add_instagram_account(self, page_id: str, username: str, name: str = "") -> IGAccount:
        with self.lock:
            return self.store.add_ig_account(page_id, username, name)

    def add_ig_user(self, username: str) -> IGUser:
        with self.lock:
            return self.store.add_ig_user(username)

    def igsid(self, user: IGUser, account_id: str) -> str:
        with self.lock:
            return self.store.igsid(user, account_id)

    def rename_ig_user(self, user: IGUser, username: str) -> None:
        with self.lock:
            user.username = username

    def add_media(self, account_id: str, caption: str = "", *, at: datetime | None = None) -> Media:
        """A post of our Instagram account."""
        with self.lock:
            return self.store.add_media(("account", account_id), caption, at=at)

    def add_others_media(
        self,
        user: IGUser,
        caption: str = "",
        *,
        tagged: Iterable[str] = (),
        at: datetime | None = None,
    ) -> Media:
        """Someone else's post: ``tagged`` our account ids it tags (``/tags``); an
        ``@username`` of ours in the caption is a mention (``mentioned_media``)."""
        with self.lock:
            return self.store.add_media(("iguser", user.key), caption, tagged=set(tagged), at=at)

    def add_ig_comment(
        self,
        media_id: str,
        author: IGUser | IGAccount,
        text: str,
        *,
        reply_to: str | None = None,
        at: datetime | None = None,
        withhold_from: bool = False,
    ) -> IGComment:
        with self.lock:
            actor: Actor
            if isinstance(author, IGAccount):
                actor = ("account", author.id)
            else:
                actor = ("iguser", author.key)
                owner = self.store.media[media_id].owner
                if owner[0] == "account":
                    self.store.igsid(author, owner[1])
            return self.store.add_ig_comment(
                media_id, text, author=actor, parent_id=reply_to, at=at, withhold_from=withhold_from
            )

    def delete(self, object_id: str) -> None:
        """Delete a post, comment, reply, media or Instagram comment: gone from every list,
        100/33 when read (a Facebook comment takes its replies with it)."""
        with self.lock:
            s = self.store
            for table in (s.posts, s.comments, s.media, s.ig_comments):
                if object_id in table:
                    table[object_id].deleted = True
                    return
            if object_id in s.messages:
                message = s.messages.pop(object_id)
                s.conversations[message.conversation_id].messages.remove(message)
                return
            raise KeyError(object_id)

    def set_advanced_access(self, page_id: str, granted: bool) -> None:
        """Whether the app reading this Page has Advanced Access (App Review passed)."""
        with self.lock:
            self.store.pages[page_id].advanced_access = granted

    def hide_comment(self, comment_id: str, hidden: bool = True) -> None:
        with self.lock:
            self.store.comments[comment_id].hidden = hidden

    # -- webhook payloads of the world's objects ---------------------------------------------
    def webhooks(self) -> WebhookSender:
        """A sender signing with this app's secret (see :mod:`sandbox.meta.webhooks`)."""
        return WebhookSender(self.app_secret)

    def comment_event(
        self, comment_id: str, verb: Literal["add", "edited", "remove"] = "add"
    ) -> JsonObject:
        """The Page ``feed`` delivery for a comment or reply (``remove`` after a delete)."""
        with self.lock:
            comment = self.store.comments[comment_id]
            post = self.store.posts[comment.post_id]
            return webhooks.feed_comment(
                post.page_id,
                comment_id=comment.id,
                post_id=post.id,
                parent_id=comment.parent_id or post.id,
                author=self._from(comment.author, post.page_id),
                message=comment.message,
                created_time=comment.created,
                verb=verb,
            )

    def mention_event(self, page_id: str, object_id: str) -> JsonObject:
        """The Page ``mention`` delivery for a post or comment (elsewhere) naming the Page."""
        with self.lock:
            if object_id in self.store.comments:
                comment = self.store.comments[object_id]
                return webhooks.page_mention(
                    page_id,
                    post_id=comment.post_id,
                    comment_id=comment.id,
                    message=comment.message,
                    created_time=comment.created,
                )
            post = self.store.posts[object_id]
            return webhooks.page_mention(
                page_id, post_id=post.id, message=post.message, created_time=post.created
            )

    def message_event(self, message_id: str) -> JsonObject:
        """The Page's Messenger delivery for a message: ``messages`` when the person wrote
        it, ``message_echoes`` when the Page did."""
        with self.lock:
            message = self.store.messages[message_id]
            conv = self.store.conversations[message.conversation_id]
            person = self.store.people[conv.person_key]
            return webhooks.page_message(
                conv.page_id,
                psid=self.store.scoped_id(person, conv.page_id),
                mid=message.id,
                text=message.text,
                created_time=message.created,
                from_page=message.sender[0] == "page",
            )

    def direct_message_event(self, message_id: str) -> JsonObject:
        """The Instagram account's ``messages`` delivery for a Direct message, whichever
        side wrote it (the account's own: ``is_echo``)."""
        with self.lock:
            message = self.store.direct_messages[message_id]
            thread = self.store.direct_threads[message.thread_id]
            user = self.store.ig_users[thread.user_key]
            return webhooks.direct_message(
                thread.account_id,
                igsid=self.store.igsid(user, thread.account_id),
                mid=message.id,
                text=message.text,
                created_time=message.created,
                from_account=message.sender[0] == "account",
            )

    def instagram_mention_event(
        self, account_id: str, media_id: str, comment_id: str | None = None
    ) -> JsonObject:
        return webhooks.instagram_mention(account_id, media_id=media_id, comment_id=comment_id)

    def instagram_comment_event(self, comment_id: str) -> JsonObject:
        with self.lock:
            comment = self.store.ig_comments[comment_id]
            media = self.store.media[comment.media_id]
            account = media.owner[1] if media.owner[0] == "account" else ""
            ident, username = self._ig_author(comment.author, account or None)
            return webhooks.instagram_comment(
                account,
                comment_id=comment.id,
                text=comment.text,
                author={"id": ident, "username": username},
                media_id=media.id,
                media_product_type=media.media_product_type,
                parent_id=comment.parent_id,
            )

    # -- usage and budgets -------------------------------------------------------------------
    def _count(self, bucket: str, owner: str, now: float) -> tuple[int, int]:
        """Count one call; (percentage used, minutes until under the budget again)."""
        budget, window = self.budgets[bucket]
        calls = self._calls.setdefault((bucket, owner), deque())
        while calls and calls[0] <= now - window:
            calls.popleft()
        calls.append(now)
        used = len(calls)
        pct = used * 100 // max(budget, 1)
        if used <= budget:
            return pct, 0
        # The next call goes through once enough calls left the window for it to fit: this
        # one counted too, so a client that keeps calling keeps pushing access back.
        leaves = calls[used - budget]
        return pct, max(1, math.ceil((leaves + window - now) / 60))

    def usage(self, bucket: str, owner: str) -> int:
        """The percentage of ``bucket`` (pages, instagram, messenger, app) used by ``owner``."""
        with self.lock:
            budget, window = self.budgets[bucket]
            now = self.clock().timestamp()
            calls = [t for t in self._calls.get((bucket, owner), ()) if t > now - window]
            return len(calls) * 100 // max(budget, 1)

    def _meter(self, token: Token, usage: Usage, owner: str) -> tuple[dict[str, str], int | None]:
        """Count the call; the usage headers, and the throttle code when a budget is spent."""
        now = self.clock().timestamp()
        app_pct, app_wait = self._count("app", self.app_id, now)
        headers = {"X-App-Usage": _app_usage(app_pct)}
        if token.type == "USER":
            # User tokens meet the Platform Rate Limits; BUC applies to Page tokens.
            return headers, (4 if app_wait else None)
        pct, wait = self._count(usage, owner, now)
        headers["X-Business-Use-Case-Usage"] = _buc_usage(owner, usage, pct, wait)
        return headers, (THROTTLE_CODE[usage] if wait else None)

    # -- requests ----------------------------------------------------------------------------
    def _graph(self, endpoint: str) -> Handler:
        def serve(req: Request) -> Response:
            with self.lock:
                headers: dict[str, str] = {}
                try:
                    ctx = self._context(req)
                    headers["Facebook-API-Version"] = ctx.version
                    usage, owner = self._usage_of(endpoint, req, ctx)
                    more, code = self._meter(ctx.token, usage, owner)
                    headers.update(more)
                    if code is not None:
                        raise errors.throttle(code)
                    ctx.withhold = bool(getattr(self._local, "withhold", False))
                    body = self._serve(endpoint, req, ctx)
                except GraphError as exc:
                    return self._error(exc, headers)
                return Response(200, json.dumps(body).encode("utf-8"), {**_JSON, **headers})

        return serve

    def _error(self, exc: GraphError, headers: Mapping[str, str] | None = None) -> Response:
        out = {**_JSON, **(headers or {}), "WWW-Authenticate": exc.www_authenticate()}
        return Response(exc.status, exc.encoded(), out)

    def _context(self, req: Request) -> Ctx:
        version = req.params["version"]
        if version not in VERSIONS:
            if not _expired_version(version):
                raise GraphError(2500, f"Unknown path components: /{version}")
            version = VERSIONS[0]  # "defaulted to the next oldest usable version"
        return Ctx(version, self._authenticate(req), dict(req.query))

    def _authenticate(self, req: Request) -> Token:
        value = req.query.get("access_token")
        if not value:
            scheme, _, rest = (req.header("authorization") or "").partition(" ")
            if scheme.lower() in ("bearer", "oauth") and rest.strip():
                value = rest.strip()
        if not value:
            raise GraphError(104, "An access token is required to request this resource.")
        token = self.store.tokens.get(value)
        now = self.clock()
        if token is None:
            raise GraphError(190, errors.token_message(None, expired_at=None, now=now))
        if token.invalid_subcode is not None:
            raise GraphError(
                190,
                errors.token_message(token.invalid_subcode, expired_at=None, now=now),
                subcode=token.invalid_subcode,
            )
        if token.expires_at is not None and token.expires_at <= now:
            raise GraphError(
                190, errors.token_message(463, expired_at=token.expires_at, now=now), subcode=463
            )
        proof = req.query.get("appsecret_proof")
        if proof is not None:
            want = hmac.new(self.app_secret.encode(), value.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(proof, want):
                raise GraphError(
                    100,
                    "Invalid appsecret_proof provided in the API argument",
                    type_="GraphMethodException",
                )
        elif self.require_appsecret_proof:
            raise GraphError(100, "API calls from the server require an appsecret_proof argument")
        return token

    def _resolve_id(self, raw: str, ctx: Ctx) -> str:
        if raw == "me":
            return ctx.token.page_id or ctx.token.user_id
        return raw

    def _usage_of(self, endpoint: str, req: Request, ctx: Ctx) -> tuple[Usage, str]:
        """Which budget a call spends: the Page's (pages, messenger) or the Instagram
        account's, by what the path names."""
        s = self.store
        target = self._resolve_id(req.params.get("id", "me"), ctx)
        default_owner = ctx.token.page_id or ctx.token.user_id
        kind = _ENDPOINT_USAGE.get(endpoint)
        if target in s.ig_accounts:
            return "instagram", target
        if target in s.media:
            return "instagram", self._media_owner_account(s.media[target]) or default_owner
        if target in s.ig_comments:
            media = s.media[s.ig_comments[target].media_id]
            return "instagram", self._media_owner_account(media) or default_owner
        if target in s.conversations:
            return "messenger", s.conversations[target].page_id
        if target in s.messages:
            return "messenger", s.conversations[s.messages[target].conversation_id].page_id
        if kind is not None:
            return kind, default_owner if kind != "instagram" else target
        return "pages", default_owner

    def _media_owner_account(self, media: Media) -> str | None:
        if media.owner[0] == "account":
            return media.owner[1]
        tagged = sorted(media.tagged)
        return tagged[0] if tagged else None

    def _serve(self, endpoint: str, req: Request, ctx: Ctx) -> JsonObject:
        if endpoint == "debug_token":
            return self._debug_token(req.query, ctx)
        target = self._resolve_id(req.params["id"], ctx)
        if endpoint == "subscribed_apps":
            return self._subscribed_apps(target, ctx)
        specs = self._fields(req.query.get("fields"))
        if (direct := self._serve_direct_request(endpoint, target, specs, req, ctx)) is not None:
            return direct
        if endpoint == "node":
            return self._node(target, specs, ctx)
        if endpoint == "accounts":
            return self._accounts(target, specs, ctx)
        edge = endpoint
        # Only the types that have edges: an edge path under a message id is an unknown id.
        owner_type = next(
            (t for t, table in self._tables() if target in table and self._edges(t)), None
        )
        if owner_type is None:
            raise errors.not_found(target)
        self._check_visible(owner_type, target, ctx)
        edges = self._edges(owner_type)
        if edge not in edges:
            raise errors.nonexisting_field(edge, owner_type)
        path = f"/{ctx.version}/{req.params['id']}/{edge}"
        link_params = {k: v for k, v in req.query.items() if k not in _CURSOR_PARAMS}
        return edges[edge](
            self._object(owner_type, target), specs, dict(req.query), ctx, path, link_params
        )

    def _serve_direct_request(
        self, endpoint: str, target: str, specs: list[FieldSpec] | None, req: Request, ctx: Ctx
    ) -> JsonObject | None:
        path = f"/{ctx.version}/{req.params['id']}/{endpoint}"
        link_params = {k: v for k, v in req.query.items() if k not in _CURSOR_PARAMS}
        return self.serve_direct(endpoint, target, specs, ctx, path, link_params)

    def _fields(self, text: str | None) -> list[FieldSpec] | None:
        if text is None or not text.strip():
            return None
        try:
            return parse_fields(text)
        except FieldSyntaxError as exc:
            raise GraphError(100, f"(#100) Syntax error {exc}") from None

    # -- faults ----------------------------------------------------------------------------------
    def fault_response(
        self, rule: FaultRule, req: Request, handler: Handler, answered: Response | None
    ) -> Response:
        extra = rule if isinstance(rule, MetaFaultRule) else MetaFaultRule(**vars(rule))
        if rule.kind == "throttle":
            return self._throttle_fault(extra, req)
        if rule.kind == "expired_token":
            subcode = extra.subcode or 463
            with self.lock:
                message = errors.token_message(subcode, expired_at=self.clock(), now=self.clock())
            return self._error(GraphError(190, message, subcode=subcode))
        if rule.kind == "withheld_from":
            self._local.withhold = True
            try:
                return handler(req)
            finally:
                self._local.withhold = False
        if rule.kind == "late_comment":
            self._late_comment(req)
            return handler(req)
        if rule.kind == "busy_thread":
            self._busy_thread(req, extra.messages or 25)
            return handler(req)
        return super().fault_response(rule, req, handler, answered)

    def _fault_page(self, req: Request) -> Page | None:
        with self.lock:
            raw = req.params.get("id", "me")
            if raw == "me":
                token = self._token_of(req)
                raw = token.page_id if token and token.page_id else ""
            return self.store.pages.get(raw)

    def _token_of(self, req: Request) -> Token | None:
        value = (
            req.query.get("access_token") or (req.header("authorization") or "").partition(" ")[2]
        )
        return self.store.tokens.get(value.strip())

    def _late_comment(self, req: Request) -> None:
        page = self._fault_page(req)
        if page is None:
            return
        with self.lock:
            posts = [
                p
                for p in self.store.posts.values()
                if p.page_id == page.id and p.kind == "page" and not p.deleted
            ]
            if not posts:
                return
            oldest = min(posts, key=lambda p: (p.created, p.seq))
            person = self.store.add_person(f"Late Commenter {next(self._late)}")
            self.store.scoped_id(person, page.id)
            self.store.add_comment(
                oldest.id, "Still waiting for an answer on this one", author=("person", person.key)
            )

    def _busy_thread(self, req: Request, count: int) -> None:
        page = self._fault_page(req)
        if page is None:
            return
        with self.lock:
            convs = [c for c in self.store.conversations.values() if c.page_id == page.id]
            if convs:
                conv = max(convs, key=lambda c: (c.updated, c.seq))
            else:
                person = self.store.add_person(f"Busy Customer {next(self._late)}")
                conv = self.store.conversation_with(page.id, person)
            for n in range(count):
                self.store.add_message(conv, f"message {n + 1} of {count}")

    def _throttle_fault(self, rule: MetaFaultRule, req: Request) -> Response:
        with self.lock:
            token = self._token_of(req)
            page_id = token.page_id if token and token.page_id else ""
            usage: Usage = _ENDPOINT_USAGE.get(req.endpoint, "pages")
            raw = req.params.get("id", "")
            if (
                raw in self.store.media
                or raw in self.store.ig_accounts
                or raw in self.store.ig_comments
            ):
                usage = "instagram"
            code = rule.error_code or (
                4 if token and token.type == "USER" else THROTTLE_CODE[usage]
            )
            owner = raw if usage == "instagram" and raw in self.store.ig_accounts else page_id
            minutes = rule.minutes or 5
        headers = {
            "X-App-Usage": _app_usage(100),
            "X-Business-Use-Case-Usage": _buc_usage(owner, usage, 100, minutes),
        }
        return self._error(errors.throttle(code), headers)

    def status_response(self, status: int, req: Request) -> Response:
        exc = errors.transient()
        exc.status = status
        return self._error(exc)

    def malformed_response(self, req: Request) -> Response:
        return Response(200, b'{"data":[{"id":"1', dict(_JSON))

    def not_found(self, req: Request) -> Response:
        parts = req.path.strip("/").split("/")
        rest = "/" + "/".join(parts[2:]) if len(parts) > 2 else req.path
        return self._error(GraphError(2500, f"Unknown path components: {rest}"))


def _header(value: Any) -> str:
    """A usage header's JSON, compact as recorded (``{"call_count":2,...}``)."""
    return json.dumps(value, separators=(",", ":"))


def _app_usage(pct: int) -> str:
    return _header({"call_count": pct, "total_cputime": pct, "total_time": pct})


def _buc_usage(owner: str, usage: Usage, pct: int, minutes: int) -> str:
    """``X-Business-Use-Case-Usage`` for one Page or Instagram account, ``minutes`` until it
    may call again."""
    return _header(
        {
            owner: [
                {
                    "type": usage,
                    "call_count": pct,
                    "total_cputime": pct,
                    "total_time": pct,
                    "estimated_time_to_regain_access": minutes,
                }
            ]
        }
    )


def _expired_version(version: str) -> bool:
    if not version.startswith("v"):
        return False
    major, dot, minor = version[1:].partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        return False
    return int(major) < int(VERSIONS[0][1:].split(".")[0])
