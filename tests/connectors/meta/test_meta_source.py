"""connectors.meta's sources against the Graph stand-in (sandbox/meta/), its pages stored by the
core's own ingest (one transaction a page, the cursor and the marks with it), as the poller
stores them.

What each test pins: a comment on an old post is read, and only posts that moved are asked
for their comments (requests counted); a crash between pages reads one page again; a busy
Messenger thread ends the walk cut (a gap nothing can close); a withheld author is stored
without one; the Page's replies are attributed to the person answered; a throttle and an
expired token are the errors the runner acts on; posts leaving the window drop their marks;
Instagram reads only media whose comment count moved; check and lookup_posts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.meta import Calls, Core, GraphClock, ids

from connectors import source_class
from connectors.meta.facebook import FacebookSource
from connectors.meta.instagram import InstagramSource
from connectors.meta.settings import FacebookSettings, InstagramSettings
from connectors.meta.walk import SKEW
from sandbox.meta.api import MetaSandbox
from sandbox.meta.store import Page as SandboxPage
from syncd.errors import AuthError, RateLimited
from syncd.model import (
    Account,
    Cursor,
    Direction,
    GapState,
    Page,
    Segment,
    Stream,
)
from syncd.state.db import Database
from syncd.state.tables import deliveries, identities, interactions

TOKEN = "meta-source-page-token"
SOURCE = "acme-facebook"


@pytest.fixture
def page(sandbox: MetaSandbox) -> SandboxPage:
    return sandbox.add_page("Acme", token=TOKEN)


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Core]:
    db = Database(f"sqlite:///{tmp_path / 'state.db'}")
    db.upgrade()
    yield Core(db, SOURCE)
    db.dispose()


@pytest.fixture
def calls() -> Calls:
    return Calls()


def facebook(
    sandbox: MetaSandbox, page: SandboxPage, clock: GraphClock, calls: Calls, **kw: object
) -> FacebookSource:
    options: dict[str, object] = {"page_size": 5, "start": "1d", "messenger": False, **kw}
    source = FacebookSource(
        str(options.pop("token", TOKEN)),
        page_id=page.id,
        api_base_url=sandbox.url,
        clock=clock,
        **options,  # type: ignore[arg-type]
    )
    source.observe_responses(calls)
    return source


def brand(page: SandboxPage) -> Account:
    return Account("facebook", "Acme", page.id)


# -- Facebook: comments ------------------------------------------------------------------------
def test_a_comment_on_an_old_post_is_read_and_only_moved_posts_are_asked(
    sandbox: MetaSandbox, page: SandboxPage, clock: GraphClock, core: Core, calls: Calls
) -> None:
    fan = sandbox.add_person("Ann Fan")
    old = sandbox.add_post(page.id, "Autumn sale", at=clock.now - timedelta(days=30))
    posts = [sandbox.add_post(page.id, f"News {n}") for n in range(7)]
    first = sandbox.add_comment(posts[-1].id, fan, "When does it ship?")
    source = facebook(sandbox, page, clock, calls)
    acme = brand(page)
    assert ids(core.walk(source, acme)) == [first.id]
    # Every post in the window was new to the walk: each asked once for its comments.
    assert calls.count("/comments") == 8

    # Posts that moved just before a read are read once more when they are older than any
    # clock difference (see the test below); then they are settled.
    clock.advance(SKEW)
    assert ids(core.walk(source, acme)) == []
    calls.clear()
    late = sandbox.add_comment(old.id, fan, "Is the autumn sale still on?")
    pages = core.walk(source, acme)
    assert ids(pages) == [late.id]
    (read,) = [i for p in pages for i in p.interactions]
    assert read.author_id == f"{page.id}:{sandbox.scoped_id(fan, page.id)}"
    assert read.conversation_id == old.id and read.in_reply_to_post_id == old.id
    # Only the post the comment moved was asked; the feed read in pages of 5.
    assert calls.count("/comments") == 1
    assert calls.count("/feed") == 2

    clock.advance(SKEW)
    assert ids(core.walk(source, acme)) == []  # the moved post, settled
    calls.clear()
    assert ids(core.walk(source, acme)) == []
    assert calls.count("/comments") == 0


def test_a_comment_in_the_second_of_the_last_read_is_not_passed_over(
    sandbox: MetaSandbox, page: SandboxPage, clock: GraphClock, core: Core, calls: Calls
) -> None:
    """Graph's times are whole seconds: a comment made after the read, in its second, leaves
    the post's updated_time as the mark holds it."""
    fan = sandbox.add_person("Ann Fan")
    post = sandbox.add_post(page.id, "News")
    first = sandbox.add_comment(post.id, fan, "When does it ship?")
    source = facebook(sandbox, page, clock, calls)
    acme = brand(page)
    assert ids(core.walk(source, acme)) == [first.id]
    same_second = sandbox.add_comment(post.id, fan, "And to Norway?", at=first.created)
    assert ids(core.walk(source, acme)) == [same_second.id]
    # Once the post is older than any clock difference, it is passed over again.
    clock.advance(SKEW)
    assert ids(core.walk(source, acme)) == []
    calls.clear()
    assert ids(core.walk(source, acme)) == []
    assert calls.count("/comments") == 0


