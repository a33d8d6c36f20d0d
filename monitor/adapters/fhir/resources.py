"""The FHIR R4 elements a CBC needs, as pydantic models, and the loading of one JSON message
into them.

Only the handful of elements a CBC needs are read, through small pydantic models that ignore
everything else; the message is read with ``json.loads`` and validated in one pass, each
resource routed on its ``resourceType``. Resources other than Observation, DiagnosticReport,
Patient, Specimen and Bundle are kept only as ``resourceType``/``id`` so references can be
resolved.

Bundle entries and contained resources are validated one at a time: an Observation among them
that does not validate (a value sent as text, a coding that is not a list) becomes an
``UnreadableObservation`` (its id, its code when that much is readable, and why), which the
message reader reports as a rejected row while the other Observations are read. Any other
resource that does not validate fails the whole message (it may be the patient or specimen).

Error messages name elements and positions, never values.
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic.alias_generators import to_camel

from monitor.adapters.errors import AdapterError
from monitor.clinical.model import describe_validation_error

__all__ = [
    "LOINC_SYSTEM",
    "UCUM_SYSTEM",
    "AnyResource",
    "Bundle",
    "BundleEntry",
    "CodeableConcept",
    "Coding",
    "DiagnosticReport",
    "Identifier",
    "Observation",
    "OtherResource",
    "Patient",
    "Period",
    "Quantity",
    "Reference",
    "ReferenceRange",
    "Resource",
    "Specimen",
    "UnreadableObservation",
    "load",
    "looks_like_fhir",
]

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"

# --- The elements read, as pydantic models -------------------------------------------------


class _Element(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, alias_generator=to_camel)


class Coding(_Element):
    system: str | None = None
    code: str | None = None
    display: str | None = None


class CodeableConcept(_Element):
    coding: list[Coding] = Field(default_factory=list)
    text: str | None = None


class Identifier(_Element):
    type: CodeableConcept | None = None
    value: str | None = None


class Reference(_Element):
    reference: str | None = None
    identifier: Identifier | None = None


class Quantity(_Element):
    value: Annotated[float, Field(strict=True)] | None = None
    comparator: str | None = None
    unit: str | None = None
    system: str | None = None
    code: str | None = None


class ReferenceRange(_Element):
    low: Quantity | None = None


class Period(_Element):
    start: str | None = None


class Resource(_Element):
    resource_type: str
    id: str | None = None
    contained: list[Lenient] = Field(default_factory=list)


class Observation(Resource):
    status: str | None = None
    code: CodeableConcept | None = None
    subject: Reference | None = None
    effective_date_time: str | None = None
    effective_period: Period | None = None
    effective_instant: str | None = None
    value_quantity: Quantity | None = None
    reference_range: list[ReferenceRange] = Field(default_factory=list)
    specimen: Reference | None = None
    has_member: list[Reference] = Field(default_factory=list)


class DiagnosticReport(Resource):
    status: str | None = None
    code: CodeableConcept | None = None
    identifier: list[Identifier] = Field(default_factory=list)
    subject: Reference | None = None
    effective_date_time: str | None = None
    effective_period: Period | None = None
    specimen: list[Reference] = Field(default_factory=list)
    result: list[Reference] = Field(default_factory=list)


class Patient(Resource):
    identifier: list[Identifier] = Field(default_factory=list)
    gender: str | None = None


class Specimen(Resource):
    identifier: list[Identifier] = Field(default_factory=list)
    accession_identifier: Identifier | None = None


class OtherResource(Resource):
    pass


class UnreadableObservation(Observation):
    """An Observation (a Bundle entry or a contained resource) that did not validate: its id
    and code when readable, and why it cannot be used (``cause``, one of
    ``errors.ROW_CAUSES``, and ``reason``, naming elements, never values). Built only by
    ``_observation_rows``, never routed to."""

    cause: str
    reason: str


class BundleEntry(_Element):
    full_url: str | None = None
    resource: Lenient | None = None


class Bundle(Resource):
    type: str | None = None
    entry: list[BundleEntry] = Field(default_factory=list)


_ROUTED = frozenset({"Observation", "DiagnosticReport", "Patient", "Specimen", "Bundle"})


def _resource_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("resourceType")
    else:
        kind = getattr(value, "resource_type", None)
    if not isinstance(kind, str):
        return None
    return kind if kind in _ROUTED else "other"


AnyResource = Annotated[
    Annotated[Observation, Tag("Observation")]
    | Annotated[DiagnosticReport, Tag("DiagnosticReport")]
    | Annotated[Patient, Tag("Patient")]
    | Annotated[Specimen, Tag("Specimen")]
    | Annotated[Bundle, Tag("Bundle")]
    | Annotated[OtherResource, Tag("other")],
    Discriminator(
        _resource_tag,
        custom_error_type="no_resource_type",
        custom_error_message="not a FHIR resource (no resourceType)",
    ),
]


def _unreadable(document: dict[str, Any], exc: ValidationError) -> UnreadableObservation:
    """What can still be read of an Observation that did not validate, and why not."""
    errors = exc.errors(include_input=False)
    # The location starts with the union's tag ("Observation"); the element follows.
    fields = [e["loc"][1:] for e in errors]
    if all(f[:2] == ("valueQuantity", "value") for f in fields):
        cause, reason = "no_value", "valueQuantity.value is not a JSON number"
    elif all(f[:1] == ("status",) for f in fields):
        cause, reason = "status", "status is not text"
    else:
        cause = "unreadable"
        parts = describe_validation_error(exc).split("; ")
        reason = "; ".join(part.removeprefix("Observation.") for part in parts)
    readable: dict[str, Any] = {"resourceType": "Observation", "cause": cause, "reason": reason}
    if isinstance(document.get("id"), str):
        readable["id"] = document["id"]
    with suppress(ValidationError):  # no readable code: reported as of unknown kind
        readable["code"] = CodeableConcept.model_validate(document.get("code"))
    return UnreadableObservation.model_validate(readable)


def _observation_rows(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A Bundle entry or contained resource, validated on its own: an Observation that does
    not validate becomes an ``UnreadableObservation`` (one rejected row), anything else that
    does not validate fails the message."""
    try:
        return handler(value)
    except ValidationError as exc:
        if isinstance(value, dict) and value.get("resourceType") == "Observation":
            return _unreadable(value, exc)
        raise


