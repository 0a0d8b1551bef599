"""The Instagram source's Direct threads against the Graph stand-in (sandbox/meta/direct.py),
its pages stored by the core's own ingest on each state backend, as the poller stores them.

What each test pins: a person's message is a mention under the same id as their comments, and
the account's answer a reply attributed to them; more than 20 messages between two polls is a
gap nothing closes; a token without the messaging permission names it and stops Direct only;
an Instagram Login token reads Direct at ``me``; a walk that dies between pages of threads
stores each message once; ``direct = false`` asks nothing of the inbox; a message past the 20
newest is never judged deleted.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import requests
from support.meta import Calls, Core, GraphClock, ids

from connectors.meta.instagram import InstagramSource
from connectors.meta.settings import InstagramSettings
from sandbox.meta.api import MetaSandbox
from sandbox.meta.store import PAGE_SCOPES, IGAccount
from syncd.model import Account, Direction, GapState, Stream
from syncd.state.db import Database

TOKEN = "EAAB-page-token-ig-direct"
IG_TOKEN = "IGAA-instagram-login-token-direct"
SOURCE = "acme-instagram"


@pytest.fixture
def ig(sandbox: MetaSandbox) -> IGAccount:
    page = sandbox.add_page("Acme", token=TOKEN)
    return sandbox.add_instagram_account(page.id, "acme")


@pytest.fixture
def core(db: Database) -> Core:
    return Core(db, SOURCE)


def instagram(
    sandbox: MetaSandbox, ig: IGAccount, clock: GraphClock, calls: Calls | None = None, **kw: Any
) -> InstagramSource:
    options: dict[str, Any] = {"page_size": 5, "start": "1d", **kw}
    source = InstagramSource(
        options.pop("token", TOKEN),
        ig_user_id=ig.id,
        api_base_url=sandbox.url,
        clock=clock,
        **options,
    )
    if calls is not None:
        source.observe_responses(calls)
    return source


def brand(ig: IGAccount) -> Account:
    return Account("instagram", "acme", ig.id)


def test_a_message_is_a_mention_and_the_answer_a_reply_to_that_person(
    sandbox: MetaSandbox, ig: IGAccount, clock: GraphClock, core: Core
) -> None:
    fan = sandbox.add_ig_user("ann.fan")
    media = sandbox.add_media(ig.id, "new drop")
    comment = sandbox.add_ig_comment(media.id, fan, "love it")
    hello = sandbox.add_direct_message(ig.id, fan, "Hi, is my order shipped?")
    source = instagram(sandbox, ig, clock)
    acme = brand(ig)
    pages = core.walk(source, acme)
    assert sorted(ids(pages)) == sorted([comment.id, hello.id])
    by_id = {i.post_id: i for p in pages for i in p.interactions}
    person = f"{ig.id}:{sandbox.igsid(fan, ig.id)}"
    dm = by_id[hello.id]
    assert dm.direction is Direction.INBOUND and dm.network == "instagram"
    # The same IGSID as on the comment: the resolver meets one person.
    assert dm.author_id == by_id[comment.id].author_id == person
    assert dm.conversation_id == sandbox.direct_thread(ig.id, fan).id
    assert dm.text == "Hi, is my order shipped?"
    (author,) = {a for p in pages for a in p.authors if a.user_id == person}
    assert author.handle == "ann.fan"

    answer = sandbox.add_direct_message(ig.id, fan, "Yes, today!", from_account=True)
    (reply,) = [i for p in core.walk(source, acme, Stream.REPLIES) for i in p.interactions]
    assert reply.post_id == answer.id and reply.direction is Direction.OUTBOUND
    assert reply.author_id == ig.id and reply.counterpart_id == person
    # Nothing new: once its mark settled (SKEW on), the thread is not asked again.
    assert ids(core.walk(source, acme)) == []
    clock.now += timedelta(minutes=11)
    assert ids(core.walk(source, acme)) == []
    calls = Calls()
    source.observe_responses(calls)
    assert ids(core.walk(source, acme)) == []
    assert calls.count("/conversations") == 1 and calls.count("/messages") == 0


def test_more_than_twenty_messages_between_polls_is_a_gap_nothing_closes(
    sandbox: MetaSandbox, ig: IGAccount, clock: GraphClock, core: Core
) -> None:
    fan = sandbox.add_ig_user("busy")
    first = sandbox.add_direct_message(ig.id, fan, "hello")
    source = instagram(sandbox, ig, clock)
    acme = brand(ig)
    assert ids(core.walk(source, acme)) == [first.id]
    burst = [sandbox.add_direct_message(ig.id, fan, f"msg {n}") for n in range(25)]
    pages = core.walk(source, acme)
    assert sorted(ids(pages)) == sorted(m.id for m in burst[-20:])
    assert pages[-1].cut and pages[-1].walk_complete
    assert any("Instagram Direct thread" in w and "20" in w for p in pages for w in p.warnings)
    (gap,) = core.gaps()
    assert gap.state == GapState.OPEN and gap.stream == Stream.MENTIONS
    plan = source.plan_gap(acme, Stream.MENTIONS, gap.since_id, gap.until_id, clock.now)
    assert plan.segments == () and plan.unreachable
    later = sandbox.add_direct_message(ig.id, fan, "still there?")
    assert ids(core.walk(source, acme)) == [later.id]
    assert len(core.gaps()) == 1


def test_without_the_messaging_permission_direct_stops_and_says_which(
    sandbox: MetaSandbox, ig: IGAccount, clock: GraphClock, core: Core
) -> None:
    scopes = tuple(s for s in PAGE_SCOPES if s != "instagram_manage_messages")
    sandbox.add_token("EAAB-no-messages", ig.page_id, scopes=scopes)
    fan = sandbox.add_ig_user("ann")
    media = sandbox.add_media(ig.id, "post")
    comment = sandbox.add_ig_comment(media.id, fan, "nice")
    sandbox.add_direct_message(ig.id, fan, "hello?")
    source = instagram(sandbox, ig, clock, token="EAAB-no-messages")
    acme = brand(ig)
    pages = core.walk(source, acme)
    # The comments are read and stored; the walk ends instead of stopping on the inbox.
    assert ids(pages) == [comment.id] and pages[-1].walk_complete
    (said,) = [w for p in pages for w in p.warnings]
    assert "instagram_manage_messages" in said and "direct = false" in said
    rows = {r.item: r for r in source.check(["acme"])}
    assert not rows["Instagram Direct"].ok
    assert "instagram_manage_messages" in (rows["Instagram Direct"].fix or "")
    assert rows["media and comments"].ok
    # The next poll reads comments again, not stuck on the inbox.
    later = sandbox.add_ig_comment(media.id, fan, "again")
    assert ids(core.walk(source, acme)) == [later.id]


def test_an_instagram_login_token_reads_direct_at_me(
    sandbox: MetaSandbox, ig: IGAccount, clock: GraphClock, core: Core
) -> None:
    sandbox.add_instagram_login_token(IG_TOKEN, ig.id)
    fan = sandbox.add_ig_user("ann")
    hello = sandbox.add_direct_message(ig.id, fan, "hello from the app")
    calls = Calls()
    source = instagram(sandbox, ig, clock, calls, token=IG_TOKEN, instagram_login=True)
    assert source.client.token_name == "Instagram token"
    pages = core.walk(source, brand(ig))
    assert ids(pages) == [hello.id]
    (dm,) = [i for p in pages for i in p.interactions]
    assert dm.author_id == f"{ig.id}:{sandbox.igsid(fan, ig.id)}"
    assert calls.count("/conversations") == 1
    rows = {r.item: r for r in source.check(["acme"])}
    assert rows["Instagram Direct"].ok
    assert "instagram_business_manage_messages" in rows["Instagram Direct"].detail

    sandbox.add_instagram_login_token(
        "IGAA-no-messages", ig.id, scopes=("instagram_business_basic",)
    )
    bare = instagram(sandbox, ig, clock, token="IGAA-no-messages", instagram_login=True)
    row = {r.item: r for r in bare.check(["acme"])}["Instagram Direct"]
    assert not row.ok and "instagram_business_manage_messages" in (row.fix or "")


def test_a_walk_dying_between_pages_of_threads_stores_each_message_once(
    sandbox: MetaSandbox, ig: IGAccount, clock: GraphClock, core: Core
) -> None:
    fans = [sandbox.add_ig_user(f"fan{n}") for n in range(3)]
    sent = [sandbox.add_direct_message(ig.id, fan, f"hi from {n}") for n, fan in enumerate(fans)]
    source = instagram(sandbox, ig, clock, page_size=1)
    acme = brand(ig)
    # media (empty), tags (empty), then one thread a page: die on the second thread's page.
    died = core.walk(source, acme, stop_after=3)
    assert ids(died[-1:]) == [sent[1].id]  # read, never stored
    assert core.new == 1
    core.walk(source, acme)
    assert core.new == 3
    assert ids(core.walk(source, acme)) == []
    assert core.new == 3


def test_direct_off_asks_nothing_of_the_inbox(
    sandbox: MetaSandbox, ig: IGAccount, clock: GraphClock, core: Core
) -> None:
    fan = sandbox.add_ig_user("ann")
    sandbox.add_direct_message(ig.id, fan, "hello")
    calls = Calls()
    source = instagram(sandbox, ig, clock, calls, direct=False)
    assert ids(core.walk(source, brand(ig))) == []
    assert calls.count("/conversations") == 0
    assert "Instagram Direct" not in {r.item for r in source.check(["acme"])}


def test_direct_is_read_unless_the_setting_says_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IG", "a-page-token")
    base = {"name": "acme-ig", "type": "instagram", "ig_user_id": "178", "access_token": "env:IG"}
    on = InstagramSource.from_settings(InstagramSettings.model_validate(base))
    off = InstagramSource.from_settings(InstagramSettings.model_validate({**base, "direct": False}))
    assert on.direct and not off.direct
    assert "instagram_manage_messages" in on.inbox.needs


def test_a_message_past_the_twenty_newest_is_never_judged_deleted(
    sandbox: MetaSandbox, ig: IGAccount, clock: GraphClock
) -> None:
    fan = sandbox.add_ig_user("ann")
    old = sandbox.add_direct_message(ig.id, fan, "first")
    for n in range(20):
        sandbox.add_direct_message(ig.id, fan, f"later {n}")
    media = sandbox.add_media(ig.id, "post")
    comment = sandbox.add_ig_comment(media.id, fan, "hi")
    source = instagram(sandbox, ig, clock)
    alive, deleted = source.lookup_posts([old.id, comment.id])
    assert alive == {comment.id} and deleted == set()


# -- the stand-in ---------------------------------------------------------------------------------
def graph(sandbox: MetaSandbox, path: str, token: str, **params: str) -> requests.Response:
    return requests.get(
        f"{sandbox.url}/v25.0/{path}", params={"access_token": token, **params}, timeout=10
    )


def test_the_stand_in_serves_direct_by_page_and_by_instagram_login(
    sandbox: MetaSandbox, ig: IGAccount
) -> None:
    fan = sandbox.add_ig_user("ann")
    messages = [sandbox.add_direct_message(ig.id, fan, f"m{n}") for n in range(22)]
    thread = sandbox.direct_thread(ig.id, fan)
    igsid = sandbox.igsid(fan, ig.id)
    sandbox.add_instagram_login_token(IG_TOKEN, ig.id)
    fields = {"platform": "instagram", "fields": "id,updated_time,participants"}
    for path, token in ((f"{ig.page_id}/conversations", TOKEN), ("me/conversations", IG_TOKEN)):
        body = graph(sandbox, path, token, **fields).json()
        (listed,) = body["data"]
        assert listed["id"] == thread.id
        assert {"username": "ann", "id": igsid} in listed["participants"]["data"]
        assert {"username": "acme", "id": ig.id} in listed["participants"]["data"]
    # Facebook Login reads Direct through the Page only; Messenger's threads are apart.
    refused = graph(sandbox, f"{ig.id}/conversations", TOKEN, **fields)
    assert refused.status_code == 400
    assert graph(sandbox, "me/conversations", TOKEN, platform="messenger").json()["data"] == []
    listed_messages = graph(
        sandbox, f"{thread.id}/messages", TOKEN, fields="id,from,to,message", limit="25"
    ).json()["data"]
    assert [m["id"] for m in listed_messages] == [m.id for m in reversed(messages)]
    assert listed_messages[0]["from"] == {"username": "ann", "id": igsid}
    assert listed_messages[0]["to"] == {"data": [{"username": "acme", "id": ig.id}]}
    assert all("from" in m for m in listed_messages[:20])
    assert not any("from" in m or "message" in m for m in listed_messages[20:])
    gone = graph(sandbox, messages[0].id, TOKEN, fields="id").json()["error"]
    assert gone["code"] == 100 and gone["error_subcode"] == 33


def test_one_threads_unreadable_answer_leaves_it_to_the_next_walk_and_the_others_are_read(
    sandbox: MetaSandbox, ig: IGAccount, clock: GraphClock, core: Core
) -> None:
    made = [
        sandbox.add_direct_message(ig.id, sandbox.add_ig_user(name), "Where is my order?").id
        for name in ("ann.fan", "bob.fan")
    ]
    # Older than the floor of the walk after next: only its mark brings the one left back.
    clock.now += timedelta(minutes=20)
    source = instagram(sandbox, ig, clock)
    acme = brand(ig)
    sandbox.inject("malformed", endpoint="messages", count=1)
    pages = core.walk(source, acme)
    (one,) = ids(pages)
    assert any("left for the next walk" in w for p in pages for w in p.warnings)
    assert sorted([one, *ids(core.walk(source, acme))]) == sorted(made)
