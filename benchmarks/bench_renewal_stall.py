"""The slowest API call across a renewal (issue 20): who makes a caller wait for the IdP?

Scenario: a service calls the API every 50 ms through one auth object, and
the token endpoint takes 2 s to answer (``AuthServer(token_delay=2)``; Auth0
answers in 100 ms to several seconds). The token is short-lived, so that one
renewal happens a few tens of seconds into the stream, at each library's
*default* early-renewal margin; the stream goes on until a few seconds after
the renewed token was first sent. The first call (the first token fetch) is
left out. Every row runs at once, each in its own process with its own token
server, against one shared API server (``apiserver.py``, the one figure 1
uses): a noisy neighbour slows every row alike.

Rows (library, client, token lifetime: about 30 s before the library renews):

* ``static header``: a three-line auth callable, no renewal at all, for
  ``RENEWS_AFTER + AFTER`` seconds (the baseline: what the slowest of these
  calls costs on this machine anyway);
* ``hoxton_auth`` with default settings (refresh ahead on), on
  ``requests.Session`` and on ``httpx.Client``, 30 s tokens: its leeway
  (60 s) is capped at half the lifetime, so the renewal point is 15 s in
  and the background renewal starts about 3 s earlier;
* ``hoxton_auth`` with ``refresh_ahead=0`` (the inline renewal, as before
  issue 20), and with ``--before CHECKOUT`` that checkout's package
  (``peers.use_before``) with its defaults: the stall this removes;
* httpx-auth and requests-auth ``OAuth2ClientCredentials`` (``early_expiry``
  default 30 s): 60 s tokens;
* Authlib ``OAuth2Session`` on requests (``leeway`` default 60 s; it
  re-fetches a client-credentials token by itself): 90 s tokens.

Columns: the slowest call that ended before the token server received the
renewal request ("no renewal"), the slowest call from then to the end of
the stream ("across the renewal"), the median call, token requests after the
first, and calls sent with a token already past its ``exp`` (decoded from the
``Authorization`` header the client sent).

Usage::

    python benchmarks/bench_renewal_stall.py [--delay 2] [--before /tmp/oldtree]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import peers
from apiserver import api_server
from peers import AUTHLIB, BASELINE, BEFORE, HOXTON, HTTPX_AUTH, REQUESTS_AUTH

HOXTON_HTTPX = "hoxton_auth (httpx.Client)"
HOXTON_INLINE = "hoxton_auth, refresh_ahead=0"
INTERVAL = 0.05  # seconds between the starts of two calls
AFTER = 3.0  # seconds the stream goes on after the renewed token was first sent
RENEWS_AFTER = 30.0  # about when (s into the stream) each library renews, at its defaults

# Token lifetime per row, so that each library renews about RENEWS_AFTER in at its default
# margin (hoxton_auth's leeway is capped at half the lifetime: 30 s tokens renew at 15 s).
LIFETIME = {
    BASELINE: 3600,  # never renewed: the stream lasts RENEWS_AFTER + AFTER
    HOXTON: 30,
    HOXTON_HTTPX: 30,
    HOXTON_INLINE: 30,
    BEFORE: 30,
    HTTPX_AUTH: 60,  # early_expiry 30 s
    REQUESTS_AUTH: 60,  # early_expiry 30 s
    AUTHLIB: 90,  # leeway 60 s
}
CLIENT = {
    BASELINE: "requests.Session",
    HOXTON: "requests.Session",
    HOXTON_HTTPX: "httpx.Client",
    HOXTON_INLINE: "requests.Session",
    BEFORE: "requests.Session",
    HTTPX_AUTH: "httpx.Client",
    REQUESTS_AUTH: "requests.Session",
    AUTHLIB: "requests (OAuth2Session)",
}
MARGIN = {
    BASELINE: "-",
    HOXTON: "defaults (leeway 60 s, refresh ahead 10 %)",
    HOXTON_HTTPX: "defaults (leeway 60 s, refresh ahead 10 %)",
    HOXTON_INLINE: "leeway 60 s, refresh_ahead=0",
    BEFORE: "defaults (leeway 60 s)",
    HTTPX_AUTH: "early_expiry 30 s (default)",
    REQUESTS_AUTH: "early_expiry 30 s (default)",
    AUTHLIB: "leeway 60 s (default)",
}
ROWS = (BASELINE, HOXTON, HOXTON_HTTPX, HOXTON_INLINE, HTTPX_AUTH, REQUESTS_AUTH, AUTHLIB)


@dataclass(frozen=True)
class Call:
    """One API call: when it started (wall clock), how long it took, what it sent."""

    started: float
    seconds: float
    token_requests: int  # the token server's count when the call ended
    authorization: str


def _client(
    row: str, ends: peers.Endpoints, before: str | None
) -> tuple[Callable[[], Any], Callable[[], None]]:
    """(one API call returning its response, close) for ``row``."""
    import httpx
    import requests

    if row == BASELINE:
        from hoxton_auth import HoxtonAuth

        token = HoxtonAuth(
            ends.client_id,
            ends.client_secret,
            domain=ends.domain,
            audience=ends.audience,
            cache=None,
        ).get_token()
        session = requests.Session()
        session.auth = peers.static_auth(token)
    elif row in (HOXTON, HOXTON_HTTPX, HOXTON_INLINE):
        from hoxton_auth import HoxtonAuth

        options: dict[str, Any] = {"refresh_ahead": 0} if row == HOXTON_INLINE else {}
        auth = HoxtonAuth(
            ends.client_id,
            ends.client_secret,
            domain=ends.domain,
            audience=ends.audience,
            cache=ends.cache_path,
            **options,
        )
        if row == HOXTON_HTTPX:
            client = httpx.Client(auth=auth)
            return (lambda: client.get(ends.api_url, timeout=30)), client.close
        session = requests.Session()
        session.auth = auth
    elif row == BEFORE:
        if before is None:
            raise ValueError("--before CHECKOUT is needed for this row")
        peers.use_before(before)
        session = requests.Session()
        session.auth = peers.hoxton_before(ends)
    elif row == HTTPX_AUTH:
        client = httpx.Client(auth=peers.httpx_auth_auth(ends))
        return (lambda: client.get(ends.api_url, timeout=30)), client.close
    elif row == REQUESTS_AUTH:
        session = requests.Session()
        session.auth = peers.requests_auth_auth(ends)
    elif row == AUTHLIB:
        session = peers.authlib_session(ends)
    else:
        raise ValueError(row)
    return (lambda: session.get(ends.api_url, timeout=30)), session.close


def _stream(row: str, api_url: str, delay: float, before: str | None) -> dict[str, Any]:
    """Run one row's stream in this process; what it saw, as JSON-able data."""
    from hoxton_auth.testing import AUDIENCE, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

    lifetime = LIFETIME[row]
    with (
        AuthServer(token_lifetime=lifetime, token_delay=delay) as server,
        tempfile.TemporaryDirectory(prefix="hoxton-stall-") as scratch,
    ):
        ends = peers.Endpoints(
            domain=server.domain,
            api_url=api_url,
            client_id=DEFAULT_CLIENT_ID,
            client_secret=DEFAULT_CLIENT_SECRET,
            audience=AUDIENCE,
            cache_path=Path(scratch) / "tokens.json",
        )
        get, close = _client(row, ends, before)
        calls: list[Call] = []
        try:
            first = get()  # the first token fetch (left out)
            first.raise_for_status()
            first_token = first.request.headers["Authorization"]
            initial = server.count()
            clock = time.perf_counter
            stream_started = time.time()
            deadline = stream_started + lifetime + 15.0
            renewed_at: float | None = None
            next_start = clock()
            while True:
                now = time.time()
                if now > deadline or (renewed_at is not None and now > renewed_at + AFTER):
                    break
                if row == BASELINE and now > stream_started + RENEWS_AFTER + AFTER:
                    break
                started = clock()
                response = get()
                seconds = clock() - started
                response.raise_for_status()
                header = response.request.headers.get("Authorization", "")
                calls.append(Call(now, seconds, server.count(), header))
                if renewed_at is None and header != first_token:
                    renewed_at = now
                next_start = max(next_start + INTERVAL, clock())
                time.sleep(max(next_start - clock(), 0.0))
        finally:
            close()
    return _summary(row, calls, initial, renewed_at, stream_started)


