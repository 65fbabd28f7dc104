"""The auth classes: ``HoxtonAuth``, its four grant classes, ``from_env`` and ``login``.

``HoxtonAuth(...)`` returns the grant class its arguments choose (what they mean
is in ``_arguments.py``). An auth object is one session (``_session.py``) plus
the requests and httpx adapters it inherits from.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from ._arguments import (
    DEFAULT,
    GRANT_CLASS_NAMES,
    LOGIN_SCOPE,
    AllArgs,
    CodeArgs,
    PasswordArgs,
    RefreshArgs,
    Settings,
    build_session,
    check_environment,
    constructor_signature,
    gather,
    grant_kind_of,
)
from ._cache import TokenCache
from ._config import ClientConfig
from ._errors import ConfigError, LoginError, TokenRequestError
from ._httpx import HttpxAuth, HttpxTransport, token_hosts
from ._identity import web_session_identity
from ._requests import RequestsAuth, RequestsTransport, token_prefixes
from ._session import TokenInfo, TokenManager
from ._web import (
    IDENTITY_SETTINGS,
    LOGIN_REQUEST_LIFETIME,
    LoginRequestData,
    begin_login,
    check_settings,
    resume_session,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is 3.11+; only type checkers read it

    from ._login import LoginOptions
    from ._types import CacheArg

__all__ = [
    "LOGIN_SCOPE",
    "AuthorizationCodeAuth",
    "ClientCredentialsAuth",
    "HoxtonAuth",
    "LoginRequest",
    "PasswordAuth",
    "RefreshTokenAuth",
    "run_login",
]

_AuthT = TypeVar("_AuthT", bound="HoxtonAuth")

logger = logging.getLogger("hoxton_auth")


class _Constructed(RequestsAuth, HttpxAuth):
    """The constructor of ``HoxtonAuth`` (documented there), apart from its ``__new__``.

    In one class mypy would type ``HoxtonAuth(...)`` by ``__init__``, not the
    overloads. Its keywords are ``AllArgs``'s (``_arguments.py``), declared
    there once; ``help()`` and ``inspect.signature`` show them with their
    defaults (the end of this module).
    """

    grant_kind: ClassVar[str] = ""
    config: ClientConfig

    @property
    def cache(self) -> TokenCache:
        """The cache in use: the one given, or memory once that one proved unusable (live)."""
        return self._manager.cache

    def __init__(
        self, client_id: str, client_secret: str | None = None, **arguments: Unpack[AllArgs]
    ) -> None:
        owner = type(self).__name__
        session = build_session(self.grant_kind, owner, client_id, client_secret, arguments)
        self._manager: TokenManager = session
        self.config = self._manager.config
        # Token requests go through this object's own verify/cert/proxy (issue 14).
        self._send_requests = RequestsTransport(self.config.network)
        self._send_httpx = HttpxTransport(self.config.network)
        # Where the token goes, precomputed for the adapters' hot paths (issue 21).
        self._token_prefixes = token_prefixes(self.config)
        self._token_hosts = token_hosts(self.config)


class HoxtonAuth(_Constructed):
    """Authenticate ``requests`` and ``httpx`` calls to the HoxtonAI API.

    ``HoxtonAuth(...)`` picks the grant from its arguments and returns a
    ``ClientCredentialsAuth``, ``PasswordAuth``, ``AuthorizationCodeAuth`` or
    ``RefreshTokenAuth``. Every argument, its default and its ``HOXTON_*``
    variable: ``docs/reference/configuration.md``.

    Args:
        client_id: The OAuth client's id.
        client_secret: The client's secret (confidential clients).
        username: With ``password``: the password grant.
        password: The user's password.
        code: With ``redirect_uri``: the authorization code grant.
        redirect_uri: The redirect URI the code was issued for.
        code_verifier: The PKCE verifier that went with the code.
        refresh_token: Seeds the cache for the refresh token grant.
        scope: Space separated string or a sequence of scopes.
        audience: The API the token is for.
        domain: The Auth0 tenant; the token URL is ``domain + "/oauth/token"``.
        cache: ``DEFAULT`` (the shared file cache), a ``TokenCache``, a path,
            a ``redis://`` URL, or ``None`` to keep tokens in this object only.
        leeway: Renew this many seconds before expiry.
        timeout: Seconds per token-endpoint request.
        retry_deadline: Seconds for one token fetch, retries included.
        token_request_format: ``"form"`` (RFC 6749) or ``"json"`` bodies.
        max_attempts: Token-endpoint requests per fetch, at most.
        organization: The Auth0 Organization the token is for (client credentials).
        realm: With the password grant: Auth0's password-realm grant on this connection.
        forwarded_for: With the password grant: the end user's IP, for Auth0's
            brute-force protection (``auth0-forwarded-for``).
        otp: With the password grant: returns the one-time code for ``mfa_required``.
        verify: For token requests: True (the default CA bundle, or the
            environment's with ``trust_env``), a CA bundle path, or False.
        cert: Client certificate for mutual TLS with the token endpoint: a
            PEM file with certificate and key, or a ``(cert, key)`` pair.
        proxy: Proxy URL for token requests (default: the environment's).
        trust_env: Read ``HTTPS_PROXY``, ``SSL_CERT_FILE`` and the like.
        allow_insecure_http: Send the bearer token to non-loopback ``http://`` URLs.
        on_token: Called with a ``TokenInfo`` (no secret) after each fetch or
            refresh, for metrics and logs, once the token is stored and every
            lock released; its exceptions are logged, never raised.
        refresh_ahead: Start one background renewal this fraction of the
            token's lifetime before its renewal point (0 to 0.5; 0 turns it
            off); the valid token is served meanwhile. Default:
            ``$HOXTON_REFRESH_AHEAD``, else 0.1.
        allowed_origins: More origins (``https://host[:port]``) that get the
            token besides the audience's, for example a second API host.
            Default: ``$HOXTON_ALLOWED_ORIGINS`` (space or comma separated).
            Loopback always gets it; any other origin gets the request
            without the token.
        other_origins: ``"warn"`` (the default): a request to another origin
            goes out without the token, with one ``HoxtonAuthWarning`` per
            origin; ``"raise"``: it raises ``InsecureTransportError``.
        private_key: Private Key JWT (RFC 7523) instead of a client secret: a
            PEM file's path (or PEM text or bytes) of an RSA or EC P-256 key;
            every token request carries a fresh assertion signed with it.
            Default: ``$HOXTON_PRIVATE_KEY_FILE``.
        key_id: The ``kid`` of the key's credential in Auth0 (``$HOXTON_KEY_ID``).
        signing_algorithm: ``RS256`` (an RSA key's default), ``RS384`` or
            ``PS256``; ``ES256`` for an EC P-256 key.

    Raises:
        ConfigError: Arguments missing or contradictory (a ``ValueError``).
    """

    @overload
    def __new__(
        cls, client_id: str, client_secret: str | None = None, **arguments: Unpack[PasswordArgs]
    ) -> PasswordAuth: ...
    @overload
    def __new__(
        cls, client_id: str, client_secret: str | None = None, **arguments: Unpack[CodeArgs]
    ) -> AuthorizationCodeAuth: ...
    @overload
    def __new__(
        cls, client_id: str, client_secret: str | None = None, **arguments: Unpack[RefreshArgs]
    ) -> RefreshTokenAuth: ...
    @overload
    def __new__(
        cls, client_id: str, client_secret: str | None = None, **arguments: Unpack[Settings]
    ) -> ClientCredentialsAuth: ...
    @overload
    def __new__(
        cls, client_id: str, client_secret: str | None = None, **arguments: Unpack[AllArgs]
    ) -> HoxtonAuth: ...
    def __new__(cls, *args: Any, **kwargs: Any) -> HoxtonAuth:
        if cls is HoxtonAuth:
            cls = _GRANT_CLASSES[grant_kind_of(kwargs)]
        return super().__new__(cls)

    @classmethod
    def login(
        cls,
        client_id: str,
        client_secret: str | None = None,
        *,
        scope: str | Sequence[str] | None = LOGIN_SCOPE,
        port: int | None = None,
        redirect_host: str = "127.0.0.1",
        open_browser: bool = True,
        timeout: float = 300.0,
        device: bool | None = None,
        prompt: str | None = None,
        **common: Any,
    ) -> AuthorizationCodeAuth:
        """Log a user in: in the browser (authorization code + PKCE) or with a device code.

        Browser: the login page opens with ``webbrowser`` (the URL is printed
        to stderr too) and a one-shot loopback server receives the redirect to
        ``http://<redirect_host>:<port>/callback`` (one with a wrong ``state`` is
        refused, and the wait goes on). Device (RFC 8628; an Auth0
        Native application with the Device Code grant): a URL and a code to
        enter on another device are printed to stderr while the server is polled.

        The tokens become this OS user's logged-in session of (domain, client,
        audience) in the cache, where later ``AuthorizationCodeAuth(client_id)``
        objects and other processes find them, whatever scope they spell; the
        previous login's refresh token is revoked (best effort).

        Args:
            client_id: The OAuth client's id (its callback URLs must allow the redirect URI).
            client_secret: For confidential clients; public ones use PKCE only.
            scope: Scopes to ask for; ``offline_access`` brings a refresh token.
            port: Port of the loopback server; ``None`` tries ``$HOXTON_LOGIN_PORT``,
                else the first free one of 8765 to 8768; 0 picks any free port.
            redirect_host: ``"127.0.0.1"`` or ``"localhost"``, as registered
                in the client's allowed callback URLs.
            open_browser: False only prints the URL.
            timeout: Seconds to wait for the browser, or for the device code's approval.
            device: True for the device flow, False for the browser; None
                picks the device flow when no browser can be opened here
                (an SSH session, or Linux without a display, and no ``$BROWSER``).
            prompt: Auth0's ``prompt``; ``"login"`` asks for the credentials
                even when the browser is still logged in (to switch accounts).
            **common: The constructor's other keyword arguments (``audience``,
                ``domain``, ``cache``, ...), except ``timeout``.

        Returns:
            An ``AuthorizationCodeAuth`` holding the new session.

        Raises:
            LoginError: Timeout, ``access_denied``, an expired device code,
                every callback port busy, or the token endpoint refused the code.
            ConfigError: Arguments missing or contradictory.
            TokenEndpointUnreachableError: The network failed after retries.
        """
        # Here, not at the top: only a login loads the login module (http.server,
        # webbrowser, the device flow; tests/test_imports.py).
        from ._login import LoginOptions

        options = LoginOptions(port, redirect_host, open_browser, timeout, device, prompt)
        return run_login(client_id, client_secret, scope=scope, options=options, **common)

    @classmethod
    def from_env(cls: type[_AuthT], **overrides: Any) -> _AuthT:
        """Build an auth object from ``HOXTON_*`` environment variables.

        Reads the variables of ``_config.ENVIRONMENT``: ``HOXTON_CLIENT_ID``,
        ``HOXTON_CLIENT_SECRET``, ``HOXTON_USERNAME``, ``HOXTON_PASSWORD``,
        ``HOXTON_REFRESH_TOKEN``, ``HOXTON_SCOPE``, ``HOXTON_AUDIENCE``,
        ``HOXTON_AUTH_DOMAIN``, ``HOXTON_AUTH_CACHE``, ``HOXTON_PRIVATE_KEY_FILE``
        and ``HOXTON_KEY_ID``; empty ones count as unset. Keyword arguments win over them; a grant
        argument given here replaces all the grant variables.

        Raises:
            ConfigError: A required variable is missing (named), or they clash.
        """
        kind = None if cls is HoxtonAuth else cls.grant_kind
        kwargs = gather(kind, overrides)
        check_environment(kind, kwargs)
        client_id = kwargs.pop("client_id")
        return cls(client_id, **kwargs)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"{type(self).__name__}(client_id={c.client_id!r}, domain={c.domain!r}, "
            f"audience={c.audience!r}, scope={c.scope!r})"
        )

    def get_token(self) -> str:
        """A valid access token, from memory, the cache or the token endpoint.

        Raises:
            TokenRequestError: The token endpoint refused.
            LoginRequiredError: The user must log in again.
            TokenEndpointUnreachableError: The network failed after retries.
            CacheError: The cache lock is stuck and the grant is not safe to repeat.
        """
        return self._manager.get_token(self._send_requests)

    async def aget_token(self) -> str:
        """``get_token`` for asyncio and trio; never blocks the event loop.

        Raises:
            TokenRequestError: The token endpoint refused.
            LoginRequiredError: The user must log in again.
            TokenEndpointUnreachableError: The network failed after retries.
            CacheError: The cache lock is stuck and the grant is not safe to repeat.
        """
        return await self._manager.aget_token(self._send_httpx)

    def token_info(self) -> TokenInfo | None:
        """Expiry, scope, subject and whether a refresh token is held; never a secret.

        Of the token this object last used, else of its identity's cached one;
        ``None`` before there is one. Never sends a request.
        """
        return self._manager.token_info()

    def invalidate(self) -> None:
        """Forget the current access token, here and in the shared cache."""
        self._manager.invalidate()

    def logout(self) -> None:
        """Revoke the refresh token (if any) at ``/oauth/revoke`` and drop the cache entry.

        Raises:
            TokenRequestError: The server refused the revocation.
            TokenEndpointUnreachableError: The network failed after retries.
        """
        self._manager.logout(self._send_requests)


class _GrantAuth(HoxtonAuth):
    """The base of the grant classes: for type checkers, their constructor returns their class."""

    def __init__(
        self, client_id: str, client_secret: str | None = None, **arguments: Unpack[AllArgs]
    ) -> None:
        # mypy types a call from the nearer of __init__ and __new__: this one.
        super().__init__(client_id, client_secret, **arguments)


class ClientCredentialsAuth(_GrantAuth):
    """Machine-to-machine tokens with the client's id and secret."""


