"""A deterministic synthetic cohort of chemotherapy patients, published as a lab feed would.

The simulator produces the canonical CBC JSON messages (one per result) that the monitor consumes,
with the mess a real feed has: unit aliases that differ between labs, lab-supplied lower limits on
some results, percent differentials instead of an absolute neutrophil count, partial panels,
preliminary results followed by the final one, corrections, redeliveries, late results and a
handful of malformed messages. The same ``CohortSpec`` always yields byte-identical messages.

Each patient's lab sends in one format: canonical JSON (the ``results`` feed), HL7 v2 ORU^R01
(``hl7v2``) or a FHIR R4 DiagnosticReport (``fhir``), in the shares the spec asks for; all of
that patient's results, redeliveries and late results included, go out in it. With ``context``
the cohort also sends each chemotherapy dose (``treatments``) and temperatures (``vitals``):
once or twice a day in the weeks counts fall, afebrile for most, and a fever close to a draw
with an ANC below 1.0 for a few, so that febrile neutropenia occurs.

Kinetics follow CLINICAL.md section 4: 21-day cycles, counts start to fall about day 7 after a dose,
reach a per-patient nadir on days 10-14 and recover by about day 21; hemoglobin declines slowly
cycle after cycle. Severity tiers are allocated in fixed proportions (then shuffled) rather than
drawn independently, so that even a small cohort reliably contains grade 3-4 neutropenia,
thrombocytopenia and pancytopenia.

Standard library plus the monitor's LOINC and unit tables (for the HL7 v2 and FHIR encodings in
``monitor.sim.encodings``): it runs in tests, in the CLI and in benchmarks without a broker.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any, Final, Literal

from monitor.sim.encodings import to_fhir, to_hl7v2

__all__ = [
    "LAB_TOPICS",
    "MALFORMED_VARIANTS",
    "MAX_MESSAGE_BYTES",
    "TOPICS",
    "CohortSpec",
    "MessageKind",
    "SimMessage",
    "Topic",
    "check_message",
    "clean_results",
    "simulate_cohort",
    "summary",
]

MessageKind = Literal["result", "redelivery", "late", "malformed"]
# The logical feed a message belongs to (the real topic names are settings).
Topic = Literal["results", "hl7v2", "fhir", "treatments", "vitals"]
TOPICS: Final[tuple[Topic, ...]] = ("results", "hl7v2", "fhir", "treatments", "vitals")
LAB_TOPICS: Final[frozenset[str]] = frozenset({"results", "hl7v2", "fhir"})

MAX_MESSAGE_BYTES: Final = 64 * 1024

# Each name is both the way a malformed message is built and the reason check_message gives for it.
MALFORMED_VARIANTS: Final[tuple[str, ...]] = (
    "not_json",
    "not_object",
    "missing_result_id",
    "missing_patient_id",
    "unknown_unit",
    "negative_count",
    "naive_timestamp",
    "unknown_analyte",
    "oversize",
)

_DAY: Final = timedelta(days=1)
_CYCLE_DAYS: Final = 21
_PRELIMINARY_PAIRS: Final = 3
_CORRECTIONS: Final = 2
_DERIVED_ANC_RATE: Final = 0.10
_ADD_ON_RATE: Final = 0.03
_WARDS: Final = ("oncology-4b", "oncology-5a", "haematology-day-unit", "bmt-3")


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One message as it would be produced to its feed's topic.

    ``kind`` says how it is delivered (a first, on-time publication is a ``result``, whatever the
    feed); ``topic`` says what it carries. A message of the ``hl7v2`` or ``fhir`` feed also
    carries, in ``canonical``, the canonical JSON result its bytes encode.
    """

    key: bytes | None  # patient id as UTF-8 (None for a few malformed ones)
    value: bytes  # the message bytes (or deliberately broken bytes)
    kind: MessageKind
    sent_at_day: float  # simulated day (from cohort start) at which it is published
    topic: Topic = "results"
    canonical: bytes | None = None  # hl7v2 / fhir: the canonical JSON of the encoded result

    @property
    def result_json(self) -> bytes | None:
        """The canonical JSON result this message carries (None for treatments and vitals)."""
        if self.topic == "results":
            return self.value
        return self.canonical


