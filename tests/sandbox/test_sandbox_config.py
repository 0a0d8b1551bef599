"""The sandbox as syncd sees it: the one configuration for the stand-ins, and the composite
that runs them all for ``syncd demo`` and ``syncd sandbox``."""

from __future__ import annotations

import random
import tomllib
from pathlib import Path
from typing import Any

import pytest

from sandbox.config import (
    META_IDENTITY_FIELDS,
    STANDINS,
    Secrets,
    bluesky_source,
    facebook_source,
    instagram_source,
    mastodon_source,
    syncd_config,
)
from sandbox.run import Sandbox
from syncd.config.settings import load


def render(**options: Any) -> str:
    return syncd_config(
        state_url="sqlite:///state.db",
        x_url="http://127.0.0.1:1",
        salesforce_url="http://127.0.0.1:2",
        accounts=("acme", "acmesupport"),
        **options,
    )


def test_values_and_tables_are_toml() -> None:
    text = render(
        source={
            "start": 'a "quoted" \\ näme',
            "page_size": 20,
            "user_auth": {"acme": {"type": "oauth1", "access_token": "env:T"}},
        },
        crm={"timeout": "2.0s"},
        tables={"daemon": {"jitter": "0s"}, "writer": {"retries": 3}, "logging": {"x": True}},
    )
    doc = tomllib.loads(text)
    assert list(doc) == ["state", "daemon", "writer", "logging", "sources", "crm"]
    (source,) = doc["sources"]
    assert source["start"] == 'a "quoted" \\ näme'
    assert source["page_size"] == 20
    assert source["accounts"] == ["acme", "acmesupport"]
    assert source["user_auth"] == {"acme": {"type": "oauth1", "access_token": "env:T"}}
    assert doc["writer"] == {"retries": 3} and doc["logging"] == {"x": True}
    assert doc["crm"]["timeout"] == "2.0s"
    # [crm] comes last: what a test appends to the text belongs to it.
    assert tomllib.loads(text + 'api_version = "60.0"\n')["crm"]["api_version"] == "60.0"


def test_secrets_are_named_not_written() -> None:
    secrets = Secrets(
        prefix="T",
        x_bearer="b",
        salesforce_password="p",
        salesforce_token="t",
        mastodon_token="m",
        bluesky_password="a",
        meta_page_token="f",
    )
    others = [
        mastodon_source("http://127.0.0.1:3", "acme", secrets=secrets),
        bluesky_source("http://127.0.0.1:4", "acme.bsky.social", "/s", secrets=secrets),
        facebook_source("http://127.0.0.1:5", "123", secrets=secrets),
        instagram_source("http://127.0.0.1:5", "17841", "acme", secrets=secrets),
    ]
    text = render(secrets=secrets, sources=others)
    doc = tomllib.loads(text)
    assert doc["sources"][0]["bearer_token"] == "env:T_X_BEARER"
    assert doc["sources"][1]["access_token"] == "env:T_MASTODON_ACCESS_TOKEN"
    assert doc["sources"][2]["app_password"] == "env:T_BLUESKY_PASSWORD"
    assert doc["sources"][3]["access_token"] == "env:T_META_PAGE_TOKEN"
    assert doc["sources"][4]["access_token"] == "env:T_META_PAGE_TOKEN"
    assert doc["crm"]["password"] == "env:T_SF_PASSWORD"
    assert doc["crm"]["security_token"] == "env:T_SF_TOKEN"
    assert secrets.environ() == {
        "T_X_BEARER": "b",
        "T_MASTODON_ACCESS_TOKEN": "m",
        "T_BLUESKY_PASSWORD": "a",
        "T_META_PAGE_TOKEN": "f",
        "T_SF_PASSWORD": "p",
        "T_SF_TOKEN": "t",
    }
    for value in secrets.environ().values():
        assert f'"{value}"' not in text
    for secret in ("sandbox-password", "sandbox-x-bearer", "sandbox-mastodon", "sandbox-bluesky"):
        assert secret not in repr(Secrets())


def test_syncd_loads_the_sandbox_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Sandbox() as sandbox:
        for name, value in sandbox.environ().items():
            monkeypatch.setenv(name, value)
        path = tmp_path / "config.toml"
        path.write_text(
            sandbox.config(
                f"sqlite:///{tmp_path}/state.db",
                source={"interval": "1s", "start": "1m"},
                tables={"daemon": {"jitter": "100ms"}},
            )
        )
        settings = load(path)
        assert sandbox.account_count == 6  # two X accounts, one on each other network
        brand = sandbox.meta_brand
        assert brand is not None
    assert settings.daemon.jitter == pytest.approx(0.1)
    assert [s.name for s in settings.sources] == [
        "acme-x",
        "acme-mastodon",
        "acme-bluesky",
        "acme-facebook",
        "acme-instagram",
    ]
    facebook, instagram = settings.sources[3:]
    assert getattr(facebook, "page_id", None) == brand.page.id
    assert getattr(instagram, "ig_user_id", None) == brand.instagram.id
    # The CRM fields holding Meta's ids are named: the connector has no default for them.
    fields = getattr(settings.crm, "identity_fields", {})
    for network, named in META_IDENTITY_FIELDS.items():
        assert fields[network].user_id == named["user_id"], network
    assert all(s.interval == pytest.approx(1.0) for s in settings.sources)


