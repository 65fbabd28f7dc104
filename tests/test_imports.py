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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from hoxton_auth import HoxtonAuth
from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

#: Never needed to import the package: token decoding (PyJWT, cryptography),
#: the file lock, asyncio, the optional Redis cache, the CLI and the browser
#: login, and the default cache location (platformdirs). The auth classes
#: import requests and httpx (``import hoxton_auth`` does not: PEP 562), and the
#: test checks this set after them too, which proves that httpx's own import
#: (0.28) loads no asyncio. The type aliases are for type checkers only.
NOT_FOR_IMPORT = frozenset(
    {
        "argparse",
        "asyncio",
        "cryptography",
        "filelock",
        "hoxton_auth._types",
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
        "hoxton_auth._wire",
        "jwt",
    }
)

#: Never needed by ``hoxton-auth token`` or ``status`` answered from the cache
#: (issue 15): no HTTP client, no token decoding, no auth classes.
NOT_FOR_CLI_CACHED_TOKEN = frozenset(
    {
        "cryptography",
        "hoxton_auth._auth",
        "hoxton_auth._httpx",
        "hoxton_auth._requests",
        "httpx",
        "jwt",
        "requests",
    }
)

#: Never needed by a bare ``hoxton-auth token`` answered from the cache (issue
#: 15, 2x ``python -c pass``): it reads the file before the parser, logging,
#: dataclasses, the session or the file cache's writer load (``_cli.py``).
NOT_FOR_CLI_FAST_TOKEN = NOT_FOR_CLI_CACHED_TOKEN | {
    "argparse",
    "dataclasses",
    "filelock",
    "hoxton_auth._cache",
    "hoxton_auth._cli_commands",
    "hoxton_auth._file_cache",
    "hoxton_auth._grants",
    "hoxton_auth._session",
    "hoxton_auth._token",
    "inspect",
    "logging",
    "platformdirs",
    "tempfile",
    "typing",
}

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
from hoxton_auth import HoxtonAuth
report["after_auth_class"] = loaded()
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
    env = {**_unmeasured(os.environ), "HOXTON_AUTH_CACHE": str(cache)}
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


def _unmeasured(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without coverage's subprocess switch: a measured child imports
    coverage's own modules (typing, dataclasses...), which is not what users run."""
    return {name: value for name, value in environ.items() if not name.startswith("COVERAGE_")}


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
    # The snapshot sees the package and what it does import; the auth classes
    # (and with them requests and httpx) load on first use (issue 15).
    assert "hoxton_auth" in modules
    assert modules & (NOT_FOR_IMPORT | NOT_FOR_CLI_CACHED_TOKEN) == set()
    with_auth = set(report["after_auth_class"])
    assert {"hoxton_auth._auth", "requests", "httpx"} <= with_auth
    assert with_auth & NOT_FOR_IMPORT == set()


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


def test_slow_path_never_loads_opentelemetry(
    hoxton_auth_server: AuthServer, isolated_cache: Path
) -> None:
    # Issue 24: telemetry only when the application imported opentelemetry
    # itself (importing it costs tens of milliseconds). The child fetches a
    # token (lock, token request, store) and makes an API call with it.
    report = _run_child(
        _CACHED_TOKEN, isolated_cache, _cached_token_args(hoxton_auth_server, request=True)
    )

    assert hoxton_auth_server.count() == 1  # the child fetched: the slow path ran
    assert report["status"] == 200
    modules = set(report["after_request"])
    assert "hoxton_auth._telemetry" in modules  # its hooks were asked...
    assert {name for name in modules if name.partition(".")[0] == "opentelemetry"} == set()


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


def _cli_imports(cache: Path, *command: str) -> tuple[str, set[str]]:
    """Run ``python -X importtime -m hoxton_auth *command``: its stdout, the modules it imported."""
    env = {**_unmeasured(os.environ), "HOXTON_AUTH_CACHE": str(cache)}
    for name in ("HOXTON_USERNAME", "HOXTON_PASSWORD", "HOXTON_REFRESH_TOKEN", "HOXTON_SCOPE"):
        env.pop(name, None)
    child = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "hoxton_auth", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    # -X importtime writes "import time: self | cumulative | name" per import.
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in child.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    return child.stdout, modules


def test_cli_token_from_the_cache_loads_no_http_client(
    hoxton_auth_server: AuthServer, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = _fill_cache(hoxton_auth_server)
    monkeypatch.setenv("HOXTON_CLIENT_ID", DEFAULT_CLIENT_ID)
    monkeypatch.setenv("HOXTON_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
    monkeypatch.setenv("HOXTON_AUTH_DOMAIN", hoxton_auth_server.domain)
    stdout, modules = _cli_imports(isolated_cache, "token")
    json_out, json_modules = _cli_imports(isolated_cache, "token", "--json")
    _, status_modules = _cli_imports(isolated_cache, "status")
    assert stdout.strip() == token
    assert json.loads(json_out)["access_token"] == token
    assert hoxton_auth_server.count() == 1  # answered from the cache
    # The snapshot sees the CLI and the file it read, and nothing a bare
    # `token` answered from the cache does not need.
    assert {"hoxton_auth._cli", "hoxton_auth._private_file"} <= modules
    assert modules & NOT_FOR_CLI_FAST_TOKEN == set()
    # Another option: the whole command, still without an HTTP client.
    assert {"argparse", "hoxton_auth._file_cache"} <= json_modules
    assert json_modules & NOT_FOR_CLI_CACHED_TOKEN == set()
    assert "hoxton_auth._cli" in status_modules
    assert status_modules & NOT_FOR_CLI_CACHED_TOKEN == set()


def test_cli_token_loads_requests_only_to_send(
    hoxton_auth_server: AuthServer, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOXTON_CLIENT_ID", DEFAULT_CLIENT_ID)
    monkeypatch.setenv("HOXTON_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
    monkeypatch.setenv("HOXTON_AUTH_DOMAIN", hoxton_auth_server.domain)
    stdout, modules = _cli_imports(isolated_cache, "token")
    assert stdout.strip()
    assert hoxton_auth_server.count() == 1  # fetched: the cache was empty
    assert "requests" in modules
    assert {"httpx", "hoxton_auth._auth"} & modules == set()
