"""The constructor's and ``login()``'s arguments, without an HTTP library: what they build.

The keyword arguments are declared once, in the ``TypedDict``s at the end
(``Settings`` and the grant ones): mypy reads them through the overloads of
``HoxtonAuth(...)``, and ``help()`` and ``inspect.signature`` through
``constructor_signature``, which adds the defaults that apply. Also which
grant they choose (``grant_kind_of``), the ``HOXTON_*`` variables, the
``cache=`` argument (``resolve_cache``) and the session they build
(``build_session``), which passes them on as one mapping. ``HoxtonAuth`` and
the CLI both use it; it imports neither requests nor httpx, so ``hoxton-auth
token`` answered from the cache never loads them.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from ._cache import MemoryTokenCache, TokenCache
from ._config import (
    ENVIRONMENT,
    GRANT_ARGUMENTS,
    GRANT_KINDS,
    NETWORK_ARGUMENTS,
    ClientConfig,
    NetworkSettings,
    read_environment,
)
from ._errors import CacheUnavailableError, ConfigError, warn_once
from ._file_cache import FileTokenCache
from ._grants import check_grant_arguments, grant_for
from ._identity import identity_for
from ._session import TokenManager

if TYPE_CHECKING:
    from typing_extensions import Required  # typing.Required is 3.11+; only type checkers read it

    from ._types import (
        CacheArg,
        CertArg,
        OnToken,
        OtherOrigins,
        PrivateKeyArg,
        RequestFormat,
        ScopeArg,
        SigningAlgorithm,
        VerifyArg,
    )

__all__ = [
    "DEFAULT",
    "ENVIRONMENT",
    "GRANT_CLASS_NAMES",
    "KEYWORDS",
    "LOGIN_SCOPE",
    "AllArgs",
    "CodeArgs",
    "PasswordArgs",
    "RefreshArgs",
    "Settings",
    "build_session",
    "check_environment",
    "constructor_signature",
    "gather",
    "grant_kind_of",
    "read_environment",
    "resolve_cache",
    "session_from_env",
]


#: Grant kind -> the auth class of that grant (in ``_auth.py``), for messages.
GRANT_CLASS_NAMES: Mapping[str, str] = {
    "client_credentials": "ClientCredentialsAuth",
    "password": "PasswordAuth",
    "authorization_code": "AuthorizationCodeAuth",
    "refresh_token": "RefreshTokenAuth",
}


# -- which grant -----------------------------------------------------------------------


def grant_kind_of(arguments: Mapping[str, Any]) -> str:
    """The grant kind ``HoxtonAuth(**arguments)`` stands for (the first that applies)."""
    given = {name for name in GRANT_ARGUMENTS if arguments.get(name) is not None}
    for kind in ("password", "authorization_code", "refresh_token"):
        if given.intersection(GRANT_KINDS[kind]):
            return kind
    return "client_credentials"


# -- the HOXTON_* variables -----------------------------------------------------------


def gather(kind: str | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments ``from_env(**overrides)`` would use.

    Args:
        kind: The grant kind of the class ``from_env`` was called on, or
            ``None`` for ``HoxtonAuth`` (which infers it).
        overrides: The keyword arguments given; they win over the environment.
    """
    found = read_environment()
    # Grant arguments travel as a group: an explicit refresh_token must not be
    # mixed with a HOXTON_USERNAME left in the environment.
    if any(overrides.get(name) is not None for name in GRANT_ARGUMENTS):
        found = {k: v for k, v in found.items() if k not in GRANT_ARGUMENTS}
    if kind is not None:
        # A grant class takes only its own grant arguments from the environment.
        allowed = GRANT_KINDS[kind]
        found = {k: v for k, v in found.items() if k not in GRANT_ARGUMENTS or k in allowed}
    return {**found, **overrides}


