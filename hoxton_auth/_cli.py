"""The ``hoxton-auth`` command: parser, ``main``, and ``token``, ``login``, ``logout``, ``status``.

Options mirror the constructor and default to the ``HOXTON_*`` variables
(read by ``_arguments.py``, as ``from_env`` does). stdout carries only a
command's result (``token`` prints nothing but the token, so
``$(hoxton-auth token)`` works); messages, prompts and errors go to stderr.

A token answered from the cache, and ``status``, load neither requests nor
httpx (nor PyJWT): the CLI builds the session from ``_arguments.py`` without
an auth object, and imports the requests transport only when a request must
be sent (see ``_send``). Interpreter start-up is then most of its cost.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import __version__
from ._arguments import (
    DEFAULT,
    GRANT_ARGUMENTS,
    LOGIN_SCOPE,
    gather,
    read_environment,
    resolve_cache,
    session_from_env,
)
from ._cache import CacheEntry, TokenCache
from ._config import DEFAULT_AUDIENCE, DEFAULT_DOMAIN, NetworkSettings
from ._errors import ConfigError, HoxtonAuthError, NotLoggedInError
from ._session import TokenManager

if TYPE_CHECKING:
    from ._messages import Reply, TokenRequest
    from ._renewal import SyncTransport

__all__ = ["EXIT_STATUS", "PROG", "main"]

PROG = "hoxton-auth"
_CLIENT_OPTIONS = ("client_id", "client_secret", "domain", "audience", "scope", "cache")
_GRANT_OPTIONS = ("username", "password", "refresh_token")


def _overrides(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The options given on the command line (the environment fills the rest)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _send(network: NetworkSettings) -> SyncTransport:
    """A transport that imports requests on its first request, not before.

    ``import requests`` costs +186 ms of CPU over ``python -c pass`` (48 ms)
    on this shared machine (getrusage of 20 runs, CPython 3.11); a token
    found in the cache sends nothing, so ``hoxton-auth token`` must not pay for it.
    """

    def send(request: TokenRequest) -> Reply:
        from ._requests import RequestsTransport  # here: see the docstring (+186 ms)

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
    username = overrides.get("username")
    # Never block a script on a prompt nobody sees: only a terminal is asked.
    if username and not gather(None, overrides).get("password") and sys.stdin.isatty():
        overrides["password"] = getpass.getpass(f"Password for {username}: ")
    merged = gather(None, overrides)
    no_grant = not any(merged.get(name) for name in GRANT_ARGUMENTS)
    if not (args.login_session or (no_grant and not merged.get("client_secret"))):
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


# -- commands ------------------------------------------------------------------------


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
    assert session is not None  # noqa: S101  must_exist=True raises instead
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


def cmd_login(args: argparse.Namespace) -> int:
    given = {**read_environment(), **_overrides(args, _CLIENT_OPTIONS)}
    if not given.get("client_id"):
        raise ConfigError("HOXTON_CLIENT_ID is not set (nor --client-id given)")
    common = {k: given[k] for k in ("domain", "audience", "cache") if k in given}
    # Here, not at the top: the auth classes import requests and httpx (+228 ms
    # of CPU over `python -c pass`, see __init__.py), which only a login needs.
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
    sys.stderr.write(
        f"Logged in to {auth.config.domain} as client {auth.config.client_id} "
        f"(scope: {auth.config.scope or '-'}); tokens cached in {auth.cache!r}.\n"
    )
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    session = _session(args, must_exist=False)
    if session is None:
        sys.stderr.write("No login in the cache: nothing to log out.\n")
        return 0
    session.logout(_send(session.config.network))
    c = session.config
    sys.stderr.write(
        f"Logged out: client_id={c.client_id!r}, domain={c.domain!r}, "
        f"audience={c.audience!r}, scope={c.scope!r}.\n"
    )
    if c.client_secret is None or args.login_session:
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
    }


def _usable(described: list[dict[str, Any]], client_id: str | None) -> list[dict[str, Any]]:
    """Entries with a fresh access token or a refresh token (of ``client_id`` if given)."""
    return [
        d
        for d in described
        if (client_id is None or d["client_id"] == client_id) and (d["valid"] or d["refresh_token"])
    ]


def cmd_status(args: argparse.Namespace) -> int:
    environment = read_environment()
    location = args.cache or environment.get("cache") or DEFAULT
    cache: TokenCache = resolve_cache(location)
    now = time.time()
    described = [_describe(e, now) for e in cache.entries().values()]
    if getattr(args, "check", False):
        client_id = getattr(args, "client_id", None) or environment.get("client_id")
        usable = _usable(described, client_id)
        whose = f" of {client_id}" if client_id else ""
        if usable:
            sys.stderr.write(f"{len(usable)} usable token(s) or session(s){whose} in {cache!r}.\n")
            return 0
        sys.stderr.write(f"No usable token or session{whose} in {cache!r}: run `{PROG} login`.\n")
        return 1
    described.sort(key=lambda d: (d["token_url"], d["client_id"], d["grant"], d["scope"]))
    if args.json:
        sys.stdout.write(json.dumps({"cache": repr(cache), "entries": described}, indent=2) + "\n")
        return 0
    lines = [f"Cache: {cache!r} ({len(described)} entr{'y' if len(described) == 1 else 'ies'})"]
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
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


# -- the parser and main ---------------------------------------------------------------


def _client_options(commands_parser: argparse.ArgumentParser, scope_default: str = "") -> None:
    group = commands_parser.add_argument_group("client (default: the HOXTON_* variables)")
    add = group.add_argument
    add("--client-id", metavar="ID", help="OAuth client id ($HOXTON_CLIENT_ID)")
    add(
        "--client-secret",
        metavar="SECRET",
        help="client secret ($HOXTON_CLIENT_SECRET; prefer the variable: "
        "other users can read command lines)",
    )
    add(
        "--domain", metavar="URL", help=f"Auth0 tenant ($HOXTON_AUTH_DOMAIN, else {DEFAULT_DOMAIN})"
    )
    add("--audience", metavar="URL", help=f"API ($HOXTON_AUDIENCE, else {DEFAULT_AUDIENCE})")
    otherwise = f", else {scope_default}" if scope_default else ""
    add("--scope", help=f"space separated scopes ($HOXTON_SCOPE{otherwise})")


def _grant_options(commands_parser: argparse.ArgumentParser) -> None:
    group = commands_parser.add_argument_group(
        "grant (none: client credentials if there is a secret, else the login's session)"
    )
    add = group.add_argument
    add("--username", help="password grant ($HOXTON_USERNAME)")
    add("--password", help="password grant ($HOXTON_PASSWORD; prompted for on a terminal)")
    add("--refresh-token", metavar="TOKEN", help="seed refresh token ($HOXTON_REFRESH_TOKEN)")
    add(
        "--login-session",
        action="store_true",
        help="use the tokens of `hoxton-auth login` even when a client secret is set",
    )


def _port(text: str) -> int:
    """A TCP port for ``--port``: a usage error (exit 2) otherwise, never an OverflowError."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {port}")
    return port


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be >= 0, got {text}")
    return seconds


