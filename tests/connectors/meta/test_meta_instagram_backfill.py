"""The Instagram source's backfill against the Graph stand-in (sandbox/meta/): the comments
made in a window on the account's media of the watch window, read whole and kept by time,
and, for mentions, the media tagging the account made in it; a window reaching before the
watch window is cut to it, and the plan says so.
"""

from __future__ import annotations

from datetime import timedelta

from support.meta import GraphClock

from connectors.meta.instagram import InstagramSource
from sandbox.meta.api import MetaSandbox
from syncd.model import Account, Direction, Page, Segment, Stream

TOKEN = "EAAB-page-token-ig-backfill"


def steps(source: InstagramSource, account: Account, segment: Segment) -> list[Page]:
    pages: list[Page] = []
    token: str | None = None
    while not pages or token is not None:
        assert len(pages) < 30, "the segment never ends"
        pages.append(source.fetch_segment(account, segment, token))
        assert pages[-1].marks == {} and pages[-1].taken_hints == ()
        token = pages[-1].next_cursor.pagination_token
    return pages


def test_an_instagram_backfill_reads_the_windows_comments_and_tags(
    sandbox: MetaSandbox, clock: GraphClock
) -> None:
    now = clock.now
    page = sandbox.add_page("Acme", token=TOKEN)
    ig = sandbox.add_instagram_account(page.id, "acme")
    fan = sandbox.add_ig_user("fan")
    ancient = sandbox.add_media(ig.id, "last year", at=now - timedelta(days=200))
    sandbox.add_ig_comment(ancient.id, fan, "on an old media", at=now - timedelta(days=20))
    busy = sandbox.add_media(ig.id, "summer", at=now - timedelta(days=60))
    before = sandbox.add_ig_comment(busy.id, fan, "too early", at=now - timedelta(days=40))
    # More than one comments call (50 a call) of the window's comments on one media.
    inside = [
        sandbox.add_ig_comment(busy.id, fan, f"in {n}", at=now - timedelta(days=20, minutes=n))
        for n in range(53)
    ]
    answer = sandbox.add_ig_comment(
        busy.id, ig, "thanks", reply_to=inside[0].id, at=now - timedelta(days=19)
    )
    after = sandbox.add_ig_comment(busy.id, fan, "too late", at=now - timedelta(days=2))
    for n in range(3):  # media without comments, read past
        sandbox.add_media(ig.id, f"quiet {n}", at=now - timedelta(days=50 - n))
    late = sandbox.add_media(ig.id, "after the window", at=now - timedelta(days=5))
    sandbox.add_ig_comment(late.id, fan, "on a media made later", at=now - timedelta(days=4))
    tagged_in = sandbox.add_others_media(fan, "look", tagged=[ig.id], at=now - timedelta(days=15))
    sandbox.add_others_media(fan, "old tag", tagged=[ig.id], at=now - timedelta(days=35))
    source = InstagramSource(
        TOKEN, ig_user_id=ig.id, api_base_url=sandbox.url, page_size=2, clock=clock
    )
    acme = Account("instagram", "acme", ig.id)
    since, until = now - timedelta(days=30), now - timedelta(days=10)
    (mentions, replies) = source.plan_backfill(
        acme, [Stream.MENTIONS, Stream.REPLIES], since, until, now
    )
    assert (mentions.since, mentions.until) == (since, until)
    assert mentions.route in source.shared_routes
    (longer,) = source.plan_backfill(acme, [Stream.MENTIONS], now - timedelta(days=120), until, now)
    assert longer.since == now - timedelta(days=90)
    assert longer.note and "watch window's start" in longer.note
    assert source.plan_backfill(acme, [Stream.MENTIONS], since, now - timedelta(days=95), now) == []

    read = [i.post_id for p in steps(source, acme, mentions) for i in p.interactions]
    assert sorted(read) == sorted([*(c.id for c in inside), tagged_in.id])
    assert before.id not in read and after.id not in read
    (out,) = [i for p in steps(source, acme, replies) for i in p.interactions]
    assert out.post_id == answer.id and out.direction is Direction.OUTBOUND
    count = source.count_posts(acme, mentions)
    assert not count.exact  # a sample: the first step, the newest media page
    source.close()
