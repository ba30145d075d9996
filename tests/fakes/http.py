"""A tiny threaded HTTP server on 127.0.0.1 for the fake external APIs.

Each fake subclasses :class:`FakeHandler` and implements ``route`` returning
``(status, headers, body)``.  The server records every request so tests can
assert what the SDK sent, and lets a test queue failures (``fail_next``) or
delays (``delay_next``) to exercise 401/403/429/5xx/timeouts.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Fault:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class FakeServer:
    """Run a handler class on an ephemeral 127.0.0.1 port in a background thread."""

    def __init__(self, handler: type[FakeHandler], state: Any = None):
        self.state = state
        self.requests: list[Recorded] = []
        self.faults: deque[Fault] = deque()
        self.path_faults: list[tuple[str, str, Fault]] = []
        self._lock = threading.Lock()
        handler_cls = type(handler.__name__, (handler,), {"fake": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail_next(self, status: int, body: Any = None, times: int = 1, **headers: str) -> None:
        """Answer the next ``times`` requests with ``status`` and ``body`` instead of routing."""
        for _ in range(times):
            self.faults.append(Fault(status, body, dict(headers)))

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """Sleep ``seconds`` before answering the next ``times`` requests (timeouts)."""
        for _ in range(times):
            self.faults.append(Fault(0, delay=seconds))

    def fail_path(
        self,
        method: str,
        prefix: str,
        status: int,
        body: Any = None,
        times: int = 1,
        after: int = 0,
    ) -> None:
        """Answer the next ``times`` ``method`` requests whose path starts with ``prefix``,
        after letting the first ``after`` of them through."""
        for _ in range(after):
            self.path_faults.append((method, prefix, Fault(0)))  # status 0: pass through
        for _ in range(times):
            self.path_faults.append((method, prefix, Fault(status, body)))

    def pop_fault(self, method: str = "", path: str = "") -> Fault | None:
        with self._lock:
            for i, (m, prefix, fault) in enumerate(self.path_faults):
                if m == method and path.startswith(prefix):
                    del self.path_faults[i]
                    return fault
            return self.faults.popleft() if self.faults else None


class FakeHandler(BaseHTTPRequestHandler):
    """Base handler: parse, record, apply queued faults, then call :meth:`route`."""

    fake: FakeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        return

    def _handle(self, method: str) -> None:
        parsed = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.fake.requests.append(
            Recorded(method, parsed.path, parse_qs(parsed.query), dict(self.headers), body)
        )
        fault = self.fake.pop_fault(method, parsed.path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.status == 0:  # a delay only, or a request let through
            fault = None
        if fault is not None:
            self.respond(fault.status, fault.body, fault.headers)
            return
        status, headers, payload = self.route(method, parsed.path, parse_qs(parsed.query), body)
        self.respond(status, payload, headers)

    def respond(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        headers = dict(headers or {})
        if isinstance(payload, bytes):
            data = payload
        elif isinstance(payload, str):
            data = payload.encode()
        elif payload is None:
            data = b""
        else:
            data = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        raise NotImplementedError

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")
