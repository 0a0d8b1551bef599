"""Issue 16, item 15: a connector's ``timeout`` bounds the whole request, not each read.

A stand-in that dribbles its answer (a byte every 20 ms, far inside any per-read timeout)
would hold a call for seconds; with a 0.4 s timeout the call fails as a timeout instead, on
plain HTTP and on TLS, in the headers and in the body. Nothing here measures time: a call that
is not cut short returns the whole answer, and the test fails on that.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connectors._http import RewritingAdapter, mount
from connectors.x.source import XSource
from syncd.errors import TransientError

BODY = b'{"data": "' + b"x" * 200 + b'"}'
TIMEOUT = 0.4  # the whole request; the dribble takes 20 ms a byte, ~5 s in all


class Dribbler:
    """A loopback server answering every request 200 with BODY, one byte every 20 ms, from the
    status line on (``slow_headers``) or after whole headers."""

    def __init__(self, *, slow_headers: bool, tls: ssl.SSLContext | None = None) -> None:
        self.slow_headers, self.tls = slow_headers, tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        port = self.listener.getsockname()[1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, raw: socket.socket) -> None:
        try:
            conn = self.tls.wrap_socket(raw, server_side=True) if self.tls else raw
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                head = (
                    f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(BODY)}\r\n\r\n"
                ).encode()
                if not self.slow_headers:
                    conn.sendall(head)
                for byte in (head if self.slow_headers else b"") + BODY:
                    if self.stop.wait(0.02):
                        return
                    conn.sendall(bytes([byte]))
        except OSError:
            return  # the client gave up: what the test wants

    def __enter__(self) -> Dribbler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A server context with a self-signed certificate for 127.0.0.1, and that certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


@pytest.mark.parametrize("slow_headers", [False, True], ids=["slow-body", "slow-headers"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_dribbled_answer_times_out_as_a_whole(
    slow_headers: bool, scheme: str, tls: tuple[ssl.SSLContext, Path]
) -> None:
    context, cert = tls
    with Dribbler(slow_headers=slow_headers, tls=context if scheme == "https" else None) as srv:
        session = requests.Session()
        mount(session, RewritingAdapter({"https://api.x.com": srv.url}, timeout=TIMEOUT))
        with pytest.raises((requests.Timeout, requests.ConnectionError), match="timed out"):
            session.get("https://api.x.com/2/users/me", verify=str(cert))


def test_a_quick_answer_still_arrives_whole_on_a_reused_connection() -> None:
    """The deadline is the request's own: a connection kept alive serves the next request
    with a new one, and an answer in time is read whole."""

    class Quick(Dribbler):
        def _answer(self, raw: socket.socket) -> None:
            with raw:
                for _ in range(3):
                    request = b""
                    while b"\r\n\r\n" not in request:
                        chunk = raw.recv(4096)
                        if not chunk:
                            return
                        request += chunk
                    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()
                    raw.sendall(head + BODY)

    with Quick(slow_headers=False) as srv:
        session = requests.Session()
        mount(session, RewritingAdapter({"https://api.x.com": srv.url}, timeout=TIMEOUT))
        bodies = [session.get("https://api.x.com/2/users/me").content for _ in range(3)]
    assert bodies == [BODY] * 3


def test_the_x_source_fails_a_dribbled_call_as_transient() -> None:
    with Dribbler(slow_headers=False) as srv:
        source = XSource("x-bearer-secret", api_base_url=srv.url, timeout=TIMEOUT)
        try:
            with pytest.raises(TransientError, match="timed out"):
                source.resolve_accounts(["acme"])
        finally:
            source.close()
