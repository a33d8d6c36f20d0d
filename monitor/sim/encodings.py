"""The simulator's results re-encoded as the lab systems that send HL7 v2 and FHIR would send them.

Both functions take one canonical result (the ``dict`` the simulator renders, the shape
``monitor.clinical.model.CBCResult`` validates) and return the bytes a lab interface would publish:

- ``to_hl7v2``: an ORU^R01 v2.5.1 message, segments separated by CR: MSH, PID (PID-3 the patient
  id as a medical record number, PID-8 F/M/U), PV1 (the ward, when known), one OBR for the
  panel (OBR-3 filler order number = ``result_id``, OBR-7 collection time with its zone offset,
  OBR-25 F/C/P) and one numeric OBX per component (OBX-3 LOINC, OBX-6 unit, OBX-7 reference
  range whose low end is the lab's lower limit, OBX-11 F/C/P, OBX-14 collection time).
- ``to_fhir``: a FHIR R4 DiagnosticReport with contained Observations (one per component,
  LOINC-coded, ``valueQuantity`` in UCUM, ``referenceRange[0].low`` the lab's lower limit), a
  contained Patient carrying the sex (``gender``) and the medical record number, and a contained
  Specimen whose accession number is the ``result_id`` (also the report's ``identifier``).
  ``subject`` is ``Patient/<id>``; each Observation names the contained Patient (``#pat``), so
  the sex travels with it.

Units: HL7 keeps the lab's own spelling except where it holds an HL7 delimiter (``10^9/L``), which
is sent as its UCUM code; FHIR always sends the UCUM code (the lab's spelling goes in
``unit``). Every re-spelling is an equivalent unit (CLINICAL.md section 3), so the canonical
values do not change. Numbers are written in plain decimal notation, so each value reads back
as the same float.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from monitor.adapters.loinc import CBC_PANELS, LOINC
from monitor.clinical.analytes import Analyte
from monitor.clinical.units import from_canonical

__all__ = [
    "FHIR_STATUS",
    "HL7_STATUS",
    "LOINC_OF",
    "UCUM_OF",
    "loinc_code",
    "to_fhir",
    "to_hl7v2",
    "ucum",
]

LOINC_SYSTEM: Final = "http://loinc.org"
UCUM_SYSTEM: Final = "http://unitsofmeasure.org"

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

HL7_STATUS: Final[dict[str, str]] = {"final": "F", "corrected": "C", "preliminary": "P"}
# FHIR R4 Observation.status and DiagnosticReport.status share these codes.
FHIR_STATUS: Final[dict[str, str]] = {
    "final": "final",
    "corrected": "corrected",
    "preliminary": "preliminary",
}
_HL7_SEX: Final = {"female": "F", "male": "M"}

# Upper ends of the reference ranges (canonical units), only to complete OBX-7 / referenceRange:
# the monitor reads the low end. Common adult limits.
_ULN: Final[dict[str, float]] = {
    "hemoglobin": 17.0,
    "hematocrit": 50.0,
    "rbc": 5.9,
    "mcv": 100.0,
    "wbc": 11.0,
    "neutrophils": 7.5,
    "lymphocytes": 4.0,
    "platelets": 400.0,
    "neutrophils_pct": 75.0,
    "bands_pct": 10.0,
    "lymphocytes_pct": 45.0,
}

_SENDING_APP: Final = "SIMLIS"
_SENDING_FACILITY: Final = "SIMLAB"
_RECEIVING_APP: Final = "CBCMON"
_RECEIVING_FACILITY: Final = "ONCOLOGY"
_ASSIGNING_AUTHORITY: Final = "SIMHOSP"
_ACCESSION_SYSTEM: Final = "urn:oid:2.16.840.1.113883.3.9999.1"
_MRN_SYSTEM: Final = "urn:oid:2.16.840.1.113883.3.9999.2"
_FHIR_ID: Final = re.compile(r"[^A-Za-z0-9.\-]")


def ucum(unit: str) -> str:
    """The UCUM code of a lab's unit spelling (the spelling itself if it is not in the table)."""
    return UCUM_OF.get(unit, unit)


