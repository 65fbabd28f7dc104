"""How each library under comparison is set up, the way its docs suggest.

Every factory returns a ready client (token already fetched where the library
wants an explicit fetch) plus a ``close`` function. The peers are those a user
would pick instead of ``hoxton_auth``:

* httpx-auth ``OAuth2ClientCredentials`` (httpx only),
* requests-auth ``OAuth2ClientCredentials`` (requests only),
* requests-oauthlib ``OAuth2Session`` + ``BackendApplicationClient`` (requests),
* Authlib ``OAuth2Session`` (requests) and ``OAuth2Client`` /
  ``AsyncOAuth2Client`` (httpx).

The local token server accepts both ways Auth0 does of authenticating a
client: ``client_secret_post`` (the Hoxton docs' way, used by ``hoxton_auth``,
requests-oauthlib and Authlib here) and HTTP Basic (``client_secret_basic``,
what httpx-auth and requests-auth send for client credentials). So no peer
needs a shim: each sends its client credentials the way its docs configure
it, exactly as it would to Auth0.
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import requests

__all__ = [
    "ASYNC_LIBRARIES",
    "BASELINE",
    "BEFORE",
    "HOXTON",
    "HTTPX_LIBRARIES",
    "PEERS",
    "REQUESTS_LIBRARIES",
    "Endpoints",
    "make_async",
    "make_httpx",
    "make_requests",
    "use_before",
    "use_peer_file_cache",
    "use_peer_memory_cache",
]

# Loopback http:// token URLs: requests-oauthlib refuses them without this.
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")

BASELINE = "static header"
HOXTON = "hoxton_auth"
BEFORE = "hoxton_auth before"  # another checkout's package, loaded by use_before()
HTTPX_AUTH = "httpx-auth"
REQUESTS_AUTH = "requests-auth"
REQUESTS_OAUTHLIB = "requests-oauthlib"
AUTHLIB = "Authlib"
PEERS = (HTTPX_AUTH, REQUESTS_AUTH, REQUESTS_OAUTHLIB, AUTHLIB)

REQUESTS_LIBRARIES = (BASELINE, HOXTON, REQUESTS_AUTH, REQUESTS_OAUTHLIB, AUTHLIB)
HTTPX_LIBRARIES = (BASELINE, HOXTON, HTTPX_AUTH, AUTHLIB)
ASYNC_LIBRARIES = (BASELINE, HOXTON, HTTPX_AUTH, AUTHLIB)

SyncGet = Callable[[], Any]
AsyncGet = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoints:
    """Where things are: the token server, the API, the client and its cache."""

    domain: str
    api_url: str
    client_id: str
    client_secret: str
    audience: str
    cache_path: Path

    @property
    def token_url(self) -> str:
        return self.domain + "/oauth/token"


# -- caches of httpx-auth and requests-auth (one global per library) --------------


def use_peer_file_cache(path: Path) -> None:
    """Make httpx-auth and requests-auth share tokens through ``path`` (their file cache)."""
    import httpx_auth
    import requests_auth

    httpx_auth.OAuth2.token_cache = httpx_auth.JsonTokenFileCache(str(path) + ".httpx-auth")
    requests_auth.OAuth2.token_cache = requests_auth.JsonTokenFileCache(
        str(path) + ".requests-auth"
    )


def use_peer_memory_cache() -> None:
    """Their default: tokens in the process's memory."""
    import httpx_auth
    import requests_auth

    httpx_auth.OAuth2.token_cache = httpx_auth.TokenMemoryCache()  # type: ignore[no-untyped-call]  # untyped
    requests_auth.OAuth2.token_cache = requests_auth.TokenMemoryCache()  # type: ignore[no-untyped-call]  # untyped


# -- auth objects --------------------------------------------------------------


def static_auth(token: str) -> Callable[[Any], Any]:
    """The fair baseline (DESIGN.md): a three-line auth callable, no library."""
    header = "Bearer " + token

    def auth(request: Any) -> Any:
        request.headers["Authorization"] = header
        return request

    return auth


def hoxton(ends: Endpoints) -> Any:
    from hoxton_auth import HoxtonAuth

    return HoxtonAuth(
        ends.client_id,
        ends.client_secret,
        domain=ends.domain,
        audience=ends.audience,
        cache=ends.cache_path,
    )