def test_an_x_only_sandbox_is_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Sandbox(networks=("x",)) as sandbox:
        assert set(sandbox.servers) == {"x", "salesforce"}
        for name, value in sandbox.environ().items():
            monkeypatch.setenv(name, value)
        path = tmp_path / "config.toml"
        path.write_text(sandbox.config(f"sqlite:///{tmp_path}/state.db"))
        assert len(load(path).sources) == 1
        world = sandbox.seed(8)
        assert all(c.networks == {"x"} for c in world.customers)
        rng = random.Random(1)
        played = {sandbox.post(rng).network for _ in range(10)}
    assert played == {"x"}
    with pytest.raises(ValueError, match="networks"):
        Sandbox(networks=("mastodon",))


def test_the_world_spans_three_networks_and_the_crm_can_link_each() -> None:
    with Sandbox() as sandbox:
        world = sandbox.seed(40)
        assert world.mastodon is sandbox.mastodon and world.bluesky is sandbox.bluesky
        sizes = {len(c.networks) for c in world.customers}
        assert sizes == {1, 2, 3}
        for c in world.customers:
            assert (c.mastodon_id is not None) == ("mastodon" in c.networks)
            assert (c.bluesky_did is not None) == ("bluesky" in c.networks)
        # The CRM holds each network's identity fields for the people it knows there, as an
        # org running syncd has them, but not for everyone: some are found by evidence.
        for sobject in ("Contact", "Lead"):
            for rec in sandbox.salesforce.records(sobject):
                c = next(c for c in world.customers if c.crm_id == rec["Id"])
                assert rec["Email"] == c.email, c
                held = on_record(rec)
                if c.kind == "contact_by_handle":  # typed by a rep: handles, no ids
                    assert not {"X_User_Id__c", "Mastodon_Actor_URI__c", "Bluesky_DID__c"} & set(
                        held
                    ), c
                    expected = {
                        "X_Handle__c": c.handle if "x" in c.networks else None,
                        "Mastodon_Account__c": c.mastodon_acct if c.mastodon_uri else None,
                        "Bluesky_Handle__c": c.bluesky_handle if c.bluesky_did else None,
                    }
                    if c.by_evidence:
                        expected["Mastodon_Account__c"] = expected["Bluesky_Handle__c"] = None
                    assert {k: held.get(k) for k in expected} == expected, c
                    continue
                ids = {
                    "X_User_Id__c": c.user_id if "x" in c.networks else None,
                    "Mastodon_Actor_URI__c": None if c.by_evidence else c.mastodon_uri,
                    "Bluesky_DID__c": None if c.by_evidence else c.bluesky_did,
                }
                assert {k: held.get(k) for k in ids} == ids, c
                if held.get("Mastodon_Actor_URI__c"):
                    assert held["Mastodon_Account__c"] == c.mastodon_acct, c
                if held.get("Bluesky_DID__c"):
                    assert held["Bluesky_Handle__c"] == c.bluesky_handle, c
        beyond_x = [c for c in world.customers if c.crm_id and c.networks != {"x"}]
        assert {c.by_evidence for c in beyond_x} == {True, False}
        rng = random.Random(3)
        played = [sandbox.post(rng) for _ in range(60)]
    assert {p.network for p in played} == {"x", "mastodon", "bluesky", "facebook", "instagram"}
    assert {p.kind for p in played} == {"mention", "reply"}
    for p in played:
        assert p.external_id.startswith(f"{p.network}:")
    assert list(world.played) == [p.external_id for p in played]


