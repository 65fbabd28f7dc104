"""Logging in: in the browser or with a device code, and choosing which (``obtain_login``).

Browser (authorization code + PKCE): a one-shot HTTP server on the loopback
interface receives the redirect, checks ``state`` and hands back the code
(``BrowserCode``), which ``_auth.run_login`` exchanges. Device (RFC 8628), where
no browser can be opened: the user approves a code on another device while
the core's ``poll_device_code`` flow polls; the answer begins the logged-in
session in the cache. Knows no auth class; imported only when a login runs.
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import hashlib
import html
import logging
import os
import random
import secrets
import selectors
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

from ._config import LOGIN_PORT_VARIABLE
from ._errors import ConfigError, LoginError
from ._flow import DeviceAuthorization, poll_device_code, request_device_code
from ._grants import PROMPTS, authorize_url
from ._renewal import drive
from ._requests import RequestsTransport
from ._session import TokenManager

__all__ = [
    "LOGIN_PORTS",
    "PORT_VARIABLE",
    "BrowserCode",
    "LoginOptions",
    "browser_available",
    "callback_urls",
    "check_login_arguments",
    "obtain_login",
]

logger = logging.getLogger("hoxton_auth")

CALLBACK_PATH = "/callback"
# A browser may open a connection and never send on it (speculative
# preconnect); each handler thread gives up on such a socket after this long.
HANDLER_TIMEOUT = 10.0

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hoxton-auth: {title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:34em;margin:4em auto;
padding:0 1em;color:#222}}</style></head>
<body><h1>{title}</h1><p>{detail}</p><p>You can close this tab.</p></body></html>
"""


# -- login()'s own arguments ----------------------------------------------------------

REDIRECT_HOSTS = ("127.0.0.1", "localhost")
#: Callback ports tried in order when none is given: register
#: ``http://127.0.0.1:<port>/callback`` for each in the Auth0 application's
#: Allowed Callback URLs (Auth0 matches the port exactly).
LOGIN_PORTS = (8765, 8766, 8767, 8768)
#: Overrides ``LOGIN_PORTS`` with one port.
PORT_VARIABLE = LOGIN_PORT_VARIABLE


@dataclasses.dataclass(frozen=True)
class LoginOptions:
    """``login()``'s own arguments (documented at ``HoxtonAuth.login``).

    ``sleep`` waits between device polls (tests pass one that does not sleep).
    """

    port: int | None = None
    redirect_host: str = "127.0.0.1"
    open_browser: bool = True
    timeout: float = 300.0
    device: bool | None = None
    prompt: str | None = None
    sleep: Callable[[float], None] = time.sleep


def check_login_arguments(options: LoginOptions, common: Mapping[str, Any]) -> tuple[int, ...]:
    """Check ``login()``'s own arguments; return the callback ports to try.

    Raises:
        ConfigError: A bad argument (named).
    """
    redirect_host, timeout, prompt = options.redirect_host, options.timeout, options.prompt
    if redirect_host not in REDIRECT_HOSTS:
        raise ConfigError(f"redirect_host must be one of {REDIRECT_HOSTS}, got {redirect_host!r}")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ConfigError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if options.device not in (True, False, None):
        raise ConfigError(f"device must be True, False or None, got {options.device!r}")
    if prompt is not None and prompt not in PROMPTS:
        raise ConfigError(f"prompt must be one of {PROMPTS}, got {prompt!r}")
    for name in ("code", "redirect_uri", "code_verifier", "username", "password"):
        if name in common:
            raise ConfigError(f"login() does not take {name}: it obtains the code itself")
    return _ports(options.port, os.environ)


def _check_port(port: object) -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigError(f"port must be an integer from 0 to 65535, got {port!r}")
    return port


