"""Unit spellings seen in real lab feeds and their conversion to one canonical unit per analyte.

Counts go to 10^9/L, hemoglobin to g/dL, red cells to 10^12/L, hematocrit to %, MCV to fL.

How a unit string is read (``factor``, cached per distinct (analyte, string)):

1. **The alias table first** (``UNITS``), matched case-insensitively with the micro sign read
   as ``u``. It holds the UCUM codes labs send most and every conventional non-UCUM spelling
   (``K/uL``, ``Thou/uL``, ``x10E3/uL``, ``/mcL``, ``cells/uL``, ``G/L``, ``M/uL``...), each
   with its source. Spellings that are valid UCUM *with another meaning* live here so they
   never reach the parser: in UCUM ``K/uL`` is kelvin per microlitre and ``G/L`` gauss per litre.
2. **Otherwise the string is parsed as UCUM**, case-sensitively as UCUM requires, by the
   ``ucumvert`` library (MIT; pint + lark), and converted to the analyte's canonical UCUM unit.
   The library is imported and its registry built lazily on the first alias miss.
3. **Only a factor the alias table already uses for that analyte is accepted** (counts 1 or
   0.001, hemoglobin 1 or 0.1, hematocrit 1 or 100, others 1). The parser is a recogniser of
   equivalent spellings (``10*3/mm3``, ``{cells}/uL``, ``um3``), never a source of new factors:
   ``10.9/L`` (a typo for ``10*9/L``) is valid UCUM for 90 per litre and is refused.

Anything else raises ``UnknownUnitError``: rejected rather than guessed.

Measured cost (2-core development machine; ``docs/research/ucum-and-plausibility.md``,
re-measured with the machine loaded by other jobs): an alias hit costs 0.4-0.65 us cached and
0.75-1.0 us uncached. The first unit the table does not hold builds the UCUM registry, once per
process: about 1.5 s (4.6 s loaded); the worker builds it before it consumes
(``load_ucum_registry``), since that stall on the event loop put a 2 s tail on result-to-alert
latency (the live demo's p99 went from 64 ms to about 2 s). Each distinct unit string then
costs about 4.5 ms the first time it is seen (median of 7 strings) and 0.4-0.65 us afterwards
(the ``lru_cache``). Real feeds send a few dozen distinct strings, so the parser's cost is paid
a few dozen times per process.

Conversion factors are decimals so that, for example, 800 /uL becomes exactly 0.8 x10^9/L and a
value on a CTCAE boundary stays on it after conversion.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache
from typing import Any

from monitor.clinical.analytes import Analyte

_ONE = Decimal(1)
ONE = _ONE  # the factor of every unit that is the canonical one (``factor(...) is ONE``)
_MILLI = Decimal("0.001")

# Per uL and per 10^9/L spellings of a cell count.
# Sources: CLINICAL.md section 3 (UCUM codes and vendor spellings); the `x10*9/L` display unit
# of the FHIR R4 specification's CBC examples; LabCorp/Quest report spellings (`x10E3/uL`,
# `Thou/uL`, `K/uL`); Canadian community-lab reports (`x10^9/L`, `x10E9/L`, `10E9/L`); the
# `mcL` spelling of microlitre (`/mcL`, `K/mcL`, `cells/mcL`) that US style guides (AMA Manual
# of Style) recommend over `uL`. None of the non-UCUM ones can be parsed as UCUM.
_COUNT_UNITS: dict[str, Decimal] = {
    "10*9/L": _ONE,
    "10^9/L": _ONE,
    "x10*9/L": _ONE,
    "x10^9/L": _ONE,
    "x10E9/L": _ONE,
    "10E9/L": _ONE,
    "10*3/uL": _ONE,
    "10^3/uL": _ONE,
    "x10*3/uL": _ONE,
    "x10^3/uL": _ONE,
    "x10E3/uL": _ONE,
    "10E3/uL": _ONE,
    "x10E3/mcL": _ONE,
    "K/uL": _ONE,
    "K/mcL": _ONE,
    "Thou/uL": _ONE,
    "Thou/mcL": _ONE,
    "/nL": _ONE,
    "G/L": _ONE,
    "/uL": _MILLI,
    "/mcL": _MILLI,
    "/mm3": _MILLI,
    "cells/uL": _MILLI,
    "cells/mcL": _MILLI,
    "cells/mm3": _MILLI,
    "10*6/L": _MILLI,
}

# 1 g/dL = 10 g/L; g/dL = mmol/L / 0.6206 (the monomer basis CTCAE uses; CLINICAL.md section 3).
# `gm/dL` is a common US report spelling (not UCUM).
HGB_MMOL_PER_G_DL = Decimal("0.6206")
_HEMOGLOBIN_UNITS: dict[str, Decimal] = {
    "g/dL": _ONE,
    "gm/dL": _ONE,
    "g/L": Decimal("0.1"),
    "mmol/L": _ONE / HGB_MMOL_PER_G_DL,
}

# 10^12/L = 10^6/uL = million per uL (CLINICAL.md section 3); the x10E6, x10^12, `Mil/uL` and
# `M/mcL` spellings as the count spellings above.
_RBC_UNITS: dict[str, Decimal] = {
    "10*12/L": _ONE,
    "10^12/L": _ONE,
    "x10*12/L": _ONE,
    "x10^12/L": _ONE,
    "x10E12/L": _ONE,
    "10E12/L": _ONE,
    "10*6/uL": _ONE,
    "10^6/uL": _ONE,
    "x10*6/uL": _ONE,
    "x10^6/uL": _ONE,
    "x10E6/uL": _ONE,
    "10E6/uL": _ONE,
    "x10E6/mcL": _ONE,
    "M/uL": _ONE,
    "M/mcL": _ONE,
    "Mil/uL": _ONE,
    "T/L": _ONE,  # SI tera per litre, as European reports write it (in UCUM, T is tesla)
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


# The canonical unit of each analyte as UCUM, and the factors a UCUM parse may give: those the
# alias table above already uses for that analyte (reviewed), nothing else.
_UCUM_CANONICAL: dict[Analyte, str] = {
    analyte: unit.replace("^", "*") for analyte, unit in CANONICAL_UNIT.items()
}
_ALLOWED_FACTORS: dict[Analyte, frozenset[Decimal]] = {
    analyte: frozenset(table.values()) - {_ONE / HGB_MMOL_PER_G_DL}
    for analyte, table in UNITS.items()
}

_registry_lock = threading.Lock()
_registry: Any = None


def load_ucum_registry() -> None:
    """Build the UCUM registry now (about 1.5 s) rather than at the first unit the alias table
    does not hold: a long-running worker calls this before it consumes."""
    _ucum_registry()


def _ucum_registry() -> Any:
    """The ucumvert registry, built on first use (about 1.5 s: import and grammar build)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            from ucumvert import PintUcumRegistry  # type: ignore[import-untyped]

            _registry = PintUcumRegistry()
        return _registry


