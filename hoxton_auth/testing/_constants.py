"""Well-known names and credentials of the local test server.

These are throwaway values for tests and offline experiments; they grant
nothing anywhere else, which is why printing them is fine.
"""

from __future__ import annotations

__all__ = [
    "AUDIENCE",
    "CODE_LIFETIME",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PASSWORD",
    "DEFAULT_USERNAME",
    "PUBLIC_CLIENT_ID",
]

DEFAULT_CLIENT_ID = "test-client"
DEFAULT_CLIENT_SECRET = "test-secret"  # noqa: S105 - published test credential, not a secret
PUBLIC_CLIENT_ID = "test-public-client"
DEFAULT_USERNAME = "user@example.com"
DEFAULT_PASSWORD = "correct horse battery staple"  # noqa: S105 - published test credential
AUDIENCE = "https://api.hoxton.cloud"

#: Seconds an authorization code stays valid (Auth0 uses 10 minutes).
CODE_LIFETIME = 600
