"""The worker's Faust wiring (``monitor.stream.app``): batched agents that stop the worker on a
failure after planning, the processor reading through the batch's pending states, and the
tunables reaching Faust."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mode import CrashingSupervisor

from monitor.settings import MonitorSettings
from monitor.stream import app as app_module
from monitor.stream.app import MonitorApp, faust_settings
from monitor.stream.batch import PendingStates
from monitor.stream.batcher import BatchFailedError
from monitor.stream.processor import Send


def test_every_feed_has_a_batched_agent_that_crashes_the_worker_on_failure(
    tmp_path: Path,
) -> None:
    monitor = MonitorApp(MonitorSettings(store="memory", data_dir=tmp_path))
    agents = {agent.name: agent for agent in monitor.app.agents.values()}
    assert {f"consume-{name}" for name in monitor.processor.feeds} <= set(agents)
    for name in monitor.processor.feeds:
        agent = agents[f"consume-{name}"]
        assert agent.supervisor_strategy is CrashingSupervisor
        assert agent.concurrency == 1


def test_the_processor_reads_and_writes_through_the_pending_states(tmp_path: Path) -> None:
    monitor = MonitorApp(MonitorSettings(store="memory", data_dir=tmp_path))
    assert isinstance(monitor.processor.table, PendingStates)
    assert monitor.processor.table.table is monitor.table
    assert monitor.batches.states is monitor.processor.table


def test_tunables_reach_faust(tmp_path: Path) -> None:
    settings = MonitorSettings(
        data_dir=tmp_path,
        producer_linger=0.005,
        producer_max_batch_bytes=1,
        broker_max_poll_records=200,
        stream_buffer_maxsize=1000,
    )
    faust = faust_settings(settings)
    assert faust["producer_linger"] == 0.005
    assert faust["producer_max_batch_size"] == 1
    assert faust["broker_max_poll_records"] == 200
    assert faust["stream_buffer_maxsize"] == 1000
    monitor = MonitorApp(settings.model_copy(update={"end_offsets_per_batch": True}))
    assert monitor.app.end_offsets_per_batch is True


class _Stream:
    """A stream that delivers ``events`` then ends, and records what the agent acknowledges."""

    def __init__(self, events: list[Any]) -> None:
        self._events = events
        self.acked: list[Any] = []

    def noack(self) -> _Stream:
        return self

    async def events(self) -> AsyncIterator[Any]:
        for event in self._events:
            yield event

    async def ack(self, event: Any) -> bool:
        self.acked.append(event)
        return True


def _event(offset: int, value: bytes) -> Any:
    message = SimpleNamespace(topic="lab.cbc.results", partition=0, offset=offset, timestamp=None)
    return SimpleNamespace(key=b"P-1", value=value, message=message)


@pytest.fixture
def stops(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[int]]:
    """The signals the worker sends itself and the exit statuses it asks for, recorded instead
    of carried out (the grace before exiting shortened to 10 ms)."""
    signals: list[int] = []
    exits: list[int] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: signals.append(sig))
    monkeypatch.setattr(os, "_exit", exits.append)
    monkeypatch.setattr(app_module, "FAIL_STOP_GRACE_S", 0.01)
    return signals, exits


@pytest.mark.asyncio
async def test_a_failed_batch_acknowledges_nothing_and_stops_the_worker(
    tmp_path: Path, stops: tuple[list[int], list[int]]
) -> None:
    monitor = MonitorApp(MonitorSettings(store="memory", data_dir=tmp_path))
    signals, exits = stops

    async def refused(send: Send) -> Awaitable[Any]:
        raise ConnectionError("the broker refused the record")

    monitor.batches.publish = refused
    stream = _Stream([_event(1, b"{not json"), _event(2, b"{not json either")])
    with pytest.raises(BatchFailedError) as raised:
        await monitor._consume(stream)  # type: ignore[arg-type]
    assert isinstance(raised.value.__cause__, ConnectionError)
    assert stream.acked == []
    assert signals == [signal.SIGTERM]
    assert monitor.health() == (503, {"status": "failed", "error_class": "ConnectionError"})
    await asyncio.sleep(0.05)
    assert exits == [app_module.FAIL_STOP_EXIT]


@pytest.mark.asyncio
async def test_a_handled_batch_is_acknowledged_in_order(tmp_path: Path) -> None:
    monitor = MonitorApp(MonitorSettings(store="memory", data_dir=tmp_path))
    sent: list[Send] = []

    async def publish(send: Send) -> Awaitable[Any]:
        sent.append(send)
        return asyncio.sleep(0)

    monitor.batches.publish = publish
    events = [_event(1, b"{not json"), _event(2, b"[]")]
    stream = _Stream(events)
    await monitor._consume(stream)  # type: ignore[arg-type]
    assert stream.acked == events
    assert [dict(s.headers)["dlq.source_offset"] for s in sent] == [b"1", b"2"]
    assert monitor.health() == (200, {"status": "alive"})


@pytest.mark.asyncio
async def test_a_batch_cancelled_from_inside_stops_the_worker(
    tmp_path: Path, stops: tuple[list[int], list[int]]
) -> None:
    monitor = MonitorApp(MonitorSettings(store="memory", data_dir=tmp_path))
    signals, _ = stops

    async def cancelled(send: Send) -> Awaitable[Any]:
        raise asyncio.CancelledError  # an awaited send cancelled, the agent not stopping

    monitor.batches.publish = cancelled
    stream = _Stream([_event(1, b"{not json")])
    with pytest.raises(BatchFailedError):
        await monitor._consume(stream)  # type: ignore[arg-type]
    assert stream.acked == []
    assert signals == [signal.SIGTERM]
    assert monitor.health()[0] == 503
