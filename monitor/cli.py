"""``cbc-monitor``: the command line.

About 400 lines: one small function per subcommand and the parser that names them all; each
command's work lives in the package it belongs to.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.adapters.errors import AdapterError
from monitor.adapters.hl7v2.encoding import split_file
from monitor.adapters.intake import Rejected, validate_message
from monitor.adapters.rows import Parsed
from monitor.clinical.alert import Alert, format_alert
from monitor.clinical.detector import Detector, DetectorSettings
from monitor.kafka.clients import bootstrap_of, follow, publish
from monitor.settings import MonitorSettings, load_settings
from monitor.stream.replay import replay_messages


def _security(settings: MonitorSettings) -> dict[str, Any]:
    """TLS/SASL arguments for the tool's Kafka clients; an unusable TLS file ends it (exit 2)."""
    from monitor.kafka.security import KafkaSecurityError, aiokafka_security_kwargs

    try:
        return aiokafka_security_kwargs(settings)
    except KafkaSecurityError as exc:
        print(f"cbc-monitor: invalid setting {exc}", file=sys.stderr)
        raise SystemExit(2) from None


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
    from monitor.local.demo import hysteresis_effect

    messages = _cohort(args)
    detector = Detector(
        DetectorSettings(ctcae_version=args.ctcae_version, hysteresis=not args.every_crossing)
    )
    report = replay_messages(
        messages, detector=detector, on_alert=lambda alert: print(format_alert(alert))
    )
    _print_summary(report.alerts, report.results, sum(report.invalid.values()))
    settings = MonitorSettings(ctcae_version=args.ctcae_version, hysteresis=not args.every_crossing)
    print(hysteresis_effect(messages, settings).describe())
    for reason, count in report.invalid.most_common(10):
        print(f"  dead letter x{count}: {reason}")
    return 0


@dataclass(frozen=True, slots=True)
class _FileMessage:
    topic: str  # the logical feed (replay.topic_names)
    value: bytes


# The logical feed of each ``replay --format``.
_REPLAY_FEED = {"json": "results", "hl7v2": "hl7v2", "fhir": "fhir"}


def rejection_lines(position: int, rejected: Rejected) -> list[str]:
    """How the message tester reports a dead letter: ``message N rejected (CODE): REASON``.

    This is the one place for row-level lines: a dead letter for rows left out of a message
    that was otherwise read (``rejected.rows``) gets one ``message N row K rejected (CODE):
    REASON`` line per row, K the row's position (``OBR 1, OBX 2``, ``entry[3].resource``,
    ``components.neutrophils``) and CODE its cause (``adapters.errors.ROW_CAUSES``).
    """
    if rejected.rows:
        return [
            f"message {position} row {row.where} rejected ({row.cause}): {row.reason}"
            for row in rejected.rows
        ]
    return [f"message {position} rejected ({rejected.code}): {rejected.reason}"]


def _cohort(args: argparse.Namespace) -> list[Any]:
    """The simulated messages ``args`` ask for: the main cohort, or with ``--noisy`` the noisy
    cohort (counts on grade boundaries with CVi and CVa noise, monitor.sim.noisy)."""
    if getattr(args, "noisy", False):
        from monitor.sim.noisy import NoisySpec, simulate_noisy_cohort

        return list(
            simulate_noisy_cohort(NoisySpec(seed=args.seed, patients=args.patients, days=args.days))
        )
    from monitor.sim.cohort import CohortSpec, simulate_cohort

    return list(simulate_cohort(CohortSpec(seed=args.seed, patients=args.patients, days=args.days)))


def cmd_replay(args: argparse.Namespace) -> int:
    """The offline message tester: run a file through the worker's parsing and the detector.

    Each alert the file would raise is printed as one JSON line on stdout; each rejected message
    (or row) on stderr. ``message N`` counts the messages of the file from 1 (HL7: one per MSH;
    FHIR: the document, or each JSON line; JSON: each non-blank line). MONITOR_* settings apply
    (default zone, local codes, CTCAE version, future tolerance). Exit 0 when every message was
    read, 1 when any message or row was rejected, 2 when the file cannot be read.
    """
    settings = load_settings()
    if args.ctcae_version is not None:
        settings = settings.model_copy(update={"ctcae_version": args.ctcae_version})
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"cbc-monitor: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    feed = _REPLAY_FEED[args.format]
    try:
        entries = split_messages(data, args.format)
    except AdapterError as exc:
        print(f"cbc-monitor: {path}: {exc}", file=sys.stderr)
        return 2
    messages = [_FileMessage(feed, value) for _, value in entries]
    rejections = 0

    def on_reject(position: int, rejected: Rejected) -> None:
        nonlocal rejections
        rejections += 1
        for line in rejection_lines(position, rejected):
            print(line, file=sys.stderr)

    report = replay_messages(
        messages, settings, on_alert=lambda a: print(a.model_dump_json()), on_reject=on_reject
    )
    print(
        f"{len(messages)} messages, {len(report.alerts)} alerts, {rejections} rejected",
        file=sys.stderr,
    )
    return 1 if rejections else 0


