"""The retry policy of token endpoint requests: what to retry, how long to wait, when to stop.

Network errors, 408, 429 and 5xx (but 501 and 505) are retried with full
jitter; the server's wait (``Retry-After``, ``X-RateLimit-Reset``, Auth0's
quota reset) is a floor, and a wait past the deadline ends the fetch at once
(the cache then keeps it as a shared cooldown, ``_failures.py``). Never
retried (issue 12): a 429 ``too_many_attempts`` (the account is blocked: each
try extends the block) and every other 4xx. ``max_attempts`` and one
deadline bound the whole fetch. Like the rest of the core it yields ``TokenRequest`` and
``Backoff`` actions and never sleeps or reads the clock itself.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping

from ._config import ClientConfig
from ._messages import Backoff, Flow, Reply, TokenRequest, TokenResponse
from ._responses import error_code, error_from_response, final_error, wait_seconds

__all__ = [
    "MIN_AGE_TO_RENEW_AFTER_401",
    "MIN_RETRY_TIMEOUT",
    "post_with_retries",
    "renew_after_401",
]

logger = logging.getLogger("hoxton_auth")

# A retry gets the time left before the deadline as its timeout, but never
# less than this: a request with (almost) no time to answer is a wasted try,
# and HTTP clients refuse a timeout of 0.
MIN_RETRY_TIMEOUT = 1.0
# 501 and 505 are 5xx that say this request can never work (RFC 9110 §15.6.2, §15.6.6).
PERMANENT_5XX = frozenset({501, 505})
# A 401 to a token younger than this is not the token's fault (wrong audience,
# missing permission, an API misconfigured): renewing would only burn quota.
MIN_AGE_TO_RENEW_AFTER_401 = 60.0
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
        reply = yield TokenRequest(url, form, as_json, timeout, dict(headers or {}))
        if isinstance(reply, TokenResponse) and 200 <= reply.status < 300:
            return reply, attempt
        if isinstance(reply, TokenResponse) and not _retryable(reply):
            raise error_from_response(reply, url, form, attempt)
        assert not isinstance(reply, float)  # noqa: S101  a TokenRequest is answered by a response
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
        now = yield Backoff(delay)
        assert isinstance(now, float)  # noqa: S101  a Backoff is answered by the time
        timeout = min(config.timeout, max(deadline - now, MIN_RETRY_TIMEOUT))


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


def renew_after_401(obtained_at: float | None, refused_when_new: bool, now: float) -> bool:
    """Whether the API's 401 to a token obtained at ``obtained_at`` calls for a new one.

    The one 401 rule of both adapters (issue 12). A token that the API
    refused as soon as it was fetched (``refused_when_new``: the resend after
    a renewal got a 401 too) shows the token is not the problem (wrong
    audience, missing permission): it is not renewed again until it is
    ``MIN_AGE_TO_RENEW_AFTER_401`` seconds old. So an API that refuses every
    token costs at most 2 token requests in its first minute and 1 a minute
    after that, however many calls it refuses, while a revoked token (whose
    successor is accepted) is still replaced each time. ``None`` (unknown
    age): renew.
    """
    if not refused_when_new or obtained_at is None:
        return True
    return now - obtained_at >= MIN_AGE_TO_RENEW_AFTER_401
