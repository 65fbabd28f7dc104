"""Command line: ``python -m hoxton_auth.testing serve``.

Runs the test server in the foreground until Ctrl-C or SIGTERM, after
printing its address and the environment a client needs.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING, TextIO

from hoxton_auth.testing._constants import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from hoxton_auth.testing._server import AuthServer

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

__all__ = ["main", "serve"]


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
    return parser


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
