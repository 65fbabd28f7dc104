"""A minimal keep-alive HTTP/1.1 server for timing the hot path.

It answers every request with the same ``200 ok`` and nothing else: no
parsing beyond the end of the headers, no token check, one thread, one
``selectors`` loop. Run in its own process (``python benchmarks/apiserver.py``
prints the port), its cost per request is small and the same for every
library measured against it, so differences between libraries show.

The protected echo API of ``hoxton_auth.testing.AuthServer`` verifies an RS256
signature per request, which would dominate the numbers; hence this server.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import subprocess
import sys
from collections.abc import Iterator

__all__ = ["api_server", "serve"]

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
HEADERS_END = b"\r\n\r\n"


def serve(listener: socket.socket) -> None:
    """Answer requests on ``listener`` forever (until stdin closes)."""
    selector = selectors.DefaultSelector()
    listener.setblocking(False)
    selector.register(listener, selectors.EVENT_READ, None)
    # The parent closes our stdin to stop us; no signal handling needed.
    selector.register(sys.stdin, selectors.EVENT_READ, "stdin")
    buffers: dict[socket.socket, bytes] = {}
    while True:
        for key, _ in selector.select():
            if key.data == "stdin":
                return
            if key.data is None:
                conn, _ = listener.accept()
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                selector.register(conn, selectors.EVENT_READ, "conn")
                buffers[conn] = b""
                continue
            conn = key.fileobj  # type: ignore[assignment]  # registered sockets only
            try:
                chunk = conn.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                selector.unregister(conn)
                conn.close()
                buffers.pop(conn, None)
                continue
            data = buffers[conn] + chunk
            # GET requests without a body: one answer per header block.
            answers = data.count(HEADERS_END)
            if answers:
                data = data[data.rindex(HEADERS_END) + len(HEADERS_END) :]
                with contextlib.suppress(OSError):
                    conn.sendall(RESPONSE * answers)
            buffers[conn] = data


@contextlib.contextmanager
def api_server() -> Iterator[str]:
    """Start the server in a child process; yield its base URL."""
    process = subprocess.Popen(
        [sys.executable, __file__],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def main() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    print(listener.getsockname()[1], flush=True)
    try:
        serve(listener)
    finally:
        listener.close()


if __name__ == "__main__":
    main()
