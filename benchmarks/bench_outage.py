"""The "outage" row (issue 12): API calls failed during an IdP outage.

Scenario: a service calls the API ten times a second through one auth
object and its library's best token cache. Just as the token enters the
renewal window (so that every renewal attempt in it fails), Auth0 goes down
for 5 minutes (the test server's ``outage`` switch: every token request gets
503). We count the API calls that failed (an exception, or any status other
than 200; the test server's API refuses an expired token with 401) and the
token requests the server saw.

The same scenario runs for ``hoxton_auth`` and for each installed peer
(``peers.py``), each against its own test server, all at once (one thread per
library, so they share the machine's load). The outage's timeline is the same
for every library of a row: it starts ``leeway`` (the row's, simulated)
before the token's ``exp``. Each library's renewal margin is set as close to
the row's ``leeway`` as it allows:

* ``hoxton_auth``: ``leeway`` (default 60 s); ``refresh_ahead`` is left at
  its default (issue 20: 10 % of the lifetime, on); ``timeout=2``,
  ``retry_deadline=4`` and ``max_attempts=2`` shorten each renewal attempt
  to fit the compressed timeline;
* httpx-auth and requests-auth ``OAuth2ClientCredentials``: ``early_expiry``
  in seconds (default 30 s), with their file cache;
* Authlib ``OAuth2Session`` (requests): ``leeway`` in seconds (default 60 s);
  it re-fetches a client-credentials token by itself;
* requests-oauthlib ``OAuth2Session``: no early renewal at all (oauthlib
  raises ``TokenExpiredError`` once the token has expired; the session is
  then given a new token with ``fetch_token``, as its docs show).

Rows per library: ``leeway`` 10 minutes (longer than the outage: it can be
ridden out) and the library's default (an outage that starts inside a
1-minute renewal window outlasts the token: the calls after ``exp`` must
fail, with any library, since no valid token exists).

Time compression: a real day-long token would make the run last a day, and
only the token's last minutes matter. So the whole timeline is divided by
``--scale`` (default 10): token lifetime 20 min -> 120 s, the 5-minute
outage -> 30 s, ``leeway`` 10 min -> 60 s, and the peers' margins alike. The
libraries' own constants are *not* compressed (``hoxton_auth``'s 5 s margin
before ``exp`` within which a token is no longer served, its cooldowns of 5,
10, 20, 40 s between renewal attempts; the peers' retry and timeout
settings), which makes the compressed run harder than the real one for
``hoxton_auth``, not easier.

Usage: ``python benchmarks/bench_outage.py [--scale 10] [--libraries hoxton_auth,...]``
(about 5 minutes at the default scale; ``--scale 30`` for a rougher 2-minute
run). Another version of ``hoxton_auth`` runs the same way from a directory
that holds no other ``hoxton_auth``: ``(cd /tmp && PYTHONPATH=/path/to/old/tree
python /path/to/bench_outage.py --libraries hoxton_auth)``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib.util
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import peers
import requests
from peers import AUTHLIB, HOXTON, HTTPX_AUTH, REQUESTS_AUTH, REQUESTS_OAUTHLIB

import hoxton_auth
from hoxton_auth import FileTokenCache, HoxtonAuth
from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

# Also runs against hoxton_auth before issue 12 (for the comparison row), which
# had neither the warning nor the server's outage switch.
WARNING: type[Warning] = getattr(hoxton_auth, "HoxtonAuthWarning", UserWarning)

SIMULATED_LIFETIME = 20 * 60.0
SIMULATED_OUTAGE = 5 * 60.0
CALLS_PER_SECOND = 10.0
LONG_LEEWAY = 600.0
HOXTON_DEFAULT_LEEWAY = 60.0

LIBRARIES = (HOXTON, HTTPX_AUTH, REQUESTS_AUTH, REQUESTS_OAUTHLIB, AUTHLIB)
# The module each library needs, to skip those not installed.
MODULES = {
    HOXTON: "hoxton_auth",
    HTTPX_AUTH: "httpx_auth",
    REQUESTS_AUTH: "requests_auth",
    REQUESTS_OAUTHLIB: "requests_oauthlib",
    AUTHLIB: "authlib",
}
# Each library's default renewal margin (simulated seconds; None: cannot renew early).
DEFAULT_MARGIN: dict[str, float | None] = {
    HOXTON: HOXTON_DEFAULT_LEEWAY,
    HTTPX_AUTH: 30.0,
    REQUESTS_AUTH: 30.0,
    REQUESTS_OAUTHLIB: None,
    AUTHLIB: 60.0,
}
MARGIN_NAME = {
    HOXTON: "leeway",
    HTTPX_AUTH: "early_expiry",
    REQUESTS_AUTH: "early_expiry",
    REQUESTS_OAUTHLIB: "none (renews at exp)",
    AUTHLIB: "leeway",
}


@dataclasses.dataclass(frozen=True)
class Outage:
    """What one outage run saw."""

    leeway_simulated: float
    calls: int
    failed: int
    token_requests: int
    library: str = HOXTON
    margin_simulated: float | None = None
    errors: tuple[tuple[str, int], ...] = ()


def installed() -> list[str]:
    """The libraries of ``LIBRARIES`` that can be imported here."""
    return [name for name in LIBRARIES if importlib.util.find_spec(MODULES[name]) is not None]


def margin_for(library: str, leeway_simulated: float | None) -> float | None:
    """The renewal margin ``library`` gets for a row (``None`` leeway: its default)."""
    if leeway_simulated is None or DEFAULT_MARGIN[library] is None:
        return DEFAULT_MARGIN[library]
    return leeway_simulated


def run_outage(
    leeway_simulated: float,
    scale: float,
    library: str = HOXTON,
    margin_simulated: float | None = None,
    *,
    quiet: bool = True,
) -> Outage:
    """One run: the outage starts as the renewal window opens and lasts 5 (simulated) minutes.

    ``leeway_simulated`` places the outage (it starts that long before
    ``exp``); ``margin_simulated`` is the library's own renewal margin
    (default: ``leeway_simulated``). ``quiet`` silences ``hoxton_auth``'s
    outage warning here (not thread-safe: callers running several at once
    silence it themselves).
    """
    if margin_simulated is None and DEFAULT_MARGIN[library] is not None:
        margin_simulated = leeway_simulated
    lifetime = SIMULATED_LIFETIME / scale
    leeway = leeway_simulated / scale
    margin = None if margin_simulated is None else margin_simulated / scale
    outage = SIMULATED_OUTAGE / scale
    with AuthServer(token_lifetime=round(lifetime)) as server, tempfile.TemporaryDirectory() as tmp:
        ends = peers.Endpoints(
            domain=server.domain,
            api_url=server.api_url,
            client_id=DEFAULT_CLIENT_ID,
            client_secret=DEFAULT_CLIENT_SECRET,
            audience=_audience(),
            cache_path=Path(tmp) / "tokens.json",
        )
        get, close = _client(library, ends, margin)
        errors: collections.Counter[str] = collections.Counter()
        try:
            get()  # the first token
            issued = time.time()
            # Just before the renewal window opens: with ten calls a second, an
            # outage that began later would find the token renewed already. 1.5 s
            # (not compressed) rather than less: Authlib rounds a token's expiry down
            # to a whole second, so its window can open up to 1 s early.
            outage_starts = issued + lifetime - leeway - 1.5
            outage_ends = outage_starts + outage
            stop = outage_ends + 15.0  # and a little after, to see it recover
            calls = failed = 0
            with warnings.catch_warnings() if quiet else _nothing():
                if quiet:
                    warnings.simplefilter("ignore", WARNING)
                while (now := time.time()) < stop:
                    _switch_outage(server, outage_starts <= now < outage_ends)
                    calls += 1
                    try:
                        status = get()
                    except Exception as exc:  # any library's error is a failed call
                        errors[type(exc).__name__] += 1
                        status = 0
                    else:
                        if status != 200:
                            errors[f"HTTP {status}"] += 1
                    failed += status != 200
                    time.sleep(1.0 / CALLS_PER_SECOND)
        finally:
            close()
        return Outage(
            leeway_simulated,
            calls,
            failed,
            server.count(),
            library,
            margin_simulated,
            tuple(sorted(errors.items())),
        )


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _audience() -> str:
    from hoxton_auth.testing import AUDIENCE

    return AUDIENCE


def _client(
    library: str, ends: peers.Endpoints, margin: float | None
) -> tuple[Callable[[], int], Callable[[], None]]:
    """(one API call returning its status, close) for ``library``, renewal ``margin`` (s)."""
    if library == HOXTON:
        auth = HoxtonAuth(
            ends.client_id,
            ends.client_secret,
            domain=ends.domain,
            cache=FileTokenCache(ends.cache_path),
            leeway=margin if margin is not None else HOXTON_DEFAULT_LEEWAY,
            timeout=2.0,
            retry_deadline=4.0,
            max_attempts=2,
        )
        session = requests.Session()
        session.auth = auth
        return (lambda: session.get(ends.api_url, timeout=5).status_code), session.close
    if library == HTTPX_AUTH:
        import httpx
        import httpx_auth

        # Their file cache is one global per library: set only this one's.
        httpx_auth.OAuth2.token_cache = httpx_auth.JsonTokenFileCache(str(ends.cache_path))
        client = httpx.Client(
            auth=httpx_auth.OAuth2ClientCredentials(
                ends.token_url,
                ends.client_id,
                ends.client_secret,
                audience=ends.audience,
                early_expiry=margin,
            )
        )
        return (lambda: client.get(ends.api_url, timeout=5).status_code), client.close
    if library == REQUESTS_AUTH:
        import requests_auth

        requests_auth.OAuth2.token_cache = requests_auth.JsonTokenFileCache(str(ends.cache_path))
        session = requests.Session()
        session.auth = requests_auth.OAuth2ClientCredentials(
            ends.token_url,
            ends.client_id,
            ends.client_secret,
            audience=ends.audience,
            early_expiry=margin,
        )
        return (lambda: session.get(ends.api_url, timeout=5).status_code), session.close
    if library == REQUESTS_OAUTHLIB:
        from oauthlib.oauth2 import TokenExpiredError  # type: ignore[import-untyped]  # no stubs published

        oauth: Any = peers.requests_oauthlib_session(ends)

        def get_oauthlib() -> int:
            try:
                return int(oauth.get(ends.api_url, timeout=5).status_code)
            except TokenExpiredError:  # the docs' way: fetch a new token, try again
                oauth.fetch_token(
                    ends.token_url,
                    client_secret=ends.client_secret,
                    include_client_id=True,
                    audience=ends.audience,
                )
                return int(oauth.get(ends.api_url, timeout=5).status_code)

        return get_oauthlib, oauth.close
    if library == AUTHLIB:
        from authlib.integrations.requests_client import OAuth2Session  # type: ignore[import-untyped]  # no stubs published

        authlib: Any = peers.authlib_audience(
            OAuth2Session(**peers.authlib_options(ends), leeway=margin), ends.audience
        )
        authlib.fetch_token()
        return (lambda: int(authlib.get(ends.api_url, timeout=5).status_code)), authlib.close
    raise ValueError(library)


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


def run_all(
    scale: float, libraries: list[str], leeways: tuple[float | None, ...] = (LONG_LEEWAY, None)
) -> list[Outage]:
    """Every library x leeway (``None``: each library's default), libraries in parallel.

    The outage of a default row starts ``hoxton_auth``'s default leeway
    (60 s, simulated) before ``exp``, for every library.
    """
    results: dict[tuple[str, int], Outage] = {}

    def one_library(library: str) -> None:
        for index, leeway in enumerate(leeways):
            placed = leeway if leeway is not None else HOXTON_DEFAULT_LEEWAY
            results[library, index] = run_outage(
                placed, scale, library, margin_for(library, leeway), quiet=False
            )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WARNING)
        threads = [threading.Thread(target=one_library, args=(name,)) for name in libraries]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return [results[name, index] for name in libraries for index in range(len(leeways))]


def _margin_text(result: Outage) -> str:
    if result.margin_simulated is None:
        return MARGIN_NAME[result.library]
    return f"{MARGIN_NAME[result.library]}={result.margin_simulated:.0f} s"


def main() -> None:
    """Print the outage table (library x leeway) as markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0, help="time compression factor")
    parser.add_argument(
        "--libraries",
        help=f"comma separated, of {', '.join(LIBRARIES)} (default: every one installed)",
    )
    args = parser.parse_args()
    libraries = installed()
    if args.libraries:
        wanted = args.libraries.split(",")
        unknown = set(wanted) - set(LIBRARIES)
        if unknown:
            parser.error(f"unknown libraries: {', '.join(sorted(unknown))}")
        libraries = [name for name in libraries if name in wanted]
    started = time.time()
    results = run_all(args.scale, libraries)
    print(
        "| library | outage starts before exp | renewal margin set | calls | failed calls "
        "| token requests |"
    )
    print("|---|---|---|---|---|---|")
    for result in results:
        print(
            f"| {result.library} | {result.leeway_simulated:.0f} s | {_margin_text(result)} "
            f"| {result.calls} | {result.failed} | {result.token_requests} |"
        )
    print()
    print(f"- hoxton_auth at {Path(hoxton_auth.__file__).parent}")
    print(
        f"- a 5-min IdP outage, {CALLS_PER_SECOND:g} API calls a second, token lifetime "
        f"{SIMULATED_LIFETIME / 60:.0f} min; times simulated, run divided by {args.scale:g} "
        f"({time.time() - started:.0f} s wall, all libraries at once)"
    )
    missing = [name for name in LIBRARIES if name not in installed()]
    if missing:
        print(f"- not installed, not measured: {', '.join(missing)}")
    for result in results:
        if result.errors:
            kinds = ", ".join(f"{kind} x{count}" for kind, count in result.errors)
            print(f"- {result.library}, outage {result.leeway_simulated:.0f} s before exp: {kinds}")


if __name__ == "__main__":
    main()
