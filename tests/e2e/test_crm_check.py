"""A held author's history follows their new Contact at once: `syncd poll --once` asks the CRM
which people changed on every run, and the daemon asks on the writer's cadence (by default)
while some author is held, never otherwise. Both against the X and Salesforce stand-ins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from support.e2e import World, make_world, poll_once, tasks

from sandbox.seed import Customer, seed
from syncd.config import settings as config_mod
from syncd.model import PeopleChanges
from syncd.service.app import App
from syncd.service.daemon import Daemon


@pytest.fixture
def world(migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(migrated_url, tmp_path, monkeypatch, accounts=("acme",)) as w:
        # A held author is asked about again only after an hour on their own back-off: only
        # the CRM change check can link them sooner. The check follows the defaults.
        text = w.config.read_text().replace('retry_after = "1s"', 'retry_after = "1h"')
        lines = [line for line in text.splitlines() if not line.startswith("crm_check_interval")]
        w.config.write_text("\n".join(lines) + "\n")
        yield w


def stranger(world: World) -> Customer:
    """An X user the CRM has no record of (yet)."""
    people = seed(world.x, world.sf, customers=8)
    return next(c for c in people.customers if c.kind == "unknown")


def becomes_a_contact(world: World, who: Customer) -> str:
    """What a rep does: a Contact carrying the author's X user id."""
    return world.sf.insert(
        "Contact", {"FirstName": who.first, "LastName": who.last, "X_User_Id__c": who.user_id}
    )


def test_poll_once_writes_a_held_authors_history_as_soon_as_their_contact_exists(
    world: World,
) -> None:
    world.config.write_text(
        world.config.read_text().replace("[resolver]", '[resolver]\ncrm_check_interval = "1h"')
    )  # however long the daemon's interval: an explicit run always asks
    who = stranger(world)
    post = world.x.add_post(who.user_id, "@acme where is my order?")
    code, output = poll_once(world)
    assert code == 0, output
    assert "1 held" in output and not tasks(world.sf)

    contact = becomes_a_contact(world, who)
    code, output = poll_once(world)
    assert code == 0, output
    assert tasks(world.sf)[f"x:{post['id']}"]["WhoId"] == contact


class Spy:
    """Counts the calls of a method and passes them through."""

    def __init__(self, call: Callable[[str | None], PeopleChanges]) -> None:
        self.call = call
        self.count = 0

    def __call__(self, mark: str | None) -> PeopleChanges:
        self.count += 1
        return self.call(mark)


@pytest.fixture
def daemon(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    text = world.config.read_text().replace('write_interval = "1s"', 'write_interval = "7s"')
    world.config.write_text(text)
    app = App(config_mod.load(world.config))
    app.open()
    monkeypatch.setattr(app.crm, "people_changes", Spy(app.crm.people_changes))
    d = Daemon(app)
    d.start(paused=True)  # the test runs each job by hand
    try:
        yield d
    finally:
        d.shutdown()
        app.close()


def asked(daemon: Daemon) -> int:
    spy: Any = daemon.app.crm.people_changes
    return int(spy.count)


def test_the_daemon_asks_the_crm_every_write_interval_while_an_author_is_held(
    world: World, daemon: Daemon
) -> None:
    # By default the check runs as often as the writer: a new Contact's held history is
    # written within one write interval (and a resolve round).
    job = daemon.scheduler.get_job("crm-check")
    assert job is not None and job.trigger.interval == timedelta(seconds=7)

    daemon.jobs["crm-check"].run()  # the first check: where the watch starts from
    daemon.jobs["resolve"].run()
    assert asked(daemon) == 1
    daemon.jobs["crm-check"].run()  # nobody is held: the CRM is not asked
    daemon.jobs["resolve"].run()
    assert asked(daemon) == 1

    who = stranger(world)
    post = world.x.add_post(who.user_id, "@acme hello?")
    daemon.jobs["setup:acme-x"].run()
    (mentions,) = [j for j in daemon.app.jobs("acme-x") if j.stream == "mentions"]
    daemon.jobs[mentions.id].run()
    # A round past the daemon's gathering of new authors (up to 10 s, for a fuller search):
    # nobody matches them, so they are held, for an hour on their own back-off.
    assert daemon.app.pipeline.resolve(check_crm=False).unmatched == 1
    assert daemon.app.crm_check_wanted()
    daemon.jobs[
        "resolve"
    ].run()  # the resolver's own rounds do not ask the CRM: only the check does
    assert asked(daemon) == 1

    contact = becomes_a_contact(world, who)
    daemon.jobs["resolve"].run()
    assert asked(daemon) == 1 and not tasks(world.sf)  # the check's tick is what links them
    daemon.jobs["crm-check"].run()
    daemon.jobs["resolve"].run()
    assert asked(daemon) == 2
    daemon.jobs["write"].run()
    assert tasks(world.sf)[f"x:{post['id']}"]["WhoId"] == contact

    daemon.jobs["crm-check"].run()  # linked: nobody is held any more
    daemon.jobs["resolve"].run()
    assert asked(daemon) == 2
