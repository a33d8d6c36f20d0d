"""CTCAE grading of blood counts, with the grade tables as data.

Rules (CLINICAL.md section 2): every comparison is a strict "less than"; thresholds are checked
from grade 4 down, so a value below the grade-4 limit is grade 4 whatever the lower limit of
normal (LLN); grade 1 ("< LLN") needs an LLN, and without one a value that is not low enough for
grade 2 has an unknown grade (None), never 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal

from monitor.clinical.analytes import Analyte
from monitor.clinical.units import factor, to_canonical

CtcaeVersion = Literal["5.0", "6.0"]
CTCAE_VERSIONS: tuple[CtcaeVersion, ...] = ("5.0", "6.0")


@dataclass(frozen=True, slots=True)
class GradeScale:
    """One CTCAE term's laboratory grades for one analyte.

    ``below`` lists (grade, limit) from the worst grade down, limits in the analyte's canonical
    unit: a value strictly below a limit has that grade. When ``grade1_below_lln`` is set, a value
    below the LLN that is under no limit of ``below`` is grade 1. ``native`` holds limits the
    source states itself in another unit, used as given instead of converted (CTCAE gives
    hemoglobin in mmol/L as 6.2 and 4.9, which are not exact conversions of 10.0 and 8.0 g/dL).
    """

    term: str
    below: tuple[tuple[int, float], ...]
    grade1_below_lln: bool
    source: str
    native: dict[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)


_V5 = (
    "NCI Common Terminology Criteria for Adverse Events (CTCAE) v5.0, 27 Nov 2017; "
    "limits as tabulated in CLINICAL.md section 2"
)
_V6 = (
    "NCI Common Terminology Criteria for Adverse Events (CTCAE) v6.0; "
    "changes from v5.0 as listed in CLINICAL.md section 2"
)

# Anemia: grade 3 is the worst grade a lab value alone can give (grade 4 is "life-threatening").
_ANEMIA_V5 = GradeScale(
    term="Anemia",
    below=((3, 8.0), (2, 10.0)),
    grade1_below_lln=True,
    source=_V5,
    native={"mmol/l": ((3, 4.9), (2, 6.2))},
)
_WBC_V5 = GradeScale(
    term="White blood cell decreased",
    below=((4, 1.0), (3, 2.0), (2, 3.0)),
    grade1_below_lln=True,
    source=_V5,
)

CTCAE: dict[CtcaeVersion, dict[Analyte, GradeScale | None]] = {
    "5.0": {
        Analyte.HEMOGLOBIN: _ANEMIA_V5,
        Analyte.WBC: _WBC_V5,
        Analyte.NEUTROPHILS: GradeScale(
            term="Neutrophil count decreased",
            below=((4, 0.5), (3, 1.0), (2, 1.5)),
            grade1_below_lln=True,
            source=_V5,
        ),
        Analyte.LYMPHOCYTES: GradeScale(
            term="Lymphocyte count decreased",
            below=((4, 0.2), (3, 0.5), (2, 0.8)),
            grade1_below_lln=True,
            source=_V5,
        ),
        Analyte.PLATELETS: GradeScale(
            term="Platelet count decreased",
            below=((4, 25.0), (3, 50.0), (2, 75.0)),
            grade1_below_lln=True,
            source=_V5,
        ),
    },
    "6.0": {
        # Anemia and white cells are unchanged from v5.0.
        Analyte.HEMOGLOBIN: replace(_ANEMIA_V5, source=_V6),
        Analyte.WBC: replace(_WBC_V5, source=_V6),
        # Grade 1 no longer refers to the LLN: it starts below 1.5 x10^9/L.
        Analyte.NEUTROPHILS: GradeScale(
            term="Neutrophil count decreased",
            below=((4, 0.1), (3, 0.5), (2, 1.0), (1, 1.5)),
            grade1_below_lln=False,
            source=_V6,
        ),
        # Lymphocyte counts are no longer graded from laboratory values.
        Analyte.LYMPHOCYTES: None,
        Analyte.PLATELETS: GradeScale(
            term="Thrombocytopenia",
            below=((4, 10.0), (3, 50.0), (2, 75.0)),
            grade1_below_lln=True,
            source=_V6,
        ),
    },
}


def scale_for(analyte: str, version: str) -> GradeScale | None:
    """The scale of ``analyte`` under ``version``; None when that version does not grade it."""
    try:
        table = CTCAE[version]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"unknown CTCAE version {version!r}") from None
    try:
        key = Analyte(analyte)
        return table[key]
    except (ValueError, KeyError):
        raise ValueError(f"analyte {analyte!r} has no CTCAE grade") from None


@lru_cache(maxsize=256)
def _unit_key(unit: str) -> str:
    return unit.strip().lower()


def grade_with_scale(
    scale: GradeScale, analyte: Analyte, value: float, unit: str, lln: float | None
) -> int | None:
    """Grade ``value`` (and ``lln``, both in ``unit``) on ``scale``; the detector's fast path."""
    if value < 0 or (lln is not None and lln < 0):
        raise ValueError("counts cannot be negative")
    native = scale.native.get(_unit_key(unit)) if scale.native else None
    if native is not None:
        limits, compared = native, value
    else:
        limits, compared = scale.below, to_canonical(analyte, value, unit)
    for grade_, limit in limits:
        if compared < limit:
            return grade_
    if not scale.grade1_below_lln:
        return 0
    if lln is None:
        return None
    # Value and LLN are in the same unit, so they compare without conversion.
    return 1 if value < lln else 0


def grade(
    analyte: str,
    value: float,
    unit: str,
    lln: float | None = None,
    version: str = "5.0",
) -> int | None:
    """CTCAE grade (0-4) of one count, or None where the grade cannot be known.

    ``value`` and ``lln`` are in ``unit``. None means: no LLN is known and the value is not low
    enough for grade 2 or worse, or the CTCAE version does not grade this analyte from lab
    values (lymphocytes in v6.0). An unknown analyte, unit or version raises ValueError.
    """
    scale = scale_for(analyte, version)
    key = Analyte(analyte)
    factor(key, unit)  # raises for an unknown unit even when the version does not grade it
    if value < 0 or (lln is not None and lln < 0):
        raise ValueError("counts cannot be negative")
    if scale is None:
        return None
    return grade_with_scale(scale, key, value, unit, lln)
