"""Strategies and scripts for tests/properties/test_properties.py.

Two halves: JSON strategies and fixture mutations for the X page parser, and the walks the
fake X answers and the crashes injected into the database for the ingest/deliver state
machine (the CRM side is :class:`support.fake_crm.FakeCrm`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from sqlalchemy import Engine, event

from support import FIXTURES
from support.fake_crm import Crash
from support.fake_source import Script
from syncd.model import (
    Account,
    Author,
    Cursor,
    Direction,
    Interaction,
    Page,
    Quarantined,
    Stream,
)

RECORDINGS = FIXTURES / "x-api-v2-json"


# == the parser half ==========================================================================
def recorded_body(name: str) -> dict[str, Any]:
    doc = json.loads((RECORDINGS / f"{name}.json").read_text(encoding="utf-8"))
    body = doc["body"]
    assert isinstance(body, dict)
    return body


# Bodies with data in them are the interesting ones to mutate; the error-only ones ride along.
RECORDED = {
    name: recorded_body(name)
    for name in (
        "users_1145936974064177152_mentions-d24b15",
        "users_1145936974064177152_tweets-d24b15",
        "users_17880989_mentions-d24b15",
        "users_45648666_mentions-d24b15",
        "tweets-0b8bd2",
    )
}
ADIL = Account("x", "adil_iis", "1145936974064177152")
FOBLEH = "1249336678398877696"  # the author of every post in adil_iis's mentions page

# Characters storage chokes on: lone surrogates (json.loads produces them from "\ud800"
# escapes, UTF-8 cannot encode them) and NUL (PostgreSQL text refuses it).
POISON = ("\x00", "\ud800", "\udfff", "\udc00\ud800")
NASTY_STRINGS = (
    "",
    " ",
    "\n",
    "abc",
    "12a",
    "1\n",
    "-1",
    "1.5",
    "1e3",
    "0x1F",
    "١٢٣",  # Arabic-Indic digits: str.isdigit() says yes, X says no
    "²",
    "0" * 20,
    "9" * 25,
    "x" * 600,
    "null",
    *POISON,
)
BAD_DATES = (
    "yesterday",
    "2021-05-31T08:00:48",  # no zone
    "2021-05-31",
    "2021-13-01T00:00:00Z",
    "2021-02-30T00:00:00Z",
    "0001-01-01T00:00:00+01:00",  # converting to UTC leaves datetime's range
    "9999-12-31T23:59:59-01:00",
    "2021-05-31T08:00:48.000Z\x00",
    "",
)

texts = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=12),
    st.sampled_from(NASTY_STRINGS),
    st.tuples(st.text(max_size=5), st.sampled_from(POISON), st.text(max_size=5)).map("".join),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    # JSON has no NaN or infinities.
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)


def _containers(kids: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(kids, max_size=4), st.dictionaries(texts, kids, max_size=4))


json_values: st.SearchStrategy[Any] = st.recursive(scalars, _containers, max_leaves=12)

# Ids X would send, ids it would not, and a small pool so that brand and author collide.
ID_POOL = ("1", "7", "8", ADIL.user_id, FOBLEH)
good_ids = st.from_regex(r"[0-9]{1,19}", fullmatch=True)
ids = st.one_of(st.sampled_from(ID_POOL), good_ids, st.sampled_from(NASTY_STRINGS), json_values)
good_dates = st.datetimes(
    min_value=datetime(2006, 3, 21), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.isoformat().replace("+00:00", "Z"))
dates = st.one_of(good_dates, st.sampled_from(BAD_DATES), json_values)
references = st.one_of(
    st.lists(
        st.fixed_dictionaries(
            {}, optional={"type": st.sampled_from(["replied_to", "quoted"]) | texts, "id": ids}
        ),
        max_size=2,
    ),
    json_values,
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` three times in four: one_of picks its branches evenly. Without this, a post
    whose every field is readable is so rare that interactions are never made."""
    return st.one_of(good, good, good, bad)


