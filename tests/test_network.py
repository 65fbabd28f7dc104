"""Token requests use the auth object's network settings (issue 14, item 1).

Every case runs against a real TLS token server on loopback (the package's
``AuthServer`` with an ``ssl_context``), whose certificate comes from a CA
this module generates with ``trustme``; the mutual-TLS cases make the server
require a client certificate from that CA; the proxy cases go through a real
CONNECT proxy on loopback that counts its tunnels. Each case runs on the three
token transports: requests (``get_token``), httpx ``Client`` and httpx
``AsyncClient``.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from pytest_httpserver import HTTPServer
from werkzeug import Response

from hoxton_auth import ConfigError, HoxtonAuth, MemoryTokenCache, TokenEndpointUnreachableError
from hoxton_auth._config import NetworkSettings
from hoxton_auth.testing import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    PUBLIC_CLIENT_ID,
    AuthServer,
)

TRANSPORTS = ("requests", "httpx", "httpx-async")

# -- certificates ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def client_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("client.example")


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def client_pem(client_cert: trustme.LeafCert, tmp_path: Path) -> str:
    """Certificate and key in one PEM file."""
    path = tmp_path / "client.pem"
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def client_pair(client_cert: trustme.LeafCert, tmp_path: Path) -> tuple[str, str]:
    """Certificate and key in two files."""
    cert, key = tmp_path / "client-cert.pem", tmp_path / "client-key.pem"
    for i, blob in enumerate(client_cert.cert_chain_pems):
        blob.write_to_path(str(cert), append=i > 0)
    client_cert.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


def _server_context(server_cert: trustme.LeafCert, ca: trustme.CA | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    if ca is not None:  # mutual TLS: a client certificate from our CA is required
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture
def tls_server(server_cert: trustme.LeafCert) -> Iterator[AuthServer]:
    with AuthServer(ssl_context=_server_context(server_cert, None)) as server:
        yield server


@pytest.fixture
def mtls_server(server_cert: trustme.LeafCert, ca: trustme.CA) -> Iterator[AuthServer]:
    with AuthServer(ssl_context=_server_context(server_cert, ca)) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # This machine's own CA bundle and proxies must not decide the outcome.
    for name in (
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# -- a real CONNECT proxy ----------------------------------------------------------------------


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: CountingProxy

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        method, target = head.split(b" ", 2)[:2]
        if method != b"CONNECT":
            self.request.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = target.decode().rpartition(":")
        with self.server.lock:
            self.server.tunnels.append(target.decode())
        with socket.create_connection((host, int(port)), timeout=10) as upstream:
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self._pipe(self.request, upstream)

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        while True:
            readable, _, _ = select.select(list(peers), [], [], 10)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                peers[sock].sendall(data)


class CountingProxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.lock = threading.Lock()
        self.tunnels: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def proxy() -> Iterator[CountingProxy]:
    server = CountingProxy()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


# -- helpers -----------------------------------------------------------------------------------


def _auth(server: AuthServer, **network: object) -> HoxtonAuth:
    made: HoxtonAuth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        domain=server.domain,
        cache=MemoryTokenCache(),
        max_attempts=1,
        **network,  # type: ignore[call-overload]  # the network keyword arguments under test
    )
    return made


def _fetch(transport: str, auth: HoxtonAuth) -> str:
    """Get a token through one of the three token transports."""
    if transport == "requests":
        return auth.get_token()
    if transport == "httpx-async":
        return asyncio.run(auth.aget_token())
    # httpx Client: the auth flow fetches the token with the httpx transport;
    # the API call itself goes to a plain loopback server that echoes the header.
    with _echo_server() as url, httpx.Client(trust_env=False) as client:
        response = client.get(url, auth=auth)
    return response.text.removeprefix("Bearer ")


@contextlib.contextmanager
def _echo_server() -> Iterator[str]:
    # An API, not an identity provider: pytest-httpserver echoes the header
    # back as is (AuthServer's echo API checks the token instead).
    with HTTPServer() as server:
        server.expect_request("/x").respond_with_handler(
            lambda request: Response(request.headers.get("Authorization", ""))
        )
        yield server.url_for("/x")


# -- verify ------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_verify_with_a_ca_bundle_path(transport: str, tls_server: AuthServer, ca_file: str) -> None:
    assert tls_server.domain.startswith("https://127.0.0.1:")
    token = _fetch(transport, _auth(tls_server, verify=ca_file))
    assert token
    assert tls_server.count("client_credentials") == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_verify_with_a_path_object(transport: str, tls_server: AuthServer, ca_file: str) -> None:
    assert _fetch(transport, _auth(tls_server, verify=Path(ca_file)))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_ca_is_refused_by_default(transport: str, tls_server: AuthServer) -> None:
    with pytest.raises(TokenEndpointUnreachableError) as caught:
        _fetch(transport, _auth(tls_server))
    assert "CERTIFICATE_VERIFY_FAILED" in repr(caught.value.__cause__) or isinstance(
        caught.value.__cause__, (ssl.SSLError, httpx.ConnectError, OSError)
    )
    assert tls_server.count() == 0


# urllib3 warns about every unverified request: the user asked for it, so it is theirs to see.
@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_verify_false_skips_the_check(transport: str, tls_server: AuthServer) -> None:
    assert _fetch(transport, _auth(tls_server, verify=False))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_environment_ca_bundle_is_used_with_trust_env(
    transport: str, tls_server: AuthServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests reads REQUESTS_CA_BUNDLE, httpx SSL_CERT_FILE: both are set, as in a company image.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    assert _fetch(transport, _auth(tls_server))
    assert tls_server.count() == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_trust_env_false_ignores_the_environment_ca_bundle(
    transport: str, tls_server: AuthServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    with pytest.raises(TokenEndpointUnreachableError):
        _fetch(transport, _auth(tls_server, trust_env=False))
    assert tls_server.count() == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_explicit_verify_wins_over_the_environment(
    transport: str,
    tls_server: AuthServer,
    ca_file: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # requests lets REQUESTS_CA_BUNDLE override a Session's verify (psf/requests#3829);
    # the auth object's own verify= must still win.
    other = trustme.CA()
    wrong = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(str(wrong))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(wrong))
    monkeypatch.setenv("SSL_CERT_FILE", str(wrong))
    assert _fetch(transport, _auth(tls_server, verify=ca_file))


# -- client certificates (mutual TLS) ----------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_client_certificate_in_one_file(
    transport: str, mtls_server: AuthServer, ca_file: str, client_pem: str
) -> None:
    assert _fetch(transport, _auth(mtls_server, verify=ca_file, cert=client_pem))
    assert mtls_server.count() == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_client_certificate_and_key_as_a_pair(
    transport: str, mtls_server: AuthServer, ca_file: str, client_pair: tuple[str, str]
) -> None:
    assert _fetch(transport, _auth(mtls_server, verify=ca_file, cert=client_pair))


@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_client_certificate_with_verify_false(
    transport: str, mtls_server: AuthServer, client_pem: str
) -> None:
    assert _fetch(transport, _auth(mtls_server, verify=False, cert=client_pem))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_client_certificate_with_the_environment_ca(
    transport: str,
    mtls_server: AuthServer,
    ca_file: str,
    client_pem: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    assert _fetch(transport, _auth(mtls_server, cert=client_pem))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_missing_client_certificate_is_refused(
    transport: str, mtls_server: AuthServer, ca_file: str
) -> None:
    with pytest.raises(TokenEndpointUnreachableError):
        _fetch(transport, _auth(mtls_server, verify=ca_file))
    assert mtls_server.count() == 0


def test_logout_revokes_with_the_same_settings(
    mtls_server: AuthServer, ca_file: str, client_pem: str
) -> None:
    seed = mtls_server.mint_refresh_token()
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        refresh_token=seed,
        domain=mtls_server.domain,
        cache=MemoryTokenCache(),
        verify=ca_file,
        cert=client_pem,
    )
    auth.get_token()
    auth.logout()
    assert len(mtls_server.revoke_requests) == 1


def test_from_env_takes_the_network_settings(
    mtls_server: AuthServer, ca_file: str, client_pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOXTON_CLIENT_ID", DEFAULT_CLIENT_ID)
    monkeypatch.setenv("HOXTON_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
    monkeypatch.setenv("HOXTON_AUTH_DOMAIN", mtls_server.domain)
    auth = HoxtonAuth.from_env(cache=None, verify=ca_file, cert=client_pem)
    assert auth.get_token()


# -- proxies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_proxy_argument_tunnels_token_requests(
    transport: str, tls_server: AuthServer, ca_file: str, proxy: CountingProxy
) -> None:
    assert _fetch(transport, _auth(tls_server, verify=ca_file, proxy=proxy.url))
    target = tls_server.domain.removeprefix("https://")
    assert proxy.tunnels == [target]
    assert tls_server.count() == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_proxy_with_mutual_tls(
    transport: str, mtls_server: AuthServer, ca_file: str, client_pem: str, proxy: CountingProxy
) -> None:
    auth = _auth(mtls_server, verify=ca_file, cert=client_pem, proxy=proxy.url)
    assert _fetch(transport, auth)
    assert len(proxy.tunnels) == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_environment_proxy_is_used_with_trust_env(
    transport: str,
    tls_server: AuthServer,
    ca_file: str,
    proxy: CountingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    assert _fetch(transport, _auth(tls_server, verify=ca_file))
    assert len(proxy.tunnels) == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_trust_env_false_ignores_the_environment_proxy(
    transport: str,
    tls_server: AuthServer,
    ca_file: str,
    proxy: CountingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    assert _fetch(transport, _auth(tls_server, verify=ca_file, trust_env=False))
    assert proxy.tunnels == []


# -- arguments ---------------------------------------------------------------------------------


def test_proxy_credentials_stay_out_of_repr() -> None:
    settings = NetworkSettings(proxy="http://user:hunter2@proxy.example:3128")
    assert "hunter2" not in repr(settings)
    auth = HoxtonAuth("cid", "secret", proxy="http://user:hunter2@proxy.example:3128", cache=None)
    assert "hunter2" not in repr(auth)
    assert "hunter2" not in repr(auth.config)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"verify": 3}, "verify"),
        ({"verify": ""}, "verify"),
        ({"cert": 3}, "cert"),
        ({"cert": ("a", "b", "c")}, "cert"),
        ({"proxy": 3}, "proxy"),
        ({"proxy": "ftp://x"}, "proxy"),
        ({"trust_env": "yes"}, "trust_env"),
        ({"allow_insecure_http": 1}, "allow_insecure_http"),
    ],
)
def test_bad_network_arguments_name_themselves(kwargs: dict[str, object], word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        HoxtonAuth("cid", "secret", cache=None, **kwargs)  # type: ignore[call-overload]  # wrong on purpose


def test_network_settings_are_normalised(tmp_path: Path) -> None:
    for name in ("ca.pem", "c", "k", "both.pem"):
        (tmp_path / name).write_text("x")
    settings = NetworkSettings(tmp_path / "ca.pem", (tmp_path / "c", tmp_path / "k"))
    assert settings.verify == str(tmp_path / "ca.pem")
    assert settings.cert == (str(tmp_path / "c"), str(tmp_path / "k"))
    both = NetworkSettings(cert=tmp_path / "both.pem")
    assert both.cert == str(tmp_path / "both.pem")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_verify_directory_is_a_capath(
    tls_server: AuthServer, ca: trustme.CA, tmp_path: Path
) -> None:
    # A directory of hashed CA files (the c_rehash layout, like SSL_CERT_DIR).
    directory = tmp_path / "cas"
    directory.mkdir()
    (directory / f"{_subject_hash(ca)}.0").write_bytes(ca.cert_pem.bytes())
    for transport in TRANSPORTS:
        assert _fetch(transport, _auth(tls_server, verify=directory))


def _subject_hash(ca: trustme.CA) -> str:
    """OpenSSL's subject hash of the CA certificate (the c_rehash file name)."""
    result = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash"],  # noqa: S607  found on PATH by skipif
        input=ca.cert_pem.bytes(),
        capture_output=True,
        check=True,
    )
    return result.stdout.decode().strip()


