"""Figure 2: how many token requests a crowd makes.

Scenarios (the token endpoint answers after ~100 ms, like a real identity
provider, so that races which exist in production show):

* 32 threads and 100 asyncio tasks sharing one auth object, empty cache;
* 32 and 64 processes sharing one cache file, empty cache;
* 8 processes sharing a cache whose access token has expired: each needs a
  refresh, with Auth0-style refresh token rotation and reuse detection.

Processes are real interpreters started with this file as their script; each
builds its client, says ``ready``, and waits for ``go`` on stdin, so they all
ask for a token at the same moment.

What "empty cache" means for peers that cannot start without an explicit
``fetch_token()`` (Authlib): their client starts with an expired token, which
is how a long-running service meets the race. Peers without automatic renewal
of client-credentials tokens (requests-oauthlib) or without a cache shared
between processes have no number for those rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import peers
import requests
from peers import AUTHLIB, HOXTON, HTTPX_AUTH, REQUESTS_AUTH, REQUESTS_OAUTHLIB, Endpoints

__all__ = ["Count", "TokenLog", "run_concurrency"]

TOKEN_DELAY = 0.1  # seconds: a real identity provider's answer time
SEED_LIFETIME = 2  # seconds: tokens issued while seeding the refresh scenario
REFRESH_SCOPE = "offline_access"


@dataclasses.dataclass(frozen=True)
class Count:
    """Token requests made in one scenario by one library (``None``: not applicable)."""

    requests: int | None
    refreshes: int = 0
    invalid_grants: int = 0
    failures: int = 0
    note: str = ""


class TokenLog(logging.Handler):
    """Statuses of the token server's ``/oauth/token`` answers, from its request log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statuses: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if isinstance(args, tuple) and len(args) == 3 and args[1] == "/oauth/token":
            self.statuses.append(int(str(args[2])))

    @contextmanager
    def attached(self) -> Iterator[TokenLog]:
        logger = logging.getLogger("hoxton_auth.testing")
        level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(level)


@contextmanager
def counting(server: Any, log: TokenLog, result: dict[str, int]) -> Iterator[None]:
    """Fill ``result`` with the token requests, refreshes and 403s made inside."""
    before, refreshes, answers = server.count(), server.count("refresh_token"), len(log.statuses)
    yield
    # Answers are logged after they are sent: give the server threads a moment.
    deadline = time.monotonic() + 5
    while len(log.statuses) - answers < server.count() - before and time.monotonic() < deadline:
        time.sleep(0.01)
    statuses = log.statuses[answers:]
    result["requests"] = server.count() - before
    result["refreshes"] = server.count("refresh_token") - refreshes
    result["invalid_grants"] = sum(1 for s in statuses if s == 403)
    if len(statuses) != result["requests"]:
        raise RuntimeError("the token server's request log and its counter disagree")


# -- in one process: threads and tasks ------------------------------------------------


def _expired_token() -> dict[str, Any]:
    return {"access_token": "expired", "token_type": "Bearer", "expires_at": time.time() - 10}


def _in_threads(count: int, work: Callable[[], object]) -> int:
    barrier = threading.Barrier(count)
    failures: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            work()
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(failures)


def _thread_work(name: str, ends: Endpoints) -> tuple[Callable[[], object], Callable[[], None]]:
    url = ends.api_url
    if name == HOXTON:
        auth = peers.hoxton(ends)
        return lambda: requests.get(url, auth=auth, timeout=60).raise_for_status(), _nothing
    if name == REQUESTS_AUTH:
        peers.use_peer_file_cache(ends.cache_path)
        ra = peers.requests_auth_auth(ends)
        return lambda: requests.get(url, auth=ra, timeout=60).raise_for_status(), _nothing
    if name == HTTPX_AUTH:
        peers.use_peer_file_cache(ends.cache_path)
        client = httpx.Client(auth=peers.httpx_auth_auth(ends), timeout=60)
        return lambda: client.get(url).raise_for_status(), client.close
    if name == AUTHLIB:
        from authlib.integrations.requests_client import OAuth2Session  # type: ignore[import-untyped]  # no stubs published

        session = OAuth2Session(**peers.authlib_options(ends), token=_expired_token())
        peers.authlib_audience(session, ends.audience)
        return lambda: session.get(url, timeout=60).raise_for_status(), session.close
    raise ValueError(name)


