"""Posting with retry: a refused or failed post is retried with backoff, never dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from monitor.bridge.runner import BridgeOptions, Poster, StopRequestedError, backoff_delays
from monitor.broker import find_free_port


def test_backoff_doubles_up_to_its_cap() -> None:
    following = backoff_delays(0.5, 4.0)
    assert [following() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


class Receiver:
    """A local HTTP endpoint that refuses the first ``failures`` posts with a 503."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.bodies: list[Any] = []
        self.refused = 0

    async def handle(self, request: web.Request) -> web.Response:
        if self.refused < self.failures:
            self.refused += 1
            return web.Response(status=503)
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
