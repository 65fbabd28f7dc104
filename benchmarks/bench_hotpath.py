"""Figure 1: the hot path, a loopback GET with a valid token already in memory.

Every library gets its own client (``requests.Session``, ``httpx.Client`` or
``httpx.AsyncClient``) on the same fast local API server. The libraries take
turns in blocks of ``block`` requests, the order rotating every round, for
``rounds`` rounds in one process: a noisy neighbour slows every library
alike, and the median per-request time of each library over the rounds is
compared with the baseline's (a three-line auth callable that sets a static
``Authorization`` header).

Run alone, it prints figure 1; ``--before CHECKOUT`` adds another checkout's
``hoxton_auth`` (loaded beside this one as ``hoxton_auth_before``, see
``peers.use_before``) to the same interleaved rounds, so old and new are
measured side by side in one run::

    python benchmarks/bench_hotpath.py [--rounds 2000] [--before /tmp/oldtree]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import peers
from apiserver import api_server
from peers import (
    ASYNC_LIBRARIES,
    BASELINE,
    BEFORE,
    HOXTON,
    HTTPX_LIBRARIES,
    PEERS,
    REQUESTS_LIBRARIES,
    AsyncGet,
    Endpoints,
    SyncGet,
    make_async,
    make_httpx,
    make_requests,
)

__all__ = ["HotPath", "run_hot_path"]

WARMUP_ROUNDS = 5


@dataclass(frozen=True)
class HotPath:
    """Median microseconds per request of each library, for one client kind."""

    kind: str
    median_us: dict[str, float]
    paired_ratio: dict[str, float]  # median over rounds of (library / baseline) in that round

    def ratio(self, name: str) -> float:
        """Ratio of medians: the library's per-request time over the baseline's."""
        return self.median_us[name] / self.median_us[BASELINE]


def _order(names: Sequence[str], round_number: int) -> list[str]:
    shift = round_number % len(names)
    return [*names[shift:], *names[:shift]]


def _summarise(kind: str, samples: dict[str, list[float]]) -> HotPath:
    median = {name: statistics.median(values) for name, values in samples.items()}
    base = samples[BASELINE]
    paired = {
        name: statistics.median(v / b for v, b in zip(values, base, strict=False))
        for name, values in samples.items()
    }
    return HotPath(kind, median, paired)


def _measure_sync(kind: str, gets: dict[str, SyncGet], rounds: int, block: int) -> HotPath:
    names = list(gets)
    clock = time.perf_counter_ns
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(-WARMUP_ROUNDS, rounds):
        for name in _order(names, round_number):
            get = gets[name]
            for _ in range(block):
                start = clock()
                get()
                elapsed = clock() - start
                if round_number >= 0:
                    samples[name].append(elapsed / 1000)
    return _summarise(kind, samples)


async def _measure_async(kind: str, gets: dict[str, AsyncGet], rounds: int, block: int) -> HotPath:
    names = list(gets)
    clock = time.perf_counter_ns
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(-WARMUP_ROUNDS, rounds):
        for name in _order(names, round_number):
            get = gets[name]
            for _ in range(block):
                start = clock()
                await get()
                elapsed = clock() - start
                if round_number >= 0:
                    samples[name].append(elapsed / 1000)
    return _summarise(kind, samples)


def _with(names: Sequence[str], extra: Sequence[str]) -> list[str]:
    """``names`` with ``extra`` right after ``hoxton_auth``."""
    at = list(names).index(HOXTON) + 1
    return [*names[:at], *extra, *names[at:]]


def _check_token_sent(name: str, response: object) -> None:
    """Each client must really send a bearer token (else it would time an unauthenticated GET)."""
    headers: object = getattr(getattr(response, "request", None), "headers", {})
    value = headers.get("Authorization", "") if hasattr(headers, "get") else ""
    if not str(value).startswith("Bearer "):
        raise RuntimeError(f"{name} sent no bearer token to the API")


def _sync_clients(
    label: str,
    make: Callable[[str, Endpoints, str], tuple[SyncGet, Callable[[], None]]],
    names: Sequence[str],
    ends: Endpoints,
    token: str,
    rounds: int,
    block: int,
) -> HotPath:
    made = {name: make(name, ends, token) for name in names}
    try:
        for name, (get, _) in made.items():
            _check_token_sent(name, get())
        return _measure_sync(label, {n: get for n, (get, _) in made.items()}, rounds, block)
    finally:
        for _, close in made.values():
            close()


def _requests(
    ends: Endpoints, token: str, rounds: int, block: int, extra: Sequence[str] = ()
) -> HotPath:
    names = _with(REQUESTS_LIBRARIES, extra)
    return _sync_clients("requests.Session", make_requests, names, ends, token, rounds, block)


def _httpx(
    ends: Endpoints, token: str, rounds: int, block: int, extra: Sequence[str] = ()
) -> HotPath:
    names = _with(HTTPX_LIBRARIES, extra)
    return _sync_clients("httpx.Client", make_httpx, names, ends, token, rounds, block)


async def _async(
    ends: Endpoints, token: str, rounds: int, block: int, extra: Sequence[str] = ()
) -> HotPath:
    made = {name: await make_async(name, ends, token) for name in _with(ASYNC_LIBRARIES, extra)}
    try:
        for name, (get, _) in made.items():
            _check_token_sent(name, await get())
        gets = {n: get for n, (get, _) in made.items()}
        return await _measure_async("httpx.AsyncClient", gets, rounds, block)
    finally:
        for _, close in made.values():
            await close()


def run_hot_path(
    ends: Endpoints, token: str, rounds: int, block: int, extra: Sequence[str] = ()
) -> list[HotPath]:
    """Measure the three client kinds, one after the other (``extra``: more libraries)."""
    return [
        _requests(ends, token, rounds, block, extra),
        _httpx(ends, token, rounds, block, extra),
        asyncio.run(_async(ends, token, rounds, block, extra)),
    ]


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--block", type=int, default=2, help="requests per turn per round")
    parser.add_argument(
        "--before", metavar="CHECKOUT", help="also time this checkout's hoxton_auth, side by side"
    )
    args = parser.parse_args(argv)
    from hoxton_auth.testing import AUDIENCE, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

    extra = [BEFORE] if args.before else []
    loaded = peers.use_before(args.before) if args.before else None
    started, load_before = time.time(), _load()
    with (
        AuthServer() as server,
        api_server() as api,
        tempfile.TemporaryDirectory(prefix="hoxton-hot-") as scratch,
    ):
        ends = Endpoints(
            domain=server.domain,
            api_url=api + "/v1/things",
            client_id=DEFAULT_CLIENT_ID,
            client_secret=DEFAULT_CLIENT_SECRET,
            audience=AUDIENCE,
            cache_path=Path(scratch) / "tokens.json",
        )
        token = peers.hoxton(ends).get_token()
        peers.use_peer_memory_cache()  # their fastest option: the strictest comparison
        results = run_hot_path(ends, token, args.rounds, args.block, extra)
    names = [HOXTON, *extra, *PEERS]
    header = ["client", "static header", *names]
    if extra:
        header.append("new ÷ before")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for result in results:
        cells = [f"`{result.kind}`", f"{result.median_us[BASELINE]:.0f} µs"]
        for name in names:
            if name in result.paired_ratio:
                cells.append(f"{result.paired_ratio[name]:.3f} ({result.median_us[name]:.0f} µs)")
            else:
                cells.append("n/a")
        if extra:
            cells.append(f"{result.paired_ratio[HOXTON] / result.paired_ratio[BEFORE]:.3f}")
        print("| " + " | ".join(cells) + " |")
    print()
    import hoxton_auth

    print(
        f"- cells: median over {args.rounds} interleaved rounds of {args.block} requests of "
        "(library ÷ static header) in that round, and the library's median per request"
    )
    print(f"- hoxton_auth: {Path(hoxton_auth.__file__).parent}; before: {loaded or '-'}")
    print(
        f"- load average (1, 5, 15 min) before: {load_before}; after: {_load()}; "
        f"{time.time() - started:.0f} s"
    )
    print(f"- command: `python benchmarks/bench_hotpath.py {' '.join(argv or sys.argv[1:])}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
