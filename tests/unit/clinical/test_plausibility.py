"""Possible ranges and internal consistency of one specimen (monitor.clinical.plausibility)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.clinical.analytes import Analyte
from monitor.clinical.plausibility import LIMITS, implausible

A = Analyte


def rejected(**values: tuple[float, str]) -> set[Analyte]:
    return {a for f in implausible({A(k): v for k, v in values.items()}) for a in f.analytes}


def test_every_analyte_has_a_cited_limit() -> None:
    assert set(LIMITS) == set(Analyte)
    assert all(limit.source and limit.low < limit.high for limit in LIMITS.values())


@pytest.mark.parametrize(
    "values",
    [
        {"wbc": (486.2, "10*9/L"), "neutrophils": (402.0, "10*9/L")},  # hyperleukocytosis
        {"wbc": (774.2, "10^9/L"), "lymphocytes": (740.0, "10^9/L")},  # CLL case report
        {"platelets": (0.0, "10*9/L")},
        {"platelets": (3, "K/uL")},
        {"platelets": (3400, "10*9/L")},  # essential thrombocythemia
        {"hemoglobin": (2.1, "g/dL"), "hematocrit": (6.5, "%")},
        {"wbc": (0.0, "10*9/L")},  # aplasia
        {"neutrophils": (0.0999, "10*9/L"), "wbc": (0.0999, "10*9/L")},  # both censored "<0.1"
        {"neutrophils_pct": (62, "%"), "bands_pct": (8, "%"), "lymphocytes_pct": (31, "%")},
        {"hemoglobin": (95, "g/L"), "hematocrit": (0.29, "L/L")},
    ],
)
def test_true_extremes_and_ordinary_values_are_plausible(
    values: dict[str, tuple[float, str]],
) -> None:
    assert rejected(**values) == set()


def test_out_of_range_names_the_analyte_and_the_unit_read_never_the_value() -> None:
    (finding,) = implausible({A.PLATELETS: (5200.0, "x10E3/uL")})
    assert finding.analytes == (A.PLATELETS,)
    assert "platelets" in finding.reason
    assert "x10E3/uL" in finding.reason
    assert "5200" not in finding.reason


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"wbc": (1600, "10*9/L")}, {A.WBC}),  # /uL sent as x10^9/L
        ({"hemoglobin": (0.5, "g/dL")}, {A.HEMOGLOBIN}),
        ({"hemoglobin": (30, "g/dL")}, {A.HEMOGLOBIN}),
        ({"rbc": (45, "10*12/L")}, {A.RBC}),
        ({"mcv": (9.1, "fL")}, {A.MCV}),
        ({"lymphocytes_pct": (130, "%")}, {A.LYMPHOCYTES_PCT}),
        # A lone high ANC has no WBC to confirm it (312 meant 312 /uL).
        ({"neutrophils": (312, "10*3/uL")}, {A.NEUTROPHILS}),
        # Contradicted by its WBC: the ANC alone is the suspect, the WBC is still graded.
        ({"neutrophils": (312, "10*3/uL"), "wbc": (1.2, "10*3/uL")}, {A.NEUTROPHILS}),
        # Ordinary magnitudes that contradict each other: both rows go.
        ({"neutrophils": (5.0, "10*9/L"), "wbc": (1.2, "10*9/L")}, {A.NEUTROPHILS, A.WBC}),
        ({"lymphocytes": (3.0, "10*9/L"), "wbc": (2.0, "10*9/L")}, {A.LYMPHOCYTES, A.WBC}),
        (
            {
                "neutrophils": (1.5, "10*9/L"),
                "lymphocytes": (1.5, "10*9/L"),
                "wbc": (2.0, "10*9/L"),
            },
            {A.NEUTROPHILS, A.LYMPHOCYTES, A.WBC},
        ),
        (
            {"neutrophils_pct": (80, "%"), "lymphocytes_pct": (45, "%")},
            {A.NEUTROPHILS_PCT, A.LYMPHOCYTES_PCT},
        ),
        # MCHC 16.7 g/dL: not one blood.
        ({"hemoglobin": (7.5, "g/dL"), "hematocrit": (45, "%")}, {A.HEMOGLOBIN, A.HEMATOCRIT}),
        # MCHC 60 g/dL.
        ({"hemoglobin": (15, "g/dL"), "hematocrit": (25, "%")}, {A.HEMOGLOBIN, A.HEMATOCRIT}),
    ],
)
def test_implausible_rows(values: dict[str, tuple[float, str]], expected: set[Analyte]) -> None:
    assert rejected(**values) == expected


def test_tolerance_allows_rounding_between_channels() -> None:
    # ANC 2.1 beside WBC 2.0: within max(5 %, 0.1) of the WBC.
    assert rejected(neutrophils=(2.1, "10*9/L"), wbc=(2.0, "10*9/L")) == set()
    assert rejected(neutrophils=(2.2, "10*9/L"), wbc=(2.0, "10*9/L")) == {A.NEUTROPHILS, A.WBC}


@given(
    wbc=st.floats(0.0, 1500.0),
    share=st.floats(0.0, 1.0),
    platelets=st.floats(0.0, 5000.0),
)
def test_a_differential_inside_its_wbc_is_never_rejected(
    wbc: float, share: float, platelets: float
) -> None:
    values = {
        A.WBC: (wbc, "10*9/L"),
        A.NEUTROPHILS: (wbc * share, "10*9/L"),
        A.PLATELETS: (platelets, "10*9/L"),
    }
    assert implausible(values) == []


def test_a_ucum_annotation_is_never_repeated_in_a_reason() -> None:
    # `{...}` is free text in UCUM (ignored by the parser): a sender could put anything there.
    (finding,) = implausible({A.WBC: (2_000_000.0, "{SmithJohn}/uL")})
    assert "Smith" not in finding.reason
    assert "{}/uL" in finding.reason
