"""``hoxton-auth`` and ``python -m hoxton_auth``: the argument parser and ``main``.

The commands themselves are in ``_cli.py``. Options mirror the constructor
and default to the ``HOXTON_*`` variables.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._auth import LOGIN_SCOPE
from ._cli import PROG, cmd_login, cmd_logout, cmd_status, cmd_token
from ._config import DEFAULT_AUDIENCE, DEFAULT_DOMAIN
from ._errors import ConfigError, HoxtonAuthError

__all__ = ["main"]


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
        epilog="Exit status: 0 success, 1 failure, 2 bad arguments or configuration.",
    )
    parser.add_argument("--debug", action="store_true", help="log what happens; show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], text: str) -> Any:
        sub = commands.add_parser(name, parents=[common], help=text, description=text)
        sub.set_defaults(run=run)
        return sub

    token = command("token", cmd_token, "print a valid access token (only the token)")
    _client_options(token)
    _grant_options(token)
    token.add_argument("--json", action="store_true", help="print the token and its expiry as JSON")
    login = command("login", cmd_login, "log in with the browser and cache the tokens")
    _client_options(login, scope_default=LOGIN_SCOPE)
    login.add_argument("--port", type=int, default=0, help="callback port (default: any free one)")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hoxton-auth``; return the exit status.

    0 success, 1 failure (token endpoint, login, cache), 2 bad arguments or
    configuration, 130 interrupted.
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


if __name__ == "__main__":
    sys.exit(main())
