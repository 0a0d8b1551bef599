"""The demo org as Service Cloud runs it, and what syncd's social records there came to.

``syncd demo --service-cloud`` runs the demo with ``[crm] history = ["task", "social_post"]``
and a customer priority: the org gets syncd's SocialPost and SocialPersona upsert keys (as
`syncd salesforce fields` adds them), the configuration the keys and ``[crm.priority]`` (read
from the tier :mod:`sandbox.seed` puts on each Contact's Account), and afterwards everything
is read back with SOQL over the stand-in's REST API, as an admin would, never from its store:
SocialPosts, SocialPersonas, the ReplyToId threads, Task.Priority by tier, and, once syncd
opens them, Cases. Text and figures only; how they are shown is the demo's business.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sandbox.config import TomlValue
from sandbox.run import Sandbox
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import TIER_FIELD, TIERS, Customer, World

# [crm] social_post_key_field and social_persona_key_field's default.
KEY = "Syncd_Key__c"
# Task.Priority for each tier: the stand-in's picklist (High, Normal, Low), as an org's.
TASK_PRIORITY = {"High": "High", "Medium": "Normal", "Low": "Low"}
DEFAULT_TIER = "Medium"  # a Lead (no Account) or a Contact whose Account holds none
# How the read-back names a person with no tier of their own.
LEAD, NO_TIER = "(Lead)", "(none)"

Query = Callable[[str], list[dict[str, Any]]]


def set_up_org(sandbox: Sandbox, world: World) -> None:
    """The sandbox's org as a Service Cloud org: see :func:`set_up`."""
    set_up(sandbox.salesforce, world)


def set_up(sf: SalesforceSandbox, world: World) -> None:
    """SocialPost's, SocialPersona's and Case's upsert keys, as `syncd salesforce fields`
    makes them: Text(255), External ID, Unique, case-sensitive; and the X personas Social
    Studio left
    (:func:`studio_personas`)."""
    for sobject in ("SocialPost", "SocialPersona", "Case"):
        sf.add_field(sobject, KEY, external_id=True, unique=True, case_sensitive=True)
    for customer in studio_personas(world):
        assert customer.crm_id is not None
        # As Salesforce's inbound handler made them: no syncd key, Provider and ExternalId.
        sf.insert(
            "SocialPersona",
            {
                "Name": customer.handle,
                "RealName": f"{customer.first} {customer.last}",
                "Provider": "Twitter",
                "ExternalId": customer.user_id,
                "ParentId": customer.crm_id,
            },
        )


def studio_personas(world: World) -> list[Customer]:
    """The customers whose X persona the org holds from before syncd, as an org Social
    Studio fed has them: the Contacts known by their X id (it made a persona for each X
    author it handled). syncd reuses these rather than making its own; every other persona
    (other networks, other customers) it makes."""
    return [c for c in world.customers if c.kind == "contact_by_id" and "x" in c.networks]


# Case.Priority for each tier: the stand-in's picklist (High, Medium, Low), as an org's.
CASE_PRIORITY = {"High": "High", "Medium": "Medium", "Low": "Low"}


def crm_keys() -> dict[str, TomlValue]:
    """The ``[crm]`` keys of the Service Cloud mode: both history targets, the priority
    read from the customer's Account, and each conversation a Case."""
    return {
        "history": ["task", "social_post"],
        "priority": {
            "field": f"Account.{TIER_FIELD}",
            "task": dict(TASK_PRIORITY),
            "case": dict(CASE_PRIORITY),
            "default": DEFAULT_TIER,
        },
        "cases": {"open": "all"},
    }


@dataclass(frozen=True)
class PriorityRow:
    tier: str  # the customer's tier, LEAD or NO_TIER
    priority: str  # Task.Priority ("-" when empty)
    by_network: dict[str, int]  # Tasks per Social_Network__c


