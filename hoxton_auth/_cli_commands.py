"""What the ``hoxton-auth`` commands do: ``token``, ``login``, ``logout`` and ``status``.

Each command takes the parsed arguments (``_cli.py`` parses them) and returns
its exit status. Options mirror the constructor and default to the
``HOXTON_*`` variables (read by ``_arguments.py``, as ``from_env`` does).
stdout carries only a command's result (``token`` prints nothing but the
token, so ``$(hoxton-auth token)`` works); messages, prompts and errors go to stderr.

A token answered from the cache, and ``status``, load neither requests nor
httpx (nor PyJWT): the session is built from ``_arguments.py`` without an
auth object, and the requests transport is imported only when a request must
be sent (see ``_send``). Interpreter start-up is then most of its cost.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._arguments import (
    DEFAULT,
    LOGIN_SCOPE,
    gather,
    read_environment,
    resolve_cache,
    session_from_env,
)
from ._cache import CacheEntry, MemoryTokenCache, TokenCache
from ._config import ENVIRONMENT, NetworkSettings, token_session
from ._errors import (
    CacheUnavailableError,
    ConfigError,
    HoxtonAuthError,
    NotLoggedInError,
    TokenRequestError,
    printable,
)
from ._identity import USED_STATE_SUBJECT
from ._session import TokenManager
from ._token import user_of

if TYPE_CHECKING:
    from ._renewal import SyncTransport
    from ._wire import Reply, TokenRequest

__all__ = ["PROG", "cmd_login", "cmd_logout", "cmd_status", "cmd_token", "hint_for"]

PROG = "hoxton-auth"
_CLIENT_OPTIONS = (
    "client_id",
    "client_secret",
    "private_key",
    "key_id",
    "domain",
    "audience",
    "scope",
    "cache",
)
_GRANT_OPTIONS = ("username", "password", "refresh_token")
# What ``--timeout`` leaves of the library's per-request timeout (its default).
_REQUEST_TIMEOUT = 30.0


def _overrides(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The options given on the command line (the environment fills the rest)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _send(network: NetworkSettings) -> SyncTransport:
    """A transport that imports requests on its first request, not before.

    A token found in the cache sends nothing, so ``hoxton-auth token`` and
    ``status`` never load requests (tests/test_imports.py,
    NOT_FOR_CLI_CACHED_TOKEN).
    """

    def send(request: TokenRequest) -> Reply:
        from ._requests import RequestsTransport  # here: see the docstring

        return RequestsTransport(network)(request)

    return send


def _session(args: argparse.Namespace, *, must_exist: bool = True) -> TokenManager | None:
    """The session ``token`` and ``logout`` act on.

    With no client secret and no grant argument anywhere (or ``--login-session``)
    it is the session of ``hoxton-auth login``: the logged-in session of
    (domain, client, audience), read from the cache.

    Raises:
        NotLoggedInError: ``must_exist`` and no login is cached.
    """
    overrides = _overrides(args, _CLIENT_OPTIONS + _GRANT_OPTIONS)
    seconds = getattr(args, "timeout", None) if args.command == "token" else None
    if seconds is not None:
        if seconds <= 0:
            raise ConfigError(f"--timeout must be more than 0 seconds, got {seconds:g}")
        # The token endpoint's deadline, retries and the lock's wait included;
        # main() ends the command TIMEOUT_GRACE later whatever it waits for.
        overrides["retry_deadline"] = seconds
        overrides["timeout"] = min(_REQUEST_TIMEOUT, seconds)
    username = overrides.get("username")
    # Never block a script on a prompt nobody sees: only a terminal is asked.
    if username and not gather(None, overrides).get("password") and sys.stdin.isatty():
        overrides["password"] = getpass.getpass(f"Password for {username}: ")
    if token_session(gather(None, overrides), args.login_session) != "login":
        return session_from_env(None, overrides)
    overrides = {k: v for k, v in overrides.items() if k not in _GRANT_OPTIONS}
    # The logged-in session of (domain, client, audience) is one entry whatever
    # the scope (issue 10): no need to guess the scope the login asked for.
    session = session_from_env("authorization_code", overrides)
    if session.cache.load(session.key) is None:
        if not must_exist:
            return None
        raise NotLoggedInError(
            f"no client secret (--client-secret, $HOXTON_CLIENT_SECRET) and no login of "
            f"{session.config.client_id} at {session.config.domain} in the cache "
            f"{session.cache!r}: run `{PROG} login` first"
        )
    return session


def _entry_of(session: TokenManager, access_token: str) -> CacheEntry | None:
    entry = session.cache.load(session.key)
    return entry if entry is not None and entry.token.access_token == access_token else None


def _iso(timestamp: float) -> str:
    # time.strftime, not datetime: the CLI's start-up is what `$(hoxton-auth token)` costs.
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _duration(seconds: float) -> str:
    seconds = int(abs(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"


def _renew_if_short(session: TokenManager, token: str, min_valid: float) -> str:
    """``token``, or a renewed one if ``token`` has less than ``min_valid`` seconds left."""
    entry = _entry_of(session, token)
    if entry is None or entry.token.expires_at - time.time() >= min_valid:
        return token
    # Drop only this token: a newer one another process just stored is kept.
    session.invalidate(token)
    token = session.get_token(_send(session.config.network))
    entry = _entry_of(session, token)
    if entry is not None and entry.token.expires_at - time.time() < min_valid:
        raise ConfigError(
            f"--min-valid {min_valid:g}: even a new token is valid for only "
            f"{entry.token.expires_at - time.time():.0f}s"
        )
    return token


def cmd_token(args: argparse.Namespace) -> int:
    session = _session(args)
    if session is None:  # pragma: no cover  must_exist (the default) raises instead
        raise NotLoggedInError("no session to take a token from: run `hoxton-auth login`")
    token = session.get_token(_send(session.config.network))
    if getattr(args, "min_valid", None) is not None:
        token = _renew_if_short(session, token, args.min_valid)
    if not args.json:
        sys.stdout.write(token + "\n")
        return 0
    entry = _entry_of(session, token)
    expires_at = entry.token.expires_at if entry is not None else None
    document = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_at": _iso(expires_at) if expires_at is not None else None,
        "expires_in": max(int(expires_at - time.time()), 0) if expires_at is not None else None,
    }
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    return 0


def _source(args: argparse.Namespace, name: str) -> str:
    """Where a client option came from: its flag, else its variable."""
    if getattr(args, name, None) is not None:
        return "--private-key-file" if name == "private_key" else "--" + name.replace("_", "-")
    return "$" + ENVIRONMENT[name]


def hint_for(exc: HoxtonAuthError, args: argparse.Namespace) -> str | None:
    """What to do about ``exc``, in the terms of this command line (or ``None``)."""
    if not isinstance(exc, TokenRequestError) or exc.error not in (
        "invalid_client",
        "unauthorized_client",
    ):
        return None
    client_id = getattr(args, "client_id", None) or read_environment().get("client_id", "?")
    said = f"client id {client_id!r} (from {_source(args, 'client_id')})"
    if exc.error == "unauthorized_client" and args.command == "login":
        return (
            f"hint: the application of {said} may not use this login: a device login "
            "needs a Native application with the Device Code grant enabled in Auth0"
        )
    if exc.error == "unauthorized_client":
        return f"hint: the application of {said} is not allowed this grant in Auth0"
    if getattr(args, "private_key", None) or read_environment().get("private_key"):
        key = _source(args, "private_key")
        return (
            f"hint: the tenant refused {said} with the key from {key}: check that Auth0 "
            "has its public key among the application's Private Key JWT credentials "
            "(and the --key-id, if given)"
        )
    secret = _source(args, "client_secret")
    return (
        f"hint: the tenant refused {said} with the secret from {secret}: check both "
        "(a secret of another application or tenant, or a rotated one?)"
    )


def _stored_login(key: str, location: Any) -> CacheEntry | None:
    """The entry ``key`` if it is readable in a fresh look at the cache ``location``."""
    # A new cache object: the auth object's own may hold the entry in memory
    # only (a full disk, a cache refused since), which no other process sees.
    cache = resolve_cache(location)
    if isinstance(cache, MemoryTokenCache):
        return None
    entry = cache.load(key)
    usable = entry is not None and bool(entry.token.refresh_token or entry.token.access_token)
    return entry if usable else None


def cmd_login(args: argparse.Namespace) -> int:
    given = {**read_environment(), **_overrides(args, _CLIENT_OPTIONS)}
    if not given.get("client_id"):
        raise ConfigError("HOXTON_CLIENT_ID is not set (nor --client-id given)")
    names = ("domain", "audience", "cache", "private_key", "key_id")
    common = {k: given[k] for k in names if k in given}
    # Here, not at the top: the auth classes import requests and httpx, which
    # only a login needs (tests/test_imports.py, NOT_FOR_CLI_CACHED_TOKEN).
    from ._auth import HoxtonAuth

    auth = HoxtonAuth.login(
        given["client_id"],
        given.get("client_secret"),
        scope=given.get("scope", LOGIN_SCOPE),
        port=args.port,
        redirect_host="localhost" if args.localhost else "127.0.0.1",
        open_browser=not args.no_browser,
        timeout=args.timeout,
        device=args.device,
        prompt=args.prompt,
        **common,
    )
    location = given.get("cache", DEFAULT)
    stored = _stored_login(auth._manager.key, location)
    if stored is None:
        raise CacheUnavailableError(
            f"logged in to {auth.config.domain} as client {auth.config.client_id}, but the "
            f"session could not be stored in {resolve_cache(location)!r} (see the warning "
            "above): other commands would not find it. Free space there, or set "
            "HOXTON_AUTH_CACHE to a file this user can write, and log in again"
        )
    sys.stderr.write(
        printable(
            f"Logged in to {auth.config.domain} as client {auth.config.client_id} "
            f"(scope: {auth.config.scope or '-'}); tokens cached in {auth.cache!r}."
        )
        + "\n"
    )
    user = user_of(stored.token)
    if user:
        sys.stderr.write(printable(f"User: {user} (from the ID token, unverified)") + "\n")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    session = _session(args, must_exist=False)
    if session is None:
        sys.stderr.write("No login in the cache: nothing to log out.\n")
        return 0
    session.logout(_send(session.config.network))
    c = session.config
    sys.stderr.write(
        printable(
            f"Logged out: client_id={c.client_id!r}, domain={c.domain!r}, "
            f"audience={c.audience!r}, scope={c.scope!r}."
        )
        + "\n"
    )
    if c.client_credential is None or args.login_session:
        # Revoking the refresh token leaves the browser logged in at the
        # tenant: the next browser login would be silent, as the same person.
        sys.stderr.write(
            "To end the browser's session at the identity provider too, open:\n\n"
            f"    {c.logout_url}\n\n"
            f"(or log in next time with `{PROG} login --prompt login`).\n"
        )
    return 0


def _describe(entry: CacheEntry, now: float) -> dict[str, Any]:
    meta, token = entry.meta, entry.token
    grant, subject = meta.get("grant", "?"), meta.get("subject")
    if subject is None:
        grant = f"{grant} (written by 0.1.0: ignored)"
    elif grant == "login":
        grant = "login (logged-in session)"
    elif grant == "password":
        grant = f"password ({subject.partition(':')[2]})"
    elif subject != "client":
        grant = f"{grant} ({subject})"
    fresh = bool(token.access_token) and token.expires_at > now
    user = user_of(token)
    return {
        "client_id": meta.get("client_id", "?"),
        "token_url": meta.get("token_url", "?"),
        "audience": meta.get("audience", "?"),
        "grant": grant,
        "scope": token.scope or meta.get("scope") or "",
        "expires_at": _iso(token.expires_at) if token.access_token else None,
        "expires_in": int(token.expires_at - now) if token.access_token else None,
        "valid": fresh,
        "refresh_token": bool(token.refresh_token),
        "user": f"{user} (from the ID token, unverified)" if user else None,
    }


def _usable(described: list[dict[str, Any]], client_id: str | None) -> list[dict[str, Any]]:
    """Entries with a fresh access token or a refresh token (of ``client_id`` if given)."""
    return [
        d
        for d in described
        if (client_id is None or d["client_id"] == client_id) and (d["valid"] or d["refresh_token"])
    ]


def _where(cache: TokenCache) -> str:
    """Where ``status`` says the tokens live: a file, Redis, or this process's memory only."""
    if isinstance(cache, MemoryTokenCache):
        return (
            "memory only: nothing outlives this command (set HOXTON_AUTH_CACHE to a file "
            "this user can write)"
        )
    path = getattr(cache, "path", None)
    if path is not None:
        return f"file {path}"
    return f"Redis, {cache!r}" if type(cache).__name__ == "RedisTokenCache" else repr(cache)


