"""The ``hoxton-auth`` command line: its parser, ``main`` and exit statuses.

What each command does is in ``_cli_commands.py``. The parser is built only
when the command runs: ``import hoxton_auth`` loads neither this module nor
``argparse``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__
from ._arguments import LOGIN_SCOPE
from ._cli_commands import PROG, cmd_login, cmd_logout, cmd_status, cmd_token
from ._config import DEFAULT_AUDIENCE, DEFAULT_DOMAIN
from ._errors import ConfigError, HoxtonAuthError

__all__ = ["EXIT_STATUS", "PROG", "main"]


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
