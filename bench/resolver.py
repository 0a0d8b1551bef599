"""Identity-resolver accuracy: a labelled population through the real resolve stage.

The Salesforce stand-in runs in-process; the real connector (simple-salesforce over loopback
HTTP) asks it. The org holds ``--people`` Contacts (Accounts with a Website) and Leads: varied
names, company or shared-provider e-mails, phones, cities; some carry an X user id or handle.
``--authors`` authors, each labelled with the person they are (or nobody), are stored as ingest
stores them (a renamed one seen first under the old handle); then the resolve stage runs with
default settings (unmatched = hold, batch 200). Kinds, as shares of the authors:

- ``user_id`` 12 %, ``handle`` 12 % ("@Name" or "name"), ``renamed`` 10 % (the record holds the
  old handle): on the person's record.
- ``email`` 8 %, ``phone`` 6 %: the record's e-mail / phone, written another way, in the bio.
- ``site`` 10 %: the name (exact, nickname or typo), the website on the person's company domain,
  the city; half name the company.
- ``name`` 12 %: the name (exact, nickname or typo) with the company in the bio and/or the city.
- ``homonym`` 8 %: the name of one of two Contacts named alike; maybe a city or company hint.
- ``stranger`` 22 %: no customer: a fresh name, a namesake or near-namesake of someone in the
  CRM, a colleague (same company website), an e-mail or phone the CRM does not know.

"Auto-resolvable" (user id, handle, old handle, e-mail, phone, name with company website) is
evidence a careful person links on; ``name`` and ``homonym`` only deserve the review queue.
Printed beside the targets: auto-link precision (>= 0.995), recall of the auto-resolvable
(>= 0.9), customers found: linked right or the right person queued (>= 0.99), queue precision:
review items whose candidates include the right person, over all items (>= 0.8: an item must
be worth a person's look), links to strangers (0), SOQL queries per 1,000 authors per object:
the copy of ids and handles (loaded once), look-ups and candidate searches (<= 10; the
once-a-run change watch shown apart), and the Salesforce API calls they took (candidate
queries go up to five to a composite call); then the review queue, seconds, a per-kind table
and samples of wrong links and misses. Exit status 1 when a target is missed.

    python bench/resolver.py                          # 10,000 people, 5,000 authors
    python bench/resolver.py --people 200 --authors 100 --json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from connectors.salesforce.crm import SalesforceCrm
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.server import Request
from syncd.model import Account, Author, Cursor, Direction, Interaction, Page, Stream
from syncd.resolver.stage import ResolveSettings, run
from syncd.state.db import Database
from syncd.state.ingest import ingest_page
from syncd.state.tables import candidates, identities, links


def _words(text: str) -> list[str]:
    return text.split()


KINDS = {"user_id": 12, "handle": 12, "renamed": 10, "email": 8, "phone": 6, "site": 10,
         "name": 12, "homonym": 8, "stranger": 22}  # fmt: skip
AUTO = ("user_id", "handle", "renamed", "email", "phone", "site")
FIRST = _words("""James Robert John Michael David William Richard Joseph Thomas Charles Daniel
Christopher Matthew Anthony Steven Andrew Edward Gregory Benjamin Samuel Nicholas Alexander Patrick
Jonathan Timothy Jeffrey Kevin Brian George Kenneth Ronald Jason Ryan Jacob Gary Eric Stephen Larry
Justin Scott Frank Raymond Dennis Jerry Tyler Aaron Henry Douglas Peter Adam Nathan Zachary Walter
Kyle Harold Carl Arthur Gerald Roger Keith Jeremy Lawrence Sean Christian Mary Patricia Jennifer
Linda Elizabeth Barbara Susan Jessica Sarah Karen Margaret Katherine Victoria Abigail Nancy Lisa
Betty Sandra Ashley Dorothy Kimberly Emily Donna Michelle Carol Amanda Melissa Deborah Stephanie
Rebecca Laura Sharon Cynthia Kathleen Amy Shirley Angela Helen Anna Brenda Pamela Nicole Emma
Samantha Christine Catherine Debra Rachel Carolyn Janet Virginia Maria Heather Diane Julie Joyce
Evelyn Joan Christina Kelly Lauren Judith Olivia Martha Aiko Amara Anders Ayesha Bilal Camille
Chiara Dmitri Elif Emeka Farah Giulia Hamza Ines Ingrid Jae Joao Kenji Lars Leila Luca Mateo Mei
Nadia Nikolai Omar Priya Rahul Rosa Sanjay Sofia Tariq Yara Yusuf Zainab Ahmed Aleksandra Bjorn
Chidi Dalia Esra Fatima Goran Hiroshi Ivana Jorge Kwame Lucia Malik Noor Oksana Pablo Ravi Svetlana
Thabo Valentina Wei Xin Yasmin""")
LAST = _words("""Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez
Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris
Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores
Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner
Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz
Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez
Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross
Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales
Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace
Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro
Marshall Owens Harrison Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman
Webb Tucker Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason
Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren
Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Gardner Payne Grant
Dunn Kelley Spencer Hawkins Arnold Pierce Hansen Peters Santos Hart Bradley Knight Elliott Duncan
Cunningham Armstrong Hudson Carroll Lane Riley Andrews Ray Berry Perkins Hoffman Okafor Lindqvist
Moreau Yilmaz Haddad Novak Sato Costa Berg Demir Fischer Kowalski Nakamura Rossi Dubois Jansen
Larsen Petrov Ivanova Mensah Abubakar Kaur Singh Sharma Gupta Tanaka Yamamoto Watanabe Suzuki
Hashemi Karimi Rahman Hussain Okonkwo Adeyemi Bianchi Romano Lehmann Schneider Weber Becker Wolf
Schulz Nowak Wojcik Horvath Nagy Papadopoulos Georgiou Lindberg Johansson Eriksson Nilsson
Virtanen Korhonen OBrien Byrne Walsh Doyle""")
NICK = {"Robert": ["Bob", "Rob", "Bobby"], "William": ["Bill", "Will"], "Richard": ["Rick"],
        "Elizabeth": ["Liz", "Beth"], "Katherine": ["Kate", "Kathy"], "James": ["Jim", "Jimmy"],
        "Michael": ["Mike"], "David": ["Dave"], "Thomas": ["Tom"], "Daniel": ["Dan", "Danny"],
        "Samuel": ["Sam"], "Alexander": ["Alex"], "Andrew": ["Andy", "Drew"], "John": ["Jack"],
        "Christopher": ["Chris"], "Matthew": ["Matt"], "Nicholas": ["Nick"], "Joseph": ["Joe"],
        "Jennifer": ["Jen", "Jenny"], "Margaret": ["Peggy", "Meg"], "Susan": ["Sue"],
        "Anthony": ["Tony"], "Steven": ["Steve"], "Benjamin": ["Ben"], "Edward": ["Ted", "Ed"],
        "Gregory": ["Greg"], "Patricia": ["Pat"], "Abigail": ["Abby"], "Charles": ["Chuck"],
        "Victoria": ["Vicky"], "Rebecca": ["Becky"], "Lawrence": ["Larry"]}  # fmt: skip
CITIES = _words("""London Paris Berlin Madrid Lisbon Dublin Austin Boston Denver Seattle Chicago
Toronto Sydney Melbourne Auckland Tokyo Osaka Seoul Mumbai Pune Lagos Nairobi Accra Cairo Dubai
Istanbul Warsaw Prague Vienna Zurich Munich Hamburg Oslo Stockholm Helsinki Copenhagen Amsterdam
Brussels Milan Rome Athens Leeds Manchester Glasgow Portland Phoenix Atlanta Miami Houston Dallas
Montreal Vancouver Lima Bogota Santiago Singapore Manila Jakarta Bangkok Hanoi""")
WORDS = _words("""North Blue Iron Silver Bright Green Red Oak Pine River Stone Cloud Summit Harbor
Atlas Nova Apex Cedar Falcon Maple Orbit Pixel Quantum Vertex Willow Zen Coral Ember Frost Lumen
Meridian Polar Sable Tidal Umber Velvet Crimson Golden Hollow""")
TRADES = _words("Labs Systems Foods Logistics Health Media Energy Capital Studio Works Analytics")
TLDS = (".com", ".com", ".io", ".co.uk", ".de")
SHARED = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "proton.me", "gmx.de")
OUTCOMES = ("linked right", "linked wrong", "queued right", "queued wrong", "unmatched")


@dataclass
class Person:
    first: str
    last: str
    city: str
    company: str
    domain: str | None  # the company website's domain (None: no website on file)
    email: str
    phone: str
    obj: str = "Contact"
    crm_id: str = ""
    fields: dict[str, str] = field(default_factory=dict)  # X_User_Id__c / X_Handle__c


@dataclass
class Labelled:
    """A social author, and the CRM person they really are (None: not a customer)."""

    kind: str
    user_id: str
    handle: str
    name: str
    truth: Person | None
    bio: str = ""
    location: str | None = None
    url: str | None = None
    old_handle: str | None = None


class World:
    """The labelled population, drawn from one seeded generator."""

    def __init__(self, seed: int, people: int, homonym_pairs: int) -> None:
        self.rng = rng = random.Random(seed)
        self.names: set[tuple[str, str]] = set()
        self.ids: set[str] = set()
        self.handles: set[str] = set()
        self.emails: set[str] = set()
        self.companies = [self._company() for _ in range(max(20, people // 25))]
        self.homonyms = [self._pair() for _ in range(homonym_pairs)]
        self.people = [p for pair in self.homonyms for p in pair]
        self.people += [self.person() for _ in range(people - len(self.people))]
        rng.shuffle(self.people)

    def _company(self) -> tuple[str, str | None]:
        a, b = self.rng.sample(WORDS, 2)
        name, tld = f"{a}{b.lower()} {self.rng.choice(TRADES)}", self.rng.choice(TLDS)
        return name, (f"{a}{b}".lower() + tld) if self.rng.random() < 0.9 else None

    def _pair(self) -> tuple[Person, Person]:
        name = self.fresh_name()
        pair = (self.person(name), self.person(name))
        for p in pair:
            p.obj = "Contact"
        return pair

    def fresh_name(self) -> tuple[str, str]:
        while (n := (self.rng.choice(FIRST), self.rng.choice(LAST))) in self.names:
            pass
        self.names.add(n)
        return n

    def person(self, name: tuple[str, str] | None = None) -> Person:
        rng = self.rng
        first, last = name or self.fresh_name()
        company, domain = rng.choice(self.companies)
        email = f"{first}.{last}@{domain}".lower() if domain and rng.random() < 0.65 else ""
        while not email or email in self.emails:  # one address, one person
            email = f"{first}{last[0]}{rng.randrange(10, 999)}@{rng.choice(SHARED)}".lower()
        self.emails.add(email)
        phone = f"+1 ({rng.randrange(201, 989)}) 555-{rng.randrange(10**4):04d}"
        if rng.random() < 0.4:
            phone = f"0{rng.randrange(20, 99)} {rng.randrange(10**7, 10**8)}"
        obj = "Contact" if rng.random() < 0.7 else "Lead"
        return Person(first, last, rng.choice(CITIES), company, domain, email, phone, obj)

    def uid(self) -> str:
        while (u := str(self.rng.randrange(10**8, 10**19))) in self.ids:
            pass
        self.ids.add(u)
        return u

    def handle(self, first: str, last: str) -> str:
        forms = (f"{first}{last}", f"{first[0]}{last}", f"{first}_{last[:3]}", f"the{last}")
        base = re.sub(r"\W", "", self.rng.choice(forms).lower())[:12]
        h = base + (str(self.rng.randrange(1, 999)) if self.rng.random() < 0.6 else "")
        while h in self.handles:
            h += self.rng.choice("xyz_")
        self.handles.add(h)
        return h

    def display(self, p: Person, typo: float = 0.3, nick: float = 0.3) -> str:
        """The name as the author writes it: exact, a nickname or a typo; some in lower case
        or with an emoji."""
        first, last, r = p.first, p.last, self.rng.random()
        if r < nick and first in NICK:
            first = self.rng.choice(NICK[first])
        elif r < nick + typo:
            last = _typo(self.rng, last) if len(last) > 4 else last
            first = first if last != p.last else _typo(self.rng, first)
        name = f"{first} {last}".lower() if self.rng.random() < 0.1 else f"{first} {last}"
        return name + (" 🚀" if self.rng.random() < 0.1 else "")

    def author(self, kind: str, p: Person, **kw: Any) -> Labelled:
        return Labelled(kind, self.uid(), self.handle(p.first, p.last), self.display(p, **kw), p)


def _typo(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word) - 1)
    return rng.choice((word[:i] + word[i + 1] + word[i] + word[i + 2 :],  # swapped
                       word[:i] + word[i + 1 :], word[:i] + word[i] + word[i:]))  # fmt: skip


def make_authors(w: World, n: int) -> list[Labelled]:
    total = sum(KINDS.values())
    counts = {k: n * v // total for k, v in KINDS.items()}
    counts["stranger"] += n - sum(counts.values())
    in_pairs = {id(p) for pair in w.homonyms for p in pair}
    pool = [p for p in w.people if id(p) not in in_pairs]  # shuffled already
    out = []
    for kind, count in counts.items():
        for i in range(count):
            if kind == "homonym":
                out.append(_homonym(w, w.homonyms[i % len(w.homonyms)]))
            elif kind == "stranger":
                out.append(_stranger(w, pool[w.rng.randrange(len(pool))]))
            else:
                out.append(_customer(w, w.author(kind, pool.pop())))
    w.rng.shuffle(out)
    return out


def _customer(w: World, a: Labelled) -> Labelled:
    """What ties a customer author of each kind to their record."""
    rng, p = w.rng, a.truth
    assert p is not None
    if a.kind == "user_id":
        p.fields["X_User_Id__c"] = a.user_id
    elif a.kind == "handle":
        p.fields["X_Handle__c"] = rng.choice((a.handle, "@" + a.handle, a.handle.capitalize()))
    elif a.kind == "renamed":
        a.old_handle, a.handle = a.handle, w.handle(p.last, p.first)
        p.fields["X_Handle__c"] = rng.choice((a.old_handle, "@" + a.old_handle))
    elif a.kind == "email":
        a.bio = f"Reach me at {rng.choice((p.email, p.email.upper()))} · views my own"
    elif a.kind == "phone":
        digits = re.sub(r"\D", "", p.phone)
        uk = p.phone.startswith("0")
        a.bio = f"Call {f'+44 {digits[1:]}' if uk else f'{digits[1:4]}.555.{digits[-4:]}'}"
    elif a.kind == "site":
        if p.domain is None:  # a one-person business: its own site, an e-mail there
            p.domain = f"{p.first}{p.last}.dev".lower()
            p.email = f"{p.first[0]}@{p.domain}".lower()
        a.url = rng.choice((f"https://www.{p.domain}", f"https://{p.domain}/team/{p.first}"))
        a.location = f"{p.city}, Earth" if rng.random() < 0.5 else p.city
        a.bio = f"Working at {p.company}" if rng.random() < 0.5 else "Coffee first."
    elif a.kind == "name":
        hint = rng.random()
        a.bio = f"Ops lead at {p.company}" if hint < 0.7 else "Runner, reader."
        a.location = p.city if hint > 0.3 else None
    return a


def _homonym(w: World, pair: tuple[Person, Person]) -> Labelled:
    a, r = w.author("homonym", w.rng.choice(pair), typo=0), w.rng.random()
    assert a.truth is not None
    a.location = a.truth.city if r < 0.4 else None
    a.bio = f"Proud {a.truth.company} customer" if 0.2 < r < 0.6 else ""
    return a


def _stranger(w: World, near: Person) -> Labelled:
    """Someone the CRM does not know, who may look like someone it does (``near``)."""
    rng, style = w.rng, w.rng.randrange(5)
    first, last = w.fresh_name()
    if style == 0:  # the namesake of someone in the CRM
        first, last = near.first, near.last
    elif style == 1 and len(near.last) > 4:  # a typo away from someone in the CRM
        first, last = near.first, _typo(rng, near.last)
    a = Labelled("stranger", w.uid(), w.handle(first, last), f"{first} {last}", None)
    a.location = rng.choice(CITIES) if rng.random() < 0.5 else None
    if style == 2 and near.domain:  # a colleague of someone in the CRM
        a.url, a.bio = f"https://{near.domain}", f"Engineer at {near.company}"
    elif style == 3:
        a.bio = f"DMs open or mail {first}.{last}{rng.randrange(99)}@gmail.com".lower()
    elif style == 4:
        a.bio = f"Hotline +1 555 {rng.randrange(10**6, 10**7)}"
    return a


# -- the org, the state, the run --------------------------------------------------------------
def seed_org(sb: SalesforceSandbox, w: World) -> None:
    for obj in ("Contact", "Lead"):
        for name in ("X_User_Id__c", "X_Handle__c"):
            sb.add_field(obj, name)
    accounts: dict[str, str] = {}
    for p in w.people:
        site = f"https://www.{p.domain}" if p.domain else None
        values: dict[str, Any] = {"FirstName": p.first, "LastName": p.last, "Email": p.email,
                                  "Phone": p.phone, **p.fields}  # fmt: skip
        if p.obj == "Contact":
            if p.company not in accounts:
                accounts[p.company] = sb.insert("Account", {"Name": p.company, "Website": site})
            values.update(AccountId=accounts[p.company], MailingCity=p.city)
        else:
            values.update(Company=p.company, Website=site, City=p.city)
        p.crm_id = sb.insert(p.obj, values)


def store_authors(db: Database, authors: list[Labelled], now: datetime) -> None:
    """As ingest stores pages: everyone posted a month ago (the renamed under their old
    handle), and the renamed once more now, under the new one."""
    renamed, serial = [a for a in authors if a.old_handle], 10**15
    for who, old, at in ((authors, True, now - timedelta(days=30)), (renamed, False, now)):
        items, people = [], []
        for a in who:
            serial += 1
            handle = (a.old_handle or a.handle) if old else a.handle
            people.append(Author("x", a.user_id, handle, a.name, a.bio or None, a.location, a.url))
            items.append(Interaction("x", str(serial), "acme", Stream.MENTIONS, Direction.INBOUND,
                                     a.user_id, a.user_id, "@acme help please", at,
                                     f"https://x.com/{handle}/status/{serial}"))  # fmt: skip
        page = Page(tuple(items), tuple(people), Cursor(since_id=str(serial)))
        with db.transaction() as conn:
            ingest_page(conn, source="x", network="x", account=Account("x", "acme", "1"),
                        stream=Stream.MENTIONS, page=page, crms=["salesforce"],
                        brand_ids={"1"}, now=at)  # fmt: skip


@dataclass
class Report:
    people: int
    authors: int
    seed: int
    links: int = 0
    correct_links: int = 0
    precision: float = 1.0
    recall_auto: float = 0.0  # right links / auto-resolvable authors
    recall_links: float = 0.0  # right links / customers other than homonyms
    found: float = 0.0  # (linked right or right person queued) / customers
    review_queue: int = 0  # authors with open candidates
    review_with_right: int = 0  # … the right person among them
    queue_precision: float = 1.0  # review_with_right / review_queue
    stranger_links: int = 0
    homonym_links: int = 0
    queries: dict[str, int] = field(default_factory=dict)  # "Contact lookup": n …
    per_1000: dict[str, float] = field(default_factory=dict)  # per object, watch left out
    capped_queries: int = 0  # candidate queries that hit the connector's 2,000-row cap
    api_calls: int = 0  # Salesforce REST calls (a composite is one), the login left out
    resolve_seconds: float = 0.0
    stand_in_seconds: float = 0.0  # of which the Salesforce stand-in spent answering queries
    total_seconds: float = 0.0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)

    def targets(self) -> list[tuple[str, str, str, bool]]:
        """(figure, value, target, met)"""
        p, ra, f, s = self.precision, self.recall_auto, self.found, self.stranger_links
        q = self.queue_precision
        rows = [("auto-link precision", f"{p:.4f}", ">= 0.995", p >= 0.995),
                ("recall, auto-resolvable", f"{ra:.4f}", ">= 0.9", ra >= 0.9),
                ("customers found (link or queue)", f"{f:.4f}", ">= 0.99", f >= 0.99),
                ("queue precision (right person in it)", f"{q:.4f}", ">= 0.8", q >= 0.8),
                ("links to non-customers", str(s), "0", s == 0)]  # fmt: skip
        for obj, n in sorted(self.per_1000.items()):
            rows.append((f"queries /1,000 authors, {obj}", f"{n:.1f}", "<= 10", n <= 10))
        return rows

    @property
    def ok(self) -> bool:
        return all(met for *_, met in self.targets())


class _Caps(logging.Handler):
    """Counts the connector's warnings that a candidate query hit its row cap."""

    n = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.n += "the cap" in record.getMessage()


