"""The httpx adapter: ``sync_auth_flow`` and ``async_auth_flow``, mirrored.

Also the transports that send our token requests with an httpx client of our
own (honouring the environment's proxies and CA bundle). Only this module
imports httpx.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING

import httpx

from ._manager import TokenManager

if TYPE_CHECKING:
    from ._messages import Reply, TokenRequest, TokenResponse

__all__ = ["HttpxAuth", "asend_with_httpx", "send_with_httpx"]

BEARER = "Bearer "


def _headers(content_type: str, request: TokenRequest) -> dict[str, str]:
    return {**request.headers, "Content-Type": content_type, "Accept": "application/json"}


def _token_response(response: httpx.Response, body: bytes) -> TokenResponse:
    # Here, not at the top: a process that finds its token in the cache never
    # creates the message dataclasses (each compiles its methods; issue 6).
    from ._messages import TokenResponse

    return TokenResponse(
        status=response.status_code,
        body=body,
        headers={name.lower(): value for name, value in response.headers.items()},
        received_at=time.time(),
    )


def _check_deadline(response: httpx.Response, deadline: float, timeout: float) -> None:
    """httpx's read timeout bounds each read: a dripping answer must not outlast ``timeout``."""
    if time.monotonic() > deadline:
        raise httpx.ReadTimeout(
            f"the token endpoint's answer took longer than {timeout:g}s", request=response.request
        )


def _forget_request(exc: Exception) -> None:
    """The error keeps no request: its body holds secrets (issue 12)."""
    if isinstance(exc, httpx.RequestError):
        exc._request = None  # the public setter accepts only a Request


def send_with_httpx(request: TokenRequest) -> Reply:
    """POST a token request with ``httpx.Client``; network failures are returned."""
    from ._messages import MAX_RESPONSE_BYTES, TransportFailure  # here: see _token_response

    body, content_type = request.encode()
    deadline = time.monotonic() + request.timeout  # bounds the whole answer (issue 12)
    try:
        with (
            httpx.Client(timeout=request.timeout) as client,
            client.stream(
                "POST", request.url, content=body, headers=_headers(content_type, request)
            ) as response,
        ):
            content = b""
            for chunk in response.iter_bytes():
                content += chunk
                if len(content) > MAX_RESPONSE_BYTES:
                    break
                _check_deadline(response, deadline, request.timeout)
            return _token_response(response, content)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        _forget_request(exc)
        return TransportFailure(exc, time.time())


async def asend_with_httpx(request: TokenRequest) -> Reply:
    """POST a token request with ``httpx.AsyncClient``; network failures are returned."""
    from ._messages import MAX_RESPONSE_BYTES, TransportFailure  # here: see _token_response

    body, content_type = request.encode()
    deadline = time.monotonic() + request.timeout  # bounds the whole answer (issue 12)
    try:
        async with (
            httpx.AsyncClient(timeout=request.timeout) as client,
            client.stream(
                "POST", request.url, content=body, headers=_headers(content_type, request)
            ) as response,
        ):
            content = b""
            async for chunk in response.aiter_bytes():
                content += chunk
                if len(content) > MAX_RESPONSE_BYTES:
                    break
                _check_deadline(response, deadline, request.timeout)
            return _token_response(response, content)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        _forget_request(exc)
        return TransportFailure(exc, time.time())


class HttpxAuth(httpx.Auth):
    """The httpx side of ``HoxtonAuth``: one retry after a 401, sync and async."""

    # The body is kept so that the request can be sent again after a 401.
    requires_request_body = True
    _manager: TokenManager

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Set the header; after a 401, renew the token and resend once."""
        request.read()
        token = self._manager.get_token(send_with_httpx)
        request.headers["Authorization"] = BEARER + token
        response = yield request
        # Only a 401 to the token we sent: after a redirect to another origin
        # httpx drops the header, and that host's 401 says nothing about our token.
        if (
            response.status_code == 401
            and response.request.headers.get("Authorization") == BEARER + token
            and self._manager.renews_after_401(token)  # not after a 401 storm (issue 12)
        ):
            self._manager.invalidate(token)
            token = self._manager.get_token(send_with_httpx)
            request.headers["Authorization"] = BEARER + token
            response = yield request
            if response.status_code == 401:
                self._manager.refused_when_new(token)  # a 401 storm: see renew_after_401

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """``sync_auth_flow`` for ``httpx.AsyncClient``."""
        await request.aread()
        token = await self._manager.aget_token(asend_with_httpx)
        request.headers["Authorization"] = BEARER + token
        response = yield request
        if (
            response.status_code == 401
            and response.request.headers.get("Authorization") == BEARER + token
            and self._manager.renews_after_401(token)
        ):
            await self._manager.ainvalidate(token)
            token = await self._manager.aget_token(asend_with_httpx)
            request.headers["Authorization"] = BEARER + token
            response = yield request
            if response.status_code == 401:
                self._manager.refused_when_new(token)  # a 401 storm: see renew_after_401
