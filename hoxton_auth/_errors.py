"""The exception tree of hoxton_auth.

::

    HoxtonAuthError
    ├── ConfigError(HoxtonAuthError, ValueError)
    ├── InsecureTransportError     a bearer token would go over cleartext
    ├── TokenRequestError          .status_code .error .error_description .retry_after
    │   ├── InvalidGrantError      error == "invalid_grant"
    │   │   └── LoginRequiredError refresh token (or code) refused, no grant can stand in
    │   └── MfaRequiredError       .mfa_token (masked) .mfa_requirements
    ├── TokenEndpointUnreachableError  network failure after retries; __cause__ = original
    ├── LoginError                 the browser or device login failed or was denied
    │   └── NotLoggedInError       no login, grant or token to use: nothing was sent
    └── CacheError(HoxtonAuthError, OSError)
        ├── CacheLockTimeoutError  the lock was held past its timeout
        └── CacheUnavailableError  the cache cannot be used (path refused, Redis down)
    HoxtonAuthWarning(UserWarning)  degraded but working (e.g. a token served during an outage)

Messages carry the server's own words and never a secret: no request form,
no token, no password ever reaches an exception.

Each error has an ``exit_status``: what ``hoxton-auth`` exits with when it
ends a command (DESIGN.md, "CLI exit statuses"; the table is ``_cli.EXIT_STATUSES``)::

    0 success                       4 login needed (NotLoggedInError, LoginRequiredError)
    1 any other failure             5 identity provider or network unreachable, or too slow
    2 usage or configuration        6 the credentials were refused (secret, password, blocked)
    130 interrupted
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _cli.py)
if TYPE_CHECKING:
    import logging

__all__ = [
    "CacheError",
    "CacheLockTimeoutError",
    "CacheUnavailableError",
    "ConfigError",
    "HoxtonAuthError",
    "HoxtonAuthWarning",
    "InsecureTransportError",
    "InvalidGrantError",
    "LoginError",
    "LoginRequiredError",
    "MfaRequiredError",
    "NotLoggedInError",
    "TokenEndpointUnreachableError",
    "TokenRequestError",
]


# OAuth ``error`` codes that mean "these credentials are refused" (exit status 6):
# RFC 6749 §5.2, plus Auth0's blocked user (too_many_attempts) and rule denials.
_CREDENTIALS_REFUSED = frozenset(
    {"invalid_client", "invalid_grant", "unauthorized_client", "access_denied", "too_many_attempts"}
)


class HoxtonAuthError(Exception):
    """Base class of every error raised by hoxton_auth.

    Attributes:
        exit_status: What ``hoxton-auth`` exits with for this error (``_cli.EXIT_STATUSES``).
    """

    exit_status = 1


class ConfigError(HoxtonAuthError, ValueError):
    """The arguments given to an auth object are missing or contradictory."""

    exit_status = 2


class InsecureTransportError(HoxtonAuthError):
    """A bearer token would cross the network in clear (an ``http://`` URL).

    Raised before anything is sent, for API URLs on a host other than
    loopback; ``allow_insecure_http=True`` lifts the rule.
    """

    exit_status = 2


class TokenRequestError(HoxtonAuthError):
    """The token endpoint answered, but not with a usable token.

    Attributes:
        status_code: The HTTP status of the answer (0 when there was none).
        error: The OAuth ``error`` code from the body, or ``None``.
        error_description: The server's ``error_description``, or ``None``.
        url: The endpoint that was called (never carries a secret).
        attempts: How many requests were made before giving up.
        retry_after: Seconds to wait before asking again (a 429's ``Retry-After``,
            ``X-RateLimit-Reset`` or quota reset, or a shared cooldown), else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 0,
        error: str | None = None,
        error_description: str | None = None,
        url: str = "",
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = error
        self.error_description = error_description
        self.url = url
        self.attempts = attempts
        self.retry_after = retry_after

    @property
    def exit_status(self) -> int:  # type: ignore[override]  # a class attribute in the base
        """6 when the credentials were refused, 5 for a server that cannot answer now, else 1."""
        if self.error in _CREDENTIALS_REFUSED:
            return 6
        if self.status_code >= 500 or self.status_code in (408, 429):
            return 5
        return 1


class InvalidGrantError(TokenRequestError):
    """The server rejected the grant itself (``invalid_grant``)."""


class LoginRequiredError(InvalidGrantError):
    """The server refused the refresh token (or code) and no other grant can stand in.

    When no request could be made at all (nothing logged in), the error is
    a ``NotLoggedInError`` instead.

    Log in again (``HoxtonAuth.login`` or ``hoxton-auth login``).
    """

    @property
    def exit_status(self) -> int:  # type: ignore[override]  # see TokenRequestError
        """Always 4: log in again."""
        return 4


class MfaRequiredError(TokenRequestError):
    """Auth0 wants a second factor (``mfa_required``) before it issues a token.

    Complete it with the ``mfa-otp`` grant: pass ``otp=`` (a callable that
    returns the current one-time code) to ``PasswordAuth``.

    Attributes:
        mfa_token: The token to send with the one-time code (masked in ``repr``/``str``).
        mfa_requirements: The factors Auth0 accepts, as it sent them (e.g.
            ``{"challenge": [{"type": "otp"}]}``), or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        mfa_token: str | None = None,
        mfa_requirements: object = None,
        status_code: int = 0,
        error: str | None = None,
        error_description: str | None = None,
        url: str = "",
        attempts: int = 1,
    ) -> None:
        super().__init__(
            message,
            status_code=status_code,
            error=error,
            error_description=error_description,
            url=url,
            attempts=attempts,
        )
        self.mfa_token = mfa_token
        self.mfa_requirements = mfa_requirements

    def __repr__(self) -> str:
        masked = "***" if self.mfa_token else None
        return f"MfaRequiredError({self.args[0]!r}, mfa_token={masked!r})"


class TokenEndpointUnreachableError(HoxtonAuthError):
    """The token endpoint could not be reached, even after retries.

    The original network exception is ``__cause__``.

    Attributes:
        url: The endpoint that was called.
        attempts: How many requests were made.
    """

    exit_status = 5

    def __init__(
        self, message: str, *, url: str, attempts: int, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.url = url
        self.attempts = attempts
        self.retry_after = retry_after


class LoginError(HoxtonAuthError):
    """The browser or device login did not complete (timeout, denied, expired code, busy ports)."""


class NotLoggedInError(LoginError):
    """There is nothing to get a token with: no login in the cache, no grant, no token.

    Raised before any request is sent (so it is no ``TokenRequestError``):
    an ``AuthorizationCodeAuth`` without a code whose logged-in session is
    not in the cache (or was used up), or ``hoxton-auth token`` without a
    secret or a login. Log in (``HoxtonAuth.login`` or ``hoxton-auth login``).
    When the server refused a refresh token instead, the error is a
    ``LoginRequiredError``; ``except (LoginRequiredError, NotLoggedInError)``
    catches every "log in again".
    """

    exit_status = 4


class CacheError(HoxtonAuthError, OSError):
    """The token cache could not be used safely (for example a stuck lock)."""


class CacheLockTimeoutError(CacheError):
    """Another holder kept the cache lock for longer than the timeout."""


class CacheUnavailableError(CacheError):
    """The cache location cannot be used (read-only, refused, not a directory, Redis down)."""


class HoxtonAuthWarning(UserWarning):
    """Degraded but working: a refused or repaired cache, a memory fallback, a lockless fetch,
    a still-valid token served while Auth0 is down.

    Emitted once per cause and path with ``warnings.warn``, so that a cron job
    whose logging is not configured still shows it; the same event is also a
    WARNING log record.
    """


class MaskedBytes(bytes):
    """Key material: ``bytes`` whose ``repr`` is masked (traceback locals, debuggers)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "b'***'"


def library_logger() -> logging.Logger:
    """The ``hoxton_auth`` logger, with the ``NullHandler`` a library installs.

    For the package's modules (not in ``__all__``: every name there is public).

    Records go wherever the application's logging sends them, and nowhere
    (rather than to stderr through ``logging.lastResort``) when it configured
    none: degraded states are also ``HoxtonAuthWarning`` s, which do show.
    """
    # Here, not at the top: a cached `hoxton-auth token`, which logs only when
    # something is wrong, never loads logging (tests/test_imports.py,
    # NOT_FOR_CLI_FAST_TOKEN).
    import logging

    logger = logging.getLogger("hoxton_auth")
    if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
        logger.addHandler(logging.NullHandler())
    return logger


# (cause, where) -> when the last WARNING record for it was written (time.monotonic).
_warned: dict[tuple[str, str], float] = {}


def warn_once(
    cause: str,
    where: str,
    message: str,
    *args: object,
    log_again_after: float | None = None,
    every_time: bool = False,
) -> None:
    """Report a degraded but working state: the package's one warn-once helper.

    The first time per ``cause`` and ``where`` (a path, a Redis URL, a tenant)
    in this process: a WARNING record and a ``HoxtonAuthWarning``, which
    reaches users who configured no logging (the logger has a ``NullHandler``).
    Later: a DEBUG record, or a WARNING record again once ``log_again_after``
    seconds have passed since the last one (``0``: every time), never a
    second warning; ``every_time``: both again, for a state that may cost the
    login each time (a token kept only in memory). For the package's modules
    (not in ``__all__``).
    """
    # Here, not at the top: on the path of a cached `hoxton-auth token`, which
    # warns only when something is wrong (tests/test_imports.py pins it).
    import time
    import warnings

    logger = library_logger()
    key = (cause, where)
    now = time.monotonic()
    last = _warned.get(key)
    if last is None or every_time:
        _warned[key] = now
        logger.warning(message, *args)
        warnings.warn(message % args if args else message, HoxtonAuthWarning, stacklevel=3)
    elif log_again_after is not None and now - last >= log_again_after:
        _warned[key] = now
        logger.warning(message, *args)
    else:
        logger.debug(message, *args)


def printable(text: str) -> str:
    """``text`` safe for a terminal: control and format characters escaped (``\\x1b``).

    For words from outside (a server's ``error_description``, a device code's
    URI, a cache file's labels) on their way to a message, a log line or a
    prompt: an escape sequence could retitle or clear the terminal, or draw
    spoofed text; a bidi override could reorder what is shown (issue 22).
    Not in ``__all__``: for the package's modules.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else ascii(c)[1:-1] for c in text)
