"""``syncd run`` as an operator sees it: sd_notify messages, /healthz and /metrics over HTTP."""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from support.e2e import Daemon, World, make_world, tasks, wait_for

from sandbox.run import Sandbox
from sandbox.seed import seed
from syncd.config import settings as config
from syncd.errors import ConfigError
from syncd.service.app import App
from syncd.service.daemon import Daemon as SyncDaemon
from syncd.service.http import HealthServer, Run, parse_listen, verdict
from syncd.service.sdnotify import Heartbeat, heartbeat_seconds, watchdog_seconds


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name → [(labels, value)], parsed the way Prometheus would."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


class Notifications:
    """A real $NOTIFY_SOCKET: an AF_UNIX datagram socket, read by a thread."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            self.messages.extend(data.decode().splitlines())

    def seen(self, prefix: str) -> list[str]:
        return [m for m in list(self.messages) if m.startswith(prefix)]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(f"sqlite:///{tmp_path / 'state.db'}", tmp_path, monkeypatch) as w:
        text = w.config.read_text().replace("[daemon]\n", '[daemon]\nlisten = "127.0.0.1:0"\n')
        w.config.write_text(text)
        yield w


def test_daemon_notifies_systemd_and_serves_health_and_metrics(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = seed(world.x, world.sf, customers=5)
    customer = next(c for c in people.customers if c.kind != "unknown")
    post = world.x.add_post(customer.user_id, "@acme are you there?")
    notes = Notifications(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # pings every 0.5 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    stalled: list[socket.socket] = []
    daemon = Daemon(world.config)
    try:
        wait_for(lambda: bool(notes.seen("READY=1")), what="READY=1")
        wait_for(lambda: f"x:{post['id']}" in tasks(world.sf), what="the Task")
        wait_for(lambda: len(notes.seen("WATCHDOG=1")) >= 3, what="watchdog pings")
        wait_for(
            lambda: any("last successful poll 2" in m for m in notes.seen("STATUS=backlog")),
            what="a status line with a last success",
        )
        found = re.search(r"health and metrics on (http://\S+)/healthz", daemon.log)
        assert found, daemon.log
        base = found.group(1)

        code, body = get(f"{base}/healthz")
        assert code == 200, body
        assert json.loads(body)["status"] == "ok"

        wait_for(lambda: "syncd_deliveries" in get(f"{base}/metrics")[1], what="metrics")
        metrics = samples(get(f"{base}/metrics")[1])
        inbound = {"network": "x", "direction": "inbound"}
        fetched = metrics["syncd_interactions_fetched_total"]
        assert any(labels == inbound and value >= 1 for labels, value in fetched)
        written = [
            value
            for labels, value in metrics["syncd_deliveries"]
            if labels["state"] == "written" and labels["direction"] == "inbound"
        ]
        assert written and written[0] >= 1
        lag = {labels["account"]: v for labels, v in metrics["syncd_poll_lag_seconds"]}
        assert set(lag) >= {"acme", "acmesupport"} and all(v >= 0 for v in lag.values())
        calls = {labels["api"] for labels, _ in metrics["syncd_api_calls_total"]}
        assert calls >= {"x", "salesforce"}
        remaining = metrics["syncd_api_rate_limit_remaining"]
        assert any(
            labels["api"] == "x" and "mentions" in labels["endpoint"] for labels, _ in remaining
        )
        assert any(labels["api"] == "salesforce" for labels, _ in remaining)
        assert metrics["syncd_state_up"] == [({}, 1.0)]
        assert "syncd_scheduler_last_tick_timestamp_seconds" in metrics
        assert get(f"{base}/nope")[0] == 404
        # Connections that never send a request do not hold up the stop.
        host, port = base.removeprefix("http://").rsplit(":", 1)
        stalled += [socket.create_connection((host, int(port)), timeout=30) for _ in range(50)]
    finally:
        code = daemon.stop()
        for s in stalled:
            s.close()
        notes.close()
    assert code == 0, daemon.log
    assert notes.seen("STOPPING=1")
    # READY comes once the jobs are scheduled, STOPPING last of the protocol's messages.
    order = [m.split("=")[0] for m in notes.messages if m in ("READY=1", "STOPPING=1")]
    assert order[0] == "READY" and order[-1] == "STOPPING"
    assert "Traceback" not in daemon.log


class FakeDaemon:
    def __init__(self) -> None:
        self.heartbeat = Heartbeat()
        self.parked: set[str] = set()
        self.stopping = threading.Event()
        self.outage: str | None = None

    def runs(self) -> list[Run]:
        return []

    def state_outage(self) -> str | None:
        return self.outage


def test_healthz_names_every_reason_it_fails() -> None:
    d = FakeDaemon()
    code, body = verdict(d)
    assert code == 503 and body["reasons"] == ["the scheduler has not ticked yet"]
    d.heartbeat.tick()
    code, body = verdict(d)
    assert code == 200 and body["status"] == "ok" and "reasons" not in body
    d.parked.add("x:acme")
    assert d.heartbeat.monotonic is not None
    d.heartbeat.monotonic -= 3600  # the scheduler stopped ticking an hour ago
    code, body = verdict(d)
    assert code == 503
    assert body["parked"] == ["x:acme"]
    assert any("ticked 3600s ago" in r for r in body["reasons"])
    d.outage = "the state database is unavailable since 10:00:00 (poll:x:acme:mentions waits)"
    code, body = verdict(d)
    assert code == 503 and d.outage in body["reasons"]
    assert any("x:acme" in r and "syncd resume" in r for r in body["reasons"])


def stuck_daemon(write_interval: float, deliver: Any) -> SyncDaemon:
    """A daemon whose jobs run only when called, its writer's batch being ``deliver``."""
    settings = SimpleNamespace(
        daemon=SimpleNamespace(
            write_interval=write_interval, resolve_interval=60.0, jitter=0.0, stuck_after=900.0
        ),
        backfill=SimpleNamespace(interval=60.0),
        compliance=SimpleNamespace(interval=86400.0),
        crm=SimpleNamespace(name="salesforce", type="salesforce"),
    )
    pipeline = SimpleNamespace(deliver=deliver, stopping=threading.Event())
    app: Any = SimpleNamespace(
        settings=settings,
        pipeline=pipeline,
        crm=object(),
        sources={},
        unpark_all=lambda: [],
        crm_check_seconds=0.0,
    )
    d = SyncDaemon(app)
    d.start(paused=True)
    d.heartbeat.tick()
    return d


