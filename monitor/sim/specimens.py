"""The specimens drawn from the simulated patients, and the plan of how their results go out.

Draws are booked on cycle day 0 (before the dose), every 2-3 days after it, always on the
patient's nadir day and daily on days 8-15 in deep nadirs; a few afternoon add-ons recheck
hemoglobin or platelets alone. Each specimen carries its counts as measured (``physiology``).
The plan (``Plan``) picks, among the full panels after a dose, the few results published first
as preliminary, the finals later corrected and the results that arrive late (after a newer
result of the same patient). Rates are fractions of the number of specimens
(``count_at_rate``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Final, Literal

from monitor.sim.physiology import CYCLE_DAYS, Patient, measure

__all__ = [
    "Plan",
    "Specimen",
    "count_at_rate",
    "draw_specimens",
    "make_plan",
    "next_specimen_of",
]

_PRELIMINARY_PAIRS: Final = 3
_CORRECTIONS: Final = 2
_DERIVED_ANC_RATE: Final = 0.10
_ADD_ON_RATE: Final = 0.03


@dataclass(frozen=True, slots=True)
class Specimen:
    """One specimen: when it was drawn, from whom, what panel and the counts measured."""

    patient: Patient
    day: float  # collection time, days from cohort start
    panel: Literal["full", "hemoglobin", "platelets"]
    values: dict[str, float]  # canonical units, measured (noise applied), keyed by analyte
    last_dose_day: float | None
    derived_anc: bool  # send neutrophils_pct + bands_pct instead of the absolute count
    result_id: str = ""

    @property
    def is_baseline(self) -> bool:
        return self.last_dose_day is None


def _cycle_draw_days(p: Patient, rng: random.Random) -> list[int]:
    """Cycle days with a draw: day 0 before the dose, every 2-3 days, daily 8-15 in deep nadirs."""
    days = {0, round(p.nadir_day)}  # the nadir check is always booked
    d = 0
    while True:
        d += 1 if p.daily_near_nadir and 7 <= d < 15 else rng.choice((2, 3))
        if d >= CYCLE_DAYS:
            return sorted(days)
        days.add(d)


def draw_specimens(days: int, patients: Sequence[Patient], rng: random.Random) -> list[Specimen]:
    out: list[Specimen] = []
    for p in patients:
        doses = p.dose_times(days)
        local = p.lab.utc_offset_minutes / 60
        for dose in doses:
            dose_day = math.floor(dose)
            for cycle_day in _cycle_draw_days(p, rng):
                day = dose_day + cycle_day
                if day >= days:
                    break
                t = day + (rng.uniform(7.0, 9.5) - local) / 24  # a local morning draw
                last = max((d for d in doses if d <= t), default=None)
                out.append(
                    Specimen(
                        patient=p,
                        day=t,
                        panel="full",
                        values=measure(p, t, doses, rng),
                        last_dose_day=last,
                        derived_anc=rng.random() < _DERIVED_ANC_RATE,
                    )
                )
                if cycle_day > 0 and rng.random() < _ADD_ON_RATE:
                    # An afternoon add-on: a hemoglobin or platelet recheck, nothing else.
                    t2 = day + (rng.uniform(14.0, 17.5) - local) / 24
                    out.append(
                        Specimen(
                            patient=p,
                            day=t2,
                            panel=rng.choice(("hemoglobin", "platelets")),
                            values=measure(p, t2, doses, rng),
                            last_dose_day=last,
                            derived_anc=False,
                        )
                    )
    out.sort(key=lambda s: (s.day, s.patient.index))
    return [
        Specimen(s.patient, s.day, s.panel, s.values, s.last_dose_day, s.derived_anc, rid)
        for s, rid in zip(out, (f"SIM-R-{i:06d}" for i in range(1, len(out) + 1)), strict=True)
    ]


def count_at_rate(rate: float, n: int) -> int:
    return 0 if rate <= 0 or n == 0 else max(1, round(rate * n))


@dataclass(frozen=True, slots=True)
class Plan:
    """Which specimens get special treatment (disjoint sets of specimen indices)."""

    preliminary: frozenset[int]
    corrected: tuple[int, ...]
    late: frozenset[int]


def make_plan(late_rate: float, specimens: Sequence[Specimen], rng: random.Random) -> Plan:
    n = len(specimens)
    by_patient: dict[int, list[int]] = {}
    for i, s in enumerate(specimens):
        by_patient.setdefault(s.patient.index, []).append(i)
    next_of: dict[int, int] = {}
    for indices in by_patient.values():
        next_of.update(pairwise(indices))
    previous_of = {after: before for before, after in next_of.items()}

    candidates = [i for i, s in enumerate(specimens) if s.panel == "full" and not s.is_baseline]
    rng.shuffle(candidates)
    preliminary = candidates[:_PRELIMINARY_PAIRS]
    corrected = candidates[len(preliminary) : len(preliminary) + min(_CORRECTIONS, n // 20 + 1)]
    taken = set(preliminary) | set(corrected)
    late: set[int] = set()
    blocked: set[int] = set()
    wanted = count_at_rate(late_rate, n)
    for i in candidates[len(taken) :]:
        if len(late) >= wanted:
            break
        newer = next_of.get(i)
        # A late result needs a newer result of the same patient published before it and within
        # 3 days of its own collection; that newer result must not itself be late.
        if newer is None or i in blocked or newer in taken or newer in late:
            continue
        if specimens[newer].day - specimens[i].day > 2.8:
            continue
        late.add(i)
        blocked.add(newer)
        if i in previous_of:
            blocked.add(previous_of[i])
    return Plan(frozenset(preliminary), tuple(corrected), frozenset(late))


def next_specimen_of(specimens: Sequence[Specimen], i: int) -> int:
    patient = specimens[i].patient.index
    return next(k for k in range(i + 1, len(specimens)) if specimens[k].patient.index == patient)
