"""Issue 24 part 3: spans and metrics of what the cache does, with OpenTelemetry's SDK.

The SDK's in-memory exporters record what the package reports: the token
requests (by grant and outcome), cache hits by layer, lock waits, cooldown
skips, stale tokens served and background renewals. Real parts only: the
embedded Auth0-compatible server, real cache files and locks, real threads.

OpenTelemetry's global providers can be set once per process: ``providers``
sets them once per (xdist worker) process, and each test reads the change of
the cumulative metrics (``Telemetry.count``) and the spans finished since it
began. Each test's cache is its own file, so no other test's work is counted.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from hoxton_auth import (
    CacheEntry,
    FileTokenCache,
    HoxtonAuth,
    HoxtonAuthWarning,
    TokenCache,
    TokenRequestError,
)
from hoxton_auth.testing import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    AuthServer,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SECRETS = (DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD, DEFAULT_USERNAME)


class Telemetry:
    """What the package reported during one test."""

    def __init__(self, spans: InMemorySpanExporter, reader: InMemoryMetricReader) -> None:
        self._spans, self._reader = spans, reader
        self._baseline: dict[tuple[str, frozenset[tuple[str, Any]]], float] = {}

    def begin(self) -> None:
        self._spans.clear()
        self._baseline = self._points()

    def _points(self) -> dict[tuple[str, frozenset[tuple[str, Any]]], float]:
        points: dict[tuple[str, frozenset[tuple[str, Any]]], float] = {}
        data = self._reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = point.count  # type: ignore[union-attr]  # a histogram
                        attributes = frozenset((point.attributes or {}).items())
                        points[(metric.name, attributes)] = float(value)
        return points

    def count(self, name: str, **facts: Any) -> float:
        """How much ``name`` grew in this test, over the points that have ``facts``."""
        wanted = {(f"hoxton_auth.{key}", value) for key, value in facts.items()}
        total = 0.0
        for (metric, attributes), value in self._points().items():
            if metric == name and wanted <= attributes:
                total += value - self._baseline.get((metric, attributes), 0.0)
        return total

    def spans(self, name: str) -> list[ReadableSpan]:
        return [span for span in self._spans.get_finished_spans() if span.name == name]

    def attribute_values(self) -> list[str]:
        """Every attribute value of every span and metric point of this test, as text."""
        values = [
            str(value)
            for span in self._spans.get_finished_spans()
            for value in (span.attributes or {}).values()
        ]
        for _, attributes in self._points():
            values.extend(str(value) for _, value in attributes)
        return values


@pytest.fixture(scope="session")
def providers() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    """The global providers, set once in this process, with in-memory exporters."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return exporter, reader


