"""Read only what is new: user objects only for authors state lacks (or holds too stale),
no expansions X bills for, and the replied-to post only when a reply does not name whom it
answers. Measured with the X stand-in's usage meter, which counts as X bills."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from support.e2e import World, make_world, poll_once, tasks

from connectors.x.authors import RecentProfiles, complete
from sandbox.seed import seed
from syncd.model import Account, Author, Stream
from syncd.state.db import Database
from syncd.state.profiles import fresh_profiles
from syncd.state.tables import identities


@pytest.fixture
def world(state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(state_url, tmp_path, monkeypatch) as w:
        yield w


def test_known_authors_cost_no_user_objects_and_links_keep_their_handles(
    world: World, state_url: str
) -> None:
    x, sf = world.x, world.sf
    people = seed(x, sf, customers=12)
    authors = [c for c in people.customers if c.kind != "unknown"][:6]
    for c in authors:
        x.add_post(c.user_id, "@acme first")
    code, output = poll_once(world)
    assert code == 0, output
    first_users = x.usage.users_returned
    # The first sight of each author reads their profile once, not once per post.
    assert first_users <= len(authors) + 2  # + the two brand accounts looked up by handle

    posts_before = x.usage.posts_returned
    later = [x.add_post(c.user_id, "@acme again") for c in authors]
    code, output = poll_once(world)
    assert code == 0, output
    assert x.usage.users_returned == first_users  # every author known: no user object
    assert x.usage.posts_returned - posts_before == len(later)  # no referenced posts either
    got = tasks(sf)
    for post, c in zip(later, authors, strict=True):
        assert got[f"x:{post['id']}"]["Social_Post_URL__c"] == (
            f"https://x.com/{c.handle}/status/{post['id']}"
        )


def test_a_stale_profile_is_read_again_and_a_new_handle_is_kept(
    world: World, state_url: str
) -> None:
    x, sf = world.x, world.sf
    people = seed(x, sf, customers=6)
    c = next(c for c in people.customers if c.kind != "unknown")
    x.add_post(c.user_id, "@acme hello")
    assert poll_once(world)[0] == 0
    db = Database(state_url)
    try:
        with db.transaction() as conn:
            conn.execute(
                update(identities)
                .where(identities.c.user_id == c.user_id)
                .values(profile_read_at=datetime.now(UTC) - timedelta(days=8))
            )
        with x.lock:
            x.store.users[c.user_id].username = "renamed_customer"
        users = x.usage.users_returned
        post = x.add_post(c.user_id, "@acme new name, same me")
        assert poll_once(world)[0] == 0
        assert x.usage.users_returned == users + 1  # only the stale profile
        with db.transaction() as conn:
            fresh = fresh_profiles(conn, "x", [c.user_id], datetime.now(UTC) - timedelta(days=1))
        assert fresh[c.user_id].handle == "renamed_customer"
        url = tasks(sf)[f"x:{post['id']}"]["Social_Post_URL__c"]
        assert url == f"https://x.com/renamed_customer/status/{post['id']}"
    finally:
        db.dispose()


class _Client:
    """tweepy's Client as far as :func:`complete` uses it: records what was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, list[str]]] = []

    def get_tweets(self, ids: list[str], **_: Any) -> Any:
        self.asked.append(("tweets", ids))
        return {"data": [{"id": i, "author_id": "77", "text": "?"} for i in ids]}

    def get_users(self, ids: list[str], **_: Any) -> Any:
        self.asked.append(("users", ids))
        return {"data": [{"id": i, "username": f"u{i}", "name": "N"} for i in ids]}


def _call(method: Any, **params: Any) -> tuple[Any, dict[str, str]]:
    return method(**params), {}


BRAND = Account("x", "acme", "1")


def test_only_a_reply_that_does_not_name_its_addressee_reads_the_replied_to_post() -> None:
    client = _Client()
    body = {
        "data": [
            {
                "id": "10",
                "author_id": "1",
                "in_reply_to_user_id": "55",
                "text": "a",
                "referenced_tweets": [{"type": "replied_to", "id": "9"}],
            },
            {
                "id": "11",
                "author_id": "1",
                "text": "b",
                "referenced_tweets": [{"type": "replied_to", "id": "8"}],
            },
        ]
    }
    known = {"55": Author("x", "55", "known55")}
    done, profiles = complete(
        body,
        account=BRAND,
        stream=Stream.REPLIES,
        known=lambda ids: {i: known[i] for i in ids if i in known},
        call=_call,
        client=client,
        recent=RecentProfiles(),
    )
    assert client.asked == [("tweets", ["8"]), ("users", ["77"])]
    assert profiles == known
    assert [u["id"] for u in done["includes"]["users"]] == ["77"]


def test_mentions_ask_only_for_unknown_authors_and_never_the_brand() -> None:
    client = _Client()
    body = {
        "data": [
            {"id": str(n), "author_id": a, "text": "t"}
            for n, a in enumerate(["5", "6", "5", "1", "7"], start=20)
        ]
    }
    asked: list[list[str]] = []

    def known(ids: Any) -> dict[str, Author]:
        asked.append(sorted(ids))
        return {"6": Author("x", "6", "six")}

    recent = RecentProfiles()
    done, _ = complete(
        body,
        account=BRAND,
        stream=Stream.MENTIONS,
        known=known,
        call=_call,
        client=client,
        recent=recent,
    )
    assert asked == [["5", "6", "7"]]
    assert client.asked == [("users", ["5", "7"])]
    assert done["data"] == body["data"]

    # Another account's page, before the first one is stored: the profiles just read serve.
    again, profiles = complete(
        body,
        account=BRAND,
        stream=Stream.MENTIONS,
        known=known,
        call=_call,
        client=client,
        recent=recent,
    )
    assert client.asked == [("users", ["5", "7"])]  # no second look-up
    assert set(profiles) == {"5", "6", "7"} and "users" not in again["includes"]


def test_an_empty_page_asks_nothing() -> None:
    client = _Client()
    _, profiles = complete(
        {"meta": {"result_count": 0}},
        account=BRAND,
        stream=Stream.MENTIONS,
        known=lambda ids: {},
        call=_call,
        client=client,
        recent=RecentProfiles(),
    )
    assert client.asked == [] and profiles == {}
