"""Reads the whole alert topic into a ``DashboardView``, and the whole patient-summaries topic
into a ``WatchList``, from the beginning.

A group-less consumer: every worker reads every partition (the dashboard shows the whole
system whichever worker serves it) and commits nothing. It runs as a background task of the
worker, so it never delays the worker's start or readiness; it retries when the broker is away
and resumes where it stopped; cancelling the task stops the consumer. Nothing it logs carries
an alert's content (patient ids and values): only counts and exception class names.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from monitor.clinical.alert import Alert
from monitor.clinical.watch import PatientSummary
from monitor.dashboard.view import DashboardView
from monitor.dashboard.watchlist import WatchList
from monitor.kafka.security import aiokafka_security_kwargs
from monitor.settings import MonitorSettings

log = logging.getLogger("monitor.dashboard")

ConsumerFactory = Callable[[], Any]


class AlertFeed:
    def __init__(
        self,
        settings: MonitorSettings,
        view: DashboardView,
        consumer_factory: ConsumerFactory | None = None,
        retry_s: float = 2.0,
        watchlist: WatchList | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.view = view
        self.watchlist = watchlist
        self.clock = clock
        self.retry_s = retry_s
        self.undecodable = 0
        self._factory = consumer_factory or self._new_consumer
        self._positions: dict[TopicPartition, int] = {}

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=",".join(self.settings.bootstrap_servers),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"{self.settings.app_id}-dashboard",
            **aiokafka_security_kwargs(self.settings),
        )

    def fold(self, value: bytes | None) -> bool:
        """Apply one alert message; an undecodable one is counted and skipped, never logged."""
        if value is None:
            return False
        try:
            alert = Alert.model_validate_json(value)
        except ValidationError:
            self.undecodable += 1
            return False
        return self.view.apply(alert)

    def fold_summary(self, key: bytes | None, value: bytes | None) -> bool:
        """Apply one patient summary (None: a tombstone); undecodable ones are counted."""
        if self.watchlist is None or key is None:
            return False
        summary = None
        if value is not None:
            try:
                summary = PatientSummary.model_validate_json(value)
            except ValidationError:
                self.undecodable += 1
                return False
        try:
            patient_id = key.decode()
        except UnicodeDecodeError:
            self.undecodable += 1
            return False
        self.watchlist.apply(patient_id, summary, self.clock())
        return True

    async def run(self) -> None:
        """Consume until cancelled, reconnecting after a failure (the task's whole life)."""
        while True:
            try:
                await self._consume_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker away, a metadata error: retry, do not die
                log.warning(
                    "dashboard alert feed failed with %s; retrying in %.0f s",
                    type(exc).__name__,
                    self.retry_s,
                )
            await asyncio.sleep(self.retry_s)

    async def _consume_once(self) -> None:
        consumer = self._factory()
        try:
            await consumer.start()
            partitions = await self._partitions(consumer)
            consumer.assign(partitions)
            for tp in partitions:
                if tp in self._positions:
                    consumer.seek(tp, self._positions[tp])
                else:
                    await consumer.seek_to_beginning(tp)
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                for tp, records in batch.items():
                    summaries = tp.topic == self.settings.summaries_topic
                    for record in records:
                        if summaries:
                            self.fold_summary(record.key, record.value)
                        else:
                            self.fold(record.value)
                    if records:
                        self._positions[tp] = records[-1].offset + 1
        finally:
            await consumer.stop()

    async def _partitions(self, consumer: Any) -> list[TopicPartition]:
        """The partitions of the alert topic (and the summaries topic, with a watch list),
        waiting until their metadata is known."""
        topics = [self.settings.alerts_topic]
        if self.watchlist is not None:
            topics.append(self.settings.summaries_topic)
        while not all(consumer.partitions_for_topic(t) for t in topics):
            await asyncio.sleep(self.retry_s)
            await consumer.force_metadata_update()
        return [
            TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t))
        ]
