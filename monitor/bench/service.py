"""End-to-end figures of the worker on the embedded broker (``make bench``).

* throughput of one worker: results per second from the input topic to committed offsets,
  alerts published; and the bare aiokafka pass-through on the same broker as the ceiling;
* result-to-alert latency at a steady 500 results per second (from each alert's source
  timestamp header to the alert message's own timestamp);
* worker memory per tracked patient with 100,000 patients (resident set growth / patients).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from monitor.bench.floor import FloorProcess
from monitor.kafka.clients import follow, header, publish
from monitor.kafka.end_offsets import record_end_offsets
from monitor.kafka.topics import create_topics
from monitor.local.demo import percentile
from monitor.local.processes import WorkerProcess

PARTITIONS = 4


@dataclass
class ServiceFigures:
    throughput: float  # results/s, one worker, committed
    alerts: int
    latency_p50: float  # seconds
    latency_p99: float
    latency_rate: float  # results/s actually sent during the latency run
    bytes_per_patient: float
    patients: int


def synthetic_results(
    count: int, patients: int, seed_hours: int = 0
) -> Iterator[tuple[bytes, bytes]]:
    """Full CBC panels cycling over ``patients``; about one in ten falls or recovers."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(count):
        patient = f"BENCH-{i % patients:06d}"
        visit = i // patients
        low = (visit + i) % 10 == 0
        body = {
            "result_id": f"B-{i:08d}",
            "patient_id": patient,
            "collected_at": (start + timedelta(hours=seed_hours + visit * 6)).isoformat(),
            "status": "final",
            "sex": "female" if i % 2 else "male",
            "components": {
                "hemoglobin": {"value": 13.5, "unit": "g/dL"},
                "wbc": {"value": 2.5 if low else 6.2, "unit": "10*9/L"},
                "neutrophils": {"value": 0.8 if low else 3.9, "unit": "10*9/L"},
                "lymphocytes": {"value": 1.6, "unit": "10*9/L"},
                "platelets": {"value": 240, "unit": "10*9/L"},
                "mcv": {"value": 89, "unit": "fL"},
            },
            "context": {"ward": "oncology-4b", "last_chemo_at": "2025-12-25T00:00:00Z"},
        }
        yield patient.encode(), json.dumps(body, separators=(",", ":")).encode()


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def _committed(bootstrap: str, group: str, topic: str) -> int:
    """Offsets the worker's group has committed on ``topic``, summed over partitions.

    Asked through a consumer of that group (without joining it): the embedded broker cannot
    answer the admin client's ListConsumerGroupOffsets.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        total = 0
        for partition in range(PARTITIONS):
            offset = await consumer.committed(TopicPartition(topic, partition))
            total += offset or 0
    finally:
        await consumer.stop()
    return total


async def _end_offsets(bootstrap: str, topic: str) -> int:
    """Records on ``topic`` (the embedded broker's end offsets corrected per record)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await record_end_offsets(consumer, await consumer.end_offsets(tps))
    finally:
        await consumer.stop()
    return sum(ends.values())


def _names(tag: str) -> dict[str, str]:
    return {
        "MONITOR_APP_ID": f"bench-{tag}",
        "MONITOR_RESULTS_TOPIC": f"bench.{tag}.results",
        "MONITOR_ALERTS_TOPIC": f"bench.{tag}.alerts",
        "MONITOR_DLQ_TOPIC": f"bench.{tag}.dlq",
        "MONITOR_PARTITIONS": str(PARTITIONS),
        "MONITOR_LOG_LEVEL": "warning",
    }


async def _prepare(bootstrap: str, names: dict[str, str]) -> None:
    await create_topics(
        bootstrap,
        {
            names["MONITOR_RESULTS_TOPIC"]: PARTITIONS,
            names["MONITOR_RESULTS_TOPIC"] + ".by-patient": PARTITIONS,
            names["MONITOR_ALERTS_TOPIC"]: PARTITIONS,
            names["MONITOR_DLQ_TOPIC"]: PARTITIONS,
        },
    )


async def _wait_committed(bootstrap: str, names: dict[str, str], total: int, limit: float) -> float:
    """Seconds (monotonic clock) when the group's committed offsets reached ``total``."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        done = await _committed(bootstrap, names["MONITOR_APP_ID"], names["MONITOR_RESULTS_TOPIC"])
        if done >= total:
            return time.monotonic()
        await asyncio.sleep(0.2)
    raise TimeoutError(f"only part of {total} results committed after {limit:.0f}s")


async def measure_throughput(
    bootstrap: str,
    url: str,
    root: Path,
    count: int,
    floor: bool = False,
    settings: Mapping[str, str] | None = None,
    tag: str | None = None,
) -> tuple[float, int]:
    """One worker drains a pre-filled topic; results/s from its first fetch to the last commit.

    ``floor``: the minimal Faust agent of ``monitor.bench.floor`` instead of the worker (same
    settings, same messages, one table write per message; it publishes no alert).
    ``settings``: ``MONITOR_*`` variables for the worker; ``tag`` names its topics and group
    (a new tag per run: a run waits for ``count`` committed offsets of its own).
    """
    tag = tag or ("floor" if floor else "throughput")
    names = {**_names(tag), **(settings or {})}
    await _prepare(bootstrap, names)
    await publish(bootstrap, names["MONITOR_RESULTS_TOPIC"], synthetic_results(count, 2_000))
    kind = FloorProcess if floor else WorkerProcess
    worker = kind(f"bench-{tag}", url, root / tag, env=names, log_dir=root)
    worker.start()
    try:
        await asyncio.to_thread(worker.wait_ready)
        # Processing starts as soon as the worker is ready; that is our zero.
        started = time.monotonic()
        finished = await _wait_committed(bootstrap, names, count, 600)
        alerts = await _end_offsets(bootstrap, names["MONITOR_ALERTS_TOPIC"])
    finally:
        worker.stop()
    return count / (finished - started), alerts


async def measure_latency(
    bootstrap: str, url: str, root: Path, rate: float, seconds: float
) -> tuple[float, float, float]:
    """p50/p99 result-to-alert latency while results arrive steadily at ``rate`` per second."""
    names = _names("latency")
    await _prepare(bootstrap, names)
    worker = WorkerProcess("bench-latency", url, root / "latency", names, log_dir=root)
    worker.start()
    latencies: list[float] = []
    try:
        await asyncio.to_thread(worker.wait_ready)
        count = int(rate * seconds)

        async def collect() -> None:
            records = follow(bootstrap, [names["MONITOR_ALERTS_TOPIC"]], idle_timeout=5)
            async with contextlib.aclosing(records):
                async for record in records:
                    source = header(record, "monitor.source_timestamp")
                    if source is not None:
                        latencies.append(record.timestamp / 1000 - float(source))

        collector = asyncio.create_task(collect())
        sent_at = time.monotonic()
        await publish(
            bootstrap, names["MONITOR_RESULTS_TOPIC"], synthetic_results(count, 500), rate=rate
        )
        achieved = count / (time.monotonic() - sent_at)
        await collector
    finally:
        worker.stop()
    return percentile(latencies, 50), percentile(latencies, 99), achieved


async def measure_memory(bootstrap: str, url: str, root: Path, patients: int) -> float:
    """Resident-set growth of one worker per patient, after it has state for ``patients``."""
    names = _names("memory")
    await _prepare(bootstrap, names)
    worker = WorkerProcess("bench-memory", url, root / "memory", names, log_dir=root)
    worker.start()
    try:
        await asyncio.to_thread(worker.wait_ready)
        assert worker.proc is not None
        await asyncio.sleep(2)
        before = _rss_bytes(worker.proc.pid)
        await publish(
            bootstrap, names["MONITOR_RESULTS_TOPIC"], synthetic_results(patients, patients)
        )
        await _wait_committed(bootstrap, names, patients, 900)
        await asyncio.sleep(3)
        after = _rss_bytes(worker.proc.pid)
        _, body = worker.get("/metrics")
        tracked = next(
            float(line.split()[-1])
            for line in str(body).splitlines()
            if line.startswith("monitor_patients_tracked ")
        )
        if int(tracked) != patients:
            raise RuntimeError(f"worker tracks {tracked:.0f} patients, expected {patients}")
    finally:
        worker.stop()
    return (after - before) / patients
