"""One brand on X, Mastodon and Bluesky, one customer on all three, end to end on both backends.

The three stand-ins and the Salesforce one, one config with a source for each network. The
customer's Contact holds the networks' identity fields (as `syncd salesforce fields` creates
them), not an e-mail address, so each network's author reaches that one Contact through its
own CRM field; a namesake Contact with none of them is there to be missed. Then every command
an operator runs, once each with all three sources configured: ``poll --once``, ``backfill``
per source, ``check``, ``status``, ``compliance run``, ``forget``, and the daemon itself.
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
from support.e2e import SECRETS, Daemon, World, config_text, make_world, poll_once, tasks, wait_for

from sandbox.bluesky.api import BlueskySandbox
from sandbox.config import TomlValue, bluesky_source, mastodon_source
from sandbox.mastodon.api import MastodonSandbox
from sandbox.run import Sandbox
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import set_up_org
from syncd.cli import cli
from syncd.state.db import Database
from syncd.state.tables import deliveries

BRAND = {"x": "acme", "mastodon": "acme", "bluesky": "acme.bsky.social"}
SOURCES = {"x": "acme-x", "mastodon": "acme-mastodon", "bluesky": "acme-bluesky"}
INSTANCE = "social.example"  # the customer's Mastodon home: not the brand's instance


@dataclass
class Customer:
    x_id: str
    mastodon_id: str  # the account's id on the brand's instance
    mastodon_uri: str  # the actor URI: the same on every instance
    bluesky_did: str
    contact: str


@dataclass
class Three:
    world: World
    mastodon: MastodonSandbox
    bluesky: BlueskySandbox
    brand: dict[str, str]  # network → the brand account's id there (X id, account id, DID)
    pat: Customer
    state_url: str

    @property
    def sf(self) -> SalesforceSandbox:
        return self.world.sf

    def syncd(self, *args: str) -> str:
        """The command's standard output; it must exit 0."""
        result = CliRunner().invoke(cli, ["--config", str(self.world.config), *args])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == 0, result.output
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.syncd(*args, "--json"))

    def conversation(self, n: int, *, at: datetime | None = None) -> dict[str, list[str]]:
        """On each network, the customer's mention ``n`` and the brand's reply to it: the
        external ids syncd writes them under, mention first."""
        x, m, b, pat = self.world.x, self.mastodon, self.bluesky, self.pat
        mention = x.add_post(pat.x_id, f"@acme order {n} is late", created_at=at)["id"]
        reply = x.add_post(self.brand["x"], f"@patdoe on it ({n})", in_reply_to=mention,
                           created_at=at)["id"]  # fmt: skip
        # Made then, not backdated now: the stand-ins' clocks give their ids, notifications
        # and index times.
        clocks = (m.clock, b.clock)
        if at is not None:
            m.clock = b.clock = lambda: at
        try:
            asked = m.add_status(pat.mastodon_id, f"@acme order {n} is late")
            answer = m.add_status(
                self.brand["mastodon"], f"@pat@{INSTANCE} on it ({n})", in_reply_to=asked.id
            )
            post = b.add_post(
                pat.bluesky_did, f"@acme order {n} is late", mentions=(self.brand["bluesky"],)
            )
            answered = b.add_post(self.brand["bluesky"], f"@pat on it ({n})", in_reply_to=post.uri)
        finally:
            m.clock, b.clock = clocks
        return {
            "x": [f"x:{mention}", f"x:{reply}"],
            "mastodon": [f"mastodon:{asked.uri}", f"mastodon:{answer.uri}"],
            "bluesky": [f"bluesky:{post.uri}", f"bluesky:{answered.uri}"],
        }

    def poll_until_written(self, expected: set[str]) -> None:
        """``poll --once`` (exit 0) until ``expected`` are Tasks: the first poll reads and
        links, a write may take the next."""
        for _ in range(3):
            code, output = poll_once(self.world)
            assert code == 0, output
            if expected <= set(tasks(self.sf)):
                return
        raise AssertionError(f"never written: {sorted(expected - set(tasks(self.sf)))}")


