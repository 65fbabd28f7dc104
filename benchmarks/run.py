"""Run every figure of issue 6 for hoxton_auth and its peers; print one table.

Usage (from the repository root, with ``pip install -e ".[bench]"``)::

    python benchmarks/run.py            # the full run, a few minutes
    python benchmarks/run.py --quick    # a smoke test of every figure

It starts the package's own token server (``hoxton_auth.testing.AuthServer``)
and a minimal keep-alive API server in a separate process (``apiserver.py``),
then measures, in this order: the hot path (figure 1), the cold process
(3), memory and the cache file (4), the crowds (2), the renewal stall (issue
20, ``bench_renewal_stall.py``) and the outage with leeway=600 s and with
default settings (``bench_outage.py``). The markdown table
goes to stdout, followed by the machine and the command.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import peers
from apiserver import api_server
from bench_cold import CLIENTS_OF, COLD_LIBRARIES, run_cold
from bench_concurrency import Count, run_concurrency
from bench_hotpath import HotPath, run_hot_path
from bench_memory import DEAD_ENTRIES, CacheFile, cache_file_growth, memory_growth
from bench_outage import HOXTON_DEFAULT_LEEWAY, LONG_LEEWAY, installed, run_all
from bench_renewal_stall import ROWS as STALL_ROWS
from bench_renewal_stall import run_stalls
from peers import BASELINE, HOXTON, PEERS, Endpoints

HOT_PATH_LIMIT = 1.02
COLD_LIMIT_MS = 25.0
MEMORY_LIMIT_KIB = 1024.0

Row = list[str]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000, help="hot path rounds")
    parser.add_argument("--block", type=int, default=2, help="requests per turn per round")
    parser.add_argument("--cold-rounds", type=int, default=100, help="cold process rounds")
    parser.add_argument(
        "--processes", default="32,64", help="comma separated process counts (figure 2)"
    )
    parser.add_argument(
        "--outage-scale",
        type=float,
        default=10.0,
        help="time compression of the outage rows (issues 12, 20; about 5 min at 10); 0 skips them",
    )
    parser.add_argument(
        "--no-stall",
        dest="stall",
        action="store_false",
        help="skip the renewal stall row (issue 20, bench_renewal_stall.py; about 40 s)",
    )
    parser.add_argument("--quick", action="store_true", help="few rounds, small crowds")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.cold_rounds, args.processes = 50, 3, "4"
        args.outage_scale = 0.0
        args.stall = False
    return args


def _verdict(ok: bool) -> str:
    return "pass" if ok else "**FAIL**"


def _hot_rows(results: list[HotPath]) -> list[Row]:
    rows = []
    for result in results:
        ratios = {name: result.paired_ratio[name] for name in result.median_us}
        ours = ratios[HOXTON]
        best_peer = min((r for n, r in ratios.items() if n in PEERS), default=float("inf"))
        cells = [
            f"{ratios[n]:.3f}" if n in ratios else "n/a (other client)" for n in (HOXTON, *PEERS)
        ]
        cells[0] += f" ({result.median_us[HOXTON]:.0f} µs)"
        rows.append(
            [
                f"1. hot path, `{result.kind}` GET, ratio to a static header "
                f"({result.median_us[BASELINE]:.0f} µs)",
                *cells,
                f"≤ {HOT_PATH_LIMIT} and ≤ every peer",
                _verdict(ours <= HOT_PATH_LIMIT and ours <= best_peer),
            ]
        )
    return rows


def _count_cell(count: Count | None, refresh: bool) -> str:
    if count is None:
        return "n/a"
    if count.requests is None:
        return f"n/a ({count.note})"
    text = f"{count.refreshes} / {count.invalid_grants}" if refresh else f"{count.requests}"
    extras = []
    if refresh and count.requests != count.refreshes:
        extras.append(f"{count.requests - count.refreshes} other grants")
    if count.failures:
        extras.append(f"{count.failures} failed")
    if count.note:
        extras.append(count.note)
    return text + (f" ({'; '.join(extras)})" if extras else "")


def _concurrency_rows(rows: dict[str, dict[str, Count]]) -> list[Row]:
    table = []
    for title, counts in rows.items():
        refresh = "refresh" in title
        ours = counts[HOXTON]
        if refresh:
            ok = ours.refreshes == 1 and ours.invalid_grants == 0
            target = "1 / 0"
        else:
            ok = ours.requests == 1
            target = "1 token request"
        ok = ok and ours.failures == 0
        cells = [_count_cell(counts.get(name), refresh) for name in (HOXTON, *PEERS)]
        table.append([f"2. {title}", *cells, target, _verdict(ok)])
    return table


def _cold_row(extra_ms: dict[str, float], median_ms: dict[str, float]) -> Row:
    cells = []
    for name in (HOXTON, *PEERS):
        if name in COLD_LIBRARIES:
            cells.append(f"{extra_ms[name]:+.1f} ms")
        else:
            cells.append("n/a (no cache: fetches)")
    return [
        "3. cold `python -c`: import, build, `get_token()` from the file cache; CPU ms "
        f'over `python -c "import requests, httpx"` ({median_ms["baseline"]:.0f} ms)',
        *cells,
        f"≤ +{COLD_LIMIT_MS:.0f} ms",
        _verdict(extra_ms[HOXTON] <= COLD_LIMIT_MS),
    ]


def _cold_client_rows(
    over_client: dict[tuple[str, str], float], median_ms: dict[str, float]
) -> list[Row]:
    rows = []
    for client in ("requests", "httpx"):
        cells = []
        for name in (HOXTON, *PEERS):
            if client in CLIENTS_OF.get(name, ()):
                cells.append(f"{over_client[(name, client)]:+.1f} ms")
            elif name in COLD_LIBRARIES:
                cells.append(f"n/a (uses {CLIENTS_OF[name][0]})")
            else:
                cells.append("n/a (no cache: fetches)")
        rows.append(
            [
                f"3{'ab'[client == 'httpx']}. the same over a script importing only its client: "
                f'`python -c "import {client}"` ({median_ms[f"baseline {client}"]:.0f} ms); '
                "ours imports both clients (HoxtonAuth subclasses both base classes)",
                *cells,
                "reported",
                "-",
            ]
        )
    return rows


def _memory_rows(grown: dict[str, float], files: dict[str, CacheFile]) -> list[Row]:
    rss = [f"{grown[name]:.0f} KiB" for name in (HOXTON, *PEERS)]
    file_cells = []
    for name in (HOXTON, *PEERS):
        cache = files.get(name)
        if cache is None:
            file_cells.append("n/a (no file cache)")
        else:
            noun = "entry" if cache.entries == 1 else "entries"
            file_cells.append(f"{cache.entries} {noun}, {cache.size / 1024:.1f} KiB")
    ours = files[HOXTON]
    return [
        [
            "4. RSS added by the auth object + first token in its cache, over the imports",
            *rss,
            f"< {MEMORY_LIMIT_KIB:.0f} KiB",
            _verdict(grown[HOXTON] < MEMORY_LIMIT_KIB),
        ],
        [
            f"4. cache file after one fetch, over {DEAD_ENTRIES} entries expired 3 days ago",
            *file_cells,
            "dead entries pruned",
            _verdict(ours.entries == 1),
        ],
    ]


def _stall_row(stalls: dict[str, dict[str, Any]]) -> Row:
    """The renewal stall row (issue 20): the slowest call across a renewal."""
    cells = []
    for name in (HOXTON, *PEERS):
        if name not in STALL_ROWS:
            cells.append("n/a (not in bench_renewal_stall.py)")
        elif stalls[name]["across_max_ms"] is None:
            cells.append("no renewal")
        else:
            cells.append(f"{stalls[name]['across_max_ms']:.0f} ms")
    ours = stalls[HOXTON]["across_max_ms"]
    # Noise: the slowest call of any row's stream before its renewal began.
    quiet = max(result["quiet_max_ms"] for result in stalls.values())
    return [
        "renewal stall: slowest API call across a renewal, token endpoint 2 s, a call every "
        f"50 ms, default margins (bench_renewal_stall.py; slowest call with no renewal, any "
        f"row: {quiet:.0f} ms)",
        *cells,
        "≤ the slowest call with no renewal",
        _verdict(ours is not None and ours <= quiet),
    ]


def _outage_rows(scale: float) -> list[Row]:
    """The outage rows (issues 12 and 20): leeway=600 s, and every library's defaults."""
    results = run_all(scale, installed(), leeways=(LONG_LEEWAY, None))
    rows = []
    for leeway, title in (
        (LONG_LEEWAY, "leeway=600 s or the peer's closest"),
        (HOXTON_DEFAULT_LEEWAY, "default settings (each library's default margin)"),
    ):
        outages = {r.library: r for r in results if r.leeway_simulated == leeway}
        rows.append(
            [
                "outage: API calls failed during a 5-min IdP outage starting as the renewal "
                f"window opens, {title} (time / {scale:g}, see bench_outage.py)",
                *[
                    f"{outages[name].failed} of {outages[name].calls}"
                    if name in outages
                    else "not installed"
                    for name in (HOXTON, *PEERS)
                ],
                "0",
                _verdict(outages[HOXTON].failed == 0),
            ]
        )
    return rows


