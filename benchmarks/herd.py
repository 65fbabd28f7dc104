"""The thundering herd: N processes start together on an empty token cache.

For each N, a fresh ``hoxton_auth.testing.AuthServer`` whose token endpoint
answers after ``--delay`` seconds (a real identity provider takes ~100 ms),
a fresh cache file, and N interpreters running ``herd_worker.py``. Each
imports everything and prints ``ready``; once all are ready the parent
releases them at once (one line to each stdin) and each gets a token and
makes one API call. Reported per N: token requests the server saw, and the
seconds from the release to the token and to the first API answer in every
process (median and max).

Workers import what the library loads lazily before they report ready, so the
times show the coordination; ``--cold`` leaves those imports in the measured
window (see ``herd_worker.py``).

Run: ``python benchmarks/herd.py`` (``--sizes 1,8,32,64 --delay 0.1 [--cold]``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

WORKER = Path(__file__).with_name("herd_worker.py")


@dataclass(frozen=True)
class HerdResult:
    """What one herd of ``size`` processes did."""

    size: int
    token_requests: int
    ok: int
    to_token: list[float]
    to_api: list[float]


def run_herd(size: int, delay: float, cold: bool) -> HerdResult:
    """Start ``size`` workers on an empty cache, release them, collect timings."""
    with tempfile.TemporaryDirectory() as directory, AuthServer(token_delay=delay) as server:
        args = json.dumps(
            {
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
                "domain": server.domain,
                "api_url": server.api_url,
                "cache": str(Path(directory) / "tokens.json"),
                "cold": cold,
            }
        )
        workers = [
            subprocess.Popen(
                [sys.executable, str(WORKER), args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(size)
        ]
        try:
            for worker in workers:
                assert worker.stdout is not None
                if worker.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"a worker failed to start (exit {worker.wait()})")
            released_at = repr(time.time())
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write(released_at + "\n")
                worker.stdin.flush()
            results = []
            for worker in workers:
                assert worker.stdout is not None
                results.append(json.loads(worker.stdout.readline()))
        finally:
            for worker in workers:
                if worker.poll() is None and worker.stdin is not None:
                    worker.stdin.close()
                worker.wait()
                for stream in (worker.stdin, worker.stdout):
                    if stream is not None and not stream.closed:
                        stream.close()
        return HerdResult(
            size=size,
            token_requests=server.count(),
            ok=sum(1 for r in results if r["status"] == 200),
            to_token=[r["to_token"] for r in results],
            to_api=[r["to_api"] for r in results],
        )


def milliseconds(seconds: float) -> str:
    """``0.1234`` -> ``"123"``."""
    return f"{seconds * 1000:.0f}"


def table(results: list[HerdResult], delay: float, cold: bool) -> str:
    """The results as a markdown table."""
    imports = "lazy imports included" if cold else "lazy imports done before the release"
    lines = [
        f"Empty cache, token endpoint delay {delay * 1000:.0f} ms, {imports}; "
        "times from the release.",
        "",
        "| processes | token requests | API calls OK | to token, median / max (ms) "
        "| to first API answer, median / max (ms) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.size} | {r.token_requests} | {r.ok}/{r.size} "
            f"| {milliseconds(statistics.median(r.to_token))} / {milliseconds(max(r.to_token))} "
            f"| {milliseconds(statistics.median(r.to_api))} / {milliseconds(max(r.to_api))} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run the herds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,8,32,64", help="comma separated herd sizes")
    parser.add_argument("--delay", type=float, default=0.1, help="token endpoint delay (s)")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="workers do not import filelock and PyJWT before the release",
    )
    options = parser.parse_args()
    sizes = [int(size) for size in options.sizes.split(",")]
    results = [run_herd(size, options.delay, options.cold) for size in sizes]
    print(table(results, options.delay, options.cold))


if __name__ == "__main__":
    main()
