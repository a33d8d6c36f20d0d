"""The simulator's HL7 v2 and FHIR encodings read back by the monitor's own adapters.

For every simulated result (several cohorts, every lab's units, lab lower limits, percent
differentials, partial panels, preliminary and corrected versions, zones east and west of UTC),
``parse_oru(to_hl7v2(r))`` and ``parse_fhir(to_fhir(r))`` must give back the result the canonical
JSON gives: same patient, specimen, instant, status, sex, and component values, units and lower
limits (a unit may only be re-spelled to an equivalent UCUM code), hence the same canonical
values in the detector.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from monitor.adapters.fhir import parse_fhir
from monitor.adapters.hl7v2 import parse_oru
from monitor.adapters.loinc import LOINC
from monitor.clinical.analytes import Analyte
from monitor.clinical.history import entry_from_result
from monitor.clinical.model import CBCResult
from monitor.clinical.units import UNITS, factor, to_canonical
from monitor.sim.checks import clean_results
from monitor.sim.cohort import CohortSpec, simulate_cohort
from monitor.sim.encodings import LOINC_OF, UCUM_OF, loinc_code, ucum
from monitor.sim.fhir_encoding import to_fhir
from monitor.sim.hl7v2_encoding import to_hl7v2
from monitor.sim.messages import SimMessage

Result = dict[str, Any]
Encoder = Callable[..., bytes]
Parser = Callable[[bytes], list[CBCResult]]

FORMATS: dict[str, tuple[Encoder, Parser]] = {
    "hl7v2": (to_hl7v2, parse_oru),
    "fhir": (to_fhir, parse_fhir),
}

EXAMPLE: Result = {
    "result_id": "LAB-2026-000123",
    "patient_id": "MRN-0042",
    "collected_at": "2026-11-20T08:15:00-05:00",
    "status": "final",
    "sex": "female",
    "components": {
        "hemoglobin": {"value": 9.1, "unit": "g/dL", "lln": 12.0},
        "wbc": {"value": 2.1, "unit": "10^9/L", "lln": 4},
        "neutrophils": {"value": 0.8, "unit": "10*3/uL"},
        "lymphocytes": {"value": 900, "unit": "/uL", "lln": 1000},
        "platelets": {"value": 95, "unit": "Thou/mcL"},
        "rbc": {"value": 3.5, "unit": "10^12/L"},
        "hematocrit": {"value": 0.29, "unit": "L/L"},
        "neutrophils_pct": {"value": 38, "unit": "%"},
        "bands_pct": {"value": 2, "unit": "%"},
        "lymphocytes_pct": {"value": 20, "unit": "%"},
        "mcv": {"value": 88.4, "unit": "fL"},
    },
    "context": {"ward": "oncology-4b", "last_chemo_at": "2026-11-10T00:00:00Z"},
}


@pytest.fixture(scope="module")
def cohort_results() -> list[Result]:
    """Every version of every simulated result (not only the authoritative one), three cohorts."""
    out: list[Result] = []
    seen: set[bytes] = set()
    for seed in (7, 8, 21):
        messages = simulate_cohort(CohortSpec(seed=seed, patients=30, days=30, context=False))
        for message in messages:
            payload = message.result_json
            if message.kind == "malformed" or payload is None or payload in seen:
                continue
            seen.add(payload)
            out.append(json.loads(payload))
    return out


def canonical_readings(result: CBCResult) -> dict[Analyte, tuple[float, float | None, bool]]:
    """What the detector works with: canonical value, canonical lower limit, derived or not."""
    entry = entry_from_result(result)
    return {
        analyte: (
            reading.value,
            None if reading.lln is None else to_canonical(analyte, reading.lln, reading.unit),
            reading.derived,
        )
        for analyte, reading in entry.readings.items()
    }


def assert_same_result(parsed: CBCResult, expected: CBCResult) -> None:
    assert parsed.patient_id == expected.patient_id
    assert parsed.result_id == expected.result_id
    assert parsed.collected_at == expected.collected_at  # the same instant
    assert parsed.collected_at.utcoffset() == expected.collected_at.utcoffset()
    assert parsed.status == expected.status
    assert parsed.sex == expected.sex
    assert parsed.partial is False
    assert set(parsed.components) == set(expected.components)
    for analyte, want in expected.components.items():
        got = parsed.components[analyte]
        assert got.value == want.value, analyte
        assert got.lln == want.lln, analyte
        assert got.unit in {want.unit, ucum(want.unit)}, (analyte, got.unit, want.unit)
        assert factor(analyte, got.unit) == factor(analyte, want.unit), analyte
    assert canonical_readings(parsed) == canonical_readings(expected)


def round_trip(fmt: str, result: Result) -> CBCResult:
    encode, parse = FORMATS[fmt]
    parsed = parse(encode(result))
    assert len(parsed) == 1
    return parsed[0]


# --- the whole simulated cohort -------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_simulated_result_round_trips(fmt: str, cohort_results: list[Result]) -> None:
    assert len(cohort_results) > 1000
    for result in cohort_results:
        assert_same_result(round_trip(fmt, result), CBCResult.model_validate(result))


def test_the_cohort_exercises_what_the_encodings_must_carry(cohort_results: list[Result]) -> None:
    statuses = {r["status"] for r in cohort_results}
    assert statuses == {"final", "corrected", "preliminary"}
    assert {r["sex"] for r in cohort_results} == {"female", "male", None}
    offsets = {datetime.fromisoformat(r["collected_at"]).utcoffset() for r in cohort_results}
    assert timedelta(0) in offsets
    assert any(o is not None and o < timedelta(0) for o in offsets)
    assert any(o is not None and o > timedelta(0) for o in offsets)
    units = {c["unit"] for r in cohort_results for c in r["components"].values()}
    assert {"K/uL", "x10E3/uL", "/uL", "cells/uL", "Thou/mcL", "G/L", "mmol/L", "g/L"} <= units
    assert any("lln" in c for r in cohort_results for c in r["components"].values())
    shapes = {tuple(r["components"]) for r in cohort_results}
    assert ("hemoglobin",) in shapes


def test_hl7_and_fhir_messages_in_a_cohort_encode_their_canonical_result() -> None:
    messages = simulate_cohort(CohortSpec(patients=20, days=25))
    by_topic: dict[str, list[SimMessage]] = {}
    for message in messages:
        by_topic.setdefault(message.topic, []).append(message)
    assert {"results", "hl7v2", "fhir"} <= set(by_topic)
    for fmt in ("hl7v2", "fhir"):
        _, parse = FORMATS[fmt]
        for message in by_topic[fmt]:
            assert message.canonical is not None
            canonical = CBCResult.model_validate_json(message.canonical)
            (parsed,) = parse(message.value)
            assert_same_result(parsed, canonical)
            assert message.key == canonical.patient_id.encode()
    assert all(m.canonical is None for m in by_topic["results"])


# --- single messages ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("status", ["final", "corrected", "preliminary"])
@pytest.mark.parametrize("sex", ["female", "male", None])
def test_example_round_trips(fmt: str, status: str, sex: str | None) -> None:
    result = EXAMPLE | {"status": status, "sex": sex}
    assert_same_result(round_trip(fmt, result), CBCResult.model_validate(result))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_hemoglobin_in_mmol_per_litre_and_a_zone_east_of_utc(fmt: str) -> None:
    result = EXAMPLE | {
        "collected_at": "2026-11-20T08:15:00+05:30",
        "components": {"hemoglobin": {"value": 5.6, "unit": "mmol/L", "lln": 7.4}},
    }
    assert_same_result(round_trip(fmt, result), CBCResult.model_validate(result))


def test_hl7v2_message_structure() -> None:
    message = to_hl7v2(EXAMPLE, sent_at=datetime(2026, 11, 20, 14, 2, 9, tzinfo=UTC))
    assert b"\n" not in message
    segments = message.decode().rstrip("\r").split("\r")
    names = [s.split("|")[0] for s in segments]
    assert names[:4] == ["MSH", "PID", "PV1", "OBR"]
    assert set(names[4:]) == {"OBX"}
    msh = segments[0].split("|")
    assert msh[8] == "ORU^R01^ORU_R01"  # MSH-9 (MSH-1 is the separator itself)
    assert msh[11] == "2.5.1"
    assert msh[6] == "20261120140209+0000"
    pid = segments[1].split("|")
    assert pid[3].split("^")[0] == "MRN-0042"
    assert pid[8] == "F"
    obr = segments[3].split("|")
    assert obr[3] == "LAB-2026-000123"
    assert obr[7] == "20261120081500-0500"
    assert obr[25] == "F"
    obx = {s.split("|")[3].split("^")[0]: s.split("|") for s in segments[4:]}
    assert set(obx) == {LOINC_OF[a] for a in EXAMPLE["components"]}
    hgb = obx["718-7"]
    assert (hgb[2], hgb[5], hgb[6].split("^")[0], hgb[11]) == ("NM", "9.1", "g/dL", "F")
    assert hgb[7].startswith("12-") or hgb[7].startswith("12.0-")
    # A unit holding an HL7 delimiter goes out as its UCUM code; others as the lab spells them.
    assert obx["6690-2"][6].split("^")[0] == "10*9/L"
    assert obx["777-3"][6].split("^")[0] == "Thou/mcL"
    assert obx["731-0"][7].startswith("1000-")


def test_hl7v2_status_and_unknown_sex() -> None:
    for status, code in (("final", "F"), ("corrected", "C"), ("preliminary", "P")):
        segments = to_hl7v2(EXAMPLE | {"status": status, "sex": None}).decode().split("\r")
        obr = next(s for s in segments if s.startswith("OBR|")).split("|")
        assert obr[25] == code
        assert all(s.split("|")[11] == code for s in segments if s.startswith("OBX|"))
        assert next(s for s in segments if s.startswith("PID|")).split("|")[8] == "U"


def test_hl7v2_escapes_delimiters_in_text() -> None:
    result = EXAMPLE | {"result_id": "ACC|7^A&B~C\\D", "patient_id": "MRN^42"}
    parsed = round_trip("hl7v2", result)
    assert (parsed.result_id, parsed.patient_id) == ("ACC|7^A&B~C\\D", "MRN^42")


def test_fhir_report_structure() -> None:
    report = json.loads(to_fhir(EXAMPLE, sent_at=datetime(2026, 11, 20, 14, 2, tzinfo=UTC)))
    assert report["resourceType"] == "DiagnosticReport"
    assert report["status"] == "final"
    assert report["subject"] == {"reference": "Patient/MRN-0042"}
    assert report["effectiveDateTime"] == "2026-11-20T08:15:00-05:00"
    assert report["identifier"][0]["value"] == "LAB-2026-000123"
    assert report["issued"] == "2026-11-20T14:02:00+00:00"
    contained = {r["id"]: r for r in report["contained"]}
    assert contained["pat"]["gender"] == "female"
    assert contained["spec"]["accessionIdentifier"]["value"] == "LAB-2026-000123"
    observations = [r for r in report["contained"] if r["resourceType"] == "Observation"]
    assert [{"reference": f"#{o['id']}"} for o in observations] == report["result"]
    for observation in observations:
        quantity = observation["valueQuantity"]
        assert quantity["system"] == "http://unitsofmeasure.org"
        assert quantity["code"] in set(UCUM_OF.values())
        assert observation["code"]["coding"][0]["system"] == "http://loinc.org"
        assert observation["code"]["coding"][0]["code"] in LOINC
        assert observation["status"] == "final"
    platelets = next(o for o in observations if o["code"]["coding"][0]["code"] == "777-3")
    assert platelets["valueQuantity"] == {
        "value": 95,
        "unit": "Thou/mcL",
        "system": "http://unitsofmeasure.org",
        "code": "10*3/uL",
    }


def test_every_ucum_code_is_a_known_equivalent_spelling() -> None:
    for analyte, table in UNITS.items():
        for unit in table:
            if unit in UCUM_OF:
                assert factor(analyte, ucum(unit)) == factor(analyte, unit), (analyte, unit)


def test_loinc_codes_come_from_the_adapters_table() -> None:
    for analyte, code in LOINC_OF.items():
        assert LOINC[code].analyte == Analyte(analyte)
    assert LOINC[loinc_code("hemoglobin", "mmol/L")].analyte is Analyte.HEMOGLOBIN


def test_a_timestamp_without_a_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        to_hl7v2(EXAMPLE | {"collected_at": "2026-11-20T08:15:00"})


def test_fractional_seconds_keep_the_instant_in_fhir() -> None:
    moment = datetime(2026, 11, 20, 8, 15, 0, 250000, tzinfo=timezone(timedelta(hours=1)))
    result = EXAMPLE | {"collected_at": moment.isoformat()}
    assert round_trip("fhir", result).collected_at == moment
    assert round_trip("hl7v2", result).collected_at == moment


def test_clean_results_read_hl7_and_fhir_patients_through_their_canonical_form() -> None:
    mixed = simulate_cohort(CohortSpec(patients=15, days=25))
    plain = simulate_cohort(CohortSpec(patients=15, days=25, hl7v2_share=0, fhir_share=0))
    assert clean_results(mixed) == clean_results(plain)