@pytest.fixture
def three(migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Three]:
    with (
        make_world(migrated_url, tmp_path, monkeypatch, accounts=(BRAND["x"],)) as w,
        MastodonSandbox() as m,
        BlueskySandbox() as b,
    ):
        assert isinstance(m, MastodonSandbox) and isinstance(b, BlueskySandbox)
        keys: dict[str, TomlValue] = {"interval": "1s", "start": "1d"}
        # A stand-in wants no pause between a backfill's pages.
        toots = {**keys, "page_size": 5, "backfill_interval": "0s"}
        session = str(tmp_path / "bluesky.session")
        sources = [
            mastodon_source(m.url, BRAND["mastodon"], secrets=SECRETS, keys=toots),
            bluesky_source(b.url, BRAND["bluesky"], session, secrets=SECRETS, keys=keys),
        ]
        w.config.write_text(
            config_text(migrated_url, w.x.url, w.sf.url, (BRAND["x"],), sources=sources)
        )
        set_up_org(w.sf)
        brand = {"x": w.x.add_user(BRAND["x"], "Acme Inc")["id"]}
        m.add_token(SECRETS.mastodon_token, BRAND["mastodon"])
        brand["mastodon"] = m.add_account(BRAND["mastodon"], display_name="Acme Inc").id
        m.policy.update(for_private_mentions="accept", for_limited_accounts="accept")
        brand["bluesky"] = b.add_user(BRAND["bluesky"], password=SECRETS.bluesky_password).did

        x_id = w.x.add_user("patdoe", "Pat Doe")["id"]
        fedi = m.add_account("pat", domain=INSTANCE, display_name="Pat Doe")
        sky = b.add_user("pat.bsky.social", display_name="Pat Doe").did
        # As the org has them: X and Bluesky by their immutable ids, Mastodon by the account
        # a rep typed in (with '@', as people write it). No e-mail anywhere, and a namesake.
        contact = w.sf.insert(
            "Contact",
            {"FirstName": "Pat", "LastName": "Doe", "X_User_Id__c": x_id,
             "Mastodon_Account__c": f"@pat@{INSTANCE}", "Bluesky_DID__c": sky},
        )  # fmt: skip
        w.sf.insert("Contact", {"FirstName": "Pat", "LastName": "Doe"})
        pat = Customer(x_id, fedi.id, fedi.uri, sky, contact)
        yield Three(w, m, b, brand, pat, migrated_url)


def by_network(ids: dict[str, list[str]]) -> set[str]:
    return {i for each in ids.values() for i in each}


def test_each_post_on_each_network_is_one_task_on_the_one_contact(three: Three) -> None:
    posted = three.conversation(1)
    expected = by_network(posted)
    three.poll_until_written(expected)
    written = tasks(three.sf)  # fails on a duplicate
    assert set(written) == expected
    for network, (mention, reply) in posted.items():
        assert written[mention]["Social_Network__c"] == network
        assert written[reply]["Social_Network__c"] == network
        assert written[mention]["Social_Direction__c"] == "Inbound"
        assert written[reply]["Social_Direction__c"] == "Outbound"
    assert {t["WhoId"] for t in written.values()} == {three.pat.contact}
    # The external ids: the status URI, the post's at-uri (each its author's).
    mention, reply = posted["mastodon"]
    assert mention.startswith(f"mastodon:https://{INSTANCE}/users/pat/statuses/")
    assert reply.startswith(f"mastodon:{three.mastodon.url}/users/acme/statuses/")
    mention, reply = posted["bluesky"]
    assert mention.startswith(f"bluesky:at://{three.pat.bluesky_did}/app.bsky.feed.post/")
    assert reply.startswith(f"bluesky:at://{three.brand['bluesky']}/app.bsky.feed.post/")

    # Each author was linked by the network's own CRM field, not by a name or an address.
    links = {(k["network"], k["link"]["matcher"]) for k in three.json("links", "list")}
    assert links == {("x", "crm_user_id"), ("mastodon", "crm_handle"), ("bluesky", "crm_user_id")}

    # Again, with one more on each network: only those are new, nothing is written twice.
    later = three.conversation(2)
    three.poll_until_written(by_network(later))
    assert set(tasks(three.sf)) == expected | by_network(later)


