"""``HoxtonAuth``: configuration, grant, cache and both adapters put together.

``HoxtonAuth(...)`` returns one of the four grant classes of
``_grant_auths.py``; everything they share is here: checking the arguments,
the cache entry's identity, and the public methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ._cache_arg import DEFAULT, CacheArg, resolve_cache
from ._config import (
    DEFAULT_AUDIENCE,
    DEFAULT_DOMAIN,
    CertArg,
    ClientConfig,
    NetworkSettings,
    RequestFormat,
    VerifyArg,
    normalize_scope,
)
from ._errors import ConfigError
from ._grants import Grant
from ._httpx import HttpxAuth, HttpxTransport
from ._identity import identity_for
from ._requests import RequestsAuth, RequestsTransport
from ._session import OnToken, TokenInfo, TokenManager

if TYPE_CHECKING:
    from ._cache import TokenCache
    from ._grant_auths import AuthorizationCodeAuth

__all__ = ["LOGIN_SCOPE", "HoxtonAuth"]

LOGIN_SCOPE = "openid profile offline_access"
"""What ``login()`` asks for by default: an ID token and a refresh token."""

_AuthT = TypeVar("_AuthT", bound="HoxtonAuth")


class HoxtonAuth(RequestsAuth, HttpxAuth):
    """Authenticate ``requests`` and ``httpx`` calls to the HoxtonAI API.

    ``HoxtonAuth(...)`` picks the grant from its arguments and returns a
    ``ClientCredentialsAuth``, ``PasswordAuth``, ``AuthorizationCodeAuth`` or
    ``RefreshTokenAuth``. See the README for every argument.

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
        forwarded_for: With the password grant: the end user's IP, sent as
            ``auth0-forwarded-for`` so brute-force protection counts the user.
        otp: With the password grant: a callable returning the current one-time
            code, used when Auth0 answers ``mfa_required``.
        verify: For token requests: True (the default CA bundle, or the
            environment's with ``trust_env``), a CA bundle path, or False.
        cert: Client certificate for mutual TLS with the token endpoint: a
            PEM file with certificate and key, or a ``(cert, key)`` pair.
        proxy: Proxy URL for token requests (default: the environment's).
        trust_env: Read ``HTTPS_PROXY``, ``NO_PROXY``, ``SSL_CERT_FILE``,
            ``REQUESTS_CA_BUNDLE`` and the like from the environment.
        allow_insecure_http: Send the bearer token to ``http://`` API URLs
            on hosts other than loopback (refused by default).
        on_token: Called with a ``TokenInfo`` (no secret in it) after every
            fetch or refresh this object makes, for metrics and logs; its
            exceptions are logged, never raised. It runs in the fetching
            thread while the cache lock is held: keep it quick.

    Raises:
        ConfigError: Arguments missing or contradictory (a ``ValueError``).
    """

    grant_kind: ClassVar[str] = ""
    _allowed: ClassVar[frozenset[str]] = frozenset()

    def __new__(cls, *args: Any, **kwargs: Any) -> HoxtonAuth:
        if cls is HoxtonAuth:
            # Here, not at the top: the grant classes are subclasses of this one.
            from ._grant_auths import infer_class

            cls = infer_class(kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        client_id: str,
        client_secret: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        code: str | None = None,
        redirect_uri: str | None = None,
        code_verifier: str | None = None,
        refresh_token: str | None = None,
        scope: str | Sequence[str] | None = None,
        audience: str = DEFAULT_AUDIENCE,
        domain: str = DEFAULT_DOMAIN,
        cache: CacheArg = DEFAULT,
        leeway: float = 60.0,
        timeout: float = 30.0,
        retry_deadline: float = 60.0,
        token_request_format: RequestFormat = "form",  # noqa: S107  a format name, not a secret
        max_attempts: int = 5,
        organization: str | None = None,
        realm: str | None = None,
        forwarded_for: str | None = None,
        otp: Callable[[], str] | None = None,
        verify: VerifyArg = True,
        cert: CertArg = None,
        proxy: str | None = None,
        trust_env: bool = True,
        allow_insecure_http: bool = False,
        on_token: OnToken | None = None,
    ) -> None:
        # issue 12: grant extras of the password grant only
        self._realm, self._otp = realm, otp
        if (realm is not None or otp is not None) and self.grant_kind != "password":
            raise ConfigError("realm and otp belong to the password grant (username/password)")
        arguments = {
            "username": username,
            "password": password,
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
            "refresh_token": refresh_token,
        }
        foreign = sorted(
            n for n, v in arguments.items() if v is not None and n not in self._allowed
        )
        if foreign:
            raise ConfigError(
                f"{type(self).__name__} does not take {', '.join(foreign)}: "
                "those arguments belong to another grant"
            )
        for name, value in arguments.items():
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{name} must be a non-empty string")
        self.config = ClientConfig(
            client_id=client_id,
            client_secret=client_secret,
            domain=domain,
            audience=audience,
            scope=normalize_scope(scope),
            leeway=leeway,
            timeout=timeout,
            retry_deadline=retry_deadline,
            max_attempts=max_attempts,
            token_request_format=token_request_format,
            organization=organization,
            forwarded_for=forwarded_for,
            network=NetworkSettings.from_args(verify, cert, proxy, trust_env),
            allow_insecure_http=allow_insecure_http,
        )
        # The auth object owns its token-request clients' settings (issue 14):
        # one transport per HTTP library, holding this object's verify/cert/proxy.
        self._send_requests = RequestsTransport(self.config.network)
        self._send_httpx = HttpxTransport(self.config.network)
        grant = self._grant(**arguments)
        # Whose entry this is (issue 10): see _identity.py.
        identity = identity_for(self.config, grant, refresh_token)
        self._manager = TokenManager(
            self.config, grant, resolve_cache(cache), identity, refresh_token, on_token
        )

    @property
    def cache(self) -> TokenCache:
        """The cache this object really uses: the one given, or memory after a fallback."""
        return self._manager.cache

    def _grant(self, **arguments: str | None) -> Grant | None:
        raise NotImplementedError  # pragma: no cover  every subclass says which grant

    # -- other ways to build one ---------------------------------------------------

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

        Browser: a one-shot server on the loopback address receives the
        redirect to ``http://<redirect_host>:<port>/callback`` (a redirect
        with a wrong or missing ``state`` is answered 400 and the wait goes
        on); the browser is opened with ``webbrowser`` (which honours
        ``$BROWSER``), and the URL is printed to stderr for when it cannot open.

        Device (RFC 8628): the verification URL and user code are printed
        to stderr, to be opened on any other device, while the token
        endpoint is polled at the server's ``interval``. Needs an Auth0
        Native application with the Device Code grant enabled.

        Either way the tokens (and, with ``offline_access``, the refresh
        token) go to the cache as this OS user's logged-in session of
        (domain, client, audience), where later ``AuthorizationCodeAuth(client_id)``
        objects and other processes find them without logging in again,
        whatever scope they spell. It replaces the previous login, whose
        refresh token is revoked (best effort).

        Args:
            client_id: The OAuth client's id (its callback URLs must allow
                the redirect URI).
            client_secret: For confidential clients; public ones use PKCE only.
            scope: Scopes to ask for; ``offline_access`` brings a refresh token.
            port: Port of the loopback server; ``None`` tries
                ``$HOXTON_LOGIN_PORT``, else 8765, 8766, 8767, 8768 (the
                first free one); 0 picks any free port.
            redirect_host: ``"127.0.0.1"`` or ``"localhost"``, as registered
                in the client's allowed callback URLs.
            open_browser: False only prints the URL.
            timeout: Seconds to wait for the browser to come back, or for
                the device code to be approved.
            device: True for the device flow, False for the browser; None
                picks the device flow when no browser can be opened here
                (an SSH session, or Linux without a display, and no ``$BROWSER``).
            prompt: Auth0's ``prompt``; ``"login"`` asks for the credentials
                even when the browser is still logged in (to switch accounts).
            **common: ``audience``, ``domain``, ``cache`` and the other
                keyword arguments of the constructor, except ``timeout``.

        Returns:
            An ``AuthorizationCodeAuth`` holding the new session.

        Raises:
            LoginError: Timeout, ``access_denied``, an expired device code,
                every callback port busy, or the token endpoint refused the code.
            ConfigError: Arguments missing or contradictory.
            TokenEndpointUnreachableError: The network failed after retries.
        """
        from ._login import login  # lazily: http.server and webbrowser are not free

        return login(
            client_id,
            client_secret,
            scope=scope,
            port=port,
            redirect_host=redirect_host,
            open_browser=open_browser,
            timeout=timeout,
            device=device,
            prompt=prompt,
            **common,
        )

    @classmethod
    def from_env(cls: type[_AuthT], **overrides: Any) -> _AuthT:
        """Build an auth object from ``HOXTON_*`` environment variables.

        Reads ``HOXTON_CLIENT_ID``, ``HOXTON_CLIENT_SECRET``,
        ``HOXTON_USERNAME``, ``HOXTON_PASSWORD``, ``HOXTON_REFRESH_TOKEN``,
        ``HOXTON_SCOPE``, ``HOXTON_AUDIENCE``, ``HOXTON_AUTH_DOMAIN`` and
        ``HOXTON_AUTH_CACHE``; empty variables count as unset. Keyword
        arguments of the constructor win over the environment; a grant
        argument given here replaces all the grant variables.

        Raises:
            ConfigError: A required variable is missing (the message names
                it), or the variables contradict each other.
        """
        from ._env import from_env

        return from_env(cls, **overrides)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"{type(self).__name__}(client_id={c.client_id!r}, domain={c.domain!r}, "
            f"audience={c.audience!r}, scope={c.scope!r})"
        )

    # -- tokens for code that is not requests/httpx --------------------------------

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

        Reports the token this object last used, else the one in the cache
        for its identity; ``None`` when there is none yet (call ``get_token()``
        first). Never sends a request.
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
