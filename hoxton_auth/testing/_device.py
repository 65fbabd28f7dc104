"""The device authorization flow (RFC 8628) the way Auth0 runs it.

``POST /oauth/device/code`` hands out a device code and a user code; the
``urn:ietf:params:oauth:grant-type:device_code`` grant answers
``authorization_pending`` (403) until the code is approved, ``slow_down``
(429) when polled faster than ``interval``, ``expired_token`` (403) and
``access_denied`` (403). Tests approve, deny or expire codes through the
server's controls; a person does it on the small ``/activate`` page.
"""

from __future__ import annotations

import dataclasses
import html
import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from hoxton_auth.testing._constants import DEFAULT_USERNAME
from hoxton_auth.testing._replies import Rejected, Reply, oauth_error

if TYPE_CHECKING:
    from hoxton_auth.testing._state import AuthState

__all__ = [
    "DEVICE_CODE_GRANT",
    "DeviceCode",
    "activate_page",
    "find_device_code",
    "new_device_code",
    "poll_device_code",
]

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# Auth0's user codes: 8 letters from an alphabet without look-alikes, shown as XXXX-XXXX.
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"


@dataclasses.dataclass
class DeviceCode:
    """One device authorization; ``status`` is pending, approved, denied, expired or used."""

    device_code: str = dataclasses.field(repr=False)
    user_code: str
    client_id: str
    scope: str
    audience: str | None
    expires_at: float
    status: str = "pending"
    username: str | None = None
    last_poll: float | None = None
    polls: int = 0


def _user_code() -> str:
    letters = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
    return f"{letters[:4]}-{letters[4:]}"


def _normal(user_code: str) -> str:
    return user_code.replace("-", "").replace(" ", "").upper()


def find_device_code(state: AuthState, user_code: str | None) -> DeviceCode:
    """The device authorization with this user code (default: the newest pending one).

    Raises:
        LookupError: No such code.
    """
    codes = list(state.device_codes.values())
    if user_code is None:
        pending = [c for c in codes if c.status == "pending"]
        if not pending:
            raise LookupError("no pending device code")
        return pending[-1]
    for code in codes:
        if _normal(code.user_code) == _normal(user_code):
            return code
    raise LookupError(f"no device code with user code {user_code!r}")


def new_device_code(
    state: AuthState, client_id: str, scope: str, audience: str | None
) -> DeviceCode:
    """Record a new pending device authorization; call with ``state.lock`` held."""
    record = DeviceCode(
        device_code=secrets.token_urlsafe(32),
        user_code=_user_code(),
        client_id=client_id,
        scope=scope,
        audience=audience,
        expires_at=state.now() + state.device_code_lifetime,
    )
    state.device_codes[record.device_code] = record
    state.device_changed.notify_all()
    return record


def poll_device_code(state: AuthState, client_id: str, device_code: str) -> DeviceCode:
    """One poll of the device code grant (RFC 8628 §3.4-3.5); call with ``state.lock`` held.

    Returns:
        The approved authorization (now used up).

    Raises:
        Rejected: Pending, too fast, expired, denied or unknown, in Auth0's words.
    """
    record = state.device_codes.get(device_code)
    if record is None or record.client_id != client_id or record.status == "used":
        raise Rejected(oauth_error(403, "invalid_grant", "Invalid or expired device code."))
    now = state.now()
    previous, record.last_poll = record.last_poll, now
    record.polls += 1
    if record.status == "expired" or now >= record.expires_at:
        record.status = "expired"
        raise Rejected(oauth_error(403, "expired_token", "The device code has expired."))
    if record.status == "denied":
        raise Rejected(oauth_error(403, "access_denied", "User cancelled the confirmation prompt"))
    if record.status == "approved":
        record.status = "used"  # single use: the next poll gets invalid_grant
        return record
    if previous is not None and now - previous < state.device_interval:
        raise Rejected(
            oauth_error(
                429,
                "slow_down",
                f"You are polling faster than allowed. Try again in {state.device_interval:g} "
                "seconds.",
            )
        )
    raise Rejected(
        oauth_error(403, "authorization_pending", "User has yet to authorize device code.")
    )


_ACTIVATE_FORM = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Device activation</title></head>
<body><h1>Device activation</h1>{message}
<form method="post" action="/activate">
<p><label>User code <input name="user_code" value="{user_code}" autofocus></label></p>
<p><label>Log in as <input name="username" value="{username}"></label></p>
<p><button name="action" value="approve">Approve</button>
<button name="action" value="deny">Deny</button></p>
</form></body></html>
"""


def activate_page(state: AuthState, method: str, query: str, body: bytes) -> Reply:
    """``GET /activate`` shows a form; ``POST /activate`` approves or denies a user code."""
    params = dict(parse_qsl(query if method == "GET" else body.decode("utf-8", "replace")))
    message = ""
    if method == "POST":
        action = params.get("action", "approve")
        with state.lock:
            try:
                record = find_device_code(state, params.get("user_code", ""))
            except LookupError:
                message = "<p>Unknown user code.</p>"
            else:
                username = params.get("username") or DEFAULT_USERNAME
                if record.status != "pending":
                    message = f"<p>This code is already {record.status}.</p>"
                elif action == "deny":
                    record.status = "denied"
                    message = "<p>Denied. You can close this tab.</p>"
                elif username not in state.users:
                    message = "<p>Unknown user.</p>"
                else:
                    record.status, record.username = "approved", username
                    message = "<p>Approved: the device is logged in.</p>"
                state.device_changed.notify_all()
    page = _ACTIVATE_FORM.format(
        message=message,
        user_code=html.escape(params.get("user_code", ""), quote=True),
        username=html.escape(params.get("username", DEFAULT_USERNAME), quote=True),
    )
    return Reply(200, page.encode("utf-8"), (("Content-Type", "text/html; charset=utf-8"),))
