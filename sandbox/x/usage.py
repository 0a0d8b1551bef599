"""What the X stand-in has handed out, counted the way X bills it.

Since February 2026 X bills per resource returned: every post and every user object in an
answer, primary or expanded, once per UTC day per resource. The meter keeps both the raw
counts (what crossed the wire) and the billed ones (distinct per UTC day), so a benchmark can
tell a client that re-reads from one that merely reads a lot.

Owned reads (X: $0.001 a post instead of $0.005) are counted apart: the posts a user's
mentions or own-posts timeline returns to a request made with that user's own token. Only the
timeline's own posts: those expanded beside them (a replied-to post) are ordinary reads. The
totals (``posts_returned``, ``posts_billed``) count both kinds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

# Endpoints whose primary ``data`` holds users rather than posts.
USER_ENDPOINTS = frozenset({"user_by_username", "users_by", "user", "users", "users_me"})
# Counts answer with time buckets, no resources; the usage endpoint with figures.
UNBILLED_ENDPOINTS = frozenset({"counts_recent", "counts_all", "usage_tweets"})


class Usage:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.posts_returned = 0
        self.users_returned = 0
        self.owned_posts_returned = 0
        self._posts: dict[date, set[str]] = {}
        self._owned: dict[date, set[str]] = {}
        self._users: dict[date, set[str]] = {}

    def record(
        self, endpoint: str, body: Mapping[str, Any], day: date, *, owned: bool = False
    ) -> None:
        """Count one 200 answer of ``endpoint`` sent on ``day`` (UTC); ``owned``: a user's
        own timeline, asked for with that user's own token."""
        if endpoint in UNBILLED_ENDPOINTS:
            return
        data = body.get("data")
        primary = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
        includes = body.get("includes") or {}
        users = list(includes.get("users") or [])
        # Either dialect's name for expanded posts; the stand-in may send both for one post.
        posts = {
            str(p.get("id")): p
            for key in ("tweets", "posts")
            for p in includes.get(key) or []
            if isinstance(p, dict)
        }
        if endpoint in USER_ENDPOINTS:
            users += primary
        else:
            posts.update((str(p.get("id")), p) for p in primary if isinstance(p, dict))
        mine = _ids(primary) if owned and endpoint not in USER_ENDPOINTS else set()
        with self._lock:
            self.posts_returned += len(posts)
            self.users_returned += len(users)
            self.owned_posts_returned += len(mine)
            self._posts.setdefault(day, set()).update(posts)
            self._owned.setdefault(day, set()).update(mine)
            self._users.setdefault(day, set()).update(_ids(users))

    @property
    def posts_billed(self) -> int:
        with self._lock:
            return sum(len(ids) for ids in self._posts.values())

    @property
    def owned_posts_billed(self) -> int:
        """Posts billed at the owned-read price: distinct per UTC day."""
        with self._lock:
            return sum(len(ids) for ids in self._owned.values())

    @property
    def unowned_posts_returned(self) -> int:
        with self._lock:
            return self.posts_returned - self.owned_posts_returned

    @property
    def unowned_posts_billed(self) -> int:
        """Posts billed at the ordinary price: a post read both ways in one UTC day is
        billed once, as owned."""
        with self._lock:
            return sum(len(ids - self._owned.get(day, set())) for day, ids in self._posts.items())

    @property
    def users_billed(self) -> int:
        with self._lock:
            return sum(len(ids) for ids in self._users.values())

    def posts_billed_between(self, first: date, last: date) -> int:
        """Posts billed from UTC day ``first`` to ``last``, both included (the usage
        endpoint's figures, and the project cap's measure)."""
        with self._lock:
            return sum(len(ids) for day, ids in self._posts.items() if first <= day <= last)


def _ids(objects: Iterable[Any]) -> set[str]:
    return {str(o.get("id")) for o in objects if isinstance(o, dict)}