@pytest.mark.parametrize(("write_interval", "limit"), [(10.0, 900.0), (600.0, 1800.0)])
def test_a_stuck_job_fails_healthz_naming_it_until_it_finishes(
    write_interval: float, limit: float
) -> None:
    entered, release = threading.Event(), threading.Event()

    def deliver(max_batches: int) -> SimpleNamespace:
        entered.set()
        release.wait(60)  # a call that does not return (until the test lets it)
        return SimpleNamespace(written=0, retrying=0, dead=0, relinking=0)

    d = stuck_daemon(write_interval, deliver)
    writer = threading.Thread(target=d.jobs["write"].run)
    try:
        writer.start()
        assert entered.wait(60)
        started = time.monotonic()
        code, body = verdict(d)
        assert code == 200 and body["stuck"] == []
        # Stuck past stuck_after (900 s) or three of its intervals, whichever is longer.
        code, body = verdict(d, now=started + limit - 5)
        assert code == 200, body
        code, body = verdict(d, now=started + limit + 5)
        assert code == 503
        [stuck] = body["stuck"]
        assert stuck["job"] == "write" and stuck["running_seconds"] >= limit
        [reason] = body["reasons"]
        assert reason.startswith("job write has been running for ")
        assert f"(stuck after {limit:.0f}s)" in reason
    finally:
        release.set()
        writer.join(60)
        d.shutdown()
    code, body = verdict(d, now=time.monotonic() + limit + 5)
    assert code == 200 and body["stuck"] == [], body


def test_metrics_show_each_run_in_progress_and_whether_it_is_stuck() -> None:
    from syncd.service.metrics import _job_runs

    runs = [Run("write", started=100.0, limit=900.0), Run("resolve", started=50.0, limit=60.0)]
    families = {m.name: m for m in _job_runs(runs, now=160.0)}
    running = {s.labels["job"]: s.value for s in families["syncd_job_running_seconds"].samples}
    stuck = {s.labels["job"]: s.value for s in families["syncd_job_stuck"].samples}
    assert running == {"write": 60.0, "resolve": 110.0}
    assert stuck == {"write": 0.0, "resolve": 1.0}


