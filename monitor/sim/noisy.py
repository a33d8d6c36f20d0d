"""A noisy cohort: counts that sit on grade boundaries, with real biological and analytical noise.

For the alert-fatigue measurements (issue 10): each patient's true counts are a set point near a
CTCAE boundary or lower limit, or a normal baseline pulled down through real chemotherapy nadirs
(21-day cycles, fall from about day 7, nadir on days 10-14, recovery by day 21; CLINICAL.md
section 4) to a depth that lands near a boundary. Every result draws its within-subject
biological variation (CVi) and its analytical imprecision (CVa) from the cited table in
``monitor.clinical.variation``, as independent multiplicative Gaussian factors. Results are
daily near the nadir and every other day otherwise; all are final canonical JSON results on the
``results`` feed, in collection order, with no redeliveries or broken messages (those are the
main cohort's concern). The same ``NoisySpec`` always yields byte-identical messages.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from monitor.clinical.analytes import Analyte
from monitor.clinical.variation import VARIATION
from monitor.sim.messages import SimMessage

__all__ = ["NOISY_ANALYTES", "NoisySpec", "simulate_noisy_cohort"]

CYCLE_DAYS: Final = 21
NOISY_ANALYTES: Final = (
    Analyte.HEMOGLOBIN,
    Analyte.WBC,
    Analyte.NEUTROPHILS,
    Analyte.LYMPHOCYTES,
    Analyte.PLATELETS,
)
_UNIT: Final = {Analyte.HEMOGLOBIN: "g/dL"} | {a: "10*9/L" for a in NOISY_ANALYTES[1:]}
# Boundaries a set point or a nadir is placed near (canonical units): the default lower limit of
# normal and the CTCAE v5.0 grade limits (monitor.clinical.grading).
_BOUNDARIES: Final = {
    Analyte.HEMOGLOBIN: (12.0, 10.0, 8.0),
    Analyte.WBC: (4.0, 3.0, 2.0, 1.0),
    Analyte.NEUTROPHILS: (1.8, 1.5, 1.0, 0.5),
    Analyte.LYMPHOCYTES: (1.0, 0.8, 0.5, 0.2),
    Analyte.PLATELETS: (150.0, 75.0, 50.0, 25.0),
}
_NORMAL: Final = {
    Analyte.HEMOGLOBIN: 13.5,
    Analyte.WBC: 6.5,
    Analyte.NEUTROPHILS: 3.8,
    Analyte.LYMPHOCYTES: 1.9,
    Analyte.PLATELETS: 260.0,
}


@dataclass(frozen=True)
class NoisySpec:
    """What to simulate: ``steady_share`` of patients wander around a boundary without
    treatment; the rest have chemotherapy cycles whose nadirs land near a boundary."""

    seed: int = 10
    patients: int = 200
    days: int = 42
    steady_share: float = 0.3
    start: datetime = datetime(2026, 10, 1, tzinfo=UTC)

    def __post_init__(self) -> None:
        if self.patients < 0 or self.days < 1:
            raise ValueError("patients must be >= 0 and days >= 1")
        if not 0.0 <= self.steady_share <= 1.0:
            raise ValueError("steady_share must be within [0, 1]")


def _near(rng: random.Random, boundary: float) -> float:
    """A value within about +-8 % of ``boundary``: inside the noise of most analytes."""
    return boundary * math.exp(rng.uniform(-0.08, 0.08))


def _nadir_factor(cycle_day: float, nadir_day: float) -> float:
    """Fraction of the suppression reached: 0 before day 7, 1 at the nadir, 0 again by day 21."""
    if cycle_day <= 7.0 or cycle_day >= 20.0:
        return 0.0
    if cycle_day <= nadir_day:
        return (1.0 - math.cos(math.pi * (cycle_day - 7.0) / (nadir_day - 7.0))) / 2.0
    return (1.0 + math.cos(math.pi * (cycle_day - nadir_day) / (20.0 - nadir_day))) / 2.0


def _noisy(rng: random.Random, analyte: Analyte, true: float) -> float:
    """One result: the true value with biological (CVi) and analytical (CVa) noise, clipped at
    +-3 SD, rounded as labs report (counts to 2 decimals, platelets to whole, Hgb to 1)."""
    variation = VARIATION[analyte]
    factor = 1.0
    for cv in (variation.cvi / 100, variation.cva_used / 100):
        factor *= 1.0 + max(-3 * cv, min(3 * cv, rng.gauss(0.0, cv)))
    value = max(true * factor, 0.01)
    digits = 0 if analyte is Analyte.PLATELETS else (1 if analyte is Analyte.HEMOGLOBIN else 2)
    return round(value, digits)


# At least this share of the leukocytes is neither neutrophils nor lymphocytes (monocytes,
# eosinophils, basophils). CLINICAL.md section 7: ANC and lymphocytes cannot exceed the WBC.
# 5 % is a judgment at the low end of a normal adult differential's other cells (a simulator
# figure, not a clinical limit).
_OTHER_LEUKOCYTES: Final = 0.05


def _consistent_wbc(values: dict[Analyte, float]) -> float:
    """The WBC, raised when the independently drawn ANC and lymphocytes would not fit in it.

    An analyzer counts ANC and lymphocytes as parts of the same WBC, so their sum cannot
    exceed it; boundaries drawn per analyte can (an ANC near 1.8 beside a WBC near 1.0), and
    the plausibility check (``monitor.clinical.plausibility``) rightly rejects such a count.
    """
    parts = values[Analyte.NEUTROPHILS] + values[Analyte.LYMPHOCYTES]
    return max(values[Analyte.WBC], round(parts / (1.0 - _OTHER_LEUKOCYTES) + 0.005, 2))


def simulate_noisy_cohort(spec: NoisySpec = NoisySpec()) -> list[SimMessage]:
    """Canonical JSON results of the noisy cohort, sorted by collection time."""
    rng = random.Random(spec.seed)
    drafts: list[tuple[float, int, SimMessage]] = []
    n_steady = round(spec.steady_share * spec.patients)
    for i in range(spec.patients):
        patient_id = f"NOISY-{i + 1:04d}"
        steady = i < n_steady
        # Each analyte is placed near one of its boundaries: a set point, or a nadir depth.
        target = {a: _near(rng, rng.choice(_BOUNDARIES[a])) for a in NOISY_ANALYTES}
        nadir_day = rng.uniform(10.0, 14.0)
        first_dose = rng.uniform(0.0, 6.0)
        doses = [first_dose + k * CYCLE_DAYS for k in range(spec.days // CYCLE_DAYS + 1)]
        day = rng.uniform(0.0, 1.0)
        k = 0
        while day < spec.days:
            past = [d for d in doses if d <= day]
            cycle_day = day - past[-1] if past else -1.0
            if steady:
                true = target
            else:
                f = _nadir_factor(cycle_day, nadir_day) if past else 0.0
                true = {a: _NORMAL[a] * (target[a] / _NORMAL[a]) ** f for a in NOISY_ANALYTES}
            values = {a: _noisy(rng, a, true[a]) for a in true}
            values[Analyte.WBC] = _consistent_wbc(values)
            components = {a.value: {"value": v, "unit": _UNIT[a]} for a, v in values.items()}
            collected = spec.start + timedelta(days=day)
            context: dict[str, object] = {"ward": "oncology-4b"}
            if past and not steady:
                context["last_chemo_at"] = (spec.start + timedelta(days=past[-1])).isoformat()
            value = json.dumps(
                {
                    "result_id": f"{patient_id}-{k:03d}",
                    "patient_id": patient_id,
                    "collected_at": collected.isoformat(),
                    "status": "final",
                    "sex": "female" if i % 2 == 0 else "male",
                    "components": components,
                    "context": context,
                },
                separators=(",", ":"),
            ).encode()
            sent = day + rng.uniform(0.5, 3.0) / 24
            drafts.append(
                (sent, len(drafts), SimMessage(patient_id.encode(), value, "result", sent))
            )
            near_nadir = not steady and 6.0 <= cycle_day <= 17.0
            day += rng.uniform(0.9, 1.1) if (steady or near_nadir) else rng.uniform(1.8, 2.2)
            k += 1
    drafts.sort(key=lambda d: (d[0], d[1]))
    return [
        SimMessage(m.key, m.value, m.kind, round(m.sent_at_day, 6), m.topic) for _, _, m in drafts
    ]