def _nothing() -> None:
    pass


async def _in_tasks(name: str, ends: Endpoints, count: int) -> int:
    client: httpx.AsyncClient
    if name == HOXTON:
        client = httpx.AsyncClient(auth=peers.hoxton(ends), timeout=60)
    elif name == HTTPX_AUTH:
        peers.use_peer_file_cache(ends.cache_path)
        client = httpx.AsyncClient(auth=peers.httpx_auth_auth(ends), timeout=60)
    elif name == AUTHLIB:
        from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-untyped]  # no stubs published

        client = AsyncOAuth2Client(**peers.authlib_options(ends), token=_expired_token())
        peers.authlib_audience(client, ends.audience)
    else:
        raise ValueError(name)
    async with client:
        answers = await asyncio.gather(
            *(client.get(ends.api_url) for _ in range(count)), return_exceptions=True
        )
    return sum(1 for a in answers if isinstance(a, BaseException) or a.status_code != 200)


def _run_tasks(name: str, ends: Endpoints, count: int) -> int:
    return asyncio.run(_in_tasks(name, ends, count))


# -- many processes ------------------------------------------------------------------------


def _child_client(config: dict[str, Any]) -> Callable[[], object]:
    """Build the client in a child; return what it does after ``go``."""
    ends = Endpoints(**{**config["ends"], "cache_path": Path(config["ends"]["cache_path"])})
    name, scenario, url = config["library"], config["scenario"], ends.api_url
    if name in (REQUESTS_AUTH, HTTPX_AUTH):
        peers.use_peer_file_cache(ends.cache_path)
    if scenario == "empty":
        if name == HOXTON:
            auth = peers.hoxton(ends)
        elif name == REQUESTS_AUTH:
            auth = peers.requests_auth_auth(ends)
        elif name == HTTPX_AUTH:
            return lambda: httpx.get(url, auth=peers.httpx_auth_auth(ends)).raise_for_status()
        else:
            raise ValueError(name)
        return lambda: requests.get(url, auth=auth, timeout=60).raise_for_status()
    return _refresh_client(name, ends, config["mode"])


