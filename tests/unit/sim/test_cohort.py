"""The synthetic chemotherapy cohort: determinism, feed noise and clinically plausible kinetics.

The checks read the messages back with their own unit table and limits (CLINICAL.md), not the
simulator's, so a unit or rounding slip in the simulator shows up here.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from monitor.clinical.context import Treatment, VitalSign
from monitor.clinical.watch import days_since, phase_of
from monitor.sim.checks import check_message, clean_results, summary
from monitor.sim.cohort import CohortSpec, ending_yesterday, simulate_cohort
from monitor.sim.messages import SimMessage
from monitor.sim.rendering import MALFORMED_VARIANTS
from monitor.stream.replay import replay_messages

Result = dict[str, Any]

_PER_UL = {"/uL", "/mm3", "cells/uL", "10*6/L"}
_G_PER_L = {"10*9/L", "10^9/L", "10*3/uL", "10^3/uL", "K/uL", "/nL", "G/L", "x10E3/uL", "Thou/mcL"}
_HGB_FACTOR = {"g/dL": 1.0, "g/L": 0.1, "mmol/L": 1 / 0.6206}
_DEFAULT_HGB_LLN = {"female": 12.0, "male": 13.0}
# Adult normal hemoglobin by sex; an unreported sex may be either.
_HGB_BASELINE = {"female": (12.5, 15.5), "male": (13.5, 17.0), None: (12.5, 17.0)}
_START = CohortSpec().start

BRIEF_EXAMPLE = {
    "result_id": "LAB-2026-000123",
    "patient_id": "MRN-0042",
    "collected_at": "2026-11-20T08:15:00Z",
    "status": "final",
    "sex": "female",
    "components": {
        "hemoglobin": {"value": 9.1, "unit": "g/dL", "lln": 12.0},
        "wbc": {"value": 2.1, "unit": "10*9/L"},
        "neutrophils": {"value": 0.8, "unit": "10*3/uL"},
        "lymphocytes": {"value": 900, "unit": "/uL"},
        "platelets": {"value": 95, "unit": "K/uL"},
        "rbc": {"value": 3.5, "unit": "10*12/L"},
        "neutrophils_pct": {"value": 38, "unit": "%"},
        "bands_pct": {"value": 2, "unit": "%"},
        "lymphocytes_pct": {"value": 20, "unit": "%"},
        "mcv": {"value": 88, "unit": "fL"},
    },
    "context": {"ward": "oncology-4b", "last_chemo_at": "2026-11-10T00:00:00Z"},
}


@pytest.fixture(scope="module")
def messages() -> list[SimMessage]:
    return simulate_cohort()


@pytest.fixture(scope="module")
def results(messages: list[SimMessage]) -> list[Result]:
    return clean_results(messages)


@pytest.fixture(scope="module")
def by_patient(results: list[Result]) -> dict[str, list[Result]]:
    grouped: dict[str, list[Result]] = defaultdict(list)
    for result in sorted(results, key=collected):
        grouped[result["patient_id"]].append(result)
    return grouped


def collected(result: Result) -> datetime:
    return datetime.fromisoformat(result["collected_at"])


def count(result: Result, analyte: str) -> float | None:
    """A cell count in 10^9/L, or None if the result does not carry it."""
    component = result["components"].get(analyte)
    if component is None:
        return None
    unit, value = component["unit"], component["value"]
    if unit in _PER_UL:
        return float(value) / 1000
    assert unit in _G_PER_L, unit
    return float(value)


def anc(result: Result) -> float | None:
    """Absolute neutrophils in 10^9/L, derived from WBC x (segs + bands) % when not sent."""
    direct = count(result, "neutrophils")
    if direct is not None:
        return direct
    comps = result["components"]
    wbc = count(result, "wbc")
    if wbc is None or "neutrophils_pct" not in comps:
        return None
    return wbc * (comps["neutrophils_pct"]["value"] + comps["bands_pct"]["value"]) / 100


def hemoglobin(result: Result) -> float | None:
    component = result["components"].get("hemoglobin")
    if component is None:
        return None
    return float(component["value"]) * _HGB_FACTOR[component["unit"]]


def hemoglobin_lln(result: Result) -> float:
    component = result["components"]["hemoglobin"]
    if "lln" in component:
        return float(component["lln"]) * _HGB_FACTOR[component["unit"]]
    return _DEFAULT_HGB_LLN[result["sex"] or "female"]


def cycle_day(result: Result) -> int:
    dose = datetime.fromisoformat(result["context"]["last_chemo_at"])
    return round((collected(result) - dose).total_seconds() / 86400)


def is_pancytopenic(result: Result) -> bool:
    hgb, wbc, plt = hemoglobin(result), count(result, "wbc"), count(result, "platelets")
    if hgb is None or wbc is None or plt is None:
        return False
    return hgb < hemoglobin_lln(result) and wbc < 4.0 and plt < 150


def of_kind(messages: list[SimMessage], kind: str) -> list[SimMessage]:
    return [m for m in messages if m.kind == kind]


def lab(messages: list[SimMessage]) -> list[SimMessage]:
    """Messages of the lab feeds (canonical JSON, HL7 v2, FHIR), malformed ones included."""
    return [m for m in messages if m.topic in ("results", "hl7v2", "fhir")]


def decoded(message: SimMessage) -> Result:
    """The canonical result a lab message carries, whatever format it is sent in."""
    payload = message.result_json
    assert payload is not None
    result: Result = json.loads(payload)
    return result


# --- determinism and ordering ---------------------------------------------------------------


def test_same_spec_gives_byte_identical_messages(messages: list[SimMessage]) -> None:
    assert simulate_cohort(CohortSpec()) == messages


def test_different_seeds_give_different_cohorts(messages: list[SimMessage]) -> None:
    other = simulate_cohort(CohortSpec(seed=8))
    assert [m.value for m in other] != [m.value for m in messages]


def test_messages_are_sorted_by_publication_time(messages: list[SimMessage]) -> None:
    sent = [m.sent_at_day for m in messages]
    assert sent == sorted(sent)
    assert len(messages) > 300


# --- the canonical format -------------------------------------------------------------------


def test_the_reference_reading_accepts_the_documented_example() -> None:
    assert check_message(json.dumps(BRIEF_EXAMPLE).encode()) is None


def test_every_non_malformed_message_is_a_valid_result(messages: list[SimMessage]) -> None:
    required = {"result_id", "patient_id", "collected_at", "status", "sex", "components"}
    valid = [m for m in lab(messages) if m.kind != "malformed"]
    assert valid
    for message in valid:
        result = decoded(message)
        assert isinstance(result, dict)
        assert required <= set(result)
        assert message.key == result["patient_id"].encode()
        assert result["status"] in {"final", "corrected", "preliminary"}
        assert result["sex"] in {"female", "male", None}
        assert collected(result).utcoffset() is not None
        last_chemo = result["context"].get("last_chemo_at")
        if last_chemo is not None:
            assert datetime.fromisoformat(last_chemo).utcoffset() is not None
            assert datetime.fromisoformat(last_chemo) < collected(result)
        assert message.result_json is not None
        assert check_message(message.result_json) is None


def test_values_are_rounded_as_labs_report_them(results: list[Result]) -> None:
    for result in results:
        for analyte, component in result["components"].items():
            value, unit = component["value"], component["unit"]
            if unit in _PER_UL or unit in {"%", "g/L"} or analyte == "platelets":
                assert isinstance(value, int), (analyte, unit, value)
            elif analyte == "hemoglobin":
                assert round(value, 1) == value
            else:
                assert round(value, 2) == value


def test_units_and_sexes_are_mixed(results: list[Result]) -> None:
    units = {c["unit"] for r in results for c in r["components"].values()}
    assert {"/uL", "K/uL", "10*9/L", "g/L", "mmol/L", "g/dL"} <= units
    patients = {r["patient_id"]: r["sex"] for r in results}
    unknown = sum(1 for sex in patients.values() if sex is None)
    assert 0.05 <= unknown / len(patients) <= 0.2
    assert {"female", "male"} <= set(patients.values())
    with_lln = sum(1 for r in results if any("lln" in c for c in r["components"].values()))
    assert 0.15 <= with_lln / len(results) <= 0.45


def test_partial_panels_exist(results: list[Result]) -> None:
    shapes = {tuple(r["components"]) for r in results}
    assert ("hemoglobin",) in shapes
    assert ("platelets",) in shapes


def test_some_results_send_percentages_instead_of_the_neutrophil_count(
    results: list[Result],
) -> None:
    derived = [
        r
        for r in results
        if "neutrophils" not in r["components"]
        and {"wbc", "neutrophils_pct", "bands_pct"} <= set(r["components"])
    ]
    assert 0.04 <= len(derived) / len(results) <= 0.2


# --- delivery noise -------------------------------------------------------------------------


def test_every_malformed_variant_appears_and_none_is_counted_valid(
    messages: list[SimMessage], results: list[Result]
) -> None:
    malformed = of_kind(messages, "malformed")
    assert {check_message(m.value) for m in malformed} == set(MALFORMED_VARIANTS)
    assert any(m.key is None for m in malformed)
    clean_bytes = {json.dumps(r, separators=(",", ":")).encode() for r in results}
    assert not clean_bytes & {m.value for m in malformed}
    assert len(results) == len(
        {decoded(m)["result_id"] for m in lab(messages) if m.kind != "malformed"}
    )


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: r.pop("patient_id"), "missing_patient_id"),
        (lambda r: r["components"]["platelets"].update(unit="mg/dL"), "unknown_unit"),
        (lambda r: r["components"]["wbc"].update(value=-2.1), "negative_count"),
        (lambda r: r.update(collected_at="2026-11-20T08:15:00"), "naive_timestamp"),
        (lambda r: r["components"].update(ferritin={"value": 3, "unit": "%"}), "unknown_analyte"),
        (lambda r: r.update(status="final-ish"), "bad_status"),
    ],
)
def test_the_reference_reading_rejects_broken_results(
    mutate: Callable[[Result], object], reason: str
) -> None:
    broken = json.loads(json.dumps(BRIEF_EXAMPLE))
    mutate(broken)
    assert check_message(json.dumps(broken).encode()) == reason


def test_clean_results_refuses_an_invalid_message_not_marked_malformed() -> None:
    broken = SimMessage(b"P", b"[1, 2]", "result", 0.0)
    with pytest.raises(ValueError, match="not_object"):
        clean_results([broken])


def test_redeliveries_copy_an_earlier_message_byte_for_byte(messages: list[SimMessage]) -> None:
    redeliveries = of_kind(messages, "redelivery")
    assert redeliveries
    for message in redeliveries:
        earlier = [
            m
            for m in messages
            if m.kind != "redelivery" and m.value == message.value and m.key == message.key
        ]
        assert earlier
        assert earlier[0].sent_at_day <= message.sent_at_day


def test_late_results_arrive_after_a_newer_result_of_the_same_patient(
    messages: list[SimMessage],
) -> None:
    late = of_kind(messages, "late")
    assert late
    first_sent: dict[str, float] = {}
    for message in lab(messages):
        if message.kind in ("result", "late"):
            rid = decoded(message)["result_id"]
            first_sent.setdefault(rid, message.sent_at_day)
    for message in late:
        result = decoded(message)
        delay = message.sent_at_day - (collected(result) - _START).total_seconds() / 86400
        assert 1.0 <= delay <= 3.0 + 1e-6
        newer_before = [
            m
            for m in lab(messages)
            if m.kind == "result"
            and m.key == message.key
            and m.sent_at_day < message.sent_at_day
            and collected(decoded(m)) > collected(result)
        ]
        assert newer_before, result["result_id"]


def test_preliminary_then_final_and_a_correction(messages: list[SimMessage]) -> None:
    versions: dict[str, list[Result]] = defaultdict(list)
    for message in lab(messages):
        if message.kind == "result":
            result = decoded(message)
            versions[result["result_id"]].append(result)
    statuses = {rid: [v["status"] for v in vs] for rid, vs in versions.items()}
    assert any(s[:2] == ["preliminary", "final"] for s in statuses.values())
    corrected = [rid for rid, s in statuses.items() if s == ["final", "corrected"]]
    assert corrected
    for rid in corrected:
        final, correction = versions[rid]
        assert final["components"] != correction["components"]
        assert final["collected_at"] == correction["collected_at"]


def test_clean_results_keep_the_authoritative_version(
    messages: list[SimMessage], results: list[Result]
) -> None:
    statuses = {r["result_id"]: r["status"] for r in results}
    assert "preliminary" not in statuses.values()
    assert "corrected" in statuses.values()
    stale = next(
        m for m in lab(messages) if m.kind == "result" and decoded(m)["status"] == "preliminary"
    )
    again = [*messages, dataclasses.replace(stale, kind="redelivery", sent_at_day=1e9)]
    assert clean_results(again) == results


def test_rates_of_zero_give_a_clean_feed() -> None:
    quiet = simulate_cohort(
        CohortSpec(patients=5, redelivery_rate=0, late_rate=0, malformed_rate=0)
    )
    assert {m.kind for m in quiet} == {"result"}
    counts = summary(quiet)
    assert counts["patients"] == 5
    assert counts["messages"] == counts["result"] == len(quiet)


def test_summary_counts_kinds(messages: list[SimMessage], results: list[Result]) -> None:
    counts = summary(messages)
    assert counts["messages"] == len(messages)
    assert sum(counts[k] for k in ("result", "redelivery", "late", "malformed")) == len(messages)
    assert counts["patients"] == 40
    assert counts["results"] == len(results)


# --- kinetics -------------------------------------------------------------------------------


def test_first_draw_is_a_baseline_inside_normal_ranges(
    by_patient: dict[str, list[Result]],
) -> None:
    for draws in by_patient.values():
        first = draws[0]
        assert "last_chemo_at" not in first["context"]
        hgb = hemoglobin(first)
        assert hgb is not None
        low, high = _HGB_BASELINE[first["sex"]]
        assert low <= hgb <= high
        neutrophils = anc(first)
        assert neutrophils is not None
        assert 2.5 <= neutrophils <= 6.0
        assert 5.0 <= (count(first, "wbc") or 0) <= 9.0
        assert 1.2 <= (count(first, "lymphocytes") or 0) <= 3.0
        assert 180 <= (count(first, "platelets") or 0) <= 380
        assert 4.3 <= first["components"]["rbc"]["value"] <= 5.5
        assert 82 <= first["components"]["mcv"]["value"] <= 96


def test_each_patients_lowest_anc_falls_on_cycle_days_9_to_15(
    by_patient: dict[str, list[Result]],
) -> None:
    for patient, draws in by_patient.items():
        measured = [(value, r) for r in draws if (value := anc(r)) is not None]
        _, lowest = min(measured, key=lambda pair: pair[0])
        assert 9 <= cycle_day(lowest) <= 15, patient


def test_neutropenia_reaches_grades_3_and_4(by_patient: dict[str, list[Result]]) -> None:
    nadirs = [min(v for r in draws if (v := anc(r)) is not None) for draws in by_patient.values()]
    assert sum(1 for n in nadirs if n < 1.0) >= 0.2 * len(nadirs)
    assert any(n < 0.5 for n in nadirs)
    assert sum(1 for n in nadirs if n < 1.8) >= 0.75 * len(nadirs)


def test_thrombocytopenia_and_anemia_appear(by_patient: dict[str, list[Result]]) -> None:
    platelets = [
        min(v for r in draws if (v := count(r, "platelets")) is not None)
        for draws in by_patient.values()
    ]
    assert any(p < 75 for p in platelets)
    assert any(p < 50 for p in platelets)
    hgb_nadirs = [
        min(v for r in draws if (v := hemoglobin(r)) is not None) for draws in by_patient.values()
    ]
    assert any(8.0 <= h < 10.0 for h in hgb_nadirs)


def test_lymphocytes_fall_less_than_neutrophils(by_patient: dict[str, list[Result]]) -> None:
    for draws in by_patient.values():
        full = [r for r in draws if anc(r) is not None and count(r, "lymphocytes") is not None]
        anc_fall = min(anc(r) or 0 for r in full) / (anc(full[0]) or 1)
        lymph_fall = min(count(r, "lymphocytes") or 0 for r in full) / (
            count(full[0], "lymphocytes") or 1
        )
        assert lymph_fall > anc_fall


def test_some_draws_are_pancytopenic(results: list[Result]) -> None:
    pancytopenic = {r["patient_id"] for r in results if is_pancytopenic(r)}
    assert len(pancytopenic) >= 2


def test_counts_recover_before_the_next_dose(by_patient: dict[str, list[Result]]) -> None:
    for draws in by_patient.values():
        second_cycle = [r for r in draws if "last_chemo_at" in r["context"] and cycle_day(r) == 21]
        for predose in second_cycle:  # a day-0 draw of cycle 2 counts back from cycle 1's dose
            assert (anc(predose) or 2.0) >= 1.8


# --- lab formats ----------------------------------------------------------------------------


def test_each_patient_sends_in_one_lab_format_in_the_requested_shares(
    messages: list[SimMessage],
) -> None:
    formats: dict[bytes, set[str]] = defaultdict(set)
    for message in lab(messages):
        if message.kind != "malformed":
            assert message.key is not None
            formats[message.key].add(message.topic)
    assert all(len(topics) == 1 for topics in formats.values())
    tally = Counter(next(iter(topics)) for topics in formats.values())
    assert dict(tally) == {"hl7v2": 8, "fhir": 8, "results": 24}  # 20% / 20% / rest of 40
    for kind in ("redelivery", "late"):
        assert {m.topic for m in of_kind(messages, kind)} >= {"results"}
        for message in of_kind(messages, kind):
            assert message.key is not None
            assert {message.topic} == formats[message.key]
    assert {m.topic for m in of_kind(messages, "malformed")} == {"results"}


def test_hl7_and_fhir_messages_carry_their_canonical_result(messages: list[SimMessage]) -> None:
    for message in lab(messages):
        if message.topic == "hl7v2":
            assert message.value.startswith(b"MSH|^~\\&|")
            assert b"ORU^R01" in message.value
        elif message.topic == "fhir":
            assert json.loads(message.value)["resourceType"] == "DiagnosticReport"
        else:
            assert message.canonical is None
            assert message.result_json == message.value
            continue
        assert message.canonical is not None
        assert message.result_json == message.canonical
        assert decoded(message)["result_id"].encode() in message.value


def test_shares_of_zero_give_canonical_json_only() -> None:
    spec = CohortSpec(patients=10, days=25, hl7v2_share=0, fhir_share=0, context=False)
    assert {m.topic for m in simulate_cohort(spec)} == {"results"}
    spec = CohortSpec(patients=10, days=25, hl7v2_share=1.0, fhir_share=0, context=False)
    assert {m.topic for m in simulate_cohort(spec) if m.kind != "malformed"} == {"hl7v2"}


@pytest.mark.parametrize(
    "changes",
    [{"hl7v2_share": -0.1}, {"fhir_share": 1.5}, {"hl7v2_share": 0.6, "fhir_share": 0.6}],
)
def test_impossible_shares_are_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="share"):
        CohortSpec(**changes)  # type: ignore[arg-type]


def test_old_constructor_still_means_the_results_feed() -> None:
    message = SimMessage(b"P", b"{}", "result", 0.0)
    assert message.topic == "results"
    assert message.canonical is None
    assert message.result_json == b"{}"
    vital = SimMessage(b"P", b"{}", "result", 0.0, topic="vitals")
    assert vital.result_json is None


def test_formats_and_context_do_not_change_the_results(results: list[Result]) -> None:
    plain = simulate_cohort(CohortSpec(hl7v2_share=0, fhir_share=0, context=False))
    assert clean_results(plain) == results


# --- treatments and temperatures ------------------------------------------------------------


def context_of(messages: list[SimMessage], topic: str) -> list[Result]:
    return [json.loads(m.value) for m in messages if m.topic == topic]


def test_every_chemotherapy_dose_is_sent_as_a_treatment(
    messages: list[SimMessage], results: list[Result]
) -> None:
    sent = [m for m in messages if m.topic == "treatments"]
    assert sent
    doses: dict[str, set[datetime]] = defaultdict(set)
    for message in sent:
        treatment = Treatment.model_validate_json(message.value)
        assert treatment.kind == "chemotherapy"
        assert message.key == treatment.patient_id.encode()
        assert message.kind == "result"
        delay = message.sent_at_day - (treatment.given_at - _START).total_seconds() / 86400
        assert 0 < delay < 1 / 24
        doses[treatment.patient_id].add(treatment.given_at)
    assert len({json.loads(m.value)["event_id"] for m in sent}) == len(sent)
    assert set(doses) == {r["patient_id"] for r in results}
    for result in results:  # the date a result gives for the last dose is a dose that was sent
        last = result["context"].get("last_chemo_at")
        if last is not None:
            assert datetime.fromisoformat(last) in doses[result["patient_id"]]
    for given in doses.values():  # 21-day cycles
        ordered = sorted(given)
        assert all(round((b - a).total_seconds() / 86400) == 21 for a, b in pairwise(ordered))


def fevers(readings: list[tuple[datetime, float]]) -> list[datetime]:
    """Times of a fever (CLINICAL.md s.2): one reading above 38.3 C, or readings of at least
    38.0 C sustained over more than an hour (consecutive, none lower in between)."""
    out: list[datetime] = []
    run_start: datetime | None = None
    for at, celsius in sorted(readings):
        if celsius > 38.3:
            out.append(at)
        if celsius >= 38.0:
            run_start = run_start or at
            if (at - run_start).total_seconds() > 3600:
                out.append(at)
        else:
            run_start = None
    return out


def test_temperatures_are_afebrile_once_or_twice_a_day_for_most_patients(
    messages: list[SimMessage],
) -> None:
    by_patient: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for message in messages:
        if message.topic == "vitals":
            vital = VitalSign.model_validate_json(message.value)
            assert message.key == vital.patient_id.encode()
            assert vital.measured_at.utcoffset() is not None
            by_patient[vital.patient_id].append((vital.measured_at, vital.celsius))
    ids = [json.loads(m.value)["observation_id"] for m in messages if m.topic == "vitals"]
    assert len(set(ids)) == len(ids)
    assert len(by_patient) == 40
    afebrile = [p for p, readings in by_patient.items() if not fevers(readings)]
    assert len(afebrile) >= 0.8 * len(by_patient)
    for patient in afebrile:
        per_day: dict[Any, int] = defaultdict(int)
        for at, celsius in by_patient[patient]:
            assert 36.4 <= celsius <= 37.4
            per_day[at.date()] += 1
        assert set(per_day.values()) <= {1, 2}


def test_a_few_neutropenic_patients_run_a_fever_close_to_a_low_anc(
    messages: list[SimMessage], by_patient: dict[str, list[Result]]
) -> None:
    temperatures: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for vital in context_of(messages, "vitals"):
        at = datetime.fromisoformat(vital["measured_at"])
        temperatures[vital["patient_id"]].append((at, vital["temperature"]))
    febrile = {p for p, readings in temperatures.items() if fevers(readings)}
    assert 2 <= len(febrile) <= 6
    for patient in febrile:
        low_draws = [
            collected(r)
            for r in by_patient[patient]
            if (value := anc(r)) is not None and value < 1.0
        ]
        assert any(
            abs((fever - draw).total_seconds()) <= 24 * 3600
            for fever in fevers(temperatures[patient])
            for draw in low_draws
        ), patient
        readings = temperatures[patient]
        fever_values = [c for _, c in readings if c >= 38.0]
        assert all(38.0 <= c <= 39.5 for c in fever_values)
    # Both kinds of fever occur: a single high reading and a sustained lower one.
    singles = [p for p in febrile if any(c > 38.3 for _, c in temperatures[p])]
    assert singles
    assert len(singles) < len(febrile)


def test_context_off_sends_lab_messages_only_and_the_same_ones(
    messages: list[SimMessage],
) -> None:
    quiet = simulate_cohort(CohortSpec(context=False))
    assert {m.topic for m in quiet} == {"results", "hl7v2", "fhir"}
    assert quiet == [m for m in messages if m.topic not in ("treatments", "vitals")]


def test_summary_counts_feeds(messages: list[SimMessage]) -> None:
    counts = summary(messages)
    topics = ("results", "hl7v2", "fhir", "treatments", "vitals")
    assert sum(counts[f"{t}_messages"] for t in topics) == len(messages)
    assert all(counts[f"{t}_messages"] > 0 for t in topics)


# The demo's cohort (``ending_yesterday``): the dashboard's watch list judges the nadir window
# against the real clock, so the cohort must end just before the day the demo runs.
_DEMO_DAY = datetime(2027, 3, 9, tzinfo=UTC)


def _last_doses(messages: list[SimMessage]) -> dict[str, datetime]:
    last: dict[str, datetime] = {}
    for m in messages:
        if m.topic == "treatments":
            dose = json.loads(m.value)
            given = datetime.fromisoformat(dose["given_at"])
            last[dose["patient_id"]] = max(given, last.get(dose["patient_id"], given))
    return last


@pytest.mark.parametrize("hours", [0.0, 13.5, 23.99])
def test_the_demo_cohort_ends_at_midnight_before_the_day_it_runs(hours: float) -> None:
    now = _DEMO_DAY + timedelta(hours=hours)
    spec = ending_yesterday(CohortSpec(seed=3, days=30), now)
    assert spec.start == _DEMO_DAY - timedelta(days=31)
    assert spec.start + timedelta(days=spec.days) == _DEMO_DAY - timedelta(days=1)
    assert dataclasses.replace(spec, start=CohortSpec().start) == CohortSpec(seed=3, days=30)


def test_the_demo_cohort_is_the_same_all_day_and_moves_with_the_date() -> None:
    spec = CohortSpec(patients=6, days=20)
    morning = simulate_cohort(ending_yesterday(spec, _DEMO_DAY + timedelta(hours=1)))
    evening = simulate_cohort(ending_yesterday(spec, _DEMO_DAY + timedelta(hours=23)))
    tomorrow = simulate_cohort(ending_yesterday(spec, _DEMO_DAY + timedelta(days=1, hours=1)))
    assert morning == evening
    assert morning != tomorrow
    with pytest.raises(ValueError, match="time zone"):
        ending_yesterday(spec, datetime(2027, 3, 9))


def test_the_demo_cohort_is_all_in_the_past_with_patients_in_the_nadir_window() -> None:
    messages = simulate_cohort(ending_yesterday(CohortSpec(), _DEMO_DAY))
    # Received at the first instant of the day: the earliest the demo can run on it.
    report = replay_messages(messages, clock=lambda: _DEMO_DAY)
    assert report.alerts
    assert "collected_in_future" not in report.dead_letters
    last_doses = _last_doses(messages)
    for now in (_DEMO_DAY, _DEMO_DAY + timedelta(hours=23.99)):
        watched = [
            patient
            for patient, dose in last_doses.items()
            if phase_of(days_since(dose, now), (7, 14), 3) is not None
        ]
        assert len(watched) >= 3, (now, watched)
