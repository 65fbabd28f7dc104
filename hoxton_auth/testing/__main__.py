"""Command line: ``python -m hoxton_auth.testing serve`` and ``... demo``.

``serve`` runs the test server in the foreground until Ctrl-C or SIGTERM,
after printing its address and the environment a client needs. ``demo`` runs
the library's main job once, offline, against a server of its own: it fetches
a token into a cache file, calls the protected API with requests and httpx,
shows that a second auth object (a second process, say) takes the token from
the file without asking the server, and prints the file.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, TextIO

from hoxton_auth.testing._constants import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from hoxton_auth.testing._server import AuthServer

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

__all__ = ["demo", "main", "serve"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hoxton_auth.testing",
        description="Local Auth0-compatible server for trying hoxton-auth offline.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server in the foreground")
    serve.add_argument("--host", default="127.0.0.1", help="interface (default: %(default)s)")
    serve.add_argument(
        "--port", type=int, default=8760, help="port, 0 for any free one (default: %(default)s)"
    )
    serve.add_argument(
        "--token-lifetime",
        type=int,
        default=86400,
        metavar="SECONDS",
        help="access token lifetime (default: %(default)s)",
    )
    serve.add_argument(
        "--delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait before answering each token request (default: %(default)s)",
    )
    serve.add_argument(
        "-v", "--verbose", action="store_true", help="log each request (method, path, status)"
    )
    demo = commands.add_parser(
        "demo", help="fetch a token, call the API, show the cache file (offline, then exit)"
    )
    demo.add_argument(
        "--cache",
        metavar="PATH",
        help="cache file to use (default: tokens.json in a new temporary directory)",
    )
    return parser


def _mask(value: object) -> object:
    """The cache document with every token cut to its first 10 characters."""
    if isinstance(value, dict):
        return {
            k: (
                f"{v[:10]}...({len(v)} chars)"
                if k.endswith("_token") and isinstance(v, str)
                else _mask(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def demo(cache: str | None, *, out: TextIO) -> int:
    """Run the main job once against a fresh local server, printing each step.

    Returns:
        The process exit status: 0, or 1 if `cryptography` is missing.
    """
    import json
    import tempfile

    import httpx
    import requests

    from hoxton_auth import HoxtonAuth

    with contextlib.ExitStack() as stack:
        if cache is None:
            cache = os.path.join(stack.enter_context(tempfile.TemporaryDirectory()), "tokens.json")
        try:
            server = stack.enter_context(AuthServer())
        except ImportError as exc:  # cryptography missing: the message names the extra
            sys.stderr.write(f"{exc}\n")
            return 1

        def say(text: str) -> None:
            out.write(text + "\n")
            out.flush()

        say(f"1. local Auth0-compatible server on {server.domain} (offline, this process)")
        auth = HoxtonAuth(
            DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=cache
        )
        say(f"   auth = {auth!r}")
        token = auth.get_token()
        say(
            f"2. fetched an access token: {token[:24]}... ({len(token)} chars); "
            f"token requests so far: {server.count()}"
        )
        with requests.get(server.api_url, auth=auth, timeout=30) as response:
            echo = response.json()
        say(f"3. requests.get({server.api_url}, auth=auth) -> HTTP {response.status_code}")
        say(f"   the API saw: sub={echo.get('sub')!r} method={echo.get('method')!r}")
        with httpx.Client(auth=auth, timeout=30) as client:
            reply = client.post(server.api_url, json={"hello": "world"})
        say(f"4. httpx.Client(auth=auth).post(...) -> HTTP {reply.status_code}")
        second = HoxtonAuth(
            DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=cache
        )
        same = second.get_token() == token
        say(
            "5. a second auth object (as another process would) took "
            f"{'the same token' if same else 'a new token'} from the cache; "
            f"token requests so far: {server.count()}"
        )
        with open(cache, encoding="utf-8") as file:
            document = json.load(file)
        say(f"6. the cache file {cache} (tokens cut short here):")
        say(json.dumps(_mask(document), indent=2, sort_keys=True))
        ok = response.status_code == 200 and reply.status_code == 200 and same
        say("demo OK" if ok else "demo FAILED")
        return 0 if ok else 1


def serve(args: argparse.Namespace, *, stop: threading.Event, out: TextIO) -> int:
    """Run the server until `stop` is set; write the banner to `out`.

    Returns:
        The process exit status: 0, or 1 if the port cannot be bound or
        `cryptography` is missing.
    """
    server = AuthServer(
        args.host, args.port, token_lifetime=args.token_lifetime, token_delay=args.delay
    )
    try:
        server.start()
    except OSError as exc:
        sys.stderr.write(f"cannot listen on {args.host}:{args.port}: {exc}\n")
        return 1
    except ImportError as exc:  # cryptography missing: the message names the extra
        sys.stderr.write(f"{exc}\n")
        return 1
    try:
        out.write(
            f"Hoxton test auth server on {server.domain} "
            f"(client_id={DEFAULT_CLIENT_ID} client_secret={DEFAULT_CLIENT_SECRET})\n"
            f"export HOXTON_AUTH_DOMAIN={server.domain} "
            f"HOXTON_CLIENT_ID={DEFAULT_CLIENT_ID} HOXTON_CLIENT_SECRET={DEFAULT_CLIENT_SECRET}\n"
        )
        out.flush()
        # A timed wait keeps Ctrl-C responsive where a plain wait() is not
        # interrupted by signals (Windows).
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run the command until SIGINT or SIGTERM.

    Returns:
        The process exit status.
    """
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return demo(args.cache, out=sys.stdout)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return serve(args, stop=stop, out=sys.stdout)
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: installed outside Python, can't restore
                signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
