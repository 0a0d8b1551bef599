"""`syncd links review`: walk the review queue one author at a time and decide.

Each decision is its own transaction, so quitting half-way keeps what was decided, and a
daemon running meanwhile writes a newly linked author's held interactions at once.
"""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime

import click
from rich.console import Console

from syncd.cli.base import settings as load_settings
from syncd.cli.base import user_errors
from syncd.cli.links import (
    crm_client,
    links,
    print_author,
    print_candidates,
    print_people,
    record,
    who,
)
from syncd.cli.text import literal
from syncd.config.settings import Settings
from syncd.contracts import Crm
from syncd.errors import UserError
from syncd.model import Candidate
from syncd.resolver import review
from syncd.state import authors
from syncd.state.db import Database

HELP = "1-{n} accept · r reject all · r2 reject one · s skip · / search the CRM · q quit"


class _Session:
    def __init__(self, db: Database, crm_name: str, settings: Settings, stack: ExitStack) -> None:
        self.db, self.crm_name, self.settings, self.stack = db, crm_name, settings, stack
        self.console = Console(highlight=False)
        self.counts: Counter[str] = Counter()
        self._crm: Crm | None = None

    def crm(self) -> Crm:
        if self._crm is None:  # only a search needs the CRM: connect on the first one
            self._crm = self.stack.enter_context(crm_client(self.settings))
        return self._crm

    def decide(self, r: authors.Review, position: str) -> bool:
        """Ask about one author until they are decided or skipped; False means quit."""
        open_ = list(r.candidates)
        while True:
            with self.db.connect() as conn:
                shown = authors.author(conn, self.crm_name, r.identity_id)
            if shown is None:
                return True  # forgotten meanwhile
            self.console.rule(literal(position))
            print_author(self.console, shown)
            rows = [(str(n), c) for n, (_, c) in enumerate(open_, 1)]
            if rows:
                print_candidates(self.console, rows, "choice")
            answer = click.prompt(HELP.format(n=len(open_)), default="s").strip()
            if answer == "q":
                return False
            if answer == "s":
                self.counts["skipped"] += 1
                return True
            if answer.startswith("/"):
                if self.search(r.identity_id, answer[1:].strip()):
                    return True
                continue
            if answer == "r" and open_:
                self.reject(r.identity_id, [i for i, _ in open_])
                return True
            pick = answer[1:] if answer.startswith("r") else answer
            if not pick.isdigit() or not 1 <= int(pick) <= len(open_):
                self.console.print(f"[red]not a choice:[/] {literal(repr(answer))}")
                continue
            cid, c = open_[int(pick) - 1]
            if answer.startswith("r"):
                self.reject(r.identity_id, [cid])
                open_.pop(int(pick) - 1)
                if not open_:
                    return True
                continue
            self.accept(cid, c)
            return True

    def accept(self, cid: int, c: Candidate) -> None:
        with self.db.transaction() as conn:
            done = review.accept(conn, self.crm_name, cid, review.actor(), _now(), None)
        self.counts["accepted"] += 1
        self.console.print(
            f"[green]linked[/] to {literal(record(c.ref))}; {done.held} held to write"
        )

    def reject(self, identity_id: int, ids: list[int]) -> None:
        with self.db.transaction() as conn:
            review.reject(conn, self.crm_name, ids, review.actor(), _now())
        self.counts["rejected"] += len(ids)

    def search(self, identity_id: int, text: str) -> bool:
        """Search the CRM and maybe link by hand; True when a link was made."""
        text = text or click.prompt("search the CRM for (name, e-mail, phone, record id)")
        try:
            found = review.search(self.crm(), text)
        except UserError as exc:
            self.console.print(f"[red]{literal(str(exc))}[/]")
            return False
        if not found:
            self.console.print(f"nobody in the CRM matches {literal(repr(text))}")
            return False
        print_people(self.console, found)
        answer = click.prompt(f"link to 1-{len(found)}, or b back", default="b").strip()
        if not answer.isdigit() or not 1 <= int(answer) <= len(found):
            return False
        person = found[int(answer) - 1]
        with self.db.transaction() as conn:
            done = review.add(
                conn,
                self.crm_name,
                identity_id,
                person,
                review.actor(),
                _now(),
                f"found by searching {text!r}",
            )
        self.counts["linked by hand"] += 1
        self.console.print(
            f"[green]linked[/] to {literal(record(person.ref))}; {done.held} held to write"
        )
        return True


def _now() -> datetime:
    return datetime.now(UTC)


@links.command("review")
@click.option("--limit", type=int, default=None, help="Stop after this many authors.")
@click.pass_context
@user_errors
def review_(ctx: click.Context, limit: int | None) -> None:
    """Walk the review queue: each author with recent posts and the candidates' reasons."""
    loaded = load_settings(ctx)
    db = Database(loaded.state.url, timeouts=loaded.state.timeouts())
    with ExitStack() as stack:
        stack.callback(db.dispose)
        db.upgrade()
        session = _Session(db, loaded.crm.name, loaded, stack)
        with db.connect() as conn:
            total = authors.review_count(conn, loaded.crm.name)
        after, seen = 0, 0
        while limit is None or seen < limit:
            with db.connect() as conn:
                batch = authors.reviews(conn, loaded.crm.name, limit=1, after=after)
            if not batch:
                break
            r, after, seen = batch[0], batch[0].identity_id, seen + 1
            heading = f"{seen} of {total}: {who(r.key, r.display_name)}"
            try:
                going = session.decide(r, heading)
            except click.Abort:  # Ctrl-C or end of input: what was decided stays decided
                going = False
            if not going:
                break
        with db.connect() as conn:
            left = authors.review_count(conn, loaded.crm.name)
    order = ("accepted", "rejected", "linked by hand", "skipped")
    done = ", ".join(f"{k} {session.counts[k]}" for k in order if session.counts[k])
    done = done or "nothing decided"
    click.echo(f"{done}; {left} author(s) still waiting for review")