def test_check_and_status_cover_every_source(three: Three, monkeypatch: pytest.MonkeyPatch) -> None:
    # At rich's default 80 columns, a Bluesky cursor squeezes the source names to "acme-…".
    monkeypatch.setenv("COLUMNS", "250")
    checked = three.json("check")
    targets = {r["target"] for r in checked["checks"]}
    assert set(SOURCES.values()) <= targets, targets
    failed = [r for r in checked["checks"] if not r["ok"]]
    assert not failed, failed

    three.poll_until_written(by_network(three.conversation(1)))
    status = three.json("status")
    streams = {(s["source"], s["stream"]): s for s in status["streams"]}
    for source in SOURCES.values():
        for stream in ("mentions", "replies"):
            row = streams[(source, stream)]
            assert row["last_error"] is None and row["last_success_at"], row
    assert status["interactions"] == 6
    shown = three.syncd("status")  # the table, as an operator reads it
    for source in SOURCES.values():
        assert source in shown
    assert "interactions: 6   deliveries: written 6" in shown


def test_backfill_reads_a_past_window_of_each_source(three: Three) -> None:
    # Three days back, before syncd's first start: its first walks read from `start` (a
    # day back) on, and leave the older ones to a backfill.
    old = three.conversation(1, at=datetime.now(UTC) - timedelta(days=3))
    now = three.conversation(2)
    three.poll_until_written(by_network(now))
    assert set(tasks(three.sf)) == by_network(now)
    since = (datetime.now(UTC) - timedelta(days=5)).strftime("%Y-%m-%d")
    notes: dict[str, dict[str, str]] = {}
    for network, source in SOURCES.items():
        args = ["backfill", "--source", source, "--account", BRAND[network], "--since", since]
        output = three.syncd(*args, "--yes", "--json")
        # The estimate first (its plan: one segment per stream), then the progress.
        segments = json.loads(output.splitlines()[0])["estimate"]["segments"]
        assert {s["stream"] for s in segments} == {"mentions", "replies"}, segments
        assert all(s["since"].startswith(since) for s in segments), segments
        notes[network] = {}
        for s in segments:  # Bluesky's mentions are three segments: search, threads, quotes
            notes[network][s["stream"]] = " ".join(
                filter(None, (notes[network].get(s["stream"]), s["note"]))
            )
        assert set(old[network]) <= set(tasks(three.sf)), (network, output)
    assert set(tasks(three.sf)) == by_network(now) | by_network(old)
    # Mastodon reads its notifications and statuses back to the date; Bluesky as far as
    # its search index and the author feed reach, and the plan says so.
    assert (
        "mention notifications, as far back as the instance keeps" in notes["mastodon"]["mentions"]
    )
    assert "own statuses, as far back as they go" in notes["mastodon"]["replies"]
    assert "as far back as Bluesky's search index holds" in notes["bluesky"]["mentions"]
    assert (
        "replies (up to 4 levels below one of the account's posts" in notes["bluesky"]["mentions"]
    )
    assert "author feed, as far back as they go" in notes["bluesky"]["replies"]
    jobs = three.json("backfill", "list", "--all")
    assert {(j["source"], j["status"]) for j in jobs} == {(s, "done") for s in SOURCES.values()}


def test_a_post_deleted_on_each_network_loses_its_task(three: Three) -> None:
    posted = three.conversation(1)
    three.poll_until_written(by_network(posted))
    # Written two days ago: a post is first asked about a day after it was seen standing.
    database = Database(three.state_url)
    try:
        with database.transaction() as conn:
            conn.execute(
                update(deliveries).values(written_at=datetime.now(UTC) - timedelta(days=2))
            )
    finally:
        database.dispose()
    # The customer's mention on X and Bluesky; on Mastodon both her status (of another
    # instance: asked by the id the brand's instance gave it) and the brand's own reply.
    doomed = {posted["x"][0], posted["mastodon"][0], posted["mastodon"][1], posted["bluesky"][0]}
    three.world.x.delete_post(posted["x"][0].removeprefix("x:"))
    for external_id in (posted["mastodon"][1], posted["mastodon"][0]):
        uri = external_id.removeprefix("mastodon:")
        status = next(s for s in three.mastodon.statuses.values() if s.uri == uri)
        three.mastodon.delete_status(status.id)
    three.bluesky.delete_post(posted["bluesky"][0].removeprefix("bluesky:"))
    report = three.json("compliance", "run")
    assert (report["deleted"], report["acted"], report["failed"]) == (4, 4, 0), report
    assert (report["checked"], report["undecided"]) == (6, 0), report
    assert set(tasks(three.sf)) == by_network(posted) - doomed
    again = three.json("compliance", "run")
    assert again["acted"] == 0, again


