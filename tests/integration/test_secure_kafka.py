"""Every Kafka client over TLS (and SASL) against an embedded broker of the test's own.

Tansu 0.6.0 cannot serve TLS itself (monitor/local/tansu.py explains), so
``EmbeddedBroker(tls=...)`` puts a TLS front before it and advertises only that: every byte a
client exchanges with the broker goes through TLS. Its SASL (``--authentication``) works, but no
SCRAM user can be created on it, so only refusals are tested here (docs/secure-kafka.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from monitor.cli import main as cli_main
from monitor.clinical.alert import Alert
from monitor.kafka.clients import follow, publish
from monitor.kafka.security import KafkaConnectError, aiokafka_security_kwargs, check_connection
from monitor.local.broker import EmbeddedBroker
from monitor.local.processes import WorkerProcess
from monitor.settings import MonitorSettings
from monitor.stream.replay import replay_values
from tests.builders import cbc
from tests.integration.isolation import isolated_env
from tests.unit.kafka.test_security import Pki, make_pki

pytestmark = pytest.mark.integration

PASSWORD = "Sasl-pw-9d2!never-logged"
EXIT_WITHIN_S = 20.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_broker(pki: Pki) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tls=(pki.server_cert, pki.server_key)) as broker:
        yield broker


def tls_env(pki: Pki, ca: Path | None = None) -> dict[str, str]:
    return {
        "MONITOR_KAFKA_SECURITY_PROTOCOL": "SSL",
        "MONITOR_KAFKA_SSL_CAFILE": str(ca or pki.ca),
    }


def topics_env(name: str) -> dict[str, str]:
    return {**isolated_env(name), "MONITOR_PARTITIONS": "2", "MONITOR_STORE": "memory"}


def settings_from(env: dict[str, str], broker: EmbeddedBroker) -> MonitorSettings:
    values = {k.removeprefix("MONITOR_").lower(): v for k, v in env.items()}
    return MonitorSettings.model_validate({"broker_url": broker.url, **values})


def wait_for_exit(worker: WorkerProcess, within: float = EXIT_WITHIN_S) -> tuple[int, str]:
    """The worker's exit status and log, or a failure if it is still running after ``within``."""
    assert worker.proc is not None
    deadline = time.monotonic() + within
    while worker.proc.poll() is None:
        if time.monotonic() > deadline:
            worker.kill()
            pytest.fail(f"worker still running after {within}s; see {worker.log_path}")
        time.sleep(0.1)
    worker.stop()
    return worker.proc.returncode, worker.log_path.read_text(errors="replace")


@contextlib.contextmanager
def running(worker: WorkerProcess) -> Iterator[WorkerProcess]:
    try:
        yield worker.start()
    finally:
        worker.stop()


def result(pid: str, result_id: str, hours: float, neutrophils: float) -> bytes:
    return cbc(result_id, hours, patient_id=pid, neutrophils=neutrophils).model_dump_json().encode()


@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_worker_consumes_and_publishes_over_tls(
    tls_broker: EmbeddedBroker, pki: Pki, tmp_path: Path
) -> None:
    name = f"tls-{uuid.uuid4().hex[:8]}"
    env = {**topics_env(name), **tls_env(pki)}
    security = aiokafka_security_kwargs(settings_from(env, tls_broker))
    pid = f"PT-tls-{uuid.uuid4().hex[:6]}"
    values = [result(pid, f"{pid}-1", 0, 2.5), result(pid, f"{pid}-2", 24, 0.8)]
    expected = replay_values(values).alerts
    assert [(a.condition, a.event, a.grade) for a in expected] == [("neutropenia", "new", 3)]

    worker = WorkerProcess("tls-worker", tls_broker.url, tmp_path / "w", env=env)
    with running(worker):
        await asyncio.to_thread(worker.wait_ready, 60.0)
        sent = await publish(
            tls_broker.bootstrap,
            f"{name}.results",
            [(pid.encode(), v) for v in values],
            security=security,
        )
        assert sent == len(values)
        received: list[Alert] = []
        records = follow(
            tls_broker.bootstrap, [f"{name}.alerts"], idle_timeout=30, security=security
        )
        async with contextlib.aclosing(records):
            async for record in records:
                received.append(Alert.model_validate_json(record.value))
                if {a.alert_id for a in received} >= {a.alert_id for a in expected}:
                    break
        # The dashboard's own consumer of the alert topic connects over TLS too.
        deadline = time.monotonic() + 30
        episodes: list[Any] = []
        while time.monotonic() < deadline and not episodes:
            episodes = worker.get("/api/dashboard")[1]["episodes"]
            await asyncio.sleep(0.25)
    assert [a.alert_id for a in received] == [a.alert_id for a in expected]
    assert received[0].patient_id == pid
    assert [e["dedup_key"] for e in episodes] == [expected[0].dedup_key]


