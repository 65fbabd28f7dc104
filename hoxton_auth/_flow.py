"""The sans-I/O core: the flows that get a token, or revoke one.

How it works. A flow is a generator. It yields an action, and the driver (see
``_renewal.py``) performs it and sends back the result:

* ``TokenRequest`` -> the driver POSTs it and sends back a ``TokenResponse``,
  or a ``TransportFailure`` when the network failed;
* ``Backoff``      -> the driver sleeps that long and sends back the time.

The flow returns a ``Token`` (or ``None`` for a revocation) or raises one of
our errors. It never touches the network, the disk or the clock, so every
retry, fallback and error path is tested by driving it by hand. The actions,
the replies and what a reply means are the wire (``_wire.py``).

``obtain_token`` tries a plan's grants in order, each request under one retry
policy (``post_with_retries``); ``poll_device_code`` polls for a device login.
(The API's 401 has its rule in ``_session.py``.) Token requests go through an
HTTP client the auth object owns: a caller's client would hide network errors
and timeouts from our retries.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
from collections.abc import Mapping, Sequence

from ._config import ClientConfig, check_bearer_url
from ._errors import (
    InsecureTransportError,
    InvalidGrantError,
    LoginError,
    LoginRequiredError,
    MfaRequiredError,
    NotLoggedInError,
)
from ._grants import (
    AuthorizationCode,
    DeviceCode,
    Grant,
    MfaOtp,
    Password,
    RefreshToken,
    device_authorization_fields,
    mask_secrets,
    revocation_fields,
    with_fresh_assertion,
)
from ._token import Token
from ._wire import (
    Backoff,
    Flow,
    Reply,
    TokenRequest,
    TokenResponse,
    bad_response,
    error_code,
    error_from_response,
    final_error,
    token_from_response,
    wait_seconds,
)

__all__ = [
    "MIN_RETRY_TIMEOUT",
    "DeviceAuthorization",
    "obtain_token",
    "plan_grants",
    "poll_device_code",
    "request_device_code",
    "request_token",
    "revoke_refresh_token",
]

logger = logging.getLogger("hoxton_auth")


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
        NotLoggedInError: The plan is empty: nothing to send.
        LoginRequiredError: The last grant was refused and none can stand in.
        TokenRequestError: The server refused for another reason.
        TokenEndpointUnreachableError: The network failed after retries.
    """
    if not plan:
        # Nothing to send: not a TokenRequestError (STYLE.md section 5).
        raise NotLoggedInError(
            "no access token, no refresh token and no grant to obtain one: log in again "
            "(HoxtonAuth.login() or `hoxton-auth login`)"
        )
    deadline = now + config.retry_deadline
    for position, grant in enumerate(plan, start=1):
        try:
            return (yield from request_token(config, grant, deadline, rng))
        except MfaRequiredError as exc:
            # Auth0 wants a second factor: answer with the mfa-otp grant when the
            # caller gave us a way to get the code (issue 12), else raise.
            if not (isinstance(grant, Password) and grant.otp is not None and exc.mfa_token):
                raise
            answer = MfaOtp(exc.mfa_token, grant.otp())
            return (yield from request_token(config, answer, deadline, rng))
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
    # Masked in repr from here on: error trackers record frame locals (issue 12).
    form = mask_secrets(grant.fields(config))
    url = config.token_url
    headers = grant.headers(config) if isinstance(grant, Password) else None
    response, attempts = yield from post_with_retries(config, url, form, deadline, rng, headers)
    kept = grant.refresh_token if isinstance(grant, RefreshToken) else None
    token = token_from_response(response, url, form, attempts, kept)
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
    form = mask_secrets(revocation_fields(config, refresh_token))
    deadline = now + config.retry_deadline
    yield from post_with_retries(config, config.revoke_url, form, deadline, rng)
    logger.debug("refresh token revoked at %s", config.revoke_url)


# -- the retry policy of one request ------------------------------------------------

# A retry gets the time left before the deadline as its timeout, but never
# less than this: a request with (almost) no time to answer is a wasted try,
# and HTTP clients refuse a timeout of 0.
MIN_RETRY_TIMEOUT = 1.0
# 501 and 505 are 5xx that say this request can never work (RFC 9110 §15.6.2, §15.6.6).
PERMANENT_5XX = frozenset({501, 505})
# A 429 with one of these is not "come back later": Auth0 blocked the account
# (attack protection) and every try extends the block.
NEVER_RETRIED_ERRORS = frozenset({"too_many_attempts"})


