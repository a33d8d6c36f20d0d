"""Baseline throughput: a bare aiokafka consume -> JSON decode/encode -> produce -> commit loop.

This is the ceiling the Faust worker is compared with (DESIGN.md, "Where the time goes"): the
same broker, the same payload size, the same at-least-once pattern (offsets are committed only
after the produced copies are acknowledged), but no stream framework in between.

Run it against a fresh embedded broker with
``python -m monitor.bench.passthrough [--messages N] [--partitions P]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from monitor.kafka.topics import create_topics
from monitor.local.broker import EmbeddedBroker

__all__ = ["SAMPLE_RESULT", "main", "measure_passthrough"]

#: A canonical CBC result of realistic size (about 500 bytes of JSON).
SAMPLE_RESULT: bytes = json.dumps(
    {
        "result_id": "LAB-2024-000123456-CBC",
        "patient_id": "MRN-00012345",
        "collected_at": "2024-03-14T07:42:00+00:00",
        "status": "final",
        "sex": "female",
        "components": {
            "hemoglobin": {"value": 9.8, "unit": "g/dL", "lln": 12.0},
            "hematocrit": {"value": 29.5, "unit": "%", "lln": 36.0},
            "wbc": {"value": 2.9, "unit": "10*9/L", "lln": 4.0},
            "neutrophils": {"value": 1.2, "unit": "10*9/L", "lln": 1.8},
            "lymphocytes": {"value": 0.9, "unit": "10*9/L", "lln": 1.0},
            "platelets": {"value": 88.0, "unit": "10*9/L", "lln": 150.0},
        },
        "context": {"ward": "ONC-4B", "last_chemo_at": "2024-03-04T10:00:00+00:00"},
    },
    separators=(",", ":"),
).encode()

_PATIENTS = 1_000  # distinct keys, so every partition gets traffic
_STALL_SECONDS = 30.0  # give up when no message arrives for this long


async def _prefill(bootstrap: str, topic: str, messages: int, payload: bytes) -> None:
    """Write ``messages`` copies of ``payload`` keyed by patient, and wait for every ack."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        chunk = 5_000
        for start in range(0, messages, chunk):
            acks = [
                await producer.send(topic, payload, key=f"MRN-{i % _PATIENTS:08d}".encode())
                for i in range(start, min(start + chunk, messages))
            ]
            await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def measure_passthrough(
    bootstrap: str,
    messages: int = 50_000,
    partitions: int = 4,
    payload: bytes = SAMPLE_RESULT,
) -> float:
    """Return messages/s of a consume-decode-encode-produce-commit loop on fresh topics.

    Pre-fills a new input topic with ``messages`` copies of ``payload`` (keyed by patient over
    ``partitions`` partitions), then consumes it in a new consumer group, decodes and re-encodes
    each value as JSON, produces it to a new output topic, and commits the input offsets once
    the batch's produced copies are acknowledged. The clock runs from the first consumed message
    to the acknowledgement of the last produced one.

    :raises TimeoutError: if no message arrives for 30 s before all have passed through.
    """
    if messages < 1:
        raise ValueError("messages must be >= 1")
    run = uuid.uuid4().hex[:8]
    source, sink = f"bench.passthrough.{run}.in", f"bench.passthrough.{run}.out"
    await create_topics(bootstrap, {source: partitions, sink: partitions})
    await _prefill(bootstrap, source, messages, payload)

    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"bench.passthrough.{run}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        done = 0
        first: float | None = None
        last_progress = time.monotonic()
        while done < messages:
            batches = await consumer.getmany(timeout_ms=1_000, max_records=2_000)
            if not batches:
                if time.monotonic() - last_progress > _STALL_SECONDS:
                    raise TimeoutError(f"passthrough stalled after {done}/{messages} messages")
                continue
            if first is None:
                first = time.perf_counter()
            acks = []
            for records in batches.values():
                for record in records:
                    value = json.dumps(json.loads(record.value or b"null")).encode()
                    acks.append(await producer.send(sink, value, key=record.key))
            await asyncio.gather(*acks)
            await consumer.commit()
            done += len(acks)
            last_progress = time.monotonic()
        assert first is not None
        return done / (time.perf_counter() - first)
    finally:
        await producer.stop()
        await consumer.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Start an embedded broker, measure the pass-through rate, and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with EmbeddedBroker() as broker:
        rate = asyncio.run(measure_passthrough(broker.bootstrap, args.messages, args.partitions))
    print(
        f"bare aiokafka pass-through: {rate:,.0f} messages/s "
        f"({args.messages:,} messages of {len(SAMPLE_RESULT)} bytes, {args.partitions} partitions)"
    )


if __name__ == "__main__":
    main()
