"""What the simulator's HL7 v2 and FHIR encodings share: codes, units and how numbers are written.

The simulator re-encodes each canonical result (the ``dict`` it renders, the shape
``monitor.clinical.model.CBCResult`` validates) as the lab systems that send HL7 v2 and FHIR
would: ``monitor.sim.hl7v2_encoding.to_hl7v2`` (an ORU^R01 v2.5.1 message) and
``monitor.sim.fhir_encoding.to_fhir`` (a FHIR R4 DiagnosticReport). Both send each component
under the LOINC code of ``loinc_code``, the panel under ``panel_code``, and numbers in plain
decimal notation (``plain_number``), so each value reads back as the same float.

Units: HL7 keeps the lab's own spelling except where it holds an HL7 delimiter (``10^9/L``), which
is sent as its UCUM code; FHIR always sends the UCUM code (the lab's spelling goes in
``unit``). Every re-spelling is an equivalent unit (CLINICAL.md section 3), so the canonical
values do not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

__all__ = [
    "LOINC_OF",
    "UCUM_OF",
    "aware_moment",
    "loinc_code",
    "panel_code",
    "plain_number",
    "ucum",
]

# The LOINC code each component is sent under (CLINICAL.md section 3; codes from
# monitor.adapters.loinc). Hemoglobin in mmol/L has its own code (substance concentration).
LOINC_OF: Final[dict[str, str]] = {
    "wbc": "6690-2",
    "rbc": "789-8",
    "hemoglobin": "718-7",
    "hematocrit": "4544-3",
    "mcv": "787-2",
    "platelets": "777-3",
    "neutrophils": "751-8",
    "neutrophils_pct": "770-8",
    "bands_pct": "764-1",
    "lymphocytes": "731-0",
    "lymphocytes_pct": "26478-8",
}
_HGB_MOLAR_LOINC: Final = "59260-0"
_PANEL_WITH_DIFF: Final = "57021-8"
_PANEL: Final = "58410-2"
_DIFFERENTIAL: Final = frozenset(
    {"neutrophils", "neutrophils_pct", "bands_pct", "lymphocytes", "lymphocytes_pct"}
)

# Lab spellings (CLINICAL.md section 3) -> the UCUM code of the same unit.
UCUM_OF: Final[dict[str, str]] = {
    "10*9/L": "10*9/L",
    "10^9/L": "10*9/L",
    "G/L": "10*9/L",
    "10*3/uL": "10*3/uL",
    "10^3/uL": "10*3/uL",
    "K/uL": "10*3/uL",
    "x10E3/uL": "10*3/uL",
    "Thou/mcL": "10*3/uL",
    "/nL": "/nL",
    "/uL": "/uL",
    "cells/uL": "/uL",
    "/mm3": "/mm3",
    "10*6/L": "10*6/L",
    "10*12/L": "10*12/L",
    "10^12/L": "10*12/L",
    "10*6/uL": "10*6/uL",
    "10^6/uL": "10*6/uL",
    "M/uL": "10*6/uL",
    "x10E6/uL": "10*6/uL",
    "g/dL": "g/dL",
    "g/L": "g/L",
    "mmol/L": "mmol/L",
    "%": "%",
    "L/L": "L/L",
    "fL": "fL",
}


def ucum(unit: str) -> str:
    """The UCUM code of a lab's unit spelling (the spelling itself if it is not in the table)."""
    return UCUM_OF.get(unit, unit)


def loinc_code(analyte: str, unit: str) -> str:
    """The LOINC code a component is sent under; KeyError for an analyte without one."""
    if analyte == "hemoglobin" and unit == "mmol/L":
        return _HGB_MOLAR_LOINC
    return LOINC_OF[analyte]


def plain_number(value: float | int) -> str:
    """Plain decimal notation (never an exponent) that reads back as the same float."""
    if isinstance(value, bool):
        raise TypeError("a component value must be a number")
    if isinstance(value, int):
        return str(value)
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def aware_moment(text: str) -> datetime:
    """An ISO 8601 timestamp; ValueError when it carries no time zone."""
    moment = datetime.fromisoformat(text)
    if moment.utcoffset() is None:
        raise ValueError("a timestamp without a time zone cannot be encoded")
    return moment


def panel_code(components: Mapping[str, Any]) -> str:
    """The LOINC panel a result is sent under: with differential when it carries one."""
    return _PANEL_WITH_DIFF if _DIFFERENTIAL & set(components) else _PANEL