def post_with_retries(
    config: ClientConfig,
    url: str,
    form: Mapping[str, str],
    deadline: float,
    rng: random.Random,
    headers: Mapping[str, str] | None = None,
) -> Flow[tuple[TokenResponse, int]]:
    """POST until a 2xx, retrying network errors, 408, 429 and 5xx (but 501, 505).

    Full jitter (delay drawn from 0..min(cap, base * 2**n)). The server's wait
    (``Retry-After``, ``X-RateLimit-Reset``, Auth0's quota reset) is a floor,
    and a wait past ``deadline`` ends the fetch at once (the cache keeps it as
    a shared cooldown, ``_outage.py``), as does ``config.max_attempts``. A
    retry's timeout is cut to the time left, so the deadline bounds the whole
    fetch. Never retried (issue 12): every other 4xx, and a 429
    ``too_many_attempts`` (the account is blocked: each try extends the block).

    Returns:
        The 2xx response and how many requests it took.
    """
    attempt = 0
    timeout = config.timeout
    while True:
        attempt += 1
        as_json = config.token_request_format == "json"  # noqa: S105  a format name
        if attempt > 1:  # a client assertion is single-use: each retry signs its own
            form = with_fresh_assertion(config, form)
        reply = yield TokenRequest(url, form, as_json, timeout, dict(headers or {}))
        if isinstance(reply, TokenResponse) and 200 <= reply.status < 300:
            return reply, attempt
        if isinstance(reply, TokenResponse) and not _retryable(reply):
            raise error_from_response(reply, url, form, attempt)
        reply = _reply(reply)
        # Full jitter: waiters spread out instead of coming back in step.
        ceiling = min(config.backoff_cap, config.backoff_base * 2.0 ** min(attempt - 1, 64))
        delay = rng.uniform(0, ceiling)
        retry_after = wait_seconds(reply) if isinstance(reply, TokenResponse) else None
        if retry_after is not None:
            delay = max(delay, retry_after)
        if attempt >= config.max_attempts:
            reason = f"max_attempts={config.max_attempts} reached"
            raise final_error(reply, url, form, attempt, reason)
        if reply.received_at + delay > deadline:
            asked = f"Retry-After {retry_after:.0f}s" if delay == retry_after else "the next try"
            reason = f"{asked} would pass the {config.retry_deadline:g}s retry_deadline"
            raise final_error(reply, url, form, attempt, reason)
        logger.warning(
            "token endpoint %s: %s; retry %d of %d in %.1fs",
            url,
            _describe_failure(reply),
            attempt,
            config.max_attempts - 1,
            delay,
        )
        now = _time((yield Backoff(delay)))
        timeout = min(config.timeout, max(deadline - now, MIN_RETRY_TIMEOUT))


def _reply(answer: Reply | float) -> Reply:
    """What a driver sent back for a ``TokenRequest``: a reply, never a time."""
    if isinstance(answer, float):
        raise TypeError("a TokenRequest must be answered with a Reply, not a time")
    return answer


def _time(answer: Reply | float) -> float:
    """What a driver sent back for a ``Backoff``: the time, never a reply."""
    if not isinstance(answer, float):
        raise TypeError("a Backoff must be answered with the time, not a reply")
    return answer


def _retryable(response: TokenResponse) -> bool:
    """408/429 ask us to come back; other 5xx are the server's passing trouble."""
    status = response.status
    if status == 429:
        return error_code(response) not in NEVER_RETRIED_ERRORS
    return status == 408 or (500 <= status <= 599 and status not in PERMANENT_5XX)


def _describe_failure(reply: Reply) -> str:
    if isinstance(reply, TokenResponse):
        return f"HTTP {reply.status}"
    return type(reply.error).__name__


# -- the device authorization flow (RFC 8628) ------------------------------------------

#: Seconds added to the polling interval on each ``slow_down`` (RFC 8628 §3.5).
SLOW_DOWN_SECONDS = 5.0
# Used when the server names no interval (RFC 8628 §3.2: the default is 5).
DEFAULT_INTERVAL = 5.0
# After a network failure or a 5xx the interval doubles, up to this (RFC 8628 §3.5).
MAX_INTERVAL = 60.0
# The server's interval is kept within [MIN_INTERVAL, the code's lifetime] (issue 22):
# 0.001 would poll hundreds of times a second, a day would outlive the code.
MIN_INTERVAL = 1.0


@dataclasses.dataclass(frozen=True)
class DeviceAuthorization:
    """A device authorization response (RFC 8628 §3.2): what to show the user.

    ``device_code`` is the secret the device polls with: never shown or logged.
    """

    device_code: str = dataclasses.field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_at: float
    interval: float


