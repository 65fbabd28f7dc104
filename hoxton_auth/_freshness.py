"""When a token is fresh: the one renewal rule every part of the package asks.

A token's life has four spans (DESIGN.md, "Renewal timeline")::

    obtained .... refresh-ahead point .... renewal point .... usable until .. expires

- until the *refresh-ahead point* (``refresh_ahead_at``) it is served from
  memory, nothing else happens;
- from there to the *renewal point* it is still served at once, and one
  background renewal per identity starts (``_session.py``): about
  ``refresh_ahead`` (10 %) of its lifetime before the renewal point, less a
  per-token jitter so that a fleet does not renew in step;
- the *renewal point* (``renew_at``) is ``leeway`` seconds before it expires,
  never before half its life: past it a caller renews inline, unless a
  renewal is under way elsewhere;
- past that it is still *usable* (``usable_until``) until ``STALE_MARGIN``
  seconds before it expires: served while a renewal fails or is under way,
  so that the API call it is put on arrives while it is still valid.

Plain functions of numbers, no imports: the CLI's cached ``hoxton-auth token``
(``_cli.py``) calls them before anything else loads.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_REFRESH_AHEAD",
    "STALE_MARGIN",
    "is_fresh",
    "refresh_ahead_at",
    "renew_at",
    "usable_until",
]

# A token is served stale until this many seconds before its exp, so that the
# API call it is put on arrives while it is still valid.
STALE_MARGIN = 5.0
#: The refresh-ahead window: this fraction of a token's lifetime before its renewal point.
DEFAULT_REFRESH_AHEAD = 0.1
# Each token's jitter moves its window by up to half this fraction either way.
JITTER = 0.25


def renew_at(expires_at: float, obtained_at: float, leeway: float) -> float:
    """When to stop using a token: ``leeway`` early, never before half its life."""
    lifetime = max(expires_at - obtained_at, 0.0)
    return expires_at - min(leeway, lifetime / 2)


def refresh_ahead_at(
    expires_at: float, obtained_at: float, leeway: float, fraction: float, jitter: float
) -> float:
    """When to start renewing in the background: ``fraction`` of the lifetime before the
    renewal point, give or take an eighth of that by ``jitter`` (0 to 1); never before the
    token was obtained. ``fraction`` 0 turns it off (the renewal point itself)."""
    point = renew_at(expires_at, obtained_at, leeway)
    window = max(expires_at - obtained_at, 0.0) * fraction * (1.0 + JITTER * (jitter - 0.5))
    return max(point - window, min(obtained_at, point))


def is_fresh(expires_at: float, obtained_at: float, leeway: float, now: float) -> bool:
    """Whether a token can be sent at ``now`` without renewing it first."""
    return now < renew_at(expires_at, obtained_at, leeway)


def usable_until(expires_at: float) -> float:
    """Until when a token due for renewal may still be served (stale-while-failing)."""
    return expires_at - STALE_MARGIN
