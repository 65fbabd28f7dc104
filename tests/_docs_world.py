"""The real tenant and API, played on loopback, for the documentation's examples.

The examples in README.md and docs/ are written as a user writes them: the
tenant is ``https://auth.hoxton.ai``, the API ``https://api.hoxton.cloud``,
the client ``"CLIENT_ID"``/``"CLIENT_SECRET"``. To run them unchanged, this
module builds a small world in which those names lead to local servers:

* the package's own ``AuthServer`` over TLS, playing the tenant, with the
  clients and users the examples name;
* ``ApiServer``, a protected API over TLS that accepts only a valid access
  token of that tenant (RS256, checked against its JWKS) and records every
  call it refused, so that an example whose token never arrived fails;
* ``ConnectProxy``, an HTTPS proxy (``CONNECT`` only) that sends
  ``auth.hoxton.ai:443`` and ``api.hoxton.cloud:443`` to them and refuses
  every other host (no example reaches the internet);
* a certificate authority made by ``trustme`` whose certificate names both
  hosts.

``HTTPS_PROXY`` and the CA bundle variables (``REQUESTS_CA_BUNDLE``,
``SSL_CERT_FILE``, ``CURL_CA_BUNDLE``) point requests, httpx, the library's
own token requests and ``curl`` at them: what every client reads from the
environment by default. Nothing in requests, httpx or the library is patched.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import selectors
import socket
import socketserver
import ssl
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = ["API", "TENANT", "ApiServer", "ConnectProxy", "running"]

TENANT = "auth.hoxton.ai"
API = "api.hoxton.cloud"


class ApiServer:
    """A protected API: 200 with a JSON echo for a valid bearer token, else 401.

    Args:
        context: The server-side TLS context (its certificate names ``API``).
        jwks: The tenant's public keys.
        audience: The ``aud`` a token must carry.
    """

    def __init__(self, context: ssl.SSLContext, jwks: Mapping[str, Any], audience: str) -> None:
        import jwt

        self._keys = {key["kid"]: jwt.PyJWK(key) for key in jwks["keys"]}
        self._audience = audience
        self.refused: list[str] = []
        self.accepted: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        self.rfile.read(size + 2)
                        if size == 0:
                            break
                subject = outer.check(self.headers.get("Authorization"))
                where = f"{self.command} {self.path}"
                if subject is None:
                    outer.refused.append(where)
                    status, body = 401, {"error": "invalid_token"}
                else:
                    outer.accepted.append(where)
                    status, body = 200, {"path": self.path, "sub": subject}
                data = json.dumps(body).encode()
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def check(self, header: str | None) -> str | None:
        """The token's subject if ``header`` carries a valid token of the tenant, else None."""
        import jwt

        if header is None or not header.startswith("Bearer "):
            return None
        token = header[len("Bearer ") :]
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._keys[kid]
            claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=self._audience)
        except (jwt.PyJWTError, KeyError):
            return None
        return str(claims.get("sub"))

    def start(self) -> ApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


class ConnectProxy:
    """An HTTPS proxy that tunnels ``CONNECT host:port`` to the routes it knows, only.

    Args:
        routes: ``"host:port"`` -> the loopback port to connect to instead.
    """

    def __init__(self, routes: Mapping[str, int]) -> None:
        self.routes = dict(routes)
        self.refused: list[str] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            rbufsize = 0  # unbuffered: no byte of the tunnel is left in a reader's buffer

            def handle(self) -> None:
                request = self.rfile.readline(65537).decode("latin-1").split()
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # the request's headers
                if len(request) != 3 or request[0] != "CONNECT" or request[1] not in outer.routes:
                    outer.refused.append(" ".join(request))
                    self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                    return
                upstream = socket.create_connection(("127.0.0.1", outer.routes[request[1]]))
                with upstream:
                    self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self.wfile.flush()
                    _relay(self.connection, upstream)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ConnectProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    with selectors.DefaultSelector() as selector:
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        while True:
            for key, _ in selector.select():
                source: socket.socket = key.fileobj  # type: ignore[assignment] # registered sockets
                try:
                    data = source.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                key.data.sendall(data)


@contextlib.contextmanager
def running(*servers: ApiServer | ConnectProxy) -> Iterator[None]:
    """Start ``servers``; stop them all on the way out."""
    started: list[ApiServer | ConnectProxy] = []
    try:
        for server in servers:
            started.append(server.start())
        yield
    finally:
        for server in reversed(started):
            server.stop()