def request_device_code(
    config: ClientConfig, now: float, rng: random.Random
) -> Flow[DeviceAuthorization]:
    """Start a device authorization at ``/oauth/device/code`` (RFC 8628 §3.1).

    Raises:
        TokenRequestError: The server refused (for example a client without
            the Device Code grant) or did not answer with a device authorization.
        TokenEndpointUnreachableError: The network failed after retries.
    """
    url = config.device_code_url
    form = mask_secrets(device_authorization_fields(config))
    response, attempts = yield from post_with_retries(
        config, url, form, now + config.retry_deadline, rng
    )
    try:
        data = json.loads(response.body)
        expires_in = float(data["expires_in"])
        interval = float(data.get("interval") or DEFAULT_INTERVAL)
        authorization = DeviceAuthorization(
            device_code=_text(data["device_code"]),
            user_code=_text(data["user_code"]),
            verification_uri=_text(data.get("verification_uri") or data["verification_url"]),
            verification_uri_complete=data.get("verification_uri_complete") or None,
            expires_at=response.received_at + expires_in,
            interval=interval,
        )
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        message = f"malformed device authorization response from {url} (HTTP {response.status})"
        raise bad_response(f"{message}: {type(exc).__name__}", response, url, attempts) from None
    if not (math.isfinite(expires_in) and math.isfinite(interval) and interval > 0):
        message = f"device authorization response from {url} has a bad expires_in or interval"
        raise bad_response(message, response, url, attempts)
    problem = _unsafe_to_show(authorization)
    if problem is not None:
        message = f"device authorization response from {url} refused: {problem}"
        raise bad_response(message, response, url, attempts)
    bounded = min(max(interval, MIN_INTERVAL), max(expires_in, MIN_INTERVAL))
    authorization = dataclasses.replace(authorization, interval=bounded)
    logger.debug("device code issued: expires_in=%.0fs interval=%gs", expires_in, interval)
    return authorization


def _unsafe_to_show(authorization: DeviceAuthorization) -> str | None:
    """Why the codes and URIs the user is told to open cannot be shown, or ``None``.

    A user opens what the prompt says: only an ``https`` (or loopback) page,
    and no control characters, which could rewrite the terminal (issue 22).
    """
    if not authorization.user_code.isprintable():
        return "its user_code has control characters"
    for name in ("verification_uri", "verification_uri_complete"):
        uri = getattr(authorization, name)
        if uri is None:
            continue
        if not isinstance(uri, str) or not uri.isprintable() or " " in uri:
            return f"its {name} is not a plain URL"
        try:
            check_bearer_url(uri, allow_insecure_http=False)
        except InsecureTransportError:
            return f"its {name} is not an https:// URL"
    return None


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
    return value


def poll_device_code(config: ClientConfig, authorization: DeviceAuthorization) -> Flow[Token]:
    """Poll the token endpoint until the user approves (RFC 8628 §3.4-3.5).

    Waits ``interval`` seconds (a ``Backoff``) before each poll, and on
    ``authorization_pending``; adds ``SLOW_DOWN_SECONDS`` on ``slow_down``;
    doubles it (up to ``MAX_INTERVAL``) after a network failure or a 5xx.
    Each poll is one request, never retried: the polling is the retry.

    Returns:
        The approved login's token, for the caller to store as the logged-in session.

    Raises:
        LoginError: ``expired_token``, ``access_denied``, or the code expired
            without an answer.
        TokenRequestError: Any other refusal (for example ``invalid_grant``
            or ``unauthorized_client``), in the server's words.
    """
    grant = DeviceCode(authorization.device_code)
    form: Mapping[str, str] = grant.fields(config)
    url = config.token_url
    interval = authorization.interval
    as_json = config.token_request_format == "json"  # noqa: S105  a format name
    polls = 0
    while True:
        now = _time((yield Backoff(interval)))
        if now >= authorization.expires_at:
            raise LoginError(
                f"the device code expired before the login was approved "
                f"(user code {authorization.user_code}): run the login again"
            )
        if polls:  # a client assertion is single-use: each poll signs its own
            form = with_fresh_assertion(config, form)
        polls += 1
        reply = _reply((yield TokenRequest(url, form, as_json, config.timeout)))
        if isinstance(reply, TokenResponse) and 200 <= reply.status < 300:
            token = token_from_response(reply, url, form, polls, None)
            logger.debug("device login approved after %d polls", polls)
            return token
        if not isinstance(reply, TokenResponse) or reply.status >= 500 or reply.status == 408:
            interval = min(interval * 2, MAX_INTERVAL)
            logger.warning(
                "token endpoint %s: %s while polling for the device login; next poll in %gs",
                url,
                _describe_failure(reply),
                interval,
            )
            continue
        error = error_from_response(reply, url, form, polls)
        if error.error == "authorization_pending":
            continue
        if error.error == "slow_down":
            interval += SLOW_DOWN_SECONDS
            logger.debug("slow_down: polling every %gs", interval)
            continue
        if error.error == "expired_token":
            raise LoginError(
                f"the device code expired before the login was approved ({error}): "
                "run the login again"
            ) from error
        if error.error == "access_denied":
            raise LoginError(f"the login was denied ({error})") from error
        raise error
