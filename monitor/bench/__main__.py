"""``make bench``: print the project's measured figures."""

from __future__ import annotations

from monitor.bench.detector import cohort_values, measure_detector


def main() -> None:
    values = cohort_values()
    rate, alerts = measure_detector(values)
    print(
        f"detector: {rate:,.0f} results/s on one core "
        f"(validation + detection, {len(values):,} simulated results, {alerts:,} alerts)"
    )


if __name__ == "__main__":
    main()
