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
| ``login()``                   | ``login`` (no scope)     | the login key, client secret  |
| web session (``finish()``)    | ``web-session`` (no scope) | the session id, client secret |

The key is a hash of its parts JSON-encoded (issue 21: no ``realm/user``
spelling can collide with a username). A logged-in session is bound to a
*login key*: 32 random bytes in a private file of the OS user who logged in
(``_private_file.read_login_key``), whose HMAC is part of the entry's key and
keys its verifier. On a cache others reach (Redis, a shared disk) another OS
user or host computes another key: a miss, never the token, and their own
login neither replaces nor revokes this one. A web session's key and
verifier come from its random ``session_id`` the same way.

A client that authenticates with a private key (Private Key JWT) is bound
the same way, by its public key's RFC 7638 thumbprint in place of the secret
(``ClientConfig.client_credential``): another key is a miss.

A verifier is stored in the entry's meta as ``scheme$salt$digest``. An
entry whose verifier does not match ours is someone else's: a miss. No
verifier lets a secret be read back cheaply: the client secret is a
high-entropy key, so a salted HMAC keyed by it is enough; a password is not,
so it goes through a salted ``scrypt`` (about 16 MiB and some tens of
milliseconds), computed at most once per auth object and salt.

Pure functions and small value objects; ``os.urandom`` for salts and the
login key file (read when a logged-in session's key is first needed) are the
only outside inputs. On the path of a ``hoxton-auth token`` answered from the cache,
so no dataclasses (see ``_config.py``) and the grant classes load only when
an identity is made from a grant object.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from collections.abc import Callable, Mapping

from ._errors import CacheUnavailableError, ConfigError, warn_once
from ._fork import reset_after_fork
from ._private_file import login_key_path, read_login_key

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
    "USED_STATE_SUBJECT",
    "VERIFIER_META",
    "Identity",
    "PasswordVerifier",
    "SecretVerifier",
    "client_identity",
    "identity_for",
    "login_identity",
    "session_identity",
    "used_state_identity",
    "web_session_identity",
]

# In every key: entries of 0.1.0 (no subject) and of 0.2 (ambiguous keys, a
# logged-in session nobody's own: issue 21) are unreachable.
KEY_VERSION = "hoxton-auth/3"
VERIFIER_META = "verifier"
SUBJECT_META = "subject"
#: The subject label of a web login's used ``state`` (a marker, not a session).
USED_STATE_SUBJECT = "used-state"
SALT_BYTES = 16

# scrypt cost (RFC 7914): N=2**14, r=8 uses 16 MiB and ~60 ms of CPU on the
# benchmark machine, paid once per auth object and salt: on a cold cache hit, and
# when a new verifier is stamped (benchmarks/bench_identity.py measures it).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 64 * 1024 * 1024


