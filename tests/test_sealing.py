"""Issue 24, part 1: sealed refresh tokens (a data key in the OS keyring; a given key
for Redis).

Real parts: the embedded Auth0-compatible server, real cache files, a real
file-backed keyring (keyrings.alt's, private to each test: the ``keyring_home``
fixture, which also makes sealing ``required``), real Redis, the real CLI in a
subprocess. The machine's default, no OS keyring, is the keyring package's own
choice when nothing is configured (keyrings.alt's plain-text backend, which
does not count as one).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends.fail import Keyring as FailKeyring

from hoxton_auth import (
    CacheUnavailableError,
    ConfigError,
    FileTokenCache,
    HoxtonAuth,
    HoxtonAuthWarning,
    NotLoggedInError,
    RedisTokenCache,
)
from hoxton_auth.testing import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    PUBLIC_CLIENT_ID,
    AuthServer,
)


@pytest.fixture
def server(hoxton_auth_server: AuthServer) -> AuthServer:
    return hoxton_auth_server


def refreshing(server: AuthServer, cache: Any, refresh_token: str | None = None) -> HoxtonAuth:
    """A refresh-token session (the grant whose refresh token the cache keeps)."""
    auth: HoxtonAuth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        refresh_token=refresh_token or server.mint_refresh_token(),
        domain=server.domain,
        cache=cache,
    )
    return auth


def raw_entries(path: Path) -> dict[str, Any]:
    entries: dict[str, Any] = json.loads(path.read_text())["entries"]
    return entries


def sealed_field(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"sealed", "key"}


@contextlib.contextmanager
def no_keyring_here() -> Iterator[None]:
    """keyring as in a process that reaches no OS keyring (a container, CI, cron, SSH)."""
    previous = keyring.get_keyring()
    keyring.set_keyring(FailKeyring())  # type: ignore[no-untyped-call]  # keyring: untyped
    try:
        yield
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``no_keyring_here`` for a whole test, with no backend named in the environment."""
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    with no_keyring_here():
        yield


def everything_shown(error: BaseException) -> list[str]:
    """An error's text and repr, and the repr of every local of its traceback's frames
    (what an error tracker shows), except this test file's own (they hold the input)."""
    shown = [str(error), repr(error)]
    for frame, _ in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_filename != __file__:
            shown.extend(repr(value) for value in list(frame.f_locals.values()))
    return shown


# -- a file cache with a keyring ----------------------------------------------------------


