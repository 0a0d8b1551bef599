"""The resolver chain against an in-memory CRM: each matcher, the thresholds, the batching."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from support.fake_crm import FakeCrm

from connectors.salesforce.identity.lookup import match_rows, settle
from connectors.salesforce.settings import IdentityFields
from syncd.model import (
    CrmRef,
    IdentityKey,
    KeyOnFile,
    KeysOnFile,
    Match,
    PersonRecord,
    Profile,
)
from syncd.resolver import Policy, on_file, resolve
from syncd.resolver.chain import affected
from syncd.resolver.evidence import (
    domain,
    emails,
    name_search,
    name_tokens,
    phone_digits,
    same_phone,
)
from syncd.resolver.scoring import name_similarity, score

ADA = CrmRef("Contact", "003ADA", "Ada Okafor")
ADA2 = CrmRef("Contact", "003ADA2", "Ada Okafor")
BEN = CrmRef("Contact", "003BEN", "Ben Lindqvist")


def profile(
    uid: str = "1", handle: str = "ada", name: str | None = "Ada Okafor", **kw: object
) -> Profile:
    return Profile(IdentityKey("x", uid, handle), display_name=name, **kw)  # type: ignore[arg-type]


def person(ref: CrmRef, first: str, last: str, **kw: object) -> PersonRecord:
    return PersonRecord(ref, first_name=first, last_name=last, **kw)  # type: ignore[arg-type]


def test_the_user_id_on_file_links_without_asking_anything_else() -> None:
    crm = FakeCrm({"1": ADA})
    d = resolve(crm, {10: profile()}, Policy())[10]
    assert d.link is not None and d.link.ref == ADA and d.link.matcher == "crm_user_id"
    assert crm.calls == ["lookup"]  # decided: the name search never ran


def test_a_handle_on_file_links_and_a_former_handle_too() -> None:
    crm = FakeCrm(handles={"ada_old": ADA})
    renamed = profile(handle="ada_new", past_handles=("ada_old",))
    d = resolve(crm, {10: renamed}, Policy())[10]
    assert d.link is not None and d.link.ref == ADA
    assert d.link.score == pytest.approx(0.94) and "ada_old" in d.link.reasons[0]


def test_a_name_alone_is_never_enough_to_link() -> None:
    crm = FakeCrm(person_records=[person(ADA, "Ada", "Okafor")])
    d = resolve(crm, {10: profile()}, Policy())[10]
    assert d.link is None
    assert [c.ref for c in d.review] == [ADA]
    assert d.review[0].matcher == "fuzzy_name" and d.review[0].score < 0.92


def test_a_name_with_a_matching_website_and_company_links() -> None:
    crm = FakeCrm(
        person_records=[
            person(
                ADA,
                "Ada",
                "Okafor",
                website="https://okafor-design.example",
                company="Okafor Design",
            )
        ]
    )
    p = profile(url="https://www.okafor-design.example/about", description="Founder, Okafor Design")
    d = resolve(crm, {10: p}, Policy())[10]
    assert d.link is not None and d.link.ref == ADA
    assert any("website okafor-design.example" in r for r in d.link.reasons)


def test_homonyms_go_to_review_never_to_a_guess() -> None:
    crm = FakeCrm(person_records=[person(ADA, "Ada", "Okafor"), person(ADA2, "Ada", "Okafor")])
    d = resolve(crm, {10: profile()}, Policy(auto_link=0.7))[10]
    assert d.link is None  # equal scores: the margin rule refuses
    assert {c.ref for c in d.review} == {ADA, ADA2}


def test_a_record_holding_another_user_id_is_someone_else() -> None:
    other = person(ADA, "Ada", "Okafor", user_id="999")
    assert score(profile(), other) is None
    assert resolve(FakeCrm(person_records=[other]), {10: profile()}, Policy())[10].review == ()


def test_contact_points_in_the_bio_link() -> None:
    by_mail = person(ADA, "A.", "O.", email="ada@okafor.example")
    by_phone = person(BEN, "Ben", "L", phone="+44 20 7946 0958")
    crm = FakeCrm(person_records=[by_mail, by_phone])
    profiles = {
        10: profile(name=None, description="mail me: ada@okafor.example"),
        11: profile("2", "benl", name=None, description="call 020 7946 0958"),
    }
    decisions = resolve(crm, profiles, Policy())
    assert decisions[10].link is not None and decisions[10].link.ref == ADA
    assert decisions[10].link.matcher == "contact_points"
    assert decisions[11].link is not None and decisions[11].link.ref == BEN


def test_a_rejected_candidate_is_never_offered_again() -> None:
    crm = FakeCrm({"1": ADA})
    d = resolve(crm, {10: profile()}, Policy(), rejected={10: {ADA.id}})[10]
    assert d.link is None and d.review == ()


def test_matchers_can_be_turned_off_and_the_search_is_one_call_per_batch() -> None:
    crm = FakeCrm({"1": ADA}, person_records=[person(BEN, "Ben", "Lindqvist")])
    only_names = Policy(matchers=("fuzzy_name",))
    profiles = {i: profile(str(i), f"h{i}", "Ben Lindqvist") for i in range(50)}
    decisions = resolve(crm, profiles, only_names)
    assert crm.calls == ["find_people"]  # the id field was not asked; one search for 50
    assert decisions[1].link is None and decisions[1].review[0].ref == BEN
    assert crm.queries[0].names == {("b", "lin"), ("ben", "l")}  # Ben, Benjamin alike
    assert crm.queries[0].name_prefixes == set()


def test_a_name_is_searched_by_first_and_last_name_together() -> None:
    """Pairs (first initial, last 3 letters) and (first 3, last initial): a typo in one name
    leaves the other pair. As typed (LIKE compares accents) and folded; nicknames both ways."""
    assert name_search("John Smith") == (set(), {("j", "smi"), ("joh", "s")})
    bob = {("b", "smi"), ("bob", "s"), ("r", "smi"), ("rob", "s")}
    assert name_search("bob SMITH 🚀")[1] == bob
    assert name_search("Zoë Müller")[1] == {
        ("z", "mül"), ("z", "mul"), ("zoë", "m"), ("zoe", "m"),
    }  # fmt: skip
    # Each word after the first is tried as the last name (up to three of them).
    assert name_search("Jane Doe (she/her)")[1] == {
        ("j", "doe"), ("jan", "d"), ("j", "she"), ("jan", "s"), ("j", "her"), ("jan", "h"),
    }  # fmt: skip
    assert ("a", "lop") in name_search("Ana Maria Garcia Lopez")[1]
    assert ("a", "ext") not in name_search("Ana Maria Garcia Lopez Extra")[1]


@pytest.mark.parametrize(
    ("name", "prefixes"),
    [("Madonna", {"mad"}), ("Bob", {"bob", "rob"}), ("Ed", {"edw"}), ("Zoë", {"zoë", "zoe"}),
     ("Al", set()), ("🚀 42", set()), (None, set())],
)  # fmt: skip
def test_a_one_word_name_keeps_its_prefixes(name: str | None, prefixes: set[str]) -> None:
    assert name_search(name) == (prefixes, set())


def test_the_batched_search_carries_every_authors_pairs_and_prefixes() -> None:
    jim = person(CrmRef("Contact", "003JIM"), "James", "Smith")
    crm = FakeCrm(person_records=[jim, person(CrmRef("Contact", "003MARY"), "Mary", "Smith")])
    profiles = {1: profile("1", "jim", "Jim Smith"), 2: profile("2", "cher", "Cher")}
    decisions = resolve(crm, profiles, Policy(matchers=("fuzzy_name",)))
    (query,) = crm.queries
    assert query.names == {("j", "smi"), ("jim", "s"), ("jam", "s")}
    assert query.name_prefixes == {"che"}
    assert [c.ref for c in decisions[1].review] == [jim.ref]  # not scored against Mary
    assert decisions[2].review == ()


def test_crm_changes_affect_the_authors_the_search_would_find_them_by() -> None:
    profiles = {
        1: profile("1", "a", "Jim Smith"),  # (j, smi)
        2: profile("2", "b", "Mary Smith"),  # a Smith, but not a J. Smith
        3: profile("3", "c", "Smith"),  # one word: any name starting "smi"
        4: profile("4", "d", "Zoe Müller"),  # accents and case aside
        5: profile("5", "e", "James Smyth"),  # (jam, s)
        6: profile("6", "f", "Stone Jim"),
    }
    people = [
        person(CrmRef("Contact", "003J"), "James", "Smith"),
        person(CrmRef("Lead", "00QZ"), "ZOË", "muller"),
    ]
    assert affected(profiles, people) == {1, 3, 4, 5}


def test_unmatched_authors_have_no_candidates() -> None:
    crm = FakeCrm(person_records=[person(BEN, "Ben", "Lindqvist")])
    d = resolve(crm, {10: profile()}, Policy())[10]
    assert d.link is None and d.review == ()


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("write to Ada.Okafor@Example.COM.", {"ada.okafor@example.com"}),
        ("no mail here @acme", set()),
    ],
)
def test_emails_in_a_bio(text: str, found: set[str]) -> None:
    assert emails(text) == found


def test_profile_evidence_helpers() -> None:
    assert phone_digits("call +1 (415) 555-0100 now") == {"14155550100"}
    assert same_phone("14155550100", "4155550100")
    assert not same_phone("14155550100", "14155550199")
    assert domain("https://www.Okafor.example/x") == "okafor.example"
    assert domain("ada@okafor.example") == "okafor.example"
    assert name_tokens("Bob 🎸 Smith-Jones") == ["robert", "smith", "jones"]
    assert name_tokens("Zoë Müller") == ["zoe", "muller"]


# -- a recycled handle (issue 16, item 6) ----------------------------------------------------
JANE = CrmRef("Contact", "003JANE", "Jane Doe")
NEW_JANE = CrmRef("Lead", "00QNEW", "Jane Doe")
X_FIELDS = IdentityFields(user_id="X_User_Id__c", handle="X_Handle__c")
OTHER_OWNER_WHY = (
    "holds X user id 111, not this author's 999: the handle @janedoe may have changed owners"
)


def from_copy(people: Sequence[KeysOnFile]) -> Callable[[Sequence[IdentityKey]], Any]:
    """The id and handle look-up as the resolver's local copy of the CRM answers it."""
    return lambda keys: on_file.matches(keys, people)


