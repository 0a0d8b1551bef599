"""``syncd demo --service-cloud`` end to end, on both backends: the real daemon writes every
interaction as a Task and a SocialPost, and the demo's summary (read back with SOQL) agrees with
what the Salesforce stand-in holds, read from its store, and with the tiers the seed gave."""

from __future__ import annotations

from collections import Counter, defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from sandbox import service_cloud as sc
from sandbox.config import Secrets
from sandbox.run import Sandbox
from syncd.service import demo


def _run(monkeypatch: pytest.MonkeyPatch, state_url: str) -> tuple[int, str, dict[str, Any]]:
    """The service-cloud demo's exit code and output, and what the stand-in held while the
    summary was made: its records, the world seeded, and the figures the summary printed."""
    for name in Secrets().environ():  # the demo puts them into the environment: undone after
        monkeypatch.delenv(name, raising=False)
    # Once caught up, a held author falls due again a moment later (they are asked about on
    # a back-off): the demo has caught up all the same.
    looked, once = demo.caught_up, list[bool]()

    def caught_up(*args: Any) -> bool:
        if once:
            return False
        if looked(*args):
            once.append(True)
        return bool(once)

    seen: dict[str, Any] = {}
    summary = demo._service_cloud

    def service_cloud(
        console: Console, sandbox: Sandbox, before: frozenset[str]
    ) -> sc.SocialReadback:
        back = summary(console, sandbox, before)
        sf = sandbox.salesforce
        seen.update(
            back=back,
            before=before,
            world=sandbox.world,
            posts=sf.records("SocialPost"),
            personas=sf.records("SocialPersona"),
            tasks=sf.records("Task"),
            contacts=sf.records("Contact"),
            accounts=sf.records("Account"),
            cases=sf.records("Case"),
        )
        return back

    monkeypatch.setattr(demo, "caught_up", caught_up)
    monkeypatch.setattr(demo, "_service_cloud", service_cloud)
    console = Console(record=True, width=80)
    code = demo.run_demo(
        customers=16,
        posts=60,
        seconds=2,
        state_url=state_url,
        show=0,
        console=console,
        service_cloud=True,
    )
    return code, console.export_text(), seen


