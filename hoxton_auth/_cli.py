"""The ``hoxton-auth`` command line: ``main``, its parser, its exit statuses.

What each command does is in ``_cli_commands.py``.

A bare ``hoxton-auth token`` whose token is in the cache, fresh, is answered
before anything else loads (``_token_from_cache``): no argparse, logging,
dataclasses, session or HTTP library, so that ``$(hoxton-auth token)`` in a
shell loop costs little more than the interpreter's own start-up (issue 15:
within 2x ``python -c pass``, ``benchmarks/bench_cli.py``). That look reads the
file with the same checks, key and verifier as the library and changes
nothing; whenever it is in any doubt (another option, another grant, no entry,
a token near its renewal time, a file refused, damaged or open to others) it
steps aside and the command runs in full, which fetches, repairs and reports.
The modules that look import no ``typing`` either (tests/test_imports.py,
NOT_FOR_CLI_FAST_TOKEN): ``TYPE_CHECKING = False`` stands in for
``typing.TYPE_CHECKING``, and mypy reads both alike.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from . import __version__
from ._cache_format import is_sealed
from ._config import (
    DEFAULT_AUDIENCE,
    DEFAULT_DOMAIN,
    DEFAULT_LEEWAY,
    ClientConfig,
    read_environment,
    token_session,
    unknown_variables,
)
from ._errors import CacheUnavailableError, ConfigError, HoxtonAuthError, printable
from ._freshness import is_fresh
from ._identity import client_identity, login_identity
from ._private_file import (
    default_cache_path,
    expand_path,
    login_key_path,
    read_document,
    read_login_key,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see above)
if TYPE_CHECKING:
    import argparse
    from typing import Any

__all__ = ["EXIT_STATUS", "EXIT_STATUSES", "TIMEOUT_GRACE", "main"]

# What a cached token may hold and still be answered without a full check: the
# characters of an RFC 6750 b64token (a JWT has only these), 64 KiB at most.
_TOKEN_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/="
)
_MAX_TOKEN_LENGTH = 64 * 1024


def _plain_token(value: object) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_TOKEN_LENGTH
        and _TOKEN_CHARACTERS.issuperset(value)
    )


def _time(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value) if math.isfinite(value) else None
    except OverflowError:  # an int beyond float's range: damage, not a crash (issue 22)
        return None


def _fresh_access_token(raw: object) -> str | None:
    """The access token of a cache entry's token, if it is plainly valid and fresh."""
    if not isinstance(raw, Mapping) or raw.get("token_type", "Bearer") != "Bearer":
        return None
    access_token, expires_at, obtained_at = (
        raw.get("access_token"),
        _time(raw.get("expires_at")),
        _time(raw.get("obtained_at")),
    )
    others = (raw.get(name) for name in ("refresh_token", "id_token"))
    if expires_at is None or obtained_at is None or not _plain_token(access_token):
        return None
    if not all(other is None or _plain_token(other) or is_sealed(other) for other in others):
        return None
    if not isinstance(raw.get("scope", ""), (str, type(None))):
        return None
    fresh = is_fresh(expires_at, obtained_at, DEFAULT_LEEWAY, time.time())
    return access_token if fresh and isinstance(access_token, str) else None


def _token_from_cache(argv: Sequence[str]) -> str | None:
    """What a bare ``hoxton-auth token`` prints, if the cache has it fresh; else ``None``.

    Only client credentials (a secret, no grant variable) and the logged-in
    session (no secret, no grant variable), only a file cache; the identity's
    key and verifier are the library's own, so the entry of another
    credential is never answered.
    """
    if list(argv) != ["token"] or unknown_variables(os.environ):
        return None  # a misspelt variable: the full path says so, on one line
    environment = read_environment()
    session = token_session(environment)
    if session == "grant":
        return None
    if environment.get("private_key"):
        return None  # Private Key JWT: the full path loads the key (cryptography)
    secret = environment.get("client_secret")
    if secret is not None and secret != secret.strip():
        return None  # the full path warns about it, on one line
    location = environment.get("cache")
    if location is not None and "://" in location:
        return None  # Redis, or a scheme the full path explains
    try:
        config = ClientConfig(
            environment["client_id"],
            environment.get("client_secret"),
            domain=environment.get("domain", DEFAULT_DOMAIN),
            audience=environment.get("audience", DEFAULT_AUDIENCE),
            scope=environment.get("scope"),
        )
        path = expand_path(location) if location else default_cache_path()
        read = read_document(path.absolute(), quiet=True)
    except (KeyError, ConfigError, CacheUnavailableError):
        return None
    if read is None or read[0].damage is not None:
        return None
    if session == "client":
        identity = client_identity(config)
    else:
        try:  # the login key, read quietly and never created here (issue 21)
            login_key = read_login_key(login_key_path(), create=False, quiet=True)
        except (CacheUnavailableError, ConfigError):
            return None
        if login_key is None:
            return None
        identity = login_identity(config, login_key)
    entries = read[0].document.get("entries")
    entry = entries.get(identity.key) if isinstance(entries, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("meta"), dict):
        return None
    if not identity.owns({str(k): str(v) for k, v in entry["meta"].items()}):
        return None
    return _fresh_access_token(entry.get("token"))


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
        "--private-key-file",
        dest="private_key",
        metavar="PATH",
        help="Private Key JWT instead of a secret: the client's PEM private key "
        "($HOXTON_PRIVATE_KEY_FILE)",
    )
    add("--key-id", metavar="KID", help="the kid of that key's credential ($HOXTON_KEY_ID)")
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
    import argparse  # loaded by then: only the parser calls this

    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {port}")
    return port


