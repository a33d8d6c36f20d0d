"""The simulator's results re-encoded as a FHIR R4 lab interface would send them.

``to_fhir`` takes one canonical result (the ``dict`` the simulator renders) and returns a FHIR
R4 DiagnosticReport with contained Observations (one per component, LOINC-coded,
``valueQuantity`` in UCUM, ``referenceRange[0].low`` the lab's lower limit), a contained Patient
carrying the sex (``gender``) and the medical record number, and a contained Specimen whose
accession number is the ``result_id`` (also the report's ``identifier``). ``subject`` is
``Patient/<id>``; each Observation names the contained Patient (``#pat``), so the sex travels
with it. Codes, units and numbers as in ``monitor.sim.encodings``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from monitor.adapters.loinc import CBC_PANELS, LOINC
from monitor.sim.encodings import aware_moment, loinc_code, panel_code, ucum

__all__ = ["FHIR_STATUS", "to_fhir"]

LOINC_SYSTEM: Final = "http://loinc.org"
UCUM_SYSTEM: Final = "http://unitsofmeasure.org"
# FHIR R4 Observation.status and DiagnosticReport.status share these codes.
FHIR_STATUS: Final[dict[str, str]] = {
    "final": "final",
    "corrected": "corrected",
    "preliminary": "preliminary",
}
_ACCESSION_SYSTEM: Final = "urn:oid:2.16.840.1.113883.3.9999.1"
_MRN_SYSTEM: Final = "urn:oid:2.16.840.1.113883.3.9999.2"
_FHIR_ID: Final = re.compile(r"[^A-Za-z0-9.\-]")


def _json_number(value: float | int) -> float | int:
    return value if isinstance(value, int) and not isinstance(value, bool) else float(value)


def _fhir_id(text: str) -> str:
    return _FHIR_ID.sub("-", text)[:64] or "result"


def _quantity(value: float | int, unit: str) -> dict[str, Any]:
    return {"value": _json_number(value), "unit": unit, "system": UCUM_SYSTEM, "code": ucum(unit)}


def to_fhir(result: Mapping[str, Any], *, sent_at: datetime | None = None) -> bytes:
    """A FHIR R4 DiagnosticReport (JSON) with one contained Observation per component.

    ``sent_at`` becomes ``issued``; by default the collection time.
    """
    collected = aware_moment(result["collected_at"])
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
    panel = panel_code(components)
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
