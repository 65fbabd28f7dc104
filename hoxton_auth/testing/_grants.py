"""`POST /oauth/token`: the four grants, answered the way Auth0 answers them.

Every request is logged in `AuthState.token_requests` (malformed ones as an
empty dict) before anything else happens, so tests can count attempts,
failed ones included. Then come the configured delay and any queued fault,
then the grant itself under the state lock.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING

from hoxton_auth.testing._assertions import check_assertion
from hoxton_auth.testing._constants import AUDIENCE, DEFAULT_USERNAME
from hoxton_auth.testing._device import DEVICE_CODE_GRANT, poll_device_code
from hoxton_auth.testing._replies import (
    Rejected,
    Reply,
    json_reply,
    oauth_error,
    parse_params,
    require,
    with_basic_credentials,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from hoxton_auth.testing._state import AuthState, Client, User

__all__ = ["check_audience", "client_for", "token_endpoint"]

_INVALID_REFRESH = "Unknown or invalid refresh token."
_INVALID_CODE = "Invalid authorization code"
_BEARER = "Bearer"  # RFC 6750 token type


def _unauthorized() -> Rejected:
    # Auth0 answers 401 for an unknown client, a wrong secret and a missing
    # one alike; RFC 6749 section 5.2 calls all of them invalid_client.
    return Rejected(oauth_error(401, "invalid_client", "Unauthorized"))


def _invalid_grant(description: str) -> Rejected:
    return Rejected(oauth_error(403, "invalid_grant", description))


def client_for(state: AuthState, fields: dict[str, str]) -> Client:
    """Look up and authenticate the client (`client_secret_post`, or `private_key_jwt`).

    Public clients send no secret; a secret they send anyway is ignored.

    Raises:
        Rejected: 400 without `client_id`, 401 `invalid_client` otherwise.
    """
    client = state.clients.get(require(fields, "client_id"))
    if client is None:
        raise _unauthorized()
    if client.public_key is not None:  # Private Key JWT (issue 24)
        check_assertion(state, client, fields)
    elif client.secret is not None:
        given = fields.get("client_secret", "")
        if not hmac.compare_digest(given.encode(), client.secret.encode()):
            raise _unauthorized()
    return client


def check_audience(audience: str | None) -> None:
    """Reject an API other than Hoxton's, as Auth0 does for unknown APIs.

    Raises:
        Rejected: 403 `access_denied` naming the unknown audience.
    """
    if audience is not None and audience != AUDIENCE:
        raise Rejected(oauth_error(403, "access_denied", f"Service not found: {audience}"))


def _issue(
    state: AuthState,
    client: Client,
    user: User,
    *,
    scope: str,
    audience: str | None,
    gty: str | None,
    nonce: str | None = None,
    family_id: str | None = None,
) -> dict[str, object]:
    """Build a user token response (access, optional refresh and ID token)."""
    payload: dict[str, object] = {}
    if audience is None:
        # Without an audience Auth0 issues an opaque token good only for
        # /userinfo; our echo API rejects it, as the Hoxton API would.
        payload["access_token"] = secrets.token_urlsafe(24)
    else:
        payload["access_token"] = state.mint_access_token(
            subject=user.subject, client_id=client.client_id, scope=scope, gty=gty
        )
    if family_id is not None:
        payload["refresh_token"] = state.new_refresh_token(family_id)
    if "openid" in scope.split():
        payload["id_token"] = state.mint_id_token(
            user, client_id=client.client_id, scope=scope, nonce=nonce
        )
    if scope:
        payload["scope"] = scope
    payload["expires_in"] = state.token_lifetime
    payload["token_type"] = _BEARER
    return payload


def _offline_family(
    state: AuthState, client: Client, user: User, scope: str, audience: str | None
) -> str | None:
    if "offline_access" not in scope.split():
        return None
    return state.new_family(client.client_id, user.username, scope, audience)


def _client_credentials(state: AuthState, fields: dict[str, str]) -> Reply:
    client = client_for(state, fields)
    if not client.confidential:
        raise Rejected(
            oauth_error(
                403,
                "unauthorized_client",
                "Grant type 'client_credentials' not allowed for the client.",
            )
        )
    audience = fields.get("audience")
    if not audience:
        description = (
            "No audience parameter was provided, and no default audience has been configured"
        )
        raise Rejected(oauth_error(403, "access_denied", description))
    check_audience(audience)
    scope = fields.get("scope", "")
    token = state.mint_access_token(
        subject=f"{client.client_id}@clients",
        client_id=client.client_id,
        scope=scope,
        gty="client-credentials",
    )
    payload: dict[str, object] = {"access_token": token}
    if scope:
        payload["scope"] = scope
    payload["expires_in"] = state.token_lifetime
    payload["token_type"] = _BEARER
    return json_reply(200, payload)


def _blocked() -> Rejected:
    # Auth0's brute-force protection: the account stays blocked until unblocked.
    return Rejected(
        oauth_error(429, "too_many_attempts", "User is blocked: too many failed login attempts")
    )


def _check_password(state: AuthState, username: str, password: str) -> User:
    limit = state.block_after_failed_logins
    if limit is not None and state.failed_logins.get(username, 0) >= limit:
        raise _blocked()
    user = state.users.get(username)
    if user is None or not hmac.compare_digest(password.encode(), user.password.encode()):
        state.failed_logins[username] = state.failed_logins.get(username, 0) + 1
        raise _invalid_grant("Wrong email or password.")
    state.failed_logins.pop(username, None)
    return user


def _mfa_challenge(state: AuthState, user: User, fields: dict[str, str]) -> Rejected:
    mfa_token = "mfa." + secrets.token_urlsafe(24)
    # The OTP exchange carries no audience or scope: the first request's apply.
    kept: dict[str, str] = {n: fields[n] for n in ("audience", "scope") if n in fields}
    state.mfa_tokens[mfa_token] = {"username": user.username, **kept}
    return Rejected(
        json_reply(
            403,
            {
                "error": "mfa_required",
                "error_description": "Multifactor authentication required",
                "mfa_token": mfa_token,
                "mfa_requirements": {"challenge": [{"type": "otp"}]},
            },
        )
    )


def _password(state: AuthState, fields: dict[str, str]) -> Reply:
    client = client_for(state, fields)
    username = require(fields, "username")
    password = require(fields, "password")
    if fields.get("grant_type") == _PASSWORD_REALM:
        require(fields, "realm")  # any connection name: the test server has one directory
    user = _check_password(state, username, password)
    if user.username in state.mfa_users:
        raise _mfa_challenge(state, user, fields)
    return _user_tokens(state, client, user, fields, gty="password")


def _mfa_otp(state: AuthState, fields: dict[str, str]) -> Reply:
    client = client_for(state, fields)
    first = state.mfa_tokens.get(require(fields, "mfa_token"))
    if first is None:
        raise _invalid_grant("Malformed mfa_token")
    if not hmac.compare_digest(require(fields, "otp").encode(), state.mfa_otp.encode()):
        raise _invalid_grant("Invalid otp_code.")
    del state.mfa_tokens[fields["mfa_token"]]
    user = state.users[first["username"]]
    return _user_tokens(state, client, user, {**fields, **first}, gty="mfa")


def _user_tokens(
    state: AuthState, client: Client, user: User, fields: dict[str, str], gty: str
) -> Reply:
    audience = fields.get("audience") or None
    check_audience(audience)
    scope = fields.get("scope", "")
    family_id = _offline_family(state, client, user, scope, audience)
    return json_reply(
        200,
        _issue(state, client, user, scope=scope, audience=audience, gty=gty, family_id=family_id),
    )


def _pkce_ok(challenge: str, method: str | None, verifier: str | None) -> bool:
    if not verifier:
        return False
    if method == "plain":  # RFC 7636 section 4.2
        expected = verifier
    else:
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return hmac.compare_digest(expected.encode(), challenge.encode())


def _authorization_code(state: AuthState, fields: dict[str, str]) -> Reply:
    client = client_for(state, fields)
    code = require(fields, "code")
    redirect_uri = require(fields, "redirect_uri")
    grant = state.codes.get(code)
    if grant is None or grant.client_id != client.client_id:
        raise _invalid_grant(_INVALID_CODE)
    if grant.used:
        # RFC 6749 section 4.1.2: a code used twice should revoke what it
        # produced; Auth0 revokes the refresh tokens.
        if grant.family_id is not None:
            state.revoke_family(grant.family_id)
        raise _invalid_grant(_INVALID_CODE)
    if grant.expires_at <= state.now():
        raise _invalid_grant(_INVALID_CODE)
    if redirect_uri != grant.redirect_uri:
        raise _invalid_grant("Invalid redirect_uri: it does not match the one sent to /authorize")
    if grant.code_challenge is None:
        if not client.confidential:
            # A public client proves itself only through PKCE.
            raise _unauthorized()
    elif not _pkce_ok(
        grant.code_challenge, grant.code_challenge_method, fields.get("code_verifier")
    ):
        raise _invalid_grant("Failed to verify code verifier")
    grant.used = True
    user = state.users[grant.username]
    grant.family_id = _offline_family(state, client, user, grant.scope, grant.audience)
    payload = _issue(
        state,
        client,
        user,
        scope=grant.scope,
        audience=grant.audience,
        gty=None,
        nonce=grant.nonce,
        family_id=grant.family_id,
    )
    return json_reply(200, payload)


def _refresh_token(state: AuthState, fields: dict[str, str]) -> Reply:
    client = client_for(state, fields)
    token = require(fields, "refresh_token")
    family_id = state.refresh_tokens.get(token)
    if family_id is None:
        raise _invalid_grant(_INVALID_REFRESH)
    family = state.families[family_id]
    if family.client_id != client.client_id or family.revoked:
        raise _invalid_grant(_INVALID_REFRESH)
    in_overlap = (
        token == family.previous and state.now() - family.rotated_at <= state.rotation_overlap
    )
    if family.current != token and not in_overlap:
        # Reuse of a rotated token: someone else holds its successor, so
        # Auth0 revokes the whole family (refresh token rotation docs).
        state.revoke_family(family_id)
        state.reuse_detected += 1
        raise _invalid_grant(_INVALID_REFRESH)
    granted = family.scope.split()
    requested = fields.get("scope")
    if requested:
        extra = [s for s in requested.split() if s not in granted]
        if extra:
            raise Rejected(
                oauth_error(
                    403, "invalid_scope", f"Scope exceeds the original grant: {' '.join(extra)}"
                )
            )
    scope = requested or family.scope
    user = state.users[family.username]
    payload = _issue(
        state,
        client,
        user,
        scope=scope,
        audience=family.audience,
        gty=None,
        family_id=family_id if state.rotate_refresh_tokens else None,
    )
    return json_reply(200, payload)


def _device_code(state: AuthState, fields: dict[str, str]) -> Reply:
    client = client_for(state, fields)
    record = poll_device_code(state, client.client_id, require(fields, "device_code"))
    user = state.users[record.username or DEFAULT_USERNAME]
    family_id = _offline_family(state, client, user, record.scope, record.audience)
    payload = _issue(
        state,
        client,
        user,
        scope=record.scope,
        audience=record.audience,
        gty=None,
        family_id=family_id,
    )
    return json_reply(200, payload)


_GRANTS: dict[str, Callable[[AuthState, dict[str, str]], Reply]] = {
    DEVICE_CODE_GRANT: _device_code,
    "authorization_code": _authorization_code,
    "client_credentials": _client_credentials,
    "password": _password,
    "refresh_token": _refresh_token,
    "http://auth0.com/oauth/grant-type/password-realm": _password,
    "http://auth0.com/oauth/grant-type/mfa-otp": _mfa_otp,
}
_PASSWORD_REALM = "http://auth0.com/oauth/grant-type/password-realm"  # noqa: S105  a grant name


def _grant(state: AuthState, fields: dict[str, str]) -> Reply:
    grant_type = require(fields, "grant_type")
    handler = _GRANTS.get(grant_type)
    if handler is None:
        return oauth_error(403, "unsupported_grant_type", f"Unsupported grant type: {grant_type}")
    return handler(state, fields)


def _bad_day(state: AuthState, fields: dict[str, str]) -> Reply | None:
    """An outage or a spent quota (issue 12), else ``None``; hold ``state.lock``."""
    if state.outage:
        return oauth_error(503, "temporarily_unavailable", "The service is unavailable (outage)")
    reset = state.quota_exhausted
    if reset is not None and fields.get("grant_type") == "client_credentials":
        reply = oauth_error(429, "too_many_requests", "Quota exceeded for client credentials")
        headers = (
            ("Retry-After", str(round(reset))),
            ("X-RateLimit-Limit", "100"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", str(round(state.now() + reset))),
            (
                "Auth0-Client-Quota-Limit",
                f"b=per_hour;q=100;r=0;t={round(reset)},b=per_day;q=1000;r=400;t=80000",
            ),
        )
        return Reply(reply.status, reply.body, (*reply.headers, *headers))
    return None


def token_endpoint(
    state: AuthState,
    content_type: str | None,
    body: bytes,
    authorization: str | None = None,
    forwarded_for: str | None = None,
) -> Reply:
    """Answer one token request; blocks for `token_delay` (outside the lock)."""
    try:
        fields = with_basic_credentials(parse_params(content_type, body), authorization)
        parse_error = None
    except Rejected as exc:
        fields, parse_error = {}, exc.reply
    with state.lock:
        state.token_requests.append(fields)
        state.forwarded_for.append(forwarded_for)
        state.token_request_times.append(time.monotonic())
        state.token_request_arrived.notify_all()
        fault = state.faults.popleft() if state.faults else state.standing_fault
        delay = state.token_delay + (fault.delay if fault is not None else 0.0)
    if fault is not None and fault.hold is not None:
        fault.hold.wait()
    if delay > 0 and state.stopping.wait(delay):
        return Reply(503, disconnect=True)  # the server is stopping: no answer
    if fault is not None:
        return Reply(
            fault.status,
            fault.body,
            fault.headers,
            disconnect=fault.disconnect,
            truncate=fault.truncate,
        )
    if parse_error is not None:
        return parse_error
    with state.lock:
        drip = state.drip
        try:
            reply = _bad_day(state, fields) or _grant(state, fields)
        except Rejected as exc:
            reply = exc.reply
    return dataclasses.replace(reply, drip=drip) if drip else reply