def _machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = os.cpu_count()
    return (
        f"{cores} cores ({model}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def _load() -> str:
    try:
        return " / ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def _print_table(rows: list[Row]) -> None:
    header = ["figure", HOXTON, *PEERS, "target", "result"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    processes = tuple(int(n) for n in args.processes.split(",") if n)
    from hoxton_auth.testing import AUDIENCE, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

    started, load_before = time.time(), _load()
    rows: list[Row] = []
    with (
        AuthServer() as server,
        api_server() as api,
        tempfile.TemporaryDirectory(prefix="hoxton-bench-") as scratch,
    ):
        workdir = Path(scratch)
        (workdir / "hot").mkdir()
        ends = Endpoints(
            domain=server.domain,
            api_url=api + "/v1/things",
            client_id=DEFAULT_CLIENT_ID,
            client_secret=DEFAULT_CLIENT_SECRET,
            audience=AUDIENCE,
            cache_path=workdir / "hot" / "tokens.json",
        )
        token = peers.hoxton(ends).get_token()
        peers.use_peer_memory_cache()  # their fastest option: the strictest comparison

        print("figure 1: hot path...", file=sys.stderr)
        hot = run_hot_path(ends, token, args.rounds, args.block)
        rows += _hot_rows(hot)
        print("figure 3: cold process...", file=sys.stderr)
        cold = run_cold(server, ends, workdir / "cold", args.cold_rounds)
        print("figure 4: memory...", file=sys.stderr)
        grown = memory_growth(ends, workdir / "memory")
        files = cache_file_growth(server, ends, workdir / "files")
        print("figure 2: crowds...", file=sys.stderr)
        crowds = run_concurrency(server, ends, workdir / "crowds", processes)
        stalls = None
        if args.stall:
            print("renewal stall...", file=sys.stderr)
            stalls = run_stalls(ends.api_url)

    rows += _concurrency_rows(crowds)
    rows.append(_cold_row(cold.extra_ms, cold.median_ms))
    rows.extend(_cold_client_rows(cold.over_client_ms, cold.median_ms))
    rows += _memory_rows(grown, files)
    if stalls is not None:
        rows.append(_stall_row(stalls))
    if args.outage_scale:
        print("outage...", file=sys.stderr)
        rows += _outage_rows(args.outage_scale)
    _print_table(rows)
    print()
    print(f"- machine: {_machine()}; load average before / after: {load_before} / {_load()}")
    command = " ".join(["python", "benchmarks/run.py", *(argv or sys.argv[1:])])
    print(f"- command: `{command}` ({time.time() - started:.0f} s)")
    print(
        f"- hot path: median over {args.rounds} interleaved rounds of {args.block} requests "
        "each of (library ÷ static header) per request; peers with their in-memory cache"
    )
    for result in hot:
        medians = ", ".join(
            f"{name} {result.median_us[name]:.0f} µs ({result.ratio(name):.3f})"
            for name in result.median_us
        )
        print(f"- `{result.kind}` median per request (ratio of medians): {medians}")
    print(
        f"- cold process: median over {args.cold_rounds} rounds of (script - baseline) in "
        "CPU time (user + system); the same in wall time: "
        + ", ".join(f"{n} {cold.wall_extra_ms[n]:+.1f} ms" for n in COLD_LIBRARIES)
        + "; fastest run - fastest baseline run, CPU time: "
        + ", ".join(f"{n} {cold.min_extra_ms[n]:+.1f} ms" for n in COLD_LIBRARIES)
    )
    return 0 if all(row[-1] == "pass" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
