"""FHIR row-level failure (issue 9, review): one Observation of a Bundle or of a report's
contained resources that cannot be read is a rejected row, and the Observations beside it are
graded; only what identifies the whole message fails the message.

The messages are our own, in the shapes FHIR servers and generators send: a Bundle of
Observations of one specimen, and a DiagnosticReport with contained Observations."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.adapters.errors import ROW_CAUSES, AdapterError
from monitor.adapters.fhir import parse_fhir, read_fhir
from monitor.clinical.analytes import Analyte
from monitor.settings import MonitorSettings
from monitor.stream.replay import replay_messages

Doc = dict[str, Any]
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PATIENT = "MRN-SECRET-4412"
SPECIMEN = "SPC-SECRET-88"
WHEN = "2026-10-02T08:00:00Z"
NOW = datetime(2026, 12, 1, tzinfo=UTC)

# LOINC code and UCUM unit of each analyte an Observation may carry.
CODES = {
    "wbc": ("6690-2", "10*9/L"),
    "anc": ("751-8", "10*9/L"),
    "plt": ("777-3", "10*9/L"),
    "hgb": ("718-7", "g/dL"),
}


def observation(name: str, value: float, *, oid: str = "o") -> Doc:
    code, unit = CODES[name]
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": WHEN,
        "specimen": {"reference": f"Specimen/{SPECIMEN}"},
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def bundle(*resources: Doc) -> Doc:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:e{i}", "resource": r} for i, r in enumerate(resources)],
    }


def raw(document: Doc) -> bytes:
    return json.dumps(document).encode()


def changed(document: Doc, change: Callable[[Doc], object]) -> Doc:
    document = copy.deepcopy(document)
    change(document)
    return document


def _set(key: str, value: Any) -> Callable[[Doc], None]:
    return lambda d: d.update({key: value})


def _set_value(value: Any) -> Callable[[Doc], None]:
    return lambda d: d["valueQuantity"].update(value=value)


def _drop(key: str) -> Callable[[Doc], None]:
    return lambda d: d.pop(key)


# An unusable ANC Observation, as senders get it wrong: (change, cause, words of the reason).
BAD_ROWS: dict[str, tuple[Callable[[Doc], object], str, str]] = {
    "value as text": (_set_value("abc"), "no_value", "valueQuantity.value is not a JSON number"),
    "number as text": (_set_value("0.3"), "no_value", "valueQuantity.value is not a JSON number"),
    "value as boolean": (_set_value(True), "no_value", "valueQuantity.value"),
    "value as object": (_set_value({"v": 1}), "no_value", "valueQuantity.value"),
    "unknown status": (_set("status", "bogus"), "status", "status is not an Observation status"),
    "status missing": (_drop("status"), "status", "status missing"),
    "status not text": (_set("status", 7), "status", "status is not text"),
    "coding not a list": (_set("code", {"coding": "751-8"}), "unreadable", "code.coding"),
    "subject not an object": (_set("subject", ["Patient/x"]), "unreadable", "subject"),
    "date only": (_set("effectiveDateTime", "2026-10-02"), "time", "a date without a time of day"),
    "no zone": (_set("effectiveDateTime", "2026-10-02T08:00:00"), "time", "no time zone"),
    "not a date": (_set("effectiveDateTime", "yesterday"), "time", "is not a FHIR dateTime"),
    "no effective": (_drop("effectiveDateTime"), "time", "effective[x] missing"),
    "no subject": (_drop("subject"), "subject", "subject missing"),
    "subject a group": (_set("subject", {"reference": "Group/g1"}), "subject", "not a Patient"),
}


@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_a_bad_observation_in_a_bundle_is_a_row_and_the_rest_are_graded(kind: str) -> None:
    change, cause, words = BAD_ROWS[kind]
    bad = changed(observation("anc", 0.3, oid="o1"), change)
    parsed = read_fhir(raw(bundle(bad, observation("plt", 5, oid="o2"))))
    assert [(r.where, r.cause) for r in parsed.rejections] == [("entry[0].resource", cause)]
    assert cause in ROW_CAUSES
    assert words in parsed.rejections[0].reason
    (result,) = parsed.results
    assert {a: c.value for a, c in result.components.items()} == {Analyte.PLATELETS: 5}
    assert result.partial
    for secret in (PATIENT, SPECIMEN, "abc", "0.3", "bogus", "2026-10-02", "yesterday"):
        assert secret not in parsed.reason


def test_an_empty_observation_entry_is_a_row() -> None:
    parsed = read_fhir(raw(bundle({"resourceType": "Observation"}, observation("plt", 5))))
    assert [(r.where, r.cause, r.reason) for r in parsed.rejections] == [
        ("entry[0].resource", "status", "status missing")
    ]
    assert parsed.results[0].components[Analyte.PLATELETS].value == 5


def test_the_reviewers_four_bundles_each_keep_their_critical_platelets() -> None:
    bad = [
        changed(observation("anc", 0.3), _set_value("abc")),
        changed(observation("anc", 0.3), _set("status", "bogus")),
        {"resourceType": "Observation"},
        changed(observation("anc", 0.3), _set("effectiveDateTime", "2026-10-02")),
    ]
    for row in bad:
        parsed = read_fhir(raw(bundle(row, observation("plt", 5))))
        assert len(parsed.rejections) == 1
        assert parsed.results[0].components[Analyte.PLATELETS].value == 5


def test_several_bad_rows_are_each_listed_in_entry_order() -> None:
    entries = [
        observation("wbc", 0.3, oid="o0"),
        changed(observation("anc", 0.2, oid="o1"), _set_value("**.*")),
        observation("plt", 5, oid="o2"),
        changed(observation("hgb", 9.1, oid="o3"), _drop("status")),
    ]
    parsed = read_fhir(raw(bundle(*entries)))
    assert [(r.where, r.cause) for r in parsed.rejections] == [
        ("entry[1].resource", "no_value"),
        ("entry[3].resource", "status"),
    ]
    assert set(parsed.results[0].components) == {Analyte.WBC, Analyte.PLATELETS}
    assert parsed.reason.startswith("2 rows rejected, 2 read: entry[1].resource: ")


def test_an_unreadable_observation_that_is_not_a_cbc_row_is_ignored() -> None:
    glucose = {
        "resourceType": "Observation",
        "status": "bogus",
        "code": {"coding": [{"system": LOINC, "code": "2345-7"}]},
        "valueQuantity": {"value": "high"},
    }
    parsed = read_fhir(raw(bundle(glucose, observation("plt", 5))))
    assert parsed.rejections == []
    assert parsed.results[0].components[Analyte.PLATELETS].value == 5


def report_with_contained(*observations: Doc) -> Doc:
    contained: list[Doc] = [
        {"resourceType": "Patient", "id": "p", "identifier": [{"value": PATIENT}]},
    ]
    for i, obs in enumerate(observations):
        inner = {k: v for k, v in obs.items() if k not in ("subject", "specimen")}
        contained.append({**inner, "id": f"r{i}"})
    return {
        "resourceType": "DiagnosticReport",
        "id": "rep",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "58410-2"}]},
        "subject": {"reference": "#p"},
        "effectiveDateTime": WHEN,
        "identifier": [{"value": SPECIMEN}],
        "contained": contained,
        "result": [{"reference": f"#r{i}"} for i in range(len(observations))],
    }


@pytest.mark.parametrize("kind", ["value as text", "unknown status", "coding not a list"])
def test_a_bad_contained_observation_is_a_row_and_the_rest_are_graded(kind: str) -> None:
    change, cause, _ = BAD_ROWS[kind]
    report = report_with_contained(
        changed(observation("anc", 0.3), change), observation("plt", 5), observation("wbc", 0.4)
    )
    parsed = read_fhir(raw(report))
    assert [(r.where, r.cause) for r in parsed.rejections] == [
        ("DiagnosticReport.contained[1]", cause)
    ]
    (result,) = parsed.results
    assert set(result.components) == {Analyte.PLATELETS, Analyte.WBC}
    assert result.patient_id == PATIENT
    assert result.partial


def test_a_contained_observation_with_a_date_only_time_is_a_row() -> None:
    anc = changed(observation("anc", 0.3), _set("effectiveDateTime", "2026-10-02"))
    parsed = read_fhir(raw(report_with_contained(anc, observation("plt", 5))))
    assert [(r.where, r.cause) for r in parsed.rejections] == [
        ("DiagnosticReport.contained[1]", "time")
    ]
    assert "a date without a time of day" in parsed.rejections[0].reason


# --- what stays message-level ----------------------------------------------------------------


MESSAGE_LEVEL: list[tuple[str, Doc, str]] = [
    (
        "every row's time is date-only",
        bundle(
            changed(observation("anc", 0.3), _set("effectiveDateTime", "2026-10-02")),
            changed(observation("plt", 5), _set("effectiveDateTime", "2026-10-02")),
        ),
        "entry[0].resource: effectiveDateTime has a date but no time of day",
    ),
    (
        "every row's subject missing",
        bundle(changed(observation("plt", 5), _drop("subject"))),
        "entry[0].resource: subject missing",
    ),
    (
        "the report's time is date-only",
        changed(
            report_with_contained(
                changed(observation("plt", 5), _drop("effectiveDateTime")), observation("wbc", 1)
            ),
            _set("effectiveDateTime", "2026-10-02"),
        ),
        "DiagnosticReport: effectiveDateTime has a date but no time of day",
    ),
    (
        "a patient that does not validate",
        bundle(
            {"resourceType": "Patient", "id": "p", "identifier": "MRN"},
            observation("plt", 5),
        ),
        "Bundle.entry.0.resource.Patient.identifier",
    ),
    (
        "a report that does not validate",
        bundle({"resourceType": "DiagnosticReport", "result": "o1"}, observation("plt", 5)),
        "DiagnosticReport.result",
    ),
    ("not a bundle type", changed(bundle(observation("plt", 5)), _set("type", "history")), "type"),
    (
        "a lone Observation with a value as text",
        changed(observation("plt", 5), _set_value("5")),
        "Observation.valueQuantity.value",
    ),
]


@pytest.mark.parametrize(
    ("document", "words"),
    [(d, w) for _, d, w in MESSAGE_LEVEL],
    ids=[name for name, _, _ in MESSAGE_LEVEL],
)
def test_what_identifies_the_message_still_fails_the_message(document: Doc, words: str) -> None:
    with pytest.raises(AdapterError) as caught:
        read_fhir(raw(document))
    assert words in str(caught.value)
    assert PATIENT not in str(caught.value)


def test_a_bad_row_beside_a_row_whose_time_is_readable_keeps_the_message() -> None:
    parsed = read_fhir(
        raw(
            bundle(
                changed(observation("anc", 0.3), _set("effectiveDateTime", "2026-10-02")),
                changed(observation("plt", 5), _set_value("**")),
            )
        )
    )
    assert parsed.results == []
    assert [r.cause for r in parsed.rejections] == ["time", "no_value"]


def test_parse_fhir_stays_strict_and_names_the_first_row() -> None:
    document = bundle(changed(observation("anc", 0.3), _set_value("abc")), observation("plt", 5))
    with pytest.raises(AdapterError, match=r"entry\[0\]\.resource: valueQuantity\.value"):
        parse_fhir(raw(document))


# --- property: an unreadable Observation never removes an alert --------------------------------


@dataclass(frozen=True)
class Msg:
    topic: str
    value: bytes


def alerts(documents: list[Doc]) -> set[tuple[str, int, str]]:
    report = replay_messages(
        [Msg("fhir", raw(d)) for d in documents], MonitorSettings(), clock=lambda: NOW
    )
    return {(a.condition, a.grade, a.event) for a in report.alerts}


readable = st.fixed_dictionaries(
    {},
    optional={
        "wbc": st.floats(0.05, 12.0).map(lambda v: round(v, 2)),
        "plt": st.floats(1.0, 400.0).map(lambda v: float(round(v))),
        "hgb": st.floats(4.0, 16.0).map(lambda v: round(v, 1)),
    },
)


@settings(max_examples=60, deadline=None)
@given(
    values=readable,
    kind=st.sampled_from(sorted(BAD_ROWS)),
    name=st.sampled_from(sorted(CODES)),
    where=st.integers(0, 4),
)
def test_an_unreadable_observation_never_removes_an_alert(
    values: dict[str, float], kind: str, name: str, where: int
) -> None:
    if not values:
        return
    clean = [observation(n, v, oid=f"o{i}") for i, (n, v) in enumerate(values.items())]
    dirty = list(clean)
    dirty.insert(
        where % (len(dirty) + 1), changed(observation(name, 1.0, oid="x"), BAD_ROWS[kind][0])
    )
    assert alerts([bundle(*clean)]) <= alerts([bundle(*dirty)])
