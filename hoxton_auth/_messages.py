"""The actions a flow yields and the replies a driver sends back into it.

See the "how it works" comment of ``_flow.py``. These are our own small
types, never requests or httpx objects: the core does no I/O, and the
adapters only turn a ``TokenRequest`` into bytes on the wire and the answer
into a ``TokenResponse`` (or a ``TransportFailure``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Generator, Mapping
from typing import TypeVar
from urllib.parse import urlencode

__all__ = [
    "MAX_RESPONSE_BYTES",
    "SECRET_FIELDS",
    "Action",
    "Backoff",
    "Flow",
    "Reply",
    "Secret",
    "TokenRequest",
    "TokenResponse",
    "TransportFailure",
    "mask_secrets",
]

T = TypeVar("T")

MAX_RESPONSE_BYTES = 1024 * 1024  # a token answer is a few KiB; more is not a token
# Form fields whose values are secrets (issue 12, item 8).
SECRET_FIELDS = (
    "client_secret",
    "password",
    "refresh_token",
    "code",
    "code_verifier",
    "otp",
    "mfa_token",
    "token",  # /oauth/revoke's refresh token
    "device_code",
)


class Secret(str):
    """A secret form value: a ``str`` whose ``repr`` is masked.

    Error trackers such as Sentry record the ``repr`` of every frame's locals
    when an exception passes through; a form dict of these shows ``'***'``.
    The value itself is used only where the body is encoded.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


def mask_secrets(form: Mapping[str, str]) -> dict[str, str]:
    """``form`` with every secret value wrapped in ``Secret``."""
    return {
        name: Secret(value) if name in SECRET_FIELDS and isinstance(value, str) else value
        for name, value in form.items()
    }


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
