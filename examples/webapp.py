"""A web back end on hoxton-auth: users log in with Auth0, several worker processes serve them.

Standard library only (``wsgiref``), POSIX. Try it offline against the
embedded test identity provider, which approves every login at once::

    python examples/webapp.py --demo --workers 3

It prints one URL per worker process (each on its own port, as if behind a
load balancer). Open ``/login?user=alice@example.com`` on one worker, come
back through another, call the API through a third: the login is begun, finished
and resumed wherever the request lands. ``bob@example.com`` is the other user.

Against your Auth0 application (its Allowed Callback URLs must hold the
printed callback URL; the client secret comes from ``$HOXTON_CLIENT_SECRET``)::

    python examples/webapp.py --domain https://your-tenant.eu.auth0.com \\
        --client-id ID --api-url https://api.hoxton.cloud/v1/me --cache redis://localhost:6379/0

What each worker keeps is nothing: the browser's cookie names a server-side
session record (a file under ``--sessions`` here; your framework's session
store in a real app) holding the ``LoginRequest`` JSON during the login and
the ``session_id`` after it. The tokens live in the shared token cache, where
any worker finds them with ``AuthorizationCodeAuth.resume``.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.util import request_uri

import requests

from hoxton_auth import (
    AuthorizationCodeAuth,
    FileTokenCache,
    HoxtonAuthError,
    LoginRequest,
    NotLoggedInError,
    RedisTokenCache,
    TokenCache,
)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
COOKIE = "webapp-session"
DEMO_USERS = {"alice@example.com": "alice-demo-password", "bob@example.com": "bob-demo-password"}


# -- the app's own server-side sessions (your framework has these) ------------------------


class SessionStore:
    """Browser sessions as small JSON files, one per cookie value, shared by the workers."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, cookie: str) -> Path:
        # A hash: a cookie value never becomes a path of its own choosing.
        return self.directory / hashlib.sha256(cookie.encode()).hexdigest()

    def load(self, cookie: str | None) -> dict[str, str]:
        if not cookie:
            return {}
        try:
            data = json.loads(self._path(cookie).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, cookie: str, data: dict[str, str]) -> None:
        fd, temp = tempfile.mkstemp(dir=self.directory)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
        os.replace(temp, self._path(cookie))


# -- the app ----------------------------------------------------------------------------


class WebApp:
    """The WSGI application of one worker."""

    def __init__(self, args: argparse.Namespace, client_secret: str | None) -> None:
        self.args = args
        self.client_secret = client_secret
        self.sessions = SessionStore(Path(args.sessions))
        # One cache object per worker process, shared by its requests.
        self.cache: TokenCache = (
            RedisTokenCache(args.cache) if "://" in args.cache else FileTokenCache(args.cache)
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        cookies = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        cookie = cookies[COOKIE].value if COOKIE in cookies else None
        path = environ.get("PATH_INFO", "/")
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        try:
            if path == "/login":
                return self.login(start_response, cookie, query.get("user"))
            if path == "/callback":
                return self.callback(start_response, cookie, request_uri(environ))
            if path == "/api":
                return self.api(start_response, cookie)
            if path == "/logout":
                return self.logout(start_response, cookie)
            if path == "/":
                return self.home(start_response, cookie)
        except HoxtonAuthError as exc:  # the library's messages hold no secret
            return self.page(start_response, "400 Bad Request", f"Login failed: {exc}")
        return self.page(start_response, "404 Not Found", "Not found.")

    def resume(self, cookie: str | None) -> AuthorizationCodeAuth | None:
        """This browser's Hoxton session, from whichever worker finished its login."""
        session_id = self.sessions.load(cookie).get("session_id")
        if session_id is None:
            return None
        try:
            return AuthorizationCodeAuth.resume(
                session_id,
                self.args.client_id,
                self.client_secret,
                cache=self.cache,
                domain=self.args.domain,
            )
        except NotLoggedInError:  # logged out elsewhere, or expired
            return None

    def login(
        self, start_response: StartResponse, cookie: str | None, user: str | None
    ) -> list[bytes]:
        request = AuthorizationCodeAuth.begin(
            self.args.client_id, redirect_uri=self.args.redirect_uri, domain=self.args.domain
        )
        cookie = cookie or secrets.token_urlsafe(32)
        self.sessions.save(cookie, {"login": request.to_json()})
        url = request.url + (f"&{urlencode({'login_hint': user})}" if user else "")
        return self.redirect(start_response, url, cookie)

    def callback(self, start_response: StartResponse, cookie: str | None, url: str) -> list[bytes]:
        stored = self.sessions.load(cookie).get("login")
        if cookie is None or stored is None:
            return self.page(start_response, "400 Bad Request", "No login in progress.")
        auth = LoginRequest.from_json(stored).finish(url, self.client_secret, cache=self.cache)
        assert auth.session_id is not None  # noqa: S101  finish() always starts a session
        self.sessions.save(cookie, {"session_id": auth.session_id})
        return self.redirect(start_response, "/", cookie)

    def api(self, start_response: StartResponse, cookie: str | None) -> list[bytes]:
        auth = self.resume(cookie)
        if auth is None:
            body = json.dumps({"error": "login required", "worker": os.getpid()})
            start_response("401 Unauthorized", [("Content-Type", "application/json")])
            return [body.encode()]
        answer = requests.get(self.args.api_url, auth=auth, timeout=30)
        body = json.dumps(
            {"worker": os.getpid(), "status": answer.status_code, "api": answer.json()}
        )
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body.encode()]

    def logout(self, start_response: StartResponse, cookie: str | None) -> list[bytes]:
        auth = self.resume(cookie)
        if auth is not None:
            auth.logout()  # revoked, and gone from the cache for every worker
        if cookie is not None:
            self.sessions.save(cookie, {})
        return self.redirect(start_response, "/", cookie)

    def home(self, start_response: StartResponse, cookie: str | None) -> list[bytes]:
        auth = self.resume(cookie)
        info = auth.token_info() if auth is not None else None
        if auth is None:
            text = 'Not logged in. <a href="/login">Log in</a>'
        else:
            who = html.escape(info.subject or "?") if info is not None else "?"
            text = (
                f'Logged in as {who}. <a href="/api">Call the API</a> <a href="/logout">Log out</a>'
            )
        return self.page(start_response, "200 OK", f"{text} (worker {os.getpid()})", escape=False)

    @staticmethod
    def redirect(start_response: StartResponse, url: str, cookie: str | None) -> list[bytes]:
        headers = [("Location", url)]
        if cookie is not None:
            headers.append(("Set-Cookie", f"{COOKIE}={cookie}; HttpOnly; SameSite=Lax; Path=/"))
        start_response("302 Found", headers)
        return [b""]

    @staticmethod
    def page(
        start_response: StartResponse, status: str, text: str, escape: bool = True
    ) -> list[bytes]:
        body = f"<!DOCTYPE html><title>webapp</title><p>{html.escape(text) if escape else text}</p>"
        start_response(status, [("Content-Type", "text/html; charset=utf-8")])
        return [body.encode()]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line holds the callback's code


