"""One episode's trend chart data from the patient's stored state (pure).

Values are in the analyte's canonical unit; each point is graded the way the detector grades it
(lower limit: the patient's own, then the lab's, then the default for the patient's sex), so the
chart's dots agree with the alerts. A point whose grade change the detector held back as within
the reference change value (RCV hysteresis, ``PatientState.suppressed``) is marked
``suppressed``: the chart shows it, ringed, so the ward sees what was not announced and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from monitor.clinical.analytes import DEFAULT_LLN, DISPLAY_NAME, Analyte, Condition, Sex
from monitor.clinical.evaluation import lower_limit, reading_grade
from monitor.clinical.grading import CTCAE, CtcaeVersion
from monitor.clinical.history import PatientState
from monitor.clinical.units import CANONICAL_UNIT

# What to draw for each condition: the analytes that grade it.
TREND_ANALYTES: dict[str, tuple[Analyte, ...]] = {
    Condition.ANEMIA: (Analyte.HEMOGLOBIN, Analyte.RBC),
    Condition.LEUKOPENIA: (Analyte.WBC,),
    Condition.NEUTROPENIA: (Analyte.NEUTROPHILS,),
    Condition.LYMPHOPENIA: (Analyte.LYMPHOCYTES,),
    Condition.THROMBOCYTOPENIA: (Analyte.PLATELETS,),
    Condition.PANCYTOPENIA: (Analyte.HEMOGLOBIN, Analyte.WBC, Analyte.PLATELETS),
    Condition.FEBRILE_NEUTROPENIA: (Analyte.NEUTROPHILS,),
}


def episode_trend(
    state: PatientState,
    condition: str,
    version: CtcaeVersion = "5.0",
    default_lln: Mapping[Analyte, Mapping[Sex, float]] = DEFAULT_LLN,
) -> list[dict[str, Any]]:
    """One series per analyte of ``condition`` that has values, oldest point first; a point
    whose grade change the RCV hysteresis held back for ``condition`` is ``suppressed``."""
    held_back = frozenset(state.suppressed.get(condition, ()))
    return analytes_trend(state, TREND_ANALYTES.get(condition, ()), version, default_lln, held_back)


def analytes_trend(
    state: PatientState,
    analytes: tuple[Analyte, ...],
    version: CtcaeVersion = "5.0",
    default_lln: Mapping[Analyte, Mapping[Sex, float]] = DEFAULT_LLN,
    held_back: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """One series per analyte of ``analytes`` that has values, oldest point first: ``{analyte,
    label, unit, lln, thresholds: [{grade, below}], points: [{at, value, grade, status,
    derived, suppressed}]}``, values in the analyte's canonical unit; ``suppressed`` marks the
    results in ``held_back`` (result ids whose grade change the RCV hysteresis held back)."""
    series = []
    for analyte in analytes:
        scale = CTCAE[version].get(analyte)
        points = []
        lln: float | None = None
        for entry in state.history:
            reading = entry.readings.get(analyte)
            if reading is None:
                continue
            grade: int | None = None
            if scale is not None:
                grade, lln, _ = reading_grade(scale, state, entry, analyte, reading, default_lln)
            else:
                lln, _ = lower_limit(state, entry, analyte, reading, default_lln)
            points.append(
                {
                    "at": datetime.fromtimestamp(entry.collected_at, UTC).isoformat(),
                    "value": reading.value,
                    "grade": grade,
                    "status": entry.status,
                    "derived": reading.derived,
                    "suppressed": entry.result_id in held_back,
                }
            )
        if not points:
            continue
        series.append(
            {
                "analyte": analyte.value,
                "label": DISPLAY_NAME[analyte],
                "unit": CANONICAL_UNIT[analyte],
                "lln": lln,
                "thresholds": [
                    {"grade": g, "below": limit} for g, limit in (scale.below if scale else ())
                ],
                "points": points,
            }
        )
    return series
