"""Temperatures for the vitals feed: canonical JSON, or a FHIR R4 body-temperature Observation.

FHIR: ``code`` LOINC 8310-5 (Body temperature), ``valueQuantity`` in UCUM ``Cel`` or
``[degF]``, ``effectiveDateTime`` (with a zone) or ``effectivePeriod.start``, ``subject``
``Patient/<id>``, and ``id`` or ``identifier[0].value`` as the observation id.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from monitor.adapters.errors import AdapterError
from monitor.clinical.context import VitalSign
from monitor.clinical.model import describe_validation_error

BODY_TEMPERATURE_LOINC = "8310-5"
_USABLE_STATUS = frozenset({"final", "amended", "corrected", "preliminary"})


def parse_vital(raw: bytes) -> VitalSign:
    """A temperature from canonical JSON or FHIR; ValidationError or AdapterError if unusable."""
    stripped = raw.lstrip()
    if stripped.startswith(b"{") and b'"resourceType"' in raw:
        return vital_from_fhir(raw)
    return VitalSign.model_validate_json(raw)


def vital_from_fhir(raw: bytes) -> VitalSign:
    try:
        resource = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise AdapterError("not JSON") from None
    if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
        raise AdapterError("resourceType: a vital sign must be an Observation")
    codes = {
        c.get("code")
        for c in _dicts(_dict(resource.get("code")).get("coding"))
        if c.get("system") == "http://loinc.org"
    }
    if BODY_TEMPERATURE_LOINC not in codes:
        raise AdapterError("code: not a body temperature (LOINC 8310-5)")
    if resource.get("status") not in _USABLE_STATUS:
        raise AdapterError("status: not a usable observation status")
    quantity = _dict(resource.get("valueQuantity"))
    subject = _dict(resource.get("subject")).get("reference", "")
    identifiers = _dicts(resource.get("identifier"))
    body: dict[str, Any] = {
        "observation_id": resource.get("id")
        or (identifiers[0].get("value") if identifiers else None),
        "patient_id": subject.removeprefix("Patient/") if isinstance(subject, str) else None,
        "measured_at": resource.get("effectiveDateTime")
        or _dict(resource.get("effectivePeriod")).get("start"),
        "temperature": quantity.get("value"),
        "unit": quantity.get("code") or quantity.get("unit"),
    }
    try:
        return VitalSign.model_validate(body)
    except ValidationError as exc:
        fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
        detail = describe_validation_error(exc)  # names fields, never values
        raise AdapterError(f"Observation lacks a usable {fields or 'value'} ({detail})") from None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
