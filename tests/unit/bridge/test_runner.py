"""The bridge's loop without Kafka: where the rebuild starts collecting, the group's follow loop
(start-up commits, records already synced, poison records), naive datetimes, and a keep-alive
that dies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition

from monitor.bridge.alertmanager import AlertmanagerOutput
from monitor.bridge.episodes import Change, EpisodeBook
from monitor.bridge.offsets import start_offsets
from monitor.bridge.options import BridgeOptions
from monitor.bridge.pseudonym import Pseudonymizer
from monitor.bridge.runner import Bridge, BridgeFailedError, decode
from monitor.clinical.alert import Alert
from monitor.settings import MonitorSettings
from tests.unit.bridge.alerts import PATIENT, make_alert

TOPIC = "unit.alerts"
KEY = b"unit-test-pseudonym-key-0123456789"
P0, P1, P2 = (TopicPartition(TOPIC, n) for n in range(3))


def naive(alert: Alert) -> Alert:
    return alert.model_copy(
        update={
            "collected_at": alert.collected_at.replace(tzinfo=None),
            "emitted_at": alert.emitted_at.replace(tzinfo=None),
        }
    )


@dataclass
class Record:
    partition: int
    offset: int
    value: bytes | None
    topic: str = TOPIC


def record(partition: int, offset: int, alert: Alert | None) -> Record:
    value = alert.model_dump_json().encode() if alert is not None else b"{not json"
    return Record(partition, offset, value)


class FakeConsumer:
    """Hands out ``batches`` one per ``getmany``, then stops the bridge; records commits."""

    def __init__(
        self,
        bridge: Bridge,
        batches: Sequence[dict[TopicPartition, list[Record]]],
        assigned: set[TopicPartition],
        committed: dict[TopicPartition, int] | None = None,
    ) -> None:
        self.bridge = bridge
        self.batches = list(batches)
        self.assigned = assigned
        self.offsets: dict[TopicPartition, int] = dict(committed or {})
        self.commits: list[tuple[int, int]] = []

    async def getmany(self, timeout_ms: int) -> dict[TopicPartition, list[Record]]:
        await asyncio.sleep(0)
        if self.batches:
            return self.batches.pop(0)
        self.bridge.stop()
        return {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.offsets.get(tp)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self.commits.append((tp.partition, offset))
            self.offsets[tp] = offset


@dataclass
class FakePoster:
    bodies: list[Any] = field(default_factory=list)

    async def post(self, body: Any) -> None:
        self.bodies.append(body)


class Recording:
    """An output posting one body (the alert id) per change; it fails on ``poison`` ids."""

    name = "alertmanager"

    def __init__(self, poison: set[str] | None = None, keepalive_error: bool = False) -> None:
        self.poison = poison or set()
        self.keepalive_error = keepalive_error

    def on_change(self, change: Change, now: datetime) -> list[str]:
        if change.alert.alert_id in self.poison:
            raise RuntimeError(f"cannot map {change.alert.patient_id}")
        return [change.alert.alert_id]

    def keepalive(self, book: EpisodeBook, now: datetime) -> list[str]:
        if self.keepalive_error:
            raise ValueError(f"broken for {PATIENT}")
        return []

    def startup(
        self,
        book: EpisodeBook,
        since_commit: Sequence[Change],
        now: datetime,
        first_run: bool = False,
    ) -> list[str]:
        return []


def make_bridge(output: Any, resend_interval: float = 60) -> Bridge:
    return Bridge(
        MonitorSettings(alerts_topic=TOPIC),
        output,
        BridgeOptions(url="http://127.0.0.1:9/", group="g", resend_interval=resend_interval),
    )


def skipped(bridge: Bridge) -> float | None:
    return bridge.metrics.value("monitor_bridge_records_skipped_total")


# --------------------------------------------------------------------------------------------
# Where the rebuild starts collecting the changes the start-up sync posts


def test_a_partition_never_committed_is_collected_from_its_beginning() -> None:
    """The group committed partition 0; partition 1 never had a record it read, so nothing from
    it was ever posted: its changes must all go into the start-up sync."""
    assert start_offsets({P0: 7, P1: None, P2: 0}) == {P0: 7, P1: 0, P2: 0}


def test_a_group_without_any_commit_collects_nothing_it_is_a_first_run() -> None:
    assert start_offsets({P0: None, P1: None}) == {P0: None, P1: None}


# --------------------------------------------------------------------------------------------
# Naive datetimes


def test_naive_datetimes_are_read_as_utc() -> None:
    alert = make_alert("new", 3)
    decoded = decode(record(0, 0, naive(alert)))
    assert decoded is not None
    assert decoded.collected_at == alert.collected_at
    assert decoded.emitted_at == alert.emitted_at
    assert decoded.collected_at.tzinfo is not None
    aware = decode(record(0, 1, alert))
    assert aware == alert  # an aware alert is left as it is


def test_naive_component_times_are_read_as_utc() -> None:
    line = {
        "analyte": "neutrophils",
        "value": 0.4,
        "unit": "10^9/L",
        "grade": 4,
        "lln": 1.8,
        "lln_source": "lab",
        "result_id": "LAB-1",
        "collected_at": "2026-11-01T08:00:00",
    }
    alert = make_alert("new", 3, condition="pancytopenia")
    raw = alert.model_dump(mode="json") | {"components": {"neutrophils": line}}
    decoded = Alert.model_validate(raw)
    assert decoded.components is not None
    assert decoded.components["neutrophils"].collected_at == datetime(2026, 11, 1, 8, tzinfo=UTC)


def test_a_naive_alert_after_an_aware_one_maps_without_error() -> None:
    """A naive worsening of an episode opened with aware times made EpisodeBook compare naive
    with aware datetimes (TypeError): a crash on every restart, on the same record."""
    book = EpisodeBook()
    output = AlertmanagerOutput(Pseudonymizer(KEY), timedelta(seconds=60))
    now = datetime(2026, 11, 20, tzinfo=UTC)
    alerts = [
        make_alert("new", 2),
        naive(make_alert("worsened", 3, 2, hours=24)),
        make_alert("improved", 2, 3, hours=48),
    ]
    for offset, alert in enumerate(alerts):
        decoded = decode(record(0, offset, alert))
        assert decoded is not None
        change = book.apply(decoded)
        assert change is not None
        assert output.on_change(change, now)
    assert output.keepalive(book, now)


# --------------------------------------------------------------------------------------------
# The follow loop


@pytest.mark.asyncio
async def test_start_up_targets_are_committed_on_every_assigned_partition() -> None:
    """Empty partitions included, so every partition has a commit from then on; a commit
    already further is left alone, and records below the targets post nothing."""
    bridge = make_bridge(Recording())
    synced = make_alert("new", 3)
    assert bridge.book.apply(synced) is not None  # the rebuild applied it (offset 4 of P0)
    consumer = FakeConsumer(
        bridge,
        [{P0: [record(0, 4, synced)]}],  # the group starts below the target: passed over
        assigned={P0, P1, P2},
        committed={P0: 4, P2: 9},
    )
    poster = FakePoster()
    await asyncio.wait_for(bridge._follow(consumer, poster, {P0: 5, P1: 0, P2: 3}), 5)
    assert sorted(consumer.commits) == [(0, 5), (1, 0)]
    assert consumer.offsets == {P0: 5, P1: 0, P2: 9}
    assert poster.bodies == []
    assert bridge.metrics.value("monitor_bridge_alerts_consumed_total") == 0


@pytest.mark.asyncio
async def test_a_partition_assigned_later_is_committed_then() -> None:
    bridge = make_bridge(Recording())
    consumer = FakeConsumer(bridge, [{}, {}], assigned=set())
    poster = FakePoster()

    async def assign_soon() -> None:
        await asyncio.sleep(0)
        consumer.assigned = {P0, P1}

    task = asyncio.create_task(assign_soon())
    await asyncio.wait_for(bridge._follow(consumer, poster, {P0: 2, P1: 0}), 5)
    await task
    assert sorted(consumer.commits) == [(0, 2), (1, 0)]


@pytest.mark.asyncio
async def test_a_record_that_fails_to_apply_is_skipped_counted_and_committed_past(
    caplog: pytest.LogCaptureFixture,
) -> None:
    poison = make_alert("new", 3, condition="anemia")
    good = make_alert("new", 3, condition="neutropenia")
    bridge = make_bridge(Recording(poison={poison.alert_id}))
    consumer = FakeConsumer(
        bridge,
        [{P0: [record(0, 0, None), record(0, 1, poison), record(0, 2, good)]}],
        assigned={P0},
        committed={P0: 0},
    )
    poster = FakePoster()
    assert skipped(bridge) == 0
    with caplog.at_level(logging.INFO, logger="monitor.bridge"):
        await asyncio.wait_for(bridge._follow(consumer, poster, {P0: 0}), 5)
    assert poster.bodies == [good.alert_id]
    assert consumer.offsets[P0] == 3  # committed past the poison and the non-alert
    assert skipped(bridge) == 2  # the undecodable record and the poison
    assert "partition 0, offset 1" in caplog.text
    assert "RuntimeError" in caplog.text
    assert PATIENT not in caplog.text


@pytest.mark.asyncio
async def test_a_naive_alert_in_the_group_is_posted_not_a_crash() -> None:
    output = AlertmanagerOutput(Pseudonymizer(KEY), timedelta(seconds=60))
    bridge = make_bridge(output)
    opened, worse = make_alert("new", 2), naive(make_alert("worsened", 3, 2, hours=24))
    consumer = FakeConsumer(
        bridge, [{P0: [record(0, 0, opened), record(0, 1, worse)]}], assigned={P0}
    )
    poster = FakePoster()
    await asyncio.wait_for(bridge._follow(consumer, poster, {P0: 0}), 5)
    assert len(poster.bodies) == 2
    assert consumer.offsets[P0] == 2
    assert skipped(bridge) == 0


# --------------------------------------------------------------------------------------------
# The keep-alive


@pytest.mark.asyncio
async def test_a_keepalive_that_dies_stops_the_bridge_with_an_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Otherwise open alerts would silently expire at Alertmanager while /healthz says ok."""
    bridge = make_bridge(Recording(keepalive_error=True), resend_interval=0.01)

    class Idle(FakeConsumer):
        async def getmany(self, timeout_ms: int) -> dict[TopicPartition, list[Record]]:
            await asyncio.sleep(0.01)
            return {}

    async def run_without_kafka(poster: Any) -> None:
        """The real keep-alive and follow loop; only Kafka is faked (it never stops alone)."""
        bridge.start_keepalive(poster)
        await bridge._follow(Idle(bridge, [], assigned=set()), poster, {})

    monkeypatch.setattr(bridge, "_run", run_without_kafka)
    with (
        caplog.at_level(logging.INFO, logger="monitor.bridge"),
        pytest.raises(BridgeFailedError, match=r"keep-alive failed \(ValueError\)"),
    ):
        await asyncio.wait_for(bridge.run(), 5)
    assert isinstance(bridge.failure, ValueError)
    assert "keep-alive failed (ValueError)" in caplog.text
    assert PATIENT not in caplog.text


@pytest.mark.asyncio
async def test_a_keepalive_cancelled_at_stop_is_no_failure() -> None:
    bridge = make_bridge(Recording(), resend_interval=60)
    task = bridge.start_keepalive(FakePoster())  # type: ignore[arg-type]
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait([task])
    bridge.stop()
    await asyncio.sleep(0)
    assert bridge.failure is None
