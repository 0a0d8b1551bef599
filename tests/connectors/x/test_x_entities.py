"""Issue 16, item 5: X sends a post's text with &, < and > as HTML entities; reps must read
what the author wrote, unescaped exactly once, and nothing else touched (``&copy;`` stays)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import FIXTURES
from support.e2e import World, make_world, poll_once, tasks

from connectors.x.parse import parse_page, unescape_text
from sandbox.seed import seed
from syncd.model import Account, Cursor, Stream

RECORDINGS = FIXTURES / "x-api-v2-json"
ADIL = Account("x", "adil_iis", "1145936974064177152")


def recorded(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((RECORDINGS / f"{name}.json").read_text("utf-8"))["body"]
    return body


@pytest.mark.parametrize(
    ("sent", "meant"),
    [
        ("3rd time calling &lt;sigh&gt;", "3rd time calling <sigh>"),
        ("AT&amp;T", "AT&T"),
        ("&amp;lt; is how HTML writes &lt;", "&lt; is how HTML writes <"),  # once, not twice
        ("&copy; &quot;quoted&quot; &#169; &amp", "&copy; &quot;quoted&quot; &#169; &amp"),
        ("&AMP; &Lt; & ; &amp &gt", "&AMP; &Lt; & ; &amp &gt"),
    ],
)
def test_only_xs_three_entities_are_unescaped_once(sent: str, meant: str) -> None:
    assert unescape_text(sent) == meant


def test_a_recorded_posts_text_reaches_the_interaction_unescaped() -> None:
    # The recorded timeline's one post with an entity (WHO's, expanded as a referenced post)
    # put in a recorded mention: what a mention carrying it looks like.
    tweets = recorded("users_1145936974064177152_tweets-d24b15")
    who = next(p for p in tweets["includes"]["tweets"] if "&amp;" in p["text"])
    body = copy.deepcopy(recorded("users_1145936974064177152_mentions-d24b15"))
    body["data"][0]["text"] = who["text"]
    sent = who["text"]
    assert "#COVID19 &amp; #VaccinEquity" in sent

    page = parse_page(body, account=ADIL, stream=Stream.MENTIONS, cursor=Cursor())

    first = page.interactions[0]
    assert first.text == sent.replace("&amp;", "&")
    assert "#COVID19 & #VaccinEquity" in first.text and "&amp;" not in first.text
    assert first.raw is not None and first.raw["text"] == sent  # raw keeps what X sent


@pytest.fixture
def world(state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(state_url, tmp_path, monkeypatch) as w:
        yield w


def test_task_subject_and_description_show_what_the_author_typed(world: World) -> None:
    people = seed(world.x, world.sf, customers=4)
    customer = next(c for c in people.customers if c.kind == "contact_by_id")
    typed = "@acme 3rd time calling <sigh> AT&T &copy; &amp;lt;"
    post = world.x.add_post(customer.user_id, typed)

    code, output = poll_once(world)

    assert code == 0, output
    task = tasks(world.sf)[f"x:{post['id']}"]
    assert str(task["Description"]).startswith(typed)
    assert "&lt;" not in str(task["Subject"]) and "&amp;" not in str(task["Subject"])
    assert str(task["Subject"]) == f"X mention from @{customer.handle}"
