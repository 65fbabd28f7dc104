"""Whose token is it (issue 10): a cached token only goes back to its identity.

Real server (``hoxton_auth.testing.AuthServer`` with several users), real
caches (file, one shared ``MemoryTokenCache``, Redis), real threads and real
processes (``tests/_worker.py rounds``). Every token an object returns is
checked by its ``sub``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import pytest
from _worker import Worker
from conftest import OFFLINE, REDIRECT_URI, authorization_code, release_together

from hoxton_auth import (
    AuthorizationCodeAuth,
    CacheEntry,
    ClientCredentialsAuth,
    FileTokenCache,
    HoxtonAuth,
    HoxtonAuthWarning,
    MemoryTokenCache,
    NotLoggedInError,
    PasswordAuth,
    RefreshTokenAuth,
    TokenCache,
    TokenRequestError,
)
from hoxton_auth._identity import PasswordVerifier, SecretVerifier, identity_for
from hoxton_auth.testing import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    PUBLIC_CLIENT_ID,
    AuthServer,
    cache_key,
)

SCOPE = OFFLINE
OTHER_CLIENT_ID = "second-service"
OTHER_CLIENT_SECRET = "second-service-secret-4f9a0c1d2e3b"
Spawn = Callable[[str, "dict[str, Any]"], Worker]
USERS = {
    "alice@example.com": "alice-password-Wq81",
    "bob@example.com": "bob-password-Zt42",
    "carol@example.com": "carol-password-Lm07",
}
CLIENTS = {DEFAULT_CLIENT_ID: DEFAULT_CLIENT_SECRET, OTHER_CLIENT_ID: OTHER_CLIENT_SECRET}
GRANTS = ["client_credentials", "password", "refresh_token", "authorization_code"]
THREADS_PER_USER = 8
# A real identity provider answers in about this long (DESIGN.md).
TOKEN_DELAY = 0.1


def user_sub(username: str) -> str:
    """The test server's `sub` of a user (``_state.User.subject``)."""
    return "auth0|" + hashlib.sha256(username.encode()).hexdigest()[:24]


def sub_of(access_token: str) -> str:
    claims = jwt.decode(access_token, options={"verify_signature": False})
    sub: str = claims["sub"]
    return sub


@pytest.fixture
def server() -> Iterator[AuthServer]:
    with AuthServer(token_delay=TOKEN_DELAY) as running:
        for username, password in USERS.items():
            running.add_user(username, password)
        running.add_client(OTHER_CLIENT_ID, OTHER_CLIENT_SECRET)
        yield running


class Caches:
    """Several handles on one shared store, as separate objects (or processes) see it."""

    def __init__(self, kind: str, path: Path, redis_url: str | None) -> None:
        self.kind = kind
        self.path = path
        self.redis_url = redis_url
        self.prefix = f"hoxton-identity-{uuid.uuid4().hex[:12]}:"
        self._memory = MemoryTokenCache()
        self._made: list[Any] = []

    def new(self) -> TokenCache:
        if self.kind == "memory":
            return self._memory
        if self.kind == "file":
            return FileTokenCache(self.path)
        from hoxton_auth import RedisTokenCache

        assert self.redis_url is not None
        cache = RedisTokenCache(self.redis_url, prefix=self.prefix)
        self._made.append(cache)
        return cache

    def worker_args(self) -> dict[str, str]:
        if self.kind == "redis":
            assert self.redis_url is not None
            return {"redis": self.redis_url, "prefix": self.prefix}
        return {"cache": str(self.path)}

    def close(self) -> None:
        for cache in self._made:
            cache.close()


@pytest.fixture(params=["file", "memory", "redis"])
def caches(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Caches]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    made = Caches(request.param, tmp_path / "shared" / "tokens.json", url)
    yield made
    made.close()


def get_code(server: AuthServer, username: str) -> str:
    """What a browser brings back from /authorize for ``username``."""
    return authorization_code(server, username=username, scope=SCOPE)


