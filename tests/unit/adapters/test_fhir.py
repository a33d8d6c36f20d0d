"""FHIR R4 JSON adapter: fixtures in tests/data/fhir are shaped after the FHIR R4 CBC report
example and the US Core laboratory result examples, with values of our own."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.adapters.errors import AdapterError
from monitor.adapters.fhir import looks_like_fhir, parse_fhir, read_fhir
from monitor.clinical.analytes import Analyte
from monitor.clinical.model import CBCResult

DATA = Path(__file__).resolve().parents[2] / "data" / "fhir"
UCUM = "http://unitsofmeasure.org"

Doc = dict[str, Any]

# Identifiers, values and dates in the fixtures that no error message may repeat.
SENSITIVE = (
    "pt-7f3a91",
    "MRN-448812",
    "MRN-550917",
    "pt-20415",
    "ACC-2026",
    "sp-88120",
    "9.46",
    "0.87",
    "8.37",
    "0.413",
    "1.93",
    "10.42",
    "3.12",
    "2026-11",
)


def load(name: str) -> Doc:
    document: Doc = json.loads((DATA / f"{name}.json").read_text())
    return document


def raw(document: Doc) -> bytes:
    return json.dumps(document).encode()


def parse(document: Doc, **kwargs: Any) -> list[CBCResult]:
    return parse_fhir(raw(document), **kwargs)


def one(document: Doc, **kwargs: Any) -> CBCResult:
    results = parse(document, **kwargs)
    assert len(results) == 1
    return results[0]


def collection(*resources: Doc, kind: str = "collection") -> Doc:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {"fullUrl": f"urn:uuid:0000-{i}", "resource": r} for i, r in enumerate(resources)
        ],
    }


def values(result: CBCResult) -> dict[str, float]:
    return {str(a): c.value for a, c in result.components.items()}


# --- Shapes of real messages ---------------------------------------------------------------


def test_report_with_contained_observations_and_patient() -> None:
    result = one(load("cbc_report_contained"))
    assert result.result_id == "ACC-20261102-0042"  # the report's identifier: no specimen sent
    assert result.patient_id == "MRN-448812"  # contained Patient: its MR identifier
    assert result.sex == "female"
    assert result.status == "final"
    assert result.partial is False
    assert result.collected_at == datetime(2026, 11, 2, 6, 45, tzinfo=UTC)
    assert values(result) == {
        "hemoglobin": 8.37,
        "rbc": 3.21,
        "hematocrit": 27.4,
        "mcv": 85.4,
        "platelets": 93.0,
        "wbc": 2.61,
        "neutrophils_pct": 15.8,
        "neutrophils": 0.413,
        "lymphocytes": 1.62,
    }  # MCH (785-6) is not a CBC component the monitor reads: ignored
    rbc = result.components[Analyte.RBC]
    assert (rbc.unit, rbc.lln) == ("10*12/L", 4.2)  # UCUM code preferred over unit x10*12/L
    assert result.components[Analyte.HEMATOCRIT].unit == "%"  # unit without a system
    assert result.components[Analyte.NEUTROPHILS].lln == 1.8
    assert result.components[Analyte.NEUTROPHILS_PCT].lln is None


def test_uscore_observation_alone_is_partial_with_derived_id() -> None:
    result = one(load("uscore_hemoglobin"))
    assert result.partial is True
    assert result.patient_id == "pt-7f3a91"
    assert result.sex is None
    assert result.result_id.startswith("fhir-")
    assert len(result.result_id) == len("fhir-") + 20
    component = result.components[Analyte.HEMOGLOBIN]
    assert (component.value, component.unit, component.lln) == (9.46, "g/dL", 11.6)


def test_lone_observations_of_one_draw_share_their_result_id() -> None:
    hgb = one(load("uscore_hemoglobin"))
    anc = one(load("uscore_neutrophils"))
    assert anc.partial is True
    assert hgb.result_id == anc.result_id
    assert anc.components[Analyte.NEUTROPHILS].unit == "10*3/uL"  # code, not the unit K/uL


def test_derived_id_depends_on_the_instant_not_its_spelling() -> None:
    base = one(load("uscore_hemoglobin")).result_id
    same = load("uscore_neutrophils")
    same["effectiveDateTime"] = "2026-11-03T11:30:00Z"  # 06:30 -05:00
    assert one(same).result_id == base
    later = load("uscore_neutrophils")
    later["effectiveDateTime"] = "2026-11-03T06:31:00-05:00"
    other_patient = load("uscore_neutrophils")
    other_patient["subject"] = {"reference": "Patient/pt-other"}
    assert one(later).result_id != base
    assert one(other_patient).result_id != base


@pytest.mark.parametrize("kind", ["collection", "searchset", "batch", "transaction"])
def test_loose_observations_of_one_specimen_in_a_bundle_merge(kind: str) -> None:
    result = one(collection(load("uscore_hemoglobin"), load("uscore_neutrophils"), kind=kind))
    assert set(values(result)) == {"hemoglobin", "neutrophils"}
    assert result.partial is True  # no report says which results the specimen has


def test_transaction_bundle_resolves_urn_uuid_references() -> None:
    result = one(load("transaction_bundle"))
    assert result.result_id == "ACC-20261104-0107"  # Specimen.accessionIdentifier
    assert result.patient_id == "MRN-550917"  # Patient without id: its MR identifier
    assert result.sex == "male"
    assert result.partial is False
    assert values(result) == {
        "wbc": 1.93,
        "hemoglobin": 10.42,
        "platelets": 41.0,
        "neutrophils": 0.96,
        "bands_pct": 4.0,
    }


def test_message_bundle_with_header_first() -> None:
    document = load("message_bundle")
    assert document["entry"][0]["resource"]["resourceType"] == "MessageHeader"
    result = one(document)
    assert result.result_id == "sp-88120"
    assert result.patient_id == "pt-20415"
    assert result.sex == "female"  # the Patient entry of the bundle
    assert result.partial is False
    # glucose sits in the bundle but is no CBC component
    assert values(result) == {"wbc": 3.12, "hemoglobin": 11.27, "platelets": 128.0}


def test_report_missing_a_listed_result_is_partial() -> None:
    document = load("message_bundle")
    document["entry"] = [
        e for e in document["entry"] if e["resource"].get("id") not in ("o-plt", "o-glu")
    ]
    result = one(document)
    assert result.partial is True
    assert set(values(result)) == {"wbc", "hemoglobin"}


def test_report_missing_a_contained_result_is_partial() -> None:
    document = load("cbc_report_contained")
    document["contained"] = [c for c in document["contained"] if c["id"] != "h6"]
    result = one(document)
    assert result.partial is True
    assert Analyte.PLATELETS not in result.components


def test_report_without_result_list_reads_its_contained_observations() -> None:
    document = load("cbc_report_contained")
    del document["result"]
    result = one(document)
    assert len(result.components) == 9
    assert result.partial is False


def test_report_not_coded_as_a_cbc_panel_is_partial() -> None:
    # e.g. a manual differential sent as its own report for a specimen whose CBC came before
    document = load("cbc_report_contained")
    document["code"] = {"coding": [{"system": "urn:lis", "code": "DIFF"}], "text": "Manual diff"}
    assert one(document).partial is True
    del document["code"]
    assert one(document).partial is True


def test_versioned_and_absolute_references_resolve() -> None:
    document = load("message_bundle")
    report = document["entry"][1]["resource"]
    report["result"] = [
        {"reference": "Observation/o-wbc/_history/2"},
        {"reference": "http://lab.example.org/fhir/Observation/o-hgb"},
        {"reference": "Observation/o-plt"},
    ]
    assert one(document).partial is False


def test_panel_observation_members_are_expanded() -> None:
    hgb = load("uscore_hemoglobin")
    anc = load("uscore_neutrophils")
    panel = {
        "resourceType": "Observation",
        "id": "panel-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        "subject": {"reference": "Patient/pt-7f3a91"},
        "effectiveDateTime": "2026-11-03T06:30:00-05:00",
        "hasMember": [{"reference": "Observation/hgb-7731"}, {"reference": "Observation/anc-7732"}],
    }
    report = {
        "resourceType": "DiagnosticReport",
        "id": "rep-9",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "57021-8"}]},
        "subject": {"reference": "Patient/pt-7f3a91"},
        "result": [{"reference": "Observation/panel-1"}],
    }
    result = one(collection(report, panel, hgb, anc))
    assert result.result_id == "rep-9"
    assert result.partial is False
    assert set(values(result)) == {"hemoglobin", "neutrophils"}


def test_two_specimens_in_one_bundle_give_two_results() -> None:
    first = load("uscore_hemoglobin")
    first["specimen"] = {"reference": "Specimen/s-1"}
    second = load("uscore_neutrophils")
    second["specimen"] = {"identifier": {"value": "s-2"}}
    results = parse(collection(first, second))
    assert [r.result_id for r in results] == ["s-1", "s-2"]


# --- Status, time, subject -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fhir_status", "status"),
    [
        ("final", "final"),
        ("amended", "corrected"),
        ("corrected", "corrected"),
        ("preliminary", "preliminary"),
        ("registered", "preliminary"),
        ("unknown", "preliminary"),
    ],
)
def test_observation_status(fhir_status: str, status: str) -> None:
    document = load("uscore_hemoglobin")
    document["status"] = fhir_status
    assert one(document).status == status


@pytest.mark.parametrize("fhir_status", ["cancelled"])
def test_withdrawn_observations_are_skipped(fhir_status: str) -> None:
    anc = load("uscore_neutrophils")
    anc["status"] = fhir_status
    result = one(collection(load("uscore_hemoglobin"), anc))
    assert set(values(result)) == {"hemoglobin"}
    with pytest.raises(AdapterError, match="no usable CBC observation"):
        parse(anc)


@pytest.mark.parametrize(
    ("fhir_status", "status", "partial"),
    [
        ("final", "final", False),
        ("amended", "corrected", False),
        ("corrected", "corrected", False),
        ("appended", "corrected", False),
        ("preliminary", "preliminary", False),
        ("partial", "preliminary", True),
        ("registered", "preliminary", True),
    ],
)
def test_report_status(fhir_status: str, status: str, partial: bool) -> None:
    document = load("cbc_report_contained")
    document["status"] = fhir_status
    result = one(document)
    assert (result.status, result.partial) == (status, partial)


@pytest.mark.parametrize("fhir_status", ["cancelled"])
def test_withdrawn_report_is_skipped_with_its_results(fhir_status: str) -> None:
    document = load("message_bundle")
    document["entry"][1]["resource"]["status"] = fhir_status
    with pytest.raises(AdapterError, match="no usable CBC observation"):
        parse(document)


# Issue 9 changes entered-in-error from "skipped" to "retracted": the value must leave the
# patient's history, or its episode stays open on a result that never was.


def test_an_observation_entered_in_error_withdraws_its_analyte() -> None:
    anc = load("uscore_neutrophils")
    anc["status"] = "entered-in-error"
    result = one(anc)
    assert (result.status, result.partial, result.components) == ("corrected", True, {})
    assert result.retracted == ["neutrophils"]
    beside = one(collection(load("uscore_hemoglobin"), anc))
    assert set(values(beside)) == {"hemoglobin"}
    assert beside.retracted == ["neutrophils"]


def test_an_observation_entered_in_error_needs_no_value() -> None:
    anc = load("uscore_neutrophils")
    anc["status"] = "entered-in-error"
    del anc["valueQuantity"]
    assert one(anc).retracted == ["neutrophils"]


def test_a_cbc_report_entered_in_error_withdraws_the_whole_specimen() -> None:
    document = load("message_bundle")
    document["entry"][1]["resource"]["status"] = "entered-in-error"
    result = one(document)
    assert (result.status, result.partial, result.components) == ("retracted", False, {})
    assert result.retracted == ["hemoglobin", "platelets", "wbc"]


def test_least_settled_component_status_wins() -> None:
    document = load("cbc_report_contained")
    document["contained"][3]["status"] = "preliminary"
    assert one(document).status == "preliminary"
    document = load("cbc_report_contained")
    document["contained"][3]["status"] = "corrected"
    assert one(document).status == "corrected"


def test_of_two_rows_for_one_analyte_the_settled_one_is_kept() -> None:
    draft = load("uscore_hemoglobin")
    draft["status"] = "preliminary"
    draft["valueQuantity"]["value"] = 9.1
    final = load("uscore_hemoglobin")
    result = one(collection(draft, final))
    assert (result.status, result.components[Analyte.HEMOGLOBIN].value) == ("final", 9.46)


def test_effective_period_start_is_the_collection_time() -> None:
    document = load("uscore_hemoglobin")
    del document["effectiveDateTime"]
    document["effectivePeriod"] = {
        "start": "2026-11-03T06:30:00.250-05:00",
        "end": "2026-11-03T06:35:00-05:00",
    }
    assert one(document).collected_at == datetime(2026, 11, 3, 11, 30, 0, 250000, tzinfo=UTC)


def test_nanosecond_fraction_and_missing_seconds_are_read() -> None:
    document = load("uscore_hemoglobin")
    document["effectiveDateTime"] = "2026-11-03T06:30:00.123456789Z"
    assert one(document).collected_at.microsecond == 123456
    document["effectiveDateTime"] = "2026-11-03T06:30Z"
    assert one(document).collected_at == datetime(2026, 11, 3, 6, 30, tzinfo=UTC)


def test_contained_observations_take_subject_and_time_from_the_report() -> None:
    document = load("cbc_report_contained")
    assert "effectiveDateTime" not in document["contained"][1]
    assert "subject" not in document["contained"][1]
    assert one(document).collected_at == datetime(2026, 11, 2, 6, 45, tzinfo=UTC)


def test_subject_identifier_is_the_patient_id() -> None:
    document = load("uscore_hemoglobin")
    document["subject"] = {"identifier": {"system": "urn:mrn", "value": "MRN-1234"}}
    assert one(document).patient_id == "MRN-1234"


@pytest.mark.parametrize(
    ("gender", "sex"),
    [
        ("male", "male"),
        ("female", "female"),
        ("Female", "female"),
        ("other", None),
        ("unknown", None),
    ],
)
def test_contained_patient_gender(gender: str, sex: str | None) -> None:
    document = load("cbc_report_contained")
    document["contained"][0]["gender"] = gender
    assert one(document).sex == sex


# --- Codes, units, limits ------------------------------------------------------------------


def test_non_cbc_observation_is_ignored() -> None:
    glucose = load("message_bundle")["entry"][-1]["resource"]
    assert glucose["code"]["coding"][0]["code"] == "2345-7"
    result = one(collection(glucose, load("uscore_hemoglobin")))
    assert set(values(result)) == {"hemoglobin"}


def test_observation_without_value_is_left_out_and_reported() -> None:
    # Issue 9: it was skipped silently; it is now a rejected row, and the rest is read.
    anc = load("uscore_neutrophils")
    del anc["valueQuantity"]
    anc["dataAbsentReason"] = {"coding": [{"code": "error"}]}
    parsed = read_fhir(json.dumps(collection(load("uscore_hemoglobin"), anc)).encode())
    assert len(parsed.results) == 1
    assert set(values(parsed.results[0])) == {"hemoglobin"}
    assert [(r.where, r.cause) for r in parsed.rejections] == [("entry[1].resource", "no_value")]


def test_non_ucum_system_uses_the_unit() -> None:
    document = load("uscore_neutrophils")
    document["valueQuantity"] = {"value": 870, "unit": "cells/uL", "system": "urn:lis", "code": "X"}
    del document["referenceRange"]
    component = one(document).components[Analyte.NEUTROPHILS]
    assert (component.value, component.unit, component.lln) == (870.0, "cells/uL", None)


def test_lln_only_in_the_value_unit_or_an_equivalent_spelling() -> None:
    document = load("uscore_neutrophils")
    document["referenceRange"][0]["low"] = {"value": 1.5, "unit": "10^9/L"}
    assert one(document).components[Analyte.NEUTROPHILS].lln == 1.5
    document["referenceRange"][0]["low"] = {"value": 1.4}
    assert one(document).components[Analyte.NEUTROPHILS].lln == 1.4
    document["referenceRange"][0]["low"] = {"value": 1500, "system": UCUM, "code": "/uL"}
    assert one(document).components[Analyte.NEUTROPHILS].lln is None
    document["referenceRange"][0]["low"] = {"value": 1.5, "unit": "furlongs"}
    assert one(document).components[Analyte.NEUTROPHILS].lln is None


def test_greater_than_value_is_kept() -> None:
    document = load("uscore_hemoglobin")
    document["valueQuantity"]["comparator"] = ">"
    assert one(document).components[Analyte.HEMOGLOBIN].value == 9.46


def test_local_codes() -> None:
    document = load("uscore_hemoglobin")
    document["code"] = {
        "coding": [{"system": "http://lab.example.org/codes", "code": "HGB", "display": "Hgb"}]
    }
    with pytest.raises(AdapterError, match="no usable CBC observation"):
        parse(document)
    result = one(document, local_codes={"HGB": Analyte.HEMOGLOBIN})
    assert Analyte.HEMOGLOBIN in result.components


# --- Rejections ----------------------------------------------------------------------------


def mutate(name: str, change: Callable[[Doc], object]) -> bytes:
    document = load(name)
    change(document)
    return raw(document)


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def change(document: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


def _drop(key: str) -> Callable[[Doc], None]:
    return lambda document: document.pop(key)


def _two_patients(document: Doc) -> None:
    document["entry"][5]["resource"]["subject"] = {"reference": "Patient/pt-20416"}


REJECTED: list[tuple[str, bytes, str]] = [
    (
        "date only",
        mutate("uscore_hemoglobin", _set("effectiveDateTime", "2026-11-03")),
        "effectiveDateTime has a date but no time of day",
    ),
    (
        "period date only",
        mutate(
            "uscore_hemoglobin",
            lambda d: (
                d.pop("effectiveDateTime"),
                d.update(effectivePeriod={"start": "2026-11-03"}),
            ),
        ),
        "effectivePeriod.start has a date but no time of day",
    ),
    (
        "no zone",
        mutate("uscore_hemoglobin", _set("effectiveDateTime", "2026-11-03T06:30:00")),
        "effectiveDateTime has no time zone",
    ),
    (
        "bad datetime",
        mutate("uscore_hemoglobin", _set("effectiveDateTime", "2026-13-45T99:00Z")),
        "effectiveDateTime is not a valid date and time",
    ),
    (
        "no effective",
        mutate("uscore_hemoglobin", _drop("effectiveDateTime")),
        "Observation: effective[x] missing",
    ),
    ("no subject", mutate("uscore_hemoglobin", _drop("subject")), "Observation: subject missing"),
    (
        "subject not a patient",
        mutate("uscore_hemoglobin", _set("subject", {"reference": "Group/g1"})),
        "subject is not a Patient",
    ),
    (
        "empty subject",
        mutate("uscore_hemoglobin", _set("subject", {"display": "someone"})),
        "subject has neither reference nor identifier",
    ),
    (
        "contained patient without identifier",
        mutate("cbc_report_contained", _set("contained.0.identifier", [])),
        "subject names no patient id",
    ),
    (
        "hgb code with count unit",
        mutate("uscore_hemoglobin", _set("valueQuantity.code", "10*3/uL")),
        "Observation: code 718-7 (hemoglobin) sent with a unit hemoglobin cannot have",
    ),
    (
        "unknown unit in bundle",
        mutate("transaction_bundle", _set("entry.5.resource.valueQuantity.code", "mmol/L")),
        "entry[5].resource: code 777-3 (platelets) sent with a unit",
    ),
    (
        "unknown unit contained",
        mutate("cbc_report_contained", _set("contained.3.valueQuantity.unit", "L")),
        "DiagnosticReport.contained[3]: code 4544-3 (hematocrit) sent with a unit",
    ),
    (
        "name of another analyte",
        mutate("uscore_hemoglobin", _set("code.coding.0.display", "Platelets [#/volume] in Blood")),
        "718-7 (hemoglobin) sent with the name of platelets",
    ),
    (
        "no unit",
        mutate("uscore_hemoglobin", _set("valueQuantity", {"value": 9.46})),
        "valueQuantity has no unit",
    ),
    (
        "negative value",
        mutate("uscore_hemoglobin", _set("valueQuantity.value", -9.46)),
        "valueQuantity.value is negative",  # issue 9: a rejected row (was the model's error)
    ),
    (
        "value as text",
        mutate("uscore_hemoglobin", _set("valueQuantity.value", "9.46")),
        "Observation.valueQuantity.value",
    ),
    (
        "value as boolean",
        mutate("uscore_hemoglobin", _set("valueQuantity.value", True)),
        "Observation.valueQuantity.value",
    ),
    (
        "coding not a list",
        mutate("uscore_hemoglobin", _set("code.coding", "718-7")),
        "Observation.code.coding",
    ),
    ("no status", mutate("uscore_hemoglobin", _drop("status")), "Observation: status missing"),
    (
        "bad status",
        mutate("uscore_hemoglobin", _set("status", "done")),
        "status is not an Observation status",
    ),
    (
        "bad report status",
        mutate("cbc_report_contained", _set("status", "done")),
        "DiagnosticReport: status is not a DiagnosticReport status",
    ),
    (
        "two patients one specimen",
        mutate("message_bundle", _two_patients),
        "entry[5].resource: subject differs from another observation of its specimen",
    ),
    ("bundle type", mutate("message_bundle", _set("type", "history")), "Bundle.type"),
    ("bundle without type", mutate("message_bundle", _drop("type")), "Bundle.type: missing"),
    (
        "only non-CBC",
        raw(collection(load("message_bundle")["entry"][-1]["resource"])),
        "no usable CBC observation",
    ),
    (
        "unsupported resource",
        raw({"resourceType": "Patient", "id": "pt-20415"}),
        "not an Observation, DiagnosticReport or Bundle",
    ),
    (
        "not JSON (HL7 v2)",
        b"MSH|^~\\&|LIS|LAB|||20261103||ORU^R01|1|P|2.5.1\rPID|||pt-20415",
        "message: not JSON",
    ),
    ("not UTF-8", b'{"resourceType": "Observation", "id": "\xff\xfe"}', "message: not JSON"),
    ("empty", b"", "message: not JSON"),
    ("JSON, no resourceType", b'{"patient": "pt-20415", "hgb": 9.46}', "no resourceType"),
    ("JSON array", b'[{"resourceType": "Observation"}]', "no resourceType"),
    ("resourceType not text", b'{"resourceType": 9.46}', "no resourceType"),
]


@pytest.mark.parametrize(
    ("message", "expected"), [(m, e) for _, m, e in REJECTED], ids=[name for name, _, _ in REJECTED]
)
def test_rejected(message: bytes, expected: str) -> None:
    with pytest.raises(AdapterError) as caught:
        parse_fhir(message)
    assert expected in str(caught.value)


def test_no_error_message_repeats_patient_data_or_values() -> None:
    for name, message, _ in REJECTED:
        with pytest.raises(AdapterError) as caught:
            parse_fhir(message)
        text = str(caught.value)
        leaked = [s for s in SENSITIVE if s in text]
        assert not leaked, f"{name}: {text!r} repeats {leaked}"


def test_codings_naming_different_analytes_are_rejected() -> None:
    document = load("uscore_neutrophils")
    del document["code"]["text"]
    document["code"]["coding"].append({"system": "urn:lis", "code": "W1", "display": "White cells"})
    with pytest.raises(AdapterError) as caught:
        parse(document, local_codes={"W1": Analyte.WBC})
    assert str(caught.value) == "Observation: code.coding names different analytes"


def test_adapter_error_is_a_value_error() -> None:
    assert issubclass(AdapterError, ValueError)


# --- Sniffing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["cbc_report_contained", "uscore_hemoglobin", "transaction_bundle", "message_bundle"],
)
def test_looks_like_fhir(name: str) -> None:
    assert looks_like_fhir((DATA / f"{name}.json").read_bytes())


@pytest.mark.parametrize(
    "message",
    [
        b"MSH|^~\\&|LIS",
        b"{}",
        b'{"resourceType": 5}',
        b'[{"resourceType": "Observation"}]',
        b'{"resourceType": "Observation"',
        b'\xff{"resourceType": "Observation"}',
        b'{"result_id": "r-1", "note": "resourceType"}',
    ],
)
def test_does_not_look_like_fhir(message: bytes) -> None:
    assert not looks_like_fhir(message)


def test_a_value_below_a_limit_is_graded_as_below_it() -> None:
    from monitor.clinical.grading import grade

    def below_half(document: Doc) -> None:
        _set("valueQuantity.comparator", "<")(document)
        _set("valueQuantity.value", 0.5)(document)

    message = mutate("uscore_neutrophils", below_half)
    (result,) = parse_fhir(message)
    component = result.components[Analyte.NEUTROPHILS]
    assert component.value < 0.5
    assert f"{component.value:g}" == "0.5"
    assert grade("neutrophils", component.value, component.unit) == 4
