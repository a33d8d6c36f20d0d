"""Readiness probes for a Kafka broker: whether a TCP port accepts connections, and waiting
until the broker answers the Kafka protocol (a metadata request listing a broker, or, for a
broker requiring SASL, the ApiVersions request), also from synchronous code."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiokafka.client import AIOKafkaClient
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError

__all__ = [
    "port_accepts",
    "run_in_fresh_loop",
    "wait_until_answering",
    "wait_until_answering_within",
]

_log = logging.getLogger("monitor.local.broker")  # where these messages were always logged

_T = TypeVar("_T")


def run_in_fresh_loop(make_coro: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion in a new event loop on a short-lived thread.

    A separate thread leaves the caller's event loop state untouched (``asyncio.run`` on the
    calling thread would unset its current loop) and works even when the caller is itself
    running inside an event loop.
    """
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="broker-probe") as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result()


async def wait_until_answering(bootstrap: str, *, anonymous_metadata: bool = True) -> None:
    """Wait until a Kafka broker at ``bootstrap`` answers a metadata request listing a broker.

    With ``anonymous_metadata=False`` (a broker requiring SASL refuses metadata before a login)
    an answer to the ApiVersions request that opens every connection is enough.
    Retries until it does; bound it with ``asyncio.timeout``.
    """
    if not anonymous_metadata:
        host, _, port = bootstrap.rpartition(":")
        while True:
            try:
                conn = await create_conn(host, int(port), request_timeout_ms=2_000)
            except (KafkaError, OSError) as exc:
                _log.debug("broker at %s not answering yet: %r", bootstrap, exc)
            else:
                conn.close()
                return
            await asyncio.sleep(0.1)
    while True:
        client = AIOKafkaClient(
            bootstrap_servers=bootstrap, request_timeout_ms=2_000, retry_backoff_ms=50
        )
        try:
            await client.bootstrap()
            if client.cluster.brokers():
                return
        except (KafkaError, OSError) as exc:
            _log.debug("broker at %s not answering yet: %r", bootstrap, exc)
        finally:
            await client.close()
        await asyncio.sleep(0.1)


async def wait_until_answering_within(
    bootstrap: str, seconds: float, *, anonymous_metadata: bool = True
) -> None:
    async with asyncio.timeout(seconds):
        await wait_until_answering(bootstrap, anonymous_metadata=anonymous_metadata)


def port_accepts(host: str, port: int) -> bool:
    """Return True if a TCP connection to host:port succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
