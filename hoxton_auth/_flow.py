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
import re
from collections.abc import Generator, Mapping, Sequence
from typing import Any, TypeVar, Union
from urllib.parse import quote, quote_plus, urlencode

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
# A retry gets the time left before the deadline as its timeout, but never
# less than this: a request with (almost) no time to answer is a wasted try,
# and HTTP clients refuse a timeout of 0.
MIN_RETRY_TIMEOUT = 1.0
SNIPPET_CHARS = 200
# 501 and 505 are 5xx that say this request can never work (RFC 9110 §15.6.2, §15.6.6).
PERMANENT_5XX = frozenset({501, 505})
_DELTA_SECONDS = re.compile(r"[0-9]+")


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
    url = config.token_url
    response, attempts = yield from _post_with_retries(config, url, form, deadline, rng)
    kept = grant.refresh_token if isinstance(grant, RefreshToken) else None
    try:
        data = _json_body(response, url, form, attempts)
        token = Token.from_response(data, response.received_at, kept_refresh_token=kept)
    except TokenFormatError as exc:
        raise TokenRequestError(
            f"malformed token response from {url} (HTTP {response.status}, "
            f"{_attempts(attempts)}): {exc}",
            status_code=response.status,
            url=url,
            attempts=attempts,
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
) -> Flow[tuple[TokenResponse, int]]:
    """POST until a 2xx, retrying network errors, 408, 429 and 5xx with backoff.

    Full jitter (delay drawn from 0..min(cap, base * 2**n)); ``Retry-After``
    is a floor. Stops at ``config.max_attempts`` or when the next wait would
    pass ``deadline``; a retry's timeout is cut to the time left, so the
    deadline bounds the whole fetch, not just when the last try starts. Other
    4xx are final: retrying a refused grant cannot help and may lock the account.

    Returns:
        The 2xx response and how many requests it took.
    """
    attempt = 0
    timeout = config.timeout
    while True:
        attempt += 1
        as_json = config.token_request_format == "json"  # noqa: S105  a format name
        reply = yield TokenRequest(url, form, as_json, timeout)
        if isinstance(reply, TokenResponse) and 200 <= reply.status < 300:
            return reply, attempt
        if isinstance(reply, TokenResponse) and not _retryable(reply.status):
            raise _error_from_response(reply, url, form, attempt)
        assert not isinstance(reply, float)  # noqa: S101  a TokenRequest is answered by a response
        # Full jitter: waiters spread out instead of coming back in step.
        ceiling = min(config.backoff_cap, config.backoff_base * 2.0 ** min(attempt - 1, 64))
        delay = rng.uniform(0, ceiling)
        retry_after = _retry_after(reply) if isinstance(reply, TokenResponse) else None
        if retry_after is not None:
            delay = max(delay, retry_after)
        if attempt >= config.max_attempts:
            reason = f"max_attempts={config.max_attempts} reached"
            raise _final_error(reply, url, form, attempt, reason)
        if reply.received_at + delay > deadline:
            asked = f"Retry-After {retry_after:.0f}s" if delay == retry_after else "the next try"
            reason = f"{asked} would pass the {config.retry_deadline:g}s retry_deadline"
            raise _final_error(reply, url, form, attempt, reason)
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
        timeout = min(config.timeout, max(deadline - now, MIN_RETRY_TIMEOUT))


def _retryable(status: int) -> bool:
    """408/429 ask us to come back; other 5xx are the server's passing trouble."""
    return status in (408, 429) or (500 <= status <= 599 and status not in PERMANENT_5XX)


def _attempts(count: int) -> str:
    return f"{count} attempt{'s' if count != 1 else ''}"


def _describe_failure(reply: TokenResponse | TransportFailure) -> str:
    if isinstance(reply, TokenResponse):
        return f"HTTP {reply.status}"
    return type(reply.error).__name__


