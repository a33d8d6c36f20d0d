"""The simulated patients' physiology: who they are, and their blood counts over each cycle.

Kinetics follow CLINICAL.md section 4: 21-day cycles, counts start to fall about day 7 after a dose,
reach a per-patient nadir on days 10-14 and recover by about day 21; hemoglobin declines slowly
cycle after cycle. Severity tiers are allocated in fixed proportions (then shuffled) rather than
drawn independently, so that even a small cohort reliably contains grade 3-4 neutropenia,
thrombocytopenia and pancytopenia.

``make_patients`` draws each patient's baseline counts, nadir timing and depths of suppression;
``measure`` gives the counts of a specimen drawn at a given time: the true value (the baseline
lowered by the cycle's suppression) with multiplicative analytical noise (``_noise``, Gaussian
with a coefficient of variation per analyte, clipped at +-2 SD), in canonical units.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from monitor.sim.labs import LAB_SLOTS, LABS, Lab

__all__ = ["CYCLE_DAYS", "Patient", "make_patients", "measure"]

CYCLE_DAYS: Final = 21
_WARDS: Final = ("oncology-4b", "oncology-5a", "haematology-day-unit", "bmt-3")


@dataclass(frozen=True, slots=True)
class Patient:
    """One patient: identity, lab, dosing schedule and the parameters of their count kinetics."""

    index: int
    patient_id: str
    sex: str  # biological sex, drives the baseline hemoglobin
    reported_sex: str | None  # what the feed says (None for about 10%)
    lab: Lab
    ward: str
    offset_days: int  # first dose day, from cohort start
    dose_hour: float  # UTC hour of day (the lab's local late morning)
    baseline: dict[str, float]  # canonical units: hemoglobin, anc, lymph, other, plt, rbc, mcv
    fall_start: float  # cycle day counts start to fall
    nadir_day: float
    platelet_nadir_day: float
    recovered_day: float
    anc_depth: float  # fraction lost at the first nadir
    lymph_depth: float
    other_depth: float
    platelet_depth: float
    escalation: float  # each further cycle is this much deeper (cumulative marrow toxicity)
    hgb_drop_per_cycle: float  # g/dL
    hgb_nadir_dip: float  # g/dL
    daily_near_nadir: bool

    def dose_times(self, days: int) -> list[float]:
        return [
            self.offset_days + k * CYCLE_DAYS + self.dose_hour / 24
            for k in range(days // CYCLE_DAYS + 1)
            if self.offset_days + k * CYCLE_DAYS < days
        ]


def _allocate(n: int, tiers: Sequence[tuple[str, float, int]], rest: str) -> list[str]:
    """Exactly ``max(minimum, round(share * n))`` of each tier (while room is left), rest last."""
    out: list[str] = []
    for name, share, minimum in tiers:
        out.extend([name] * min(n - len(out), max(minimum, round(share * n))))
    out.extend([rest] * (n - len(out)))
    return out


def _uniform_inside(rng: random.Random, low: float, high: float, margin: float) -> float:
    """A value inside [low, high], far enough from both ends that noise keeps it inside."""
    return rng.uniform(low * margin, high / margin)


def _noise(rng: random.Random, cv: float) -> float:
    """Multiplicative analytical noise: Gaussian with coefficient of variation ``cv``, +-2 SD."""
    return 1.0 + max(-2 * cv, min(2 * cv, rng.gauss(0.0, cv)))


def make_patients(n: int, rng: random.Random) -> list[Patient]:
    """``n`` patients, their severity tiers dealt in fixed proportions, drawn from ``rng``."""
    anc_tiers = _allocate(n, [("g4", 0.10, 1), ("g3", 0.20, 1), ("g0", 0.10, 0)], "g12")
    plt_tiers = _allocate(n, [("p3", 0.07, 1), ("p2", 0.13, 1), ("p1", 0.25, 0)], "p0")
    hgb_tiers = _allocate(n, [("a2", 0.20, 1), ("a1", 0.40, 0)], "a0")
    sexes: list[str | None] = [None] * max(1 if n >= 5 else 0, round(0.10 * n))
    sexes += ["female" if i % 2 == 0 else "male" for i in range(n - len(sexes))]
    sexes = sexes[:n]
    for tiers in (anc_tiers, plt_tiers, hgb_tiers, sexes):
        rng.shuffle(tiers)
    lab_order = list(range(n))
    rng.shuffle(lab_order)
    # A few marrow-sensitive patients lose all three lines together (pancytopenia), early enough
    # that their second nadir falls inside the simulated window.
    wanted = max(1, round(0.10 * n))
    pancytopenic = {i for i in range(n) if anc_tiers[i] in ("g3", "g4")}
    pancytopenic = set(sorted(pancytopenic)[:wanted])

    patients: list[Patient] = []
    for i in range(n):
        prng = random.Random(rng.getrandbits(64))
        reported = sexes[i]
        sex = reported if reported is not None else prng.choice(("female", "male"))
        pan = i in pancytopenic
        hgb_low, hgb_high = (12.5, 15.5) if sex == "female" else (13.5, 17.0)
        if pan:  # lower half of the normal range: anemic by the second cycle
            hgb_high = (hgb_low + hgb_high) / 2
        baseline = {
            "hemoglobin": _uniform_inside(prng, hgb_low, hgb_high, 1.035),
            "plt": _uniform_inside(prng, 180, 380, 1.08),
            "rbc": _uniform_inside(prng, 4.3, 5.5, 1.04),
            "mcv": _uniform_inside(prng, 82, 96, 1.015),
        }
        while True:  # WBC is the sum of its parts and must itself start inside 5-9
            anc = _uniform_inside(prng, 2.5, 6.0, 1.13)
            lymph = _uniform_inside(prng, 1.2, 3.0, 1.13)
            other = prng.uniform(0.35, 0.9)
            if 5.0 * 1.07 <= anc + lymph + other <= 9.0 / 1.07:
                break
        baseline |= {"anc": anc, "lymph": lymph, "other": other}

        anc_tier = anc_tiers[i]
        if anc_tier == "g0":
            anc_depth = prng.uniform(0.40, 0.55)
        else:
            target = {"g12": (1.1, 1.7), "g3": (0.55, 0.85), "g4": (0.12, 0.40)}[anc_tier]
            anc_depth = max(0.40, 1.0 - prng.uniform(*target) / anc)
        plt_tier = plt_tiers[i]
        if pan and plt_tier == "p0":
            plt_tier = "p1"
        if plt_tier == "p0":
            plt_depth = prng.uniform(0.10, 0.30)
        else:
            target = {"p1": (90, 135), "p2": (56, 72), "p3": (30, 46)}[plt_tier]
            plt_depth = max(0.10, 1.0 - prng.uniform(*target) / baseline["plt"])
        hgb_tier = "a2" if pan else hgb_tiers[i]
        drop = {"a0": (0.1, 0.6), "a1": (0.7, 1.4), "a2": (1.9, 2.6)}[hgb_tier]
        nadir_day = prng.uniform(10.0, 14.0)
        lab = LABS[LAB_SLOTS[lab_order[i] % len(LAB_SLOTS)]]
        patients.append(
            Patient(
                index=i,
                patient_id=f"SIM-{i + 1:04d}",
                sex=sex,
                reported_sex=reported,
                lab=lab,
                ward=prng.choice(_WARDS),
                offset_days=prng.randint(0, 4) if pan else prng.randint(0, 10),
                dose_hour=prng.uniform(10.5, 13.0) - lab.utc_offset_minutes / 60,
                baseline=baseline,
                fall_start=prng.uniform(6.5, 7.5),
                nadir_day=nadir_day,
                platelet_nadir_day=min(14.5, nadir_day + prng.uniform(0.0, 1.5)),
                recovered_day=prng.uniform(19.0, 21.0),
                anc_depth=anc_depth,
                lymph_depth=prng.uniform(0.10, 0.30),
                other_depth=prng.uniform(0.30, 0.70),
                platelet_depth=plt_depth,
                escalation=prng.uniform(0.0, 0.10),
                hgb_drop_per_cycle=prng.uniform(*drop),
                hgb_nadir_dip=prng.uniform(0.0, 0.4),
                daily_near_nadir=anc_tier in ("g3", "g4") or plt_tier == "p3",
            )
        )
    return patients


def _suppression(cycle_day: float, start: float, nadir: float, end: float) -> float:
    """0 before ``start``, a smooth fall to 1 at ``nadir``, a smooth recovery to 0 at ``end``."""
    if cycle_day <= start or cycle_day >= end:
        return 0.0
    if cycle_day <= nadir:
        return (1.0 - math.cos(math.pi * (cycle_day - start) / (nadir - start))) / 2.0
    return (1.0 + math.cos(math.pi * (cycle_day - nadir) / (end - nadir))) / 2.0


def measure(p: Patient, t: float, doses: Sequence[float], rng: random.Random) -> dict[str, float]:
    """True counts at time ``t`` (days) with analytical noise, in canonical units."""
    past = [d for d in doses if d <= t]
    f = fp = 0.0
    cycle = 0
    since_first = 0.0
    if past:
        cycle = len(past) - 1
        cycle_day = t - past[-1]
        f = _suppression(cycle_day, p.fall_start, p.nadir_day, p.recovered_day)
        fp = _suppression(cycle_day, p.fall_start, p.platelet_nadir_day, p.recovered_day)
        since_first = t - past[0]
    deeper = 1.0 + p.escalation * cycle
    b = p.baseline
    anc = b["anc"] * (1.0 - min(0.97, p.anc_depth * deeper) * f)
    lymph = b["lymph"] * (1.0 - p.lymph_depth * f)
    other = b["other"] * (1.0 - p.other_depth * f)
    wbc = anc + lymph + other
    plt = b["plt"] * (1.0 - min(0.95, p.platelet_depth * deeper) * fp)
    hgb = b["hemoglobin"] - p.hgb_drop_per_cycle * since_first / CYCLE_DAYS
    hgb = max(6.8, hgb - p.hgb_nadir_dip * f)
    rbc = b["rbc"] * hgb / b["hemoglobin"]
    mcv = b["mcv"] + 0.5 * since_first / CYCLE_DAYS  # mild chemotherapy macrocytosis

    wbc_m = wbc * _noise(rng, 0.025)
    neut_frac = anc / wbc * _noise(rng, 0.025)
    lymph_frac = min(0.97 - neut_frac, lymph / wbc * _noise(rng, 0.03))
    neut_pct = neut_frac * 100
    bands = float(min(round(neut_pct), rng.choice((0, 0, 1, 1, 2, 3, 4))))
    return {
        "hemoglobin": hgb * _noise(rng, 0.01),
        "wbc": wbc_m,
        "neutrophils": wbc_m * neut_frac,
        "lymphocytes": wbc_m * lymph_frac,
        "platelets": plt * _noise(rng, 0.03),
        "rbc": rbc * _noise(rng, 0.012),
        "neutrophils_pct": max(0.0, neut_pct - bands),
        "bands_pct": bands,
        "lymphocytes_pct": lymph_frac * 100,
        "mcv": mcv * _noise(rng, 0.004),
    }
