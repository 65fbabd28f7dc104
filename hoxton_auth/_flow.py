"""The sans-I/O core: what to send to the token endpoint and what its answers mean.

How it works. A flow is a generator. It yields an action, and the driver (see
``_manager.py``) performs it and sends back the result:

* ``TokenRequest`` -> the driver POSTs it and sends back a ``TokenResponse``,
  or a ``TransportFailure`` when the network failed;
* ``Backoff``      -> the driver sleeps that long and sends back the time.

The flow returns a ``Token`` (or ``None`` for a revocation) or raises one of
our errors. It never touches the network, the disk or the clock, so every
retry, fallback and error path is tested by driving it by hand.

Token requests go through an HTTP client the auth object owns (a
``requests.Session`` or an ``httpx`` client, honouring the environment's
proxy and CA settings), not through the caller's client: our retry policy
must see network errors and our timeouts must bound the fetch, and a
caller's client would hide both behind its own settings and event hooks.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import logging
import random
from collections.abc import Generator, Mapping, Sequence
from typing import Any, TypeVar, Union
from urllib.parse import urlencode

from ._config import ClientConfig
from ._errors import (
    InvalidGrantError,
    LoginRequiredError,
    TokenEndpointUnreachableError,
    TokenRequestError,
)
from ._grants import AuthorizationCode, Grant, RefreshToken, revocation_fields
from ._token import Token, TokenFormatError

__all__ = [
    "MAX_RESPONSE_BYTES",
    "Backoff",
    "Flow",
    "TokenRequest",
    "TokenResponse",
    "TransportFailure",
    "obtain_token",
    "plan_grants",
    "request_token",
    "revoke_refresh_token",
]

logger = logging.getLogger("hoxton_auth")

T = TypeVar("T")

MAX_RESPONSE_BYTES = 1024 * 1024  # a token answer is a few KiB; more is not a token
BACKOFF_BASE = 0.5  # seconds; the first retry waits up to this long
BACKOFF_CAP = 10.0  # no single wait grows beyond this (Retry-After excepted)
SNIPPET_CHARS = 200
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclasses.dataclass(frozen=True)
class TokenRequest:
    """A POST to make. ``form`` holds secrets: never log or print it."""

    url: str
    form: Mapping[str, str] = dataclasses.field(repr=False)
    as_json: bool = False
    timeout: float = 30.0

    def encode(self) -> tuple[bytes, str]:
        """The body and its ``Content-Type``."""
        if self.as_json:
            return json.dumps(dict(self.form)).encode(), "application/json"
        return urlencode(self.form).encode(), "application/x-www-form-urlencoded"


@dataclasses.dataclass(frozen=True)
class TokenResponse:
    """What came back: status, headers (lower-case names) and at most
    ``MAX_RESPONSE_BYTES + 1`` bytes of body."""

    status: int
    body: bytes = dataclasses.field(repr=False)
    headers: Mapping[str, str]
    received_at: float


@dataclasses.dataclass(frozen=True)
class TransportFailure:
    """The request never got an answer (connection refused, timeout...)."""

    error: BaseException
    received_at: float


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Wait ``delay`` seconds, then send back the time."""

    delay: float


Action = Union[TokenRequest, Backoff]
Reply = Union[TokenResponse, TransportFailure, float]
Flow = Generator[Action, Reply, T]


def plan_grants(
    primary: Grant | None, cached_refresh_token: str | None, seed_refresh_token: str | None
) -> list[Grant]:
    """The grants to try, in order, when no fresh access token is at hand.

    The newest refresh token (the cache's) comes first, then the one the
    caller seeded, if it differs, then the primary grant.
    """
    plan: list[Grant] = []
    if cached_refresh_token:
        plan.append(RefreshToken(cached_refresh_token))
    if seed_refresh_token and seed_refresh_token != cached_refresh_token:
        plan.append(RefreshToken(seed_refresh_token))
    if primary is not None:
        plan.append(primary)
    return plan


