"""The detector's fast paths give what the general paths give: a number read without pydantic's
float, an entry's JSON built in one pass, an id found in C, a grade answered from the cache."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from monitor.clinical.analytes import DEFAULT_LLN, Analyte
from monitor.clinical.evaluation import Evaluator
from monitor.clinical.grading import CTCAE, GradeScale
from monitor.clinical.history import (
    Entry,
    PatientState,
    entry_from_result,
    with_wire,
)
from monitor.clinical.model import Component, parse_result


def _result(components: dict[str, Any], result_id: str = "R-1") -> bytes:
    return json.dumps(
        {
            "result_id": result_id,
            "patient_id": "P-1",
            "collected_at": "2026-11-20T08:15:00Z",
            "sex": "female",
            "components": components,
        }
    ).encode()


@pytest.mark.parametrize(
    "literal",
    ["0", "7", "158", "9007199254740992", "9007199254740993", "-9007199254740993", "1" + "0" * 30],
)
def test_an_integer_reads_as_pydantics_float_reads_it(literal: str) -> None:
    raw = f'{{"value": {literal}, "unit": "K/uL"}}'
    try:
        expected: float | None = TypeAdapter(float).validate_json(literal)
    except ValidationError:
        expected = None
    if expected is None or expected < 0:
        with pytest.raises(ValidationError):
            Component.model_validate_json(raw)
        return
    value = Component.model_validate_json(raw).value
    assert type(value) is float
    assert value == expected


def test_entry_json_is_the_general_one() -> None:
    raw = _result(
        {
            "hemoglobin": {"value": 91, "unit": "g/L", "lln": 120},
            "wbc": {"value": 2.1, "unit": "10*9/L", "lln": 4.0},
            "lymphocytes": {"value": 900, "unit": "/uL"},
            "platelets": {"value": 95, "unit": "K/uL"},
            "neutrophils_pct": {"value": 38, "unit": "%"},
            "bands_pct": {"value": 2, "unit": "%"},
            "mcv": {"value": 88, "unit": "fL"},
        }
    )
    entry = entry_from_result(parse_result(raw), "hash")
    assert entry.readings[Analyte.NEUTROPHILS].derived  # derived, listed after the rest
    assert entry.wire == with_wire(entry).wire
    readings = json.loads(entry.wire)[5]
    assert list(readings) == [a.value for a in entry.readings]
    assert readings["hemoglobin"][:3] == [9.1, 91.0, "g/L"]


def _entry(result_id: str) -> Entry:
    return entry_from_result(parse_result(_result({}, result_id)), result_id)


def test_find_gives_the_last_entry_of_an_id() -> None:
    state = PatientState(history=[_entry("A"), _entry("B"), _entry("A"), _entry("C")])
    assert state.find("A") == 2
    assert state.find("B") == 1
    assert state.find("C") == 3
    assert state.find("D") is None
    assert PatientState().find("A") is None


def test_a_cached_grade_is_not_given_for_another_scale() -> None:
    evaluator = Evaluator(
        ctcae_version="5.0",
        default_lln=DEFAULT_LLN,
        pancytopenia_window_hours=72,
        febrile_window_hours=24,
        transfusion_explains_hours=24,
    )
    raw = _result({"platelets": {"value": 60, "unit": "K/uL", "lln": 150}})
    entry = entry_from_result(parse_result(raw), "hash")
    state = PatientState(history=[entry])

    def platelet_grade() -> int | None:
        evaluator.forget()
        graded = evaluator._grade_reading(state, entry, Analyte.PLATELETS)
        return graded.grade if graded is not None else None

    assert platelet_grade() == 2
    assert platelet_grade() == 2  # from the cache
    scale = CTCAE["5.0"][Analyte.PLATELETS]
    assert isinstance(scale, GradeScale)
    stricter = replace(scale, below=((4, 25.0), (3, 70.0), (2, 75.0)))
    evaluator._scales = {**evaluator._scales, Analyte.PLATELETS: stricter}
    assert platelet_grade() == 3
