"""End to end with ``[crm] history = ["task", "social_post"]`` and the Meta stand-in: a
Messenger message reaches the org as a SocialPost of MessageType "Private", an Instagram
Direct one as "Direct", a comment on the Page's post as a "Comment" stored as answering the
Page (and one on the account's media, the account); the Instagram author's SocialPersona
links their profile, the Facebook one none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from support.e2e import SECRETS, World, make_world, poll_once

from sandbox.config import (
    META_IDENTITY_FIELDS,
    TomlValue,
    facebook_source,
    instagram_source,
    syncd_config,
)
from sandbox.meta.api import MetaSandbox
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import World as Demo
from sandbox.seed import seed
from syncd.state.db import Database
from syncd.state.tables import interactions

KEY = "Syncd_Key__c"  # [crm] social_post_key_field's and social_persona_key_field's default


@pytest.fixture
def world(
    state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[World, MetaSandbox, Demo]]:
    with make_world(state_url, tmp_path, monkeypatch, accounts=("acme",)) as w, MetaSandbox() as m:
        demo = seed(w.x, w.sf, customers=4, meta=m, secrets=SECRETS)
        assert demo.page is not None and demo.instagram is not None
        # As `syncd salesforce fields` makes them: the SocialPost and SocialPersona keys.
        w.sf.add_field("SocialPost", KEY, external_id=True, unique=True)
        w.sf.add_field("SocialPersona", KEY, external_id=True, unique=True)
        keys: dict[str, TomlValue] = {"interval": "1s", "start": "1d"}
        w.config.write_text(
            syncd_config(
                state_url=state_url,
                x_url=w.x.url,
                salesforce_url=w.sf.url,
                accounts=("acme",),
                secrets=SECRETS,
                source=keys,
                crm={
                    "identity_fields": {n: dict(f) for n, f in META_IDENTITY_FIELDS.items()},
                    "history": ["task", "social_post"],
                },
                sources=[
                    facebook_source(m.url, demo.page.id, secrets=SECRETS, keys=keys),
                    instagram_source(
                        m.url,
                        demo.instagram.id,
                        demo.instagram.username,
                        secrets=SECRETS,
                        keys=keys,
                    ),
                ],
            )
        )
        yield w, m, demo


def by_key(sf: SalesforceSandbox, sobject: str) -> dict[str, dict[str, Any]]:
    return {str(r[KEY]): r for r in sf.records(sobject)}


def test_a_messenger_message_is_a_private_social_post(
    world: tuple[World, MetaSandbox, Demo], state_url: str
) -> None:
    w, m, demo = world
    assert demo.page is not None and demo.instagram is not None
    known = next(c for c in demo.customers if c.kind == "contact_by_id")
    assert known.facebook is not None and known.instagram is not None
    message = m.add_message(demo.page.id, known.facebook, "my order 4471 never arrived")
    direct = m.add_direct_message(demo.instagram.id, known.instagram, "is it shipped?")
    comment = m.add_comment(demo.page_posts[-1], known.facebook, "and this one?")
    ig_comment = m.add_ig_comment(demo.media[0], known.instagram, "love it")
    for _ in range(2):  # read and link, then write
        code, output = poll_once(w)
        assert code == 0, output

    posts = by_key(w.sf, "SocialPost")
    fb_message, ig_direct = posts[f"facebook:{message.id}"], posts[f"instagram:{direct.id}"]
    assert (fb_message["MessageType"], fb_message["Provider"]) == ("Private", "Facebook")
    assert fb_message["WhoId"] == known.crm_id and fb_message["IsOutbound"] is False
    assert (ig_direct["MessageType"], ig_direct["Provider"]) == ("Direct", "Instagram")
    assert posts[f"facebook:{comment.id}"]["MessageType"] == "Comment"

    personas = {p["Id"]: p for p in w.sf.records("SocialPersona")}
    ig_persona = personas[ig_direct["PersonaId"]]
    assert ig_persona["ProfileUrl"] == (f"https://www.instagram.com/{known.instagram.username}/")
    assert personas[fb_message["PersonaId"]].get("ProfileUrl") is None

    db = Database(state_url)
    try:
        with db.connect() as conn:
            stored = {
                r.post_id: (r.private, r.in_reply_to_user_id)
                for r in conn.execute(
                    select(
                        interactions.c.post_id,
                        interactions.c.private,
                        interactions.c.in_reply_to_user_id,
                    )
                )
            }
    finally:
        db.dispose()
    assert stored[message.id] == (True, None)
    assert stored[direct.id] == (True, None)
    # A comment on the Page's own post answers the Page (its id, as the brand is keyed).
    assert stored[comment.id] == (False, demo.page.id)
    # One on the Instagram account's own media answers the account.
    assert stored[ig_comment.id] == (False, demo.instagram.id)
