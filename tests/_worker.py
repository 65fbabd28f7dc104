"""A separate Python process for the cross-process cache tests.

Run as ``python tests/_worker.py <command> <json arguments>``. It talks to the
test over pipes: one line on stdout when it is ready (or holds the lock), then
it waits for one line on stdin (the release), and it writes one JSON line of
results. Secrets never reach stdout: tokens are reported as short hashes.

Commands:
    herd   Build an auth object, wait for the release, call the API once.
    hold   Take the cache lock, wait for a line on stdin, then release it.
    write  Rewrite the cache file in a loop until killed.
    rounds Build an auth object (any grant, file or Redis cache), wait for the
           release, then get a token and invalidate it, ``rounds`` times;
           reports each token's ``sub`` (not a secret).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from typing import Any


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
    entry = cache.load(auth._manager.key)
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


def rounds(args: dict[str, Any]) -> None:
    """Get a token and drop it (a renewal next time), ``rounds`` times; report the subs."""
    import jwt

    from hoxton_auth import FileTokenCache, HoxtonAuth, RedisTokenCache, TokenCache

    cache: TokenCache
    if "redis" in args:
        cache = RedisTokenCache(args["redis"], prefix=args["prefix"])
    else:
        cache = FileTokenCache(args["cache"])
    auth = HoxtonAuth(**args["auth"], cache=cache)
    say("ready")
    sys.stdin.readline()
    subs = []
    for _ in range(args["rounds"]):
        claims = jwt.decode(auth.get_token(), options={"verify_signature": False})
        subs.append(claims["sub"])
        auth.invalidate()
    say({"subs": subs})


COMMANDS = {"herd": herd, "hold": hold, "rounds": rounds, "write": write}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](json.loads(sys.argv[2]))