class PasswordAuth(_GrantAuth):
    """A user's tokens from their username and password (resource owner grant)."""


class AuthorizationCodeAuth(_GrantAuth):
    """A user's tokens from an authorization code (or an earlier login in the cache).

    With ``code``, the code is exchanged (once) and the session filed under the
    user's ``sub``; without, it uses this OS user's logged-in session (the last
    ``login()``), whatever the scope.
    """

    _session_id: str | None = None

    # -- web back ends (issue 21): the logic is in _web.py --------------------------------

    @property
    def session_id(self) -> str | None:
        """The web session's opaque id (from ``LoginRequest.finish`` or ``resume``), else None.

        Unguessable and not derived from the user: keep it server-side (in the
        app's session store), like a session cookie's value.
        """
        return self._session_id

    @classmethod
    def begin(
        cls,
        client_id: str,
        *,
        redirect_uri: str,
        scope: str | Sequence[str] | None = LOGIN_SCOPE,
        prompt: str | None = None,
        **settings: Any,
    ) -> LoginRequest:
        """Begin a web back end's login: the ``/authorize`` URL and what its callback needs.

        Redirect the browser to ``request.url``; keep ``request.to_json()`` in
        the user's server-side session; on the callback, in any worker,
        ``LoginRequest.from_json(text).finish(callback_url, client_secret, cache=...)``.

        Args:
            client_id: The OAuth client's id.
            redirect_uri: Your callback URL, registered in the Auth0 application.
            scope: Scopes to ask for; ``offline_access`` brings a refresh token.
            prompt: Auth0's ``prompt`` (``"login"`` asks for credentials again).
            **settings: ``domain``, ``audience`` and ``organization`` are kept
                in the request; the constructor's other settings are accepted
                (one settings dict for ``begin``, ``finish`` and ``resume``)
                and belong to ``finish``.

        Raises:
            ConfigError: Bad arguments (named).
        """
        return begin_login(LoginRequest, client_id, redirect_uri, scope, prompt, settings)

    @classmethod
    def resume(
        cls,
        session_id: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        cache: CacheArg = DEFAULT,
        **settings: Any,
    ) -> AuthorizationCodeAuth:
        """The web session ``session_id`` (from ``finish``), in this worker.

        Any process or host sharing the cache can resume it; their renewals
        are single flight (one refresh per expiry), and ``logout()`` ends it
        for all. No token request is made here.

        Args:
            session_id: ``auth.session_id`` of the ``finish``-ed login.
            client_id: The OAuth client's id.
            client_secret: The client's secret (a wrong one finds nothing).
            cache: The cache ``finish`` used.
            **settings: The constructor's other keyword arguments; ``domain``,
                ``audience`` and ``organization`` must be ``finish``'s.

        Raises:
            NotLoggedInError: No such session (unknown, tampered, logged out,
                expired, or another client secret).
            ConfigError: Bad arguments (named).
            CacheError: The cache cannot be read.
        """

        return resume_session(cls, session_id, client_id, client_secret, cache, settings)


