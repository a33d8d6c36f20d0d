"""The bridge's own Prometheus metrics and the small HTTP server that exposes them.

A bridge that cannot post retries forever (no page is ever dropped), so the one sign that
paging has stopped is ``monitor_bridge_retrying`` staying at 1 (the ``CbcMonitorBridgeRetrying``
rule) or the bridge not being scraped at all (``CbcMonitorBridgeDown``). Every series carries
only the output's name (``alertmanager``, ``pagerduty``) and, for posts, a fixed outcome: never
anything from an alert.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from monitor.metrics import CONTENT_TYPE  # what the workers serve: text format 0.0.4

Outcome = Literal["ok", "http_error", "unreachable"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "http_error", "unreachable")
DEFAULT_METRICS_PORT = 9464


class BridgeMetrics:
    """The metrics of one bridge process (one output), in a registry of their own."""

    def __init__(self, output: str, registry: CollectorRegistry | None = None) -> None:
        self.output = output
        self.registry = registry or CollectorRegistry()
        r = self.registry
        posts = Counter(
            "monitor_bridge_posts",
            "HTTP posts to the output, by outcome (every attempt, retries included)",
            ["output", "outcome"],
            registry=r,
        )
        self._posts = {outcome: posts.labels(output, outcome) for outcome in OUTCOMES}
        self.last_success = Gauge(
            "monitor_bridge_last_success_timestamp_seconds",
            "Unix time of the last post the output accepted (0: none yet)",
            ["output"],
            registry=r,
        ).labels(output)
        self.retrying = Gauge(
            "monitor_bridge_retrying",
            "1 while a post is being retried (the output refuses it or is unreachable), else 0",
            ["output"],
            registry=r,
        ).labels(output)
        self.open_episodes = Gauge(
            "monitor_bridge_open_episodes",
            "Open episodes the bridge keeps alive at the output",
            ["output"],
            registry=r,
        ).labels(output)
        self.alerts_consumed = Counter(
            "monitor_bridge_alerts_consumed",
            "Alerts read from the alert topic by the bridge's consumer group (repeats included)",
            ["output"],
            registry=r,
        ).labels(output)
        self.records_skipped = Counter(
            "monitor_bridge_records_skipped",
            "Records of the alert topic passed over without posting: not an alert, or applying"
            " it failed (the log names partition, offset and exception class)",
            ["output"],
            registry=r,
        ).labels(output)
        self.synced = Gauge(
            "monitor_bridge_synced",
            "1 once the start-up sync (rebuild from the topic, then its posts) is done",
            ["output"],
            registry=r,
        ).labels(output)
        self._in_retry = 0

    def post_attempt(self, outcome: Outcome) -> None:
        self._posts[outcome].inc()
        if outcome == "ok":
            self.last_success.set_to_current_time()

    def value(self, name: str, **labels: str) -> float | None:
        """A sample of this bridge's output, as a scrape would show it (for tests)."""
        return self.registry.get_sample_value(name, {"output": self.output, **labels})

    def retry_started(self) -> None:
        self._in_retry += 1
        self.retrying.set(1)

    def retry_ended(self) -> None:
        self._in_retry = max(0, self._in_retry - 1)
        self.retrying.set(1 if self._in_retry else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def metrics_app(metrics: BridgeMetrics) -> web.Application:
    """``/metrics`` (Prometheus text format) and ``/healthz`` (200 while the event loop runs;
    deliberately not tied to posting: restarting a bridge does not bring Alertmanager back, and
    the ``monitor_bridge_retrying`` alert says that paging is stuck)."""

    async def scrape(request: web.Request) -> web.Response:
        headers = {"Content-Type": f"{CONTENT_TYPE}; charset=utf-8"}
        return web.Response(body=metrics.exposition(), headers=headers)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", healthz)
    return app


class MetricsServerError(Exception):
    """The metrics port could not be bound."""


async def start_metrics_server(metrics: BridgeMetrics, host: str, port: int) -> web.AppRunner:
    """Serve :func:`metrics_app` on ``host:port``; the caller cleans the runner up."""
    runner = web.AppRunner(metrics_app(metrics), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise MetricsServerError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
        ) from None
    return runner
