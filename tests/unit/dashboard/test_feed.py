"""The alert feed: folds records into the view, survives bad records and broker failures,
resumes where it stopped, stops its consumer when cancelled, and logs no patient data."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from monitor.clinical.alert import Alert
from monitor.clinical.watch import PatientSummary, make_watch_id
from monitor.dashboard.feed import AlertFeed
from monitor.dashboard.view import DashboardView
from monitor.dashboard.watchlist import WatchList
from monitor.settings import MonitorSettings
from tests.builders import cbc, replay

SETTINGS = MonitorSettings(alerts_topic="test.alerts")
PATIENT = "MRN-7731"


@dataclass
class Record:
    value: bytes | None
    offset: int


@dataclass
class FakeConsumer:
    """Serves ``batches`` from getmany, then waits; records what the feed asked of it."""

    batches: list[dict[TopicPartition, list[Record]]]
    fail_start: bool = False
    fail_after_batches: bool = False
    started: bool = False
    stopped: bool = False
    seeks: dict[TopicPartition, int] = field(default_factory=dict)
    rewound: list[TopicPartition] = field(default_factory=list)

    async def start(self) -> None:
        if self.fail_start:
            raise KafkaConnectionError("broker away")
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return {0, 1} if topic == SETTINGS.alerts_topic else None

    async def force_metadata_update(self) -> None:
        return None

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = partitions

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.rewound.append(tp)

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, Any]:
        if self.batches:
            return self.batches.pop(0)
        if self.fail_after_batches:
            raise KafkaConnectionError("connection lost")
        await asyncio.sleep(timeout_ms / 1000)
        return {}


def alerts() -> list[Alert]:
    _, found, _ = replay(
        [
            cbc("r1", 0, patient_id=PATIENT, neutrophils=0.8),
            cbc("r2", 24, patient_id=PATIENT, neutrophils=2.5),
        ]
    )
    return found


P0 = TopicPartition(SETTINGS.alerts_topic, 0)
P1 = TopicPartition(SETTINGS.alerts_topic, 1)


def factory(consumers: list[FakeConsumer]) -> Callable[[], FakeConsumer]:
    made = iter(consumers)
    return lambda: next(made)


async def wait_for(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + 5.0
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_reads_every_partition_from_the_beginning_and_folds_alerts() -> None:
    new, _resolved = alerts()
    consumer = FakeConsumer([{P1: [Record(new.model_dump_json().encode(), 0)]}])
    view = DashboardView()
    feed = AlertFeed(SETTINGS, view, consumer_factory=factory([consumer]))
    task = asyncio.create_task(feed.run())
    await wait_for(lambda: bool(view.episodes))
    assert consumer.assigned == [P0, P1]
    assert consumer.rewound == [P0, P1]
    assert view.episodes[new.dedup_key].patient_id == PATIENT
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert consumer.stopped


@pytest.mark.asyncio
async def test_retries_after_failures_and_resumes_where_it_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    new, resolved = alerts()
    away = FakeConsumer([], fail_start=True)
    first = FakeConsumer(
        [{P0: [Record(new.model_dump_json().encode(), 4)]}], fail_after_batches=True
    )
    second = FakeConsumer([{P0: [Record(resolved.model_dump_json().encode(), 5)]}])
    view = DashboardView()
    feed = AlertFeed(SETTINGS, view, consumer_factory=factory([away, first, second]), retry_s=0.01)
    caplog.set_level(logging.INFO, logger="monitor.dashboard")
    task = asyncio.create_task(feed.run())
    await wait_for(lambda: view.alerts_applied == 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert view.episodes == {}
    assert first.stopped
    assert second.stopped
    # The second consumer continued after offset 4 of partition 0 and re-read partition 1.
    assert second.seeks == {P0: 5}
    assert second.rewound == [P1]
    assert "KafkaConnectionError" in caplog.text
    assert PATIENT not in caplog.text


def test_undecodable_records_are_counted_and_skipped_without_logging_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    view = DashboardView()
    feed = AlertFeed(SETTINGS, view)
    caplog.set_level(logging.DEBUG)
    assert not feed.fold(b'{"patient_id": "MRN-7731", "event": "bogus"}')
    assert not feed.fold(b"not json")
    assert not feed.fold(None)
    assert feed.undecodable == 2
    assert view.alerts_applied == 0
    assert PATIENT not in caplog.text


def test_summaries_fold_into_the_watch_list_and_a_tombstone_removes_the_patient() -> None:
    now = datetime(2026, 11, 20, 8, tzinfo=UTC)
    dose = now - timedelta(days=9)
    watch = WatchList()
    feed = AlertFeed(SETTINGS, DashboardView(), watchlist=watch, clock=lambda: now)
    summary = PatientSummary(
        watch_id=make_watch_id(PATIENT, dose.timestamp()),
        patient_id=PATIENT,
        ward="oncology-4b",
        chemo_at=dose,
        counts={},
        fever=None,
        episodes=[],
        updated_at=now,
    )
    assert feed.fold_summary(PATIENT.encode(), summary.model_dump_json().encode())
    assert [s.patient_id for s in watch.watched(now)] == [PATIENT]
    assert not feed.fold_summary(PATIENT.encode(), b"{not json")
    assert not feed.fold_summary(b"\xff\xfe", summary.model_dump_json().encode())
    assert feed.undecodable == 2
    assert [s.patient_id for s in watch.watched(now)] == [PATIENT]
    assert feed.fold_summary(PATIENT.encode(), None)
    assert watch.watched(now) == []