def test_healthz_over_http_is_json_with_status_code() -> None:
    d = FakeDaemon()
    d.heartbeat.tick()
    server = HealthServer("127.0.0.1:0", lambda: verdict(d), CollectorRegistry())
    server.start()
    try:
        code, body = get(f"{server.url}/healthz")
        assert code == 200 and json.loads(body)["status"] == "ok"
        d.parked.add("crm")
        code, body = get(f"{server.url}/healthz")
        assert code == 503
        assert json.loads(body)["parked"] == ["crm"]
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_listen_addresses(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9464", "host:port"),
        ("::1:9464", "brackets"),
        ("127.0.0.1:http", "port"),
        (":9464", "host:port"),
    ],
)
def test_a_bad_listen_address_is_a_config_problem_naming_the_key(
    value: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2E_X_BEARER", "b")
    monkeypatch.setenv("E2E_SF_PASSWORD", "p")
    monkeypatch.setenv("E2E_SF_TOKEN", "t")
    from support.e2e import config_text

    path = tmp_path / "c.toml"
    text = config_text("sqlite:////tmp/x.db", "http://127.0.0.1:1", "http://127.0.0.1:2")
    path.write_text(text.replace("[daemon]\n", f"[daemon]\nlisten = {value!r}\n"))
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.exit_code == 2
    [(key, problem)] = info.value.problems
    assert key == "daemon.listen" and message in problem


def test_a_port_in_use_exits_2_naming_the_key(world: World) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        text = world.config.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}")
        world.config.write_text(text)
        daemon = Daemon(world.config)
        code = daemon.stop(terminate=False)
    assert code == 2, daemon.log
    assert f"daemon.listen: cannot listen on 127.0.0.1:{port}" in daemon.log
    assert "Traceback" not in daemon.log


def test_watchdog_interval_is_half_the_timeout_and_only_for_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_seconds() is None
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_seconds() == 4.0 and heartbeat_seconds() == 2.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_seconds() is None


def test_metrics_count_job_results_by_network_and_direction() -> None:
    from syncd.model import Stream
    from syncd.service.metrics import Metrics

    crm = SimpleNamespace(name="salesforce", type="salesforce")
    app: Any = SimpleNamespace(settings=SimpleNamespace(crm=crm), crm=object(), sources={})
    m = Metrics(lambda: app, lambda: None)
    job: Any = SimpleNamespace(account=SimpleNamespace(network="x"), stream=Stream.REPLIES)
    m.observe("poll:acme-x:acme:replies", job, SimpleNamespace(seen=5, new=2, quarantined=1))
    m.observe("write", None, SimpleNamespace(written=3, retrying=1, dead=0, relinking=0))
    m.observe("resolve", None, SimpleNamespace(linked=4, review=1))
    m.error("write", TimeoutError("slow"))
    value = m.registry.get_sample_value
    outbound = {"network": "x", "direction": "outbound"}
    assert value("syncd_interactions_fetched_total", outbound) == 5
    assert value("syncd_interactions_stored_total", outbound) == 2
    assert value("syncd_writer_records_total", {"crm": "salesforce", "outcome": "written"}) == 3
    assert value("syncd_resolver_authors_total", {"outcome": "linked"}) == 4
    assert value("syncd_errors_total", {"job": "write", "error": "TimeoutError"}) == 1
    # No state database behind this app: the scrape still answers, and says so.
    assert value("syncd_state_up") == 0


