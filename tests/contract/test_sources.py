"""SourceContract, run against each source connector on its stand-in (X, Mastodon, Bluesky,
Facebook, Instagram) and against the fake source: every one passes the same tests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
from support.fake_source import FakeNetwork, FakeSource, Fault

from connectors.bluesky.source import BlueskySource
from connectors.mastodon.source import MastodonSource
from connectors.meta.facebook import FacebookSource
from connectors.meta.instagram import InstagramSource
from connectors.x.source import XSource
from sandbox.bluesky.api import BlueskySandbox
from sandbox.mastodon.api import MastodonSandbox
from sandbox.meta.api import MetaSandbox
from sandbox.meta.store import IGAccount, IGUser, Person
from sandbox.x.api import XSandbox
from syncd.contracts import Source

from .source import SourceContract, SourceWorld

X_TOKEN = "contract-x-bearer"


def numbers_below(like: str, n: int) -> list[str]:
    """``n`` post ids below ``like``, for a network whose post ids are numbers."""
    return [str(int(like) - 1 - k) for k in range(n)]


class XWorld:
    """The X API v2 stand-in (sandbox/x/), read by the real connector."""

    page_size = 5  # the least X accepts
    faults = frozenset({"rate_limit", "transient", "malformed", "bad_item"})
    overlap = False  # since_id: exactly the newer posts
    _endpoints = ("mentions", "user_tweets")

    def __init__(self, sandbox: XSandbox) -> None:
        self.sandbox = sandbox

    def make_source(self, *, valid_credentials: bool = True) -> Source:
        token = X_TOKEN if valid_credentials else "revoked-bearer"
        return XSource(token, api_base_url=self.sandbox.url, page_size=self.page_size)

    def handle(self, name: str) -> str:
        return name  # the suite's names are X usernames as they are

    def absent_post_ids(self, like: str, n: int) -> list[str]:
        return numbers_below(like, n)

    def add_user(self, name: str) -> str:
        return str(self.sandbox.add_user(self.handle(name))["id"])

    def add_post(self, author_id: str, text: str, *, in_reply_to: str | None = None) -> str:
        return str(self.sandbox.add_post(author_id, text, in_reply_to=in_reply_to)["id"])

    def delete_post(self, post_id: str) -> None:
        self.sandbox.delete_post(post_id)

    def rename_user(self, user_id: str, name: str) -> None:
        # The stand-in has no rename in its API: its store is changed as X's would be.
        handle = self.handle(name)
        with self.sandbox.lock:
            store = self.sandbox.store
            user = store.users[user_id]
            del store._by_username[user.username.lower()]
            user.username = handle
            store._by_username[handle.lower()] = user_id

    def fail_next(self, fault: str) -> None:
        kind, options = ("status", {"status": 503}) if fault == "transient" else (fault, {})
        for endpoint in self._endpoints:  # whichever of them the stream reads
            self.sandbox.inject(kind, endpoint=endpoint, count=1, **options)


class TestXSource(SourceContract):
    @pytest.fixture
    def source_world(self) -> Iterator[XWorld]:
        with XSandbox(bearer_token=X_TOKEN) as sandbox:
            yield XWorld(sandbox)


MASTODON_TOKEN = "contract-mastodon-token"


class MastodonWorld:
    """The Mastodon stand-in (sandbox/mastodon/), read by the real connector with Mastodon.py.
    Users are accounts of the instance; a user's id is its actor uri, a post's its status uri;
    the source's token is the brand's, @acme: an instance's token always has its account, so
    @acme exists from the start, and the suite's add_user("acme") is given it."""

    page_size = 5
    faults = frozenset({"rate_limit", "transient", "malformed", "bad_item"})
    overlap = False  # a walk reads forward from the stored id, and no further
    _endpoints = ("notifications", "account_statuses")

    def __init__(self, sandbox: MastodonSandbox) -> None:
        self.sandbox = sandbox
        sandbox.add_token(MASTODON_TOKEN, "acme")
        # The suite's brand must see every mention: the policy syncd check asks for.
        sandbox.policy.update(for_private_mentions="accept", for_limited_accounts="accept")
        self._accounts: dict[str, str] = {}  # actor uri → local id
        self._statuses: dict[str, str] = {}  # status uri → local id
        self.add_user("acme")

    def make_source(self, *, valid_credentials: bool = True) -> Source:
        token = MASTODON_TOKEN if valid_credentials else "revoked-token"
        # The suite posts before its first walk, which must read it all: a start long ago.
        return MastodonSource(
            token, api_base_url=self.sandbox.url, page_size=self.page_size, start="2000-01-01"
        )

    def handle(self, name: str) -> str:
        return f"{name}@{self.sandbox.host}"  # a local account, shown with its domain

    def absent_post_ids(self, like: str, n: int) -> list[str]:
        head, _, last = like.rpartition("/")
        return [f"{head}/{int(last) - 1 - k}" for k in range(n)]

    def add_user(self, name: str) -> str:
        account = self.sandbox.by_acct(name) or self.sandbox.add_account(name)
        self._accounts[account.uri] = account.id
        return account.uri

    def add_post(self, author_id: str, text: str, *, in_reply_to: str | None = None) -> str:
        parent = self._statuses[in_reply_to] if in_reply_to else None
        status = self.sandbox.add_status(self._accounts[author_id], text, in_reply_to=parent)
        self._statuses[status.uri] = status.id
        return status.uri

    def delete_post(self, post_id: str) -> None:
        self.sandbox.delete_status(self._statuses[post_id])

    def rename_user(self, user_id: str, name: str) -> None:
        self.sandbox.move_account(self._accounts[user_id], name)

    def fail_next(self, fault: str) -> None:
        kind, options = ("status", {"status": 503}) if fault == "transient" else (fault, {})
        for endpoint in self._endpoints:  # whichever of them the stream reads
            self.sandbox.inject(kind, endpoint=endpoint, count=1, **options)


