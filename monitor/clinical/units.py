"""Unit aliases seen in real lab feeds and their conversion to one canonical unit per analyte.

Counts go to 10^9/L, hemoglobin to g/dL, red cells to 10^12/L, hematocrit to %, MCV to fL.
An alias not listed here is rejected rather than guessed. Source: CLINICAL.md section 3
(UCUM spellings such as ``10*9/L`` and the vendor spellings labs actually send).

Conversion factors are decimals so that, for example, 800 /uL becomes exactly 0.8 x10^9/L and a
value on a CTCAE boundary stays on it after conversion.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from monitor.clinical.analytes import Analyte

_ONE = Decimal(1)
_MILLI = Decimal("0.001")

# Per uL and per 10^9/L spellings of a cell count (CLINICAL.md section 3).
_COUNT_UNITS: dict[str, Decimal] = {
    "10*9/L": _ONE,
    "10^9/L": _ONE,
    "10*3/uL": _ONE,
    "10^3/uL": _ONE,
    "K/uL": _ONE,
    "/nL": _ONE,
    "G/L": _ONE,
    "x10E3/uL": _ONE,
    "Thou/mcL": _ONE,
    "/uL": _MILLI,
    "/mm3": _MILLI,
    "cells/uL": _MILLI,
    "10*6/L": _MILLI,
}

# 1 g/dL = 10 g/L; g/dL = mmol/L / 0.6206 (the monomer basis CTCAE uses; CLINICAL.md section 3).
HGB_MMOL_PER_G_DL = Decimal("0.6206")
_HEMOGLOBIN_UNITS: dict[str, Decimal] = {
    "g/dL": _ONE,
    "g/L": Decimal("0.1"),
    "mmol/L": _ONE / HGB_MMOL_PER_G_DL,
}

_RBC_UNITS: dict[str, Decimal] = {
    "10*12/L": _ONE,
    "10^12/L": _ONE,
    "10*6/uL": _ONE,
    "10^6/uL": _ONE,
    "M/uL": _ONE,
    "x10E6/uL": _ONE,
}

_HEMATOCRIT_UNITS: dict[str, Decimal] = {"%": _ONE, "L/L": Decimal(100)}
_PERCENT_UNITS: dict[str, Decimal] = {"%": _ONE}
_MCV_UNITS: dict[str, Decimal] = {"fL": _ONE}

UNITS: dict[Analyte, dict[str, Decimal]] = {
    Analyte.HEMOGLOBIN: _HEMOGLOBIN_UNITS,
    Analyte.HEMATOCRIT: _HEMATOCRIT_UNITS,
    Analyte.RBC: _RBC_UNITS,
    Analyte.MCV: _MCV_UNITS,
    Analyte.WBC: _COUNT_UNITS,
    Analyte.NEUTROPHILS: _COUNT_UNITS,
    Analyte.LYMPHOCYTES: _COUNT_UNITS,
    Analyte.PLATELETS: _COUNT_UNITS,
    Analyte.NEUTROPHILS_PCT: _PERCENT_UNITS,
    Analyte.BANDS_PCT: _PERCENT_UNITS,
    Analyte.LYMPHOCYTES_PCT: _PERCENT_UNITS,
}

CANONICAL_UNIT: dict[Analyte, str] = {
    Analyte.HEMOGLOBIN: "g/dL",
    Analyte.HEMATOCRIT: "%",
    Analyte.RBC: "10^12/L",
    Analyte.MCV: "fL",
    Analyte.WBC: "10^9/L",
    Analyte.NEUTROPHILS: "10^9/L",
    Analyte.LYMPHOCYTES: "10^9/L",
    Analyte.PLATELETS: "10^9/L",
    Analyte.NEUTROPHILS_PCT: "%",
    Analyte.BANDS_PCT: "%",
    Analyte.LYMPHOCYTES_PCT: "%",
}


class UnknownUnitError(ValueError):
    """A unit the monitor does not know for that analyte. The message never repeats the value."""


def _lookup_key(unit: str) -> str:
    # Case and the micro sign vary between feeds; the spelling otherwise has to be a known one.
    return unit.strip().replace("\u00b5", "u").replace("\u03bc", "u").lower()


_INDEX: dict[Analyte, dict[str, Decimal]] = {
    analyte: {_lookup_key(alias): factor for alias, factor in table.items()}
    for analyte, table in UNITS.items()
}


@lru_cache(maxsize=1024)
def factor(analyte: Analyte, unit: str) -> Decimal:
    """Multiplier from ``unit`` to the analyte's canonical unit; UnknownUnitError if unknown."""
    try:
        table = _INDEX[analyte]
    except KeyError:
        raise ValueError(f"unknown analyte {analyte!r}") from None
    try:
        return table[_lookup_key(unit)]
    except KeyError:
        raise UnknownUnitError(f"unknown unit for {analyte}") from None


def is_known_unit(analyte: Analyte, unit: str) -> bool:
    try:
        factor(analyte, unit)
    except ValueError:
        return False
    return True


def to_canonical(analyte: Analyte, value: float, unit: str) -> float:
    """Convert ``value`` in ``unit`` to the analyte's canonical unit, rounded correctly."""
    f = factor(analyte, unit)
    if f is _ONE:
        return float(value)
    return float(Decimal(repr(float(value))) * f)


def from_canonical(analyte: Analyte, value: float, unit: str) -> float:
    """Convert a canonical value back to ``unit`` (used to state thresholds in a lab's unit)."""
    f = factor(analyte, unit)
    if f is _ONE:
        return float(value)
    return float(Decimal(repr(float(value))) / f)
