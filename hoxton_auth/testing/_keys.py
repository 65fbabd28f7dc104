"""The RSA key that signs the test server's JWTs.

Generating a 2048-bit RSA key takes tens of milliseconds, so one key is made
per process and shared by every `AuthServer` (tokens still name their server
in `iss`, which the echo API checks). PyJWT and cryptography are imported only
here and only when a key is first needed, so importing `hoxton_auth.testing`
stays cheap.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

__all__ = ["InvalidTokenError", "SigningKey", "signing_key"]

_ALGORITHM = "RS256"
_lock = threading.Lock()
_cached: SigningKey | None = None


class InvalidTokenError(ValueError):
    """A bearer token failed verification; the message is safe to show."""


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclasses.dataclass(frozen=True)
class SigningKey:
    """An RSA private key with its key id and public JWK."""

    private_key: RSAPrivateKey = dataclasses.field(repr=False)
    kid: str
    jwk: Mapping[str, str]

    @classmethod
    def generate(cls) -> SigningKey:
        """Make a fresh 2048-bit key; `kid` is its RFC 7638 thumbprint.

        Raises:
            ImportError: `cryptography` is missing; the message says how to get it.
        """
        try:
            from cryptography.hazmat.primitives.asymmetric import rsa
        except ImportError as exc:  # an optional dependency: say which extra brings it
            raise ImportError(
                "the hoxton_auth.testing server signs its tokens with the cryptography "
                'package, which is not installed: pip install "cryptography>=41" '
                '(hoxton-auth is not on PyPI yet; in its checkout: pip install -e ".[testing]")'
            ) from exc

        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = private_key.public_key().public_numbers()
        members = {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
        digest = hashlib.sha256(canonical.encode("ascii")).digest()
        kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        jwk = {**members, "alg": _ALGORITHM, "kid": kid, "use": "sig"}
        return cls(private_key=private_key, kid=kid, jwk=jwk)

    def sign(self, claims: Mapping[str, Any]) -> str:
        """Encode `claims` as an RS256 JWT with this key's `kid` header."""
        import jwt

        return jwt.encode(
            dict(claims), self.private_key, algorithm=_ALGORITHM, headers={"kid": self.kid}
        )

    def verify(self, token: str, *, issuer: str, audience: str) -> dict[str, Any]:
        """Check signature, issuer and audience; return the claims.

        Expiry is left to the caller, who knows the server's (possibly
        skewed) clock.

        Raises:
            InvalidTokenError: The token is malformed or fails a check.
        """
        import jwt

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.private_key.public_key(),
                algorithms=[_ALGORITHM],
                audience=audience,
                issuer=issuer,
                options={
                    "require": ["exp", "iat", "iss", "aud", "sub", "jti"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            # PyJWT messages name the failed check, never the token itself.
            raise InvalidTokenError(str(exc)) from exc
        return claims


def signing_key() -> SigningKey:
    """Return this process's signing key, generating it on first use."""
    global _cached  # one key per process, see the module docstring
    with _lock:
        if _cached is None:
            _cached = SigningKey.generate()
        return _cached