@pytest.fixture
def telemetry(
    providers: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> Iterator[Telemetry]:
    """This test's telemetry; afterwards, no secret in any attribute."""
    recorded = Telemetry(*providers)
    recorded.begin()
    yield recorded
    values = recorded.attribute_values()
    assert values, "nothing was recorded"
    for value in values:
        assert not any(secret in value for secret in SECRETS), "a secret in an attribute"
        assert "eyJ" not in value, "a token in an attribute"


@pytest.fixture
def server(hoxton_auth_server: AuthServer) -> AuthServer:
    return hoxton_auth_server


def machine(server: AuthServer, cache: TokenCache, **options: Any) -> HoxtonAuth:
    made: HoxtonAuth = HoxtonAuth(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=cache, **options
    )
    return made


def no_token_in(telemetry: Telemetry, *tokens: str) -> None:
    for value in telemetry.attribute_values():
        assert not any(token in value for token in tokens), "a token in an attribute"


def redate(cache: TokenCache, *, age: float, left: float) -> None:
    """Date the cache's one entry: obtained ``age`` seconds ago, expiring in ``left``."""
    ((key, entry),) = cache.entries().items()
    now = time.time()
    token = dataclasses.replace(entry.token, obtained_at=now - age, expires_at=now + left)
    with cache.lock(key, 5):
        cache.store(key, CacheEntry(token, entry.meta))


def wait_for(check: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


# -- a fetch, then the shared cache --------------------------------------------------------


def test_a_fetch_is_a_renewal_with_a_lock_wait_and_a_token_request(
    telemetry: Telemetry,
    server: AuthServer,
    isolated_cache: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="hoxton_auth")
    cache = FileTokenCache(isolated_cache)
    first = machine(server, cache)
    token = first.get_token()

    ok = {"grant": "client_credentials", "client_id": DEFAULT_CLIENT_ID}
    assert telemetry.count("hoxton_auth.token_requests", **ok, outcome="ok") == 1
    assert telemetry.count("hoxton_auth.token_requests", grant_sent="client_credentials") == 1
    assert telemetry.count("hoxton_auth.token_request.duration", outcome="ok") == 1
    assert telemetry.count("hoxton_auth.lock_wait.duration", outcome="acquired") == 1
    ((renewal,), (lock,), (request,)) = (
        telemetry.spans(name)
        for name in ("hoxton_auth.renewal", "hoxton_auth.lock_wait", "hoxton_auth.token_request")
    )
    assert renewal.attributes is not None
    assert request.attributes is not None
    assert renewal.attributes["hoxton_auth.background"] is False
    assert renewal.attributes["hoxton_auth.cache"] == "FileTokenCache"
    assert request.attributes["hoxton_auth.outcome"] == "ok"
    for child in (lock, request):  # both inside the renewal
        assert child.parent is not None
        assert renewal.context is not None
        assert child.parent.span_id == renewal.context.span_id

    # Another session finds it in the shared cache; the first one's hot path reports nothing.
    assert machine(server, cache).get_token() == token
    assert first.get_token() == token
    assert server.count() == 1
    assert telemetry.count("hoxton_auth.cache_hits", layer="shared_cache", locked=False) == 1
    assert telemetry.count("hoxton_auth.cache_hits", layer="memory") == 0
    assert telemetry.count("hoxton_auth.token_requests") == 1
    no_token_in(telemetry, token)

    # The DEBUG records carry the same facts, and nothing secret.
    facts = [record.hoxton_auth for record in caplog.records if hasattr(record, "hoxton_auth")]
    assert {"client_id": DEFAULT_CLIENT_ID, "grant": "client_credentials"}.items() <= facts[
        0
    ].items()
    assert any(fact.get("layer") == "shared_cache" for fact in facts)
    assert not any(secret in repr(facts) for secret in (*SECRETS, token))


def test_a_password_grant_reports_no_username_or_password(
    telemetry: Telemetry, server: AuthServer, isolated_cache: Path
) -> None:
    auth = HoxtonAuth(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        username=DEFAULT_USERNAME,
        password=DEFAULT_PASSWORD,
        domain=server.domain,
        cache=FileTokenCache(isolated_cache),
    )
    token = auth.get_token()
    assert telemetry.count("hoxton_auth.token_requests", grant="password", outcome="ok") == 1
    no_token_in(telemetry, token)  # and the fixture scans for the username and password


def test_a_herd_of_sessions_makes_one_token_request_and_counts_the_hits(
    telemetry: Telemetry, server: AuthServer, isolated_cache: Path
) -> None:
    server.token_delay = 0.1  # a real identity provider's answer time (DESIGN.md)
    cache = FileTokenCache(isolated_cache)
    herd = [machine(server, cache) for _ in range(8)]
    start = threading.Barrier(len(herd))
    tokens: list[str] = []

    def call(auth: HoxtonAuth) -> None:
        start.wait()
        tokens.append(auth.get_token())

    threads = [threading.Thread(target=call, args=(auth,)) for auth in herd]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(tokens)) == 1
    assert len(tokens) == len(herd)
    assert server.count() == 1
    assert telemetry.count("hoxton_auth.token_requests") == 1
    assert telemetry.count("hoxton_auth.cache_hits", layer="shared_cache") == len(herd) - 1
    # Every session that took the lock waited for it once; the one fetching counts too.
    locked_hits = telemetry.count("hoxton_auth.cache_hits", layer="shared_cache", locked=True)
    assert telemetry.count("hoxton_auth.lock_wait.duration") == locked_hits + 1
    assert len(telemetry.spans("hoxton_auth.renewal")) == len(herd)
    no_token_in(telemetry, *tokens)


def test_threads_of_one_session_count_memory_hits_not_requests(
    telemetry: Telemetry, server: AuthServer, isolated_cache: Path
) -> None:
    server.token_delay = 0.1
    auth = machine(server, FileTokenCache(isolated_cache))
    start = threading.Barrier(8)
    tokens: list[str] = []

    def call() -> None:
        start.wait()
        tokens.append(auth.get_token())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert server.count() == 1
    assert telemetry.count("hoxton_auth.token_requests") == 1
    assert len(telemetry.spans("hoxton_auth.renewal")) == 1
    # Those that waited for the renewal hit memory; any that came after took the hot path.
    assert 0 <= telemetry.count("hoxton_auth.cache_hits", layer="memory") <= 7
    no_token_in(telemetry, *tokens)


# -- renewals: after a 401, ahead of time ------------------------------------------------------


def test_a_401_renewal_is_marked(
    telemetry: Telemetry, server: AuthServer, isolated_cache: Path
) -> None:
    auth = machine(server, FileTokenCache(isolated_cache))
    first = auth.get_token()
    server.revoke_access_tokens()

    response = requests.get(server.api_url, auth=auth, timeout=30)

    assert response.status_code == 200
    assert telemetry.count("hoxton_auth.token_requests", outcome="ok") == 2
    after_401 = [
        span
        for span in telemetry.spans("hoxton_auth.renewal")
        if span.attributes is not None and span.attributes["hoxton_auth.after_401"]
    ]
    assert len(after_401) == 1
    no_token_in(telemetry, first, auth.get_token())


def test_a_background_renewal_is_marked_and_counted(
    telemetry: Telemetry, server: AuthServer, isolated_cache: Path
) -> None:
    cache = FileTokenCache(isolated_cache)
    first = machine(server, cache).get_token()
    # A day-long token with an hour left: past its refresh-ahead point, before its renewal point.
    redate(cache, age=23 * 3600, left=3600)
    auth = machine(server, cache)

    assert auth.get_token() == first  # served at once; the renewal runs in the background
    wait_for(lambda: telemetry.count("hoxton_auth.background_renewals") == 1, "renewal")

    assert telemetry.count("hoxton_auth.background_renewals", outcome="renewed") == 1
    assert telemetry.count("hoxton_auth.token_requests", outcome="ok") == 2
    background = [
        span
        for span in telemetry.spans("hoxton_auth.renewal")
        if span.attributes is not None and span.attributes["hoxton_auth.background"]
    ]
    assert len(background) == 1
    (request,) = [
        span
        for span in telemetry.spans("hoxton_auth.token_request")
        if span.parent is not None and span.parent.span_id == background[0].context.span_id
    ]
    assert request.attributes is not None
    assert request.attributes["hoxton_auth.outcome"] == "ok"
    second = auth.get_token()
    assert second != first
    no_token_in(telemetry, first, second)


def test_a_failed_background_renewal_is_counted_and_memory_serves_meanwhile(
    telemetry: Telemetry, server: AuthServer, isolated_cache: Path
) -> None:
    cache = FileTokenCache(isolated_cache)
    first = machine(server, cache).get_token()
    redate(cache, age=23 * 3600, left=3600)
    server.outage = True
    auth = machine(server, cache, retry_deadline=0)

    assert auth.get_token() == first  # from the shared cache; a background renewal starts
    wait_for(lambda: telemetry.count("hoxton_auth.background_renewals") == 1, "renewal")
    assert telemetry.count("hoxton_auth.background_renewals", outcome="failed") == 1
    assert telemetry.count("hoxton_auth.cache_hits", layer="memory") == 0

    assert auth.get_token() == first  # in its window: from memory, on the slow path
    assert telemetry.count("hoxton_auth.cache_hits", layer="memory") == 1
    # That call started another background renewal, which the cooldown answers.
    wait_for(lambda: telemetry.count("hoxton_auth.background_renewals") == 2, "renewal")
    assert telemetry.count("hoxton_auth.cooldown_skips", served="stale") == 1
    assert telemetry.count("hoxton_auth.stale_tokens_served") == 0  # it served nobody
    no_token_in(telemetry, first)


# -- Auth0's bad days -------------------------------------------------------------------------


def test_a_cooldown_skips_the_token_request(
    telemetry: Telemetry, server: AuthServer, isolated_cache: Path
) -> None:
    cache = FileTokenCache(isolated_cache)
    server.outage = True
    with pytest.raises(TokenRequestError):
        machine(server, cache, retry_deadline=0).get_token()
    asked = server.count()

    with pytest.raises(TokenRequestError, match="cooldown"):
        machine(server, cache, retry_deadline=0).get_token()

    assert server.count() == asked  # the cooldown answered
    assert telemetry.count("hoxton_auth.cooldown_skips", served="error") == 1
    failed = telemetry.count("hoxton_auth.token_requests", outcome="temporarily_unavailable")
    assert failed == 1
    (request,) = telemetry.spans("hoxton_auth.token_request")
    assert request.status.status_code.name == "ERROR"


def test_stale_tokens_served_during_an_outage_are_counted(
    telemetry: Telemetry, server: AuthServer, isolated_cache: Path
) -> None:
    cache = FileTokenCache(isolated_cache)
    token = machine(server, cache).get_token()
    redate(cache, age=24 * 3600 - 30, left=30)  # past its renewal point, still good to send
    server.outage = True

    with pytest.warns(HoxtonAuthWarning, match="using the cached one"):
        served = machine(server, cache, retry_deadline=0).get_token()  # its renewal failed
    again = machine(server, cache, retry_deadline=0).get_token()  # the cooldown: warned once

    assert served == again == token

    assert telemetry.count("hoxton_auth.stale_tokens_served", reason="failure") == 1
    assert telemetry.count("hoxton_auth.stale_tokens_served", reason="cooldown") == 1
    assert telemetry.count("hoxton_auth.cooldown_skips", served="stale") == 1
    no_token_in(telemetry, token)
