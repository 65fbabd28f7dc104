"""The auth step alone, no network: what the adapter adds to each request.

Figure 1 (``bench_hotpath.py``) times whole loopback GETs, where the auth
step is one or two percent of the time and a shared machine's noise is about
as large. This times only the step a client runs per request, with a valid
token in memory: ``auth(prepared_request)`` for requests and the first step
of ``auth.sync_auth_flow(request)`` for httpx, for two URLs: the API's own
origin (``https://api.hoxton.cloud``, the audience: the precomputed prefix
check) and a loopback API (``http://127.0.0.1:<port>``, where figure 1 and
``hoxton_auth.testing`` run). With ``--before CHECKOUT`` that checkout's
package (``peers.use_before``) is timed the same way, interleaved.

Each cell is the best of ``--repeat`` runs of ``--number`` calls, in µs per
call: the least disturbed run, which is what a comparison of two code paths
needs on a shared machine.

Usage: ``python benchmarks/bench_auth_call.py [--before /tmp/oldtree]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import peers
import requests

URLS = {
    "API origin (https)": "https://api.hoxton.cloud/v1/things",
    "loopback (http)": "http://127.0.0.1:8080/v1/things",
}


def _requests_step(auth: Any, url: str) -> Callable[[], None]:
    request = requests.Request("GET", url).prepare()
    hooks = request.hooks["response"]

    def step() -> None:
        hooks.clear()  # the adapter appends its 401 hook to each request
        auth(request)

    return step


def _httpx_step(auth: Any, url: str) -> Callable[[], None]:
    request = httpx.Request("GET", url)

    def step() -> None:
        flow = auth.sync_auth_flow(request)
        next(flow)
        flow.close()

    return step


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="CHECKOUT")
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    from hoxton_auth.testing import AUDIENCE, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

    if args.before:
        peers.use_before(args.before)
    with AuthServer() as server, tempfile.TemporaryDirectory(prefix="hoxton-step-") as scratch:
        ends = peers.Endpoints(
            domain=server.domain,
            api_url="",
            client_id=DEFAULT_CLIENT_ID,
            client_secret=DEFAULT_CLIENT_SECRET,
            audience=AUDIENCE,
            cache_path=Path(scratch) / "tokens.json",
        )
        auths = {"new": peers.hoxton(ends)}
        if args.before:
            auths["before"] = peers.hoxton_before(ends)
        for auth in auths.values():
            auth.get_token()
        rows = []
        for client, make in (("requests", _requests_step), ("httpx", _httpx_step)):
            for where, url in URLS.items():
                steps = {name: make(auth, url) for name, auth in auths.items()}
                best = {name: float("inf") for name in steps}
                for _ in range(args.repeat):  # interleaved: noise hits both alike
                    for name, step in steps.items():
                        seconds = timeit.timeit(step, number=args.number)
                        best[name] = min(best[name], seconds / args.number * 1e6)
                rows.append((client, where, best))
    names = list(auths)
    header = ["client", "URL", *(f"{n} (µs per call)" for n in names)]
    if args.before:
        header.append("new - before")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for client, where, best in rows:
        cells = [client, where, *(f"{best[n]:.2f}" for n in names)]
        if args.before:
            cells.append(f"{best['new'] - best['before']:+.2f} µs")
        print("| " + " | ".join(cells) + " |")
    print()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"- best of {args.repeat} x {args.number} calls; load average after: {load}")
    print(f"- command: `python benchmarks/bench_auth_call.py {' '.join(argv or sys.argv[1:])}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
