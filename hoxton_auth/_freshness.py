"""When a token is fresh: the one renewal rule every part of the package asks.

A token is *fresh* until its renewal point (``renew_at``): ``leeway`` seconds
before it expires, never before half its life. Past that point it is still
*usable* (``usable_until``) until ``STALE_MARGIN`` seconds before it expires:
served while a renewal fails or is under way elsewhere, so that the API call
it is put on arrives while it is still valid.

Plain functions of numbers, no imports: the CLI's cached ``hoxton-auth token``
(``_cli.py``) calls them before anything else loads.
"""

from __future__ import annotations

__all__ = ["STALE_MARGIN", "is_fresh", "renew_at", "usable_until"]

# A token is served stale until this many seconds before its exp, so that the
# API call it is put on arrives while it is still valid.
STALE_MARGIN = 5.0


def renew_at(expires_at: float, obtained_at: float, leeway: float) -> float:
    """When to stop using a token: ``leeway`` early, never before half its life."""
    lifetime = max(expires_at - obtained_at, 0.0)
    return expires_at - min(leeway, lifetime / 2)


def is_fresh(expires_at: float, obtained_at: float, leeway: float, now: float) -> bool:
    """Whether a token can be sent at ``now`` without renewing it first."""
    return now < renew_at(expires_at, obtained_at, leeway)


def usable_until(expires_at: float) -> float:
    """Until when a token due for renewal may still be served (stale-while-failing)."""
    return expires_at - STALE_MARGIN
