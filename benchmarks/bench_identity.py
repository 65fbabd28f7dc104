"""The cost of cache identity (issue 10) on the cold cached call, before vs after.

A cold cached call is a fresh interpreter that builds an auth object and
finds a valid token in the shared file cache: no network (the token server's
counter checks it). Issue 10 adds a verifier check on that path: an HMAC for
client credentials, one salted scrypt for the password grant.

"before" runs the checkout given with ``--before`` (default ``/work/main``,
put first on ``PYTHONPATH``), "after" this checkout; both in the same run,
the scripts taking turns in a rotating order. The figure is the median over
rounds of (script CPU time - baseline CPU time) in the same round, the
baseline being ``import requests, httpx`` (as in ``bench_cold.py``).

Usage::

    python benchmarks/bench_identity.py [--rounds 30] [--before /work/main]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench_cold import _cpu_of_children, environment

from hoxton_auth.testing import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    AuthServer,
)

HERE = Path(__file__).resolve().parent.parent


def _scripts(domain: str, workdir: Path) -> dict[str, tuple[str, str | None]]:
    """name -> (program, checkout put first on PYTHONPATH or None for this one)."""
    credentials = f"{DEFAULT_CLIENT_ID!r}, {DEFAULT_CLIENT_SECRET!r}, domain={domain!r}"
    password = f"username={DEFAULT_USERNAME!r}, password={DEFAULT_PASSWORD!r}"
    programs = {
        "client_credentials": f"HoxtonAuth({credentials}, cache={{cache!r}}).get_token()",
        "password": f"HoxtonAuth({credentials}, {password}, cache={{cache!r}}).get_token()",
    }
    scripts: dict[str, tuple[str, str | None]] = {"baseline": ("import requests, httpx", None)}
    for side in ("before", "after"):
        for grant, program in programs.items():
            cache = str(workdir / f"{side}-{grant}.json")
            code = "from hoxton_auth import HoxtonAuth\n" + program.format(cache=cache) + "\n"
            scripts[f"{grant} {side}"] = (code, side)
    return scripts


def _run(code: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--before", default="/work/main", help="checkout of the old version")
    args = parser.parse_args(argv)
    with AuthServer() as server, tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        base = environment(workdir)
        envs = {
            "before": {**base, "PYTHONPATH": args.before},
            "after": {**base, "PYTHONPATH": str(HERE)},
            None: base,
        }
        scripts = _scripts(server.domain, workdir)
        for code, side in scripts.values():  # fill the caches, warm the bytecode
            _run(code, envs[side])
            _run(code, envs[side])
        fetched = server.count()
        cpu: dict[str, list[float]] = {name: [] for name in scripts}
        wall: dict[str, list[float]] = {name: [] for name in scripts}
        names = list(scripts)
        for round_number in range(args.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                code, side = scripts[name]
                cpu_before, start = _cpu_of_children(), time.perf_counter()
                _run(code, envs[side])
                wall[name].append((time.perf_counter() - start) * 1000)
                cpu[name].append((_cpu_of_children() - cpu_before) * 1000)
        if server.count() != fetched:
            raise RuntimeError("a cold cached call fetched a token: its cache was not used")
    extra = {
        name: statistics.median(v - b for v, b in zip(values, cpu["baseline"], strict=False))
        for name, values in cpu.items()
    }
    print("| grant | before: extra CPU ms | after: extra CPU ms | after / before |")
    print("|---|---:|---:|---:|")
    for grant in ("client_credentials", "password"):
        before, after = extra[f"{grant} before"], extra[f"{grant} after"]
        print(f"| {grant} | {before:.1f} | {after:.1f} | {after / before:.2f} |")
    print()
    print(
        f"baseline (import requests, httpx): {statistics.median(cpu['baseline']):.1f} ms CPU, "
        f"{statistics.median(wall['baseline']):.1f} ms wall; {args.rounds} rounds; "
        f"wall medians: "
        + ", ".join(f"{n} {statistics.median(w):.1f}" for n, w in wall.items() if n != "baseline")
    )
    command = " ".join(sys.argv)
    print(f"python {sys.version.split()[0]} on {os.cpu_count()} CPUs; command: {command}")


if __name__ == "__main__":
    main()
