"""The one subprocess harness of the test suite: both of its sides.

The child side: run as ``python tests/_worker.py <command> <json arguments>``.
It talks to the test over pipes: one JSON line on stdout when it is ready (or
holds the lock), then it waits for one line on stdin (the release), and it
writes one JSON line of results. Secrets never reach stdout: tokens are
reported as hashes.

The parent side: ``Worker`` starts one such process and speaks to it line by
line; tests get them from the ``spawn`` fixture in ``conftest.py`` (every
worker killed and reaped after the test) and release a herd with
``conftest.release_together``.

Every command takes ``clock_ahead``: seconds this process's wall clock runs
ahead of the real one (a host with a skewed clock).

Commands:
    herd   Build an auth object, wait for the release, call the API once.
    hold   Take the cache lock, wait for a line on stdin, then release it.
    write  Rewrite the cache file in a loop until killed.
    rounds Build an auth object (any grant, file or Redis cache), wait for the
           release, then get a token and invalidate it, ``rounds`` times;
           reports each token's ``sub`` (not a secret).
    token  Build an auth object (file or Redis cache, else the default one),
           wait for the release, get one token; reports its full SHA-256 (to
           compare with the parent's), or with ``catch`` the error it got.
    web    A web back end's worker (issue 21), after the release: ``finish`` a
           login request (read from a file; the session id is written to a
           file), or ``resume`` a session (id from a file) and get a token, then
           ``logout`` if asked; reports the token's ``sub`` and hash, or the
           name of the error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

# A safety net against a hung worker, never a measurement: far longer than any run.
SILENCE_LIMIT = 120.0


class Worker:
    """One ``tests/_worker.py`` process (the parent side), spoken to line by line."""

    def __init__(self, command: str, args: dict[str, Any]) -> None:
        # Closed in close(): it must outlive this method.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), command, json.dumps(args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._buffer = b""

    def read(self) -> Any:
        """The next JSON line the worker writes."""
        import pytest

        assert self.proc.stdout is not None
        deadline = time.monotonic() + SILENCE_LIMIT
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(remaining, 0.0))
            if not ready:
                pytest.fail(f"worker silent for {SILENCE_LIMIT}s:\n{self.stderr()}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                pytest.fail(f"worker exited with {self.proc.wait()}:\n{self.stderr()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def expect(self, message: str) -> None:
        """Wait for ``message`` (a readiness word) from the worker."""
        assert self.read() == message

    def send(self, line: str) -> None:
        """Write one line to the worker's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        """SIGKILL: no cleanup code runs in the worker, no lock is released by it."""
        self.proc.kill()
        self.proc.wait()

    def finish(self) -> int:
        """Wait for a normal exit and return the exit code."""
        return self.proc.wait(timeout=SILENCE_LIMIT)

    def stderr(self) -> str:
        """What the worker wrote to stderr (tracebacks, warnings)."""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def close(self) -> None:
        """Kill if still running and close every pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()


# -- the child side -------------------------------------------------------------------


def digest(secret: str | None) -> str | None:
    """A short hash of a token, safe to print and compare."""
    return None if secret is None else hashlib.sha256(secret.encode()).hexdigest()[:16]


def say(message: object) -> None:
    """One line to the test process."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def herd(args: dict[str, Any]) -> None:
    """Wait for the release, then make one API call with a fresh auth object."""
    import requests

    from hoxton_auth import FileTokenCache, HoxtonAuth
    from hoxton_auth.testing import cached_entry

    cache = FileTokenCache(args["cache"], lock_wait_timeout=args.get("lock_wait_timeout"))
    auth = HoxtonAuth(
        args["client_id"],
        args.get("client_secret"),
        refresh_token=args.get("refresh_token"),
        domain=args["domain"],
        cache=cache,
    )
    with requests.Session() as session:
        say("ready")
        released_at = float(sys.stdin.readline())
        response = session.get(args["api_url"], auth=auth, timeout=60)
        done_at = time.time()
    entry = cached_entry(auth, cache)
    say(
        {
            "status": response.status_code,
            "elapsed": done_at - released_at,
            "access": digest(auth.get_token()),
            "refresh": digest(entry.token.refresh_token if entry is not None else None),
        }
    )


def hold(args: dict[str, Any]) -> None:
    """Hold the cache's lock until a line arrives on stdin (or until killed)."""
    from hoxton_auth import FileTokenCache

    cache = FileTokenCache(args["cache"])
    with cache.lock("any", timeout=60):
        say("locked")
        sys.stdin.readline()
    say("released")


