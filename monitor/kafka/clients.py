"""Small aiokafka helpers for the command line tools: publish messages, follow topics.

Each takes ``security``, aiokafka's TLS/SASL arguments from
``monitor.kafka.security.aiokafka_security_kwargs(settings)``; ``None`` is plaintext.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


def bootstrap_of(broker_url: str) -> str:
    """``kafka://h1:9092;kafka://h2:9092`` -> ``h1:9092,h2:9092``."""
    return ",".join(url.strip().partition("://")[2] for url in broker_url.split(";"))


async def publish(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes]],
    rate: float | None = None,
    security: Mapping[str, Any] | None = None,
) -> int:
    """Send (key, value) pairs to ``topic`` in order, at most ``rate`` per second."""
    triples = ((topic, key, value) for key, value in messages)
    sent = await publish_to(bootstrap, triples, rate, security=security)
    return sum(sent.values())


async def publish_to(
    bootstrap: str,
    messages: Iterable[tuple[str, bytes | None, bytes]],
    rate: float | None = None,
    security: Mapping[str, Any] | None = None,
) -> Counter[str]:
    """Send (topic, key, value) triples in order through one producer, at most ``rate`` per
    second; wait for every acknowledgement. Returns how many went to each topic."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, acks="all", **(security or {})
    )
    await producer.start()
    sent: Counter[str] = Counter()
    started = time.monotonic()
    try:
        pending: list[asyncio.Future[Any]] = []
        for count, (topic, key, value) in enumerate(messages):
            if rate:
                delay = started + count / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            pending.append(await producer.send(topic, value, key=key))
            sent[topic] += 1
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def follow(
    bootstrap: str,
    topics: list[str],
    *,
    from_beginning: bool = True,
    idle_timeout: float | None = None,
    security: Mapping[str, Any] | None = None,
) -> AsyncGenerator[Any, None]:
    """Yield records of ``topics`` as they arrive; stop after ``idle_timeout`` s without any."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        **(security or {}),
    )
    await consumer.start()
    try:
        last = time.monotonic()
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            if batch:
                last = time.monotonic()
            for records in batch.values():
                for record in records:
                    yield record
            if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                return
    finally:
        await consumer.stop()


def header(record: Any, name: str) -> bytes | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value)
    return None
