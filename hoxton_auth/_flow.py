"""The sans-I/O core: the flows that get a token (grant after grant) or revoke one.

How it works. A flow is a generator. It yields an action, and the driver (see
``_renewal.py``) performs it and sends back the result:

* ``TokenRequest`` -> the driver POSTs it and sends back a ``TokenResponse``,
  or a ``TransportFailure`` when the network failed;
* ``Backoff``      -> the driver sleeps that long and sends back the time.

The flow returns a ``Token`` (or ``None`` for a revocation) or raises one of
our errors. It never touches the network, the disk or the clock, so every
retry, fallback and error path is tested by driving it by hand.

This module decides which grants to try, in which order. The actions and
replies are in ``_messages.py``; each request's retries, backoff and
deadline in ``_retry.py``; what a reply means (a token, or our error in the
server's words) in ``_responses.py``.

Token requests go through an HTTP client the auth object owns (a
``requests.Session`` or an ``httpx`` client, honouring the environment's
proxy and CA settings), not through the caller's client: our retry policy
must see network errors and our timeouts must bound the fetch, and a
caller's client would hide both behind its own settings and event hooks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
from collections.abc import Sequence

from ._config import ClientConfig
from ._errors import (
    InvalidGrantError,
    LoginError,
    LoginRequiredError,
    MfaRequiredError,
    NotLoggedInError,
    TokenRequestError,
)
from ._grants import (
    AuthorizationCode,
    DeviceCode,
    Grant,
    MfaOtp,
    Password,
    RefreshToken,
    device_authorization_fields,
    revocation_fields,
)
from ._messages import Backoff, Flow, TokenRequest, TokenResponse, mask_secrets
from ._responses import error_from_response, token_from_response
from ._retry import post_with_retries
from ._token import Token

__all__ = [
    "SLOW_DOWN_SECONDS",
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


# -- the device authorization flow (RFC 8628) ------------------------------------------

#: Seconds added to the polling interval on each ``slow_down`` (RFC 8628 §3.5).
SLOW_DOWN_SECONDS = 5.0
# Used when the server names no interval (RFC 8628 §3.2: the default is 5).
DEFAULT_INTERVAL = 5.0
# After a network failure or a 5xx the interval doubles, up to this (RFC 8628 §3.5).
MAX_INTERVAL = 60.0


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
    form = device_authorization_fields(config)
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
        raise TokenRequestError(
            f"malformed device authorization response from {url} (HTTP {response.status}): "
            f"{type(exc).__name__}",
            status_code=response.status,
            url=url,
            attempts=attempts,
        ) from None
    if not (math.isfinite(expires_in) and math.isfinite(interval) and interval > 0):
        raise TokenRequestError(
            f"device authorization response from {url} has a bad expires_in or interval",
            status_code=response.status,
            url=url,
            attempts=attempts,
        )
    logger.debug("device code issued: expires_in=%.0fs interval=%gs", expires_in, interval)
    return authorization


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
    return value


def poll_device_code(
    config: ClientConfig, authorization: DeviceAuthorization
) -> Flow[TokenResponse]:
    """Poll the token endpoint until the user approves (RFC 8628 §3.4-3.5).

    Waits ``interval`` seconds (a ``Backoff``) before each poll; keeps
    waiting on ``authorization_pending``; adds ``SLOW_DOWN_SECONDS`` to the
    interval on ``slow_down``; doubles it (up to ``MAX_INTERVAL``) after a
    network failure or a 5xx. Each poll is one request, never retried on its
    own: the polling is the retry.

    Returns:
        The 2xx answer that carries the tokens (already checked to parse as
        a token), for the caller to store as the logged-in session.

    Raises:
        LoginError: ``expired_token``, ``access_denied``, or the code expired
            without an answer.
        TokenRequestError: Any other refusal (for example ``invalid_grant``
            or ``unauthorized_client``), in the server's words.
    """
    grant = DeviceCode(authorization.device_code)
    form = grant.fields(config)
    url = config.token_url
    interval = authorization.interval
    as_json = config.token_request_format == "json"  # noqa: S105  a format name
    polls = 0
    while True:
        now = yield Backoff(interval)
        assert isinstance(now, float)  # noqa: S101  a Backoff is answered by the time
        if now >= authorization.expires_at:
            raise LoginError(
                f"the device code expired before the login was approved "
                f"(user code {authorization.user_code}): run the login again"
            )
        polls += 1
        reply = yield TokenRequest(url, form, as_json, config.timeout)
        if isinstance(reply, TokenResponse) and 200 <= reply.status < 300:
            token_from_response(reply, url, form, polls, None)  # a bad body fails here
            logger.debug("device login approved after %d polls", polls)
            return reply
        if not isinstance(reply, TokenResponse) or reply.status >= 500 or reply.status == 408:
            interval = min(interval * 2, MAX_INTERVAL)
            logger.warning(
                "token endpoint %s: %s while polling for the device login; next poll in %gs",
                url,
                f"HTTP {reply.status}"
                if isinstance(reply, TokenResponse)
                else type(reply).__name__,
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
