"""A stand-in for a web browser, for login tests: ``fake_browser.py URL``.

It GETs the URL and follows redirects by hand up to the loopback callback,
like a browser whose user approves at once. Tests point ``$BROWSER`` at a
tiny shell wrapper that runs this file with the test's interpreter.

``FAKE_BROWSER_MODE`` picks the user's behaviour:

* ``follow`` (default): follow every redirect.
* ``tamper-state``: replace ``state`` in the callback URL (a forged redirect).
* ``stray-then-follow``: first visit ``/callback`` with no parameters and
  ``/favicon.ico`` (noise that must be ignored), then follow.
* ``forge-then-follow``: first send the callback with a forged ``state``
  and with none at all (as another local process could), then follow.
* ``ignore``: fetch nothing (the user never finishes: a timeout).
* ``fail``: exit 1 at once (no usable browser).

``FAKE_BROWSER_LOGIN_HINT``, if set, is added to the URL as ``login_hint``:
the user who logs in (the test server's ``/authorize`` picks it).

``FAKE_BROWSER_LOG``, if set, is a file that gets one JSON line per run:
the URL given and the final page's status and text.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

MAX_REDIRECTS = 10


def fetch(url: str) -> tuple[int, str | None, str]:
    """GET ``url`` (http only); return (status, Location header, body text)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=30)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", target or "/")
        response = connection.getresponse()
        body = response.read().decode("utf-8", "replace")
        return response.status, response.getheader("Location"), body
    finally:
        connection.close()


def tamper(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, "forged-state" if k == "state" else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def main(url: str) -> int:
    mode = os.environ.get("FAKE_BROWSER_MODE", "follow")
    if mode == "fail":
        return 1
    status, text = 0, ""
    hint = os.environ.get("FAKE_BROWSER_LOGIN_HINT")
    if hint:
        parts = urlsplit(url)
        url = urlunsplit(parts._replace(query=f"{parts.query}&{urlencode({'login_hint': hint})}"))
    forged_log: list[int] = []
    if mode != "ignore":
        for _ in range(MAX_REDIRECTS):
            if mode == "forge-then-follow" and urlsplit(url).path == "/callback":
                forged = [(k, v) for k, v in parse_qsl(urlsplit(url).query) if k != "state"]
                forged_log.append(fetch(tamper(url))[0])
                forged_log.append(
                    fetch(urlunsplit(urlsplit(url)._replace(query=urlencode(forged))))[0]
                )
            if mode == "stray-then-follow" and urlsplit(url).path == "/callback":
                base = urlunsplit(urlsplit(url)._replace(query=""))
                fetch(base)
                fetch(urljoin(base, "/favicon.ico"))
            status, location, text = fetch(url)
            if location is None:
                break
            url = urljoin(url, location)
            if mode == "tamper-state" and urlsplit(url).path == "/callback":
                url = tamper(url)
    log = os.environ.get("FAKE_BROWSER_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as file:
            record = {"argv": sys.argv[1:], "status": status, "text": text, "forged": forged_log}
            file.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
