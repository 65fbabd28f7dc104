"""A scripted token endpoint for fault-injection tests (issue 5).

Unlike ``hoxton_auth.testing.AuthServer``, which behaves like Auth0, this
server answers each ``/oauth/token`` request with the next reply of a script
(or a fresh token once the script is used up), records when each request
arrived, and can misbehave at the socket level: cut a body short, hang up
without an answer, or answer later than the client's timeout.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl

import jwt

#: Signing key of the tokens this server issues. The library never verifies
#: signatures (the API does), so any key works; 32+ bytes keeps PyJWT quiet.
SIGNING_KEY = "fault-server-signing-key-not-a-secret-0123456789"
TOKEN_LIFETIME = 3600

Mode = Literal["answer", "truncate", "disconnect"]


@dataclasses.dataclass(frozen=True)
class Reply:
    """One scripted answer.

    Attributes:
        status: The HTTP status.
        body: The body; ``None`` sends a fresh token response.
        headers: Extra headers (``Content-Type`` here replaces the default).
        delay: Seconds to wait before answering (woken early by ``stop``).
        mode: ``answer`` normally; ``truncate`` announces the full length but
            sends half the body and hangs up; ``disconnect`` hangs up at once.
        hold: When set, the answer waits until this event is set.
    """

    status: int = 200
    body: bytes | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0
    mode: Mode = "answer"
    hold: threading.Event | None = None


def error_reply(status: int, error: str, description: str, **headers: str) -> Reply:
    """An Auth0-shaped JSON error."""
    body = json.dumps({"error": error, "error_description": description}).encode()
    return Reply(status, body, {"Content-Type": "application/json", **headers})


def token_body(now: float | None = None, lifetime: int = TOKEN_LIFETIME) -> bytes:
    """A token response with a fresh HS256 JWT (``iat``, ``exp``) and ``expires_in``."""
    issued = int(time.time() if now is None else now)
    claims = {"sub": "fault-client@clients", "iat": issued, "exp": issued + lifetime}
    access_token = jwt.encode(claims, SIGNING_KEY, algorithm="HS256")
    return json.dumps(
        {"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime}
    ).encode()


@dataclasses.dataclass(frozen=True)
class Arrival:
    """A request as the server saw it."""

    monotonic: float
    wall: float
    form: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def do_POST(self) -> None:
        """Record the request, then play the next scripted reply."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        form = _parse_form(raw, self.headers.get("Content-Type") or "")
        reply = self.server.owner.record(form)
        if reply.hold is not None:
            reply.hold.wait()
        if reply.delay and self.server.owner.stopping.wait(reply.delay):
            self.close_connection = True
            return
        self.close_connection = True
        if reply.mode == "disconnect":
            return
        body = token_body() if reply.body is None else reply.body
        headers = {"Content-Type": "application/json", **reply.headers}
        self.send_response(reply.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if reply.mode == "truncate" else body)
        self.wfile.flush()


def _parse_form(raw: bytes, content_type: str) -> dict[str, str]:
    try:
        if content_type.startswith("application/json"):
            data = json.loads(raw)
            return {str(k): str(v) for k, v in data.items()}
        return dict(parse_qsl(raw.decode(), keep_blank_values=True))
    except (ValueError, AttributeError):
        return {}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: FaultServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out and left is expected here: no traceback."""


class FaultServer:
    """Serve ``/oauth/token`` from a script; use as a context manager."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._script: deque[Reply] = deque()
        self.default = Reply()
        self.arrivals: list[Arrival] = []
        self.stopping = threading.Event()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._thread.join()
        self._httpd.server_close()

    @property
    def domain(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def token_url(self) -> str:
        """The token endpoint."""
        return self.domain + "/oauth/token"

    def queue(self, *replies: Reply) -> None:
        """Play these replies, in order, to the next requests."""
        with self._lock:
            self._script.extend(replies)

    def record(self, form: dict[str, str]) -> Reply:
        """Log one arrival and return the reply it gets."""
        with self._lock:
            self.arrivals.append(Arrival(time.monotonic(), time.time(), form))
            self._lock.notify_all()
            return self._script.popleft() if self._script else self.default

    @property
    def count(self) -> int:
        """Requests seen so far."""
        with self._lock:
            return len(self.arrivals)

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        """Block until ``count`` requests have arrived (or ``timeout`` passes)."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self.arrivals) >= count, timeout)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