def _ports(port: int | None, environ: Mapping[str, str]) -> tuple[int, ...]:
    """The ports to try, in order: the one given, else $HOXTON_LOGIN_PORT, else LOGIN_PORTS."""
    if port is not None:
        return (_check_port(port),)
    value = environ.get(PORT_VARIABLE, "").strip()
    if not value:
        return LOGIN_PORTS
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"${PORT_VARIABLE} must be a port number, got {value!r}") from None
    try:
        return (_check_port(number),)
    except ConfigError as exc:
        raise ConfigError(f"${PORT_VARIABLE}: {exc}") from None


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(code_verifier, code_challenge)`` for the S256 method (RFC 7636 §4.1-4.2)."""
    # 64 random bytes -> 86 URL-safe characters, inside the 43..128 RFC 7636 allows.
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


class _Callback:
    """What the browser brought back; filled once, by the first real callback."""

    def __init__(self, expected_state: str) -> None:
        self.expected_state = expected_state
        self.done = threading.Event()
        self.code: str | None = None
        self.error: str | None = None  # a message for LoginError, never a secret
        self.refused = 0  # redirects with a wrong or missing state, answered 400

    def accept(self, query: dict[str, list[str]]) -> tuple[int, str, str] | None:
        """Record a callback; return (status, title, detail) for the page, or None to ignore."""
        if self.done.is_set():
            return 409, "Already done", "This login has already finished."
        state = _first(query, "state")
        code, error = _first(query, "code"), _first(query, "error")
        if code is None and error is None:
            return None  # not an OAuth redirect (a prefetch, a stray visit): keep waiting
        # The state check comes first (RFC 6749 §10.12): a redirect we did not start,
        # even an error one, is refused and the login goes on (any local process or
        # web page can send one, and it must not be able to end a login).
        # Compared as bytes: compare_digest refuses str with non-ASCII characters
        # (a TypeError in the handler thread, a traceback on the terminal; issue 22).
        given = None if state is None else state.encode("utf-8", "surrogateescape")
        if given is None or not secrets.compare_digest(given, self.expected_state.encode()):
            self.refused += 1
            logger.warning(
                "login callback with a wrong or missing state refused (a stale tab, or a "
                "forged request); still waiting for the login"
            )
            return 400, "Not this login", "The answer did not match this login attempt."
        if error is not None:
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

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints the traceback to stderr: whatever a local process or
        # web page sends to the callback port must not flood the terminal (issue 22).
        logger.debug("login callback server: a request failed", exc_info=True)

    def __init__(self, host: str, port: int, callback: _Callback) -> None:
        self.callback = callback
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)


def _serve(server: _CallbackServer, wake: socket.socket) -> None:
    # Not serve_forever(): its shutdown() waits for the next 50 ms poll; a
    # byte on ``wake`` ends this loop at once (issue 15).
    with selectors.DefaultSelector() as selector:
        selector.register(server, selectors.EVENT_READ)
        selector.register(wake, selectors.EVENT_READ)
        while not any(key.fileobj is wake for key, _ in selector.select()):
            server.handle_request()  # the socket is readable: accepts without waiting


def callback_urls(ports: Sequence[int], redirect_host: str = "127.0.0.1") -> list[str]:
    """The redirect URIs a login may use: register each in Auth0's Allowed Callback URLs."""
    return [f"http://{redirect_host}:{port}{CALLBACK_PATH}" for port in ports]


def _busy(exc: OSError) -> bool:
    return exc.errno in (errno.EADDRINUSE, errno.EACCES)


def _listen(redirect_host: str, ports: Sequence[int], callback: _Callback) -> list[_CallbackServer]:
    """Listen on the first free port of ``ports`` at every address ``redirect_host`` names.

    ``localhost`` may resolve to 127.0.0.1 or ::1 in the browser, so both are
    bound on the same port (a squatter on the other would receive the code);
    ::1 is skipped only when the machine has no IPv6 loopback at all.

    Raises:
        LoginError: Every port is busy (the message lists the callback URLs
            to register), or listening failed for another reason.
    """
    attempts = tuple(ports)
    if attempts == (0,) and redirect_host == "localhost":
        # Any port: the one IPv4 picks may be taken on ::1; try a few.
        attempts = (0,) * 5
    for port in attempts:
        try:
            first = _CallbackServer("127.0.0.1", port, callback)
        except OSError as exc:
            if _busy(exc) and port != 0:
                logger.debug("port %d busy: %s", port, exc)
                continue
            raise LoginError(f"cannot listen on 127.0.0.1:{port} for the redirect: {exc}") from exc
        servers = [first]
        if redirect_host == "localhost":
            try:
                servers.append(_CallbackServer("::1", first.server_address[1], callback))
            except OSError as exc:
                if exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    first.server_close()
                    if _busy(exc):
                        logger.debug("port %d busy on ::1: %s", first.server_address[1], exc)
                        continue
                    raise LoginError(
                        f"cannot listen on [::1]:{port} for the redirect: {exc}"
                    ) from exc
                logger.debug("no IPv6 loopback (%s): localhost is 127.0.0.1 only", exc)
        return servers
    urls = ", ".join(callback_urls(ports, redirect_host))
    busy = f"port {ports[0]} is busy" if len(ports) == 1 else "every callback port is busy"
    raise LoginError(
        f"cannot listen for the redirect: {busy} ({', '.join(map(str, ports))}); free one, or "
        f"pick another with --port or ${PORT_VARIABLE} and allow its callback URL in the Auth0 "
        f"application. The callback URLs to register for these ports: {urls}"
    )


