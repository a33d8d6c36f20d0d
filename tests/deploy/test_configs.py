"""The deployment files are checked by the tools that will read them, without a Docker engine:
docker-compose, promtool and amtool (Debian packages), yaml for the Kubernetes manifests, and
the worker's and the paging bridge's own metrics registries for every metric the dashboard and
the rules name.

``python -m tests.deploy.test_configs`` rewrites deploy/k8s/prometheusrule.yaml from the rules.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import (
    ALERTMANAGER_CONFIG,
    BRIDGE_JOB,
    COMPOSE_FILE,
    DASHBOARD,
    DEPLOY,
    DOCKERFILE,
    JOB,
    K8S,
    PROMETHEUS_CONFIG,
    PROMETHEUS_SERIES,
    ROOT,
    RULES_FILE,
    RULES_TEST_FILE,
    all_used_metric_names,
    dashboard_exprs,
    exported_bridge_metric_names,
    exported_metric_names,
    metric_names,
    require,
    rule_exprs,
    used_bridge_metric_names,
    used_metric_names,
)

COMPOSE_SECRETS = {
    "MONITOR_PSEUDONYM_KEY": "test-only-pseudonym-key",
    "GRAFANA_ADMIN_PASSWORD": "test-only",
}
PROMETHEUS_RULE = K8S / "prometheusrule.yaml"
BRIDGE_METRICS_PORT = 9464


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )


def compose_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_SECRETS}
    return {**env, **overrides}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as docker-compose resolves it (anchors merged, variables set)."""
    binary = require("docker-compose", "docker-compose")
    result = run(binary, "-f", str(COMPOSE_FILE), "config", env=compose_env(**COMPOSE_SECRETS))
    assert_ok(result)
    resolved: dict[str, Any] = yaml.safe_load(result.stdout)
    return resolved


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a named volume, or a host path for a bind mount); accepts
    both the short ``source:target[:mode]`` form docker-compose 1.x prints and the long one."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        found[target] = source
    return found


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None)
    return docs


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in k8s_documents() if doc["kind"] == kind]


def k8s_named(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [doc for doc in k8s_kind(kind) if doc["metadata"]["name"] == name]
    return doc


# --------------------------------------------------------------------------------------------
# docker-compose and the image


def test_compose_file_is_accepted_by_docker_compose() -> None:
    binary = require("docker-compose", "docker-compose")
    assert_ok(
        run(binary, "-f", str(COMPOSE_FILE), "config", "-q", env=compose_env(**COMPOSE_SECRETS))
    )


def test_compose_refuses_to_start_without_its_secrets() -> None:
    binary = require("docker-compose", "docker-compose")
    result = run(binary, "-f", str(COMPOSE_FILE), "config", "-q", env=compose_env())
    assert result.returncode != 0
    assert "MONITOR_PSEUDONYM_KEY" in result.stderr or "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_compose_runs_the_whole_stack_with_pinned_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "kafka", "worker-1", "worker-2", "bridge", "prometheus", "alertmanager", "grafana"
    }  # fmt: skip
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", services["kafka"]["image"])
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    for name in ("prometheus", "alertmanager", "grafana"):
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", services[name]["image"]), name


def test_compose_publishes_unauthenticated_services_on_loopback_only(
    compose: dict[str, Any],
) -> None:
    """Kafka (plaintext patient data), the workers, Prometheus and Alertmanager have no login:
    their host ports listen on 127.0.0.1; only Grafana (admin password) is reachable."""
    published: dict[str, set[str]] = {}
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, str):
                host_ip = port.split(":")[0] if port.count(":") == 2 else "0.0.0.0"
            else:
                host_ip = port.get("host_ip", "0.0.0.0")
            published.setdefault(name, set()).add(host_ip)
    assert published.pop("grafana") == {"0.0.0.0"}
    assert set(published) == {"kafka", "worker-1", "worker-2", "prometheus", "alertmanager"}
    assert all(ips == {"127.0.0.1"} for ips in published.values()), published


