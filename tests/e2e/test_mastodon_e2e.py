"""End to end with a Mastodon source beside the X one: the Mastodon stand-in, read by
Mastodon.py through ``syncd poll --once``, into the Salesforce stand-in, on both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update
from support.e2e import SECRETS, World, make_world, poll_once, tasks

from sandbox.mastodon.api import MastodonSandbox
from sandbox.seed import set_up_org
from syncd.cli import cli
from syncd.state.db import Database
from syncd.state.tables import deliveries, interactions

TOKEN = "e2e-mastodon-token"


@pytest.fixture
def world(
    migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[World, MastodonSandbox]]:
    monkeypatch.setenv("E2E_MASTODON_TOKEN", TOKEN)
    with make_world(migrated_url, tmp_path, monkeypatch) as w, MastodonSandbox() as m:
        m.add_token(TOKEN, "acme")
        set_up_org(w.sf)
        for handle in ("acme", "acmesupport"):  # the X source's brand accounts
            w.x.add_user(handle)
        m.policy.update(for_private_mentions="accept", for_limited_accounts="accept")
        # TOML takes a further [[sources]] element after the [crm] table.
        w.config.write_text(
            w.config.read_text()
            + "\n[[sources]]\n"
            + 'name = "acme-mastodon"\ntype = "mastodon"\n'
            + f'api_base_url = "{m.url}"\naccess_token = "env:E2E_MASTODON_TOKEN"\n'
            + 'accounts = ["acme"]\ninterval = "1s"\npage_size = 5\nstart = "1d"\n'
        )
        assert SECRETS.x_bearer not in w.config.read_text()
        yield w, m


def test_poll_once_writes_each_mastodon_post_once(
    world: tuple[World, MastodonSandbox],
) -> None:
    w, m = world
    acme = m.add_account("acme")
    fan = m.add_account(
        "pat_customer",
        domain="mastodon.example.social",
        display_name="Pat Doe",
        note="Reach me at pat@example.com",
    )
    contact = w.sf.insert(
        "Contact", {"FirstName": "Pat", "LastName": "Doe", "Email": "pat@example.com"}
    )
    asked = [
        m.add_status(fan.id, f"@acme order {k} is late, see https://example.com/o/{k}")
        for k in range(7)
    ]
    answer = m.add_status(
        acme.id, "@pat_customer@mastodon.example.social on it", in_reply_to=asked[0].id
    )
    m.add_status(acme.id, "New release today")  # to no one: not history

    code, output = poll_once(w)
    assert code == 0, output
    code, output = poll_once(w)  # the resolver's link, then the write
    assert code == 0, output
    got = {k: t for k, t in tasks(w.sf).items() if k.startswith("mastodon:")}
    expected = {f"mastodon:{s.uri}" for s in [*asked, answer]}
    assert set(got) == expected
    assert {t["WhoId"] for t in got.values()} == {contact}
    inbound = got[f"mastodon:{asked[3].uri}"]
    assert inbound["Subject"] == "Mastodon mention from @pat_customer@mastodon.example.social"
    text = "@acme order 3 is late, see https://example.com/o/3"
    assert str(inbound["Description"]).startswith(text)
    assert "<" not in "".join(str(t["Description"]) for t in got.values())
    assert got[f"mastodon:{answer.uri}"]["Social_Direction__c"] == "Outbound"

    # Again, with one more: only it is new, nothing is written twice.
    later = m.add_status(fan.id, "@acme thanks!")
    code, output = poll_once(w)
    assert code == 0, output
    code, output = poll_once(w)
    assert code == 0, output
    again = {k for k in tasks(w.sf) if k.startswith("mastodon:")}
    assert again == expected | {f"mastodon:{later.uri}"}


def test_check_covers_the_mastodon_source(world: tuple[World, MastodonSandbox]) -> None:
    w, m = world
    m.add_account("acme")
    m.policy["for_not_following"] = "filter"
    result = CliRunner().invoke(cli, ["--config", str(w.config), "check"])
    assert result.exit_code != 0
    assert "notification policy" in result.output and "for_not_following=accept" in result.output


def test_a_status_deleted_on_the_instance_loses_its_task(
    world: tuple[World, MastodonSandbox],
) -> None:
    w, m = world
    m.add_account("acme")
    # A customer of the brand's own instance: ids short enough for the state on both backends.
    pat = m.add_account("pat", note="pat@example.com")
    w.sf.insert("Contact", {"FirstName": "Pat", "LastName": "Doe", "Email": "pat@example.com"})
    doomed = m.add_status(pat.id, "@acme my order number is 12345")
    kept = m.add_status(pat.id, "@acme thanks, sorted")
    for _ in range(2):
        code, output = poll_once(w)
        assert code == 0, output
    assert {f"mastodon:{doomed.uri}", f"mastodon:{kept.uri}"} <= set(tasks(w.sf))
    # Written two days ago: a post is first asked about a day after it was seen standing.
    db = Database(state_url_of(w))
    try:
        with db.transaction() as conn:
            conn.execute(
                update(deliveries).values(written_at=datetime.now(UTC) - timedelta(days=2))
            )
    finally:
        db.dispose()
    m.delete_status(doomed.id)
    result = CliRunner().invoke(cli, ["--config", str(w.config), "compliance", "run", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["deleted"], report["acted"], report["failed"]) == (1, 1, 0)
    after = tasks(w.sf)
    assert f"mastodon:{doomed.uri}" not in after and f"mastodon:{kept.uri}" in after


def test_a_remote_customers_status_deleted_on_their_instance_loses_its_task(
    world: tuple[World, MastodonSandbox],
) -> None:
    w, m = world
    m.add_account("acme")
    # Most customers are on other instances: the brand's knows their statuses by a local id
    # their uri does not tell.
    pat = m.add_account("pat", domain="mastodon.example.social", note="pat@example.com")
    w.sf.insert("Contact", {"FirstName": "Pat", "LastName": "Doe", "Email": "pat@example.com"})
    doomed = m.add_status(pat.id, "@acme my order number is 12345")
    kept = m.add_status(pat.id, "@acme thanks, sorted")
    assert doomed.id not in doomed.uri
    for _ in range(2):
        code, output = poll_once(w)
        assert code == 0, output
    assert {f"mastodon:{doomed.uri}", f"mastodon:{kept.uri}"} <= set(tasks(w.sf))
    db = Database(state_url_of(w))
    try:
        with db.transaction() as conn:
            conn.execute(
                update(deliveries).values(written_at=datetime.now(UTC) - timedelta(days=2))
            )
    finally:
        db.dispose()
    # Pat deletes it on mastodon.example.social; the Delete reaches the brand's instance.
    m.delete_status(doomed.id)
    result = CliRunner().invoke(cli, ["--config", str(w.config), "compliance", "run", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["checked"], report["deleted"], report["undecided"]) == (2, 1, 0)
    assert (report["acted"], report["failed"]) == (1, 0)
    after = tasks(w.sf)
    assert f"mastodon:{doomed.uri}" not in after and f"mastodon:{kept.uri}" in after


def state_url_of(w: World) -> str:
    for line in w.config.read_text().splitlines():
        if line.startswith("url = "):
            return str(json.loads(line.removeprefix("url = ")))
    raise AssertionError("no state url")


def test_backfill_reads_a_past_window_once(world: tuple[World, MastodonSandbox]) -> None:
    w, m = world
    w.config.write_text(w.config.read_text() + 'backfill_interval = "0s"\n')
    acme = m.add_account("acme")
    pat = m.add_account("pat", note="pat@example.com")
    w.sf.insert("Contact", {"FirstName": "Pat", "LastName": "Doe", "Email": "pat@example.com"})
    code, output = poll_once(w)  # the first walk: from now on
    assert code == 0, output
    real = m.clock
    days_ago = datetime.now(UTC) - timedelta(days=3)
    m.clock = lambda: days_ago  # posted three days ago (an import, or before syncd ran)
    old = [m.add_status(pat.id, f"@acme old question {k}") for k in range(7)]
    answer = m.add_status(acme.id, "@pat sorted", in_reply_to=old[0].id)
    m.clock = real
    since = (datetime.now(UTC) - timedelta(days=5)).strftime("%Y-%m-%d")
    args = ["backfill", "--source", "acme-mastodon", "--account", "acme", "--since", since]
    result = CliRunner().invoke(cli, ["--config", str(w.config), *args])
    assert result.exit_code == 0, result.output
    db = Database(state_url_of(w))
    try:
        with db.connect() as conn:
            read = conn.execute(
                select(interactions.c.post_id).where(interactions.c.backfill_id.is_not(None))
            ).scalars()
            assert set(read) == {s.uri for s in [*old, answer]}  # the backfill read them all
    finally:
        db.dispose()
    for _ in range(2):  # the resolver's link, then the write
        code, output = poll_once(w)
        assert code == 0, output
    got = {k for k in tasks(w.sf) if k.startswith("mastodon:")}
    assert got == {f"mastodon:{s.uri}" for s in [*old, answer]}
    again = CliRunner().invoke(cli, ["--config", str(w.config), *args])
    assert again.exit_code == 0, again.output
    poll_once(w)
    assert {k for k in tasks(w.sf) if k.startswith("mastodon:")} == got
