"""The bridge's I/O: the alert topic in, HTTP posts out, at least once.

1. Rebuild: a group-less consumer reads the alert topic from the beginning up to its end
   offsets (or the group's committed offsets, whichever is further: the *targets*) into an
   :class:`EpisodeBook`, without posting. The changes the group has not handled yet are
   collected: those at or after its commit, and on a partition it never committed (while it
   has commits elsewhere) all of them. A group without any commit is a *first run*.
2. Start-up sync: the output's ``startup`` requests (for Alertmanager: every open episode
   firing, every labelset retired since the group's commit resolved; for PagerDuty: the events
   since the commit, or on a first run a trigger for every open episode that has paged).
3. Follow: the consumer group commits the targets of every partition assigned to it (so every
   partition has a commit from then on), then reads from its committed offsets; each alert's
   requests are posted (retried with backoff until they succeed) before its offset is
   committed. Records below the targets were handled by 1 and 2 and are passed over.
4. Keep-alive: every resend interval the output's ``keepalive`` requests are posted. If it dies
   of an unexpected error the bridge stops with :class:`BridgeFailedError` (exit 1).

A lock makes the follow loop and the keep-alive take turns, so a keep-alive never re-fires a
labelset that an alert retired meanwhile. A record that is not an alert, or that fails to apply,
is logged by position, counted (``monitor_bridge_records_skipped_total``) and passed over
rather than stopping paging. Logs name partitions, offsets, exception classes and HTTP
statuses, never an alert's content. The posts with their retries are
:mod:`monitor.bridge.poster`'s, the start offsets and commits :mod:`monitor.bridge.offsets`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from monitor.bridge.episodes import Change, EpisodeBook
from monitor.bridge.metrics import BridgeMetrics
from monitor.bridge.offsets import commit, commit_floors, start_offsets, unstall
from monitor.bridge.options import BridgeOptions
from monitor.bridge.poster import Poster, StopRequestedError
from monitor.clinical.alert import Alert
from monitor.kafka.security import aiokafka_security_kwargs
from monitor.settings import MonitorSettings

log = logging.getLogger("monitor.bridge")

STALL_SECONDS = 15.0  # rebuild: re-check the end offsets after this long without records


class Output(Protocol):
    """Turns episode changes into JSON request bodies (``alertmanager``, ``pagerduty``)."""

    name: str

    def on_change(self, change: Change, now: datetime) -> Sequence[Any]: ...

    def keepalive(self, book: EpisodeBook, now: datetime) -> Sequence[Any]: ...

    def startup(
        self,
        book: EpisodeBook,
        since_commit: Sequence[Change],
        now: datetime,
        first_run: bool = False,
    ) -> Sequence[Any]: ...


class BridgeFailedError(Exception):
    """A part of the bridge died of an unexpected error; the process must exit non-zero so
    that its supervisor restarts it. The message names the exception class only."""


@dataclass(frozen=True)
class Rebuilt:
    since_commit: list[Change]  # changes the group has not handled yet, in topic order
    targets: dict[TopicPartition, int]  # where the rebuild stopped, per partition
    first_run: bool  # the group has no commit on any partition


def utcnow() -> datetime:
    return datetime.now(UTC)


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
        self.failure: BaseException | None = None  # what killed the keep-alive, if anything
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
        if self.failure is not None:
            raise BridgeFailedError(
                f"the {self.output.name} keep-alive failed ({type(self.failure).__name__})"
            )

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
            rebuilt = await self._rebuild(partitions, committed)
            self.metrics.open_episodes.set(len(self.book))
            if self._stopping.is_set():
                return
            async with self._lock:
                bodies = self.output.startup(
                    self.book, rebuilt.since_commit, self.clock(), first_run=rebuilt.first_run
                )
                for body in bodies:
                    await poster.post(body)
            log.info(
                "synced: %d open episodes, %d requests posted at start%s",
                len(self.book),
                len(bodies),
                " (first run of the group)" if rebuilt.first_run else "",
            )
            self.metrics.synced.set(1)
            self.synced.set()
            keepalive = self.start_keepalive(poster)
            consumer.subscribe([self.topic])
            await self._follow(consumer, poster, rebuilt.targets)
        finally:
            if keepalive is not None:
                keepalive.cancel()
                await asyncio.wait([keepalive])  # its outcome is handled by _keepalive_done
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
    ) -> Rebuilt:
        """Replay the topic into the book, collecting the changes from :func:`start_offsets`
        on (the ones the group has not handled yet)."""
        reader = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            **self._kafka,
        )
        await reader.start()
        since_commit: list[Change] = []
        starts = start_offsets(committed)
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
                    start = starts[tp]
                    for record in records:
                        if record.offset >= targets[tp]:
                            break  # the group consumer takes it from here
                        unhandled = start is not None and record.offset >= start
                        change = self._apply(record, count_skipped=unhandled)
                        if change is not None and unhandled:
                            since_commit.append(change)
                for tp in list(remaining):
                    if await reader.position(tp) >= targets[tp]:
                        remaining.discard(tp)
                if remaining and time.monotonic() - last_record > STALL_SECONDS:
                    remaining = await unstall(reader, remaining)
                    last_record = time.monotonic()
        finally:
            await reader.stop()
        log.info(
            "rebuilt %d open episodes from %s; %d changes since the group's commit",
            len(self.book),
            self.topic,
            len(since_commit),
        )
        first_run = all(start is None for start in starts.values())
        return Rebuilt(since_commit=since_commit, targets=targets, first_run=first_run)

    def _skip(self, record: Any, exc: Exception, count: bool) -> None:
        """Log a record that failed to apply by position and exception class only."""
        log.error(
            "skipping the record at partition %d, offset %d: applying it failed (%s)",
            record.partition,
            record.offset,
            type(exc).__name__,
        )
        if count:
            self.metrics.records_skipped.inc()

    def _apply(self, record: Any, count_skipped: bool) -> Change | None:
        """The rebuild's step: the record's change to the book, or None (a repeat, not an
        alert, or an alert that fails to apply: skipped, counted when ``count_skipped``)."""
        alert = decode(record)
        if alert is None:
            if count_skipped:
                self.metrics.records_skipped.inc()
            return None
        try:
            return self.book.apply(alert)
        except Exception as exc:
            self._skip(record, exc, count_skipped)
            return None

    async def _handle(self, record: Any, poster: Poster) -> bool:
        """Apply one record of the group and post its requests; whether anything was posted.
        A record that is not an alert, or whose change cannot be applied or mapped, is skipped
        (and counted) rather than retried forever: a poison record must not stop paging."""
        alert = decode(record)
        if alert is None:
            self.metrics.records_skipped.inc()
            return False
        self.metrics.alerts_consumed.inc()
        async with self._lock:
            bodies: Sequence[Any] = []
            try:
                change = self.book.apply(alert)
                if change is not None:
                    bodies = self.output.on_change(change, self.clock())
            except Exception as exc:
                self._skip(record, exc, count=True)
            self.metrics.open_episodes.set(len(self.book))
            for body in bodies:
                await poster.post(body)
        return bool(bodies)

    async def _follow(
        self,
        consumer: AIOKafkaConsumer,
        poster: Poster,
        floors: Mapping[TopicPartition, int],
    ) -> None:
        """Consume as the group from its commits; ``floors`` are the rebuild's targets: the
        records below them were handled at start, and are committed as soon as the group
        holds their partition."""
        pending = dict(floors)
        while not self._stopping.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            if pending:
                await commit_floors(consumer, pending)
            for tp, records in batch.items():
                uncommitted: int | None = None
                for record in records:
                    if record.offset < floors.get(tp, 0):
                        continue  # rebuilt and synced at start
                    if await self._handle(record, poster):
                        await commit(consumer, tp, record.offset + 1)
                        uncommitted = None
                    else:
                        uncommitted = record.offset + 1
                if uncommitted is not None:
                    await commit(consumer, tp, uncommitted)

    def start_keepalive(self, poster: Poster) -> asyncio.Task[None]:
        """The keep-alive task; if it dies of an unexpected error the bridge stops and
        :meth:`run` raises :class:`BridgeFailedError` (open alerts would otherwise expire at
        Alertmanager while the bridge looks healthy)."""
        task = asyncio.create_task(self._keepalive(poster))
        task.add_done_callback(self._keepalive_done)
        return task

    def _keepalive_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None or isinstance(exc, StopRequestedError):
            return
        log.error("the keep-alive failed (%s); stopping the bridge", type(exc).__name__)
        self.failure = exc
        self._stopping.set()

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
