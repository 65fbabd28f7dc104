"""Figure 4: memory of the auth object and its cache, and the cache file's size.

RSS: a fresh interpreter first imports every module that building the auth
object and fetching one token will load (found by a discovery run of the same
script), so that imports are not counted. It then reads its resident set size,
builds the auth object, fetches a token from the local server into the
library's cache, collects garbage and reads its RSS again.

Cache file: the file already holds ``DEAD_ENTRIES`` entries of other clients
whose tokens expired three days ago (no refresh token), as a cache used for a
while would. One token fetch later, the file's entry count and size show
whether dead entries are pruned.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peers
from peers import AUTHLIB, HOXTON, HTTPX_AUTH, REQUESTS_AUTH, REQUESTS_OAUTHLIB, Endpoints

__all__ = ["CacheFile", "cache_file_growth", "memory_growth"]

DEAD_ENTRIES = 200
MEMORY_LIBRARIES = (HOXTON, HTTPX_AUTH, REQUESTS_AUTH, REQUESTS_OAUTHLIB, AUTHLIB)

_CHILD = """
import gc, importlib, json, pathlib, sys
sys.path.insert(0, {bench!r})
MODULES = {modules!r}
for name in MODULES:
    try:
        importlib.import_module(name)
    except Exception:
        pass
import peers

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * {page}

fields = json.loads({ends!r})
fields["cache_path"] = pathlib.Path(fields["cache_path"])
ends = peers.Endpoints(**fields)
gc.collect()
before = rss()
keep = peers.first_token({name!r}, ends)
gc.collect()
after = rss()
print(json.dumps({{"grown": after - before, "modules": sorted(sys.modules)}}))
"""


def _child(name: str, ends: Endpoints, modules: list[str]) -> dict[str, Any]:
    import os

    fields = {k: str(v) for k, v in ends.__dict__.items()}
    script = _CHILD.format(
        bench=str(Path(__file__).parent),
        modules=modules,
        page=os.sysconf("SC_PAGE_SIZE"),
        ends=json.dumps(fields),
        name=name,
    )
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def memory_growth(ends: Endpoints, workdir: Path, runs: int = 3) -> dict[str, float]:
    """KiB of RSS added by building each library's auth and fetching one token."""
    grown: dict[str, float] = {}
    for name in MEMORY_LIBRARIES:
        samples = []
        for run in range(runs + 1):
            cache = workdir / f"mem-{name}-{run}" / "tokens.json"
            cache.parent.mkdir(parents=True)
            fields = {**ends.__dict__, "cache_path": cache}
            here = Endpoints(**fields)
            if run == 0:
                modules = _child(name, here, [])["modules"]  # discovery
                continue
            samples.append(_child(name, here, modules)["grown"] / 1024)
        grown[name] = sorted(samples)[len(samples) // 2]
    return grown


@dataclass(frozen=True)
class CacheFile:
    """A cache file after one fetch on top of ``DEAD_ENTRIES`` dead entries."""

    entries: int
    size: int


def _dead_token(server: Any, now: float) -> tuple[str, float, float]:
    token = server.mint_access_token(lifetime=-3 * 86400)
    return token, now - 4 * 86400, now - 3 * 86400


def _hoxton_file(server: Any, ends: Endpoints, now: float) -> CacheFile:
    from hoxton_auth import CacheEntry, FileTokenCache, Token
    from hoxton_auth._cache_format import FORMAT_VERSION

    entries: dict[str, Any] = {}
    for number in range(DEAD_ENTRIES):
        access, obtained, expires = _dead_token(server, now)
        token = Token(access_token=access, expires_at=expires, obtained_at=obtained)
        meta = {"client_id": f"other-client-{number}", "grant": "client_credentials"}
        entries[f"{number:032x}"] = {"meta": meta, "token": token.to_dict()}
    # Written directly: the cache itself would prune these on write, which is the point.
    ends.cache_path.write_text(json.dumps({"version": FORMAT_VERSION, "entries": entries}))
    cache = FileTokenCache(ends.cache_path)
    if len(cache.entries()) != DEAD_ENTRIES:
        raise RuntimeError("the seeded cache file was not read as written: format changed?")
    peers.hoxton(ends).get_token()
    assert isinstance(next(iter(cache.entries().values())), CacheEntry)
    return CacheFile(len(cache.entries()), ends.cache_path.stat().st_size)


def _peer_file(server: Any, ends: Endpoints, name: str, now: float) -> CacheFile:
    import httpx_auth
    import requests_auth

    path = Path(f"{ends.cache_path}.{name}")
    dead = {}
    for number in range(DEAD_ENTRIES):
        access, _, expires = _dead_token(server, now)
        dead[f"{number:0128x}"] = [access, expires, None]
    path.write_text(json.dumps(dead))
    peers.use_peer_file_cache(ends.cache_path)
    if name == HTTPX_AUTH:
        auth: Any = peers.httpx_auth_auth(ends)
        cache: Any = httpx_auth.OAuth2.token_cache
    else:
        auth = peers.requests_auth_auth(ends)
        cache = requests_auth.OAuth2.token_cache
    cache.get_token(auth.state, on_missing_token=auth.request_new_token)
    peers.use_peer_memory_cache()
    return CacheFile(len(json.loads(path.read_text())), path.stat().st_size)


def cache_file_growth(server: Any, ends: Endpoints, workdir: Path) -> dict[str, CacheFile]:
    """Entries and bytes of each file cache after one fetch over dead entries."""
    now = time.time()
    result = {}
    for name in (HOXTON, HTTPX_AUTH, REQUESTS_AUTH):
        path = workdir / f"file-{name}" / "tokens.json"
        path.parent.mkdir(parents=True)
        here = Endpoints(**{**ends.__dict__, "cache_path": path})
        if name == HOXTON:
            result[name] = _hoxton_file(server, here, now)
        else:
            result[name] = _peer_file(server, here, name, now)
    return result
