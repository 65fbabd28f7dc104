"""Private Key JWT client authentication (RFC 7523 §2.2, Auth0's "Private Key JWT").

A confidential client may prove who it is with a JWT signed by its private
key instead of a client secret. ``PrivateKey`` loads the key (a PEM file or
PEM text), picks the algorithm from its type, signs one fresh assertion per
token request and names the key by its public half's RFC 7638 thumbprint,
which binds cache entries to it (``_identity.py``).

The key never appears in ``repr``, in messages or in a frame's locals: the
PEM text read from the file is held in a ``MaskedBytes`` only while it is
parsed, and the parsed key object's own ``repr`` shows no key material.
Imported only when a private key is configured: ``cryptography`` and PyJWT's
signing cost tens of milliseconds that a client secret never pays.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ._errors import ConfigError, MaskedBytes

if TYPE_CHECKING:
    from ._types import PrivateKeyArg

__all__ = [
    "ASSERTION_LIFETIME",
    "PrivateKey",
]

#: Seconds an assertion is valid: it is single-use, so short (Auth0 allows up to 5 minutes).
ASSERTION_LIFETIME = 60

_RSA_ALGORITHMS = ("RS256", "RS384", "PS256")
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def _read_pem(source: PrivateKeyArg) -> MaskedBytes:
    """The PEM text of ``source``: PEM given as text or bytes, else a file's contents.

    Raises:
        ConfigError: Neither PEM text nor a readable file (the path is named,
            the contents never).
    """
    if isinstance(source, bytes):
        return MaskedBytes(source)
    if isinstance(source, str) and "-----BEGIN" in source:
        return MaskedBytes(source.encode())
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(
            f"private_key must be a PEM file's path or PEM text, got {type(source).__name__}"
        )
    path = os.fspath(source)
    if not isinstance(path, str) or not path:
        raise ConfigError("private_key must be a non-empty path or PEM text")
    if not os.path.exists(os.path.expanduser(path)):
        raise ConfigError(f"private_key={path!r}: no such file or directory")
    try:
        with open(os.path.expanduser(path), "rb") as file:
            return MaskedBytes(file.read())
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"private_key={path!r}: cannot read the key file: {reason}") from None


def _public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The RFC 7638 members of the public key's JWK (the thumbprint's input)."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        return {"e": _int_b64(numbers.e), "kty": "RSA", "n": _int_b64(numbers.n)}
    point = key.public_key().public_numbers()
    size = (key.curve.key_size + 7) // 8
    crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[key.curve.name]
    return {
        "crv": crv,
        "kty": "EC",
        "x": _b64(point.x.to_bytes(size, "big")),
        "y": _b64(point.y.to_bytes(size, "big")),
    }


class PrivateKey:
    """The client's private key: signs client assertions, never shows itself.

    Attributes:
        algorithm: The JWS algorithm (``RS256``, ``RS384``, ``PS256``, ``ES256``, ``ES384``).
        key_id: The ``kid`` header (Auth0's id of the credential), if given.
        thumbprint: The public key's RFC 7638 JWK thumbprint (base64url SHA-256):
            not secret; names the key in the cache and in ``repr``.
    """

    __slots__ = ("_key", "algorithm", "key_id", "thumbprint")

    def __init__(
        self, source: PrivateKeyArg, key_id: str | None = None, algorithm: str | None = None
    ) -> None:
        """Load the key.

        Raises:
            ConfigError: Not readable, not an unencrypted PEM private key, a
                type or curve with no supported algorithm, or an algorithm
                that does not fit the key.
        """
        if key_id is not None and (not isinstance(key_id, str) or not key_id.strip()):
            raise ConfigError("key_id must be a non-empty string or None")
        pem = _read_pem(source)
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except TypeError:
            raise ConfigError(
                "private_key is encrypted with a passphrase: give it unencrypted "
                "(a file readable by this user only)"
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigError(
                "private_key is not a PEM private key (RSA or EC P-256/P-384) "
                "(-----BEGIN PRIVATE KEY----- ...)"
            ) from None
        del pem
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < 2048:
                raise ConfigError(f"private_key: an RSA key of {key.key_size} bits is too short")
            allowed: tuple[str, ...] = _RSA_ALGORITHMS
        elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_ALGORITHMS:
            allowed = (_EC_ALGORITHMS[key.curve.name],)
        else:
            raise ConfigError(
                f"private_key: a {type(key).__name__.lstrip('_')} is not supported: use "
                "an RSA key (RS256, RS384, PS256) or an EC P-256 key (ES256)"
            )
        chosen = allowed[0] if algorithm is None else algorithm
        if chosen not in allowed:
            raise ConfigError(
                f"signing_algorithm {algorithm!r} does not fit this key: use one of "
                f"{', '.join(allowed)}"
            )
        jwk = json.dumps(_public_jwk(key), separators=(",", ":"), sort_keys=True)
        self._key = key
        self.algorithm = chosen
        self.key_id = key_id
        self.thumbprint = _b64(hashlib.sha256(jwk.encode()).digest())

    def __repr__(self) -> str:
        return (
            f"PrivateKey(algorithm={self.algorithm!r}, key_id={self.key_id!r}, "
            f"thumbprint={self.thumbprint!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PrivateKey):
            return NotImplemented
        return (self.thumbprint, self.algorithm, self.key_id) == (
            other.thumbprint,
            other.algorithm,
            other.key_id,
        )

    def __hash__(self) -> int:
        return hash((self.thumbprint, self.algorithm, self.key_id))

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a PrivateKey is not picklable: it would write the key out")

    def assertion(self, client_id: str, audience: str, now: float | None = None) -> str:
        """A fresh, single-use client assertion (RFC 7523 §3).

        ``iss`` and ``sub`` are the client id, ``aud`` the server (Auth0: the
        tenant's URL with a trailing slash), ``jti`` random, ``exp``
        ``ASSERTION_LIFETIME`` seconds after ``iat``.
        """
        import jwt  # PyJWT: a dependency already; here, as signing is never on the cached path

        issued = int(time.time() if now is None else now)
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
            "jti": secrets.token_urlsafe(24),
        }
        headers = {"kid": self.key_id} if self.key_id is not None else None
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers=headers)
