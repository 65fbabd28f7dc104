"""Web back ends: a login begun in one worker, finished in another, resumed in any (issue 21).

``AuthorizationCodeAuth.begin`` makes a ``LoginRequest``: the ``/authorize``
URL (state, PKCE S256, audience, scope) and what its callback needs, as JSON
the app keeps in its server-side session. ``LoginRequest.finish`` checks the
callback's ``state``, records it as used in the shared cache under the cache
lock (so a callback is finished once, in whichever process, and a replay
exchanges nothing), exchanges the code and files the tokens under a new random
``session_id``. ``AuthorizationCodeAuth.resume`` finds that session again in
any worker or host sharing the cache; its renewals are the cache's single
flight, and ``logout()`` deletes the one entry every worker reads.

One entry per login, not per user: two browsers of one user are two sessions,
each with its own refresh token (family), ended one at a time. The cache key
and verifier come from the ``session_id`` and the client secret
(``_identity.web_session_identity``): an unknown, tampered or logged-out id,
or a wrong secret, is a miss, and ``resume`` says so without a token request.

This module holds the request's data and checks and the two steps that take
an auth class (``begin_login``, ``resume_session``); the public
``LoginRequest`` and its ``finish``, which make auth objects, are in
``_auth.py`` (this module imports no auth class: no cycle).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from ._arguments import Settings
from ._cache import CacheEntry, TokenCache
from ._config import ClientConfig, normalize_scope
from ._errors import ConfigError, LoginError, NotLoggedInError
from ._grants import PROMPTS, authorize_url
from ._identity import used_state_identity, web_session_identity
from ._renewal import LOCK_MARGIN
from ._token import Token

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._auth import AuthorizationCodeAuth  # for the checker only: _auth imports this module
    from ._types import CacheArg

LoginRequestT = TypeVar("LoginRequestT", bound="LoginRequestData")
AuthT = TypeVar("AuthT", bound="AuthorizationCodeAuth")

__all__ = [
    "IDENTITY_SETTINGS",
    "LOGIN_REQUEST_LIFETIME",
    "LoginRequestData",
    "begin_login",
    "check_settings",
    "resume_session",
]

#: Seconds a ``LoginRequest`` can be finished after ``begin`` (Auth0's codes
#: live 10 minutes; a user may linger on the login page longer).
LOGIN_REQUEST_LIFETIME = 3600.0
_FORMAT = "hoxton-auth login request"
_VERSION = 1
# The settings that name the identity and the /authorize URL: kept in the request.
IDENTITY_SETTINGS = ("domain", "audience", "organization")
_SETTINGS = frozenset(Settings.__optional_keys__)


@dataclasses.dataclass(frozen=True)
class LoginRequestData:
    """A web login on its way: the ``/authorize`` URL and what its callback needs.

    The data and its checks; ``hoxton_auth.LoginRequest`` (``_auth.py``) adds
    ``finish``, which makes the auth object.

    Keep it server-side (``to_json``), in the user's session of your app: it
    holds the PKCE verifier. Any worker can ``finish`` it, once.

    Attributes:
        url: Redirect the browser here (``/authorize`` with ``state``, PKCE
            S256, ``audience`` and ``scope``).
        client_id: The OAuth client's id.
        redirect_uri: Your callback URL, as registered in Auth0.
        scope: The scopes asked for.
        domain: The Auth0 tenant.
        audience: The API the tokens are for.
        organization: The Auth0 Organization, if any.
        created_at: When ``begin`` made it (seconds since the epoch).
    """

    url: str = dataclasses.field(repr=False)
    client_id: str
    redirect_uri: str
    scope: str | None
    domain: str
    audience: str
    organization: str | None
    created_at: float
    state: str = dataclasses.field(repr=False)
    code_verifier: str = dataclasses.field(repr=False)

    def to_json(self) -> str:
        """This request as JSON text (it holds the PKCE verifier: keep it server-side)."""
        fields = dataclasses.asdict(self)
        return json.dumps({"format": _FORMAT, "version": _VERSION, **fields}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """The request ``to_json`` wrote.

        Raises:
            ConfigError: ``text`` is not a login request of this version.
        """
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"not a LoginRequest: invalid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ConfigError("not a LoginRequest: no hoxton-auth login request format marker")
        if data.get("version") != _VERSION:
            raise ConfigError(
                f"LoginRequest version {data.get('version')!r} is not {_VERSION}: begin again"
            )
        kwargs: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            value = data.get(field.name)
            optional = field.name in ("scope", "organization")
            if field.name == "created_at":
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            else:
                ok = (isinstance(value, str) and bool(value)) or (optional and value is None)
            if not ok:
                raise ConfigError(f"not a LoginRequest: {field.name!r} is missing or malformed")
            kwargs[field.name] = value
        return cls(**kwargs)

    def code_of(self, callback_url: str) -> str:
        """The callback's code, once its ``state`` is this request's (RFC 6749 §10.12)."""
        if not isinstance(callback_url, str):
            raise ConfigError(f"callback_url must be a string, got {type(callback_url).__name__}")
        query = parse_qs(urlsplit(callback_url).query)

        def first(name: str) -> str | None:
            values = query.get(name)
            return values[0] if values else None

        state = first("state")
        if state is None or not secrets.compare_digest(state, self.state):
            raise LoginError(
                "the callback's state does not match this login request (a stale tab, "
                "another login's callback, or a forged request); nothing was exchanged"
            )
        error = first("error")
        if error is not None:
            description = first("error_description")
            words = f"{error}: {description}" if description else error
            raise LoginError(f"the identity provider refused the login: {words}")
        code = first("code")
        if not code:
            raise LoginError("the callback has no code; nothing was exchanged")
        return code

    def mark_used(self, cache: TokenCache, config: ClientConfig) -> None:
        """Record this request's state as used, under the cache lock; refuse a second time.

        Raises:
            LoginError: It was used already (in any process sharing the cache).
        """
        marker = used_state_identity(config, self.state)
        key = marker.key
        if key is None:  # pragma: no cover  a used-state identity always has a key
            raise LoginError("no cache key for the login's state")
        wait = cache.lock_wait_timeout
        timeout = wait if wait is not None else config.retry_deadline + config.timeout + LOCK_MARGIN
        with cache.lock(key, timeout):
            if cache.load(key) is not None:
                raise LoginError(
                    "this login callback was already finished (here or in another "
                    "process); nothing was exchanged: begin the login again"
                )
            now = time.time()
            expires_at = self.created_at + LOGIN_REQUEST_LIFETIME
            cache.store(key, CacheEntry(Token("", expires_at, now), marker.meta_for(None)))


def check_settings(settings: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(settings) - _SETTINGS)
    if unknown:
        raise ConfigError(f"{where}() does not take {', '.join(unknown)}")


def begin_login(
    cls: type[LoginRequestT],
    client_id: str,
    redirect_uri: str,
    scope: str | Sequence[str] | None,
    prompt: str | None,
    settings: Mapping[str, Any],
) -> LoginRequestT:
    """``AuthorizationCodeAuth.begin`` (documented there): a request of class ``cls``.

    Raises:
        ConfigError: Bad arguments (named).
    """
    # Here, not at the top: _login loads http.server and webbrowser, which no
    # token needs (tests/test_imports.py, NOT_FOR_IMPORT); only its PKCE pair is used.
    from ._login import pkce_pair

    check_settings(settings, "begin")
    if not isinstance(redirect_uri, str) or urlsplit(redirect_uri).scheme not in ("https", "http"):
        raise ConfigError(f"redirect_uri must be an http(s) URL, got {redirect_uri!r}")
    if prompt is not None and prompt not in PROMPTS:
        raise ConfigError(f"prompt must be one of {PROMPTS}, got {prompt!r}")
    config = ClientConfig(
        client_id,
        scope=normalize_scope(scope),
        **{name: settings[name] for name in IDENTITY_SETTINGS if name in settings},
    )
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(32)
    return cls(
        url=authorize_url(config, redirect_uri, state, challenge, prompt),
        client_id=config.client_id,
        redirect_uri=redirect_uri,
        scope=config.scope,
        domain=config.domain,
        audience=config.audience,
        organization=config.organization,
        created_at=time.time(),
        state=state,
        code_verifier=verifier,
    )


def resume_session(
    cls: type[AuthT],
    session_id: str,
    client_id: str,
    client_secret: str | None,
    cache: CacheArg,
    settings: Mapping[str, Any],
) -> AuthT:
    """``AuthorizationCodeAuth.resume`` (documented there), for ``cls``.

    Raises:
        NotLoggedInError: No such session in the cache (unknown, tampered,
            logged out, expired, or another client secret).
        ConfigError: Bad arguments (named).
        CacheError: The cache cannot be read.
    """
    if not isinstance(session_id, str):
        raise ConfigError(f"session_id must be a string, got {type(session_id).__name__}")
    check_settings(settings, "resume")
    auth = cls(client_id, client_secret, cache=cache, **settings)
    if not auth._manager.resume(web_session_identity(auth.config, session_id)):
        raise NotLoggedInError(
            "no such web session in the cache (unknown, logged out or expired id, or "
            "another client secret): send the user through AuthorizationCodeAuth.begin() again"
        )
    auth._session_id = session_id
    return auth