def test_a_crash_between_pages_reads_one_page_again(
    sandbox: MetaSandbox, page: SandboxPage, clock: GraphClock, core: Core, calls: Calls
) -> None:
    post = sandbox.add_post(page.id, "Launch")
    people = [sandbox.add_person(f"Fan {n}") for n in range(12)]
    source = facebook(sandbox, page, clock, calls)
    acme = brand(page)
    core.walk(source, acme)  # the post's first walk: no comments yet
    made = [sandbox.add_comment(post.id, p, f"question {n}").id for n, p in enumerate(people)]
    # Page one is stored; page two is read and the process dies before storing it.
    pages = core.walk(source, acme, stop_after=1)
    assert len(pages) == 2
    lost = ids(pages[1:])
    stored = ids(pages[:1])
    again = facebook(sandbox, page, clock, calls)
    rest = core.walk(again, acme)
    read = ids(rest)
    assert read[: len(lost)] == lost, "the page never stored is read first"
    assert not set(read) & set(stored), "a stored page is not read again"
    assert sorted(stored + read) == sorted(made)


def test_the_pages_reply_is_outbound_to_the_person_it_answers(
    sandbox: MetaSandbox, page: SandboxPage, clock: GraphClock, core: Core, calls: Calls
) -> None:
    fan = sandbox.add_person("Ann Fan")
    post = sandbox.add_post(page.id, "Launch")
    question = sandbox.add_comment(post.id, fan, "Does it float?")
    source = facebook(sandbox, page, clock, calls)
    acme = brand(page)
    core.walk(source, acme, Stream.REPLIES)
    # The answer comes after the question was read: its parent comes with it.
    answer = sandbox.add_reply(question.id, page, "It does!")
    sandbox.add_comment(post.id, page, "Thanks all")  # answering no one: not history
    (reply,) = [i for p in core.walk(source, acme, Stream.REPLIES) for i in p.interactions]
    assert reply.post_id == answer.id and reply.stream is Stream.REPLIES
    assert reply.direction is Direction.OUTBOUND
    assert reply.author_id == page.id
    assert reply.counterpart_id == f"{page.id}:{sandbox.scoped_id(fan, page.id)}"
    assert reply.in_reply_to_post_id == question.id
    # The mentions stream holds the question, never the answer.
    assert ids(core.walk(source, acme)) == [question.id]


def test_a_withheld_author_is_stored_without_one(
    sandbox: MetaSandbox, clock: GraphClock, core: Core, calls: Calls
) -> None:
    page = sandbox.add_page("Acme", token=TOKEN, advanced_access=False)
    stranger = sandbox.add_person("No Role")
    post = sandbox.add_post(page.id, "Launch")
    comment = sandbox.add_comment(post.id, stranger, "Hello?")
    source = facebook(sandbox, page, clock, calls)
    (pg,) = core.walk(source, brand(page))
    (item,) = pg.interactions
    assert item.post_id == comment.id
    assert item.author_id is None and item.counterpart_id is None
    assert pg.authors == () and pg.quarantined == ()
    rows = {r.item: r for r in source.check(["Acme"])}
    authors = rows["comment authors"]
    assert not authors.ok and "Advanced Access" in authors.detail
    assert "App Review" in authors.fix


