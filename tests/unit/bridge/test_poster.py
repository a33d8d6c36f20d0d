"""Posting with retry: a refused or failed post is retried with backoff, never dropped, and
every attempt shows in the bridge's metrics (posts by outcome, retrying, last success)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from monitor.bridge.metrics import BridgeMetrics
from monitor.bridge.options import BridgeOptions
from monitor.bridge.poster import Poster, StopRequestedError, backoff_delays
from monitor.local.processes import find_free_port


def test_backoff_doubles_up_to_its_cap() -> None:
    following = backoff_delays(0.5, 4.0)
    assert [following() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


class Receiver:
    """A local HTTP endpoint that refuses the first ``failures`` posts with ``status``."""

    def __init__(self, failures: int, status: int = 503) -> None:
        self.failures = failures
        self.status = status
        self.bodies: list[Any] = []
        self.refused = 0

    async def handle(self, request: web.Request) -> web.Response:
        if self.refused < self.failures:
            self.refused += 1
            return web.Response(status=self.status)
        self.bodies.append(await request.json())
        return web.Response(status=202)


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Any]:
    runners: list[web.AppRunner] = []

    async def start(receiver: Receiver) -> str:
        app = web.Application()
        app.router.add_post("/in", receiver.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/in"

    yield start
    for runner in runners:
        await runner.cleanup()


def options(url: str) -> BridgeOptions:
    return BridgeOptions(url=url, group="g", resend_interval=60, initial_backoff=0.01)


@pytest.mark.asyncio
async def test_a_refused_post_is_retried_until_accepted(serve: Any) -> None:
    receiver = Receiver(failures=3)
    url = await serve(receiver)
    async with aiohttp.ClientSession() as session:
        poster = Poster(session, "test", options(url), asyncio.Event())
        await asyncio.wait_for(poster.post([{"n": 1}]), timeout=10)
    assert receiver.refused == 3
    assert receiver.bodies == [[{"n": 1}]]
    assert poster.posted == 1


@pytest.mark.asyncio
async def test_an_unreachable_endpoint_is_retried_until_the_bridge_stops() -> None:
    url = f"http://127.0.0.1:{find_free_port()}/in"  # nothing listens there
    stopping = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        poster = Poster(session, "test", options(url), stopping)
        task = asyncio.create_task(poster.post({"n": 1}))
        await asyncio.sleep(0.2)
        assert not task.done()  # still retrying, not given up
        stopping.set()
        with pytest.raises(StopRequestedError):
            await asyncio.wait_for(task, timeout=5)
    assert poster.posted == 0


def posts(metrics: BridgeMetrics) -> dict[str, float | None]:
    return {
        outcome: metrics.value("monitor_bridge_posts_total", outcome=outcome)
        for outcome in ("ok", "http_error", "unreachable")
    }


def retrying(metrics: BridgeMetrics) -> float | None:
    return metrics.value("monitor_bridge_retrying")


def last_success(metrics: BridgeMetrics) -> float | None:
    return metrics.value("monitor_bridge_last_success_timestamp_seconds")


@pytest.mark.asyncio
async def test_a_500_then_a_200_counts_one_error_one_success_and_ends_the_retry(
    serve: Any,
) -> None:
    url = await serve(Receiver(failures=1, status=500))
    metrics = BridgeMetrics("alertmanager")
    assert posts(metrics) == {"ok": 0.0, "http_error": 0.0, "unreachable": 0.0}
    assert (retrying(metrics), last_success(metrics)) == (0.0, 0.0)
    before = time.time()
    async with aiohttp.ClientSession() as session:
        poster = Poster(session, "alertmanager", options(url), asyncio.Event(), metrics)
        await asyncio.wait_for(poster.post({"n": 1}), timeout=10)
    assert posts(metrics) == {"ok": 1.0, "http_error": 1.0, "unreachable": 0.0}
    assert retrying(metrics) == 0.0
    assert before <= (last_success(metrics) or 0.0) <= time.time()


@pytest.mark.asyncio
async def test_a_4xx_answered_forever_keeps_retrying_at_1(serve: Any) -> None:
    """Alertmanager refusing every post (e.g. 400 after an incompatible upgrade): nothing is
    dropped, and the gauge the CbcMonitorBridgeRetrying rule watches stays at 1."""
    url = await serve(Receiver(failures=10**6, status=400))
    metrics = BridgeMetrics("alertmanager")
    stopping = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        poster = Poster(session, "alertmanager", options(url), stopping, metrics)
        task = asyncio.create_task(poster.post({"n": 1}))
        deadline = time.monotonic() + 10
        while (posts(metrics)["http_error"] or 0) < 3:
            assert time.monotonic() < deadline, posts(metrics)
            await asyncio.sleep(0.01)
        assert retrying(metrics) == 1.0
        assert not task.done()
        stopping.set()
        with pytest.raises(StopRequestedError):
            await asyncio.wait_for(task, timeout=5)
    assert posts(metrics)["ok"] == 0.0
    assert last_success(metrics) == 0.0
    assert retrying(metrics) == 1.0  # the post never went through


@pytest.mark.asyncio
async def test_an_unreachable_output_counts_as_unreachable() -> None:
    url = f"http://127.0.0.1:{find_free_port()}/in"  # nothing listens there
    metrics = BridgeMetrics("pagerduty")
    stopping = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        poster = Poster(session, "pagerduty", options(url), stopping, metrics)
        task = asyncio.create_task(poster.post({"n": 1}))
        deadline = time.monotonic() + 10
        while not posts(metrics)["unreachable"]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert retrying(metrics) == 1.0
        stopping.set()
        with pytest.raises(StopRequestedError):
            await asyncio.wait_for(task, timeout=5)
    assert posts(metrics)["ok"] == posts(metrics)["http_error"] == 0.0


@pytest.mark.asyncio
async def test_consecutive_posts_each_count_and_retrying_follows_the_current_one(
    serve: Any,
) -> None:
    receiver = Receiver(failures=2)
    url = await serve(receiver)
    metrics = BridgeMetrics("alertmanager")
    async with aiohttp.ClientSession() as session:
        poster = Poster(session, "alertmanager", options(url), asyncio.Event(), metrics)
        await asyncio.wait_for(poster.post({"n": 1}), timeout=10)
        await asyncio.wait_for(poster.post({"n": 2}), timeout=10)
    assert posts(metrics) == {"ok": 2.0, "http_error": 2.0, "unreachable": 0.0}
    assert retrying(metrics) == 0.0
    assert receiver.bodies == [{"n": 1}, {"n": 2}]
