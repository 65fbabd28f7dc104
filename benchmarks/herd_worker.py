"""One process of the herd benchmark (``benchmarks/herd.py`` starts N of them).

Builds an auth object on the shared cache, prints ``ready``, waits for the
release line (the parent's ``time.time()`` at release), then gets a token and
makes its first API call. Prints one JSON line: seconds from the release to
the token in hand and to the API's answer, and the answer's status.

Unless ``cold`` is set, it first imports what the library loads lazily on its
first token fetch (filelock, PyJWT), so that the times measure the herd's
coordination rather than N interpreters importing modules at the same moment
on a few cores; ``cold`` measures both.
"""

from __future__ import annotations

import json
import sys
import time

import requests

from hoxton_auth import HoxtonAuth


def main() -> None:
    """Run one herd member with the JSON arguments in ``sys.argv[1]``."""
    args = json.loads(sys.argv[1])
    if not args["cold"]:
        import filelock  # noqa: F401  warm-up, see the module docstring
        import jwt  # noqa: F401  warm-up, see the module docstring
    auth = HoxtonAuth(
        args["client_id"], args["client_secret"], domain=args["domain"], cache=args["cache"]
    )
    with requests.Session() as session:
        print("ready", flush=True)
        released_at = float(sys.stdin.readline())
        auth.get_token()
        token_at = time.time()
        status = session.get(args["api_url"], auth=auth, timeout=120).status_code
        answered_at = time.time()
    result = {
        "status": status,
        "to_token": token_at - released_at,
        "to_api": answered_at - released_at,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