def test_authors_withheld_before_app_review_are_named_by_a_backfill_after_it(
    sandbox: MetaSandbox, clock: GraphClock, core: Core, calls: Calls
) -> None:
    page = sandbox.add_page("Acme", token=TOKEN, advanced_access=False)
    stranger = sandbox.add_person("No Role")
    post = sandbox.add_post(page.id, "Launch", at=clock.now - timedelta(hours=3))
    comment = sandbox.add_comment(post.id, stranger, "Hello?", at=clock.now - timedelta(hours=2))
    answer = sandbox.add_reply(comment.id, page, "Hi!", at=clock.now - timedelta(hours=1))
    source = facebook(sandbox, page, clock, calls)
    acme = brand(page)
    for stream in (Stream.MENTIONS, Stream.REPLIES):
        core.walk(source, acme, stream)
    with core.db.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(deliveries)) == 0

    sandbox.set_advanced_access(page.id, True)  # App Review passed
    now = clock.now
    for segment in source.plan_backfill(
        acme, [Stream.MENTIONS, Stream.REPLIES], now - timedelta(days=1), now, now
    ):
        for pg in segment_pages(source, acme, segment):
            core.store(source, acme, segment.stream, pg)
    person = f"{page.id}:{sandbox.scoped_id(stranger, page.id)}"
    with core.db.connect() as conn:
        rows = conn.execute(
            select(interactions.c.post_id, interactions.c.author_id, identities.c.user_id)
            .join(identities, identities.c.id == interactions.c.counterpart_identity_id)
            .order_by(interactions.c.created_at)
        ).all()
        written = conn.scalar(select(func.count()).select_from(deliveries))
    assert [tuple(r) for r in rows] == [(comment.id, person, person), (answer.id, page.id, person)]
    assert written == 2


def test_posts_leaving_the_window_drop_their_marks(
    sandbox: MetaSandbox, page: SandboxPage, clock: GraphClock, core: Core, calls: Calls
) -> None:
    old = sandbox.add_post(page.id, "Old", at=clock.now - timedelta(days=80))
    recent = sandbox.add_post(page.id, "Recent")
    source = facebook(sandbox, page, clock, calls, watch_window=90 * 86400.0)
    acme = brand(page)
    core.walk(source, acme)
    assert set(core.cursor(acme, Stream.MENTIONS).marks) == {f"post:{old.id}", f"post:{recent.id}"}
    clock.advance(timedelta(days=15))
    core.walk(source, acme)
    assert set(core.cursor(acme, Stream.MENTIONS).marks) == {f"post:{recent.id}"}


# -- Facebook: Messenger -------------------------------------------------------------------------
def test_messenger_reads_new_messages_and_a_busy_thread_is_an_unclosable_gap(
    sandbox: MetaSandbox, page: SandboxPage, clock: GraphClock, core: Core, calls: Calls
) -> None:
    fan = sandbox.add_person("Ann Fan")
    hello = sandbox.add_message(page.id, fan, "Hello, my order?")
    source = facebook(sandbox, page, clock, calls, messenger=True)
    acme = brand(page)
    assert ids(core.walk(source, acme)) == [hello.id]
    answer = sandbox.add_message(page.id, fan, "Looking now", from_page=True)
    (reply,) = [i for p in core.walk(source, acme, Stream.REPLIES) for i in p.interactions]
    assert reply.post_id == answer.id
    assert reply.counterpart_id == f"{page.id}:{sandbox.scoped_id(fan, page.id)}"

    one = sandbox.add_message(page.id, fan, "one more")
    assert ids(core.walk(source, acme)) == [one.id]
    assert core.gaps() == []

    burst = [sandbox.add_message(page.id, fan, f"msg {n}") for n in range(25)]
    pages = core.walk(source, acme)
    # The 20 newest have details and are read; the 5 before them are out of reach.
    assert sorted(ids(pages)) == sorted(m.id for m in burst[-20:])
    assert pages[-1].cut and pages[-1].walk_complete
    (gap,) = core.gaps()
    assert gap.state == GapState.OPEN and gap.stream == Stream.MENTIONS
    plan = source.plan_gap(acme, Stream.MENTIONS, gap.since_id, gap.until_id, clock.now)
    assert plan.segments == () and plan.unreachable and "20 newest" in plan.unreachable
    # The next walk reads on from the newest message: no gap again.
    later = sandbox.add_message(page.id, fan, "still there?")
    assert ids(core.walk(source, acme)) == [later.id]
    assert len(core.gaps()) == 1


