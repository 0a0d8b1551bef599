"""End to end: Facebook comments from the Meta stand-in through ``syncd poll --once`` into
the Salesforce stand-in of an org that uses Salesforce messaging. Who each comment goes to
is decided only by ids the org holds: the PSID on a Contact's identity field, or a
MessagingEndUser record on the Page's channel linked to a Contact; a Facebook author known
by name alone is never linked. On both backends, with the resolver's local copy of the
identity fields in use (the default)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.e2e import World, make_world, poll_once, tasks

from sandbox.meta.api import MetaSandbox
from sandbox.seed import set_up_org
from syncd.state import authors
from syncd.state.db import Database

TOKEN = "e2e-page-token"


@pytest.fixture
def db(state_url: str) -> Iterator[Database]:
    database = Database(state_url)
    yield database
    database.dispose()


@pytest.fixture
def world(
    state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[World, MetaSandbox, str]]:
    monkeypatch.setenv("E2E_PAGE_TOKEN", TOKEN)
    with make_world(state_url, tmp_path, monkeypatch, messaging=True) as w, MetaSandbox() as m:
        set_up_org(w.sf)
        for handle in ("acme", "acmesupport"):  # the X source's brand accounts
            w.x.add_user(handle)
        page = m.add_page("Acme", token=TOKEN)
        w.config.write_text(
            w.config.read_text()
            + "\n[[sources]]\n"
            + 'name = "acme-facebook"\ntype = "facebook"\n'
            + f'page_id = "{page.id}"\napi_base_url = "{m.url}"\n'
            + 'access_token = "env:E2E_PAGE_TOKEN"\nmessenger = false\ninterval = "1s"\n'
        )
        yield w, m, page.id


def test_facebook_authors_link_by_psid_field_or_messaging_end_user_never_by_name(
    world: tuple[World, MetaSandbox, str], db: Database
) -> None:
    w, m, page = world
    pat, ann, sam = (m.add_person(n) for n in ("Pat Doe", "Ann Poe", "Sam Roe"))
    by_field = w.sf.insert(
        "Contact",
        {"FirstName": "Pat", "LastName": "Doe",
         "Facebook_PSID__c": f"{page}:{m.scoped_id(pat, page)}"},
    )  # fmt: skip
    by_messaging = w.sf.insert("Contact", {"FirstName": "Ann", "LastName": "Poe"})
    channel = w.sf.insert(
        "MessagingChannel",
        {"DeveloperName": "Acme_Messenger", "MasterLabel": "Acme Messenger",
         "MessageType": "Facebook", "MessagingPlatformKey": page},
    )  # fmt: skip
    psid = m.scoped_id(ann, page)  # Salesforce messaging keeps the bare PSID
    w.sf.insert(
        "MessagingEndUser",
        {"Name": psid, "MessageType": "Facebook", "MessagingChannelId": channel,
         "MessagingPlatformKey": psid, "ContactId": by_messaging},
    )  # fmt: skip
    w.sf.insert("Contact", {"FirstName": "Sam", "LastName": "Roe"})  # a namesake only
    post = m.add_post(page, "Our new menu is out")
    said = {who.name: m.add_comment(post.id, who, f"{who.name}: where is my order?")
            for who in (pat, ann, sam)}  # fmt: skip

    for _ in range(2):  # read and link, then write
        code, output = poll_once(w)
        assert code == 0, output
    got = {k: t["WhoId"] for k, t in tasks(w.sf).items() if k.startswith("facebook:")}
    assert got == {
        f"facebook:{said['Pat Doe'].id}": by_field,
        f"facebook:{said['Ann Poe'].id}": by_messaging,
    }
    # Sam Roe's comment waits for a person: the namesake Contact is a candidate to review.
    with db.connect() as conn:
        queued = authors.reviews(conn, "salesforce", limit=10, after=0)
    assert [(r.key.user_id, r.display_name) for r in queued] == [
        (f"{page}:{m.scoped_id(sam, page)}", "Sam Roe")
    ]