def obtain_token(
    config: ClientConfig, plan: Sequence[Grant], now: float, rng: random.Random
) -> Flow[Token]:
    """Try each grant of ``plan`` until one gives a token.

    Only ``invalid_grant`` moves on to the next grant; any other failure is
    final. One deadline (``config.retry_deadline``) covers the whole plan.

    Raises:
        LoginRequiredError: No grant left that can stand in.
        TokenRequestError: The server refused for another reason.
        TokenEndpointUnreachableError: The network failed after retries.
    """
    if not plan:
        raise LoginRequiredError(
            "no access token, no refresh token and no grant to obtain one: log in again "
            "(HoxtonAuth.login() or `hoxton-auth login`)",
            url=config.token_url,
            attempts=0,
        )
    deadline = now + config.retry_deadline
    for position, grant in enumerate(plan, start=1):
        try:
            return (yield from request_token(config, grant, deadline, rng))
        except InvalidGrantError as exc:
            if position < len(plan):
                logger.warning(
                    "%s grant rejected (%s); trying the %s grant",
                    grant.grant_type,
                    exc.error_description or exc.error,
                    plan[position].grant_type,
                )
                continue
            if isinstance(grant, (RefreshToken, AuthorizationCode)):
                raise LoginRequiredError(
                    f"{exc}; log in again (HoxtonAuth.login() or `hoxton-auth login`)",
                    status_code=exc.status_code,
                    error=exc.error,
                    error_description=exc.error_description,
                    url=exc.url,
                    attempts=exc.attempts,
                ) from exc
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def request_token(
    config: ClientConfig, grant: Grant, deadline: float, rng: random.Random
) -> Flow[Token]:
    """Send one grant, with retries, and parse the token.

    Raises:
        TokenRequestError: The server's final answer was not a token.
        TokenEndpointUnreachableError: The network failed after retries.
    """
    logger.debug("requesting a token: grant=%s url=%s", grant.grant_type, config.token_url)
    form = grant.fields(config)
    response = yield from _post_with_retries(config, config.token_url, form, deadline, rng)
    kept = grant.refresh_token if isinstance(grant, RefreshToken) else None
    try:
        token = Token.from_response(
            _json_body(response, config.token_url), response.received_at, kept_refresh_token=kept
        )
    except TokenFormatError as exc:
        raise TokenRequestError(
            f"malformed token response from {config.token_url} (HTTP {response.status}): {exc}",
            status_code=response.status,
            url=config.token_url,
        ) from None
    logger.debug(
        "token received: grant=%s expires_in=%.0fs refresh_token=%s",
        grant.grant_type,
        token.expires_at - token.obtained_at,
        "yes" if token.refresh_token else "no",
    )
    return token


def revoke_refresh_token(
    config: ClientConfig, refresh_token: str, now: float, rng: random.Random
) -> Flow[None]:
    """Revoke a refresh token at ``/oauth/revoke``.

    Raises:
        TokenRequestError: The server refused.
        TokenEndpointUnreachableError: The network failed after retries.
    """
    form = revocation_fields(config, refresh_token)
    deadline = now + config.retry_deadline
    yield from _post_with_retries(config, config.revoke_url, form, deadline, rng)
    logger.debug("refresh token revoked at %s", config.revoke_url)


def _post_with_retries(
    config: ClientConfig,
    url: str,
    form: Mapping[str, str],
    deadline: float,
    rng: random.Random,
) -> Flow[TokenResponse]:
    """POST until a 2xx, retrying network errors, 429 and 5xx with backoff.

    Full jitter (delay drawn from 0..min(cap, base * 2**n)); ``Retry-After``
    is a floor. Stops at ``config.max_attempts`` or when the next wait would
    pass ``deadline``. 4xx other than 429 are final: retrying a refused grant
    cannot help and may lock the account.
    """
    attempt = 0
    while True:
        attempt += 1
        as_json = config.token_request_format == "json"  # noqa: S105  a format name
        reply = yield TokenRequest(url, form, as_json, config.timeout)
        if isinstance(reply, TokenResponse) and 200 <= reply.status < 300:
            return reply
        if isinstance(reply, TokenResponse) and reply.status not in RETRYABLE_STATUSES:
            raise _error_from_response(reply, url, form, attempt)
        assert not isinstance(reply, float)  # noqa: S101  a TokenRequest is answered by a response
        delay = rng.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))
        if isinstance(reply, TokenResponse):
            delay = max(delay, _retry_after(reply) or 0.0)
        if attempt >= config.max_attempts or reply.received_at + delay > deadline:
            raise _final_error(reply, url, form, attempt)
        logger.warning(
            "token endpoint %s: %s; retry %d of %d in %.1fs",
            url,
            _describe_failure(reply),
            attempt,
            config.max_attempts - 1,
            delay,
        )
        now = yield Backoff(delay)
        assert isinstance(now, float)  # noqa: S101  a Backoff is answered by the time


