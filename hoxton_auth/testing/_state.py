"""Bookkeeping of the test server: clients, users, codes, tokens, logs.

`AuthState` is plain data plus small helpers; the endpoint logic that reads
and changes it lives in `_endpoints`. Every access goes through `lock`, which
the HTTP threads and the test thread share.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import ipaddress
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hoxton_auth.testing._constants import AUDIENCE

if TYPE_CHECKING:
    from collections.abc import Sequence

    from hoxton_auth.testing._device import DeviceCode
    from hoxton_auth.testing._keys import SigningKey

__all__ = ["AuthState", "AuthorizationCode", "Client", "Family", "Fault", "User"]

_LOOPBACK_NAMES = frozenset({"localhost"})


def _is_loopback_url(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass
class Client:
    """A registered OAuth client; no `secret` nor `public_key` means a public client.

    `public_key`: the client authenticates with Private Key JWT (RFC 7523),
    assertions signed by the matching private key, instead of a secret.
    """

    client_id: str
    secret: str | None = dataclasses.field(repr=False)
    redirect_uris: tuple[str, ...] | None
    public_key: Any = None

    @property
    def confidential(self) -> bool:
        """Whether the client authenticates itself (a secret or a key)."""
        return self.secret is not None or self.public_key is not None

    def allows_redirect(self, uri: str) -> bool:
        """Exact match against the allow-list, or any loopback URL without one."""
        if self.redirect_uris is None:
            return _is_loopback_url(uri)
        return uri in self.redirect_uris


@dataclasses.dataclass
class User:
    """A user of the password grant and of `/authorize`."""

    username: str
    password: str = dataclasses.field(repr=False)

    @property
    def subject(self) -> str:
        """Auth0-style `sub`, stable across server restarts."""
        digest = hashlib.sha256(self.username.encode("utf-8")).hexdigest()
        return f"auth0|{digest[:24]}"


@dataclasses.dataclass
class AuthorizationCode:
    """What `/authorize` promised, to be checked when the code is redeemed."""

    client_id: str
    redirect_uri: str
    username: str
    scope: str
    audience: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    expires_at: float
    used: bool = False
    family_id: str | None = None


@dataclasses.dataclass
class Family:
    """All refresh tokens descending from one original grant."""

    client_id: str
    username: str
    scope: str
    audience: str | None
    revoked: bool = False
    current: str | None = dataclasses.field(default=None, repr=False)
    # The token `current` replaced, and when (the rotation overlap period).
    previous: str | None = dataclasses.field(default=None, repr=False)
    rotated_at: float = 0.0


@dataclasses.dataclass(frozen=True)
class Fault:
    """A canned answer queued by `AuthServer.fail_next`."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    delay: float
    disconnect: bool
    truncate: bool = False  # announce the whole body, send half of it, hang up
    hold: threading.Event | None = None  # answer only once this is set


