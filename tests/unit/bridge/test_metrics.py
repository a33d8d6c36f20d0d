"""The bridge's metrics server: ``/metrics`` in the Prometheus text format with every series
present from the start (so the rules see 0, not nothing), ``/healthz``, and labels that can only
name the output and a fixed outcome."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from monitor.bridge.metrics import (
    BridgeMetrics,
    MetricsServerError,
    metrics_app,
    start_metrics_server,
)

NAMES = {
    "monitor_bridge_posts_total",
    "monitor_bridge_last_success_timestamp_seconds",
    "monitor_bridge_retrying",
    "monitor_bridge_open_episodes",
    "monitor_bridge_alerts_consumed_total",
    "monitor_bridge_synced",
    "monitor_bridge_records_skipped_total",
}


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[BridgeMetrics, str]]:
    metrics = BridgeMetrics("alertmanager")
    runner = await start_metrics_server(metrics, "127.0.0.1", 0)
    try:
        yield metrics, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield sample.name, sample.labels, sample.value


@pytest.mark.asyncio
async def test_metrics_lists_every_series_at_zero_before_any_post(
    served: tuple[BridgeMetrics, str],
) -> None:
    _, url = served
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    found = {
        (name, tuple(sorted(labels.items()))): value
        for name, labels, value in samples(text)
        if not name.endswith("_created")
    }
    assert {name for name, _ in found} == NAMES
    assert all(value == 0.0 for value in found.values()), found
    outcomes = {dict(labels)["outcome"] for name, labels in found if name.endswith("posts_total")}
    assert outcomes == {"ok", "http_error", "unreachable"}


@pytest.mark.asyncio
async def test_metrics_follow_the_bridge_and_label_only_the_output(
    served: tuple[BridgeMetrics, str],
) -> None:
    metrics, url = served
    metrics.post_attempt("unreachable")
    metrics.retry_started()
    metrics.open_episodes.set(3)
    metrics.alerts_consumed.inc(5)
    metrics.synced.set(1)
    metrics.records_skipped.inc(2)
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        text = await response.text()
    values = {
        (name, labels.get("outcome")): value
        for name, labels, value in samples(text)
        if name in NAMES
    }
    assert values[("monitor_bridge_posts_total", "unreachable")] == 1.0
    assert values[("monitor_bridge_retrying", None)] == 1.0
    assert values[("monitor_bridge_open_episodes", None)] == 3.0
    assert values[("monitor_bridge_alerts_consumed_total", None)] == 5.0
    assert values[("monitor_bridge_synced", None)] == 1.0
    assert values[("monitor_bridge_records_skipped_total", None)] == 2.0
    for name, labels, _ in samples(text):
        assert set(labels) <= {"output", "outcome"}, name
        assert labels.get("output") in (None, "alertmanager"), name


def test_retrying_stays_1_while_any_post_is_still_retrying() -> None:
    metrics = BridgeMetrics("alertmanager")
    metrics.retry_started()
    metrics.retry_started()
    metrics.retry_ended()
    assert metrics.value("monitor_bridge_retrying") == 1.0
    metrics.retry_ended()
    assert metrics.value("monitor_bridge_retrying") == 0.0


@pytest.mark.asyncio
async def test_healthz_answers_200(served: tuple[BridgeMetrics, str]) -> None:
    _, url = served
    async with aiohttp.ClientSession() as session, session.get(url + "/healthz") as response:
        assert response.status == 200
        assert await response.text() == "ok\n"


@pytest.mark.asyncio
async def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsServerError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            await start_metrics_server(BridgeMetrics("alertmanager"), "127.0.0.1", port)


def test_each_bridge_has_its_own_registry() -> None:
    first, second = BridgeMetrics("alertmanager"), BridgeMetrics("alertmanager")
    first.post_attempt("ok")
    assert first.value("monitor_bridge_posts_total", outcome="ok") == 1.0
    assert second.value("monitor_bridge_posts_total", outcome="ok") == 0.0


def test_app_routes() -> None:
    app = metrics_app(BridgeMetrics("pagerduty"))
    paths = {route.resource.canonical for route in app.router.routes() if route.resource}
    assert paths == {"/metrics", "/healthz"}
    assert isinstance(app, web.Application)