pool_ids = st.sampled_from(ID_POOL) | good_ids
any_posts = st.fixed_dictionaries(
    {},
    optional={
        "id": ids,
        "author_id": ids,
        "created_at": dates,
        "text": texts | json_values,
        "conversation_id": ids,
        "in_reply_to_user_id": ids,
        "referenced_tweets": references,
    },
)
plausible_posts = st.fixed_dictionaries(
    {
        "id": mostly(good_ids, ids),
        "author_id": mostly(pool_ids, ids),
        "created_at": mostly(good_dates, dates),
        "text": mostly(texts, json_values),
    },
    optional={
        "conversation_id": mostly(good_ids, ids),
        "in_reply_to_user_id": mostly(pool_ids, ids),
        "referenced_tweets": references,
    },
)
posts = mostly(plausible_posts, any_posts)
users = st.fixed_dictionaries(
    {"id": mostly(pool_ids, ids)},
    optional={
        "username": texts | json_values,
        "name": texts | json_values,
        "description": texts | json_values,
        "location": texts | json_values,
        "url": texts | json_values,
        "entities": json_values
        | st.builds(lambda u: {"url": {"urls": [{"expanded_url": u}]}}, texts | json_values),
    },
)


def items(kind: st.SearchStrategy[Any], size: int) -> st.SearchStrategy[Any]:
    """A list of mostly ``kind`` (and any JSON), or, rarely, any JSON instead of a list."""
    return mostly(st.lists(mostly(kind, json_values), max_size=size), json_values)


page_like = st.fixed_dictionaries(
    {"data": items(posts, 6)},  # "data": null is how an absent one reads
    optional={
        "includes": mostly(
            st.fixed_dictionaries(
                {},
                optional={
                    "users": items(users, 3),
                    "tweets": items(posts, 3),
                    "posts": items(posts, 3),
                },
            ),
            json_values,
        ),
        "meta": mostly(
            st.fixed_dictionaries(
                {},
                optional={
                    "next_token": mostly(st.text("abcdefghij0123456789", max_size=20), texts),
                    "newest_id": ids,
                    "oldest_id": ids,
                    "result_count": json_values,
                },
            ),
            json_values,
        ),
        "errors": items(json_values, 3),
    },
)
accounts = st.builds(
    Account, st.just("x"), st.sampled_from(["acme", "adil_iis"]), st.sampled_from(ID_POOL)
)
streams = st.sampled_from(list(Stream))
cursors = st.builds(
    Cursor,
    st.none() | good_ids,
    st.none() | st.text("abcdefghij0123456789", min_size=1, max_size=12),
    st.none() | good_ids,
)


def as_json(value: Any) -> Any:
    """What a body looks like after a trip through the wire: string keys, fresh objects."""
    return json.loads(json.dumps(value))


# -- mutating recorded bodies --------------------------------------------------------------
Path_ = tuple[str | int, ...]


