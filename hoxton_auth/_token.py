"""The ``Token`` value and how a token response becomes one.

Pure functions: no I/O, no clock (callers pass ``now``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from typing import Any

from . import _freshness

__all__ = ["Token", "TokenFormatError", "subject_of", "user_of"]

# Bounds on what a server may claim about a token's life. A longer claim is
# clamped (an over-long life is caught by the API's 401 anyway); a token with
# no usable expiry at all is treated as short-lived rather than eternal.
MAX_LIFETIME = 30 * 24 * 3600.0
UNKNOWN_LIFETIME = 300.0
MIN_LIFETIME = 1.0
MAX_TOKEN_LENGTH = 64 * 1024


class TokenFormatError(ValueError):
    """A token response or a cached token has the wrong shape (message says what)."""


@dataclasses.dataclass(frozen=True)
class Token:
    """An access token and what came with it.

    ``expires_at`` and ``obtained_at`` are seconds since the epoch on this
    machine's clock.
    """

    access_token: str = dataclasses.field(repr=False)
    expires_at: float
    obtained_at: float
    token_type: str = "Bearer"  # noqa: S105  a token type name, not a secret
    refresh_token: str | None = dataclasses.field(default=None, repr=False)
    id_token: str | None = dataclasses.field(default=None, repr=False)
    scope: str | None = None

    def renew_at(self, leeway: float) -> float:
        """When to stop using this token (``_freshness.renew_at``)."""
        return _freshness.renew_at(self.expires_at, self.obtained_at, leeway)

    def refresh_ahead_at(self, leeway: float, fraction: float) -> float:
        """When to start renewing this token in the background (``_freshness.refresh_ahead_at``).

        The jitter comes from the access token itself, so every process and
        host that shares the token computes the same point, and a fleet's
        tokens, each obtained at its own moment with its own jitter, do not
        renew in step.
        """
        digest = hashlib.sha256(self.access_token.encode()).digest()
        jitter = int.from_bytes(digest[:8], "big") / 2**64
        return _freshness.refresh_ahead_at(
            self.expires_at, self.obtained_at, leeway, fraction, jitter
        )

    def is_fresh(self, now: float, leeway: float) -> bool:
        """Whether the access token can be sent at ``now`` without renewing it first."""
        return bool(self.access_token) and now < self.renew_at(leeway)

    def usable_until(self) -> float:
        """Until when the access token may be served although due for renewal (``-inf``: none)."""
        return _freshness.usable_until(self.expires_at) if self.access_token else -math.inf

    def without_access_token(self) -> Token:
        """This token with the access token dropped and the refresh token kept."""
        return dataclasses.replace(self, access_token="", expires_at=0.0)

    @classmethod
    def from_response(
        cls, data: Any, now: float, *, kept_refresh_token: str | None = None
    ) -> Token:
        """Build a token from a token endpoint's decoded JSON answer.

        Args:
            data: The decoded JSON body.
            now: The local time the answer arrived.
            kept_refresh_token: The refresh token just used; kept when the
                server does not rotate it.

        Raises:
            TokenFormatError: If the answer holds no usable access token.
        """
        if not isinstance(data, Mapping):
            raise TokenFormatError(f"expected a JSON object, got {type(data).__name__}")
        access_token = _check_token_string(data.get("access_token"), "access_token")
        if access_token is None:
            raise TokenFormatError("the response has no access_token")
        token_type = data.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise TokenFormatError(f"token_type must be Bearer, got {_safe(token_type)}")
        refresh_token = _check_token_string(data.get("refresh_token"), "refresh_token")
        if refresh_token is None:
            refresh_token = kept_refresh_token
        lifetime = _lifetime(access_token, data.get("expires_in"), now)
        scope = data.get("scope")
        return cls(
            access_token=access_token,
            expires_at=now + lifetime,
            obtained_at=now,
            refresh_token=refresh_token,
            id_token=_check_token_string(data.get("id_token"), "id_token"),
            scope=scope if isinstance(scope, str) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, for caches."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Token:
        """Rebuild a token written by ``to_dict``.

        Raises:
            TokenFormatError: If ``data`` does not have that shape.
        """
        if not isinstance(data, Mapping):
            raise TokenFormatError("a cached token must be a JSON object")
        try:
            token = cls(
                access_token=data["access_token"],
                expires_at=float(data["expires_at"]),
                obtained_at=float(data["obtained_at"]),
                token_type=data.get("token_type", "Bearer"),
                refresh_token=data.get("refresh_token"),
                id_token=data.get("id_token"),
                scope=data.get("scope"),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            # OverflowError: an integer too large for a float, e.g. 1 followed by 400 zeros.
            raise TokenFormatError(f"a cached token lacks or mistypes {exc}") from None
        for name in ("access_token", "token_type"):
            if not isinstance(getattr(token, name), str):
                raise TokenFormatError(f"a cached token's {name} is not a string")
        for name in ("refresh_token", "id_token", "scope"):
            if getattr(token, name) is not None and not isinstance(getattr(token, name), str):
                raise TokenFormatError(f"a cached token's {name} is not a string")
        # A cache file is outside our control (edited, damaged, written by a
        # future version): its tokens go into headers and requests, so they
        # get the same checks as a server's. "" is a dropped access token.
        if token.access_token:
            _check_token_string(token.access_token, "cached access_token")
        _check_token_string(token.refresh_token, "cached refresh_token")
        _check_token_string(token.id_token, "cached id_token")
        if not (math.isfinite(token.expires_at) and math.isfinite(token.obtained_at)):
            raise TokenFormatError("a cached token's times are not finite")
        return token


def _safe(value: object) -> str:
    """A short description of a server value that cannot be a secret."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_token_string(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TokenFormatError(f"{name} must be a non-empty string")
    if len(value) > MAX_TOKEN_LENGTH:
        raise TokenFormatError(f"{name} is longer than {MAX_TOKEN_LENGTH} characters")
    # A token goes into an HTTP header: anything but visible ASCII would let a
    # server inject headers or break the request.
    if not (value.isascii() and value.isprintable()) or " " in value:
        raise TokenFormatError(f"{name} contains characters not allowed in a header")
    return value


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range: no usable time
            return None
        if math.isfinite(number):
            return number
    return None


