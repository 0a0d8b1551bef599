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
- ``/me``, ``/me/accounts`` (user token: the Pages with their tokens), ``/debug_token``.
- Tokens as ``access_token`` or ``Authorization: Bearer``/``OAuth``; ``appsecret_proof``
  checked when sent (required when ``require_appsecret_proof``). No token: code 104; unknown:
  190; expired: 190/463; invalidated: 190 with its subcode (460 password changed, 492 Page
  role lost, ...).
- Deleted objects: 100/33 "Object with ID … does not exist"; they leave every list.
- ``from`` as Meta gives it: left out on comments and posts of people without a role on the
  app while the Page's app has no Advanced Access (``Page.advanced_access``), on an item with
  ``withhold_from``, and on people's posts that tag the Page; their Messenger threads are then
  not listed at all.
- Usage: ``X-App-Usage`` on every answer and ``X-Business-Use-Case-Usage`` on every answer to
  a Page token (keyed by the Page or Instagram account id, type ``pages``, ``instagram`` or
  ``messenger``), percentages of configurable budgets over rolling windows, with
  ``estimated_time_to_regain_access`` in minutes. A spent budget answers 80001 (Page), 80002
  (Instagram), 80006 (Messenger), or 4 for a user token's app budget; refused calls count too
  ("Continuing to make calls will continue to increase your call count").
- Faults: :mod:`sandbox.meta.faults`. Webhook deliveries: :mod:`sandbox.meta.webhooks`.

Not served: writes (POST/DELETE), the Batch API and ``?ids=``, Instagram Direct
(``platform=instagram``, no recording exists) and graph.instagram.com's Instagram Login,
reactions beyond an empty summary, attachments, Page Public Content Access on other Pages,
the Conversations API's 2 calls a second, unversioned paths. Fields Graph has but the
stand-in does not model (``attachments``, ``full_picture``, ``shares``, ...) are left out of
answers, as Graph leaves out fields without a value; a field Graph does not have is refused
with "(#100) Tried accessing nonexisting field".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import json
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

