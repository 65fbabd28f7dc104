"""The redis-py client of ``RedisTokenCache``, and a name for it without secrets.

redis-py is an optional extra (``hoxton-auth[redis]``): it is imported here
when a ``RedisTokenCache`` is created, never at import time, and its absence
is reported with the command that installs it.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import urlsplit

from ._errors import ConfigError

if TYPE_CHECKING:
    import redis

__all__ = ["INSTALL_HINT", "ClientArg", "import_redis", "make_client"]

INSTALL_HINT = (
    'RedisTokenCache needs redis-py: pip install "redis>=4.5" '
    '(hoxton-auth is not on PyPI yet; in its checkout: pip install -e ".[redis]")'
)

ClientArg = Union[str, "redis.Redis"]


def import_redis() -> Any:
    """The ``redis`` module.

    Raises:
        ImportError: redis-py is not installed; the message says how to install it.
    """
    try:
        import redis
    except ImportError as exc:
        raise ImportError(INSTALL_HINT, name="redis") from exc
    return redis


def make_client(url_or_client: ClientArg, socket_timeout: float) -> tuple[redis.Redis, str]:
    """The client to use, and where it points (for repr and messages, no password).

    Raises:
        ConfigError: ``url_or_client`` is a ``redis.asyncio`` client.
    """
    redis_module = import_redis()
    if isinstance(url_or_client, str):
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # redis-py's default retries a dead server ten times with backoff;
        # here a failure falls back to a direct token fetch, so fail fast.
        # One retry on a connection error still heals a pooled connection
        # that a Redis restart broke; a timeout is not retried.
        client: redis.Redis = redis_module.Redis.from_url(
            url_or_client,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 1, (redis_module.ConnectionError,)),
        )
        return client, _safe_url(url_or_client)
    if inspect.iscoroutinefunction(getattr(url_or_client, "execute_command", None)):
        raise ConfigError(
            "RedisTokenCache needs a blocking client (redis.Redis), not a "
            "redis.asyncio one; it serves asyncio through worker threads"
        )
    return url_or_client, _describe_client(url_or_client)


def _safe_url(url: str) -> str:
    """The URL without user and password, for repr and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{netloc}{parts.path}"


def _describe_client(client: Any) -> str:
    """``redis client host:port/db`` when the client says, else its type."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict) or "host" not in kwargs:
        return f"{type(client).__name__} client"
    return f"redis client {kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
