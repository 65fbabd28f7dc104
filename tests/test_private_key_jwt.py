"""Private Key JWT client authentication (issue 24, part 2; RFC 7523 §2.2).

Against the embedded test server over loopback, which checks every
assertion as Auth0 does (signature, iss/sub/aud/exp, a single-use jti), and
against Authlib's own server-side check of ``private_key_jwt``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from conftest import OFFLINE, REDIRECT_URI, authorization_code
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hoxton_auth import (
    AuthorizationCodeAuth,
    ConfigError,
    HoxtonAuth,
    MemoryTokenCache,
    PasswordAuth,
    RefreshTokenAuth,
    TokenRequestError,
)
from hoxton_auth.testing import DEFAULT_PASSWORD, DEFAULT_USERNAME, AuthServer

CLIENT = "keyed-client"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PEM_MARK = "-----BEGIN PRIVATE KEY-----"


def new_key(kind: str = "rsa") -> Any:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem_of(key: Any) -> bytes:
    return key.private_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_file(tmp_path: Path, key: Any, name: str = "client.pem") -> Path:
    path = tmp_path / name
    path.write_bytes(pem_of(key))
    path.chmod(0o600)
    return path


def key_body(key: Any) -> list[str]:
    """The base64 lines of the key's PEM: none may show up anywhere."""
    lines = pem_of(key).decode().splitlines()
    return [line for line in lines if line and not line.startswith("-----")]


@pytest.fixture(scope="module")
def rsa_key() -> Any:
    return new_key()


@pytest.fixture
def server(hoxton_auth_server: AuthServer, rsa_key: Any) -> AuthServer:
    hoxton_auth_server.add_client(CLIENT, public_key=rsa_key.public_key())
    return hoxton_auth_server


def assertions(server: AuthServer) -> list[str]:
    return [r["client_assertion"] for r in server.token_requests if "client_assertion" in r]


def claims_of(assertion: str, key: Any, server: AuthServer) -> dict[str, Any]:
    return jwt.decode(
        assertion,
        key.public_key(),
        algorithms=["RS256", "PS256", "ES256"],
        audience=server.domain + "/",
    )


def test_client_credentials_sends_a_signed_assertion_instead_of_a_secret(
    server: AuthServer, rsa_key: Any, tmp_path: Path
) -> None:
    auth = HoxtonAuth(
        CLIENT, private_key=key_file(tmp_path, rsa_key), key_id="kid-1", domain=server.domain
    )

    assert requests.get(server.api_url, auth=auth, timeout=10).status_code == 200
    (request,) = server.token_requests
    assert request["grant_type"] == "client_credentials"
    assert request["client_id"] == CLIENT
    assert request["client_assertion_type"] == ASSERTION_TYPE
    assert "client_secret" not in request
    assertion = request["client_assertion"]
    header = jwt.get_unverified_header(assertion)
    assert (header["alg"], header["kid"]) == ("RS256", "kid-1")
    claims = claims_of(assertion, rsa_key, server)
    assert claims["iss"] == claims["sub"] == CLIENT
    assert claims["aud"] == server.domain + "/"  # Auth0: the tenant's URL, trailing slash
    assert claims["exp"] - claims["iat"] == 60
    assert len(claims["jti"]) >= 16


@pytest.mark.parametrize(
    ("kind", "algorithm", "expected"),
    [("rsa", None, "RS256"), ("rsa", "PS256", "PS256"), ("ec", None, "ES256")],
)
def test_key_types_and_algorithms(
    hoxton_auth_server: AuthServer, kind: str, algorithm: str | None, expected: str
) -> None:
    key = new_key(kind)
    hoxton_auth_server.add_client(CLIENT, public_key=pem_of(key))  # PEM of the private key
    auth = HoxtonAuth(
        CLIENT,
        private_key=pem_of(key).decode(),  # PEM text works as well as a path
        signing_algorithm=algorithm,  # type: ignore[arg-type]
        domain=hoxton_auth_server.domain,
        cache=None,
    )

    assert auth.get_token()
    (assertion,) = assertions(hoxton_auth_server)
    assert jwt.get_unverified_header(assertion)["alg"] == expected
    assert "kid" not in jwt.get_unverified_header(assertion)


