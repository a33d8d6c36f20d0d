"""The simulated laboratories and the simulator's own unit table (CLINICAL.md section 3).

Each ``Lab`` reports in its own units (count units in 10^9/L or per microlitre spellings,
hemoglobin in g/dL, g/L or mmol/L), on its own clock's UTC offset, with or without its own lower
limits of normal (``LAB_LLN``) and percent differentials. Patients are dealt to labs over
``LAB_SLOTS``. The unit table is the simulator's own, so it depends on nothing in the monitor:
it is the independent source of truth the monitor is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "ALLOWED_UNITS",
    "COUNT_ANALYTES",
    "LABS",
    "LAB_LLN",
    "LAB_SLOTS",
    "Lab",
    "in_unit",
]

# Units (CLINICAL.md section 3)

_COUNT_UNITS_G_PER_L: Final = frozenset(
    {"10*9/L", "10^9/L", "10*3/uL", "10^3/uL", "K/uL", "/nL", "G/L", "x10E3/uL", "Thou/mcL"}
)
_COUNT_UNITS_PER_UL: Final = frozenset({"/uL", "/mm3", "cells/uL", "10*6/L"})
_COUNT_UNITS: Final = _COUNT_UNITS_G_PER_L | _COUNT_UNITS_PER_UL
_HGB_PER_G_DL: Final = {"g/dL": 1.0, "g/L": 10.0, "mmol/L": 0.6206}
_RBC_UNITS: Final = frozenset({"10*12/L", "10^12/L", "10*6/uL", "10^6/uL", "M/uL", "x10E6/uL"})
COUNT_ANALYTES: Final = frozenset({"wbc", "neutrophils", "lymphocytes", "platelets"})
ALLOWED_UNITS: Final[dict[str, frozenset[str]]] = {
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


@dataclass(frozen=True, slots=True)
class Lab:
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


LABS: Final = (
    Lab("central", "10*9/L", "10*9/L", "10*9/L", "10*9/L", "g/dL", "10*12/L", 0, False, True),
    Lab("us-reference", "K/uL", "x10E3/uL", "x10E3/uL", "K/uL", "g/dL", "M/uL", -300, True, True),
    Lab("legacy-analyzer", "/uL", "/uL", "cells/uL", "/uL", "g/dL", "10*6/uL", 0, False, False),
    Lab("eu-hospital", "G/L", "G/L", "G/L", "G/L", "g/L", "10*12/L", 60, True, True),
    Lab("nordic", "/nL", "/nL", "/nL", "/nL", "mmol/L", "10*12/L", 60, False, True),
    Lab("community", "10^9/L", "/mm3", "10*6/L", "Thou/mcL", "g/dL", "M/uL", 0, True, False),
    Lab("satellite", "10*3/uL", "10^3/uL", "/uL", "10*3/uL", "g/dL", "10*12/L", 0, False, True),
)
# Patients are dealt to labs round-robin over this table: 3 slots in 10 are labs that send their
# own lower limits, so about 30% of results carry an ``lln``.
LAB_SLOTS: Final = (0, 1, 2, 3, 4, 5, 6, 0, 4, 2)

# Labs' own lower limits (canonical units): deliberately not the monitor's defaults, so a lab
# range that wins can be told apart from the default table.
LAB_LLN: Final[dict[str, dict[str, float]]] = {
    "hemoglobin": {"female": 11.7, "male": 13.2},
    "rbc": {"female": 3.9, "male": 4.3},
    "wbc": {"female": 3.8, "male": 3.8},
    "neutrophils": {"female": 1.5, "male": 1.5},
    "lymphocytes": {"female": 1.0, "male": 1.0},
    "platelets": {"female": 140.0, "male": 140.0},
}


def in_unit(analyte: str, value: float, unit: str) -> float | int:
    """A canonical value expressed and rounded the way a lab reports it in ``unit``."""
    if analyte in COUNT_ANALYTES:
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
