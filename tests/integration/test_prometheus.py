"""A real Prometheus (the Debian ``prometheus`` binary) scrapes a real worker, with the shipped
alerting rules loaded, and everything is read back through Prometheus's HTTP API: the scrape
works, counters move when results are consumed, every metric the Grafana dashboard and the rules
name exists in Prometheus, the rules load and evaluate cleanly, and no label carries a patient id.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from monitor.kafka.clients import bootstrap_of, publish
from monitor.local.broker import EmbeddedBroker
from monitor.local.processes import ChildProcess, WorkerProcess, find_free_port
from tests.builders import cbc
from tests.deploy import JOB, RULES_FILE, require, rule_exprs, used_metric_names
from tests.integration.isolation import isolated_env

pytestmark = pytest.mark.integration

T = TypeVar("T")
PATIENTS = [f"PROM-PATIENT-{n:03d}" for n in range(4)]
DEADLINE_S = 30.0


class Prometheus:
    """A ``prometheus`` child process with its own config and storage, on a free port."""

    def __init__(self, root: Path, targets: list[str]) -> None:
        self.port = find_free_port()
        self.root = root
        self.log_path = root / "prometheus.log"
        root.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES_FILE)],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
        }
        self.config_path = root / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.child = ChildProcess(
            [
                require("prometheus", "prometheus"),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            self.log_path,
        )

    def start(self) -> Prometheus:
        self.child.start()
        return self

    def stop(self) -> None:
        self.child.stop(10)

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of a successful API answer; raises on anything else."""
        if self.child.proc is not None and not self.child.running():
            raise AssertionError(f"prometheus exited; see {self.log_path}")
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=promql)["result"]
        return result


def poll(what: str, probe: Callable[[], T | None], timeout: float = DEADLINE_S) -> T:
    """Call ``probe`` until it returns something other than None (errors count as None)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (OSError, AssertionError, KeyError) as exc:
            last_error, value = exc, None
        if value is not None:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error!r})")


@pytest.fixture
def worker(broker: EmbeddedBroker, unique_name: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    env = {**isolated_env(unique_name), "MONITOR_PARTITIONS": "2"}
    process = WorkerProcess("prom-worker", broker.url, tmp_path / "worker", env=env)
    try:
        process.start().wait_ready(60)
        yield process
    finally:
        process.stop()


def test_prometheus_scrapes_the_worker_with_the_shipped_rules(
    broker: EmbeddedBroker, worker: WorkerProcess, unique_name: str, tmp_path: Path
) -> None:
    prometheus = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{worker.web_port}"])
    try:
        prometheus.start()
        poll(
            "up == 1",
            lambda: _if(prometheus.query(f'up{{job="{JOB}"}}'), _is_up),
        )

        # Results that open neutropenia episodes, so the labelled alert counters appear too.
        messages = [
            (pid.encode(), cbc(f"{pid}-R1", patient_id=pid, neutrophils=0.4, wbc=1.1)
             .model_dump_json().encode())
            for pid in PATIENTS
        ]  # fmt: skip
        sent = asyncio.run(publish(bootstrap_of(broker.url), f"{unique_name}.results", messages))
        assert sent == len(PATIENTS)

        consumed = poll(
            "the consumed counter to reach the results sent",
            lambda: _at_least(prometheus, "sum(monitor_results_consumed_total)", len(PATIENTS)),
        )
        assert consumed >= len(PATIENTS)

        wanted = used_metric_names()
        names = poll(
            "every dashboard and rule metric in Prometheus",
            lambda: _if(set(prometheus.api("label/__name__/values")), lambda n: wanted <= n),
        )
        assert wanted <= names
        alerts = prometheus.query(f'sum by (condition) (monitor_alerts_total{{job="{JOB}"}})')
        assert any(a["metric"].get("condition") == "neutropenia" for a in alerts), alerts

        rules = poll("every shipped rule evaluated", lambda: _evaluated_rules(prometheus))
        assert {r["name"] for r in rules} == set(rule_exprs())
        assert all(r["health"] == "ok" for r in rules), [(r["name"], r["lastError"]) for r in rules]
        assert all(r["labels"]["component"] == "cbc-monitor" for r in rules)

        for label in prometheus.api("labels"):
            values = prometheus.api(f"label/{label}/values")
            leaked = [v for v in values if any(pid in v for pid in PATIENTS)]
            assert not leaked, f"patient id in label {label}"
    finally:
        prometheus.stop()
    assert prometheus.child.proc is not None
    assert not prometheus.child.running(), "prometheus still running"


def _if(value: T, accept: Callable[[T], bool]) -> T | None:
    return value if accept(value) else None


def _is_up(series: list[dict[str, Any]]) -> bool:
    return [s["value"][1] for s in series] == ["1"]


def _at_least(prometheus: Prometheus, promql: str, minimum: float) -> float | None:
    result = prometheus.query(promql)
    value = float(result[0]["value"][1]) if result else 0.0
    return value if value >= minimum else None


def _evaluated_rules(prometheus: Prometheus) -> list[dict[str, Any]] | None:
    groups = prometheus.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    if not rules or any(rule["health"] == "unknown" for rule in rules):
        return None
    return rules
