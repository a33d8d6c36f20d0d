"""The worker's Faust wiring (``monitor.stream.app``): batched agents that stop the worker on a
failure after planning, the processor reading through the batch's pending states, and the
tunables reaching Faust."""

from __future__ import annotations

from pathlib import Path

from mode import CrashingSupervisor

from monitor.settings import MonitorSettings
from monitor.stream.app import MonitorApp, faust_settings
from monitor.stream.batch import PendingStates


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
    assert monitor.processor.table.table is monitor.table.data  # the store, read once a key
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
