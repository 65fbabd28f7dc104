"""The drivers: run a flow to its end, performing each action it yields.

A ``TokenRequest`` goes to the transport (one of the adapters' ``send``
functions), whose ``Reply`` is sent back; a ``Backoff`` is slept, and the
time is sent back. Event loops run it in a worker thread. This is the only
place where a flow meets the network and the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from ._messages import Flow, Reply, TokenRequest

__all__ = ["SyncTransport", "drive"]

T = TypeVar("T")
# Quoted: the message types are imported only when a flow runs (see drive).
SyncTransport = Callable[["TokenRequest"], "Reply"]


def drive(flow: Flow[T], send: SyncTransport) -> T:
    """Run a flow to its end with a blocking transport."""
    # Here, not at the top: a process that finds its token in the cache never
    # creates the message dataclasses (each compiles its methods; issue 6).
    from ._messages import Backoff

    try:
        action = next(flow)
        while True:
            if isinstance(action, Backoff):
                time.sleep(action.delay)
                action = flow.send(time.time())
            else:
                action = flow.send(send(action))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]  # the flow's return value