class TestMastodonSource(SourceContract):
    @pytest.fixture
    def source_world(self) -> Iterator[MastodonWorld]:
        with MastodonSandbox() as sandbox:
            yield MastodonWorld(sandbox)


class BlueskyWorld:
    """The Bluesky XRPC stand-in (sandbox/bluesky/), read by the real connector through the
    atproto SDK, logged in as the brand ``acme``. Handles are domain names there: a name the
    suite gives ("acme") is ``acme.bsky.social``, as the connector reads a configured one.
    A post's id is its at-uri, whose record key is a TID (a time, base32-sortable)."""

    page_size = 5
    faults = frozenset({"rate_limit", "transient", "malformed", "bad_item"})
    # A walk reads an hour past its mark, for backdated posts the appview sorts below it.
    overlap = True
    _endpoints = ("listNotifications", "getAuthorFeed")
    password = "contract-app-password"

    def __init__(self, sandbox: BlueskySandbox, directory: Path) -> None:
        self.sandbox = sandbox
        self.directory = directory
        # The brand exists before any source logs in as it (a login is one account's).
        self.brand = sandbox.add_user("acme.bsky.social", password=self.password).did

    def make_source(self, *, valid_credentials: bool = True) -> Source:
        session = self.directory / ("acme.session" if valid_credentials else "refused.session")
        return BlueskySource(
            identifier="acme",
            app_password=self.password if valid_credentials else "wrong-password",
            session_file=session,
            service=self.sandbox.url,
            page_size=self.page_size,
        )

    def handle(self, name: str) -> str:
        # A domain name's labels take letters, digits and hyphens: no "_".
        return f"{name.replace('_', '-')}.bsky.social"

    def absent_post_ids(self, like: str, n: int) -> list[str]:
        head, _, rkey = like.rpartition("/")
        tid = sum(_S32.index(c) << (5 * (12 - k)) for k, c in enumerate(rkey))
        return [f"{head}/{_tid(tid - 1 - k)}" for k in range(n)]

    def add_user(self, name: str) -> str:
        if name == "acme":
            return self.brand
        return self.sandbox.add_user(self.handle(name)).did

    def add_post(self, author_id: str, text: str, *, in_reply_to: str | None = None) -> str:
        # A client writes "@name" as a mention facet naming the DID; the world does so.
        mentions = []
        for name in re.findall(r"@([a-z0-9_]+)", text):
            user = self.sandbox.user_by_handle(f"{name}.bsky.social")
            if user is not None:
                mentions.append(user.did)
        post = self.sandbox.add_post(
            author_id, text, in_reply_to=in_reply_to, mentions=tuple(mentions)
        )
        return post.uri

    def delete_post(self, post_id: str) -> None:
        self.sandbox.delete_post(post_id)

    def rename_user(self, user_id: str, name: str) -> None:
        with self.sandbox.lock:
            self.sandbox.users[user_id].handle = self.handle(name)

    def fail_next(self, fault: str) -> None:
        kind, options = ("status", {"status": 503}) if fault == "transient" else (fault, {})
        for endpoint in self._endpoints:
            self.sandbox.inject(kind, endpoint=endpoint, count=1, **options)