def test_the_refresh_token_is_sealed_and_the_session_goes_on_in_another_process(
    server: AuthServer, isolated_cache: Path, keyring_home: Path
) -> None:
    seed = server.mint_refresh_token()
    auth = refreshing(server, FileTokenCache(isolated_cache), seed)
    access = auth.get_token()

    (entry,) = raw_entries(isolated_cache).values()
    assert sealed_field(entry["token"]["refresh_token"])
    assert entry["token"]["access_token"] == access  # only the refresh token, by default
    text = isolated_cache.read_text()
    assert seed not in text
    # The key is in the keyring (the file-backed one), not in the cache's directory.
    assert list(keyring_home.rglob("*.cfg"))
    assert not any(p.name.endswith(".cfg") for p in isolated_cache.parent.iterdir())

    # Another process (a fresh interpreter: its own keyring lookup) renews with it.
    child = subprocess.run(
        [sys.executable, "-c", RENEW_IN_CHILD, server.domain, seed, str(isolated_cache)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "renewed"
    assert server.count("refresh_token") == 2  # the seed, then the rotated one
    assert server.reuse_detected == 0
    (entry,) = raw_entries(isolated_cache).values()
    assert sealed_field(entry["token"]["refresh_token"])


RENEW_IN_CHILD = """
import dataclasses, sys, time
T = time.time
from hoxton_auth import CacheEntry, FileTokenCache, HoxtonAuth
from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
domain, seed, path = sys.argv[1:]
cache = FileTokenCache(path)
((key, entry),) = cache.entries().items()
assert entry.token.refresh_token and entry.token.refresh_token != seed  # opened: the rotated one
expired = dataclasses.replace(entry.token, expires_at=T() - 1)
with cache.lock(key, 10):
    cache.store(key, CacheEntry(expired, entry.meta))
auth = HoxtonAuth(
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, refresh_token=seed, domain=domain, cache=cache
)
auth.get_token()
print("renewed")
"""


def test_access_tokens_sealed_on_request(
    server: AuthServer, isolated_cache: Path, keyring_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOXTON_AUTH_SEAL_ACCESS_TOKENS", "1")
    seed = server.mint_refresh_token()
    access = refreshing(server, FileTokenCache(isolated_cache), seed).get_token()

    (entry,) = raw_entries(isolated_cache).values()
    assert all(sealed_field(entry["token"][name]) for name in ("access_token", "refresh_token"))
    assert access not in isolated_cache.read_text()
    again = refreshing(server, FileTokenCache(isolated_cache), seed)
    assert again.get_token() == access  # opened from the file: no new request
    assert server.count() == 1


def test_plain_entries_are_read_as_before_and_sealed_on_their_next_write(
    server: AuthServer, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = server.mint_refresh_token()
    first = refreshing(server, FileTokenCache(isolated_cache, sealing="off"), seed).get_token()
    (entry,) = raw_entries(isolated_cache).values()
    assert isinstance(entry["token"]["refresh_token"], str)

    # Sealing turned on: the plain entry is served as it is...
    import keyring as keyring_module
    from keyrings.alt.file import PlaintextKeyring

    monkeypatch.setenv("XDG_DATA_HOME", str(isolated_cache.parent.parent / "keyring"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    previous = keyring_module.get_keyring()
    keyring_module.set_keyring(PlaintextKeyring())
    try:
        cache = FileTokenCache(isolated_cache, sealing="required")
        auth = refreshing(server, cache, seed)
        assert auth.get_token() == first
        assert server.count() == 1
        # ...and sealed when it is next written (a renewal).
        auth.invalidate()
        auth.get_token()
    finally:
        keyring_module.set_keyring(previous)
    assert server.count("refresh_token") == 2
    assert server.reuse_detected == 0
    (entry,) = raw_entries(isolated_cache).values()
    assert sealed_field(entry["token"]["refresh_token"])


def test_a_sealed_entry_whose_key_is_gone_is_a_miss_with_one_warning(
    server: AuthServer, isolated_cache: Path, keyring_home: Path
) -> None:
    refreshing(server, FileTokenCache(isolated_cache)).get_token()
    keyring.delete_password("hoxton-auth", f"data key of {isolated_cache}")

    with pytest.warns(HoxtonAuthWarning, match="cannot be read.*log in again") as caught:
        entries = FileTokenCache(isolated_cache).entries()
    assert entries == {}
    assert len(caught) == 1
    # A new session starts, sealed with a new key; the old entry stays unread (it
    # is pruned in time), and costs the new one nothing.
    refreshing(server, FileTokenCache(isolated_cache)).get_token()
    with pytest.warns(HoxtonAuthWarning, match="sealed with another key"):
        assert len(FileTokenCache(isolated_cache).entries()) == 1
    assert len(raw_entries(isolated_cache)) == 2


def test_a_cache_file_read_with_the_wrong_key_is_a_miss_and_loses_nothing(
    server: AuthServer, isolated_cache: Path, keyring_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = server.mint_refresh_token()
    refreshing(server, FileTokenCache(isolated_cache), seed).get_token()
    before = isolated_cache.read_bytes()
    # Another user's keyring (or a restored backup of another machine's): another key.
    monkeypatch.setenv("XDG_DATA_HOME", str(keyring_home.parent / "another-keyring"))
    from keyrings.alt.file import PlaintextKeyring

    keyring.set_keyring(PlaintextKeyring())
    keyring.set_password(
        "hoxton-auth", f"data key of {isolated_cache}", base64.b64encode(b"k" * 32).decode()
    )

    with pytest.warns(HoxtonAuthWarning, match="sealed with another key"):
        assert FileTokenCache(isolated_cache).entries() == {}
    said = FileTokenCache(isolated_cache).describe_storage()  # what `status` prints
    assert "1 entry cannot be opened here (it is sealed with another key" in said
    with pytest.raises(NotLoggedInError):
        logged_in_session(server, isolated_cache).get_token()
    assert isolated_cache.read_bytes() == before  # nothing lost: the right key still opens it


def logged_in_session(server: AuthServer, path: Path) -> HoxtonAuth:
    """The logged-in session of the public client (there is none: a clear miss)."""
    from hoxton_auth import AuthorizationCodeAuth

    auth: HoxtonAuth = AuthorizationCodeAuth(
        PUBLIC_CLIENT_ID, domain=server.domain, cache=FileTokenCache(path)
    )
    return auth


def test_a_sealed_value_moved_to_another_place_does_not_open(
    server: AuthServer, isolated_cache: Path, keyring_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOXTON_AUTH_SEAL_ACCESS_TOKENS", "1")
    auth = refreshing(server, FileTokenCache(isolated_cache))
    auth.get_token()
    document = json.loads(isolated_cache.read_text())
    (entry,) = document["entries"].values()
    # Someone who can write the file swaps two sealed values (same key, other place).
    token = entry["token"]
    token["access_token"], token["refresh_token"] = token["refresh_token"], token["access_token"]
    isolated_cache.write_text(json.dumps(document))

    with pytest.warns(HoxtonAuthWarning, match="does not open"):
        assert FileTokenCache(isolated_cache).entries() == {}


# -- no keyring: auto, required, off ------------------------------------------------------


def test_auto_without_a_keyring_writes_plain_text_with_one_warning(
    server: AuthServer, isolated_cache: Path, no_keyring: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOXTON_AUTH_SEALING", "auto")
    cache = FileTokenCache(isolated_cache)
    auth = refreshing(server, cache)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        auth.get_token()
        auth.invalidate()
        auth.get_token()  # a second write: no second warning
    (warning,) = caught
    assert warning.category is HoxtonAuthWarning
    assert "plain text" in str(warning.message)
    assert "no OS keyring" in str(warning.message)
    (entry,) = raw_entries(isolated_cache).values()
    assert isinstance(entry["token"]["refresh_token"], str)
    assert "plain text" in cache.describe_storage()


def test_keyrings_plain_text_backend_is_not_an_os_keyring(
    server: AuthServer, isolated_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This machine's default: keyring picks keyrings.alt's file backend (priority 0.5).
    from keyrings.alt.file import PlaintextKeyring

    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    previous = keyring.get_keyring()
    keyring.set_keyring(PlaintextKeyring())
    try:
        cache = FileTokenCache(isolated_cache, sealing="required")
        with (
            pytest.raises(CacheUnavailableError, match="not an OS keyring"),
            cache.lock("0" * 32, 5),
        ):
            pass
    finally:
        keyring.set_keyring(previous)
    assert not (tmp_path / "data").exists()  # no key written into a plain-text keyring


def test_required_without_a_keyring_fails_closed_before_any_token_request(
    server: AuthServer, isolated_cache: Path, no_keyring: None
) -> None:
    cache = FileTokenCache(isolated_cache, sealing="required")
    seed = server.mint_refresh_token()
    with (
        pytest.raises(CacheUnavailableError, match="sealing is required") as caught,
        cache.lock("0" * 32, 5),
    ):
        pass
    assert seed not in str(caught.value)
    # Through a session: refused before the refresh token is sent (it would rotate,
    # and the rotated one could only be kept in plain text or lost).
    auth = refreshing(server, cache, seed)
    with pytest.raises(CacheUnavailableError, match="sealing is required"):
        auth.get_token()
    assert server.count() == 0
    assert not isolated_cache.exists()


def test_off_never_loads_the_keyring(server: AuthServer, isolated_cache: Path) -> None:
    script = (
        "import sys\n"
        "from hoxton_auth import FileTokenCache, HoxtonAuth\n"
        "from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET\n"
        "auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, refresh_token=sys.argv[2],"
        " domain=sys.argv[1], cache=FileTokenCache(sys.argv[3]))\n"
        "auth.get_token()\n"
        "print(sorted(m for m in ('keyring', 'keyrings') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            server.domain,
            server.mint_refresh_token(),
            str(isolated_cache),
        ],
        capture_output=True,
        text=True,
        env={**env, "HOXTON_AUTH_SEALING": "off"},
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "[]"


# -- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "words"),
    [
        ({"HOXTON_AUTH_SEALING": "always"}, "sealing must be one of auto, required, off"),
        ({"HOXTON_AUTH_SEAL_ACCESS_TOKENS": "please"}, "HOXTON_AUTH_SEAL_ACCESS_TOKENS must be"),
    ],
)
def test_a_bad_sealing_setting_is_named(
    isolated_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    words: str,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=words):
        FileTokenCache(isolated_cache)


# -- the CLI ------------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None, importtime: bool = False) -> Any:
    full = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "TERM"):
        full.pop(name, None)
    flags = ["-X", "importtime"] if importtime else []
    return subprocess.run(
        [sys.executable, *flags, "-m", "hoxton_auth", *args],
        capture_output=True,
        text=True,
        env={**full, **(env or {})},
        timeout=120,
        check=False,
    )


def imported(stderr: str) -> set[str]:
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }


def test_cached_cli_token_stays_on_its_fast_path_with_a_sealed_refresh_token(
    server: AuthServer,
    isolated_cache: Path,
    keyring_home: Path,
    fake_browser_command: Path,
) -> None:
    public = {
        "HOXTON_AUTH_DOMAIN": server.domain,
        "HOXTON_CLIENT_ID": PUBLIC_CLIENT_ID,
        "BROWSER": str(fake_browser_command),
        "FAKE_BROWSER_MODE": "follow",
        "HOXTON_LOGIN_PORT": "0",
    }
    login = cli("login", env=public)
    assert login.returncode == 0, login.stderr
    (entry,) = raw_entries(isolated_cache).values()
    assert sealed_field(entry["token"]["refresh_token"])
    requests_so_far = server.count()

    token = cli("token", env=public, importtime=True)

    assert token.returncode == 0, token.stderr
    assert token.stdout.strip() == entry["token"]["access_token"]
    assert server.count() == requests_so_far  # from the cache
    modules = imported(token.stderr)
    assert "hoxton_auth._cli" in modules
    assert {"keyring", "cryptography", "argparse", "hoxton_auth._sealing"} & modules == set()

    status = cli("status", env=public)
    assert status.returncode == 0, status.stderr
    assert "refresh tokens sealed with a key in the OS keyring" in status.stdout
    assert "1 of the 1 refresh token(s) in the file are sealed" in status.stdout


def test_cli_with_sealed_access_tokens_answers_in_full(
    server: AuthServer,
    isolated_cache: Path,
    keyring_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOXTON_AUTH_SEAL_ACCESS_TOKENS", "1")
    m2m = {
        "HOXTON_AUTH_DOMAIN": server.domain,
        "HOXTON_CLIENT_ID": DEFAULT_CLIENT_ID,
        "HOXTON_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
    }
    first = cli("token", env=m2m)
    second = cli("token", env=m2m, importtime=True)

    assert first.returncode == 0, first.stderr
    assert second.stdout == first.stdout
    assert server.count() == 1
    assert first.stdout.strip() not in isolated_cache.read_text()
    assert "keyring" in imported(second.stderr)  # the full path opened it


# -- Redis: a fleet's key ----------------------------------------------------------------


@pytest.mark.redis
def test_redis_values_are_sealed_with_the_fleets_key(
    server: AuthServer, redis_url: str, tmp_path: Path
) -> None:
    import redis

    prefix = f"sealing-{os.getpid()}-{tmp_path.name}:"
    key = base64.b64encode(os.urandom(32)).decode()
    key_file = tmp_path / "fleet.key"
    key_file.write_text(key + "\n")
    sealed = RedisTokenCache(redis_url, prefix=prefix, encryption_key_file=key_file)
    seed = server.mint_refresh_token()
    access = refreshing(server, sealed, seed).get_token()

    client = redis.Redis.from_url(redis_url)
    (name,) = client.keys(prefix + "token:*")
    stored = client.get(name)
    assert stored is not None
    assert access.encode() not in stored
    assert b"meta" not in stored
    assert "sealed with the fleet's encryption key" in sealed.describe_storage()
    # Another host with the same key (given as text) reads it.
    same = RedisTokenCache(redis_url, prefix=prefix, encryption_key=key)
    assert refreshing(server, same, seed).get_token() == access
    assert server.count() == 1
    # Without the key, or with another one: a miss with one warning, never a crash.
    with pytest.warns(HoxtonAuthWarning, match="no encryption key"):
        assert RedisTokenCache(redis_url, prefix=prefix).entries() == {}
    other = RedisTokenCache(redis_url, prefix=prefix, encryption_key=os.urandom(32))
    with pytest.warns(HoxtonAuthWarning, match="sealed with another key"):
        assert other.entries() == {}
    client.delete(*client.keys(prefix + "*"))


@pytest.mark.redis
def test_redis_plain_values_are_read_then_sealed_on_their_next_write(
    server: AuthServer, redis_url: str, tmp_path: Path
) -> None:
    import redis

    prefix = f"sealing-plain-{os.getpid()}-{tmp_path.name}:"
    seed = server.mint_refresh_token()
    access = refreshing(server, RedisTokenCache(redis_url, prefix=prefix), seed).get_token()
    sealed = RedisTokenCache(redis_url, prefix=prefix, encryption_key=os.urandom(32))
    auth = refreshing(server, sealed, seed)
    assert auth.get_token() == access
    auth.invalidate()
    auth.get_token()
    client = redis.Redis.from_url(redis_url)
    (name,) = client.keys(prefix + "token:*")
    stored = json.loads(client.get(name) or b"{}")
    assert set(stored) == {"version", "sealed", "key"}
    assert server.reuse_detected == 0
    client.delete(*client.keys(prefix + "*"))


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"encryption_key": "too short"}, "32 bytes"),
        ({"encryption_key": b"x" * 31}, "32 bytes"),
        ({"encryption_key_file": "/nonexistent/fleet.key"}, "no such file"),
        ({"encryption_key": b"x" * 32, "encryption_key_file": "k"}, "not both"),
    ],
)
def test_a_bad_redis_key_is_named_and_never_shown(
    redis_url: str, arguments: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        RedisTokenCache(redis_url, **arguments)
    for text in everything_shown(caught.value):
        assert "too short" not in text
        assert "xxxxxxxx" not in text


def test_status_survives_a_damaged_entry(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolated_cache.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    document = {"format": "hoxton-auth token cache", "version": 1, "entries": {"0" * 32: []}}
    isolated_cache.write_text(json.dumps(document))
    isolated_cache.chmod(0o600)
    with pytest.warns(HoxtonAuthWarning, match="skipped"):
        said = FileTokenCache(isolated_cache).describe_storage()
    assert "0 of the 0 refresh token(s)" in said
    status = cli("status")
    assert status.returncode == 0, status.stderr
    assert "Sealing: plain text" in status.stdout


# -- found by an attacker's review ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "more", "error"),
    [
        ("redis://127.0.0.1:1/0", {"lock_timeout": 0}, ConfigError),
        ("redis://127.0.0.1:1/0", {"socket_timeout": -1}, ConfigError),
        ("nonsense://127.0.0.1/0", {}, ValueError),  # redis-py's own check of the URL
    ],
)
@pytest.mark.parametrize("given", ["text", "bytes"])
def test_redis_key_never_in_traceback_locals_when_another_argument_fails(
    url: str, more: dict[str, Any], error: type[Exception], given: str
) -> None:
    raw = b"S" * 32
    key: bytes | str = base64.b64encode(raw).decode() if given == "text" else raw
    with pytest.raises(error) as caught:
        RedisTokenCache(url, encryption_key=key, **more)
    for text in everything_shown(caught.value):
        assert "SSSS" not in text
        assert base64.b64encode(raw).decode()[:16] not in text


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_a_process_without_the_keyring_never_refreshes_a_sealed_lineage_with_its_seed(
    server: AuthServer,
    isolated_cache: Path,
    keyring_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    seed = server.mint_refresh_token()
    desktop = refreshing(server, FileTokenCache(isolated_cache), seed)
    desktop.get_token()  # the rotated refresh token is sealed in the file
    desktop.invalidate()
    before = isolated_cache.read_bytes()
    # A cron job or an SSH session of the same user: no keyring reachable, sealing auto.
    monkeypatch.setenv("HOXTON_AUTH_SEALING", mode)
    with no_keyring_here():
        cron = refreshing(server, FileTokenCache(isolated_cache), seed)
        with pytest.raises(CacheUnavailableError, match="sealed and no OS keyring works"):
            cron.get_token()
    # Before: the entry was a miss, the seed (superseded) was sent, Auth0 revoked the
    # whole login, and the entry the desktop could still open was deleted.
    assert server.reuse_detected == 0
    assert server.count("refresh_token") == 1
    assert isolated_cache.read_bytes() == before
    monkeypatch.setenv("HOXTON_AUTH_SEALING", "required")
    assert refreshing(server, FileTokenCache(isolated_cache), seed).get_token()
    assert server.reuse_detected == 0


def test_two_spellings_of_one_cache_file_share_one_data_key(
    server: AuthServer, isolated_cache: Path, keyring_home: Path
) -> None:
    # One file, one lock, named two ways (a `..`, or a symlinked directory): one key.
    other_dir = isolated_cache.parent.parent / "elsewhere"
    other_dir.mkdir()
    (isolated_cache.parent.parent / "link").symlink_to(isolated_cache.parent)
    spellings = [
        other_dir / ".." / isolated_cache.parent.name / isolated_cache.name,
        isolated_cache.parent.parent / "link" / isolated_cache.name,
    ]
    seed = server.mint_refresh_token()
    first = refreshing(server, FileTokenCache(isolated_cache), seed)
    first.get_token()
    for spelling in spellings:
        first.invalidate()
        assert refreshing(server, FileTokenCache(spelling), seed).get_token()
    assert server.reuse_detected == 0
    assert server.count("refresh_token") == 3
    (entry,) = json.loads(isolated_cache.read_text())["entries"].values()
    assert isinstance(entry["token"]["refresh_token"], dict)


CHAINED_LOW_BACKENDS = """
import sys
import keyring
from keyring.backend import KeyringBackend

class SecondFileKeyring(KeyringBackend):
    '''Another backend below priority 1 (as keyrings.alt's EncryptedKeyring, 0.6).'''
    priority = 0.6
    kept = {}
    def get_password(self, service, username):
        return self.kept.get((service, username))
    def set_password(self, service, username, password):
        self.kept[(service, username)] = password
    def delete_password(self, service, username):
        self.kept.pop((service, username), None)

from hoxton_auth import CacheUnavailableError, FileTokenCache

chosen = keyring.get_keyring()
print(type(chosen).__name__, [type(b).__name__ for b in chosen.backends])
cache = FileTokenCache(sys.argv[1], sealing="required")
try:
    with cache.lock("0" * 32, 5):
        print("sealed: keys kept", len(SecondFileKeyring.kept))
except CacheUnavailableError as exc:
    print("refused:", exc)
"""


def test_a_chain_of_backends_below_priority_1_is_not_an_os_keyring(
    isolated_cache: Path, tmp_path: Path
) -> None:
    # With two such backends viable (keyrings.alt plus pycryptodome is enough), keyring
    # picks its chainer, whose own priority is 10: it passed as an OS keyring, and the
    # key went to the first chained backend (EncryptedKeyring prompts on the terminal).
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_KEYRING_BACKEND"}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    run = subprocess.run(
        [sys.executable, "-c", CHAINED_LOW_BACKENDS, str(isolated_cache)],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ChainerBackend ['SecondFileKeyring', 'PlaintextKeyring']")
    assert "refused:" in run.stdout
    assert "not an OS keyring" in run.stdout
    assert "sealed:" not in run.stdout


WITHOUT_CRYPTOGRAPHY = """
import sys, warnings
sys.modules["cryptography"] = None  # keyring installed (as many tools bring it), not the extra
from hoxton_auth import FileTokenCache

warnings.simplefilter("always")
cache = FileTokenCache(sys.argv[1])
print("mode", cache.sealing.mode)
with cache.lock("0" * 32, 5):
    cache.sealing.key_for_writing()  # what a write of a refresh token asks
import keyring
print("key made", keyring.get_password("hoxton-auth", "data key of " + sys.argv[1]) is not None)
"""


@pytest.mark.parametrize("mode", [None, "auto"])
def test_keyring_without_cryptography_makes_no_key_and_says_what_is_missing(
    isolated_cache: Path, keyring_home: Path, mode: str | None
) -> None:
    env = dict(os.environ)
    env.pop("HOXTON_AUTH_SEALING")
    if mode is not None:
        env["HOXTON_AUTH_SEALING"] = mode
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_CRYPTOGRAPHY, str(isolated_cache)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    # The default is auto only with the extra (keyring and cryptography), as documented.
    assert f"mode {mode or 'off'}" in run.stdout
    assert "key made False" in run.stdout  # before: a key nothing here could use
    if mode == "auto":
        assert "sealing needs the cryptography package" in run.stderr
        assert "not a 32-byte key" not in run.stderr  # before: "delete it, then log in again"


def test_a_seed_refresh_token_is_never_resent_while_its_sealed_entry_is_unread(
    server: AuthServer, isolated_cache: Path, keyring_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = server.mint_refresh_token()
    refreshing(server, FileTokenCache(isolated_cache), seed).get_token()  # rotated, sealed
    before = isolated_cache.read_bytes()
    # The keyring lost the key (reset, or another machine): the entry does not open.
    keyring.delete_password("hoxton-auth", f"data key of {os.path.realpath(isolated_cache)}")

    auth = refreshing(server, FileTokenCache(isolated_cache), seed)
    with (
        pytest.warns(HoxtonAuthWarning, match="cannot be read"),
        pytest.raises(NotLoggedInError, match="would make Auth0 revoke the whole login") as caught,
    ):
        auth.get_token()

    assert seed not in str(caught.value)
    assert server.count("refresh_token") == 1  # the spent seed was not sent
    assert server.reuse_detected == 0
    assert isolated_cache.read_bytes() == before  # the entry waits for its key
    # A new refresh token is a new session: it works.
    assert refreshing(
        server, FileTokenCache(isolated_cache), server.mint_refresh_token()
    ).get_token()


@pytest.mark.redis
def test_a_seed_refresh_token_is_never_resent_while_its_redis_value_is_unread(
    server: AuthServer, redis_url: str, tmp_path: Path
) -> None:
    prefix = f"seed-{os.getpid()}-{tmp_path.name}:"
    seed = server.mint_refresh_token()
    fleet_key = os.urandom(32)
    first = RedisTokenCache(redis_url, prefix=prefix, encryption_key=fleet_key)
    refreshing(server, first, seed).get_token()
    # A host given another key (a rotation half done): the value does not open.
    other = RedisTokenCache(redis_url, prefix=prefix, encryption_key=os.urandom(32))
    with (
        pytest.warns(HoxtonAuthWarning, match="sealed with another key"),
        pytest.raises(NotLoggedInError),
    ):
        refreshing(server, other, seed).get_token()
    assert server.count("refresh_token") == 1
    assert server.reuse_detected == 0
    first.client.delete(*first.client.keys(prefix + "*"))


class SilentKeyring(KeyringBackend):
    """An OS keyring that never answers (a Secret Service waiting for an unlock
    prompt nobody sees) until ``answer`` is set."""

    priority = 5  # an OS keyring's: above keyring's threshold of 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # keyring is not typed here
        self.answer = threading.Event()

    def get_password(self, service: str, username: str) -> str | None:
        self.answer.wait(120)
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        self.answer.wait(120)

    def delete_password(self, service: str, username: str) -> None:
        self.answer.wait(120)


def test_a_keyring_that_never_answers_does_not_hold_the_cache(
    server: AuthServer, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent = SilentKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(silent)
    monkeypatch.setenv("HOXTON_AUTH_SEALING", "auto")
    try:
        auth = refreshing(server, FileTokenCache(isolated_cache), server.mint_refresh_token())
        with pytest.warns(HoxtonAuthWarning, match="did not answer within"):
            auth.get_token()  # after the keyring's timeout: plain text, with the reason
    finally:
        silent.answer.set()
        keyring.set_keyring(previous)
    (entry,) = json.loads(isolated_cache.read_text())["entries"].values()
    assert isinstance(entry["token"]["refresh_token"], str)
    assert server.reuse_detected == 0