def test_the_service_cloud_demo_reports_what_the_org_holds(
    monkeypatch: pytest.MonkeyPatch, state_url: str
) -> None:
    code, out, seen = _run(monkeypatch, state_url)
    assert code == 0, out
    back: sc.SocialReadback = seen["back"]
    posts, personas, tasks = seen["posts"], seen["personas"], seen["tasks"]

    # Every interaction written is one Task and one SocialPost, each once.
    keys = [p[sc.KEY] for p in posts]
    assert len(set(keys)) == len(keys) == back.posts == len(tasks) > 0, out
    assert set(keys) == {t["Social_Post_Id__c"] for t in tasks}
    assert back.duplicates == back.persona_duplicates == 0
    by_type: dict[str, Counter[str]] = defaultdict(Counter)
    for p in posts:
        by_type[p[sc.KEY].split(":")[0]][p["MessageType"]] += 1
    assert back.by_type == {n: dict(c) for n, c in by_type.items()}
    assert len(back.by_type) == 5  # every network of the sandbox

    # One persona per author and network: those Social Studio left reused, the others made
    # by syncd; each post on one of them.
    studio = {p["Id"] for p in personas if not p.get(sc.KEY)}
    assert seen["before"] == studio
    people = {(c.user_id, c.crm_id) for c in seen["world"].customers}
    assert all((p["ExternalId"], p["ParentId"]) in people for p in personas if p["Id"] in studio)
    assert back.personas == len(personas) and back.personas_made == len(personas) - len(studio)
    persona_ids = {p["Id"] for p in personas}
    assert all(p["PersonaId"] in persona_ids for p in posts) and back.without_persona == 0
    named = {p["PersonaId"] for p in posts}
    assert back.personas_reused == len(named & studio) > 0
    made = [p[sc.KEY] for p in personas if p.get(sc.KEY)]
    assert len(set(made)) == len(made) == back.personas_made > 0

    # Each brand reply names the customer's post it answers, on the same person.
    by_id = {p["Id"]: p for p in posts}
    outbound = [p for p in posts if p["IsOutbound"]]
    assert outbound and back.outbound == back.outbound_linked == len(outbound)
    for reply in outbound:
        parent = by_id[reply["ReplyToId"]]
        assert not parent["IsOutbound"] and parent["WhoId"] == reply["WhoId"]
    assert back.replies == sum(bool(p.get("ReplyToId")) for p in posts)
    assert back.dangling == 0
    roots = {p["ReplyToId"] for p in posts if p.get("ReplyToId")}
    assert back.threads == len({r for r in roots if not by_id[r].get("ReplyToId")})

    # Task.Priority follows the tier the seed put on the customer's Account, on every
    # network; Leads and Contacts without a tier get the default's.
    tier = {c.crm_id: c.tier for c in seen["world"].customers if c.crm_id}
    default = sc.TASK_PRIORITY[sc.DEFAULT_TIER]
    networks_of: dict[str, set[str]] = defaultdict(set)
    for t in tasks:
        want = sc.TASK_PRIORITY[tier[t["WhoId"]]] if tier.get(t["WhoId"]) else default
        assert t["Priority"] == want, t
        networks_of[t["WhoId"]].add(t["Social_Network__c"])
    premier = [who for who, n in networks_of.items() if tier.get(who) == "High" and len(n) > 1]
    assert premier  # a premier customer seen on two networks or more, High on each
    cells = Counter(
        (
            tier.get(t["WhoId"]) or ("(Lead)" if t["WhoId"].startswith("00Q") else "(none)"),
            t["Priority"],
            t["Social_Network__c"],
        )
        for t in tasks
    )
    assert {
        (row.tier, row.priority, n): k for row in back.priorities for n, k in row.by_network.items()
    } == dict(cells)
    assert back.one_priority_per_tier() and back.tasks == len(tasks)
    assert (
        back.across_networks == back.one_priority == sum(len(n) > 1 for n in networks_of.values())
    )

    # Each conversation a Case ([crm.cases] open = "all"): a Contact's inbound posts each on
    # one, the same on the Task (WhatId) and the SocialPost (ParentId); a Lead's on none;
    # Case.Priority the customer's tier, on every network.
    cases = {c["Id"]: c for c in seen["cases"]}
    assert cases and all(c[sc.KEY] and c["ContactId"] for c in cases.values())
    on_post = {p[sc.KEY]: p.get("ParentId") for p in posts}
    for t in tasks:
        key, what = t["Social_Post_Id__c"], t.get("WhatId")
        assert on_post[key] == what, key
        if t["WhoId"].startswith("00Q"):
            assert what is None, key
        elif t["Social_Direction__c"] == "Inbound":
            assert what in cases, key
    for case in cases.values():
        want = tier.get(case["ContactId"]) or sc.DEFAULT_TIER
        assert case["Priority"] == sc.CASE_PRIORITY[want], case
    flat = " ".join(out.split())  # a title or a cell may wrap
    assert f"Cases ({len(cases)}) by Origin and Priority" in flat
    without = sum(t.get("WhatId") is None for t in tasks)
    assert f"on no Case SocialPosts {without}, Tasks {without}" in flat

    # What was printed is those figures, in 80 columns.
    lines = out.splitlines()
    assert (
        max(
            len(line.rstrip())
            for line in lines[lines.index("Service Cloud (read back with SOQL)") :]
        )
        <= 80
    )
    total = next(line for line in lines if line.split()[:1] == ["all"])
    assert total.split()[-1] == str(back.posts)
    assert (
        f"{back.personas}: {back.personas_made} made by syncd, {len(studio)} the org held"
        f" before ({back.personas_reused} reused)"
    ) in " ".join(out.split())  # the cell may wrap
    assert f"{back.outbound_linked} of {back.outbound} name the post they answer" in out
    assert "SocialPosts 0, SocialPersonas 0" in out
    assert "one priority per tier on every network: yes" in out


def test_cases_are_summed_up_only_when_the_config_has_them() -> None:
    from connectors.salesforce.settings import CaseSettings

    assert not demo.cases_enabled(SimpleNamespace())  # a CRM without Cases at all
    assert not demo.cases_enabled(SimpleNamespace(cases=None))
    assert demo.cases_enabled(SimpleNamespace(cases=CaseSettings(open="replies")))
