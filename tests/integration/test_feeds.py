"""Real lab feeds through a running worker on the embedded broker: HL7 v2, FHIR R4, treatments
and temperatures, and their malformed variants."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.clinical.alert import Alert
from monitor.kafka.clients import follow, header, publish
from monitor.local.broker import EmbeddedBroker
from monitor.local.processes import WorkerProcess
from monitor.sim.fhir_encoding import to_fhir
from monitor.sim.hl7v2_encoding import to_hl7v2
from tests.integration.isolation import isolated_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

T0 = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)


class Feeds:
    def __init__(self, broker: EmbeddedBroker, name: str, worker: WorkerProcess) -> None:
        self.broker = broker
        self.worker = worker
        self.topics = {
            "results": f"{name}.results",
            "hl7v2": f"{name}.hl7v2",
            "fhir": f"{name}.fhir",
            "treatments": f"{name}.treatments",
            "vitals": f"{name}.vitals",
            "alerts": f"{name}.alerts",
            "dlq": f"{name}.dlq",
        }

    def send(self, feed: str, value: bytes, key: bytes | None = None) -> None:
        asyncio.run(publish(self.broker.bootstrap, self.topics[feed], [(key, value)]))

    def records(self, feed: str, done: Callable[[list[Any]], bool], wait: float = 60) -> list[Any]:
        """Records of a topic from the beginning, once ``done`` holds for them (or time is up)."""

        async def read() -> list[Any]:
            seen: list[Any] = []
            deadline = time.monotonic() + wait
            records = follow(self.broker.bootstrap, [self.topics[feed]], idle_timeout=2)
            async with contextlib.aclosing(records):
                async for record in records:
                    seen.append(record)
                    if done(seen) or time.monotonic() > deadline:
                        break
            return seen

        found: list[Any] = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            found = asyncio.run(read())
            if done(found):
                break
        return found

    def alerts(self, patient: str, count: int) -> list[Alert]:
        def mine(records: list[Any]) -> list[Alert]:
            alerts = (Alert.model_validate_json(r.value) for r in records)
            return [a for a in alerts if a.patient_id == patient]

        return mine(self.records("alerts", lambda rs: len(mine(rs)) >= count))

    def consumed(self) -> float:
        _, text = self.worker.get("/metrics")
        for line in str(text).splitlines():
            if line.startswith("monitor_results_consumed_total "):
                return float(line.split()[-1])
        raise AssertionError("monitor_results_consumed_total not exported")

    def wait_consumed(self, at_least: float) -> None:
        deadline = time.monotonic() + 60
        while self.consumed() < at_least:
            assert time.monotonic() < deadline, "the worker did not consume the messages"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def feeds(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Feeds]:
    name = f"feeds-{int(time.time() * 1000) % 10**8}"
    root: Path = tmp_path_factory.mktemp("feeds")
    worker = WorkerProcess(
        "feeds",
        broker.url,
        root / "data",
        isolated_env(name),
        log_dir=root,
    )
    worker.start()
    try:
        worker.wait_ready()
        yield Feeds(broker, name, worker)
    finally:
        worker.stop()


def result(
    patient: str, result_id: str, hours: float, **values: tuple[float, str]
) -> dict[str, Any]:
    return {
        "result_id": result_id,
        "patient_id": patient,
        "collected_at": (T0 + timedelta(hours=hours)).isoformat(),
        "status": "final",
        "sex": "female",
        "components": {a: {"value": v, "unit": u} for a, (v, u) in values.items()},
    }


def observation(patient: str, specimen: str, code: str, value: float, unit: str) -> bytes:
    """A lone US Core-style laboratory Observation of one analyte of a specimen."""
    return json.dumps(
        {
            "resourceType": "Observation",
            "id": f"{specimen}-{code}",
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "laboratory",
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{patient}"},
            "specimen": {"reference": f"Specimen/{specimen}"},
            "effectiveDateTime": T0.isoformat(),
            "valueQuantity": {
                "value": value,
                "unit": unit,
                "system": "http://unitsofmeasure.org",
                "code": unit,
            },
        }
    ).encode()


def test_hl7v2_results_and_a_correction_become_alerts(feeds: Feeds) -> None:
    patient = "HL7-PATIENT-1"
    low = result(patient, "ACC-1", 0, neutrophils=(0.4, "10*9/L"), wbc=(2.5, "10*9/L"))
    feeds.send("hl7v2", to_hl7v2(low))
    corrected = {**low, "status": "corrected"}
    corrected["components"] = {
        "neutrophils": {"value": 2.4, "unit": "10*9/L"},
        "wbc": {"value": 5.0, "unit": "10*9/L"},
    }
    feeds.send("hl7v2", to_hl7v2(corrected))
    alerts = feeds.alerts(patient, 4)
    triples = [(a.condition, a.event, a.grade) for a in alerts]
    assert triples == [
        ("leukopenia", "new", 2),
        ("neutropenia", "new", 4),
        ("leukopenia", "resolved", 0),
        ("neutropenia", "resolved", 0),
    ]
    assert {a.result_id for a in alerts} == {"ACC-1"}


def test_fhir_observations_of_one_specimen_merge_into_one_result(feeds: Feeds) -> None:
    patient = "FHIR-PATIENT-1"
    parts = [
        observation(patient, "SPEC-9", "6690-2", 2.5, "10*3/uL"),
        observation(patient, "SPEC-9", "777-3", 40, "10*3/uL"),
        observation(patient, "SPEC-9", "718-7", 9.0, "g/dL"),
    ]
    for part in parts:
        feeds.send("fhir", part)
    feeds.send("fhir", parts[1])  # a redelivered part adds nothing
    alerts = feeds.alerts(patient, 4)
    pancy = [a for a in alerts if a.condition == "pancytopenia"]
    assert [(a.event, a.grade) for a in pancy] == [("new", 3)]
    assert pancy[0].result_id == "SPEC-9"
    assert len(alerts) == 4  # leukopenia, thrombocytopenia, anemia, pancytopenia, once each


def test_fhir_diagnostic_report_becomes_alerts(feeds: Feeds) -> None:
    patient = "FHIR-PATIENT-2"
    report = result(patient, "REP-1", 0, platelets=(20, "10*9/L"))
    feeds.send("fhir", to_fhir(report))
    (alert,) = feeds.alerts(patient, 1)
    assert (alert.condition, alert.event, alert.grade) == ("thrombocytopenia", "new", 4)


def test_treatments_and_temperatures_give_nadir_context_and_febrile_neutropenia(
    feeds: Feeds,
) -> None:
    patient = "CONTEXT-PATIENT-1"
    before = feeds.consumed()
    dose = {
        "event_id": "DOSE-1",
        "patient_id": patient,
        "kind": "chemotherapy",
        "given_at": (T0 - timedelta(days=10)).isoformat(),
    }
    feeds.send("treatments", json.dumps(dose).encode(), patient.encode())
    feeds.wait_consumed(before + 1)  # feeds are separate topics: make the order explicit
    low = result(patient, "CTX-R1", 0, neutrophils=(0.6, "10*9/L"))
    feeds.send("results", json.dumps(low).encode(), patient.encode())
    (neutro,) = feeds.alerts(patient, 1)
    assert (neutro.condition, neutro.days_since_chemo, neutro.in_nadir_window) == (
        "neutropenia",
        10,
        True,
    )
    temperature = {
        "resourceType": "Observation",
        "id": "TEMP-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": (T0 + timedelta(hours=3)).isoformat(),
        "valueQuantity": {
            "value": 38.8,
            "unit": "C",
            "system": "http://unitsofmeasure.org",
            "code": "Cel",
        },
    }
    feeds.send("vitals", json.dumps(temperature).encode())  # not keyed: repartitioned
    alerts = feeds.alerts(patient, 2)
    fn = alerts[-1]
    assert (fn.condition, fn.event, fn.grade, fn.severity) == (
        "febrile_neutropenia",
        "new",
        3,
        "critical",
    )
    assert fn.temperature_c == 38.8
    assert fn.result_id == "CTX-R1"


@pytest.mark.parametrize(
    ("feed", "value", "code"),
    [
        (
            "hl7v2",
            b"MSH|^~\\&|LAB|X|MON|Y|20261110080000+0000||ORU^R01|1|P|2.5.1\rPID|1\r",
            "unmappable",
        ),
        ("hl7v2", b"\x00\x01 not hl7 at all", "unmappable"),
        ("fhir", b'{"resourceType": "Patient", "id": "x"}', "unmappable"),
        ("fhir", b"{not json", "unmappable"),
        (
            "vitals",
            b'{"observation_id": "v", "patient_id": "P", '
            b'"measured_at": "2026-11-10T08:00:00Z", "temperature": 60}',
            "schema",
        ),
        (
            "treatments",
            b'{"event_id": "e", "patient_id": "P", "kind": "aspirin", '
            b'"given_at": "2026-11-10T08:00:00Z"}',
            "schema",
        ),
    ],
)
def test_malformed_feed_messages_are_dead_lettered_and_the_feed_goes_on(
    feeds: Feeds, feed: str, value: bytes, code: str
) -> None:
    feeds.send(feed, value, b"BAD-KEY")
    topic = feeds.topics[feed]

    def mine(records: list[Any]) -> list[Any]:
        return [
            r
            for r in records
            if r.value == value and header(r, "dlq.source_topic") == topic.encode()
        ]

    (dead,) = mine(feeds.records("dlq", lambda rs: len(mine(rs)) >= 1))
    assert header(dead, "dlq.code") == code.encode()
    assert header(dead, "dlq.reason")
    patient = f"AFTER-{feed.upper()}-{code}"
    follow_up = result(patient, f"OK-{feed}-{len(value)}", 0, platelets=(30, "10*9/L"))
    if feed == "hl7v2":
        feeds.send("hl7v2", to_hl7v2(follow_up), b"BAD-KEY")
    elif feed == "fhir":
        feeds.send("fhir", to_fhir(follow_up), b"BAD-KEY")
    else:
        feeds.send("results", json.dumps(follow_up).encode(), b"BAD-KEY")
    (alert,) = feeds.alerts(patient, 1)
    assert alert.condition == "thrombocytopenia"


def test_a_masked_row_is_dead_lettered_and_the_readable_rows_alert(feeds: Feeds) -> None:
    # Issue 9: an analyzer mask on the differential no longer discards the panel.
    value = "\r".join(
        [
            "MSH|^~\\&|XN|LAB|MON|HOSP|20261110083000+0000||ORU^R01|ROWS1|P|2.5.1",
            "PID|1||FEED-ROWS^^^HOSP^MR||TEST^PAT||19600101|F",
            "OBR|1|ORD1|SPC-ROWS-1|58410-2^CBC panel^LN|||202611100800+0000",
            "OBX|1|NM|6690-2^WBC^LN||0.3|10*9/L|4.0-10.0|LL|||F",
            "OBX|2|NM|770-8^NEU%^LN||**.*|%|50-70||||F",
            "OBX|3|NM|777-3^PLT^LN||12|10*3/uL|150-400|LL|||F",
        ]
    ).encode()
    feeds.send("hl7v2", value)
    alerts = feeds.alerts("FEED-ROWS", 2)
    assert sorted((a.condition, a.grade) for a in alerts) == [
        ("leukopenia", 4),
        ("thrombocytopenia", 4),
    ]

    def mine(records: list[Any]) -> list[Any]:
        return [r for r in records if r.value == value]

    (dead,) = mine(feeds.records("dlq", lambda rs: len(mine(rs)) >= 1))
    assert header(dead, "dlq.code") == b"rows_rejected"
    assert header(dead, "dlq.reason") == (
        b"1 rows rejected, 2 read: OBR 1, OBX 2: OBX-5 is not a number (OBX-2 is NM)"
    )