@dataclass(frozen=True)
class CohortSpec:
    """What to simulate. Rates are fractions of the number of specimens in the cohort."""

    seed: int = 7
    patients: int = 40
    days: int = 42
    start: datetime = datetime(2026, 10, 1, tzinfo=UTC)
    redelivery_rate: float = 0.03
    late_rate: float = 0.03
    malformed_rate: float = 0.02
    hl7v2_share: float = 0.2  # of patients whose lab sends HL7 v2 ORU^R01
    fhir_share: float = 0.2  # of patients whose lab sends FHIR R4 DiagnosticReports
    context: bool = True  # also send chemotherapy doses and temperatures

    def __post_init__(self) -> None:
        if self.patients < 0:
            raise ValueError("patients must be >= 0")
        if self.days < 1:
            raise ValueError("days must be >= 1")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must carry a time zone")
        for name in ("redelivery_rate", "late_rate", "malformed_rate", "hl7v2_share", "fhir_share"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.hl7v2_share + self.fhir_share > 1.0:
            raise ValueError("hl7v2_share + fhir_share must not exceed 1")


# --------------------------------------------------------------------------------------------
# Units (CLINICAL.md section 3). The simulator keeps its own table so it depends on nothing in
# the monitor: it is the independent source of truth the monitor is tested against.

_COUNT_UNITS_G_PER_L: Final = frozenset(
    {"10*9/L", "10^9/L", "10*3/uL", "10^3/uL", "K/uL", "/nL", "G/L", "x10E3/uL", "Thou/mcL"}
)
_COUNT_UNITS_PER_UL: Final = frozenset({"/uL", "/mm3", "cells/uL", "10*6/L"})
_COUNT_UNITS: Final = _COUNT_UNITS_G_PER_L | _COUNT_UNITS_PER_UL
_HGB_PER_G_DL: Final = {"g/dL": 1.0, "g/L": 10.0, "mmol/L": 0.6206}
_RBC_UNITS: Final = frozenset({"10*12/L", "10^12/L", "10*6/uL", "10^6/uL", "M/uL", "x10E6/uL"})
_COUNT_ANALYTES: Final = frozenset({"wbc", "neutrophils", "lymphocytes", "platelets"})
_ALLOWED_UNITS: Final[dict[str, frozenset[str]]] = {
    "hemoglobin": frozenset(_HGB_PER_G_DL),
    "hematocrit": frozenset({"%", "L/L"}),
    "rbc": _RBC_UNITS,
    "mcv": frozenset({"fL"}),
    "wbc": _COUNT_UNITS,
    "neutrophils": _COUNT_UNITS,
    "lymphocytes": _COUNT_UNITS,
    "platelets": _COUNT_UNITS,
    "neutrophils_pct": frozenset({"%"}),
    "bands_pct": frozenset({"%"}),
    "lymphocytes_pct": frozenset({"%"}),
}
_STATUSES: Final = frozenset({"final", "corrected", "preliminary"})
_SEXES: Final = frozenset({"female", "male"})


@dataclass(frozen=True, slots=True)
class _Lab:
    """How one laboratory reports: its units, its clock's UTC offset, its habits."""

    name: str
    wbc: str
    neutrophils: str
    lymphocytes: str
    platelets: str
    hemoglobin: str
    rbc: str
    utc_offset_minutes: int
    sends_lln: bool
    sends_percentages: bool

    def unit(self, analyte: str) -> str:
        if analyte in ("neutrophils_pct", "bands_pct", "lymphocytes_pct"):
            return "%"
        if analyte == "mcv":
            return "fL"
        unit: str = getattr(self, analyte)
        return unit


_LABS: Final = (
    _Lab("central", "10*9/L", "10*9/L", "10*9/L", "10*9/L", "g/dL", "10*12/L", 0, False, True),
    _Lab("us-reference", "K/uL", "x10E3/uL", "x10E3/uL", "K/uL", "g/dL", "M/uL", -300, True, True),
    _Lab("legacy-analyzer", "/uL", "/uL", "cells/uL", "/uL", "g/dL", "10*6/uL", 0, False, False),
    _Lab("eu-hospital", "G/L", "G/L", "G/L", "G/L", "g/L", "10*12/L", 60, True, True),
    _Lab("nordic", "/nL", "/nL", "/nL", "/nL", "mmol/L", "10*12/L", 60, False, True),
    _Lab("community", "10^9/L", "/mm3", "10*6/L", "Thou/mcL", "g/dL", "M/uL", 0, True, False),
    _Lab("satellite", "10*3/uL", "10^3/uL", "/uL", "10*3/uL", "g/dL", "10*12/L", 0, False, True),
)
# Patients are dealt to labs round-robin over this table: 3 slots in 10 are labs that send their
# own lower limits, so about 30% of results carry an ``lln``.
_LAB_SLOTS: Final = (0, 1, 2, 3, 4, 5, 6, 0, 4, 2)

# Labs' own lower limits (canonical units): deliberately not the monitor's defaults, so a lab
# range that wins can be told apart from the default table.
_LAB_LLN: Final[dict[str, dict[str, float]]] = {
    "hemoglobin": {"female": 11.7, "male": 13.2},
    "rbc": {"female": 3.9, "male": 4.3},
    "wbc": {"female": 3.8, "male": 3.8},
    "neutrophils": {"female": 1.5, "male": 1.5},
    "lymphocytes": {"female": 1.0, "male": 1.0},
    "platelets": {"female": 140.0, "male": 140.0},
}

_ANALYTE_ORDER: Final = (
    "hemoglobin",
    "wbc",
    "neutrophils",
    "lymphocytes",
    "platelets",
    "rbc",
    "neutrophils_pct",
    "bands_pct",
    "lymphocytes_pct",
    "mcv",
)


def _in_unit(analyte: str, value: float, unit: str) -> float | int:
    """A canonical value expressed and rounded the way a lab reports it in ``unit``."""
    if analyte in _COUNT_ANALYTES:
        if unit in _COUNT_UNITS_PER_UL:  # whole cells: thousands for platelets, tens otherwise
            return round(value) * 1000 if analyte == "platelets" else round(value * 100) * 10
        return round(value) if analyte == "platelets" else round(value, 2)
    if analyte == "hemoglobin":
        converted = value * _HGB_PER_G_DL[unit]
        return round(converted) if unit == "g/L" else round(converted, 1)
    if analyte == "rbc":
        return round(value, 2)
    if analyte == "mcv":
        return round(value, 1)
    return round(value)  # percentages


# --------------------------------------------------------------------------------------------
# Patients and kinetics


@dataclass(frozen=True, slots=True)
class _Patient:
    index: int
    patient_id: str
    sex: str  # biological sex, drives the baseline hemoglobin
    reported_sex: str | None  # what the feed says (None for about 10%)
    lab: _Lab
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
            self.offset_days + k * _CYCLE_DAYS + self.dose_hour / 24
            for k in range(days // _CYCLE_DAYS + 1)
            if self.offset_days + k * _CYCLE_DAYS < days
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


def _make_patients(spec: CohortSpec, rng: random.Random) -> list[_Patient]:
    n = spec.patients
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

    patients: list[_Patient] = []
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
        lab = _LABS[_LAB_SLOTS[lab_order[i] % len(_LAB_SLOTS)]]
        patients.append(
            _Patient(
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


@dataclass(frozen=True, slots=True)
class _Specimen:
    patient: _Patient
    day: float  # collection time, days from cohort start
    panel: Literal["full", "hemoglobin", "platelets"]
    values: dict[str, float]  # canonical units, measured (noise applied), keyed by analyte
    last_dose_day: float | None
    derived_anc: bool  # send neutrophils_pct + bands_pct instead of the absolute count
    result_id: str = ""

    @property
    def is_baseline(self) -> bool:
        return self.last_dose_day is None


def _measure(p: _Patient, t: float, doses: Sequence[float], rng: random.Random) -> dict[str, float]:
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
    hgb = b["hemoglobin"] - p.hgb_drop_per_cycle * since_first / _CYCLE_DAYS
    hgb = max(6.8, hgb - p.hgb_nadir_dip * f)
    rbc = b["rbc"] * hgb / b["hemoglobin"]
    mcv = b["mcv"] + 0.5 * since_first / _CYCLE_DAYS  # mild chemotherapy macrocytosis

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


def _cycle_draw_days(p: _Patient, rng: random.Random) -> list[int]:
    """Cycle days with a draw: day 0 before the dose, every 2-3 days, daily 8-15 in deep nadirs."""
    days = {0, round(p.nadir_day)}  # the nadir check is always booked
    d = 0
    while True:
        d += 1 if p.daily_near_nadir and 7 <= d < 15 else rng.choice((2, 3))
        if d >= _CYCLE_DAYS:
            return sorted(days)
        days.add(d)


def _specimens(
    spec: CohortSpec, patients: Sequence[_Patient], rng: random.Random
) -> list[_Specimen]:
    out: list[_Specimen] = []
    for p in patients:
        doses = p.dose_times(spec.days)
        local = p.lab.utc_offset_minutes / 60
        for dose in doses:
            dose_day = math.floor(dose)
            for cycle_day in _cycle_draw_days(p, rng):
                day = dose_day + cycle_day
                if day >= spec.days:
                    break
                t = day + (rng.uniform(7.0, 9.5) - local) / 24  # a local morning draw
                last = max((d for d in doses if d <= t), default=None)
                out.append(
                    _Specimen(
                        patient=p,
                        day=t,
                        panel="full",
                        values=_measure(p, t, doses, rng),
                        last_dose_day=last,
                        derived_anc=rng.random() < _DERIVED_ANC_RATE,
                    )
                )
                if cycle_day > 0 and rng.random() < _ADD_ON_RATE:
                    # An afternoon add-on: a hemoglobin or platelet recheck, nothing else.
                    t2 = day + (rng.uniform(14.0, 17.5) - local) / 24
                    out.append(
                        _Specimen(
                            patient=p,
                            day=t2,
                            panel=rng.choice(("hemoglobin", "platelets")),
                            values=_measure(p, t2, doses, rng),
                            last_dose_day=last,
                            derived_anc=False,
                        )
                    )
    out.sort(key=lambda s: (s.day, s.patient.index))
    return [
        _Specimen(s.patient, s.day, s.panel, s.values, s.last_dose_day, s.derived_anc, rid)
        for s, rid in zip(out, (f"SIM-R-{i:06d}" for i in range(1, len(out) + 1)), strict=True)
    ]


# --------------------------------------------------------------------------------------------
# Rendering


def _timestamp(start: datetime, day: float, offset_minutes: int) -> str:
    zone = timezone(timedelta(minutes=offset_minutes))
    moment = (start + day * _DAY).astimezone(zone).replace(microsecond=0)
    text = moment.isoformat()
    return text[:-6] + "Z" if offset_minutes == 0 else text


def _render(
    spec: CohortSpec,
    s: _Specimen,
    status: str = "final",
    overrides: dict[str, float] | None = None,
    analytes: Sequence[str] | None = None,
) -> dict[str, Any]:
    p = s.patient
    values = s.values | (overrides or {})
    if analytes is None:
        if s.panel != "full":
            analytes = (s.panel,)
        else:
            wanted = set(_ANALYTE_ORDER)
            if s.derived_anc:
                wanted.discard("neutrophils")
            elif not p.lab.sends_percentages:
                wanted -= {"neutrophils_pct", "bands_pct", "lymphocytes_pct"}
            analytes = [a for a in _ANALYTE_ORDER if a in wanted]
    components: dict[str, dict[str, Any]] = {}
    for analyte in analytes:
        unit = p.lab.unit(analyte)
        component: dict[str, Any] = {
            "value": _in_unit(analyte, values[analyte], unit),
            "unit": unit,
        }
        if p.lab.sends_lln and analyte in _LAB_LLN:
            lln = _LAB_LLN[analyte][p.reported_sex or "female"]
            component["lln"] = _in_unit(analyte, lln, unit)
        components[analyte] = component
    context: dict[str, Any] = {"ward": p.ward}
    if s.last_dose_day is not None:
        context["last_chemo_at"] = _timestamp(spec.start, s.last_dose_day, 0)
    return {
        "result_id": s.result_id,
        "patient_id": p.patient_id,
        "collected_at": _timestamp(spec.start, s.day, p.lab.utc_offset_minutes),
        "status": status,
        "sex": p.reported_sex,
        "components": components,
        "context": context,
    }


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode()


def _break(variant: str, obj: dict[str, Any], rng: random.Random) -> tuple[bytes, bool]:
    """Bytes for one malformed variant built from a valid result; also whether to drop the key."""
    obj = json.loads(json.dumps(obj))  # a deep copy we may mutate
    components: dict[str, dict[str, Any]] = obj["components"]
    if variant == "not_json":
        good = _encode(obj)
        return good[: rng.randint(10, len(good) // 2)], False  # a truncated write
    if variant == "not_object":
        return _encode([obj]), False
    if variant == "missing_result_id":
        del obj["result_id"]
    elif variant == "missing_patient_id":
        del obj["patient_id"]
        return _encode(obj), True
    elif variant == "unknown_unit":
        components[next(iter(components))]["unit"] = "kU/L"
    elif variant == "negative_count":
        count = next(
            a for a in ("neutrophils", "wbc", "platelets", "lymphocytes") if a in components
        )
        components[count]["value"] = -abs(components[count]["value"]) or -1
    elif variant == "naive_timestamp":
        obj["collected_at"] = obj["collected_at"].replace("Z", "")[:19]
    elif variant == "unknown_analyte":
        components["troponin_t"] = {"value": 14, "unit": "ng/L"}
    elif variant == "oversize":
        obj["context"]["note"] = "x" * (MAX_MESSAGE_BYTES + 1024)
    else:  # pragma: no cover - guarded by MALFORMED_VARIANTS
        raise ValueError(f"unknown malformed variant {variant!r}")
    return _encode(obj), False


# --------------------------------------------------------------------------------------------
# Publication


@dataclass(slots=True)
class _Draft:
    key: bytes | None
    value: bytes
    kind: MessageKind
    sent_at_day: float
    seq: int = field(default=0)
    topic: Topic = "results"
    canonical: bytes | None = None


def _count(rate: float, n: int) -> int:
    return 0 if rate <= 0 or n == 0 else max(1, round(rate * n))


@dataclass(frozen=True, slots=True)
class _Plan:
    """Which specimens get special treatment (disjoint sets of specimen indices)."""

    preliminary: frozenset[int]
    corrected: tuple[int, ...]
    late: frozenset[int]


def _plan(spec: CohortSpec, specimens: Sequence[_Specimen], rng: random.Random) -> _Plan:
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
    wanted = _count(spec.late_rate, n)
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
    return _Plan(frozenset(preliminary), tuple(corrected), frozenset(late))


def _next_of(specimens: Sequence[_Specimen], i: int) -> int:
    patient = specimens[i].patient.index
    return next(k for k in range(i + 1, len(specimens)) if specimens[k].patient.index == patient)


def _lab_formats(spec: CohortSpec) -> list[Topic]:
    """The feed each patient's lab sends on, by patient index: exact shares, then shuffled.

    A random stream of its own, so the shares change formats but never the results themselves.
    """
    n = spec.patients
    hl7 = round(spec.hl7v2_share * n)
    fhir = min(n - hl7, round(spec.fhir_share * n))
    shares: tuple[tuple[Topic, int], ...] = (
        ("hl7v2", hl7),
        ("fhir", fhir),
        ("results", n - hl7 - fhir),
    )
    formats = [topic for topic, share in shares for _ in range(share)]
    random.Random(f"{spec.seed}:lab-formats").shuffle(formats)
    return formats


def _moment(spec: CohortSpec, day: float, offset_minutes: int) -> datetime:
    zone = timezone(timedelta(minutes=offset_minutes))
    return (spec.start + day * _DAY).astimezone(zone).replace(microsecond=0)


class _Encoder:
    """Drafts of results in each patient's lab format."""

    def __init__(self, spec: CohortSpec, formats: Sequence[Topic]) -> None:
        self.spec = spec
        self.formats = formats

    def draft(self, s: _Specimen, result: dict[str, Any], kind: MessageKind, sent: float) -> _Draft:
        key = s.patient.patient_id.encode()
        canonical = _encode(result)
        topic = self.formats[s.patient.index]
        if topic == "results":
            return _Draft(key, canonical, kind, sent)
        sent_at = _moment(self.spec, sent, s.patient.lab.utc_offset_minutes)
        value = (
            to_hl7v2(result, sent_at=sent_at)
            if topic == "hl7v2"
            else to_fhir(result, sent_at=sent_at)
        )
        return _Draft(key, value, kind, sent, topic=topic, canonical=canonical)


def simulate_cohort(spec: CohortSpec = CohortSpec()) -> list[SimMessage]:
    """All messages of the cohort, sorted by publication time (``sent_at_day``).

    Every specimen is published once, as a ``result`` or (about ``late_rate`` of them) as ``late``;
    a few go out first as ``preliminary`` and then ``final`` under the same result id, and one or
    two finals are later ``corrected``. On top come ``redelivery`` copies (byte-identical to an
    earlier message) and ``malformed`` messages cycling through ``MALFORMED_VARIANTS`` (canonical
    JSON on the ``results`` feed, whatever the patient's lab format). With ``spec.context``,
    chemotherapy doses and temperatures follow on the ``treatments`` and ``vitals`` feeds; they
    come from a random stream of their own, so the lab results do not depend on them.
    """
    rng = random.Random(spec.seed)
    patients = _make_patients(spec, rng)
    specimens = _specimens(spec, patients, rng)
    plan = _plan(spec, specimens, rng)
    encoder = _Encoder(spec, _lab_formats(spec))

    drafts: list[_Draft] = []
    first_sent: dict[int, float] = {}
    published: list[tuple[int, _Draft]] = []  # the authoritative message of each specimen
    for i, s in enumerate(specimens):
        if i in plan.late:
            continue  # published below, once every on-time result has its publication time
        sent = first_sent[i] = s.day + rng.uniform(0.5, 3.0) / 24
        if i in plan.preliminary:
            # The analyzer's numbers go out first; the final adds the reviewed differential.
            partial = ("hemoglobin", "wbc", "platelets", "rbc", "mcv")
            prelim = _render(spec, s, "preliminary", analytes=partial)
            drafts.append(encoder.draft(s, prelim, "result", sent))
            sent += rng.uniform(1.0, 4.0) / 24
        if i in plan.corrected:
            # The first final was wrong (clumped platelets, or a transcription slip in Hgb);
            # the correction sends the measured value.
            wrong = (
                {"platelets": s.values["platelets"] * 0.55}
                if plan.corrected.index(i) % 2 == 0
                else {"hemoglobin": s.values["hemoglobin"] + 1.2}
            )
            drafts.append(encoder.draft(s, _render(spec, s, overrides=wrong), "result", sent))
            sent += rng.uniform(0.25, 1.25)
            drafts.append(encoder.draft(s, _render(spec, s, "corrected"), "result", sent))
        else:
            drafts.append(encoder.draft(s, _render(spec, s), "result", sent))
        published.append((i, drafts[-1]))
    for i in sorted(plan.late):
        s = specimens[i]
        newer_sent = first_sent[_next_of(specimens, i)]
        sent = s.day + rng.uniform(max(1.0, newer_sent - s.day + 0.02), 3.0)
        drafts.append(encoder.draft(s, _render(spec, s), "late", sent))
        published.append((i, drafts[-1]))

    for draft in rng.sample(drafts, min(len(drafts), _count(spec.redelivery_rate, len(specimens)))):
        later = draft.sent_at_day + rng.uniform(1.0, 360.0) / (24 * 60)
        drafts.append(
            _Draft(
                draft.key,
                draft.value,
                "redelivery",
                later,
                topic=draft.topic,
                canonical=draft.canonical,
            )
        )
    # Malformed messages are broken copies of full panels, so every variant has a count to break.
    sources = [pair for pair in published if specimens[pair[0]].panel == "full"]
    for k in range(_count(spec.malformed_rate, len(specimens)) if sources else 0):
        variant = MALFORMED_VARIANTS[k % len(MALFORMED_VARIANTS)]
        i, source = sources[rng.randrange(len(sources))]
        value, drop_key = _break(variant, _render(spec, specimens[i]), rng)
        later = source.sent_at_day + rng.uniform(1.0, 600.0) / (24 * 3600)
        drafts.append(_Draft(None if drop_key else source.key, value, "malformed", later))
    if spec.context:
        drafts.extend(_context_drafts(spec, patients, specimens, plan.late))

    for seq, draft in enumerate(drafts):
        draft.seq = seq
    drafts.sort(key=lambda d: (d.sent_at_day, d.seq))
    return [
        SimMessage(d.key, d.value, d.kind, round(d.sent_at_day, 6), d.topic, d.canonical)
        for d in drafts
    ]


# --------------------------------------------------------------------------------------------
# Clinical context: chemotherapy doses and temperatures

_AGENTS: Final = ("cyclophosphamide", "docetaxel", "carboplatin", "doxorubicin", "gemcitabine")
_TWICE_DAILY_SHARE: Final = 0.3  # of patients who take their temperature morning and evening
# Cycle days on which temperatures are recorded: while counts fall and bottom out (CLINICAL.md
# section 4 puts the fall at days 7-12 and the nadir at 10-14).
_TEMPERATURE_CYCLE_DAYS: Final = range(4, 18)
_AFEBRILE_C: Final = (36.4, 37.4)
_FEVER_SINGLE_C: Final = (38.5, 39.5)
_FEVER_SUSTAINED_C: Final = (38.0, 38.3)
_FEBRILE_SHARE: Final = 0.075  # of patients with a fever while neutropenic (at least 2)
_FEBRILE_MIN: Final = 2
_FEVER_ANC_BELOW: Final = 0.9  # x10^9/L, measured: well under the 1.0 of the definition


@dataclass(frozen=True, slots=True)
class _Reading:
    patient: _Patient
    day: float
    celsius: float


def _fever_episode(s: _Specimen, sustained: bool, rng: random.Random) -> list[_Reading]:
    """A fever close to draw ``s`` (from 6 h before it to 10 h after), then defervescence.

    Either one reading of 38.5-39.5 C, or two of 38.0-38.3 C more than an hour apart.
    """
    onset = s.day + rng.uniform(-6.0, 10.0) / 24
    if sustained:
        second = onset + rng.uniform(1.25, 2.5) / 24
        fever = [
            (onset, rng.uniform(*_FEVER_SUSTAINED_C)),
            (second, rng.uniform(*_FEVER_SUSTAINED_C)),
        ]
    else:
        fever = [(onset, rng.uniform(*_FEVER_SINGLE_C))]
    after = fever[-1][0] + rng.uniform(4.0, 7.0) / 24
    return [
        _Reading(s.patient, day, round(celsius, 1))
        for day, celsius in [*fever, (after, rng.uniform(37.0, 37.6))]
    ]


def _context_drafts(
    spec: CohortSpec,
    patients: Sequence[_Patient],
    specimens: Sequence[_Specimen],
    late: frozenset[int],
) -> list[_Draft]:
    rng = random.Random(f"{spec.seed}:context")
    drafts: list[_Draft] = []
    doses: dict[int, list[float]] = {p.index: p.dose_times(spec.days) for p in patients}
    treatments: list[tuple[float, _Patient, str]] = []
    for p in patients:
        agent = rng.choice(_AGENTS)
        treatments.extend((dose, p, agent) for dose in doses[p.index])
    treatments.sort(key=lambda t: (t[0], t[1].index))
    for k, (dose, p, agent) in enumerate(treatments, start=1):
        event = {
            "event_id": f"SIM-T-{k:05d}",
            "patient_id": p.patient_id,
            "kind": "chemotherapy",
            "given_at": _timestamp(spec.start, dose, 0),
            "agent": agent,
        }
        sent = dose + rng.uniform(10.0, 60.0) / (24 * 60)
        drafts.append(
            _Draft(p.patient_id.encode(), _encode(event), "result", sent, topic="treatments")
        )

    # A few neutropenic patients run a fever close to their lowest ANC draw (one published on
    # time: a late result is not the latest ANC when it arrives, so it cannot pair with a fever).
    lowest: dict[int, _Specimen] = {}
    for i, s in enumerate(specimens):
        if s.panel != "full" or s.is_baseline or i in late:
            continue
        if s.values["neutrophils"] >= _FEVER_ANC_BELOW:
            continue
        best = lowest.get(s.patient.index)
        if best is None or s.values["neutrophils"] < best.values["neutrophils"]:
            lowest[s.patient.index] = s
    wanted = min(len(lowest), max(_FEBRILE_MIN, round(_FEBRILE_SHARE * len(patients))))
    febrile = sorted(rng.sample(sorted(lowest), wanted))
    readings: list[_Reading] = []
    quiet: dict[int, tuple[float, float]] = {}  # no routine reading inside a fever episode
    for n, index in enumerate(febrile):
        episode = _fever_episode(lowest[index], sustained=n % 2 == 1, rng=rng)
        readings.extend(episode)
        quiet[index] = (min(r.day for r in episode) - 1 / 24, max(r.day for r in episode) + 1 / 24)

    for p in patients:
        local = p.lab.utc_offset_minutes / 60
        hours = (8.0, 20.0) if rng.random() < _TWICE_DAILY_SHARE else (8.0,)
        for dose in doses[p.index]:
            for cycle_day in _TEMPERATURE_CYCLE_DAYS:
                day = math.floor(dose) + cycle_day
                for hour in hours:
                    t = day + (hour + rng.uniform(-1.0, 1.0) - local) / 24
                    if t >= spec.days:
                        continue
                    window = quiet.get(p.index)
                    if window is not None and window[0] <= t <= window[1]:
                        continue
                    readings.append(_Reading(p, t, round(rng.uniform(*_AFEBRILE_C), 1)))
    readings.sort(key=lambda r: (r.day, r.patient.index))
    for k, r in enumerate(readings, start=1):
        vital = {
            "observation_id": f"SIM-V-{k:06d}",
            "patient_id": r.patient.patient_id,
            "measured_at": _timestamp(spec.start, r.day, r.patient.lab.utc_offset_minutes),
            "temperature": r.celsius,
            "unit": "Cel",
        }
        sent = r.day + rng.uniform(2.0, 30.0) / (24 * 60)
        drafts.append(
            _Draft(r.patient.patient_id.encode(), _encode(vital), "result", sent, topic="vitals")
        )
    return drafts


# --------------------------------------------------------------------------------------------
# Reading the feed back


def _problem_with_timestamp(value: Any) -> str | None:
    if not isinstance(value, str):
        return "bad_timestamp"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return "bad_timestamp"
    if moment.tzinfo is None or moment.utcoffset() is None:
        return "naive_timestamp"
    return None


def _problem_with_components(components: Any) -> str | None:
    if not isinstance(components, dict):
        return "bad_components"
    for analyte, component in components.items():
        if analyte not in _ALLOWED_UNITS:
            return "unknown_analyte"
        if not isinstance(component, dict) or not set(component) <= {"value", "unit", "lln"}:
            return "bad_component"
        value = component.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "bad_value"
        if not math.isfinite(value):
            return "bad_value"
        if value < 0:
            return "negative_count" if analyte in _COUNT_ANALYTES else "negative_value"
        if component.get("unit") not in _ALLOWED_UNITS[analyte]:
            return "unknown_unit"
        lln = component.get("lln")
        if lln is not None and (
            isinstance(lln, bool)
            or not isinstance(lln, int | float)
            or not math.isfinite(lln)
            or lln < 0
        ):
            return "bad_lln"
    return None


def check_message(value: bytes) -> str | None:
    """Why ``value`` is not a valid canonical CBC result (a short reason), or None if it is.

    This is the simulator's own reference reading of the format, independent of the monitor's
    parser, so the two can be checked against each other. The reasons for the deliberately
    malformed messages are the names in ``MALFORMED_VARIANTS``.
    """
    if len(value) > MAX_MESSAGE_BYTES:
        return "oversize"
    try:
        obj = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "not_json"
    if not isinstance(obj, dict):
        return "not_object"
    for name in ("result_id", "patient_id"):
        ident = obj.get(name)
        if not isinstance(ident, str) or not ident.strip():
            return f"missing_{name}"
    problem = _problem_with_timestamp(obj.get("collected_at"))
    if problem is not None:
        return problem
    if obj.get("status", "final") not in _STATUSES:
        return "bad_status"
    sex = obj.get("sex")
    if sex is not None and sex not in _SEXES:
        return "bad_sex"
    problem = _problem_with_components(obj.get("components", {}))
    if problem is not None:
        return problem
    context = obj.get("context", {})
    if not isinstance(context, dict):
        return "bad_context"
    if context.get("last_chemo_at") is not None:
        return _problem_with_timestamp(context["last_chemo_at"])
    return None


_STATUS_RANK: Final = {"preliminary": 0, "final": 1, "corrected": 2}


def clean_results(messages: Iterable[SimMessage]) -> list[dict[str, Any]]:
    """The valid results, one per result id, in publication order.

    Each result id is represented by its most authoritative version (corrected over final over
    preliminary; the later of two equal ranks), placed where that version was first published.
    A redelivered stale preliminary therefore never replaces the final. HL7 v2 and FHIR messages
    count by the canonical result they encode (``SimMessage.result_json``); treatments, vitals
    and malformed messages are skipped. A lab message not marked malformed that fails
    ``check_message`` raises ValueError, because that is a bug in the simulator rather than noise
    it meant to make.
    """
    chosen: dict[str, tuple[int, int, dict[str, Any]]] = {}  # id -> (rank, position, result)
    for position, message in enumerate(messages):
        if message.kind == "malformed" or message.topic not in LAB_TOPICS:
            continue
        payload = message.result_json
        problem = "no_canonical_result" if payload is None else check_message(payload)
        if problem is not None or payload is None:
            raise ValueError(f"message {position} ({message.kind}) is invalid: {problem}")
        result: dict[str, Any] = json.loads(payload)
        rank = _STATUS_RANK[result.get("status", "final")]
        previous = chosen.get(result["result_id"])
        if (
            previous is None
            or rank > previous[0]
            or (rank == previous[0] and result != previous[2])
        ):
            chosen[result["result_id"]] = (rank, position, result)
    return [result for _, _, result in sorted(chosen.values(), key=lambda entry: entry[1])]


def summary(messages: Sequence[SimMessage]) -> dict[str, int]:
    """Counts by message kind and by feed (``<topic>_messages``), plus distinct patients and
    distinct valid results."""
    counts: dict[str, int] = {"messages": len(messages)}
    for kind in ("result", "redelivery", "late", "malformed"):
        counts[kind] = sum(1 for m in messages if m.kind == kind)
    for topic in TOPICS:
        counts[f"{topic}_messages"] = sum(1 for m in messages if m.topic == topic)
    results = clean_results(messages)
    counts["patients"] = len({r["patient_id"] for r in results})
    counts["results"] = len(results)
    return counts
