"""Helpers shared by the deployment checks: repository paths, required binaries, and the metric
names that the Grafana dashboard and the alerting rules use versus those the worker and the
paging bridge export (each from its own registry)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.bridge.metrics import BridgeMetrics
from monitor.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES_FILE = DEPLOY / "prometheus" / "rules" / "monitor.rules.yml"
RULES_TEST_FILE = DEPLOY / "prometheus" / "tests" / "monitor.rules.test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "cbc-monitor.json"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
JOB = "cbc-monitor"
BRIDGE_JOB = "cbc-monitor-bridge"
#: Metrics with this prefix come from the paging bridge's scrape (job cbc-monitor-bridge).
BRIDGE_METRIC_PREFIX = "monitor_bridge_"

# Series Prometheus itself writes for every scrape target; not the worker's to export.
PROMETHEUS_SERIES = frozenset({"up"})

_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
     "unless", "offset", "inf", "nan"}
)  # fmt: skip


def require(binary: str, package: str) -> str:
    """The binary's path; a missing one fails the test (never skips it) naming its package."""
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"`{binary}` not found on PATH: install the Debian package {package}")
    return path


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers that are not functions, keywords,
    label names (in matchers or by/on clauses), durations or Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names: set[str] = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":
            continue  # the unit of a duration or an exponent: 5m, 1e3
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or aggregation
        if match.group().lower() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def exported_metric_names() -> set[str]:
    """Every sample name a fresh worker registry exposes, labelled series included even before
    their first sample (from the ``# TYPE`` lines; histograms add their suffixes)."""
    return _typed_names(Metrics().exposition())


def exported_bridge_metric_names() -> set[str]:
    """The same for a fresh paging-bridge registry."""
    return _typed_names(BridgeMetrics("alertmanager").exposition())


def _typed_names(exposition: bytes) -> set[str]:
    names: set[str] = set()
    for line in exposition.decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            if kind == "histogram":
                names.update(name + suffix for suffix in _HISTOGRAM_SUFFIXES)
            else:
                names.add(name)
    return names


def dashboard_exprs(dashboard: dict[str, Any] | None = None) -> list[str]:
    """Every PromQL expression of every panel (rows' nested panels included)."""
    data = dashboard if dashboard is not None else json.loads(DASHBOARD.read_text())

    def walk(panels: list[dict[str, Any]]) -> Iterator[str]:
        for panel in panels:
            for target in panel.get("targets", []):
                if "expr" in target:
                    yield str(target["expr"])
            yield from walk(panel.get("panels", []))

    return list(walk(data["panels"]))


def rule_exprs() -> dict[str, str]:
    """Alert or record name -> expression, from the shipped rules file."""
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return {
        rule.get("alert") or rule["record"]: str(rule["expr"])
        for group in groups
        for rule in group["rules"]
    }


def all_used_metric_names() -> set[str]:
    """Every metric the dashboard and the alerting rules select."""
    exprs = [*dashboard_exprs(), *rule_exprs().values()]
    return set().union(*(metric_names(expr) for expr in exprs))


def used_metric_names() -> set[str]:
    """Every metric the dashboard and the alerting rules select from the workers' scrape: the
    bridge's (``monitor_bridge_*``) excluded, a worker never exports them."""
    return {n for n in all_used_metric_names() if not n.startswith(BRIDGE_METRIC_PREFIX)}


def used_bridge_metric_names() -> set[str]:
    """Every bridge metric (``monitor_bridge_*``) the dashboard and the alerting rules select."""
    return {n for n in all_used_metric_names() if n.startswith(BRIDGE_METRIC_PREFIX)}
