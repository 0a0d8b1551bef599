"""What the Meta stand-in answers: Graph objects rendered with field expansion, the edges
with their paging, visibility (deleted, other Pages', withheld ``from``), ``/me/accounts`` and
``/debug_token``. :class:`GraphViews` is mixed into :class:`sandbox.meta.api.MetaSandbox`,
which holds the store and calls these under its lock; see that module for what is served.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from sandbox.meta import errors
from sandbox.meta.errors import GraphError
from sandbox.meta.fields import FieldSpec
from sandbox.meta.store import (
    Actor,
    Comment,
    Conversation,
    DirectMessage,
    IGAccount,
    IGComment,
    Media,
    Message,
    Page,
    Post,
    Store,
    Token,
)
from sandbox.meta.tags import page_tags

JsonObject = dict[str, Any]
DEFAULT_LIMIT = 25  # Graph's page size when ``limit`` is not sent
FEED_MAX = 100  # "You can only read a maximum of 100 feed posts with the limit field"
IG_COMMENTS_MAX = 50  # "Returns a maximum of 50 comments per query"
EDGE_MAX = 100  # other edges: not documented; 100 is what clients ask for
MESSAGE_DETAILS = 20  # "you can only get details about the 20 most recent messages"
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
class Ctx:
    """One request: who asks, in which version, and what the paging links carry over."""

    version: str
    token: Token
    query: dict[str, str]
    withhold: bool = False  # the withheld_from fault: act as an app without Advanced Access


def _created(item: Any) -> tuple[int, int]:
    return _key(item.created, item.seq)


@dataclass(frozen=True)
class Paging:
    """How one edge pages: the ``paging`` shape recorded for it, its order (``key``, newest
    first when ``descending``) and the most one page holds."""

    style: Literal["cursor", "feed", "time", "ig"] = "cursor"
    descending: bool = True
    limit_max: int = EDGE_MAX
    key: Callable[[Any], tuple[int, int]] = _created
    default_limit: int = DEFAULT_LIMIT


@dataclass
class Listing:
    """One list to page: its items (in any order) and the parameters that choose the page."""

    items: list[Any]
    params: Mapping[str, str]
    link: str  # the path of the edge, for next/previous
    link_params: dict[str, str]
    paging: Paging = Paging()


Edge = Callable[[Any, Any, dict[str, str], Ctx, str, dict[str, str]], JsonObject]
# What a listed edge lists, from its owner, the request's parameters and context.
Items = Callable[[Any, dict[str, str], Ctx], list[Any]]
Render = Callable[[Any, list[FieldSpec] | None, Ctx], JsonObject]
ABSENT: Any = object()


def _live_thread(comments: Mapping[str, Any], under: Callable[[Any], bool]) -> list[Any]:
    """The Facebook or Instagram comments ``under`` a post or media, and their replies, that
    are not deleted and do not answer a deleted comment."""
    return [
        c
        for c in comments.values()
        if under(c) and not c.deleted and not (c.parent_id and comments[c.parent_id].deleted)
    ]


def _live_replies(comments: Mapping[str, Any], parent_id: str) -> list[Any]:
    """The replies to a Facebook or an Instagram comment that are not deleted."""
    return [c for c in comments.values() if c.parent_id == parent_id and not c.deleted]


def _select(value: Any, spec: FieldSpec) -> Any:
    """``from{id}``: a sub-object keeps the fields asked for."""
    if spec.sub is None or not isinstance(value, dict) or "data" in value:
        return value
    names = {s.name for s in spec.sub}
    return {k: v for k, v in value.items() if k in names}


class GraphViews:
    """The rendering half of the stand-in; the server sets these attributes."""

    store: Store
    clock: Callable[[], datetime]
    app_id: str
    app_name: str
    link_base: str  # the server's URL, for paging links

    # -- visibility ------------------------------------------------------------------------------
    def _tables(self) -> tuple[tuple[str, Mapping[str, Any]], ...]:
        """The store's objects by Graph node type, in the order an id is looked up."""
        s = self.store
        return (
            ("Page", s.pages),
            ("Post", s.posts),
            ("Comment", s.comments),
            ("Conversation", s.conversations),
            ("Message", s.messages),
            ("IGUser", s.ig_accounts),
            ("IGMedia", s.media),
            ("IGComment", s.ig_comments),
        )

    def _object(self, type_: str, object_id: str) -> Any:
        return dict(self._tables())[type_][object_id]

    def _check_visible(self, type_: str, object_id: str, ctx: Ctx) -> None:
        s = self.store
        instagram = type_.startswith("IG")
        gone = errors.not_found(object_id, instagram=instagram)
        obj = self._object(type_, object_id)
        if getattr(obj, "deleted", False):
            raise gone
        if type_ in ("Comment", "IGComment"):
            # A comment goes with its deleted post or media, a reply with its deleted comment.
            comments: Mapping[str, Comment | IGComment]
            comments, owner = (
                (s.comments, s.posts[obj.post_id])
                if type_ == "Comment"
                else (s.ig_comments, s.media[obj.media_id])
            )
            if owner.deleted or (obj.parent_id and comments[obj.parent_id].deleted):
                raise gone
        page_id = ctx.token.page_id
        if type_ in ("Conversation", "Message"):
            conv = obj if type_ == "Conversation" else s.conversations[obj.conversation_id]
            if conv.page_id != page_id or not self._thread_visible(conv, ctx):
                raise gone
            if type_ == "Message" and not self._detailed(obj):
                # "If you query a message that is older than the last 20, you will see an
                # error that the message has been deleted" (Messenger Conversations API).
                raise gone
        if instagram:
            mine = self._viewer_account(ctx)
            if type_ == "IGUser" and object_id != mine:
                raise gone
            if type_ in ("IGMedia", "IGComment"):
                media = obj if type_ == "IGMedia" else s.media[obj.media_id]
                if media.owner != ("account", mine):
                    raise gone

    def _withheld(self, author: Actor, page_id: str, item_switch: bool, ctx: Ctx) -> bool:
        if author[0] != "person":
            return False
        if item_switch or ctx.token.type == "USER":
            # "User information will not be in included in responses unless you make the
            # request with a Page access token" (Page feed reference).
            return True
        person = self.store.people[author[1]]
        page = self.store.pages.get(page_id)
        standard_only = ctx.withhold or (page is not None and not page.advanced_access)
        return standard_only and not person.has_role

    def _thread_visible(self, conv: Conversation, ctx: Ctx) -> bool:
        # "Advanced Access is required to access conversations between your business and
        # people who do not have a role on your messaging app" (Messenger Conversations API).
        return not self._withheld(("person", conv.person_key), conv.page_id, False, ctx)

    # -- rendering -------------------------------------------------------------------------------
    def _render(
        self,
        type_: str,
        obj: Any,
        specs: list[FieldSpec] | None,
        ctx: Ctx,
        defaults: tuple[str, ...],
        fields: Mapping[str, Callable[[Any, FieldSpec, Ctx], Any]],
    ) -> JsonObject:
        wanted = specs if specs is not None else [FieldSpec(n) for n in defaults]
        out: JsonObject = {}
        edges = self._edges(type_)
        for spec in wanted:
            if spec.name in fields:
                value = fields[spec.name](obj, spec, ctx)
                if value is not ABSENT:
                    out[spec.key] = _select(value, spec)
            elif spec.name in edges:
                out[spec.key] = self._expand(type_, obj, spec, ctx, edges[spec.name])
            elif spec.name not in _UNMODELLED.get(type_, frozenset()):
                raise errors.nonexisting_field(spec.name, type_)
        if (
            "id" in fields
            and "id" not in out
            and fields["id"](obj, FieldSpec("id"), ctx) is not ABSENT
        ):
            out["id"] = obj.id  # Graph adds the id of a node whatever was asked
        return out

    def _expand(self, type_: str, obj: Any, spec: FieldSpec, ctx: Ctx, edge: Edge) -> JsonObject:
        params = {k: v for k, v in spec.modifiers.items() if k != "as"}
        if spec.sub_text:
            params["fields"] = spec.sub_text
        link_params = dict(params)
        if "access_token" in ctx.query:
            link_params = {"access_token": ctx.query["access_token"], **link_params}
        path = f"/{ctx.version}/{obj.id}/{spec.name}"
        return edge(obj, spec.sub, params, ctx, path, link_params)

    def _edges(self, type_: str) -> Mapping[str, Edge]:
        table: dict[str, dict[str, Edge]] = {
            "Page": {
                "feed": self._page_posts(("page", "visitor", "tagged"), "feed"),
                "posts": self._page_posts(("page",), "time"),
                "visitor_posts": self._page_posts(("visitor",), "feed"),
                "tagged": self._page_posts(("tagged",), "feed"),
                # Most recently active first.
                "conversations": self._list_edge(
                    self._conversations,
                    self.render_conversation,
                    Paging(key=lambda c: _key(c.updated, c.seq)),
                ),
            },
            "Post": {
                "comments": self._comment_edge(self._post_comments),
                "reactions": self._reactions,
            },
            "Comment": {
                "comments": self._comment_edge(self._replies),
                "reactions": self._reactions,
            },
            "Conversation": {
                "messages": self._list_edge(
                    lambda conv, params, ctx: conv.messages,
                    lambda m, specs, ctx: self.render_message(
                        m, specs, ctx, details=self._detailed(m)
                    ),
                )
            },
            "IGUser": {
                "media": self._list_edge(self._ig_media, self.render_media),
                "tags": self._list_edge(self._ig_tags, self.render_media),
            },
            # "Returns only top-level comments", newest first since v3.2, "a maximum of 50".
            "IGMedia": {
                "comments": self._list_edge(
                    self._ig_comments, self.render_ig_comment, Paging("ig", True, IG_COMMENTS_MAX)
                )
            },
            # The order of replies is not documented; oldest first here.
            "IGComment": {
                "replies": self._list_edge(
                    self._ig_replies, self.render_ig_comment, Paging("ig", False, IG_COMMENTS_MAX)
                )
            },
        }
        return table.get(type_, {})

    def _node(self, object_id: str, specs: list[FieldSpec] | None, ctx: Ctx) -> JsonObject:
        if object_id == ctx.token.user_id and ctx.token.type == "USER":
            return {"name": self._user_name(ctx.token.user_id), "id": object_id}
        for type_, table in self._tables():
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
        self, type_: str, obj: Any, specs: list[FieldSpec] | None, ctx: Ctx
    ) -> JsonObject:
        renderers: Mapping[str, Callable[[Any, list[FieldSpec] | None, Ctx], JsonObject]] = {
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

    def render_page(self, page: Page, specs: list[FieldSpec] | None, ctx: Ctx) -> JsonObject:
        fields: Mapping[str, Callable[[Any, FieldSpec, Ctx], Any]] = {
            "id": lambda p, f, c: p.id,
            "name": lambda p, f, c: p.name,
            "category": lambda p, f, c: p.category,
            "category_list": lambda p, f, c: [{"id": "2201", "name": p.category}],
            "instagram_business_account": lambda p, f, c: (
                {"id": p.instagram_account} if p.instagram_account else ABSENT
            ),
            "tasks": lambda p, f, c: [
                "ANALYZE",
                "ADVERTISE",
                "MESSAGING",
                "MODERATE",
                "CREATE_CONTENT",
                "MANAGE",
            ],
            "access_token": lambda p, f, c: self._page_token_of(p.id, c.token) or ABSENT,
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

    def render_post(self, post: Post, specs: list[FieldSpec] | None, ctx: Ctx) -> JsonObject:
        def author(p: Post, f: FieldSpec, c: Ctx) -> Any:
            if p.kind == "tagged" and p.author[0] == "person":
                # "For user posts, the from field will only be returned if the user making
                # the request is the same user who created the post" (Page tagged).
                return ABSENT
            if self._withheld(p.author, p.page_id, p.withhold_from, c):
                return ABSENT
            return self._from(p.author, p.page_id)

        status_type = {
            "page": "mobile_status_update",
            "visitor": "wall_post",
            "tagged": "mobile_status_update",
        }
        fields: Mapping[str, Callable[[Any, FieldSpec, Ctx], Any]] = {
            "id": lambda p, f, c: p.id,
            "message": lambda p, f, c: p.message or ABSENT,
            "created_time": lambda p, f, c: _fb_time(p.created),
            "updated_time": lambda p, f, c: _fb_time(p.updated),
            "from": author,
            "permalink_url": lambda p, f, c: self._permalink(p),
            "status_type": lambda p, f, c: status_type[p.kind],
            "is_published": lambda p, f, c: True,
            "tagged_time": lambda p, f, c: _fb_time(p.created) if p.kind == "tagged" else ABSENT,
            "message_tags": lambda p, f, c: (
                page_tags(p.message, self.store.pages.values()) or ABSENT
            ),
        }
        return self._render("Post", post, specs, ctx, ("created_time", "message", "id"), fields)

    def render_comment(
        self, comment: Comment, specs: list[FieldSpec] | None, ctx: Ctx
    ) -> JsonObject:
        s = self.store
        post = s.posts[comment.post_id]

        def author(cm: Comment, f: FieldSpec, c: Ctx) -> Any:
            if self._withheld(cm.author, post.page_id, cm.withhold_from, c):
                return ABSENT
            return self._from(cm.author, post.page_id)

        def parent(cm: Comment, f: FieldSpec, c: Ctx) -> Any:
            if cm.parent_id is None:
                return ABSENT
            return self.render_comment(s.comments[cm.parent_id], f.sub, c)

        def permalink(cm: Comment, f: FieldSpec, c: Ctx) -> str:
            base = self._permalink(post) + "?comment_id="
            link = base + (cm.parent_id or cm.id).split("_", 1)[1]
            if cm.parent_id:
                link += "&reply_comment_id=" + cm.id.split("_", 1)[1]
            return link

        fields: Mapping[str, Callable[[Any, FieldSpec, Ctx], Any]] = {
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
            "message_tags": lambda cm, f, c: page_tags(cm.message, s.pages.values()) or ABSENT,
        }
        return self._render(
            "Comment", comment, specs, ctx, ("created_time", "from", "message", "id"), fields
        )

    def _live_comments(self, post: Post) -> list[Comment]:
        return _live_thread(self.store.comments, lambda c: c.post_id == post.id)

    def _replies_of(self, comment: Comment) -> list[Comment]:
        return _live_replies(self.store.comments, comment.id)

    def render_conversation(
        self, conv: Conversation, specs: list[FieldSpec] | None, ctx: Ctx
    ) -> JsonObject:
        person: Actor = ("person", conv.person_key)
        page: Actor = ("page", conv.page_id)

        def parties(cv: Conversation, f: FieldSpec, c: Ctx) -> JsonObject:
            return {
                "data": [
                    self._messenger_party(person, cv.page_id),
                    self._messenger_party(page, cv.page_id),
                ]
            }

        fields: Mapping[str, Callable[[Any, FieldSpec, Ctx], Any]] = {
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
        self, message: Message, specs: list[FieldSpec] | None, ctx: Ctx, *, details: bool = True
    ) -> JsonObject:
        conv = self.store.conversations[message.conversation_id]
        other: Actor = (
            ("page", conv.page_id) if message.sender[0] == "person" else ("person", conv.person_key)
        )
        return self._render_message(
            "Message",
            message,
            lambda who: self._messenger_party(who, conv.page_id),
            other,
            specs,
            ctx,
            details=details,
            tags={"data": [{"name": "inbox"}, {"name": "source:mobile"}]},
        )

    def _render_message(
        self,
        type_name: str,
        message: Message | DirectMessage,
        party: Callable[[Actor], JsonObject],
        other: Actor,
        specs: list[FieldSpec] | None,
        ctx: Ctx,
        *,
        details: bool,
        tags: JsonObject | None = None,
    ) -> JsonObject:
        """A Messenger or Instagram Direct message: Graph gives both the same fields (an
        Instagram message has no ``tags``); without ``details`` (past its thread's 20 newest)
        only its id and time."""

        def detail(value: Callable[[Any], Any]) -> Callable[[Any, FieldSpec, Ctx], Any]:
            return lambda m, f, c: value(m) if details else ABSENT

        fields: dict[str, Callable[[Any, FieldSpec, Ctx], Any]] = {
            "id": lambda m, f, c: m.id,
            "created_time": lambda m, f, c: _fb_time(m.created),
            "from": detail(lambda m: party(m.sender)),
            "to": detail(lambda m: {"data": [party(other)]}),
            "message": detail(lambda m: m.text),
        }
        if tags is not None:
            fields["tags"] = detail(lambda m: tags)
        return self._render(type_name, message, specs, ctx, ("id", "created_time"), fields)

    # Instagram --------------------------------------------------------------------------------
    def _ig_author(self, author: Actor, account_id: str | None) -> tuple[str, str]:
        """(id, username) of an Instagram author as the account ``account_id`` sees them."""
        if author[0] == "account":
            account = self.store.ig_accounts[author[1]]
            return account.id, account.username
        user = self.store.ig_users[author[1]]
        # An IGSID belongs to one professional account; "" stands for none of ours.
        return self.store.igsid(user, account_id or ""), user.username

    def _viewer_account(self, ctx: Ctx) -> str | None:
        if ctx.token.type == "INSTAGRAM":
            return ctx.token.user_id  # Instagram Login: the token is the account's own
        page = self.store.pages.get(ctx.token.page_id or "")
        return page.instagram_account if page else None

    def render_ig_user(
        self, account: IGAccount, specs: list[FieldSpec] | None, ctx: Ctx
    ) -> JsonObject:
        def mentioned(kind: str) -> Callable[[Any, FieldSpec, Ctx], Any]:
            def value(a: IGAccount, f: FieldSpec, c: Ctx) -> Any:
                wanted = f.modifiers.get("media_id" if kind == "media" else "comment_id")
                if not wanted:
                    raise GraphError(100, f"(#100) The parameter {kind}_id is required")
                return self._mentioned(a, kind, wanted, f.sub, c)

            return value

        fields: dict[str, Callable[[Any, FieldSpec, Ctx], Any]] = {
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
        if ctx.token.type == "INSTAGRAM":
            # graph.instagram.com's /me names the professional account's id as user_id
            # [doc: Instagram API with Instagram Login, get started]; Graph's IGUser has none.
            fields["user_id"] = lambda a, f, c: a.id
        return self._render("IGUser", account, specs, ctx, ("id",), fields)

    def _mentioned(
        self, account: IGAccount, kind: str, object_id: str, sub: list[FieldSpec] | None, ctx: Ctx
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
        return _live_thread(self.store.ig_comments, lambda c: c.media_id == media.id)

    def render_media(self, media: Media, specs: list[FieldSpec] | None, ctx: Ctx) -> JsonObject:
        viewer = self._viewer_account(ctx)
        fields: Mapping[str, Callable[[Any, FieldSpec, Ctx], Any]] = {
            "id": lambda m, f, c: m.id,
            "caption": lambda m, f, c: m.caption or ABSENT,
            "timestamp": lambda m, f, c: _fb_time(m.created),
            "permalink": lambda m, f, c: f"https://www.instagram.com/p/{m.shortcode}/",
            "comments_count": lambda m, f, c: len(self._live_ig_comments(m)),
            "like_count": lambda m, f, c: 0,
            "media_type": lambda m, f, c: m.media_type,
            "media_product_type": lambda m, f, c: m.media_product_type,
            "username": lambda m, f, c: self._ig_author(m.owner, viewer)[1],
            "owner": lambda m, f, c: {"id": m.owner[1]} if m.owner[0] == "account" else ABSENT,
            "is_comment_enabled": lambda m, f, c: True,
        }
        return self._render("IGMedia", media, specs, ctx, ("id",), fields)

    def render_ig_comment(
        self, comment: IGComment, specs: list[FieldSpec] | None, ctx: Ctx
    ) -> JsonObject:
        # Beside render_comment, not one with it: Graph's IG Comment has other fields (text,
        # timestamp, hidden, from{id,username}, no parent or permalink); _render is shared.
        media = self.store.media[comment.media_id]
        account = media.owner[1] if media.owner[0] == "account" else self._viewer_account(ctx)

        def author(cm: IGComment, f: FieldSpec, c: Ctx) -> Any:
            if cm.withhold_from:
                return ABSENT
            ident, username = self._ig_author(cm.author, account)
            return {"id": ident, "username": username}

        def user(cm: IGComment, f: FieldSpec, c: Ctx) -> Any:
            # "Only returned if the app user created the IG Comment, otherwise username will
            # be returned instead" (IG Comment reference).
            if cm.author[0] == "account" and cm.author[1] == self._viewer_account(c):
                return {"id": cm.author[1]}
            return ABSENT

        fields: Mapping[str, Callable[[Any, FieldSpec, Ctx], Any]] = {
            "id": lambda cm, f, c: cm.id,
            "text": lambda cm, f, c: cm.text,
            "timestamp": lambda cm, f, c: _fb_time(cm.created),
            "username": lambda cm, f, c: (
                ABSENT if cm.withhold_from else self._ig_author(cm.author, account)[1]
            ),
            "from": author,
            "user": user,
            # Recorded as {"id"}; media_product_type when asked (IG Comment reference).
            "media": lambda cm, f, c: (
                {"id": media.id}
                if f.sub is None
                else {"id": media.id, "media_product_type": media.media_product_type}
            ),
            "parent_id": lambda cm, f, c: cm.parent_id or ABSENT,
            "hidden": lambda cm, f, c: cm.hidden,
            "like_count": lambda cm, f, c: 0,
        }
        return self._render("IGComment", comment, specs, ctx, ("timestamp", "text", "id"), fields)

    # -- edges -----------------------------------------------------------------------------------
    def _listing(self, listing: Listing, ctx: Ctx) -> tuple[list[Any], JsonObject | None]:
        """One page of ``listing.items`` and its ``paging``, shaped as recorded for that
        style."""
        params, shape = listing.params, listing.paging
        items = sorted(listing.items, key=shape.key, reverse=shape.descending)
        since, until = params.get("since"), params.get("until")
        if since:
            low = _moment(since, "since")
            items = [i for i in items if shape.key(i)[0] >= low]
        if until:
            high = _moment(until, "until")
            items = [i for i in items if shape.key(i)[0] <= high]
        raw_limit = params.get("limit", "")
        try:
            limit = int(raw_limit) if raw_limit != "" else shape.default_limit
        except ValueError:
            raise GraphError(100, "(#100) Param limit must be a number") from None
        limit = max(0, min(limit, shape.limit_max))

        def beyond(item: Any, anchor: tuple[int, int]) -> bool:
            k = shape.key(item)
            return k < anchor if shape.descending else k > anchor

        def ahead(item: Any, anchor: tuple[int, int]) -> bool:
            k = shape.key(item)
            return k > anchor if shape.descending else k < anchor

        after = params.get("after")
        before = params.get("before")
        token = params.get("__paging_token")
        if shape.style == "time" and token:
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
        first, last = _cursor(shape.key(page[0])), _cursor(shape.key(page[-1]))

        def link(**extra: str) -> str:
            return f"{self.link_base}{listing.link}?{urlencode({**listing.link_params, **extra})}"

        paging: JsonObject = {}
        if shape.style == "ig":
            if not more:
                return page, None
            return page, {"cursors": {"after": last}, "next": link(limit=str(limit), after=last)}
        if shape.style == "time":
            first_at, last_at = shape.key(page[0])[0], shape.key(page[-1])[0]
            paging["previous"] = link(since=str(first_at), __paging_token=first, __previous="1")
            if more:
                paging["next"] = link(until=str(last_at), __paging_token=last)
            return page, paging
        cursors = {"before": first, "after": last}
        if shape.style == "feed" and not more:
            cursors = {"before": first}
        paging["cursors"] = cursors
        if start > 0:
            paging["previous"] = link(limit=str(limit), before=first)
        if more:
            paging["next"] = link(limit=str(limit), after=last)
        return page, paging

    def _list_answer(
        self,
        listing: Listing,
        ctx: Ctx,
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

    def _list_edge(
        self,
        items: Items,
        render: Render,
        paging: Paging | Callable[[Mapping[str, str]], Paging] = Paging(),
        summary: Callable[[list[Any], Mapping[str, str]], JsonObject | None] | None = None,
    ) -> Edge:
        """An edge that lists ``items`` of its owner, each drawn by ``render``, paged as
        ``paging`` (or ``paging`` of the request's parameters) says, with the ``summary`` of
        all its items when there is one."""

        def edge(
            owner: Any,
            specs: Any,
            params: dict[str, str],
            ctx: Ctx,
            path: str,
            link_params: dict[str, str],
        ) -> JsonObject:
            listed = items(owner, params, ctx)
            chosen = paging if isinstance(paging, Paging) else paging(params)
            listing = Listing(listed, params, path, link_params, chosen)
            return self._list_answer(
                listing,
                ctx,
                lambda i: render(i, specs, ctx),
                None if summary is None else summary(listed, params),
            )

        return edge

    def _page_posts(self, kinds: tuple[str, ...], style: Literal["feed", "time"]) -> Edge:
        """``/feed``, ``/posts``, ``/visitor_posts``, ``/tagged``: the Page's posts of those
        kinds, newest first, in that paging style (``/posts`` pages by time, as recorded)."""

        def posts(page: Page, params: dict[str, str], ctx: Ctx) -> list[Post]:
            return [
                p
                for p in self.store.posts.values()
                if p.page_id == page.id and p.kind in kinds and not p.deleted
            ]

        return self._list_edge(posts, self.render_post, Paging(style, limit_max=FEED_MAX))

    def _comment_edge(self, items: Items) -> Edge:
        """``/comments`` of a post or a comment: ``order`` and ``summary`` as Graph reads them."""

        def ordered(owner: Any, params: dict[str, str], ctx: Ctx) -> list[Comment]:
            comments: list[Comment] = items(owner, params, ctx)  # a bad filter is refused first
            if params.get("order", "") not in ("", "chronological", "reverse_chronological"):
                raise GraphError(
                    100, "(#100) param order must be one of {CHRONOLOGICAL, REVERSE_CHRONOLOGICAL}"
                )
            return comments

        def summary(comments: list[Any], params: Mapping[str, str]) -> JsonObject | None:
            if params.get("summary", "").lower() not in ("true", "1", "total_count"):
                return None
            # Without filter=stream or an order a recorded summary says "ranked"
            # (restfb v5_0/post-with-comment.json); the stand-in serves it chronologically.
            stream = params.get("filter") == "stream"
            shown = params.get("order") or ("chronological" if stream else "ranked")
            return {"order": shown, "total_count": len(comments), "can_comment": True}

        return self._list_edge(
            ordered,
            self.render_comment,
            lambda params: Paging(descending=params.get("order") == "reverse_chronological"),
            summary,
        )

    def _post_comments(self, post: Post, params: dict[str, str], ctx: Ctx) -> list[Comment]:
        filter_ = params.get("filter", "toplevel")
        if filter_ not in ("toplevel", "stream"):
            raise GraphError(100, "(#100) param filter must be one of {TOPLEVEL, STREAM}")
        # "/comments ... returns empty data if you read it with a User access token".
        comments = [] if ctx.token.type == "USER" else self._live_comments(post)
        if filter_ == "toplevel":
            comments = [c for c in comments if c.parent_id is None]
        return comments

    def _replies(self, comment: Comment, params: dict[str, str], ctx: Ctx) -> list[Comment]:
        return [] if ctx.token.type == "USER" else self._replies_of(comment)

    def _reactions(
        self,
        obj: Any,
        specs: Any,
        params: dict[str, str],
        ctx: Ctx,
        path: str,
        link_params: dict[str, str],
    ) -> JsonObject:
        # Reactions are not modelled: none, with the summary a caller asks for.
        body: JsonObject = {"data": []}
        if "summary" in params:
            body["summary"] = {"total_count": 0}
        return body

    def _conversations(self, page: Page, params: dict[str, str], ctx: Ctx) -> list[Conversation]:
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
        if params.get("since") or params.get("until"):
            raise GraphError(
                100, "(#100) Time-based pagination is not available for the conversations endpoint"
            )
        return convs

    def _detailed(self, message: Message) -> bool:
        """Whether Graph still gives the message's details: one of the thread's 20 newest."""
        conv = self.store.conversations[message.conversation_id]
        return message in conv.messages[-MESSAGE_DETAILS:]

    def _ig_media(self, account: IGAccount, params: dict[str, str], ctx: Ctx) -> list[Media]:
        return [
            m
            for m in self.store.media.values()
            if m.owner == ("account", account.id) and not m.deleted
        ]

    def _ig_tags(self, account: IGAccount, params: dict[str, str], ctx: Ctx) -> list[Media]:
        return [m for m in self.store.media.values() if account.id in m.tagged and not m.deleted]

    def _ig_comments(self, media: Media, params: dict[str, str], ctx: Ctx) -> list[IGComment]:
        return [c for c in self._live_ig_comments(media) if c.parent_id is None]

    def _ig_replies(self, comment: IGComment, params: dict[str, str], ctx: Ctx) -> list[IGComment]:
        return _live_replies(self.store.ig_comments, comment.id)

    # -- /me/accounts and /debug_token -----------------------------------------------------------
    def _accounts(self, target: str, specs: list[FieldSpec] | None, ctx: Ctx) -> JsonObject:
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

    def _debug_token(self, query: Mapping[str, str], ctx: Ctx) -> JsonObject:
        value = query.get("input_token", "")
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
        data_access = token.data_access_expires_at or issued + timedelta(days=90)
        data.update(
            type=token.type,
            data_access_expires_at=int(data_access.timestamp()),
            expires_at=0 if token.expires_at is None else int(token.expires_at.timestamp()),
            is_valid=valid,
        )
        if token.type == "PAGE":
            data["profile_id"] = token.page_id
        data["scopes"] = list(token.scopes)
        data["granular_scopes"] = [
            {"scope": s, **({"target_ids": list(token.targets[s])} if s in token.targets else {})}
            for s in token.scopes
            if s != "public_profile"
        ]
        data["user_id"] = token.user_id
        if not valid:
            subcode = token.invalid_subcode or 463
            data["error"] = {
                "code": 190,
                "message": errors.token_message(subcode, expired_at=token.expires_at, now=now),
                "subcode": subcode,
            }
        return {"data": data}