# -- one object's call failing ----------------------------------------------------------------
def test_one_threads_unreadable_answer_leaves_it_to_the_next_walk_and_the_others_are_read(
    sandbox: MetaSandbox, page: SandboxPage, clock: GraphClock, core: Core, calls: Calls
) -> None:
    made = [
        sandbox.add_message(page.id, sandbox.add_person(name), "Where is my order?").id
        for name in ("Ann Fan", "Bob Fan")
    ]
    # Older than the floor of the walk after next: only its mark brings the one left back.
    clock.advance(SKEW * 2)
    source = facebook(sandbox, page, clock, calls, messenger=True)
    acme = brand(page)
    sandbox.inject("malformed", endpoint="messages", count=1)
    pages = core.walk(source, acme)
    (read,) = ids(pages)
    assert any("left for the next walk" in w for p in pages for w in p.warnings)
    assert sorted([read, *ids(core.walk(source, acme))]) == sorted(made)


def test_one_posts_failed_comments_call_leaves_it_to_the_next_walk_and_the_others_are_read(
    sandbox: MetaSandbox, page: SandboxPage, clock: GraphClock, core: Core, calls: Calls
) -> None:
    fan = sandbox.add_person("Ann Fan")
    older, newer = [sandbox.add_post(page.id, f"News {n}") for n in range(2)]
    # The feed lists the newer post first: its call fails, and the walk ends at the comment
    # it read, later than the floor of the next walk's: only its mark brings the one left back.
    left = sandbox.add_comment(newer.id, fan, "Price?")
    clock.advance(SKEW * 2)
    read = sandbox.add_comment(older.id, fan, "In blue?")
    source = facebook(sandbox, page, clock, calls)
    acme = brand(page)
    sandbox.inject("status", endpoint="comments", count=1, status=500)
    assert ids(core.walk(source, acme)) == [read.id]
    assert ids(core.walk(source, acme)) == [left.id]


def test_one_medias_failed_comments_call_leaves_it_to_the_next_walk_and_the_others_are_read(
    sandbox: MetaSandbox, page: SandboxPage, clock: GraphClock, core: Core
) -> None:
    account = sandbox.add_instagram_account(page.id, "acme")
    fan = sandbox.add_ig_user("ann")
    media = [sandbox.add_media(account.id, f"post {n}") for n in range(2)]
    made = [sandbox.add_ig_comment(m.id, fan, "love it").id for m in media]
    clock.advance(SKEW * 2)
    source = InstagramSource(
        TOKEN, ig_user_id=account.id, api_base_url=sandbox.url, start="1d", clock=clock
    )
    acme = Account("instagram", "acme", account.id)
    sandbox.inject("malformed", endpoint="comments", count=1)
    (read,) = ids(core.walk(source, acme))
    assert sorted([read, *ids(core.walk(source, acme))]) == sorted(made)


# -- backfill ------------------------------------------------------------------------------------
def segment_pages(source: FacebookSource, account: Account, segment: Segment) -> list[Page]:
    pages: list[Page] = []
    token: str | None = None
    while not pages or token is not None:
        assert len(pages) < 20, "the segment never ends"
        pages.append(source.fetch_segment(account, segment, token))
        assert pages[-1].marks == {}
        token = pages[-1].next_cursor.pagination_token
    return pages