def _describe_failure(reply: TokenResponse | TransportFailure) -> str:
    if isinstance(reply, TokenResponse):
        return f"HTTP {reply.status}"
    return type(reply.error).__name__


def _final_error(
    reply: TokenResponse | TransportFailure, url: str, form: Mapping[str, str], attempts: int
) -> Exception:
    tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
    if isinstance(reply, TokenResponse):
        error = _error_from_response(reply, url, form, attempts)
        error.args = (f"{error.args[0]} after {tries}",)
        return error
    cause = _redact(str(reply.error), form)
    unreachable = TokenEndpointUnreachableError(
        f"could not reach the token endpoint {url} after {tries}: "
        f"{type(reply.error).__name__}: {cause}",
        url=url,
        attempts=attempts,
    )
    unreachable.__cause__ = reply.error
    return unreachable


def _retry_after(response: TokenResponse) -> float | None:
    """Seconds from ``Retry-After`` (delta-seconds or HTTP-date, RFC 9110 §10.2.3)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - response.received_at, 0.0)


def _json_body(response: TokenResponse, url: str) -> Any:
    if len(response.body) > MAX_RESPONSE_BYTES:
        raise TokenRequestError(
            f"token response from {url} is larger than {MAX_RESPONSE_BYTES} bytes",
            status_code=response.status,
            url=url,
        )
    try:
        return json.loads(response.body)
    except ValueError:
        raise TokenRequestError(
            f"token response from {url} is not JSON (HTTP {response.status}, "
            f"{_content_type(response)}): {_snippet(response.body)}",
            status_code=response.status,
            url=url,
        ) from None


def _error_from_response(
    response: TokenResponse, url: str, form: Mapping[str, str], attempts: int
) -> TokenRequestError:
    """Turn a refusal into our error, in the server's own words (RFC 6749 §5.2)."""
    try:
        body = json.loads(response.body) if len(response.body) <= MAX_RESPONSE_BYTES else None
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, str):
        return TokenRequestError(
            f"token endpoint {url} answered HTTP {response.status} "
            f"({_content_type(response)}): {_redact(_snippet(response.body), form)}",
            status_code=response.status,
            url=url,
            attempts=attempts,
        )
    description = body.get("error_description") if isinstance(body, dict) else None
    description = _redact(description, form) if isinstance(description, str) else None
    error = _redact(error, form)
    words = f"{error}: {description}" if description else error
    kind = InvalidGrantError if error == "invalid_grant" else TokenRequestError
    return kind(
        f"{words} (HTTP {response.status})",
        status_code=response.status,
        error=error,
        error_description=description,
        url=url,
        attempts=attempts,
    )


def _content_type(response: TokenResponse) -> str:
    return response.headers.get("content-type") or "no content type"


def _snippet(body: bytes) -> str:
    text = body[: SNIPPET_CHARS * 4].decode("utf-8", "replace")
    text = " ".join(text.split())
    if not text:
        return "empty body"
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "..."


def _redact(text: str, form: Mapping[str, str]) -> str:
    """Mask any secret of the request that a server echoed back."""
    for name in ("client_secret", "password", "code", "code_verifier", "refresh_token", "token"):
        secret = form.get(name)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
