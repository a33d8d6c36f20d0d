"""The canonical CBC result (monitor.clinical.model): what parses, what fails, and safe error
messages."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from monitor.clinical.analytes import Analyte, Sex
from monitor.clinical.model import (
    CBCResult,
    Component,
    ResultContext,
    describe_validation_error,
    parse_result,
)

CANONICAL_EXAMPLE: dict[str, Any] = {
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
        "mcv": {"value": 88, "unit": "fL"},
    },
    "context": {"ward": "oncology-4b", "last_chemo_at": "2026-11-10T00:00:00Z"},
}

# Distinctive input that must never appear in an error description.
SECRET_PATIENT = "MRN-SECRET-7731"
SECRET_NUMBER = 123.456
SECRET_TEXT = "SECRET-TEXT-9911"


def _example(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(CANONICAL_EXAMPLE)
    doc["patient_id"] = SECRET_PATIENT
    doc.update(changes)
    return doc


def _raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# --- what parses -----------------------------------------------------------------------------


def test_canonical_example_parses() -> None:
    result = parse_result(_raw(CANONICAL_EXAMPLE))
    assert isinstance(result, CBCResult)
    assert result.result_id == "LAB-2026-000123"
    assert result.patient_id == "MRN-0042"
    assert result.collected_at == datetime(2026, 11, 20, 8, 15, tzinfo=UTC)
    assert result.collected_ts == datetime(2026, 11, 20, 8, 15, tzinfo=UTC).timestamp()
    assert result.status == "final"
    assert result.sex is Sex.FEMALE
    assert set(result.components) == {
        Analyte.HEMOGLOBIN,
        Analyte.WBC,
        Analyte.NEUTROPHILS,
        Analyte.LYMPHOCYTES,
        Analyte.PLATELETS,
        Analyte.RBC,
        Analyte.NEUTROPHILS_PCT,
        Analyte.BANDS_PCT,
        Analyte.MCV,
    }
    assert result.components[Analyte.HEMOGLOBIN] == Component(value=9.1, unit="g/dL", lln=12.0)
    assert result.components[Analyte.LYMPHOCYTES] == Component(value=900.0, unit="/uL")
    assert result.components[Analyte.WBC].lln is None
    assert result.context.ward == "oncology-4b"
    assert result.context.last_chemo_at == datetime(2026, 11, 10, tzinfo=UTC)
    assert result.context.lln_overrides == {}


@pytest.mark.parametrize("as_type", [bytes, str], ids=["bytes", "str"])
def test_parse_accepts_bytes_and_str(as_type: Callable[[bytes], Any]) -> None:
    raw = _raw(CANONICAL_EXAMPLE)
    payload = raw if as_type is bytes else raw.decode()
    assert parse_result(payload).result_id == "LAB-2026-000123"


def test_collected_at_keeps_its_offset() -> None:
    result = parse_result(_raw(_example(collected_at="2026-11-20T09:15:00+01:00")))
    assert result.collected_at.utcoffset() == timedelta(hours=1)
    assert result.collected_at == datetime(2026, 11, 20, 8, 15, tzinfo=UTC)


@pytest.mark.parametrize("name", list(CANONICAL_EXAMPLE["components"]))
def test_each_component_alone_is_enough(name: str) -> None:
    doc = _example(components={name: CANONICAL_EXAMPLE["components"][name]})
    result = parse_result(_raw(doc))
    assert list(result.components) == [Analyte(name)]


@pytest.mark.parametrize("name", list(CANONICAL_EXAMPLE["components"]))
def test_each_component_may_be_missing(name: str) -> None:
    components = {k: v for k, v in CANONICAL_EXAMPLE["components"].items() if k != name}
    result = parse_result(_raw(_example(components=components)))
    assert Analyte(name) not in result.components
    assert len(result.components) == len(CANONICAL_EXAMPLE["components"]) - 1


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(_example(components={}), id="empty-components"),
        pytest.param(
            {k: v for k, v in _example().items() if k != "components"}, id="no-components"
        ),
    ],
)
def test_no_components_at_all_is_ok(doc: dict[str, Any]) -> None:
    assert parse_result(_raw(doc)).components == {}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({"sex": None}, None, id="sex-null"),
        pytest.param({"sex": "male"}, Sex.MALE, id="sex-male"),
        pytest.param({"sex": "female"}, Sex.FEMALE, id="sex-female"),
    ],
)
def test_sex(changes: dict[str, Any], expected: Sex | None) -> None:
    assert parse_result(_raw(_example(**changes))).sex == expected


def test_sex_missing_is_none() -> None:
    doc = {k: v for k, v in _example().items() if k != "sex"}
    assert parse_result(_raw(doc)).sex is None


def test_status_defaults_to_final() -> None:
    doc = {k: v for k, v in _example().items() if k != "status"}
    assert parse_result(_raw(doc)).status == "final"


@pytest.mark.parametrize("status", ["final", "corrected", "preliminary"])
def test_known_statuses(status: str) -> None:
    assert parse_result(_raw(_example(status=status))).status == status


def test_context_missing_gives_empty_context() -> None:
    doc = {k: v for k, v in _example().items() if k != "context"}
    context = parse_result(_raw(doc)).context
    assert context == ResultContext()
    assert context.ward is None
    assert context.last_chemo_at is None
    assert context.lln_overrides == {}


def test_context_extra_keys_are_ignored() -> None:
    doc = _example(
        context={"ward": "oncology-4b", "bed": "12", "attending": SECRET_TEXT, "nested": {"a": 1}}
    )
    context = parse_result(_raw(doc)).context
    assert context.ward == "oncology-4b"
    assert "bed" not in context.model_dump()
    assert SECRET_TEXT not in repr(context)
    assert not hasattr(context, "attending")


def test_component_extra_keys_are_ignored() -> None:
    # Issue 9 (review): a lab's flag or comment beside the value no longer refuses the component
    # (it was an "unknown field" error); only value, unit and lln are read.
    doc = _component(
        "neutrophils", value=0.3, unit="10*9/L", flag="LL", comment=SECRET_TEXT, range=[1.5, 7]
    )
    component = parse_result(_raw(doc)).components[Analyte.NEUTROPHILS]
    assert (component.value, component.unit, component.lln) == (0.3, "10*9/L", None)
    assert set(component.model_dump()) == {"value", "unit", "lln"}
    assert SECRET_TEXT not in repr(component)


@pytest.mark.parametrize(
    ("analyte", "value", "unit"),
    [
        pytest.param("neutrophils", 1.0, "10^9/L", id="anc-10e9-L"),
        pytest.param("neutrophils", 1000, "/uL", id="anc-per-uL"),
        pytest.param("neutrophils", 1000, "/\u00b5L", id="anc-per-micro-sign-L"),
        pytest.param("platelets", 100, "K/uL", id="plt-K-uL"),
        pytest.param("hemoglobin", 110, "g/L", id="hgb-g-L"),
    ],
)
def test_lln_override_with_known_unit_parses(analyte: str, value: float, unit: str) -> None:
    doc = _example(context={"lln_overrides": {analyte: {"value": value, "unit": unit}}})
    overrides = parse_result(_raw(doc)).context.lln_overrides
    assert list(overrides) == [Analyte(analyte)]
    assert overrides[Analyte(analyte)].value == value
    assert overrides[Analyte(analyte)].unit == unit


@pytest.mark.parametrize(
    "unit",
    [
        pytest.param("K/uL", id="K-uL"),
        pytest.param("k/ul", id="lower-case"),
        pytest.param("/\u03bcL", id="greek-mu"),
        pytest.param("cells/uL", id="cells-per-uL"),
    ],
)
def test_component_unit_spelling_variants_parse(unit: str) -> None:
    doc = _example(components={"platelets": {"value": 95, "unit": unit}})
    assert parse_result(_raw(doc)).components[Analyte.PLATELETS].unit == unit


def test_result_is_frozen() -> None:
    result = parse_result(_raw(CANONICAL_EXAMPLE))
    with pytest.raises(ValidationError):
        result.patient_id = "other"  # type: ignore[misc]


def test_zero_values_are_allowed() -> None:
    doc = _example(components={"neutrophils": {"value": 0, "unit": "/uL", "lln": 0}})
    assert parse_result(_raw(doc)).components[Analyte.NEUTROPHILS].value == 0.0


# --- what fails, and how it is described -----------------------------------------------------


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in _example().items() if k != key}


def _component(name: str, **fields: Any) -> dict[str, Any]:
    components = copy.deepcopy(CANONICAL_EXAMPLE["components"])
    components[name] = fields
    return _example(components=components)


def _context(**fields: Any) -> dict[str, Any]:
    return _example(context=fields)


# (raw bytes, substrings the description must contain, extra strings it must not contain).
# The patient id and the distinctive number/text are always checked for absence.
INVALID: list[Any] = [
    pytest.param(_raw(_without("result_id")), ["result_id"], [], id="missing-result-id"),
    pytest.param(_raw(_without("patient_id")), ["patient_id"], [], id="missing-patient-id"),
    pytest.param(_raw(_without("collected_at")), ["collected_at"], [], id="missing-collected-at"),
    pytest.param(_raw(_example(result_id="")), ["result_id"], [], id="empty-result-id"),
    pytest.param(_raw(_example(patient_id="")), ["patient_id"], [], id="empty-patient-id"),
    pytest.param(_raw(_example(patient_id="   ")), ["patient_id"], [], id="blank-patient-id"),
    pytest.param(
        _raw(_example(patient_id=f" {SECRET_PATIENT}")),
        ["patient_id"],
        [],
        id="patient-id-leading-space",
    ),
    pytest.param(
        _raw(_example(patient_id=SECRET_PATIENT * 20)), ["patient_id"], [], id="patient-id-too-long"
    ),
    pytest.param(
        _raw(_example(result_id=f"{SECRET_TEXT}\n")), ["result_id"], [], id="result-id-newline"
    ),
    pytest.param(
        _raw(_example(patient_id=7731)), ["patient_id"], ["7731"], id="patient-id-a-number"
    ),
    pytest.param(
        _raw(_example(collected_at="2026-11-20T08:15:00")),
        ["collected_at"],
        ["2026-11-20", "08:15"],
        id="timestamp-without-zone",
    ),
    pytest.param(
        _raw(_example(collected_at=f"{SECRET_TEXT}")),
        ["collected_at"],
        [],
        id="timestamp-garbage",
    ),
    pytest.param(
        _raw(_component("wbc", value=-SECRET_NUMBER, unit="K/uL")),
        ["components.wbc.value"],
        [],
        id="negative-count",
    ),
    pytest.param(
        _raw(_component("hemoglobin", value=9.1, unit="g/dL", lln=-SECRET_NUMBER)),
        ["components.hemoglobin.lln"],
        [],
        id="negative-lln",
    ),
    pytest.param(
        _raw(_component("wbc", value=SECRET_NUMBER, unit=SECRET_TEXT)),
        ["components", "unknown unit", "wbc"],
        [],
        id="unknown-unit",
    ),
    pytest.param(
        _raw(_component("hemoglobin", value=SECRET_NUMBER, unit="K/uL")),
        ["components", "unknown unit", "hemoglobin"],
        ["K/uL"],
        id="count-unit-for-hemoglobin",
    ),
    pytest.param(
        _raw(_component("mcv_typo", value=SECRET_NUMBER, unit="fL")),
        ["components"],
        [],
        id="unknown-analyte-key",
    ),
    pytest.param(
        _raw(_component("wbc", value=SECRET_NUMBER)),
        ["components.wbc.unit"],
        [],
        id="component-without-unit",
    ),
    pytest.param(_raw(_component("wbc", unit="K/uL")), ["components.wbc.value"], [], id="no-value"),
    pytest.param(
        _raw(_component("wbc", value=SECRET_TEXT, unit="K/uL")),
        ["components.wbc.value"],
        [],
        id="value-a-string",
    ),
    pytest.param(
        _raw(_example(shoe_size=SECRET_NUMBER)), ["shoe_size"], [], id="unknown-top-level-field"
    ),
    pytest.param(_raw(_example(status="cancelled")), ["status"], ["cancelled"], id="cancelled"),
    pytest.param(_raw(_example(sex=SECRET_TEXT)), ["sex"], [], id="unknown-sex"),
    pytest.param(
        _raw(_example(components=[SECRET_NUMBER])), ["components"], [], id="components-a-list"
    ),
    pytest.param(
        _raw(_context(ward=SECRET_TEXT * 10)), ["context.ward"], [], id="context-ward-too-long"
    ),
    pytest.param(
        _raw(_context(last_chemo_at="2026-11-10T00:00:00")),
        ["context.last_chemo_at"],
        ["2026-11-10"],
        id="context-chemo-without-zone",
    ),
    pytest.param(
        _raw(
            _context(lln_overrides={"neutrophils": {"value": SECRET_NUMBER, "unit": SECRET_TEXT}})
        ),
        ["lln_overrides", "neutrophils", "unknown unit"],
        [],
        id="lln-override-unknown-unit",
    ),
    pytest.param(
        _raw(_context(lln_overrides={"neutrophils": {"value": -SECRET_NUMBER, "unit": "/uL"}})),
        ["context.lln_overrides.neutrophils.value"],
        [],
        id="lln-override-negative",
    ),
    pytest.param(
        _raw(_context(lln_overrides={"bogus": {"value": SECRET_NUMBER, "unit": "/uL"}})),
        ["context.lln_overrides"],
        [],
        id="lln-override-unknown-analyte",
    ),
    pytest.param(b"not json " + SECRET_PATIENT.encode(), ["JSON"], [], id="not-json"),
    pytest.param(b"", ["JSON"], [], id="empty-input"),
    pytest.param(_raw(CANONICAL_EXAMPLE)[:-40], ["JSON"], [], id="truncated-json"),
    pytest.param(_raw(_example()) + b" trailing", ["JSON"], [], id="trailing-garbage"),
    pytest.param(b"\xff\xfe" + SECRET_PATIENT.encode(), ["JSON"], [], id="not-utf8"),
    pytest.param(_raw([SECRET_PATIENT, SECRET_NUMBER]), ["message"], [], id="json-array"),
    pytest.param(_raw(SECRET_PATIENT), ["message"], [], id="json-string"),
    pytest.param(b"null", ["message"], [], id="json-null"),
]

# JSON has no NaN or Infinity; pydantic's parser reads them anyway, then the field rejects them
# as not finite. 1e400 is valid JSON that overflows a double to infinity: rejected the same way.
NOT_FINITE = [
    pytest.param("NaN", "value", id="value-NaN"),
    pytest.param("Infinity", "value", id="value-Infinity"),
    pytest.param("-Infinity", "value", id="value-minus-Infinity"),
    pytest.param("1e400", "value", id="value-1e400"),
    pytest.param("-1e400", "value", id="value-minus-1e400"),
    pytest.param("NaN", "lln", id="lln-NaN"),
    pytest.param("Infinity", "lln", id="lln-Infinity"),
    pytest.param("1e400", "lln", id="lln-1e400"),
]


def _describe(raw: bytes) -> str:
    with pytest.raises(ValidationError) as info:
        parse_result(raw)
    return describe_validation_error(info.value)


def _assert_safe(description: str, extra_forbidden: list[str]) -> None:
    assert "\n" not in description
    for secret in [SECRET_PATIENT, str(SECRET_NUMBER), SECRET_TEXT, *extra_forbidden]:
        assert secret not in description


@pytest.mark.parametrize(("raw", "must_name", "must_not_contain"), INVALID)
def test_invalid_input_is_described_by_field_without_values(
    raw: bytes, must_name: list[str], must_not_contain: list[str]
) -> None:
    description = _describe(raw)
    for name in must_name:
        assert name in description
    _assert_safe(description, must_not_contain)


@pytest.mark.parametrize(("literal", "field"), NOT_FINITE)
def test_not_finite_numbers_are_rejected(literal: str, field: str) -> None:
    component = {"value": 2.1, "unit": "K/uL", "lln": 4.0}
    component[field] = SECRET_NUMBER  # placeholder swapped for the bare literal below
    doc = _example(components={"wbc": component})
    raw = _raw(doc).replace(str(SECRET_NUMBER).encode(), literal.encode())
    assert literal.encode() in raw
    description = _describe(raw)
    assert f"components.wbc.{field}" in description
    _assert_safe(description, [literal, literal.lower()])


def test_plain_pydantic_error_would_leak_what_describe_hides() -> None:
    # Guards the tests above: the raw pydantic text does carry the input, describe does not.
    raw = _raw(_example(patient_id=f" {SECRET_PATIENT}"))
    with pytest.raises(ValidationError) as info:
        parse_result(raw)
    assert SECRET_PATIENT in str(info.value)
    assert SECRET_PATIENT not in describe_validation_error(info.value)


def test_several_errors_are_listed_up_to_the_limit() -> None:
    doc = _example(
        result_id="",
        components={
            name: {"value": -SECRET_NUMBER, "unit": "K/uL"}
            for name in ("wbc", "neutrophils", "lymphocytes", "platelets")
        },
        status="cancelled",
        shoe_size=1,
    )
    with pytest.raises(ValidationError) as info:
        parse_result(_raw(doc))
    assert info.value.error_count() == 7
    description = describe_validation_error(info.value, limit=5)
    assert description.count("; ") == 5
    assert description.endswith("and 2 more")
    assert description.startswith("result_id: ")
    _assert_safe(description, ["cancelled"])
    full = describe_validation_error(info.value, limit=10)
    assert "more" not in full
    for field in ("result_id", "components.platelets.value", "status", "shoe_size"):
        assert field in full


def test_value_error_prefix_is_stripped() -> None:
    description = _describe(_raw(_component("wbc", value=1.0, unit=SECRET_TEXT)))
    assert description == "components: unknown unit for wbc"


def test_a_key_that_does_not_look_like_a_field_name_is_not_echoed() -> None:
    raw = json.dumps(
        {
            "result_id": "LAB-1",
            "patient_id": "P-1",
            "collected_at": "2026-11-20T08:15:00Z",
            "components": {"Smith, John 1961-04-02": {"value": 1.0, "unit": "K/uL"}},
        }
    )
    with pytest.raises(ValidationError) as caught:
        parse_result(raw)
    message = describe_validation_error(caught.value)
    assert "components.<unnamed>" in message
    assert "Smith" not in message


# What a measured number's validation says, exactly (error type, context, the value kept): the
# checks run as one Python validator, and must say what pydantic's own ge=0 and
# allow_inf_nan=False constraints said (NaN and -inf fail ge=0 first).
MEASURE_ERRORS = [
    pytest.param("NaN", "greater_than_equal", {"ge": 0}, id="NaN"),
    pytest.param("-Infinity", "greater_than_equal", {"ge": 0}, id="minus-Infinity"),
    pytest.param("-1e400", "greater_than_equal", {"ge": 0}, id="minus-1e400"),
    pytest.param("-1", "greater_than_equal", {"ge": 0}, id="minus-one"),
    pytest.param('"-0.5"', "greater_than_equal", {"ge": 0}, id="negative-text"),
    pytest.param('"nan"', "greater_than_equal", {"ge": 0}, id="nan-text"),
    pytest.param("Infinity", "finite_number", None, id="Infinity"),
    pytest.param("1e400", "finite_number", None, id="1e400"),
    pytest.param('"inf"', "finite_number", None, id="inf-text"),
    pytest.param("true", "value_error", None, id="true"),
    pytest.param("false", "value_error", None, id="false"),
    pytest.param('"abc"', "float_parsing", None, id="text"),
    pytest.param("null", "float_type", None, id="null"),
]


@pytest.mark.parametrize(("literal", "error_type", "context"), MEASURE_ERRORS)
@pytest.mark.parametrize("field", ["value", "lln"])
def test_measure_errors_are_pydantics_own(
    literal: str, error_type: str, context: dict[str, Any] | None, field: str
) -> None:
    other = "lln" if field == "value" else "value"
    raw = f'{{"{field}": {literal}, "{other}": 1.0, "unit": "K/uL"}}'
    if field == "lln" and literal == "null":
        assert Component.model_validate_json(raw).lln is None  # lln is optional
        return
    with pytest.raises(ValidationError) as info:
        Component.model_validate_json(raw)
    (error,) = info.value.errors(include_url=False, include_input=False)
    assert error["loc"] == (field,)
    assert error["type"] == error_type
    if error_type == "value_error":
        assert error["msg"] == "Value error, a boolean, not a number"
    else:
        assert error.get("ctx") == context


@pytest.mark.parametrize(
    ("literal", "expected"),
    [("-0.0", 0.0), ('"-0"', 0.0), ("0", 0.0), ("158", 158.0), ('" 2.5 "', 2.5), ("4.41", 4.41)],
)
def test_measure_values_are_unsigned_floats(literal: str, expected: float) -> None:
    component = Component.model_validate_json(
        f'{{"value": {literal}, "unit": "K/uL", "lln": {literal}}}'
    )
    for number in (component.value, component.lln):
        assert type(number) is float
        assert number == expected
        assert str(number) == str(expected)  # never "-0.0"