@pytest.mark.timeout(60)
def test_worker_with_the_wrong_ca_stops_at_start_with_a_clear_message(
    tls_broker: EmbeddedBroker, pki: Pki, tmp_path: Path
) -> None:
    env = {**topics_env(f"wrong-ca-{uuid.uuid4().hex[:8]}"), **tls_env(pki, ca=pki.other_ca)}
    worker = WorkerProcess("wrong-ca", tls_broker.url, tmp_path / "w", env=env).start()
    started = time.monotonic()
    status, log = wait_for_exit(worker)
    assert status == 2, log
    assert time.monotonic() - started < EXIT_WITHIN_S
    assert (
        f"cbc-monitor: cannot connect to Kafka at {tls_broker.bootstrap}: TLS handshake failed: "
        "certificate verify failed"
    ) in log
    assert "(check MONITOR_KAFKA_SSL_CAFILE)" in log
    assert "Traceback" not in log


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_a_plaintext_client_cannot_talk_to_the_tls_listener(
    tls_broker: EmbeddedBroker, pki: Pki
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=tls_broker.bootstrap, request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(producer.start(), 20)
    await producer.stop()
    with pytest.raises(KafkaConnectError, match=r"closed the connection .*want TLS or SASL"):
        await check_connection([tls_broker.bootstrap], {"security_protocol": "PLAINTEXT"})
    # The same listener with TLS and the right CA: the refusal was about TLS, nothing else.
    settings = settings_from(tls_env(pki), tls_broker)
    await check_connection([tls_broker.bootstrap], aiokafka_security_kwargs(settings))


@pytest.mark.timeout(60)
def test_cli_send_and_tail_use_tls(
    tls_broker: EmbeddedBroker,
    pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = f"cli-tls-{uuid.uuid4().hex[:8]}"
    for key, value in {**topics_env(name), **tls_env(pki)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MONITOR_BROKER_URL", tls_broker.url)
    monkeypatch.setenv("MONITOR_RESULTS_TOPIC", f"{name}.alerts")  # send writes where tail reads
    pid = f"PT-cli-{uuid.uuid4().hex[:6]}"
    line = result(pid, f"{pid}-1", 0, 1.0)
    path = tmp_path / "results.jsonl"
    path.write_bytes(line + b"\n")
    assert cli_main(["send", str(path)]) == 0
    capsys.readouterr()
    assert (
        cli_main(["tail", "--json", "--from-beginning", "--max", "1", "--idle-timeout", "20"]) == 0
    )
    assert capsys.readouterr().out.strip().encode() == line


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_mutual_tls_requires_the_client_certificate(pki: Pki) -> None:
    with EmbeddedBroker(tls=(pki.server_cert, pki.server_key), tls_client_ca=pki.ca) as broker:
        with_cert = settings_from(
            {
                **tls_env(pki),
                "MONITOR_KAFKA_SSL_CERTFILE": str(pki.client_cert),
                "MONITOR_KAFKA_SSL_KEYFILE": str(pki.client_key),
            },
            broker,
        )
        await check_connection([broker.bootstrap], aiokafka_security_kwargs(with_cert))
        without = settings_from(tls_env(pki), broker)
        refused = re.escape(f"cannot connect to Kafka at {broker.bootstrap}: ") + (
            ".*(client certificate|MONITOR_KAFKA_SSL_CERTFILE)"
        )
        with pytest.raises(KafkaConnectError, match=refused):
            await check_connection([broker.bootstrap], aiokafka_security_kwargs(without))


@pytest.fixture(scope="module")
def sasl_broker(pki: Pki) -> Iterator[EmbeddedBroker]:
    """SASL (``--authentication``) behind TLS. No SCRAM user can exist on it (module docstring)."""
    with EmbeddedBroker(tls=(pki.server_cert, pki.server_key), authentication=True) as broker:
        yield broker


def sasl_env(pki: Pki) -> dict[str, str]:
    return {
        "MONITOR_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "MONITOR_KAFKA_SSL_CAFILE": str(pki.ca),
        "MONITOR_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "MONITOR_KAFKA_SASL_USERNAME": "monitor",
        "MONITOR_KAFKA_SASL_PASSWORD": PASSWORD,
    }


@pytest.mark.timeout(60)
def test_worker_with_a_wrong_password_stops_at_start_without_printing_it(
    sasl_broker: EmbeddedBroker, pki: Pki, tmp_path: Path
) -> None:
    env = {**topics_env(f"sasl-{uuid.uuid4().hex[:8]}"), **sasl_env(pki)}
    worker = WorkerProcess("wrong-password", sasl_broker.url, tmp_path / "w", env=env).start()
    status, log = wait_for_exit(worker)
    assert status == 2, log
    assert (
        f"cbc-monitor: cannot connect to Kafka at {sasl_broker.bootstrap}: SASL authentication "
        "failed (check MONITOR_KAFKA_SASL_USERNAME and the password)"
    ) in log
    assert PASSWORD not in log
    assert "Traceback" not in log


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_the_sasl_broker_refuses_clients_that_do_not_authenticate(
    sasl_broker: EmbeddedBroker, pki: Pki
) -> None:
    # TLS is fine (right CA), but no SASL: the broker refuses metadata and drops the connection.
    tls_only = settings_from(tls_env(pki), sasl_broker)
    with pytest.raises(KafkaConnectError, match="the broker closed the connection"):
        await check_connection([sasl_broker.bootstrap], aiokafka_security_kwargs(tls_only))