class RefreshTokenAuth(_GrantAuth):
    """A user's tokens from a refresh token, which starts a lineage in the cache.

    The lineage's entry is keyed by a hash of this token and keeps the newest
    rotated one, so passing the same original token on every run keeps
    working. Another refresh token is another session.
    """


#: Grant kind -> its class: the one table is ``_arguments.GRANT_CLASS_NAMES``, which
#: names them for messages; each class learns its kind from it.
_GRANT_CLASSES: dict[str, type[HoxtonAuth]] = {
    kind: globals()[name] for kind, name in GRANT_CLASS_NAMES.items()
}
for _kind, _class in _GRANT_CLASSES.items():
    _class.grant_kind = _kind

# help(HoxtonAuth), inspect.signature and the reference docs' test see every
# keyword with its default, from the one declaration (issue 19, item 4).
_SIGNATURE = constructor_signature(_Constructed.__init__)
_Constructed.__init__.__signature__ = _SIGNATURE  # type: ignore[attr-defined]  # read by inspect
_GrantAuth.__init__.__signature__ = _SIGNATURE  # type: ignore[attr-defined]  # read by inspect
# inspect.signature(HoxtonAuth) reads __new__ (its first parameter is dropped).
HoxtonAuth.__new__.__signature__ = _SIGNATURE  # type: ignore[attr-defined]  # read by inspect


