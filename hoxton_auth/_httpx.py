"""The httpx adapter: one auth flow, driven by ``sync_auth_flow`` and ``async_auth_flow``.

Also the transport that sends our token requests with an ``httpx.Client`` of
our own, configured from the auth object's ``verify``/``cert``/``proxy``/
``trust_env`` (the environment's proxies and CA bundle by default); for
``async_auth_flow`` too, from the worker thread that runs the slow path. Only this
module imports httpx.

Request bodies are not buffered (no ``requires_request_body``): a streamed
upload stays streamed, and after a 401 the request is sent again only when
its body can be: bytes, a seekable file (rewound to where it started), or a
multipart form whose files httpx rewinds itself. A spent stream (a generator,
an async iterator, a socket) is not resent; the 401 is returned, as the
requests adapter does.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import TYPE_CHECKING, Any

import httpx

from ._config import ClientConfig, NetworkSettings
from ._errors import ConfigError
from ._session import BEARER, TokenManager

if TYPE_CHECKING:
    from ._wire import Reply, TokenRequest, TokenResponse

__all__ = [
    "HttpxAuth",
    "HttpxTransport",
    "send_with_httpx",
    "token_hosts",
]

logger = logging.getLogger("hoxton_auth")

_DEFAULT_NETWORK = NetworkSettings()
#: Origins an auth object remembers as approved for the token, at most.
MAX_APPROVED = 16


def _headers(content_type: str, request: TokenRequest) -> dict[str, str]:
    return {**request.headers, "Content-Type": content_type, "Accept": "application/json"}


def _ssl_context(network: NetworkSettings) -> ssl.SSLContext:
    """The TLS settings as one ``SSLContext`` (httpx 0.28 deprecates path strings and ``cert=``).

    Always built here, never left to httpx: with ``trust_env`` httpx would read
    ``SSL_CERT_FILE`` itself, and a stale one would raise a raw ``OSError``
    from a frame that holds the encoded form. Loaded once per settings and
    environment (loading a CA bundle takes milliseconds).

    Raises:
        ConfigError: A CA bundle or certificate file is gone, unreadable or not PEM.
    """
    environment = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    return _cached_ssl_context(network, environment if network.trust_env else (None, None))


@functools.lru_cache(maxsize=16)
def _cached_ssl_context(
    network: NetworkSettings, environment: tuple[str | None, str | None]
) -> ssl.SSLContext:
    try:
        return _load_ssl_context(network)
    except (ssl.SSLError, OSError) as exc:  # issue 22: named, and no frames kept
        exc.__traceback__ = None
        where = f"verify={network.verify!r} or cert={network.cert!r}"
        if network.verify is True and network.trust_env and any(environment):
            where += f" (SSL_CERT_FILE={environment[0]!r}, SSL_CERT_DIR={environment[1]!r})"
        raise ConfigError(f"cannot load {where}: {exc}") from None


def _load_ssl_context(network: NetworkSettings) -> ssl.SSLContext:
    if network.verify is True:
        # httpx's own default: certifi, or SSL_CERT_FILE/SSL_CERT_DIR with trust_env.
        context = httpx.create_ssl_context(trust_env=network.trust_env)
    elif network.verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif os.path.isdir(network.verify):
        context = ssl.create_default_context(capath=network.verify)
    else:
        context = ssl.create_default_context(cafile=network.verify)
    if isinstance(network.cert, tuple):
        context.load_cert_chain(network.cert[0], network.cert[1])
    elif network.cert is not None:
        context.load_cert_chain(network.cert)
    return context


def _client_options(network: NetworkSettings, timeout: float) -> dict[str, Any]:
    options: dict[str, Any] = {"timeout": timeout, "trust_env": network.trust_env}
    if network.proxy is not None:
        options["proxy"] = network.proxy
    options["verify"] = _ssl_context(network)
    return options


def _token_response(response: httpx.Response, body: bytes) -> TokenResponse:
    # Here, not at the top: a process that finds its token in the cache never
    # creates the message dataclasses (each compiles its methods; issue 6).
    from ._wire import TokenResponse

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


def send_with_httpx(request: TokenRequest, network: NetworkSettings = _DEFAULT_NETWORK) -> Reply:
    """POST a token request with ``httpx.Client``; network failures are returned."""
    from ._wire import MAX_RESPONSE_BYTES, TransportFailure  # here: see _token_response

    # Outside the try: an unreadable cert or CA file is the caller's mistake, not the
    # network's; and before the body is encoded, so that no frame of its error holds it.
    options = _client_options(network.for_url(request.url), request.timeout)  # issue 22
    body, content_type = request.encode()
    deadline = time.monotonic() + request.timeout  # bounds the whole answer (issue 12)
    try:
        with (
            httpx.Client(**options) as client,
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
    # ssl.SSLError: with TLS 1.3 a server refuses a client certificate after the
    # handshake, and httpcore's async backend lets that alert out unwrapped.
    except (httpx.HTTPError, httpx.InvalidURL, ssl.SSLError) as exc:
        _forget_request(exc)
        return TransportFailure(exc, time.time())


class HttpxTransport:
    """Sends one auth object's token requests with ``httpx.Client``, with its settings."""

    __slots__ = ("network",)

    def __init__(self, network: NetworkSettings) -> None:
        self.network = network

    def __call__(self, request: TokenRequest) -> Reply:
        """POST ``request``; a network failure is returned, not raised."""
        return send_with_httpx(request, self.network)


