"""Figure 1: the hot path, a loopback GET with a valid token already in memory.

Every library gets its own client (``requests.Session``, ``httpx.Client`` or
``httpx.AsyncClient``) on the same fast local API server. The libraries take
turns in blocks of ``block`` requests, the order rotating every round, for
``rounds`` rounds in one process: a noisy neighbour slows every library
alike, and the median per-request time of each library over the rounds is
compared with the baseline's (a three-line auth callable that sets a static
``Authorization`` header).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from peers import (
    ASYNC_LIBRARIES,
    BASELINE,
    HTTPX_LIBRARIES,
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
        return _measure_sync(label, {n: get for n, (get, _) in made.items()}, rounds, block)
    finally:
        for _, close in made.values():
            close()


def _requests(ends: Endpoints, token: str, rounds: int, block: int) -> HotPath:
    return _sync_clients(
        "requests.Session", make_requests, REQUESTS_LIBRARIES, ends, token, rounds, block
    )


def _httpx(ends: Endpoints, token: str, rounds: int, block: int) -> HotPath:
    return _sync_clients("httpx.Client", make_httpx, HTTPX_LIBRARIES, ends, token, rounds, block)


async def _async(ends: Endpoints, token: str, rounds: int, block: int) -> HotPath:
    made = {name: await make_async(name, ends, token) for name in ASYNC_LIBRARIES}
    try:
        gets = {n: get for n, (get, _) in made.items()}
        return await _measure_async("httpx.AsyncClient", gets, rounds, block)
    finally:
        for _, close in made.values():
            await close()


def run_hot_path(ends: Endpoints, token: str, rounds: int, block: int) -> list[HotPath]:
    """Measure the three client kinds, one after the other."""
    return [
        _requests(ends, token, rounds, block),
        _httpx(ends, token, rounds, block),
        asyncio.run(_async(ends, token, rounds, block)),
    ]
