"""The bridge's I/O: the alert topic in, HTTP posts out, at least once.

1. Rebuild: a group-less consumer reads the alert topic from the beginning up to its end
   offsets (or the group's committed offsets, whichever is further) into an
   :class:`EpisodeBook`, without posting.
2. Start-up sync: the output's ``startup`` requests (for Alertmanager: every open episode
   firing, every labelset retired since the group's commit resolved).
3. Follow: the consumer group reads from its committed offsets; each alert's requests are
   posted (retried with backoff until they succeed) before its offset is committed. Alerts the
   rebuild already applied are repeats and post nothing.
4. Keep-alive: every resend interval the output's ``keepalive`` requests are posted.

A lock makes the follow loop and the keep-alive take turns, so a keep-alive never re-fires a
labelset that an alert retired meanwhile. Logs name partitions, offsets and HTTP statuses,
never an alert's content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from monitor.alert import Alert
from monitor.bridge.episodes import Change, EpisodeBook
from monitor.bridge.metrics import BridgeMetrics, Outcome
from monitor.kafka_security import aiokafka_security_kwargs
from monitor.settings import MonitorSettings

log = logging.getLogger("monitor.bridge")

STALL_SECONDS = 15.0  # rebuild: re-check the end offsets after this long without records


class Output(Protocol):
    """Turns episode changes into JSON request bodies (``alertmanager``, ``pagerduty``)."""

    name: str

    def on_change(self, change: Change, now: datetime) -> Sequence[Any]: ...

    def keepalive(self, book: EpisodeBook, now: datetime) -> Sequence[Any]: ...

    def startup(
        self, book: EpisodeBook, since_commit: Sequence[Change], now: datetime
    ) -> Sequence[Any]: ...


@dataclass(frozen=True)
class BridgeOptions:
    url: str  # where every request body is POSTed
    group: str
    resend_interval: float  # seconds between keep-alives
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    http_timeout: float = 10.0


class StopRequestedError(Exception):
    """The bridge was asked to stop while a post was still being retried."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def backoff_delays(initial: float, maximum: float) -> Callable[[], float]:
    """Doubling delays from ``initial``, capped at ``maximum``."""
    delay = initial / 2

    def following() -> float:
        nonlocal delay
        delay = min(maximum, delay * 2)
        return delay

    return following


