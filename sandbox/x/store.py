"""State of the X sandbox: users, posts, and the per-user indexes its timelines are cut from.

Nothing here speaks HTTP. :class:`XStore` is not thread-safe on its own: the sandbox calls it
under its lock. Timelines are id-sorted lists of ints per user, so a page is a bisect plus a
walk bounded by the timeline's horizon, whatever the total number of posts. Search
(:mod:`.x_search`) reads the same lists plus two more (replies to a user, a user's posts that
mention themselves), without any horizon.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right, insort
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JsonObject = dict[str, Any]

FIRST_POST_ID = 1_800_000_000_000_000_000
# X's ids are snowflakes, milliseconds since this moment shifted left by 22 bits, so a client
# can tell from an id alone how old a post is (whether recent search still reaches it).
SNOWFLAKE_EPOCH_MS = 1288834974657
FIRST_USER_ID = 1_000_000_001
ID_PATTERN = re.compile(r"^[0-9]{1,19}$")
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_]{1,15}$")

# twitter-text's rule, simplified: an @handle not glued to a word, an e-mail address or another
# @, and not a prefix of a longer run of handle characters (so "@sixteen_chars_xx" is no mention).
_MENTION = re.compile(r"(?<![A-Za-z0-9_!#$%&*@])@([A-Za-z0-9_]{1,15})(?![A-Za-z0-9_@])")
# A hashtag needs at least one letter: X does not link "#1".
_HASHTAG = re.compile(r"(?<![\w&])#(\w*[^\W\d_]\w*)")
_LEADING_MENTIONS = re.compile(r"^(?:@[A-Za-z0-9_]{1,15}\s+)*")


def format_time(value: datetime) -> str:
    """X's timestamp format: UTC, milliseconds, ``Z`` (``2021-06-02T19:55:29.000Z``)."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass
class StoredUser:
    id: str
    username: str
    name: str
    created_at: datetime
    description: str | None = None
    location: str | None = None
    url: str | None = None
    suspended: bool = False

    def as_dict(self, post_count: int = 0) -> JsonObject:
        """Every user field the sandbox models, as X spells it."""
        out: JsonObject = {
            "id": self.id,
            "name": self.name,
            "username": self.username,
            "created_at": format_time(self.created_at),
            # X sends an empty description and url rather than leaving them out; location is
            # left out when the profile has none.
            "description": self.description or "",
            "url": self.url or "",
            "protected": False,
            "verified": False,
            "verified_type": "none",
            "profile_image_url": (
                "https://abs.twimg.com/sticky/default_profile_images/default_profile_normal.png"
            ),
            "public_metrics": {
                "followers_count": 0,
                "following_count": 0,
                "tweet_count": post_count,
                "listed_count": 0,
                "like_count": 0,
            },
        }
        if self.location:
            out["location"] = self.location
        return out


@dataclass
class StoredPost:
    id: int
    author_id: str
    text: str
    created_at: datetime
    conversation_id: int
    in_reply_to_user_id: str | None = None
    replied_to: int | None = None
    mentions: list[JsonObject] = field(default_factory=list)
    hashtags: list[JsonObject] = field(default_factory=list)
    reply_count: int = 0
    deleted: bool = False
    retweeted: int | None = None  # a retweet (on its author's timeline only): what it reposts

    @property
    def mentioned_ids(self) -> set[str]:
        return {m["id"] for m in self.mentions}

    def as_dict(self) -> JsonObject:
        """Every post field the sandbox models, as X spells it."""
        pid = str(self.id)
        out: JsonObject = {
            "id": pid,
            "text": self.text,
            "edit_history_tweet_ids": [pid],
            "author_id": self.author_id,
            "created_at": format_time(self.created_at),
            "conversation_id": str(self.conversation_id),
            "lang": "en",
            "possibly_sensitive": False,
            "reply_settings": "everyone",
            "public_metrics": {
                "retweet_count": 0,
                "reply_count": self.reply_count,
                "like_count": 0,
                "quote_count": 0,
                "bookmark_count": 0,
                "impression_count": 0,
            },
        }
        if self.in_reply_to_user_id is not None:
            out["in_reply_to_user_id"] = self.in_reply_to_user_id
        if self.replied_to is not None:
            out["referenced_tweets"] = [{"type": "replied_to", "id": str(self.replied_to)}]
        if self.retweeted is not None:
            out["referenced_tweets"] = [{"type": "retweeted", "id": str(self.retweeted)}]
        entities: JsonObject = {}
        if self.mentions:
            entities["mentions"] = [dict(m) for m in self.mentions]
        if self.hashtags:
            entities["hashtags"] = [dict(h) for h in self.hashtags]
        if entities:
            out["entities"] = entities
        return out


