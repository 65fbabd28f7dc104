"""Fresh locks in a forked child: the package's one after-fork reset.

A child forked (``os.fork``, multiprocessing's "fork") while another thread
of the parent held a lock inherits that lock held, by a thread that does not
exist in the child: it would never open (issue 11). Every object that holds
such locks registers here, and ``os.register_at_fork`` calls its
``_after_fork`` in the child, as filelock does for its own locks.
"""

from __future__ import annotations

import os
import weakref

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _cli.py)
if TYPE_CHECKING:
    from typing import Protocol

    class ForkAware(Protocol):
        """An object whose locks a forked child must replace."""

        def _after_fork(self) -> None: ...


__all__ = ["reset_after_fork"]

_registered: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def reset_after_fork(obj: ForkAware) -> None:
    """Call ``obj._after_fork()`` in every child forked from now on (while ``obj`` lives)."""
    _registered.add(obj)


def _in_child() -> None:
    for obj in list(_registered):
        obj._after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_in_child)
