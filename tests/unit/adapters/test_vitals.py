"""Temperatures from canonical JSON and from FHIR body-temperature Observations."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from monitor.adapters.errors import AdapterError
from monitor.adapters.vitals import parse_vital

SECRET = "MRN-SECRET-4471"


def fhir_temperature(**changes: Any) -> bytes:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "temp-1",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {"system": "http://loinc.org", "code": "8310-5", "display": "Body temperature"}
            ]
        },
        "subject": {"reference": f"Patient/{SECRET}"},
        "effectiveDateTime": "2026-11-20T22:40:00+01:00",
        "valueQuantity": {
            "value": 101.5,
            "unit": "degF",
            "system": "http://unitsofmeasure.org",
            "code": "[degF]",
        },
    }
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def test_canonical_json() -> None:
    vital = parse_vital(
        b'{"observation_id": "v1", "patient_id": "P-1", '
        b'"measured_at": "2026-11-20T08:00:00Z", "temperature": 38.6, "unit": "Cel"}'
    )
    assert (vital.observation_id, vital.celsius) == ("v1", 38.6)


def test_fhir_body_temperature_in_fahrenheit() -> None:
    vital = parse_vital(fhir_temperature())
    assert vital.patient_id == SECRET
    assert vital.observation_id == "temp-1"
    assert vital.celsius == pytest.approx(38.61, abs=0.01)
    assert vital.measured_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("changes", "mentions"),
    [
        ({"code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}, "8310-5"),
        ({"status": "entered-in-error"}, "status"),
        ({"effectiveDateTime": "2026-11-20"}, "measured_at"),
        ({"subject": None}, "patient_id"),
        ({"resourceType": "Patient"}, "Observation"),
        ({"valueQuantity": {"value": 38.0, "code": "mmHg"}}, "unit"),
    ],
)
def test_unusable_fhir_is_refused_without_patient_data(
    changes: dict[str, Any], mentions: str
) -> None:
    with pytest.raises(AdapterError) as caught:
        parse_vital(fhir_temperature(**changes))
    assert mentions in str(caught.value)
    assert SECRET not in str(caught.value)


def test_canonical_json_errors_are_validation_errors() -> None:
    with pytest.raises(ValidationError):
        parse_vital(b'{"observation_id": "v1"}')