_S32 = "234567abcdefghijklmnopqrstuvwxyz"  # the TID alphabet, in sort order


def _tid(value: int) -> str:
    return "".join(_S32[(value >> (5 * (12 - k))) & 31] for k in range(13))


class TestBlueskySource(SourceContract):
    @pytest.fixture
    def source_world(self, tmp_path: Path) -> Iterator[BlueskyWorld]:
        sandbox = BlueskySandbox()
        with sandbox:
            yield BlueskyWorld(sandbox, tmp_path)


META_TOKEN = "contract-meta-page-token"


class TickingClock:
    """A clock one second on at each reading, shared by the Meta stand-in and the source:
    Graph's times are whole seconds, so a walk's start and the posts around it are told
    apart however fast the suite runs."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class FacebookWorld:
    """The Meta Graph stand-in (sandbox/meta/), read by the real Facebook source. The brand
    is the Page "acme"; a user is a person, their id scoped to the Page
    (``<page-id>:<from.id>``). A post that mentions the brand is a comment on the Page's
    post (where people talk to a Page), an answer to one is a reply; anything else a person
    posts goes on another Page's wall, out of the brand's sight. The brand's posts that
    answer no one are the Page's own posts. Messenger is left to the source's own tests."""

    page_size = 5
    faults = frozenset({"rate_limit", "transient", "malformed"})
    # A post without a mark (the suite keeps none between walks) has its comments read back
    # to a little before the stored since_id: what was read just before is read again.
    overlap = True
    _endpoints = ("feed", "comments")

    def __init__(self, sandbox: MetaSandbox, clock: TickingClock) -> None:
        self.sandbox = sandbox
        self.clock = clock
        self.page = sandbox.add_page("acme", token=META_TOKEN)
        self.elsewhere = sandbox.add_page("elsewhere")
        self.wall = sandbox.add_post(self.page.id, "Welcome to acme")
        self.people: dict[str, Person] = {}

    def make_source(self, *, valid_credentials: bool = True) -> Source:
        return FacebookSource(
            META_TOKEN if valid_credentials else "revoked-page-token",
            page_id=self.page.id,
            messenger=False,
            page_size=self.page_size,
            api_base_url=self.sandbox.url,
            start="2000-01-01",
            clock=self.clock,
        )

    def handle(self, name: str) -> str:
        return name  # Facebook has none: the suite's handle assertions are known gaps

    def absent_post_ids(self, like: str, n: int) -> list[str]:
        head, _, last = like.rpartition("_")
        return [f"{head}_{int(last) - 1 - k}" for k in range(n)]

    def add_user(self, name: str) -> str:
        if name == "acme":
            return self.page.id
        person = self.sandbox.add_person(name)
        user_id = f"{self.page.id}:{self.sandbox.scoped_id(person, self.page.id)}"
        self.people[user_id] = person
        return user_id

    def add_post(self, author_id: str, text: str, *, in_reply_to: str | None = None) -> str:
        if author_id == self.page.id:
            if in_reply_to is not None:
                return self.sandbox.add_reply(in_reply_to, self.page, text).id
            return self.sandbox.add_post(self.page.id, text).id
        person = self.people[author_id]
        if in_reply_to is not None:
            return self.sandbox.add_reply(in_reply_to, person, text).id
        if "@acme" in text:
            return self.sandbox.add_comment(self.wall.id, person, text).id
        return self.sandbox.add_visitor_post(self.elsewhere.id, person, text).id

    def delete_post(self, post_id: str) -> None:
        self.sandbox.delete(post_id)

    def rename_user(self, user_id: str, name: str) -> None:
        raise NotImplementedError("a Facebook author has a name, no handle")

    def fail_next(self, fault: str) -> None:
        kind, options = {
            "rate_limit": ("throttle", {}),
            "transient": ("status", {"status": 503}),
            "malformed": ("malformed", {}),
        }[fault]
        for endpoint in self._endpoints:
            self.sandbox.inject(kind, endpoint=endpoint, count=1, **options)


class TestFacebookSource(SourceContract):
    known_gaps = {
        "test_resolve_accounts_finds_known_handles_only": (
            "a Page token resolves its own Page only: Graph looks no person up by name"
        ),
        "test_resolve_accounts_takes_more_handles_than_one_call": (
            "a Page token resolves its own Page only: Graph looks no person up by name"
        ),
        "test_first_page_translates_mentions": (
            "Facebook authors have a name and no handle: Author.handle is None"
        ),
    }

    @pytest.fixture
    def source_world(self) -> Iterator[FacebookWorld]:
        clock = TickingClock()
        with MetaSandbox(clock=clock) as sandbox:
            yield FacebookWorld(sandbox, clock)


class InstagramWorld:
    """The Meta Graph stand-in (sandbox/meta/), read by the real Instagram source. The brand
    is the professional account "acme" (linked to a Page, read with its token); a user is
    an Instagram user, their id the IGSID the account sees, scoped to it
    (``<ig-user-id>:<igsid>``), their handle their username. A post that mentions the
    brand is a comment on the account's media (where people talk to an account), an answer
    to one is a reply (Instagram threads one level deep: an answer to a reply sits under its
    comment); anything else a user posts is their own media, out of the brand's sight. The
    brand's posts that answer no one are the account's own media."""

    page_size = 5
    faults = frozenset({"rate_limit", "transient", "malformed"})
    # As Facebook's: comments of a media without a mark are read back to a little before
    # the stored since_id.
    overlap = True
    _endpoints = ("media", "comments")

    def __init__(self, sandbox: MetaSandbox, clock: TickingClock) -> None:
        self.sandbox = sandbox
        self.clock = clock
        page = sandbox.add_page("acme", token=META_TOKEN)
        self.account = sandbox.add_instagram_account(page.id, "acme")
        self.wall = sandbox.add_media(self.account.id, "Welcome to acme")
        self.users: dict[str, IGUser] = {}

    def make_source(self, *, valid_credentials: bool = True) -> Source:
        return InstagramSource(
            META_TOKEN if valid_credentials else "revoked-page-token",
            ig_user_id=self.account.id,
            page_size=self.page_size,
            api_base_url=self.sandbox.url,
            start="2000-01-01",
            clock=self.clock,
        )

    def handle(self, name: str) -> str:
        return name

    def absent_post_ids(self, like: str, n: int) -> list[str]:
        # Instagram ids are numbers from one sequence: far below any the stand-in gave.
        return [str(int(like) - 10**12 - k) for k in range(n)]

    def add_user(self, name: str) -> str:
        if name == "acme":
            return self.account.id
        user = self.sandbox.add_ig_user(name)
        user_id = f"{self.account.id}:{self.sandbox.igsid(user, self.account.id)}"
        self.users[user_id] = user
        return user_id

    def add_post(self, author_id: str, text: str, *, in_reply_to: str | None = None) -> str:
        author: IGAccount | IGUser = (
            self.account if author_id == self.account.id else self.users[author_id]
        )
        if in_reply_to is not None:
            answered = self.sandbox.store.ig_comments[in_reply_to]
            top = answered.parent_id or answered.id
            return self.sandbox.add_ig_comment(answered.media_id, author, text, reply_to=top).id
        if isinstance(author, IGAccount):
            return self.sandbox.add_media(self.account.id, text).id
        if "@acme" in text:
            return self.sandbox.add_ig_comment(self.wall.id, author, text).id
        return self.sandbox.add_others_media(author, text).id

    def delete_post(self, post_id: str) -> None:
        self.sandbox.delete(post_id)

    def rename_user(self, user_id: str, name: str) -> None:
        self.sandbox.rename_ig_user(self.users[user_id], name)

    def fail_next(self, fault: str) -> None:
        kind, options = {
            "rate_limit": ("throttle", {}),
            "transient": ("status", {"status": 503}),
            "malformed": ("malformed", {}),
        }[fault]
        for endpoint in self._endpoints:
            self.sandbox.inject(kind, endpoint=endpoint, count=1, **options)


class TestInstagramSource(SourceContract):
    known_gaps = {
        "test_an_empty_stream_is_one_complete_page": (
            "a mentions walk has two phases, the account's media then the media tagging it, "
            "each its own page: an empty stream is two pages"
        ),
        "test_first_page_translates_mentions": (
            "the first page is the media phase's: the walk ends after the tags page"
        ),
        "test_known_authors_change_what_is_read_not_what_is_found": (
            "a Meta walk's pending since_id is the time its first page was read (Meta's "
            "objects have no ordered ids): two reads of a first page differ in it"
        ),
        "test_resolve_accounts_finds_known_handles_only": (
            "a Page token resolves its own Instagram account only: Graph looks no user up"
        ),
        "test_resolve_accounts_takes_more_handles_than_one_call": (
            "a Page token resolves its own Instagram account only: Graph looks no user up"
        ),
    }

    @pytest.fixture
    def source_world(self) -> Iterator[InstagramWorld]:
        clock = TickingClock()
        with MetaSandbox(clock=clock) as sandbox:
            yield InstagramWorld(sandbox, clock)


class FakeWorld:
    """support.fake_source: an in-memory network and the fake source that reads it."""

    page_size = 5
    faults = frozenset({"rate_limit", "transient", "malformed", "bad_item"})
    overlap = False

    def __init__(self) -> None:
        self.network = FakeNetwork()

    def make_source(self, *, valid_credentials: bool = True) -> Source:
        token = None if valid_credentials else "revoked"
        return FakeSource(self.network, token=token, page_size=self.page_size)

    def handle(self, name: str) -> str:
        return name

    def absent_post_ids(self, like: str, n: int) -> list[str]:
        return numbers_below(like, n)

    def add_user(self, name: str) -> str:
        return self.network.add_user(self.handle(name)).id

    def add_post(self, author_id: str, text: str, *, in_reply_to: str | None = None) -> str:
        return self.network.add_post(author_id, text, in_reply_to=in_reply_to).id

    def delete_post(self, post_id: str) -> None:
        self.network.delete_post(post_id)

    def rename_user(self, user_id: str, name: str) -> None:
        self.network.users[user_id].handle = self.handle(name)

    def fail_next(self, fault: str) -> None:
        assert fault in self.faults
        self.network.faults.append(cast(Fault, fault))


class TestFakeSource(SourceContract):
    @pytest.fixture
    def source_world(self) -> FakeWorld:
        return FakeWorld()


if TYPE_CHECKING:  # have mypy hold every world to what the suite asks of it

    def _worlds(
        x: XWorld, m: MastodonWorld, b: BlueskyWorld, fb: FacebookWorld, f: FakeWorld
    ) -> list[SourceWorld]:
        return [x, m, b, fb, f]
