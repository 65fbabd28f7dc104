"""What a token endpoint's reply means: a ``Token``, or our error in the server's words.

Messages quote the server (RFC 6749 §5.2 ``error`` / ``error_description``,
or the first ``SNIPPET_CHARS`` characters of a body that is not JSON), with
any secret of the request that the server echoed back masked, and never the
request form itself.

Pure functions: no I/O, no clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from ._errors import InvalidGrantError, TokenEndpointUnreachableError, TokenRequestError
from ._messages import MAX_RESPONSE_BYTES, Reply, TokenResponse
from ._token import Token, TokenFormatError

__all__ = ["SNIPPET_CHARS", "error_from_response", "final_error", "token_from_response"]

SNIPPET_CHARS = 200


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
    try:
        data = _json_body(response, url, form, attempts)
        return Token.from_response(
            data, response.received_at, kept_refresh_token=kept_refresh_token
        )
    except TokenFormatError as exc:
        raise TokenRequestError(
            f"malformed token response from {url} (HTTP {response.status}, "
            f"{_attempts(attempts)}): {exc}",
            status_code=response.status,
            url=url,
            attempts=attempts,
        ) from None


def error_from_response(
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
    cause = _redact(str(reply.error), form)
    unreachable = TokenEndpointUnreachableError(
        f"could not reach the token endpoint {url} after {_attempts(attempts)} "
        f"(gave up: {reason}): {type(reply.error).__name__}: {cause}",
        url=url,
        attempts=attempts,
    )
    unreachable.__cause__ = reply.error
    return unreachable


def _attempts(count: int) -> str:
    return f"{count} attempt{'s' if count != 1 else ''}"


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
    secrets = ("client_secret", "password", "code", "code_verifier", "refresh_token", "token")
    for name in (*secrets, "device_code"):
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
