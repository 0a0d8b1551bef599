"""The Instagram professional account source: comments and replies on the account's media of
the watch window (read when a media's ``comments_count`` changed), media tagging it and its
Direct threads, walked as :mod:`.walk` and :mod:`.threads` describe; the objects its webhook
hints name, read by id (:mod:`.hints`); its backfill's steps (the plan is :mod:`.backfill`'s);
its check."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

from connectors.meta import backfill, hints
from connectors.meta.check import instagram_check
from connectors.meta.parse import (
    NETWORK_INSTAGRAM,
    clip,
    mentioned,
    parse_ig_comments,
    parse_ig_media,
)
from connectors.meta.settings import IG_COMMENTS_MAX, InstagramSettings
from connectors.meta.threads import Inbox, inbox_phase, message_readers
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
    read_from,
    replies_of,
)
from syncd.contracts import CheckRow, ConnectorSettings
from syncd.errors import MalformedAnswer
from syncd.model import Account, Author, Stream

if TYPE_CHECKING:
    from syncd.contracts import Backfiller, ObservedResponses, Source, Starting, WebhookSource

__all__ = ["InstagramSource"]

MEDIA_FIELDS = "id,timestamp,comments_count,permalink,caption,media_type"
_IG_COMMENT = "id,text,timestamp,from,username,parent_id,user"
IG_COMMENT_FIELDS = f"{_IG_COMMENT},replies{{{_IG_COMMENT}}}"
TAG_FIELDS = "id,caption,media_type,timestamp,permalink,username"
# mentioned_comment's fields [doc: IG user mentioned_comment; recording: mentioned_comment.json].
MENTIONED_COMMENT_FIELDS = "id,text,timestamp,username,media"
_IG_ID = re.compile(r"[0-9]{1,40}")
# Direct through the Conversations API. ``me`` is the Page with a Page token (Facebook Login:
# "GET /{page-id}/conversations?platform=instagram") and the account with an Instagram User
# token (Instagram Login: "/me/conversations"), so one path serves both hosts and the source
# needs no Page id [doc: messenger conversations; IG conversations-api]. No ``link``: the
# Instagram Login reference lists none for a conversation.
DIRECT_PATH = "me/conversations"
DIRECT_THREAD_FIELDS = "id,updated_time,participants"


# -- Instagram -----------------------------------------------------------------------------------
class InstagramSource(MetaSource):
    """An Instagram professional account: ``mentions`` are people's comments and replies on
    its media in the watch window, media tagging it and their Direct messages; ``replies``
    the account's own replies and messages answering them. @mentions in other people's
    captions and comments are not listed by any endpoint: only the ``mentions`` webhook
    names them."""

    network: ClassVar[str] = NETWORK_INSTAGRAM
    Settings: ClassVar[type[ConnectorSettings]] = InstagramSettings
    # A backfill reads the media and tags phases: the comments made in the window on the
    # account's media of the watch window, and, for mentions, media tagging it made in the
    # window; not Direct. ``/media`` reaches further back (its 10,000 newest), but an old
    # media's comments are read whole, 50 a call, to find the few in the window.
    backfill_route: ClassVar[str] = backfill.ACCOUNT_MEDIA
    backfill_note: ClassVar[str] = backfill.MEDIA_NOTE
    shared_routes: ClassVar[frozenset[str]] = frozenset({backfill_route})

    def __init__(
        self,
        access_token: str,
        *,
        ig_user_id: str,
        direct: bool = True,
        instagram_login: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(access_token, account_id=ig_user_id, instagram_login=instagram_login, **kw)
        self.ig_user_id = ig_user_id
        self.direct = direct
        self.inbox = Inbox(
            platform="instagram",
            path=DIRECT_PATH,
            fields=DIRECT_THREAD_FIELDS,
            thread="Instagram Direct thread",
            setting="direct",
            needs=(
                "instagram_business_manage_messages"
                if instagram_login
                else "instagram_manage_messages, pages_manage_metadata"
            ),
        )
        self.phases = (
            Phase("posts", self._media_step),
            Phase("tags", self._tags_step, streams=frozenset({Stream.MENTIONS})),
            inbox_phase(self, self.inbox, on=direct),
        )

    @classmethod
    def from_settings(cls, settings: InstagramSettings) -> Self:
        return cls(
            settings.access_token.reveal(),
            ig_user_id=settings.ig_user_id,
            instagram_login=settings.instagram_login,
            direct=settings.direct,
            **settings.source_options(),
        )

    def resolve_accounts(self, handles: Sequence[str]) -> dict[str, Account]:
        """The account, by its username or id (``GET /{ig-user-id}?fields=id,username``);
        the handle kept is its username, which the brand's own comments carry."""
        body = self._get(self.ig_user_id, {"fields": "id,username"})
        if body.get("id") != self.ig_user_id:
            raise MalformedAnswer("Meta answered for another account", system=self.network)
        username = body.get("username") if isinstance(body.get("username"), str) else None
        found: dict[str, Account] = {}
        for handle in handles:
            given = handle.strip().removeprefix("@")
            if username is not None and given.lower() in (username.lower(), self.ig_user_id):
                found[handle] = Account(self.network, username, self.ig_user_id)
        return found

    def lookup_posts(
        self, post_ids: Sequence[str], refs: Mapping[str, str] | None = None
    ) -> tuple[set[str], set[str]]:
        """As :meth:`MetaSource.lookup_posts`, for media and comments (numeric ids) only: a
        Direct message's id is not numeric, and Graph answers "does not exist" for one older
        than its thread's 20 newest, which is not a deletion."""
        return super().lookup_posts([i for i in post_ids if _IG_ID.fullmatch(i)], refs)

    # webhook hints (WebhookSource)
    def _hint_readers(self) -> dict[str, hints.Reader]:
        return {
            "instagram:mentions:comment": self._mentioned_comment,
            "instagram:mentions:media": self._mentioned_media,
            "instagram:comments:comment": self._hinted_comment,
            "instagram:live_comments:comment": self._hinted_comment,
            **message_readers(self, self.inbox, ("instagram:messages:message",)),
        }

    def _mentioned_comment(self, account: Account, comment_id: str, got: Collected) -> None:
        """A comment @mentioning the account on someone else's media: ``GET
        /{ig-user-id}?fields=mentioned_comment.comment_id(<id>){…}``, the id the ``mentions``
        webhook gave [doc: IG mentions guide]. Meta names no commenter id there (a username
        at most): the author is withheld, never guessed from the username."""
        if not _IG_ID.fullmatch(comment_id):
            return
        fields = f"mentioned_comment.comment_id({comment_id}){{{MENTIONED_COMMENT_FIELDS}}}"
        body = self._get(self.ig_user_id, {"fields": fields})
        items = [c for c in mentioned(body, "mentioned_comment") if c.get("id") == comment_id]
        self._add_comments(account, items, got, own_media=False)

    def _mentioned_media(self, account: Account, media_id: str, got: Collected) -> None:
        """Someone else's media @mentioning the account in its caption: ``GET
        /{ig-user-id}?fields=mentioned_media.media_id(<id>){…}`` [doc: IG mentions guide]."""
        if not _IG_ID.fullmatch(media_id):
            return
        fields = f"mentioned_media.media_id({media_id}){{{TAG_FIELDS}}}"
        body = self._get(self.ig_user_id, {"fields": fields})
        items = [m for m in mentioned(body, "mentioned_media") if m.get("id") == media_id]
        got.add(parse_ig_media(items, account), Stream.MENTIONS)

    def _hinted_comment(self, account: Account, comment_id: str, got: Collected) -> None:
        """A comment on the account's media: ``GET /{ig-comment-id}``."""
        if not _IG_ID.fullmatch(comment_id):
            return
        body = self._get(comment_id, {"fields": f"{_IG_COMMENT},media"})
        if body.get("id") == comment_id:
            self._add_comments(account, [body], got, own_media=True)

    def _add_comments(
        self, account: Account, items: list[Any], got: Collected, *, own_media: bool
    ) -> None:
        # The comment answered, when any, is not read here: its author is not known (None),
        # which keeps the brand's own reply from being taken for an unreadable one; the
        # mentions stream keeps people's comments only, the replies walk reads the brand's.
        parents: dict[str, Author | None] = {
            c["parent_id"]: None for c in items if isinstance(c.get("parent_id"), str)
        }
        media = items[0].get("media") if items else None
        media_id = media.get("id") if isinstance(media, dict) else None
        translated = parse_ig_comments(
            items,
            account,
            media_id=media_id if isinstance(media_id, str) else None,
            parents=parents,
            own_media=own_media,
        )
        got.add(translated, Stream.MENTIONS)

    def _media_step(self, w: Walk) -> WalkToken | None:
        """One page of the account's media and the comments of those whose count moved;
        with a segment (a backfill), every media's comments inside the segment's window,
        and no marks kept."""
        window = int((w.now - self.watch_window).timestamp())
        listing = self._list(f"{self.ig_user_id}/media", w.listing(MEDIA_FIELDS, self.page_size))
        media = w.resumed(listing)
        for item in media:
            media_id = item.get("id")
            made = data_time(item, "timestamp")
            count = item.get("comments_count")
            if not isinstance(media_id, str) or not OBJECT_ID.fullmatch(media_id):
                continue
            if made is None or made < window or not isinstance(count, int):
                continue
            if w.until is not None and made >= int(w.until.timestamp()):
                continue  # made after the segment: none of its comments is in it
            key = f"media:{media_id}"
            mark = w.marks.get(key)
            _, was_count, read_to = mark_fields(mark, 3)
            part = w.part_read(media_id)
            if not part and mark is not None and as_int(was_count) == count:
                continue  # no comment came or went
            if not part and count == 0:
                w.got.marks[key] = f"{made}|0|{read_to or int(w.floor.timestamp())}"
                continue
            since = read_from(w.token if part else None, read_to, w.floor)
            # Not read: from where its comments were read to, its count not reached.
            _, _, kept, kept_ids = mark_fields(mark, 4)
            left = f"{made}|-1|{kept if as_int(kept) is not None else since}|{kept_ids}"
            more = None
            what = f"the comments of media {clip(media_id, 60)}"
            with left_for_next_walk(w.got, key, left, what, live=w.segment is None):
                more = self._ig_comments(w, item, since, key, made, count)
            if more is not None:
                return w.stopped_in(media_id, more, since)
        following = self._next_page(w, listing, media, "timestamp", window, undated=True)
        if following is None and w.segment is None:
            w.got.marks.update(self._window_drop(w.cursor.marks, "media:", w.now))
        return following

    def _ig_comments(
        self, w: Walk, media: Mapping[str, Any], since: int, key: str, made: int, count: int
    ) -> str | None:
        """One page (50) of a moved media's comments, replies expanded: all of them, since
        a new reply sits under an old comment; those made before ``since`` are left out.
        From where the walk stopped in them."""
        media_id = str(media["id"])
        params: dict[str, str | int] = {"fields": IG_COMMENT_FIELDS, "limit": IG_COMMENTS_MAX}
        after = w.comments_at(media_id)
        if after is not None:
            params["after"] = after
        answer = self._list(f"{media_id}/comments", params)
        translated = parse_ig_comments(
            list(answer.data),
            w.account,
            media_id=media_id,
            media_url=str(media.get("permalink") or ""),
            own_media=True,
        )
        mark = w.marks.get(key)
        _, was_count, _, _ = mark_fields(mark, 4)
        _, _, read_to, read_ids = mark_fields(w.got.marks.get(key) or mark, 4)
        at_mark = frozenset(read_ids.split(",")) if read_to == str(since) and read_ids else None
        w.got.add(
            translated,
            w.stream,
            floor=datetime.fromtimestamp(since, UTC),
            skip=at_mark or frozenset(),
            until=w.until,
        )
        # The newest second read, and the comments of that second (read again next time,
        # by the floor, and left out by id).
        stamped: list[tuple[int, str]] = []
        for raw in answer.data:
            if not isinstance(raw, dict):
                continue
            for item in [raw, *replies_of(raw)]:
                at = data_time(item, "timestamp")
                if at is not None and isinstance(item.get("id"), str):
                    stamped.append((at, item["id"]))
        newest = max([since, *(at for at, _ in stamped)])
        if read_to and as_int(read_to) is not None and (as_int(read_to) or 0) > newest:
            newest = as_int(read_to) or newest
        ids_then = set(read_ids.split(",")) if read_to == str(newest) and read_ids else set()
        ids_then |= {i for at, i in stamped if at == newest}
        more = after_cursor(answer, self.network)
        # The count is kept once every page was read: a stop between pages reads it again.
        kept = str(count) if more is None else (was_count or "-1")
        w.got.marks[key] = f"{made}|{kept}|{newest}|{','.join(sorted(ids_then))}"
        return more

    def _tags_step(self, w: Walk) -> WalkToken | None:
        """Media of others tagging the account, newest first, back to the floor (a tag
        carries the media's time, not the tagging's); a backfill's: inside its segment."""
        listing = self._list(f"{self.ig_user_id}/tags", w.listing(TAG_FIELDS, self.page_size))
        items = w.resumed(listing)
        w.got.add(parse_ig_media(items, w.account), Stream.MENTIONS, floor=w.floor, until=w.until)
        edge = int(w.floor.timestamp())
        return self._next_page(w, listing, items, "timestamp", edge, undated=False)

    def check(self, handles: Sequence[str]) -> list[CheckRow]:
        """What ``syncd check`` reports of this account (:func:`.check.instagram_check`)."""
        return instagram_check(
            self, self.ig_user_id, self.inbox if self.direct else None, handles
        )

if TYPE_CHECKING:  # the contracts are structural: have mypy hold the class to them
    _i: type[Source] = InstagramSource
    _is: type[Starting] = InstagramSource
    _io: type[ObservedResponses] = InstagramSource
    _ib: type[Backfiller] = InstagramSource
    _iw: type[WebhookSource] = InstagramSource
