"""`AuthServer`: the public face of the local Auth0-compatible test server."""

from __future__ import annotations

import selectors
import socket
import threading
from typing import TYPE_CHECKING, Any

from hoxton_auth.testing._assertions import public_key_of
from hoxton_auth.testing._constants import (
    AUDIENCE,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    PUBLIC_CLIENT_ID,
)
from hoxton_auth.testing._controls import ServerControls
from hoxton_auth.testing._state import AuthState

if TYPE_CHECKING:
    import ssl
    from collections.abc import Sequence
    from types import TracebackType

    from hoxton_auth.testing._handler import HTTPServer

__all__ = ["AuthServer"]


def _serve(httpd: HTTPServer, wake: socket.socket) -> None:
    """Serve until ``wake`` turns readable.

    Not ``serve_forever()``: its ``shutdown()`` waits for the next poll (50 ms
    each, ~18 s of a 100 s test run was spent there, issue 15); a byte on
    ``wake`` ends this loop at once.
    """
    with selectors.DefaultSelector() as selector:
        selector.register(httpd, selectors.EVENT_READ)
        selector.register(wake, selectors.EVENT_READ)
        while not any(key.fileobj is wake for key, _ in selector.select()):
            httpd.handle_request()  # the socket is readable: accepts without waiting


class AuthServer(ServerControls):
    """A local identity provider that speaks Auth0's token and authorize APIs.

    It knows a confidential client (`DEFAULT_CLIENT_ID` / `DEFAULT_CLIENT_SECRET`),
    a public client (`PUBLIC_CLIENT_ID`) and a user (`DEFAULT_USERNAME` /
    `DEFAULT_PASSWORD`); add more with `add_client` and `add_user`. It signs
    RS256 access tokens for `AUDIENCE`, rotates refresh tokens with reuse
    detection, and serves a protected echo API under `/api/` that checks them.

    Example:
        with AuthServer() as server:
            auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
            requests.get(server.api_url, auth=auth)
            assert server.count("client_credentials") == 1

    Args:
        host: Interface to listen on.
        port: TCP port; 0 picks a free one (see `domain` after `start`).
        token_lifetime: Seconds access tokens stay valid (`expires_in`).
        token_delay: Seconds to wait before answering each token request.
        rotate_refresh_tokens: Issue a new refresh token on each use and treat
            reuse of an old one as theft (Auth0's refresh token rotation).
        clock_skew: Seconds added to the server's clock, for `iat`, `exp`,
            code expiry and the echo API's expiry check.
        ssl_context: Serve HTTPS with this server-side context (its
            certificate, and `verify_mode = CERT_REQUIRED` for mutual TLS);
            `domain` is then `https://...`. None serves plain HTTP.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_lifetime: int = 86400,
        token_delay: float = 0.0,
        rotate_refresh_tokens: bool = True,
        clock_skew: float = 0.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._host = host
        self._ssl_context = ssl_context
        self._port = port
        self._state = AuthState(
            token_lifetime=token_lifetime,
            token_delay=token_delay,
            rotate_refresh_tokens=rotate_refresh_tokens,
            clock_skew=clock_skew,
        )
        self._state.add_client(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, None)
        self._state.add_client(PUBLIC_CLIENT_ID, None, None)
        self._state.add_user(DEFAULT_USERNAME, DEFAULT_PASSWORD)
        self._lifecycle = threading.Lock()
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None

    def __repr__(self) -> str:
        where = self.domain if self._httpd is not None else "stopped"
        return f"<AuthServer {where}>"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> AuthServer:
        """Bind, generate (or reuse) the signing key and serve in a thread.

        Calling it on a running server does nothing.

        Returns:
            The server itself, for `server = AuthServer().start()`.
        """
        with self._lifecycle:
            if self._httpd is not None:
                return self
            from hoxton_auth.testing._handler import HTTPServer
            from hoxton_auth.testing._keys import signing_key

            key = signing_key()
            self._state.stopping.clear()
            httpd = HTTPServer(self._host, self._port, self._state)
            scheme = "http"
            if self._ssl_context is not None:
                # The handshake happens on the first read, in the connection's
                # own thread: a client that fails it never stalls the accept loop.
                httpd.socket = self._ssl_context.wrap_socket(
                    httpd.socket, server_side=True, do_handshake_on_connect=False
                )
                scheme = "https"
            port = int(httpd.server_address[1])
            host = f"[{self._host}]" if ":" in self._host else self._host
            with self._state.lock:
                self._state.key = key
                self._state.issuer = f"{scheme}://{host}:{port}/"
            wake = socket.socketpair()
            thread = threading.Thread(
                target=_serve,
                args=(httpd, wake[0]),
                name=f"hoxton-auth-testing-{port}",
                daemon=True,
            )
            thread.start()
            self._httpd, self._thread, self._wake = httpd, thread, wake
            return self

    def stop(self) -> None:
        """Stop serving and close every socket. Safe to call twice."""
        with self._lifecycle:
            httpd, thread, wake = self._httpd, self._thread, self._wake
            self._httpd = self._thread = self._wake = None
        if httpd is None or thread is None or wake is None:
            return
        self._state.stopping.set()  # delayed answers end now, not after their delay
        wake[1].send(b"\0")
        thread.join()
        for end in wake:
            end.close()
        httpd.server_close()
        httpd.close_connections()

    def __enter__(self) -> AuthServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------

    @property
    def domain(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:54321` (`https://` with `ssl_context`).

        Raises:
            RuntimeError: The server has not been started.
        """
        issuer, _ = self._state.signer()
        return issuer.rstrip("/")

    @property
    def token_url(self) -> str:
        """`domain + "/oauth/token"`."""
        return self.domain + "/oauth/token"

    @property
    def api_url(self) -> str:
        """`domain + "/api/echo"`, the protected echo API."""
        return self.domain + "/api/echo"

    @property
    def jwks(self) -> dict[str, Any]:
        """The public JSON Web Key Set, as served at `/.well-known/jwks.json`.

        Raises:
            RuntimeError: The server has not been started.
        """
        _, key = self._state.signer()
        return {"keys": [dict(key.jwk)]}

    # -- configuration -----------------------------------------------------

    def add_client(
        self,
        client_id: str,
        client_secret: str | None = None,
        *,
        redirect_uris: Sequence[str] | None = None,
        public_key: Any = None,
    ) -> None:
        """Register (or replace) a client.

        Args:
            client_id: The client's id.
            client_secret: Its secret; None (and no `public_key`) makes a
                public client, which authenticates with PKCE instead.
            redirect_uris: Allowed callback URLs, matched exactly; None
                allows any loopback `http://` URL (any port, any path).
            public_key: Private Key JWT (RFC 7523): the client authenticates
                with assertions signed by the matching private key. PEM
                (`str`/`bytes`, of the public or the private key) or a
                `cryptography` key object.

        Raises:
            ValueError: Both a secret and a key, or a key that does not load.
        """
        key = None
        if public_key is not None:
            if client_secret is not None:
                msg = "a client authenticates with a secret or a public key, not both"
                raise ValueError(msg)
            key = public_key_of(public_key)
        self._state.add_client(client_id, client_secret, redirect_uris, key)

    def accept_assertion_audience(self, audience: str) -> None:
        """Accept client assertions (Private Key JWT) addressed to ``audience`` too.

        By default an assertion's ``aud`` must be this server: its `domain`
        with a trailing slash (as Auth0 wants it), without, or its token URL.
        A server reached under another name (a custom domain, a proxy's host)
        is told that name here, e.g. ``"https://auth.example.com/"``.
        """
        with self._state.lock:
            self._state.assertion_audiences.append(audience)

    def add_user(self, username: str, password: str) -> None:
        """Register (or replace) a user for the password grant."""
        self._state.add_user(username, password)

    # -- minting -------------------------------------------------------------

    def mint_access_token(
        self,
        *,
        subject: str = f"{DEFAULT_CLIENT_ID}@clients",
        lifetime: int | None = None,
        scope: str = "",
        client_id: str = DEFAULT_CLIENT_ID,
    ) -> str:
        """Sign an access token the echo API accepts, without a token request.

        Args:
            subject: The `sub` claim.
            lifetime: Seconds until `exp` (default `token_lifetime`); a
                negative value gives an already expired token.
            scope: The `scope` claim (omitted when empty).
            client_id: The `azp` claim.

        Raises:
            RuntimeError: The server has not been started.
        """
        return self._state.mint_access_token(
            subject=subject, client_id=client_id, scope=scope, lifetime=lifetime
        )

    def mint_refresh_token(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        username: str = DEFAULT_USERNAME,
        scope: str = "openid offline_access",
    ) -> str:
        """Issue a refresh token as if `username` had logged in to `client_id`.

        Raises:
            KeyError: The client or user is unknown.
        """
        with self._state.lock:
            if client_id not in self._state.clients:
                raise KeyError(f"unknown client: {client_id}")
            if username not in self._state.users:
                raise KeyError(f"unknown user: {username}")
            family_id = self._state.new_family(client_id, username, scope, AUDIENCE)
            return self._state.new_refresh_token(family_id)
