"""Only the user objects X must send: a timeline or search page is read without expansions,
and the profiles of the authors state does not already hold are looked up, 100 per call.

X bills every user object returned ($0.010 each, once per UTC day), and the ``author_id``
expansion returns one for every post, so a page of 100 mentions by known customers cost as
much in user objects as in posts. The replied-to post is read only when a reply does not say
whom it answers; X names that in ``in_reply_to_user_id`` on every reply it sends.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from connectors.x.client import XClient
from connectors.x.fields import EXPANSIONS, USER_FIELDS
from connectors.x.parse import is_x_id, parse_author, reply_target
from syncd.contracts import KnownAuthors
from syncd.model import Account, Author, Stream

LOOKUP_BATCH = 100  # ids GET /2/users and GET /2/tweets take in one call

Call = Callable[..., tuple[Any, Mapping[str, str]]]


class RecentProfiles:
    """Profiles this process looked up lately. Several accounts' walks run in parallel, and
    a new author who mentions three brands in one burst is unknown to all three pages until
    the first one is stored: the others wait for that look-up and take its answer."""

    def __init__(self, size: int = 2_000) -> None:
        self.lock = threading.Lock()  # held across a look-up: one at a time per source
        self._size = size
        self._profiles: OrderedDict[str, Author] = OrderedDict()

    def get(self, user_ids: Iterable[str]) -> dict[str, Author]:
        return {u: a for u in user_ids if (a := self._profiles.get(u)) is not None}

    def add(self, authors: Iterable[Author]) -> None:
        for author in authors:
            self._profiles[author.user_id] = author
            self._profiles.move_to_end(author.user_id)
        while len(self._profiles) > self._size:
            self._profiles.popitem(last=False)


class Authors:
    """The authors' side of every page the source reads, walks and backfills alike."""

    def __init__(self, client: XClient) -> None:
        self._client = client
        self._recent = RecentProfiles()

    def expansions(self, known: KnownAuthors | None) -> dict[str, Any]:
        """What a page asks X to expand: nothing when state knows authors (they are looked up
        after, only those it lacks), else everything."""
        return {} if known else {"expansions": EXPANSIONS, "user_fields": USER_FIELDS}

    def complete(
        self, body: Any, account: Account, stream: Stream, known: KnownAuthors | None
    ) -> tuple[Any, dict[str, Author]]:
        """``body`` and the known profiles, as :func:`complete`; a page read with the
        expansions (``known`` None) is complete already."""
        if known is None:
            return body, {}
        return complete(
            body,
            account=account,
            stream=stream,
            known=known,
            call=self._client.call,
            client=self._client.app,
            recent=self._recent,
        )


def complete(
    body: Any,
    *,
    account: Account,
    stream: Stream,
    known: KnownAuthors,
    call: Call,
    client: Any,
    recent: RecentProfiles,
) -> tuple[Any, dict[str, Author]]:
    """``body`` with the user objects (and replied-to posts) parsing needs added to its
    ``includes``, as the expansions would have, and the known authors' profiles (their
    handles make the posts' links)."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        return body, {}  # an empty page, or one the parser will refuse: nothing to add
    posts = [p for p in body["data"] if isinstance(p, dict)]
    includes = dict(body.get("includes") or {}) if isinstance(body.get("includes"), dict) else {}
    if stream is Stream.REPLIES:
        missing = [r for p in posts if (r := _unnamed_reply(p)) is not None]
        if missing:
            includes["tweets"] = _lookup(
                call, client.get_tweets, missing, tweet_fields=["author_id"]
            )
    wanted = _people(posts, includes, account, stream)
    profiles = dict(known(wanted)) if wanted else {}
    unknown = [uid for uid in wanted if uid not in profiles]
    if unknown:
        with recent.lock:
            profiles |= recent.get(unknown)
            unknown = [uid for uid in unknown if uid not in profiles]
            if unknown:
                users = _lookup(call, client.get_users, unknown, user_fields=USER_FIELDS)
                includes["users"] = users
                recent.add(a for u in users if (a := parse_author(u)) is not None)
    return {**body, "includes": includes}, profiles


def _people(
    posts: Sequence[dict[str, Any]],
    includes: Mapping[str, Any],
    account: Account,
    stream: Stream,
) -> list[str]:
    """The customers these posts are history of: mentions' authors, replies' addressees."""
    if stream is Stream.MENTIONS:
        ids = [p.get("author_id") for p in posts]
    else:
        replied = {
            r.get("id"): r.get("author_id")
            for r in includes.get("tweets") or []
            if isinstance(r, dict)
        }
        ids = [p.get("in_reply_to_user_id") or replied.get(reply_target(p)) for p in posts]
    return list(dict.fromkeys(i for i in ids if is_x_id(i) and i != account.user_id))


def _unnamed_reply(post: dict[str, Any]) -> str | None:
    return reply_target(post) if post.get("in_reply_to_user_id") is None else None


def _lookup(call: Call, method: Callable[..., Any], ids: Sequence[str], **fields: Any) -> list[Any]:
    """The objects X returns for ``ids``, 100 a call. Ids X cannot show (suspended, deleted)
    are simply absent: their posts are stored without a profile, as before."""
    found: list[Any] = []
    for start in range(0, len(ids), LOOKUP_BATCH):
        body, _ = call(method, ids=list(ids[start : start + LOOKUP_BATCH]), **fields)
        data = body.get("data") if isinstance(body, dict) else None
        found += data if isinstance(data, list) else []
    return found
