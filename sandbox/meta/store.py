"""The world behind the Meta stand-in: Pages, people, posts, comments, Messenger threads,
Instagram accounts, media and comments, and the tokens that read them.

Identity as Meta hands it out: a person has a different id on every Page (the Page-scoped id,
the same number in comments and in Messenger on that Page) and a different IGSID for every
Instagram account; nobody has a handle on Facebook, and an Instagram username can change.
The store assigns those ids the first time a person acts on a Page or an account.

Every object carries a ``seq`` (the order it was made) beside its time, so items made in the
same second keep a stable order. Deleting marks an object; the API then answers it as gone.
The caller holds the server's lock (the helpers on :class:`sandbox.meta.api.MetaSandbox` do).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

# Who wrote something: the Page itself, a Facebook person, an Instagram account of ours, or an
# Instagram person. (kind, key): ("page", page id), ("person", person key), ("account", IG
# user id), ("iguser", IG person key).
Actor = tuple[Literal["page", "person", "account", "iguser"], str]


@dataclass
class Person:
    """A Facebook user. ``has_role``: an admin, developer or tester of the app, whom an app
    with Standard Access still sees."""

    key: str
    name: str
    has_role: bool = False
    ids: dict[str, str] = field(default_factory=dict)  # page id -> Page-scoped id
    uid: str = ""  # the id of their own timeline (posts that tag a Page live there)


@dataclass
class Page:
    id: str
    name: str
    category: str = "Product/service"
    # The app has Advanced Access (App Review done): people without a role on the app are
    # visible. Without it, Graph leaves out ``from`` on their comments and posts and does not
    # list their Messenger threads (research/meta.md §0.6, §1d, §1f.5).
    advanced_access: bool = True
    instagram_account: str | None = None
    # The apps subscribed to the Page's webhooks: app id -> (app name, subscribed fields).
    subscribed_apps: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)


@dataclass
class Post:
    id: str
    page_id: str  # the Page it is on, or, for a post that tags a Page, the Page tagged
    author: Actor
    message: str
    created: datetime
    updated: datetime
    seq: int
    kind: Literal["page", "visitor", "tagged"] = "page"
    deleted: bool = False
    withhold_from: bool = False


@dataclass
class Comment:
    id: str
    post_id: str
    parent_id: str | None  # the top-level comment a reply belongs to
    author: Actor
    message: str
    created: datetime
    seq: int
    deleted: bool = False
    hidden: bool = False
    withhold_from: bool = False


@dataclass
class Message:
    id: str
    conversation_id: str
    sender: Actor
    text: str
    created: datetime
    seq: int


@dataclass
class Conversation:
    id: str
    page_id: str
    person_key: str
    created: datetime
    seq: int
    messages: list[Message] = field(default_factory=list)  # oldest first
    link_id: str = ""

    @property
    def updated(self) -> datetime:
        return self.messages[-1].created if self.messages else self.created


@dataclass
class DirectMessage:
    id: str
    thread_id: str
    sender: Actor  # ("account", IG user id) or ("iguser", IG person key)
    text: str
    created: datetime
    seq: int


@dataclass
class DirectThread:
    """An Instagram Direct conversation between one of our accounts and an Instagram person."""

    id: str
    account_id: str
    user_key: str
    created: datetime
    seq: int
    messages: list[DirectMessage] = field(default_factory=list)  # oldest first

    @property
    def updated(self) -> datetime:
        return self.messages[-1].created if self.messages else self.created


@dataclass
class IGAccount:
    """An Instagram professional account linked to one of our Pages."""

    id: str
    username: str
    name: str
    page_id: str


@dataclass
class IGUser:
    """An Instagram person; ``ids``: the IGSID per professional account."""

    key: str
    username: str
    ids: dict[str, str] = field(default_factory=dict)


@dataclass
class Media:
    id: str
    owner: Actor  # ("account", id) for ours, ("iguser", key) for someone else's
    caption: str
    created: datetime
    seq: int
    shortcode: str
    media_type: str = "IMAGE"
    media_product_type: str = "FEED"
    tagged: set[str] = field(default_factory=set)  # our account ids tagged in it
    deleted: bool = False


@dataclass
class IGComment:
    id: str
    media_id: str
    parent_id: str | None
    author: Actor
    text: str
    created: datetime
    seq: int
    deleted: bool = False
    hidden: bool = False
    withhold_from: bool = False


@dataclass
class Token:
    value: str
    # INSTAGRAM: an Instagram User token (Instagram Login); ``user_id`` is then the account's.
    type: Literal["PAGE", "USER", "INSTAGRAM"]
    user_id: str  # the person who issued it (a Page admin)
    page_id: str | None = None
    scopes: tuple[str, ...] = ()
    expires_at: datetime | None = None  # None: never (a long-lived Page token)
    invalid_subcode: int | None = None  # 460, 492, ...: invalidated for good
    issued_at: datetime | None = None
    # A permission granted for these Page or Instagram account ids only (debug_token's
    # granular_scopes target_ids); one not named here applies to all.
    targets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # When the app's access to the data lapses; None: 90 days after issue.
    data_access_expires_at: datetime | None = None


PAGE_SCOPES = (
    "pages_show_list",
    "pages_read_engagement",
    "pages_read_user_content",
    "pages_manage_metadata",
    "pages_messaging",
    "instagram_basic",
    "instagram_manage_comments",
    "instagram_manage_messages",
    "public_profile",
)
# Instagram Login's scopes ("the old business_* values replaced", research/meta.md §2).
INSTAGRAM_LOGIN_SCOPES = (
    "instagram_business_basic",
    "instagram_business_manage_comments",
    "instagram_business_manage_messages",
)


def _top_level(
    comments: Mapping[str, Comment] | Mapping[str, IGComment], parent_id: str | None
) -> str | None:
    """The comment a reply belongs to: Facebook shows two levels, and on Instagram "replies to
    a reply attach to the top-level comment" (research/meta.md §2)."""
    if parent_id is None:
        return None
    parent = comments[parent_id]
    return parent.parent_id or parent.id