def cmd_worker(args: argparse.Namespace) -> int:
    """The production worker; configured by MONITOR_* environment variables."""
    from monitor.stream.worker import run_worker

    return run_worker(load_settings())


def cmd_broker(args: argparse.Namespace) -> int:
    """Run the embedded Tansu broker in the foreground (Ctrl-C stops it)."""
    from monitor.local.foreground import run_foreground

    print(f"embedded broker on 127.0.0.1:{args.port} (kafka://127.0.0.1:{args.port})", flush=True)
    return run_foreground(args.port)


def split_messages(data: bytes, fmt: str) -> list[tuple[str, bytes]]:
    """(position, message) pairs: HL7 v2 messages start at each MSH segment (``split_file``:
    MLLP frames, a BOM and any segment terminator are read); FHIR is one JSON document or JSON
    lines; the other formats are JSON lines. Raises AdapterError for an HL7 v2 file with no
    MSH segment."""
    if fmt == "hl7v2":
        return [(f"message {i}", m) for i, m in enumerate(split_file(data), start=1)]
    if fmt == "fhir":
        try:
            json.loads(data)
        except ValueError:
            pass
        else:
            return [("document", data)]
    return [
        (f"line {number}", line)
        for number, line in enumerate(data.splitlines(), start=1)
        if line.strip()
    ]


_FORMAT_TOPIC = {
    "json": "results_topic",
    "hl7v2": "hl7v2_topic",
    "fhir": "fhir_topic",
    "treatments": "treatments_topic",
    "vitals": "vitals_topic",
}


