"""What a fresh process imports: the import-cost design of issue 6.

Each test runs a real ``python -c`` child (a module already imported by the
test process would hide the import under test) and has it print the names in
its ``sys.modules`` as JSON; the assertions are on those names. The child gets
its arguments on stdin, so no credential or token appears in a command line,
and reports a hash of its token rather than the token.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hoxton_auth import HoxtonAuth
from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

#: Never needed to import the package: token decoding (PyJWT, cryptography),
#: the file lock, asyncio, the optional Redis cache, the CLI and the browser
#: login, and the default cache location (platformdirs). ``import hoxton_auth``
#: imports requests and httpx, so this also proves that httpx's own import
#: (0.28) loads no asyncio.
NOT_FOR_IMPORT = frozenset(
    {
        "argparse",
        "asyncio",
        "cryptography",
        "filelock",
        "http.server",
        "jwt",
        "platformdirs",
        "redis",
        "webbrowser",
    }
)

#: Never needed to return a valid token found in the cache: no decoding, no
#: lock (a fresh token is read without it), no asyncio, and none of the
#: modules that build or read a token request.
NOT_FOR_CACHED_TOKEN = frozenset(
    {
        "asyncio",
        "cryptography",
        "filelock",
        "hoxton_auth._flow",
        "hoxton_auth._responses",
        "hoxton_auth._retry",
        "jwt",
    }
)

#: Never needed by a requests user's API call with that token: no asyncio
#: machinery for sync users, no decoding, no lock. (An httpx *request* is not
#: covered: httpcore imports anyio when a sync client sends, which is httpx's
#: cost and not ours.)
NOT_FOR_REQUESTS_CALL = frozenset({"asyncio", "cryptography", "filelock", "jwt"})

# The child's shared opening: `loaded()` is what its sys.modules holds now.
# Only sys, json and hashlib come before the snapshots; none is watched.
_PRELUDE = """\
import hashlib, json, sys
args = json.loads(sys.stdin.read())
report = {}
def loaded():
    return sorted(sys.modules)
"""

_IMPORT_ONLY = (
    _PRELUDE
    + """\
import hoxton_auth
report["after_import"] = loaded()
print(json.dumps(report))
"""
)

_CACHED_TOKEN = (
    _PRELUDE
    + """\
from hoxton_auth import HoxtonAuth
auth = HoxtonAuth(args["client_id"], args["client_secret"], domain=args["domain"])
token = auth.get_token()
report["token_sha256"] = hashlib.sha256(token.encode()).hexdigest()
report["after_get_token"] = loaded()
if args["request"]:
    import requests
    with requests.Session() as session:
        report["status"] = session.get(args["api_url"], auth=auth, timeout=30).status_code
    report["after_request"] = loaded()
print(json.dumps(report))
"""
)


def _run_child(script: str, cache: Path, args: dict[str, Any]) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter on ``cache``; return its JSON report."""
    env = {**os.environ, "HOXTON_AUTH_CACHE": str(cache)}
    child = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(args),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    report: dict[str, Any] = json.loads(child.stdout)
    return report


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _fill_cache(server: AuthServer) -> str:
    """Fetch a token into the cache (``$HOXTON_AUTH_CACHE``) with the child's arguments."""
    token = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain).get_token()
    assert server.count() == 1
    return token


def _cached_token_args(server: AuthServer, *, request: bool) -> dict[str, Any]:
    return {
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "domain": server.domain,
        "api_url": server.api_url,
        "request": request,
    }


def test_import_loads_no_heavy_module(isolated_cache: Path) -> None:
    report = _run_child(_IMPORT_ONLY, isolated_cache, {})

    modules = set(report["after_import"])
    # The snapshot sees the package and what it does import.
    assert {"hoxton_auth", "requests", "httpx"} <= modules
    assert modules & NOT_FOR_IMPORT == set()


def test_cached_token_needs_no_request_and_no_heavy_module(
    hoxton_auth_server: AuthServer, isolated_cache: Path
) -> None:
    token = _fill_cache(hoxton_auth_server)

    report = _run_child(
        _CACHED_TOKEN, isolated_cache, _cached_token_args(hoxton_auth_server, request=False)
    )

    assert hoxton_auth_server.count() == 1  # no token request from the child
    assert report["token_sha256"] == _sha256(token)
    modules = set(report["after_get_token"])
    # The snapshot sees the modules that did read the cache.
    assert {"hoxton_auth._token", "hoxton_auth._file_cache"} <= modules
    assert modules & NOT_FOR_CACHED_TOKEN == set()


def test_requests_call_with_cached_token_loads_no_asyncio(
    hoxton_auth_server: AuthServer, isolated_cache: Path
) -> None:
    token = _fill_cache(hoxton_auth_server)

    report = _run_child(
        _CACHED_TOKEN, isolated_cache, _cached_token_args(hoxton_auth_server, request=True)
    )

    assert hoxton_auth_server.count() == 1  # no token request from the child
    assert report["token_sha256"] == _sha256(token)
    assert report["status"] == 200  # the API accepted the cached token
    modules = set(report["after_request"])
    assert "requests.sessions" in modules
    assert modules & NOT_FOR_REQUESTS_CALL == set()