def from_salesforce(rows: dict[str, list[dict[str, Any]]]) -> Callable[..., Any]:
    """The id and handle look-up as the Salesforce connector decides it, object by object."""

    def ask(keys: Sequence[IdentityKey]) -> dict[IdentityKey, Match]:
        found: dict[IdentityKey, Match] = {}
        pending = list(keys)
        for obj in ("Contact", "Lead"):
            decided = match_rows(obj, X_FIELDS, pending, rows.get(obj, []), ids_only=found)
            if not (pending := settle(found, pending, decided)):
                break
        return found

    return ask


def jane_on_file(lead_999: bool = False) -> Callable[[Sequence[IdentityKey]], Any]:
    people = [KeysOnFile(JANE, (KeyOnFile("x", "111", "janedoe"),))]
    if lead_999:
        people.append(KeysOnFile(NEW_JANE, (KeyOnFile("x", "999", None),), rank=1))
    return from_copy(people)


def jane_in_salesforce(lead_999: bool = False) -> Callable[[Sequence[IdentityKey]], Any]:
    row = {"Id": JANE.id, "Name": "Jane Doe", "X_User_Id__c": "111", "X_Handle__c": "@JaneDoe"}
    lead = {"Id": NEW_JANE.id, "Name": "Jane Doe", "X_User_Id__c": "999", "X_Handle__c": None}
    return from_salesforce({"Contact": [row], "Lead": [lead] if lead_999 else []})


