"""No patient data in a worker's log, even at debug level (HIPAA Safe Harbor identifiers)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from monitor.kafka.clients import publish
from monitor.local.broker import EmbeddedBroker
from monitor.local.processes import WorkerProcess
from tests.builders import cbc
from tests.integration.isolation import isolated_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PATIENT = "MRN-PRIVATE-90417"


def test_debug_log_holds_no_patient_identifier(
    broker: EmbeddedBroker, unique_name: str, tmp_path: Path
) -> None:
    topics = {**isolated_env(unique_name), "MONITOR_LOG_LEVEL": "debug"}
    worker = WorkerProcess("private", broker.url, tmp_path / "data", topics, log_dir=tmp_path)
    worker.start()
    try:
        worker.wait_ready()
        good = [cbc(f"r{i}", 24 * i, patient_id=PATIENT, neutrophils=0.3 + i) for i in range(3)]
        broken = json.dumps({"patient_id": PATIENT, "result_id": "r9"})[:-5].encode()
        messages = [(PATIENT.encode(), r.model_dump_json().encode()) for r in good]
        messages.append((PATIENT.encode(), broken))
        asyncio.run(publish(broker.bootstrap, topics["MONITOR_RESULTS_TOPIC"], messages))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _, metrics = worker.get("/metrics")
            if "monitor_results_consumed_total 4.0" in metrics:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the worker did not consume the four messages")
    finally:
        worker.stop()
    log = worker.log_path.read_text()
    assert "DEBUG" in log  # the level really was debug
    assert PATIENT not in log
    assert PATIENT not in metrics