def check_environment(kind: str | None, kwargs: Mapping[str, Any]) -> None:
    """Name the missing or clashing variable before the constructor names the argument.

    Raises:
        ConfigError: A required variable is missing (named), or they clash.
    """

    def given(name: str) -> bool:
        return kwargs.get(name) is not None

    if not given("client_id"):
        raise ConfigError("HOXTON_CLIENT_ID is not set (nor client_id given)")
    if kind is None and given("refresh_token") and (given("username") or given("password")):
        raise ConfigError(
            "HOXTON_REFRESH_TOKEN and HOXTON_USERNAME/HOXTON_PASSWORD are both set: "
            "they are two different grants, unset one"
        )
    chosen = grant_kind_of(kwargs) if kind is None else kind
    if chosen == "password":
        for name in ("username", "password"):
            if not given(name):
                raise ConfigError(f"{ENVIRONMENT[name]} is not set (nor {name} given)")
    if kind == "refresh_token" and not given("refresh_token"):
        raise ConfigError("HOXTON_REFRESH_TOKEN is not set (nor refresh_token given)")
    if chosen == "client_credentials" and not (given("client_secret") or given("private_key")):
        raise ConfigError(
            "HOXTON_CLIENT_SECRET is not set (nor client_secret given): the "
            "client_credentials grant needs it (or HOXTON_PRIVATE_KEY_FILE, for Private "
            "Key JWT); for a user's tokens set "
            "HOXTON_USERNAME and HOXTON_PASSWORD or HOXTON_REFRESH_TOKEN, or log in "
            "(`hoxton-auth login`) and use AuthorizationCodeAuth.from_env()"
        )


# -- the cache= argument --------------------------------------------------------------


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()
"""The shared file cache (``FileTokenCache()``); the default of ``cache=``."""

