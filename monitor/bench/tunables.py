"""``python -m monitor.bench --tunables``: the worker's throughput under each tunable.

One worker drains the same pre-filled topic (``monitor.bench.service.measure_throughput``) once
with the defaults and once per variation below, one setting changed at a time, all on one
embedded broker in one run (``make bench`` ends with it); each line gives results/s and the
ratio to the first run with the defaults, and a last run with the defaults shows the noise. What
was kept and why is in the README ("Figures").
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from monitor.bench.service import measure_throughput


@dataclass(frozen=True, slots=True)
class Variation:
    label: str
    settings: dict[str, str]


# Each a MONITOR_* setting (monitor.settings; README, "Configuration").
VARIATIONS: tuple[Variation, ...] = (
    Variation("defaults", {}),
    Variation("producer linger 0 ms", {"MONITOR_PRODUCER_LINGER": "0"}),
    Variation("producer linger 5 ms", {"MONITOR_PRODUCER_LINGER": "0.005"}),
    Variation(
        "producer batch 1 byte (a record per batch)", {"MONITOR_PRODUCER_MAX_BATCH_BYTES": "1"}
    ),
    Variation(
        "producer batch 16 KiB (Faust's default)", {"MONITOR_PRODUCER_MAX_BATCH_BYTES": "16384"}
    ),
    Variation("agent batch at most 100", {"MONITOR_BATCH_MAX_MESSAGES": "100"}),
    Variation("agent batch at most 2000", {"MONITOR_BATCH_MAX_MESSAGES": "2000"}),
    Variation("agent batch growth 0 ms (what arrived, at once)", {"MONITOR_BATCH_LINGER_MS": "0"}),
    Variation("agent batch growth at most 200 ms", {"MONITOR_BATCH_LINGER_MS": "200"}),
    Variation("agent batch of 1 (a message at a time)", {"MONITOR_BATCH_MAX_MESSAGES": "1"}),
    Variation("max poll records 100", {"MONITOR_BROKER_MAX_POLL_RECORDS": "100"}),
    Variation("max poll records 1000", {"MONITOR_BROKER_MAX_POLL_RECORDS": "1000"}),
    Variation("stream buffer 1024", {"MONITOR_STREAM_BUFFER_MAXSIZE": "1024"}),
    Variation("stream buffer 16384", {"MONITOR_STREAM_BUFFER_MAXSIZE": "16384"}),
    Variation("fetch wait 100 ms", {"MONITOR_FETCH_MAX_WAIT_MS": "100"}),
    Variation("RocksDB key index 10,000", {"MONITOR_TABLE_KEY_INDEX_SIZE": "10000"}),
    Variation("in-memory store (no RocksDB)", {"MONITOR_STORE": "memory"}),
    # The defaults once more: the spread between the two runs is the noise of the others.
    Variation("defaults, again", {}),
)


def measure_tunables(
    bootstrap: str, url: str, root: Path, count: int
) -> Iterator[tuple[Variation, float]]:
    """Yield each variation with the worker's results/s (``count`` results each)."""
    for number, variation in enumerate(VARIATIONS):
        rate, _ = asyncio.run(
            measure_throughput(
                bootstrap, url, root, count, settings=variation.settings, tag=f"tunable{number}"
            )
        )
        yield variation, rate