def write(args: dict[str, Any]) -> None:
    """Store entries forever, as fast as possible, each write a bigger file."""
    from hoxton_auth import CacheEntry, FileTokenCache, Token

    cache = FileTokenCache(args["cache"])
    now = time.time()
    for round_number in range(1_000_000):
        token = Token(
            access_token=f"access-{round_number}-" + "x" * 4000,
            expires_at=now + 3600,
            obtained_at=now,
        )
        with cache.lock("any", timeout=60):
            key = f"{round_number % 64:032x}"
            cache.store(key, CacheEntry(token, {"round": str(round_number)}))
        if round_number == 0:
            say("writing")


def make_cache(args: dict[str, Any]) -> Any:
    """``args["redis"]`` (with ``prefix``, optional ``lock_timeout``), else ``args["cache"]``."""
    from hoxton_auth import FileTokenCache, RedisTokenCache

    if "redis" in args:
        options = {"lock_timeout": args["lock_timeout"]} if "lock_timeout" in args else {}
        return RedisTokenCache(args["redis"], prefix=args["prefix"], **options)
    return FileTokenCache(args["cache"])


def rounds(args: dict[str, Any]) -> None:
    """Get a token and drop it (a renewal next time), ``rounds`` times; report the subs."""
    import jwt

    from hoxton_auth import HoxtonAuth

    auth = HoxtonAuth(**args["auth"], cache=make_cache(args))
    say("ready")
    sys.stdin.readline()
    subs = []
    for _ in range(args["rounds"]):
        claims = jwt.decode(auth.get_token(), options={"verify_signature": False})
        subs.append(claims["sub"])
        auth.invalidate()
    say({"subs": subs})


def token(args: dict[str, Any]) -> None:
    """Wait for the release, get one token; report its SHA-256.

    With ``catch``, a ``TokenRequestError`` is reported instead of raised: its
    status, error, ``retry_after``, whether it waited for another's fetch, and
    which of the ``look_for`` phrases its message holds.
    """
    from hoxton_auth import HoxtonAuth, TokenRequestError

    cache = make_cache(args) if "redis" in args or "cache" in args else None
    auth = HoxtonAuth(**args["auth"], **({} if cache is None else {"cache": cache}))
    say("ready")
    sys.stdin.readline()
    try:
        say({"token": hashlib.sha256(auth.get_token().encode()).hexdigest()})
    except TokenRequestError as exc:
        if not args.get("catch"):
            raise
        message = str(exc)  # our errors mask secrets; only chosen phrases are reported
        waited = "waited for that fetch" in message
        say(
            {
                "error": f"{exc.status_code} {exc.error} {'waited' if waited else 'own'}",
                "status": exc.status_code,
                "retry_after": exc.retry_after,
                "found": [phrase for phrase in args.get("look_for", []) if phrase in message],
            }
        )
    # ``keep_open``: a background renewal may still be using the cache; the
    # interpreter's exit waits for it, then closes everything.
    if cache is not None and hasattr(cache, "close") and not args.get("keep_open"):
        cache.close()


def web(args: dict[str, Any]) -> None:
    """``finish`` a login request or ``resume`` a session (see the module docstring)."""
    import jwt

    from hoxton_auth import AuthorizationCodeAuth, HoxtonAuthError, LoginRequest

    cache = make_cache(args)
    say("ready")
    sys.stdin.readline()
    try:
        if args["step"] == "finish":
            request = LoginRequest.from_json(Path(args["request_file"]).read_text())
            auth = request.finish(args["callback_url"], args.get("client_secret"), cache=cache)
            assert auth.session_id is not None
            Path(args["session_file"]).write_text(auth.session_id)
        else:
            session_id = Path(args["session_file"]).read_text() + args.get("tamper", "")
            auth = AuthorizationCodeAuth.resume(
                session_id,
                args["client_id"],
                args.get("client_secret"),
                cache=cache,
                domain=args["domain"],
            )
        access = auth.get_token()
        if args.get("logout"):
            auth.logout()
    except HoxtonAuthError as exc:
        say({"error": type(exc).__name__})
        return
    claims = jwt.decode(access, options={"verify_signature": False})
    say({"sub": claims["sub"], "access": digest(access)})


COMMANDS = {
    "herd": herd,
    "hold": hold,
    "rounds": rounds,
    "token": token,
    "web": web,
    "write": write,
}


def skew_clock(seconds: float) -> None:
    """Make this process's wall clock run ``seconds`` ahead (a host with a wrong clock)."""
    real = time.time
    time.time = lambda: real() + seconds


if __name__ == "__main__":
    arguments = json.loads(sys.argv[2])
    if "clock_ahead" in arguments:  # every command: this process's clock runs ahead
        skew_clock(arguments.pop("clock_ahead"))
    COMMANDS[sys.argv[1]](arguments)
