"""The "outage" row (issue 12): API calls failed during an IdP outage.

Scenario: a service calls the API ten times a second with one ``HoxtonAuth``
object and the shared file cache. Just as its token enters the renewal
window (so that every renewal attempt in it fails), Auth0 goes down for 5 minutes (the test server's
``outage`` switch: every token request gets 503). We count the API calls
that failed (an exception, or any status other than 200; the test server's
API refuses an expired token with 401).

Time compression: a real day-long token would make the run last a day, and
only the token's last minutes matter. So the whole timeline is divided by
``--scale`` (default 10): token lifetime 20 min -> 120 s, the 5-minute
outage -> 30 s, ``leeway`` 10 min -> 60 s. The library's own constants are
*not* compressed (the 5 s margin before ``exp`` within which a token is no
longer served, the cooldowns of 5, 10, 20, 40 s between renewal attempts),
which makes the compressed run harder than the real one, not easier.

Two rows: ``leeway`` 10 minutes (longer than the outage: it can be ridden
out) and the default ``leeway=60`` (an outage that starts inside a 1-minute
renewal window outlasts the token: the calls after ``exp`` must fail, with
any library, since no valid token exists).

Usage: ``python benchmarks/bench_outage.py [--scale 10]`` (about 5 minutes at
the default scale; ``--scale 30`` for a rougher 2-minute run).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
import warnings
from pathlib import Path

import requests

import hoxton_auth
from hoxton_auth import FileTokenCache, HoxtonAuth, HoxtonAuthError
from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

# Also runs against hoxton_auth before issue 12 (for the comparison row), which
# had neither the warning nor the server's outage switch.
WARNING: type[Warning] = getattr(hoxton_auth, "HoxtonAuthWarning", UserWarning)

SIMULATED_LIFETIME = 20 * 60.0
SIMULATED_OUTAGE = 5 * 60.0
CALLS_PER_SECOND = 10.0


@dataclasses.dataclass(frozen=True)
class Outage:
    """What one outage run saw."""

    leeway_simulated: float
    calls: int
    failed: int
    token_requests: int


def run_outage(leeway_simulated: float, scale: float) -> Outage:
    """One run: the outage starts as the renewal window opens and lasts 5 (simulated) minutes."""
    lifetime = SIMULATED_LIFETIME / scale
    leeway = leeway_simulated / scale
    outage = SIMULATED_OUTAGE / scale
    with AuthServer(token_lifetime=round(lifetime)) as server, tempfile.TemporaryDirectory() as tmp:
        cache = FileTokenCache(Path(tmp) / "tokens.json")
        auth = HoxtonAuth(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            domain=server.domain,
            cache=cache,
            leeway=leeway,
            timeout=2.0,
            retry_deadline=4.0,
            max_attempts=2,
        )
        issued = time.time()
        auth.get_token()
        # As the renewal window opens: with ten calls a second, an outage that
        # began later would find the token renewed already.
        outage_starts = issued + lifetime - leeway - 0.5
        outage_ends = outage_starts + outage
        stop = outage_ends + 15.0  # and a little after, to see it recover
        calls = failed = 0
        with requests.Session() as session, warnings.catch_warnings():
            warnings.simplefilter("ignore", WARNING)
            while (now := time.time()) < stop:
                _switch_outage(server, outage_starts <= now < outage_ends)
                calls += 1
                try:
                    status = session.get(server.api_url, auth=auth, timeout=5).status_code
                except HoxtonAuthError:
                    status = 0
                failed += status != 200
                time.sleep(1.0 / CALLS_PER_SECOND)
        return Outage(leeway_simulated, calls, failed, server.count())


def _switch_outage(server: AuthServer, down: bool) -> None:
    if hasattr(server, "outage"):
        server.outage = down
        return
    # A server from before issue 12: an outage is a long queue of 503 faults.
    state = server._state  # the fault queue of that version's server
    if down and not state.faults:
        server.fail_next(10**6, status=503)
    elif not down and state.faults:
        with state.lock:
            state.faults.clear()


def outage_rows(scale: float) -> list[list[str]]:
    """The table rows: one per leeway."""
    rows = []
    for leeway in (600.0, 60.0):
        result = run_outage(leeway, scale)
        goal = "0" if leeway > SIMULATED_OUTAGE else "n/a (outage outlasts the token)"
        rows.append(
            [
                f"outage: API calls failed during a 5-min IdP outage starting as the renewal "
                f"window opens, leeway={leeway:.0f}s (time / {scale:g})",
                f"{result.failed} of {result.calls} ({result.token_requests} token requests)",
                goal,
            ]
        )
    return rows


def main() -> None:
    """Print the outage rows as a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0, help="time compression factor")
    args = parser.parse_args()
    print("| figure | hoxton_auth | goal |")
    print("|---|---|---|")
    for row in outage_rows(args.scale):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