@pytest.mark.parametrize("setting", ["verify", "cert", "key"])
def test_a_missing_certificate_file_is_a_config_error_at_construction(
    setting: str, tls_server: AuthServer, ca_file: str, client_pem: str, tmp_path: Path
) -> None:
    missing = str(tmp_path / "missing.pem")
    choices: dict[str, dict[str, Any]] = {
        "verify": {"verify": missing},
        "cert": {"verify": ca_file, "cert": missing},
        "key": {"verify": ca_file, "cert": (client_pem, missing)},
    }
    arguments = choices[setting]
    name = "cert" if setting == "key" else setting
    with pytest.raises(ConfigError, match=rf"{name}=.*missing\.pem.*no such file"):
        _auth(tls_server, **arguments)
    assert tls_server.count() == 0


def test_device_login_uses_the_network_settings(
    mtls_server: AuthServer, ca_file: str, client_pem: str, proxy: CountingProxy
) -> None:
    # Every request of a device login (code, polls, the session's token) goes
    # through the user's CA, client certificate and proxy.
    mtls_server.device_interval = 0.05

    def approve() -> None:
        mtls_server.approve_device(mtls_server.wait_for_device_code(timeout=30))

    approver = threading.Thread(target=approve, daemon=True)
    approver.start()
    auth = HoxtonAuth.login(
        PUBLIC_CLIENT_ID,
        domain=mtls_server.domain,
        device=True,
        timeout=60.0,
        cache=MemoryTokenCache(),
        verify=ca_file,
        cert=client_pem,
        proxy=proxy.url,
    )
    approver.join()
    assert auth.get_token()
    assert len(proxy.tunnels) >= 2  # the device code request, then the polls
    assert {r["grant_type"] for r in mtls_server.token_requests} == {
        "urn:ietf:params:oauth:grant-type:device_code"
    }