def _check_id(value: str, what: str) -> str:
    if not ID_PATTERN.match(value):
        raise ValueError(f"{what} must be 1 to 19 digits, got {value!r}")
    return value


def snowflake(moment: datetime) -> int:
    """The smallest X id a post made at ``moment`` can have."""
    return max(0, round(moment.timestamp() * 1000) - SNOWFLAKE_EPOCH_MS) << 22


def _index_remove(index: list[int], value: int) -> None:
    i = bisect_left(index, value)
    if i < len(index) and index[i] == value:
        del index[i]


class XStore:
    """Users, posts, and per-user mention and authored-post indexes (ascending ids)."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.users: dict[str, StoredUser] = {}
        self.posts: dict[int, StoredPost] = {}
        self._by_username: dict[str, str] = {}
        self._mentions: defaultdict[str, list[int]] = defaultdict(list)
        self._authored: defaultdict[str, list[int]] = defaultdict(list)
        self._replies: defaultdict[str, list[int]] = defaultdict(list)  # by in_reply_to_user_id
        self._self_mentions: defaultdict[str, list[int]] = defaultdict(list)
        self._ids: list[int] = []  # every post id ever stored, ascending
        # True while created_at never decreases as ids grow (as with X's snowflake ids): search
        # then cuts a time window out of an index by bisection instead of stepping over it.
        self.time_ordered = True
        self._last_post_id = FIRST_POST_ID - 1
        self._last_user_id = FIRST_USER_ID - 1
        # Walks that asked for everything after a since_id and ended at the horizon instead:
        # the posts in between were unreachable, which X never says (benchmarks report it).
        self.horizon_cuts = 0

    # -- users ---------------------------------------------------------------------------
    def add_user(
        self,
        username: str,
        name: str | None = None,
        *,
        user_id: str | None = None,
        description: str | None = None,
        location: str | None = None,
        url: str | None = None,
    ) -> StoredUser:
        if not USERNAME_PATTERN.match(username):
            raise ValueError(f"X usernames are 1-15 of [A-Za-z0-9_], got {username!r}")
        if username.lower() in self._by_username:
            raise ValueError(f"username @{username} is taken")
        if user_id is None:
            self._last_user_id += 1
            while str(self._last_user_id) in self.users:
                self._last_user_id += 1
            user_id = str(self._last_user_id)
        elif _check_id(user_id, "user_id") in self.users:
            raise ValueError(f"user id {user_id} exists")
        user = StoredUser(
            id=user_id,
            username=username,
            name=name if name is not None else username,
            created_at=self.clock(),
            description=description,
            location=location,
            url=url,
        )
        self.users[user_id] = user
        self._by_username[username.lower()] = user_id
        return user

    def user_by_username(self, username: str) -> StoredUser | None:
        uid = self._by_username.get(username.lower())
        return self.users[uid] if uid is not None else None

    def post_count(self, user_id: str) -> int:
        return len(self._authored.get(user_id, ()))

    def suspend_user(self, user_id: str) -> None:
        user = self.users[user_id]
        if user.suspended:
            return
        user.suspended = True
        # A suspended account's posts vanish from everyone's mentions timeline, so they must
        # also stop counting against the mentions horizon.
        for pid in self._authored.get(user_id, ()):
            for uid in self.posts[pid].mentioned_ids:
                _index_remove(self._mentions[uid], pid)

    # -- posts ---------------------------------------------------------------------------
    def add_post(
        self,
        author_id: str,
        text: str,
        *,
        in_reply_to: str | None = None,
        created_at: datetime | None = None,
        post_id: str | None = None,
    ) -> StoredPost:
        author = self.users.get(author_id)
        if author is None:
            raise KeyError(f"no user {author_id}")
        if created_at is None:
            created_at = self.clock()
        elif created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        parent = None
        if in_reply_to is not None:
            parent = self.post(in_reply_to)
            if parent is None:
                raise KeyError(f"no post {in_reply_to} to reply to")
        if post_id is None:
            # The snowflake of created_at, unless a post made earlier got a larger id (posts
            # added out of time order, or many in one millisecond): ids only grow.
            pid = max(self._last_post_id + 1, snowflake(created_at))
        else:
            pid = int(_check_id(post_id, "post_id"))
            if pid in self.posts:
                raise ValueError(f"post id {post_id} exists")
        # Ids only grow, so a poller's since_id never skips a post added later.
        self._last_post_id = max(self._last_post_id, pid)
        self._keep_time_order(pid, created_at)

        if parent is not None and parent.author_id != author_id:
            # X puts the replied-to handle in front of a reply's text (but not in a self-thread).
            parent_name = self.users[parent.author_id].username
            leading = _LEADING_MENTIONS.match(text)
            lead = leading.group(0) if leading else ""
            if f"@{parent_name.lower()}" not in lead.lower().split():
                text = f"@{parent_name} {text}"

        post = StoredPost(
            id=pid,
            author_id=author_id,
            text=text,
            created_at=created_at,
            conversation_id=parent.conversation_id if parent is not None else pid,
            in_reply_to_user_id=parent.author_id if parent is not None else None,
            replied_to=parent.id if parent is not None else None,
            mentions=self._mention_entities(text),
            hashtags=[
                {"start": m.start(), "end": m.end(), "tag": m.group(1)}
                for m in _HASHTAG.finditer(text)
            ],
        )
        self.posts[pid] = post
        insort(self._authored[author_id], pid)
        if not author.suspended:
            for uid in post.mentioned_ids - {author_id}:
                insort(self._mentions[uid], pid)
        if author_id in post.mentioned_ids:
            insort(self._self_mentions[author_id], pid)
        if parent is not None:
            parent.reply_count += 1
            insort(self._replies[parent.author_id], pid)
        return post

    def add_retweet(self, user_id: str, post_id: str) -> StoredPost:
        """``user_id`` reposts ``post_id``, now. The retweet is on its author's timeline only,
        where it counts toward the horizon even when the request excludes retweets, as on X."""
        original = self.post(post_id)
        if original is None:
            raise KeyError(f"no post {post_id} to retweet")
        if user_id not in self.users:
            raise KeyError(f"no user {user_id}")
        created_at = self.clock()
        pid = max(self._last_post_id + 1, snowflake(created_at))
        self._last_post_id = pid
        self._keep_time_order(pid, created_at)
        text = f"RT @{self.users[original.author_id].username}: {original.text}"
        post = StoredPost(
            id=pid,
            author_id=user_id,
            text=text,
            created_at=created_at,
            conversation_id=pid,
            retweeted=original.id,
        )
        self.posts[pid] = post
        insort(self._authored[user_id], pid)
        return post

    def _keep_time_order(self, pid: int, created_at: datetime) -> None:
        i = bisect_left(self._ids, pid)
        if self.time_ordered and (
            (i > 0 and self.posts[self._ids[i - 1]].created_at > created_at)
            or (i < len(self._ids) and self.posts[self._ids[i]].created_at < created_at)
        ):
            self.time_ordered = False
        self._ids.insert(i, pid)

    def _mention_entities(self, text: str) -> list[JsonObject]:
        out: list[JsonObject] = []
        for m in _MENTION.finditer(text):
            user = self.user_by_username(m.group(1))
            if user is not None:  # X links only handles that exist
                out.append(
                    {"start": m.start(), "end": m.end(), "username": user.username, "id": user.id}
                )
        return out

    def post(self, post_id: str | int) -> StoredPost | None:
        """A post that exists and is not deleted (its author may be suspended)."""
        try:
            post = self.posts.get(int(post_id))
        except ValueError:
            return None
        return post if post is not None and not post.deleted else None

    def visible_post(self, post_id: str | int) -> StoredPost | None:
        """A post the API would show: not deleted, author not suspended."""
        post = self.post(post_id)
        if post is None or self.users[post.author_id].suspended:
            return None
        return post

    def delete_post(self, post_id: str) -> None:
        post = self.post(post_id)
        if post is None:
            raise KeyError(f"no post {post_id}")
        post.deleted = True
        _index_remove(self._authored[post.author_id], post.id)
        for uid in post.mentioned_ids:
            _index_remove(self._mentions[uid], post.id)
        _index_remove(self._self_mentions[post.author_id], post.id)
        if post.replied_to is not None:
            self.posts[post.replied_to].reply_count -= 1
        if post.in_reply_to_user_id is not None:
            _index_remove(self._replies[post.in_reply_to_user_id], post.id)

    # -- timelines -----------------------------------------------------------------------
    def mentions_index(self, user_id: str) -> list[int]:
        return self._mentions.get(user_id, [])

    def authored_index(self, user_id: str) -> list[int]:
        return self._authored.get(user_id, [])

    def replies_index(self, user_id: str) -> list[int]:
        """Posts replying to a post of ``user_id`` (their own thread replies included)."""
        return self._replies.get(user_id, [])

    def last_id_before(self, when: datetime) -> int | None:
        """The largest id of a post created before ``when`` (deleted ones count too)."""
        if not self.time_ordered:
            return max((p.id for p in self.posts.values() if p.created_at < when), default=None)
        i = bisect_left(self._ids, when, key=lambda pid: self.posts[pid].created_at)
        return self._ids[i - 1] if i else None

    def self_mentions_index(self, user_id: str) -> list[int]:
        """Posts of ``user_id`` that mention ``user_id``: search's ``@`` finds them, the
        mentions timeline does not."""
        return self._self_mentions.get(user_id, [])

    def walk(
        self,
        index: list[int],
        horizon: int,
        *,
        limit: int,
        newer_than: int | None = None,
        older_than: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        skip_replies: bool = False,
        skip_retweets: bool = False,
    ) -> tuple[list[StoredPost], bool]:
        """Newest-first page of ``index`` and whether more posts match beyond it.

        Only the ``horizon`` newest entries are reachable, as on X. ``newer_than`` and
        ``older_than`` are exclusive id bounds; ``start`` is inclusive and ``end`` exclusive.
        """
        lo = max(0, len(index) - horizon)
        cut = newer_than is not None and bisect_right(index, newer_than) < lo
        if newer_than is not None:
            lo = max(lo, bisect_right(index, newer_than))
        hi = len(index) if older_than is None else bisect_left(index, older_than)
        page: list[StoredPost] = []
        for i in range(hi - 1, lo - 1, -1):
            post = self.posts[index[i]]
            if start is not None and post.created_at < start:
                continue
            if end is not None and post.created_at >= end:
                continue
            if skip_replies and post.replied_to is not None:
                continue
            if skip_retweets and post.retweeted is not None:
                continue  # still within the horizon: skipped, as X does, not uncounted
            if len(page) == limit:
                return page, True
            page.append(post)
        self.horizon_cuts += cut
        return page, False
