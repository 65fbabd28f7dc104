"""The file cache with many users' sessions (issue 21): file size, read, write and lock times.

A web back end keeps one entry per session in the one cache file. Every read
parses the whole file, every write rewrites it (under the lock, into space
reserved when the lock was taken), so each costs time linear in the number of
sessions. This prints, for each size, the median wall time of:

* read: ``FileTokenCache.load`` of one entry (what a cache hit without the lock costs);
* lock: taking and releasing the lock (with the reservation of the next write);
* write: ``store`` of one entry while holding the lock (read, encode, write, fsync).

Entries are shaped like real ones: a ~800 character access token, a ~700
character ID token, a refresh token and the meta of a web session with its
verifier (about 1.9 KB each in the file, so 2,150 sessions made the 4 MiB that
0.2 refused to read).

Usage::

    python benchmarks/bench_file_cache_size.py [--sizes 1000 10000 50000] [--rounds 5]

Before/after: put another checkout first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from hoxton_auth import CacheEntry, CacheUnavailableError, FileTokenCache, HoxtonAuthWarning, Token
from hoxton_auth._cache_format import encode


def entry(now: float) -> CacheEntry:
    """One session's entry, as large as a real one."""
    token = Token(
        access_token="eyJ" + secrets.token_urlsafe(600),
        expires_at=now + 86400,
        obtained_at=now,
        refresh_token=secrets.token_urlsafe(48),
        id_token="eyJ" + secrets.token_urlsafe(520),
        scope="openid profile offline_access",
    )
    meta = {
        "token_url": "https://auth.hoxton.ai/oauth/token",
        "client_id": "web-app-client-id-0123456789abcdef",
        "audience": "https://api.hoxton.cloud",
        "scope": "",
        "grant": "authorization_code",
        "subject": "web-session",
        "verifier": f"hmac-sha256${secrets.token_hex(16)}${secrets.token_hex(32)}",
    }
    return CacheEntry(token, meta)


def populate(path: Path, sessions: int) -> list[str]:
    """A cache file with ``sessions`` entries, written at once; their keys."""
    now = time.time()
    raw = {}
    for _ in range(sessions):
        made = entry(now)
        raw[secrets.token_hex(16)] = {"meta": dict(made.meta), "token": made.token.to_dict()}
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(encode({}, raw))
    return list(raw)


def median_ms(action: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(directory: Path, sessions: int, rounds: int) -> tuple[int, float, float, float]:
    """(file bytes, read ms, lock ms, write ms) for a cache of ``sessions`` entries."""
    path = directory / f"tokens-{sessions}.json"
    keys = populate(path, sessions)
    try:
        return _measure(path, keys, rounds)
    finally:
        path.unlink()


def _measure(path: Path, keys: list[str], rounds: int) -> tuple[int, float, float, float]:
    cache = FileTokenCache(path)
    key = keys[len(keys) // 2]
    new = entry(time.time())

    def write() -> None:
        with cache.lock(key, timeout=600):
            cache.store(key, new)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HoxtonAuthWarning)  # the "use Redis" advice
        read_ms = median_ms(lambda: cache.load(key), rounds)
        lock_ms = median_ms(lambda: _lock_once(cache, key), rounds)
        write_all_ms = median_ms(write, rounds)
    size = path.stat().st_size
    return size, read_ms, lock_ms, max(write_all_ms - lock_ms, 0.0)


def _lock_once(cache: FileTokenCache, key: str) -> None:
    with cache.lock(key, timeout=600):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as workdir:
        directory = Path(workdir) / "cache"
        print("| sessions | file size | read (load) | lock | write (store, under the lock) |")
        print("|---:|---:|---:|---:|---:|")
        for sessions in args.sizes:
            try:
                size, read_ms, lock_ms, write_ms = measure(directory, sessions, args.rounds)
            except CacheUnavailableError as exc:  # what 0.2 did past 4 MiB
                print(f"| {sessions:,} | refused: {exc} |||", flush=True)
                continue
            print(
                f"| {sessions:,} | {size / 2**20:.1f} MiB | {read_ms:.0f} ms | "
                f"{lock_ms:.1f} ms | {write_ms:.0f} ms |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