def test_a_backfill_reads_the_windows_comments_on_the_watched_posts(
    sandbox: MetaSandbox, page: SandboxPage, clock: GraphClock, calls: Calls
) -> None:
    now = clock.now
    fan = sandbox.add_person("Ann Fan")
    ancient = sandbox.add_post(page.id, "Last year", at=now - timedelta(days=200))
    post = sandbox.add_post(page.id, "Summer sale", at=now - timedelta(days=60))
    before = sandbox.add_comment(post.id, fan, "too early", at=now - timedelta(days=40))
    inside = [
        sandbox.add_comment(post.id, fan, f"in {n}", at=now - timedelta(days=20, minutes=n))
        for n in range(7)
    ]
    answer = sandbox.add_reply(inside[0].id, page, "thanks", at=now - timedelta(days=19))
    sandbox.add_comment(ancient.id, fan, "on an old post", at=now - timedelta(days=20))
    after = sandbox.add_comment(post.id, fan, "too late", at=now - timedelta(days=2))
    source = facebook(sandbox, page, clock, calls)
    acme = brand(page)
    since, until = now - timedelta(days=30), now - timedelta(days=10)
    (mentions, replies) = source.plan_backfill(
        acme, [Stream.MENTIONS, Stream.REPLIES], since, until, now
    )
    assert (mentions.since, mentions.until) == (since, until)
    # The watch window bounds a longer one, and the plan says so.
    (longer,) = source.plan_backfill(acme, [Stream.MENTIONS], now - timedelta(days=120), until, now)
    assert longer.since == now - timedelta(days=90)
    assert longer.note and "watch window's start" in longer.note
    read = ids(segment_pages(source, acme, mentions))
    assert sorted(read) == sorted(c.id for c in inside)
    assert before.id not in read and after.id not in read
    (out,) = [i for p in segment_pages(source, acme, replies) for i in p.interactions]
    assert out.post_id == answer.id and out.direction is Direction.OUTBOUND
    assert source.plan_backfill(acme, [Stream.MENTIONS], since, now - timedelta(days=95), now) == []


# -- errors ---------------------------------------------------------------------------------------
def test_a_throttle_raises_rate_limited_until_meta_says(
    sandbox: MetaSandbox, page: SandboxPage, clock: GraphClock, calls: Calls
) -> None:
    sandbox.add_post(page.id, "Launch")
    source = facebook(sandbox, page, clock, calls)
    sandbox.inject("throttle", endpoint="feed", count=1, minutes=7)
    before = datetime.now(UTC)
    with pytest.raises(RateLimited) as info:
        source.fetch(brand(page), Stream.MENTIONS, Cursor())
    # estimated_time_to_regain_access: 7 minutes, counted from the call.
    assert before + timedelta(minutes=7) <= info.value.resume_at
    assert info.value.resume_at <= datetime.now(UTC) + timedelta(minutes=7)
    assert info.value.system == "facebook"
    # No call is made before then.
    calls.clear()
    with pytest.raises(RateLimited):
        source.fetch(brand(page), Stream.MENTIONS, Cursor())
    assert calls.routes == Counter()


def test_an_expired_token_is_an_auth_error_naming_the_fix(
    sandbox: MetaSandbox, page: SandboxPage, clock: GraphClock, calls: Calls
) -> None:
    source = facebook(sandbox, page, clock, calls)
    sandbox.expire_token(TOKEN)
    with pytest.raises(AuthError) as info:
        source.fetch(brand(page), Stream.MENTIONS, Cursor())
    assert "issue a new Page token" in str(info.value)
    assert TOKEN not in str(info.value)
    (row,) = source.check(["Acme"])
    assert not row.ok and "Page token" in row.fix


# -- check and compliance --------------------------------------------------------------------------
def test_check_names_the_token_the_scopes_and_the_webhook_hint(
    sandbox: MetaSandbox, page: SandboxPage, clock: GraphClock, calls: Calls
) -> None:
    source = facebook(sandbox, page, clock, calls, messenger=True)
    rows = {r.item: r for r in source.check(["Acme", "Other"])}
    assert rows["Page token"].ok and page.id in rows["Page token"].detail
    assert (
        rows["posts and comments"].ok
        and "pages_read_user_content" in rows["posts and comments"].detail
    )
    assert rows["Messenger"].ok and "pages_messaging" in rows["Messenger"].detail
    assert rows["webhooks"].ok and "webhook" in rows["webhooks"].detail
    assert rows["Acme"].ok and not rows["Other"].ok
    # A user token is not a Page token.
    sandbox.add_token("a-user-token")
    (row,) = facebook(sandbox, page, clock, calls, token="a-user-token").check(["Acme"])
    assert not row.ok and "Page access token" in row.fix


