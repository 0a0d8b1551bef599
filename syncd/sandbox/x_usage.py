"""What the X stand-in has handed out, counted the way X bills it.

Since February 2026 X bills per resource returned: every post and every user object in an
answer, primary or expanded, once per UTC day per resource. The meter keeps both the raw
counts (what crossed the wire) and the billed ones (distinct per UTC day), so a benchmark can
tell a client that re-reads from one that merely reads a lot.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

# Endpoints whose primary ``data`` holds users rather than posts.
USER_ENDPOINTS = frozenset({"user_by_username", "users_by", "user", "users"})
# Counts answer with time buckets, no resources.
UNBILLED_ENDPOINTS = frozenset({"counts_recent", "counts_all"})


class Usage:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.posts_returned = 0
        self.users_returned = 0
        self._posts: dict[date, set[str]] = {}
        self._users: dict[date, set[str]] = {}

    def record(self, endpoint: str, body: Mapping[str, Any], day: date) -> None:
        """Count one 200 answer of ``endpoint`` sent on ``day`` (UTC)."""
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
        with self._lock:
            self.posts_returned += len(posts)
            self.users_returned += len(users)
            self._posts.setdefault(day, set()).update(posts)
            self._users.setdefault(day, set()).update(_ids(users))

    @property
    def posts_billed(self) -> int:
        with self._lock:
            return sum(len(ids) for ids in self._posts.values())

    @property
    def users_billed(self) -> int:
        with self._lock:
            return sum(len(ids) for ids in self._users.values())


def _ids(objects: Iterable[Any]) -> set[str]:
    return {str(o.get("id")) for o in objects if isinstance(o, dict)}
