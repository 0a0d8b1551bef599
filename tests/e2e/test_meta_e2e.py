"""End to end with a Facebook Page and an Instagram account beside X: the Meta, X and
Salesforce stand-ins, and every command an operator runs on them.

The demo world (:func:`sandbox.seed.seed` with the Meta stand-in) gives the brand's Page and
account posts of weeks ago, and customers whose Page-scoped id and IGSID the CRM holds in the
fields ``[crm.identity_fields]`` names (:data:`sandbox.config.META_IDENTITY_FIELDS`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import update
from support.e2e import SECRETS, Daemon, World, make_world, poll_once, tasks, wait_for

from sandbox.config import (
    META_IDENTITY_FIELDS,
    TomlValue,
    facebook_source,
    instagram_source,
    syncd_config,
)
from sandbox.meta.api import MetaSandbox
from sandbox.seed import Customer, seed
from sandbox.seed import World as Demo
from syncd.cli import cli
from syncd.state import admin
from syncd.state.db import Database
from syncd.state.tables import deliveries


@dataclass
class Meta:
    world: World
    meta: MetaSandbox
    demo: Demo
    state_url: str
    token_file: Path  # the Page token, as an admin keeps it: a file the config names

    @property
    def page(self) -> str:
        assert self.demo.page is not None
        return self.demo.page.id

    @property
    def account(self) -> str:
        assert self.demo.instagram is not None
        return self.demo.instagram.id

    def customer(self, kind: str) -> Customer:
        return next(c for c in self.demo.customers if c.kind == kind)

    def syncd(self, *args: str, ok: bool = True) -> str:
        """What the command printed on stdout (logs go to stderr)."""
        result = CliRunner().invoke(cli, ["--config", str(self.world.config), *args])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        if ok:
            assert result.exit_code == 0, result.output
        return result.stdout

    def json(self, *args: str, ok: bool = True) -> Any:
        return json.loads(self.syncd(*args, "--json", ok=ok))

    def poll(self) -> None:
        code, output = poll_once(self.world)
        assert code == 0, output


@pytest.fixture
def meta(state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Meta]:
    with make_world(state_url, tmp_path, monkeypatch, accounts=("acme",)) as w, MetaSandbox() as m:
        demo = seed(w.x, w.sf, customers=4, meta=m, secrets=SECRETS)
        assert demo.page is not None and demo.instagram is not None
        keys: dict[str, TomlValue] = {"interval": "1s", "start": "1d"}
        token_file = tmp_path / "meta-page-token"
        token_file.write_text(SECRETS.meta_page_token)
        token = {"access_token": f"file:{token_file}"}
        w.config.write_text(
            syncd_config(
                state_url=state_url,
                x_url=w.x.url,
                salesforce_url=w.sf.url,
                accounts=("acme",),
                secrets=SECRETS,
                tables={
                    "daemon": {"write_interval": "500ms", "resolve_interval": "1s"},
                    "resolver": {"retry_after": "1s", "crm_check_interval": "1s"},
                },
                source=keys,
                crm={"identity_fields": {n: dict(f) for n, f in META_IDENTITY_FIELDS.items()}},
                sources=[
                    facebook_source(m.url, demo.page.id, keys={**keys, **token}),
                    instagram_source(
                        m.url,
                        demo.instagram.id,
                        demo.instagram.username,
                        keys={**keys, **token},
                    ),
                ],
            )
        )
        yield Meta(w, m, demo, state_url, token_file)


def written_days_ago(state_url: str, days: int) -> None:
    """As if every Task was written ``days`` ago: compliance asks about a post only once its
    interval (a day) has passed since it was last seen standing."""
    db = Database(state_url)
    try:
        with db.transaction() as conn:
            conn.execute(
                update(deliveries).values(written_at=datetime.now(UTC) - timedelta(days=days))
            )
    finally:
        db.dispose()


def parked_names(state_url: str) -> set[str]:
    db = Database(state_url)
    try:
        with db.connect() as conn:
            return admin.parked_names(conn)
    finally:
        db.dispose()


def test_poll_backfill_check_status_forget_and_compliance(meta: Meta) -> None:
    m, sf = meta.meta, meta.world.sf
    known = meta.customer("contact_by_id")  # the CRM holds their Page-scoped id and IGSID
    stranger = meta.customer("unknown")
    assert known.facebook and known.instagram and stranger.facebook
    oldest, middle, newest = meta.demo.page_posts  # 60, 21 and 3 days old
    # Ten days back, before `start` (a day): no poll reads it, a backfill does.
    past = m.add_comment(
        middle, known.facebook, "still broken", at=datetime.now(UTC) - timedelta(days=10)
    )
    on_old = m.add_comment(oldest, known.facebook, "a question on an old post")
    withheld = m.add_comment(newest, stranger.facebook, "who am I", withhold_from=True)
    answer = m.add_reply(on_old.id, m.store.pages[meta.page], "We are on it")
    ig = m.add_ig_comment(meta.demo.media[0], known.instagram, "is this back in stock?")
    dm = m.add_message(meta.page, known.facebook, "hello, anyone there?")

    meta.poll()
    written = tasks(sf)
    for item in (f"facebook:{on_old.id}", f"facebook:{answer.id}", f"facebook:{dm.id}"):
        assert item in written, item
    assert f"instagram:{ig.id}" in written
    assert f"facebook:{withheld.id}" not in written  # no author: stored, written nowhere
    assert f"facebook:{past.id}" not in written
    crm_ids = {written[f"facebook:{on_old.id}"]["WhoId"], written[f"instagram:{ig.id}"]["WhoId"]}
    assert crm_ids == {known.crm_id}

    # The post the new comment moved is read again. (So are, once more, posts that moved
    # within ten minutes of the last read, for a comment of the same second: every post here;
    # that only unmoved posts are passed over is tests/connectors/meta's, on a clock it sets.)
    asked: list[str] = []
    m.on_request("comments", lambda req: asked.append(req.params["id"]), phase="before")
    late = m.add_comment(middle, known.facebook, "and another thing")
    meta.poll()
    assert f"facebook:{late.id}" in tasks(sf)
    assert middle in asked, asked
    m.remove_hooks()

    since = (datetime.now(UTC) - timedelta(days=14)).strftime("%Y-%m-%d")
    lines = meta.syncd(
        "backfill", "--source", "acme-facebook", "--account", meta.page, "--since", since,
        "--yes", "--json",
    ).splitlines()  # fmt: skip
    plan = json.loads(lines[0])["estimate"]["segments"]
    assert {s["stream"] for s in plan} == {"mentions", "replies"}, plan
    assert f"facebook:{past.id}" in tasks(sf)

    # The withheld author fails the check, with App Review as its fix; the token passes.
    check = meta.json("check", ok=False)
    rows = {(r["target"], r["item"]): r for r in check["checks"]}
    token = rows[("acme-facebook", "Page token")]
    assert token["ok"] and "a Page token of" in token["detail"], token
    assert rows[("acme-facebook", "posts and comments")]["ok"], rows
    authors = rows[("acme-facebook", "comment authors")]
    assert not authors["ok"] and "App Review" in authors["fix"], authors
    assert [k for k, r in rows.items() if not r["ok"]] == [("acme-facebook", "comment authors")]
    # What Meta says of the token itself, for both sources: the Page's long-lived token.
    assert rows[("acme-instagram", "Page token")]["ok"], rows
    for name in ("acme-facebook", "acme-instagram"):
        assert rows[(name, "token expiry")]["detail"].startswith("never expires"), rows
    # Meta's data access for the token lapses in a week: both sources fail, with the fix.
    m.grant(SECRETS.meta_page_token, data_access_until=datetime.now(UTC) + timedelta(days=7))
    lapsing = {(r["target"], r["item"]): r for r in meta.json("check", ok=False)["checks"]}
    for name in ("acme-facebook", "acme-instagram"):
        row = lapsing[(name, "data access")]
        assert not row["ok"] and "log in through the app again" in row["fix"], row
    m.grant(SECRETS.meta_page_token, data_access_until=datetime.now(UTC) + timedelta(days=90))

    status = meta.json("status")
    assert {(w["network"], w["interactions"]) for w in status["withheld"]} == {("facebook", 1)}
    assert "author withheld by the network" in meta.syncd("status")

    # Forget the customer on Facebook: their Facebook Tasks go, and stay gone.
    user = known.facebook_id
    assert user is not None
    done = meta.json("forget", "--network", "facebook", "--user", user, "--crm", "--yes")
    assert done["crm_records_deleted"] >= 4, done
    left = tasks(sf)
    assert not [
        k for k, t in left.items() if k.startswith("facebook:") and t["WhoId"] == known.crm_id
    ]
    assert f"instagram:{ig.id}" in left  # another network's identity: not theirs to forget
    again = m.add_comment(newest, known.facebook, "me again")
    meta.poll()
    assert f"facebook:{again.id}" not in tasks(sf)

    # A comment deleted on Instagram loses its Task.
    written_days_ago(meta.state_url, 2)
    m.delete(ig.id)
    report = meta.json("compliance", "run")
    assert report["deleted"] >= 1 and report["failed"] == 0, report
    assert f"instagram:{ig.id}" not in tasks(sf)


def test_meta_tasks_name_the_people_and_the_brand_as_meta_shows_them(meta: Meta) -> None:
    # Facebook gives names (no handle), Instagram usernames; the Page is configured by its
    # id, which is no name to show a rep.
    m, sf = meta.meta, meta.world.sf
    known = meta.customer("contact_by_id")
    assert known.facebook and known.instagram
    page = m.store.pages[meta.page]
    account = m.store.ig_accounts[meta.account]
    comment = m.add_comment(meta.demo.page_posts[-1], known.facebook, "fb hello")
    answer = m.add_reply(comment.id, page, "We are on it")
    ig = m.add_ig_comment(meta.demo.media[0], known.instagram, "ig hello")
    ig_answer = m.add_ig_comment(meta.demo.media[0], account, "ig answer", reply_to=ig.id)
    meta.poll()
    subjects = {k: t["Subject"] for k, t in tasks(sf).items()}
    name, username = known.facebook.name, known.instagram.username
    assert subjects[f"facebook:{comment.id}"] == f"Facebook mention from {name}"
    assert subjects[f"facebook:{answer.id}"] == f"Facebook reply from {page.name} to {name}"
    assert subjects[f"instagram:{ig.id}"] == f"Instagram mention from @{username}"
    assert subjects[f"instagram:{ig_answer.id}"] == (
        f"Instagram reply from @{account.username} to @{username}"
    )


def test_the_daemon_writes_meta_comments_and_stops_cleanly(meta: Meta) -> None:
    known = meta.customer("contact_by_id")
    assert known.facebook and known.instagram
    daemon = Daemon(meta.world.config)
    try:
        fb = meta.meta.add_comment(meta.demo.page_posts[0], known.facebook, "hello from Facebook")
        ig = meta.meta.add_ig_comment(meta.demo.media[1], known.instagram, "hello from Instagram")
        want = {f"facebook:{fb.id}", f"instagram:{ig.id}"}
        wait_for(lambda: want <= set(tasks(meta.world.sf)), 60, "the daemon's writes")
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log
    assert "Traceback" not in daemon.log


def test_an_expired_page_token_parks_both_accounts_and_a_new_one_resumed_loses_nothing(
    meta: Meta,
) -> None:
    """As README tells the admin: issue a new Page token, replace the credential file, `syncd
    resume` the names `syncd status` shows; what was posted meanwhile reaches the CRM."""
    known = meta.customer("contact_by_id")
    assert known.facebook and known.instagram
    page, posts, media = meta.page, meta.demo.page_posts, meta.demo.media
    daemon = Daemon(meta.world.config)
    try:
        before = meta.meta.add_comment(posts[0], known.facebook, "before it expired")
        wait_for(lambda: f"facebook:{before.id}" in tasks(meta.world.sf), 60, "the first write")
        meta.meta.expire_token(SECRETS.meta_page_token)
        names = {f"acme-facebook:{page}", "acme-instagram:acme"}
        wait_for(lambda: names <= parked_names(meta.state_url), 60, "both accounts parked")
        fb = meta.meta.add_comment(posts[1], known.facebook, "while it was refused")
        ig = meta.meta.add_ig_comment(media[0], known.instagram, "while it was refused")
        meta.meta.add_token("renewed-meta-page-token", page)
        meta.token_file.write_text("renewed-meta-page-token")
        meta.syncd("resume", *sorted(names))
        want = {f"facebook:{fb.id}", f"instagram:{ig.id}"}
        wait_for(lambda: want <= set(tasks(meta.world.sf)), 60, "the writes after the resume")
        assert not names & parked_names(meta.state_url)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log
    assert "issue a new Page token" in daemon.log
