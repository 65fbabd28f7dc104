"""HTTP plumbing: a threading HTTP/1.1 server that moves bytes to `_endpoints`.

Keep-alive matters: `requests.Session` and `httpx.Client` reuse connections,
so every reply carries Content-Length and every request body is read in
full. `HTTPServer` keeps idle keep-alive connections open until the client
closes them; `close_connections` shuts them down so that `stop()` leaves no
thread blocked and no socket for the garbage collector to warn about.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hoxton_auth.testing import _endpoints
from hoxton_auth.testing._device import activate_page
from hoxton_auth.testing._grants import token_endpoint
from hoxton_auth.testing._replies import Reply, json_reply

if TYPE_CHECKING:
    from hoxton_auth.testing._state import AuthState

__all__ = ["HTTPServer"]

logger = logging.getLogger("hoxton_auth.testing")

_MAX_BODY = 10 * 1024 * 1024


class _BadRequestError(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "HoxtonTestAuth/1.0"
    server: HTTPServer

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _BadRequestError from None
            if size == 0:
                break
            total += size
            if total > _MAX_BODY:
                raise _BadRequestError
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)  # CRLF after each chunk
        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
            pass  # trailer fields
        return b"".join(chunks)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise _BadRequestError from None
        if not 0 <= size <= _MAX_BODY:
            raise _BadRequestError
        return self.rfile.read(size)

    def _route(self, body: bytes) -> Reply:
        state = self.server.state
        method, path = self.command, urlsplit(self.path).path
        content_type = self.headers.get("Content-Type")
        if path == "/api" or path.startswith("/api/"):
            return _endpoints.api(state, method, self.path, self.headers.get("Authorization"), body)
        routes = {
            "/oauth/token": "POST",
            "/oauth/revoke": "POST",
            "/authorize": "GET",
            "/oauth/device/code": "POST",
            "/activate": "GET, POST",
            "/.well-known/jwks.json": "GET",
            "/.well-known/openid-configuration": "GET",
        }
        if path not in routes:
            return _endpoints.not_found(path)
        if method not in routes[path].split(", "):
            reply = json_reply(405, {"error": "method_not_allowed", "error_description": method})
            return Reply(reply.status, reply.body, (*reply.headers, ("Allow", routes[path])))
        if path == "/oauth/token":
            return token_endpoint(
                state,
                content_type,
                body,
                self.headers.get("Authorization"),
                self.headers.get("auth0-forwarded-for"),
            )
        if path == "/oauth/revoke":
            return _endpoints.revoke(state, content_type, body, self.headers.get("Authorization"))
        if path == "/oauth/device/code":
            return _endpoints.device_code(state, content_type, body)
        if path == "/activate":
            return activate_page(state, method, urlsplit(self.path).query, body)
        if path == "/authorize":
            return _endpoints.authorize(state, urlsplit(self.path).query)
        if path == "/.well-known/jwks.json":
            return json_reply(200, _endpoints.jwks(state))
        return json_reply(200, _endpoints.discovery(state))

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except _BadRequestError:
            self.close_connection = True
            self._send(
                json_reply(
                    400, {"error": "invalid_request", "error_description": "Bad request body"}
                )
            )
            return
        try:
            reply = self._route(body)
        except Exception:
            # A bug here must not look like a network failure to the client.
            logger.exception("test server failed on %s %s", self.command, urlsplit(self.path).path)
            reply = json_reply(
                500, {"error": "server_error", "error_description": "Internal test server error"}
            )
        if reply.disconnect:
            # Fault injection: drop the connection without an answer.
            self.close_connection = True
            return
        if reply.truncate:
            self.close_connection = True  # the rest of the body never comes
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        names = set()
        for name, value in reply.headers:
            names.add(name.lower())
            self.send_header(name, value)
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if reply.truncate:
            self.wfile.write(reply.body[: len(reply.body) // 2])
            return
        if reply.drip:
            # A dripping endpoint (issue 12): each byte sent on its own, slowly.
            for index in range(len(reply.body)):
                self.wfile.write(reply.body[index : index + 1])
                self.wfile.flush()
                time.sleep(reply.drip)
            return
        self.wfile.write(reply.body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Only method, path and status: query strings and headers may carry
        # codes or tokens.
        del size
        logger.debug("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: object) -> None:
        """Silence the stdlib's stderr logging; it would print request lines."""


class HTTPServer(ThreadingHTTPServer):
    """Threading HTTP server that can close its keep-alive connections."""

    daemon_threads = True
    allow_reuse_address = True
    # The stdlib's backlog of 5 resets connections when a herd of 32 or more
    # clients arrives at once, which is exactly what this server is for.
    request_queue_size = 256

    def __init__(self, host: str, port: int, state: AuthState) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_changed = threading.Condition()
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name with getfqdn(), which
        # can take seconds on machines with slow reverse DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    # socketserver types a request as a socket or, for UDP, a (bytes, socket)
    # pair; a TCP server only ever sees sockets.
    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        if isinstance(request, socket.socket):
            with self._connections_changed:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        super().shutdown_request(request)
        if isinstance(request, socket.socket):
            with self._connections_changed:
                self._connections.discard(request)
                self._connections_changed.notify_all()

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        # A client that hangs up mid-reply is routine here (timeouts, fault
        # tests): log it quietly instead of printing a traceback to stderr.
        logger.debug("error while serving %s", client_address, exc_info=True)

    def close_connections(self, timeout: float = 5.0) -> None:
        """Shut down open connections and wait for their threads to finish."""
        with self._connections_changed:
            for conn in self._connections:
                with contextlib.suppress(OSError):  # already gone
                    conn.shutdown(socket.SHUT_RDWR)
            self._connections_changed.wait_for(lambda: not self._connections, timeout)
