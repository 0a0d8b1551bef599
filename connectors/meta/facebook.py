"""The Facebook Page source: comments and replies on the Page's posts of the watch window
(read when a post's ``updated_time`` moved), visitor and tagged posts, and Messenger
threads, walked as :mod:`.walk` and :mod:`.threads` describe; the objects its webhook hints
name, read by id (:mod:`.hints`); its backfill's steps (the plan is :mod:`.backfill`'s); its
check."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, Self

from connectors.meta import backfill, hints
from connectors.meta.check import facebook_check
from connectors.meta.client import PermissionDenied
from connectors.meta.parse import (
    NETWORK_FACEBOOK,
    clip,
    parse_fb_comments,
    parse_fb_posts,
    scoped_id,
)
from connectors.meta.settings import FacebookSettings
from connectors.meta.threads import THREAD_FIELDS, Inbox, inbox_phase, message_readers
from connectors.meta.walk import (
    OBJECT_ID,
    Collected,
    MetaSource,
    Phase,
    Walk,
    WalkToken,
    after_cursor,
    as_int,
    data_time,
    left_for_next_walk,
    mark_fields,
    moved_mark,
    read_from,
)
from syncd.contracts import CheckRow, ConnectorSettings
from syncd.errors import MalformedAnswer, NotFound
from syncd.model import Account, Author, Stream, WebhookHint

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

POST_FIELDS = "id,created_time,updated_time,from,message,permalink_url,status_type"
COMMENT_FIELDS = "id,from,message,created_time,parent{id,from},permalink_url"
# A Page object id as webhooks give it: digits, "_"-joined for a post or a comment.
_FB_ID = re.compile(r"\d{1,40}(?:_\d{1,40}){0,2}")
_HINT_KINDS_MESSAGE = (
    "facebook:messages:message",
    "facebook:message_echoes:message",
    "facebook:message_edits:message",
)


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


def _tag_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# -- Facebook ------------------------------------------------------------------------------------
class FacebookSource(MetaSource):
    """A Facebook Page: ``mentions`` are people's comments and replies on the Page's posts in
    the watch window, visitor posts and posts tagging the Page (``/feed`` holds all three
    [doc: page/feed]), and their Messenger messages; ``replies`` the Page's own comments and
    messages answering them."""

    network: ClassVar[str] = NETWORK_FACEBOOK
    Settings: ClassVar[type[ConnectorSettings]] = FacebookSettings
    # A backfill reads the posts phase: the comments made in the window on the Page's posts
    # of the watch window, and, for mentions, its visitor and tagged posts; not Messenger.
    backfill_route: ClassVar[str] = backfill.PAGE_COMMENTS
    backfill_note: ClassVar[str] = backfill.PAGE_NOTE
    shared_routes: ClassVar[frozenset[str]] = frozenset({backfill_route})

    def __init__(self, access_token: str, *, page_id: str, messenger: bool = True, **kw: Any):
        super().__init__(access_token, account_id=page_id, **kw)
        self.page_id = page_id
        self.messenger = messenger
        self.inbox = Inbox(
            platform="messenger",
            path=f"{page_id}/conversations",
            fields=THREAD_FIELDS,
            thread="Messenger thread",
            setting="messenger",
            needs="pages_messaging, pages_manage_metadata, pages_read_engagement",
        )
        self.phases = (
            Phase("posts", self._posts_step),
            inbox_phase(self, self.inbox, on=messenger),
        )

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
                found[handle] = Account(self.network, given, self.page_id, display_name=name)
        return found

    # webhook hints (WebhookSource)
    def _hint_readers(self) -> dict[str, hints.Reader]:
        return {
            "facebook:feed:comment": lambda a, i, got: self._hinted_comment(a, i, got, True),
            "facebook:mention:comment": lambda a, i, got: self._hinted_comment(a, i, got, False),
            "facebook:feed:post": lambda a, i, got: self._hinted_post(a, i, got, True),
            "facebook:mention:post": lambda a, i, got: self._hinted_post(a, i, got, False),
            **message_readers(self, self.inbox, _HINT_KINDS_MESSAGE),
        }

    def _hinted_comment(
        self, account: Account, comment_id: str, got: Collected, on_page: bool
    ) -> None:
        """``GET /{comment-id}`` with the walk's comment fields. A comment's id is
        ``{post}_{comment}``: on the Page's feed its post is ``{page}_{post}``, which Graph
        answers only when the post is the Page's (one more call: the comment names no Page,
        and a forged delivery may name any comment the token can read); a mention is on
        someone else's post, which the id does not name fully, and must tag the Page."""
        if not _FB_ID.fullmatch(comment_id):
            return
        kind = "facebook:feed:comment" if on_page else "facebook:mention:comment"
        hint = WebhookHint(self.page_id, comment_id, kind)
        fields = COMMENT_FIELDS if on_page else f"{COMMENT_FIELDS},message_tags"
        body = self._get(comment_id, {"fields": fields})
        if body.get("id") != comment_id:
            return
        post_id = f"{self.page_id}_{comment_id.split('_')[0]}" if on_page else None
        post = self._pages_post(post_id) if post_id is not None else None
        if post_id is not None and post is None:
            self._drop_hint(hint, "not on the Page's post")
            return
        if not on_page and not self._tags_page(body):
            self._drop_hint(hint, "does not tag the Page")
            return
        translated = parse_fb_comments(
            [body],
            account,
            post_id=post_id,
            parents=_parents([body], self.page_id),
            post_from=post.get("from") if post is not None else None,
        )
        got.add(translated, Stream.MENTIONS)

    def _pages_post(self, post_id: str) -> Mapping[str, Any] | None:
        """The Page's post (its id and author), or None when Graph does not answer it."""
        try:
            body = self._get(post_id, {"fields": "id,from"})
        except (NotFound, PermissionDenied):
            return None
        return body if body.get("id") == post_id else None

    def _tags_page(self, body: Mapping[str, Any]) -> bool:
        """Whether a post or comment tags the Page (``message_tags``, as an @mention of it
        does [doc: Post and Comment references])."""
        return any(
            isinstance(t, dict) and t.get("id") == self.page_id
            for t in _tag_list(body.get("message_tags"))
        )

    def _hinted_post(self, account: Account, post_id: str, got: Collected, on_page: bool) -> None:
        """``GET /{post-id}`` with the walk's post fields: a visitor post, or a post
        mentioning the Page (its author withheld, as on ``/tagged``). A post of the Page's
        feed has an id ``{page}_{post}``: another is not the Page's; a post elsewhere must
        tag the Page."""
        if not _FB_ID.fullmatch(post_id):
            return
        kind = "facebook:feed:post" if on_page else "facebook:mention:post"
        hint = WebhookHint(self.page_id, post_id, kind)
        if on_page and not post_id.startswith(f"{self.page_id}_"):
            self._drop_hint(hint, "not on the Page's feed")
            return
        fields = POST_FIELDS if on_page else f"{POST_FIELDS},message_tags"
        body = self._get(post_id, {"fields": fields})
        if body.get("id") != post_id:
            return
        if not on_page and not self._tags_page(body):
            self._drop_hint(hint, "does not tag the Page")
            return
        got.add(parse_fb_posts([body], account), Stream.MENTIONS)

    # posts and their comments
    def _posts_step(self, w: Walk) -> WalkToken | None:
        """One feed page and the comments of its moved posts; with a segment (a backfill),
        every post's comments inside the segment's window, and no marks."""
        window = int((w.now - self.watch_window).timestamp())
        until = int(w.until.timestamp()) if w.until is not None else None
        params = w.listing(POST_FIELDS, self.page_size, since=window, until=until)
        listing = self._list(f"{self.page_id}/feed", params)
        posts = w.resumed(listing)
        others = parse_fb_posts(posts, w.account)
        if w.stream is Stream.MENTIONS:
            fresh = [
                i
                for i in others.interactions
                if f"post:{i.post_id}" not in w.marks or w.part_read(i.post_id)
            ]
            start = w.segment.since if w.segment is not None else None
            w.got.add(
                replace(others, interactions=tuple(fresh)), w.stream, floor=start, until=w.until
            )
        for post in posts:
            post_id = post.get("id")
            if not isinstance(post_id, str) or not OBJECT_ID.fullmatch(post_id):
                continue
            made = data_time(post, "created_time")
            updated = data_time(post, "updated_time")
            if made is None or updated is None or made < window:
                continue
            key = f"post:{post_id}"
            mark = w.marks.get(key)
            _, was_updated, read_to, last_id = mark_fields(mark, 4)
            part = w.part_read(post_id)
            if not part and mark is not None and (as_int(was_updated) or 0) >= updated:
                continue  # not moved since its comments were read
            since = read_from(w.token if part else None, read_to, w.floor)
            # Not read: from where its comments were read to, its updated_time not reached.
            kept = read_to if as_int(read_to) is not None else str(since)
            left = f"{made}|{updated - 1}|{kept}|{last_id}"
            more = None
            what = f"the comments of post {clip(post_id, 60)}"
            with left_for_next_walk(w.got, key, left, what, live=w.segment is None):
                more = self._comments(w, post, since, "" if part else last_id, key, made, updated)
            if more is not None:
                return w.stopped_in(post_id, more, since)
        following = self._next_page(w, listing, posts, "created_time", window, undated=True)
        if following is None and w.segment is None:
            w.got.marks.update(self._window_drop(w.cursor.marks, "post:", w.now))
        return following

    def _comments(
        self,
        w: Walk,
        post: Mapping[str, Any],
        since: int,
        last_id: str,
        key: str,
        made: int,
        updated: int,
    ) -> str | None:
        """One page of a moved post's comments (all levels, oldest first) from ``since``
        (to a backfill's end), from where the walk stopped in them; its mark moved to the
        newest read. The next page's cursor, or None when read."""
        post_id = str(post["id"])
        after = w.comments_at(post_id)
        params: dict[str, str | int] = {
            "fields": COMMENT_FIELDS,
            "filter": "stream",
            "order": "chronological",
            "since": since,
            "limit": self.page_size,
        }
        if w.until is not None:
            params["until"] = int(w.until.timestamp())
        if after is not None:
            params["after"] = after
        answer = self._list(f"{post_id}/comments", params)
        items = [c for c in answer.data if isinstance(c, dict)]
        if after is None and last_id:
            # The comments of the mark's second up to the last one read were read then.
            ids = [c.get("id") for c in items]
            if last_id in ids:
                items = items[ids.index(last_id) + 1 :]
        translated = parse_fb_comments(
            items,
            w.account,
            post_id=post_id,
            post_url=str(post.get("permalink_url") or ""),
            parents=_parents(items, self.page_id),
            post_from=post.get("from"),
        )
        w.got.add(translated, w.stream, until=w.until)
        _, was_updated, read_to, was_last = mark_fields(w.marks.get(key), 4)
        newest_at, newest_id = read_to or str(since), was_last
        stamped = [(t, str(c["id"])) for c in items if (t := data_time(c, "created_time"))]
        if stamped:
            newest_at, newest_id = str(stamped[-1][0]), stamped[-1][1]
        more = after_cursor(answer, self.network)
        moved = moved_mark(updated, self.clock()) if more is None else (was_updated or "0")
        w.got.marks[key] = f"{made}|{moved}|{newest_at}|{newest_id}"
        return more

    # check
    def check(self, handles: Sequence[str]) -> list[CheckRow]:
        """What ``syncd check`` reports of this Page (:func:`.check.facebook_check`)."""
        return facebook_check(self, self.page_id, self.messenger, handles)

if TYPE_CHECKING:  # the contracts are structural: have mypy hold the class to them
    _f: type[Source] = FacebookSource
    _fs: type[Starting] = FacebookSource
    _fg: type[GapCloser] = FacebookSource
    _fb: type[Backfiller] = FacebookSource
    _fo: type[ObservedResponses] = FacebookSource
    _fw: type[WebhookSource] = FacebookSource