@dataclass(frozen=True)
class SocialReadback:
    """The social records in the CRM, read back with SOQL."""

    posts: int
    duplicates: int  # SocialPosts sharing one key
    by_type: dict[str, dict[str, int]]  # network → MessageType → SocialPosts
    without_persona: int  # SocialPosts with no PersonaId
    personas: int
    persona_duplicates: int  # personas sharing a key, or Provider + MediaProvider + ExternalId
    personas_made: int  # not in the org before the run
    personas_reused: int  # in the org before the run, and named by a SocialPost now
    replies: int  # SocialPosts whose ReplyToId names another one
    threads: int  # SocialPosts answered by at least one other, none answering one
    dangling: int  # ReplyToId naming no SocialPost
    outbound: int  # the brand's SocialPosts
    outbound_linked: int  # of those, with a ReplyToId
    priorities: tuple[PriorityRow, ...]  # by tier, then priority
    tasks: int
    # Customers with Tasks on two networks or more, and those of them whose Tasks all carry
    # one priority.
    across_networks: int
    one_priority: int

    @property
    def networks(self) -> tuple[str, ...]:
        seen = {n for row in self.priorities for n in row.by_network} | set(self.by_type)
        return tuple(sorted(seen))

    def one_priority_per_tier(self) -> bool:
        """Each tier got one Task.Priority, whichever network the customer wrote on."""
        tiers = [row.tier for row in self.priorities]
        return len(tiers) == len(set(tiers))


def persona_ids(query: Query) -> frozenset[str]:
    """The SocialPersonas the org holds now."""
    return frozenset(str(r["Id"]) for r in query("SELECT Id FROM SocialPersona"))


def social_readback(query: Query, personas_before: frozenset[str]) -> SocialReadback:
    """What syncd's social records came to; ``personas_before``: :func:`persona_ids` taken
    before syncd ran, which tells the personas it made from those it found."""
    posts = query(
        f"SELECT Id, {KEY}, MessageType, IsOutbound, PersonaId, ReplyToId FROM SocialPost"
    )
    personas = query(f"SELECT Id, {KEY}, Provider, MediaProvider, ExternalId FROM SocialPersona")
    by_id = {str(p["Id"]): p for p in posts}
    by_type: dict[str, Counter[str]] = defaultdict(Counter)
    for p in posts:
        by_type[_network(p.get(KEY))][str(p.get("MessageType") or "-")] += 1
    answering = {pid: str(p["ReplyToId"]) for pid, p in by_id.items() if p.get("ReplyToId")}
    answered = set(answering.values())
    named = {str(p["PersonaId"]) for p in posts if p.get("PersonaId")}
    persona_keys = [str(p[KEY]) for p in personas if p.get(KEY)]
    matches = [
        (p.get("Provider"), str(p.get("MediaProvider") or "").casefold(), p.get("ExternalId"))
        for p in personas
    ]
    outbound = [p for p in posts if p.get("IsOutbound")]
    rows, across, one = _priorities(query)
    return SocialReadback(
        posts=len(posts),
        duplicates=_duplicates(str(p.get(KEY)) for p in posts),
        by_type={n: dict(c) for n, c in sorted(by_type.items())},
        without_persona=sum(not p.get("PersonaId") for p in posts),
        personas=len(personas),
        persona_duplicates=_duplicates(persona_keys) + _duplicates(matches),
        personas_made=sum(str(p["Id"]) not in personas_before for p in personas),
        personas_reused=len(named & personas_before),
        replies=sum(parent in by_id for parent in answering.values()),
        threads=sum(pid in answered and pid not in answering for pid in by_id),
        dangling=sum(parent not in by_id for parent in answering.values()),
        outbound=len(outbound),
        outbound_linked=sum(bool(p.get("ReplyToId")) for p in outbound),
        priorities=rows,
        tasks=sum(sum(r.by_network.values()) for r in rows),
        across_networks=across,
        one_priority=one,
    )


