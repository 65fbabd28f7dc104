"""Sealed secrets in a shared cache: AES-GCM under a 32-byte data key (issue 24).

A ``FileTokenCache`` keeps its data key in the OS keyring (macOS Keychain,
Windows Credential Locker, Secret Service: the ``keyring`` package, the
``hoxton-auth[keyring]`` extra), one key per cache file; a
``RedisTokenCache`` is given its key (a fleet's hosts share no keyring).
This module owns every sealing decision: which fields are sealed, where the
key comes from and when it is created, and what a missing key means. The
caches call ``Sealing.seal_token``/``open_token`` (file) or
``DataKey.seal``/``open`` (Redis); the shape of a sealed value in a document
is ``_cache_format.is_sealed``.

The lock, the atomic writes, the ownership checks and the single flight are
the caches' own and do not change: sealing only changes the bytes of a field.

Each sealed value is bound to its place (``context``: the entry's key and
the field's name, as AES-GCM's associated data), so a sealed refresh token
copied into another entry, or into another field, does not open.

``keyring`` and ``cryptography`` load only when a value is sealed or opened,
never for a cached ``hoxton-auth token`` reading a plain access token
(tests/test_sealing.py, test_cached_cli_token_stays_on_its_fast_path_with_a_sealed_refresh_token),
nor with sealing off (test_off_never_loads_the_keyring).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ._cache_format import is_sealed
from ._config import sealing_settings
from ._errors import CacheUnavailableError, ConfigError, MaskedBytes, warn_once
from ._fork import reset_after_fork

__all__ = [
    "KEYRING_SERVICE",
    "SEALING_MODES",
    "DataKey",
    "KeyUnavailable",
    "NoKeyringError",
    "SealedValueError",
    "Sealing",
    "holds_sealed",
    "load_key",
    "without_sealed_values",
]

#: ``sealing=``: seal when a keyring works (else plain text, with one warning),
#: seal or fail closed, never seal.
SEALING_MODES = ("auto", "required", "off")
#: The keyring service under which data keys are kept.
KEYRING_SERVICE = "hoxton-auth"
#: Seconds before a keyring that failed is asked again.
KEYRING_RETRY_AFTER = 300.0
#: Seconds a keyring has to answer (a prompt to allow access included).
KEYRING_TIMEOUT = 20.0
_KEY_BYTES = 32
_NONCE_BYTES = 12  # AES-GCM's standard nonce; random per value (2**-32 collisions after 2**32)
#: Token fields sealed always, and with ``seal_access_tokens``.
_REFRESH_FIELDS = ("refresh_token",)
_ACCESS_FIELDS = ("access_token", "id_token")


class SealedValueError(ValueError):
    """A sealed value does not open: another key, or damage. Its text holds no secret."""


class NoKeyringError(SealedValueError):
    """A sealed value is not opened because no keyring works in this process: its key
    may well exist (a desktop session's keyring, out of reach of cron or SSH), so the
    entry is not known to be lost, and ``FileTokenCache.load`` refuses rather than miss."""


class KeyUnavailable(Exception):
    """No data key: the keyring is missing, refuses, or does not keep what it is given."""


class DataKey:
    """A 32-byte AES-GCM key and its public id (a hash: it says which key, not the key)."""

    __slots__ = ("_aead", "key_id")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != _KEY_BYTES:
            raise ConfigError("an encryption key is 32 bytes (44 characters of base64)")
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise ConfigError(
                "sealing needs the cryptography package: pip install 'hoxton-auth[keyring]'"
            ) from None
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"hoxton-auth data key\x00" + key).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"DataKey(key_id={self.key_id!r})"

    def seal(self, text: str, context: str) -> dict[str, str]:
        """``text`` sealed for ``context`` (where it is kept)."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, text.encode(), context.encode())
        return {"sealed": base64.b64encode(nonce + sealed).decode(), "key": self.key_id}

    def open(self, value: Mapping[str, Any], context: str) -> str:
        """The text sealed in ``value`` for ``context``.

        Raises:
            SealedValueError: Sealed with another key, for another place, or damaged.
        """
        from cryptography.exceptions import InvalidTag

        if value.get("key") != self.key_id:
            raise SealedValueError(
                f"it is sealed with another key (id {str(value.get('key'))[:16]!r}; "
                f"this key's id is {self.key_id!r})"
            )
        try:
            raw = base64.b64decode(str(value.get("sealed")), validate=True)
            nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
            return self._aead.decrypt(nonce, sealed, context.encode()).decode()
        except (binascii.Error, InvalidTag, ValueError):
            raise SealedValueError("its sealed value does not open: damaged, or moved") from None


def load_key(key: bytes | str | None, key_file: str | os.PathLike[str] | None) -> DataKey | None:
    """The ``DataKey`` of ``encryption_key=`` (32 bytes, or their base64) or
    ``encryption_key_file=`` (a file holding the base64), or ``None``.

    Raises:
        ConfigError: Both given, a file that cannot be read, or not a 32-byte key.
    """
    # Rebound at once: a frame's locals (in a traceback) then show b'***', never the key.
    key = None if key is None else MaskedBytes(key.encode() if isinstance(key, str) else key)
    if key is not None and key_file is not None:
        raise ConfigError("give encryption_key or encryption_key_file, not both")
    if key_file is not None:
        try:
            with open(key_file, "rb") as file:
                key = MaskedBytes(file.read(1024).strip())
        except FileNotFoundError:  # worded as _config's path checks (verify=, cert=)
            where = os.fspath(key_file)
            raise ConfigError(f"encryption_key_file={where!r}: no such file or directory") from None
        except OSError as exc:
            where = os.fspath(key_file)
            raise ConfigError(f"encryption_key_file={where!r}: {exc.strerror}") from None
    if key is None:
        return None
    if len(key) != _KEY_BYTES:
        try:
            key = MaskedBytes(base64.b64decode(key, validate=True))
        except (binascii.Error, ValueError):
            raise ConfigError(
                "an encryption key is 32 bytes, or their base64 (make one with "
                "`openssl rand -base64 32`)"
            ) from None
    return DataKey(key)


# -- the keyring ------------------------------------------------------------------------


def _keyring() -> Any:
    """The ``keyring`` module, if a backend that keeps secrets is in use.

    keyring falls back to backends that do not (its ``fail`` and ``null``
    backends) or that keep them in plain text (keyrings.alt's, priority
    below 1): those count as no keyring, unless ``PYTHON_KEYRING_BACKEND``
    names one on purpose.

    Raises:
        KeyUnavailable: Not installed, or no such backend.
    """
    try:
        import keyring
    except ImportError:
        raise KeyUnavailable(
            "the keyring package is not installed (pip install 'hoxton-auth[keyring]')"
        ) from None
    backend = keyring.get_keyring()
    name = f"{type(backend).__module__}.{type(backend).__qualname__}"
    if name == "keyring.backends.chainer.ChainerBackend":
        # keyring chains whenever two backends are viable (priority 10 then, even for
        # two of keyrings.alt's files) and writes to the first: that one decides.
        chained = list(getattr(backend, "backends", ()))
        if chained:
            backend = chained[0]
            name = f"{name} of {type(backend).__module__}.{type(backend).__qualname__}"
    chosen = os.environ.get("PYTHON_KEYRING_BACKEND")
    if name.startswith(("keyring.backends.fail.", "keyring.backends.null.")):
        raise KeyUnavailable(f"no OS keyring works here (keyring found only {name})")
    if not chosen and getattr(backend, "priority", 0) < 1:
        raise KeyUnavailable(
            f"keyring's backend {name} is not an OS keyring (it may keep secrets in plain "
            "text); set PYTHON_KEYRING_BACKEND to use it anyway"
        )
    return keyring


def _keyring_call(action: str, call: Callable[[], Any]) -> Any:
    """``call()``, in a thread given ``KEYRING_TIMEOUT`` seconds: the caller holds the
    cache's lock, and a keyring that never answers (a Secret Service waiting for
    an unlock prompt nobody sees) would otherwise hold every process of the user.

    Raises:
        KeyUnavailable: The call failed, or did not answer in time.
    """
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        # Backends raise what their platform raises (D-Bus, Keychain, Windows
        # errors): every one of them means "no key from here", said with its type.
        try:
            outcome.append((True, call()))
        except Exception as exc:
            outcome.append((False, exc))

    worker = threading.Thread(target=run, name="hoxton-auth keyring", daemon=True)
    try:
        worker.start()
    except RuntimeError:  # at interpreter exit no thread starts (3.12+): ask directly
        run()
    else:
        worker.join(KEYRING_TIMEOUT)
    if not outcome:
        raise KeyUnavailable(
            f"the keyring did not answer within {KEYRING_TIMEOUT:g}s when asked to {action} "
            "(is it locked, waiting for a password?)"
        )
    answered, value = outcome[0]
    if not answered:
        raise KeyUnavailable(f"the keyring failed to {action}: {type(value).__name__}")
    return value


def keyring_key(name: str, *, create: bool) -> DataKey | None:
    """The data key kept in the keyring under ``name``; made and kept there if
    absent and ``create`` (the caller holds the cache's lock, so one process
    makes it); else ``None`` when absent.

    Raises:
        KeyUnavailable: No keyring works, or it does not keep the new key.
    """
    if not _installed("cryptography"):  # first: no key is made that could not be used
        raise KeyUnavailable(
            "sealing needs the cryptography package (pip install 'hoxton-auth[keyring]')"
        )
    keyring = _keyring()
    stored = _keyring_call("read the key", lambda: keyring.get_password(KEYRING_SERVICE, name))
    if stored is None:
        if not create:
            return None
        made = base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()
        _keyring_call("keep a new key", lambda: keyring.set_password(KEYRING_SERVICE, name, made))
        stored = _keyring_call("read the key", lambda: keyring.get_password(KEYRING_SERVICE, name))
        kept, made = stored == made, ""
        if not kept:
            stored = None
            raise KeyUnavailable("the keyring does not keep what it is given")
    try:
        return load_key(stored, None)
    except ConfigError:
        stored = None
        raise KeyUnavailable(
            f"the keyring's entry {KEYRING_SERVICE!r}/{name!r} is not a 32-byte key "
            "(delete it, then log in again)"
        ) from None


# -- what a file cache seals ------------------------------------------------------------


class Sealing:
    """What one cache seals and with which key; the key is found once, on first need.

    Args:
        where: The cache file's path: the keyring entry's name, and for messages.
        mode: One of ``SEALING_MODES``; ``None``: ``$HOXTON_AUTH_SEALING``, else
            ``"auto"`` when the keyring extra is installed, else ``"off"``.
        seal_access_tokens: Seal the access and ID tokens too (a cached
            ``hoxton-auth token`` then runs in full); ``None``:
            ``$HOXTON_AUTH_SEAL_ACCESS_TOKENS``.

    Raises:
        ConfigError: An unknown mode.
    """

    def __init__(self, where: str, mode: str | None, seal_access_tokens: bool | None) -> None:
        configured_mode, configured_access = sealing_settings()
        chosen = mode if mode is not None else configured_mode
        if chosen is None:
            chosen = "auto" if _keyring_installed() else "off"
        if chosen not in SEALING_MODES:
            raise ConfigError(f"sealing must be one of {', '.join(SEALING_MODES)}, got {chosen!r}")
        self.mode = chosen
        self.seal_access_tokens = (
            configured_access if seal_access_tokens is None else bool(seal_access_tokens)
        )
        self.where = where
        self._name = f"data key of {where}"
        self._key: DataKey | None = None
        self._unavailable: str | None = None  # why no key (asked again after a while)
        self._ask_again_at = 0.0  # monotonic
        self._guard = threading.Lock()
        reset_after_fork(self)

    def _after_fork(self) -> None:
        # Held by another thread of the parent at fork, it would never open here.
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"Sealing(mode={self.mode!r}, seal_access_tokens={self.seal_access_tokens!r})"

    @property
    def fields(self) -> tuple[str, ...]:
        """The token fields this cache seals."""
        return _REFRESH_FIELDS + (_ACCESS_FIELDS if self.seal_access_tokens else ())

    def describe(self) -> str:
        """How a new entry is stored, for ``hoxton-auth status`` (may look for the key)."""
        if self.mode == "off":
            return "plain text in a 0600 file (sealing is off)"
        key = self._find_key(create=False)
        sealed = "refresh, access and ID tokens" if self.seal_access_tokens else "refresh tokens"
        if key is not None:
            return f"{sealed} sealed with a key in the OS keyring (key id {key.key_id})"
        if self._unavailable is None:
            return f"{sealed} sealed with the OS keyring (no key yet: made at the next write)"
        return f"plain text in a 0600 file: {self._unavailable}"

    def key_for_writing(self) -> DataKey | None:
        """The key to seal new entries with, made if absent; ``None`` for plain text.

        Call while holding the cache's lock, before any token request: a rotated
        refresh token that could not be stored as asked is then never fetched.

        Raises:
            CacheUnavailableError: ``required`` and no keyring works.
        """
        if self.mode == "off":
            return None
        key = self._find_key(create=True)
        if key is not None:
            return key
        if self.mode == "required":
            raise CacheUnavailableError(
                f"token cache {self.where}: sealing is required and {self._unavailable}; "
                "nothing was written (set HOXTON_AUTH_SEALING=auto to allow plain text)"
            )
        warn_once(
            "not sealed",
            self.where,
            "token cache %s keeps refresh tokens in plain text (a 0600 file): %s; "
            "set HOXTON_AUTH_SEALING=off to say that is intended",
            self.where,
            self._unavailable,
        )
        return None

    def _find_key(self, *, create: bool) -> DataKey | None:
        with self._guard:
            if self._key is not None:
                return self._key
            # A keyring that failed is asked again after a while (a Secret Service
            # unlocked later, a D-Bus session that came up), not at every call.
            if self._unavailable is not None and time.monotonic() < self._ask_again_at:
                return None
            try:
                self._key = keyring_key(self._name, create=create)
                self._unavailable = None
            except KeyUnavailable as exc:
                self._unavailable = str(exc)
                self._ask_again_at = time.monotonic() + KEYRING_RETRY_AFTER
            return self._key

    def seal_token(self, entry_key: str, token: dict[str, Any]) -> dict[str, Any]:
        """``token`` (``Token.to_dict()``) with this cache's fields sealed, when it has any.

        Raises:
            CacheUnavailableError: ``required`` and no keyring works.
        """
        names = [name for name in self.fields if isinstance(token.get(name), str) and token[name]]
        key = self.key_for_writing() if names else None
        if key is None:
            return token
        return {**token, **{name: key.seal(token[name], f"{entry_key} {name}") for name in names}}

    def open_token(self, entry_key: str, token: Any) -> Any:
        """``token`` as ``Token.from_dict`` reads it: its sealed fields opened.

        Raises:
            NoKeyringError: It holds sealed fields and no keyring works here.
            SealedValueError: A field does not open (the message says why; the
                entry is then a miss: log in again).
        """
        if not holds_sealed(token):
            return token
        key = self._find_key(create=False)
        if key is not None and any(
            is_sealed(v) and v.get("key") != key.key_id for v in token.values()
        ):
            with self._guard:  # another process may have made a new key since: look again
                self._key = None
            key = self._find_key(create=False)
        if key is None and self._unavailable is not None:
            raise NoKeyringError(f"it is sealed and {self._unavailable}")
        if key is None:
            raise SealedValueError("it is sealed and the keyring holds no key for this cache")
        opened = dict(token)
        for name, value in token.items():
            if is_sealed(value):
                opened[name] = key.open(value, f"{entry_key} {name}")
        return opened


def without_sealed_values(token: Any) -> Any:
    """``token`` with each sealed field replaced by a stand-in that ``Token.from_dict``
    accepts: for decisions on times and presence only (pruning, which entry is newer),
    which need no key."""
    if not holds_sealed(token):
        return token
    return {name: "sealed" if is_sealed(value) else value for name, value in token.items()}


def holds_sealed(token: Any) -> bool:
    """Whether a cached token's fields hold a sealed value. A plain loop: it runs for
    every entry read, and an entry without one costs this one call
    (``benchmarks/bench_401_trace.py`` counts them)."""
    if isinstance(token, dict):
        for value in token.values():
            if isinstance(value, dict) and is_sealed(value):
                return True
    return False


_extra_installed: bool | None = None  # found once per process: installs do not change


def _keyring_installed() -> bool:
    """Whether the ``hoxton-auth[keyring]`` extra is: keyring alone (which many tools
    bring) cannot seal. Looked up once (a search of ``sys.path``), not per cache: a web
    back end builds an auth object, and with it a cache, per request."""
    global _extra_installed
    if _extra_installed is None:
        _extra_installed = _installed("keyring") and _installed("cryptography")
    return _extra_installed


def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None
    import importlib.util  # here: only a cache that decides its default needs it

    return importlib.util.find_spec(module) is not None
