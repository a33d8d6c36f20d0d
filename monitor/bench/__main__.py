"""``make bench``: print the project's measured figures, all from one run on this machine.

``--quick`` uses smaller counts (for a smoke check); the figures in the README come from a
full run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from pathlib import Path

from monitor.bench.adapters import measure_adapters
from monitor.bench.alert_fold import measure_alert_folds
from monitor.bench.detector import cohort_values, measure_detector
from monitor.bench.hysteresis import measure_fatigue, noisy_values
from monitor.bench.passthrough import measure_passthrough
from monitor.bench.service import measure_latency, measure_memory, measure_throughput
from monitor.bench.tunables import measure_tunables
from monitor.local.broker import EmbeddedBroker


def main() -> None:
    parser = argparse.ArgumentParser(description="print the measured figures")
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke check")
    parser.add_argument("--detector-only", action="store_true")
    parser.add_argument(
        "--hysteresis-only",
        action="store_true",
        help="only the alert-fatigue figures on the noisy cohort (RCV hysteresis off and on)",
    )
    parser.add_argument(
        "--tunables",
        action="store_true",
        help="only the worker's throughput under each tunable (monitor.bench.tunables)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = 5_000 if args.quick else 30_000
    patients = 5_000 if args.quick else 100_000
    latency_seconds = 5.0 if args.quick else 20.0
    tunable_results = 2_000 if args.quick else 10_000

    if args.tunables:
        print_tunables(tunable_results)
        return
    noisy = noisy_values()
    for label, on in (("off", False), ("on", True)):
        report = measure_fatigue(noisy, hysteresis=on)
        print(
            f"noisy cohort ({report.results:,} results, {report.patients} patients), "
            f"hysteresis {label}: {report.describe()}",
            flush=True,
        )
    if args.hysteresis_only:
        return

    values = cohort_values()
    rate, alerts = measure_detector(values)
    print(
        f"detector: {rate:,.0f} results/s on one core "
        f"(validation + detection, {len(values):,} simulated results, {alerts:,} alerts)",
        flush=True,
    )
    for name, (per_second, size) in measure_adapters().items():
        print(f"parse {name}: {per_second:,.0f} messages/s (one CBC each, {size:,} bytes)")
    dashboard, bridge, alert_count = measure_alert_folds()
    print(
        f"alert topic folds, JSON decoding included ({alert_count:,} cohort alerts): dashboard "
        f"view {dashboard:,.0f} alerts/s, paging bridge with Alertmanager payloads "
        f"{bridge:,.0f} alerts/s",
        flush=True,
    )
    if args.detector_only:
        return
    with tempfile.TemporaryDirectory(prefix="cbc-bench-") as tmp, EmbeddedBroker() as broker:
        root = Path(tmp)
        ceiling = asyncio.run(measure_passthrough(broker.bootstrap, results, 4))
        print(
            f"bare aiokafka pass-through: {ceiling:,.0f} results/s ({results:,} messages)",
            flush=True,
        )
        throughput, published = asyncio.run(
            measure_throughput(broker.bootstrap, broker.url, root, results)
        )
        print(
            f"one worker end to end: {throughput:,.0f} results/s committed "
            f"({results:,} results, {published:,} alerts); ratio to pass-through "
            f"{throughput / ceiling:.2f}",
            flush=True,
        )
        floor, _ = asyncio.run(
            measure_throughput(broker.bootstrap, broker.url, root, results, floor=True)
        )
        print(
            f"framework floor, a minimal Faust agent with the worker's Faust settings and one "
            f"table write per message: {floor:,.0f} results/s ({results:,} results); ratio to "
            f"pass-through {floor / ceiling:.2f}; the worker is {throughput / floor:.2f}x it",
            flush=True,
        )
        p50, p99, achieved = asyncio.run(
            measure_latency(broker.bootstrap, broker.url, root, 500.0, latency_seconds)
        )
        print(
            f"result-to-alert latency at {achieved:,.0f} results/s: "
            f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms",
            flush=True,
        )
        per_patient = asyncio.run(measure_memory(broker.bootstrap, broker.url, root, patients))
        print(
            f"worker memory: {per_patient:,.0f} bytes per tracked patient "
            f"(resident set growth over {patients:,} patients, RocksDB store)",
            flush=True,
        )
    print_tunables(tunable_results)


def print_tunables(results: int) -> None:
    with tempfile.TemporaryDirectory(prefix="cbc-bench-") as tmp, EmbeddedBroker() as broker:
        base = None
        for variation, rate in measure_tunables(broker.bootstrap, broker.url, Path(tmp), results):
            base = base or rate
            print(
                f"tunable {variation.label}: {rate:,.0f} results/s ({rate / base:.2f}x the "
                f"defaults, {results:,} results)",
                flush=True,
            )


if __name__ == "__main__":
    main()