def test_every_grant_authenticates_the_client_with_a_fresh_assertion(
    server: AuthServer, rsa_key: Any, tmp_path: Path
) -> None:
    path = key_file(tmp_path, rsa_key)
    common: dict[str, Any] = {"private_key": path, "domain": server.domain, "cache": None}

    password = PasswordAuth(
        CLIENT, username=DEFAULT_USERNAME, password=DEFAULT_PASSWORD, scope=OFFLINE, **common
    )
    assert password.get_token()
    code = authorization_code(server, client_id=CLIENT)
    exchanged = AuthorizationCodeAuth(CLIENT, code=code, redirect_uri=REDIRECT_URI, **common)
    assert exchanged.get_token()
    seed = server.mint_refresh_token(client_id=CLIENT)
    refreshed = RefreshTokenAuth(CLIENT, refresh_token=seed, scope=OFFLINE, **common)
    assert refreshed.get_token()
    refreshed.logout()  # /oauth/revoke authenticates the client too

    server.device_interval = 0.05
    approver = threading.Thread(
        target=lambda: server.approve_device(server.wait_for_device_code(timeout=30)),
        daemon=True,
    )
    approver.start()
    device = HoxtonAuth.login(
        CLIENT, device=True, port=0, timeout=60, private_key=path, domain=server.domain
    )
    approver.join()
    assert device.get_token()

    grants = [r["grant_type"] for r in server.token_requests]
    assert set(grants) >= {
        "password",
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
    }
    sent = assertions(server)
    assert len(sent) == len(server.token_requests)  # every request, each device poll too
    (revocation,) = server.revoke_requests
    sent.append(revocation["client_assertion"])
    assert revocation["client_assertion_type"] == ASSERTION_TYPE
    jtis = [claims_of(a, rsa_key, server)["jti"] for a in sent]
    assert len(set(jtis)) == len(jtis)


def test_a_wrong_key_is_refused(server: AuthServer, tmp_path: Path) -> None:
    auth = HoxtonAuth(
        CLIENT, private_key=key_file(tmp_path, new_key()), domain=server.domain, cache=None
    )

    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    assert (caught.value.status_code, caught.value.error) == (401, "invalid_client")
    assert server.count() == 1  # a 401 is final: no retry


def test_another_key_is_a_cache_miss(server: AuthServer, rsa_key: Any, tmp_path: Path) -> None:
    first = HoxtonAuth(CLIENT, private_key=key_file(tmp_path, rsa_key), domain=server.domain)
    token = first.get_token()
    again = HoxtonAuth(CLIENT, private_key=key_file(tmp_path, rsa_key), domain=server.domain)
    assert again.get_token() == token  # the same key: the shared cache answers
    assert server.count() == 1

    rotated = new_key()  # the client's key is rotated in the tenant
    server.add_client(CLIENT, public_key=rotated.public_key())
    other = HoxtonAuth(
        CLIENT, private_key=key_file(tmp_path, rotated, "new.pem"), domain=server.domain
    )
    assert other.get_token() != token
    assert server.count() == 2
    # And the old key's token is never served to the new key, nor the other way round.
    assert (
        HoxtonAuth(
            CLIENT, private_key=key_file(tmp_path, rotated, "new.pem"), domain=server.domain
        ).get_token()
        != token
    )


def test_a_reused_assertion_is_refused_by_the_server(server: AuthServer, rsa_key: Any) -> None:
    auth = HoxtonAuth(CLIENT, private_key=pem_of(rsa_key), domain=server.domain, cache=None)
    assert auth.get_token()
    (replayed,) = server.token_requests

    answer = requests.post(server.token_url, data=replayed, timeout=10)

    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"
    assert "jti already used" in answer.json()["error_description"]


def test_a_retry_signs_a_new_assertion(server: AuthServer, rsa_key: Any) -> None:
    server.fail_next(1, status=503)
    auth = HoxtonAuth(CLIENT, private_key=pem_of(rsa_key), domain=server.domain, cache=None)

    assert auth.get_token()
    first, second = assertions(server)
    assert claims_of(first, rsa_key, server)["jti"] != claims_of(second, rsa_key, server)["jti"]


