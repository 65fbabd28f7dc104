"""The wire of the token endpoint: what goes to it, what comes back, and what that means.

A flow (``_flow.py``) yields ``TokenRequest`` and ``Backoff`` actions and gets a
``Reply`` back: our own small types, never requests or httpx objects, so the
core does no I/O and an adapter only turns a ``TokenRequest`` into bytes and
the answer into a ``TokenResponse`` (or a ``TransportFailure``). A 2xx reply
becomes a ``Token``; any other becomes our error in the server's words (RFC
6749 §5.2 ``error`` / ``error_description``, or the start of a body that is
not JSON), with any secret the server echoed back masked, and never the
request form. A 429's wait is read from every header that may say it
(``wait_seconds``). Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import math
import re
from collections.abc import Generator, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus, urlencode

from ._errors import (
    InvalidGrantError,
    MfaRequiredError,
    TokenEndpointUnreachableError,
    TokenRequestError,
    printable,
)
from ._grants import SECRET_FIELDS
from ._token import Token, TokenFormatError

__all__ = [
    "MAX_RESPONSE_BYTES",
    "SNIPPET_CHARS",
    "Backoff",
    "Flow",
    "Reply",
    "TokenRequest",
    "TokenResponse",
    "TransportFailure",
    "bad_response",
    "error_code",
    "error_from_response",
    "final_error",
    "token_from_response",
    "wait_seconds",
]

T = TypeVar("T")

MAX_RESPONSE_BYTES = 1024 * 1024  # a token answer is a few KiB; more is not a token


@dataclasses.dataclass(frozen=True)
class TokenRequest:
    """A POST to make. ``form`` holds secrets: never log or print it."""

    url: str
    form: Mapping[str, str] = dataclasses.field(repr=False)
    as_json: bool = False
    timeout: float = 30.0
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)  # e.g. auth0-forwarded-for

    def encode(self) -> tuple[bytes, str]:
        """The body and its ``Content-Type``."""
        plain = {name: str.__str__(value) for name, value in self.form.items()}
        if self.as_json:
            return json.dumps(plain).encode(), "application/json"
        return urlencode(plain).encode(), "application/x-www-form-urlencoded"


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


Action = TokenRequest | Backoff
Reply = TokenResponse | TransportFailure
"""What a transport returns for a ``TokenRequest``."""
# A flow gets a Reply for a TokenRequest and the time (a float) for a Backoff.
Flow = Generator[Action, Reply | float, T]

SNIPPET_CHARS = 200
# The longest wait a server may plausibly ask for: the reset of Auth0's daily
# token quota, the longest quota period it has. Longer is ignored.
MAX_SERVER_WAIT = 24 * 3600.0
_DELTA_SECONDS = re.compile(r"[0-9]+")
QUOTA_HEADERS = {
    "auth0-client-quota-limit": "the client's token quota",
    "auth0-organization-quota-limit": "the organization's token quota",
}
BLOCKED = (
    "Auth0's brute-force protection blocked this login after too many failed "
    "attempts; it stays blocked until the user follows the unblock link Auth0 "
    "sent them or changes their password, or an administrator removes the block "
    "(Management API: user-blocks); retrying cannot help"
)


def _retry_after_header(response: TokenResponse) -> float | None:
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


def _quota_buckets(value: str) -> list[dict[str, str]]:
    buckets = []
    for part in value.split(","):
        fields = dict(item.strip().split("=", 1) for item in part.split(";") if "=" in item)
        if fields:
            buckets.append(fields)
    return buckets


def _number(text: str | None) -> float | None:
    try:
        value = float(text if text is not None else "nan")
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def wait_seconds(response: TokenResponse) -> float | None:
    """How long a 429 (or 503) asks us to wait: the longest of any header that says so.

    ``Retry-After`` (seconds or an HTTP date, RFC 9110 §10.2.3); Auth0's
    ``X-RateLimit-Reset`` (the epoch second the limit resets); and the ``t=``
    of a bucket that ran out in its token quota headers (``Auth0-Client-Quota-Limit``,
    ``Auth0-Organization-Quota-Limit``: ``b=per_hour;q=100;r=0;t=3540,...`` is
    bucket, quota, remaining, seconds to reset). Asking sooner is refused.
    A wait longer than ``MAX_SERVER_WAIT`` is nonsense (a broken or hostile
    server): it is ignored, and the normal backoff applies.
    """
    waits: list[float] = []
    retry_after = _retry_after_header(response)
    if retry_after is not None:
        waits.append(retry_after)
    if response.status == 429:
        reset = _number(response.headers.get("x-ratelimit-reset"))
        if reset is not None:
            waits.append(max(reset - response.received_at, 0.0))
        for header in QUOTA_HEADERS:
            for bucket in _quota_buckets(response.headers.get(header, "")):
                reset_in = _number(bucket.get("t"))
                if reset_in is not None and _number(bucket.get("r")) in (None, 0.0):
                    waits.append(reset_in)
    plausible = [wait for wait in waits if wait <= MAX_SERVER_WAIT]
    return max(plausible) if plausible else None


def _quota_words(response: TokenResponse) -> str:
    """Auth0's quota headers in words ("" when there are none)."""
    said = []
    for header, owner in QUOTA_HEADERS.items():
        for bucket in _quota_buckets(response.headers.get(header, "")):
            period = bucket.get("b", "?").replace("per_", "per ")
            quota, left, reset = (_number(bucket.get(k)) for k in ("q", "r", "t"))
            words = (
                f"{owner} {period}: {left:.0f} of {quota:.0f} tokens left"
                if (quota is not None and left is not None)
                else f"{owner} {period}"
            )
            if reset is not None:
                words += f", resets in {reset:.0f}s"
            said.append(words)
    return "; ".join(said)


