"""The live workload the throughput benchmarks share: brands, customers, and posts arriving.

Both stand-ins run in the benchmark's process. ``seed`` creates ``accounts`` brand accounts
with a few posts each, and ``authors`` customers, a share of them Contacts carrying their X
user id (linked). ``Feeder`` then posts ``interactions`` at ``rate`` per second, in small
ticks, as a thread: mentions of a random brand (one in five a reply to one of its posts), and
now and then a brand's reply to a recent mention (outbound history). Every post's creation is
timed on the wall clock, and every Task the Salesforce stand-in stores is timed too, so the
latency from a post's creation to its CRM write is measured, not guessed.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import FIRST, LAST, set_up_org
from sandbox.x.api import XSandbox

# X's own limits would make this a measure of X (450 mention requests per 15 minutes per
# app): lifted in the stand-in. The 800-mention horizon stays, and is reported if crossed.
UNLIMITED = {
    "mentions": 10**7,
    "user_tweets": 10**7,
    "user_lookup": 10**7,
    "tweet_lookup": 10**7,
    "search_recent": 10**7,
    "search_all": 10**7,
    "counts": 10**7,
}
REPLY_SHARE = 0.2  # mentions that reply to one of the brand's posts
OUTBOUND_SHARE = 0.05  # interactions that are the brand's reply to a mention
TICK = 0.05  # seconds between bursts of the feeder
# Generated surnames (19,600 of them, ~1,000 three-letter beginnings) beside the seed's
# common ones: a name is shared by a few people, as in a real customer base, and the
# resolver's prefix search finds a handful of Contacts per name, not dozens.
_C, _V = "bdfgklmnprstvz", "aeiou"


def surname(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return rng.choice(LAST)
    c, v = rng.choice, rng.choice
    return (c(_C) + v(_V) + c(_C) + v(_V) + c("nrsl")).capitalize()


@dataclass
class People:
    brands: list[tuple[str, str]]  # (handle, X user id)
    brand_posts: dict[str, list[str]]  # brand user id → its post ids
    authors: list[tuple[str, bool]]  # (X user id, linked in the CRM)


def seed(
    x: XSandbox, sf: SalesforceSandbox, *, accounts: int, authors: int, linked: float, seed: int
) -> People:
    rng = random.Random(seed)
    set_up_org(sf)
    company = sf.insert("Account", {"Name": "Customers"})
    brands: list[tuple[str, str]] = []
    posts: dict[str, list[str]] = {}
    for b in range(accounts):
        user = x.add_user(f"brand{b}", f"Brand {b}")
        brands.append((user["username"], user["id"]))
        posts[user["id"]] = [
            x.add_post(user["id"], f"News from Brand {b}, part {k}")["id"] for k in range(5)
        ]
    people: list[tuple[str, bool]] = []
    for i in range(authors):
        # Real names repeat: a person the CRM lacks may share one with a Contact, and the
        # resolver must look, and must not link on the name alone.
        first, last = rng.choice(FIRST), surname(rng)
        user = x.add_user(f"{first[:5]}{last[:4]}{i}", f"{first} {last}")
        known = rng.random() < linked
        if known:
            sf.insert(
                "Contact",
                {
                    "FirstName": first,
                    "LastName": last,
                    "AccountId": company,
                    "X_User_Id__c": user["id"],
                },
            )
        people.append((user["id"], known))
    return People(brands, posts, people)


@dataclass
class Feeder:
    """Posts ``total`` interactions at ``rate`` per second, in a thread."""

    x: XSandbox
    people: People
    total: int
    rate: float
    seed: int
    created: dict[str, float] = field(default_factory=dict)  # post id → wall-clock time
    linked: set[str] = field(default_factory=set)  # post ids a linked customer is party to
    cpu_seconds: float = 0.0
    first: float = 0.0
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def _run(self) -> None:
        rng = random.Random(self.seed)
        cpu = time.thread_time()
        recent: deque[tuple[str, str, str, bool]] = deque(maxlen=500)  # mention, brand, author
        started = time.monotonic()
        sent = 0
        self.first = time.time()
        while sent < self.total:
            due = min(self.total, int((time.monotonic() - started) * self.rate) + 1)
            with self.x.lock:  # one burst at a time, as a reader would see it land
                while sent < due:
                    self._post(rng, recent)
                    sent += 1
            pause = started + sent / self.rate - time.monotonic()
            if pause > 0:
                time.sleep(min(pause, TICK))
        self.cpu_seconds = time.thread_time() - cpu

    def _post(self, rng: random.Random, recent: deque[tuple[str, str, str, bool]]) -> None:
        store = self.x.store
        if recent and rng.random() < OUTBOUND_SHARE:
            mention, brand_id, author_id, known = recent[rng.randrange(len(recent))]
            handle = store.users[author_id].username
            post: Any = store.add_post(
                brand_id, f"@{handle} thanks, we are on it", in_reply_to=mention
            )
        else:
            handle, brand_id = self.people.brands[rng.randrange(len(self.people.brands))]
            author_id, known = self.people.authors[rng.randrange(len(self.people.authors))]
            parent = None
            if rng.random() < REPLY_SHARE:
                parent = rng.choice(self.people.brand_posts[brand_id])
            post = store.add_post(
                author_id, f"@{handle} question {len(self.created)}", in_reply_to=parent
            )
            recent.append((str(post.id), brand_id, author_id, known))
        pid = str(post.id)
        self.created[pid] = time.time()
        if known:
            self.linked.add(pid)


class WriteClock:
    """Times every Task the Salesforce stand-in stores, by its external id."""

    def __init__(self, sf: SalesforceSandbox, field_name: str = "Social_Post_Id__c") -> None:
        self.written: dict[str, float] = {}
        self.writes = 0  # stores, repeats included
        self._field = field_name

        def on_apply(sobject: str, rec: dict[str, Any]) -> None:
            if sobject == "Task":
                self.writes += 1
                key = str(rec.get(self._field) or "")
                self.written.setdefault(key.removeprefix("x:"), time.time())

        sf.store.on_apply = on_apply


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