def node_paths(doc: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    """Every path below ``doc`` (not the root itself)."""
    children: Iterator[tuple[str | int, Any]]
    if isinstance(doc, dict):
        children = iter(doc.items())
    elif isinstance(doc, list):
        children = enumerate(doc)
    else:
        return
    for key, child in children:
        yield (*prefix, key)
        yield from node_paths(child, (*prefix, key))


def parent_of(doc: Any, path: Path_) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


def swap_type(value: Any) -> Any:
    """The same content in the wrong JSON type."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return int(value) if value.isascii() and value.isdigit() else [value]
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    return {}


MUTATIONS = ("delete", "replace", "swap", "nasty", "bad_date", "poison")


def mutate(doc: Any, path: Path_, how: str, replacement: Any) -> None:
    """Apply one mutation in place; ``replacement`` is the new value unless deleting or swapping."""
    parent, key = parent_of(doc, path), path[-1]
    if how == "delete":
        del parent[key]
    elif how == "swap":
        parent[key] = swap_type(parent[key])
    elif how == "poison" and isinstance(parent[key], str):
        # Still a string, still readable, but not storable as it is.
        parent[key] = parent[key][:3] + replacement + parent[key][3:]
    else:
        parent[key] = replacement


REPLACEMENTS: dict[str, st.SearchStrategy[Any]] = {
    "replace": json_values,
    "nasty": st.sampled_from(NASTY_STRINGS),
    "bad_date": st.sampled_from(BAD_DATES),
    "poison": st.sampled_from(POISON),
}


@st.composite
def mutated_recordings(draw: st.DrawFn) -> dict[str, Any]:
    """A recorded body with one to four mutations anywhere in it."""
    body = copy.deepcopy(RECORDED[draw(st.sampled_from(sorted(RECORDED)), label="recording")])
    for _ in range(draw(st.integers(1, 4), label="mutations")):
        paths = list(node_paths(body))
        if not paths:
            break
        path = draw(st.sampled_from(paths), label="path")
        how = draw(st.sampled_from(MUTATIONS), label="how")
        mutate(body, path, how, draw(REPLACEMENTS.get(how, st.none()), label="replacement"))
    return body


# == the state-machine half ===================================================================
class StatementCrasher:
    """Raises :class:`Crash` just before the n-th SQL statement run on an engine.

    A statement crash inside ``Database.transaction`` rolls the transaction back, exactly as a
    SIGKILL would leave the database; outside a transaction it lands between two of them.
    Only statements run while ``active`` count: the test's own queries are not the pipeline's.
    """

    def __init__(self) -> None:
        self.countdown: int | None = None
        self.active = False
        self.seen = 0  # statements counted so far, to size a sweep

    def reset(self) -> None:
        self.countdown, self.active, self.seen = None, False, 0

    def arm(self, at: int | None) -> None:
        self.countdown = at

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before)

    def _before(self, *args: Any) -> None:
        statement = args[2]
        # BEGIN (IMMEDIATE) runs from the "begin" event; crashing on it crashes nothing new.
        if not self.active or statement.lstrip().upper().startswith("BEGIN"):
            return
        self.seen += 1
        if self.countdown is None:
            return
        if self.countdown == 0:
            self.countdown = None
            raise Crash(f"crash before: {statement[:60]}")
        self.countdown -= 1


# The universe of posts the fake X serves: mentions of either brand account by three customers,
# and posts by one brand mentioning the other (kept, but nobody's history).
BRANDS = (Account("x", "acme", "100"), Account("x", "acmesupport", "101"))
BRAND_IDS = frozenset(a.user_id for a in BRANDS)
CUSTOMERS = ("7", "8", "9")
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def universe_post(index: int, account: Account) -> Interaction:
    """Post ``index`` as ``account``'s mentions stream sees it (same post id for both)."""
    post_id = str(1_800_000_000_000_000_000 + index)
    author = "101" if index % 5 == 4 else CUSTOMERS[index % len(CUSTOMERS)]
    return Interaction(
        network="x",
        post_id=post_id,
        account=account.handle,
        stream=Stream.MENTIONS,
        direction=Direction.INBOUND,
        author_id=author,
        counterpart_id=author,
        text=f"post {index}",
        created_at=T0 + timedelta(minutes=index),
        url=f"https://x.com/i/web/status/{post_id}",
        raw={"id": post_id, "author_id": author},
    )


def bad_item(index: int) -> Quarantined:
    return Quarantined("x", "created_at is not a date", {"id": f"9{index}"}, f"9{index}")


def customer_posts(post_ids: set[str]) -> set[str]:
    return {
        p
        for p in post_ids
        if universe_post(int(p) - 1_800_000_000_000_000_000, BRANDS[0]).counterpart_id
        not in BRAND_IDS
    }


@dataclass
class Walks:
    """Scripts the fake X's walks of the brands' mentions, each a chain of pages keyed by the
    cursor that asks for them. Pages may overlap, repeat posts, run in any order and repeat
    posts of earlier walks; the pipeline must not care."""

    script: Script = field(default_factory=lambda: Script(brands={a.handle: a for a in BRANDS}))
    count: int = 0

    def plan(self, account: Account, start: Cursor, pages: Sequence[Sequence[int]]) -> None:
        """Script a walk from ``start``, its pages the universe's posts of these indexes (a
        negative index: an item that cannot be translated), unless one is scripted already:
        then it is replayed."""
        if (account.handle, start) in self.script.pages:
            return
        self.count += 1
        walk = self.count
        end = Cursor(since_id=str(walk))  # opaque to the pipeline; unique per walk
        cursor = start
        for n, indexes in enumerate(pages or [[]]):
            last = n == len(pages or [[]]) - 1
            following = (
                end
                if last
                else Cursor(
                    start.since_id, pagination_token=f"w{walk}p{n + 1}", pending_since_id=str(walk)
                )
            )
            items = tuple(universe_post(i, account) for i in indexes if i >= 0)
            # Some pages carry no user expansions: identities then come from the posts alone.
            with_authors = (walk + n) % 3 != 0
            author_ids = sorted({i.author_id for i in items if i.author_id}) if with_authors else []
            authors = tuple(Author("x", uid, f"user{uid}") for uid in author_ids)
            self.script.pages[(account.handle, cursor)] = Page(
                interactions=items,
                authors=authors,
                next_cursor=following,
                quarantined=tuple(bad_item(-i) for i in indexes if i < 0),
            )
            cursor = following


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now