@pytest.mark.parametrize("ask", [jane_on_file, jane_in_salesforce], ids=["copy", "salesforce"])
def test_a_recycled_handle_goes_to_review_with_why_never_to_the_previous_owner(
    ask: Callable[..., Callable[[Sequence[IdentityKey]], Any]],
) -> None:
    crm = FakeCrm()
    crm.persona_refs = {"999": [JANE]}  # even a persona naming her does not make it a link
    d = resolve(crm, {10: profile("999", "janedoe", "Jane Doe")}, Policy(), lookup=ask())[10]
    assert d.link is None
    (candidate,) = d.review
    assert (candidate.ref, candidate.matcher) == (JANE, "crm_handle")
    assert candidate.score < Policy().review_floor  # below any link, shown all the same
    assert candidate.reasons[0] == OTHER_OWNER_WHY
    # Even where a link needs no more than the review floor.
    lax = Policy(auto_link=0.5, margin=0.0)
    assert resolve(FakeCrm(), {10: profile("999", "janedoe")}, lax, lookup=ask())[10].link is None
    # Jane herself (user 111) is still linked by her id.
    mine = resolve(FakeCrm(), {10: profile("111", "janedoe")}, Policy(), lookup=ask())[10]
    assert mine.link is not None and mine.link.ref == JANE and mine.link.matcher == "crm_user_id"