def error_code(response: TokenResponse) -> str | None:
    """The OAuth ``error`` of a JSON body, or ``None``."""
    body = _error_body(response)
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None


def _error_body(response: TokenResponse) -> Any:
    try:
        return json.loads(response.body) if len(response.body) <= MAX_RESPONSE_BYTES else None
    except (ValueError, RecursionError):
        return None


def token_from_response(
    response: TokenResponse,
    url: str,
    form: Mapping[str, str],
    attempts: int,
    kept_refresh_token: str | None,
) -> Token:
    """The token in a 2xx ``response``.

    Raises:
        TokenRequestError: The body is too large, not JSON, or not a token response.
    """
    data = _json_body(response, url, attempts)
    try:
        return Token.from_response(
            data, response.received_at, kept_refresh_token=kept_refresh_token
        )
    except TokenFormatError as exc:
        raise bad_response(
            f"malformed token response from {url} (HTTP {response.status}, "
            f"{_attempts(attempts)}): {exc}",
            response,
            url,
            attempts,
        ) from None


def bad_response(
    message: str, response: TokenResponse, url: str, attempts: int
) -> TokenRequestError:
    """Our error for a 2xx that does not say what it should (no ``error`` to quote)."""
    return TokenRequestError(message, status_code=response.status, url=url, attempts=attempts)


def error_from_response(
    response: TokenResponse, url: str, form: Mapping[str, str], attempts: int
) -> TokenRequestError:
    """Turn a refusal into our error, in the server's own words (RFC 6749 §5.2).

    A 429 says how long to wait (``retry_after``) and what ran out; Auth0's
    ``too_many_attempts`` says plainly that the account is blocked; and
    ``mfa_required`` is a ``MfaRequiredError`` carrying the ``mfa_token``.
    """
    body = _error_body(response)
    error = body.get("error") if isinstance(body, dict) else None
    retry_after = wait_seconds(response) if response.status in (429, 503) else None
    extra = _extra_words(response, retry_after)
    if not isinstance(error, str):
        return TokenRequestError(
            f"token endpoint {url} answered HTTP {response.status} "
            f"({_content_type(response)}) after {_attempts(attempts)}: "
            f"{_snippet(response.body, form)}{extra}",
            status_code=response.status,
            url=url,
            attempts=attempts,
            retry_after=retry_after,
        )
    description = body.get("error_description") if isinstance(body, dict) else None
    description = _redact(description, form) if isinstance(description, str) else None
    error = _redact(error, form)
    words = _clip(error, 100) + (f": {_clip(description, 500)}" if description else "")
    if error == "too_many_attempts":
        words += f" ({BLOCKED})"
    message = f"{words} (HTTP {response.status}) at {url} after {_attempts(attempts)}{extra}"
    if error == "mfa_required" and isinstance(body, dict):
        mfa_token = body.get("mfa_token")
        return MfaRequiredError(
            message + "; pass otp= (a callable returning the one-time code) to complete it",
            mfa_token=mfa_token if isinstance(mfa_token, str) else None,
            mfa_requirements=body.get("mfa_requirements"),
            status_code=response.status,
            error=error,
            error_description=description,
            url=url,
            attempts=attempts,
        )
    kind = InvalidGrantError if error == "invalid_grant" else TokenRequestError
    return kind(
        message,
        status_code=response.status,
        error=error,
        error_description=description,
        url=url,
        attempts=attempts,
        retry_after=retry_after,
    )


