"""Whose token is it: the cache key of an identity and the verifier binding it to a credential.

A cache entry belongs to exactly one identity (DESIGN.md, "Whose token is
it"; issue 10): the token URL, client id, audience, normalised scope, and a
*subject*. The key is a hash of all of them, with a version tag, so entries
written by 0.1.0 (which had no subject) are simply never looked up again.

| grant                         | subject (label in meta)  | bound by                      |
|-------------------------------|--------------------------|-------------------------------|
| client credentials            | ``client``               | salted HMAC keyed by secret   |
| password                      | ``password:<username>``  | salted scrypt of password     |
| refresh token (constructor)   | ``lineage:<hash>``       | the key: sha256 of the seed   |
| authorization code, exchanged | ``user:<sub>``           | the code, exchanged each time |
| ``login()``                   | ``login`` (no scope)     | this OS user's cache          |

A verifier is stored in the entry's meta as ``scheme$salt$digest``. An
entry whose verifier does not match ours is someone else's: a miss. No
verifier lets a secret be read back cheaply: the client secret is a
high-entropy key, so a salted HMAC keyed by it is enough; a password is not,
so it goes through a salted ``scrypt`` (about 16 MiB and some tens of
milliseconds), computed at most once per auth object and salt.

Pure functions and small value objects; ``os.urandom`` for salts is the only
outside input. On the path of a ``hoxton-auth token`` answered from the cache,
so no dataclasses (see ``_config.py``) and the grant classes load only when
an identity is made from a grant object.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import weakref
from collections.abc import Mapping

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _cli.py)
if TYPE_CHECKING:
    from typing import Protocol

    from ._config import ClientConfig
    from ._grants import Grant

    class Verifier(Protocol):
        """Binds an entry to a credential without storing anything that reveals it.

        A type for mypy only (no ``typing`` at run time: see ``_config.py``);
        ``SecretVerifier`` and ``PasswordVerifier`` are the implementations.
        """

        slow: bool  # whether checking a new salt takes long enough to keep off an event loop

        def matches(self, stored: str | None) -> bool:
            """Whether ``stored`` (an entry's verifier) was made from our credential."""

        def stamp(self, stored: str | None) -> str:
            """The verifier to store: ``stored`` itself if it is ours, else a new one."""


__all__ = [
    "KEY_VERSION",
    "VERIFIER_META",
    "Identity",
    "PasswordVerifier",
    "SecretVerifier",
    "client_identity",
    "identity_for",
    "login_identity",
    "session_identity",
]

KEY_VERSION = "hoxton-auth/2"  # in every key: entries of 0.1.0 are unreachable
VERIFIER_META = "verifier"
SUBJECT_META = "subject"
SALT_BYTES = 16

# scrypt cost (RFC 7914): N=2**14, r=8 uses 16 MiB and ~60 ms of CPU on the
# benchmark machine, paid once per auth object and salt: on a cold cache hit, and
# when a new verifier is stamped (benchmarks/bench_identity.py measures it).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 64 * 1024 * 1024


def _key(*parts: str) -> str:
    return hashlib.sha256("\x00".join((KEY_VERSION, *parts)).encode()).hexdigest()[:32]


# Issue 11: a child forked while another thread held a guard would wait on it
# forever; each child gets fresh locks, as filelock does.
_verifiers: weakref.WeakSet[_SaltedVerifier] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for verifier in list(_verifiers):
        verifier._after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_reset_after_fork)


class _SaltedVerifier:
    """A verifier ``scheme$salt$digest``; digests remembered per salt."""

    scheme = ""
    slow = False

    def __init__(self) -> None:
        self._digests: dict[str, str] = {}
        self._guard = threading.Lock()
        _verifiers.add(self)

    def _after_fork(self) -> None:
        self._guard = threading.Lock()  # a lock held by another thread at fork never opens

    def _digest(self, salt: bytes) -> bytes:
        raise NotImplementedError  # pragma: no cover

    def _remembered(self, salt_hex: str) -> str:
        with self._guard:  # one computation per salt, even from many threads
            digest = self._digests.get(salt_hex)
            if digest is None:
                digest = self._digests[salt_hex] = self._digest(bytes.fromhex(salt_hex)).hex()
            return digest

    def matches(self, stored: str | None) -> bool:
        """Whether ``stored`` was made from our credential."""
        if not stored:
            return False
        scheme, _, rest = stored.partition("$")
        salt_hex, _, digest = rest.partition("$")
        if scheme != self.scheme or len(salt_hex) != 2 * SALT_BYTES or not digest:
            return False
        try:
            bytes.fromhex(salt_hex)
        except ValueError:
            return False
        return hmac.compare_digest(self._remembered(salt_hex), digest)

    def stamp(self, stored: str | None) -> str:
        """``stored`` if ours (other processes need not recompute), else a fresh salt's."""
        if stored is not None and self.matches(stored):
            return stored
        salt_hex = os.urandom(SALT_BYTES).hex()
        return f"{self.scheme}${salt_hex}${self._remembered(salt_hex)}"


class SecretVerifier(_SaltedVerifier):
    """HMAC-SHA256 keyed by the client secret over (salt, identity key)."""

    scheme = "hmac-sha256"

    def __init__(self, secret: str, key: str) -> None:
        super().__init__()
        self._secret = secret.encode()
        self._key = key.encode()

    def __repr__(self) -> str:
        return "SecretVerifier()"

    def _digest(self, salt: bytes) -> bytes:
        return hmac.new(self._secret, salt + b"\x00" + self._key, hashlib.sha256).digest()


