"""CTCAE grading of blood counts (monitor.clinical.grading), checked against CLINICAL.md section 2.

The expected limits below are written out by hand from CLINICAL.md rather than read from
``monitor.clinical.grading.CTCAE``, so a wrong number in the module's table fails these tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from monitor.clinical.analytes import Analyte
from monitor.clinical.grading import CTCAE, CTCAE_VERSIONS, grade
from monitor.clinical.units import UnknownUnitError

# (version, analyte) -> ((grade, limit), ...) from the worst grade down, in canonical units
# (g/dL for hemoglobin, 10^9/L for counts); "a value strictly below the limit has that grade".
EXPECTED_LIMITS: dict[tuple[str, str], tuple[tuple[int, float], ...]] = {
    ("5.0", "hemoglobin"): ((3, 8.0), (2, 10.0)),
    ("5.0", "wbc"): ((4, 1.0), (3, 2.0), (2, 3.0)),
    ("5.0", "neutrophils"): ((4, 0.5), (3, 1.0), (2, 1.5)),
    ("5.0", "lymphocytes"): ((4, 0.2), (3, 0.5), (2, 0.8)),
    ("5.0", "platelets"): ((4, 25.0), (3, 50.0), (2, 75.0)),
    ("6.0", "hemoglobin"): ((3, 8.0), (2, 10.0)),
    ("6.0", "wbc"): ((4, 1.0), (3, 2.0), (2, 3.0)),
    ("6.0", "neutrophils"): ((4, 0.1), (3, 0.5), (2, 1.0), (1, 1.5)),
    ("6.0", "platelets"): ((4, 10.0), (3, 50.0), (2, 75.0)),
}

# Scales whose grade 1 is "< LLN" (every one except v6.0 neutrophils, CLINICAL.md section 2).
USES_LLN: dict[tuple[str, str], bool] = {
    key: key != ("6.0", "neutrophils") for key in EXPECTED_LIMITS
}

# Default adult LLNs from CLINICAL.md section 1, in canonical units; above every grade limit.
HIGH_LLN: dict[str, float] = {
    "hemoglobin": 12.0,
    "wbc": 4.0,
    "neutrophils": 1.8,
    "lymphocytes": 1.0,
    "platelets": 150.0,
}
CANONICAL: dict[str, str] = {
    "hemoglobin": "g/dL",
    "wbc": "10^9/L",
    "neutrophils": "10^9/L",
    "lymphocytes": "10^9/L",
    "platelets": "10^9/L",
}

# CLINICAL.md section 3: spellings equal to 10^9/L, and spellings equal to 1/1000 of it.
COUNT_UNITS_X1 = (
    "10*9/L",
    "10^9/L",
    "10*3/uL",
    "10^3/uL",
    "K/uL",
    "/nL",
    "G/L",
    "x10E3/uL",
    "Thou/mcL",
)
COUNT_UNITS_MILLI = ("/uL", "/mm3", "cells/uL", "10*6/L")
COUNT_ANALYTES = ("wbc", "neutrophils", "lymphocytes", "platelets")


def _milder_grade_at(key: tuple[str, str], index: int) -> int:
    """Grade of a value exactly at limit ``index`` when a high LLN is known."""
    limits = EXPECTED_LIMITS[key]
    if index + 1 < len(limits):
        return limits[index + 1][0]
    # At the mildest listed limit: grade 1 if grade 1 is "< LLN" (the LLN is above), else 0.
    return 1 if USES_LLN[key] else 0


# (version, analyte, limit, grade just below the limit, grade at the limit with a high LLN)
BOUNDARY_ROWS: list[tuple[str, str, float, int, int]] = [
    (version, analyte, limit, worse, _milder_grade_at((version, analyte), index))
    for (version, analyte), limits in EXPECTED_LIMITS.items()
    for index, (worse, limit) in enumerate(limits)
]


def _row_id(version: str, analyte: str, limit: float) -> str:
    return f"v{version}-{analyte}-limit-{limit:g}"


BOUNDARIES = [pytest.param(*row, id=_row_id(*row[:3])) for row in BOUNDARY_ROWS]


# --- the tables themselves -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "analyte"), [pytest.param(v, a, id=f"v{v}-{a}") for v, a in EXPECTED_LIMITS]
)
def test_module_table_matches_clinical_md(version: str, analyte: str) -> None:
    scale = CTCAE[version][Analyte(analyte)]  # type: ignore[index]
    assert scale is not None
    assert scale.below == EXPECTED_LIMITS[(version, analyte)]
    assert scale.grade1_below_lln is USES_LLN[(version, analyte)]


def test_versions_are_exactly_5_and_6() -> None:
    assert set(CTCAE_VERSIONS) == {"5.0", "6.0"}
    assert set(CTCAE) == {"5.0", "6.0"}


@pytest.mark.parametrize(
    ("version", "analyte"),
    [
        pytest.param(v, a, id=f"v{v}-{a}")
        for v in CTCAE
        for a, scale in CTCAE[v].items()
        if scale is not None
    ],
)
def test_every_scale_names_its_ctcae_source(version: str, analyte: Analyte) -> None:
    scale = CTCAE[version][analyte]  # type: ignore[index]
    assert scale is not None
    assert scale.term.strip()
    assert scale.source.strip()
    assert "CTCAE" in scale.source
    # v6.0 reuses the unchanged v5.0 anemia and WBC scales, so either edition may be cited.
    assert "v5.0" in scale.source or "v6.0" in scale.source


# --- boundaries: at the limit is the milder grade, just below is the worse one ---------------


@pytest.mark.parametrize(("version", "analyte", "limit", "worse", "milder"), BOUNDARIES)
def test_value_at_limit_has_milder_grade(
    version: str, analyte: str, limit: float, worse: int, milder: int
) -> None:
    got = grade(analyte, limit, CANONICAL[analyte], lln=HIGH_LLN[analyte], version=version)
    assert got == milder


@pytest.mark.parametrize(("version", "analyte", "limit", "worse", "milder"), BOUNDARIES)
@pytest.mark.parametrize(
    "below",
    [
        pytest.param(lambda x: math.nextafter(x, 0.0), id="next-float-down"),
        pytest.param(lambda x: round(x - 0.01, 6), id="minus-0.01"),
    ],
)
def test_value_just_below_limit_has_worse_grade(
    version: str,
    analyte: str,
    limit: float,
    worse: int,
    milder: int,
    below: Callable[[float], float],
) -> None:
    value = below(limit)
    assert value < limit
    got = grade(analyte, value, CANONICAL[analyte], lln=HIGH_LLN[analyte], version=version)
    assert got == worse


@pytest.mark.parametrize(("version", "analyte", "limit", "worse", "milder"), BOUNDARIES)
def test_worse_grades_need_no_lln(
    version: str, analyte: str, limit: float, worse: int, milder: int
) -> None:
    value = math.nextafter(limit, 0.0)
    assert grade(analyte, value, CANONICAL[analyte], version=version) == worse


@pytest.mark.parametrize(
    ("version", "analyte", "value", "lln", "expected"),
    [
        # Checked from grade 4 down: an LLN below the value does not rescue it.
        pytest.param("5.0", "neutrophils", 0.4, 0.3, 4, id="v5-anc-0.4-lln-0.3"),
        pytest.param("5.0", "neutrophils", 0.4, None, 4, id="v5-anc-0.4-no-lln"),
        pytest.param("5.0", "neutrophils", 0.0, 0.0, 4, id="v5-anc-zero-lln-zero"),
        pytest.param("5.0", "wbc", 0.9, 0.01, 4, id="v5-wbc-0.9-tiny-lln"),
        pytest.param("5.0", "lymphocytes", 0.1, 0.05, 4, id="v5-alc-0.1-tiny-lln"),
        pytest.param("5.0", "platelets", 20.0, 1.0, 4, id="v5-plt-20-tiny-lln"),
        pytest.param("5.0", "platelets", 40.0, 1.0, 3, id="v5-plt-40-tiny-lln"),
        pytest.param("5.0", "platelets", 70.0, 1.0, 2, id="v5-plt-70-tiny-lln"),
        pytest.param("6.0", "neutrophils", 0.05, 0.01, 4, id="v6-anc-0.05-tiny-lln"),
        pytest.param("6.0", "platelets", 5.0, 1.0, 4, id="v6-plt-5-tiny-lln"),
        pytest.param("5.0", "hemoglobin", 7.0, 1.0, 3, id="v5-hgb-7-tiny-lln"),
        # Anemia tops out at grade 3 from lab values (grade 4 is clinical).
        pytest.param("5.0", "hemoglobin", 4.0, None, 3, id="v5-hgb-4.0-is-3"),
        pytest.param("5.0", "hemoglobin", 0.0, 12.0, 3, id="v5-hgb-0-is-3"),
        pytest.param("6.0", "hemoglobin", 4.0, 12.0, 3, id="v6-hgb-4.0-is-3"),
    ],
)
def test_order_worst_grade_first(
    version: str, analyte: str, value: float, lln: float | None, expected: int
) -> None:
    assert grade(analyte, value, CANONICAL[analyte], lln=lln, version=version) == expected


@pytest.mark.parametrize("value", [0.0, 1.0, 3.0, 4.0, 7.99])
def test_anemia_never_grade_4(value: float) -> None:
    for version in CTCAE_VERSIONS:
        assert grade("hemoglobin", value, "g/dL", lln=12.0, version=version) == 3


def test_default_version_is_5() -> None:
    # 24 x10^9/L platelets: grade 4 under v5.0 (<25), grade 3 under v6.0 (<50, >=10).
    assert grade("platelets", 24, "K/uL") == 4
    assert grade("platelets", 24, "K/uL", version="6.0") == 3


def test_grade_is_a_plain_int() -> None:
    got = grade("wbc", 1.5, "10^9/L", lln=4.0)
    assert type(got) is int
    assert got == 3


# --- grade 1 versus 0 around the LLN, and None without one -----------------------------------

LLN_SCALES = [pytest.param(v, a, id=f"v{v}-{a}") for (v, a), uses in USES_LLN.items() if uses]


@pytest.mark.parametrize(("version", "analyte"), LLN_SCALES)
@pytest.mark.parametrize(
    "lln_scale", [pytest.param(1.0, id="default-lln"), pytest.param(1.1, id="lab-lln")]
)
def test_value_equal_to_lln_is_grade_0(version: str, analyte: str, lln_scale: float) -> None:
    lln = HIGH_LLN[analyte] * lln_scale
    assert grade(analyte, lln, CANONICAL[analyte], lln=lln, version=version) == 0


@pytest.mark.parametrize(("version", "analyte"), LLN_SCALES)
@pytest.mark.parametrize(
    "lln_scale", [pytest.param(1.0, id="default-lln"), pytest.param(1.1, id="lab-lln")]
)
def test_value_just_below_lln_is_grade_1(version: str, analyte: str, lln_scale: float) -> None:
    lln = HIGH_LLN[analyte] * lln_scale
    value = math.nextafter(lln, 0.0)
    assert grade(analyte, value, CANONICAL[analyte], lln=lln, version=version) == 1


@pytest.mark.parametrize(("version", "analyte"), LLN_SCALES)
def test_value_above_lln_is_grade_0(version: str, analyte: str) -> None:
    lln = HIGH_LLN[analyte]
    assert grade(analyte, lln * 2, CANONICAL[analyte], lln=lln, version=version) == 0


@pytest.mark.parametrize(("version", "analyte"), LLN_SCALES)
@pytest.mark.parametrize(
    "where",
    [
        pytest.param("at-grade-2-limit", id="at-grade-2-limit"),
        pytest.param("at-default-lln", id="at-default-lln"),
        pytest.param("far-above", id="far-above"),
    ],
)
def test_no_lln_and_not_grade_2_is_none_never_0(version: str, analyte: str, where: str) -> None:
    grade2_limit = dict(EXPECTED_LIMITS[(version, analyte)])[2]
    value = {
        "at-grade-2-limit": grade2_limit,
        "at-default-lln": HIGH_LLN[analyte],
        "far-above": HIGH_LLN[analyte] * 10,
    }[where]
    got = grade(analyte, value, CANONICAL[analyte], version=version)
    assert got is None


@pytest.mark.parametrize(
    ("analyte", "value", "lln", "expected"),
    [
        # A lab LLN below the default: only the lab's limit counts.
        pytest.param("hemoglobin", 11.5, 11.5, 0, id="hgb-at-lab-lln-11.5"),
        pytest.param("hemoglobin", 11.49, 11.5, 1, id="hgb-below-lab-lln-11.5"),
        pytest.param("hemoglobin", 11.9, 11.5, 0, id="hgb-11.9-lab-lln-11.5"),
        # A Duffy-null style ANC LLN below the grade-2 limit: grade 2 still applies (< 1.5).
        pytest.param("neutrophils", 1.2, 1.0, 2, id="anc-1.2-lln-1.0-is-2"),
        pytest.param("neutrophils", 1.6, 1.5, 0, id="anc-1.6-lln-1.5-is-0"),
        pytest.param("wbc", 3.99, 4.0, 1, id="wbc-3.99-lln-4.0"),
        pytest.param("platelets", 149, 150, 1, id="plt-149-lln-150"),
        pytest.param("platelets", 150, 150, 0, id="plt-150-lln-150"),
        pytest.param("lymphocytes", 0.99, 1.0, 1, id="alc-0.99-lln-1.0"),
    ],
)
def test_lln_examples_v5(analyte: str, value: float, lln: float, expected: int) -> None:
    assert grade(analyte, value, CANONICAL[analyte], lln=lln) == expected


# --- hemoglobin in other units ---------------------------------------------------------------


@pytest.mark.parametrize("version", CTCAE_VERSIONS)
@pytest.mark.parametrize(
    ("value", "unit", "lln", "expected"),
    [
        # g/L: 100 and 80 are the limits.
        pytest.param(100.0, "g/L", None, None, id="gL-100-no-lln"),
        pytest.param(100.0, "g/L", 120.0, 1, id="gL-100-lln-120"),
        pytest.param(99.9, "g/L", None, 2, id="gL-99.9"),
        pytest.param(80.0, "g/L", None, 2, id="gL-80"),
        pytest.param(79.9, "g/L", None, 3, id="gL-79.9"),
        pytest.param(40.0, "g/L", None, 3, id="gL-40"),
        pytest.param(120.0, "g/L", 120.0, 0, id="gL-120-at-lln-120"),
        pytest.param(115.0, "g/L", 120.0, 1, id="gL-115-lln-120"),
        pytest.param(125.0, "g/L", 120.0, 0, id="gL-125-lln-120"),
        pytest.param(125.0, "g/L", None, None, id="gL-125-no-lln"),
        # mmol/L: CTCAE's own 6.2 and 4.9 (6.2 mmol/L converts to 9.99 g/dL, yet is not grade 2).
        pytest.param(6.2, "mmol/L", None, None, id="mmol-6.2-no-lln"),
        pytest.param(6.2, "mmol/L", 7.45, 1, id="mmol-6.2-lln-7.45"),
        pytest.param(6.19, "mmol/L", None, 2, id="mmol-6.19"),
        pytest.param(4.9, "mmol/L", None, 2, id="mmol-4.9"),
        pytest.param(4.89, "mmol/L", None, 3, id="mmol-4.89"),
        pytest.param(2.0, "mmol/L", None, 3, id="mmol-2.0"),
        pytest.param(7.45, "mmol/L", 7.45, 0, id="mmol-at-lln-7.45"),
        pytest.param(7.0, "mmol/L", 7.45, 1, id="mmol-7.0-lln-7.45"),
        pytest.param(6.2, "MMOL/L", None, None, id="mmol-upper-case-6.2"),
        pytest.param(6.19, "mmol/l", None, 2, id="mmol-lower-case-6.19"),
        # g/dL for comparison.
        pytest.param(9.99, "g/dL", None, 2, id="gdL-9.99"),
        pytest.param(8.0, "g/dL", None, 2, id="gdL-8.0"),
        pytest.param(7.99, "g/dL", None, 3, id="gdL-7.99"),
    ],
)
def test_hemoglobin_units(
    version: str, value: float, unit: str, lln: float | None, expected: int | None
) -> None:
    assert grade("hemoglobin", value, unit, lln=lln, version=version) == expected


# --- count units: every alias gives the same grade at every boundary -------------------------


@pytest.mark.parametrize("analyte", COUNT_ANALYTES)
@pytest.mark.parametrize("unit", COUNT_UNITS_X1 + COUNT_UNITS_MILLI)
def test_count_alias_boundaries(unit: str, analyte: str) -> None:
    """Every limit of both versions, at and just below, in this spelling of the unit."""
    scale = 1000 if unit in COUNT_UNITS_MILLI else 1
    lln = HIGH_LLN[analyte] * scale
    rows = [row for row in BOUNDARY_ROWS if row[1] == analyte]
    assert rows
    mismatches = []
    for version, _, limit, worse, milder in rows:
        at = round(limit * scale, 6)
        below = round(at - 0.001 * scale, 6)  # 1 /uL or 0.001 x10^9/L under the limit
        got = (
            grade(analyte, at, unit, lln=lln, version=version),
            grade(analyte, below, unit, lln=lln, version=version),
        )
        if got != (milder, worse):
            mismatches.append((version, at, below, got, (milder, worse)))
    assert mismatches == []


@pytest.mark.parametrize(
    ("analyte", "value", "unit", "lln", "expected"),
    [
        pytest.param("neutrophils", 500, "/uL", None, 3, id="anc-500-per-uL-is-3"),
        pytest.param("neutrophils", 499, "/uL", None, 4, id="anc-499-per-uL-is-4"),
        pytest.param("neutrophils", 500, "/mm3", None, 3, id="anc-500-per-mm3-is-3"),
        pytest.param("neutrophils", 499, "cells/uL", None, 4, id="anc-499-cells-per-uL-is-4"),
        pytest.param("neutrophils", 1500, "/uL", 1800, 1, id="anc-1500-lln-1800-is-1"),
        pytest.param("neutrophils", 1800, "/uL", 1800, 0, id="anc-1800-lln-1800-is-0"),
        pytest.param("neutrophils", 1499, "/uL", 1800, 2, id="anc-1499-lln-1800-is-2"),
        pytest.param("neutrophils", 1500, "/uL", None, None, id="anc-1500-no-lln-is-none"),
        pytest.param("lymphocytes", 800, "/uL", None, None, id="alc-800-no-lln-is-none"),
        pytest.param("lymphocytes", 800, "/uL", 1000, 1, id="alc-800-lln-1000-is-1"),
        pytest.param("lymphocytes", 799, "/uL", None, 2, id="alc-799-is-2"),
        pytest.param("lymphocytes", 500, "/uL", None, 2, id="alc-500-is-2"),
        pytest.param("lymphocytes", 200, "/uL", None, 3, id="alc-200-is-3"),
        pytest.param("lymphocytes", 199, "/uL", None, 4, id="alc-199-is-4"),
        pytest.param("platelets", 75000, "/uL", 150000, 1, id="plt-75000-lln-150000-is-1"),
        pytest.param("platelets", 74999, "/uL", 150000, 2, id="plt-74999-is-2"),
        pytest.param("platelets", 25000, "10*6/L", None, 3, id="plt-25000-10e6-per-L-is-3"),
        pytest.param("platelets", 24999, "10*6/L", None, 4, id="plt-24999-10e6-per-L-is-4"),
        pytest.param("wbc", 1000, "/uL", None, 3, id="wbc-1000-per-uL-is-3"),
        pytest.param("wbc", 999, "/uL", None, 4, id="wbc-999-per-uL-is-4"),
        # Case and micro-sign variants of the same units.
        pytest.param("neutrophils", 499, "/\u00b5L", None, 4, id="anc-499-micro-sign"),
        pytest.param("neutrophils", 500, "/\u03bcL", None, 3, id="anc-500-greek-mu"),
        pytest.param("neutrophils", 0.49, "k/uL", None, 4, id="anc-0.49-lower-k"),
        pytest.param("neutrophils", 0.5, "K/UL", None, 3, id="anc-0.5-upper-UL"),
        pytest.param("platelets", 74, "g/l", 150, 2, id="plt-74-lower-g-per-l"),
    ],
)
def test_count_unit_examples_v5(
    analyte: str, value: float, unit: str, lln: float | None, expected: int | None
) -> None:
    assert grade(analyte, value, unit, lln=lln, version="5.0") == expected


# --- CTCAE v6.0 specifics --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("analyte", "value", "unit", "lln", "v5", "v6"),
    [
        # Neutrophils: grade 1 is < 1.5 with no LLN, grade 4 < 0.1.
        pytest.param("neutrophils", 1.49, "10^9/L", None, 2, 1, id="anc-1.49-no-lln"),
        pytest.param("neutrophils", 1.49, "10^9/L", 1.8, 2, 1, id="anc-1.49-lln-1.8"),
        pytest.param("neutrophils", 1.5, "10^9/L", None, None, 0, id="anc-1.5-no-lln"),
        pytest.param("neutrophils", 1.5, "10^9/L", 1.8, 1, 0, id="anc-1.5-lln-1.8"),
        pytest.param("neutrophils", 1.7, "10^9/L", 1.8, 1, 0, id="anc-1.7-lln-1.8"),
        pytest.param("neutrophils", 1.7, "10^9/L", 2.5, 1, 0, id="anc-1.7-lln-2.5"),
        pytest.param("neutrophils", 3.0, "10^9/L", None, None, 0, id="anc-3.0-no-lln"),
        pytest.param("neutrophils", 1500, "/uL", 1800, 1, 0, id="anc-1500-per-uL-lln-1800"),
        pytest.param("neutrophils", 1499, "/uL", None, 2, 1, id="anc-1499-per-uL"),
        pytest.param("neutrophils", 1.0, "10^9/L", None, 2, 1, id="anc-1.0"),
        pytest.param("neutrophils", 0.99, "10^9/L", None, 3, 2, id="anc-0.99"),
        pytest.param("neutrophils", 0.5, "10^9/L", None, 3, 2, id="anc-0.5"),
        pytest.param("neutrophils", 0.49, "10^9/L", None, 4, 3, id="anc-0.49"),
        pytest.param("neutrophils", 0.1, "10^9/L", None, 4, 3, id="anc-0.1"),
        pytest.param("neutrophils", 100, "/uL", None, 4, 3, id="anc-100-per-uL"),
        pytest.param("neutrophils", 0.099, "10^9/L", None, 4, 4, id="anc-0.099"),
        pytest.param("neutrophils", 99, "/uL", None, 4, 4, id="anc-99-per-uL"),
        # Platelets: grade 3 < 50, grade 4 < 10.
        pytest.param("platelets", 25, "K/uL", None, 3, 3, id="plt-25"),
        pytest.param("platelets", 24, "K/uL", None, 4, 3, id="plt-24"),
        pytest.param("platelets", 10, "K/uL", None, 4, 3, id="plt-10"),
        pytest.param("platelets", 9.99, "K/uL", None, 4, 4, id="plt-9.99"),
        pytest.param("platelets", 9999, "/uL", None, 4, 4, id="plt-9999-per-uL"),
        pytest.param("platelets", 49, "K/uL", None, 3, 3, id="plt-49"),
        pytest.param("platelets", 50, "K/uL", None, 2, 2, id="plt-50"),
        pytest.param("platelets", 75, "K/uL", 150, 1, 1, id="plt-75-lln-150"),
        pytest.param("platelets", 75, "K/uL", None, None, None, id="plt-75-no-lln"),
        pytest.param("platelets", 150, "K/uL", 150, 0, 0, id="plt-150-lln-150"),
    ],
)
def test_v5_versus_v6(
    analyte: str, value: float, unit: str, lln: float | None, v5: int | None, v6: int | None
) -> None:
    assert grade(analyte, value, unit, lln=lln, version="5.0") == v5
    assert grade(analyte, value, unit, lln=lln, version="6.0") == v6


@pytest.mark.parametrize("value", [0.0, 0.1, 0.19, 0.2, 0.5, 0.79, 0.8, 1.0, 5.0])
@pytest.mark.parametrize("lln", [pytest.param(None, id="no-lln"), pytest.param(1.0, id="lln-1.0")])
def test_v6_does_not_grade_lymphocytes(value: float, lln: float | None) -> None:
    assert CTCAE["6.0"][Analyte.LYMPHOCYTES] is None
    assert grade("lymphocytes", value, "10^9/L", lln=lln, version="6.0") is None
    assert grade("lymphocytes", value * 1000, "/uL", lln=lln, version="6.0") is None


def test_v6_lymphocytes_still_reject_unknown_unit() -> None:
    with pytest.raises(UnknownUnitError):
        grade("lymphocytes", 0.5, "bananas", version="6.0")


@pytest.mark.parametrize(
    ("analyte", "unit", "values", "lln"),
    [
        pytest.param(
            "hemoglobin",
            "g/dL",
            [0.0, 4.0, 7.99, 8.0, 9.1, 9.99, 10.0, 11.99, 12.0, 15.0],
            12.0,
            id="anemia-g-dL",
        ),
        pytest.param("hemoglobin", "g/dL", [7.99, 8.0, 9.99, 10.0, 15.0], None, id="anemia-no-lln"),
        pytest.param(
            "hemoglobin", "mmol/L", [4.89, 4.9, 6.19, 6.2, 7.0, 7.45], 7.45, id="anemia-mmol-L"
        ),
        pytest.param(
            "wbc",
            "10^9/L",
            [0.0, 0.99, 1.0, 1.99, 2.0, 2.99, 3.0, 3.99, 4.0, 10.0],
            4.0,
            id="wbc-10e9-L",
        ),
        pytest.param(
            "wbc", "/uL", [999, 1000, 1999, 2000, 2999, 3000, 5000], None, id="wbc-no-lln"
        ),
    ],
)
def test_anemia_and_wbc_identical_in_both_versions(
    analyte: str, unit: str, values: list[float], lln: float | None
) -> None:
    v5 = [grade(analyte, v, unit, lln=lln, version="5.0") for v in values]
    v6 = [grade(analyte, v, unit, lln=lln, version="6.0") for v in values]
    assert v5 == v6
    assert len(set(v5)) > 1  # the grid really crosses limits


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", CTCAE_VERSIONS)
@pytest.mark.parametrize(
    "analyte", ["mcv", "foo", "", "rbc", "hematocrit", "neutrophils_pct", "bands_pct", "HEMOGLOBIN"]
)
def test_unknown_or_ungraded_analyte_raises(analyte: str, version: str) -> None:
    with pytest.raises(ValueError, match="CTCAE grade"):
        grade(analyte, 1.0, "10^9/L", lln=2.0, version=version)


@pytest.mark.parametrize("version", CTCAE_VERSIONS)
@pytest.mark.parametrize(
    ("analyte", "unit"),
    [
        pytest.param("platelets", "mg/dL", id="platelets-mg-dL"),
        pytest.param("platelets", "bananas", id="platelets-bananas"),
        pytest.param("platelets", "", id="platelets-empty"),
        pytest.param("platelets", "10^12/L", id="platelets-rbc-unit"),
        pytest.param("neutrophils", "%", id="neutrophils-percent"),
        pytest.param("wbc", "g/dL", id="wbc-g-dL"),
        pytest.param("hemoglobin", "K/uL", id="hemoglobin-count-unit"),
        pytest.param("hemoglobin", "mg/dL", id="hemoglobin-mg-dL"),
        pytest.param("hemoglobin", "mmol", id="hemoglobin-mmol-no-volume"),
    ],
)
def test_unknown_unit_raises(analyte: str, unit: str, version: str) -> None:
    with pytest.raises(UnknownUnitError):
        grade(analyte, 1.0, unit, version=version)
    with pytest.raises(ValueError, match=analyte):
        grade(analyte, 1.0, unit, lln=2.0, version=version)


@pytest.mark.parametrize("version", ["4.0", "5", "6", "7.0", "", "v5.0", "5.0 "])
def test_unknown_version_raises(version: str) -> None:
    with pytest.raises(ValueError, match="CTCAE version"):
        grade("neutrophils", 1.0, "10^9/L", version=version)


@pytest.mark.parametrize("version", CTCAE_VERSIONS)
@pytest.mark.parametrize(
    ("analyte", "unit"),
    [
        ("hemoglobin", "g/dL"),
        ("hemoglobin", "mmol/L"),
        ("wbc", "10^9/L"),
        ("neutrophils", "/uL"),
        ("platelets", "K/uL"),
    ],
)
@pytest.mark.parametrize(
    ("value", "lln"),
    [
        pytest.param(-1.0, None, id="negative-value"),
        pytest.param(-0.001, 1.0, id="slightly-negative-value"),
        pytest.param(1.0, -1.0, id="negative-lln"),
    ],
)
def test_negative_value_or_lln_raises(
    analyte: str, unit: str, version: str, value: float, lln: float | None
) -> None:
    with pytest.raises(ValueError, match="negative"):
        grade(analyte, value, unit, lln=lln, version=version)


def test_v5_lymphocytes_negative_raises() -> None:
    with pytest.raises(ValueError, match="negative"):
        grade("lymphocytes", -5, "/uL", version="5.0")


def test_zero_is_a_valid_count() -> None:
    assert grade("neutrophils", 0, "/uL") == 4
    assert grade("platelets", 0.0, "K/uL", version="6.0") == 4


def test_negative_count_is_rejected_even_where_the_version_does_not_grade() -> None:
    with pytest.raises(ValueError, match="negative"):
        grade("lymphocytes", -5, "/uL", version="6.0")