def _open_browser(url: str, open_browser: bool, timeout: float) -> None:
    # The URL is printed first in every case: a browser may "open" on a display the
    # user cannot see (ssh, a container); a console browser ($BROWSER) blocks.
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


def browser_available(
    environ: Mapping[str, str] | None = None, platform: str | None = None
) -> bool:
    """Whether a browser can be opened on this machine for the user to see.

    ``$BROWSER`` set: yes. An SSH session (``$SSH_CONNECTION``, ``$SSH_TTY``):
    no, it would open on the remote machine. Linux and the BSDs without
    ``$DISPLAY`` or ``$WAYLAND_DISPLAY``: no. Otherwise (macOS, Windows): yes.
    """
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if environ.get("BROWSER"):
        return True
    if environ.get("SSH_CONNECTION") or environ.get("SSH_TTY"):
        return False
    if platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))
    return True


@dataclasses.dataclass(frozen=True)
class BrowserCode:
    """What the browser login brings back: the code and what goes with it."""

    code: str = dataclasses.field(repr=False)
    redirect_uri: str
    code_verifier: str = dataclasses.field(repr=False)


def obtain_login(
    session: TokenManager, options: LoginOptions, ports: Sequence[int]
) -> BrowserCode | None:
    """Run the browser login up to the code in hand, or the whole device login (``None``).

    Raises:
        LoginError: Timeout, refusal, state mismatch, every port busy, or the
            token endpoint refused the approved device code.
    """
    config = session.config
    redirect_host, timeout, device = options.redirect_host, options.timeout, options.device
    if device is None:
        # --no-browser keeps the browser flow: the user opens the URL (perhaps
        # through an SSH tunnel to the callback port).
        device = options.open_browser and not browser_available()
        if device:
            sys.stderr.write("No browser can be opened here: logging in with a device code.\n")
    if device:
        device_login(session, timeout, options.sleep)
        return None
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(32)
    callback = _Callback(state)
    servers = _listen(redirect_host, ports, callback)
    redirect_uri = f"http://{redirect_host}:{servers[0].server_address[1]}{CALLBACK_PATH}"
    wake = socket.socketpair()
    threads = [
        threading.Thread(target=_serve, args=(server, wake[0]), daemon=True) for server in servers
    ]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + timeout
        url = authorize_url(config, redirect_uri, state, challenge, options.prompt)
        _open_browser(url, options.open_browser, timeout)
        finished = callback.done.wait(max(deadline - time.monotonic(), 0.0))
    finally:
        wake[1].send(b"\0")
        for thread in threads:
            thread.join()
        for end in wake:
            end.close()
        for server in servers:
            server.server_close()
    if not finished:
        n, refused = callback.refused, ""
        if n:
            refused = f" ({n} redirect(s) with a wrong or missing state were refused)"
        raise LoginError(
            f"no login redirect reached {redirect_uri} within {timeout:g}s{refused}; "
            "run the login again and finish it in the browser"
        )
    if callback.code is None:
        raise LoginError(callback.error or "the login did not return a code")
    return BrowserCode(callback.code, redirect_uri, verifier)


# -- the device login (RFC 8628) ---------------------------------------------------------

# Without a terminal, a progress line at most this often (seconds).
_PLAIN_PROGRESS_EVERY = 60.0


def device_login(session: TokenManager, timeout: float, sleep: Callable[[float], None]) -> None:
    """Show a code to approve elsewhere, poll until it is, and store it as ``session``'s login.

    It becomes this OS user's logged-in session, as a browser login's does.

    Raises:
        LoginError: The code expired or was denied, ``timeout`` passed, or
            the token endpoint refused the approved code.
    """
    with _KeptInterrupts() as interrupts:
        _device_login(session, timeout, sleep, interrupts)