def test_lookup_posts_tells_deleted_comments_and_never_judges_messages(
    sandbox: MetaSandbox, page: SandboxPage, clock: GraphClock, calls: Calls
) -> None:
    fan = sandbox.add_person("Ann Fan")
    post = sandbox.add_post(page.id, "Launch")
    kept = sandbox.add_comment(post.id, fan, "kept")
    gone = sandbox.add_comment(post.id, fan, "gone")
    message = sandbox.add_message(page.id, fan, "hi")
    sandbox.delete(gone.id)
    source = facebook(sandbox, page, clock, calls)
    alive, deleted = source.lookup_posts([kept.id, gone.id, message.id])
    assert alive == {kept.id} and deleted == {gone.id}


# -- Instagram -------------------------------------------------------------------------------------
def test_instagram_reads_only_media_whose_comment_count_moved(
    sandbox: MetaSandbox, page: SandboxPage, clock: GraphClock, core: Core, calls: Calls
) -> None:
    account = sandbox.add_instagram_account(page.id, "acme")
    fan = sandbox.add_ig_user("ann")
    media = [sandbox.add_media(account.id, f"post {n}") for n in range(4)]
    first = sandbox.add_ig_comment(media[0].id, fan, "love it")
    tagger = sandbox.add_others_media(fan, "look", tagged=[account.id])
    source = InstagramSource(
        TOKEN,
        ig_user_id=account.id,
        api_base_url=sandbox.url,
        page_size=5,
        start="1d",
        clock=clock,
    )
    source.observe_responses(calls)
    acme = Account("instagram", "acme", account.id)
    assert source.resolve_accounts(["acme"]) == {"acme": acme}
    assert sorted(ids(core.walk(source, acme))) == sorted([first.id, tagger.id])
    assert calls.count("/comments") == 1  # media without comments were not asked

    calls.clear()
    reply = sandbox.add_ig_comment(media[0].id, account, "thank you!", reply_to=first.id)
    later = sandbox.add_ig_comment(media[2].id, fan, "price?")
    # Tags have no mark: the walk reads them back to a little before its last start, and
    # what it reads again there is stored once.
    assert set(ids(core.walk(source, acme))) - {tagger.id} == {later.id}
    assert calls.count("/comments") == 2
    (out,) = [i for p in core.walk(source, acme, Stream.REPLIES) for i in p.interactions]
    assert out.post_id == reply.id and out.direction is Direction.OUTBOUND
    assert out.counterpart_id == f"{account.id}:{sandbox.igsid(fan, account.id)}"
    # Nothing moved: no media is asked for its comments.
    calls.clear()
    assert set(ids(core.walk(source, acme))) <= {tagger.id}
    assert calls.count("/comments") == 0


# -- settings and registry -------------------------------------------------------------------------
def test_settings_and_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FB", "a-page-token")
    fb = FacebookSettings.model_validate(
        {"name": "acme-fb", "type": "facebook", "page_id": "123", "access_token": "env:FB"}
    )
    assert fb.accounts == ["123"] and fb.graph_version == "v25.0"
    assert fb.watch_window == 90 * 86400.0
    ig = InstagramSettings.model_validate(
        {
            "name": "acme-ig",
            "type": "instagram",
            "ig_user_id": "178",
            "accounts": ["acme"],
            "access_token": "env:FB",
            "watch_window": "30d",
        }
    )
    assert ig.watch_window == 30 * 86400.0
    with pytest.raises(ValueError):
        FacebookSettings.model_validate(
            {"name": "x", "type": "facebook", "page_id": "acme", "access_token": "env:FB"}
        )
    assert source_class("facebook") is FacebookSource
    assert source_class("instagram") is InstagramSource