def arguments(server: AuthServer, grant: str, user: str) -> dict[str, Any]:
    """Constructor arguments of ``grant`` for ``user`` (a username, or a client id)."""
    common: dict[str, Any] = {"domain": server.domain}
    if grant == "client_credentials":
        return {"client_id": user, "client_secret": CLIENTS[user], **common}
    base = {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET, **common}
    if grant == "password":
        return {**base, "username": user, "password": USERS[user], "scope": SCOPE}
    if grant == "refresh_token":
        seed = server.mint_refresh_token(username=user, scope=SCOPE)
        return {**base, "refresh_token": seed, "scope": SCOPE}
    code = get_code(server, user)
    return {**base, "code": code, "redirect_uri": REDIRECT_URI, "scope": SCOPE}


def users_of(grant: str) -> list[str]:
    return list(CLIENTS) if grant == "client_credentials" else list(USERS)[:2]


def expected_sub(grant: str, user: str) -> str:
    return f"{user}@clients" if grant == "client_credentials" else user_sub(user)


# -- many users, one cache: threads ---------------------------------------------------


@pytest.mark.parametrize("grant", GRANTS)
def test_each_user_only_ever_gets_their_own_token_from_threads(
    server: AuthServer, caches: Caches, grant: str
) -> None:
    # Two auth objects per user (e.g. two requests of one web session), each
    # used by four threads; every thread renews (invalidate) between calls.
    objects = {
        user: [HoxtonAuth(**arguments(server, grant, user), cache=caches.new()) for _ in range(2)]
        for user in users_of(grant)
    }
    seen: dict[str, list[str]] = {user: [] for user in objects}
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS_PER_USER * len(objects))

    def run(user: str, auth: HoxtonAuth, renews: bool) -> None:
        try:
            start.wait()
            for _ in range(3):
                token = auth.get_token()
                seen[user].append(sub_of(token))
                if renews:
                    auth.invalidate()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(user, auths[i % 2], i < 2))
        for user, auths in objects.items()
        for i in range(THREADS_PER_USER)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    for user in objects:
        assert set(seen[user]) == {expected_sub(grant, user)}
        assert len(seen[user]) == 3 * THREADS_PER_USER
    assert server.reuse_detected == 0
    if grant == "authorization_code":  # one exchange per object, never answered from the cache
        assert server.count("authorization_code") == 2 * len(objects)


# -- many users, one cache: processes -------------------------------------------------