def _device_login(
    session: TokenManager,
    timeout: float,
    sleep: Callable[[float], None],
    interrupts: _KeptInterrupts,
) -> None:
    config = session.config
    started = time.time()
    # The user's verify=/cert=/proxy= apply to the device requests too (issue 14).
    send = RequestsTransport(config.network)
    authorization = drive(
        request_device_code(config, started, random.Random()),  # noqa: S311  jitter, not crypto
        send,
    )
    out, complete = sys.stderr, authorization.verification_uri_complete
    out.write(
        f"To log in, open this page on any device:\n\n    {authorization.verification_uri}\n\n"
        f"and enter the code:  {authorization.user_code}\n\n"
    )
    if complete:
        out.write(f"or open this link, which has the code in it:\n\n    {complete}\n\n")
    out.flush()
    bounded = dataclasses.replace(
        authorization, expires_at=min(authorization.expires_at, started + timeout)
    )
    try:
        wait = _progress(bounded, sleep, out)
        token = drive(poll_device_code(config, bounded), send, interrupts.checked(wait))
    finally:
        if out.isatty():
            out.write("\n")
            out.flush()
    # The same storing call as a browser login's: it replaces the cached session.
    session.store_login(token, send)
    logger.debug("logged in with a device code: client_id=%s", config.client_id)


class _KeptInterrupts:
    """Ctrl-C always ends a device login, even when CPython drops its ``KeyboardInterrupt``.

    A ``KeyboardInterrupt`` raised while a finalizer or ``__del__`` runs cannot
    propagate: CPython prints "Exception ignored in: <finalize object ...>" and
    carries on. Each poll's requests session closes its urllib3 connection
    pool, whose ``weakref.finalize`` closes the sockets, so a Ctrl-C has a fair
    chance of landing there, and the login then polled on until its timeout
    (the hang of ``tests/test_cli.py::test_interrupted_login_exits_130``).
    While the login runs, ``sys.unraisablehook`` notes such an interrupt
    (other unraisable errors go to the previous hook) and the next wait
    between polls raises it again.
    """

    def __init__(self) -> None:
        self._seen = False
        self._previous = sys.unraisablehook

    def __enter__(self) -> _KeptInterrupts:
        self._previous = sys.unraisablehook
        sys.unraisablehook = self._note
        return self

    def __exit__(self, *exc_info: object) -> None:
        if sys.unraisablehook == self._note:  # not if someone else replaced it meanwhile
            sys.unraisablehook = self._previous

    def _note(self, unraisable: sys.UnraisableHookArgs) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            self._seen = True
        else:
            self._previous(unraisable)

    def checked(self, sleep: Callable[[float], None]) -> Callable[[float], None]:
        """``sleep``, raising ``KeyboardInterrupt`` first if one was dropped."""

        def wait(delay: float) -> None:
            if self._seen:
                self._seen = False
                raise KeyboardInterrupt
            sleep(delay)

        return wait


def _progress(
    authorization: DeviceAuthorization, sleep: Callable[[float], None], out: IO[str]
) -> Callable[[float], None]:
    """A ``sleep`` that shows the time left: a countdown on a terminal, else a line a minute."""
    shown_at: float | None = None

    def wait(delay: float) -> None:
        nonlocal shown_at
        # Never past the deadline (the code's life, cut to ``timeout``): a server's
        # huge interval or many slow_downs must not hold the login (issue 22).
        delay = min(delay, max(authorization.expires_at - time.time(), 0.0))
        if not out.isatty():
            now = time.time()
            if shown_at is None or now - shown_at >= _PLAIN_PROGRESS_EVERY:
                shown_at = now
                left = max(authorization.expires_at - now, 0.0)
                out.write(f"Waiting for the login to be approved ({left:.0f}s left)...\n")
                out.flush()
            sleep(delay)
            return
        # In steps of at most a second, rewriting one line with the time left.
        code = authorization.user_code
        while delay > 0:
            minutes, seconds = divmod(int(max(authorization.expires_at - time.time(), 0.0)), 60)
            out.write(f"\rWaiting for approval of {code}: {minutes}:{seconds:02d} left ")
            out.flush()
            step = min(1.0, delay)
            sleep(step)
            delay -= step

    return wait
