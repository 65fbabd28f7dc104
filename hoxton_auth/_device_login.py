"""The device login (RFC 8628), up to an approved device code in hand.

For machines where no browser can be opened (SSH, a container, a remote
notebook): the user opens a URL on any other device and types a code, while
the core's ``poll_device_code`` flow polls the token endpoint; this module
shows the code and how long is left while it waits. The approved answer
comes back as an ``ApprovedDevice``, whose tokens are stored by the same
``begin_session`` call as a browser login's.

Knows no auth class; imported with ``_login.py``, lazily, by ``_auth.run_login``.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import time
from collections.abc import Callable
from typing import IO

from ._config import ClientConfig
from ._flow import DeviceAuthorization, poll_device_code, request_device_code
from ._renewal import SyncTransport, drive
from ._requests import RequestsTransport
from ._wire import Backoff, Flow, Reply, TokenRequest, TokenResponse

__all__ = ["ApprovedDevice", "device_login"]


@dataclasses.dataclass(frozen=True)
class ApprovedDevice:
    """An approved device code, and a transport that replays the token answer it got."""

    device_code: str = dataclasses.field(repr=False)
    send: SyncTransport = dataclasses.field(repr=False)


# Without a terminal, a progress line at most this often (seconds).
_PLAIN_PROGRESS_EVERY = 60.0


def device_login(
    config: ClientConfig, timeout: float, sleep: Callable[[float], None]
) -> ApprovedDevice:
    """Show the user a code to approve elsewhere, and poll until it is approved.

    ``sleep`` waits between polls (tests pass one that does not sleep).

    Raises:
        LoginError: The code expired or was denied, or ``timeout`` passed.
    """
    started = time.time()
    # The user's verify=/cert=/proxy= apply to the device requests too (issue 14).
    send = RequestsTransport(config.network)
    authorization = drive(
        request_device_code(config, started, random.Random()),  # noqa: S311  jitter, not crypto
        send,
    )
    out = sys.stderr
    complete = authorization.verification_uri_complete
    out.write(
        f"To log in, open this page on any device:\n\n    {authorization.verification_uri}\n\n"
        f"and enter the code:  {authorization.user_code}\n\n"
        + (
            f"or open this link, which has the code in it:\n\n    {complete}\n\n"
            if complete
            else ""
        )
    )
    out.flush()
    deadline = min(authorization.expires_at, started + timeout)
    bounded = DeviceAuthorization(
        authorization.device_code,
        authorization.user_code,
        authorization.verification_uri,
        complete,
        deadline,
        authorization.interval,
    )
    reply = _drive_polling(poll_device_code(config, bounded), send, sleep, bounded, out)
    # The approved device code is spent: the session begins with the answer
    # that came back, replayed to begin_session (the same storing call as a
    # browser login's), which parses it and replaces the cached session.
    return ApprovedDevice(authorization.device_code, _replay(config, reply, send))


def _replay(config: ClientConfig, reply: TokenResponse, real: SyncTransport) -> SyncTransport:
    sent = False

    def send(request: TokenRequest) -> Reply:
        nonlocal sent
        if request.url != config.token_url:
            # The revocation of the login this one replaces goes out for real.
            return real(request)
        # Only the one device code request of begin_session may get the answer.
        if sent:
            raise AssertionError("the device login's answer can be used once")
        sent = True
        return reply

    return send


def _drive_polling(
    flow: Flow[TokenResponse],
    send: SyncTransport,
    sleep: Callable[[float], None],
    authorization: DeviceAuthorization,
    out: IO[str],
) -> TokenResponse:
    """Drive ``poll_device_code``, showing how long is left while it waits."""
    tty = out.isatty()
    shown_at: float | None = None
    try:
        action = next(flow)
        while True:
            if isinstance(action, Backoff):
                if tty:
                    _countdown(action.delay, authorization, sleep, out)
                else:
                    now = time.time()
                    if shown_at is None or now - shown_at >= _PLAIN_PROGRESS_EVERY:
                        shown_at = now
                        left = max(authorization.expires_at - now, 0.0)
                        out.write(f"Waiting for the login to be approved ({left:.0f}s left)...\n")
                        out.flush()
                    sleep(action.delay)
                action = flow.send(time.time())
            else:
                action = flow.send(send(action))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]  # the flow's return value
    finally:
        if tty:
            out.write("\n")
            out.flush()


def _countdown(
    delay: float, authorization: DeviceAuthorization, sleep: Callable[[float], None], out: IO[str]
) -> None:
    """Sleep ``delay`` in steps of at most a second, rewriting one line with the time left."""
    remaining = delay
    while remaining > 0:
        left = max(authorization.expires_at - time.time(), 0.0)
        minutes, seconds = divmod(int(left), 60)
        out.write(
            f"\rWaiting for approval of {authorization.user_code}: {minutes}:{seconds:02d} left "
        )
        out.flush()
        step = min(1.0, remaining)
        sleep(step)
        remaining -= step