# A resource inside another (a Bundle entry, a contained resource), validated on its own.
Lenient = Annotated[AnyResource, WrapValidator(_observation_rows)]

for _model in (
    Resource,
    Observation,
    DiagnosticReport,
    Patient,
    Specimen,
    OtherResource,
    UnreadableObservation,
):
    _model.model_rebuild()
BundleEntry.model_rebuild()
Bundle.model_rebuild()

_MESSAGE: TypeAdapter[AnyResource] = TypeAdapter(AnyResource)


def looks_like_fhir(raw: bytes) -> bool:
    """True for a JSON object carrying a ``resourceType`` string."""
    if b"resourceType" not in raw:
        return False
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(document, dict) and isinstance(document.get("resourceType"), str)


def load(raw: bytes) -> AnyResource:
    """The message's top-level resource, validated; raises AdapterError."""
    # json.loads then validate_python: the resourceType router is a Python function, and
    # pydantic's JSON mode would build the Python objects for it anyway (measured 1.7x slower).
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError included
        raise AdapterError("message: not JSON") from None
    try:
        return _MESSAGE.validate_python(document)
    except ValidationError as exc:
        if exc.errors(include_input=False)[0]["loc"] == ():
            raise AdapterError("message: not a FHIR resource (no resourceType)") from None
        raise AdapterError(f"message: {describe_validation_error(exc)}") from None
    except RecursionError:
        raise AdapterError("message: nested too deeply") from None