EXIT_STATUS = (
    "Exit status: 0 success; 1 authentication failed (token endpoint refused or unreachable, "
    "login failed or denied, cache unusable, `status --check` found no usable token); "
    "2 bad arguments or configuration; 130 interrupted."
)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache",
        metavar="PATH|URL",
        help="token cache file or redis:// URL ($HOXTON_AUTH_CACHE, else the user cache dir)",
    )
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log what happens and show tracebacks",
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Tokens for the HoxtonAI API, from the same shared cache as the library.",
        epilog=EXIT_STATUS,
    )
    parser.add_argument("--debug", action="store_true", help="log what happens; show tracebacks")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], text: str) -> Any:
        sub = commands.add_parser(name, parents=[common], help=text, description=text)
        sub.set_defaults(run=run)
        return sub

    token = command("token", cmd_token, "print a valid access token (only the token)")
    _client_options(token)
    _grant_options(token)
    token.add_argument("--json", action="store_true", help="print the token and its expiry as JSON")
    token.add_argument(
        "--min-valid",
        type=_seconds,
        metavar="SECONDS",
        help="renew first if the token has less than this many seconds left",
    )
    login = command(
        "login", cmd_login, "log in (browser, or a device code without one) and cache the tokens"
    )
    _client_options(login, scope_default=LOGIN_SCOPE)
    how = login.add_mutually_exclusive_group()
    how.add_argument(
        "--device",
        dest="device",
        action="store_const",
        const=True,
        default=None,
        help="device flow: open a URL and type a code on any other device "
        "(the default when no browser can be opened: SSH, no display)",
    )
    how.add_argument(
        "--browser",
        dest="device",
        action="store_const",
        const=False,
        help="browser flow even when no browser seems available",
    )
    login.add_argument(
        "--port",
        type=_port,
        default=None,
        help="callback port (default: $HOXTON_LOGIN_PORT, else the first free of "
        "8765 8766 8767 8768; 0: any free port)",
    )
    login.add_argument(
        "--prompt",
        metavar="PROMPT",
        help="Auth0's prompt: 'login' asks for the credentials again (to switch accounts)",
    )
    login.add_argument(
        "--localhost",
        action="store_true",
        help="redirect to http://localhost:PORT/callback instead of http://127.0.0.1:PORT/...",
    )
    login.add_argument("--no-browser", action="store_true", help="only print the login URL")
    login.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait (default: %(default)s)"
    )
    logout = command("logout", cmd_logout, "revoke the refresh token and forget the tokens")
    _client_options(logout)
    _grant_options(logout)
    status = command("status", cmd_status, "list the cached tokens (never a token or secret)")
    status.add_argument("--json", action="store_true", help="as JSON")
    status.add_argument(
        "--check",
        action="store_true",
        help="print nothing on stdout; exit 0 if a usable token or session is cached "
        "(for --client-id / $HOXTON_CLIENT_ID if set), else 1",
    )
    status.add_argument("--client-id", metavar="ID", help="only this client ($HOXTON_CLIENT_ID)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hoxton-auth``; return the exit status.

    0 success, 1 authentication failed (token endpoint, login, cache, a
    failed ``status --check``), 2 bad arguments or configuration, 130
    interrupted.
    """
    args = _parser().parse_args(argv)
    debug = bool(args.debug)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format=f"{PROG}: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        status: int = args.run(args)
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except HoxtonAuthError as exc:
        if debug:
            raise
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2 if isinstance(exc, ConfigError) else 1
    except Exception as exc:  # a bug, or an OSError we did not foresee: still no traceback
        if debug:
            raise
        sys.stderr.write(f"{PROG}: {type(exc).__name__}: {exc} (--debug shows the traceback)\n")
        return 1
    return status
