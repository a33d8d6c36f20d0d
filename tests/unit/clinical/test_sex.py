"""Sex from every common spelling: HL7 PID-8, FHIR gender, words in any case, canonical JSON."""

from __future__ import annotations

import json

import pytest

from monitor.adapters.hl7v2 import parse_oru
from monitor.clinical.analytes import SEX_SPELLINGS, Sex, read_sex
from monitor.clinical.detector import Detector
from monitor.clinical.model import parse_result

SPELLINGS = [
    ("M", Sex.MALE),
    ("m", Sex.MALE),
    ("Male", Sex.MALE),
    ("MALE", Sex.MALE),
    (" male ", Sex.MALE),
    ("F", Sex.FEMALE),
    ("Female", Sex.FEMALE),
    ("FEMALE", Sex.FEMALE),
    ("female", Sex.FEMALE),
    ("U", None),
    ("O", None),
    ("A", None),
    ("N", None),
    ("Unknown", None),
    ("other", None),
    ("", None),
    ("X9", None),
]


@pytest.mark.parametrize(("text", "sex"), SPELLINGS)
def test_read_sex(text: str, sex: Sex | None) -> None:
    assert read_sex(text) == sex


def test_every_listed_spelling_is_lower_case_and_only_female_or_male_name_a_sex() -> None:
    assert all(key == key.strip().lower() for key in SEX_SPELLINGS)
    assert {v for v in SEX_SPELLINGS.values() if v is not None} == {Sex.FEMALE, Sex.MALE}


def pid8(sex: str) -> bytes:
    return "\r".join([
        "MSH|^~\\&|LIS|LAB|CBCMON|ONC|20261120091500+0100||ORU^R01|C1|P|2.3",
        f"PID|1||MRN-9^^^HOSP^MR||DOE^JOHN||19600101|{sex}",
        "OBR|1|ORD-1|SP-1|58410-2^CBC^LN|||202611200815+0100",
        "OBX|1|NM|718-7^Hemoglobin^LN||12.5|g/dL|||||F",
    ]).encode()  # fmt: skip


@pytest.mark.parametrize(("text", "sex"), SPELLINGS)
def test_hl7_pid8_in_every_common_spelling(text: str, sex: Sex | None) -> None:
    (result,) = parse_oru(pid8(text))
    assert result.sex == sex


@pytest.mark.parametrize(("text", "sex"), [("Male", "male"), ("FEMALE", "female"), ("U", None)])
def test_canonical_json_takes_the_spelled_out_words(text: str, sex: str | None) -> None:
    body = {
        "result_id": "S1",
        "patient_id": "MRN-9",
        "collected_at": "2026-11-20T08:15:00Z",
        "sex": text,
        "components": {"hemoglobin": {"value": 12.5, "unit": "g/dL"}},
    }
    assert parse_result(json.dumps(body)).sex == sex


def test_a_man_spelled_male_is_graded_with_the_male_limit() -> None:
    # Hgb 12.5 g/dL is normal for a woman (LLN 12.0) but low for a man (LLN 13.0).
    (result,) = parse_oru(pid8("Male"))
    outcome = Detector().process(None, result)
    (alert,) = outcome.alerts
    assert (alert.condition, alert.grade, alert.lln_source) == ("anemia", 1, "default-male")