from sandbox.faults import FaultRule, Kind
from sandbox.meta import errors, webhooks
from sandbox.meta.errors import GraphError
from sandbox.meta.faults import META_KINDS, MetaFaultRule, MetaFaults
from sandbox.meta.fields import FieldSpec, FieldSyntaxError, parse_fields
from sandbox.meta.store import (
    Actor,
    Comment,
    Conversation,
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
from sandbox.meta.webhooks import WebhookSender
from sandbox.server import Handler, Request, Response, SandboxServer

__all__ = ["MetaSandbox"]

JsonObject = dict[str, Any]
Usage = Literal["pages", "instagram", "messenger"]

# Available on 2026-11-22 (Graph changelog, versions): v20.0 expired 2026-09-24.
VERSIONS = ("v21.0", "v22.0", "v23.0", "v24.0", "v25.0", "v26.0")
DEFAULT_LIMIT = 25  # Graph's page size when ``limit`` is not sent
FEED_MAX = 100  # "You can only read a maximum of 100 feed posts with the limit field"
IG_COMMENTS_MAX = 50  # "Returns a maximum of 50 comments per query"
EDGE_MAX = 100  # other edges: not documented; 100 is what clients ask for
MESSAGE_DETAILS = 20  # "you can only get details about the 20 most recent messages"
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

# Fields Graph has on each node type that the stand-in does not model: left out of answers.
_UNMODELLED: Mapping[str, frozenset[str]] = {
    "Page": frozenset(
        [
            "about",
            "fan_count",
            "followers_count",
            "picture",
            "website",
            "username",
            "link",
            "cover",
            "emails",
            "phone",
            "verification_status",
            "is_published",
            "single_line_address",
            "location",
        ]
    ),
    "Post": frozenset(
        [
            "attachments",
            "full_picture",
            "icon",
            "picture",
            "shares",
            "message_tags",
            "story",
            "story_tags",
            "privacy",
            "place",
            "properties",
            "to",
            "with_tags",
            "likes",
            "sharedposts",
            "admin_creator",
            "call_to_action",
            "child_attachments",
            "coordinates",
            "event",
            "feed_targeting",
            "is_hidden",
            "is_expired",
            "promotable_id",
            "is_popular",
            "is_spherical",
            "instagram_eligibility",
            "timeline_visibility",
            "actions",
        ]
    ),
    "Comment": frozenset(
        ["attachment", "message_tags", "object", "likes", "reactions", "user_likes"]
    ),
    "Conversation": frozenset(["name", "wallpaper"]),
    "Message": frozenset(
        ["attachments", "sticker", "shares", "reactions", "reply_to", "is_self_reply"]
    ),
    "IGUser": frozenset(
        [
            "biography",
            "followers_count",
            "follows_count",
            "ig_id",
            "profile_picture_url",
            "website",
            "shopping_product_tag_eligibility",
        ]
    ),
    "IGMedia": frozenset(
        [
            "children",
            "media_url",
            "thumbnail_url",
            "is_shared_to_feed",
            "boost_ads_list",
            "copyright_check_information",
            "legacy_instagram_media_id",
            "alt_text",
        ]
    ),
    "IGComment": frozenset(["legacy_instagram_comment_id"]),
}


def _now() -> datetime:
    return datetime.now(UTC)


def _fb_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _key(moment: datetime, seq: int) -> tuple[int, int]:
    return (int(moment.timestamp()), seq)


def _cursor(key: tuple[int, int]) -> str:
    return base64.urlsafe_b64encode(f"{key[0]}:{key[1]}".encode()).decode().rstrip("=")


def _uncursor(value: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        seconds, _, seq = raw.partition(":")
        return (int(seconds), int(seq))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise GraphError(100, "(#100) The cursor is not valid") from None


def _moment(value: str, name: str) -> int:
    """``since``/``until``: a Unix time or a date Graph's strtotime reads (ISO here)."""
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GraphError(100, f"(#100) The parameter {name} is not a valid time") from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


@dataclass
class _Ctx:
    """One request: who asks, in which version, and what the paging links carry over."""

    version: str
    token: Token
    query: dict[str, str]
    withhold: bool = False  # the withheld_from fault: act as an app without Advanced Access


@dataclass
class _Listing:
    """The paging of one list: its items in order and the parameters that choose the page."""

    items: list[Any]
    params: Mapping[str, str]
    descending: bool
    style: Literal["cursor", "feed", "time", "ig"]
    limit_max: int
    key: Callable[[Any], tuple[int, int]]
    link: str  # the path of the edge, for next/previous
    link_params: dict[str, str]
    default_limit: int = DEFAULT_LIMIT


class MetaSandbox(SandboxServer):
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
    ) -> None:
        super().__init__(host, port)
        self.faults = self._fault_rules = MetaFaults(self.fault_kinds)
        self.clock = clock or _now
        self.store = Store(self.clock)
        self.budgets = {**BUDGETS, **(budgets or {})}
        self.app_id = app_id
        self.app_name = app_name
        self.app_secret = app_secret
        self.require_appsecret_proof = require_appsecret_proof
        self._calls: dict[tuple[str, str], deque[float]] = {}
        self._local = threading.local()
        self._late = itertools.count(1)
        v = "/{version}"
        for pattern, endpoint in (
            (v + "/debug_token", "debug_token"),
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
            comment = self.store.add_comment(
                post_id,
                message,
                author=self._actor(author, self.store.posts[post_id].page_id),
                at=at,
            )
            comment.withhold_from = withhold_from
            return comment

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
            reply = self.store.add_comment(
                parent.post_id,
                message,
                author=self._actor(author, page_id),
                parent_id=comment_id,
                at=at,
            )
            reply.withhold_from = withhold_from
            return reply

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
            comment = self.store.add_ig_comment(
                media_id, text, author=actor, parent_id=reply_to, at=at
            )
            comment.withhold_from = withhold_from
            return comment

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
        headers = {
            "X-App-Usage": _header(
                {"call_count": app_pct, "total_cputime": app_pct, "total_time": app_pct}
            )
        }
        if token.type == "USER":
            # User tokens meet the Platform Rate Limits; BUC applies to Page tokens.
            return headers, (4 if app_wait else None)
        pct, wait = self._count(usage, owner, now)
        headers["X-Business-Use-Case-Usage"] = _header(
            {
                owner: [
                    {
                        "type": usage,
                        "call_count": pct,
                        "total_cputime": pct,
                        "total_time": pct,
                        "estimated_time_to_regain_access": wait,
                    }
                ]
            }
        )
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

    def _context(self, req: Request) -> _Ctx:
        version = req.params["version"]
        if version not in VERSIONS:
            if not _expired_version(version):
                raise GraphError(2500, f"Unknown path components: /{version}")
            version = VERSIONS[0]  # "defaulted to the next oldest usable version"
        return _Ctx(version, self._authenticate(req), dict(req.query))

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

    def _resolve_id(self, raw: str, ctx: _Ctx) -> str:
        if raw == "me":
            return ctx.token.page_id or ctx.token.user_id
        return raw

    def _usage_of(self, endpoint: str, req: Request, ctx: _Ctx) -> tuple[Usage, str]:
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

    def _serve(self, endpoint: str, req: Request, ctx: _Ctx) -> JsonObject:
        if endpoint == "debug_token":
            return self._debug_token(req, ctx)
        target = self._resolve_id(req.params["id"], ctx)
        specs = self._fields(req.query.get("fields"))
        if endpoint == "node":
            return self._node(target, specs, ctx)
        if endpoint == "accounts":
            return self._accounts(target, specs, ctx)
        s = self.store
        edge = endpoint
        if target in s.pages:
            owner_type = "Page"
        elif target in s.posts:
            owner_type = "Post"
        elif target in s.comments:
            owner_type = "Comment"
        elif target in s.conversations:
            owner_type = "Conversation"
        elif target in s.ig_accounts:
            owner_type = "IGUser"
        elif target in s.media:
            owner_type = "IGMedia"
        elif target in s.ig_comments:
            owner_type = "IGComment"
        else:
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

    def _fields(self, text: str | None) -> list[FieldSpec] | None:
        if text is None or not text.strip():
            return None
        try:
            return parse_fields(text)
        except FieldSyntaxError as exc:
            raise GraphError(100, f"(#100) Syntax error {exc}") from None

    # -- visibility ------------------------------------------------------------------------------
    def _object(self, type_: str, object_id: str) -> Any:
        s = self.store
        table: Mapping[str, Mapping[str, Any]] = {
            "Page": s.pages,
            "Post": s.posts,
            "Comment": s.comments,
            "Conversation": s.conversations,
            "Message": s.messages,
            "IGUser": s.ig_accounts,
            "IGMedia": s.media,
            "IGComment": s.ig_comments,
        }
        return table[type_][object_id]

    def _check_visible(self, type_: str, object_id: str, ctx: _Ctx) -> None:
        s = self.store
        instagram = type_.startswith("IG")
        gone = errors.not_found(object_id, instagram=instagram)
        obj = self._object(type_, object_id)
        if getattr(obj, "deleted", False):
            raise gone
        if type_ == "Comment":
            if obj.parent_id and s.comments[obj.parent_id].deleted:
                raise gone
            if s.posts[obj.post_id].deleted:
                raise gone
        if type_ == "IGComment":
            if obj.parent_id and s.ig_comments[obj.parent_id].deleted:
                raise gone
            if s.media[obj.media_id].deleted:
                raise gone
        page_id = ctx.token.page_id
        if type_ in ("Conversation", "Message"):
            conv = obj if type_ == "Conversation" else s.conversations[obj.conversation_id]
            if conv.page_id != page_id or not self._thread_visible(conv, ctx):
                raise gone
            if type_ == "Message" and obj not in conv.messages[-MESSAGE_DETAILS:]:
                # "If you query a message that is older than the last 20, you will see an
                # error that the message has been deleted" (Messenger Conversations API).
                raise gone
        if instagram:
            mine = s.pages[page_id].instagram_account if page_id in s.pages else None
            if type_ == "IGUser" and object_id != mine:
                raise gone
            if type_ in ("IGMedia", "IGComment"):
                media = obj if type_ == "IGMedia" else s.media[obj.media_id]
                if media.owner != ("account", mine):
                    raise gone

    def _withheld(self, author: Actor, page_id: str, item_switch: bool, ctx: _Ctx) -> bool:
        if author[0] != "person":
            return False
        if item_switch:
            return True
        person = self.store.people[author[1]]
        page = self.store.pages.get(page_id)
        standard_only = ctx.withhold or (page is not None and not page.advanced_access)
        return standard_only and not person.has_role

    def _thread_visible(self, conv: Conversation, ctx: _Ctx) -> bool:
        # "Advanced Access is required to access conversations between your business and
        # people who do not have a role on your messaging app" (Messenger Conversations API).
        return not self._withheld(("person", conv.person_key), conv.page_id, False, ctx)

    # -- rendering -------------------------------------------------------------------------------
    def _render(
        self,
        type_: str,
        obj: Any,
        specs: list[FieldSpec] | None,
        ctx: _Ctx,
        defaults: tuple[str, ...],
        fields: Mapping[str, Callable[[Any, FieldSpec, _Ctx], Any]],
    ) -> JsonObject:
        wanted = specs if specs is not None else [FieldSpec(n) for n in defaults]
        out: JsonObject = {}
        edges = self._edges(type_)
        for spec in wanted:
            if spec.name in fields:
                value = fields[spec.name](obj, spec, ctx)
                if value is not _ABSENT:
                    out[spec.key] = _select(value, spec)
            elif spec.name in edges:
                out[spec.key] = self._expand(type_, obj, spec, ctx, edges[spec.name])
            elif spec.name not in _UNMODELLED.get(type_, frozenset()):
                raise errors.nonexisting_field(spec.name, _NODE_NAMES.get(type_, type_))
        if (
            "id" in fields
            and "id" not in out
            and fields["id"](obj, FieldSpec("id"), ctx) is not _ABSENT
        ):
            out["id"] = obj.id  # Graph adds the id of a node whatever was asked
        return out

    def _expand(self, type_: str, obj: Any, spec: FieldSpec, ctx: _Ctx, edge: _Edge) -> JsonObject:
        params = {k: v for k, v in spec.modifiers.items() if k != "as"}
        if spec.sub_text:
            params["fields"] = spec.sub_text
        link_params = dict(params)
        if "access_token" in ctx.query:
            link_params = {"access_token": ctx.query["access_token"], **link_params}
        path = f"/{ctx.version}/{obj.id}/{spec.name}"
        return edge(obj, spec.sub, params, ctx, path, link_params)

    def _edges(self, type_: str) -> Mapping[str, _Edge]:
        table: dict[str, dict[str, _Edge]] = {
            "Page": {
                "feed": self._feed,
                "posts": self._posts,
                "visitor_posts": self._visitor_posts,
                "tagged": self._tagged,
                "conversations": self._conversations,
            },
            "Post": {"comments": self._post_comments, "reactions": self._reactions},
            "Comment": {"comments": self._replies, "reactions": self._reactions},
            "Conversation": {"messages": self._messages},
            "IGUser": {"media": self._ig_media_edge, "tags": self._ig_tags},
            "IGMedia": {"comments": self._ig_comments_edge},
            "IGComment": {"replies": self._ig_replies},
        }
        return table.get(type_, {})

    def _node(self, object_id: str, specs: list[FieldSpec] | None, ctx: _Ctx) -> JsonObject:
        s = self.store
        if object_id == ctx.token.user_id and ctx.token.type == "USER":
            return {"name": self._user_name(ctx.token.user_id), "id": object_id}
        for type_, table in (
            ("Page", s.pages),
            ("Post", s.posts),
            ("Comment", s.comments),
            ("Conversation", s.conversations),
            ("Message", s.messages),
            ("IGUser", s.ig_accounts),
            ("IGMedia", s.media),
            ("IGComment", s.ig_comments),
        ):
            if object_id in table:
                self._check_visible(type_, object_id, ctx)
                return self._render_any(type_, table[object_id], specs, ctx)
        raise errors.not_found(object_id)

    def _user_name(self, uid: str) -> str:
        for person in self.store.people.values():
            if person.uid == uid:
                return person.name
        return "Sandbox User"

    def _render_any(
        self, type_: str, obj: Any, specs: list[FieldSpec] | None, ctx: _Ctx
    ) -> JsonObject:
        renderers: Mapping[str, Callable[[Any, list[FieldSpec] | None, _Ctx], JsonObject]] = {
            "Page": self.render_page,
            "Post": self.render_post,
            "Comment": self.render_comment,
            "Conversation": self.render_conversation,
            "Message": self.render_message,
            "IGUser": self.render_ig_user,
            "IGMedia": self.render_media,
            "IGComment": self.render_ig_comment,
        }
        return renderers[type_](obj, specs, ctx)

    # Facebook ---------------------------------------------------------------------------------
    def _from(self, author: Actor, page_id: str) -> JsonObject:
        if author[0] == "page":
            return {"name": self.store.pages[author[1]].name, "id": author[1]}
        person = self.store.people[author[1]]
        return {"name": person.name, "id": self.store.scoped_id(person, page_id)}

    def _messenger_party(self, author: Actor, page_id: str) -> JsonObject:
        party = self._from(author, page_id)
        return {"name": party["name"], "email": f"{party['id']}@facebook.com", "id": party["id"]}

    def render_page(self, page: Page, specs: list[FieldSpec] | None, ctx: _Ctx) -> JsonObject:
        fields: Mapping[str, Callable[[Any, FieldSpec, _Ctx], Any]] = {
            "id": lambda p, f, c: p.id,
            "name": lambda p, f, c: p.name,
            "category": lambda p, f, c: p.category,
            "category_list": lambda p, f, c: [{"id": "2201", "name": p.category}],
            "instagram_business_account": lambda p, f, c: (
                {"id": p.instagram_account} if p.instagram_account else _ABSENT
            ),
            "tasks": lambda p, f, c: [
                "ANALYZE",
                "ADVERTISE",
                "MESSAGING",
                "MODERATE",
                "CREATE_CONTENT",
                "MANAGE",
            ],
            "access_token": lambda p, f, c: self._page_token_of(p.id, c.token) or _ABSENT,
        }
        return self._render("Page", page, specs, ctx, ("name", "id"), fields)

    def _page_token_of(self, page_id: str, asker: Token) -> str | None:
        if asker.type != "USER":
            return None
        for token in self.store.tokens.values():
            if token.type == "PAGE" and token.page_id == page_id and token.user_id == asker.user_id:
                return token.value
        return None

    def _permalink(self, post: Post) -> str:
        owner, _, number = post.id.partition("_")
        return f"https://www.facebook.com/{owner}/posts/{number}/"

    def render_post(self, post: Post, specs: list[FieldSpec] | None, ctx: _Ctx) -> JsonObject:
        def author(p: Post, f: FieldSpec, c: _Ctx) -> Any:
            if p.kind == "tagged" and p.author[0] == "person":
                # "For user posts, the from field will only be returned if the user making
                # the request is the same user who created the post" (Page tagged).
                return _ABSENT
            if self._withheld(p.author, p.page_id, p.withhold_from, c):
                return _ABSENT
            return self._from(p.author, p.page_id)

        status_type = {
            "page": "mobile_status_update",
            "visitor": "wall_post",
            "tagged": "mobile_status_update",
        }
        fields: Mapping[str, Callable[[Any, FieldSpec, _Ctx], Any]] = {
            "id": lambda p, f, c: p.id,
            "message": lambda p, f, c: p.message or _ABSENT,
            "created_time": lambda p, f, c: _fb_time(p.created),
            "updated_time": lambda p, f, c: _fb_time(p.updated),
            "from": author,
            "permalink_url": lambda p, f, c: self._permalink(p),
            "status_type": lambda p, f, c: status_type[p.kind],
            "is_published": lambda p, f, c: True,
            "tagged_time": lambda p, f, c: _fb_time(p.created) if p.kind == "tagged" else _ABSENT,
        }
        return self._render("Post", post, specs, ctx, ("created_time", "message", "id"), fields)

    def render_comment(
        self, comment: Comment, specs: list[FieldSpec] | None, ctx: _Ctx
    ) -> JsonObject:
        s = self.store
        post = s.posts[comment.post_id]

        def author(cm: Comment, f: FieldSpec, c: _Ctx) -> Any:
            if self._withheld(cm.author, post.page_id, cm.withhold_from, c):
                return _ABSENT
            return self._from(cm.author, post.page_id)

        def parent(cm: Comment, f: FieldSpec, c: _Ctx) -> Any:
            if cm.parent_id is None:
                return _ABSENT
            return self.render_comment(s.comments[cm.parent_id], f.sub, c)

        def permalink(cm: Comment, f: FieldSpec, c: _Ctx) -> str:
            base = self._permalink(post) + "?comment_id="
            link = base + (cm.parent_id or cm.id).split("_", 1)[1]
            if cm.parent_id:
                link += "&reply_comment_id=" + cm.id.split("_", 1)[1]
            return link

        fields: Mapping[str, Callable[[Any, FieldSpec, _Ctx], Any]] = {
            "id": lambda cm, f, c: cm.id,
            "message": lambda cm, f, c: cm.message,
            "created_time": lambda cm, f, c: _fb_time(cm.created),
            "from": author,
            "parent": parent,
            "permalink_url": permalink,
            "comment_count": lambda cm, f, c: len(self._replies_of(cm)),
            "like_count": lambda cm, f, c: 0,
            "is_hidden": lambda cm, f, c: cm.hidden,
            "is_private": lambda cm, f, c: False,
            "can_comment": lambda cm, f, c: cm.parent_id is None,
            "can_hide": lambda cm, f, c: cm.author != ("page", post.page_id),
            "can_like": lambda cm, f, c: True,
            "can_remove": lambda cm, f, c: True,
            "can_reply_privately": lambda cm, f, c: cm.author[0] == "person",
        }
        return self._render(
            "Comment", comment, specs, ctx, ("created_time", "from", "message", "id"), fields
        )

    def _live_comments(self, post: Post) -> list[Comment]:
        s = self.store
        return [
            c
            for c in s.comments.values()
            if c.post_id == post.id
            and not c.deleted
            and not (c.parent_id and s.comments[c.parent_id].deleted)
        ]

    def _replies_of(self, comment: Comment) -> list[Comment]:
        return [
            c for c in self.store.comments.values() if c.parent_id == comment.id and not c.deleted
        ]

    def render_conversation(
        self, conv: Conversation, specs: list[FieldSpec] | None, ctx: _Ctx
    ) -> JsonObject:
        person: Actor = ("person", conv.person_key)
        page: Actor = ("page", conv.page_id)

        def parties(cv: Conversation, f: FieldSpec, c: _Ctx) -> JsonObject:
            return {
                "data": [
                    self._messenger_party(person, cv.page_id),
                    self._messenger_party(page, cv.page_id),
                ]
            }

        fields: Mapping[str, Callable[[Any, FieldSpec, _Ctx], Any]] = {
            "id": lambda cv, f, c: cv.id,
            "link": lambda cv, f, c: f"/{cv.page_id}/inbox/{cv.link_id}/",
            "updated_time": lambda cv, f, c: _fb_time(cv.updated),
            "message_count": lambda cv, f, c: len(cv.messages),
            "unread_count": lambda cv, f, c: 0,
            "snippet": lambda cv, f, c: cv.messages[-1].text[:100] if cv.messages else "",
            "participants": parties,
            "senders": parties,
            "former_participants": lambda cv, f, c: {"data": []},
            "can_reply": lambda cv, f, c: True,
            "is_subscribed": lambda cv, f, c: True,
            "scoped_thread_key": lambda cv, f, c: cv.id,
        }
        return self._render("Conversation", conv, specs, ctx, ("id", "updated_time"), fields)

    def render_message(
        self, message: Message, specs: list[FieldSpec] | None, ctx: _Ctx, *, details: bool = True
    ) -> JsonObject:
        conv = self.store.conversations[message.conversation_id]
        other: Actor = (
            ("page", conv.page_id) if message.sender[0] == "person" else ("person", conv.person_key)
        )

        def detail(value: Callable[[Message], Any]) -> Callable[[Any, FieldSpec, _Ctx], Any]:
            return lambda m, f, c: value(m) if details else _ABSENT

        fields: Mapping[str, Callable[[Any, FieldSpec, _Ctx], Any]] = {
            "id": lambda m, f, c: m.id,
            "created_time": lambda m, f, c: _fb_time(m.created),
            "from": detail(lambda m: self._messenger_party(m.sender, conv.page_id)),
            "to": detail(lambda m: {"data": [self._messenger_party(other, conv.page_id)]}),
            "message": detail(lambda m: m.text),
            "tags": detail(lambda m: {"data": [{"name": "inbox"}, {"name": "source:mobile"}]}),
        }
        return self._render("Message", message, specs, ctx, ("id", "created_time"), fields)

    # Instagram --------------------------------------------------------------------------------
    def _ig_author(self, author: Actor, account_id: str | None) -> tuple[str, str]:
        """(id, username) of an Instagram author as the account ``account_id`` sees them."""
        if author[0] == "account":
            account = self.store.ig_accounts[author[1]]
            return account.id, account.username
        user = self.store.ig_users[author[1]]
        if account_id is None:
            return self.store.number("9", 16), user.username
        return self.store.igsid(user, account_id), user.username

    def _viewer_account(self, ctx: _Ctx) -> str | None:
        page = self.store.pages.get(ctx.token.page_id or "")
        return page.instagram_account if page else None

    def render_ig_user(
        self, account: IGAccount, specs: list[FieldSpec] | None, ctx: _Ctx
    ) -> JsonObject:
        def mentioned(kind: str) -> Callable[[Any, FieldSpec, _Ctx], Any]:
            def value(a: IGAccount, f: FieldSpec, c: _Ctx) -> Any:
                wanted = f.modifiers.get("media_id" if kind == "media" else "comment_id")
                if not wanted:
                    raise GraphError(100, f"(#100) The parameter {kind}_id is required")
                return self._mentioned(a, kind, wanted, f.sub, c)

            return value

        fields: Mapping[str, Callable[[Any, FieldSpec, _Ctx], Any]] = {
            "id": lambda a, f, c: a.id,
            "username": lambda a, f, c: a.username,
            "name": lambda a, f, c: a.name,
            "media_count": lambda a, f, c: sum(
                1
                for m in self.store.media.values()
                if m.owner == ("account", a.id) and not m.deleted
            ),
            "mentioned_media": mentioned("media"),
            "mentioned_comment": mentioned("comment"),
        }
        return self._render("IGUser", account, specs, ctx, ("id",), fields)

    def _mentioned(
        self, account: IGAccount, kind: str, object_id: str, sub: list[FieldSpec] | None, ctx: _Ctx
    ) -> JsonObject:
        """``mentioned_media.media_id(…)``/``mentioned_comment.comment_id(…)``: an object that
        @mentions the account, by the id a ``mentions`` webhook gave (IG mentions guide)."""
        s = self.store
        tag = "@" + account.username.lower()
        if kind == "media":
            media = s.media.get(object_id)
            if media is None or media.deleted or tag not in media.caption.lower():
                raise errors.not_found(object_id, instagram=True)
            return self.render_media(media, sub, ctx)
        comment = s.ig_comments.get(object_id)
        if comment is None or comment.deleted or tag not in comment.text.lower():
            raise errors.not_found(object_id, instagram=True)
        return self.render_ig_comment(comment, sub, ctx)

    def _live_ig_comments(self, media: Media) -> list[IGComment]:
        s = self.store
        return [
            c
            for c in s.ig_comments.values()
            if c.media_id == media.id
            and not c.deleted
            and not (c.parent_id and s.ig_comments[c.parent_id].deleted)
        ]

    def render_media(self, media: Media, specs: list[FieldSpec] | None, ctx: _Ctx) -> JsonObject:
        viewer = self._viewer_account(ctx)
        fields: Mapping[str, Callable[[Any, FieldSpec, _Ctx], Any]] = {
            "id": lambda m, f, c: m.id,
            "caption": lambda m, f, c: m.caption or _ABSENT,
            "timestamp": lambda m, f, c: _fb_time(m.created),
            "permalink": lambda m, f, c: f"https://www.instagram.com/p/{m.shortcode}/",
            "comments_count": lambda m, f, c: len(self._live_ig_comments(m)),
            "like_count": lambda m, f, c: 0,
            "media_type": lambda m, f, c: m.media_type,
            "media_product_type": lambda m, f, c: m.media_product_type,
            "username": lambda m, f, c: self._ig_author(m.owner, viewer)[1],
            "owner": lambda m, f, c: {"id": m.owner[1]} if m.owner[0] == "account" else _ABSENT,
            "is_comment_enabled": lambda m, f, c: True,
        }
        return self._render("IGMedia", media, specs, ctx, ("id",), fields)

    def render_ig_comment(
        self, comment: IGComment, specs: list[FieldSpec] | None, ctx: _Ctx
    ) -> JsonObject:
        media = self.store.media[comment.media_id]
        account = media.owner[1] if media.owner[0] == "account" else self._viewer_account(ctx)

        def author(cm: IGComment, f: FieldSpec, c: _Ctx) -> Any:
            if cm.withhold_from:
                return _ABSENT
            ident, username = self._ig_author(cm.author, account)
            return {"id": ident, "username": username}

        def user(cm: IGComment, f: FieldSpec, c: _Ctx) -> Any:
            # "Only returned if the app user created the IG Comment, otherwise username will
            # be returned instead" (IG Comment reference).
            if cm.author[0] == "account" and cm.author[1] == self._viewer_account(c):
                return {"id": cm.author[1]}
            return _ABSENT

        fields: Mapping[str, Callable[[Any, FieldSpec, _Ctx], Any]] = {
            "id": lambda cm, f, c: cm.id,
            "text": lambda cm, f, c: cm.text,
            "timestamp": lambda cm, f, c: _fb_time(cm.created),
            "username": lambda cm, f, c: (
                _ABSENT if cm.withhold_from else self._ig_author(cm.author, account)[1]
            ),
            "from": author,
            "user": user,
            # Recorded as {"id"}; media_product_type when asked (IG Comment reference).
            "media": lambda cm, f, c: (
                {"id": media.id}
                if f.sub is None
                else {"id": media.id, "media_product_type": media.media_product_type}
            ),
            "parent_id": lambda cm, f, c: cm.parent_id or _ABSENT,
            "hidden": lambda cm, f, c: cm.hidden,
            "like_count": lambda cm, f, c: 0,
        }
        return self._render("IGComment", comment, specs, ctx, ("timestamp", "text", "id"), fields)

    # -- edges -----------------------------------------------------------------------------------
    def _listing(self, listing: _Listing, ctx: _Ctx) -> tuple[list[Any], JsonObject | None]:
        """One page of ``listing.items`` (already in order) and its ``paging``, shaped as
        recorded for that style."""
        params = listing.params
        items = listing.items
        since, until = params.get("since"), params.get("until")
        if since:
            low = _moment(since, "since")
            items = [i for i in items if listing.key(i)[0] >= low]
        if until:
            high = _moment(until, "until")
            items = [i for i in items if listing.key(i)[0] <= high]
        raw_limit = params.get("limit", "")
        try:
            limit = int(raw_limit) if raw_limit != "" else listing.default_limit
        except ValueError:
            raise GraphError(100, "(#100) Param limit must be a number") from None
        limit = max(0, min(limit, listing.limit_max))

        def beyond(item: Any, anchor: tuple[int, int]) -> bool:
            k = listing.key(item)
            return k < anchor if listing.descending else k > anchor

        def ahead(item: Any, anchor: tuple[int, int]) -> bool:
            k = listing.key(item)
            return k > anchor if listing.descending else k < anchor

        after = params.get("after")
        before = params.get("before")
        token = params.get("__paging_token")
        if listing.style == "time" and token:
            # The time-based links carry their anchor item in __paging_token (recorded:
            # next = until + token, previous = since + token + __previous).
            after, before = (None, token) if params.get("__previous") else (token, None)
        if after:
            anchor = _uncursor(after)
            start = next((n for n, i in enumerate(items) if beyond(i, anchor)), len(items))
            end = min(start + limit, len(items))
        elif before:
            anchor = _uncursor(before)
            end = next((n for n, i in enumerate(items) if not ahead(i, anchor)), len(items))
            start = max(0, end - limit)
        else:
            start, end = 0, min(limit, len(items))
        page = items[start:end]
        if not page:
            return page, None
        more = end < len(items)
        first, last = _cursor(listing.key(page[0])), _cursor(listing.key(page[-1]))

        def link(**extra: str) -> str:
            return f"{self.url}{listing.link}?{urlencode({**listing.link_params, **extra})}"

        paging: JsonObject = {}
        if listing.style == "ig":
            if not more:
                return page, None
            return page, {"cursors": {"after": last}, "next": link(limit=str(limit), after=last)}
        if listing.style == "time":
            first_at, last_at = listing.key(page[0])[0], listing.key(page[-1])[0]
            paging["previous"] = link(since=str(first_at), __paging_token=first, __previous="1")
            if more:
                paging["next"] = link(until=str(last_at), __paging_token=last)
            return page, paging
        cursors = {"before": first, "after": last}
        if listing.style == "feed" and not more:
            cursors = {"before": first}
        paging["cursors"] = cursors
        if start > 0:
            paging["previous"] = link(limit=str(limit), before=first)
        if more:
            paging["next"] = link(limit=str(limit), after=last)
        return page, paging

    def _list_answer(
        self,
        listing: _Listing,
        ctx: _Ctx,
        render: Callable[[Any], JsonObject],
        summary: JsonObject | None = None,
    ) -> JsonObject:
        page, paging = self._listing(listing, ctx)
        body: JsonObject = {"data": [render(i) for i in page]}
        if paging is not None:
            body["paging"] = paging
        if summary is not None:
            body["summary"] = summary
        return body

    def _page_posts(
        self,
        page: Page,
        specs: list[FieldSpec] | None,
        params: dict[str, str],
        ctx: _Ctx,
        path: str,
        link_params: dict[str, str],
        kinds: tuple[str, ...],
        style: Literal["feed", "time"],
    ) -> JsonObject:
        posts = [
            p
            for p in self.store.posts.values()
            if p.page_id == page.id and p.kind in kinds and not p.deleted
        ]
        posts.sort(key=lambda p: (p.created, p.seq), reverse=True)
        listing = _Listing(
            posts,
            params,
            True,
            style,
            FEED_MAX,
            lambda p: _key(p.created, p.seq),
            path,
            link_params,
        )
        return self._list_answer(listing, ctx, lambda p: self.render_post(p, specs, ctx))

    def _feed(
        self,
        page: Page,
        specs: Any,
        params: dict[str, str],
        ctx: _Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject:
        return self._page_posts(
            page, specs, params, ctx, path, link_params, ("page", "visitor", "tagged"), "feed"
        )

    def _posts(
        self,
        page: Page,
        specs: Any,
        params: dict[str, str],
        ctx: _Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject:
        return self._page_posts(page, specs, params, ctx, path, link_params, ("page",), "time")

    def _visitor_posts(
        self,
        page: Page,
        specs: Any,
        params: dict[str, str],
        ctx: _Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject:
        return self._page_posts(page, specs, params, ctx, path, link_params, ("visitor",), "feed")

    def _tagged(
        self,
        page: Page,
        specs: Any,
        params: dict[str, str],
        ctx: _Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject:
        return self._page_posts(page, specs, params, ctx, path, link_params, ("tagged",), "feed")

    def _comment_list(
        self,
        comments: list[Comment],
        specs: list[FieldSpec] | None,
        params: dict[str, str],
        ctx: _Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject:
        order = params.get("order", "")
        if order not in ("", "chronological", "reverse_chronological"):
            raise GraphError(
                100, "(#100) param order must be one of {CHRONOLOGICAL, REVERSE_CHRONOLOGICAL}"
            )
        descending = order == "reverse_chronological"
        comments = sorted(comments, key=lambda c: (c.created, c.seq), reverse=descending)
        summary = None
        if params.get("summary", "").lower() in ("true", "1", "total_count"):
            # Without filter=stream or an order a recorded summary says "ranked"
            # (restfb v5_0/post-with-comment.json); the stand-in serves it chronologically.
            shown = order or ("chronological" if params.get("filter") == "stream" else "ranked")
            summary = {"order": shown, "total_count": len(comments), "can_comment": True}
        listing = _Listing(
            comments,
            params,
            descending,
            "cursor",
            EDGE_MAX,
            lambda c: _key(c.created, c.seq),
            path,
            link_params,
        )
        return self._list_answer(
            listing, ctx, lambda c: self.render_comment(c, specs, ctx), summary
        )

    def _post_comments(
        self,
        post: Post,
        specs: Any,
        params: dict[str, str],
        ctx: _Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject:
        filter_ = params.get("filter", "toplevel")
        if filter_ not in ("toplevel", "stream"):
            raise GraphError(100, "(#100) param filter must be one of {TOPLEVEL, STREAM}")
        comments = self._live_comments(post)
        if filter_ == "toplevel":
            comments = [c for c in comments if c.parent_id is None]
        return self._comment_list(comments, specs, params, ctx, path, link_params)

    def _replies(
        self,
        comment: Comment,
        specs: Any,
        params: dict[str, str],
        ctx: _Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject:
        return self._comment_list(self._replies_of(comment), specs, params, ctx, path, link_params)

    def _reactions(
        self,
        obj: Any,
        specs: Any,
        params: dict[str, str],
        ctx: _Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject:
        # Reactions are not modelled: none, with the summary a caller asks for.
        body: JsonObject = {"data": []}
        if "summary" in params:
            body["summary"] = {"total_count": 0}
        return body

    def _conversations(
        self,
        page: Page,
        specs: Any,
        params: dict[str, str],
        ctx: _Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject:
        platform = params.get("platform", "messenger")
        if platform != "messenger":
            raise GraphError(100, f"(#100) platform={platform} is not served by this stand-in")
        if page.id != ctx.token.page_id:
            raise GraphError(190, "(#190) This method must be called with a Page Access Token")
        convs = [
            c
            for c in self.store.conversations.values()
            if c.page_id == page.id and c.messages and self._thread_visible(c, ctx)
        ]
        if user := params.get("user_id"):
            convs = [
                c
                for c in convs
                if self.store.scoped_id(self.store.people[c.person_key], page.id) == user
            ]
        convs.sort(key=lambda c: (c.updated, c.seq), reverse=True)
        if params.get("since") or params.get("until"):
            raise GraphError(
                100, "(#100) Time-based pagination is not available for the conversations endpoint"
            )
        listing = _Listing(
            convs,
            params,
            True,
            "cursor",
            EDGE_MAX,
            lambda c: _key(c.updated, c.seq),
            path,
            link_params,
        )
        return self._list_answer(listing, ctx, lambda c: self.render_conversation(c, specs, ctx))

    def _messages(
        self,
        conv: Conversation,
        specs: Any,
        params: dict[str, str],
        ctx: _Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject:
        newest_first = list(reversed(conv.messages))
        detailed = {m.id for m in newest_first[:MESSAGE_DETAILS]}
        listing = _Listing(
            newest_first,
            params,
            True,
            "cursor",
            EDGE_MAX,
            lambda m: _key(m.created, m.seq),
            path,
            link_params,
        )
        return self._list_answer(
            listing, ctx, lambda m: self.render_message(m, specs, ctx, details=m.id in detailed)
        )

    def _ig_media_edge(
        self,
        account: IGAccount,
        specs: Any,
        params: dict[str, str],
        ctx: _Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject:
        media = [
            m
            for m in self.store.media.values()
            if m.owner == ("account", account.id) and not m.deleted
        ]
        media.sort(key=lambda m: (m.created, m.seq), reverse=True)
        listing = _Listing(
            media,
            params,
            True,
            "cursor",
            EDGE_MAX,
            lambda m: _key(m.created, m.seq),
            path,
            link_params,
        )
        return self._list_answer(listing, ctx, lambda m: self.render_media(m, specs, ctx))

    def _ig_tags(
        self,
        account: IGAccount,
        specs: Any,
        params: dict[str, str],
        ctx: _Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject:
        media = [m for m in self.store.media.values() if account.id in m.tagged and not m.deleted]
        media.sort(key=lambda m: (m.created, m.seq), reverse=True)
        listing = _Listing(
            media,
            params,
            True,
            "cursor",
            EDGE_MAX,
            lambda m: _key(m.created, m.seq),
            path,
            link_params,
        )
        return self._list_answer(listing, ctx, lambda m: self.render_media(m, specs, ctx))

    def _ig_comments_edge(
        self,
        media: Media,
        specs: Any,
        params: dict[str, str],
        ctx: _Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject:
        # "Returns only top-level comments", newest first since v3.2, "a maximum of 50".
        top = [c for c in self._live_ig_comments(media) if c.parent_id is None]
        top.sort(key=lambda c: (c.created, c.seq), reverse=True)
        listing = _Listing(
            top,
            params,
            True,
            "ig",
            IG_COMMENTS_MAX,
            lambda c: _key(c.created, c.seq),
            path,
            link_params,
        )
        return self._list_answer(listing, ctx, lambda c: self.render_ig_comment(c, specs, ctx))

    def _ig_replies(
        self,
        comment: IGComment,
        specs: Any,
        params: dict[str, str],
        ctx: _Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject:
        # The order of replies is not documented; oldest first here.
        replies = [
            c
            for c in self.store.ig_comments.values()
            if c.parent_id == comment.id and not c.deleted
        ]
        replies.sort(key=lambda c: (c.created, c.seq))
        listing = _Listing(
            replies,
            params,
            False,
            "ig",
            IG_COMMENTS_MAX,
            lambda c: _key(c.created, c.seq),
            path,
            link_params,
        )
        return self._list_answer(listing, ctx, lambda c: self.render_ig_comment(c, specs, ctx))

    # -- /me/accounts and /debug_token -----------------------------------------------------------
    def _accounts(self, target: str, specs: list[FieldSpec] | None, ctx: _Ctx) -> JsonObject:
        if ctx.token.type != "USER" or target != ctx.token.user_id:
            raise errors.nonexisting_field("accounts", "Page")
        pages = [
            self.store.pages[t.page_id]
            for t in self.store.tokens.values()
            if t.type == "PAGE" and t.user_id == ctx.token.user_id and t.page_id in self.store.pages
        ]
        wanted = specs or [
            FieldSpec(n)
            for n in ("access_token", "category", "category_list", "name", "id", "tasks")
        ]
        data = [self.render_page(p, wanted, ctx) for p in pages]
        body: JsonObject = {"data": data}
        if data:
            body["paging"] = {
                "cursors": {"before": _cursor((0, 0)), "after": _cursor((0, len(data)))}
            }
        return body

    def _debug_token(self, req: Request, ctx: _Ctx) -> JsonObject:
        value = req.query.get("input_token", "")
        token = self.store.tokens.get(value)
        now = self.clock()
        data: JsonObject = {"app_id": self.app_id, "type": "PAGE", "application": self.app_name}
        if token is None:
            data.update(
                is_valid=False,
                error={
                    "code": 190,
                    "message": errors.token_message(None, expired_at=None, now=now),
                },
            )
            return {"data": data}
        expired = token.expires_at is not None and token.expires_at <= now
        valid = token.invalid_subcode is None and not expired
        issued = token.issued_at or now
        data.update(
            type=token.type,
            data_access_expires_at=int((issued + timedelta(days=90)).timestamp()),
            expires_at=0 if token.expires_at is None else int(token.expires_at.timestamp()),
            is_valid=valid,
        )
        if token.type == "PAGE":
            data["profile_id"] = token.page_id
        data["scopes"] = list(token.scopes)
        data["granular_scopes"] = [{"scope": s} for s in token.scopes if s != "public_profile"]
        data["user_id"] = token.user_id
        if not valid:
            subcode = token.invalid_subcode or 463
            data["error"] = {
                "code": 190,
                "message": errors.token_message(subcode, expired_at=token.expires_at, now=now),
                "subcode": subcode,
            }
        return {"data": data}

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
            "X-App-Usage": _header({"call_count": 100, "total_cputime": 100, "total_time": 100}),
            "X-Business-Use-Case-Usage": _header(
                {
                    owner: [
                        {
                            "type": usage,
                            "call_count": 100,
                            "total_cputime": 100,
                            "total_time": 100,
                            "estimated_time_to_regain_access": minutes,
                        }
                    ]
                }
            ),
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


_Edge = Callable[[Any, Any, dict[str, str], _Ctx, str, dict[str, str]], JsonObject]
_ABSENT: Any = object()
_NODE_NAMES = {"IGUser": "IGUser", "IGMedia": "IGMedia", "IGComment": "IGComment"}


def _header(value: Any) -> str:
    """A usage header's JSON, compact as recorded (``{"call_count":2,...}``)."""
    return json.dumps(value, separators=(",", ":"))


def _select(value: Any, spec: FieldSpec) -> Any:
    """``from{id}``: a sub-object keeps the fields asked for."""
    if spec.sub is None or not isinstance(value, dict) or "data" in value:
        return value
    names = {s.name for s in spec.sub}
    return {k: v for k, v in value.items() if k in names}


def _expired_version(version: str) -> bool:
    if not version.startswith("v"):
        return False
    major, dot, minor = version[1:].partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        return False
    return int(major) < int(VERSIONS[0][1:].split(".")[0])
