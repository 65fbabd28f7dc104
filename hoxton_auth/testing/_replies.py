"""Small HTTP-agnostic building blocks: replies, OAuth errors, body parsing."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

__all__ = [
    "Rejected",
    "Reply",
    "json_reply",
    "oauth_error",
    "parse_params",
    "require",
    "with_basic_credentials",
]


@dataclasses.dataclass(frozen=True)
class Reply:
    """What the HTTP layer should send; `disconnect` drops the connection instead."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    disconnect: bool = False
    drip: float = 0.0  # seconds between bytes of the body: a dripping endpoint
    truncate: bool = False  # send half the announced body, then hang up


class Rejected(Exception):
    """Raised by endpoint helpers to answer early with `reply`."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


_JSON = "application/json; charset=utf-8"
# RFC 6749 section 5.1: token responses must not be cached.
_NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


def json_reply(status: int, payload: Any, *, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """A JSON reply marked uncacheable."""
    body = json.dumps(payload).encode("utf-8")
    return Reply(status, body, (("Content-Type", _JSON), *_NO_STORE, *headers))


def oauth_error(status: int, error: str, description: str) -> Reply:
    """An Auth0-shaped error body: `{"error": ..., "error_description": ...}`."""
    return json_reply(status, {"error": error, "error_description": description})


def require(fields: dict[str, str], name: str) -> str:
    """Return a non-empty parameter or reject with 400 `invalid_request`.

    Raises:
        Rejected: The parameter is missing or empty.
    """
    value = fields.get(name)
    if not value:
        raise Rejected(oauth_error(400, "invalid_request", f"Missing required parameter: {name}"))
    return value


def _invalid(description: str) -> Rejected:
    return Rejected(oauth_error(400, "invalid_request", description))


def _parse_json(body: bytes) -> dict[str, str]:
    try:
        data = json.loads(body)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise _invalid("Malformed JSON body") from exc
    if not isinstance(data, dict):
        raise _invalid("The JSON body must be an object")
    fields: dict[str, str] = {}
    for name, value in data.items():
        if value is None:
            continue
        if isinstance(value, str):
            fields[name] = value
        elif isinstance(value, (bool, int, float)):
            fields[name] = json.dumps(value)
        else:
            raise _invalid(f"Invalid value for parameter: {name}")
    return fields


def _parse_form(body: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise _invalid("Malformed form body") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        # RFC 6749 section 3.2: parameters must not be repeated.
        if name in fields:
            raise _invalid(f"Duplicate parameter: {name}")
        fields[name] = value
    return fields


def parse_params(content_type: str | None, body: bytes) -> dict[str, str]:
    """Parse a form or JSON request body into string fields (Auth0 takes both).

    A missing Content-Type is read as a form, as most servers do.

    Raises:
        Rejected: 400 `invalid_request` for a malformed body or other media types.
    """
    media = (content_type or "application/x-www-form-urlencoded").split(";")[0]
    media = media.strip().lower()
    if media == "application/json":
        return _parse_json(body)
    if media == "application/x-www-form-urlencoded":
        return _parse_form(body)
    raise _invalid(f"Unsupported content type: {media}")


def with_basic_credentials(fields: dict[str, str], authorization: str | None) -> dict[str, str]:
    """Add HTTP Basic client credentials (`client_secret_basic`) to the body's fields.

    Auth0 accepts both this and `client_secret_post`; RFC 6749 section 2.3.1
    form-encodes the id and secret before they are joined with a colon.

    Raises:
        Rejected: 400 `invalid_request` for a malformed Basic header.
    """
    if not authorization or authorization[:6].lower() != "basic ":
        return fields
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid("Malformed Basic authorization header") from None
    client_id, sep, client_secret = decoded.partition(":")
    if not sep:
        raise _invalid("Malformed Basic authorization header")
    merged = dict(fields)
    merged.setdefault("client_id", unquote_plus(client_id))
    merged.setdefault("client_secret", unquote_plus(client_secret))
    return merged