def test_forgetting_the_customer_on_each_network_removes_every_task(three: Three) -> None:
    posted = three.conversation(1)
    three.poll_until_written(by_network(posted))
    # By handle or by id, as an admin has them.
    who = {"x": "@patdoe", "mastodon": three.pat.mastodon_uri, "bluesky": "pat.bsky.social"}
    for network, user in who.items():
        forgot = three.json("forget", "--network", network, "--user", user, "--crm", "--yes")
        assert forgot["suppressed"] and forgot["crm_records_deleted"] == 2, forgot
        left = {k for k in tasks(three.sf) if k.startswith(f"{network}:")}
        assert not left, (network, left)
    assert not tasks(three.sf)
    assert three.json("status")["interactions"] == 0
    # Suppressed on every network: what they post next is not read in, and nothing is written.
    three.conversation(2)
    assert poll_once(three.world)[0] == 0
    assert poll_once(three.world)[0] == 0
    assert not tasks(three.sf)
    assert three.json("status")["interactions"] == 0


def test_the_daemon_writes_every_network_then_stops_cleanly(three: Three) -> None:
    expected = by_network(three.conversation(1))
    daemon = Daemon(three.world.config, "--log-level", "INFO")
    try:
        wait_for(lambda: expected <= set(tasks(three.sf)), what="every network's posts")
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log
    assert "Traceback" not in daemon.log
    assert set(tasks(three.sf)) == expected
    assert {t["WhoId"] for t in tasks(three.sf).values()} == {three.pat.contact}


# -- the demo's world ------------------------------------------------------------------------
@pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)  # no backend's business
def test_the_seeded_world_links_by_identity_fields_and_by_evidence(
    state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`syncd demo`'s customers: found on Mastodon and Bluesky through the CRM's identity
    fields (ids, or the handles a rep typed), and some only by the address in their profile."""
    with Sandbox() as sandbox:
        for name, value in sandbox.environ().items():
            monkeypatch.setenv(name, value)
        config = tmp_path / "config.toml"
        config.write_text(sandbox.config(state_url, source={"interval": "1s", "start": "1d"}))
        world = sandbox.seed(16)
        assert sandbox.mastodon is not None and sandbox.bluesky is not None
        for c in world.customers:  # one mention on each network they are on
            if "x" in c.networks:
                sandbox.x.add_post(c.user_id, "@acme hello")
            if c.mastodon_id is not None:
                sandbox.mastodon.add_status(c.mastodon_id, "@acme hello")
            if c.bluesky_did is not None:
                sandbox.bluesky.add_post(
                    c.bluesky_did, "@acme.bsky.social hello", mentions=(str(world.bluesky_brand),)
                )
        run = CliRunner()
        for _ in range(2):  # read and link, then write
            done = run.invoke(cli, ["--config", str(config), "poll", "--once"])
            assert done.exit_code == 0, done.output
        listed = run.invoke(cli, ["--config", str(config), "links", "list", "--json"])
        assert listed.exit_code == 0, listed.output
    links = {(k["network"], k["user_id"]): k["link"] for k in json.loads(listed.stdout)}
    expected: dict[tuple[str, str], tuple[str | None, str]] = {}
    for c in world.customers:
        if c.kind == "unknown":
            continue  # held on every network
        by_field = "crm_handle" if c.kind == "contact_by_handle" else "crm_user_id"
        ids = {"x": c.user_id, "mastodon": c.mastodon_uri, "bluesky": c.bluesky_did}
        for network in c.networks:
            user_id = ids[network]
            assert user_id is not None
            other = network != "x" and c.by_evidence
            expected[(network, user_id)] = (c.crm_id, "contact_points" if other else by_field)
    got = {k: (v["id"], v["matcher"]) for k, v in links.items()}
    assert got == expected
    matchers = {(n, m) for (n, _), (_, m) in expected.items()}
    for network in ("mastodon", "bluesky"):  # each path shows on each network
        assert {(network, "crm_user_id"), (network, "contact_points")} <= matchers, matchers
