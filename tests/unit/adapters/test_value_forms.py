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
        ("g/dL", "unit"),
        ("furlongs", "unit"),
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
