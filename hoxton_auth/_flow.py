"""The sans-I/O core: the flows that get a token (grant after grant) or revoke one.

How it works. A flow is a generator. It yields an action, and the driver (see
``_drive.py``) performs it and sends back the result:

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

import logging
import random
from collections.abc import Sequence

from ._config import ClientConfig
from ._errors import InvalidGrantError, LoginRequiredError, MfaRequiredError
from ._grants import (
    AuthorizationCode,
    Grant,
    MfaOtp,
    Password,
    RefreshToken,
    revocation_fields,
)
from ._messages import Flow, mask_secrets
from ._responses import token_from_response
from ._retry import post_with_retries
from ._token import Token

__all__ = ["obtain_token", "plan_grants", "request_token", "revoke_refresh_token"]

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
