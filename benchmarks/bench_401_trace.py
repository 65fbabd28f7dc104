"""How much of the package one 401 walks through: calls per module and hops between modules.

Counts, with ``sys.setprofile``, every Python function call whose code lives in
``hoxton_auth`` (the testing server excluded) and every call from one of our
modules into another (a *hop*), for three paths on one ``requests.Session``
against the embedded test server (``hoxton_auth.testing.AuthServer``) with a
file cache:

- hot: a GET with a valid token already in memory;
- cold: the first GET of a new auth object whose token is in the cache file;
- 401: a GET whose token the API has revoked: renew once, resend once.

Counts, not times: the same on a noisy machine. Compare two versions by
running this file with each on ``PYTHONPATH`` (from a directory that does not
hold another ``hoxton_auth``)::

    python benchmarks/bench_401_trace.py
    (cd /tmp && PYTHONPATH=/path/to/old/tree python /path/to/bench_401_trace.py)

``--functions _identity`` (repeatable) adds the calls per function of that
module, to see which of its calls repeat.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import requests

import hoxton_auth
from hoxton_auth import FileTokenCache, HoxtonAuth
from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

PACKAGE = os.path.dirname(hoxton_auth.__file__)
TESTING = os.path.join(PACKAGE, "testing")


def _module(frame: FrameType | None) -> str | None:
    """Our module that ``frame`` runs in, or ``None`` for anyone else's code."""
    if frame is None:
        return None
    filename = frame.f_code.co_filename
    if not filename.startswith(PACKAGE) or filename.startswith(TESTING):
        return None
    return os.path.splitext(os.path.relpath(filename, PACKAGE))[0].replace(os.sep, ".")


class Trace:
    """Calls into each of our modules, and hops from one of ours into another."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.functions: collections.Counter[str] = collections.Counter()
        self.hops = 0

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        callee = _module(frame)
        if callee is None:
            return
        self.calls[callee] += 1
        self.functions[f"{callee}.{frame.f_code.co_qualname}"] += 1
        caller = _module(frame.f_back)
        if caller is not None and caller != callee:
            self.hops += 1

    def run(self, action: Callable[[], object]) -> Trace:
        # The testing server answers from its own threads: only this thread is traced.
        sys.setprofile(self)
        try:
            action()
        finally:
            sys.setprofile(None)
        return self


def measure() -> dict[str, Trace]:
    with tempfile.TemporaryDirectory() as directory, AuthServer() as server:
        path = Path(directory) / "tokens.json"

        def new_auth() -> HoxtonAuth:
            return HoxtonAuth(
                DEFAULT_CLIENT_ID,
                DEFAULT_CLIENT_SECRET,
                domain=server.domain,
                cache=FileTokenCache(path),
            )

        session = requests.Session()
        session.auth = new_auth()
        session.get(server.api_url, timeout=30).raise_for_status()  # warm up: imports, token

        traces = {"hot": Trace().run(lambda: session.get(server.api_url, timeout=30))}
        session.auth = new_auth()
        traces["cold"] = Trace().run(lambda: session.get(server.api_url, timeout=30))
        server.revoke_access_tokens()
        traces["401"] = Trace().run(lambda: session.get(server.api_url, timeout=30))
        return traces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--functions",
        metavar="MODULE",
        action="append",
        default=[],
        help="also count calls per function of this module (e.g. _identity); repeatable",
    )
    args = parser.parse_args()
    traces = measure()
    modules = sorted(set().union(*(t.calls for t in traces.values())))
    print(f"hoxton_auth at {PACKAGE}")
    print(f"| {'module':<16} | " + " | ".join(f"{name:>5}" for name in traces) + " |")
    print(f"|{'-' * 18}|" + "|".join("-" * 7 for _ in traces) + "|")
    for module in modules:
        row = " | ".join(f"{traces[name].calls[module]:>5}" for name in traces)
        print(f"| {module:<16} | {row} |")
    totals = " | ".join(f"{sum(t.calls.values()):>5}" for t in traces.values())
    print(f"| {'calls, total':<16} | {totals} |")
    hops = " | ".join(f"{t.hops:>5}" for t in traces.values())
    print(f"| {'module hops':<16} | {hops} |")
    for module in args.functions:
        names = sorted(
            {f for t in traces.values() for f in t.functions if f.startswith(module + ".")}
        )
        if not names:
            print(f"\nno calls into {module}")
            continue
        width = max(len(name) for name in names)
        print(f"\n| {'function':<{width}} | " + " | ".join(f"{n:>5}" for n in traces) + " |")
        print(f"|{'-' * (width + 2)}|" + "|".join("-" * 7 for _ in traces) + "|")
        for name in names:
            row = " | ".join(f"{traces[t].functions[name]:>5}" for t in traces)
            print(f"| {name:<{width}} | {row} |")


if __name__ == "__main__":
    main()