_before: Any = None


def use_before(checkout: str | os.PathLike[str]) -> str:
    """Load ``checkout``'s ``hoxton_auth`` beside this one, as ``hoxton_auth_before``.

    The package imports itself relatively, so a copy under another name is a
    second, independent package in the same process (its own locks, threads
    and caches). Its ``testing`` subpackage is left out: this install's test
    server serves both. Returns where the copy was loaded from.
    """
    global _before
    source = Path(checkout) / "hoxton_auth"
    if not (source / "__init__.py").is_file():
        raise ValueError(f"no hoxton_auth package in {checkout}")
    parent = Path(tempfile.mkdtemp(prefix="hoxton-before-"))
    atexit.register(shutil.rmtree, parent, ignore_errors=True)
    skip = shutil.ignore_patterns("testing", "__pycache__")
    shutil.copytree(source, parent / "hoxton_auth_before", ignore=skip)
    sys.path.insert(0, str(parent))
    _before = importlib.import_module("hoxton_auth_before")
    return str(Path(_before.__file__).parent)


def hoxton_before(ends: Endpoints) -> Any:
    """``hoxton(ends)`` built with the package loaded by ``use_before`` (its own cache file)."""
    if _before is None:
        raise RuntimeError("use_before() first")
    return _before.HoxtonAuth(
        ends.client_id,
        ends.client_secret,
        domain=ends.domain,
        audience=ends.audience,
        cache=ends.cache_path.with_name(ends.cache_path.stem + "-before.json"),
    )


def requests_auth_auth(ends: Endpoints) -> Any:
    import requests_auth

    return requests_auth.OAuth2ClientCredentials(
        ends.token_url,
        ends.client_id,
        ends.client_secret,
        audience=ends.audience,
    )


def httpx_auth_auth(ends: Endpoints) -> Any:
    import httpx_auth

    return httpx_auth.OAuth2ClientCredentials(
        ends.token_url,
        ends.client_id,
        ends.client_secret,
        audience=ends.audience,
    )


def requests_oauthlib_session(ends: Endpoints) -> requests.Session:
    from oauthlib.oauth2 import BackendApplicationClient  # type: ignore[import-untyped]  # no stubs published
    from requests_oauthlib import OAuth2Session  # type: ignore[import-untyped]  # no stubs published

    oauth: Any = OAuth2Session(client=BackendApplicationClient(client_id=ends.client_id))
    oauth.fetch_token(
        ends.token_url,
        client_secret=ends.client_secret,
        include_client_id=True,
        audience=ends.audience,
    )
    session: requests.Session = oauth
    return session


def authlib_options(ends: Endpoints) -> dict[str, Any]:
    return {
        "client_id": ends.client_id,
        "client_secret": ends.client_secret,
        "token_endpoint": ends.token_url,
        "grant_type": "client_credentials",
        "token_endpoint_auth_method": "client_secret_post",
    }


def authlib_audience(client: Any, audience: str) -> Any:
    """Send ``audience`` with every token request, also the automatic ones.

    Auth0 issues an API token only for an audience, and Authlib's automatic
    re-fetch of an expired client-credentials token sends no extra fields; a
    custom client authentication method (Authlib's extension point for token
    requests) adds it to ``client_secret_post``.
    """
    from authlib.oauth2.auth import encode_client_secret_post  # type: ignore[import-untyped]  # no stubs published

    extra = "&" + urlencode({"audience": audience})

    def post_with_audience(auth: Any, method: str, uri: str, headers: Any, body: Any) -> Any:
        uri, headers, body = encode_client_secret_post(auth, method, uri, headers, body)
        text = body.decode() if isinstance(body, bytes) else body
        if "audience=" not in text:
            text += extra
            if "Content-Length" in headers:
                headers["Content-Length"] = str(len(text))
        return uri, headers, text

    client.register_client_auth_method(("client_secret_post_audience", post_with_audience))
    client.token_endpoint_auth_method = "client_secret_post_audience"
    return client


def authlib_session(ends: Endpoints) -> requests.Session:
    from authlib.integrations.requests_client import OAuth2Session  # type: ignore[import-untyped]  # no stubs published

    oauth: Any = authlib_audience(OAuth2Session(**authlib_options(ends)), ends.audience)
    oauth.fetch_token()
    session: requests.Session = oauth
    return session