def _sealing(cache: TokenCache) -> str:
    """How the cache keeps refresh tokens: sealed, or plain text (issue 24)."""
    describe = getattr(cache, "describe_storage", None)
    if describe is None:
        return "not applicable (tokens live in this process's memory or a custom cache)"
    said: str = describe()
    return said


def cmd_status(args: argparse.Namespace) -> int:
    environment = read_environment()
    location = args.cache or environment.get("cache") or DEFAULT
    cache: TokenCache = resolve_cache(location)
    now = time.time()
    entries = cache.entries().values()
    # A web login's used state is a marker, not a session (issue 21).
    described = [_describe(e, now) for e in entries if e.meta.get("subject") != USED_STATE_SUBJECT]
    if getattr(args, "check", False):
        client_id = getattr(args, "client_id", None) or environment.get("client_id")
        usable = _usable(described, client_id)
        whose = f" of {client_id}" if client_id else ""
        if usable:
            said = f"{len(usable)} usable token(s) or session(s){whose} in {cache!r}."
            sys.stderr.write(printable(said) + "\n")
            return 0
        said = f"No usable token or session{whose} in {cache!r}: run `{PROG} login`."
        sys.stderr.write(printable(said) + "\n")
        return 1
    described.sort(key=lambda d: (d["token_url"], d["client_id"], d["grant"], d["scope"]))
    if args.json:
        document = {
            "cache": repr(cache),
            "stored_in": _where(cache),
            "sealing": _sealing(cache),
            "entries": described,
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return 0
    lines = [
        f"Cache: {cache!r} ({len(described)} entr{'y' if len(described) == 1 else 'ies'})",
        f"Stored in: {_where(cache)}",
        f"Sealing: {_sealing(cache)}",
    ]
    for d in described:
        if d["expires_at"] is None:
            expiry = "no access token"
        elif d["valid"]:
            expiry = f"{d['expires_at']} (in {_duration(d['expires_in'])})"
        else:
            expiry = f"{d['expires_at']} (expired {_duration(d['expires_in'])} ago)"
        lines += [
            "",
            f"{d['client_id']} at {d['token_url']}",
            f"  audience  {d['audience']}",
            f"  grant     {d['grant']}",
            f"  scope     {d['scope'] or '-'}",
            f"  expires   {expiry}",
            f"  refresh   {'yes' if d['refresh_token'] else 'no'}",
        ]
        if d["user"]:
            lines.append(f"  user      {d['user']}")
    # Labels come from token answers and the cache file: no escape sequence gets through.
    sys.stdout.write("\n".join(printable(line) for line in lines) + "\n")
    return 0