class LoginRequest(LoginRequestData):
    """A web login on its way: the ``/authorize`` URL and what its callback needs.

    Made by ``AuthorizationCodeAuth.begin``. Keep it server-side
    (``to_json``, ``from_json``), in the user's session of your app: it holds
    the PKCE verifier. Any worker can ``finish`` it, once.
    """

    def finish(
        self,
        callback_url: str,
        client_secret: str | None = None,
        *,
        cache: CacheArg = DEFAULT,
        **settings: Any,
    ) -> AuthorizationCodeAuth:
        """Check the callback, exchange its code once, and start the web session.

        Args:
            callback_url: The URL the browser was redirected to (with its
                query: ``code`` and ``state``, or ``error``).
            client_secret: The client's secret (confidential clients).
            cache: The cache every worker shares (a Redis URL for many hosts).
            **settings: The constructor's other keyword arguments (``timeout``,
                ``verify``, ...); ``domain``, ``audience`` and ``organization``
                come from the request.

        Returns:
            An ``AuthorizationCodeAuth`` whose ``session_id`` finds the session
            again in any worker (``AuthorizationCodeAuth.resume``).

        Raises:
            LoginError: A wrong or missing ``state`` (nothing is exchanged), the
                identity provider's error, a callback already finished (here or
                in another process: nothing is exchanged), an expired request,
                or the token endpoint refused the code.
            ConfigError: Bad settings, or ones that contradict the request.
            CacheError: The cache cannot record the callback as used.
        """
        code = self.code_of(callback_url)
        if time.time() > self.created_at + LOGIN_REQUEST_LIFETIME:
            raise LoginError(
                f"this login request is older than {LOGIN_REQUEST_LIFETIME:g}s: "
                "begin the login again"
            )
        identity_settings = {name: getattr(self, name) for name in IDENTITY_SETTINGS}
        check_settings(settings, "finish")
        if "scope" in settings:
            raise ConfigError("finish() takes the scope from the login request (begin's scope=)")
        for name, value in identity_settings.items():
            if name in settings and settings[name] != value:
                raise ConfigError(f"{name}={settings[name]!r} differs from the login request's")
        auth = AuthorizationCodeAuth(
            self.client_id,
            client_secret,
            code=code,
            redirect_uri=self.redirect_uri,
            code_verifier=self.code_verifier,
            cache=cache,
            **{**settings, "scope": self.scope, **identity_settings},
        )
        self.mark_used(auth.cache, auth.config)
        session_id = secrets.token_urlsafe(32)
        identity = web_session_identity(auth.config, session_id)
        try:
            auth._manager.begin_web_session(auth._send_requests, identity)
        except TokenRequestError as exc:
            raise LoginError(f"the token endpoint refused the authorization code: {exc}") from exc
        auth._session_id = session_id
        return auth


def run_login(
    client_id: str,
    client_secret: str | None = None,
    *,
    scope: str | Sequence[str] | None,
    options: LoginOptions,
    **common: Any,
) -> AuthorizationCodeAuth:
    """``HoxtonAuth.login`` (documented there), with its own arguments in ``options``."""
    from ._login import check_login_arguments, obtain_login  # here: see HoxtonAuth.login

    ports = check_login_arguments(options, common)
    session = AuthorizationCodeAuth(client_id, client_secret, scope=scope, **common)
    got = obtain_login(session._manager, options, ports)
    if got is None:
        return session  # a device login: stored, and remembered by this object
    auth = AuthorizationCodeAuth(
        client_id,
        client_secret,
        code=got.code,
        redirect_uri=got.redirect_uri,
        code_verifier=got.code_verifier,
        scope=scope,
        **common,
    )
    try:
        # Replaces the logged-in session, revoking its refresh token (issue 10).
        auth._manager.begin_session(auth._send_requests, login=True)
    except TokenRequestError as exc:
        # str(exc) is already in the server's words ("invalid_grant: ... (HTTP 403)").
        raise LoginError(f"the token endpoint refused the authorization code: {exc}") from exc
    logger.debug("logged in: client_id=%s", client_id)
    return auth
