"""HL7 v2 ORU^R01 to canonical CBC results (monitor.adapters.hl7v2).

The sample messages in tests/data/hl7v2 are synthetic and stored with LF line ends so they read
well in a diff; ``load`` joins their segments with CR (the HL7 separator) unless told otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.adapters.errors import AdapterError
from monitor.adapters.hl7v2 import looks_like_hl7, parse_oru, read_oru
from monitor.clinical.analytes import Analyte, Sex
from monitor.clinical.model import CBCResult

DATA = Path(__file__).resolve().parents[2] / "data" / "hl7v2"


def load(name: str, eol: bytes = b"\r") -> bytes:
    return b"".join(line + eol for line in (DATA / name).read_bytes().splitlines())


def only(
    message: bytes | str,
    local_codes: Mapping[str, Analyte] | None = None,
    default_tz: tzinfo | None = None,
) -> CBCResult:
    results = parse_oru(message, local_codes=local_codes, default_tz=default_tz)
    assert len(results) == 1
    return results[0]


def values(result: CBCResult) -> dict[str, float]:
    return {analyte.value: component.value for analyte, component in result.components.items()}


# --- a small builder for edge cases ---------------------------------------------------------

PATIENT = "MRN-SECRET-7731"
MSH = "MSH|^~\\&|LIS|LAB|CBCMON|ONC|20261120091500+0100||ORU^R01^ORU_R01|CTRL0001|P|2.5.1"
PID = f"PID|1||{PATIENT}^^^HOSP^MR||SECRETNAME^ZELDA||19700101|F"
OBR = "OBR|1|PLACER-1|FILLER-1|58410-2^CBC panel^LN|||202611200815+0100"


def obx(
    code: str = "6690-2^WBC^LN",
    value: str = "2.1",
    unit: str = "10*9/L^^UCUM",
    range_: str = "4.0-11.0",
    status: str = "F",
    value_type: str = "NM",
    set_id: int = 1,
) -> str:
    return f"OBX|{set_id}|{value_type}|{code}||{value}|{unit}|{range_}|L|||{status}"


def oru(*segments: str, msh: str = MSH, pid: str | None = PID, obr: str | None = OBR) -> str:
    head = [msh] + ([pid] if pid is not None else []) + ([obr] if obr is not None else [])
    return "\r".join([*head, *segments]) + "\r"


def error_of(message: bytes | str, local_codes: Mapping[str, Analyte] | None = None) -> str:
    with pytest.raises(AdapterError) as caught:
        parse_oru(message, local_codes=local_codes)
    return str(caught.value)


# --- a realistic v2.5.1 CBC with automated differential --------------------------------------


def test_realistic_cbc_with_auto_differential() -> None:
    result = only(load("cbc_auto_diff_v251.hl7"))
    assert result.result_id == "LAB2611200042"  # OBR-3 filler order number, EI.1
    assert result.patient_id == "MRN4417729"  # PID-3, first repetition, CX.1
    assert result.sex is Sex.FEMALE
    assert result.collected_at == datetime(2026, 11, 20, 7, 15, tzinfo=UTC)
    assert result.collected_at.utcoffset() == timedelta(hours=1)
    assert result.status == "final"
    assert values(result) == {
        "wbc": 2.1,
        "rbc": 3.52,
        "hemoglobin": 9.1,
        "hematocrit": 28.4,
        "mcv": 80.7,
        "platelets": 95.0,
        "neutrophils": 0.8,
        "neutrophils_pct": 38.1,
        "lymphocytes": 0.9,
        "lymphocytes_pct": 42.9,  # LOINC 736-9
    }


def test_realistic_units_and_lower_limits() -> None:
    components = only(load("cbc_auto_diff_v251.hl7")).components
    assert components[Analyte.WBC].unit == "10*9/L"  # identifier of 10*9/L^10*9/L^UCUM
    assert components[Analyte.HEMATOCRIT].unit == "%"
    assert components[Analyte.MCV].unit == "fL"
    assert components[Analyte.RBC].unit == "10*12/L"
    assert {a.value: c.lln for a, c in components.items()} == {
        "wbc": 4.0,
        "rbc": 3.8,
        "hemoglobin": 12.0,
        "hematocrit": 36.0,
        "mcv": 80.0,
        "platelets": 150.0,
        "neutrophils": 1.8,
        "neutrophils_pct": 40.0,
        "lymphocytes": 1.0,
        "lymphocytes_pct": 20.0,
    }


def test_rows_that_are_not_cbc_components_are_ignored() -> None:
    # MCH 785-6, MCHC 786-4 (g/dL, like hemoglobin) and RDW 788-0 are not CBC components here.
    result = only(load("cbc_auto_diff_v251.hl7"))
    assert len(result.components) == 10
    assert result.components[Analyte.HEMOGLOBIN].value == 9.1  # not MCHC's 32.0


@pytest.mark.parametrize(
    "transform",
    [
        pytest.param(lambda m: m, id="cr"),
        pytest.param(lambda m: m.replace(b"\r", b"\n"), id="lf"),
        pytest.param(lambda m: m.replace(b"\r", b"\r\n"), id="crlf"),
        pytest.param(lambda m: b"\x0b" + m + b"\x1c\r", id="mllp"),
        pytest.param(lambda m: b"\xef\xbb\xbf" + m, id="bom"),
        pytest.param(lambda m: b"\n \n" + m + b"\n\n  ", id="whitespace"),
        pytest.param(lambda m: m.replace(b"\r", b"\r\r"), id="blank-lines"),
        pytest.param(lambda m: m.decode(), id="str"),
    ],
)
def test_framing_and_line_ends_do_not_change_the_result(
    transform: Callable[[bytes], bytes | str],
) -> None:
    message = load("cbc_auto_diff_v251.hl7")
    assert parse_oru(transform(message)) == parse_oru(message)


def test_v23_message_with_lf_separators() -> None:
    result = only((DATA / "cbc_v23_lf.hl7").read_bytes())  # LF line ends, as stored
    assert result.result_id == "F-778201"
    assert result.patient_id == "445566"
    assert result.sex is Sex.MALE
    assert result.collected_at == datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    assert result.collected_at.utcoffset() == timedelta(hours=-5)
    assert result.components[Analyte.PLATELETS].unit == "K/uL"
    assert result.components[Analyte.NEUTROPHILS].value == 3.1  # 26499-4, no method
    assert result.components[Analyte.RBC].lln == 4.7
    assert len(result.components) == 7


def test_crlf_v23_message() -> None:
    result = only(load("cbc_v23_lf.hl7", eol=b"\r\n"))
    assert result.result_id == "F-778201"
    assert result.components[Analyte.HEMOGLOBIN].value == 13.9


def test_custom_encoding_characters_are_honoured() -> None:
    message = load("cbc_auto_diff_v251.hl7").decode()
    table = str.maketrans({"|": "!", "^": "$", "~": "@", "\\": "?", "&": ";"})
    assert not set("!$@?;") & set(message)
    assert parse_oru(message.translate(table)) == parse_oru(message)


# --- panels and specimens --------------------------------------------------------------------


def test_two_panels_of_one_specimen_merge() -> None:
    result = only(load("cbc_and_diff_two_obr.hl7"))
    assert result.result_id == "ACC20261121-17"
    assert values(result) == {
        "wbc": 1.9,
        "hemoglobin": 10.2,
        "platelets": 61.0,
        "neutrophils": 0.4,
        "neutrophils_pct": 21.0,
        "lymphocytes": 1.2,
    }
    assert result.collected_at == datetime(2026, 11, 21, 7, 30, tzinfo=UTC)


def test_two_specimens_give_two_results_in_message_order() -> None:
    first, second = parse_oru(load("two_specimens.hl7"))
    assert (first.result_id, second.result_id) == ("ACC20261122-03", "ACC20261122-41")
    assert first.patient_id == second.patient_id == "MRN6630044"
    assert first.collected_at == datetime(2026, 11, 22, 5, 0, tzinfo=UTC)
    assert second.collected_at == datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    assert first.components[Analyte.WBC].value == 3.2
    assert second.components[Analyte.WBC].value == 2.8


def test_specimen_id_falls_back_to_spm2_then_obr2() -> None:
    no_filler = "OBR|1|PLACER-1||58410-2^CBC panel^LN|||202611200815+0100"
    spm = "SPM|1|SPM-PLACER&LAB^SPM-FILLER&LAB||BLD"
    assert only(oru(obx(), spm, obr=no_filler)).result_id == "SPM-FILLER"
    spm_placer_only = "SPM|1|SPM-PLACER&LAB||BLD"
    assert only(oru(obx(), spm_placer_only, obr=no_filler)).result_id == "SPM-PLACER"
    assert only(oru(obx(), obr=no_filler)).result_id == "PLACER-1"


def test_no_specimen_id_anywhere_is_an_error() -> None:
    bare = "OBR|1|||58410-2^CBC panel^LN|||202611200815+0100"
    assert "OBR 1: no specimen id in OBR-3, SPM-2 or OBR-2" in error_of(oru(obx(), obr=bare))


def test_panels_of_different_patients_give_separate_results() -> None:
    other_pid = "PID|2||MRN-OTHER^^^HOSP^MR||OTHER^PAT||19800101|M"
    other_obr = "OBR|2|PLACER-2|FILLER-2|58410-2^CBC panel^LN|||202611200900+0100"
    first, second = parse_oru(oru(obx(), other_pid, other_obr, obx(value="5.0")))
    assert (first.patient_id, first.sex) == (PATIENT, Sex.FEMALE)
    assert (second.patient_id, second.sex) == ("MRN-OTHER", Sex.MALE)
    assert second.components[Analyte.WBC].value == 5.0


def test_one_specimen_id_for_two_patients_is_an_error() -> None:
    other_pid = "PID|2||MRN-OTHER^^^HOSP^MR||OTHER^PAT||19800101|M"
    message = oru(obx(), other_pid, OBR, obx(value="5.0"))
    assert "different patients" in error_of(message)


def test_panels_of_one_specimen_with_different_collection_times_is_an_error() -> None:
    later = "OBR|2|PLACER-1|FILLER-1|57021-8^CBC diff^LN|||202611200915+0100"
    message = oru(obx(), later, obx("751-8^Neutrophils^LN", "0.8"))
    assert "differ in OBR-7 collection time" in error_of(message)


def test_a_panel_without_obr7_takes_the_time_of_its_specimen() -> None:
    undated = "OBR|2|PLACER-1|FILLER-1|57021-8^CBC diff^LN"
    result = only(oru(obx(), undated, obx("751-8^Neutrophils^LN", "0.8")))
    assert result.collected_at == datetime(2026, 11, 20, 7, 15, tzinfo=UTC)
    assert set(result.components) == {Analyte.WBC, Analyte.NEUTROPHILS}


def test_a_chemistry_panel_beside_a_cbc_is_left_out() -> None:
    chemistry = "OBR|2|PLACER-9|FILLER-9|24323-8^CMP^LN"  # no OBR-7: never needed
    sodium = obx("2951-2^Sodium^LN", "139", "mmol/L", "136-145")
    results = parse_oru(oru(obx(), chemistry, sodium))
    assert [r.result_id for r in results] == ["FILLER-1"]


# --- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sn", "expected"),
    [("^0.5", 0.5), (">^100", 100.0), ("=^2.5", 2.5), ("<=^.1", 0.1)],
)
def test_structured_numeric_takes_the_number(sn: str, expected: float) -> None:
    result = only(oru(obx("751-8^Neutrophils^LN", sn, value_type="SN")))
    assert result.components[Analyte.NEUTROPHILS].value == expected


def test_a_value_below_a_limit_is_graded_as_below_it() -> None:
    from monitor.clinical.grading import grade

    result = only(oru(obx("751-8^Neutrophils^LN", "<^0.5", value_type="SN")))
    component = result.components[Analyte.NEUTROPHILS]
    assert component.value < 0.5
    assert f"{component.value:g}" == "0.5"
    assert grade("neutrophils", component.value, component.unit) == 4


@pytest.mark.parametrize(
    ("sn", "reason"),
    [
        ("^1^-^2", "range or ratio"),
        ("^1^:^128", "range or ratio"),
        ("^2^+", "range or ratio"),
        ("<<^1", "unknown comparator"),
        ("<^", "no number"),
        ("^1e3", "no number"),
    ],
)
def test_structured_numeric_that_is_not_one_number_is_an_error(sn: str, reason: str) -> None:
    message = error_of(oru(obx(value=sn, value_type="SN", set_id=4)))
    assert message.startswith("OBR 1, OBX 4: ")
    assert reason in message


@pytest.mark.parametrize("value", ["abc", "1,5", "1.2.3", "nan", "inf", "1e3"])
def test_nm_value_that_is_not_a_number_is_an_error(value: str) -> None:
    assert "OBX-5 is not a number" in error_of(oru(obx(value=value)))


def test_negative_value_is_a_rejected_row() -> None:
    # Issue 9: a negative number is a row-level rejection (was the canonical model's error).
    message = error_of(oru(obx(value="-1.5")))
    assert message == "OBR 1, OBX 1: OBX-5 is a negative number"


def test_rows_without_a_number_are_left_out_and_reported() -> None:
    # Issue 9: such rows were skipped silently; they are now reported, and the rest is read.
    parsed = read_oru(
        oru(
            obx(),
            obx("777-3^Platelets^LN", "Clumped, unable to count", value_type="ST", set_id=2),
            obx("718-7^Hemoglobin^LN", "", "g/dL", set_id=3),
            obx("751-8^Neutrophils^LN", '""', set_id=4),
        )
    )
    assert len(parsed.results) == 1
    assert set(parsed.results[0].components) == {Analyte.WBC}
    assert [(r.where, r.cause) for r in parsed.rejections] == [
        ("OBR 1, OBX 2", "no_value"),
        ("OBR 1, OBX 3", "no_value"),
        ("OBR 1, OBX 4", "no_value"),
    ]
    assert "Clumped" not in parsed.reason


@pytest.mark.parametrize(
    ("reference_range", "lln"),
    [
        ("4.0-11.0", 4.0),
        ("4.0 - 11.0", 4.0),
        (">1.5", 1.5),
        (">=1.5", 1.5),
        ("> 1.5", 1.5),
        ("<5", None),
        ("<=5", None),
        ("", None),
        ('""', None),
        ("see comment", None),
        ("0-0.5", 0.0),
    ],
)
def test_reference_range_gives_the_lower_limit(reference_range: str, lln: float | None) -> None:
    result = only(oru(obx(range_=reference_range)))
    assert result.components[Analyte.WBC].lln == lln


def test_unit_with_escaped_caret_is_decoded() -> None:
    result = only(oru(obx(unit="10\\S\\9/L")))
    assert result.components[Analyte.WBC].unit == "10^9/L"


def test_unit_from_text_component_when_identifier_is_empty() -> None:
    result = only(oru(obx(unit="^K/uL")))
    assert result.components[Analyte.WBC].unit == "K/uL"


def test_abnormal_flags_with_repetitions_parse_and_are_not_kept() -> None:
    row = "OBX|1|NM|6690-2^WBC^LN||2.1|10*9/L|4.0-11.0|LL~A~<|||F"
    result = only(oru(row))
    assert result.components[Analyte.WBC].model_dump() == {
        "value": 2.1,
        "unit": "10*9/L",
        "lln": 4.0,
    }


# --- collection time ------------------------------------------------------------------------


def _at(dtm: str) -> str:
    return oru(obx(), obr=f"OBR|1|PLACER-1|FILLER-1|58410-2^CBC panel^LN|||{dtm}")


@pytest.mark.parametrize(
    ("dtm", "expected"),
    [
        ("202611200815+0100", datetime(2026, 11, 20, 7, 15, tzinfo=UTC)),
        ("202611200815-0500", datetime(2026, 11, 20, 13, 15, tzinfo=UTC)),
        ("202611200815+0000", datetime(2026, 11, 20, 8, 15, tzinfo=UTC)),
        ("20261120081530+0530", datetime(2026, 11, 20, 2, 45, 30, tzinfo=UTC)),
        ("20261120081530.25+0100", datetime(2026, 11, 20, 7, 15, 30, 250000, tzinfo=UTC)),
        ("202611200815+0100^M", datetime(2026, 11, 20, 7, 15, tzinfo=UTC)),  # v2.3 TS
    ],
)
def test_collection_time_with_offset(dtm: str, expected: datetime) -> None:
    assert only(_at(dtm)).collected_at == expected


def test_offset_is_kept_not_just_the_instant() -> None:
    collected = only(_at("202611200815-0500")).collected_at
    assert collected.utcoffset() == timedelta(hours=-5)
    assert (collected.hour, collected.minute) == (8, 15)


def test_collection_time_without_offset_uses_default_tz() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    collected = only(_at("202611200815"), default_tz=berlin).collected_at
    assert collected == datetime(2026, 11, 20, 7, 15, tzinfo=UTC)
    summer = only(_at("202607200815"), default_tz=berlin).collected_at
    assert summer == datetime(2026, 7, 20, 6, 15, tzinfo=UTC)


def test_offset_in_the_message_wins_over_default_tz() -> None:
    collected = only(_at("202611200815-0500"), default_tz=timezone(timedelta(hours=9)))
    assert collected.collected_at == datetime(2026, 11, 20, 13, 15, tzinfo=UTC)


def test_collection_time_without_offset_and_without_default_tz_is_an_error() -> None:
    message = error_of(_at("202611200815"))
    assert message == "OBR 1: OBR-7 collection time has no time zone offset"


@pytest.mark.parametrize(
    ("dtm", "reason"),
    [
        ("", "OBR-7 collection time is missing"),
        ("20261120+0100", "not precise to the minute"),
        ("2026112008+0100", "not precise to the minute"),
        ("202613200815+0100", "not a valid date, time or offset"),
        ("202611200875+0100", "not a valid date, time or offset"),
        ("202611200815+2500", "not a valid date, time or offset"),
        ("2026-11-20T08:15:00+01:00", "not an HL7 date and time"),
    ],
)
def test_bad_collection_time_is_an_error(dtm: str, reason: str) -> None:
    assert reason in error_of(_at(dtm))


# --- result status --------------------------------------------------------------------------


def _statuses(*codes: str) -> CBCResult:
    rows = [
        obx("6690-2^WBC^LN", "2.1", status=codes[0], set_id=1),
        obx("718-7^Hgb^LN", "9.1", "g/dL", "12.0-16.0", status=codes[1], set_id=2),
        obx("777-3^PLT^LN", "95", status=codes[2], set_id=3),
    ]
    return only(oru(*rows))


@pytest.mark.parametrize(
    ("codes", "status"),
    [
        (("F", "F", "F"), "final"),
        (("F", "C", "F"), "corrected"),
        (("P", "C", "P"), "corrected"),
        (("P", "P", "P"), "preliminary"),
        (("P", "F", "P"), "final"),
        (("R", "S", "P"), "preliminary"),
        (("U", "F", "F"), "final"),
        (("P", "P", "X"), "preliminary"),
        (("C", "F", "X"), "corrected"),
        (("f", "c", "f"), "corrected"),
    ],
)
def test_result_status_from_obx11(codes: tuple[str, str, str], status: str) -> None:
    assert _statuses(*codes).status == status


@pytest.mark.parametrize("skipped", ["X", "D", "W", "N", "I"])
def test_cancelled_or_deleted_rows_are_skipped(skipped: str) -> None:
    result = _statuses("F", skipped, "F")
    assert set(result.components) == {Analyte.WBC, Analyte.PLATELETS}


def test_all_rows_cancelled_leaves_no_cbc_component() -> None:
    assert error_of(oru(obx(status="X"))) == "no CBC component in any OBX"


@pytest.mark.parametrize("code", ["", "Q"])
def test_missing_or_unknown_status_of_a_cbc_row_is_an_error(code: str) -> None:
    assert "OBR 1, OBX 1: OBX-11 result status" in error_of(oru(obx(status=code)))


def test_unknown_status_of_a_non_cbc_row_is_ignored() -> None:
    sodium = obx("2951-2^Sodium^LN", "139", "mmol/L", status="Q", set_id=2)
    assert set(only(oru(obx(), sodium)).components) == {Analyte.WBC}


def test_duplicate_analyte_across_panels_prefers_the_more_final_row() -> None:
    diff = "OBR|2|PLACER-1|FILLER-1|57021-8^CBC diff^LN|||202611200815+0100"
    prelim_later = only(oru(obx(value="2.1"), diff, obx(value="9.9", status="P")))
    assert prelim_later.components[Analyte.WBC].value == 2.1
    assert prelim_later.status == "final"
    final_later = only(oru(obx(value="2.1", status="P"), diff, obx(value="2.3")))
    assert final_later.components[Analyte.WBC].value == 2.3
    assert final_later.status == "final"
    both_final = only(oru(obx(value="2.1"), diff, obx(value="2.3")))
    assert both_final.components[Analyte.WBC].value == 2.3  # the later of equals
    corrected = only(oru(obx(value="2.1", status="C"), diff, obx(value="2.3")))
    assert corrected.components[Analyte.WBC].value == 2.1
    assert corrected.status == "corrected"


# --- codes ----------------------------------------------------------------------------------


def test_local_code_mapped_through_local_codes() -> None:
    message = oru(obx("XWBC^White cells^99LAB"))
    result = only(message, local_codes={"XWBC": Analyte.WBC})
    assert result.components[Analyte.WBC].value == 2.1
    assert error_of(message) == "no CBC component in any OBX"


def test_alternate_code_is_used_when_the_first_is_unknown() -> None:
    result = only(oru(obx("LWBC^White cell count^L^6690-2^Leukocytes^LN")))
    assert result.components[Analyte.WBC].value == 2.1


def test_alternate_code_is_checked_against_its_own_name() -> None:
    message = oru(obx("LWBC^White cell count^L^6690-2^Platelets^LN"))
    assert "OBX-3 disagrees" in error_of(message)


def test_mislabelled_row_wbc_code_with_hemoglobin_unit_is_an_error() -> None:
    message = error_of(oru(obx(), obx("6690-2^WBC^LN", "9.1", "g/dL", set_id=2)))
    assert message.startswith("OBR 1, OBX 2: OBX-3 disagrees with its name or OBX-6 unit")
    assert "6690-2" in message  # a LOINC code from the table may be named


def test_code_with_the_name_of_another_analyte_is_an_error() -> None:
    assert "OBX-3 disagrees" in error_of(oru(obx("6690-2^Platelet count^LN")))


def test_mismatch_on_a_local_code_does_not_repeat_the_code() -> None:
    message = error_of(
        oru(obx("LOCAL-SECRET-CODE^WBC^L", unit="g/dL")),
        local_codes={"LOCAL-SECRET-CODE": Analyte.WBC},
    )
    assert "a local code for wbc" in message
    assert "LOCAL-SECRET-CODE" not in message


def test_cbc_row_without_unit_is_an_error() -> None:
    assert "OBX-6 has no unit" in error_of(oru(obx(unit="")))


# --- escapes, repetitions, Z-segments, NTE ---------------------------------------------------


def test_escapes_z_segments_and_nte_parse() -> None:
    result = only(load("escapes_zsegments.hl7"))
    assert result.result_id == "ACC20261123-09"
    assert result.patient_id == "MRN7741120"
    assert values(result) == {"wbc": 3.4, "hemoglobin": 11.5, "platelets": 140.0}
    assert result.components[Analyte.WBC].unit == "10^9/L"
    assert result.components[Analyte.HEMOGLOBIN].lln == 12.0  # ">=12.0"
    assert result.components[Analyte.PLATELETS].lln == 150.0  # ">150"


def test_escape_sequences_in_an_identifier_are_decoded() -> None:
    pid = "PID|1||AB\\F\\1\\S\\2\\T\\3\\R\\4\\E\\5\\X41\\\\H\\\\Zx\\^^^HOSP^MR||N^N||19700101|F"
    assert only(oru(obx(), pid=pid)).patient_id == "AB|1^2&3~4\\5A"


def test_hex_escape_in_obx3_text_reaches_the_name_check() -> None:
    # "\X506C6174656C657473\" is "Platelets": a WBC code named like platelets is a mismatch.
    plain = oru(obx("6690-2^\\X5768697465\\ cells^LN"))  # "White cells"
    assert only(plain).components[Analyte.WBC].value == 2.1
    assert "OBX-3 disagrees" in error_of(oru(obx("6690-2^\\X506C6174656C657473\\^LN")))


def test_z_segment_between_rows_and_nte_after_a_row() -> None:
    message = oru(
        obx(),
        "NTE|1|L|Repeat \\T\\ confirmed \\.br\\ by film",
        "ZXY|1|anything^at~all|\\Zlocal\\",
        obx("777-3^PLT^LN", "95", set_id=2),
    )
    assert values(only(message)) == {"wbc": 2.1, "platelets": 95.0}


def test_missing_optional_fields_parse() -> None:
    msh = "MSH|^~\\&|||||||ORU^R01|1|P|2.4"
    pid = "PID|||P1"
    obr = "OBR|||F1||||202611200815+0100"
    row = "OBX||NM|6690-2||2.1|10*9/L|||||F"
    result = only(oru(row, msh=msh, pid=pid, obr=obr))
    assert (result.patient_id, result.sex, result.result_id) == ("P1", None, "F1")
    assert result.components[Analyte.WBC].lln is None


@pytest.mark.parametrize(("pid8", "sex"), [("F", Sex.FEMALE), ("M", Sex.MALE), ("m", Sex.MALE)])
def test_sex_from_pid8(pid8: str, sex: Sex) -> None:
    pid = f"PID|1||P1^^^H^MR||N^N||19700101|{pid8}"
    assert only(oru(obx(), pid=pid)).sex is sex


@pytest.mark.parametrize("pid8", ["", "U", "O", "A", "N", '""', "X"])
def test_other_sex_codes_are_unknown(pid8: str) -> None:
    pid = f"PID|1||P1^^^H^MR||N^N||19700101|{pid8}"
    assert only(oru(obx(), pid=pid)).sex is None


def test_latin1_message_parses() -> None:
    message = oru(obx(), pid="PID|1||P1^^^H^MR||M\u00fcller^J\u00fcrgen||19700101|M")
    assert only(message.encode("latin-1")).patient_id == "P1"


def test_v23_to_v251_versions_are_accepted() -> None:
    for version in ("2.3", "2.3.1", "2.4", "2.5", "2.5.1"):
        msh = f"MSH|^~\\&|LIS|LAB|MON|ONC|20261120091500||ORU^R01|C1|P|{version}"
        assert only(oru(obx(), msh=msh)).components[Analyte.WBC].value == 2.1


# --- messages that cannot become a result ----------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"", "not HL7 v2: no MSH segment"),
        (bytes(range(256)), "not HL7 v2: no MSH segment"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not HL7 v2: no MSH segment"),
        (b'{"result_id": "x"}', "not HL7 v2: no MSH segment"),
        (b"PID|1||P1\rOBR|1", "not HL7 v2: no MSH segment"),
        (b"MSH", "encoding characters"),
        (b"MSH|^~\\&", "encoding characters"),
        (b"MSH|^^\\&|A|B", "encoding characters"),
        (b"MSHA^~\\&A", "encoding characters"),
        (b"BHS|^~\\&|LIS\r" + MSH.encode(), "batch"),
    ],
)
def test_garbage_and_non_hl7_input(message: bytes, reason: str) -> None:
    assert reason in error_of(message)


def test_not_an_oru_r01() -> None:
    adt = MSH.replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01")
    assert error_of(oru(obx(), msh=adt)) == "not an ORU^R01 message (MSH-9)"
    r30 = MSH.replace("ORU^R01^ORU_R01", "ORU^R30")
    assert error_of(oru(obx(), msh=r30)) == "not an ORU^R01 message (MSH-9)"


@pytest.mark.parametrize("version", ["2.2", "2.6", "2.8", "", "3.0"])
def test_unsupported_version(version: str) -> None:
    msh = MSH.replace("|2.5.1", f"|{version}")
    assert "MSH-12 version is not one of" in error_of(oru(obx(), msh=msh))


def test_two_messages_in_one_call_is_an_error() -> None:
    assert "more than one MSH" in error_of(oru(obx()) + oru(obx()))


def test_missing_pid3() -> None:
    pid = "PID|1||^^^HOSP^MR||SECRETNAME^ZELDA||19700101|F"
    assert error_of(oru(obx(), pid=pid)) == "PID-3 has no patient identifier"


def test_missing_pid_segment() -> None:
    assert "no PID segment" in error_of(oru(obx(), pid=None))


def test_missing_obr_segment() -> None:
    assert error_of(oru(obr=None)) == "no OBR segment in the message"


def test_obx_before_obr() -> None:
    assert error_of(oru(obx(), OBR, obx(), obr=None)) == "OBX segment before any OBR segment"


def test_chemistry_only_message() -> None:
    assert error_of(load("chemistry_only.hl7")) == "no CBC component in any OBX"


def test_invalid_identifier_is_reported_by_the_canonical_model() -> None:
    long_filler = "OBR|1||" + "F" * 200 + "|58410-2^CBC^LN|||202611200815+0100"
    message = error_of(oru(obx(), obr=long_filler))
    assert "result_id" in message
    assert "FFFF" not in message


# --- no patient data in any error ------------------------------------------------------------

SECRET_VALUE = "123.456"
SECRET_ROW = obx(value=SECRET_VALUE)
SECRETS = (PATIENT, SECRET_VALUE, "SECRETNAME", "ZELDA", "FILLER-1", "PLACER-1")
FAILING: dict[str, str] = {
    "not-oru": oru(SECRET_ROW, msh=MSH.replace("ORU^R01", "ADT^A01")),
    "bad-version": oru(SECRET_ROW, msh=MSH.replace("|2.5.1", "|9.9")),
    "no-pid3": oru(SECRET_ROW, pid="PID|1||^^^H||SECRETNAME^ZELDA||19700101|F"),
    "pid-no-obr": oru(SECRET_ROW, obr=None),
    "no-tz": _at("202611200815").replace("2.1", SECRET_VALUE),
    "bad-date": _at("202699999999+0100"),
    "mislabel": oru(obx("6690-2^WBC^LN", SECRET_VALUE, "g/dL")),
    "name-mismatch": oru(obx("6690-2^SECRETNAME platelets^LN", SECRET_VALUE)),
    "negative": oru(obx(value="-" + SECRET_VALUE)),
    "nm-text": oru(obx(value=SECRET_VALUE + "x")),
    "sn-range": oru(obx(value=f"^{SECRET_VALUE}^-^999", value_type="SN")),
    "no-unit": oru(obx(value=SECRET_VALUE, unit="")),
    "bad-status": oru(obx(value=SECRET_VALUE, status="?")),
    "no-cbc": oru(obx("2951-2^Sodium^LN", SECRET_VALUE, "mmol/L")),
    "two-patients": oru(SECRET_ROW, "PID|2||OTHER", OBR, SECRET_ROW),
    "long-id": oru(SECRET_ROW, pid=f"PID|1||{PATIENT * 20}||SECRETNAME"),
    "id-with-newline": oru(SECRET_ROW, pid=f"PID|1||{PATIENT}\\.br\\x||SECRETNAME"),
    "no-specimen": oru(SECRET_ROW, obr="OBR|1|||58410-2|||202611200815+0100"),
}


@pytest.mark.parametrize("message", FAILING.values(), ids=FAILING.keys())
def test_errors_never_contain_patient_data_or_values(message: str) -> None:
    with pytest.raises(AdapterError) as caught:
        parse_oru(message.encode())
    text = f"{caught.value}|{caught.value!r}"
    for secret in SECRETS:
        assert secret not in text
    # No chained exception (a pydantic or parsing error) that could echo the input either.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ or caught.value.__context__ is None


# --- looks_like_hl7 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"MSH|^~\\&|LIS",
        b"\x0bMSH|^~\\&|LIS\r\x1c\r",
        b"\xef\xbb\xbfMSH|^~\\&|LIS",
        b"\r\n  MSH|^~\\&|LIS",
        b"\x0b\xef\xbb\xbfMSH|^~\\&",
    ],
)
def test_looks_like_hl7(raw: bytes) -> None:
    assert looks_like_hl7(raw)


@pytest.mark.parametrize(
    "raw", [b"", b"{}", b'{"resourceType": "Bundle"}', b"\x0b", b"PID|1", b"msh|^~\\&", b"\x00MSH"]
)
def test_does_not_look_like_hl7(raw: bytes) -> None:
    assert not looks_like_hl7(raw)


def test_sample_files_look_like_hl7() -> None:
    for path in DATA.glob("*.hl7"):
        assert looks_like_hl7(path.read_bytes()), path.name


# --- robustness -----------------------------------------------------------------------------

REALISTIC = load("cbc_auto_diff_v251.hl7")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_results_or_adapter_error(raw: bytes) -> None:
    with contextlib.suppress(AdapterError):
        parse_oru(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(REALISTIC) - 1),
            st.sampled_from(list(b'|^~\\&\r\n\x0b\x1c0.-+<>XF"')),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_corrupted_realistic_message_gives_results_or_adapter_error(
    edits: list[tuple[int, int]],
) -> None:
    corrupted = bytearray(REALISTIC)
    for position, byte in edits:
        corrupted[position] = byte
    try:
        results = parse_oru(bytes(corrupted))
    except AdapterError:
        return
    assert all(isinstance(r, CBCResult) for r in results)


def test_the_ward_comes_from_pv1() -> None:
    # cbc_auto_diff_v251.hl7 carries PV1|1|I|ONC4B^12^A^GENHOSP: the point of care is the ward.
    assert only(load("cbc_auto_diff_v251.hl7")).context.ward == "ONC4B"
    without = load("cbc_auto_diff_v251.hl7").replace(b"|ONC4B^12^A^GENHOSP|", b"||")
    assert only(without).context.ward is None
