"""``examples/webapp.py`` (issue 21): two users log in to a web app of several worker processes.

The example runs as it would for a user: its own process, which starts three
worker processes on three ports (as behind a load balancer); a real test
identity provider; a browser per user (an httpx client with its cookie jar,
following the login's redirects by hand). Each step lands on another worker.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "webapp.py"
USERS = {"alice@example.com": "alice-password-Wq81", "bob@example.com": "bob-password-Zt42"}

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the example's workers are POSIX")


def user_sub(username: str) -> str:
    """The test server's ``sub`` of a user."""
    return "auth0|" + hashlib.sha256(username.encode()).hexdigest()[:24]


@pytest.fixture
def server() -> Iterator[AuthServer]:
    with AuthServer(token_delay=0.1) as running:
        for username, password in USERS.items():
            running.add_user(username, password)
        yield running


@pytest.fixture
def workers(server: AuthServer, tmp_path: Path) -> Iterator[list[str]]:
    """The example's worker URLs, while it runs."""
    command = [
        sys.executable,
        str(EXAMPLE),
        "--workers=3",
        f"--domain={server.domain}",
        f"--client-id={DEFAULT_CLIENT_ID}",
        f"--api-url={server.api_url}",
        f"--sessions={tmp_path / 'sessions'}",
        f"--cache={tmp_path / 'tokens.json'}",
    ]
    env = {**os.environ, "HOXTON_CLIENT_SECRET": DEFAULT_CLIENT_SECRET}
    app = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
    assert app.stdout is not None
    try:
        urls = []
        for line in app.stdout:
            if line.startswith("worker "):
                urls.append(line.split(": ", 1)[1].strip())
            if line.strip() == "ready":
                break
        assert len(urls) == 3, "the example did not start its workers"
        yield urls
    finally:
        app.terminate()
        app.wait(timeout=60)
        app.stdout.close()


def log_in(browser: httpx.Client, worker: str, username: str) -> None:
    """The browser's login: /login on ``worker``, the IdP, the callback (another worker)."""
    started = browser.get(f"{worker}login", params={"user": username})
    assert started.status_code == 302
    at_idp = httpx.get(started.headers["location"])
    assert at_idp.status_code == 302, at_idp.text
    callback = at_idp.headers["location"]
    assert not callback.startswith(worker)  # the first worker's /callback: another process
    finished = browser.get(callback)
    assert finished.status_code == 302, finished.text


def call_api(browser: httpx.Client, worker: str) -> Any:
    return browser.get(f"{worker}api").json()


def test_two_users_log_in_and_are_served_by_every_worker(
    server: AuthServer, workers: list[str]
) -> None:
    with httpx.Client() as alice, httpx.Client() as bob:
        log_in(alice, workers[1], "alice@example.com")
        log_in(bob, workers[2], "bob@example.com")

        seen = set()
        for worker in workers:
            for browser, username in ((alice, "alice@example.com"), (bob, "bob@example.com")):
                answer = call_api(browser, worker)
                assert answer["status"] == 200
                assert answer["api"]["sub"] == user_sub(username)
                seen.add(answer["worker"])
        assert len(seen) == 3  # three processes served them
        assert server.count("authorization_code") == 2
        assert len(server.token_requests) == 2  # the cache served every other worker

        server.expire_access_tokens()  # the API now refuses both tokens: renew, once each
        for worker in workers:
            assert call_api(alice, worker)["status"] == 200
        assert server.count("refresh_token") == 1
        assert server.reuse_detected == 0

        assert alice.get(f"{workers[2]}logout").status_code == 302
        assert alice.get(f"{workers[0]}api").status_code == 401  # logged out for every worker
        assert call_api(bob, workers[0])["api"]["sub"] == user_sub("bob@example.com")
        assert len(server.revoke_requests) == 1
