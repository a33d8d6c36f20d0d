"""A patient's compact summary for a ward's nadir watch list (pure).

The worker that owns a patient builds this after each change of the patient's state and
publishes it keyed by patient on a compacted topic; every dashboard folds that topic (as it folds
the alert topic) into the watch list. It carries no more patient data than an alert already
does: the patient id, ward, the last chemotherapy dose, the latest ANC, platelets and hemoglobin
with their grades and collection times, the last fever and the open episodes.

Where a patient is in the cycle is decided from the dose time by whoever reads the summary, at
the moment of reading, so a patient enters and leaves the window as the days pass, with no new
result needed. The nadir window itself (days 7-14 by default, ``DetectorSettings``) follows
CLINICAL.md s.4: counts start falling about 7-12 days after a dose, the nadir is around days
10-14.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from monitor.clinical.alert import ZonedTime
from monitor.clinical.analytes import Analyte, Sex
from monitor.clinical.context import (
    FEVER_SINGLE_ABOVE_C,
    FEVER_SUSTAINED_AT_LEAST_C,
    FEVER_SUSTAINED_SECONDS,
)
from monitor.clinical.evaluation import DAY_S, reading_grade
from monitor.clinical.grading import CTCAE, CtcaeVersion
from monitor.clinical.history import PatientState
from monitor.clinical.units import CANONICAL_UNIT
from monitor.clinical.variation import NoiseModel, relative_change

Direction = Literal["falling", "rising", "stable"]
Phase = Literal["approaching", "nadir"]

# The counts a ward watches through the nadir, in the order shown.
WATCHED: tuple[Analyte, ...] = (Analyte.NEUTROPHILS, Analyte.PLATELETS, Analyte.HEMOGLOBIN)

# A change smaller than the reference change value is noise, "stable" (CLINICAL.md s.6): the
# same cited CVi/CVa table and one-sided Z as the detector's hysteresis (monitor.clinical.
# variation: log-normal RCV for the counts, symmetric for hemoglobin).
DIRECTION_NOISE = NoiseModel()


class LatestCount(BaseModel):
    """The latest reported (non-preliminary) value of one watched analyte."""

    model_config = ConfigDict(frozen=True)

    value: float  # canonical unit
    unit: str
    grade: int | None  # CTCAE, None when no lower limit is known and the value is not low
    collected_at: ZonedTime
    previous: float | None  # the value before it, canonical unit
    direction: Direction | None  # None with no previous value


class OpenEpisodeRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    condition: str
    grade: int
    dedup_key: str


class Fever(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: ZonedTime  # the reading that made it a fever
    celsius: float  # the highest reading of that fever


class PatientSummary(BaseModel):
    """The value published on the summaries topic (key: the patient id, UTF-8)."""

    model_config = ConfigDict(frozen=True)

    watch_id: str
    patient_id: str
    ward: str | None
    chemo_at: ZonedTime  # the last chemotherapy dose
    counts: dict[str, LatestCount]  # by analyte name (``Analyte`` value)
    fever: Fever | None
    episodes: list[OpenEpisodeRef]
    updated_at: ZonedTime


def make_watch_id(patient_id: str, chemo_at: float) -> str:
    """Names a patient's watch-list row in URLs: an unkeyed hash of the id and the dose time,
    like an alert's ``dedup_key`` (stable through one cycle, new with the next dose)."""
    digest = hashlib.blake2b(f"watch\x1f{patient_id}\x1f{chemo_at!r}".encode(), digest_size=16)
    return digest.hexdigest()


def last_chemo_at(state: PatientState) -> float | None:
    """The latest chemotherapy dose known (from the treatments feed or results' context)."""
    known = [at for at, kind, _ in state.doses if kind == "chemotherapy"]
    if state.last_chemo_at is not None:
        known.append(state.last_chemo_at)
    return max(known) if known else None


def days_since(chemo_at: datetime, now: datetime) -> int:
    """Whole days from the dose to ``now`` (day 0 is the day of the dose; negative before)."""
    return math.floor((now - chemo_at).total_seconds() / DAY_S)


def phase_of(days: int, window: tuple[int, int], lead_days: int) -> Phase | None:
    """``nadir`` inside the window (days first-last), ``approaching`` in the ``lead_days``
    before it, else None (not watched)."""
    first, last = window
    if first <= days <= last:
        return "nadir"
    if first - lead_days <= days < first:
        return "approaching"
    return None


