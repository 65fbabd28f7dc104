"""The same cases on every adapter path: requests, httpx ``Client``, httpx ``AsyncClient``.

The async client runs under asyncio and under trio. Every path follows the
one 401 rule of the core (``_session.answer_401``), so the 401 cases below are
its end-to-end tests, on every transport.

``AdapterCases`` holds the cases; each subclass only says how to send a
request with its library (and each way of attaching the auth object that
library offers). Tokens come from ``hoxton_auth.testing.AuthServer``, whose
echo API rejects revoked tokens with 401. The other servers here are APIs,
not identity providers, and run on pytest-httpserver: one that always
answers 401 (its hits counted), foreign hosts, TLS endpoints and redirects,
each needing replies and request logs the test server's echo API does not give.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import hashlib
import io
import json
import re
import socket
import ssl
import threading
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpx
import pytest
import requests
import trustme
from pytest_httpserver import HTTPServer
from werkzeug import Response

import hoxton_auth
from hoxton_auth import (
    FileTokenCache,
    HoxtonAuth,
    HoxtonAuthWarning,
    InsecureTransportError,
    MemoryTokenCache,
    TokenRequestError,
)
from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

Body = bytes | Path | None


@dataclasses.dataclass
class Result:
    status: int
    content: bytes
    redirects: int = 0

    def echo(self) -> dict[str, Any]:
        data = json.loads(self.content)
        assert isinstance(data, dict)
        return data


class AdapterCases:
    """Every case, written once. Subclasses implement ``send`` and ``send_many``."""

    #: Ways this library attaches an auth object (client-wide, per request...).
    modes: ClassVar[tuple[str, ...]] = ()
    #: Whether the file body of ``send`` can be sent again after a 401 (an
    #: async iterator cannot: it is spent once sent).
    replays_file_body: ClassVar[bool] = True

    def send(self, method: str, url: str, auth: HoxtonAuth, mode: str, body: Body = None) -> Result:
        raise NotImplementedError

    def send_many(self, url: str, auth: HoxtonAuth, count: int) -> list[int]:
        """Send ``count`` GETs at once (threads or tasks); return their statuses."""
        raise NotImplementedError

    # -- fixtures ---------------------------------------------------------------------------

    @pytest.fixture
    def server(self, hoxton_auth_server: AuthServer) -> AuthServer:
        return hoxton_auth_server

    @pytest.fixture
    def auth(self, server: AuthServer) -> HoxtonAuth:
        return HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)

    @pytest.fixture
    def always_401(self, httpserver: HTTPServer) -> str:
        def reject(request: Any) -> Response:
            body = json.dumps({"error": "invalid_token", "error_description": "nope"})
            return Response(
                body,
                401,
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
                content_type="application/json",
            )

        httpserver.expect_request("/always401").respond_with_handler(reject)
        return str(httpserver.url_for("/always401"))

    # -- the header -------------------------------------------------------------------------

    def test_sets_the_bearer_header_in_every_mode(
        self, server: AuthServer, auth: HoxtonAuth
    ) -> None:
        for mode in self.modes:
            result = self.send("GET", server.api_url + "?q=1", auth, mode)
            assert result.status == 200, mode
            assert result.echo()["sub"] == f"{DEFAULT_CLIENT_ID}@clients"
            assert result.echo()["query"] == "q=1"
        assert server.count() == 1  # one token for every call and mode
        assert server.api_requests == len(self.modes)

    def test_opaque_header_value_is_the_token(
        self, server: AuthServer, auth: HoxtonAuth, httpserver: HTTPServer
    ) -> None:
        httpserver.expect_request("/plain").respond_with_data("ok")
        self.send("GET", httpserver.url_for("/plain"), auth, self.modes[0])
        (request, _) = httpserver.log[-1]
        assert request.headers["Authorization"] == f"Bearer {auth.get_token()}"

    # -- where the token goes (issue 21) ------------------------------------------------------

    def test_the_token_goes_to_the_apis_origin_only(
        self, server: AuthServer, auth: HoxtonAuth, origins: Origins
    ) -> None:
        assert self.send("GET", "https://api.hoxton.cloud/data", auth, self.modes[0]).status == 200
        with pytest.warns(
            HoxtonAuthWarning,
            match=f"not sending the Hoxton token to https://{origins.storage_host}",
        ):
            result = self.send("GET", f"https://{origins.storage_host}/data", auth, self.modes[0])
        assert result.status == 200
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # one warning per origin, not per request
            for mode in self.modes:
                self.send("GET", f"https://{origins.storage_host}/data", auth, mode)
        assert origins.token_seen(origins.api) == [True]
        assert origins.token_seen(origins.storage) == [False] * (1 + len(self.modes))

    def test_a_401_from_another_origin_renews_nothing(
        self, server: AuthServer, auth: HoxtonAuth, origins: Origins
    ) -> None:
        self.send("GET", "https://api.hoxton.cloud/data", auth, self.modes[0])
        with pytest.warns(HoxtonAuthWarning, match=origins.storage_host):
            result = self.send("GET", f"https://{origins.storage_host}/refuse", auth, self.modes[0])
        assert result.status == 401
        assert server.count() == 1
        assert origins.token_seen(origins.storage) == [False]

    def test_allowed_origins_get_the_token(self, server: AuthServer, origins: Origins) -> None:
        auth = HoxtonAuth(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            domain=server.domain,
            allowed_origins=[f"https://{origins.storage_host}"],
        )
        self.send("GET", f"https://{origins.storage_host}/data", auth, self.modes[0])
        assert origins.token_seen(origins.storage) == [True]

    def test_other_origins_can_raise(self, server: AuthServer, origins: Origins) -> None:
        auth = HoxtonAuth(
            DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, other_origins="raise"
        )
        with pytest.raises(InsecureTransportError, match=origins.storage_host):
            self.send("GET", f"https://{origins.storage_host}/data", auth, self.modes[0])
        assert origins.storage.log == []

    # -- 401: renew once, retry once --------------------------------------------------------------

    def test_401_gets_a_new_token_and_retries_once(
        self, server: AuthServer, auth: HoxtonAuth
    ) -> None:
        for mode in self.modes:
            self.send("GET", server.api_url, auth, mode)
            server.revoke_access_tokens()
            api_before = server.api_requests
            result = self.send("GET", server.api_url, auth, mode)
            assert result.status == 200, mode
            assert server.api_requests - api_before == 2, mode  # the 401, then the retry
        # One new token per revocation, no more.
        assert server.count() == 1 + len(self.modes)

    def test_401_retry_resends_the_body(self, server: AuthServer, auth: HoxtonAuth) -> None:
        payload = b'{"name": "sensor-7", "values": [1, 2, 3]}'
        for mode in self.modes:
            auth.get_token()
            server.revoke_access_tokens()
            result = self.send("POST", server.api_url, auth, mode, payload)
            assert result.status == 200, mode
            assert result.echo()["method"] == "POST"
            assert result.echo()["body"] == payload.decode()

    def test_401_retry_resends_a_file_body(
        self, server: AuthServer, auth: HoxtonAuth, tmp_path: Path
    ) -> None:
        path = tmp_path / "upload.bin"
        path.write_bytes(b"line one\nline two\n" * 5000)
        auth.get_token()
        server.revoke_access_tokens()
        result = self.send("PUT", server.api_url, auth, self.modes[0], path)
        if not self.replays_file_body:
            # Never resend a spent stream: it would go out empty, as if it were the body.
            assert result.status == 401
            assert server.api_requests == 1
            return
        assert result.status == 200
        assert result.echo()["body"] == path.read_text()
        assert server.count() == 2

    @pytest.mark.parametrize("skew", [-600.0, 600.0], ids=["behind", "ahead"])
    def test_401_is_trusted_over_the_clock(
        self, server: AuthServer, auth: HoxtonAuth, skew: float
    ) -> None:
        # Issue 5, point 4: the server's clock minutes off ours, and the API says
        # the token expired while our clock says it is fresh: the API is right.
        server.clock_skew = skew
        server.token_lifetime = 300
        first = hashlib.sha256(auth.get_token().encode()).hexdigest()
        server.expire_access_tokens()
        assert self.send("GET", server.api_url, auth, self.modes[0]).status == 200
        assert server.count() == 2
        assert hashlib.sha256(auth.get_token().encode()).hexdigest() != first

    def test_new_token_after_401_is_shared(self, server: AuthServer, auth: HoxtonAuth) -> None:
        self.send("GET", server.api_url, auth, self.modes[0])
        server.revoke_access_tokens()
        self.send("GET", server.api_url, auth, self.modes[0])
        # A new auth object (another process) finds the renewed token in the cache.
        other = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
        assert other.get_token() == auth.get_token()
        assert server.count() == 2

    def test_a_401_replaces_the_token_in_the_file_too(
        self, server: AuthServer, auth: HoxtonAuth, isolated_cache: Path
    ) -> None:
        revoked = auth.get_token()
        server.revoke_access_tokens()
        assert self.send("GET", server.api_url, auth, self.modes[0]).status == 200
        (entry,) = FileTokenCache(isolated_cache).entries().values()  # an independent reader
        assert entry.token.access_token not in ("", revoked)
        assert entry.token.access_token == auth.get_token()
        assert server.count() == 2

    def test_api_that_always_says_401_is_tried_exactly_twice(
        self, server: AuthServer, auth: HoxtonAuth, always_401: str, httpserver: HTTPServer
    ) -> None:
        result = self.send("POST", always_401, auth, self.modes[0], b"payload")
        assert result.status == 401  # the API's answer, handed back
        hits = [request for request, _ in httpserver.log if request.path == "/always401"]
        assert len(hits) == 2
        first, second = (r.headers["Authorization"] for r in hits)
        assert first != second  # the retry carried a new token
        assert [r.get_data() for r in hits] == [b"payload", b"payload"]
        assert server.count() == 2

    def test_every_mode_retries_at_most_once(
        self, server: AuthServer, auth: HoxtonAuth, always_401: str, httpserver: HTTPServer
    ) -> None:
        for position, mode in enumerate(self.modes):
            httpserver.clear_log()
            assert self.send("GET", always_401, auth, mode).status == 401
            # After the first, the token is known to be refused when new (a 401
            # storm, issue 12): not renewed, so not resent either.
            assert len(httpserver.log) == (2 if position == 0 else 1), mode

    def test_a_401_storm_costs_at_most_two_token_requests(
        self, server: AuthServer, auth: HoxtonAuth, always_401: str, httpserver: HTTPServer
    ) -> None:
        for _ in range(3):
            for mode in self.modes:
                assert self.send("GET", always_401, auth, mode).status == 401
        assert server.count() == 2  # the first token, and one replacement: then no more

    def test_a_revoked_token_is_still_replaced_after_a_storm(
        self, server: AuthServer, auth: HoxtonAuth, always_401: str
    ) -> None:
        for mode in self.modes:
            self.send("GET", always_401, auth, mode)
            auth.invalidate()  # the storm's token is gone (say it expired)
            self.send("GET", server.api_url, auth, mode)
            server.revoke_access_tokens()
            assert self.send("GET", server.api_url, auth, mode).status == 200, mode

    def test_parallel_401s_fetch_one_new_token(self, server: AuthServer, auth: HoxtonAuth) -> None:
        server.token_delay = 0.1  # a real identity provider's pace (DESIGN.md)
        auth.get_token()
        server.revoke_access_tokens()
        assert self.send_many(server.api_url, auth, 16) == [200] * 16
        assert server.count() == 2

    def test_401_from_another_host_after_a_redirect_gets_no_token(
        self,
        server: AuthServer,
        auth: HoxtonAuth,
        httpserver: HTTPServer,
        httpserver_ipv4: HTTPServer,
    ) -> None:
        # The API redirects to a foreign host (a download URL, say). Both
        # libraries drop the Authorization header on the way; a 401 from
        # there is that host's business and must never be answered with our token.
        foreign = httpserver_ipv4.url_for("/download")
        assert urlsplit(foreign).hostname != urlsplit(httpserver.url_for("/")).hostname
        httpserver.expect_request("/api/file").respond_with_data(
            "", 302, headers={"Location": foreign}
        )
        httpserver_ipv4.expect_request("/download").respond_with_data("who are you?", 401)
        result = self.send("GET", httpserver.url_for("/api/file"), auth, self.modes[0])
        assert result.status == 401
        assert httpserver_ipv4.log, "the redirect was followed"
        for request, _ in httpserver_ipv4.log:
            assert "Authorization" not in request.headers
        assert server.count() == 1  # the foreign 401 says nothing about our token

    def test_token_failure_during_the_retry_surfaces(
        self, server: AuthServer, auth: HoxtonAuth
    ) -> None:
        auth.get_token()
        server.revoke_access_tokens()
        blocked = {"error": "access_denied", "error_description": "Client blocked"}
        server.fail_next(1, status=403, body=blocked)
        with pytest.raises(TokenRequestError) as info:
            self.send("POST", server.api_url, auth, self.modes[0], b"data")
        assert info.value.error == "access_denied"
        assert server.api_requests == 1  # the 401; no retry without a token

    # -- no bearer token over cleartext (issue 14, item 2) ----------------------------------------

    def test_http_url_on_a_non_loopback_host_is_refused_before_sending(
        self, server: AuthServer, lan_server: HTTPServer
    ) -> None:
        # A real server on this machine's non-loopback address: reachable, but
        # over the network, so the token must not go there in clear.
        url = lan_server.url_for("/api")
        assert urlsplit(url).scheme == "http"
        auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
        for mode in self.modes:
            with pytest.raises(InsecureTransportError, match="allow_insecure_http") as info:
                self.send("GET", url, auth, mode)
            assert "/api" not in str(info.value)  # scheme and host only
        assert lan_server.log == []  # nothing was sent
        assert server.count() == 0  # not even a token was fetched

    def test_allow_insecure_http_sends_the_token(
        self, server: AuthServer, lan_server: HTTPServer
    ) -> None:
        lan_server.expect_request("/api").respond_with_data("ok")
        auth = HoxtonAuth(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            domain=server.domain,
            allow_insecure_http=True,
            allowed_origins=[lan_server.url_for("/").rstrip("/")],  # not the API's origin
        )
        result = self.send("GET", lan_server.url_for("/api"), auth, self.modes[0])
        assert result.status == 200
        (request, _) = lan_server.log[-1]
        assert request.headers["Authorization"] == f"Bearer {auth.get_token()}"

    def test_unresolvable_http_host_is_refused_before_any_connection(
        self, server: AuthServer
    ) -> None:
        # ".invalid" never resolves (RFC 6761): a connection attempt would
        # raise the library's ConnectionError, not ours.
        auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
        for url in ("http://api.invalid/v1", "HTTP://API.INVALID/v1", "http://192.0.2.1:8080/"):
            with pytest.raises(InsecureTransportError):
                self.send("POST", url, auth, self.modes[-1], b"payload")
        assert server.count() == 0

    def test_loopback_http_hosts_are_allowed(
        self, server: AuthServer, httpserver: HTTPServer
    ) -> None:
        httpserver.expect_request("/api").respond_with_data("ok")
        auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
        port = httpserver.port
        for host in ("localhost", "127.0.0.1"):
            assert self.send("GET", f"http://{host}:{port}/api", auth, self.modes[0]).status == 200

    @pytest.mark.parametrize("target_host", ["127.0.0.1", "localhost"])
    def test_redirect_from_https_to_http_carries_no_token(
        self,
        server: AuthServer,
        auth: HoxtonAuth,
        tls_httpserver: HTTPServer,
        httpserver: HTTPServer,
        target_host: str,
    ) -> None:
        # The API (TLS) redirects to plain http, on the same host name or
        # another one: the token must not follow it into cleartext.
        landing = f"http://{target_host}:{httpserver.port}/landing"
        tls_httpserver.expect_request("/api").respond_with_data(
            "", 302, headers={"Location": landing}
        )
        httpserver.expect_request("/landing").respond_with_data("landed")
        start = tls_httpserver.url_for("/api")
        assert start.startswith("https://127.0.0.1:")
        for mode in self.modes:
            result = self.send("GET", start, auth, mode)
            assert result.status == 200, mode
            assert result.redirects == 1, mode
        (first, _) = tls_httpserver.log[0]
        assert first.headers["Authorization"].startswith("Bearer ")  # it went over TLS
        assert len(httpserver.log) == len(self.modes)
        for request, _ in httpserver.log:
            assert "Authorization" not in request.headers

    # -- what is not a 401 ---------------------------------------------------------------------

    @pytest.mark.parametrize("status", [200, 204, 400, 403, 404, 500, 503])
    def test_other_statuses_pass_through_untouched(
        self, auth: HoxtonAuth, server: AuthServer, httpserver: HTTPServer, status: int
    ) -> None:
        httpserver.expect_request("/status").respond_with_data(
            b"" if status == 204 else b"answer", status
        )
        result = self.send("GET", httpserver.url_for("/status"), auth, self.modes[0])
        assert result.status == status
        assert len(httpserver.log) == 1
        assert server.count() == 1

    def test_api_network_errors_are_the_librarys_own(self, auth: HoxtonAuth) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with pytest.raises((requests.ConnectionError, httpx.ConnectError)):
            self.send("GET", f"http://127.0.0.1:{port}/api", auth, self.modes[0])

    def test_token_errors_surface_from_the_call(self, server: AuthServer) -> None:
        auth = HoxtonAuth(DEFAULT_CLIENT_ID, "not-the-secret", domain=server.domain, cache=None)
        with pytest.raises(TokenRequestError) as info:
            self.send("GET", server.api_url, auth, self.modes[0])
        assert info.value.error == "invalid_client"
        assert server.api_requests == 0  # never called the API without a token

    def test_hot_path_makes_no_token_request(self, server: AuthServer) -> None:
        auth = HoxtonAuth(
            DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=MemoryTokenCache()
        )
        for _ in range(5):
            assert self.send("GET", server.api_url, auth, self.modes[-1]).status == 200
        assert server.count() == 1


# -- requests ----------------------------------------------------------------------------------


# -- servers off loopback and over TLS (issue 14) -----------------------------------------------


def _non_loopback_address() -> str | None:
    """This machine's address on its default route, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1; UDP connect sends nothing
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address  # noqa: S104  a comparison