@pytest.mark.parametrize("name", ["worker-1", "worker-2"])
def test_compose_workers(compose: dict[str, Any], name: str) -> None:
    worker = compose["services"][name]
    env = worker["environment"]
    assert worker["build"]["context"] == str(ROOT)
    assert worker["command"] == ["worker"]
    # Reachable by the hostname it advertises to the other worker.
    assert worker["hostname"] == name
    assert env["MONITOR_WEB_HOST"] == "0.0.0.0"
    assert env["MONITOR_BROKER_URL"] == "kafka://kafka:9092"
    assert "MONITOR_END_OFFSETS_PER_BATCH" not in env  # embedded broker only
    assert worker["ulimits"]["nofile"]["soft"] >= 65536
    assert "/readyz" in " ".join(worker["healthcheck"]["test"])
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert mounts(worker)[env["MONITOR_DATA_DIR"]] == f"{name}-data"  # a named volume


def test_compose_bridge_posts_to_alertmanager(compose: dict[str, Any]) -> None:
    bridge = compose["services"]["bridge"]
    assert bridge["command"] == ["bridge", "alertmanager", "--url", "http://alertmanager:9093"]
    assert bridge["image"] == compose["services"]["worker-1"]["image"]
    key = "MONITOR_PSEUDONYM_KEY"
    assert bridge["environment"][key] == COMPOSE_SECRETS[key]
    # Every setting of the workers (Kafka address and security, topics) reaches the bridge too,
    # and the workers' dashboards key patient_ref the same way.
    worker_env = compose["services"]["worker-1"]["environment"]
    assert worker_env.items() <= bridge["environment"].items()
    assert worker_env[key] == COMPOSE_SECRETS[key]


def test_compose_bridge_serves_metrics_inside_the_network_only(compose: dict[str, Any]) -> None:
    """Prometheus scrapes bridge:9464 (the bridge's default --metrics-port) on the compose
    network; no host port, and the health check asks the bridge's own /healthz."""
    bridge = compose["services"]["bridge"]
    assert "--metrics-port" not in bridge["command"]  # the default
    assert [str(port) for port in bridge["expose"]] == [str(BRIDGE_METRICS_PORT)]
    assert "ports" not in bridge
    check = " ".join(bridge["healthcheck"]["test"])
    assert f"127.0.0.1:{BRIDGE_METRICS_PORT}/healthz" in check
    assert not bridge["healthcheck"].get("disable")
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs[BRIDGE_JOB]["static_configs"][0]["targets"] == [f"bridge:{BRIDGE_METRICS_PORT}"]


def test_compose_mounts_the_shipped_configuration(compose: dict[str, Any]) -> None:
    def binds(service: str) -> dict[str, Path]:
        found = mounts(compose["services"][service])
        return {target: Path(source) for target, source in found.items() if "/" in source}

    assert binds("prometheus")["/etc/prometheus/prometheus.yml"] == PROMETHEUS_CONFIG
    assert binds("prometheus")["/etc/prometheus/rules"] == RULES_FILE.parent
    assert binds("alertmanager")["/etc/alertmanager/alertmanager.yml"] == ALERTMANAGER_CONFIG
    grafana = binds("grafana")
    assert grafana["/etc/grafana/provisioning"] == DEPLOY / "grafana" / "provisioning"
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/cbc-monitor.yml").read_text()
    )["providers"][0]
    assert grafana[provider["options"]["path"]] == DASHBOARD.parent
    for source in [*binds("prometheus").values(), *grafana.values()]:
        assert source.exists(), source


def test_dockerfile_runs_as_non_root_with_a_readiness_healthcheck() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in ("root", "0")
    healthchecks = [line for line in lines if line.startswith("HEALTHCHECK ")]
    assert len(healthchecks) == 1
    assert "/readyz" in DOCKERFILE.read_text().split("HEALTHCHECK", 1)[1]
    for base in (line.split()[1] for line in lines if line.startswith("FROM ")):
        assert re.search(r":\d+\.\d+\.\d+", base), f"base image not pinned: {base}"
    assert any(line.startswith("VOLUME ") and "/var/lib/cbc-monitor" in line for line in lines)


# --------------------------------------------------------------------------------------------
# Prometheus and Alertmanager


