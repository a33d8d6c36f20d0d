"""``cbc-monitor``: the command line."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from monitor.alert import Alert
from monitor.detector import Detector, DetectorSettings
from monitor.model import describe_validation_error, parse_result
from monitor.render import format_alert
from monitor.replay import replay_values


def _print_summary(alerts: Sequence[Alert], results: int, invalid: int) -> None:
    print()
    print(f"results: {results:,}   alerts: {len(alerts):,}   invalid (dead letters): {invalid:,}")
    by_kind = Counter((a.condition, a.event, a.severity) for a in alerts)
    for (condition, event, severity), count in sorted(by_kind.items()):
        print(f"  {condition:<16} {event:<9} {severity:<8} {count:>6,}")
    pages = sum(1 for a in alerts if a.page)
    print(f"pages (new or worsened at or above the paging grade): {pages:,}")


def cmd_demo_offline(args: argparse.Namespace) -> int:
    """Replay a simulated chemotherapy cohort through the detector, without Kafka."""
    from monitor.simulator import CohortSpec, simulate_cohort

    messages = simulate_cohort(CohortSpec(seed=args.seed, patients=args.patients, days=args.days))
    detector = Detector(DetectorSettings(ctcae_version=args.ctcae_version))
    report = replay_values(
        (m.value for m in messages),
        detector,
        on_alert=lambda alert: print(format_alert(alert)),
    )
    _print_summary(report.alerts, report.results, sum(report.invalid.values()))
    for reason, count in report.invalid.most_common(10):
        print(f"  dead letter x{count}: {reason}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Run a JSON-lines file of canonical results through the detector and print the alerts."""
    path = Path(args.file)
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        print(f"cbc-monitor: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    values: list[bytes] = []
    errors = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            parse_result(line)
        except ValidationError as exc:
            errors += 1
            print(f"{path}:{number}: {describe_validation_error(exc)}", file=sys.stderr)
            continue
        values.append(line)
    if errors:
        print(f"cbc-monitor: {errors} invalid line(s) in {path}; nothing replayed", file=sys.stderr)
        return 1
    detector = Detector(DetectorSettings(ctcae_version=args.ctcae_version))
    report = replay_values(values, detector, on_alert=lambda a: print(a.model_dump_json()))
    print(f"{report.results} results, {len(report.alerts)} alerts", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cbc-monitor",
        description="Streaming monitor for new or worsening cytopenias in blood counts.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the demo on a simulated chemotherapy cohort")
    demo.add_argument("--offline", action="store_true", help="replay without Kafka")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--patients", type=int, default=40)
    demo.add_argument("--days", type=int, default=42)
    demo.add_argument("--ctcae-version", choices=["5.0", "6.0"], default="5.0")
    demo.set_defaults(func=cmd_demo_offline)

    replay = sub.add_parser("replay", help="run a JSON-lines file through the detector offline")
    replay.add_argument("file")
    replay.add_argument("--ctcae-version", choices=["5.0", "6.0"], default="5.0")
    replay.set_defaults(func=cmd_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
