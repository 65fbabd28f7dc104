"""What the slow path reports: OpenTelemetry spans and metrics of the cache's work.

Only when the application has imported ``opentelemetry`` itself (it is in
``sys.modules``): importing it costs tens of milliseconds, so this package
never does it first (``tests/test_imports.py`` pins it). Until then every
hook below costs one dict lookup and returns. The hot path (a fresh token in
memory) calls none of them.

The hooks sit where the facts arise: the single flight (``_renewal.py``: a
token request, a cache hit in the shared cache, the wait for its lock, a
renewal), the session (``_session.py``: a hit in memory, a background
renewal ahead of time) and an outage (``_outage.py``: a cooldown that skips a
request, a stale token served). The facts are the same dict of safe fields
that the package's DEBUG log records carry as ``extra={"hoxton_auth": ...}``
(``log_extra``): the client id, the grant kind, the cache's class, an
outcome. Never a token, secret, password, username or subject: the callers
build the facts from those fields only, and the tests scan every attribute.

Instruments (under ``hoxton_auth.``, attributes ``hoxton_auth.<fact>``):

| name | kind | facts |
|---|---|---|
| ``hoxton_auth.token_requests`` | counter | grant, grant_sent, outcome, client_id |
| ``hoxton_auth.token_request.duration`` | histogram (s) | same |
| ``hoxton_auth.cache_hits`` | counter | layer (``memory``, ``shared_cache``), locked, cache |
| ``hoxton_auth.lock_wait.duration`` | histogram (s) | outcome, wait, cache |
| ``hoxton_auth.stale_tokens_served`` | counter | reason (``cooldown``, ``failure``) |
| ``hoxton_auth.cooldown_skips`` | counter | served (``stale``, ``error``) |
| ``hoxton_auth.background_renewals`` | counter | outcome (renewed, busy, failed) |

Spans: ``hoxton_auth.renewal`` (``background`` marks a refresh-ahead
renewal), with children ``hoxton_auth.lock_wait`` and
``hoxton_auth.token_request``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import CacheLockTimeoutError, TokenEndpointUnreachableError, TokenRequestError
from ._grants import grant_type_sent

if TYPE_CHECKING:
    from ._wire import Reply, TokenRequest

__all__ = [
    "Facts",
    "Source",
    "background_renewal",
    "cache_hit",
    "cooldown_skip",
    "lock_wait",
    "log_extra",
    "outcome_of",
    "renewal",
    "stale_served",
    "token_request",
]

#: Safe fields only: str, bool, int or float values (OpenTelemetry attribute types).
Facts = Mapping[str, "str | bool | int | float"]
Send = Callable[["TokenRequest"], "Reply"]


class Source(Protocol):
    """Whose work is reported (a ``SharedEntry``): its safe facts, asked only when recording."""

    def facts(self, **more: str | bool) -> dict[str, str | bool | int | float]: ...


_PACKAGE = "opentelemetry"
_NOTHING: contextlib.nullcontext[None] = contextlib.nullcontext()  # reusable


class _Instruments:
    """The tracer and the instruments, made once (the global providers may be set later:
    the API's proxies forward to them)."""

    def __init__(self) -> None:
        from opentelemetry import metrics, trace

        from . import __version__

        self.tracer = trace.get_tracer("hoxton_auth", __version__)
        meter = metrics.get_meter("hoxton_auth", __version__)
        self.token_requests = meter.create_counter(
            "hoxton_auth.token_requests", "{request}", "Token requests, by grant and outcome"
        )
        self.token_request_duration = meter.create_histogram(
            "hoxton_auth.token_request.duration", "s", "Token requests, retries included"
        )
        self.cache_hits = meter.create_counter(
            "hoxton_auth.cache_hits", "{hit}", "Renewals answered without a token request"
        )
        self.lock_wait = meter.create_histogram(
            "hoxton_auth.lock_wait.duration", "s", "Waits for the shared cache's lock"
        )
        self.stale_served = meter.create_counter(
            "hoxton_auth.stale_tokens_served", "{token}", "Tokens served while renewal fails"
        )
        self.cooldown_skips = meter.create_counter(
            "hoxton_auth.cooldown_skips", "{skip}", "Token requests skipped: a shared cooldown"
        )
        self.background_renewals = meter.create_counter(
            "hoxton_auth.background_renewals", "{renewal}", "Refresh-ahead renewals"
        )


_made: _Instruments | None = None
_making = threading.Lock()


def _on() -> _Instruments | None:
    """The instruments if the application uses OpenTelemetry, else ``None``."""
    if _PACKAGE not in sys.modules:  # the one lookup a process without it pays
        return None
    global _made
    if _made is None:
        with _making:
            if _made is None:
                _made = _Instruments()
    return _made


def _attributes(facts: Facts) -> dict[str, str | bool | int | float]:
    return {f"hoxton_auth.{name}": value for name, value in facts.items()}


def log_extra(facts: Facts) -> dict[str, Any]:
    """The ``extra=`` of a log record carrying ``facts``: ``record.hoxton_auth``."""
    return {"hoxton_auth": dict(facts)}


def outcome_of(error: BaseException) -> str:
    """A failure's outcome label: the server's error code, else what went wrong."""
    if isinstance(error, TokenRequestError):
        return error.error or f"http_{error.status_code}"
    if isinstance(error, TokenEndpointUnreachableError):
        return "unreachable"
    return type(error).__name__


# -- the single flight (_renewal.py) ------------------------------------------------


def renewal(
    source: Source, background: bool, after_401: bool = False
) -> contextlib.AbstractContextManager[object]:
    """A span around one renewal through the cache (``background``: ahead of time;
    ``after_401``: replacing a token the API refused)."""
    made = _on()
    if made is None:
        return _NOTHING
    facts = source.facts(background=background, after_401=after_401)
    return made.tracer.start_as_current_span("hoxton_auth.renewal", attributes=_attributes(facts))


class _Watched:
    """``send``, remembering the last grant type sent (a protocol name, not a secret)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.grant_type = ""

    def __call__(self, request: TokenRequest) -> Reply:
        self.grant_type = grant_type_sent(request.form)
        return self.send(request)


def token_request(source: Source, send: Send) -> contextlib.AbstractContextManager[Send]:
    """``send`` to use for one token request (a flow, retries included), recorded."""
    made = _on()
    if made is None:
        return contextlib.nullcontext(send)
    return _recorded_token_request(made, source.facts(), send)


@contextlib.contextmanager
def _recorded_token_request(made: _Instruments, facts: Facts, send: Send) -> Iterator[Send]:
    watched = _Watched(send)
    started = time.perf_counter()
    outcome = "ok"
    with made.tracer.start_as_current_span(
        "hoxton_auth.token_request", attributes=_attributes(facts)
    ) as span:
        try:
            yield watched
        except BaseException as exc:
            outcome = outcome_of(exc)
            raise
        finally:
            attributes = _attributes(
                {**facts, "grant_sent": watched.grant_type, "outcome": outcome}
            )
            span.set_attributes(attributes)
            made.token_requests.add(1, attributes)
            made.token_request_duration.record(time.perf_counter() - started, attributes)


def lock_wait(
    source: Source, lock: contextlib.AbstractContextManager[None], wait: bool
) -> contextlib.AbstractContextManager[None]:
    """``lock``, with the wait to acquire it recorded (a span that ends once it is held).

    ``wait``: whether the caller waits for the lock (else a busy lock is no failure).
    """
    made = _on()
    if made is None:
        return lock
    return _TimedLock(made, lock, source.facts(wait=wait))


class _TimedLock:
    def __init__(
        self, made: _Instruments, lock: contextlib.AbstractContextManager[None], facts: Facts
    ) -> None:
        self._made, self._lock, self._facts = made, lock, facts

    def __enter__(self) -> None:
        span = self._made.tracer.start_span(
            "hoxton_auth.lock_wait", attributes=_attributes(self._facts)
        )
        started = time.perf_counter()
        outcome = "acquired"
        try:
            self._lock.__enter__()
        except BaseException as exc:
            outcome = "failed"
            if isinstance(exc, CacheLockTimeoutError):
                outcome = "timeout" if self._facts.get("wait", True) else "busy"
            raise
        finally:
            attributes = _attributes({**self._facts, "outcome": outcome})
            span.set_attributes(attributes)
            span.end()
            self._made.lock_wait.record(time.perf_counter() - started, attributes)

    def __exit__(self, *exc_info: Any) -> bool | None:
        return self._lock.__exit__(*exc_info)


def cache_hit(source: Source, layer: str, locked: bool = False) -> None:
    """A renewal answered from ``memory`` or the ``shared_cache`` (``layer``), without a
    request; ``locked``: read under the cache's lock."""
    made = _on()
    if made is not None:
        made.cache_hits.add(1, _attributes(source.facts(layer=layer, locked=locked)))


# -- the session (_session.py) ------------------------------------------------------


def background_renewal(source: Source, outcome: str) -> None:
    """A refresh-ahead renewal ended (``outcome``: renewed, busy or failed)."""
    made = _on()
    if made is not None:
        made.background_renewals.add(1, _attributes(source.facts(outcome=outcome)))


# -- an outage (_outage.py) ---------------------------------------------------------


def cooldown_skip(served: str) -> None:
    """A shared cooldown answered instead of a token request (``stale`` token or ``error``)."""
    made = _on()
    if made is not None:
        made.cooldown_skips.add(1, {"hoxton_auth.served": served})


def stale_served(reason: str) -> None:
    """A token past its renewal point served because renewing fails (``cooldown``, ``failure``)."""
    made = _on()
    if made is not None:
        made.stale_served.add(1, {"hoxton_auth.reason": reason})