def _key(base: Mapping[str, str], kind: str, *subject: str) -> str:
    # JSON: every part is delimited and named, so no two identities share a key.
    parts = [KEY_VERSION, sorted(base.items()), kind, list(subject)]
    text = json.dumps(parts, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class _SaltedVerifier:
    """A verifier ``scheme$salt$digest``; digests remembered per salt."""

    scheme = ""
    slow = False

    def __init__(self) -> None:
        self._digests: dict[str, str] = {}
        self._guard = threading.Lock()
        reset_after_fork(self)

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
    subject (the user) is known only from the token. A logged-in session's
    key and verifier are *resolved* when first needed (``resolve``), so that
    building an auth object reads no file.
    """

    __slots__ = ("_key", "_resolve", "_verifier", "meta")

    def __init__(
        self,
        key: str | None,
        meta: Mapping[str, str],
        verifier: Verifier | None = None,
        *,
        resolve: Callable[[], tuple[str, Verifier]] | None = None,
    ) -> None:
        self._key = key
        self.meta = meta
        self._verifier = verifier
        self._resolve = resolve

    def __repr__(self) -> str:
        return f"Identity(key={self._key!r}, meta={self.meta!r})"  # never resolves (no I/O)

    def _resolved(self) -> None:
        resolve = self._resolve
        if resolve is not None:
            # Two threads may both resolve: they read the same key file, so agree.
            self._key, self._verifier = resolve()
            self._resolve = None

    @property
    def key(self) -> str | None:
        """The cache key (a hash, no secret in it)."""
        self._resolved()
        return self._key

    @property
    def verifier(self) -> Verifier | None:
        """What binds an entry to this identity's credential, if anything."""
        self._resolved()
        return self._verifier

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
        verifier = self.verifier
        return verifier is None or verifier.matches(meta.get(VERIFIER_META))

    def meta_for(self, stored: Mapping[str, str] | None) -> dict[str, str]:
        """The meta to store, reusing ``stored``'s verifier when it is ours."""
        meta = dict(self.meta)
        verifier = self.verifier
        if verifier is not None:
            previous = stored.get(VERIFIER_META) if stored is not None else None
            meta[VERIFIER_META] = verifier.stamp(previous)
        return meta


def _base(config: ClientConfig, *, scope: bool = True) -> dict[str, str]:
    normalised = " ".join(sorted(set(config.scope.split()))) if config.scope else ""
    base = {
        "token_url": config.token_url,
        "client_id": config.client_id,
        "audience": config.audience,
        "scope": normalised if scope else "",
    }
    if config.organization:  # issue 12: another organization, another entry
        base["organization"] = config.organization
    return base


def _meta(base: Mapping[str, str], grant: str, label: str) -> dict[str, str]:
    return {**base, "grant": grant, SUBJECT_META: label}


def identity_for(
    config: ClientConfig, grant: Grant | None, seed_refresh_token: str | None
) -> Identity:
    """The identity of an auth object, from its configuration and grant.

    ``grant`` is ``None`` with a seed (refresh token) or for the logged-in
    session (no code); an authorization code gets ``key=None``.
    """
    # Here, not at the top: a cached `hoxton-auth token` (client_identity) never
    # loads the grant dataclasses (tests/test_imports.py, NOT_FOR_CLI_FAST_TOKEN).
    from ._grants import ClientCredentials, Password

    base = _base(config)
    if isinstance(grant, ClientCredentials):
        return client_identity(config)
    if isinstance(grant, Password):
        # A realm names the user directory (Auth0 connection): alice of one
        # directory is not alice of another. Two parts, never "realm/user".
        key = _key(base, "password", grant.realm or "", grant.username)
        meta = _meta(base, "password", f"password:{grant.username}")
        verifier = PasswordVerifier(grant.password, config.client_credential, key)
        return Identity(key, meta, verifier)
    if seed_refresh_token is not None:
        # A refresh token is a long random string: its unsalted hash reveals nothing.
        lineage = hashlib.sha256(seed_refresh_token.encode()).hexdigest()
        key = _key(base, "lineage", lineage)
        return Identity(key, _meta(base, "refresh_token", f"lineage:{lineage[:12]}"))
    if grant is None:
        return login_identity(config)
    return Identity(None, _meta(base, "authorization_code", ""))


def client_identity(config: ClientConfig) -> Identity:
    """The identity of the client credentials grant: the client itself, bound by its secret."""
    base = _base(config)
    key = _key(base, "client")
    return Identity(key, _meta(base, "client_credentials", "client"), _secret_verifier(config, key))


def _secret_verifier(config: ClientConfig, key: str, bound_to: str = "") -> SecretVerifier:
    """A verifier of the client's credential, and of ``bound_to`` (a login key, a session id).

    The credential is the client secret, or for Private Key JWT the public
    key's thumbprint (issue 24): another key is another verifier, a miss.
    """
    return SecretVerifier(f"{bound_to}\x00{config.client_credential or ''}", key)


# A login key for this process only, when the user's key file cannot be used.
_process_login_key: list[bytes] = []


def _login_key() -> bytes:
    path: object = "(no path)"
    try:
        key_path = path = login_key_path()
        key = read_login_key(key_path, create=True, quiet=True)  # warned below, once
    except (CacheUnavailableError, ConfigError) as exc:
        key = None
        reason = str(exc)
    else:
        reason = ""
    if key is not None:
        return key
    warn_once(
        "login key",
        str(path),
        "%s: the logged-in session is kept for this process only",
        reason or f"no login key at {path}",
    )
    if not _process_login_key:
        _process_login_key.append(os.urandom(32))
    return _process_login_key[0]


def login_identity(config: ClientConfig, login_key: bytes | None = None) -> Identity:
    """The logged-in session of (domain, client, audience) of whoever holds ``login_key``.

    No scope: any scope spelling finds it. ``login_key`` ``None``: this OS
    user's (``$HOXTON_AUTH_LOGIN_KEY``, else ``login.key`` in the user cache
    dir), read or created when the key is first needed. The key's HMAC is
    part of the cache key; the verifier binds the entry to the key and to the
    client secret (a wrong secret is a miss).
    """
    base = _base(config, scope=False)
    meta = _meta(base, "login", "login")

    def resolve() -> tuple[str, Verifier]:
        secret = login_key if login_key is not None else _login_key()
        holder = hmac.new(secret, b"hoxton-auth logged-in session", hashlib.sha256).hexdigest()
        key = _key(base, "login", holder)
        return key, _secret_verifier(config, key, secret.hex())

    if login_key is not None:
        key, verifier = resolve()
        return Identity(key, meta, verifier)
    return Identity(None, meta, resolve=resolve)


def session_identity(config: ClientConfig, sub: str | None) -> Identity:
    """Where the session started by an exchanged code lives: under the user's ``sub``.

    ``sub``: the user of the ID or access token (``_token.subject_of``); with
    none, the session is one of its own.
    """
    kind, subject = ("user", sub) if sub is not None else ("session", os.urandom(16).hex())
    base = _base(config)
    return Identity(
        _key(base, kind, subject), _meta(base, "authorization_code", f"{kind}:{subject}")
    )


def web_session_identity(config: ClientConfig, session_id: str) -> Identity:
    """Where a web back end's session lives: under its random ``session_id`` (issue 21).

    One entry per login, not per user: two browsers of one user are two
    sessions, each with its own refresh token, ended one at a time. No scope:
    ``resume`` need not repeat it. The verifier binds it to the id and the
    client secret, so a wrong secret is a miss as well as a wrong id.
    """
    base = _base(config, scope=False)
    key = _key(base, "web-session", session_id)
    meta = _meta(base, "authorization_code", "web-session")
    return Identity(key, meta, _secret_verifier(config, key, session_id))


def used_state_identity(config: ClientConfig, state: str) -> Identity:
    """The marker of a web login's ``state`` already used: a callback is finished once."""
    base = _base(config, scope=False)
    return Identity(
        _key(base, "used-state", state), _meta(base, "authorization_code", USED_STATE_SUBJECT)
    )