def _priorities(query: Query) -> tuple[tuple[PriorityRow, ...], int, int]:
    """Task.Priority by the tier of the customer the Task is on, per network; and the
    customers on several networks, and those of them with one priority throughout."""
    tasks = query("SELECT WhoId, Priority, Social_Network__c FROM Task")
    tiers = {
        str(c["Id"]): str((c.get("Account") or {}).get(TIER_FIELD) or NO_TIER)
        for c in query(f"SELECT Id, Account.{TIER_FIELD} FROM Contact")
    }
    tiers |= {str(lead["Id"]): LEAD for lead in query("SELECT Id FROM Lead")}
    cells: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    per_person: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for t in tasks:
        who, network = str(t.get("WhoId")), str(t.get("Social_Network__c") or "-")
        priority = str(t.get("Priority") or "-")
        cells[(tiers.get(who, NO_TIER), priority)][network] += 1
        networks, priorities = per_person[who]
        networks.add(network)
        priorities.add(priority)
    order = [tier for tier, _, _ in TIERS] + [NO_TIER, LEAD]
    rows = tuple(
        PriorityRow(tier, priority, dict(sorted(by_network.items())))
        for (tier, priority), by_network in sorted(
            cells.items(),
            key=lambda kv: (order.index(kv[0][0]) if kv[0][0] in order else len(order), kv[0]),
        )
    )
    across = [p for n, p in per_person.values() if len(n) > 1]
    return rows, len(across), sum(len(p) == 1 for p in across)


@dataclass(frozen=True)
class CaseReadback:
    """The Cases in the CRM and what hangs on them, read back with SOQL."""

    cases: int
    by_origin_priority: dict[tuple[str, str], int]  # (Origin, Priority) → Cases
    # How many Cases hold n records: SocialPosts by ParentId, Tasks by WhatId (n → Cases).
    social_posts_per_case: dict[int, int]
    tasks_per_case: dict[int, int]
    # How many conversations (Task.Social_Conversation_Id__c) had n Cases (n → conversations).
    cases_per_conversation: dict[int, int]
    social_posts_without_case: int
    tasks_without_case: int


def case_readback(query: Query, *, social_posts: bool) -> CaseReadback:
    """The Cases and the records on them; ``social_posts``: the org has SocialPost (with the
    SocialPost history), whose ParentId is read too."""
    cases = query("SELECT Id, Origin, Priority FROM Case")
    case_ids = {str(c["Id"]) for c in cases}
    tasks = query("SELECT WhatId, Social_Conversation_Id__c FROM Task")
    posts = query("SELECT ParentId FROM SocialPost") if social_posts else []
    conversations: dict[str, set[str]] = defaultdict(set)
    for t in tasks:
        if (conv := t.get("Social_Conversation_Id__c")) is not None:
            on = str(t.get("WhatId"))
            conversations[str(conv)].update({on} & case_ids)
    return CaseReadback(
        cases=len(cases),
        by_origin_priority=dict(
            Counter((str(c.get("Origin") or "-"), str(c.get("Priority") or "-")) for c in cases)
        ),
        social_posts_per_case=_per_case((p.get("ParentId") for p in posts), case_ids),
        tasks_per_case=_per_case((t.get("WhatId") for t in tasks), case_ids),
        cases_per_conversation=dict(
            sorted(Counter(len(c) for c in conversations.values()).items())
        ),
        social_posts_without_case=sum(str(p.get("ParentId")) not in case_ids for p in posts),
        tasks_without_case=sum(str(t.get("WhatId")) not in case_ids for t in tasks),
    )


def _per_case(parents: Iterable[object], case_ids: set[str]) -> dict[int, int]:
    held = Counter(str(p) for p in parents if str(p) in case_ids)
    held.update({c: 0 for c in case_ids - set(held)})  # a Case holding none counts too
    return dict(sorted(Counter(held.values()).items()))


def _network(key: object) -> str:
    """The network of a record keyed ``<network>:<post id>``."""
    return str(key).partition(":")[0] if key else "-"


def _duplicates(values: Iterable[object]) -> int:
    seen = list(values)
    return len(seen) - len(set(seen))