def _seconds(text: str) -> float:
    import argparse  # loaded by then: only the parser calls this

    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be >= 0, got {text}")
    return seconds


#: The exit statuses (DESIGN.md, "CLI exit statuses"); each error class names
#: its own (``HoxtonAuthError.exit_status``). ``--help`` shows this table.
EXIT_STATUSES = {
    0: "success",
    1: "other failure (login failed or not stored, cache unusable, answer not understood)",
    2: "usage or configuration error: nothing was sent",
    4: "login needed: no session, or the refresh token was refused",
    5: "identity provider unreachable, too slow or failing (HTTP 5xx, 429): retry later",
    6: "credentials refused (wrong client secret or password, blocked user)",
    130: "interrupted",
}
EXIT_STATUS = "exit status:\n" + "\n".join(
    f"  {status:<4} {meaning}" for status, meaning in EXIT_STATUSES.items()
)
#: Seconds ``token --timeout`` waits past its deadline for the library's own
#: error (which names the cause) before it ends the command itself: the
#: deadline bounds the requests, this bounds what they cannot (a stuck DNS
#: look-up, a lock).
TIMEOUT_GRACE = 2.0
#: Seconds the backstop then waits for a token answer already received to be
#: stored: writing a cache entry takes milliseconds; a disk that takes longer
#: has bigger problems.
STORE_GRACE = 10.0


def _parser() -> argparse.ArgumentParser:
    # Here, not at the top: a bare `hoxton-auth token` answered from the cache
    # never loads argparse or the commands' modules (tests/test_imports.py,
    # NOT_FOR_CLI_FAST_TOKEN).
    import argparse

    from ._arguments import LOGIN_SCOPE
    from ._cli_commands import PROG, cmd_login, cmd_logout, cmd_status, cmd_token

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
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the table's lines
    )
    parser.add_argument("--debug", action="store_true", help="log what happens; show tracebacks")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], text: str) -> Any:
        sub = commands.add_parser(
            name,
            parents=[common],
            help=text,
            description=text,
            epilog=EXIT_STATUS,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
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
    token.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="give up after this many seconds, retries and waits included (exit status 5)",
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


def _one_line_warnings(debug: bool) -> None:
    """Each warning once, on one line of stderr: ``hoxton-auth: warning: ...`` (issue 22).

    The library reports a degraded state as a log record and a
    ``HoxtonAuthWarning`` with the same words: the record is printed, the
    warning then only if no record said it (``--debug`` shows both, with
    the warning's source line as Python prints it).
    """
    import logging
    import warnings

    from ._cli_commands import PROG
    from ._errors import HoxtonAuthWarning

    said: set[str] = set()

    def new(text: str) -> bool:
        # The same event again, perhaps with what the library did about it appended.
        if any(text.startswith(each) for each in said):
            return False
        said.add(text)
        return True

    class OneLine(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"{PROG}: {record.levelname.lower()}: {printable(record.getMessage())}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine())
    if not debug:
        handler.addFilter(lambda record: new(printable(record.getMessage())))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler])
    if debug:
        return
    python_way = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        if not issubclass(category, HoxtonAuthWarning):
            python_way(message, category, filename, lineno, file, line)
            return
        text = printable(str(message))
        if new(text):
            sys.stderr.write(f"{PROG}: warning: {text}\n")

    warnings.showwarning = show


def _end_after(seconds: float) -> None:
    """End the process with status 5 if it still runs ``seconds`` (+ grace) from now."""
    import os
    import threading

    from ._cli_commands import PROG

    def expire() -> None:
        # An answer that has arrived is stored before the end: a rotated refresh
        # token lost here would be the login's end (_renewal.AnswersInHand).
        renewal = sys.modules.get("hoxton_auth._renewal")
        if renewal is not None:
            renewal.ANSWERS_IN_HAND.wait_until_stored(STORE_GRACE)
        sys.stderr.write(
            f"{PROG}: error: no answer within --timeout {seconds:g}s "
            f"(+{TIMEOUT_GRACE:g}s grace); try again later\n"
        )
        sys.stderr.flush()
        os._exit(5)  # the main thread may be blocked where no exception can reach it

    timer = threading.Timer(seconds + TIMEOUT_GRACE, expire)
    timer.daemon = True
    timer.start()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hoxton-auth``; return the exit status (``EXIT_STATUSES``).

    0 success, 1 other failure, 2 bad arguments or configuration, 4 login
    needed, 5 the identity provider could not be reached (retry later), 6
    the credentials were refused, 130 interrupted.
    """
    arguments = sys.argv[1:] if argv is None else list(argv)
    token = _token_from_cache(arguments)
    if token is not None:
        sys.stdout.write(token + "\n")
        return 0
    from ._cli_commands import PROG, hint_for

    args = _parser().parse_args(arguments)
    debug = bool(args.debug)
    _one_line_warnings(debug)
    if getattr(args, "timeout", None) is not None and args.command == "token":
        _end_after(args.timeout)
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
        sys.stderr.write(f"{PROG}: error: {printable(str(exc))}\n")
        hint = hint_for(exc, args)
        if hint:
            sys.stderr.write(f"{PROG}: {hint}\n")
        return exc.exit_status
    except Exception as exc:  # a bug, or an OSError we did not foresee: still no traceback
        if debug:
            raise
        text = printable(f"{type(exc).__name__}: {exc}")
        sys.stderr.write(f"{PROG}: {text} (--debug shows the traceback)\n")
        return 1
    return status