def serve_worker(args: argparse.Namespace) -> int:
    """One worker process: serve the inherited listening socket until terminated."""
    listening = socket.socket(fileno=args.listen_fd)
    server = WSGIServer(listening.getsockname(), QuietHandler, bind_and_activate=False)
    server.socket.close()
    server.socket = listening
    server.server_name, server.server_port = listening.getsockname()[:2]
    server.setup_environ()
    server.set_app(WebApp(args, os.environ.get("HOXTON_CLIENT_SECRET") or None))
    # SIGTERM keeps its default action, an immediate exit: a Python handler's
    # SystemExit could land inside a request, where wsgiref's handler swallows it.
    server.serve_forever()
    return 0


# -- the parent: listening sockets, worker processes, the demo identity provider ------------


def run(args: argparse.Namespace) -> int:
    import contextlib

    with contextlib.ExitStack() as stack:
        environment = dict(os.environ)
        if args.demo:
            from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

            server = stack.enter_context(AuthServer())
            for user, password in DEMO_USERS.items():
                server.add_user(user, password)
            args.domain, args.api_url = server.domain, server.api_url
            args.client_id = DEFAULT_CLIENT_ID  # allows any loopback callback URL
            environment["HOXTON_CLIENT_SECRET"] = DEFAULT_CLIENT_SECRET
        if not args.domain or not args.client_id or not args.api_url:
            sys.exit("--domain, --client-id and --api-url are required (or --demo)")
        if args.sessions is None:
            args.sessions = stack.enter_context(tempfile.TemporaryDirectory(prefix="webapp-"))
        Path(args.sessions).mkdir(mode=0o700, parents=True, exist_ok=True)
        if args.cache is None:
            args.cache = str(Path(args.sessions) / "tokens.json")
        sockets = [
            socket.create_server(("127.0.0.1", args.port + n if args.port else 0))
            for n in range(args.workers)
        ]
        urls = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in sockets]
        args.redirect_uri = args.redirect_uri or f"{urls[0]}/callback"
        workers = []
        for listening in sockets:
            fd = listening.fileno()
            command = [sys.executable, __file__, "--worker", "--listen-fd", str(fd)]
            for name in ("domain", "client_id", "api_url", "cache", "sessions", "redirect_uri"):
                command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
            # This very script, with our own arguments: no untrusted input.
            worker = subprocess.Popen(command, pass_fds=[fd], env=environment)  # noqa: S603
            workers.append(worker)
            listening.close()
        lines = [f"worker {w.pid}: {url}/" for url, w in zip(urls, workers, strict=True)]
        sys.stdout.write("\n".join([*lines, f"callback URL: {args.redirect_uri}", "ready\n"]))
        sys.stdout.flush()
        try:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            for worker in workers:
                worker.wait()
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="run the embedded test IdP")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--port", type=int, default=0, help="first worker's port (0: any)")
    parser.add_argument("--domain", help="the Auth0 tenant")
    parser.add_argument("--client-id")
    parser.add_argument("--api-url", help="an API URL to call with the user's token")
    parser.add_argument("--cache", help="token cache every worker shares (a path or redis://)")
    parser.add_argument("--sessions", help="directory of the app's browser sessions")
    parser.add_argument("--redirect-uri", help="default: the first worker's /callback")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return serve_worker(args) if args.worker else run(args)


if __name__ == "__main__":
    raise SystemExit(main())