def loinc_code(analyte: str, unit: str) -> str:
    """The LOINC code a component is sent under; KeyError for an analyte without one."""
    if analyte == "hemoglobin" and unit == "mmol/L":
        return _HGB_MOLAR_LOINC
    return LOINC_OF[analyte]


def _number(value: float | int) -> str:
    """Plain decimal notation (never an exponent) that reads back as the same float."""
    if isinstance(value, bool):
        raise TypeError("a component value must be a number")
    if isinstance(value, int):
        return str(value)
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _json_number(value: float | int) -> float | int:
    return value if isinstance(value, int) and not isinstance(value, bool) else float(value)


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.utcoffset() is None:
        raise ValueError("a timestamp without a time zone cannot be encoded")
    return moment


def _hl7_time(moment: datetime) -> str:
    """HL7 DTM with the zone offset: YYYYMMDDHHMMSS[.SSSS]+ZZZZ."""
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    text = moment.strftime("%Y%m%d%H%M%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 100:04d}"
    return f"{text}{sign}{hours:02d}{mins:02d}"


_HL7_ESCAPES: Final = (
    ("\\", "\\E\\"),
    ("|", "\\F\\"),
    ("^", "\\S\\"),
    ("&", "\\T\\"),
    ("~", "\\R\\"),
)


def _esc(text: str) -> str:
    """HL7 v2 escaping of the delimiters (escape character first)."""
    for raw, escaped in _HL7_ESCAPES:
        text = text.replace(raw, escaped)
    return text


def _hl7_unit(unit: str) -> str:
    """The lab's spelling, or its UCUM code when the spelling holds an HL7 delimiter."""
    if any(ch in unit for ch in "|^~\\&"):
        return ucum(unit)
    return unit


def _uln(analyte: str, unit: str) -> str | None:
    uln = _ULN.get(analyte)
    if uln is None:
        return None
    try:
        converted = from_canonical(Analyte(analyte), uln, unit)
    except ValueError:
        return None
    return _number(round(converted) if converted >= 100 else round(converted, 2))


def _panel(components: Mapping[str, Any]) -> str:
    return _PANEL_WITH_DIFF if _DIFFERENTIAL & set(components) else _PANEL


def _control_id(result: Mapping[str, Any], sent: datetime | None) -> str:
    digest = hashlib.sha256(json.dumps(result, sort_keys=True, default=str).encode())
    if sent is not None:
        digest.update(sent.isoformat().encode())
    return digest.hexdigest()[:20].upper()


def to_hl7v2(result: Mapping[str, Any], *, sent_at: datetime | None = None) -> bytes:
    """An ORU^R01 v2.5.1 message carrying one canonical result (CR-separated segments).

    ``sent_at`` is the message time (MSH-7) and the report time (OBR-22); by default the
    collection time.
    """
    collected = _moment(result["collected_at"])
    sent = sent_at if sent_at is not None else collected
    status = HL7_STATUS[result.get("status", "final")]
    components: Mapping[str, Mapping[str, Any]] = result.get("components", {})
    context: Mapping[str, Any] = result.get("context") or {}
    observed = _hl7_time(collected)
    panel = _panel(components)
    segments = [
        "|".join(
            [
                "MSH",
                "^~\\&",
                _SENDING_APP,
                _SENDING_FACILITY,
                _RECEIVING_APP,
                _RECEIVING_FACILITY,
                _hl7_time(sent),
                "",
                "ORU^R01^ORU_R01",
                _control_id(result, sent_at),
                "P",
                "2.5.1",
                "",
                "",
                "NE",
                "NE",
            ]
        ),
        "|".join(
            [
                "PID",
                "1",
                "",
                f"{_esc(result['patient_id'])}^^^{_ASSIGNING_AUTHORITY}^MR",
                "",
                "SIMULATED^PATIENT",
                "",
                "",
                _HL7_SEX.get(result.get("sex") or "", "U"),
            ]
        ),
    ]
    if context.get("ward"):
        segments.append(f"PV1|1|O|{_esc(str(context['ward']))}")
    obr = [""] * 26
    obr[0] = "OBR"
    obr[1] = "1"
    obr[3] = _esc(result["result_id"])
    obr[4] = f"{panel}^{_esc(CBC_PANELS[panel])}^LN"
    obr[7] = observed
    obr[22] = _hl7_time(sent)
    obr[24] = "HM"
    obr[25] = status
    segments.append("|".join(obr))
    for i, (analyte, component) in enumerate(components.items(), start=1):
        unit = str(component["unit"])
        code = loinc_code(analyte, unit)
        sent_unit = _hl7_unit(unit)
        system = "UCUM" if ucum(unit) == sent_unit else "L"
        value = component["value"]
        lln = component.get("lln")
        reference = flag = ""
        if lln is not None:
            uln = _uln(analyte, unit)
            reference = f"{_number(lln)}-{uln}" if uln is not None else f">{_number(lln)}"
            flag = "L" if value < lln else "N"
        segments.append(
            "|".join(
                [
                    "OBX",
                    str(i),
                    "NM",
                    f"{code}^{_esc(LOINC[code].name)}^LN",
                    "",
                    _number(value),
                    f"{_esc(sent_unit)}^{_esc(sent_unit)}^{system}",
                    reference,
                    flag,
                    "",
                    "",
                    status,
                    "",
                    "",
                    observed,
                ]
            )
        )
    return ("\r".join(segments) + "\r").encode()


def _fhir_id(text: str) -> str:
    return _FHIR_ID.sub("-", text)[:64] or "result"


def _quantity(value: float | int, unit: str) -> dict[str, Any]:
    return {"value": _json_number(value), "unit": unit, "system": UCUM_SYSTEM, "code": ucum(unit)}


def to_fhir(result: Mapping[str, Any], *, sent_at: datetime | None = None) -> bytes:
    """A FHIR R4 DiagnosticReport (JSON) with one contained Observation per component.

    ``sent_at`` becomes ``issued``; by default the collection time.
    """
    collected = _moment(result["collected_at"])
    status = FHIR_STATUS[result.get("status", "final")]
    components: Mapping[str, Mapping[str, Any]] = result.get("components", {})
    effective = str(result["collected_at"])
    issued = (sent_at if sent_at is not None else collected).isoformat()
    patient_id = str(result["patient_id"])
    result_id = str(result["result_id"])
    laboratory = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "laboratory",
            }
        ]
    }
    contained: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": "pat",
            "identifier": [
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                "code": "MR",
                            }
                        ]
                    },
                    "system": _MRN_SYSTEM,
                    "value": patient_id,
                }
            ],
            "gender": result.get("sex") or "unknown",
        },
        {
            "resourceType": "Specimen",
            "id": "spec",
            "accessionIdentifier": {"system": _ACCESSION_SYSTEM, "value": result_id},
            "type": {
                "coding": [
                    {"system": "http://snomed.info/sct", "code": "119297000", "display": "Blood"}
                ]
            },
        },
    ]
    references: list[dict[str, str]] = []
    for i, (analyte, component) in enumerate(components.items(), start=1):
        unit = str(component["unit"])
        code = loinc_code(analyte, unit)
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "id": f"obs{i}",
            "status": status,
            "category": [laboratory],
            "code": {
                "coding": [{"system": LOINC_SYSTEM, "code": code, "display": LOINC[code].name}]
            },
            "subject": {"reference": "#pat"},
            "effectiveDateTime": effective,
            "valueQuantity": _quantity(component["value"], unit),
        }
        lln = component.get("lln")
        if lln is not None:
            observation["referenceRange"] = [{"low": _quantity(lln, unit)}]
        contained.append(observation)
        references.append({"reference": f"#obs{i}"})
    panel = _panel(components)
    report = {
        "resourceType": "DiagnosticReport",
        "id": _fhir_id(result_id),
        "contained": contained,
        "identifier": [{"system": _ACCESSION_SYSTEM, "value": result_id}],
        "status": status,
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "HM"}]}
        ],
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": panel, "display": CBC_PANELS[panel]}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": effective,
        "issued": issued,
        "specimen": [{"reference": "#spec"}],
        "result": references,
    }
    return json.dumps(report, separators=(",", ":"), ensure_ascii=True).encode()