def measure(people: int, authors: int, seed: int, workdir: Path) -> Report:
    started, report = time.monotonic(), Report(people, authors, seed)
    pairs = max(1, authors * KINDS["homonym"] // sum(KINDS.values()))
    w = World(seed, people, pairs)
    labelled = make_authors(w, authors)
    db = Database(f"sqlite:///{workdir / 'state.db'}")
    db.upgrade()
    store_authors(db, labelled, datetime.now(UTC))
    os.environ.update(BENCH_SF_PASSWORD="sandbox-password", BENCH_SF_TOKEN="sandbox-token")
    queries: Counter[str] = Counter()
    caps, sf_log = _Caps(logging.WARNING), logging.getLogger("connectors.salesforce")
    sf_log.addHandler(caps)

    began: dict[int, float] = {}

    def count(req: Request) -> None:  # in the stand-in's thread, before each query request
        soql = req.query.get("q") or ""
        m = re.search(r"\bFROM\s+(\w+)", soql, re.I)
        queries[f"{m.group(1)} {_purpose(soql)}" if m else "next page"] += 1
        began[id(req)] = time.monotonic()

    def answered(req: Request) -> None:
        report.stand_in_seconds += time.monotonic() - began.pop(id(req), time.monotonic())

    with SalesforceSandbox() as sb:
        seed_org(sb, w)
        sb.on_request("query", count)
        sb.on_request("query", answered, phase="after")
        crm = SalesforceCrm.from_settings({
            "type": "salesforce", "login_url": sb.url, "username": "integration@sandbox.example",
            "password": "env:BENCH_SF_PASSWORD", "security_token": "env:BENCH_SF_TOKEN",
        })  # fmt: skip
        t0 = time.monotonic()
        run(db, "salesforce", crm, ResolveSettings(), lambda: datetime.now(UTC),
            lambda call: call(), lambda: False)  # fmt: skip
        report.resolve_seconds = round(time.monotonic() - t0, 1)
        report.api_calls = crm.api_calls
        crm.close()
    sf_log.removeHandler(caps)
    report.capped_queries, report.queries = caps.n, dict(sorted(queries.items()))
    report.stand_in_seconds = round(report.stand_in_seconds, 1)
    for what, n in queries.items():
        if what != "next page" and not what.endswith("watch"):  # once a run, not per author
            obj = what.split()[0]
            report.per_1000[obj] = round(report.per_1000.get(obj, 0) + n * 1000 / authors, 1)
    _score(db, labelled, report)
    db.dispose()
    report.total_seconds = round(time.monotonic() - started, 1)
    return report


def _purpose(soql: str) -> str:
    """What the connector asked: the copy of ids and handles (loaded page by page), a
    look-up by id/handle, a candidate search, the change watch."""
    if "ORDER BY Id" in soql:
        return "copy"
    if "SystemModstamp" in soql:
        return "watch"
    if "FirstName" in soql and "LIMIT" in soql:
        return "candidates"
    return "lookup" if "X_User_Id__c IN" in soql else "other"


def _score(db: Database, labelled: list[Labelled], r: Report) -> None:
    with db.connect() as conn:
        ids = dict(conn.execute(select(identities.c.user_id, identities.c.id)).all())
        linked = {row.identity_id: row for row in conn.execute(select(links))}
        queued: dict[int, list[Any]] = {}
        open_ = candidates.c.state == "open"
        for row in conn.execute(
            select(candidates).where(open_).order_by(candidates.c.score.desc())
        ):
            queued.setdefault(row.identity_id, []).append(row)
    kinds: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
    wrong, missed = [], []
    for a in labelled:
        i, truth = ids[a.user_id], a.truth.crm_id if a.truth else None
        link, queue = linked.get(i), [] if i in linked else queued.get(i, [])
        if link is not None:
            outcome = "linked right" if link.crm_id == truth else "linked wrong"
        elif queue:
            outcome = "queued right" if truth in {c.crm_id for c in queue} else "queued wrong"
        else:
            outcome = "unmatched"
        kinds[a.kind].update((outcome, "total"))
        if outcome == "linked wrong":
            wrong.append(_explain(a, link, queue))
        elif a.kind in AUTO and outcome != "linked right":
            missed.append(_explain(a, link, queue))
    r.by_kind = {k: dict(c) for k, c in kinds.items()}
    every, customers = Counter[str](), Counter[str]()
    for k, c in kinds.items():
        every.update(c)
        customers.update(c if k != "stranger" else {})
    auto = sum(kinds[k]["total"] for k in AUTO)
    r.links, r.correct_links = every["linked right"] + every["linked wrong"], every["linked right"]
    r.precision = round(r.correct_links / r.links, 4) if r.links else 1.0
    r.recall_auto = round(sum(kinds[k]["linked right"] for k in AUTO) / max(auto, 1), 4)
    others = customers["total"] - kinds["homonym"]["total"]
    right = customers["linked right"] - kinds["homonym"]["linked right"]
    r.recall_links = round(right / max(others, 1), 4)
    found = customers["linked right"] + customers["queued right"]
    r.found = round(found / max(customers["total"], 1), 4)
    r.review_queue = every["queued right"] + every["queued wrong"]
    r.review_with_right = every["queued right"]
    r.queue_precision = round(r.review_with_right / r.review_queue, 4) if r.review_queue else 1.0
    r.stranger_links = kinds["stranger"]["linked wrong"]
    r.homonym_links = kinds["homonym"]["linked right"] + kinds["homonym"]["linked wrong"]
    r.samples = [f"WRONG {s}" for s in wrong[:8]] + [f"MISS {s}" for s in missed[:12]]


def _explain(a: Labelled, link: Any, queue: list[Any]) -> str:
    truth = f"{a.truth.first} {a.truth.last} ({a.truth.crm_id})" if a.truth else "nobody"
    seen = (("bio", a.bio), ("loc", a.location), ("url", a.url))
    head = f"[{a.kind}] @{a.handle} {a.name!r} ({'; '.join(f'{k}={v!r}' for k, v in seen if v)})"
    if link is not None:
        return f"{head} is {truth} -> linked {link.crm_name} ({link.crm_id}) {link.score} " + (
            f"{link.reasons}"
        )
    cands = " | ".join(f"{c.crm_name} ({c.crm_id}) {c.score} {c.reasons}" for c in queue[:3])
    return f"{head} is {truth} -> {'queue: ' + cands if queue else 'no candidate'}"


def _print(r: Report) -> None:
    print(f"resolver accuracy: {r.people} CRM people, {r.authors} authors, seed {r.seed}")
    for name, value, target, met in r.targets():
        print(f"  {name:36} {value:>10}   target {target:9} {'ok' if met else 'MISSED'}")
    print(f"  {'links (right / all)':36} {r.correct_links:>5} / {r.links}")
    print(f"  {'recall, links over non-homonym':36} {r.recall_links:>10.4f}")
    print(f"  {'review queue (right person in it)':36} {r.review_queue:>5} ({r.review_with_right})")
    print(f"  {'homonyms auto-linked':36} {r.homonym_links:>10}")
    print(f"  {'SOQL queries':36} {r.queries}")
    print(f"  {'Salesforce API calls':36} {r.api_calls:>10}")
    print(f"  {'candidate queries at the row cap':36} {r.capped_queries:>10}")
    r_s, sb_s = r.resolve_seconds, r.stand_in_seconds
    print(f"  {'seconds: resolve (in the stand-in)':36} {r_s:>10} ({sb_s})")
    print(f"  {'seconds: total':36} {r.total_seconds:>10}")
    print(f"  {'kind':10}" + "".join(f"{c:>14}" for c in ("total", *OUTCOMES)))
    for kind, c in r.by_kind.items():
        print(f"  {kind:10}" + "".join(f"{c.get(col, 0):>14}" for col in ("total", *OUTCOMES)))
    for s in r.samples:
        print(f"  {s}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--people", type=int, default=10_000, help="CRM Contacts and Leads")
    ap.add_argument("--authors", type=int, default=5_000, help="social authors to resolve")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    if not 10 <= args.authors <= args.people:
        ap.error("--authors must be at least 10, and --people at least --authors")
    with tempfile.TemporaryDirectory(prefix="syncd-bench-resolver-") as tmp:
        report = measure(args.people, args.authors, args.seed, Path(tmp))
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    else:
        _print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