def sandbox_app(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> App:
    """An app, opened, of every stand-in's source, reading back a day."""
    for name, value in sandbox.environ().items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "config.toml"
    path.write_text(sandbox.config(f"sqlite:///{tmp_path / 'state.db'}", source={"start": "1d"}))
    app = App(config.load(path))
    app.open()
    return app


def test_metrics_count_every_networks_api_calls_and_rate_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One poll of each network's stand-in: each call it served is counted under its network
    and source, whatever HTTP library the connector uses, with the quota its answers said."""
    from prometheus_client import generate_latest

    from syncd.service.metrics import Metrics

    with Sandbox() as sandbox:
        sandbox.seed(6)
        rng = random.Random(5)
        for _ in range(12):
            sandbox.post(rng)
        app = sandbox_app(sandbox, tmp_path, monkeypatch)
        metrics = Metrics(lambda: app, lambda: None)
        try:
            metrics.attach(app)
            metrics.attach(app)  # as after a reload that kept the sources: counted once
            report = app.cycle()
            scraped = samples(generate_latest(metrics.registry).decode())
        finally:
            app.close()
        served = {s: sandbox.servers[s].request_count for s in sandbox.servers}
    assert not report.errors, report.errors
    # One stand-in serves both Meta networks: their calls add up to its count.
    standins = {"x": ["x"], "mastodon": ["mastodon"], "bluesky": ["bluesky"]}
    standins["meta"] = ["facebook", "instagram"]
    calls = scraped["syncd_api_calls_total"]
    for standin, networks in standins.items():
        mine = [(labels, v) for labels, v in calls if labels["api"] in networks]
        assert {labels["client"] for labels, _ in mine} == {f"acme-{n}" for n in networks}
        assert sum(v for _, v in mine) == served[standin], (standin, mine)
    # Each network's mentions read, by route (ids folded), with the quota its answer left.
    reads = {
        "x": "/2/users/:id/mentions",
        "mastodon": "/api/v1/notifications",
        "bluesky": "/xrpc/app.bsky.notification.listNotifications",
    }
    for gauge in ("syncd_api_rate_limit_remaining", "syncd_api_rate_limit"):
        shown = {(labels["api"], labels["endpoint"]): v for labels, v in scraped[gauge]}
        for network, endpoint in reads.items():
            assert (network, endpoint) in shown, (gauge, network, sorted(shown))
    remaining = {
        (labels["api"], labels["endpoint"]): v
        for labels, v in scraped["syncd_api_rate_limit_remaining"]
    }
    size = {(labels["api"], labels["endpoint"]): v for labels, v in scraped["syncd_api_rate_limit"]}
    for network, endpoint in reads.items():
        assert 0 <= remaining[network, endpoint] < size[network, endpoint]


def test_metrics_show_how_much_of_meta_s_allowances_is_used_and_the_hints_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read from the sources when /metrics is scraped over HTTP: the share of each allowance
    Meta's usage headers said, and the webhook hints taken with nothing stored, by reason."""
    from syncd.model import WebhookHint
    from syncd.service.metrics import Metrics
    from syncd.state import hints
    from syncd.state.ingest import stored_accounts

    with Sandbox() as sandbox:
        sandbox.seed(3)
        app = sandbox_app(sandbox, tmp_path, monkeypatch)
        metrics = Metrics(lambda: app, lambda: None)
        server = HealthServer("127.0.0.1:0", lambda: (200, {}), metrics.registry)
        server.start()
        try:
            metrics.attach(app)
            before = samples(get(f"{server.url}/metrics")[1])
            assert not app.cycle().errors
            with app.db.transaction() as conn:
                brand = next(iter(stored_accounts(conn, "acme-instagram").values()))
                forged = WebhookHint(
                    brand.user_id, "17999999999999999", "instagram:mentions:comment"
                )
                hints.add(conn, "acme-instagram", [forged], app.pipeline.clock())
            assert not app.cycle().errors
            code, body = get(f"{server.url}/metrics")
        finally:
            server.stop()
            app.close()
    assert code == 200
    scraped = samples(body)
    assert "syncd_source_usage_ratio" not in before  # no answer has said any yet
    shown = scraped["syncd_source_usage_ratio"]
    ratios = {(labels["source"], labels["figure"]): v for labels, v in shown}
    for source in ("acme-facebook", "acme-instagram"):
        for figure in ("call_count", "total_cputime", "total_time"):
            assert 0 < ratios[source, f"app.{figure}"] <= 1, (source, figure, ratios)
    # A Page token's answers say each business use case's figures too (under 1% here).
    for figure in ("call_count", "total_cputime", "total_time"):
        assert 0 <= ratios["acme-facebook", f"buc.pages.{figure}"] < 1, ratios
    assert {s for s, _ in ratios} == {"acme-facebook", "acme-instagram"}  # only Meta's say
    dropped = scraped["syncd_webhook_hints_dropped_total"]
    assert dropped == [
        ({"source": "acme-instagram", "reason": "the API refused it (NotFound)"}, 1.0)
    ]