def _jwt_claims(access_token: str) -> Mapping[str, Any]:
    # Imported here: PyJWT pulls in `cryptography` when present, which a process
    # that only reads a cached token never needs.
    import jwt

    try:
        # The signature is NOT verified: the API is the token's audience and
        # verifies it; we only read `exp`/`iat` to know when to renew.
        claims = jwt.decode(access_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}  # opaque (non-JWT) token, or a broken payload: use expires_in
    return claims if isinstance(claims, Mapping) else {}


def subject_of(token: Token) -> str | None:
    """The user's ``sub``: from the ID token, else the access token; unverified.

    Only to file a session under its user in the cache (issue 10); the
    signature is not checked here (the API checks the access token's).
    """
    for jwt_string in (token.id_token, token.access_token):
        if jwt_string and jwt_string.count(".") == 2:
            sub = _jwt_claims(jwt_string).get("sub")
            if isinstance(sub, str) and sub:
                return sub
    return None


def _lifetime(access_token: str, expires_in: object, now: float) -> float:
    """Seconds the token lives from ``now``, robust to a skewed server clock.

    Every estimate available is taken and the shortest wins: ``expires_in``,
    ``exp - iat`` (a duration, immune to clock skew) and ``exp - now`` (only
    when there is no ``iat``). Estimates under ``MIN_LIFETIME`` are ignored:
    not positive means already dead by our clock (skew), and a token said to
    live a fraction of a second would mean a fetch on every API call.
    """
    estimates = []
    seconds = _number(expires_in)
    if seconds is not None:
        estimates.append(seconds)
    if access_token.count(".") == 2:
        claims = _jwt_claims(access_token)
        exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
        if exp is not None:
            estimates.append(exp - iat if iat is not None else exp - now)
    usable = [e for e in estimates if e >= MIN_LIFETIME]
    if not usable:
        return UNKNOWN_LIFETIME
    return min(min(usable), MAX_LIFETIME)


def user_of(token: Token) -> str | None:
    """Who the ID token says logged in, for people to read: ``name <email> (sub)``.

    Unverified, and said so wherever it is shown: the signature is not
    checked (the client is not the party that must trust it). Decoded by hand,
    not with PyJWT: ``hoxton-auth status`` loads no PyJWT
    (``tests/test_imports.py``), and only the display depends on it.
    """
    import base64
    import json

    parts = (token.id_token or "").split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(claims, dict):
        return None
    said = [claims.get(name) for name in ("name", "email", "sub")]
    name, email, sub = (value if isinstance(value, str) and value else None for value in said)
    shown = " ".join(
        part for part in (name, f"<{email}>" if email and email != name else None) if part
    )
    if sub:
        shown = f"{shown} ({sub})" if shown else sub
    return shown or None