def _final_error(
    reply: TokenResponse | TransportFailure,
    url: str,
    form: Mapping[str, str],
    attempts: int,
    reason: str,
) -> Exception:
    """The error after the last try; ``reason`` says why there is no other."""
    if isinstance(reply, TokenResponse):
        error = _error_from_response(reply, url, form, attempts)
        error.args = (f"{error.args[0]} (gave up: {reason})",)
        return error
    cause = _redact(str(reply.error), form)
    unreachable = TokenEndpointUnreachableError(
        f"could not reach the token endpoint {url} after {_attempts(attempts)} "
        f"(gave up: {reason}): {type(reply.error).__name__}: {cause}",
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
    # Not str.isdigit(): it is true for "²" and other non-ASCII digits that
    # float() rejects, and header values are whatever the server sent.
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)  # a huge number becomes inf: past any deadline
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - response.received_at, 0.0)


def _json_body(response: TokenResponse, url: str, form: Mapping[str, str], attempts: int) -> Any:
    if len(response.body) > MAX_RESPONSE_BYTES:
        raise TokenRequestError(
            f"token response from {url} is larger than {MAX_RESPONSE_BYTES} bytes "
            f"(HTTP {response.status}, {_attempts(attempts)})",
            status_code=response.status,
            url=url,
            attempts=attempts,
        )
    try:
        return json.loads(response.body)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
        pass
    if response.body.lstrip()[:1] in (b"{", b"["):
        # Broken JSON in a 2xx is most likely a cut-off token response: quoting
        # it would put part of a fresh access or refresh token in the message.
        shown = f"invalid or truncated JSON ({len(response.body)} bytes, not shown)"
    else:
        # An HTML page from a proxy, say; or a wrong URL that echoes the request.
        shown = _snippet(response.body, form)
    raise TokenRequestError(
        f"token response from {url} is not JSON (HTTP {response.status}, "
        f"{_content_type(response)}, {_attempts(attempts)}): {shown}",
        status_code=response.status,
        url=url,
        attempts=attempts,
    )


def _error_from_response(
    response: TokenResponse, url: str, form: Mapping[str, str], attempts: int
) -> TokenRequestError:
    """Turn a refusal into our error, in the server's own words (RFC 6749 §5.2)."""
    try:
        body = json.loads(response.body) if len(response.body) <= MAX_RESPONSE_BYTES else None
    except (ValueError, RecursionError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, str):
        return TokenRequestError(
            f"token endpoint {url} answered HTTP {response.status} "
            f"({_content_type(response)}) after {_attempts(attempts)}: "
            f"{_snippet(response.body, form)}",
            status_code=response.status,
            url=url,
            attempts=attempts,
        )
    description = body.get("error_description") if isinstance(body, dict) else None
    description = _redact(description, form) if isinstance(description, str) else None
    error = _redact(error, form)
    words = _clip(error, 100) + (f": {_clip(description, 500)}" if description else "")
    kind = InvalidGrantError if error == "invalid_grant" else TokenRequestError
    return kind(
        f"{words} (HTTP {response.status}) at {url} after {_attempts(attempts)}",
        status_code=response.status,
        error=error,
        error_description=description,
        url=url,
        attempts=attempts,
    )


def _content_type(response: TokenResponse) -> str:
    return response.headers.get("content-type") or "no content type"


def _snippet(body: bytes, form: Mapping[str, str]) -> str:
    text = body[: SNIPPET_CHARS * 4].decode("utf-8", "replace")
    # Masked before whitespace is collapsed and the text cut: either could
    # change a secret just enough to slip past the mask.
    text = " ".join(_redact(text, form).split())
    if not text:
        return "empty body"
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "..."


def _clip(text: str, limit: int) -> str:
    """Server words for a one-line message: whitespace collapsed, length capped."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _redact(text: str, form: Mapping[str, str]) -> str:
    """Mask any secret of the request that a server echoed back."""
    for name in ("client_secret", "password", "code", "code_verifier", "refresh_token", "token"):
        secret = form.get(name)
        if secret and len(secret) >= 4:
            # A server echoes what it received: raw, form-encoded or JSON-escaped.
            for variant in (
                secret,
                quote_plus(secret),
                quote(secret, safe=""),
                _json_escaped(secret),
            ):
                text = text.replace(variant, "***")
    return text


def _json_escaped(text: str) -> str:
    return json.dumps(text)[1:-1]
