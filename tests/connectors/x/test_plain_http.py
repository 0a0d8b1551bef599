"""Issue 16, item 12: credentials never travel over plain HTTP, except to this host.

Config: every URL setting that credentials go to refuses ``http://`` to another host, naming
the key (exit 2, every problem at once). At run time the connectors' HTTP adapter refuses to
send anything over plain HTTP to another host, whatever asked for it (a redirect, an address
an API answered with); and a redirect to another host never carries the Authorization header.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from support.config import Case, check, edit

from connectors._http import PlainHttpRefused, RewritingAdapter, mount
from connectors.x.source import XSource
from syncd.cli import cli
from syncd.contracts.urls import is_loopback_host, require_tls
from syncd.errors import TransientError


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("128.0.0.1", False),
        ("10.0.0.1", False),
        ("::2", False),
        ("localhost.example.com", False),
        ("127.0.0.1.nip.io", False),
        ("evil-localhost", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_hosts(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_require_tls_names_the_host_never_the_rest() -> None:
    assert require_tls("https://login.salesforce.com") == "https://login.salesforce.com"
    assert require_tls("http://127.0.0.1:9") == "http://127.0.0.1:9"
    assert require_tls("http://[::1]:8080/x") == "http://[::1]:8080/x"
    with pytest.raises(ValueError, match=r"unencrypted to proxy\.example: use https://") as err:
        require_tls("HTTP://user:hunter2@proxy.example/x")
    assert "hunter2" not in str(err.value)


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("T_X_BEARER", "x-secret-value")
    monkeypatch.setenv("T_SF_PASSWORD", "sf-secret-value")
    (tmp_path / "token").write_text("tok-secret-value\n")
    return tmp_path


def run_status(tmp: Path, toml: str) -> tuple[int, str]:
    path = tmp / "config.toml"
    path.write_text(toml.replace("{tmp}", str(tmp)))
    result = CliRunner().invoke(cli, ["--config", str(path), "status"])
    return result.exit_code, result.stderr


def test_plain_http_to_another_host_is_refused_for_every_url_key(tmp: Path) -> None:
    session_crm = (
        'login_url = "http://127.0.0.1:9"\n'
        'instance_url = "http://acme.my.salesforce.com"\n'
        'session_id = "env:T_SF_PASSWORD"\n'
    )
    toml = edit(
        ('api_base_url = "http://127.0.0.1:9"', 'api_base_url = "http://proxy.example:8080"'),
        (
            'login_url = "http://127.0.0.1:9"\nusername = "u@example.com"\n'
            'password = "env:T_SF_PASSWORD"\nsecurity_token = "file:{tmp}/token"\n',
            session_crm,
        ),
    )
    code, stderr = run_status(tmp, toml)
    assert code == 2, stderr
    case = Case(
        "plain-http",
        toml,
        [
            ("sources[0].api_base_url", "unencrypted to proxy.example: use https://"),
            ("crm.instance_url", "unencrypted to acme.my.salesforce.com: use https://"),
        ],
    )
    check(stderr, case, tmp)

    code, stderr = run_status(
        tmp, edit(('login_url = "http://127.0.0.1:9"', 'login_url = "http://test.salesforce.com"'))
    )
    assert code == 2
    assert "crm.login_url: " in stderr and "unencrypted to test.salesforce.com" in stderr


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:9",
        "http://[::1]:9",
        "http://127.0.0.2:9",
        "https://proxy.example:8443",
    ],
)
def test_loopback_and_https_are_accepted(tmp: Path, url: str) -> None:
    toml = edit(
        ('api_base_url = "http://127.0.0.1:9"', f'api_base_url = "{url}"'),
        ('login_url = "http://127.0.0.1:9"', f'login_url = "{url}"'),
    )
    code, stderr = run_status(tmp, toml)
    assert code == 0, stderr


# -- at run time ---------------------------------------------------------------------------
class _Recorder(BaseHTTPRequestHandler):
    """Answers every request with the response its server was told to give, and records the
    headers and body each request came with."""

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server = self.server
        assert isinstance(server, _Server)
        server.seen.append((self.path, dict(self.headers), body))
        self.send_response(server.status)
        if server.location:
            self.send_header("Location", server.location)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def __init__(self, host: str, status: int = 200, location: str | None = None) -> None:
        super().__init__((host, 0), _Recorder)
        self.status, self.location = status, location
        self.seen: list[tuple[str, dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def serving(server: _Server) -> Iterator[_Server]:
    # serve_forever checks for shutdown every poll interval: 0.5 s by default, per test.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def other_host() -> Iterator[_Server]:
    """A server on another loopback address: another host, as far as requests can tell."""
    yield from serving(_Server("127.0.0.2"))


def session_to(base: str) -> requests.Session:
    session = requests.Session()
    mount(session, RewritingAdapter({"https://api.x.com": base}, timeout=10))
    return session


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_to_plain_http_elsewhere_is_never_followed(status: int) -> None:
    # .invalid never resolves (RFC 6761): were the request sent, the error would be another.
    for redirector in serving(_Server("127.0.0.1", status, "http://api.example.invalid/2/x")):
        session = session_to(redirector.url)
        with pytest.raises(PlainHttpRefused, match=r"http://api\.example\.invalid unencrypted"):
            session.post(
                "https://api.x.com/2/oauth2/token",
                data={"refresh_token": "r-secret"},
                headers={"Authorization": "Bearer b-secret"},
            )
        assert len(redirector.seen) == 1


def test_a_redirect_to_another_host_drops_the_authorization_header(other_host: _Server) -> None:
    # requests' own rule (Session.rebuild_auth): the header is for the host it was sent to.
    target = f"{other_host.url}/landed"
    for redirector in serving(_Server("127.0.0.1", 302, target)):
        answer = session_to(redirector.url).get(
            "https://api.x.com/2/users/me", headers={"Authorization": "Bearer b-secret"}
        )
        assert answer.status_code == 200
        assert redirector.seen[0][1].get("Authorization") == "Bearer b-secret"
    assert [path for path, _, _ in other_host.seen] == ["/landed"]
    assert "Authorization" not in other_host.seen[0][1]


def test_the_x_source_refuses_an_answer_sending_it_to_plain_http_elsewhere() -> None:
    for redirector in serving(_Server("127.0.0.1", 307, "http://api.example.invalid/2/users")):
        source = XSource("x-bearer-secret", api_base_url=redirector.url, timeout=10)
        try:
            with pytest.raises(TransientError, match="unencrypted") as err:
                source.resolve_accounts(["acme"])
        finally:
            source.close()
        assert "x-bearer-secret" not in str(err.value)
        assert len(redirector.seen) == 1
