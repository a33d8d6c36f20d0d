"""The worker's agents handle one message at a time between them (``MonitorApp.handle``): a
result and a temperature of one patient, consumed together from their two topics, both end up
in the patient's state, and together they raise febrile neutropenia."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.clinical.history import load_state
from monitor.settings import MonitorSettings
from monitor.stream.app import MonitorApp
from monitor.stream.processor import Origin, Send

PATIENT = "MRN-0042"


def _result(collected: datetime) -> bytes:
    return json.dumps({
        "result_id": "R-1", "patient_id": PATIENT, "collected_at": collected.isoformat(),
        "sex": "female", "components": {"neutrophils": {"value": 0.4, "unit": "10*9/L"}},
    }).encode()  # fmt: skip


def _temperature(measured: datetime) -> bytes:
    return json.dumps({
        "observation_id": "T-1", "patient_id": PATIENT, "measured_at": measured.isoformat(),
        "temperature": 39.2, "unit": "Cel",
    }).encode()  # fmt: skip


@pytest.mark.asyncio
async def test_a_result_and_a_temperature_handled_together_both_reach_the_state(
    tmp_path: Path,
) -> None:
    settings = MonitorSettings(store="memory", data_dir=tmp_path)
    monitor = MonitorApp(settings)
    table: dict[bytes, bytes] = {}
    monitor.processor.table = table  # the processor takes any mapping of bytes to bytes
    published: list[Send] = []

    async def publish(send: Send) -> Awaitable[Any]:
        published.append(send)
        # The broker acknowledges a little later: the agent awaits this before its state write.
        return asyncio.ensure_future(asyncio.sleep(0.05))

    monitor._publish = publish  # type: ignore[method-assign]
    now = datetime.now(UTC)
    received = time.time()
    results = Origin(f"{settings.results_topic}.by-patient", 0, 1, received)
    vitals = Origin(f"{settings.vitals_topic}.by-patient", 0, 1, received)
    await asyncio.gather(
        monitor.handle(_result(now - timedelta(hours=1)), PATIENT.encode(), results),
        monitor.handle(_temperature(now - timedelta(minutes=30)), PATIENT.encode(), vitals),
    )
    state = load_state(table[PATIENT.encode()])
    assert [e.result_id for e in state.history] == ["R-1"]
    assert [t for _, t, _ in state.temperatures] == [39.2]
    alerts = [json.loads(s.value or b"") for s in published if s.topic == settings.alerts_topic]
    assert {(a["condition"], a["event"]) for a in alerts} == {
        ("neutropenia", "new"),
        ("febrile_neutropenia", "new"),
    }
