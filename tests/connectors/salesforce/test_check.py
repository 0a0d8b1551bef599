"""``syncd check`` and ``syncd salesforce fields`` against the X and Salesforce stand-ins."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.e2e import World, config_text

from connectors.salesforce.settings import SalesforceSettings
from connectors.salesforce.setup.check import verify_field
from connectors.salesforce.setup.fields import specs
from sandbox.salesforce import meta
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import ORG_FIELDS, set_up_org
from sandbox.x.api import XSandbox
from syncd.cli import cli

NS = {"md": "http://soap.sforce.com/2006/04/metadata"}
BRANDS = ("acme", "acmesupport")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_X_BEARER", "e2e-bearer")
    monkeypatch.setenv("E2E_SF_PASSWORD", "sandbox-password")
    monkeypatch.setenv("E2E_SF_TOKEN", "sandbox-token")


def make(tmp_path: Path, sf: SalesforceSandbox, x: XSandbox, extra: str = "") -> World:
    for handle in BRANDS:
        x.add_user(handle, handle.title())
    path = tmp_path / "config.toml"
    path.write_text(config_text(f"sqlite:///{tmp_path}/state.db", x.url, sf.url, BRANDS) + extra)
    return World(x, sf, path)


@pytest.fixture
def blank(tmp_path: Path, env: None) -> Iterator[World]:
    """An org with no custom field at all, not even the external id."""
    with XSandbox(bearer_token="e2e-bearer") as x, SalesforceSandbox(external_ids={}) as sf:
        yield make(tmp_path, sf, x)


@pytest.fixture
def world(tmp_path: Path, env: None) -> Iterator[World]:
    """An org set up as the README says (the stand-in's default external id included)."""
    with XSandbox(bearer_token="e2e-bearer") as x, SalesforceSandbox() as sf:
        set_up_org(sf)
        yield make(tmp_path, sf, x)


def run(w: World, *args: str, code: int | None = None) -> str:
    result = CliRunner().invoke(cli, ["--config", str(w.config), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    if code is not None:
        assert result.exit_code == code, result.output
    return result.output


def checks(w: World, code: int) -> dict[tuple[str, str], dict[str, Any]]:
    answer = json.loads(run(w, "check", "--json", code=code))
    assert answer["ok"] is (code == 0)
    return {(c["target"], c["item"]): c for c in answer["checks"]}


def failed(rows: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item: c for (_, item), c in rows.items() if not c["ok"]}


def test_an_org_set_up_as_documented_is_all_ok(world: World) -> None:
    rows = checks(world, 0)
    assert not failed(rows)
    assert {("acme-x", "@acme"), ("acme-x", "@acmesupport"), ("salesforce", "login")} <= set(rows)
    assert rows[("salesforce", "Task.Social_Post_Id__c")]["detail"].endswith("External ID, Unique")
    for obj in ("Contact", "Lead"):
        assert rows[("salesforce", f"{obj}.X_User_Id__c")]["ok"]
    output = run(world, "check", code=0)
    assert "all OK" in output and "FAIL" not in output
    assert "sandbox-password" not in output and "e2e-bearer" not in output


def test_a_blank_org_fails_for_every_custom_field(blank: World) -> None:
    bad = failed(checks(blank, 1))
    custom = {s.path for s in specs(settings_of(blank)) if s.custom and s.needed}
    assert set(bad) == custom
    assert bad["Task.Social_Post_Id__c"]["fix"].startswith(
        "create Task.Social_Post_Id__c: Text(255), External ID, Unique (case-insensitive)"
    )


def set_up(sf: SalesforceSandbox, **odd: dict[str, Any] | None) -> None:
    """The org of README's field list, but ``odd`` fields (``Task__Social_Handle__c``)
    made otherwise, or not at all (None)."""
    for sobject, fields in ORG_FIELDS.items():
        for name, (type_, external_id) in fields.items():
            kwargs = odd.get(
                f"{sobject}__{name}", {"field_type": type_, "external_id": external_id}
            )
            if kwargs is not None:
                sf.add_field(sobject, name, **kwargs)


def test_a_missing_field_fails_with_the_field_to_create(blank: World) -> None:
    blank.sf.add_field("Task", "Social_Post_Id__c", external_id=True, unique=True)
    set_up(blank.sf, Task__Social_Handle__c=None)
    bad = failed(checks(blank, 1))
    assert set(bad) == {"Task.Social_Handle__c"}
    assert bad["Task.Social_Handle__c"]["fix"].startswith("create Task.Social_Handle__c: Text(255)")
    output = run(blank, "check", code=1)
    assert "FAIL" in output and "create Task.Social_Handle__c: Text(255)" in output


def test_an_external_id_that_is_not_external_id_and_unique_fails(blank: World) -> None:
    set_up_org(blank.sf)
    blank.sf.add_field("Task", "Social_Post_Id__c")  # plain text
    bad = failed(checks(blank, 1))
    assert set(bad) == {"Task.Social_Post_Id__c"}
    row = bad["Task.Social_Post_Id__c"]
    assert row["detail"] == "is not External ID and Unique"
    assert row["fix"] == (
        "edit Task.Social_Post_Id__c: tick External ID and Unique (case-insensitive)"
    )


def test_an_external_id_that_is_not_unique_fails(blank: World) -> None:
    set_up_org(blank.sf)
    blank.sf.add_field("Task", "Social_Post_Id__c", external_id=True)
    bad = failed(checks(blank, 1))
    assert bad["Task.Social_Post_Id__c"]["detail"] == "is not Unique"


def test_wrong_types_lengths_and_access_fail_with_their_fix(blank: World) -> None:
    blank.sf.add_field("Task", "Social_Post_Id__c", external_id=True, unique=True)
    set_up(
        blank.sf,
        Task__Social_Network__c={"length": 5},
        Task__Social_Handle__c={"field_type": "double"},
        Task__Social_Conversation_Id__c={"editable": False},
        Contact__X_Handle__c={"field_type": "textarea", "length": 32_000},
    )
    bad = failed(checks(blank, 1))
    assert set(bad) == {
        "Task.Social_Network__c",
        "Task.Social_Handle__c",
        "Task.Social_Conversation_Id__c",
        "Contact.X_Handle__c",
    }
    assert "raise its length to 40" in bad["Task.Social_Network__c"]["fix"]
    assert "replace it with Text(255)" in bad["Task.Social_Handle__c"]["fix"]
    assert "read-only" in bad["Task.Social_Conversation_Id__c"]["detail"]
    assert "cannot be filtered" in bad["Contact.X_Handle__c"]["detail"]


def test_wrong_credentials_are_a_failed_row(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_SF_PASSWORD", "not-the-password")
    monkeypatch.setenv("E2E_X_BEARER", "not-the-token")
    rows = checks(world, 1)
    assert set(failed(rows)) == {"users lookup", "login"}
    login = rows[("salesforce", "login")]
    assert "INVALID_LOGIN" in login["detail"] and "password" in login["fix"]
    assert "bearer_token" in rows[("acme-x", "users lookup")]["fix"]
    output = run(world, "check", code=1)
    assert "Traceback" not in output
    assert "not-the-password" not in output and "not-the-token" not in output


def test_an_unreachable_host_is_a_failed_row(tmp_path: Path, env: None) -> None:
    with XSandbox(bearer_token="e2e-bearer") as x, SalesforceSandbox() as sf:
        dead = sf.url  # nothing listens there once the stand-in has stopped
    path = tmp_path / "config.toml"
    path.write_text(config_text(f"sqlite:///{tmp_path}/s.db", dead, dead, BRANDS))
    w = World(x, sf, path)
    rows = checks(w, 1)
    assert set(failed(rows)) == {"users lookup", "login"}
    assert "login_url" in rows[("salesforce", "login")]["fix"]


def test_a_config_problem_exits_2_naming_the_key(world: World) -> None:
    world.config.write_text(world.config.read_text().replace("page_size = 20", "page_size = 2"))
    assert "sources[0].page_size" in run(world, "check", code=2)


# -- syncd salesforce fields ------------------------------------------------------------------
RENAMED = """
[crm.task_fields]
handle = "Customer_Handle__c"

[crm.identity_fields.x]
user_id = "Twitter_Id__c"
handle = "Twitter_Handle__c"
"""


def settings_of(w: World) -> SalesforceSettings:
    from syncd.config import settings as config

    crm = config.load(w.config).crm
    assert isinstance(crm, SalesforceSettings)
    return crm


def test_the_package_names_every_configured_field(world: World) -> None:
    world.config.write_text(world.config.read_text() + RENAMED)
    printed = run(world, "salesforce", "fields", code=0)
    files = {
        head.split(" <==")[0]: ET.fromstring(body.split("\n", 1)[1].encode())
        for head, body in (part.split("\n", 1) for part in printed.split("==> ")[1:])
    }
    assert set(files) == {
        "package.xml",
        "objects/Activity.object",
        "objects/Contact.object",
        "objects/Lead.object",
        "permissionsets/Syncd_Integration.permissionset",
    }
    members = {m.text for m in files["package.xml"].iterfind(".//md:members", NS)}
    wanted = {
        ("Activity" if s.sobject == "Task" else s.sobject) + "." + s.name
        for s in specs(settings_of(world))
        if s.custom
    }
    assert "Activity.Customer_Handle__c" in wanted and "Lead.Twitter_Id__c" in wanted
    assert wanted | {"Syncd_Integration"} == members
    for obj in ("Activity", "Contact", "Lead"):
        names = {
            f.text for f in files[f"objects/{obj}.object"].iterfind("md:fields/md:fullName", NS)
        }
        assert names == {m.split(".")[1] for m in wanted if m.startswith(obj + ".")}
    granted = {
        f.text
        for f in files["permissionsets/Syncd_Integration.permissionset"].iterfind(".//md:field", NS)
    }
    assert granted == wanted


def test_the_package_creates_what_the_check_accepts(blank: World, tmp_path: Path) -> None:
    out = tmp_path / "pkg"
    run(blank, "salesforce", "fields", "--out", str(out), code=0)
    types = {"Text": "string", "Url": "url", "Picklist": "picklist"}
    for path in (out / "objects").iterdir():
        sobject = "Task" if path.stem == "Activity" else path.stem
        for f in ET.parse(path).getroot().iterfind("md:fields", NS):
            text = {e.tag.split("}")[1]: e.text or "" for e in f}
            blank.sf.add_field(
                sobject,
                text["fullName"],
                types[text["type"]],
                length=int(text["length"]) if "length" in text else None,
                external_id=text["externalId"] == "true",
                unique=text.get("unique") == "true",
            )
    assert not failed(checks(blank, 0))


def test_without_a_config_the_package_uses_the_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SYNCD_CONFIG", raising=False)
    if Path("/etc/syncd/config.toml").exists():
        pytest.skip("this machine has a syncd config")
    result = CliRunner().invoke(cli, ["salesforce", "fields", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    package = ET.parse(tmp_path / "package.xml").getroot()
    members = {m.text for m in package.iterfind(".//md:members", NS)}
    assert {"Activity.Social_Post_Id__c", "Contact.X_User_Id__c", "Lead.X_Handle__c"} <= members
    # Which networks will be read is not known yet: every network's person fields.
    for obj in ("Contact", "Lead"):
        assert {f"{obj}.Mastodon_Actor_URI__c", f"{obj}.Mastodon_Account__c"} <= members
        assert {f"{obj}.Bluesky_DID__c", f"{obj}.Bluesky_Handle__c"} <= members
    assert package.findtext("md:version", "", NS) == "61.0"


# Sources of the other networks, after the [crm] table (TOML takes them there too): only read
# for their network here, never reached.
FEDIVERSE = """
[[sources]]
name = "acme-mastodon"
type = "mastodon"
api_base_url = "https://mastodon.example"
access_token = "env:E2E_X_BEARER"
accounts = ["acme"]

[[sources]]
name = "acme-bluesky"
type = "bluesky"
identifier = "acme.bsky.social"
app_password = "env:E2E_X_BEARER"
accounts = ["acme.bsky.social"]
session_file = "/var/lib/syncd/bluesky-acme.session"  # never opened here
"""
PERSON_FIELDS = {
    "x": {"X_User_Id__c", "X_Handle__c"},
    "mastodon": {"Mastodon_Actor_URI__c", "Mastodon_Account__c"},
    "bluesky": {"Bluesky_DID__c", "Bluesky_Handle__c"},
}


def person_members(w: World) -> set[str]:
    printed = run(w, "salesforce", "fields", code=0)
    package = printed.split("==> package.xml <==\n", 1)[1].split("==> ", 1)[0]
    members = {m.text or "" for m in ET.fromstring(package.encode()).iterfind(".//md:members", NS)}
    return {m for m in members if m.startswith(("Contact.", "Lead."))}


def test_an_x_only_config_needs_only_x_person_fields(world: World) -> None:
    assert person_members(world) == {
        f"{o}.{f}" for o in ("Contact", "Lead") for f in PERSON_FIELDS["x"]
    }
    assert set(settings_of(world).identity_fields) == {"x"}


def test_each_network_read_brings_its_person_fields(world: World) -> None:
    world.config.write_text(world.config.read_text() + FEDIVERSE)
    every = set().union(*PERSON_FIELDS.values())
    assert person_members(world) == {f"{o}.{f}" for o in ("Contact", "Lead") for f in every}
    crm = settings_of(world)
    assert crm.identity_fields["mastodon"].user_id == "Mastodon_Actor_URI__c"
    assert crm.identity_fields["bluesky"].handle == "Bluesky_Handle__c"


def test_an_org_lacking_a_read_networks_fields_fails_the_check(world: World) -> None:
    """The org is set up for X alone; the config now also reads Mastodon and Bluesky, so the
    CRM's check names every missing field, with the key that names it."""
    from connectors.salesforce.crm import SalesforceCrm

    bare = SalesforceSandbox()
    for sobject, fields in ORG_FIELDS.items():
        for name, (type_, external_id) in fields.items():
            if not name.startswith(("Mastodon_", "Bluesky_")):
                bare.add_field(sobject, name, type_, external_id=external_id)
    crm = settings_of(world)  # X only: the check passes
    world.config.write_text(world.config.read_text() + FEDIVERSE)
    wider = settings_of(world)
    with bare:
        url = {"login_url": bare.url}
        ok = SalesforceCrm.from_settings(crm.model_copy(update=url)).check()
        assert all(r.ok for r in ok if "." in r.item)
        rows = SalesforceCrm.from_settings(wider.model_copy(update=url)).check()
    bad = {r.item: r for r in rows if not r.ok}
    assert set(bad) == {
        f"{o}.{f}"
        for o in ("Contact", "Lead")
        for f in PERSON_FIELDS["mastodon"] | PERSON_FIELDS["bluesky"]
    }
    assert bad["Contact.Mastodon_Actor_URI__c"].fix.startswith(
        "create Contact.Mastodon_Actor_URI__c: Text(255), External ID"
    )


# -- the verification, without an org -------------------------------------------------------
def test_a_picklist_without_the_values_syncd_writes_fails() -> None:
    settings = SalesforceSettings.model_construct(type="salesforce")
    direction = next(s for s in specs(settings) if s.name == "Social_Direction__c")
    field = {
        "name": "Social_Direction__c",
        "type": "picklist",
        "createable": True,
        "updateable": True,
        "picklistValues": [{"value": "Inbound", "active": True}, {"value": "Out", "active": True}],
    }
    row = verify_field(direction, field)
    assert not row.ok and row.fix.endswith("add the value(s) Outbound")
    field["picklistValues"] = [{"value": "Inbound"}, {"value": "Outbound"}]
    assert verify_field(direction, field).ok


def test_the_stand_in_describes_fields_as_setup_made_them(world: World) -> None:
    world.sf.add_field("Lead", "Score__c", length=12, editable=False)
    table = world.sf.store.table("Lead")
    assert table is not None
    fields = {f["name"]: f for f in meta.describe("", table, world.sf.store)["fields"]}
    score = fields["Score__c"]
    assert (score["length"], score["byteLength"], score["createable"]) == (12, 36, False)
    assert fields["X_User_Id__c"]["externalId"] and not fields["X_User_Id__c"]["unique"]
    assert not fields["Description"]["filterable"]  # a long text area
    assert not fields["Name"]["createable"] and fields["LastName"]["createable"]
    # keyed as a real describe: sorted, with the attributes a check reads
    assert list(score) == sorted(score)
    assert {"type", "soapType", "nillable", "custom", "idLookup", "referenceTo"} <= set(score)


# -- Social Customer Service: SocialPost history ----------------------------------------------
def social_history(w: World, history: str = '["task", "social_post"]') -> None:
    text = w.config.read_text().replace("[crm]\n", f"[crm]\nhistory = {history}\n", 1)
    w.config.write_text(text)


def test_social_post_history_needs_the_key_fields_case_sensitive(blank: World) -> None:
    """The package adds a Unique, case-sensitive External ID key to SocialPost and
    SocialPersona; the check fails without them, and once made as the package says, passes."""
    social_history(blank)
    pkg = blank.config.parent / "pkg"
    run(blank, "salesforce", "fields", "--out", str(pkg), code=0)
    made: dict[str, dict[str, dict[str, str]]] = {}
    for path in (pkg / "objects").iterdir():
        made[path.stem] = {
            text["fullName"]: text
            for text in (
                {e.tag.split("}")[1]: e.text or "" for e in f}
                for f in ET.parse(path).getroot().iterfind("md:fields", NS)
            )
        }
    for obj in ("SocialPost", "SocialPersona"):
        key = made[obj]["Syncd_Key__c"]
        flags = (key["type"], key["length"], key["externalId"], key["unique"])
        assert flags == ("Text", "255", "true", "true")
        assert key["caseSensitive"] == "true"
    assert made["Activity"]["Social_Post_Id__c"]["caseSensitive"] == "false"  # as before
    members = {
        m.text for m in ET.parse(pkg / "package.xml").getroot().iterfind(".//md:members", NS)
    }
    assert {"SocialPost.Syncd_Key__c", "SocialPersona.Syncd_Key__c"} <= members
    bad = failed(checks(blank, 1))
    assert bad["SocialPost.Syncd_Key__c"]["fix"] == (
        "create SocialPost.Syncd_Key__c: Text(255), External ID, Unique (case-sensitive) "
        "(if it exists: give the integration user Edit access to it, e.g. in a permission set)"
    )
    assert "SocialPersona.Syncd_Key__c" in bad and "SocialPost" not in bad
    types = {"Text": "string", "Url": "url", "Picklist": "picklist"}
    for obj, fields in made.items():
        for name, text in fields.items():
            blank.sf.add_field(
                "Task" if obj == "Activity" else obj,
                name,
                types[text["type"]],
                length=int(text["length"]) if "length" in text else None,
                external_id=text["externalId"] == "true",
                unique=text.get("unique") == "true",
                case_sensitive=text.get("caseSensitive") == "true",
            )
    assert not failed(checks(blank, 0))
    # a key made case-insensitive would take two keys differing by case for one record
    blank.sf.add_field(
        "SocialPost", "Syncd_Key__c", external_id=True, unique=True, case_sensitive=False
    )
    (row,) = failed(checks(blank, 1)).values()
    assert row["item"] == "SocialPost.Syncd_Key__c"
    assert row["fix"].startswith("edit SocialPost.Syncd_Key__c: make it Unique case-sensitively")


def test_an_org_without_social_customer_service_is_told_what_to_enable(
    tmp_path: Path, env: None
) -> None:
    with XSandbox(bearer_token="e2e-bearer") as x, SalesforceSandbox(social=False) as sf:
        set_up_org(sf)
        w = make(tmp_path, sf, x)
        social_history(w, '["social_post"]')
        bad = failed(checks(w, 1))
    assert set(bad) == {"SocialPost", "SocialPersona"}
    post = bad["SocialPost"]
    assert "does not have Social Customer Service" in post["detail"]
    assert "turn on Social Customer Service" in post["fix"]
    assert '"Social Objects" org permission' in post["fix"]
    assert post["fix"].endswith('or set [crm] history = ["task"]')
    # history without Tasks needs no Task field: the blank Task of an org is no failure
    assert not any(item.startswith("Task") for item in bad)


def test_social_personas_lookups_in_an_org_without_the_object(tmp_path: Path, env: None) -> None:
    with XSandbox(bearer_token="e2e-bearer") as x, SalesforceSandbox(social=False) as sf:
        set_up_org(sf)
        w = make(tmp_path, sf, x)
        w.config.write_text(
            w.config.read_text().replace("[crm]\n", "[crm]\nsocial_personas = true\n", 1)
        )
        bad = failed(checks(w, 1))
    assert set(bad) == {"SocialPersona"}
    assert bad["SocialPersona"]["fix"].endswith("or set [crm] social_personas = false")


def test_a_provider_picklist_lacking_a_networks_value_fails() -> None:
    settings = SalesforceSettings.model_construct(type="salesforce", history=["social_post"])
    provider = next(s for s in specs(settings) if s.path == "SocialPost.Provider")
    assert provider.values == ("Twitter",)  # the X-only default
    field = {
        "name": "Provider",
        "type": "picklist",
        "createable": True,
        "updateable": True,
        "picklistValues": [{"value": "Facebook", "active": True}, {"value": "Other"}],
    }
    row = verify_field(provider, field)
    assert not row.ok and row.fix == "fix SocialPost.Provider: add the value(s) Twitter"
    assert verify_field(provider, None).fix == (
        "give the integration user access to SocialPost.Provider (field-level security)"
    )


def test_the_priority_field_and_its_task_values_are_checked(world: World) -> None:
    """``[crm.priority]``: the
    field the customer's priority is read from exists, and Task.Priority holds every value
    its map writes."""
    from connectors.salesforce.crm import SalesforceCrm
    from connectors.salesforce.settings import PrioritySettings

    section = PrioritySettings(
        field="Account.CustomerPriority__c",
        lead_field="Rating__c",
        task={"High": "High", "Medium": "Normal", "Low": "Someday"},
    )
    crm = settings_of(world).model_copy(update={"priority": section})

    def rows() -> dict[str, Any]:
        return {r.item: r for r in SalesforceCrm.from_settings(crm).check()}

    bad = {item: r for item, r in rows().items() if not r.ok}
    assert set(bad) == {"Account.CustomerPriority__c", "Lead.Rating__c", "Task.Priority"}
    assert bad["Account.CustomerPriority__c"].fix.startswith(
        "check [crm.priority] field: name a field the org has"
    )
    assert bad["Lead.Rating__c"].fix.startswith("check [crm.priority] lead_field:")
    assert bad["Task.Priority"].fix == "fix Task.Priority: add the value(s) Someday"
    world.sf.add_field("Account", "CustomerPriority__c", "picklist")
    world.sf.add_field("Lead", "Rating__c", "picklist")
    world.sf.set_picklist("Task", "Priority", ["High", "Normal", "Low", "Someday"])
    checked = rows()
    assert all(r.ok for r in checked.values())
    assert {"Account", "Account.CustomerPriority__c", "Task.Priority"} <= set(checked)


def test_cases_need_their_key_field_an_origin_per_network_and_the_mapped_priorities(
    world: World,
) -> None:
    """With ``[crm.cases]``: the Case key field (Unique, case-sensitive External ID), an
    Origin value for each network read, the reopen Status, and each Case.Priority value
    ``[crm.priority] case`` maps to; each missing one is named with its fix."""
    from connectors.salesforce.crm import SalesforceCrm
    from connectors.salesforce.settings import CaseSettings, PrioritySettings

    world.config.write_text(world.config.read_text() + FEDIVERSE)
    section = PrioritySettings(field="Account.Rating", case={"Hot": "High", "Cold": "Whenever"})
    crm = settings_of(world).model_copy(
        update={"priority": section, "cases": CaseSettings(reopen_status="Reopened")}
    )

    def bad() -> dict[str, Any]:
        return {r.item: r for r in SalesforceCrm.from_settings(crm).check() if not r.ok}

    world.sf.add_field("Account", "Rating", "picklist")
    # Closed orgs restrict Origin; the stand-in's default is the new org's unrestricted one.
    world.sf.set_picklist("Case", "Origin", ["Phone", "Email", "Web"], restricted=True)
    found = bad()
    assert set(found) == {"Case.Syncd_Key__c", "Case.Origin", "Case.Status", "Case.Priority"}
    origin = "fix Case.Origin: add the value(s) Twitter, Mastodon, Bluesky"
    assert found["Case.Origin"].fix == origin
    assert found["Case.Priority"].fix == "fix Case.Priority: add the value(s) Whenever"
    assert "Reopened" in (found["Case.Status"].fix or "")
    assert "Syncd_Key__c" in (found["Case.Syncd_Key__c"].fix or "")
    world.sf.add_field("Case", "Syncd_Key__c", external_id=True, unique=True)
    world.sf.set_picklist("Case", "Origin", ["Phone", "Web", "Twitter", "Mastodon", "Bluesky"])
    world.sf.set_picklist("Case", "Priority", ["High", "Medium", "Low", "Whenever"])
    world.sf.set_picklist("Case", "Status", ["New", "Reopened", "Closed"])
    assert not bad()