class PasswordVerifier(_SaltedVerifier):
    """Salted scrypt of the password (and the client secret, if any)."""

    scheme = f"scrypt-{SCRYPT_N}-{SCRYPT_R}-{SCRYPT_P}"
    slow = True

    def __init__(self, password: str, secret: str | None, key: str) -> None:
        super().__init__()
        self._material = b"\x00".join((password.encode(), (secret or "").encode(), key.encode()))

    def __repr__(self) -> str:
        return "PasswordVerifier()"

    def _digest(self, salt: bytes) -> bytes:
        return hashlib.scrypt(
            self._material,
            salt=salt,
            n=SCRYPT_N,
            r=SCRYPT_R,
            p=SCRYPT_P,
            maxmem=SCRYPT_MAXMEM,
            dklen=32,
        )


class Identity:
    """Where an auth object's tokens live in the cache, and what binds them to it.

    ``key`` is ``None`` for an authorization code not exchanged yet: its
    subject (the user) is known only from the token.
    """

    __slots__ = ("key", "meta", "verifier")

    def __init__(
        self, key: str | None, meta: Mapping[str, str], verifier: Verifier | None = None
    ) -> None:
        self.key = key
        self.meta = meta
        self.verifier = verifier

    def __repr__(self) -> str:
        return f"Identity(key={self.key!r}, meta={self.meta!r})"

    @property
    def slow(self) -> bool:
        """Whether ``owns``/``meta_for`` may take tens of milliseconds (scrypt)."""
        return self.verifier is not None and self.verifier.slow

    @property
    def subject(self) -> str:
        """The non-secret label of the subject."""
        return self.meta.get(SUBJECT_META, "")

    def owns(self, meta: Mapping[str, str]) -> bool:
        """Whether an entry with ``meta`` belongs to this identity."""
        if meta.get(SUBJECT_META) != self.meta.get(SUBJECT_META):
            return False  # written by 0.1.0, or (after a hash collision) by someone else
        return self.verifier is None or self.verifier.matches(meta.get(VERIFIER_META))

    def meta_for(self, stored: Mapping[str, str] | None) -> dict[str, str]:
        """The meta to store, reusing ``stored``'s verifier when it is ours."""
        meta = dict(self.meta)
        if self.verifier is not None:
            previous = stored.get(VERIFIER_META) if stored is not None else None
            meta[VERIFIER_META] = self.verifier.stamp(previous)
        return meta


def _base(config: ClientConfig) -> dict[str, str]:
    scope = " ".join(sorted(set(config.scope.split()))) if config.scope else ""
    base = {
        "token_url": config.token_url,
        "client_id": config.client_id,
        "audience": config.audience,
        "scope": scope,
    }
    if config.organization:  # issue 12: another organization, another entry
        base["organization"] = config.organization
    return base


def _identity(
    base: Mapping[str, str],
    grant: str,
    kind: str,
    subject: str,
    label: str,
) -> tuple[str, dict[str, str]]:
    key = _key(*base.values(), kind, subject)
    return key, {**base, "grant": grant, SUBJECT_META: label}


def identity_for(
    config: ClientConfig, grant: Grant | None, seed_refresh_token: str | None
) -> Identity:
    """The identity of an auth object, from its configuration and grant.

    ``grant`` is ``None`` with a seed (refresh token) or for the logged-in
    session (no code); an authorization code gets ``key=None``.
    """
    # Here, not at the top: the grant dataclasses cost ~9 ms of import (python
    # -X importtime), which a cached `hoxton-auth token` (client_identity) skips.
    from ._grants import ClientCredentials, Password

    base = _base(config)
    if isinstance(grant, ClientCredentials):
        return client_identity(config)
    if isinstance(grant, Password):
        label = f"password:{grant.username}"
        # A realm names the user directory (Auth0 connection): alice of one
        # directory is not alice of another.
        user = f"{grant.realm}/{grant.username}" if grant.realm else grant.username
        key, meta = _identity(base, "password", "password", user, label)
        return Identity(key, meta, PasswordVerifier(grant.password, config.client_secret, key))
    if seed_refresh_token is not None:
        # A refresh token is a long random string: its unsalted hash reveals nothing.
        lineage = hashlib.sha256(seed_refresh_token.encode()).hexdigest()
        key, meta = _identity(base, "refresh_token", "lineage", lineage, f"lineage:{lineage[:12]}")
        return Identity(key, meta)
    if grant is None:
        return login_identity(config)
    return Identity(None, {**base, "grant": "authorization_code", SUBJECT_META: ""})


def client_identity(config: ClientConfig) -> Identity:
    """The identity of the client credentials grant: the client itself, bound by its secret."""
    key, meta = _identity(_base(config), "client_credentials", "client", "", "client")
    return Identity(key, meta, SecretVerifier(config.client_secret or "", key))


def login_identity(config: ClientConfig) -> Identity:
    """The logged-in session of (domain, client, audience) for this OS user; no scope."""
    base = {**_base(config), "scope": ""}
    key, meta = _identity(base, "login", "login", "", "login")
    return Identity(key, meta)


def session_identity(config: ClientConfig, sub: str | None) -> Identity:
    """Where the session started by an exchanged code lives: under the user's ``sub``.

    ``sub``: the user of the ID or access token (``_token.subject_of``); with
    none, the session is one of its own.
    """
    kind, subject = ("user", sub) if sub is not None else ("session", os.urandom(16).hex())
    key, meta = _identity(_base(config), "authorization_code", kind, subject, f"{kind}:{subject}")
    return Identity(key, meta)
