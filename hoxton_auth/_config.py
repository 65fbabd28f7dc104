"""Client configuration: where to ask for tokens, who is asking, and how patiently.

Also the ``HOXTON_*`` variables (read here only), the one list of grant
arguments (``GRANT_KINDS``) and which session ``hoxton-auth token`` means
(``token_session``). No dataclasses here: this module is on the path of a
``hoxton-auth token`` answered from the cache, which loads neither
``dataclasses`` nor ``inspect`` (tests/test_imports.py, NOT_FOR_CLI_FAST_TOKEN).
So the two value classes are plain classes, as httpx writes its own: explicit
attributes, ``__eq__``, ``__hash__`` and a ``__repr__`` without secrets; they
refuse assignment (``auth.config`` is public, and a changed field would leave
the values derived from it behind).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from urllib.parse import urlencode, urlsplit

from ._errors import ConfigError, InsecureTransportError, warn_once
from ._freshness import DEFAULT_REFRESH_AHEAD

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_DOMAIN",
    "DEFAULT_LEEWAY",
    "ENVIRONMENT",
    "GRANT_ARGUMENTS",
    "GRANT_KINDS",
    "LOGIN_PORT_VARIABLE",
    "ClientConfig",
    "NetworkSettings",
    "cache_key_file",
    "check_bearer_url",
    "default_refresh_ahead",
    "normalize_scope",
    "read_environment",
    "sealing_settings",
    "token_session",
    "unknown_variables",
]

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _cli.py)
if TYPE_CHECKING:
    from ._client_key import PrivateKey
    from ._types import (
        CertArg,
        OtherOrigins,
        PrivateKeyArg,
        RequestFormat,
        ScopeArg,
        SigningAlgorithm,
        VerifyArg,
    )

DEFAULT_AUDIENCE = "https://api.hoxton.cloud"
DEFAULT_DOMAIN = "https://auth.hoxton.ai"
DEFAULT_LEEWAY = 60.0  # seconds before expiry a token is renewed

#: Constructor argument -> the variable it is read from (read in this module only).
ENVIRONMENT = {
    "client_id": "HOXTON_CLIENT_ID",
    "client_secret": "HOXTON_CLIENT_SECRET",
    "username": "HOXTON_USERNAME",
    "password": "HOXTON_PASSWORD",
    "refresh_token": "HOXTON_REFRESH_TOKEN",
    "scope": "HOXTON_SCOPE",
    "audience": "HOXTON_AUDIENCE",
    "domain": "HOXTON_AUTH_DOMAIN",
    "cache": "HOXTON_AUTH_CACHE",
    "private_key": "HOXTON_PRIVATE_KEY_FILE",
    "key_id": "HOXTON_KEY_ID",
}


#: Grant kind -> the constructor arguments that carry it (the one list).
GRANT_KINDS: Mapping[str, tuple[str, ...]] = {
    "client_credentials": (),
    "password": ("username", "password"),
    "authorization_code": ("code", "redirect_uri", "code_verifier"),
    "refresh_token": ("refresh_token",),
}
#: Every argument that carries a grant.
GRANT_ARGUMENTS = tuple(name for names in GRANT_KINDS.values() for name in names)


def token_session(given: Mapping[str, object], login_session: bool = False) -> str:
    """Which session ``hoxton-auth token`` means for the ``given`` arguments (options and
    variables merged): ``"grant"`` (the grant they carry), ``"client"`` (client
    credentials: a secret or a private key, and no grant) or ``"login"`` (the
    session of ``hoxton-auth login``: no client credential, no grant, or
    ``--login-session``).

    The one answer for the CLI's cached fast path and its full path.
    """
    if login_session:
        return "login"
    if any(given.get(name) for name in GRANT_ARGUMENTS):
        return "grant"
    confidential = given.get("client_secret") or given.get("private_key")
    return "client" if confidential else "login"


#: Overrides the login's callback ports (``_arguments.LOGIN_PORTS``).
LOGIN_PORT_VARIABLE = "HOXTON_LOGIN_PORT"
#: The default of ``refresh_ahead=`` (0 turns refreshing ahead off).
REFRESH_AHEAD_VARIABLE = "HOXTON_REFRESH_AHEAD"
#: Where this OS user's login key lives (``_private_file.login_key_path``).
LOGIN_KEY_VARIABLE = "HOXTON_AUTH_LOGIN_KEY"
#: The default of ``allowed_origins=``: more origins that get the token.
ALLOWED_ORIGINS_VARIABLE = "HOXTON_ALLOWED_ORIGINS"
#: The default of ``FileTokenCache(sealing=)``: auto, required or off (``_sealing.py``).
SEALING_VARIABLE = "HOXTON_AUTH_SEALING"
#: The default of ``FileTokenCache(seal_access_tokens=)``: 1 or 0.
SEAL_ACCESS_TOKENS_VARIABLE = "HOXTON_AUTH_SEAL_ACCESS_TOKENS"
#: The default of ``RedisTokenCache(encryption_key_file=)`` for a ``HOXTON_AUTH_CACHE`` URL.
CACHE_KEY_FILE_VARIABLE = "HOXTON_AUTH_CACHE_KEY_FILE"
_KNOWN_VARIABLES = (
    *ENVIRONMENT.values(),
    LOGIN_PORT_VARIABLE,
    REFRESH_AHEAD_VARIABLE,
    LOGIN_KEY_VARIABLE,
    ALLOWED_ORIGINS_VARIABLE,
    SEALING_VARIABLE,
    SEAL_ACCESS_TOKENS_VARIABLE,
    CACHE_KEY_FILE_VARIABLE,
)
_names_checked = False  # os.environ's HOXTON_* names: checked once per process


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``HOXTON_*`` names hoxton-auth does not read (``HOXTON_TEST_*`` are test suites')."""
    return sorted(
        name
        for name in environ
        if name.startswith("HOXTON_")
        and name not in _KNOWN_VARIABLES
        and not name.startswith("HOXTON_TEST_")
    )