def run_workers(spawn: Spawn, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Start one ``_worker.py rounds`` per job, release them together, collect results."""
    return release_together([spawn("rounds", job) for job in jobs])


@pytest.mark.slow
@pytest.mark.parametrize("grant", GRANTS)
@pytest.mark.parametrize("caches", ["file", "redis"], indirect=True)  # memory: one process
def test_each_user_only_ever_gets_their_own_token_across_processes(
    server: AuthServer, caches: Caches, grant: str, spawn: Spawn
) -> None:
    jobs: list[dict[str, Any]] = []
    for user in users_of(grant):
        for _ in range(2):  # two processes per user; each code is exchanged by one of them
            auth = arguments(server, grant, user)
            jobs.append({"user": user, "auth": auth, "rounds": 3, **caches.worker_args()})

    results = run_workers(spawn, jobs)

    for job, result in zip(jobs, results, strict=True):
        assert result["subs"] == [expected_sub(grant, job["user"])] * 3
    assert server.reuse_detected == 0
    if grant == "authorization_code":
        assert server.count("authorization_code") == len(jobs)


@pytest.mark.slow
def test_a_cron_job_passing_the_same_original_refresh_token_keeps_working(
    server: AuthServer, tmp_path: Path, spawn: Spawn
) -> None:
    seed = server.mint_refresh_token(username="alice@example.com", scope=SCOPE)
    auth = {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}
    auth.update(refresh_token=seed, scope=SCOPE, domain=server.domain)
    job = {"auth": auth, "rounds": 1, "cache": str(tmp_path / "tokens.json")}

    for _ in range(3):  # three runs; each drops its access token as if it had expired
        (result,) = run_workers(spawn, [job])
        assert result["subs"] == [user_sub("alice@example.com")]

    sent = [r["refresh_token"] for r in server.token_requests]
    assert len(sent) == 3
    assert sent[0] == seed
    assert len(set(sent)) == 3  # each run used the rotated successor of the one before
    assert server.reuse_detected == 0


def test_a_cron_job_with_fresh_objects_in_one_process(server: AuthServer) -> None:
    cache = MemoryTokenCache()
    seed = server.mint_refresh_token(username="bob@example.com", scope=SCOPE)
    for _ in range(3):
        auth = RefreshTokenAuth(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            refresh_token=seed,
            scope=SCOPE,
            domain=server.domain,
            cache=cache,
        )
        assert sub_of(auth.get_token()) == user_sub("bob@example.com")
        auth.invalidate()
    assert server.count("refresh_token") == 3
    assert server.reuse_detected == 0


# -- codes ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_every_code_is_exchanged_and_each_user_gets_their_own_sub(
    server: AuthServer, isolated_cache: Path, mode: str
) -> None:
    import asyncio

    cache = FileTokenCache(isolated_cache)
    users = ["alice@example.com", "bob@example.com", "alice@example.com"]
    auths = [HoxtonAuth(**arguments(server, "authorization_code", u), cache=cache) for u in users]

    if mode == "sync":
        tokens = [auth.get_token() for auth in auths]
    else:
        tokens = [asyncio.run(auth.aget_token()) for auth in auths]

    assert server.count("authorization_code") == 3  # alice's second code too
    assert [sub_of(t) for t in tokens] == [user_sub(u) for u in users]
    assert len(set(tokens)) == 3
    # Renewals use the entry of the object's own user.
    for auth, user in zip(auths, users, strict=True):
        auth.invalidate()
        assert sub_of(auth.get_token()) == user_sub(user)
    assert server.count("authorization_code") == 3
    assert server.reuse_detected == 0
    subjects = sorted(e.meta["subject"] for e in cache.entries().values())
    assert subjects == sorted({f"user:{user_sub(u)}" for u in users})


def test_a_code_never_exchanged_touches_no_entry(server: AuthServer) -> None:
    cache = MemoryTokenCache()
    auth = HoxtonAuth(**arguments(server, "authorization_code", "bob@example.com"), cache=cache)
    auth.invalidate()
    auth.logout()
    assert cache.entries() == {}
    with pytest.raises(LookupError):
        cache_key(auth)


# -- wrong credentials ----------------------------------------------------------------


def snapshot(cache: TokenCache) -> dict[str, CacheEntry]:
    return dict(cache.entries())


@pytest.mark.parametrize("caches", ["file", "memory", "redis"], indirect=True)
def test_a_wrong_password_after_a_good_one_is_asked_and_refused(
    server: AuthServer, caches: Caches
) -> None:
    good_args = arguments(server, "password", "alice@example.com")
    good = HoxtonAuth(**good_args, cache=caches.new())
    token = good.get_token()
    before = snapshot(caches.new())
    wrong = PasswordAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        username="alice@example.com",
        password="not-alices-password",
        scope=SCOPE,
        domain=server.domain,
        cache=caches.new(),
    )

    with pytest.raises(TokenRequestError) as refused:
        wrong.get_token()
    assert refused.value.error == "invalid_grant"
    assert server.count("password") == 2  # the token endpoint was asked
    wrong.invalidate()
    wrong.logout()
    assert snapshot(caches.new()) == before  # the good entry is intact

    # Nor is the good entry's refresh token used for the wrong password.
    good.invalidate()
    with pytest.raises(TokenRequestError):
        wrong.get_token()
    assert server.count("refresh_token") == 0
    assert server.count("password") == 3

    again = HoxtonAuth(**good_args, cache=caches.new())
    renewed = again.get_token()
    assert renewed != token
    assert sub_of(renewed) == user_sub("alice@example.com")
    assert server.count("refresh_token") == 1  # the good entry's refresh token still works
    assert server.count("password") == 3
    assert HoxtonAuth(**good_args, cache=caches.new()).get_token() == renewed
    assert server.count() == 4


@pytest.mark.parametrize("caches", ["file", "memory", "redis"], indirect=True)
def test_a_wrong_secret_after_a_good_one_is_asked_and_refused(
    server: AuthServer, caches: Caches
) -> None:
    good = ClientCredentialsAuth(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=caches.new()
    )
    token = good.get_token()
    before = snapshot(caches.new())
    wrong = ClientCredentialsAuth(
        DEFAULT_CLIENT_ID, "not-the-secret", domain=server.domain, cache=caches.new()
    )

    with pytest.raises(TokenRequestError) as refused:
        wrong.get_token()
    assert refused.value.error == "invalid_client"
    assert server.count("client_credentials") == 2
    wrong.invalidate()
    wrong.logout()
    assert snapshot(caches.new()) == before
    fresh = ClientCredentialsAuth(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=caches.new()
    )
    assert fresh.get_token() == token
    assert server.count() == 2


def test_a_changed_password_replaces_the_entry(server: AuthServer) -> None:
    cache = MemoryTokenCache()
    old = arguments(server, "password", "carol@example.com")
    first = HoxtonAuth(**old, cache=cache).get_token()
    server.add_user("carol@example.com", "carols-new-password")

    new = {**old, "password": "carols-new-password"}
    second = HoxtonAuth(**new, cache=cache).get_token()

    assert second != first
    assert server.count("password") == 2
    assert len(cache.entries()) == 1
    assert HoxtonAuth(**new, cache=cache).get_token() == second
    with pytest.raises(TokenRequestError):
        HoxtonAuth(**old, cache=cache).get_token()  # the old password: asked, refused
    assert server.count("password") == 3


def test_a_user_of_another_realm_is_another_identity(server: AuthServer) -> None:
    # Auth0's password-realm grant: a realm names a user directory, and
    # alice of one directory is not alice of another.
    cache = MemoryTokenCache()
    args = arguments(server, "password", "alice@example.com")
    first = HoxtonAuth(**args, realm="employees", cache=cache).get_token()
    second = HoxtonAuth(**args, realm="contractors", cache=cache).get_token()

    assert second != first
    assert server.count("http://auth0.com/oauth/grant-type/password-realm") == 2
    assert len(cache.entries()) == 2
    assert HoxtonAuth(**args, realm="employees", cache=cache).get_token() == first
    assert server.count("http://auth0.com/oauth/grant-type/password-realm") == 2


def test_the_verifier_is_computed_once_and_reused(
    server: AuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = MemoryTokenCache()
    args = arguments(server, "password", "alice@example.com")
    HoxtonAuth(**args, cache=cache).get_token()
    (stored,) = cache.entries().values()
    real_scrypt = hashlib.scrypt
    salts: list[bytes] = []

    def scrypt(password: bytes, *, salt: bytes, **params: Any) -> bytes:
        salts.append(salt)  # counted, then computed for real
        return real_scrypt(password, salt=salt, **params)

    monkeypatch.setattr(hashlib, "scrypt", scrypt)
    later = HoxtonAuth(**args, cache=cache)
    later.get_token()
    later.invalidate()
    later.get_token()  # a renewal: stored again, with the same verifier
    (entry,) = cache.entries().values()
    assert entry.meta["verifier"] == stored.meta["verifier"]
    assert len(salts) == 1  # one scrypt, for the stored salt, remembered after


# -- no secret in the cache -----------------------------------------------------------


def digests(secret: str) -> set[str]:
    data = secret.encode()
    return {hashlib.new(name, data).hexdigest() for name in ("md5", "sha1", "sha256", "sha512")}


def test_the_cache_file_holds_no_password_or_secret(
    server: AuthServer, isolated_cache: Path
) -> None:
    cache = FileTokenCache(isolated_cache)
    for user in ("alice@example.com", "bob@example.com"):
        HoxtonAuth(**arguments(server, "password", user), cache=cache).get_token()
    for client in CLIENTS:
        HoxtonAuth(**arguments(server, "client_credentials", client), cache=cache).get_token()

    text = isolated_cache.read_text(encoding="utf-8")
    secrets = [*USERS.values(), *CLIENTS.values()]
    secrets += [p + s for p in USERS.values() for s in CLIENTS.values()]
    for secret in secrets:
        assert secret not in text
        for digest in digests(secret):
            assert digest not in text
            assert digest[:32] not in text
    verifiers = [e.meta["verifier"] for e in cache.entries().values()]
    assert len(verifiers) == 4
    assert len({v.split("$")[1] for v in verifiers}) == 4  # every verifier has its own salt
    assert sorted(v.split("$")[0] for v in verifiers) == [
        "hmac-sha256",
        "hmac-sha256",
        "scrypt-16384-8-1",
        "scrypt-16384-8-1",
    ]


def test_verifiers_match_only_their_own_credential() -> None:
    password = PasswordVerifier("pw", "secret", "key")
    stored = password.stamp(None)
    assert password.matches(stored)
    assert password.stamp(stored) == stored
    assert not PasswordVerifier("pw2", "secret", "key").matches(stored)
    assert not PasswordVerifier("pw", "other", "key").matches(stored)
    assert not PasswordVerifier("pw", "secret", "other-key").matches(stored)
    secret = SecretVerifier("secret", "key")
    mac = secret.stamp(None)
    assert secret.matches(mac)
    assert not SecretVerifier("Secret", "key").matches(mac)
    assert not secret.matches(stored)  # another scheme
    for damaged in (None, "", "hmac-sha256", "hmac-sha256$zz$00", mac[:-1], mac + "0"):
        assert not secret.matches(damaged)
    assert "secret" not in repr(secret)
    assert "pw" not in repr(password)


def test_a_session_without_sub_gets_a_session_of_its_own(server: AuthServer) -> None:
    from hoxton_auth import Token
    from hoxton_auth._identity import session_identity
    from hoxton_auth._token import subject_of

    config = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, cache=None).config
    opaque = Token("opaque-access-token", 1.0, 0.0)
    sub = subject_of(opaque)
    assert sub is None
    first, second = session_identity(config, sub), session_identity(config, sub)
    assert first.key != second.key
    assert first.subject.startswith("session:")


def test_keys_are_per_subject_and_scope_spelling_does_not_matter(server: AuthServer) -> None:
    def key(**kwargs: Any) -> str:
        made: HoxtonAuth = HoxtonAuth(**kwargs, domain=server.domain, cache=None)
        return cache_key(made)

    base = {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}
    assert key(**base, scope="a b") == key(**base, scope=["b", "a"])
    assert key(**base, scope="a") != key(**base, scope="a b")
    alice = key(**base, username="alice", password="x")
    assert alice == key(**base, username="alice", password="y")  # same entry, other verifier
    assert alice != key(**base, username="bob", password="x")
    assert key(**base, refresh_token="r1") != key(**base, refresh_token="r2")
    login = AuthorizationCodeAuth(PUBLIC_CLIENT_ID, scope="openid", domain=server.domain)
    other = AuthorizationCodeAuth(PUBLIC_CLIENT_ID, domain=server.domain, cache=None)
    assert cache_key(login) == cache_key(other)


def test_entries_written_by_0_1_0_are_never_served(
    server: AuthServer, isolated_cache: Path
) -> None:
    # 0.1.0 keyed user sessions by (token URL, client, audience, "user", scope).
    import time

    from hoxton_auth import Token

    def key_of_0_1_0(*parts: str) -> str:  # how 0.1.0 made its keys
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]

    cache = FileTokenCache(isolated_cache)
    now = time.time()
    stale = Token("0.1.0-access-token", now + 3600, now, refresh_token="0.1.0-refresh")
    auth = HoxtonAuth(**arguments(server, "password", "alice@example.com"), cache=cache)
    old_meta = {"token_url": f"{server.domain}/oauth/token", "client_id": DEFAULT_CLIENT_ID}
    for key in (
        key_of_0_1_0(server.domain + "/oauth/token", DEFAULT_CLIENT_ID, "", "user", ""),
        cache_key(auth),  # even under the new key, an entry without subject is nobody's
    ):
        with cache.lock(key, 5):
            cache.store(key, CacheEntry(stale, old_meta))
    assert auth.get_token() != "0.1.0-access-token"
    assert server.count("password") == 1
    assert server.count("refresh_token") == 0
    identity = identity_for(auth.config, None, None)
    assert identity.meta["subject"] == "login"


# -- login ----------------------------------------------------------------------------


@pytest.fixture
def browser(fake_browser_command: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """The fake browser logs in as the user named (its ``login_hint``)."""
    import webbrowser

    monkeypatch.setenv("BROWSER", str(fake_browser_command))
    monkeypatch.setenv("FAKE_BROWSER_MODE", "follow")
    browser = webbrowser.GenericBrowser(str(fake_browser_command))
    webbrowser.register("hoxton-auth-test-browser", None, browser, preferred=True)

    def as_user(username: str) -> None:
        monkeypatch.setenv("FAKE_BROWSER_LOGIN_HINT", username)

    return as_user


def test_a_second_login_replaces_the_session_and_revokes_the_first(
    server: AuthServer, browser: Callable[[str], None], isolated_cache: Path
) -> None:
    browser("alice@example.com")
    alice = HoxtonAuth.login(PUBLIC_CLIENT_ID, domain=server.domain, timeout=60)
    assert sub_of(alice.get_token()) == user_sub("alice@example.com")
    (entry,) = FileTokenCache(isolated_cache).entries().values()
    alices_refresh_token = entry.token.refresh_token
    assert alices_refresh_token

    browser("bob@example.com")
    bob = HoxtonAuth.login(
        PUBLIC_CLIENT_ID, scope="openid offline_access", domain=server.domain, timeout=60
    )

    assert sub_of(bob.get_token()) == user_sub("bob@example.com")
    assert [r["token"] for r in server.revoke_requests] == [alices_refresh_token]
    (entry,) = FileTokenCache(isolated_cache).entries().values()
    assert entry.meta["subject"] == "login"
    assert entry.token.refresh_token not in (None, alices_refresh_token)
    for scope in (None, "offline_access   openid", "openid profile offline_access"):
        later = AuthorizationCodeAuth(PUBLIC_CLIENT_ID, scope=scope, domain=server.domain)
        assert sub_of(later.get_token()) == user_sub("bob@example.com")
    assert server.count("authorization_code") == 2
    assert server.count("refresh_token") == 0


def test_a_failed_revocation_of_the_replaced_login_is_only_a_warning(
    server: AuthServer,
    browser: Callable[[str], None],
    isolated_cache: Path,
    warnings_log: pytest.LogCaptureFixture,
) -> None:
    def login_as(username: str) -> str:
        browser(username)
        auth = HoxtonAuth.login(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            domain=server.domain,
            timeout=60,
            max_attempts=1,
        )
        return auth.get_token()

    login_as("alice@example.com")
    (entry,) = FileTokenCache(isolated_cache).entries().values()
    alices_refresh_token = entry.token.refresh_token
    assert alices_refresh_token
    server.revocation_outage = True
    with pytest.warns(HoxtonAuthWarning, match="was not revoked"):
        bobs = login_as("bob@example.com")

    assert sub_of(bobs) == user_sub("bob@example.com")
    assert "was not revoked" in warnings_log.text
    assert "Revocation is unavailable (outage)" in warnings_log.text
    later = AuthorizationCodeAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
    assert later.get_token() == bobs
    # One refused revocation of alice's token (no retry), which revoked nothing.
    assert [r["token"] for r in server.revoke_requests] == [alices_refresh_token]
    server.revocation_outage = False
    alices = RefreshTokenAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        refresh_token=alices_refresh_token,
        domain=server.domain,
        cache=None,
    )
    assert sub_of(alices.get_token()) == user_sub("alice@example.com")


def test_an_unknown_login_hint_is_an_error_redirect(server: AuthServer) -> None:
    response = httpx.get(
        f"{server.domain}/authorize",
        params={
            "response_type": "code",
            "client_id": DEFAULT_CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "login_hint": "mallory@example.com",
            "state": "s1",
        },
    )
    assert response.status_code == 302
    query = dict(parse_qsl(urlsplit(response.headers["location"]).query))
    assert query["error"] == "access_denied"
    assert "mallory@example.com" in query["error_description"]
    assert query["state"] == "s1"


def test_a_code_exchanged_under_a_stuck_lock_is_used_with_a_warning(
    server: AuthServer, isolated_cache: Path
) -> None:
    holder = FileTokenCache(isolated_cache)  # as another process holding the lock
    auth = AuthorizationCodeAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        code=get_code(server, "alice@example.com"),
        redirect_uri=REDIRECT_URI,
        domain=server.domain,
        cache=FileTokenCache(isolated_cache, lock_wait_timeout=0.05),
    )
    with (
        holder.lock("any", timeout=1),
        pytest.warns(HoxtonAuthWarning, match="was not stored in the cache"),
    ):
        token = auth.get_token()
    assert sub_of(token) == user_sub("alice@example.com")
    assert holder.entries() == {}  # nothing written without the lock
    assert server.count() == 1


# -- a logged-in session belongs to the person who logged in (issue 21) -----------------

NOBODY = 65534
needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root: a process of a second uid is started with setpriv",
)


def as_nobody(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as uid/gid 65534: a real second OS user, with ``env`` only.

    The process keeps CAP_DAC_READ_SEARCH only so that it can reach this
    interpreter (which may live under root's private home, as pyenv's does);
    what it reads is its own: its home, its login key, the shared Redis.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is not installed")
    prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    prefix += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    probe = subprocess.run(  # this interpreter (and redis-py) may be out of that user's reach
        [*prefix, sys.executable, "-c", "import hoxton_auth, redis"],
        env=env,
        capture_output=True,
        check=False,
        timeout=60,
        cwd="/",
    )
    if probe.returncode != 0:
        pytest.skip(f"uid {NOBODY} cannot run this interpreter with redis-py")
    return subprocess.run(
        [*prefix, *command], env=env, capture_output=True, text=True, timeout=120, cwd="/"
    )


@pytest.fixture
def nobodys_home() -> Iterator[Path]:
    """A home directory of uid 65534 (where its login key would live)."""
    home = Path(tempfile.mkdtemp(prefix="hoxton-nobody-", dir="/tmp"))
    os.chown(home, NOBODY, NOBODY)
    try:
        yield home
    finally:
        shutil.rmtree(home)


@needs_root
def test_a_login_on_redis_is_invisible_to_another_os_user(
    server: AuthServer,
    browser: Callable[[str], None],
    own_redis: Any,
    nobodys_home: Path,
) -> None:
    browser("alice@example.com")
    alice = HoxtonAuth.login(
        PUBLIC_CLIENT_ID, domain=server.domain, timeout=60, cache=own_redis.url
    )
    alices_token = alice.get_token()
    assert sub_of(alices_token) == user_sub("alice@example.com")
    sent_before = len(server.token_requests)

    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(nobodys_home),
        "XDG_CACHE_HOME": str(nobodys_home / ".cache"),
        "HOXTON_CLIENT_ID": PUBLIC_CLIENT_ID,
        "HOXTON_AUTH_DOMAIN": server.domain,
        "HOXTON_AUTH_CACHE": own_redis.url,
    }
    result = as_nobody([sys.executable, "-m", "hoxton_auth", "token"], env)

    assert result.returncode == 4, result.stderr  # login needed: nothing of alice's
    assert "no login of" in result.stderr
    assert alices_token not in result.stdout + result.stderr
    assert len(server.token_requests) == sent_before  # not even a refresh with her token
    assert server.revoke_requests == []
    assert alice.get_token() == alices_token


def test_a_second_persons_login_on_a_shared_cache_neither_replaces_nor_revokes_the_first(
    server: AuthServer,
    browser: Callable[[str], None],
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hoxton_auth import RedisTokenCache

    cache = RedisTokenCache(redis_url, prefix=f"test-{uuid.uuid4().hex}:")
    browser("alice@example.com")
    alice = HoxtonAuth.login(PUBLIC_CLIENT_ID, domain=server.domain, timeout=60, cache=cache)
    # Bob: another login key (another OS user, or another host), the same Redis.
    monkeypatch.setenv("HOXTON_AUTH_LOGIN_KEY", str(tmp_path / "bob" / "login.key"))
    browser("bob@example.com")
    bob = HoxtonAuth.login(PUBLIC_CLIENT_ID, domain=server.domain, timeout=60, cache=cache)

    assert server.revoke_requests == []
    assert len(cache.entries()) == 2
    server.expire_access_tokens()
    alice.invalidate()
    bob.invalidate()
    assert sub_of(alice.get_token()) == user_sub("alice@example.com")  # her refresh token works
    assert sub_of(bob.get_token()) == user_sub("bob@example.com")
    assert server.count("refresh_token") == 2
    assert server.reuse_detected == 0
    # A new object of each person finds that person's session only.
    later_bob = AuthorizationCodeAuth(PUBLIC_CLIENT_ID, domain=server.domain, cache=cache)
    assert sub_of(later_bob.get_token()) == user_sub("bob@example.com")
    monkeypatch.setenv("HOXTON_AUTH_LOGIN_KEY", str(tmp_path / "carol" / "login.key"))
    with pytest.raises(NotLoggedInError):
        AuthorizationCodeAuth(PUBLIC_CLIENT_ID, domain=server.domain, cache=cache).get_token()


def test_a_confidential_clients_login_is_bound_to_its_secret(
    server: AuthServer, browser: Callable[[str], None]
) -> None:
    browser("alice@example.com")
    alice = HoxtonAuth.login(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, timeout=60
    )
    token = alice.get_token()
    sent = len(server.token_requests)

    wrong = AuthorizationCodeAuth(DEFAULT_CLIENT_ID, "not-the-secret", domain=server.domain)
    with pytest.raises(NotLoggedInError):
        wrong.get_token()
    assert len(server.token_requests) == sent
    right = AuthorizationCodeAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
    assert right.get_token() == token


def test_a_login_key_open_to_others_is_refused_and_left_alone(
    server: AuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "keys" / "login.key"
    key_file.parent.mkdir(mode=0o700)
    key_file.write_text("ab" * 32 + "\n")
    key_file.chmod(0o644)
    monkeypatch.setenv("HOXTON_AUTH_LOGIN_KEY", str(key_file))
    auth = AuthorizationCodeAuth(PUBLIC_CLIENT_ID, domain=server.domain)

    with (
        pytest.warns(HoxtonAuthWarning, match="open to other users.*this process only"),
        pytest.raises(NotLoggedInError),
    ):
        auth.get_token()
    assert key_file.read_text() == "ab" * 32 + "\n"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o644


def test_the_login_key_is_created_private_and_once(
    server: AuthServer, browser: Callable[[str], None], tmp_path: Path
) -> None:
    key_file = Path(os.environ["HOXTON_AUTH_LOGIN_KEY"])
    assert not key_file.exists()
    browser("alice@example.com")
    HoxtonAuth.login(PUBLIC_CLIENT_ID, domain=server.domain, timeout=60)
    first = key_file.read_bytes()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(bytes.fromhex(first.decode().strip())) == 32
    HoxtonAuth.login(PUBLIC_CLIENT_ID, domain=server.domain, timeout=60)
    assert key_file.read_bytes() == first  # the same person's next login: the same key
    assert first.decode().strip() not in (tmp_path / "cache" / "tokens.json").read_text()


def test_cache_keys_encode_their_parts_unambiguously(server: AuthServer) -> None:
    from hoxton_auth._grants import Password

    config = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain).config
    realm_and_user = identity_for(config, Password("u", "pw", realm="r"), None)
    slash_user = identity_for(config, Password("r/u", "pw"), None)
    assert realm_and_user.key != slash_user.key


def test_logged_in_sessions_written_before_key_version_3_are_never_served(
    server: AuthServer, isolated_cache: Path
) -> None:
    import time

    from hoxton_auth import Token

    now = time.time()
    token_url = f"{server.domain}/oauth/token"
    # 0.2 keyed the logged-in session by (token URL, client, audience, no scope), no verifier.
    parts = ("hoxton-auth/2", token_url, PUBLIC_CLIENT_ID, "https://api.hoxton.cloud", "")
    old_key = hashlib.sha256("\x00".join((*parts, "login", "")).encode()).hexdigest()[:32]
    old_meta = {"token_url": token_url, "client_id": PUBLIC_CLIENT_ID, "subject": "login"}
    cache = FileTokenCache(isolated_cache)
    with cache.lock(old_key, 5):
        cache.store(
            old_key, CacheEntry(Token("old-access", now + 3600, now, refresh_token="r"), old_meta)
        )

    with pytest.raises(NotLoggedInError):
        AuthorizationCodeAuth(PUBLIC_CLIENT_ID, domain=server.domain).get_token()
    assert server.token_requests == []