class Store:
    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.pages: dict[str, Page] = {}
        self.people: dict[str, Person] = {}
        self.posts: dict[str, Post] = {}
        self.comments: dict[str, Comment] = {}
        self.conversations: dict[str, Conversation] = {}
        self.messages: dict[str, Message] = {}
        self.ig_accounts: dict[str, IGAccount] = {}
        self.ig_users: dict[str, IGUser] = {}
        self.media: dict[str, Media] = {}
        self.ig_comments: dict[str, IGComment] = {}
        self.direct_threads: dict[str, DirectThread] = {}
        self.direct_messages: dict[str, DirectMessage] = {}
        self.tokens: dict[str, Token] = {}
        self._seq = itertools.count(1)
        self._numbers = itertools.count(1)
        self._by_scoped: dict[str, tuple[str, str]] = {}  # scoped id -> (person key, page id)
        self._by_igsid: dict[str, tuple[str, str]] = {}  # IGSID -> (IG person key, account id)

    # -- ids -----------------------------------------------------------------------------
    def seq(self) -> int:
        return next(self._seq)

    def number(self, prefix: str, digits: int) -> str:
        """A fresh numeric id of ``digits`` digits starting with ``prefix``."""
        n = next(self._numbers)
        return prefix + str(n).rjust(digits - len(prefix), "0")

    def scoped_id(self, person: Person, page_id: str) -> str:
        if page_id not in person.ids:
            person.ids[page_id] = self.number("2", 16)
            self._by_scoped[person.ids[page_id]] = (person.key, page_id)
        return person.ids[page_id]

    def igsid(self, user: IGUser, account_id: str) -> str:
        if account_id not in user.ids:
            user.ids[account_id] = self.number("9", 16)
            self._by_igsid[user.ids[account_id]] = (user.key, account_id)
        return user.ids[account_id]

    def person_by_scoped(self, scoped: str) -> tuple[Person, str] | None:
        hit = self._by_scoped.get(scoped)
        return None if hit is None else (self.people[hit[0]], hit[1])

    def when(self, at: datetime | None) -> datetime:
        return (at or self.clock()).replace(microsecond=0)

    # -- Facebook ------------------------------------------------------------------------
    def add_page(self, name: str, *, advanced_access: bool = True) -> Page:
        page = Page(self.number("1", 15), name, advanced_access=advanced_access)
        self.pages[page.id] = page
        return page

    def add_person(self, name: str, *, has_role: bool = False) -> Person:
        key = f"p{len(self.people) + 1}"
        person = Person(key, name, has_role, uid=self.number("1", 15))
        self.people[key] = person
        return person

    def add_post(
        self,
        page_id: str,
        message: str,
        *,
        author: Actor | None = None,
        kind: Literal["page", "visitor", "tagged"] = "page",
        at: datetime | None = None,
    ) -> Post:
        moment = self.when(at)
        who = author or ("page", page_id)
        # A post that tags a Page lives on its author's own timeline.
        tagging = kind == "tagged" and who[0] == "person"
        owner = self.people[who[1]].uid if tagging else page_id
        post = Post(
            f"{owner}_{self.number('1', 17)}",
            page_id,
            who,
            message,
            moment,
            moment,
            self.seq(),
            kind,
        )
        self.posts[post.id] = post
        return post

    def add_comment(
        self,
        post_id: str,
        message: str,
        *,
        author: Actor,
        parent_id: str | None = None,
        at: datetime | None = None,
        withhold_from: bool = False,
    ) -> Comment:
        post = self.posts[post_id]
        parent_id = _top_level(self.comments, parent_id)
        moment = self.when(at)
        suffix = post.id.split("_", 1)[1]
        comment = Comment(
            f"{suffix}_{self.number('1', 17)}",
            post_id,
            parent_id,
            author,
            message,
            moment,
            self.seq(),
            withhold_from=withhold_from,
        )
        self.comments[comment.id] = comment
        # "The time the post was last updated, which occurs when the post was created,
        # edited, or a User comments on a post" (Graph reference, Page feed).
        post.updated = max(post.updated, moment)
        return comment

    def conversation_with(self, page_id: str, person: Person) -> Conversation:
        for conv in self.conversations.values():
            if conv.page_id == page_id and conv.person_key == person.key:
                return conv
        self.scoped_id(person, page_id)
        conv = Conversation(
            f"t_{self.number('1', 15)}",
            page_id,
            person.key,
            self.when(None),
            self.seq(),
            link_id=self.number("2", 16),
        )
        self.conversations[conv.id] = conv
        return conv

    def add_message(
        self, conv: Conversation, text: str, *, from_page: bool = False, at: datetime | None = None
    ) -> Message:
        sender: Actor = ("page", conv.page_id) if from_page else ("person", conv.person_key)
        message = Message(
            "m_" + secrets.token_urlsafe(48)[:64], conv.id, sender, text, self.when(at), self.seq()
        )
        conv.messages.append(message)
        conv.messages.sort(key=lambda m: (m.created, m.seq))
        self.messages[message.id] = message
        return message

    # -- Instagram -----------------------------------------------------------------------
    def add_ig_account(self, page_id: str, username: str, name: str = "") -> IGAccount:
        account = IGAccount(self.number("17841", 17), username, name or username, page_id)
        self.ig_accounts[account.id] = account
        self.pages[page_id].instagram_account = account.id
        return account

    def add_ig_user(self, username: str) -> IGUser:
        key = f"u{len(self.ig_users) + 1}"
        self.ig_users[key] = IGUser(key, username)
        return self.ig_users[key]

    def add_media(
        self,
        owner: Actor,
        caption: str,
        *,
        tagged: set[str] | None = None,
        at: datetime | None = None,
    ) -> Media:
        media = Media(
            self.number("178", 17),
            owner,
            caption,
            self.when(at),
            self.seq(),
            secrets.token_urlsafe(8)[:11],
            tagged=set(tagged or ()),
        )
        self.media[media.id] = media
        return media

    def add_ig_comment(
        self,
        media_id: str,
        text: str,
        *,
        author: Actor,
        parent_id: str | None = None,
        at: datetime | None = None,
        withhold_from: bool = False,
    ) -> IGComment:
        # Not one with add_comment: a Facebook comment's id carries its post's and the comment
        # moves the post's updated_time; an Instagram comment's id is its own and its media
        # keeps no such time.
        parent_id = _top_level(self.ig_comments, parent_id)
        comment = IGComment(
            self.number("179", 17),
            media_id,
            parent_id,
            author,
            text,
            self.when(at),
            self.seq(),
            withhold_from=withhold_from,
        )
        self.ig_comments[comment.id] = comment
        return comment

    # Not one with conversation_with/add_message though they read alike: a Messenger thread
    # has a link_id and its people a Page-scoped id, a Direct thread's id is base64 text and
    # its people IGSIDs, and the two messages' ids and senders are kept in their own types.
    def direct_thread_with(self, account_id: str, user: IGUser) -> DirectThread:
        for thread in self.direct_threads.values():
            if thread.account_id == account_id and thread.user_key == user.key:
                return thread
        self.igsid(user, account_id)
        # Shaped as Meta's published Instagram conversation ids (base64 text, no recording).
        thread = DirectThread(
            "aWdfZAG06" + secrets.token_urlsafe(30)[:40],
            account_id,
            user.key,
            self.when(None),
            self.seq(),
        )
        self.direct_threads[thread.id] = thread
        return thread

    def add_direct_message(
        self,
        thread: DirectThread,
        text: str,
        *,
        from_account: bool = False,
        at: datetime | None = None,
    ) -> DirectMessage:
        ours: Actor = ("account", thread.account_id)
        sender: Actor = ours if from_account else ("iguser", thread.user_key)
        message = DirectMessage(
            "aWdfZAG1faXRlbToxOklH" + secrets.token_urlsafe(48)[:60],
            thread.id,
            sender,
            text,
            self.when(at),
            self.seq(),
        )
        thread.messages.append(message)
        thread.messages.sort(key=lambda m: (m.created, m.seq))
        self.direct_messages[message.id] = message
        return message

    # -- tokens --------------------------------------------------------------------------
    def add_token(
        self,
        value: str,
        kind: Literal["PAGE", "USER", "INSTAGRAM"],
        *,
        user_id: str,
        page_id: str | None = None,
        scopes: tuple[str, ...] = PAGE_SCOPES,
        lifetime: timedelta | None = None,
    ) -> Token:
        now = self.clock()
        expires = None if lifetime is None else now + lifetime
        token = Token(value, kind, user_id, page_id, scopes, expires, issued_at=now)
        self.tokens[value] = token
        return token