@pytest.mark.parametrize(
    ("tamper", "description"),
    [
        ({"aud": "https://elsewhere.example/"}, "Invalid client assertion"),
        ({"iss": "someone-else"}, "Invalid client assertion"),
        ({"sub": "someone-else"}, "sub must be the client id"),
        ({"exp": 1}, "expired"),
        ({"exp": 4_000_000_000}, "more than 300 seconds"),
    ],
)
def test_the_server_checks_the_claims(
    server: AuthServer, rsa_key: Any, tamper: dict[str, Any], description: str
) -> None:
    import time

    now = int(time.time())
    claims = {
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": server.domain + "/",
        "iat": now,
        "exp": now + 60,
        "jti": os.urandom(8).hex(),
        **tamper,
    }
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT,
        "audience": "https://api.hoxton.cloud",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": jwt.encode(claims, rsa_key, algorithm="RS256"),
    }

    answer = requests.post(server.token_url, data=form, timeout=10)

    assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client")
    assert description in answer.json()["error_description"]


def test_a_secret_and_a_key_together_are_refused(rsa_key: Any) -> None:
    with pytest.raises(ConfigError, match="client_secret and private_key"):
        HoxtonAuth(CLIENT, "a-secret", private_key=pem_of(rsa_key))
    with pytest.raises(ConfigError, match="need private_key"):
        HoxtonAuth(CLIENT, "a-secret", key_id="kid-1")
    with pytest.raises(ConfigError, match="does not fit this key"):
        HoxtonAuth(CLIENT, private_key=pem_of(new_key("ec")), signing_algorithm="PS256")