def test_prometheus_config_is_accepted_by_promtool() -> None:
    assert_ok(run(require("promtool", "prometheus"), "check", "config", str(PROMETHEUS_CONFIG)))
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = jobs[JOB]["static_configs"][0]["targets"]
    assert targets == ["worker-1:6066", "worker-2:6066"]
    assert jobs[BRIDGE_JOB]["static_configs"][0]["targets"] == ["bridge:9464"]
    am = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"]
    rule_globs = [PROMETHEUS_CONFIG.parent / pattern for pattern in config["rule_files"]]
    loaded = {p for g in rule_globs for p in g.parent.glob(g.name)}
    assert RULES_FILE in loaded


def test_alerting_rules_are_accepted_by_promtool_and_labelled_for_routing() -> None:
    result = run(require("promtool", "prometheus"), "check", "rules", str(RULES_FILE))
    assert_ok(result)
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {r["alert"] for r in rules} >= {
        "CbcMonitorWorkerDown",
        "CbcMonitorNoResultsConsumed",
        "CbcMonitorDeadLetters",
        "CbcMonitorConsumerLagGrowing",
        "CbcMonitorAlertLatencyHigh",
        "CbcMonitorBridgeDown",
        "CbcMonitorBridgeRetrying",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["labels"]["component"] == "cbc-monitor", rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
        assert set(re.findall(r'job="([^"]*)"', rule["expr"])) in ({JOB}, {BRIDGE_JOB}), rule
    bridge = {r["alert"]: r for r in rules if "Bridge" in r["alert"]}
    assert bridge["CbcMonitorBridgeDown"]["expr"] == f'up{{job="{BRIDGE_JOB}"}} == 0'
    assert bridge["CbcMonitorBridgeRetrying"]["expr"] == (
        f'monitor_bridge_retrying{{job="{BRIDGE_JOB}"}} == 1'
    )
    assert {alert: (r["for"], r["labels"]["severity"]) for alert, r in bridge.items()} == {
        "CbcMonitorBridgeDown": ("2m", "critical"),
        "CbcMonitorBridgeRetrying": ("5m", "critical"),
    }


def test_alerting_rules_pass_their_unit_tests() -> None:
    result = run(require("promtool", "prometheus"), "test", "rules", str(RULES_TEST_FILE))
    assert_ok(result)
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    tests = yaml.safe_load(RULES_TEST_FILE.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for alert in rule_exprs():
        mine = [case for case in cases if case["alertname"] == alert]
        assert any(case["exp_alerts"] for case in mine), f"{alert}: no firing case"
        assert any(not case["exp_alerts"] for case in mine), f"{alert}: no quiet case"


def test_alertmanager_config_is_accepted_by_amtool() -> None:
    amtool = require("amtool", "prometheus-alertmanager")
    assert ALERTMANAGER_CONFIG.exists(), f"{ALERTMANAGER_CONFIG} is missing"
    assert_ok(run(amtool, "check-config", str(ALERTMANAGER_CONFIG)))


EPISODE = {"alertname": "CytopeniaEpisode", "source": "cbc-monitor", "condition": "neutropenia"}


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        # The monitor's own health, whatever its severity: the lab's ops team.
        ({"alertname": "CbcMonitorWorkerDown", "component": "cbc-monitor", "severity": "critical"},
         "lab-ops"),
        ({"alertname": "CbcMonitorDeadLetters", "component": "cbc-monitor", "severity": "warning"},
         "lab-ops"),
        # Episodes: grade 3-4 and febrile neutropenia page; grade 1-2 and improving go to the ward.
        ({**EPISODE, "severity": "critical", "grade": "4"}, "pager"),
        ({**EPISODE, "condition": "febrile_neutropenia", "severity": "critical", "grade": "3"},
         "pager"),
        ({**EPISODE, "severity": "warning", "grade": "2"}, "ward-channel"),
        ({**EPISODE, "severity": "info", "grade": "1"}, "ward-channel"),
    ],
)  # fmt: skip
def test_alertmanager_routes_each_kind_of_alert_to_its_receiver(
    labels: dict[str, str], receiver: str
) -> None:
    """amtool resolves the shipped routing tree for a label set, as Alertmanager would."""
    amtool = require("amtool", "prometheus-alertmanager")
    pairs = [f"{name}={value}" for name, value in labels.items()]
    result = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *pairs)
    assert_ok(result)
    assert result.stdout.split() == [receiver], result.stdout


