"""The cohort's clinical context: chemotherapy doses and temperatures, as drafts of messages.

With ``CohortSpec.context`` the cohort also sends each chemotherapy dose (``treatments``) and
temperatures (``vitals``): once or twice a day in the weeks counts fall, afebrile for most, and a
fever close to a draw with an ANC below 1.0 for a few, so that febrile neutropenia occurs. These
come from a random stream of their own, so the lab results do not depend on them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from monitor.sim.messages import Draft
from monitor.sim.physiology import Patient
from monitor.sim.rendering import encode_json, timestamp
from monitor.sim.specimens import Specimen

__all__ = ["context_drafts"]

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
    patient: Patient
    day: float
    celsius: float


def _fever_episode(s: Specimen, sustained: bool, rng: random.Random) -> list[_Reading]:
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


def context_drafts(
    seed: int,
    days: int,
    start: datetime,
    patients: Sequence[Patient],
    specimens: Sequence[Specimen],
    late: frozenset[int],
) -> list[Draft]:
    """Drafts of every dose and temperature; ``late`` are the specimens published late."""
    rng = random.Random(f"{seed}:context")
    drafts: list[Draft] = []
    doses: dict[int, list[float]] = {p.index: p.dose_times(days) for p in patients}
    treatments: list[tuple[float, Patient, str]] = []
    for p in patients:
        agent = rng.choice(_AGENTS)
        treatments.extend((dose, p, agent) for dose in doses[p.index])
    treatments.sort(key=lambda t: (t[0], t[1].index))
    for k, (dose, p, agent) in enumerate(treatments, start=1):
        event = {
            "event_id": f"SIM-T-{k:05d}",
            "patient_id": p.patient_id,
            "kind": "chemotherapy",
            "given_at": timestamp(start, dose, 0),
            "agent": agent,
        }
        sent = dose + rng.uniform(10.0, 60.0) / (24 * 60)
        drafts.append(
            Draft(p.patient_id.encode(), encode_json(event), "result", sent, topic="treatments")
        )

    # A few neutropenic patients run a fever close to their lowest ANC draw (one published on
    # time: a late result is not the latest ANC when it arrives, so it cannot pair with a fever).
    lowest: dict[int, Specimen] = {}
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
                    if t >= days:
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
            "measured_at": timestamp(start, r.day, r.patient.lab.utc_offset_minutes),
            "temperature": r.celsius,
            "unit": "Cel",
        }
        sent = r.day + rng.uniform(2.0, 30.0) / (24 * 60)
        drafts.append(
            Draft(r.patient.patient_id.encode(), encode_json(vital), "result", sent, topic="vitals")
        )
    return drafts
