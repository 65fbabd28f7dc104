"""The CLI's start-up (issue 15 item 6): ``hoxton-auth token`` answered from the cache.

Runs, in turns with the order rotating every round, a bare ``python -c pass``
(the interpreter's own start-up: the floor), ``hoxton-auth token`` and
``hoxton-auth status`` (the installed console script) and ``python -m
hoxton_auth token``, each a fresh process, against a file cache filled once
through the local test server (its counter checks that no run fetched).

Time is the children's CPU time (user + system, from
``getrusage(RUSAGE_CHILDREN)``): on a shared machine wall time mostly
measures waiting for a core. Bytecode is cached as after ``pip install``
(``PYTHONPYCACHEPREFIX``, warmed up first), as in ``bench_cold.py``.

Two more floors are timed, to show what no Python command could avoid: the
console script pip writes runs ``import re`` before our code (``python -c
"import re"``), and any reader of the cache needs json, hashlib/hmac (the key
and the verifier) and pathlib (platformdirs' cache directory): ``python -c
"import re, json, hashlib, hmac, pathlib"``.

The floor depends on how the package is installed: an editable install (``pip
install -e``) puts a finder in ``site`` that imports re, pathlib and more into
every interpreter, ``python -c pass`` included; a regular install does not.
The table says which one was timed; run it in both kinds of venv to see both.

With ``--sealed`` (issue 24; needs ``hoxton-auth[keyring]`` and keyrings.alt),
three more rows, on a file-backed keyring named in ``PYTHON_KEYRING_BACKEND``:
the logged-in session of ``hoxton-auth login`` with its refresh token plain
and sealed (both answered by the fast path, which must not load the keyring),
and client credentials with the access token sealed too (the full path,
which opens it).

Usage: ``python benchmarks/bench_cli.py [--rounds N] [--before CHECKOUT] [--sealed]``; the
goal is a cached ``hoxton-auth token`` within 2x ``python -c pass``. With
``--before``, another checkout's ``hoxton-auth token`` (its own cache file, as
the format may differ) and this checkout's are both run the same way (``python
-c`` with the checkout first on ``sys.path``, then ``runpy``), so the ratio of
the two compares the packages alone.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import hoxton_auth
from hoxton_auth import HoxtonAuth
from hoxton_auth.testing import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    PUBLIC_CLIENT_ID,
    AuthServer,
)

GOAL_RATIO = 2.0
STDLIB_A_READER_NEEDS = "import re, json, hashlib, hmac, pathlib"
WARMUP_RUNS = 3
BEFORE = "before: hoxton-auth token"
AFTER = "this checkout, same way"


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _commands(before: str | None) -> dict[str, list[str]]:
    script = shutil.which("hoxton-auth", path=str(Path(sys.executable).parent))
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import re'": [sys.executable, "-c", "import re"],
        "python -c 'import re, json, ...'": [sys.executable, "-c", STDLIB_A_READER_NEEDS],
        "python -m hoxton_auth token": [sys.executable, "-m", "hoxton_auth", "token"],
    }
    if before is not None:
        # Another checkout's package, first on sys.path (before this install's finder);
        # and this checkout's the same way, so that the two differ only in the package.
        this = str(Path(hoxton_auth.__file__).parent.parent)
        for name, checkout in ((BEFORE, before), (AFTER, this)):
            code = f"import sys; sys.path.insert(0, {checkout!r}); import runpy; "
            code += "sys.argv = ['hoxton-auth', 'token']; "
            code += "runpy.run_module('hoxton_auth', run_name='__main__')"
            commands[name] = [sys.executable, "-c", code]
    if script is not None:
        commands["hoxton-auth token"] = [script, "token"]
        commands["hoxton-auth status"] = [script, "status"]
    return commands


LOGIN_PLAIN = "token, login session, plain"
LOGIN_SEALED = "token, login session, refresh sealed"
ACCESS_SEALED = "token, access token sealed too"


def _sealed_commands(
    server: AuthServer, workdir: Path, env: dict[str, str]
) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    """The ``--sealed`` rows: their commands and environments, each cache filled first."""
    browser = Path(__file__).resolve().parent.parent / "tests" / "fake_browser.py"
    keyring_env = {
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "XDG_DATA_HOME": str(workdir / "keyring"),
        "HOXTON_AUTH_LOGIN_KEY": str(workdir / "login.key"),
        "BROWSER": f"{sys.executable} {browser} %s",
        "HOXTON_LOGIN_PORT": "0",
    }
    public = dict(env, **keyring_env, HOXTON_CLIENT_ID=PUBLIC_CLIENT_ID)
    public.pop("HOXTON_CLIENT_SECRET")
    envs = {
        LOGIN_PLAIN: dict(
            public, HOXTON_AUTH_SEALING="off", HOXTON_AUTH_CACHE=str(workdir / "plain.json")
        ),
        LOGIN_SEALED: dict(
            public, HOXTON_AUTH_SEALING="required", HOXTON_AUTH_CACHE=str(workdir / "sealed.json")
        ),
        ACCESS_SEALED: dict(
            env,
            **keyring_env,
            HOXTON_AUTH_SEALING="required",
            HOXTON_AUTH_SEAL_ACCESS_TOKENS="1",
            HOXTON_AUTH_CACHE=str(workdir / "all-sealed.json"),
        ),
    }
    token = [sys.executable, "-m", "hoxton_auth", "token"]
    for name in (LOGIN_PLAIN, LOGIN_SEALED):
        login = [sys.executable, "-m", "hoxton_auth", "login"]
        subprocess.run(login, env=envs[name], check=True, capture_output=True, timeout=120)
    return {name: token for name in envs}, envs


def run(rounds: int, before: str | None = None, sealed: bool = False) -> dict[str, float]:
    """Median CPU milliseconds per command over ``rounds`` rounds."""
    with tempfile.TemporaryDirectory() as workdir, AuthServer() as server:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for name in ("HOXTON_USERNAME", "HOXTON_PASSWORD", "HOXTON_REFRESH_TOKEN"):
            env.pop(name, None)
        env.update(
            {
                "PYTHONPYCACHEPREFIX": str(Path(workdir) / "pycache"),
                "HOXTON_AUTH_CACHE": str(Path(workdir) / "tokens.json"),
                "HOXTON_CLIENT_ID": DEFAULT_CLIENT_ID,
                "HOXTON_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
                "HOXTON_AUTH_DOMAIN": server.domain,
            }
        )
        HoxtonAuth(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            domain=server.domain,
            cache=env["HOXTON_AUTH_CACHE"],
        ).get_token()
        commands = _commands(before)
        names = list(commands)
        envs = {name: env for name in names}
        if BEFORE in commands:
            # The other checkout may not read this version's cache entries (the format
            # changes between versions): it gets its own file, filled by its first run.
            envs[BEFORE] = dict(env, HOXTON_AUTH_CACHE=str(Path(workdir) / "tokens-before.json"))
        if sealed:
            more, more_envs = _sealed_commands(server, Path(workdir), env)
            commands.update(more)
            envs.update(more_envs)
            names = list(commands)
        for name in names * WARMUP_RUNS:
            subprocess.run(commands[name], env=envs[name], check=True, capture_output=True)
        fetched = server.count()
        cpu: dict[str, list[float]] = {name: [] for name in names}
        for round_number in range(rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                started = _cpu_of_children()
                subprocess.run(commands[name], env=envs[name], check=True, capture_output=True)
                cpu[name].append((_cpu_of_children() - started) * 1000)
        if server.count() != fetched:
            raise RuntimeError("a CLI run fetched a token: the cache was not used")
    return {name: statistics.median(values) for name, values in cpu.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument(
        "--before", metavar="CHECKOUT", help="also time `hoxton-auth token` of another checkout"
    )
    parser.add_argument(
        "--sealed", action="store_true", help="also time sealed caches (hoxton-auth[keyring])"
    )
    args = parser.parse_args()
    medians = run(args.rounds, args.before, args.sealed)
    floor = medians["python -c pass"]
    editable = any(name.startswith("__editable__") for name in sys.modules)
    install = "editable install (pip install -e)" if editable else "regular install"
    print(
        f"CPU ms per run, median of {args.rounds} rounds "
        f"(python {sys.version.split()[0]}, {install}):"
    )
    for name, ms in medians.items():
        print(f"  {name:<38} {ms:6.1f} ms  {ms / floor:4.2f}x")
    if BEFORE in medians:
        ratio = medians[BEFORE] / medians[AFTER]
        print(f"before / this checkout (both through runpy): {ratio:.3f}")
    if LOGIN_SEALED in medians:
        ratio = medians[LOGIN_SEALED] / medians[LOGIN_PLAIN]
        print(f"login session, refresh token sealed / plain: {ratio:.3f}")
    ratio = medians.get("hoxton-auth token", medians["python -m hoxton_auth token"]) / floor
    verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
    print(f"goal: cached `hoxton-auth token` within {GOAL_RATIO:g}x `python -c pass`: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