def _refresh_client(name: str, ends: Endpoints, mode: str) -> Callable[[], object]:
    """Password grant with a refresh token; tokens kept in the library's best cache."""
    from hoxton_auth.testing import DEFAULT_PASSWORD, DEFAULT_USERNAME

    url = ends.api_url
    user = {"username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD}
    client_fields = {"client_id": ends.client_id, "client_secret": ends.client_secret}
    if name == HOXTON:
        from hoxton_auth import HoxtonAuth

        auth = HoxtonAuth(
            ends.client_id,
            ends.client_secret,
            username=DEFAULT_USERNAME,
            password=DEFAULT_PASSWORD,
            scope=REFRESH_SCOPE,
            domain=ends.domain,
            audience=ends.audience,
            cache=ends.cache_path,
        )
        return lambda: requests.get(url, auth=auth, timeout=60).raise_for_status()
    if name == REQUESTS_AUTH:
        import requests_auth

        ra = requests_auth.OAuth2ResourceOwnerPasswordCredentials(
            ends.token_url, scope=REFRESH_SCOPE, audience=ends.audience, **user, **client_fields
        )
        return lambda: requests.get(url, auth=ra, timeout=60).raise_for_status()
    if name == HTTPX_AUTH:
        import httpx_auth

        ha = httpx_auth.OAuth2ResourceOwnerPasswordCredentials(
            ends.token_url, scope=REFRESH_SCOPE, audience=ends.audience, **user, **client_fields
        )
        return lambda: httpx.get(url, auth=ha).raise_for_status()
    # No cache of their own: the user keeps the token dict in a JSON file and
    # hands it back through the library's token-updated callback.
    store = ends.cache_path.with_suffix("." + name.lower())

    def save(token: dict[str, Any], **_: Any) -> None:
        store.write_text(json.dumps(dict(token)))

    if name == REQUESTS_OAUTHLIB:
        from oauthlib.oauth2 import LegacyApplicationClient  # type: ignore[import-untyped]  # no stubs published
        from requests_oauthlib import OAuth2Session  # type: ignore[import-untyped]  # no stubs published

        if mode == "seed":
            session = OAuth2Session(
                client=LegacyApplicationClient(client_id=ends.client_id), scope=[REFRESH_SCOPE]
            )
            return lambda: save(
                session.fetch_token(
                    ends.token_url,
                    **user,
                    client_secret=ends.client_secret,
                    include_client_id=True,
                    audience=ends.audience,
                    scope=REFRESH_SCOPE,
                )
            )
        session = OAuth2Session(
            client=LegacyApplicationClient(client_id=ends.client_id),
            scope=[REFRESH_SCOPE],
            token=json.loads(store.read_text()),
            auto_refresh_url=ends.token_url,
            auto_refresh_kwargs=client_fields,
            token_updater=save,
        )
        return lambda: session.get(url, timeout=60).raise_for_status()
    if name == AUTHLIB:
        from authlib.integrations.requests_client import (
            OAuth2Session as AuthlibSession,
        )

        options = {**peers.authlib_options(ends), "grant_type": "password"}
        if mode == "seed":
            seeder = AuthlibSession(**options, scope=REFRESH_SCOPE)
            return lambda: save(seeder.fetch_token(**user, audience=ends.audience))
        authlib_session = AuthlibSession(
            **options,
            scope=REFRESH_SCOPE,
            token=json.loads(store.read_text()),
            update_token=save,
        )
        return lambda: authlib_session.get(url, timeout=60).raise_for_status()
    raise ValueError(name)


def child_main(config: dict[str, Any]) -> None:
    """A child process: build, say ready, wait for go, work, report."""
    work = _child_client(config)
    print("ready", flush=True)
    if config["mode"] != "seed":
        sys.stdin.readline()
    try:
        work()
        report: dict[str, Any] = {"ok": True}
    except Exception as exc:
        # The type only: messages of some libraries quote the token response.
        report = {"ok": False, "error": type(exc).__name__}
        if config.get("debug"):
            report["detail"] = repr(exc)
    print(json.dumps(report), flush=True)


def herd(count: int, config: dict[str, Any]) -> int:
    """Run ``count`` children together; return how many failed."""
    command = [sys.executable, "-W", "ignore", __file__, json.dumps(config)]
    children = [
        subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    failures = 0
    try:
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                _, err = child.communicate(timeout=30)
                raise RuntimeError(f"a {config['library']} child did not start:\n{err[-2000:]}")
        if config["mode"] != "seed":
            for child in children:
                assert child.stdin is not None
                child.stdin.write("go\n")
                child.stdin.flush()
        for child in children:
            out, _ = child.communicate(timeout=120)
            lines = out.strip().splitlines()
            if child.returncode != 0 or not lines or not json.loads(lines[-1]).get("ok"):
                failures += 1
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
    return failures


# -- the figure ------------------------------------------------------------------------------

THREAD_LIBRARIES = (HOXTON, HTTPX_AUTH, REQUESTS_AUTH, AUTHLIB)
TASK_LIBRARIES = (HOXTON, HTTPX_AUTH, AUTHLIB)
PROCESS_LIBRARIES = (HOXTON, HTTPX_AUTH, REQUESTS_AUTH)
REFRESH_LIBRARIES = (HOXTON, HTTPX_AUTH, REQUESTS_AUTH, REQUESTS_OAUTHLIB, AUTHLIB)

NOT_APPLICABLE = {
    "threads": {REQUESTS_OAUTHLIB: "no automatic fetch"},
    "tasks": {REQUESTS_AUTH: "no asyncio", REQUESTS_OAUTHLIB: "no asyncio"},
    "processes": {
        REQUESTS_OAUTHLIB: "no shared cache",
        AUTHLIB: "no shared cache",
    },
}
STARTS_EXPIRED = {"threads": {AUTHLIB}, "tasks": {AUTHLIB}}


def run_concurrency(
    server: Any, ends: Endpoints, workdir: Path, process_counts: tuple[int, ...] = (32, 64)
) -> dict[str, dict[str, Count]]:
    """Every row of figure 2: {row name: {library: Count}}."""
    log = TokenLog()
    rows: dict[str, dict[str, Count]] = {}
    delay = server.token_delay
    server.token_delay = TOKEN_DELAY
    serial = iter(range(1_000_000))

    def fresh(name: str) -> Endpoints:
        path = workdir / f"c{next(serial)}-{name}" / "tokens.json"
        path.parent.mkdir(parents=True)
        return dataclasses.replace(ends, cache_path=path)

    def measured(run: Callable[[], int], note: str = "") -> Count:
        result: dict[str, int] = {}
        with counting(server, log, result):
            failures = run()
        return Count(
            result["requests"],
            result["refreshes"],
            result["invalid_grants"],
            failures,
            note,
        )

    def skipped(row: str) -> dict[str, Count]:
        return {name: Count(None, note=why) for name, why in NOT_APPLICABLE[row].items()}

    try:
        with log.attached():
            row = skipped("threads")
            for name in THREAD_LIBRARIES:
                work, close = _thread_work(name, fresh(name))
                note = "from an expired token" if name in STARTS_EXPIRED["threads"] else ""
                row[name] = measured(partial(_in_threads, 32, work), note)
                close()
            rows["32 threads, empty cache"] = row

            row = skipped("tasks")
            for name in TASK_LIBRARIES:
                e = fresh(name)
                note = "from an expired token" if name in STARTS_EXPIRED["tasks"] else ""
                row[name] = measured(partial(_run_tasks, name, e, 100), note)
            rows["100 asyncio tasks, empty cache"] = row

            for count in process_counts:
                row = skipped("processes")
                for name in PROCESS_LIBRARIES:
                    config = _config(name, "empty", "herd", fresh(name))
                    row[name] = measured(partial(herd, count, config))
                rows[f"{count} processes, empty cache"] = row

            rows["8 processes, expired token: refreshes / invalid_grant"] = _refresh_row(
                server, fresh, measured
            )
    finally:
        server.token_delay = delay
    return rows


def _config(name: str, scenario: str, mode: str, ends: Endpoints) -> dict[str, Any]:
    fields = dataclasses.asdict(ends)
    fields["cache_path"] = str(ends.cache_path)
    return {"library": name, "scenario": scenario, "mode": mode, "ends": fields}


def _refresh_row(
    server: Any,
    fresh: Callable[[str], Endpoints],
    measured: Callable[[Callable[[], int]], Count],
) -> dict[str, Count]:
    configs = {name: fresh(name) for name in REFRESH_LIBRARIES}
    lifetime = server.token_lifetime
    server.token_lifetime = SEED_LIFETIME
    try:
        seeded = time.monotonic()
        for name, e in configs.items():
            if herd(1, _config(name, "refresh", "seed", e)):
                raise RuntimeError(f"seeding the refresh scenario failed for {name}")
    finally:
        server.token_lifetime = lifetime
    # Every seeded access token is now past its expiry, by every library's reckoning.
    time.sleep(max(0.0, seeded + SEED_LIFETIME + 0.5 - time.monotonic()))
    row: dict[str, Count] = {}
    for name, e in configs.items():
        config = _config(name, "refresh", "herd", e)
        row[name] = measured(partial(herd, 8, config))
    return row


if __name__ == "__main__":
    child_main(json.loads(sys.argv[1]))