def _ucum_factor(analyte: Analyte, unit: str) -> Decimal | None:
    """The factor of a valid UCUM ``unit`` to the analyte's canonical unit, or None."""
    text = unit.strip().replace("\u00b5", "u").replace("\u03bc", "u")
    if not text or len(text) > 32:
        return None
    registry = _ucum_registry()
    try:
        ratio = registry.from_ucum(text) / registry.from_ucum(_UCUM_CANONICAL[analyte])
        magnitude = float(ratio.to("dimensionless").magnitude)
    except Exception:  # lark parse errors, pint dimensionality errors: not a unit for this
        return None
    found = Decimal(f"{magnitude:.12g}")  # float noise: /mm3 gives 0.0010000000000000002
    for allowed in _ALLOWED_FACTORS[analyte]:
        if allowed == found:
            return allowed  # the table's own Decimal (to_canonical skips the product for 1)
    return None


@lru_cache(maxsize=1024)
def factor(analyte: Analyte, unit: str) -> Decimal:
    """Multiplier from ``unit`` to the analyte's canonical unit (alias table, else a UCUM parse
    restricted to the table's factors; see the module docstring and its measured cost).

    Raises UnknownUnitError (a ValueError naming the analyte, never the unit text) when the
    unit is not known for the analyte, ValueError for an unknown analyte.
    """
    try:
        table = _INDEX[analyte]
    except KeyError:
        raise ValueError(f"unknown analyte {analyte!r}") from None
    known = table.get(_lookup_key(unit))
    if known is None:
        known = _ucum_factor(analyte, unit)
    if known is None:
        raise UnknownUnitError(f"unknown unit for {analyte}")
    seen = _SEEN[analyte]
    if len(seen) < _SEEN_MAX:
        seen[unit] = known
    return known


@lru_cache(maxsize=1024)
def is_known_unit(analyte: Analyte, unit: str) -> bool:
    """Whether ``factor`` knows ``unit`` for ``analyte`` (cached like it, refusals included:
    validation asks once per component, and an unknown string would be parsed again)."""
    try:
        factor(analyte, unit)
    except ValueError:
        return False
    return True


# The factors ``factor`` found, by analyte then unit string as sent: a lookup here costs a
# fifth of a call to the ``lru_cache`` (whose key is a tuple with an enum in it). Only factors
# ``factor`` returned are stored, keyed on its full input, so an entry is never stale; at most
# ``_SEEN_MAX`` strings per analyte, beyond which ``factor``'s own cache answers.
_SEEN_MAX = 1024
_SEEN: dict[Analyte, dict[str, Decimal]] = {analyte: {} for analyte in UNITS}
# Read-only outside this module: a unit string in FACTORS_FOUND[analyte] is a known unit.
FACTORS_FOUND: Mapping[Analyte, Mapping[str, Decimal]] = _SEEN


def _found_factor(analyte: Analyte, unit: str) -> Decimal:
    """``factor(analyte, unit)``, from ``_SEEN`` when it is there."""
    seen = _SEEN.get(analyte)
    f = seen.get(unit) if seen is not None else None
    return f if f is not None else factor(analyte, unit)


def to_canonical(analyte: Analyte, value: float, unit: str) -> float:
    """Convert ``value`` in ``unit`` to the analyte's canonical unit, rounded correctly."""
    f = _found_factor(analyte, unit)
    if f is _ONE:
        return float(value)
    if value == 0:
        return float(Decimal(repr(float(value))) * f)  # keeps the sign of a zero
    return _scaled(f, float(value))


def from_canonical(analyte: Analyte, value: float, unit: str) -> float:
    """Convert a canonical value back to ``unit`` (used to state thresholds in a lab's unit)."""
    f = _found_factor(analyte, unit)
    if f is _ONE:
        return float(value)
    if value == 0:
        return float(Decimal(repr(float(value))) / f)  # keeps the sign of a zero
    return _divided(f, float(value))


@lru_cache(maxsize=8192)
def _scaled(f: Decimal, value: float) -> float:
    """``value`` times ``f`` in decimal (a lab sends the same few values again and again)."""
    return float(Decimal(repr(value)) * f)


@lru_cache(maxsize=8192)
def _divided(f: Decimal, value: float) -> float:
    return float(Decimal(repr(value)) / f)
