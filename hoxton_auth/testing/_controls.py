"""Test-facing controls of the server: runtime settings, logs, faults.

`AuthServer` inherits these; they only read and write `AuthState`, under its
lock, so tests can change them while requests are in flight.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from hoxton_auth.testing._constants import DEFAULT_USERNAME
from hoxton_auth.testing._device import find_device_code
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

    @property
    def revocation_outage(self) -> bool:
        """While True, `/oauth/revoke` logs each request and answers 503
        `temporarily_unavailable`, revoking nothing; settable."""
        return self._state.revocation_outage

    @revocation_outage.setter
    def revocation_outage(self, value: bool) -> None:
        with self._state.lock:
            self._state.revocation_outage = value

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
        truncate: bool = False,
        hold: threading.Event | None = None,
    ) -> None:
        """Answer the next `count` token requests with a canned reply.

        The requests are still logged and counted. A canned reply may be a
        success too (`status=200` with any body), e.g. a garbage 200.

        Args:
            count: How many requests to answer so.
            status: HTTP status to send.
            body: A dict is sent as JSON, str as text, bytes as they are;
                None sends an Auth0-style JSON error
                (`temporarily_unavailable`, or `too_many_requests` for 429).
            headers: Extra headers, e.g. `{"Retry-After": "1"}`; a
                `Content-Type` here replaces the default one.
            delay: Extra seconds to wait before answering (on top of
                `token_delay`), e.g. to trip a client timeout; `stop()` ends
                the wait (the connection is then dropped).
            disconnect: Close the connection without any answer instead.
            truncate: Announce the whole body's length, send half of it and
                hang up (a connection cut mid-answer).
            hold: Answer only once this event is set (the test decides when).
        """
        fault = self._fault(status, body, headers, delay, disconnect, truncate, hold)
        with self._state.lock:
            self._state.faults.extend([fault] * count)

    def fail_always(
        self,
        *,
        status: int = 503,
        body: bytes | str | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        disconnect: bool = False,
        truncate: bool = False,
    ) -> None:
        """Answer every token request so (after any `fail_next` ones), until `clear_faults`.

        The arguments are those of `fail_next`.
        """
        fault = self._fault(status, body, headers, delay, disconnect, truncate, None)
        with self._state.lock:
            self._state.standing_fault = fault

    def clear_faults(self) -> None:
        """Forget every queued and standing fault: token requests are answered normally."""
        with self._state.lock:
            self._state.faults.clear()
            self._state.standing_fault = None

    @staticmethod
    def _fault(
        status: int,
        body: bytes | str | Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        delay: float,
        disconnect: bool,
        truncate: bool,
        hold: threading.Event | None,
    ) -> Fault:
        raw, content_type = _fault_body(status, body)
        extra = dict(headers or {})
        if not any(name.lower() == "content-type" for name in extra):
            extra["Content-Type"] = content_type
        return Fault(status, raw, tuple(extra.items()), delay, disconnect, truncate, hold)

    @property
    def token_request_times(self) -> list[float]:
        """`time.monotonic()` when each `/oauth/token` request arrived, in order.

        For checking waits such as `Retry-After` as lower bounds.
        """
        with self._state.lock:
            return list(self._state.token_request_times)

    def wait_for_token_requests(self, count: int, timeout: float = 30.0) -> bool:
        """Block until `count` token requests have arrived; False after `timeout` s."""
        with self._state.token_request_arrived:
            return self._state.token_request_arrived.wait_for(
                lambda: len(self._state.token_request_times) >= count, timeout
            )

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

    # -- the device flow (RFC 8628) ------------------------------------------------

    @property
    def device_interval(self) -> float:
        """Seconds a device must wait between polls (``interval``); settable.

        Polling faster is answered with ``slow_down``. Auth0 uses 5; tests
        may set a fraction of a second to run fast.
        """
        return self._state.device_interval

    @device_interval.setter
    def device_interval(self, value: float) -> None:
        with self._state.lock:
            self._state.device_interval = value

    @property
    def device_code_lifetime(self) -> float:
        """Seconds a device code stays valid (``expires_in``, Auth0: 900); settable."""
        return self._state.device_code_lifetime

    @device_code_lifetime.setter
    def device_code_lifetime(self, value: float) -> None:
        with self._state.lock:
            self._state.device_code_lifetime = value

    def wait_for_device_code(self, timeout: float = 10.0) -> str:
        """Block until a device code is pending; return its user code.

        Raises:
            TimeoutError: No device code was requested within ``timeout`` seconds.
        """
        state = self._state
        with state.device_changed:
            found = state.device_changed.wait_for(
                lambda: any(c.status == "pending" for c in state.device_codes.values()),
                timeout,
            )
            if not found:
                raise TimeoutError(f"no device code was requested within {timeout:g}s")
            return find_device_code(state, None).user_code

    def approve_device(self, user_code: str | None = None, username: str | None = None) -> None:
        """Approve a device code as ``username`` (default: ``DEFAULT_USERNAME``).

        Args:
            user_code: The code shown to the user; default: the newest pending one.
            username: A known user.

        Raises:
            LookupError: No such (pending) code, or an unknown user.
        """
        self._set_device(user_code, "approved", username)

    def deny_device(self, user_code: str | None = None) -> None:
        """Deny a device code: the next poll gets ``access_denied``.

        Raises:
            LookupError: No such (pending) code.
        """
        self._set_device(user_code, "denied", None)

    def expire_device(self, user_code: str | None = None) -> None:
        """Expire a device code now: the next poll gets ``expired_token``.

        Raises:
            LookupError: No such (pending) code.
        """
        self._set_device(user_code, "expired", None)

    def device_polls(self, user_code: str | None = None) -> int:
        """How many times the device code grant was polled for this code (any status).

        Raises:
            LookupError: No such code.
        """
        with self._state.lock:
            codes = list(self._state.device_codes.values())
            if user_code is None and codes:
                return codes[-1].polls
            return find_device_code(self._state, user_code).polls

    def _set_device(self, user_code: str | None, status: str, username: str | None) -> None:
        state = self._state
        with state.lock:
            record = find_device_code(state, user_code)
            if record.status != "pending":
                raise LookupError(f"the device code {record.user_code} is {record.status}")
            if username is not None and username not in state.users:
                raise LookupError(f"unknown user {username!r}")
            record.status = status
            if status == "approved":
                record.username = username or DEFAULT_USERNAME
            state.device_changed.notify_all()