def cmd_send(args: argparse.Namespace) -> int:
    """Publish a file of messages to its feed's topic, keyed by patient; all or nothing."""
    from monitor.stream.processor import feeds_of

    settings = load_settings()
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"cbc-monitor: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    topic = getattr(settings, _FORMAT_TOPIC[args.format])
    feed = feeds_of(settings)[topic]
    messages: list[tuple[bytes | None, bytes]] = []
    errors = 0
    try:
        entries = split_messages(data, args.format)
    except AdapterError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        entries, errors = [], 1
    for position, message in entries:
        verdict = validate_message(message, settings.max_message_bytes, feed.parse)
        if isinstance(verdict, Rejected):
            errors += 1
            print(f"{path}: {position}: {verdict.reason}", file=sys.stderr)
            continue
        if isinstance(verdict, Parsed):
            for rejection in verdict.rejections:  # the worker will dead-letter these rows
                print(f"{path}: {position}: row {rejection.describe()}", file=sys.stderr)
            first = verdict.results[0] if verdict.results else None
        else:
            first = verdict
        messages.append((first.patient_id.encode() if first is not None else None, message))
    if errors:
        print(f"cbc-monitor: {errors} invalid entries in {path}; nothing sent", file=sys.stderr)
        return 1
    if not messages:
        print(f"cbc-monitor: no messages in {path}", file=sys.stderr)
        return 1
    bootstrap = bootstrap_of(settings.broker_url)
    sent = asyncio.run(publish(bootstrap, topic, messages, security=_security(settings)))
    print(f"sent {sent} messages to {topic}", file=sys.stderr)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Publish a simulated cohort (malformed messages, redeliveries and late results included)."""
    from monitor.local.demo import publish_messages

    settings = load_settings()
    messages = _cohort(args)
    if args.expected:
        expected = replay_messages(messages, settings)
        with Path(args.expected).open("w") as out:
            for alert in expected.alerts:
                out.write(alert.model_dump_json(exclude={"emitted_at"}) + "\n")
    bootstrap, security = bootstrap_of(settings.broker_url), _security(settings)
    sent = asyncio.run(publish_messages(bootstrap, settings, messages, args.rate, security))
    for feed, count in sorted(sent.items()):
        print(f"sent {count} {feed} messages", file=sys.stderr)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    """Follow the alert topic: one readable line per alert, or JSON lines with --json."""
    settings = load_settings()

    async def run() -> int:
        count = 0
        records = follow(
            bootstrap_of(settings.broker_url),
            [settings.alerts_topic],
            from_beginning=args.from_beginning,
            idle_timeout=args.idle_timeout,
            security=_security(settings),
        )
        async with contextlib.aclosing(records):
            async for record in records:
                if args.json:
                    print(record.value.decode(), flush=True)
                else:
                    print(format_alert(Alert.model_validate_json(record.value)), flush=True)
                count += 1
                if args.max and count >= args.max:
                    break
        return 0

    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.offline:
        return cmd_demo_offline(args)
    from monitor.local.demo import run_demo
    from monitor.sim.cohort import CohortSpec, ending_yesterday

    # The cohort ends yesterday, so today some patients are in their nadir window (the
    # dashboard's watch list judges the window against the real clock).
    spec = ending_yesterday(
        CohortSpec(seed=args.seed, patients=args.patients, days=args.days), datetime.now(UTC)
    )
    return run_demo(
        spec,
        workers=args.workers,
        rate=args.rate,
        quiet=args.quiet,
        keep_running=args.keep_running,
    )


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
    demo.add_argument(
        "--noisy", action="store_true", help="with --offline: the noisy cohort (monitor.sim.noisy)"
    )
    demo.add_argument(
        "--every-crossing",
        action="store_true",
        help="with --offline: hysteresis off (announce every grade crossing)",
    )
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--rate", type=float, default=150.0, help="messages per second")
    demo.add_argument("--quiet", action="store_true", help="print only the summary")
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="after the summary, keep the workers and their dashboard up until Ctrl-C",
    )
    demo.set_defaults(func=cmd_demo)

    replay = sub.add_parser(
        "replay",
        help="offline message tester: print the alerts a file would raise and what is rejected",
    )
    replay.add_argument("file")
    replay.add_argument(
        "--format",
        choices=sorted(_REPLAY_FEED),
        default="json",
        help="json: canonical results (JSON lines); hl7v2: ORU^R01 messages (one per MSH); "
        "fhir: a FHIR resource or bundle, or JSON lines of them",
    )
    replay.add_argument(
        "--ctcae-version", choices=["5.0", "6.0"], default=None, help="default: the setting"
    )
    replay.set_defaults(func=cmd_replay)

    worker = sub.add_parser("worker", help="run a worker (settings from MONITOR_* variables)")
    worker.set_defaults(func=cmd_worker)

    broker = sub.add_parser("broker", help="run the embedded Kafka-compatible broker")
    broker.add_argument("--port", type=int, default=9092)
    broker.set_defaults(func=cmd_broker)

    send = sub.add_parser("send", help="publish a file of messages to its feed's topic")
    send.add_argument("file")
    send.add_argument(
        "--format",
        choices=sorted(_FORMAT_TOPIC),
        default="json",
        help="json: canonical results (JSON lines); hl7v2: ORU^R01 messages; fhir: a FHIR "
        "resource or bundle, or JSON lines of them; treatments, vitals: JSON lines",
    )
    send.set_defaults(func=cmd_send)

    simulate = sub.add_parser("simulate", help="publish a simulated chemotherapy cohort")
    simulate.add_argument("--seed", type=int, default=7)
    simulate.add_argument("--patients", type=int, default=40)
    simulate.add_argument("--days", type=int, default=42)
    simulate.add_argument("--rate", type=float, default=None, help="messages per second")
    simulate.add_argument("--expected", help="also write the alerts it should produce here")
    simulate.add_argument(
        "--noisy",
        action="store_true",
        help="the noisy cohort: counts on grade boundaries with biological and analytical noise",
    )
    simulate.set_defaults(func=cmd_simulate)

    tail = sub.add_parser("tail", help="follow the alert topic")
    tail.add_argument("--json", action="store_true", help="JSON lines instead of text")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--max", type=int, default=0, help="stop after this many alerts")
    tail.add_argument("--idle-timeout", type=float, default=None, help="stop after S idle seconds")
    tail.set_defaults(func=cmd_tail)

    from monitor.bridge.command import add_bridge_parser  # bridge alertmanager|pagerduty

    add_bridge_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
