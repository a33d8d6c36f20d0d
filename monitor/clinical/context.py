"""Clinical context from other feeds: treatments given and temperatures measured.

Canonical JSON, one event per message, keyed by patient like the results:

    {"event_id": "ADM-1", "patient_id": "MRN-0042", "kind": "chemotherapy",
     "given_at": "2026-11-10T09:00:00Z", "agent": "cyclophosphamide"}
    {"observation_id": "VS-1", "patient_id": "MRN-0042",
     "measured_at": "2026-11-20T22:40:00+01:00", "temperature": 38.6, "unit": "Cel"}
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitor.clinical.model import EventTime, Identifier

TreatmentKind = Literal["chemotherapy", "gcsf", "rbc_transfusion", "platelet_transfusion"]

# Febrile neutropenia, CTCAE v5.0 (grade 3): ANC < 1.0 x10^9/L and a single temperature
# > 38.3 C (101 F) or a sustained temperature >= 38 C (100.4 F) for more than one hour.
# Source: CLINICAL.md section 2; "close in time" is the detector's febrile_window_hours.
FEBRILE_ANC_BELOW = 1.0  # x10^9/L
FEVER_SINGLE_ABOVE_C = 38.3
FEVER_SUSTAINED_AT_LEAST_C = 38.0
FEVER_SUSTAINED_SECONDS = 3600.0
FEBRILE_NEUTROPENIA_GRADE = 3

# A temperature outside this range is a data error (a unit mix-up), not a fever.
_PLAUSIBLE_C = (25.0, 45.0)

_FAHRENHEIT = frozenset({"[degF]", "degF", "F"})


class Treatment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: Identifier
    patient_id: Identifier
    kind: TreatmentKind
    given_at: EventTime
    agent: str | None = Field(default=None, max_length=64)


class VitalSign(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    observation_id: Identifier
    patient_id: Identifier
    measured_at: EventTime
    temperature: float = Field(allow_inf_nan=False)
    unit: Literal["Cel", "C", "degC", "[degF]", "degF", "F"] = "Cel"

    @property
    def celsius(self) -> float:
        if self.unit in _FAHRENHEIT:
            return float((Decimal(repr(self.temperature)) - 32) * 5 / 9)
        return self.temperature

    @model_validator(mode="after")
    def _plausible(self) -> VitalSign:
        low, high = _PLAUSIBLE_C
        if not low <= self.celsius <= high:
            raise ValueError("temperature outside the plausible range for a body temperature")
        return self


def has_fever(readings: list[tuple[float, float]]) -> float | None:
    """The highest temperature of a fever among (time, Celsius) readings sorted by time, or None.

    Fever: one reading above 38.3 C, or readings of at least 38.0 C sustained for more than an
    hour (consecutive readings, none below 38.0 C in between, spanning more than an hour).
    """
    run_start: float | None = None
    run_max = 0.0
    for at, celsius in readings:
        if celsius > FEVER_SINGLE_ABOVE_C:
            return max(c for _, c in readings)
        if celsius >= FEVER_SUSTAINED_AT_LEAST_C:
            if run_start is None:
                run_start, run_max = at, celsius
            run_max = max(run_max, celsius)
            if at - run_start > FEVER_SUSTAINED_SECONDS:
                return run_max
        else:
            run_start = None
    return None