# --------------------------------------------------------------------------------------------
# Grafana


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, instance) (rate(a_bucket{job="x", le!="1"}'
        "[$__rate_interval]))) > 1e3 and on() sum without (grade) (b) / c offset 5m "
        "unless deriv(d[10m:1m]) > bool 0"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c", "d"}


def test_dashboard_names_only_metrics_the_worker_or_bridge_exports() -> None:
    """A panel on the bridge's job may use the bridge's registry; every other one the worker's."""
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        on_bridge = f'job="{BRIDGE_JOB}"' in expr
        exported = (
            exported_bridge_metric_names() if on_bridge else exported_metric_names()
        ) | PROMETHEUS_SERIES
        assert names <= exported, f"{sorted(names - exported)} not exported (in {expr!r})"


def test_dashboard_shows_the_paging_bridge() -> None:
    used = set().union(*(metric_names(e) for e in dashboard_exprs() if BRIDGE_JOB in e))
    assert {"monitor_bridge_posts_total", "monitor_bridge_retrying"} <= used


def test_dashboard_covers_the_operational_views() -> None:
    used = set().union(*(metric_names(expr) for expr in dashboard_exprs()))
    assert used >= {
        "monitor_results_consumed_total",
        "monitor_results_invalid_total",
        "monitor_alerts_total",
        "monitor_active_episodes",
        "monitor_result_to_alert_seconds_bucket",
        "monitor_processing_seconds_bucket",
        "monitor_consumer_lag",
        "monitor_ready",
    }


def test_rules_name_only_metrics_the_worker_or_the_bridge_exports() -> None:
    worker = exported_metric_names() | PROMETHEUS_SERIES
    bridge = exported_bridge_metric_names() | PROMETHEUS_SERIES
    assert used_metric_names() <= worker, sorted(used_metric_names() - worker)
    assert used_bridge_metric_names() <= bridge, sorted(used_bridge_metric_names() - bridge)
    assert used_bridge_metric_names() >= {"monitor_bridge_retrying"}
    assert all_used_metric_names() == used_metric_names() | used_bridge_metric_names()


def test_each_rule_names_only_metrics_of_the_job_it_selects() -> None:
    """A rule on job cbc-monitor-bridge can only see the bridge's scrape, and vice versa."""
    exported = {
        JOB: exported_metric_names() | PROMETHEUS_SERIES,
        BRIDGE_JOB: exported_bridge_metric_names() | PROMETHEUS_SERIES,
    }
    for alert, expr in rule_exprs().items():
        (job,) = set(re.findall(r'job="([^"]*)"', expr))
        names = metric_names(expr)
        assert names <= exported[job], f"{alert}: {sorted(names - exported[job])} not in {job}"


def test_bridge_metric_names_are_checked_against_the_bridge_registry() -> None:
    """The check itself can fail: a misspelt bridge metric is not in the bridge's registry."""
    bridge = exported_bridge_metric_names()
    assert "monitor_bridge_posts_total" in bridge
    assert "monitor_bridge_retrying" in bridge
    assert not metric_names('monitor_bridge_retryng{job="cbc-monitor-bridge"} == 1') <= bridge
    assert not bridge & exported_metric_names()  # two registries, no shared names


def test_dashboard_exprs_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each expression (as a recording rule), Grafana's interval substituted."""
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": expr.replace("$__rate_interval", "1m")}
        for i, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert_ok(run(require("promtool", "prometheus"), "check", "rules", str(path)))


def test_dashboard_uses_the_provisioned_datasource() -> None:
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "cbc-monitor"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]


# --------------------------------------------------------------------------------------------
# Kubernetes


def test_k8s_manifests_parse_with_required_fields() -> None:
    docs = k8s_documents()
    for doc in docs:
        assert doc.get("apiVersion"), doc
        assert doc.get("kind"), doc
        if doc["kind"] == "Kustomization":
            continue
        assert doc["metadata"]["name"]
        assert doc["metadata"].get("namespace", "cbc-monitor") == "cbc-monitor"
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == sorted(
        ["Namespace", "ConfigMap", "Service", "Service", "StatefulSet", "PodDisruptionBudget",
         "Deployment", "ServiceMonitor", "ServiceMonitor", "PrometheusRule", "Kustomization"]
    )  # fmt: skip
    kustomization = k8s_kind("Kustomization")[0]
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_k8s_worker_statefulset() -> None:
    sts = k8s_kind("StatefulSet")[0]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    config = k8s_kind("ConfigMap")[0]["data"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == config["MONITOR_DATA_DIR"]
    assert config["MONITOR_WEB_HOST"] == "0.0.0.0"
    assert "MONITOR_END_OFFSETS_PER_BATCH" not in config
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["args"] == ["worker"]
    # Pods forward requests to each other by hostname: a headless service that keeps
    # not-ready pods resolvable, and a search domain for the pods' short names.
    service = k8s_named("Service", JOB)
    assert service["metadata"]["name"] == spec["serviceName"] == JOB
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    assert f"{JOB}.cbc-monitor.svc.cluster.local" in pod["dnsConfig"]["searches"]
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == config["MONITOR_WEB_PORT"]


def test_k8s_bridge_and_scraping() -> None:
    bridge = k8s_kind("Deployment")[0]
    assert bridge["spec"]["replicas"] == 1
    (container,) = bridge["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["bridge", "alertmanager", "--url"]
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["MONITOR_PSEUDONYM_KEY"]["valueFrom"]
    assert bridge["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    # The workers' ConfigMap (Kafka address and security, topics) configures the bridge too.
    (worker,) = k8s_kind("StatefulSet")[0]["spec"]["template"]["spec"]["containers"]
    assert worker["envFrom"] == container["envFrom"]
    # Each ServiceMonitor selects exactly the service whose name is its job label.
    services = k8s_kind("Service")
    for job in (JOB, BRIDGE_JOB):
        monitor = k8s_named("ServiceMonitor", job)
        wanted = monitor["spec"]["selector"]["matchLabels"].items()
        selected = [s for s in services if wanted <= s["metadata"]["labels"].items()]
        assert [s["metadata"]["name"] for s in selected] == [job]
        ports = {p["name"] for p in selected[0]["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
        assert {e["path"] for e in monitor["spec"]["endpoints"]} == {"/metrics"}


def test_k8s_bridge_serves_metrics_and_healthz() -> None:
    bridge = k8s_named("Deployment", "cbc-monitor-bridge")
    template = bridge["spec"]["template"]
    (container,) = template["spec"]["containers"]
    args = container["args"]
    port = int(args[args.index("--metrics-port") + 1])
    assert port == BRIDGE_METRICS_PORT
    (declared,) = container["ports"]
    assert (declared["name"], declared["containerPort"]) == ("metrics", port)
    probe = container["livenessProbe"]["httpGet"]
    assert (probe["path"], probe["port"]) == ("/healthz", "metrics")
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    service = k8s_named("Service", BRIDGE_JOB)
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() == bridge["spec"]["selector"]["matchLabels"].items()
    (service_port,) = service["spec"]["ports"]
    assert (service_port["name"], service_port["port"]) == ("metrics", port)
    assert service_port["targetPort"] == "metrics"
    # The worker service must not pick up the bridge pod (its job would get a bridge target).
    worker = k8s_named("Service", JOB)
    assert not worker["spec"]["selector"].items() <= template["metadata"]["labels"].items()


def render_prometheus_rule() -> str:
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "cbc-monitor",
            "namespace": "cbc-monitor",
            "labels": {"app.kubernetes.io/name": "cbc-monitor"},
        },
        "spec": yaml.safe_load(RULES_FILE.read_text()),
    }
    header = (
        "# The alerting rules of deploy/prometheus/rules/monitor.rules.yml for the Prometheus\n"
        "# Operator. Generated: edit the rules file, then run\n"
        "#   .venv/bin/python -m tests.deploy.test_configs\n"
    )
    return header + str(yaml.safe_dump(doc, sort_keys=False, width=100))


def test_k8s_prometheus_rule_is_the_shipped_rules_file() -> None:
    assert PROMETHEUS_RULE.read_text() == render_prometheus_rule(), (
        "deploy/k8s/prometheusrule.yaml is stale: run .venv/bin/python -m tests.deploy.test_configs"
    )


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(render_prometheus_rule())
