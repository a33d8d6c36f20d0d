"""Numbers as labs write them (errors.text_number) and HL7 rows read one by one (issue 9)."""

from __future__ import annotations

import math

import pytest

from monitor.adapters.errors import NegativeNumberError, NotANumberError, text_number
from monitor.adapters.hl7v2 import read_oru
from monitor.clinical.analytes import Analyte

HEAD = (
    "MSH|^~\\&|LAB|X|MON|Y|202611300800||ORU^R01|1|P|2.3\r"
    "PID|1||MRN1^^^H^MR||T^P||19600101|F\r"
    "OBR|1|O1|S1|58410-2^CBC^LN|||202611300700-0500\r"
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1.9", 1.9),
        (" 1.9 ", 1.9),
        ("+07.9", 7.9),
        ("012", 12.0),
        (".5", 0.5),
        ("5.", 5.0),
        ("-0", 0.0),
        (">1000", 1000.0),
        ("> 1000", 1000.0),
        ("<=0.5", 0.5),
        (">=2", 2.0),
        ("=3.1", 3.1),
    ],
)
def test_numbers_written_as_text(text: str, value: float) -> None:
    assert text_number(text) == value


@pytest.mark.parametrize("text", ["<0.1", "< 0.1", " <0.1"])
def test_below_a_limit_is_just_below_it(text: str) -> None:
    assert text_number(text) == math.nextafter(0.1, 0.0)


@pytest.mark.parametrize(
    "text", ["**.*", "***.**", "----", "+++", "*", "", "see comment", "1,9", "1.9.1", "<>1", "1e3"]
)
def test_masks_and_words_are_not_numbers(text: str) -> None:
    with pytest.raises(NotANumberError):
        text_number(text)


def test_a_negative_number_is_refused_as_such() -> None:
    with pytest.raises(NegativeNumberError):
        text_number("-1.5")


@pytest.mark.parametrize("value_type", ["NM", "ST", "TX", "FT"])
def test_plain_numbers_in_every_text_value_type(value_type: str) -> None:
    parsed = read_oru(HEAD + f"OBX|1|{value_type}|6690-2^WBC^LN||1.9|X10E3/UL|3.4-10.8|L|||F")
    (result,) = parsed.results
    assert result.components[Analyte.WBC].value == 1.9
    assert result.components[Analyte.WBC].lln == 3.4
    assert parsed.rejections == []


@pytest.mark.parametrize(
    ("unit", "cause"),
    [
        ("10^3/uL", "truncated_unit"),
        ("x10^9/L", "truncated_unit"),
        ("g/dL", "code"),  # a real unit, of another analyte: the code and unit disagree
        ("furlongs", "unit"),
        ("bananas", "unit"),
        ("", "unit"),
    ],
)
def test_unit_faults_are_told_apart(unit: str, cause: str) -> None:
    parsed = read_oru(
        HEAD
        + f"OBX|1|NM|777-3^PLT^LN||12|{unit}|150-400|LL|||F\r"
        + "OBX|2|NM|6690-2^WBC^LN||0.8|10*3/uL|4.0-10.0|LL|||F"
    )
    assert [(r.where, r.cause) for r in parsed.rejections] == [("OBR 1, OBX 1", cause)]
    assert set(parsed.results[0].components) == {Analyte.WBC}


@pytest.mark.parametrize(
    ("unit", "cause", "reason"),
    [
        ("bananas", "unit", "OBX-6 unit is not a known unit"),
        ("%", "code", "OBX-3 disagrees with its name or OBX-6 unit (code 777-3 (platelets) sent"),
    ],
)
def test_an_unknown_unit_is_not_called_a_code_disagreement(
    unit: str, cause: str, reason: str
) -> None:
    parsed = read_oru(HEAD + f"OBX|1|NM|777-3^PLT^LN||12|{unit}|150-400|LL|||F")
    (rejection,) = parsed.rejections
    assert rejection.cause == cause
    assert rejection.reason.startswith(reason)
    assert unit not in rejection.reason


def test_rejected_rows_are_listed_in_row_order() -> None:
    # OBX 2's unit is read before the plausibility check rejects OBX 1 (impossible platelets).
    parsed = read_oru(
        HEAD
        + "OBX|1|NM|777-3^PLT^LN||99999|10*9/L|150-400|HH|||F\r"
        + "OBX|2|NM|6690-2^WBC^LN||0.8|bananas|4.0-10.0|LL|||F\r"
        + "OBX|3|NM|751-8^NEUT^LN||0.2|10*9/L|1.8-7.7|LL|||F\r"
        + "OBX|10|NM|718-7^HGB^LN||**.*|g/dL|12-16||||F\r"
        + "OBX|11|NM|731-0^LYMPH^LN||0.1|furlongs|1.0-4.0|L|||F"
    )
    assert [(r.where, r.cause) for r in parsed.rejections] == [
        ("OBR 1, OBX 1", "implausible"),
        ("OBR 1, OBX 2", "unit"),
        ("OBR 1, OBX 10", "no_value"),
        ("OBR 1, OBX 11", "unit"),
    ]
    assert set(parsed.results[0].components) == {Analyte.NEUTROPHILS}


def test_an_escaped_caret_in_the_unit_is_read() -> None:
    parsed = read_oru(HEAD + "OBX|1|NM|777-3^PLT^LN||12|10\\S\\3/uL|150-400|LL|||F")
    assert parsed.results[0].components[Analyte.PLATELETS].unit == "10^3/uL"
    assert parsed.rejections == []


def test_a_message_of_only_unusable_rows_gives_no_result_and_lists_them() -> None:
    parsed = read_oru(
        HEAD
        + "OBX|1|NM|6690-2^WBC^LN||----|10*9/L|||||F\r"
        + "OBX|2|NM|777-3^PLT^LN|||10*9/L|||||F"
    )
    assert parsed.results == []
    assert parsed.dead_letter_code == "rows_rejected"
    assert parsed.reason == (
        "2 rows rejected, 0 read: OBR 1, OBX 1: OBX-5 is not a number (OBX-2 is NM); "
        "OBR 1, OBX 2: OBX-5 is empty"
    )
