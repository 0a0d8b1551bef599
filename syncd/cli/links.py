"""`syncd links`: who each social author is in the CRM, and the review queue, scriptable.

Every command takes an author as '@handle' (current or former), the network user id or
'#row', and candidates by the id `links list --review` or `links show` prints.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

import connectors
from syncd.cli.base import cli, state, user_errors
from syncd.cli.text import literal, printable
from syncd.config.settings import Settings
from syncd.contracts import Crm
from syncd.errors import UserError
from syncd.model import Candidate, CrmRef, IdentityKey, PersonRecord
from syncd.resolver import review
from syncd.state import authors


def _json(value: Any) -> None:
    click.echo(json.dumps(value, default=str, indent=2, ensure_ascii=False))


def who(key: IdentityKey, name: str | None = None) -> str:
    shown = f"@{key.handle}" if key.handle else f"{key.network} user {key.user_id}"
    return f"{shown} ({name})" if name else shown


def record(ref: CrmRef) -> str:
    return f"{ref.object} {ref.id}" + (f" {ref.name}" if ref.name else "")


def candidate_json(c: Candidate) -> dict[str, Any]:
    return {
        "object": c.ref.object,
        "id": c.ref.id,
        "name": c.ref.name,
        "score": round(c.score, 3),
        "matcher": c.matcher,
        "reasons": list(c.reasons),
    }


def decided_json(d: review.Decided) -> dict[str, Any]:
    return {"identity": d.identity_id, "link": candidate_json(d.candidate), "released": d.held}


def say_linked(d: review.Decided, author: str) -> None:
    # Names come from the network and the CRM: no terminal controls or bidi overrides.
    click.echo(printable(f"linked {author} → {record(d.candidate.ref)}"))
    if d.held:
        click.echo(
            f"{d.held} held interaction(s) go to the CRM on the writer's next round, oldest first"
        )


@contextmanager
def crm_client(settings: Settings) -> Iterator[Crm]:
    client = connectors.crm_class(settings.crm.type).from_settings(settings.crm)
    try:
        yield client
    finally:
        client.close()


@cli.group()
def links() -> None:
    """Which CRM person each social author is: links, their reasons, and the review queue."""


@links.command("list")
@click.option("--review", "queue", is_flag=True, help="The review queue instead of the links.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def list_(ctx: click.Context, queue: bool, limit: int, as_json: bool) -> None:
    """Links, newest first; with --review, authors waiting for a person to decide."""
    with state(ctx) as (settings, conn):
        crm = settings.crm.name
        if queue:
            waiting = authors.reviews(conn, crm, limit=limit)
            total = authors.review_count(conn, crm)
        else:
            made = authors.links_list(conn, crm, limit=limit)
    if queue:
        _print_queue(waiting, total, as_json)
    elif as_json:
        _json(
            [
                {
                    "identity": i.identity_id,
                    **asdict(i.key),
                    "display_name": i.display_name,
                    "link": candidate_json(i.link),
                    "created_by": i.created_by,
                    "created_at": i.created_at,
                }
                for i in made
            ]
        )
    elif not made:
        click.echo("no links yet")
    else:
        table = Table("#", "author", "CRM record", "matcher", "score", "by", "when (UTC)")
        for i in made:
            table.add_row(
                str(i.identity_id),
                literal(who(i.key, i.display_name)),
                literal(record(i.link.ref)),
                i.link.matcher,
                f"{i.link.score:.2f}",
                literal(i.created_by),
                i.created_at.strftime("%Y-%m-%d %H:%M"),
            )
        Console().print(table)


def _print_queue(waiting: list[authors.Review], total: int, as_json: bool) -> None:
    if as_json:
        _json(
            [
                {
                    "identity": r.identity_id,
                    **asdict(r.key),
                    "display_name": r.display_name,
                    "candidates": [{"candidate": i, **candidate_json(c)} for i, c in r.candidates],
                }
                for r in waiting
            ]
        )
        return
    if not waiting:
        click.echo("nobody is waiting for review")
        return
    table = Table("#", "author", "candidate", "CRM record", "score", "matcher")
    for r in waiting:
        for n, (cid, c) in enumerate(r.candidates):
            author = literal(who(r.key, r.display_name)) if n == 0 else ""
            table.add_row(
                str(r.identity_id) if n == 0 else "",
                author,
                str(cid),
                literal(record(c.ref)),
                f"{c.score:.2f}",
                c.matcher,
            )
    console = Console()
    console.print(table)
    more = f" ({total - len(waiting)} more: --limit)" if total > len(waiting) else ""
    console.print(
        f"{total} author(s) wait for review{more}: `syncd links review`, "
        "or `syncd links accept|reject CANDIDATE`"
    )


@links.command("show")
@click.argument("author")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def show(ctx: click.Context, author: str, as_json: bool) -> None:
    """One author: profile, link and its reasons, open candidates, history, recent posts."""
    with state(ctx) as (settings, conn):
        crm = settings.crm.name
        i = review.identity(conn, author)
        shown = authors.author(conn, crm, i, posts=5)
        current = authors.links_list(conn, crm, [i])
        waiting = authors.reviews(conn, crm, identity_id=i)
        events = authors.history(conn, crm, i)
    assert shown is not None
    open_ = waiting[0].candidates if waiting else ()
    if as_json:
        _json(
            {
                "identity": i,
                **asdict(shown.profile),
                "link": candidate_json(current[0].link) if current else None,
                "linked_by": current[0].created_by if current else None,
                "candidates": [{"candidate": n, **candidate_json(c)} for n, c in open_],
                "held": shown.held,
                "resolve_after": shown.resolve_after,
                "posts": [asdict(p) for p in shown.posts],
                "history": events,
            }
        )
        return
    console = Console(highlight=False)
    print_author(console, shown, linked=bool(current))
    if current:
        link = current[0]
        console.print(
            f"[bold]linked[/] to {literal(record(link.link.ref))} by {literal(link.created_by)} "
            f"({link.link.matcher}, {link.link.score:.2f})"
        )
        for reason in link.link.reasons:
            console.print(f"  · {literal(reason)}")
    else:
        console.print("[bold]not linked[/]")
    if open_:
        print_candidates(console, [(str(n), c) for n, c in open_], "candidate")
    if events:
        console.print("[bold]history[/]")
        for e in events:
            what = f"{e['crm_object']} {e['crm_id']}" if e["crm_id"] else ""
            note = f" ({e['note']})" if e["note"] else ""
            console.print(
                f"  {e['at']:%Y-%m-%d %H:%M} {e['action']:<7} {literal(what)} "
                f"by {literal(e['actor'])}{literal(note)}"
            )


def print_author(console: Console, a: authors.Author, linked: bool = False) -> None:
    p = a.profile
    name = literal(who(p.key, p.display_name))
    console.print(f"[bold]{name}[/]  {p.key.network} user {p.key.user_id}")
    if p.past_handles:
        console.print(f"  formerly {literal(', '.join('@' + h for h in p.past_handles))}")
    for label, value in (("bio", p.description), ("location", p.location), ("url", p.url)):
        if value:
            console.print(f"  {label}: {literal(value)}")
    waiting = "waiting for the writer" if linked else "held until linked"
    console.print(f"  {a.held} interaction(s) {waiting}")
    for post in a.posts:
        text = " ".join(post.text.split())
        text = text if len(text) <= 140 else text[:139] + "…"
        console.print(f"  {post.created_at:%Y-%m-%d %H:%M} {post.direction}: {literal(text)}")


def print_candidates(console: Console, rows: list[tuple[str, Candidate]], label: str) -> None:
    table = Table(label, "CRM record", "score", "matcher", "reasons")
    for key, c in rows:
        table.add_row(
            key, literal(record(c.ref)), f"{c.score:.2f}", c.matcher, literal("; ".join(c.reasons))
        )
    console.print(table)


def print_people(console: Console, people: list[PersonRecord]) -> None:
    table = Table("pick", "CRM record", "e-mail", "phone", "company", "city")
    for n, p in enumerate(people, 1):
        facts = (p.email, p.phone, p.company, p.city)
        table.add_row(str(n), literal(record(p.ref)), *(literal(f or "") for f in facts))
    console.print(table)


@links.command("accept")
@click.argument("candidate", type=int)
@click.option("--note", default=None, help="Kept in the link's history.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def accept(ctx: click.Context, candidate: int, note: str | None, as_json: bool) -> None:
    """Link an author to a candidate from the review queue."""
    with state(ctx, write=True) as (settings, conn):
        done = review.accept(
            conn, settings.crm.name, candidate, review.actor(), datetime.now(UTC), note
        )
        author = authors.author(conn, settings.crm.name, done.identity_id, posts=0)
    assert author is not None
    if as_json:
        _json(decided_json(done))
    else:
        say_linked(done, who(author.profile.key, author.profile.display_name))


@links.command("reject")
@click.argument("candidates", nargs=-1, type=int, required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def reject(ctx: click.Context, candidates: tuple[int, ...], as_json: bool) -> None:
    """Say candidates are not the author: never proposed for that author again."""
    with state(ctx, write=True) as (settings, conn):
        missing = review.reject(
            conn, settings.crm.name, list(candidates), review.actor(), datetime.now(UTC)
        )
    done = [c for c in candidates if c not in missing]
    if as_json:
        _json({"rejected": done, "not_open": missing})
        return
    click.echo(f"rejected: {len(done)}")
    if missing:
        shown = ", ".join(map(str, missing))
        click.echo(f"not open candidates (unknown or already decided): {shown}", err=True)
    if not done:
        raise UserError("nothing was rejected")


@links.command("add")
@click.argument("author")
@click.argument("record_id")
@click.option("--note", default=None, help="Why; kept in the link's history.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def add(ctx: click.Context, author: str, record_id: str, note: str | None, as_json: bool) -> None:
    """Link an author to a CRM record by hand (it replaces any current link).

    The CRM is asked first: the record must exist and be a person syncd writes to.
    """
    with state(ctx) as (settings, conn):
        i = review.identity(conn, author)
    with crm_client(settings) as client:
        person = review.record(client, record_id)
    with state(ctx, write=True) as (settings, conn):
        done = review.add(
            conn, settings.crm.name, i, person, review.actor(), datetime.now(UTC), note
        )
        shown = authors.author(conn, settings.crm.name, i, posts=0)
    assert shown is not None
    if as_json:
        _json(decided_json(done))
    else:
        say_linked(done, who(shown.profile.key, shown.profile.display_name))


@links.command("remove")
@click.argument("author")
@click.option(
    "--allow-relink",
    is_flag=True,
    help="Let the resolver link the same record again (default: it is rejected for this author).",
)
@click.option("--note", default=None, help="Why; kept in the link's history.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def remove(
    ctx: click.Context, author: str, allow_relink: bool, note: str | None, as_json: bool
) -> None:
    """Unlink an author; their next interactions are held until they are linked again.

    What was already written stays in the CRM.
    """
    with state(ctx, write=True) as (settings, conn):
        i = review.identity(conn, author)
        gone = review.remove(
            conn,
            settings.crm.name,
            i,
            review.actor(),
            datetime.now(UTC),
            note,
            forget_record=not allow_relink,
        )
    if as_json:
        _json({"identity": i, "removed": candidate_json(gone), "rejected": not allow_relink})
        return
    click.echo(printable(f"unlinked {author} from {record(gone.ref)}"))
    if not allow_relink:
        click.echo("the resolver will not link that record to this author again")