def test_meta_customers_link_by_their_ids_or_not_at_all() -> None:
    """Facebook and Instagram: the CRM holds the Page-scoped id or IGSID of the people it
    has them for, a username a rep typed at most for Contacts known by handle, and nothing
    else (a name never links); some comments come without an author."""
    fb, ig = META_IDENTITY_FIELDS["facebook"], META_IDENTITY_FIELDS["instagram"]
    with Sandbox(networks=("x", "facebook", "instagram")) as sandbox:
        assert sandbox.mastodon is None and sandbox.meta is not None
        world = sandbox.seed(40)
        brand = sandbox.meta_brand
        assert brand is not None
        on_fb = [c for c in world.customers if c.facebook is not None]
        on_ig = [c for c in world.customers if c.instagram is not None]
        assert on_fb and on_ig and len(on_fb) < len(world.customers)
        records = {
            r["Id"]: r
            for sobject in ("Contact", "Lead")
            for r in sandbox.salesforce.records(sobject)
        }
        for c in world.customers:
            held = records[c.crm_id] if c.crm_id else {}
            has_ids = c.kind in ("contact_by_id", "lead") and not c.by_evidence
            want_fb = c.facebook_id if has_ids and c.facebook else None
            assert held.get(fb["user_id"]) == want_fb, c
            assert want_fb is None or want_fb.startswith(f"{brand.page.id}:"), c
            want_ig = c.instagram_id if has_ids and c.instagram else None
            assert held.get(ig["user_id"]) == want_ig, c
            if c.kind == "contact_by_handle" and c.instagram and not c.by_evidence:
                assert held.get(ig["handle"]) == "@" + c.instagram.username, c
        rng = random.Random(5)
        played = [sandbox.post(rng) for _ in range(120)]
        meta = sandbox.meta
        comments_on_old = {
            cm.post_id for cm in meta.store.comments.values() if cm.post_id == world.page_posts[0]
        }
    assert {p.network for p in played} == {"x", "facebook", "instagram"}
    assert world.withheld > 0
    assert comments_on_old  # the Page's oldest post (weeks old) is commented on too


def test_the_composite_runs_every_declared_standin() -> None:
    with Sandbox() as sandbox:
        assert set(sandbox.servers) == {s.name for s in STANDINS}
        assert sandbox.networks == ("x", "mastodon", "bluesky", "facebook", "instagram")
        described = sandbox.describe()
        for s in STANDINS:
            assert f"{s.title} stand-in {sandbox.servers[s.name].url}" in described
    with pytest.raises(ValueError, match="no stand-in"):
        Sandbox(ports={"nowhere": 1})


def test_read_back_is_a_query_of_the_crm() -> None:
    with Sandbox() as sandbox:
        world = sandbox.seed(4)
        who = next(c for c in world.customers if c.crm_id)
        sandbox.salesforce.insert(
            "Task",
            {
                "WhoId": who.crm_id,
                "Subject": "X mention",
                "Description": "first  line\nsecond",
                "ActivityDate": "2026-01-02",
                "Social_Post_Id__c": "x:12",
                "Social_Direction__c": "Inbound",
            },
        )
        calls = sandbox.salesforce.api_calls
        back = sandbox.readback()
        assert sandbox.salesforce.api_calls == calls + 1  # one SOQL query, as an admin's
    assert (back.records, back.duplicates) == (1, 0)
    (timeline,) = back.timelines
    assert timeline.record_id == who.crm_id and who.handle in timeline.title
    (entry,) = timeline.entries
    assert (entry.date, entry.outbound, entry.text) == ("2026-01-02", False, "first line")


def test_the_demo_plays_and_reports_every_network(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from syncd.service import demo
    from syncd.service.demo import run_demo

    for name in Secrets().environ():  # the demo puts them into the environment: undone after
        monkeypatch.delenv(name, raising=False)
    # Once caught up, a held author falls due again a moment later (they are asked about on
    # a back-off): the demo has caught up all the same.
    looked, once = demo.caught_up, list[bool]()

    def caught_up(*args: Any) -> bool:
        if once:
            return False  # a held author fell due again since
        if looked(*args):
            once.append(True)
        return bool(once)

    monkeypatch.setattr(demo, "caught_up", caught_up)
    console = Console(record=True, width=200)
    code = run_demo(customers=12, posts=40, seconds=2, state_url=None, show=12, console=console)
    out = console.export_text()
    assert code == 0, out
    for label in (
        "X mention from",
        "Mastodon mention from",
        "Bluesky mention from",
        "Facebook mention from",
        "Instagram mention from",
    ):
        assert label in out
    assert "(0 duplicates)" in out
    by_network = next(line for line in out.splitlines() if "by network" in line)
    for network in ("x", "mastodon", "bluesky", "facebook", "instagram"):
        assert f" {network} " in by_network
    # Each timeline entry names its network.
    assert any(line.split()[1:2] == ["instagram"] for line in out.splitlines() if "←" in line)
    assert any("author withheld by the network" in line for line in out.splitlines())


def on_record(rec: dict[str, Any]) -> dict[str, str]:
    """A CRM record's identity fields that hold a value, a handle without its '@' and case."""
    fields = ("X_User_Id__c", "Mastodon_Actor_URI__c", "Bluesky_DID__c")
    handles = ("X_Handle__c", "Mastodon_Account__c", "Bluesky_Handle__c")
    held = {f: str(rec[f]) for f in fields if rec.get(f)}
    held |= {f: str(rec[f]).removeprefix("@").lower() for f in handles if rec.get(f)}
    return held
