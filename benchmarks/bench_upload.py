"""RSS added by a 400 MB streamed upload through ``httpx.Client(auth=HoxtonAuth(...))``.

Issue 14, item 3: with ``requires_request_body = True`` httpx read the whole
body into memory before sending it, only so that a 401 could be replayed.

Each measurement runs in a fresh interpreter that imports hoxton_auth from the
checkout given (so ``--compare /work/main`` measures main side by side), gets
its token first (imports and the token fetch are not counted), reads its RSS,
then uploads ``--mb`` MiB from a generator in 1 MiB chunks to a local sink
server (in this process) that reads and discards the body. The figure is the
child's peak RSS (``VmHWM``) minus its RSS just before the upload. Linux only.

Usage::

    python benchmarks/bench_upload.py [--mb 400] [--compare /work/main]
"""

from __future__ import annotations

import argparse
import json
import os
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

_CHILD = r"""
import json, sys
sys.path.insert(0, {root!r})
import httpx
import hoxton_auth
from hoxton_auth import HoxtonAuth

def rss(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)

MIB = 1024 * 1024
chunk = b"x" * MIB

def body():
    for _ in range({mb}):
        yield chunk

mode = {mode!r}
auth = None
if mode != "no auth":
    auth = HoxtonAuth({client_id!r}, {client_secret!r}, domain={domain!r}, cache=None)
    auth.get_token()
with httpx.Client(auth=auth, timeout=300) as client:
    client.post({sink!r}, content=b"warm-up")
    before = rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:  # reset VmHWM to the current RSS
        refs.write("5")
    response = client.post({sink!r}, content=body())
    assert response.status_code == 200, response.status_code
    received = int(response.text)
print(json.dumps({{"added": rss("VmHWM") - before, "received": received,
                   "module": hoxton_auth.__file__}}))
"""


class _Sink(socketserver.StreamRequestHandler):
    """Reads one HTTP/1.1 request per connection turn (Content-Length or chunked), discards it."""

    def handle(self) -> None:
        while True:
            headers: dict[str, str] = {}
            line = self.rfile.readline()
            if not line:
                return
            while True:
                line = self.rfile.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            received = 0
            if "chunked" in headers.get("transfer-encoding", ""):
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    while size:
                        data = self.rfile.read(min(size, 1 << 20))
                        received += len(data)
                        size -= len(data)
                    self.rfile.readline()
            else:
                left = int(headers.get("content-length", "0"))
                while left:
                    data = self.rfile.read(min(left, 1 << 20))
                    received += len(data)
                    left -= len(data)
            body = str(received).encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


class _SinkServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def measure(root: Path, mode: str, mb: int, domain: str, sink: str) -> dict[str, int | str]:
    code = _CHILD.format(
        root=str(root),
        mb=mb,
        mode=mode,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        domain=domain,
        sink=sink,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    result: dict[str, int | str] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=400, help="upload size in MiB")
    parser.add_argument("--compare", type=Path, help="another checkout, e.g. /work/main")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    roots = {"this checkout": here}
    if args.compare:
        roots = {f"main ({args.compare})": args.compare.resolve(), **roots}
    sink_server = _SinkServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink_server.serve_forever, daemon=True).start()
    sink = f"http://127.0.0.1:{sink_server.server_address[1]}/upload"
    rows = []
    with AuthServer() as server:
        baseline = measure(here, "no auth", args.mb, server.domain, sink)
        rows.append(("httpx.Client, no auth (floor)", baseline))
        for label, root in roots.items():
            rows.append(
                (
                    f"httpx.Client(auth=HoxtonAuth), {label}",
                    measure(root, "auth", args.mb, server.domain, sink),
                )
            )
    sink_server.shutdown()
    sink_server.server_close()
    print(f"Streamed upload of {args.mb} MiB from a generator, 1 MiB chunks (peak RSS added)")
    print(f"{'client':<62} {'RSS added':>12} {'received':>12}")
    for label, row in rows:
        added = int(row["added"]) / (1024 * 1024)
        received = int(row["received"]) / (1024 * 1024)
        print(f"{label:<62} {added:>9.1f} MiB {received:>8.0f} MiB")


if __name__ == "__main__":
    main()