_REDIS_SCHEMES = ("redis", "rediss", "unix")
# RFC 3986 scheme, then "://"; a Windows drive ("C:\\x", "C:/x") has no "//".
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def resolve_cache(cache: CacheArg) -> TokenCache:
    """Turn the ``cache=`` argument into a ``TokenCache``.

    ``DEFAULT`` is ``$HOXTON_AUTH_CACHE`` if set, else ``FileTokenCache()``,
    else (no home directory) memory, with one ``HoxtonAuthWarning``.
    ``RedisTokenCache`` is imported only for a Redis URL: redis-py is an
    optional extra.

    Raises:
        ConfigError: If ``cache`` is of an unknown kind.
    """
    if cache is DEFAULT:
        configured = read_environment().get("cache")
        if configured:
            return resolve_cache(configured)
        try:
            return FileTokenCache()
        except CacheUnavailableError as exc:  # no home directory (issue 22): say so once
            message = "%s; keeping tokens in memory for this process"
            warn_once("memory fallback", str(exc), message, exc)
            return MemoryTokenCache()
    if cache is None:
        return MemoryTokenCache()
    if isinstance(cache, TokenCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        location = os.fspath(cache)
        if location.startswith(tuple(s + "://" for s in _REDIS_SCHEMES)):
            from ._redis_cache import RedisTokenCache  # an optional extra: see the docstring

            cache_from_url: TokenCache = RedisTokenCache(location)
            return cache_from_url
        scheme = _URL_SCHEME.match(location)
        if scheme is not None:  # "memcached://x" is no path: it would create ./memcached:/x
            raise ConfigError(
                f"cache {location!r} has the unknown scheme {scheme.group(1)!r}; "
                f"supported: a file path, {', '.join(s + '://' for s in _REDIS_SCHEMES)} "
                f"URLs, a TokenCache, or None"
            )
        return FileTokenCache(location)
    raise ConfigError(
        f"cache must be a TokenCache, a path, a redis:// URL or None, got {type(cache).__name__}"
    )


# -- the parts ------------------------------------------------------------------------


def build_session(
    kind: str, owner: str, client_id: str, client_secret: str | None, arguments: Mapping[str, Any]
) -> TokenManager:
    """Config, grant, cache and identity put together into the session that renews tokens.

    Args:
        kind: One of ``GRANT_KINDS``.
        owner: The class name, for messages.
        client_id: The OAuth client's id.
        client_secret: The client's secret, if any.
        arguments: The constructor's keyword arguments given (``AllArgs``);
            each one left out takes the default its owner gives it (see
            ``constructor_signature``).

    Raises:
        TypeError: An argument the constructor does not take (as Python would say).
        ConfigError: Arguments missing or contradictory.
    """
    unknown = sorted(set(arguments) - KEYWORDS)
    if unknown:
        raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
    rest = dict(arguments)
    grant_arguments = {name: rest.pop(name, None) for name in GRANT_ARGUMENTS}
    realm, otp = rest.pop("realm", None), rest.pop("otp", None)
    cache, on_token = rest.pop("cache", DEFAULT), rest.pop("on_token", None)
    network = NetworkSettings(
        **{name: rest.pop(name) for name in NETWORK_ARGUMENTS if name in rest}
    )
    check_grant_arguments(kind, owner, grant_arguments, realm=realm, otp=otp)
    # The rest are ClientConfig's own fields (scope, domain, audience, leeway, ...).
    config = ClientConfig(client_id, client_secret, network=network, **rest)
    grant = grant_for(
        kind,
        owner,
        grant_arguments,
        client_credential=config.client_credential,
        realm=realm,
        otp=otp,
    )
    token_cache = resolve_cache(cache)
    refresh_token = grant_arguments.get("refresh_token")
    # Whose entry this is (issue 10): see _identity.py.
    identity = identity_for(config, grant, refresh_token)
    return TokenManager(config, grant, token_cache, identity, refresh_token, on_token)


def session_from_env(kind: str | None, overrides: Mapping[str, Any]) -> TokenManager:
    """The session ``from_env(**overrides)`` would hold, without an auth object.

    For the CLI: the auth classes subclass requests' and httpx's base
    classes, and a token answered from the cache needs neither library.

    Args:
        kind: The grant kind to use, or ``None`` to infer it from the arguments.
        overrides: Constructor arguments; they win over the environment.

    Raises:
        ConfigError: A variable is missing (named), or they clash.
    """
    kwargs = gather(kind, overrides)
    check_environment(kind, kwargs)
    chosen = grant_kind_of(kwargs) if kind is None else kind
    # A command exits right after its answer: it never renews in the background
    # (`token --min-valid` is the scripts' way to renew early; issue 20).
    kwargs.setdefault("refresh_ahead", 0.0)
    client_id, client_secret = kwargs.pop("client_id"), kwargs.pop("client_secret", None)
    return build_session(chosen, GRANT_CLASS_NAMES[chosen], client_id, client_secret, kwargs)


# -- login()'s own arguments ----------------------------------------------------------

LOGIN_SCOPE = "openid profile offline_access"
"""What ``login()`` asks for by default: an ID token and a refresh token."""

# -- the keyword arguments: declared here once ------------------------------------------


class Settings(TypedDict, total=False):
    """The constructor's keyword arguments that are not grant arguments."""

    scope: ScopeArg
    audience: str
    domain: str
    cache: CacheArg
    leeway: float
    timeout: float
    retry_deadline: float
    token_request_format: RequestFormat
    max_attempts: int
    organization: str | None
    forwarded_for: str | None
    verify: VerifyArg
    cert: CertArg
    proxy: str | None
    trust_env: bool
    allow_insecure_http: bool
    on_token: OnToken | None
    refresh_ahead: float | None
    allowed_origins: Sequence[str] | str | None
    other_origins: OtherOrigins
    private_key: PrivateKeyArg | None
    key_id: str | None
    signing_algorithm: SigningAlgorithm | None


class PasswordArgs(Settings, total=False):
    """The keyword arguments that choose the password grant."""

    username: Required[str]
    password: Required[str]
    realm: str | None
    otp: Callable[[], str] | None


class CodeArgs(Settings, total=False):
    """The keyword arguments that choose the authorization code grant."""

    code: Required[str]
    redirect_uri: Required[str]
    code_verifier: str | None


class RefreshArgs(Settings, total=False):
    """The keyword arguments that choose the refresh token grant."""

    refresh_token: Required[str]


class _GrantArgs(TypedDict, total=False):
    """The grant arguments as ``AllArgs`` takes them: any, or none (``None``)."""

    username: str | None
    password: str | None
    code: str | None
    redirect_uri: str | None
    code_verifier: str | None
    refresh_token: str | None
    realm: str | None
    otp: Callable[[], str] | None


class AllArgs(_GrantArgs, Settings, total=False):
    """Every keyword argument of the constructor (the grant ones first)."""


#: The names of every keyword argument of the constructor.
KEYWORDS = AllArgs.__required_keys__ | AllArgs.__optional_keys__


def constructor_signature(function: Callable[..., object]) -> inspect.Signature:
    """The constructor's signature as ``help()`` and ``inspect.signature`` show it.

    ``function``'s positional parameters (``self, client_id, client_secret``),
    then ``AllArgs``'s keywords and types (what mypy reads) in place of its
    ``**arguments: Unpack[AllArgs]``, each with the default that applies when
    it is left out: ``ClientConfig``'s or ``NetworkSettings``'s own,
    ``DEFAULT`` for ``cache``, else ``None`` (``build_session``).
    """
    applied: dict[str, object] = {"cache": DEFAULT}
    for value_class in (ClientConfig, NetworkSettings):
        for name, parameter in inspect.signature(value_class).parameters.items():
            applied.setdefault(name, parameter.default)
    keywords = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=applied.get(name),
            # A forward reference (the module's annotations are strings): shown as written.
            annotation=getattr(annotation, "__forward_arg__", annotation),
        )
        for name, annotation in AllArgs.__annotations__.items()
    ]
    signature = inspect.signature(function)
    positional = [p for p in signature.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    return signature.replace(parameters=[*positional, *keywords])
