"""A small threaded loopback HTTP server with routing, shared by the sandbox stand-ins.

Each stand-in subclasses :class:`SandboxServer`, registers routes with :meth:`route` (each
under a short endpoint name), and keeps its state behind ``self.lock``. The server listens on
127.0.0.1 (ephemeral port by default) and runs in a daemon thread, so tests and ``syncd demo``
start it in-process.

Every server can be made to fail on purpose (:mod:`.faults`): :meth:`SandboxServer.inject` from
Python, or the control endpoint :data:`CONTROL_PATH` over HTTP. :meth:`SandboxServer.on_request`
runs a callback at a precise point of a request, so a benchmark can kill a client right after
the server stored what it sent and before the answer leaves.

``latency`` (seconds, default 0) makes every HTTP request wait that long before it is handled,
as a real API's round trip does; the wait is in the request's own thread, so concurrent
requests wait side by side, and a Composite call's subrequests (dispatched inside the one HTTP
request) add none of their own.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from sandbox.faults import COMMON_KINDS, PHASES, FaultRule, Faults, Kind

CONTROL_PATH = "/__sandbox/faults"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]  # first value of each parameter
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # captured from the route pattern
    endpoint: str = ""  # the matched route's endpoint name
    target_bytes: int = 0  # the request line's target (path and query) as sent
    header_bytes: int = 0  # the header block as sent
    subrequest: bool = False  # inside a composite call, which alone is counted
    # Every value of each parameter, for repeated ones (Mastodon's ``types[]=…&types[]=…``).
    multi: dict[str, list[str]] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a stall)
    drop: bool = False  # close the connection instead of answering

    @classmethod
    def json(
        cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        hdrs = {"Content-Type": "application/json;charset=UTF-8", **(headers or {})}
        return cls(status, json.dumps(payload).encode("utf-8"), hdrs)

    @classmethod
    def text(
        cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8"
    ) -> Response:
        return cls(status, text.encode("utf-8"), {"Content-Type": content_type})


Handler = Callable[[Request], Response]
Hook = Callable[[Request], object]


class SandboxServer:
    """Base class: routing table, lifecycle, request counting, faults and request hooks."""

    name = "sandbox"
    # How often serve_forever checks for shutdown: stop() waits up to this long, once per test.
    poll_interval = 0.05
    fault_kinds: ClassVar[Mapping[str, Kind]] = COMMON_KINDS

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, latency: float = 0.0) -> None:
        self.lock = threading.RLock()
        self.latency = latency  # settable: read again by each request
        # What the latency cost, as applied (not as measured by a clock): requests delayed,
        # their delays summed, and the most requests ever waiting at once.
        self.latency_waits = 0
        self.latency_seconds = 0.0
        self.latency_peak = 0
        self._latency_waiting = 0
        self._routes: list[tuple[str, re.Pattern[str], Handler, str]] = []
        self.request_count = 0
        self.requests_by_route: dict[str, int] = {}
        self.faults = Faults(self.fault_kinds)
        # Subclasses may reuse the public name (a test double keeps its own list there).
        self._fault_rules = self.faults
        self._hooks: list[tuple[str, str, Hook]] = []
        self._stopping = threading.Event()  # ends stalls early when the server stops
        self._httpd = _QuietServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- latency -------------------------------------------------------------------------
    @property
    def latency(self) -> float:
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if not seconds >= 0:  # NaN too: a wait of NaN seconds would not wait
            raise ValueError(f"latency must be a number of seconds >= 0, not {seconds!r}")
        self._latency = float(seconds)

    def _wait_latency(self) -> None:
        """One round trip's delay, in the serving thread and outside ``self.lock``: other
        requests are served meanwhile. Cut short when the server stops."""
        seconds = self._latency
        if seconds <= 0:
            return
        with self.lock:
            self.latency_waits += 1
            self.latency_seconds += seconds
            self._latency_waiting += 1
            self.latency_peak = max(self.latency_peak, self._latency_waiting)
        try:
            self._stopping.wait(seconds)
        finally:
            with self.lock:
                self._latency_waiting -= 1

    # -- routing -------------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler, endpoint: str = "") -> None:
        """Register ``handler`` for a method and a pattern like ``/2/users/{id}/mentions``.

        ``endpoint`` is the short name faults and hooks match on (default: the pattern).
        """
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern.rstrip("/") or "/")
        name = endpoint or pattern
        self._routes.append((method.upper(), re.compile(f"^{regex}/?$"), handler, name))
        self._fault_rules.endpoints.add(name)

    def dispatch(self, req: Request) -> Response:
        allowed = False
        for method, regex, handler, endpoint in self._routes:
            m = regex.match(req.path)
            if not m:
                continue
            allowed = True
            if method != req.method:
                continue
            req.params = m.groupdict()
            req.endpoint = endpoint
            with self.lock:
                self.request_count += 1
                self.requests_by_route[f"{method} {regex.pattern}"] = (
                    self.requests_by_route.get(f"{method} {regex.pattern}", 0) + 1
                )
            return self._handle(req, handler)
        if allowed:
            return Response.json({"error": "method not allowed"}, 405)
        return self.not_found(req)

    def not_found(self, req: Request) -> Response:
        return Response.json({"error": f"no route for {req.method} {req.path}"}, 404)

    def _handle(self, req: Request, handler: Handler) -> Response:
        # Hooks and faults run outside self.lock: a hook may block, a stall must not stop
        # other requests.
        self._run_hooks(req, "before")
        rule = self._fault_rules.draw(req.endpoint, "before")
        if rule is not None:
            return self.fault_response(rule, req, handler, None)
        resp = handler(req)
        self._run_hooks(req, "after")
        rule = self._fault_rules.draw(req.endpoint, "after")
        return resp if rule is None else self.fault_response(rule, req, handler, resp)

    # -- faults ----------------------------------------------------------------------------
    def inject(
        self,
        kind: str,
        *,
        endpoint: str = "*",
        count: int | None = None,
        rate: float | None = None,
        **options: Any,
    ) -> FaultRule:
        """Make requests to ``endpoint`` fail as ``kind`` says (see :mod:`.faults`).

        With neither ``count`` nor ``rate``, the next matching request fails. The returned
        rule is live: its ``count`` goes down and its ``fired`` up as it fires.
        """
        return self._fault_rules.add(kind, endpoint=endpoint, count=count, rate=rate, **options)

    def inject_mix(
        self, menu: Sequence[tuple[str, Mapping[str, Any]]], rate: float, endpoint: str = "*"
    ) -> list[FaultRule]:
        """Make ``rate`` of the requests to ``endpoint`` fail, each kind of ``menu`` (kind,
        options) an equal share of them (see :meth:`.faults.Faults.add_mix`)."""
        return self._fault_rules.add_mix(menu, rate, endpoint)

    def clear_faults(self) -> None:
        self._fault_rules.clear()

    def fault_response(
        self, rule: FaultRule, req: Request, handler: Handler, answered: Response | None
    ) -> Response:
        """The answer for a fired rule; ``answered`` is the handler's, for phase "after".

        Subclasses handle their own kinds and the bodies of :meth:`status_response` and
        :meth:`malformed_response`, and leave the common kinds to this method.
        """
        if rule.kind == "status":
            return self.status_response(rule.status or 503, req)
        if rule.kind == "stall":
            if answered is None:  # the request was never processed: no answer will come
                return Response(drop=True, delay=rule.seconds or 0.0)
            return Response(answered.status, answered.body, answered.headers, rule.seconds or 0.0)
        if rule.kind == "drop":
            return Response(drop=True)
        if rule.kind == "malformed":
            if answered is None:
                return self.malformed_response(req)
            cut = answered.body[: len(answered.body) // 2] or b"{"
            return Response(200, cut, dict(answered.headers))
        raise ValueError(f"{type(self).__name__} has no fault kind {rule.kind!r}")

    def status_response(self, status: int, req: Request) -> Response:
        return Response.json({"error": f"injected fault: HTTP {status}"}, status)

    def malformed_response(self, req: Request) -> Response:
        return Response(200, b'{"data": [{"id": "1', {"Content-Type": "application/json"})

    # -- request hooks ---------------------------------------------------------------------
    def on_request(self, endpoint: str, callback: Hook, phase: str = "before") -> None:
        """Call ``callback(request)`` in the serving thread for each request to ``endpoint``.

        ``phase="before"``: before the handler runs; ``"after"``: after it ran (its effects are
        stored) and before the answer is sent. ``endpoint`` is a route name or ``"*"``.
        """
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, not {phase!r}")
        if endpoint != "*" and endpoint not in self._fault_rules.endpoints:
            known = sorted(self._fault_rules.endpoints)
            raise ValueError(f"unknown endpoint {endpoint!r}; use '*' or {known}")
        with self.lock:
            self._hooks.append((endpoint, phase, callback))

    def remove_hooks(self) -> None:
        with self.lock:
            self._hooks.clear()

    def _run_hooks(self, req: Request, phase: str) -> None:
        with self.lock:
            due = [cb for ep, ph, cb in self._hooks if ph == phase and ep in ("*", req.endpoint)]
        for callback in due:
            callback(req)

    # -- the control endpoint --------------------------------------------------------------
    def control(self, req: Request) -> Response:
        """``/__sandbox/faults``: POST a rule, GET rules and counters, DELETE to clear."""
        faults = self._fault_rules
        if req.path.rstrip("/") != CONTROL_PATH:
            return Response.json({"error": f"no control resource {req.path}"}, 404)
        if req.method == "GET":
            return Response.json(faults.snapshot())
        if req.method == "DELETE":
            faults.clear()
            return Response.json(faults.snapshot())
        if req.method != "POST":
            return Response.json({"error": "use GET, POST or DELETE"}, 405)
        try:
            body = req.json()
        except ValueError as exc:
            return Response.json({"error": f"body is not JSON: {exc}"}, 400)
        if not isinstance(body, dict):
            return Response.json({"error": "body must be a JSON object"}, 400)
        if "seed" in body:
            seed = body.pop("seed")
            if isinstance(seed, bool) or not isinstance(seed, int):
                return Response.json({"error": "seed must be an integer"}, 400)
            faults.seed = seed
            if "kind" not in body:
                return Response.json(faults.snapshot())
        kind = body.pop("kind", None)
        if not isinstance(kind, str):
            return Response.json({"error": "kind is required", "kinds": sorted(faults.kinds)}, 400)
        try:
            rule = faults.add(kind, **body)
        except (TypeError, ValueError) as exc:
            return Response.json({"error": str(exc)}, 400)
        return Response.json(rule.as_dict(), 201)

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SandboxServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": self.poll_interval},
                name=f"{self.name}-http",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- plumbing ------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in separate writes; on a keep-alive connection Nagle's
            # algorithm then waits for the client's delayed ACK, ~40 ms on every response.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                multi = parse_qs(parts.query, keep_blank_values=True)
                query = {k: v[0] for k, v in multi.items()}
                req = Request(
                    method=self.command,
                    path=parts.path,
                    query=query,
                    multi=multi,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    target_bytes=len(self.path.encode("latin-1", "replace")),
                    header_bytes=len(self.headers.as_bytes()),
                )
                try:
                    if req.path.startswith("/__sandbox/"):  # never faulted, counted, delayed
                        resp = server.control(req)
                    else:
                        # Here, once per HTTP request: dispatch also runs each Composite
                        # subrequest, which travels inside this request and adds no delay.
                        server._wait_latency()
                        resp = server.dispatch(req)
                except Exception as exc:  # a sandbox bug must show, not hang the client
                    resp = Response.json({"error": f"sandbox error: {exc!r}"}, 500)
                if resp.delay > 0:
                    server._stopping.wait(resp.delay)
                if resp.drop:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                try:
                    self.send_response(resp.status)
                    for k, v in resp.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(resp.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(resp.body)
                except OSError:  # the client gave up during a stall
                    self.close_connection = True

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return _Handler


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-request (a timeout, a killed process) is normal here."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)