def test_bad_keys_are_named_never_shown(tmp_path: Path, rsa_key: Any) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(ConfigError, match=r"nowhere\.pem"):
        HoxtonAuth(CLIENT, private_key=missing)
    garbled = tmp_path / "garbled.pem"
    body = key_body(rsa_key)
    garbled.write_text(PEM_MARK + "\n" + "\n".join(body[:-3]) + "\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError) as caught:
        HoxtonAuth(CLIENT, private_key=garbled)
    assert "not a PEM private key" in str(caught.value)
    assert not any(line in str(caught.value) for line in body)
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    with pytest.raises(ConfigError, match="passphrase"):
        HoxtonAuth(CLIENT, private_key=encrypted)


def _every_local_repr(tb: Any) -> str:
    texts: list[str] = []
    for frame, _ in traceback.walk_tb(tb):
        if frame.f_code.co_filename == __file__:
            continue  # this test's own frame: it holds the key to look for
        texts.extend(f"{name}={value!r}" for name, value in frame.f_locals.items())
    return "\n".join(texts)


def test_no_key_material_in_repr_logs_errors_or_traceback_locals(
    hoxton_auth_server: AuthServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = new_key()
    hoxton_auth_server.add_client(CLIENT, public_key=new_key().public_key())  # another key
    caplog.set_level(logging.DEBUG)
    auth = HoxtonAuth(
        CLIENT,
        private_key=key_file(tmp_path, key),
        domain=hoxton_auth_server.domain,
        cache=MemoryTokenCache(),
    )

    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()

    (assertion,) = assertions(hoxton_auth_server)
    secrets_shown = [*key_body(key), assertion, assertion.split(".")[2]]
    texts = [
        repr(auth),
        repr(auth.config),
        str(caught.value),
        repr(caught.value),
        caplog.text,
        _every_local_repr(caught.value.__traceback__),
    ]
    for text in texts:
        for secret in secrets_shown:
            assert secret not in text
    assert "thumbprint=" in repr(auth.config)  # the public half names the key
    import pickle

    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(auth.config.private_key)


def test_from_env_and_the_cli_read_the_key_file(
    server: AuthServer, rsa_key: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = key_file(tmp_path, rsa_key)
    monkeypatch.setenv("HOXTON_CLIENT_ID", CLIENT)
    monkeypatch.setenv("HOXTON_PRIVATE_KEY_FILE", str(path))
    monkeypatch.setenv("HOXTON_KEY_ID", "kid-env")
    monkeypatch.setenv("HOXTON_AUTH_DOMAIN", server.domain)

    token = HoxtonAuth.from_env().get_token()
    (assertion,) = assertions(server)
    assert jwt.get_unverified_header(assertion)["kid"] == "kid-env"

    # The command line finds the same cached token with the key from the variable...
    run = subprocess.run(
        [sys.executable, "-m", "hoxton_auth", "token"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (run.returncode, run.stdout.strip()) == (0, token), run.stderr
    # ...and, with --private-key-file, another key asks the server (and is refused).
    other = key_file(tmp_path, new_key(), "other.pem")
    run = subprocess.run(
        [sys.executable, "-m", "hoxton_auth", "token", "--private-key-file", str(other)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode != 0
    assert run.stdout == ""
    assert "invalid_client" in run.stderr
    assert "with the key from --private-key-file" in run.stderr  # the hint names the key
    assert not any(line in run.stderr for line in key_body(rsa_key))
    assert server.count() == 2


# -- an independent server: Authlib's private_key_jwt client authentication -----------


class _AuthlibClient:
    """The one registered client of the Authlib-checked endpoint."""

    def __init__(self, client_id: str, public_pem: bytes, key_type: str) -> None:
        self.client_id = client_id
        self.public_pem = public_pem
        self.key_type = key_type

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token"


class _AuthlibTokenEndpoint:
    """A loopback token endpoint whose client authentication is Authlib's alone.

    Authlib's ``AuthorizationServer`` wants a web framework; its client
    authentication method (``JWTBearerClientAssertion``, RFC 7523) is a plain
    callable over a request's form, which this endpoint calls as is. A client
    it authenticates gets an opaque token; any other gets Authlib's
    ``invalid_client`` and its description.
    """

    def __init__(self, client: _AuthlibClient) -> None:
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from types import SimpleNamespace
        from urllib.parse import parse_qsl

        from authlib.oauth2.rfc6749 import InvalidClientError  # type: ignore[import-untyped]
        from authlib.oauth2.rfc7523 import JWTBearerClientAssertion  # type: ignore[import-untyped]
        from joserfc import jwk  # Authlib's JOSE library

        seen: set[str] = set()
        self.answers: list[tuple[int, dict[str, Any]]] = []
        endpoint = self

        class Assertion(JWTBearerClientAssertion):  # type: ignore[misc]
            def get_audiences(self) -> list[str]:
                return [endpoint.domain + "/"]  # the tenant, as Auth0 wants it

            def validate_jti(self, claims: Any, jti: str) -> bool:
                if jti in seen:
                    return False
                seen.add(jti)
                return True

            def resolve_client_public_key(self, client: _AuthlibClient) -> Any:
                if client.key_type == "EC":
                    return jwk.ECKey.import_key(client.public_pem)
                return jwk.RSAKey.import_key(client.public_pem)

        check = Assertion()

        def query(client_id: str) -> _AuthlibClient | None:
            return client if client_id == client.client_id else None

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                body: dict[str, Any]
                try:
                    authenticated = check(query, SimpleNamespace(form=form, client=None))
                except InvalidClientError as exc:
                    status = 401
                    body = {"error": "invalid_client", "error_description": exc.description}
                else:
                    status = 200 if authenticated is not None else 401
                    body = {"access_token": os.urandom(16).hex(), "expires_in": 3600}
                    body["token_type"] = "Bearer"
                    if authenticated is None:
                        body = {"error": "invalid_client"}
                endpoint.answers.append((status, body))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.domain = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _AuthlibTokenEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_authlib_accepts_our_assertions_and_refuses_a_replay_or_another_key(kind: str) -> None:
    pytest.importorskip("authlib")
    key = new_key(kind)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with _AuthlibTokenEndpoint(_AuthlibClient(CLIENT, public_pem, kind.upper())) as endpoint:
        auth = HoxtonAuth(CLIENT, private_key=pem_of(key), domain=endpoint.domain, cache=None)
        assert auth.get_token()
        auth.invalidate()
        assert auth.get_token()  # a second request, a second assertion: accepted too
        assert [status for status, _ in endpoint.answers] == [200, 200]

        other = HoxtonAuth(
            CLIENT, private_key=pem_of(new_key(kind)), domain=endpoint.domain, cache=None
        )
        with pytest.raises(TokenRequestError) as caught:
            other.get_token()
        assert caught.value.error == "invalid_client"

    # A replayed assertion: Authlib's jti check refuses it.
    with _AuthlibTokenEndpoint(_AuthlibClient(CLIENT, public_pem, kind.upper())) as endpoint:
        auth = HoxtonAuth(CLIENT, private_key=pem_of(key), domain=endpoint.domain, cache=None)
        form = {
            "grant_type": "client_credentials",
            "client_id": CLIENT,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": auth.config.private_key.assertion(  # type: ignore[union-attr]
                CLIENT, endpoint.domain + "/"
            ),
        }
        first = requests.post(endpoint.domain + "/oauth/token", data=form, timeout=10)
        again = requests.post(endpoint.domain + "/oauth/token", data=form, timeout=10)
        assert (first.status_code, again.status_code) == (200, 401)
        assert "JWT ID" in again.json()["error_description"]