@pytest.fixture
def lan_server() -> Iterator[HTTPServer]:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    server = HTTPServer(host=address, port=0)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        server.stop()


@pytest.fixture(scope="module")
def test_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_httpserver(
    test_ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HTTPServer]:
    """An HTTPS pytest-httpserver on 127.0.0.1 whose CA the test's clients trust."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    test_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    bundle = tmp_path / "test-ca.pem"
    test_ca.cert_pem.write_to_path(str(bundle))
    # The API calls of send() trust it the way users' code would: through the environment.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        server.stop()


@dataclasses.dataclass
class Origins:
    """The API at ``https://api.hoxton.cloud`` and a storage host, over TLS behind a proxy.

    The storage host (a pre-signed download URL's) has a name of its own in each
    test: the warning about an origin is given once per process.
    """

    api: HTTPServer
    storage: HTTPServer
    storage_host: str

    def token_seen(self, server: HTTPServer) -> list[bool]:
        """Whether each request ``server`` got carried an ``Authorization`` header."""
        return [request.headers.get("Authorization") is not None for request, _ in server.log]


@pytest.fixture
def origins(
    test_ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Origins]:
    """Two real HTTPS origins on loopback, reached by name through an HTTPS proxy (as the
    docs' world does), so that neither counts as loopback for the token."""
    from _docs_world import ConnectProxy, running

    storage = f"files-{uuid.uuid4().hex[:12]}.hoxton.example"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    test_ca.issue_cert("api.hoxton.cloud", storage).configure_cert(context)
    bundle = tmp_path / "origins-ca.pem"
    test_ca.cert_pem.write_to_path(str(bundle))
    servers = [HTTPServer(host="127.0.0.1", port=0, ssl_context=context) for _ in range(2)]
    for server in servers:
        server.start()
        server.expect_request("/data").respond_with_data("ok")
        server.expect_request("/refuse").respond_with_data("no", status=401)
    proxy = ConnectProxy(
        {"api.hoxton.cloud:443": servers[0].port, f"{storage}:443": servers[1].port}
    )
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    try:
        with running(proxy):
            yield Origins(servers[0], servers[1], storage)
    finally:
        for server in servers:
            server.clear()
            server.stop()


def _threads(count: int, call: Any) -> list[int]:
    barrier = threading.Barrier(count)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            statuses.append(call())
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return statuses


class TestRequests(AdapterCases):
    modes = ("requests.request", "Session.auth", "Session per-request auth")

    def send(self, method: str, url: str, auth: HoxtonAuth, mode: str, body: Body = None) -> Result:
        with opened(body) as data, requests.Session() as session:
            if mode == "requests.request":
                response = requests.request(method, url, auth=auth, data=data, timeout=30)
            elif mode == "Session.auth":
                session.auth = auth
                response = session.request(method, url, data=data, timeout=30)
            else:
                response = session.request(method, url, auth=auth, data=data, timeout=30)
            with response:
                return Result(response.status_code, response.content, len(response.history))

    def send_many(self, url: str, auth: HoxtonAuth, count: int) -> list[int]:
        def call() -> int:
            with requests.get(url, auth=auth, timeout=30) as response:
                return response.status_code

        return _threads(count, call)


def test_requests_401_retry_keeps_the_first_response_in_history(
    hoxton_auth_server: AuthServer,
) -> None:
    server = hoxton_auth_server
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
    auth.get_token()
    server.revoke_access_tokens()
    with requests.get(server.api_url, auth=auth, timeout=30) as response:
        assert response.status_code == 200
        assert [r.status_code for r in response.history] == [401]


def test_requests_unrewindable_body_is_not_resent(hoxton_auth_server: AuthServer) -> None:
    # A generator body is gone once sent: hand back the 401 rather than send nothing.
    server = hoxton_auth_server
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
    auth.get_token()
    server.revoke_access_tokens()

    def chunks() -> Iterator[bytes]:
        yield b"one "
        yield b"two"

    with requests.post(server.api_url, data=chunks(), auth=auth, timeout=30) as response:
        assert response.status_code == 401
    assert server.api_requests == 1


@contextlib.contextmanager
def opened(body: Body) -> Iterator[Any]:
    """A Path body as an open file for the duration of the send; bytes/None as they are."""
    if not isinstance(body, Path):
        yield body
        return
    with body.open("rb") as file:
        yield file


# -- httpx --------------------------------------------------------------------------------------


class TestHttpxClient(AdapterCases):
    modes = ("Client(auth=)", "per-request auth=")

    def send(self, method: str, url: str, auth: HoxtonAuth, mode: str, body: Body = None) -> Result:
        client_auth = auth if mode == "Client(auth=)" else None
        with (
            opened(body) as data,
            httpx.Client(auth=client_auth, timeout=30, follow_redirects=True) as client,
        ):
            if mode == "Client(auth=)":
                response = client.request(method, url, content=data)
            else:
                response = client.request(method, url, content=data, auth=auth)
            return Result(response.status_code, response.content, len(response.history))

    def send_many(self, url: str, auth: HoxtonAuth, count: int) -> list[int]:
        with httpx.Client(auth=auth, timeout=30) as client:
            return _threads(count, lambda: client.get(url).status_code)


class TestHttpxAsyncClient(AdapterCases):
    """``httpx.AsyncClient`` under asyncio; ``TestHttpxAsyncClientTrio`` runs it under trio."""

    modes = ("AsyncClient(auth=)", "per-request auth=")
    replays_file_body = False  # send() streams the file from an async generator
    backend: ClassVar[str] = "asyncio"

    def send(self, method: str, url: str, auth: HoxtonAuth, mode: str, body: Body = None) -> Result:
        async def main() -> Result:
            client_auth = auth if mode == "AsyncClient(auth=)" else None
            content: Any = _aiter_file(body) if isinstance(body, Path) else body
            async with httpx.AsyncClient(
                auth=client_auth, timeout=30, follow_redirects=True
            ) as client:
                if mode == "AsyncClient(auth=)":
                    response = await client.request(method, url, content=content)
                else:
                    response = await client.request(method, url, content=content, auth=auth)
            return Result(response.status_code, response.content, len(response.history))

        return anyio.run(main, backend=self.backend)

    def send_many(self, url: str, auth: HoxtonAuth, count: int) -> list[int]:
        statuses: list[int] = []

        async def main() -> None:
            async with httpx.AsyncClient(auth=auth, timeout=30) as client:

                async def get() -> None:
                    statuses.append((await client.get(url)).status_code)

                async with anyio.create_task_group() as tasks:
                    for _ in range(count):
                        tasks.start_soon(get)

        anyio.run(main, backend=self.backend)
        return statuses


class TestHttpxAsyncClientTrio(TestHttpxAsyncClient):
    backend = "trio"

    @pytest.fixture(autouse=True)
    def _trio(self) -> None:
        pytest.importorskip("trio")


async def _aiter_file(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while True:
            chunk = await anyio.to_thread.run_sync(file.read, 64 * 1024)
            if not chunk:
                return
            yield chunk


# -- one core, thin adapters (issue 2, point 5) ---------------------------------------------

PACKAGE = Path(hoxton_auth.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            names.add("." + node.module)
    return names


@pytest.mark.parametrize(
    ("library", "adapter"), [("requests", "_requests.py"), ("httpx", "_httpx.py")]
)
def test_only_the_adapter_imports_its_library(library: str, adapter: str) -> None:
    importers = {p.name for p in PACKAGE.glob("*.py") if library in _imported_modules(p)}
    assert importers == {adapter}


@pytest.mark.parametrize("adapter", ["_requests.py", "_httpx.py"])
def test_adapters_hold_no_grant_logic(adapter: str) -> None:
    source = (PACKAGE / adapter).read_text()
    assert "grant_type" not in source
    assert "._grants" not in _imported_modules(PACKAGE / adapter)
    assert "._token" not in _imported_modules(PACKAGE / adapter)


def test_only_grants_write_a_grant_type() -> None:
    writers = {
        p.name for p in PACKAGE.glob("*.py") if re.search(r"""["']grant_type["']""", p.read_text())
    }
    assert writers == {"_grants.py"}


# -- httpx streams uploads (issue 14, item 3) ---------------------------------------------------


def test_httpx_auth_does_not_buffer_request_bodies() -> None:
    assert HoxtonAuth.requires_request_body is False


def test_httpx_generator_body_is_streamed_once_and_not_resent(
    hoxton_auth_server: AuthServer,
) -> None:
    server = hoxton_auth_server
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
    auth.get_token()
    server.revoke_access_tokens()
    pulled: list[int] = []

    def chunks() -> Iterator[bytes]:
        for i in range(3):
            pulled.append(i)
            yield b"chunk "

    with httpx.Client(auth=auth, timeout=30) as client:
        response = client.post(server.api_url, content=chunks())
    assert response.status_code == 401  # handed back: a resend would be empty
    assert pulled == [0, 1, 2]
    assert server.api_requests == 1


def test_httpx_multipart_file_upload_is_resent(
    hoxton_auth_server: AuthServer, tmp_path: Path
) -> None:
    server = hoxton_auth_server
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
    path = tmp_path / "report.csv"
    path.write_bytes(b"a,b\n1,2\n")
    auth.get_token()
    server.revoke_access_tokens()
    with path.open("rb") as file, httpx.Client(auth=auth, timeout=30) as client:
        response = client.post(server.api_url, files={"report": file}, data={"k": "v"})
    assert response.status_code == 200
    assert "a,b\n1,2\n" in response.json()["body"]
    assert server.api_requests == 2


class _OneWayFile(io.RawIOBase):
    """A readable file that cannot seek, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), len(self._data))
        buffer[:size] = self._data[:size]
        self._data = self._data[size:]
        return size


def test_httpx_multipart_with_an_unseekable_file_is_not_resent(
    hoxton_auth_server: AuthServer,
) -> None:
    server = hoxton_auth_server
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)
    auth.get_token()
    server.revoke_access_tokens()
    with (
        io.BufferedReader(_OneWayFile(b"streamed,data\n")) as pipe,
        httpx.Client(auth=auth, timeout=30) as client,
    ):
        response = client.post(server.api_url, files={"report": ("r.csv", pipe)})
    assert response.status_code == 401
    assert server.api_requests == 1


def test_httpx_async_bytes_body_is_resent(hoxton_auth_server: AuthServer) -> None:
    server = hoxton_auth_server
    auth = HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain)

    async def main() -> httpx.Response:
        await auth.aget_token()
        server.revoke_access_tokens()
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            return await client.post(server.api_url, content=b"again")

    response = asyncio.run(main())
    assert response.status_code == 200
    assert response.json()["body"] == "again"