def direction(
    analyte: Analyte, previous: float, latest: float, noise: NoiseModel = DIRECTION_NOISE
) -> Direction:
    """``stable`` within the analyte's reference change value (``monitor.clinical.variation``,
    values clamped to its floor) of the previous value, else ``falling`` or ``rising``; values
    in the same (canonical) unit. An analyte without variation figures: any change is one."""
    limits = noise.limits(analyte.value)
    if limits is None:
        return "stable" if latest == previous else ("rising" if latest > previous else "falling")
    variation, rcv = limits
    change = relative_change(variation, previous, latest)
    if rcv.down < change < rcv.up:
        return "stable"
    return "falling" if change < 0 else "rising"


def last_fever(readings: list[tuple[float, float, str]]) -> tuple[float, float] | None:
    """(time, highest Celsius) of the latest fever among (time, Celsius, id) readings sorted by
    time, or None. Fever as ``context.has_fever`` (CTCAE v5.0 febrile neutropenia, CLINICAL.md
    s.2): one reading above 38.3 C, or readings of at least 38.0 C sustained over an hour."""
    found: tuple[float, float] | None = None
    run_start: float | None = None
    run_max = 0.0
    for at, celsius, _ in readings:
        if celsius >= FEVER_SUSTAINED_AT_LEAST_C:
            if run_start is None:
                run_start, run_max = at, celsius
            run_max = max(run_max, celsius)
            if celsius > FEVER_SINGLE_ABOVE_C or at - run_start > FEVER_SUSTAINED_SECONDS:
                found = (at, run_max)
        else:
            run_start = None
    return found


def patient_summary(
    state: PatientState,
    patient_id: str,
    now: datetime,
    *,
    window: tuple[int, int],
    ctcae_version: CtcaeVersion,
    default_lln: Mapping[Analyte, Mapping[Sex, float]],
    noise: NoiseModel = DIRECTION_NOISE,
) -> PatientSummary | None:
    """The summary to publish for ``state``, or None when the patient is not (or no longer)
    one to watch: no chemotherapy dose known, or the last dose more than ``window[1]`` days
    before ``now`` (the caller then publishes a tombstone). Grades use the detector's lower
    limits (patient, lab, default by sex) and the configured CTCAE version; the direction of a
    change uses ``noise``, the detector's RCV table (``monitor.clinical.variation``)."""
    dose = last_chemo_at(state)
    if dose is None:
        return None
    chemo_at = datetime.fromtimestamp(dose, UTC)
    if days_since(chemo_at, now) > window[1]:
        return None
    counts = {
        a.value: c for a in WATCHED if (c := _latest(state, a, ctcae_version, default_lln, noise))
    }
    fever = last_fever(state.temperatures)
    return PatientSummary(
        watch_id=make_watch_id(patient_id, dose),
        patient_id=patient_id,
        ward=state.ward,
        chemo_at=chemo_at,
        counts=counts,
        fever=(
            Fever(at=datetime.fromtimestamp(fever[0], UTC), celsius=fever[1])
            if fever is not None
            else None
        ),
        episodes=[
            OpenEpisodeRef(condition=c, grade=e.grade, dedup_key=e.dedup_key)
            for c, e in sorted(state.open_episodes().items())
        ],
        updated_at=now,
    )


def _latest(
    state: PatientState,
    analyte: Analyte,
    version: CtcaeVersion,
    default_lln: Mapping[Analyte, Mapping[Sex, float]],
    noise: NoiseModel,
) -> LatestCount | None:
    values = [(e, e.readings[analyte]) for e in state.history if analyte in e.readings]
    values = [(e, r) for e, r in values if e.alertable]
    if not values:
        return None
    entry, reading = values[-1]
    previous = values[-2][1].value if len(values) > 1 else None
    grade = None
    scale = CTCAE[version].get(analyte)
    if scale is not None:
        grade, _, _ = reading_grade(scale, state, entry, analyte, reading, default_lln)
    return LatestCount(
        value=reading.value,
        unit=CANONICAL_UNIT[analyte],
        grade=grade,
        collected_at=datetime.fromtimestamp(entry.collected_at, UTC),
        previous=previous,
        direction=(
            direction(analyte, previous, reading.value, noise) if previous is not None else None
        ),
    )