def _warn_unknown(names: list[str]) -> None:
    """One ``HoxtonAuthWarning`` for every misspelt variable, each with its closest name."""
    import difflib  # here: only a misspelt variable needs it

    said = []
    for name in names:
        close = difflib.get_close_matches(name, _KNOWN_VARIABLES, n=1, cutoff=0.6)
        said.append(f"{name} (did you mean {close[0]}?)" if close else name)
    message = (
        f"hoxton-auth ignores the environment variable(s) {', '.join(said)}; "
        f"it reads {', '.join(_KNOWN_VARIABLES)}"
    )
    warn_once("unknown variables", ",".join(names), "%s", message)


def read_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The constructor arguments set in the environment.

    Empty variables count as unset, except ``HOXTON_AUTH_DOMAIN``: an empty
    one is a mistake (a template's ``${TENANT}`` that was never filled in),
    and treating it as unset would send the client secret to the production
    tenant. It is kept, and refused (``ConfigError``) before any request.
    """
    global _names_checked
    if environ is None and not _names_checked:
        _names_checked = True
        unknown = unknown_variables(os.environ)
        if unknown:  # a typo would otherwise go to production unnoticed (issue 22)
            _warn_unknown(unknown)
    environ = os.environ if environ is None else environ
    found = {arg: environ[var] for arg, var in ENVIRONMENT.items() if environ.get(var)}
    if environ.get(ENVIRONMENT["domain"]) == "":
        found["domain"] = ""
    return found


def default_refresh_ahead(environ: Mapping[str, str] | None = None) -> float:
    """``$HOXTON_REFRESH_AHEAD`` if set, else ``DEFAULT_REFRESH_AHEAD``.

    Raises:
        ConfigError: The variable is not a number.
    """
    text = (os.environ if environ is None else environ).get(REFRESH_AHEAD_VARIABLE, "").strip()
    if not text:
        return DEFAULT_REFRESH_AHEAD
    try:
        return float(text)
    except ValueError:
        raise ConfigError(
            f"{REFRESH_AHEAD_VARIABLE} must be a fraction of the token's lifetime from 0 "
            f"(off) to 0.5, got {text[:20]!r}"
        ) from None


def sealing_settings(environ: Mapping[str, str] | None = None) -> tuple[str | None, bool]:
    """``$HOXTON_AUTH_SEALING`` (``None`` when unset) and ``$HOXTON_AUTH_SEAL_ACCESS_TOKENS``.

    Raises:
        ConfigError: ``HOXTON_AUTH_SEAL_ACCESS_TOKENS`` is not 1/0, true/false, yes/no.
    """
    environ = os.environ if environ is None else environ
    mode = environ.get(SEALING_VARIABLE, "").strip().lower() or None
    text = environ.get(SEAL_ACCESS_TOKENS_VARIABLE, "").strip().lower()
    if text not in ("", "0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"{SEAL_ACCESS_TOKENS_VARIABLE} must be 1 or 0, got {text[:20]!r}")
    return mode, text in ("1", "true", "yes")


def cache_key_file(environ: Mapping[str, str] | None = None) -> str | None:
    """``$HOXTON_AUTH_CACHE_KEY_FILE``: the encryption key of a Redis cache named by URL."""
    return (os.environ if environ is None else environ).get(CACHE_KEY_FILE_VARIABLE) or None


def normalize_scope(scope: ScopeArg) -> str | None:
    """Return scope as one space separated string, duplicates dropped, order kept.

    Raises:
        ConfigError: If ``scope`` is neither a string nor a sequence of strings.
    """
    if scope is None:
        return None
    if isinstance(scope, str):
        parts = scope.split()
    elif isinstance(scope, Sequence) and all(isinstance(s, str) for s in scope):
        parts = [word for item in scope for word in item.split()]
    else:
        raise ConfigError("scope must be a space separated string or a sequence of strings")
    return " ".join(dict.fromkeys(parts)) or None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    # Here, not at the top: an https:// domain, as on a cached `hoxton-auth
    # token`, never needs ipaddress.
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_DEFAULT_PORTS = {"https": 443, "http": 80}


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: lower case, the scheme's default port left out.

    Raises:
        ValueError: ``url`` has no host, or a port that is not a number.
    """
    parts = urlsplit(url.strip())
    scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    if not scheme or not host:
        raise ValueError("not an absolute URL")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    return f"{scheme}://{netloc}"


def _allowed_origins(given: Sequence[str] | str | None, audience: str) -> tuple[str, ...]:
    """The origins that get the token: the audience's ``https`` origin, plus those given
    (``None``: ``$HOXTON_ALLOWED_ORIGINS``, space or comma separated).

    Raises:
        ConfigError: A given origin is not ``https://host[:port]`` (or ``http://``, which
            gets the token only with ``allow_insecure_http`` or on loopback).
    """
    if given is None:
        given = os.environ.get(ALLOWED_ORIGINS_VARIABLE, "")
    if isinstance(given, str):
        given = given.replace(",", " ").split()
    origins: list[str] = []
    if audience[:8].lower() == "https://":
        origins.append(origin_of(audience))
    for text in given:
        try:
            origin = origin_of(text) if isinstance(text, str) else ""
        except ValueError:
            origin = ""
        parts = urlsplit(text.strip()) if isinstance(text, str) else None
        bare = parts is not None and parts.path in ("", "/") and not parts.query
        bare = bare and parts is not None and not parts.fragment and not parts.username
        if not origin.startswith(("https://", "http://")) or not bare:
            raise ConfigError(
                f"allowed_origins: {str(text)[:80]!r} is not an origin like https://files.example "
                f"(a scheme and a host, with a port if not the default, no path)"
            )
        origins.append(origin)
    return tuple(dict.fromkeys(origins))


def check_bearer_url(url: str, *, allow_insecure_http: bool) -> None:
    """Refuse to send a bearer token to ``url`` over cleartext.

    A bearer token is a password for its lifetime (RFC 6750 §5.3: "clients
    MUST always use TLS"): only ``https://`` URLs and loopback hosts get one,
    unless the user said ``allow_insecure_http=True``.

    Raises:
        InsecureTransportError: ``url`` is ``http://`` (or another cleartext
            scheme) on a host other than loopback.
    """
    if allow_insecure_http or url[:8].lower() == "https://":
        return
    parts = urlsplit(url)
    if parts.scheme.lower() == "https":
        return
    host = parts.hostname or ""
    if parts.scheme.lower() == "http" and _is_loopback(host):
        return
    # Only scheme and host are echoed: the path or query may carry secrets.
    raise InsecureTransportError(
        f"refusing to send a bearer token over cleartext to {parts.scheme}://{host}: "
        "use https://, or pass allow_insecure_http=True if this network is trusted"
    )


#: Paths of the tenant's endpoints: a domain ending in one is an endpoint's URL
#: pasted in place of the tenant's (its token URL would be .../oauth/token/oauth/token).
_ENDPOINT_PATHS = (
    "/oauth/token",
    "/oauth/revoke",
    "/oauth/device/code",
    "/authorize",
    "/userinfo",
    "/v2/logout",
    "/.well-known/openid-configuration",
    "/.well-known/jwks.json",
)


def _check_domain(domain: object) -> str:
    if not isinstance(domain, str):
        raise ConfigError(f"domain must be an https:// URL string, got {type(domain).__name__}")
    if not domain.strip():
        raise ConfigError(
            f"domain is empty (is {ENVIRONMENT['domain']} set to an empty value?): set it "
            f"to the tenant's https:// URL, or unset it for {DEFAULT_DOMAIN}"
        )
    parts = urlsplit(domain)
    if "@" in parts.netloc:
        # Not echoed: a user:password in the URL would reach logs and messages.
        raise ConfigError("domain must not carry a user name or password")
    try:
        parts.port  # noqa: B018  urlsplit checks the port only when it is read
    except ValueError:
        raise ConfigError(f"domain has an invalid port: {domain!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"domain must be an https:// URL, got {domain!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"domain {domain!r} uses plain http://; only loopback hosts may "
            "(127.0.0.1, ::1, localhost): secrets would cross the network in clear"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"domain must not carry a query or fragment, got {domain!r}")
    path = parts.path.rstrip("/")
    for endpoint in _ENDPOINT_PATHS:
        if path.lower().endswith(endpoint):
            tenant = f"{parts.scheme}://{parts.netloc}{path[: -len(endpoint)]}"
            raise ConfigError(
                f"domain {domain!r} has the path of an endpoint ({endpoint}): give the "
                f"tenant's address only, {tenant!r}; the library adds the paths"
            )
    if domain != domain.strip():
        raise ConfigError(f"domain has spaces around it: {domain!r}")
    return domain.rstrip("/")


def _warn_whitespace(name: str) -> None:
    # Auth0 never issues one with spaces: most likely a newline from a file or
    # a copy and paste; sent as given (a password may end in a space), but said.

    message = (
        f"{name} has whitespace (a space or newline) at its start or end, which Auth0's "
        f"{name.replace('_', ' ')}s never have; it is sent as given: strip it if the "
        f"tenant answers invalid_client"
    )
    warn_once("whitespace", name, "%s", message)


def _check_positive(name: str, value: float) -> None:
    bad_type = isinstance(value, bool) or not isinstance(value, (int, float))
    if bad_type or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_path_arg(name: str, value: object) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{name} must be a path, got {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{name} must be a non-empty path")
    # Checked now, not at the first token request: there, the TLS library's
    # OSError would come from frames that hold the encoded form (issue 22).
    if not os.path.exists(path):
        raise ConfigError(f"{name}={path!r}: no such file or directory")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{name}={path!r}: not readable by this user")
    return path


#: The constructor's keywords that become a ``NetworkSettings`` (its fields).
NETWORK_ARGUMENTS = ("verify", "cert", "proxy", "trust_env")


class NetworkSettings:
    """How token requests (and ``/oauth/revoke``) reach the identity provider.

    The same settings serve the requests transport and the httpx transports.
    A value: compared and hashed by its fields (the httpx transport caches
    its TLS context by them), immutable.

    Attributes:
        verify: True checks the server's certificate against the default CA
            bundle (or, with ``trust_env``, the environment's:
            ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` for requests,
            ``SSL_CERT_FILE``/``SSL_CERT_DIR`` for httpx); a path names a CA
            bundle file (or directory); False turns checking off.
        cert: A client certificate for mutual TLS: one PEM file holding the
            certificate and its key, or a ``(certificate, key)`` pair of paths.
        proxy: A proxy URL for every token request; None uses the
            environment's ``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY`` when
            ``trust_env`` is true.
        trust_env: Read proxies and CA bundles from the environment.
    """

    verify: bool | str
    cert: str | tuple[str, str] | None
    proxy: str | None
    trust_env: bool

    def __init__(
        self,
        verify: VerifyArg = True,
        cert: CertArg = None,
        proxy: str | None = None,
        trust_env: bool = True,
    ) -> None:
        """Check and normalise the settings (paths become strings).

        Raises:
            ConfigError: An argument has the wrong type, or a file is missing.
        """
        if not isinstance(verify, bool):
            verify = _check_path_arg("verify", verify)
        if isinstance(cert, tuple):
            if len(cert) != 2:
                raise ConfigError("cert must be a path or a (certificate, key) pair of paths")
            cert = (_check_path_arg("cert", cert[0]), _check_path_arg("cert", cert[1]))
        elif cert is not None:
            cert = _check_path_arg("cert", cert)
        if proxy is not None:
            if not isinstance(proxy, str):
                raise ConfigError(f"proxy must be a URL string, got {type(proxy).__name__}")
            if urlsplit(proxy).scheme not in ("http", "https", "socks5", "socks5h"):
                # Not echoed: a proxy URL may carry user:password.
                raise ConfigError("proxy must be an http://, https:// or socks5:// URL")
        if not isinstance(trust_env, bool):
            raise ConfigError(f"trust_env must be True or False, got {trust_env!r}")
        # Set once, in the instance's __dict__: __setattr__ refuses.
        self.__dict__.update(verify=verify, cert=cert, proxy=proxy, trust_env=trust_env)

    def for_url(self, url: str) -> NetworkSettings:
        """The settings to send to ``url`` with: no proxy at all for a cleartext URL.

        A token request carries the client secret or a password. Over
        ``http://`` (allowed for loopback hosts only) a proxy, given or from
        ``HTTP_PROXY``, would read it in clear, and would reach its own
        loopback, not ours: such requests go direct (issue 22).
        """
        if url[:7].lower() != "http://":
            return self
        return NetworkSettings(self.verify, self.cert, None, trust_env=False)

    def _fields(self) -> tuple[object, ...]:
        return (self.verify, self.cert, self.proxy, self.trust_env)

    def __eq__(self, other: object) -> bool:
        if type(other) is not NetworkSettings:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"NetworkSettings is immutable: cannot assign {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"NetworkSettings is immutable: cannot delete {name!r}")

    def __repr__(self) -> str:
        # The proxy URL may carry user:password: show only whether there is one.
        proxy = "set" if self.proxy else None
        return (
            f"NetworkSettings(verify={self.verify!r}, cert={self.cert!r}, "
            f"proxy={proxy!r}, trust_env={self.trust_env!r})"
        )


def _load_private_key(
    config: ClientConfig,
    private_key: PrivateKeyArg | PrivateKey | None,
    key_id: str | None,
    signing_algorithm: str | None,
) -> PrivateKey | None:
    """The ``PrivateKey`` of ``private_key=`` (issue 24), checked against the other arguments.

    Raises:
        ConfigError: A secret and a key together, ``key_id`` or
            ``signing_algorithm`` without a key, or a key that does not load.
    """
    if private_key is None:
        if key_id is not None or signing_algorithm is not None:
            raise ConfigError("key_id and signing_algorithm need private_key")
        return None
    if config.client_secret is not None:
        raise ConfigError(
            "client_secret and private_key are two ways for the client to authenticate: "
            f"give one (is {ENVIRONMENT['client_secret']} or {ENVIRONMENT['private_key']} "
            "left in the environment?)"
        )
    # Here, not at the top: a client secret never loads cryptography
    # (tests/test_imports.py, NOT_FOR_CACHED_TOKEN).
    try:
        from ._client_key import PrivateKey
    except ImportError:
        raise ConfigError(
            "private_key needs the cryptography package: pip install 'hoxton-auth[private-key-jwt]'"
        ) from None

    if isinstance(private_key, PrivateKey):
        if key_id is not None or signing_algorithm is not None:
            raise ConfigError("key_id and signing_algorithm belong to the PrivateKey given")
        return private_key
    return PrivateKey(private_key, key_id, signing_algorithm)


class ClientConfig:
    """Everything about the OAuth client that is the same for every grant.

    Built by ``HoxtonAuth``; validated on construction. A value: compared and
    hashed by its fields, immutable; its ``repr`` leaves out the client secret
    (a private key shows only its public thumbprint, the network settings
    only whether there is a proxy).

    Attributes (beyond the constructor's namesakes): ``backoff_base`` and
    ``backoff_cap`` shape the full-jitter backoff (the n-th retry waits a
    random 0..min(cap, base * 2**(n-1)) seconds; tiny in tests), which the
    deadline and ``max_attempts`` still bound. ``organization`` is the Auth0
    Organization the token is for (sent with client credentials; part of the
    cache identity). ``forwarded_for`` is the end user's IP, sent as
    ``auth0-forwarded-for`` with password grants made by a server, so that
    brute-force protection counts the user's address, not the server's.
    ``network`` holds the TLS and proxy settings of token requests;
    ``allow_insecure_http`` lets API calls send the token over plain http://.
    ``refresh_ahead`` is the fraction of a token's lifetime before its renewal
    point when one background renewal starts (``_freshness.py``; 0: never;
    ``None``: ``$HOXTON_REFRESH_AHEAD``, else ``DEFAULT_REFRESH_AHEAD``).

    The defaults of ``__init__`` are the constructor's: ``help(HoxtonAuth)``
    shows them from here (``_arguments.constructor_signature``).
    """

    client_id: str
    client_secret: str | None
    domain: str
    audience: str
    scope: str | None
    leeway: float
    timeout: float
    retry_deadline: float
    max_attempts: int
    token_request_format: RequestFormat
    backoff_base: float
    backoff_cap: float
    organization: str | None
    forwarded_for: str | None
    network: NetworkSettings
    allow_insecure_http: bool
    refresh_ahead: float
    allowed_origins: tuple[str, ...]
    other_origins: OtherOrigins
    private_key: PrivateKey | None

    def __init__(
        self,
        client_id: str,
        client_secret: str | None = None,
        domain: str = DEFAULT_DOMAIN,
        audience: str = DEFAULT_AUDIENCE,
        scope: ScopeArg = None,
        leeway: float = DEFAULT_LEEWAY,
        timeout: float = 30.0,
        retry_deadline: float = 60.0,
        max_attempts: int = 5,
        token_request_format: RequestFormat = "form",  # noqa: S107  a format name
        backoff_base: float = 0.5,
        backoff_cap: float = 10.0,
        organization: str | None = None,
        forwarded_for: str | None = None,
        network: NetworkSettings | None = None,
        allow_insecure_http: bool = False,
        refresh_ahead: float | None = None,
        allowed_origins: Sequence[str] | str | None = None,
        other_origins: OtherOrigins = "warn",
        private_key: PrivateKeyArg | PrivateKey | None = None,
        key_id: str | None = None,
        signing_algorithm: SigningAlgorithm | None = None,
    ) -> None:
        """Check and normalise the fields (the domain, the scope, the origins).

        Raises:
            ConfigError: A field is missing, of the wrong type or out of range.
        """
        # Set once, in the instance's __dict__ (__setattr__ refuses); checked in place.
        self.__dict__.update(
            client_id=client_id,
            client_secret=client_secret,
            domain=domain,
            audience=audience,
            scope=scope,
            leeway=leeway,
            timeout=timeout,
            retry_deadline=retry_deadline,
            max_attempts=max_attempts,
            token_request_format=token_request_format,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            organization=organization,
            forwarded_for=forwarded_for,
            network=NetworkSettings() if network is None else network,
            allow_insecure_http=allow_insecure_http,
            refresh_ahead=default_refresh_ahead() if refresh_ahead is None else refresh_ahead,
            allowed_origins=_allowed_origins(allowed_origins, audience)
            if isinstance(audience, str)
            else (),
            other_origins=other_origins,
            private_key=None,
        )
        self._check()
        self.__dict__["private_key"] = _load_private_key(
            self, private_key, key_id, signing_algorithm
        )

    def _fields(self) -> tuple[object, ...]:
        return (
            self.client_id,
            self.client_secret,
            self.domain,
            self.audience,
            self.scope,
            self.leeway,
            self.timeout,
            self.retry_deadline,
            self.max_attempts,
            self.token_request_format,
            self.backoff_base,
            self.backoff_cap,
            self.organization,
            self.forwarded_for,
            self.network,
            self.allow_insecure_http,
            self.refresh_ahead,
            self.allowed_origins,
            self.other_origins,
            self.private_key,
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not ClientConfig:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ClientConfig is immutable: cannot assign {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ClientConfig is immutable: cannot delete {name!r}")

    def __repr__(self) -> str:
        # Every field but client_secret, in __init__'s order.
        return (
            f"ClientConfig(client_id={self.client_id!r}, domain={self.domain!r}, "
            f"audience={self.audience!r}, scope={self.scope!r}, leeway={self.leeway!r}, "
            f"timeout={self.timeout!r}, retry_deadline={self.retry_deadline!r}, "
            f"max_attempts={self.max_attempts!r}, "
            f"token_request_format={self.token_request_format!r}, "
            f"backoff_base={self.backoff_base!r}, backoff_cap={self.backoff_cap!r}, "
            f"organization={self.organization!r}, forwarded_for={self.forwarded_for!r}, "
            f"network={self.network!r}, allow_insecure_http={self.allow_insecure_http!r}, "
            f"refresh_ahead={self.refresh_ahead!r}, allowed_origins={self.allowed_origins!r}, "
            f"other_origins={self.other_origins!r}, private_key={self.private_key!r})"
        )

    def _check(self) -> None:
        if not isinstance(self.client_id, str) or not self.client_id.strip():
            raise ConfigError("client_id is required and must be a non-empty string")
        if self.client_secret is not None and (
            not isinstance(self.client_secret, str) or not self.client_secret
        ):
            raise ConfigError("client_secret must be a non-empty string or None")
        for name in ("client_id", "client_secret"):
            value = getattr(self, name)
            if isinstance(value, str) and value != value.strip():
                _warn_whitespace(name)
        if not isinstance(self.audience, str) or not self.audience:
            raise ConfigError("audience must be a non-empty string")
        for name in ("organization", "forwarded_for"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{name} must be a non-empty string or None")
        self.__dict__["domain"] = _check_domain(self.domain)
        self.__dict__["scope"] = normalize_scope(self.scope)
        _check_positive("leeway", self.leeway)
        _check_positive("retry_deadline", self.retry_deadline)
        _check_positive("timeout", self.timeout)
        _check_positive("backoff_base", self.backoff_base)
        _check_positive("backoff_cap", self.backoff_cap)
        if self.timeout == 0:
            raise ConfigError("timeout must be greater than 0")
        if self.other_origins not in ("warn", "raise"):
            raise ConfigError(
                f"other_origins must be 'warn' or 'raise', got {self.other_origins!r}"
            )
        _check_positive("refresh_ahead", self.refresh_ahead)
        if self.refresh_ahead > 0.5:
            raise ConfigError(
                f"refresh_ahead is a fraction of the token's lifetime, from 0 (off) to 0.5, "
                f"got {self.refresh_ahead!r}"
            )
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ConfigError(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")
        if not isinstance(self.network, NetworkSettings):
            raise ConfigError("network must be a NetworkSettings")
        if not isinstance(self.allow_insecure_http, bool):
            raise ConfigError(
                f"allow_insecure_http must be True or False, got {self.allow_insecure_http!r}"
            )
        if self.token_request_format not in ("form", "json"):
            raise ConfigError(
                f"token_request_format must be 'form' or 'json', got {self.token_request_format!r}"
            )

    def may_send_token(self, url: str) -> bool:
        """Whether a request to ``url`` may carry the bearer token (DESIGN.md, "Where the
        token goes"): the API's origins (the audience's ``https`` origin and
        ``allowed_origins``) and loopback, never over cleartext to another host.

        With an audience that is not an ``https`` URL (Auth0 allows any
        identifier) and no ``allowed_origins``, any ``https`` origin: nothing
        says where the API is.

        Returns ``False`` for another origin, which then gets the request
        without the token, with one ``HoxtonAuthWarning`` per origin.

        Raises:
            InsecureTransportError: ``url`` is cleartext to a host other than
                loopback (and ``allow_insecure_http`` is off), or another origin
                with ``other_origins="raise"``.
        """
        check_bearer_url(url, allow_insecure_http=self.allow_insecure_http)
        try:
            origin = origin_of(url)
        except ValueError:
            return False  # no host: nowhere to send a token
        if origin in self.allowed_origins or _is_loopback(urlsplit(origin).hostname or ""):
            return True
        if not self.allowed_origins:  # nothing pins the API to an origin: say so once
            warn_once(
                "unpinned",
                self.audience,
                "the audience %r is not an https URL, so nothing says where the API is: the "
                "token goes to every https origin; set allowed_origins= (or %s) to the API's "
                "origin to keep it there",
                self.audience,
                ALLOWED_ORIGINS_VARIABLE,
            )
            return True
        message = (
            f"not sending the Hoxton token to {origin}: it is not the API's origin "
            f"({', '.join(self.allowed_origins)}); add it to allowed_origins= (or "
            f"{ALLOWED_ORIGINS_VARIABLE}) if it should get the token"
        )
        if self.other_origins == "raise":
            raise InsecureTransportError(message)
        warn_once("other origin", f"{origin} {self.allowed_origins}", "%s", message)
        return False

    @property
    def client_credential(self) -> str | None:
        """What authenticates the client, for binding cache entries (``_identity.py``):
        the secret, or the private key's public thumbprint; ``None`` for a public client."""
        if self.private_key is not None:
            return f"private-key-jwt:{self.private_key.thumbprint}"
        return self.client_secret

    @property
    def assertion_audience(self) -> str:
        """The ``aud`` of a client assertion: the tenant's URL with a trailing slash (Auth0)."""
        return self.domain + "/"

    @property
    def token_url(self) -> str:
        """The token endpoint, ``domain + "/oauth/token"``."""
        return self.domain + "/oauth/token"

    @property
    def revoke_url(self) -> str:
        """The revocation endpoint, ``domain + "/oauth/revoke"``."""
        return self.domain + "/oauth/revoke"

    @property
    def device_code_url(self) -> str:
        """The device authorization endpoint (RFC 8628 §3.1), Auth0's ``/oauth/device/code``."""
        return self.domain + "/oauth/device/code"

    @property
    def logout_url(self) -> str:
        """Auth0's logout page for this client: it ends the browser's session at the tenant."""
        return f"{self.domain}/v2/logout?{urlencode({'client_id': self.client_id})}"

    @property
    def authorize_url(self) -> str:
        """The browser step of the authorization code flow."""
        return self.domain + "/authorize"

    @property
    def wants_refresh_token(self) -> bool:
        """Whether ``offline_access`` was asked for."""
        return self.scope is not None and "offline_access" in self.scope.split()