def _extra_words(response: TokenResponse, retry_after: float | None) -> str:
    said = _quota_words(response) if response.status == 429 else ""
    if retry_after is not None:
        said = f"retry after {retry_after:.0f}s" + (f"; {said}" if said else "")
    return f" ({said})" if said else ""


def final_error(
    reply: Reply,
    url: str,
    form: Mapping[str, str],
    attempts: int,
    reason: str,
) -> Exception:
    """The error after the last try; ``reason`` says why there is no other."""
    if isinstance(reply, TokenResponse):
        error = error_from_response(reply, url, form, attempts)
        error.args = (f"{error.args[0]} (gave up: {reason})",)
        return error
    cause = printable(_redact(str(reply.error), form))
    unreachable = TokenEndpointUnreachableError(
        f"could not reach the token endpoint {url} after {_attempts(attempts)} "
        f"(gave up: {reason}): {type(reply.error).__name__}: {cause}",
        url=url,
        attempts=attempts,
    )
    unreachable.__cause__ = _without_frames(reply.error)
    return unreachable


def _without_frames(error: BaseException) -> BaseException:
    """``error`` and its chain with their tracebacks dropped (issue 12).

    The frames of the transport and of the HTTP library below it hold the
    encoded request body in their locals, which error trackers record. The
    cause's type and message are what tell the story.
    """
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    return error


def _attempts(count: int) -> str:
    return f"{count} attempt{'s' if count != 1 else ''}"


def _json_body(response: TokenResponse, url: str, attempts: int) -> Any:
    if len(response.body) > MAX_RESPONSE_BYTES:
        raise bad_response(
            f"token response from {url} is larger than {MAX_RESPONSE_BYTES} bytes "
            f"(HTTP {response.status}, {_attempts(attempts)})",
            response,
            url,
            attempts,
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
        # Never quoted either (issue 12): a 2xx that is not JSON may be a
        # form-encoded token response (access_token=...&refresh_token=...).
        shown = f"{len(response.body)} bytes, not shown"
    raise bad_response(
        f"token response from {url} is not JSON (HTTP {response.status}, "
        f"{_content_type(response)}, {_attempts(attempts)}): {shown}",
        response,
        url,
        attempts,
    )


def _content_type(response: TokenResponse) -> str:
    return response.headers.get("content-type") or "no content type"


def _snippet(body: bytes, form: Mapping[str, str]) -> str:
    text = body[: SNIPPET_CHARS * 4].decode("utf-8", "replace")
    # Masked before whitespace is collapsed and the text cut: either could
    # change a secret just enough to slip past the mask.
    text = printable(" ".join(_redact(text, form).split()))
    if not text:
        return "empty body"
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "..."


def _clip(text: str, limit: int) -> str:
    """Server words for a one-line message: whitespace collapsed, escapes escaped, length capped."""
    text = printable(" ".join(text.split()))
    return text if len(text) <= limit else text[:limit] + "..."


def _redact(text: str, form: Mapping[str, str]) -> str:
    """Mask any secret of the request that a server echoed back."""
    for name in SECRET_FIELDS:
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
