"""The endpoints other than `/oauth/token`: authorize, revoke, discovery, echo API."""

from __future__ import annotations

import html
import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from hoxton_auth.testing._constants import AUDIENCE, CODE_LIFETIME, DEFAULT_USERNAME
from hoxton_auth.testing._device import new_device_code
from hoxton_auth.testing._grants import check_audience, client_for
from hoxton_auth.testing._keys import InvalidTokenError
from hoxton_auth.testing._replies import (
    Rejected,
    Reply,
    json_reply,
    oauth_error,
    parse_params,
    require,
    with_basic_credentials,
)
from hoxton_auth.testing._state import AuthorizationCode

if TYPE_CHECKING:
    from hoxton_auth.testing._state import AuthState

__all__ = ["api", "authorize", "device_code", "discovery", "jwks", "not_found", "revoke"]


def _error_page(title: str, detail: str) -> Reply:
    # Auth0 shows an HTML page, not a redirect, when it cannot trust the
    # redirect_uri: redirecting there would leak to an unregistered URL.
    page = (
        "<!DOCTYPE html>\n<html><head><title>Error</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(detail)}</p></body></html>\n"
    )
    return Reply(400, page.encode("utf-8"), (("Content-Type", "text/html; charset=utf-8"),))


def _redirect(redirect_uri: str, params: dict[str, str]) -> Reply:
    parts = urlsplit(redirect_uri)
    extra = urlencode(params, quote_via=quote)
    query = f"{parts.query}&{extra}" if parts.query else extra
    location = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    return Reply(302, b"", (("Location", location), ("Cache-Control", "no-store")))


def authorize(state: AuthState, query: str) -> Reply:
    """`GET /authorize`: auto-approve and redirect with a code.

    The user is the one named by `login_hint` (added with `add_user`), else
    `DEFAULT_USERNAME`; an unknown hint is refused with an error redirect.
    """
    params = dict(parse_qsl(query, keep_blank_values=True))
    with state.lock:
        state.authorize_requests.append(params)
        client_id = params.get("client_id", "")
        client = state.clients.get(client_id)
        if client is None:
            return _error_page("invalid_request", f"Unknown client: {client_id}")
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri or not client.allows_redirect(redirect_uri):
            return _error_page(
                "Callback URL mismatch",
                f"{redirect_uri} is not in the list of allowed callback URLs",
            )

        def redirect(**fields: str) -> Reply:
            if "state" in params:
                fields["state"] = params["state"]
            return _redirect(redirect_uri, fields)

        response_type = params.get("response_type", "")
        if response_type != "code":
            return redirect(
                error="unsupported_response_type",
                error_description=f"Unsupported response type: {response_type}",
            )
        audience = params.get("audience") or None
        if audience is not None and audience != AUDIENCE:
            return redirect(
                error="access_denied", error_description=f"Service not found: {audience}"
            )
        challenge = params.get("code_challenge") or None
        method = params.get("code_challenge_method") or None
        if method not in (None, "S256", "plain"):
            return redirect(
                error="invalid_request",
                error_description=f"Unsupported code_challenge_method: {method}",
            )
        if method is not None and challenge is None:
            return redirect(error="invalid_request", error_description="Missing code_challenge")
        if state.deny_authorization:
            return redirect(
                error="access_denied",
                error_description="User did not authorize the request",
            )
        username = params.get("login_hint") or DEFAULT_USERNAME
        if username not in state.users:
            return redirect(
                error="access_denied",
                error_description=f"The user {username} does not exist.",
            )
        code = secrets.token_urlsafe(24)
        state.codes[code] = AuthorizationCode(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            username=username,
            scope=params.get("scope", ""),
            audience=audience,
            code_challenge=challenge,
            # RFC 7636 section 4.3: the method defaults to "plain".
            code_challenge_method=method or ("plain" if challenge else None),
            nonce=params.get("nonce") or None,
            expires_at=state.now() + CODE_LIFETIME,
        )
        return redirect(code=code)