@pytest.mark.parametrize("ask", [jane_on_file, jane_in_salesforce], ids=["copy", "salesforce"])
def test_a_later_object_holding_the_authors_own_id_beats_another_owners_handle(
    ask: Callable[..., Callable[[Sequence[IdentityKey]], Any]],
) -> None:
    d = resolve(FakeCrm(), {10: profile("999", "janedoe")}, Policy(), lookup=ask(True))[10]
    assert d.link is not None and d.link.ref == NEW_JANE and d.link.matcher == "crm_user_id"


# -- a review item must be worth a person's look (issue 16, item 7) --------------------------
def customers(*numbers: int) -> list[PersonRecord]:
    return [person(CrmRef("Contact", f"003C{n}"), "Customer", str(n)) for n in numbers]


def test_names_differing_in_a_number_or_a_word_are_no_candidates() -> None:
    crm = FakeCrm(person_records=customers(21, 22, 23, 24, 25))
    d = resolve(crm, {10: profile("33", "c33", "Customer 33")}, Policy())[10]
    assert d.link is None and d.review == ()  # was: Customer 21..25, each at 0.78
    assert score(profile(name="Customer 33"), customers(21)[0]) is None
    crm = FakeCrm(person_records=customers(33))
    (same,) = resolve(crm, {10: profile(name="Customer 33")}, Policy())[10].review
    assert same.ref.id == "003C33" and same.score == pytest.approx(0.78)
    assert name_similarity("Christine Powell", "Christian Powell") is None  # another word
    assert name_similarity("John A. Smith", "John B. Smith") is None  # other initials
    assert name_similarity("Customer", "Customer 33") is None  # the CRM's number is the name
    assert name_similarity("Jane Doe 24/7", "Jane Doe") == 1.0  # the profile's is decoration
    alike = [("Jon Smiht", "John Smith"), ("Lras Long", "Lars Long"),
             ("smith john", "John Smith"), ("Bob Smith", "Robert Smith")]  # fmt: skip
    for typed, crm_name in alike:
        assert (name_similarity(typed, crm_name) or 0) >= 0.8, typed


SMITHS = [
    person(CrmRef("Contact", "003S1"), "John", "Smith", city="Boston", company="Acme Labs"),
    person(CrmRef("Contact", "003S2"), "John", "Smith", city="Leeds"),
    person(CrmRef("Contact", "003S3"), "John", "Smith", city="Lima"),
]


def test_a_stranger_with_a_common_name_and_nothing_else_is_not_queued() -> None:
    crm = FakeCrm(person_records=SMITHS)
    d = resolve(crm, {10: profile("9", "jsmith", "John Smith")}, Policy())[10]
    assert d.link is None and d.review == ()  # three namesakes: nothing to choose on
    # One namesake, but the profile says it lives elsewhere.
    ada = FakeCrm(person_records=[person(ADA, "Ada", "Okafor", city="Lagos")])
    elsewhere = profile(name="Ada Okafor", location="Tokyo, Japan")
    assert resolve(ada, {10: elsewhere}, Policy())[10].review == ()
    assert [c.ref for c in resolve(ada, {10: profile()}, Policy())[10].review] == [ADA]


def test_a_customer_with_corroboration_is_still_queued_alone() -> None:
    crm = FakeCrm(person_records=SMITHS)
    at_acme = profile("9", "jsmith", "John Smith", description="Ops lead at Acme Labs")
    in_leeds = profile("8", "jsmiht", "Jon Smiht", location="Leeds, UK")
    d = resolve(crm, {10: at_acme, 11: in_leeds}, Policy())
    assert [c.ref.id for c in d[10].review] == ["003S1"]
    assert "profile mentions Acme Labs" in d[10].review[0].reasons[0]
    assert [c.ref.id for c in d[11].review] == ["003S2"]
