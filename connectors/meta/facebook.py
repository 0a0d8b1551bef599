"""The Facebook Page source: comments and replies on the Page's posts of the watch window
(read when a post's ``updated_time`` moved), visitor and tagged posts, and Messenger
threads, walked as :mod:`.walk` describes; the objects its webhook hints name, read by id
(:mod:`.hints`); its backfill's steps (the plan is :mod:`.backfill`'s); its check."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

from connectors.meta import backfill, hints
from connectors.meta.client import PermissionDenied
from connectors.meta.parse import (
    NETWORK_FACEBOOK,
    clip,
    conversation_url,
    parse_fb_comments,
    parse_fb_posts,
    parse_messages,
    scoped_id,
)
from connectors.meta.settings import FacebookSettings
from connectors.meta.walk import (
    OBJECT_ID,
    Collected,
    MetaSource,
    WalkToken,
    after_cursor,
    as_int,
    data_time,
    fix_for,
    iso,
    left_for_next_walk,
    mark_fields,
    moved_mark,
    read_from,
)
from syncd.contracts import CheckRow, ConnectorSettings, KnownAuthors
from syncd.errors import ExternalError, MalformedAnswer
from syncd.model import Account, Author, Cursor, Page, PostCount, Segment, Stream

if TYPE_CHECKING:
    from syncd.contracts import (
        Backfiller,
        GapCloser,
        ObservedResponses,
        Source,
        Starting,
        WebhookSource,
    )

__all__ = ["FacebookSource"]

MESSAGE_DETAILS = 20  # "you can only get details about the 20 most recent messages"
MESSAGES_PAGE = 25  # one messages call: more than the 20 with details, to see a gap
POST_FIELDS = "id,created_time,updated_time,from,message,permalink_url,status_type"
COMMENT_FIELDS = "id,from,message,created_time,parent{id,from},permalink_url"
# A Page object id as webhooks give it: digits, "_"-joined for a post or a comment.
_FB_ID = re.compile(r"\d{1,40}(?:_\d{1,40}){0,2}")
THREAD_FIELDS = "id,updated_time,link,participants"
MESSAGE_FIELDS = "id,created_time,from,to,message"


def _parents(items: Iterable[Any], page_id: str) -> dict[str, Author | None]:
    """The authors of the comments these replies answer, as Graph expanded them
    (``parent{id,from}``): a Page reply is attributed though its parent was read earlier."""
    found: dict[str, Author | None] = {}
    for raw in items:
        parent = raw.get("parent") if isinstance(raw, dict) else None
        if not isinstance(parent, dict) or not isinstance(parent.get("id"), str):
            continue
        person = parent.get("from")
        if isinstance(person, dict) and isinstance(person.get("id"), str) and person["id"]:
            name = person.get("name")
            found[parent["id"]] = Author(
                NETWORK_FACEBOOK,
                scoped_id(page_id, person["id"]),
                display_name=name if isinstance(name, str) and name.strip() else None,
            )
        else:
            found[parent["id"]] = None
    return found


# -- Facebook ------------------------------------------------------------------------------------
class FacebookSource(MetaSource):
    """A Facebook Page: ``mentions`` are people's comments and replies on the Page's posts in
    the watch window, visitor posts and posts tagging the Page (``/feed`` holds all three
    [doc: page/feed]), and their Messenger messages; ``replies`` the Page's own comments and
    messages answering them."""

    network: ClassVar[str] = NETWORK_FACEBOOK
    Settings: ClassVar[type[ConnectorSettings]] = FacebookSettings
    # Backfill steps spend the Page's budget, which live polls spend too.
    shared_routes: ClassVar[frozenset[str]] = frozenset({backfill.PAGE_COMMENTS})

    def __init__(self, access_token: str, *, page_id: str, messenger: bool = True, **kw: Any):
        super().__init__(access_token, account_id=page_id, **kw)
        self.page_id = page_id
        self.messenger = messenger

    @classmethod
    def from_settings(cls, settings: FacebookSettings) -> Self:
        return cls(
            settings.access_token.reveal(),
            page_id=settings.page_id,
            messenger=settings.messenger,
            **settings.source_options(),
        )

    def resolve_accounts(self, handles: Sequence[str]) -> dict[str, Account]:
        """The Page, by its id or its name (``GET /{page-id}?fields=id,name``): a Page token
        reads its own Page only, so other handles are unknown."""
        body = self._get(self.page_id, {"fields": "id,name"})
        name = body.get("name") if isinstance(body.get("name"), str) else None
        if body.get("id") != self.page_id:
            raise MalformedAnswer("Meta answered for another Page", system=self.network)
        found: dict[str, Account] = {}
        for handle in handles:
            given = handle.strip().removeprefix("@")
            if given == self.page_id or (name is not None and given.lower() == name.lower()):
                found[handle] = Account(self.network, given, self.page_id)
        return found

    def fetch(
        self, account: Account, stream: Stream, cursor: Cursor, known: KnownAuthors | None = None
    ) -> Page:
        # ``known`` changes nothing: Graph gives each comment's author with it, free.
        self._guard(account)
        now = self.clock()
        token = (
            WalkToken.parse(cursor.pagination_token, self.network)
            if cursor.pagination_token is not None
            else None
        )
        got = Collected()
        if token is None or token.phase == "posts":
            following = self._posts_step(account, stream, cursor, token, got, now)
        elif token.phase == "threads":
            following = self._threads_step(account, stream, cursor, token, got, now)
        else:
            raise MalformedAnswer("a stored Meta walk position is unreadable", system=self.network)
        hinted, taken = hints.read(self._hint_readers(), account, stream, cursor)
        return hints.merged(self._page(got, cursor, token, following, now), hinted, taken)

    # webhook hints (WebhookSource)
    def _hint_readers(self) -> dict[str, hints.Reader]:
        return {
            "facebook:feed:comment": lambda a, i, got: self._hinted_comment(a, i, got, True),
            "facebook:mention:comment": lambda a, i, got: self._hinted_comment(a, i, got, False),
            "facebook:feed:post": self._hinted_post,
            "facebook:mention:post": self._hinted_post,
        }

    def _hinted_comment(
        self, account: Account, comment_id: str, got: Collected, on_page: bool
    ) -> None:
        """``GET /{comment-id}`` with the walk's comment fields. A comment's id is
        ``{post}_{comment}``: on the Page's feed its post is ``{page}_{post}``; a mention
        is on someone else's post, which the id does not name fully."""
        if not _FB_ID.fullmatch(comment_id):
            return
        body = self._get(comment_id, {"fields": COMMENT_FIELDS})
        if body.get("id") != comment_id:
            return
        post_id = f"{self.page_id}_{comment_id.split('_')[0]}" if on_page else None
        translated = parse_fb_comments(
            [body], account, post_id=post_id, parents=_parents([body], self.page_id)
        )
        got.add(translated, Stream.MENTIONS)

    def _hinted_post(self, account: Account, post_id: str, got: Collected) -> None:
        """``GET /{post-id}`` with the walk's post fields: a visitor post, or a post
        mentioning the Page (its author withheld, as on ``/tagged``)."""
        if not _FB_ID.fullmatch(post_id):
            return
        body = self._get(post_id, {"fields": POST_FIELDS})
        if body.get("id") == post_id:
            got.add(parse_fb_posts([body], account), Stream.MENTIONS)

    # posts and their comments
    def _posts_step(
        self,
        account: Account,
        stream: Stream,
        cursor: Cursor,
        token: WalkToken | None,
        got: Collected,
        now: datetime,
        segment: Segment | None = None,
    ) -> WalkToken | None:
        """One feed page and the comments of its moved posts; with ``segment`` (a backfill),
        every post's comments inside the segment's window, and no marks."""
        window = now - self.watch_window
        marks = cursor.marks if segment is None else {}
        floor = self._floor(cursor, now) if segment is None else segment.since
        until = segment.until if segment is not None else None
        after = token.after if token is not None else None
        params: dict[str, str | int] = {
            "fields": POST_FIELDS,
            "limit": self.page_size,
            "since": int(window.timestamp()),
        }
        if until is not None:
            params["until"] = int(until.timestamp())
        if after is not None:
            params["after"] = after
        listing = self._list(f"{self.page_id}/feed", params)
        posts = [p for p in listing.data if isinstance(p, dict)]
        resume = token.post if token is not None else None
        if resume is not None:
            ids = [p.get("id") for p in posts]
            # The post left part-read: from it on (gone from the page: the page again).
            posts = posts[ids.index(resume) :] if resume in ids else posts
        others = parse_fb_posts(posts, account)
        if stream is Stream.MENTIONS:
            fresh = [
                i
                for i in others.interactions
                if f"post:{i.post_id}" not in marks or i.post_id == resume
            ]
            bounds = (segment.since, segment.until) if segment is not None else (None, None)
            got.add(
                replace(others, interactions=tuple(fresh)),
                stream,
                floor=bounds[0],
                until=bounds[1],
            )
        for post in posts:
            post_id = post.get("id")
            if not isinstance(post_id, str) or not OBJECT_ID.fullmatch(post_id):
                continue
            made = data_time(post, "created_time")
            updated = data_time(post, "updated_time")
            if made is None or updated is None or made < int(window.timestamp()):
                continue
            key = f"post:{post_id}"
            mark = marks.get(key)
            _, was_updated, read_to, last_id = mark_fields(mark, 4)
            part = token is not None and token.post == post_id and token.comments is not None
            if not part and mark is not None and (as_int(was_updated) or 0) >= updated:
                continue  # not moved since its comments were read
            since = read_from(token if part else None, read_to, floor)
            # Not read: from where its comments were read to, its updated_time not reached.
            kept = read_to if as_int(read_to) is not None else str(since)
            left = f"{made}|{updated - 1}|{kept}|{last_id}"
            more = None
            what = f"the comments of post {clip(post_id, 60)}"
            with left_for_next_walk(got, key, left, what, live=segment is None):
                more = self._comments(
                    account,
                    stream,
                    post,
                    since,
                    last_id if not part else "",
                    token.comments if part and token is not None else None,
                    got,
                    key,
                    made,
                    updated,
                    mark,
                    until,
                )
            if more is not None:
                return WalkToken("posts", after=after, post=post_id, comments=more, since=since)
        nxt = after_cursor(listing, self.network)
        oldest = min((t for p in posts if (t := data_time(p, "created_time"))), default=None)
        if nxt is not None and (oldest is None or oldest >= int(window.timestamp())):
            return WalkToken("posts", after=nxt)
        if segment is not None:
            return None
        got.marks.update(self._window_drop(cursor.marks, "post:", now))
        if self.messenger:
            return WalkToken("threads")
        return None

    def _comments(
        self,
        account: Account,
        stream: Stream,
        post: Mapping[str, Any],
        since: int,
        last_id: str,
        after: str | None,
        got: Collected,
        key: str,
        made: int,
        updated: int,
        mark: str | None,
        until: datetime | None = None,
    ) -> str | None:
        """One page of a moved post's comments (all levels, oldest first) from ``since``
        (to ``until``, a backfill's end); its mark moved to the newest read. The next page's
        cursor, or None when read."""
        params: dict[str, str | int] = {
            "fields": COMMENT_FIELDS,
            "filter": "stream",
            "order": "chronological",
            "since": since,
            "limit": self.page_size,
        }
        if until is not None:
            params["until"] = int(until.timestamp())
        if after is not None:
            params["after"] = after
        post_id = str(post["id"])
        answer = self._list(f"{post_id}/comments", params)
        items = [c for c in answer.data if isinstance(c, dict)]
        if after is None and last_id:
            # The comments of the mark's second up to the last one read were read then.
            ids = [c.get("id") for c in items]
            if last_id in ids:
                items = items[ids.index(last_id) + 1 :]
        translated = parse_fb_comments(
            items,
            account,
            post_id=post_id,
            post_url=str(post.get("permalink_url") or ""),
            parents=_parents(items, self.page_id),
        )
        got.add(translated, stream, until=until)
        _, was_updated, read_to, was_last = mark_fields(mark, 4)
        newest_at, newest_id = read_to or str(since), was_last
        stamped = [(t, str(c["id"])) for c in items if (t := data_time(c, "created_time"))]
        if stamped:
            newest_at, newest_id = str(stamped[-1][0]), stamped[-1][1]
        more = after_cursor(answer, self.network)
        moved = moved_mark(updated, self.clock()) if more is None else (was_updated or "0")
        got.marks[key] = f"{made}|{moved}|{newest_at}|{newest_id}"
        return more

    # backfill (Backfiller)
    def plan_backfill(
        self,
        account: Account,
        streams: Sequence[Stream],
        since: datetime,
        until: datetime,
        now: datetime,
    ) -> list[Segment]:
        """One segment a stream: the comments made in the window on the Page's posts of the
        watch window (and, for mentions, its visitor and tagged posts). Graph lists a
        post's comments by time, but reaches posts only through the feed, so the window
        starts no earlier than the watch window, and Messenger (only a thread's 20 newest
        messages have details) is not read. No network call."""
        return backfill.plan(
            backfill.PAGE_COMMENTS,
            backfill.PAGE_NOTE,
            streams,
            since,
            until,
            now,
            self.watch_window,
            self.page_size,
        )

    def count_posts(self, account: Account, segment: Segment) -> PostCount:
        return backfill.count(self.fetch_segment(account, segment, None))

    def fetch_segment(
        self,
        account: Account,
        segment: Segment,
        token: str | None,
        known: KnownAuthors | None = None,
    ) -> Page:
        """One feed page of the watch window and its posts' comments inside the segment (a
        post with more than a page of them: the token says where it stopped)."""
        self._guard(account)
        backfill.check_route(segment, self.shared_routes, self.network)
        at = backfill.position(token, self.network)
        got = Collected()
        following = self._posts_step(
            account, segment.stream, Cursor(), at, got, self.clock(), segment=segment
        )
        return backfill.step_page(got, at, following, self.network)

    # Messenger
    def _threads_step(
        self,
        account: Account,
        stream: Stream,
        cursor: Cursor,
        token: WalkToken,
        got: Collected,
        now: datetime,
    ) -> WalkToken | None:
        floor = int(self._floor(cursor, now).timestamp())
        params: dict[str, str | int] = {
            "platform": "messenger",
            "fields": THREAD_FIELDS,
            "limit": self.page_size,
        }
        if token.after is not None:
            params["after"] = token.after
        listing = self._list(f"{self.page_id}/conversations", params)
        threads = [t for t in listing.data if isinstance(t, dict)]
        for thread in threads:
            thread_id = thread.get("id")
            updated = data_time(thread, "updated_time")
            if not isinstance(thread_id, str) or not OBJECT_ID.fullmatch(thread_id):
                continue
            if updated is None:
                continue
            key = f"thread:{thread_id}"
            mark = cursor.marks.get(key)
            was_updated, read_to, last_id = mark_fields(mark, 3)
            if mark is None and updated < floor:
                continue
            if mark is not None and (as_int(was_updated) or 0) >= updated:
                continue
            since = as_int(read_to) if mark is not None and as_int(read_to) is not None else floor
            left = f"{updated - 1}|{since or 0}|{last_id}"  # not read: its messages from since
            with left_for_next_walk(got, key, left, f"Messenger thread {clip(thread_id, 40)}"):
                self._messages(account, stream, thread, since or 0, last_id, got, key, updated)
        nxt = after_cursor(listing, self.network)
        oldest = min((t for th in threads if (t := data_time(th, "updated_time"))), default=None)
        if nxt is not None and oldest is not None and oldest >= floor:
            return WalkToken("threads", after=nxt)
        edge = int((now - self.watch_window).timestamp())
        for key, value in cursor.marks.items():
            if key.startswith("thread:") and key not in got.marks:  # not one this walk read
                moved = as_int(mark_fields(value, 1)[0])
                if moved is not None and moved < edge:
                    got.marks[key] = None
        return None

    def _messages(
        self,
        account: Account,
        stream: Stream,
        thread: Mapping[str, Any],
        since: int,
        last_id: str,
        got: Collected,
        key: str,
        updated: int,
    ) -> None:
        """A moved thread's messages newer than its mark, newest first, one call: Graph
        details only the 20 newest, so more than that since the mark is a gap."""
        thread_id = str(thread["id"])
        answer = self._list(
            f"{thread_id}/messages", {"fields": MESSAGE_FIELDS, "limit": MESSAGES_PAGE}
        )
        items = [m for m in answer.data if isinstance(m, dict)]
        fresh: list[dict[str, Any]] = []
        reached = False
        for message in items:
            at = data_time(message, "created_time")
            if message.get("id") == last_id or (at is not None and at < since):
                reached = True
                break
            fresh.append(message)
        detailed = [m for m in fresh if "from" in m or "message" in m]
        beyond = [m for m in fresh if m not in detailed]
        if beyond or (not reached and answer.next_query is not None):
            stamps = [t for m in beyond or fresh if (t := data_time(m, "created_time"))]
            got.gap = iso(datetime.fromtimestamp(max(stamps) if stamps else updated, UTC))
            got.warnings.append(
                f"Messenger thread {clip(thread_id, 40)}: more than {MESSAGE_DETAILS} messages "
                "arrived since the last poll; Graph details only the 20 newest (a gap)"
            )
        participants = thread.get("participants")
        people = participants.get("data") if isinstance(participants, dict) else None
        translated = parse_messages(
            detailed,
            account,
            conversation_id=thread_id,
            conversation_url=conversation_url(thread.get("link")),
            participants=people if isinstance(people, list) else (),
        )
        got.add(translated, stream)
        newest = next(
            ((t, str(m["id"])) for m in detailed if (t := data_time(m, "created_time"))), None
        )
        read_to, read_id = (str(newest[0]), newest[1]) if newest else (str(since), last_id)
        got.marks[key] = f"{moved_mark(updated, self.clock())}|{read_to}|{read_id}"

    # check
    def check(self, handles: Sequence[str]) -> list[CheckRow]:
        """The token is a Page token of this Page (``/me`` answers as the Page), what each
        stream reads is readable (the permissions it needs named), whether Meta withholds
        authors (App Review), and the handles."""
        try:
            me = self._get("me", {"fields": "id,name"})
        except ExternalError as exc:
            return [CheckRow("Page token", False, str(exc), fix_for(exc, "Page token"))]
        if me.get("id") != self.page_id:
            return [
                CheckRow(
                    "Page token",
                    False,
                    f"the token answers as {clip(str(me.get('id')), 40)}, not as Page "
                    f"{self.page_id}: it is a user token or another Page's",
                    "issue a Page access token of this Page (GET /me/accounts with a Page "
                    "admin's long-lived user token gives it) and set access_token to it",
                )
            ]
        rows = [CheckRow("Page token", True, f"a Page token of {me.get('name')} ({self.page_id})")]
        rows.append(
            self._probe(
                "posts and comments",
                f"{self.page_id}/feed",
                {"fields": "id,comments.limit(5){from}", "limit": 5},
                "pages_read_engagement, pages_read_user_content, pages_show_list",
            )
        )
        if self.messenger:
            rows.append(
                self._probe(
                    "Messenger",
                    f"{self.page_id}/conversations",
                    {"platform": "messenger", "fields": "id", "limit": 1},
                    "pages_messaging, pages_manage_metadata, pages_read_engagement",
                )
            )
        rows.append(self._authors_row())
        rows.append(
            self._webhook_row(
                "the Page's feed and mention fields",
                "polling reads the Page's posts, comments, visitor and tagged posts and "
                "Messenger; mentions of the Page in comments and posts elsewhere reach syncd "
                "only by the Page 'mention' webhook (and Messenger messages beyond a thread's "
                "20 newest only by the 'messages' webhook, which syncd does not read)",
            )
        )
        for handle in handles:
            given = handle.strip().removeprefix("@")
            name = str(me.get("name") or "")
            if given == self.page_id or given.lower() == name.lower():
                rows.append(CheckRow(handle, True, f"Page {self.page_id}"))
            else:
                rows.append(
                    CheckRow(
                        handle,
                        False,
                        f"{handle} is not this source's Page ({name}, {self.page_id})",
                        "set accounts to the Page's id or name",
                    )
                )
        return rows

    def _probe(self, item: str, path: str, params: Mapping[str, str | int], needs: str) -> CheckRow:
        try:
            self._list(path, params)
        except PermissionDenied as exc:
            named = ", ".join(exc.permissions) or needs
            return CheckRow(
                item,
                False,
                str(exc),
                f"grant the app {named} (it needs {needs}) and issue a new Page token",
            )
        except ExternalError as exc:
            return CheckRow(item, False, str(exc), fix_for(exc, "Page token"))
        return CheckRow(item, True, f"readable (uses {needs})")

    def _authors_row(self) -> CheckRow:
        """Whether the recent comments carry ``from``: without Advanced Access Meta leaves
        it out for people with no role on the app."""
        try:
            listing = self._list(
                f"{self.page_id}/feed",
                {"fields": "id,comments.limit(25){from}", "limit": 10},
            )
        except ExternalError as exc:
            return CheckRow("comment authors", False, str(exc), fix_for(exc, "Page token"))
        comments = [
            c
            for p in listing.data
            if isinstance(p, dict) and isinstance(p.get("comments"), dict)
            for c in p["comments"].get("data", [])
            if isinstance(c, dict)
        ]
        withheld = sum(1 for c in comments if "from" not in c)
        if withheld:
            return CheckRow(
                "comment authors",
                False,
                f"Meta withheld the author of {withheld} of {len(comments)} recent comments: "
                "the app lacks Advanced Access, so people without a role on it are faceless "
                "(stored, linked to no one, counted in syncd status)",
                "submit the app for App Review (pages_read_user_content, pages_messaging with "
                "Advanced Access; Business Verification), then issue a new Page token",
            )
        return CheckRow(
            "comment authors", True, f"Meta named the author of all {len(comments)} recent comments"
        )


if TYPE_CHECKING:  # the contracts are structural: have mypy hold the class to them
    _f: type[Source] = FacebookSource
    _fs: type[Starting] = FacebookSource
    _fg: type[GapCloser] = FacebookSource
    _fb: type[Backfiller] = FacebookSource
    _fo: type[ObservedResponses] = FacebookSource
    _fw: type[WebhookSource] = FacebookSource
