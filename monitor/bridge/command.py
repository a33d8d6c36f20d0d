"""``cbc-monitor bridge alertmanager|pagerduty``: argument parsing and start-up checks."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiokafka.errors import KafkaError

from monitor.bridge.metrics import DEFAULT_METRICS_PORT
from monitor.bridge.pseudonym import Pseudonymizer, PseudonymKeyError, load_pseudonym_key
from monitor.settings import load_settings

ROUTING_KEY_ENV = "MONITOR_PAGERDUTY_ROUTING_KEY"
AM_ALERTS_PATH = "/api/v2/alerts"
DEFAULT_GROUPS = {
    "alertmanager": "cbc-monitor-bridge",
    "pagerduty": "cbc-monitor-bridge-pagerduty",
}


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError("must be an http:// or https:// URL")
    return value


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    if not 1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError("must be between 1 and 3600 seconds")
    return seconds


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("must be between 0 (no metrics server) and 65535")
    return port


def add_bridge_parser(sub: Any) -> None:
    """Add ``bridge`` and its two outputs to the ``cbc-monitor`` subcommands."""
    bridge = sub.add_parser("bridge", help="keep Alertmanager or PagerDuty in step with alerts")
    outputs = bridge.add_subparsers(dest="output", required=True, metavar="OUTPUT")
    manager = outputs.add_parser("alertmanager", help="post episodes to Alertmanager's API v2")
    manager.add_argument(
        "--url", type=_http_url, required=True, help="Alertmanager base URL (http://host:9093)"
    )
    pager = outputs.add_parser("pagerduty", help="post PagerDuty Events v2 trigger/resolve")
    pager.add_argument(
        "--url",
        type=_http_url,
        required=True,
        help="Events v2 endpoint (https://events.pagerduty.com/v2/enqueue)",
    )
    pager.add_argument(
        "--routing-key-file",
        type=Path,
        help=f"file holding the integration's routing key (else ${ROUTING_KEY_ENV})",
    )
    for parser, output in ((manager, "alertmanager"), (pager, "pagerduty")):
        parser.add_argument(
            "--group",
            default=DEFAULT_GROUPS[output],
            help=f"consumer group (default {DEFAULT_GROUPS[output]})",
        )
        parser.add_argument(
            "--resend-interval",
            type=_seconds,
            default=60.0,
            help="seconds between re-posts of open alerts (Alertmanager; default 60)",
        )
        parser.add_argument(
            "--pseudonym-key-file",
            type=Path,
            help="file holding the key of patient_ref (else $MONITOR_PSEUDONYM_KEY)",
        )
        parser.add_argument(
            "--metrics-port",
            type=_port,
            default=DEFAULT_METRICS_PORT,
            help=f"port of /metrics and /healthz (default {DEFAULT_METRICS_PORT}; 0: none)",
        )
        parser.add_argument(
            "--metrics-host",
            default="0.0.0.0",
            help="address the metrics server binds (default 0.0.0.0)",
        )
        parser.set_defaults(func=cmd_bridge)


def _routing_key(path: Path | None) -> str:
    if path is not None:
        try:
            key = path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the routing key file {path}: {exc.strerror}") from None
    else:
        key = os.environ.get(ROUTING_KEY_ENV, "").strip()
    if not key:
        raise ValueError(
            f"no PagerDuty routing key: pass --routing-key-file or set {ROUTING_KEY_ENV}"
        )
    return key


def cmd_bridge(args: argparse.Namespace) -> int:
    from monitor.bridge.metrics import MetricsServerError, start_metrics_server
    from monitor.bridge.options import BridgeOptions
    from monitor.bridge.runner import Bridge, BridgeFailedError, Output
    from monitor.kafka.security import KafkaSecurityError

    settings = load_settings()
    try:
        pseudonym = Pseudonymizer(load_pseudonym_key(settings, args.pseudonym_key_file))
        output: Output
        if args.output == "alertmanager":
            from monitor.bridge.alertmanager import AlertmanagerOutput

            url = args.url.rstrip("/")
            url = url if url.endswith(AM_ALERTS_PATH) else url + AM_ALERTS_PATH
            output = AlertmanagerOutput(pseudonym, timedelta(seconds=args.resend_interval))
        else:
            from monitor.bridge.pagerduty import PagerDutyOutput

            url = args.url
            output = PagerDutyOutput(_routing_key(args.routing_key_file), pseudonym)
    except (PseudonymKeyError, ValueError) as exc:
        print(f"cbc-monitor bridge: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.root.level))
    try:
        bridge = Bridge(
            settings,
            output,
            BridgeOptions(url=url, group=args.group, resend_interval=args.resend_interval),
        )
    except KafkaSecurityError as exc:  # an unusable TLS file: as monitor.cli._security does
        print(f"cbc-monitor: invalid setting {exc}", file=sys.stderr)
        return 2

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, bridge.stop)
        server = None
        if args.metrics_port:
            server = await start_metrics_server(
                bridge.metrics, args.metrics_host, args.metrics_port
            )
        try:
            await bridge.run()
        finally:
            if server is not None:
                await server.cleanup()

    metrics_at = f"{args.metrics_host}:{args.metrics_port}" if args.metrics_port else "off"
    logging.getLogger("monitor.bridge").info(
        "bridge to %s: topic %s, group %s, metrics %s",
        output.name,
        settings.alerts_topic,
        args.group,
        metrics_at,
    )
    try:
        asyncio.run(serve())
    except KafkaError as exc:
        print(f"cbc-monitor bridge: Kafka failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except (MetricsServerError, BridgeFailedError) as exc:
        print(f"cbc-monitor bridge: {exc}", file=sys.stderr)
        return 1
    return 0