def _expires(header: str) -> float:
    claims = jwt.decode(header.removeprefix("Bearer "), options={"verify_signature": False})
    return float(claims["exp"])


def _summary(
    row: str, calls: list[Call], initial: int, renewed_at: float | None, stream_started: float
) -> dict[str, Any]:
    quiet = [c.seconds for c in calls if c.token_requests == initial]
    across = [c.seconds for c in calls if c.token_requests > initial]
    expiry = {header: _expires(header) for header in {c.authorization for c in calls}}
    expired = sum(c.started >= expiry[c.authorization] for c in calls)
    return {
        "row": row,
        "calls": len(calls),
        "quiet_max_ms": max(quiet, default=0.0) * 1000,
        "across_max_ms": max(across, default=0.0) * 1000 if across else None,
        "median_ms": statistics.median(c.seconds for c in calls) * 1000,
        "renewals": calls[-1].token_requests - initial if calls else 0,
        "renewed_after_s": None if renewed_at is None else renewed_at - stream_started,
        "expired": expired,
    }


def run_stalls(
    api_url: str, rows: Sequence[str] = ROWS, delay: float = 2.0, before: str | None = None
) -> dict[str, dict[str, Any]]:
    """Run ``rows`` at once, one process each, against the API at ``api_url``.

    Returns what each row saw (``_summary``), by row.
    """
    workers = {}
    for row in rows:
        command = [sys.executable, __file__, "--worker", row, "--api", api_url]
        command += ["--delay", str(delay)]
        if before:
            command += ["--before", before]
        workers[row] = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    results = {}
    for row, worker in workers.items():
        output, _ = worker.communicate()
        if worker.returncode != 0:
            raise RuntimeError(f"row {row!r} failed (exit {worker.returncode})")
        results[row] = json.loads(output)
    return results


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=2.0, help="token endpoint delay (s)")
    parser.add_argument("--before", metavar="CHECKOUT", help="add that checkout's hoxton_auth")
    parser.add_argument("--rows", help="comma separated rows (default: all)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--api", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_stream(args.worker, args.api, args.delay, args.before)))
        return 0
    rows = list(ROWS if not args.rows else args.rows.split(","))
    if args.before and BEFORE not in rows:
        rows.insert(rows.index(HOXTON_INLINE) + 1, BEFORE)
    started, load_before = time.time(), _load()
    with api_server() as api:
        results = run_stalls(api + "/v1/things", rows, args.delay, args.before)
    print(
        "| library | client | token lifetime | renewal margin | slowest call, no renewal "
        "| slowest call across the renewal | median call | renewals | renewed token first sent "
        "| calls | calls with an expired token |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        r = results[row]
        renewed = "-" if r["renewed_after_s"] is None else f"{r['renewed_after_s']:.1f} s in"
        print(
            f"| {row} | {CLIENT[row]} | {LIFETIME[row]} s | {MARGIN[row]} "
            f"| {_ms(r['quiet_max_ms'])} | {_ms(r['across_max_ms'])} | {r['median_ms']:.1f} ms "
            f"| {r['renewals']} | {renewed} | {r['calls']} | {r['expired']} |"
        )
    print()
    print(
        f"- token endpoint answers after {args.delay:g} s; one call every {INTERVAL * 1000:.0f} ms "
        f"through one auth object, until {AFTER:g} s after the renewed token was first sent; "
        "all rows at once, one process each"
    )
    print(
        f"- load average (1, 5, 15 min) before: {load_before}; after: {_load()}; "
        f"{time.time() - started:.0f} s"
    )
    command = " ".join(["python", "benchmarks/bench_renewal_stall.py", *(argv or sys.argv[1:])])
    print(f"- command: `{command}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