# -- one ready client per library and client kind ------------------------------------


def make_requests(name: str, ends: Endpoints, token: str) -> tuple[SyncGet, Callable[[], None]]:
    """A ``requests`` client of library ``name``: (do one GET, close)."""
    session: requests.Session
    if name == REQUESTS_OAUTHLIB:
        session = requests_oauthlib_session(ends)
    elif name == AUTHLIB:
        session = authlib_session(ends)
    else:
        session = requests.Session()
        if name == BASELINE:
            session.auth = static_auth(token)
        elif name == HOXTON:
            session.auth = hoxton(ends)
        elif name == BEFORE:
            session.auth = hoxton_before(ends)
        elif name == REQUESTS_AUTH:
            session.auth = requests_auth_auth(ends)
        else:
            raise ValueError(name)
    url = ends.api_url

    def get() -> Any:
        response = session.get(url)
        response.raise_for_status()
        return response

    return get, session.close


def make_httpx(name: str, ends: Endpoints, token: str) -> tuple[SyncGet, Callable[[], None]]:
    """An ``httpx.Client`` of library ``name``: (do one GET, close)."""
    client: httpx.Client
    if name == AUTHLIB:
        from authlib.integrations.httpx_client import OAuth2Client  # type: ignore[import-untyped]  # no stubs published

        authlib_client = authlib_audience(OAuth2Client(**authlib_options(ends)), ends.audience)
        authlib_client.fetch_token()
        client = authlib_client
    elif name == BASELINE:
        client = httpx.Client(auth=static_auth(token))
    elif name == HOXTON:
        client = httpx.Client(auth=hoxton(ends))
    elif name == BEFORE:
        client = httpx.Client(auth=hoxton_before(ends))
    elif name == HTTPX_AUTH:
        client = httpx.Client(auth=httpx_auth_auth(ends))
    else:
        raise ValueError(name)
    url = ends.api_url

    def get() -> Any:
        response = client.get(url)
        response.raise_for_status()
        return response

    return get, client.close


async def make_async(
    name: str, ends: Endpoints, token: str
) -> tuple[AsyncGet, Callable[[], Awaitable[None]]]:
    """An ``httpx.AsyncClient`` of library ``name``: (do one GET, close)."""
    client: httpx.AsyncClient
    if name == AUTHLIB:
        from authlib.integrations.httpx_client import AsyncOAuth2Client

        authlib_client = authlib_audience(AsyncOAuth2Client(**authlib_options(ends)), ends.audience)
        await authlib_client.fetch_token()
        client = authlib_client
    elif name == BASELINE:
        client = httpx.AsyncClient(auth=static_auth(token))
    elif name == HOXTON:
        client = httpx.AsyncClient(auth=hoxton(ends))
    elif name == BEFORE:
        client = httpx.AsyncClient(auth=hoxton_before(ends))
    elif name == HTTPX_AUTH:
        client = httpx.AsyncClient(auth=httpx_auth_auth(ends))
    else:
        raise ValueError(name)
    url = ends.api_url

    async def get() -> Any:
        response = await client.get(url)
        response.raise_for_status()
        return response

    return get, client.aclose


def first_token(name: str, ends: Endpoints) -> Any:
    """Build ``name``'s auth object and fetch one token into its best cache.

    Returns the object, to be kept alive by the caller.
    """
    if name == HOXTON:
        auth = hoxton(ends)
        auth.get_token()
        return auth
    if name in (HTTPX_AUTH, REQUESTS_AUTH):
        import httpx_auth
        import requests_auth

        use_peer_file_cache(ends.cache_path)
        peer: Any
        cache: Any
        if name == HTTPX_AUTH:
            peer, cache = httpx_auth_auth(ends), httpx_auth.OAuth2.token_cache
        else:
            peer, cache = requests_auth_auth(ends), requests_auth.OAuth2.token_cache
        cache.get_token(peer.state, on_missing_token=peer.request_new_token)
        return peer, cache
    if name == REQUESTS_OAUTHLIB:
        return requests_oauthlib_session(ends)
    if name == AUTHLIB:
        return authlib_session(ends)
    raise ValueError(name)