def _noop() -> None:
    return None


def _rewinder(request: httpx.Request) -> Callable[[], None] | None:
    """How to make ``request``'s body sendable again, or None when it cannot be.

    Decided before the first send: a file's starting position is only known then.
    """
    stream = request.stream
    if isinstance(stream, httpx.ByteStream):
        return _noop  # bytes (or no body): sent again as they are
    fields = getattr(stream, "fields", None)  # httpx's MultipartStream
    if isinstance(fields, list):
        # httpx seeks every file field back to 0 before sending it.
        files = [getattr(field, "file", None) for field in fields]
        if all(f is None or isinstance(f, (str, bytes)) or _seekable(f) for f in files):
            return _noop
        return None
    # content=<file>: httpx reads it in chunks (IteratorByteStream keeps it in
    # ``_stream``, a private name: anything else means "cannot be resent").
    source = getattr(stream, "_stream", None)
    if source is not None and hasattr(source, "read") and _seekable(source):
        start = source.tell()

        def rewind() -> None:
            source.seek(start)

        return rewind
    return None


def _seekable(file: Any) -> bool:
    try:
        return bool(file.seekable()) and isinstance(file.tell(), int)
    except (AttributeError, OSError, ValueError):
        return False


def token_hosts(config: ClientConfig) -> frozenset[bytes] | None:
    """The ``netloc`` s (as httpx spells them) of the ``https`` origins that get the token;
    ``None`` when no origin is pinned: every ``https`` URL. Anything else goes
    through ``config.may_send_token``."""
    if not config.allowed_origins:
        return None
    https = (o for o in config.allowed_origins if o.startswith("https://"))
    return frozenset(o.removeprefix("https://").encode("ascii") for o in https)


class HttpxAuth(httpx.Auth):
    """The httpx side of ``HoxtonAuth``: one retry after a 401, sync and async.

    The two flows are the same straight lines; they differ only in how they
    wait for a token (``get_token`` or ``aget_token``) and read a response.
    """

    _manager: TokenManager
    _send_httpx: HttpxTransport
    _token_hosts: frozenset[bytes] | None  # see token_hosts
    _approved: frozenset[tuple[str, bytes]] = frozenset()  # other origins approved so far
    config: ClientConfig

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Set the header; after a 401 to our token, renew it once and resend once.

        A request to another origin than the API's goes out without the token.

        Raises:
            InsecureTransportError: The URL is ``http://`` on a host other
                than loopback, and ``allow_insecure_http`` is off; or another
                origin, with ``other_origins="raise"``.
        """
        if not self._sends_token(request):
            yield request  # another origin: no token, so no 401 of ours either
            return
        rewind = _rewinder(request)  # before the first send: where a file starts
        request.headers["Authorization"] = BEARER + self._manager.get_token(self._send_httpx)
        response = yield request
        refused = self._refused(response, rewind)
        if refused is None or rewind is None:
            return
        response.read()  # release the 401's connection
        token = self._manager.replace(refused, self._send_httpx)
        request.headers["Authorization"] = BEARER + token
        rewind()
        response = yield request
        self._manager.after_resend(token, response.status_code)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """``sync_auth_flow`` for ``httpx.AsyncClient``, under asyncio or trio.

        Raises:
            InsecureTransportError: As ``sync_auth_flow``.
        """
        if not self._sends_token(request):
            yield request
            return
        rewind = _rewinder(request)
        token = await self._manager.aget_token(self._send_httpx)
        request.headers["Authorization"] = BEARER + token
        response = yield request
        refused = self._refused(response, rewind)
        if refused is None or rewind is None:
            return
        await response.aread()
        token = await self._manager.areplace(refused, self._send_httpx)
        request.headers["Authorization"] = BEARER + token
        rewind()
        response = yield request
        self._manager.after_resend(token, response.status_code)

    def _refused(self, response: httpx.Response, rewind: Callable[[], None] | None) -> str | None:
        """The token to renew after a 401 to it, or ``None`` (``TokenManager.refused_by_401``)."""
        if response.status_code != 401:
            return None
        # httpx drops the header after a redirect to another origin.
        authorization = response.request.headers.get("Authorization")
        return self._manager.refused_by_401(authorization, rewind is not None)

    def _sends_token(self, request: httpx.Request) -> bool:
        """Whether ``request`` gets the token (``ClientConfig.may_send_token``).

        Raises:
            InsecureTransportError: As ``ClientConfig.may_send_token``.
        """
        url = request.url
        hosts = self._token_hosts
        if url.scheme == "https" and (hosts is None or url.netloc in hosts):
            return True  # the hot path: the API's own origin
        origin = (url.scheme, url.netloc)
        if origin in self._approved:
            return True  # loopback, or another spelling of the API's origin, seen before
        if not self.config.may_send_token(str(url)):
            return False
        if len(self._approved) < MAX_APPROVED:
            self._approved = self._approved | {origin}  # swapped atomically
        return True