class Poster:
    """POSTs JSON bodies to one URL until each is accepted (2xx), or the bridge stops.

    Every attempt is counted by outcome; ``retrying`` is 1 from a post's first failure until it
    is accepted (a stop while retrying leaves it at 1: the post never went through)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        name: str,
        options: BridgeOptions,
        stopping: asyncio.Event,
        metrics: BridgeMetrics | None = None,
    ) -> None:
        self._session = session
        self._name = name
        self._options = options
        self._stopping = stopping
        self.metrics = metrics if metrics is not None else BridgeMetrics(name)
        self.posted = 0

    async def post(self, body: Any) -> None:
        delays = backoff_delays(self._options.initial_backoff, self._options.max_backoff)
        retrying = False
        while True:
            outcome: Outcome
            try:
                async with self._session.post(self._options.url, json=body) as response:
                    if 200 <= response.status < 300:
                        self.metrics.post_attempt("ok")
                        if retrying:
                            self.metrics.retry_ended()
                        self.posted += 1
                        return
                    outcome, problem = "http_error", f"answered HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome, problem = "unreachable", f"unreachable ({type(exc).__name__})"
            self.metrics.post_attempt(outcome)
            if not retrying:
                retrying = True
                self.metrics.retry_started()
            delay = delays()
            log.warning("%s %s; retrying in %.1f s", self._name, problem, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            if self._stopping.is_set():
                raise StopRequestedError


def decode(record: Any) -> Alert | None:
    """The alert in a record, or None (logged by position, never by content)."""
    if record.value is None:
        return None
    try:
        return Alert.model_validate_json(record.value)
    except ValidationError as exc:
        fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors(include_input=False)})
        log.warning(
            "skipping a record that is not an alert (partition %d, offset %d; fields: %s)",
            record.partition,
            record.offset,
            ", ".join(fields) or "-",
        )
        return None


class Bridge:
    def __init__(
        self,
        settings: MonitorSettings,
        output: Output,
        options: BridgeOptions,
        clock: Callable[[], datetime] = utcnow,
        metrics: BridgeMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.output = output
        self.options = options
        self.clock = clock
        self.metrics = metrics if metrics is not None else BridgeMetrics(output.name)
        self.book = EpisodeBook()
        self.synced = asyncio.Event()  # set once the start-up sync is posted
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()
        self._kafka: dict[str, Any] = {
            "bootstrap_servers": ",".join(settings.bootstrap_servers),
            **aiokafka_security_kwargs(settings),
        }

    def stop(self) -> None:
        self._stopping.set()

    @property
    def topic(self) -> str:
        return self.settings.alerts_topic

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.options.http_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            poster = Poster(session, self.output.name, self.options, self._stopping, self.metrics)
            try:
                await self._run(poster)
            except StopRequestedError:
                log.info("stopped while a post was being retried; it was not committed")

    async def _run(self, poster: Poster) -> None:
        partitions = await self._partitions()
        if partitions is None:
            return
        session_ms = int(self.settings.session_timeout * 1000)
        consumer = AIOKafkaConsumer(
            group_id=self.options.group,
            client_id=f"cbc-monitor-bridge-{self.output.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=min(1000, session_ms // 3),
            fetch_max_wait_ms=100,
            **self._kafka,
        )
        await consumer.start()
        keepalive: asyncio.Task[None] | None = None
        try:
            committed = {tp: await consumer.committed(tp) for tp in partitions}
            since_commit = await self._rebuild(partitions, committed)
            self.metrics.open_episodes.set(len(self.book))
            if self._stopping.is_set():
                return
            async with self._lock:
                bodies = self.output.startup(self.book, since_commit, self.clock())
                for body in bodies:
                    await poster.post(body)
            log.info(
                "synced: %d open episodes, %d requests posted at start",
                len(self.book),
                len(bodies),
            )
            self.metrics.synced.set(1)
            self.synced.set()
            keepalive = asyncio.create_task(self._keepalive(poster))
            consumer.subscribe([self.topic])
            await self._follow(consumer, poster)
        finally:
            if keepalive is not None:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopRequestedError):
                    await keepalive
            await consumer.stop()

    async def _partitions(self) -> list[TopicPartition] | None:
        """The alert topic's partitions, once it exists (listing topics never creates one)."""
        admin = AIOKafkaAdminClient(**self._kafka)
        await admin.start()
        try:
            waiting = False
            while self.topic not in await admin.list_topics():
                if not waiting:
                    log.warning("waiting for the alert topic %s to exist", self.topic)
                    waiting = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=1.0)
                if self._stopping.is_set():
                    return None
            described = await admin.describe_topics([self.topic])
        finally:
            await admin.close()
        numbers = sorted(
            p.get("partition", p.get("partition_index")) for p in described[0]["partitions"]
        )
        return [TopicPartition(self.topic, number) for number in numbers]

    async def _rebuild(
        self, partitions: list[TopicPartition], committed: dict[TopicPartition, int | None]
    ) -> list[Change]:
        """Replay the topic into the book; return the changes at or after the committed
        offsets (none for a partition the group never committed: nothing was posted from it)."""
        reader = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            **self._kafka,
        )
        await reader.start()
        since_commit: list[Change] = []
        try:
            reader.assign(partitions)
            await reader.seek_to_beginning(*partitions)
            ends = await reader.end_offsets(partitions)
            targets = {tp: max(ends[tp], committed[tp] or 0) for tp in partitions}
            remaining = {tp for tp in partitions if await reader.position(tp) < targets[tp]}
            last_record = time.monotonic()
            while remaining and not self._stopping.is_set():
                batch = await reader.getmany(*remaining, timeout_ms=500)
                if batch:
                    last_record = time.monotonic()
                for tp, records in batch.items():
                    start = committed[tp]
                    for record in records:
                        if record.offset >= targets[tp]:
                            break  # the group consumer takes it from here
                        alert = decode(record)
                        change = self.book.apply(alert) if alert is not None else None
                        if change is not None and start is not None and record.offset >= start:
                            since_commit.append(change)
                for tp in list(remaining):
                    if await reader.position(tp) >= targets[tp]:
                        remaining.discard(tp)
                if remaining and time.monotonic() - last_record > STALL_SECONDS:
                    remaining = await _unstall(reader, remaining)
                    last_record = time.monotonic()
        finally:
            await reader.stop()
        log.info(
            "rebuilt %d open episodes from %s; %d changes since the group's commit",
            len(self.book),
            self.topic,
            len(since_commit),
        )
        return since_commit

    async def _follow(self, consumer: AIOKafkaConsumer, poster: Poster) -> None:
        while not self._stopping.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                uncommitted: int | None = None
                for record in records:
                    alert = decode(record)
                    if alert is not None:
                        self.metrics.alerts_consumed.inc()
                    async with self._lock:
                        change = self.book.apply(alert) if alert is not None else None
                        self.metrics.open_episodes.set(len(self.book))
                        bodies = self.output.on_change(change, self.clock()) if change else []
                        for body in bodies:
                            await poster.post(body)
                    if bodies:
                        await _commit(consumer, tp, record.offset + 1)
                        uncommitted = None
                    else:
                        uncommitted = record.offset + 1
                if uncommitted is not None:
                    await _commit(consumer, tp, uncommitted)

    async def _keepalive(self, poster: Poster) -> None:
        interval = self.options.resend_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)
            if self._stopping.is_set():
                return
            async with self._lock:
                for body in self.output.keepalive(self.book, self.clock()):
                    await poster.post(body)


async def _commit(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
    """Commit; a failure (a rebalance took the partition) only means a redelivery, which the
    book recognises as a repeat."""
    try:
        await consumer.commit({tp: offset})
    except KafkaError as exc:
        log.warning("commit on partition %d failed (%s)", tp.partition, type(exc).__name__)


async def _unstall(reader: AIOKafkaConsumer, remaining: set[TopicPartition]) -> set[TopicPartition]:
    """Stop waiting for partitions that have no more records (their end moved back, e.g.
    trailing control records); the group consumer reads whatever follows."""
    ends = await reader.end_offsets(list(remaining))
    still = {tp for tp in remaining if await reader.position(tp) < ends[tp]}
    for tp in remaining - still:
        log.warning("rebuild: partition %d ended before its expected offset", tp.partition)
    return still
