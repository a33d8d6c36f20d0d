"""Retractions as the feeds send them: HL7 OBX-11 W/D rows and FHIR entered-in-error."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from monitor.adapters.fhir import parse_fhir
from monitor.adapters.hl7v2 import parse_oru
from monitor.stream.replay import replay_messages

FHIR_DATA = Path(__file__).parents[2] / "data" / "fhir"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def oru(*obx: str, control: str = "C1") -> bytes:
    return "\r".join([
        f"MSH|^~\\&|LIS|LAB|CBCMON|ONC|20261120091500+0100||ORU^R01|{control}|P|2.5.1",
        "PID|1||MRN-51^^^HOSP^MR||ROE^ANN||19580101|F",
        "OBR|1|ORD-77|SP-77|58410-2^CBC panel^LN|||202611200815+0100",
        *obx,
    ]).encode()  # fmt: skip


ANC_F = "OBX|1|NM|751-8^Neutrophils^LN||0.3|10*9/L|1.8-7.7|LL|||F"
PLT_F = "OBX|2|NM|777-3^Platelets^LN||210|10*9/L|150-400||||F"
ANC_W = "OBX|1|NM|751-8^Neutrophils^LN||0.3|10*9/L|1.8-7.7|LL|||W"
PLT_W = "OBX|2|NM|777-3^Platelets^LN||210|10*9/L|150-400||||W"


def test_a_row_posted_as_wrong_withdraws_its_analyte() -> None:
    (result,) = parse_oru(oru(ANC_W, PLT_F))
    assert result.status == "corrected"
    assert result.retracted == ["neutrophils"]
    assert set(result.components) == {"platelets"}


def test_every_row_wrong_or_deleted_retracts_the_specimen() -> None:
    (result,) = parse_oru(oru(ANC_W, PLT_W.replace("||||W", "||||D")))
    assert (result.status, result.components) == ("retracted", {})
    assert result.retracted == ["neutrophils", "platelets"]


def test_a_new_row_for_the_analyte_replaces_the_wrong_one() -> None:
    corrected = "OBX|3|NM|751-8^Neutrophils^LN||2.2|10*9/L|1.8-7.7||||C"
    (result,) = parse_oru(oru(ANC_W, corrected))
    assert result.retracted == []
    assert result.components["neutrophils"].value == 2.2


def test_a_wrong_row_of_another_test_is_ignored() -> None:
    glucose = "OBX|3|NM|2345-7^Glucose^LN||5.5|mmol/L|||||W"
    (result,) = parse_oru(oru(ANC_F, glucose))
    assert result.retracted == []
    assert result.status == "final"


@dataclass(frozen=True)
class Message:
    topic: str
    value: bytes


def test_hl7_final_then_posted_as_wrong_closes_the_episode_end_to_end() -> None:
    report = replay_messages(
        [Message("hl7v2", oru(ANC_F, PLT_F)), Message("hl7v2", oru(ANC_W, PLT_W, control="C2"))],
        clock=lambda: NOW,
    )
    assert [(a.condition, a.event, a.grade) for a in report.alerts] == [
        ("neutropenia", "new", 4),
        ("neutropenia", "retracted", 0),
    ]
    assert report.alerts[0].dedup_key == report.alerts[1].dedup_key
    assert report.states["MRN-51"].history == []


def test_fhir_final_then_entered_in_error_closes_the_episode_end_to_end() -> None:
    anc = json.loads((FHIR_DATA / "uscore_neutrophils.json").read_text())
    anc["valueQuantity"]["value"] = 0.2
    wrong = {**anc, "status": "entered-in-error"}
    (first,) = parse_fhir(json.dumps(anc).encode())
    report = replay_messages(
        [Message("fhir", json.dumps(anc).encode()), Message("fhir", json.dumps(wrong).encode())],
        clock=lambda: NOW,
    )
    assert [(a.condition, a.event) for a in report.alerts] == [
        ("neutropenia", "new"),
        ("neutropenia", "retracted"),
    ]
    assert report.states[first.patient_id].history == []
