"""Test-facing controls of the server: runtime settings, logs, faults.

`AuthServer` inherits these; they only read and write `AuthState`, under its
lock, so tests can change them while requests are in flight.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from hoxton_auth.testing._state import Fault

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hoxton_auth.testing._state import AuthState

__all__ = ["ServerControls"]


def _fault_body(status: int, body: bytes | str | Mapping[str, Any] | None) -> tuple[bytes, str]:
    if body is None:
        error = "too_many_requests" if status == 429 else "temporarily_unavailable"
        body = {"error": error, "error_description": f"Injected failure (HTTP {status})"}
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    return json.dumps(dict(body)).encode("utf-8"), "application/json; charset=utf-8"


class ServerControls:
    """Settings, request logs and fault injection of an `AuthServer`."""

    _state: AuthState

    @property
    def token_lifetime(self) -> int:
        """Seconds new access tokens stay valid; settable."""
        return self._state.token_lifetime

    @token_lifetime.setter
    def token_lifetime(self, value: int) -> None:
        with self._state.lock:
            self._state.token_lifetime = value

    @property
    def token_delay(self) -> float:
        """Seconds to wait before answering each token request; settable."""
        return self._state.token_delay

    @token_delay.setter
    def token_delay(self, value: float) -> None:
        with self._state.lock:
            self._state.token_delay = value

    @property
    def rotate_refresh_tokens(self) -> bool:
        """Whether refresh tokens rotate (with reuse detection); settable."""
        return self._state.rotate_refresh_tokens

    @rotate_refresh_tokens.setter
    def rotate_refresh_tokens(self, value: bool) -> None:
        with self._state.lock:
            self._state.rotate_refresh_tokens = value

    @property
    def clock_skew(self) -> float:
        """Seconds added to the server's clock; settable (e.g. to expire codes)."""
        return self._state.clock_skew

    @clock_skew.setter
    def clock_skew(self, value: float) -> None:
        with self._state.lock:
            self._state.clock_skew = value

    @property
    def deny_authorization(self) -> bool:
        """When True, `/authorize` redirects with `error=access_denied`; settable."""
        return self._state.deny_authorization

    @deny_authorization.setter
    def deny_authorization(self, value: bool) -> None:
        with self._state.lock:
            self._state.deny_authorization = value

    # -- Auth0's bad days (issue 12) ------------------------------------------

    @property
    def outage(self) -> bool:
        """While True, every token request gets 503 `temporarily_unavailable`; settable."""
        return self._state.outage

    @outage.setter
    def outage(self, value: bool) -> None:
        with self._state.lock:
            self._state.outage = value

    def exhaust_quota(self, reset_in: float = 3540.0) -> None:
        """Answer client credentials with Auth0's 429 for a spent M2M token quota.

        With `Retry-After`, `X-RateLimit-Reset` and `Auth0-Client-Quota-Limit`
        headers saying the hourly quota resets in `reset_in` seconds, until
        `restore_quota()`.
        """
        with self._state.lock:
            self._state.quota_exhausted = reset_in

    def restore_quota(self) -> None:
        """End `exhaust_quota`."""
        with self._state.lock:
            self._state.quota_exhausted = None

    @property
    def block_after_failed_logins(self) -> int | None:
        """Attack protection: after this many wrong passwords for a user, every
        password grant for them gets 429 `too_many_attempts`; settable (None: off)."""
        return self._state.block_after_failed_logins

    @block_after_failed_logins.setter
    def block_after_failed_logins(self, value: int | None) -> None:
        with self._state.lock:
            self._state.block_after_failed_logins = value

    def require_mfa(self, username: str, otp: str = "123456") -> None:
        """The password grant of `username` answers `mfa_required`; `otp` completes it
        through the `http://auth0.com/oauth/grant-type/mfa-otp` grant."""
        with self._state.lock:
            self._state.mfa_users.add(username)
            self._state.mfa_otp = otp

    @property
    def drip(self) -> float:
        """Seconds between the bytes of each token answer (a dripping endpoint); settable."""
        return self._state.drip

    @drip.setter
    def drip(self, value: float) -> None:
        with self._state.lock:
            self._state.drip = value

    @property
    def rotation_overlap(self) -> float:
        """Auth0's Rotation Overlap Period: seconds during which the refresh token
        just rotated away may still be used (not reuse-detected); settable."""
        return self._state.rotation_overlap

    @rotation_overlap.setter
    def rotation_overlap(self, value: float) -> None:
        with self._state.lock:
            self._state.rotation_overlap = value

    @property
    def forwarded_for(self) -> list[str | None]:
        """The `auth0-forwarded-for` header of every token request (None: absent)."""
        return self._state.forwarded_for

    # -- what happened -------------------------------------------------------

    @property
    def token_requests(self) -> list[dict[str, str]]:
        """Parsed fields of every `/oauth/token` request, in arrival order.

        Form and JSON bodies look the same here; malformed ones appear as
        `{}`. This is the live list: `clear()` works.
        """
        return self._state.token_requests

    @property
    def authorize_requests(self) -> list[dict[str, str]]:
        """Query parameters of every `/authorize` request, in order."""
        return self._state.authorize_requests

    @property
    def revoke_requests(self) -> list[dict[str, str]]:
        """Parsed fields of every `/oauth/revoke` request, in order."""
        return self._state.revoke_requests

    def count(self, grant_type: str | None = None) -> int:
        """Number of token requests, failed ones included.

        Args:
            grant_type: Count only requests with this `grant_type`.
        """
        with self._state.lock:
            if grant_type is None:
                return len(self._state.token_requests)
            return sum(1 for r in self._state.token_requests if r.get("grant_type") == grant_type)

    @property
    def api_requests(self) -> int:
        """Number of `/api/*` requests, rejected ones included."""
        return self._state.api_requests

    @property
    def reuse_detected(self) -> int:
        """How often a rotated refresh token came back and revoked its family."""
        return self._state.reuse_detected

    # -- fault injection and revocation ---------------------------------------

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 503,
        body: bytes | str | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        disconnect: bool = False,
    ) -> None:
        """Answer the next `count` token requests with a canned reply.

        The requests are still logged and counted.

        Args:
            count: How many requests to fail.
            status: HTTP status to send.
            body: A dict is sent as JSON, str as text, bytes as they are;
                None sends an Auth0-style JSON error
                (`temporarily_unavailable`, or `too_many_requests` for 429).
            headers: Extra headers, e.g. `{"Retry-After": "1"}`; a
                `Content-Type` here replaces the default one.
            delay: Extra seconds to wait before answering (on top of
                `token_delay`), e.g. to trip a client timeout.
            disconnect: Close the connection without any answer instead.
        """
        raw, content_type = _fault_body(status, body)
        extra = dict(headers or {})
        if not any(name.lower() == "content-type" for name in extra):
            extra["Content-Type"] = content_type
        fault = Fault(status, raw, tuple(extra.items()), delay, disconnect)
        with self._state.lock:
            self._state.faults.extend([fault] * count)

    def revoke_access_tokens(self) -> None:
        """Make the echo API reject (401) every access token issued so far."""
        with self._state.lock:
            self._state.revoked_jtis |= self._state.issued_jtis

    def expire_access_tokens(self) -> None:
        """Make the echo API treat every access token issued so far as expired.

        Only the server's view changes; the tokens' `exp` claims still say
        they are fresh, which is the "401 on a token we thought fresh" case.
        """
        with self._state.lock:
            self._state.expired_jtis |= self._state.issued_jtis
