"""The requests adapter: an ``AuthBase`` that sets the header and retries one 401.

Also the blocking transport that sends our token requests with a
``requests.Session`` of our own, configured from the auth object's
``verify``/``cert``/``proxy``/``trust_env`` (the environment's proxies and CA
bundle by default). Only this module imports requests.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import requests
import requests.auth
import urllib3.exceptions
from requests.cookies import extract_cookies_to_jar
from requests.utils import rewind_body

from ._config import ClientConfig, NetworkSettings, origin_of
from ._errors import ConfigError
from ._session import BEARER, TokenManager

if TYPE_CHECKING:
    from ._wire import Reply, TokenRequest

__all__ = ["RequestsAuth", "RequestsTransport", "send_with_requests", "token_prefixes"]

logger = logging.getLogger("hoxton_auth")

_DEFAULT_NETWORK = NetworkSettings()
#: Origins an auth object remembers as approved for the token, at most.
MAX_PREFIXES = 16


def _session(network: NetworkSettings) -> requests.Session:
    session = requests.Session()
    session.trust_env = network.trust_env
    return session


def send_with_requests(request: TokenRequest, network: NetworkSettings = _DEFAULT_NETWORK) -> Reply:
    """POST a token request; a network failure is returned, not raised.

    ``verify``, ``cert`` and ``proxies`` go on the request, not the session:
    requests lets the environment's CA bundle override a session's ``verify``
    (psf/requests#3829), but not a request's.
    """
    # Here, not at the top: a process that finds its token in the cache never
    # creates the message dataclasses (each compiles its methods; issue 6).
    from ._wire import MAX_RESPONSE_BYTES, TokenResponse, TransportFailure

    network = network.for_url(request.url)  # never a proxy in clear (issue 22)
    body, content_type = request.encode()
    headers = {**request.headers, "Content-Type": content_type, "Accept": "application/json"}
    proxies = {"http": network.proxy, "https": network.proxy} if network.proxy else None
    # requests' timeout bounds each read, not the answer: a server dripping a
    # byte at a time would hold us (and the cache lock) for ever. One deadline
    # bounds the whole answer (issue 12).
    deadline = time.monotonic() + request.timeout
    try:
        with (
            _session(network) as session,
            session.post(
                request.url,
                data=body,
                headers=headers,
                timeout=request.timeout,
                stream=True,
                allow_redirects=False,
                verify=network.verify,
                cert=network.cert,
                proxies=proxies,
            ) as response,
        ):
            content = b""
            while len(content) <= MAX_RESPONSE_BYTES:
                # read1: whatever has arrived (iter_content would wait for a full chunk).
                chunk = response.raw.read1(64 * 1024, decode_content=True)
                if not chunk:
                    break
                content += chunk
                if time.monotonic() > deadline:
                    raise requests.Timeout(
                        f"the token endpoint's answer took longer than {request.timeout:g}s"
                    )
            return TokenResponse(
                status=response.status_code,
                body=content,
                headers={name.lower(): value for name, value in response.headers.items()},
                received_at=time.time(),
            )
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        if isinstance(exc, requests.RequestException):
            exc.request = None  # a PreparedRequest holds the body, secrets and all (issue 12)
        return TransportFailure(exc, time.time())
    except OSError as exc:  # requests' own: a CA bundle or certificate gone since (issue 22)
        exc.__traceback__ = None  # its frames hold the encoded body
        body = b""  # and so would this frame, in the error's traceback
        raise ConfigError(
            f"cannot use verify={network.verify!r} or cert={network.cert!r}: {exc}"
        ) from None


class RequestsTransport:
    """Sends one auth object's token requests with requests, with its network settings."""

    __slots__ = ("network",)

    def __init__(self, network: NetworkSettings) -> None:
        self.network = network

    def __call__(self, request: TokenRequest) -> Reply:
        """POST ``request``; a network failure is returned, not raised."""
        return send_with_requests(request, self.network)


def token_prefixes(config: ClientConfig) -> tuple[str, ...]:
    """The URL prefixes of the origins that get the token, as requests spells a URL.

    Anything else goes through ``config.may_send_token`` (loopback, another
    spelling of the same origin, or another origin). With no origin pinned,
    every ``https`` URL (requests lower-cases the scheme).
    """
    return tuple(f"{origin}/" for origin in config.allowed_origins) or ("https://",)


class RequestsAuth(requests.auth.AuthBase):
    """The requests side of ``HoxtonAuth``."""

    _manager: TokenManager
    _send_requests: RequestsTransport
    _token_prefixes: tuple[str, ...]  # URL prefixes of the origins that get the token
    config: ClientConfig

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Set ``Authorization: Bearer <token>``; arrange one retry after a 401.

        A request to another origin than the API's goes out without the token
        (``ClientConfig.may_send_token``).

        Raises:
            InsecureTransportError: The URL is ``http://`` on a host other
                than loopback, and ``allow_insecure_http`` is off; or another
                origin, with ``other_origins="raise"``.
        """
        url = request.url or ""
        # The hot path: a URL of the API's own origin (a precomputed prefix check).
        if not url.startswith(self._token_prefixes) and not self._approve(url):
            return request  # another origin: no token, so no 401 of ours either
        request.headers["Authorization"] = BEARER + self._manager.get_token(self._send_requests)
        # Appended directly: register_hook's isinstance(hook, Callable) check
        # costs more than the rest of this method (issue 6), for a bound method.
        request.hooks["response"].append(self._retry_once_after_401)
        return request

    def _approve(self, url: str) -> bool:
        """``config.may_send_token(url)``; an approved origin (loopback, another spelling
        of the API's) joins the hot path's prefixes, up to ``MAX_PREFIXES``."""
        if not self.config.may_send_token(url):
            return False
        prefixes = self._token_prefixes
        if len(prefixes) < MAX_PREFIXES:
            self._token_prefixes = (*prefixes, origin_of(url) + "/")  # swapped atomically
        return True

    def _retry_once_after_401(
        self, response: requests.Response, **kwargs: Any
    ) -> requests.Response:
        """The API answered: after a 401 to our token, renew it once and resend once.

        The resent response does not run response hooks (the adapter sends it
        directly, as requests' own digest auth does), so this cannot loop.
        """
        if response.status_code != 401:
            return response
        sent = response.request
        body_position = getattr(sent, "_body_position", None)
        # requests records a position only for streams it can seek back to; any
        # other stream (a generator, a socket) is spent, and resending it would
        # send an empty body as if it were the request.
        rewindable = isinstance(body_position, int) and not isinstance(body_position, bool)
        resendable = sent.body is None or isinstance(sent.body, (bytes, str)) or rewindable
        # requests drops the header when a redirect leaves the API's origin.
        refused = self._manager.refused_by_401(sent.headers.get("Authorization"), resendable)
        if refused is None:
            return response
        # Read and release the 401 first: if no new token can be had, the error
        # propagates and nobody else would return this connection to the pool.
        response.content  # noqa: B018  read it all so the connection can be reused
        response.close()
        token = self._manager.replace(refused, self._send_requests)
        retry = sent.copy()
        if rewindable:
            rewind_body(retry)
        cookies = retry._cookies  # type: ignore[attr-defined]  # requests keeps the jar private
        extract_cookies_to_jar(cookies, sent, response.raw)  # type: ignore[no-untyped-call]  # stubs
        retry.prepare_cookies(cookies)
        retry.headers["Authorization"] = BEARER + token
        second = response.connection.send(retry, **kwargs)
        second.history.append(response)
        second.request = retry
        self._manager.after_resend(token, second.status_code)
        return second