def revoke(
    state: AuthState, content_type: str | None, body: bytes, authorization: str | None = None
) -> Reply:
    """`POST /oauth/revoke`: revoke a refresh token's family (RFC 7009)."""
    try:
        fields = with_basic_credentials(parse_params(content_type, body), authorization)
    except Rejected as exc:
        with state.lock:
            state.revoke_requests.append({})
        return exc.reply
    with state.lock:
        state.revoke_requests.append(fields)
        if state.revocation_outage:
            return oauth_error(503, "temporarily_unavailable", "Revocation is unavailable (outage)")
        try:
            client = client_for(state, fields)
            token = require(fields, "token")
        except Rejected as exc:
            return exc.reply
        family_id = state.refresh_tokens.get(token)
        # RFC 7009 section 2.2: unknown tokens get 200 too, so a client can't
        # probe which tokens exist; tokens of other clients are left alone.
        if family_id is not None and state.families[family_id].client_id == client.client_id:
            state.revoke_family(family_id)
    return Reply(200)


def _unauthorized(description: str) -> Reply:
    # RFC 6750 section 3: say why in WWW-Authenticate as well as the body.
    quoted = description.replace("\\", "").replace('"', "'")
    challenge = f'Bearer error="invalid_token", error_description="{quoted}"'
    return json_reply(
        401,
        {"error": "invalid_token", "error_description": description},
        headers=(("WWW-Authenticate", challenge),),
    )


def api(
    state: AuthState,
    method: str,
    target: str,
    authorization: str | None,
    body: bytes,
) -> Reply:
    """`ANY /api/...`: verify the bearer token and echo the request."""
    with state.lock:
        state.api_requests += 1
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return _unauthorized("Missing bearer token")
    issuer, key = state.signer()
    try:
        claims = key.verify(token, issuer=issuer, audience=AUDIENCE)
    except InvalidTokenError as exc:
        return _unauthorized(f"Invalid token: {exc}")
    with state.lock:
        if claims["jti"] in state.revoked_jtis:
            return _unauthorized("The access token has been revoked")
        if claims["jti"] in state.expired_jtis or claims["exp"] <= state.now():
            return _unauthorized("The access token expired")
    parts = urlsplit(target)
    echo = {
        "method": method,
        "path": parts.path,
        "query": parts.query,
        "sub": claims["sub"],
        "scope": claims.get("scope", ""),
        "body": body.decode("utf-8", "replace"),
    }
    return json_reply(200, echo)


def jwks(state: AuthState) -> dict[str, object]:
    """The public JSON Web Key Set."""
    _, key = state.signer()
    return {"keys": [dict(key.jwk)]}


def discovery(state: AuthState) -> dict[str, object]:
    """A minimal OpenID Connect discovery document."""
    issuer, _ = state.signer()
    return {
        "issuer": issuer,
        "authorization_endpoint": issuer + "authorize",
        "token_endpoint": issuer + "oauth/token",
        "revocation_endpoint": issuer + "oauth/revoke",
        "jwks_uri": issuer + ".well-known/jwks.json",
        "response_types_supported": ["code"],
        "grant_types_supported": [
            "authorization_code",
            "client_credentials",
            "password",
            "refresh_token",
        ],
        "code_challenge_methods_supported": ["S256", "plain"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "subject_types_supported": ["public"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "none"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
    }


def not_found(path: str) -> Reply:
    """Unknown route."""
    return oauth_error(404, "not_found", f"No such endpoint: {path}")


def device_code(state: AuthState, content_type: str | None, body: bytes) -> Reply:
    """`POST /oauth/device/code`: start a device authorization (RFC 8628 §3.1-3.2)."""
    try:
        fields = parse_params(content_type, body)
        with state.lock:
            client = client_for(state, fields)
            audience = fields.get("audience") or None
            if audience is not None:
                check_audience(audience)
            record = new_device_code(state, client.client_id, fields.get("scope", ""), audience)
            base = (state.issuer or "http://127.0.0.1/").rstrip("/") + "/activate"
            interval, lifetime = state.device_interval, state.device_code_lifetime
    except Rejected as exc:
        return exc.reply
    return json_reply(
        200,
        {
            "device_code": record.device_code,
            "user_code": record.user_code,
            "verification_uri": base,
            "verification_uri_complete": f"{base}?{urlencode({'user_code': record.user_code})}",
            "expires_in": int(lifetime),
            # RFC 8628 says integer seconds; tests may set a fraction to run fast.
            "interval": int(interval) if float(interval).is_integer() else interval,
        },
    )
