"""The canonical JSON feed (``read_result``): strict numbers, and lower limits that cannot be
used are ignored without losing the value beside them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from monitor.adapters.canonical import read_result
from monitor.clinical.analytes import Analyte


def doc(components: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "result_id": "SPC-1",
        "patient_id": "MRN-1",
        "collected_at": "2026-10-02T08:00:00Z",
        "status": "final",
        "components": components,
        **extra,
    }


def raw(document: dict[str, Any], **literals: str) -> bytes:
    """JSON text, with each ``"@name"`` placeholder replaced by a bare literal (NaN, true)."""
    text = json.dumps(document)
    for name, literal in literals.items():
        text = text.replace(f'"@{name}"', literal)
    return text.encode()


PLT_5 = {"value": 5, "unit": "10*9/L"}


@pytest.mark.parametrize("literal", ["true", "false"])
def test_a_boolean_value_is_a_rejected_row_never_a_count(literal: str) -> None:
    parsed = read_result(
        raw(
            doc(
                {
                    "platelets": {"value": "@v", "unit": "10*9/L"},
                    "wbc": {"value": 0.5, "unit": "10*9/L"},
                }
            ),
            v=literal,
        )
    )
    assert [(r.where, r.cause) for r in parsed.rejections] == [("components.platelets", "no_value")]
    assert parsed.rejections[0].reason == "value is not a number"
    assert set(parsed.results[0].components) == {Analyte.WBC}


def test_a_boolean_lower_limit_is_ignored_and_the_value_kept() -> None:
    parsed = read_result(raw(doc({"platelets": {**PLT_5, "lln": "@v"}}), v="true"))
    assert parsed.rejections == []
    assert parsed.results[0].components[Analyte.PLATELETS].value == 5
    assert parsed.results[0].components[Analyte.PLATELETS].lln is None


def test_minus_zero_reads_as_zero() -> None:
    parsed = read_result(raw(doc({"neutrophils": {"value": "@v", "unit": "10*9/L"}}), v="-0.0"))
    value = parsed.results[0].components[Analyte.NEUTROPHILS].value
    assert value == 0.0
    assert str(value) == "0.0"


@pytest.mark.parametrize(
    ("literal", "cause", "reason"),
    [
        ("NaN", "no_value", "value is not a number"),
        ('"abc"', "no_value", "value is not a number"),
        ("null", "no_value", "value is missing"),
        ("Infinity", "implausible", "value is negative or not finite"),
        ("1e400", "implausible", "value is negative or not finite"),
        ("-2", "implausible", "value is negative or not finite"),
    ],
)
def test_a_bad_value_is_rejected_with_the_right_cause_and_the_rest_kept(
    literal: str, cause: str, reason: str
) -> None:
    components = {"neutrophils": {"value": "@v", "unit": "10*9/L"}, "platelets": PLT_5}
    parsed = read_result(raw(doc(components), v=literal))
    assert [(r.where, r.cause, r.reason) for r in parsed.rejections] == [
        ("components.neutrophils", cause, reason)
    ]
    assert parsed.results[0].components[Analyte.PLATELETS].value == 5


def test_a_missing_value_is_no_value() -> None:
    parsed = read_result(raw(doc({"wbc": {"unit": "10*9/L"}, "platelets": PLT_5})))
    assert [(r.cause, r.reason) for r in parsed.rejections] == [("no_value", "value is missing")]


@pytest.mark.parametrize("extra", ['"LL"', "null", "[1.5, 7.0]", '{"text": "critical"}', "true"])
def test_an_unknown_key_in_a_component_is_ignored_and_the_value_graded(extra: str) -> None:
    # Issue 9 (review): this was a rejected row ("code", "unknown field flag"), losing a
    # readable critical ANC; the value and unit are what is graded.
    components = {"neutrophils": {"value": 0.3, "unit": "10*9/L", "flag": "@f"}, "platelets": PLT_5}
    parsed = read_result(raw(doc(components), f=extra))
    assert parsed.rejections == []
    anc = parsed.results[0].components[Analyte.NEUTROPHILS]
    assert (anc.value, anc.unit) == (0.3, "10*9/L")
    assert "flag" not in parsed.results[0].model_dump_json()


def test_an_unknown_key_beside_a_bad_value_is_still_that_value_s_fault() -> None:
    components = {"wbc": {"value": "@v", "unit": "10*9/L", "flag": "L"}, "platelets": PLT_5}
    parsed = read_result(raw(doc(components), v='"**.*"'))
    assert [(r.where, r.cause, r.reason) for r in parsed.rejections] == [
        ("components.wbc", "no_value", "value is not a number")
    ]
    assert set(parsed.results[0].components) == {Analyte.PLATELETS}


def test_an_unknown_analyte_is_still_refused_as_a_row() -> None:
    components = {"reticulocytes": {"value": 1.2, "unit": "%", "flag": "N"}, "platelets": PLT_5}
    parsed = read_result(raw(doc(components)))
    assert [(r.where, r.cause, r.reason) for r in parsed.rejections] == [
        ("components.<unnamed>", "code", "not a CBC analyte")
    ]
    assert set(parsed.results[0].components) == {Analyte.PLATELETS}


@pytest.mark.parametrize("lln", ["NaN", "Infinity", "-5", '"abc"', "[]"])
def test_an_unusable_lln_is_ignored_and_the_value_graded(lln: str) -> None:
    components = {
        "neutrophils": {"value": 0.3, "unit": "10*9/L", "lln": "@a"},
        "platelets": {**PLT_5, "lln": "@b"},
    }
    parsed = read_result(raw(doc(components), a=lln, b=lln))
    assert parsed.rejections == []
    result = parsed.results[0]
    assert not result.partial
    assert {a: (c.value, c.lln) for a, c in result.components.items()} == {
        Analyte.NEUTROPHILS: (0.3, None),
        Analyte.PLATELETS: (5.0, None),
    }


def test_a_usable_lln_beside_an_unusable_one_is_kept() -> None:
    components = {
        "neutrophils": {"value": 0.3, "unit": "10*9/L", "lln": 1.5},
        "platelets": {**PLT_5, "lln": "@b"},
    }
    result = read_result(raw(doc(components), b="NaN")).results[0]
    assert result.components[Analyte.NEUTROPHILS].lln == 1.5
    assert result.components[Analyte.PLATELETS].lln is None


@pytest.mark.parametrize(
    "overrides",
    [
        '{"neutrophils": {"value": NaN, "unit": "10*9/L"}}',
        '{"neutrophils": {"value": -1, "unit": "10*9/L"}}',
        '{"neutrophils": {"value": true, "unit": "10*9/L"}}',
        '{"neutrophils": {"value": 1.0, "unit": "bananas"}}',
        '{"bogus": {"value": 1.0, "unit": "10*9/L"}}',
        '"abc"',
    ],
)
def test_an_unusable_override_is_ignored_and_the_message_read(overrides: str) -> None:
    document = doc({"platelets": PLT_5}, context={"ward": "5W", "lln_overrides": "@o"})
    parsed = read_result(raw(document, o=overrides))
    assert parsed.rejections == []
    result = parsed.results[0]
    assert result.components[Analyte.PLATELETS].value == 5
    assert result.context.lln_overrides == {}
    assert result.context.ward == "5W"


def test_a_usable_override_beside_an_unusable_one_is_kept() -> None:
    overrides = (
        '{"neutrophils": {"value": 1.0, "unit": "10*9/L"}, "wbc": {"value": NaN, "unit": "10*9/L"}}'
    )
    document = doc({"platelets": PLT_5}, context={"lln_overrides": "@o"})
    result = read_result(raw(document, o=overrides)).results[0]
    assert set(result.context.lln_overrides) == {Analyte.NEUTROPHILS}


def test_a_message_whose_identity_is_bad_is_still_rejected_whole() -> None:
    document = doc({"platelets": {**PLT_5, "lln": "@b"}}, patient_id="")
    with pytest.raises(ValidationError):
        read_result(raw(document, b="NaN"))
