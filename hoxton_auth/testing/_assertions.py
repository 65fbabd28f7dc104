"""Private Key JWT client authentication at the test server (RFC 7523 §2.2, §3).

A client registered with a public key proves itself with a JWT signed by its
private key, as Auth0 checks it: the signature (RS256, RS384, PS256, ES256,
ES384), ``iss`` and ``sub`` the client id, ``aud`` the tenant (its URL with a
trailing slash; the token URL is accepted too, as RFC 7523 allows, and any
``AuthServer.accept_assertion_audience`` added, like a custom domain), ``exp``
in the future and at most five minutes after ``iat``, and a ``jti`` never
seen before: an assertion is single-use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hoxton_auth.testing._replies import Rejected, oauth_error

if TYPE_CHECKING:
    from hoxton_auth.testing._state import AuthState, Client

__all__ = ["ASSERTION_ALGORITHMS", "CLIENT_ASSERTION_TYPE", "check_assertion", "public_key_of"]

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS256", "RS384", "PS256", "ES256", "ES384")
MAX_LIFETIME = 300  # seconds: Auth0 refuses assertions valid for longer


def public_key_of(key: Any) -> Any:
    """A public key object from PEM (``str``/``bytes``, public or private) or a key object.

    Raises:
        ValueError: Not a PEM key or a key object.
    """
    from cryptography.hazmat.primitives import serialization

    if isinstance(key, str):
        key = key.encode()
    if isinstance(key, bytes):
        if b"PRIVATE KEY" in key:
            return serialization.load_pem_private_key(key, password=None).public_key()
        return serialization.load_pem_public_key(key)
    if hasattr(key, "public_key"):  # a private key object
        return key.public_key()
    if hasattr(key, "public_numbers"):
        return key
    msg = f"public_key must be PEM or a cryptography key, got {type(key).__name__}"
    raise ValueError(msg)


def _refused(description: str) -> Rejected:
    return Rejected(oauth_error(401, "invalid_client", description))


def check_assertion(state: AuthState, client: Client, fields: dict[str, str]) -> None:
    """Authenticate ``client`` by the assertion in ``fields``; call with ``state.lock`` held.

    Raises:
        Rejected: 401 ``invalid_client`` naming what is wrong (never the assertion).
    """
    import jwt

    if fields.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
        raise _refused("client_assertion_type must be " + CLIENT_ASSERTION_TYPE)
    assertion = fields.get("client_assertion", "")
    if not assertion or "client_secret" in fields:
        raise _refused("This client authenticates with a client assertion only")
    issuer = state.issuer or ""
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            client.public_key,
            algorithms=list(ASSERTION_ALGORITHMS),
            audience=[
                issuer,
                issuer.rstrip("/"),
                issuer + "oauth/token",
                *state.assertion_audiences,
            ],
            issuer=client.client_id,
            options={
                "require": ["iss", "sub", "aud", "exp", "jti"],
                "verify_exp": False,  # checked below against the server's (skewed) clock
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise _refused("Invalid client assertion signature") from None
    except jwt.InvalidTokenError as exc:
        raise _refused(f"Invalid client assertion: {exc}") from None
    if claims["sub"] != client.client_id:
        raise _refused("Invalid client assertion: sub must be the client id")
    now = state.now()
    exp, iat = claims["exp"], claims.get("iat", now)
    if not isinstance(exp, (int, float)) or exp <= now:
        raise _refused("Invalid client assertion: expired")
    if not isinstance(iat, (int, float)) or exp - iat > MAX_LIFETIME:
        raise _refused(f"Invalid client assertion: valid for more than {MAX_LIFETIME} seconds")
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti:
        raise _refused("Invalid client assertion: jti must be a non-empty string")
    if jti in state.assertion_jtis:
        raise _refused("Invalid client assertion: jti already used")
    state.assertion_jtis.add(jti)
