"""``HoxtonAuth.login``: the interactive authorization code flow, with PKCE.

The browser step happens outside Python; everything else is ours: a
one-shot HTTP server on the loopback interface receives the redirect, checks
``state`` and hands the code to the ordinary core (``AuthorizationCode``
grant + token manager), so the tokens land in the shared cache under the
user-session identity like any other.

Imported lazily by ``HoxtonAuth.login``: ``import hoxton_auth`` must not pay
for ``http.server`` and ``webbrowser``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import secrets
import sys
import threading
import time
import webbrowser
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from ._config import ClientConfig
from ._errors import ConfigError, LoginError, TokenRequestError
from ._grant_auths import AuthorizationCodeAuth

__all__ = ["authorize_url", "login", "pkce_pair"]

logger = logging.getLogger("hoxton_auth")

CALLBACK_PATH = "/callback"
REDIRECT_HOSTS = ("127.0.0.1", "localhost")
# A browser may open a connection and never send on it (speculative
# preconnect); each handler thread gives up on such a socket after this long.
HANDLER_TIMEOUT = 10.0

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hoxton-auth: {title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:34em;margin:4em auto;
padding:0 1em;color:#222}}</style></head>
<body><h1>{title}</h1><p>{detail}</p><p>You can close this tab.</p></body></html>
"""


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(code_verifier, code_challenge)`` for the S256 method (RFC 7636 §4.1-4.2)."""
    # 64 random bytes -> 86 URL-safe characters, inside the 43..128 RFC 7636 allows.
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


def authorize_url(config: ClientConfig, redirect_uri: str, state: str, code_challenge: str) -> str:
    """The ``/authorize`` URL the browser opens.

    ``audience`` is sent because Auth0 issues an access token for the API
    only when it is asked for one.
    """
    params = {
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": redirect_uri,
        "audience": config.audience,
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    if config.scope:
        params["scope"] = config.scope
    return f"{config.authorize_url}?{urlencode(params)}"


class _Callback:
    """What the browser brought back; filled once, by the first real callback."""

    def __init__(self, expected_state: str) -> None:
        self.expected_state = expected_state
        self.done = threading.Event()
        self.code: str | None = None
        self.error: str | None = None  # a message for LoginError, never a secret

    def accept(self, query: dict[str, list[str]]) -> tuple[int, str, str] | None:
        """Record a callback; return (status, title, detail) for the page, or None to ignore."""
        if self.done.is_set():
            return 409, "Already done", "This login has already finished."
        state = _first(query, "state")
        code, error = _first(query, "code"), _first(query, "error")
        if code is None and error is None:
            return None  # not an OAuth redirect (a prefetch, a stray visit): keep waiting
        # The state check comes first (RFC 6749 §10.12): a redirect we did not
        # start, even an error one, must not be taken as the answer to ours.
        if state is None or not secrets.compare_digest(state, self.expected_state):
            self.error = (
                "the state parameter of the redirect does not match this login's: "
                "the redirect did not come from the login this process started "
                "(a stale tab, or a forged request)"
            )
            title, detail = "Login failed", "The answer did not match this login attempt."
            status = 400
        elif error is not None:
            description = _first(query, "error_description")
            words = f"{error}: {description}" if description else error
            self.error = f"the identity provider refused the login: {words}"
            title, detail, status = "Login failed", words, 400
        else:
            self.code = code
            title, detail, status = "Logged in", "hoxton-auth has received your login.", 200
        self.done.set()
        return status, title, detail


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


class _Handler(BaseHTTPRequestHandler):
    server: _CallbackServer
    timeout = HANDLER_TIMEOUT

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        answer = None
        if parts.path == CALLBACK_PATH:
            answer = self.server.callback.accept(parse_qs(parts.query))
        if answer is None:
            self._page(404, "Not found", "hoxton-auth is waiting for the login redirect.")
        else:
            self._page(*answer)

    def _page(self, status: int, title: str, detail: str) -> None:
        body = _PAGE.format(title=html.escape(title), detail=html.escape(detail)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes the request line, code included, to stderr: never.
        logger.debug("login callback server: %s", urlsplit(self.path).path)


class _CallbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, callback: _Callback) -> None:
        self.callback = callback
        super().__init__(("127.0.0.1", port), _Handler)


def _open_browser(url: str, open_browser: bool, timeout: float) -> None:
    # The URL is printed first in every case: a browser may "open" on a
    # display the user cannot see (ssh, a container), and a console browser
    # from $BROWSER blocks until it exits.
    if not open_browser:
        sys.stderr.write(f"Open this URL in a browser to log in:\n\n    {url}\n\n")
    else:
        sys.stderr.write(
            f"Opening the login page in your browser; if it does not open, visit:\n\n    {url}\n\n"
        )
        sys.stderr.flush()
        try:
            opened = webbrowser.open(url)  # honours $BROWSER
        except webbrowser.Error as exc:
            logger.debug("no browser: %s", exc)
            opened = False
        if not opened:
            sys.stderr.write("No browser could be opened: open the URL above yourself.\n")
    sys.stderr.write(f"Waiting up to {timeout:g}s for the login...\n")
    sys.stderr.flush()


def login(
    client_id: str,
    client_secret: str | None = None,
    *,
    scope: str | Sequence[str] | None,
    port: int = 0,
    redirect_host: str = "127.0.0.1",
    open_browser: bool = True,
    timeout: float = 300.0,
    **common: Any,
) -> AuthorizationCodeAuth:
    """Run the browser login; see ``HoxtonAuth.login`` for the arguments.

    Raises:
        ConfigError: Bad arguments.
        LoginError: Timeout, refusal, state mismatch, or a refused code.
    """
    if redirect_host not in REDIRECT_HOSTS:
        raise ConfigError(f"redirect_host must be one of {REDIRECT_HOSTS}, got {redirect_host!r}")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ConfigError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    for name in ("code", "redirect_uri", "code_verifier", "username", "password"):
        if name in common:
            raise ConfigError(f"login() does not take {name}: it obtains the code itself")
    # Every argument is checked (by building the auth object without a code)
    # before a port is opened or a browser started.
    config = AuthorizationCodeAuth(client_id, client_secret, scope=scope, **common).config
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(32)
    callback = _Callback(state)
    try:
        server = _CallbackServer(port, callback)
    except OSError as exc:
        raise LoginError(f"cannot listen on 127.0.0.1:{port} for the redirect: {exc}") from exc
    redirect_uri = f"http://{redirect_host}:{server.server_address[1]}{CALLBACK_PATH}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        _open_browser(authorize_url(config, redirect_uri, state, challenge), open_browser, timeout)
        finished = callback.done.wait(max(deadline - time.monotonic(), 0.0))
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    if not finished:
        raise LoginError(
            f"no login redirect reached {redirect_uri} within {timeout:g}s; "
            "run the login again and finish it in the browser"
        )
    if callback.code is None:
        raise LoginError(callback.error or "the login did not return a code")
    auth = AuthorizationCodeAuth(
        client_id,
        client_secret,
        code=callback.code,
        redirect_uri=redirect_uri,
        code_verifier=verifier,
        scope=scope,
        **common,
    )
    try:
        # A login starts a new session: it replaces whatever the cache holds
        # for this identity (perhaps another user's), even a fresh token.
        auth._manager.begin_session(auth._send_requests)
    except TokenRequestError as exc:
        # str(exc) is already in the server's words ("invalid_grant: ... (HTTP 403)").
        raise LoginError(f"the token endpoint refused the authorization code: {exc}") from exc
    logger.debug("logged in: client_id=%s", client_id)
    return auth