class AuthState:
    """Everything the server knows; guard every access with `lock`."""

    def __init__(
        self,
        *,
        token_lifetime: int,
        token_delay: float,
        rotate_refresh_tokens: bool,
        clock_skew: float,
    ) -> None:
        self.lock = threading.RLock()
        self.token_lifetime = token_lifetime
        self.token_delay = token_delay
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.clock_skew = clock_skew
        self.deny_authorization = False
        # The device flow (RFC 8628, _device.py): codes by device_code, and a
        # condition tests wait on for a new code or a change.
        self.device_codes: dict[str, DeviceCode] = {}
        self.device_changed = threading.Condition(self.lock)
        self.device_interval: float = 5.0
        self.device_code_lifetime: float = 900.0
        self.issuer: str | None = None
        self.key: SigningKey | None = None
        self.clients: dict[str, Client] = {}
        self.users: dict[str, User] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.families: dict[str, Family] = {}
        # refresh token -> family id; a token is "rotated" once its family
        # has moved on to a newer one.
        self.refresh_tokens: dict[str, str] = {}
        self.issued_jtis: set[str] = set()
        self.assertion_jtis: set[str] = set()  # client assertions seen: each is single-use
        self.assertion_audiences: list[str] = []  # more `aud` values (a custom domain)
        self.revoked_jtis: set[str] = set()
        self.expired_jtis: set[str] = set()
        self.faults: collections.deque[Fault] = collections.deque()
        self.standing_fault: Fault | None = None  # every request, once `faults` is empty
        self.token_request_times: list[float] = []  # time.monotonic() of each arrival
        self.token_request_arrived = threading.Condition(self.lock)
        self.stopping = threading.Event()  # set by stop(): delays end at once
        self.token_requests: list[dict[str, str]] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.revoke_requests: list[dict[str, str]] = []
        self.api_requests = 0
        self.reuse_detected = 0
        # Auth0's bad days (issue 12); see ServerControls.
        self.outage = False
        self.revocation_outage = False
        self.quota_exhausted: float | None = None  # seconds to the quota's reset
        self.block_after_failed_logins: int | None = None
        self.failed_logins: dict[str, int] = {}
        self.mfa_users: set[str] = set()
        self.mfa_otp = "123456"
        self.mfa_tokens: dict[str, dict[str, str]] = {}  # mfa_token -> username, audience...
        self.drip = 0.0
        self.rotation_overlap = 0.0
        self.forwarded_for: list[str | None] = []

    def now(self) -> float:
        """The server's clock: wall time plus `clock_skew`."""
        return time.time() + self.clock_skew

    def signer(self) -> tuple[str, SigningKey]:
        """Issuer and key; only available once the server has started."""
        if self.issuer is None or self.key is None:
            msg = "AuthServer is not started; call start() first"
            raise RuntimeError(msg)
        return self.issuer, self.key

    def add_client(
        self,
        client_id: str,
        secret: str | None,
        redirect_uris: Sequence[str] | None,
        public_key: Any = None,
    ) -> None:
        """Register or replace a client."""
        uris = None if redirect_uris is None else tuple(redirect_uris)
        with self.lock:
            self.clients[client_id] = Client(client_id, secret, uris, public_key)

    def add_user(self, username: str, password: str) -> None:
        """Register or replace a user."""
        with self.lock:
            self.users[username] = User(username, password)

    def mint_access_token(
        self,
        *,
        subject: str,
        client_id: str,
        scope: str,
        lifetime: int | None = None,
        gty: str | None = None,
    ) -> str:
        """Sign an access token for `AUDIENCE` and remember its `jti`."""
        issuer, key = self.signer()
        iat = int(self.now())
        jti = secrets.token_urlsafe(16)
        claims: dict[str, object] = {
            "iss": issuer,
            "sub": subject,
            "aud": AUDIENCE,
            "iat": iat,
            "exp": iat + (self.token_lifetime if lifetime is None else lifetime),
            "azp": client_id,
            "jti": jti,
        }
        if scope:
            claims["scope"] = scope
        if gty is not None:
            claims["gty"] = gty
        with self.lock:
            self.issued_jtis.add(jti)
        return key.sign(claims)

    def mint_id_token(self, user: User, *, client_id: str, scope: str, nonce: str | None) -> str:
        """Sign an OpenID Connect ID token for `user`, addressed to the client."""
        issuer, key = self.signer()
        iat = int(self.now())
        claims: dict[str, object] = {
            "iss": issuer,
            "sub": user.subject,
            "aud": client_id,
            "iat": iat,
            "exp": iat + 36000,  # Auth0's default ID token lifetime: 10 h
        }
        scopes = scope.split()
        if "profile" in scopes:
            claims["name"] = user.username
            claims["nickname"] = user.username.partition("@")[0]
        if "email" in scopes:
            claims["email"] = user.username
            claims["email_verified"] = True
        if nonce:
            claims["nonce"] = nonce
        return key.sign(claims)

    def new_family(self, client_id: str, username: str, scope: str, audience: str | None) -> str:
        """Start a refresh token family; return its id."""
        family_id = secrets.token_hex(8)
        with self.lock:
            self.families[family_id] = Family(client_id, username, scope, audience)
        return family_id

    def new_refresh_token(self, family_id: str) -> str:
        """Issue the family's next refresh token; older ones become rotated."""
        token = "v1." + secrets.token_urlsafe(36)
        with self.lock:
            self.refresh_tokens[token] = family_id
            family = self.families[family_id]
            family.previous, family.rotated_at = family.current, self.now()
            family.current = token
        return token

    def revoke_family(self, family_id: str) -> None:
        """Invalidate every refresh token of a family."""
        with self.lock:
            self.families[family_id].revoked = True
