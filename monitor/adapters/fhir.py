"""FHIR R4 JSON (Observation, DiagnosticReport, Bundle) to canonical CBC results.

Only the handful of elements a CBC needs are read, through small pydantic models that ignore
everything else; the message is read with ``json.loads`` and validated in one pass, each
resource routed on its ``resourceType``. Resources other than Observation, DiagnosticReport,
Patient and Specimen are kept only as ``resourceType``/``id`` so references can be resolved.

Rules (see the adapter brief and CLINICAL.md section 3):

- A component is an Observation with a LOINC coding that ``loinc.resolve`` maps to an analyte
  (or any coding found in ``local_codes``) and a ``valueQuantity``. The unit is the UCUM ``code``
  when ``system`` is UCUM, else ``unit``. Other Observations are ignored; an Observation without
  a value (``dataAbsentReason``) is skipped; a code that disagrees with its unit or name is an
  error. A value below a limit (``comparator`` ``<``) is read as just below it
  (``errors.censored_value``), so it is neither understated nor lost.
- ``referenceRange[0].low`` is the lower limit when its unit is an equivalent spelling of the
  value's unit, or absent.
- Observations of one specimen merge into one result: the specimen id is ``specimen``, else
  the report's specimen, identifier or id, else a hash of subject and collection time, so that
  Observations of one draw sent one at a time get the same ``result_id``.
- ``partial`` is set on results that may lack components: lone Observations, Observations no
  report in the message lists, and reports whose results are not all present, whose status is
  ``partial``/``registered``, or whose code is not a CBC panel (LOINC 58410-2, 57021-8): a
  second report for the same specimen (a manual differential) must merge, not replace.

Error messages name elements and positions (``entry[3].resource``), never values.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
)
from pydantic.alias_generators import to_camel

from monitor.adapters.errors import AdapterError, censored_value
from monitor.adapters.loinc import CBC_PANELS, LOINC, CodeMismatchError, resolve
from monitor.clinical.analytes import Analyte, Sex
from monitor.clinical.model import CBCResult, describe_validation_error
from monitor.clinical.units import UnknownUnitError, factor

__all__ = ["looks_like_fhir", "parse_fhir"]

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"

BUNDLE_TYPES = frozenset({"transaction", "batch", "collection", "message", "searchset", "document"})

# Observation.status (R4) -> canonical status; None means skipped.
_OBSERVATION_STATUS: dict[str, str | None] = {
    "final": "final",
    "amended": "corrected",
    "corrected": "corrected",
    "preliminary": "preliminary",
    "registered": "preliminary",
    "unknown": "preliminary",
    "cancelled": None,
    "entered-in-error": None,
}
# DiagnosticReport.status (R4) -> canonical status; None means the report is skipped.
_REPORT_STATUS: dict[str, str | None] = {
    **_OBSERVATION_STATUS,
    "partial": "preliminary",
    "appended": "corrected",
}
_REPORT_INCOMPLETE = frozenset({"partial", "registered"})

# Which status a merged result gets (the least settled wins) and which of two rows of one
# analyte is kept (the most settled wins).
_RESULT_RANK = {"final": 0, "corrected": 1, "preliminary": 2}
_KEEP_RANK = {"preliminary": 0, "final": 1, "corrected": 2}

_GENDER = {"female": Sex.FEMALE, "male": Sex.MALE}

# A FHIR dateTime: a date, optionally a time, and (required with a time) a zone. Seconds are
# optional here although R4 requires them; feeds drop them.
_DATETIME = re.compile(
    r"^(?P<date>\d{4}(-\d{2}(-\d{2})?)?)"
    r"(?:T(?P<time>\d{2}:\d{2}(:\d{2}(?P<frac>\.\d+)?)?)(?P<zone>Z|[+-]\d{2}:\d{2})?)?$"
)
# The "Type/id" tail of a literal reference (relative or absolute, optionally versioned).
_TYPE_ID = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9.\-]{1,64})(?:/_history/[^/]+)?$")


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
    contained: list[AnyResource] = Field(default_factory=list)


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


class BundleEntry(_Element):
    full_url: str | None = None
    resource: AnyResource | None = None


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

for _model in (Resource, Observation, DiagnosticReport, Patient, Specimen, OtherResource):
    _model.model_rebuild()
BundleEntry.model_rebuild()
Bundle.model_rebuild()

_MESSAGE: TypeAdapter[AnyResource] = TypeAdapter(AnyResource)


# --- Extraction ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Located:
    resource: Resource
    where: str  # position in the message, e.g. "entry[3].resource"
    contained: bool  # a contained resource: its id means nothing outside the message


_Scope = Mapping[str, _Located]


@dataclass(slots=True)
class _Report:
    resource: DiagnosticReport
    where: str
    scope: _Scope
    status: str | None  # None: cancelled or entered in error, so skipped with its results
    complete: bool


@dataclass(slots=True)
class _Row:
    """One usable Observation, with the identity of the result it belongs to."""

    analyte: Analyte
    component: dict[str, Any]
    status: str
    where: str
    result_id: str
    patient_id: str
    sex: Sex | None
    collected_at: datetime
    complete: bool  # belongs to a report that lists all its results


@dataclass(slots=True)
class _Group:
    rows: dict[Analyte, _Row] = field(default_factory=dict)
    first: _Row | None = None
    complete: bool = False


def looks_like_fhir(raw: bytes) -> bool:
    """True for a JSON object carrying a ``resourceType`` string."""
    if b"resourceType" not in raw:
        return False
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(document, dict) and isinstance(document.get("resourceType"), str)


def parse_fhir(raw: bytes, *, local_codes: Mapping[str, Analyte] | None = None) -> list[CBCResult]:
    """The CBC results in one FHIR R4 JSON resource; raises AdapterError.

    ``local_codes`` maps a site's own codes (of any coding system) to analytes.
    """
    message = _load(raw)
    index: dict[str, _Located] = {}
    observations: list[_Located] = []
    reports: list[_Located] = []
    if isinstance(message, Bundle):
        if message.type is None:
            raise AdapterError("Bundle.type: missing")
        if message.type not in BUNDLE_TYPES:
            raise AdapterError("Bundle.type: not a bundle type this adapter reads")
        for i, entry in enumerate(message.entry):
            if entry.resource is None:
                continue
            located = _Located(entry.resource, f"entry[{i}].resource", contained=False)
            if entry.full_url:
                index[entry.full_url] = located
            if entry.resource.id:
                index.setdefault(f"{entry.resource.resource_type}/{entry.resource.id}", located)
            if isinstance(entry.resource, Observation):
                observations.append(located)
            elif isinstance(entry.resource, DiagnosticReport):
                reports.append(located)
    elif isinstance(message, Observation):
        observations.append(_Located(message, "Observation", contained=False))
    elif isinstance(message, DiagnosticReport):
        reports.append(_Located(message, "DiagnosticReport", contained=False))
    else:
        raise AdapterError("resourceType: not an Observation, DiagnosticReport or Bundle")

    rows: list[_Row] = []
    listed: set[int] = set()  # Observations some report lists (by identity)
    for located in reports:
        report = _read_report(located)
        members, missing = _report_observations(report, index)
        listed.update(id(m.resource) for m in members)
        if report.status is None:
            continue
        report.complete = report.complete and not missing
        for member in members:
            scope = report.scope if member.contained else {}
            row = _read_observation(member, scope, index, local_codes, report)
            if row is not None:
                rows.append(row)
    for located in observations:
        if id(located.resource) in listed:
            continue
        row = _read_observation(located, {}, index, local_codes, None)
        if row is not None:
            rows.append(row)
    results = _merge(rows)
    if not results:
        raise AdapterError("message: no usable CBC observation")
    return results


def _load(raw: bytes) -> AnyResource:
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


def _contained_scope(resource: Resource, where: str, outer: _Scope) -> dict[str, _Located]:
    scope = dict(outer)
    for j, inner in enumerate(resource.contained):
        if inner.id:
            scope[inner.id] = _Located(inner, f"{where}.contained[{j}]", contained=True)
    return scope


def _lookup(reference: str, scope: _Scope, index: Mapping[str, _Located]) -> _Located | None:
    if reference.startswith("#"):
        return scope.get(reference[1:])
    found = index.get(reference)
    if found is None and (tail := _TYPE_ID.search(reference)):
        found = index.get(f"{tail[1]}/{tail[2]}")
    return found


def _read_report(located: _Located) -> _Report:
    report = located.resource
    assert isinstance(report, DiagnosticReport)
    if report.status is None:
        raise AdapterError(f"{located.where}: status missing")
    if report.status not in _REPORT_STATUS:
        raise AdapterError(f"{located.where}: status is not a DiagnosticReport status")
    return _Report(
        report,
        located.where,
        _contained_scope(report, located.where, {}),
        _REPORT_STATUS[report.status],
        complete=report.status not in _REPORT_INCOMPLETE and _is_cbc_panel(report.code),
    )


def _is_cbc_panel(code: CodeableConcept | None) -> bool:
    """A report coded as a CBC panel is the whole count; any other report (a separate manual
    differential, say) may be one of several for its specimen, so its results merge."""
    codings = code.coding if code is not None else []
    return any(c.system == LOINC_SYSTEM and c.code in CBC_PANELS for c in codings)


def _report_observations(
    report: _Report, index: Mapping[str, _Located]
) -> tuple[list[_Located], bool]:
    """The Observations a report lists (panels expanded through hasMember), and whether any
    listed one is absent from the message."""
    if not report.resource.result:
        contained = [c for c in report.scope.values() if isinstance(c.resource, Observation)]
        return contained, False
    found: list[_Located] = []
    seen: set[int] = set()
    missing = False
    pending: list[Reference] = list(report.resource.result)
    while pending:
        reference = pending.pop(0)
        target = _lookup(reference.reference, report.scope, index) if reference.reference else None
        if target is None:
            missing = True
            continue
        if not isinstance(target.resource, Observation) or id(target.resource) in seen:
            continue
        seen.add(id(target.resource))
        found.append(target)
        pending.extend(target.resource.has_member)
    return found, missing


def _read_observation(
    located: _Located,
    scope: _Scope,
    index: Mapping[str, _Located],
    local_codes: Mapping[str, Analyte] | None,
    report: _Report | None,
) -> _Row | None:
    obs = located.resource
    assert isinstance(obs, Observation)
    where = located.where
    if obs.status is None:
        raise AdapterError(f"{where}: status missing")
    if obs.status not in _OBSERVATION_STATUS:
        raise AdapterError(f"{where}: status is not an Observation status")
    status = _OBSERVATION_STATUS[obs.status]
    if status is None or obs.code is None:
        return None
    candidates = list(_candidate_codings(obs.code, local_codes))
    quantity = obs.value_quantity
    if not candidates or quantity is None or quantity.value is None:
        return None  # not a CBC component, or no value (dataAbsentReason)
    unit = _unit(quantity)
    if unit is None:
        raise AdapterError(f"{where}: valueQuantity has no unit")
    analyte = _analyte(candidates, obs.code, unit, local_codes, where)
    value = censored_value(quantity.comparator, quantity.value)
    component: dict[str, Any] = {"value": value, "unit": unit}
    lln = _lln(obs, analyte, unit)
    if lln is not None:
        component["lln"] = lln

    if obs.contained:
        scope = _contained_scope(obs, where, scope)
    if obs.subject is not None or report is None:
        patient_id, sex = _patient(obs.subject, scope, index, where)
    else:
        patient_id, sex = _patient(report.resource.subject, report.scope, index, report.where)
    collected_at = _effective(obs, where)
    if collected_at is None and report is not None:
        collected_at = _effective(report.resource, report.where)
    if collected_at is None:
        raise AdapterError(f"{where}: effective[x] missing")
    result_id = _result_id(obs, scope, index, report) or _derived_id(patient_id, collected_at)
    statuses = [status] if report is None or report.status is None else [status, report.status]
    return _Row(
        analyte=analyte,
        component=component,
        status=max(statuses, key=_RESULT_RANK.__getitem__),
        where=where,
        result_id=result_id,
        patient_id=patient_id,
        sex=sex,
        collected_at=collected_at,
        complete=report is not None and report.complete,
    )


def _candidate_codings(
    code: CodeableConcept, local_codes: Mapping[str, Analyte] | None
) -> Iterator[Coding]:
    """Codings that may name a CBC component: LOINC ones first, then the site's own."""
    local = local_codes or {}
    for coding in code.coding:
        if coding.system == LOINC_SYSTEM and (coding.code in LOINC or coding.code in local):
            yield coding
    for coding in code.coding:
        if coding.system != LOINC_SYSTEM and coding.code in local:
            yield coding


def _analyte(
    candidates: list[Coding],
    code: CodeableConcept,
    unit: str,
    local_codes: Mapping[str, Analyte] | None,
    where: str,
) -> Analyte:
    analytes: set[Analyte] = set()
    first: Analyte | None = None
    for coding in candidates:
        assert coding.code is not None
        try:
            analyte = resolve(coding.code, unit, coding.display or code.text, local_codes)
        except CodeMismatchError as exc:
            raise AdapterError(f"{where}: {exc}") from None
        if analyte is not None:
            analytes.add(analyte)
            first = first or analyte
    if first is None:  # pragma: no cover - every candidate is a known code
        raise AdapterError(f"{where}: code.coding names no CBC component")
    if len(analytes) > 1:
        raise AdapterError(f"{where}: code.coding names different analytes")
    return first


def _unit(quantity: Quantity) -> str | None:
    if quantity.system == UCUM_SYSTEM and quantity.code:
        return quantity.code
    return quantity.unit or None


def _lln(obs: Observation, analyte: Analyte, unit: str) -> float | None:
    if not obs.reference_range:
        return None
    low = obs.reference_range[0].low
    if low is None or low.value is None or low.comparator is not None:
        return None
    low_unit = _unit(low)
    if low_unit is None or low_unit == unit:
        return low.value
    try:
        same = factor(analyte, low_unit) == factor(analyte, unit)
    except UnknownUnitError:
        return None
    return low.value if same else None


def _patient(
    subject: Reference | None, scope: _Scope, index: Mapping[str, _Located], where: str
) -> tuple[str, Sex | None]:
    """The patient id and, when the Patient is in the message, the sex."""
    if subject is None:
        raise AdapterError(f"{where}: subject missing")
    by_identifier = subject.identifier.value if subject.identifier else None
    if not subject.reference:
        if by_identifier:
            return by_identifier, None
        raise AdapterError(f"{where}: subject has neither reference nor identifier")
    target = _lookup(subject.reference, scope, index)
    tail = _TYPE_ID.search(subject.reference)
    if (target is not None and not isinstance(target.resource, Patient)) or (
        tail is not None and tail[1] != "Patient"
    ):
        raise AdapterError(f"{where}: subject is not a Patient")
    patient = target.resource if target is not None else None
    assert patient is None or isinstance(patient, Patient)
    sex = _GENDER.get(patient.gender or "") if patient is not None else None
    if tail is not None:  # Patient/<id>
        return tail[2], sex
    if patient is not None and target is not None:  # '#id' or 'urn:uuid:...' in the message
        if not target.contained and patient.id:
            return patient.id, sex
        patient_id = _patient_identifier(patient)
        if patient_id is not None:
            return patient_id, sex
    if by_identifier:
        return by_identifier, sex
    raise AdapterError(f"{where}: subject names no patient id")


def _patient_identifier(patient: Patient) -> str | None:
    """The medical record number (identifier of type MR) if there is one, else the first."""
    for identifier in patient.identifier:
        codes = identifier.type.coding if identifier.type else []
        if identifier.value and any(c.code == "MR" for c in codes):
            return identifier.value
    return next((i.value for i in patient.identifier if i.value), None)


def _effective(resource: Observation | DiagnosticReport, where: str) -> datetime | None:
    if resource.effective_date_time is not None:
        return _datetime(resource.effective_date_time, f"{where}: effectiveDateTime")
    if resource.effective_period is not None and resource.effective_period.start is not None:
        return _datetime(resource.effective_period.start, f"{where}: effectivePeriod.start")
    if isinstance(resource, Observation) and resource.effective_instant is not None:
        return _datetime(resource.effective_instant, f"{where}: effectiveInstant")
    return None


def _datetime(text: str, element: str) -> datetime:
    match = _DATETIME.match(text)
    if match is None:
        raise AdapterError(f"{element} is not a FHIR dateTime")
    if match["time"] is None:
        raise AdapterError(f"{element} has a date but no time of day")
    if match["zone"] is None:
        raise AdapterError(f"{element} has no time zone")
    if len(match["date"]) != 10:
        raise AdapterError(f"{element} is not a FHIR dateTime")
    if match["frac"] and len(match["frac"]) > 7:  # Python reads at most microseconds
        text = text.replace(match["frac"], match["frac"][:7], 1)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise AdapterError(f"{element} is not a valid date and time") from None


def _result_id(
    obs: Observation, scope: _Scope, index: Mapping[str, _Located], report: _Report | None
) -> str | None:
    specimen = _specimen_id(obs.specimen, scope, index)
    if specimen is not None or report is None:
        return specimen
    for reference in report.resource.specimen:
        specimen = _specimen_id(reference, report.scope, index)
        if specimen is not None:
            return specimen
    for identifier in report.resource.identifier:
        if identifier.value:
            return identifier.value
    return report.resource.id


def _specimen_id(
    reference: Reference | None, scope: _Scope, index: Mapping[str, _Located]
) -> str | None:
    if reference is None:
        return None
    if reference.reference:
        tail = _TYPE_ID.search(reference.reference)
        if tail is not None:  # Specimen/<id>
            return tail[2]
        target = _lookup(reference.reference, scope, index)
        if target is not None and isinstance(target.resource, Specimen):
            specimen = target.resource
            if not target.contained and specimen.id:
                return specimen.id
            if specimen.accession_identifier and specimen.accession_identifier.value:
                return specimen.accession_identifier.value
            value = next((i.value for i in specimen.identifier if i.value), None)
            if value is not None:
                return value
    if reference.identifier and reference.identifier.value:
        return reference.identifier.value
    return None


def _derived_id(patient_id: str, collected_at: datetime) -> str:
    """A stable id for Observations of one draw sent without a specimen."""
    instant = collected_at.astimezone(UTC).isoformat()
    digest = hashlib.sha256(f"{patient_id}|{instant}".encode()).hexdigest()
    return f"fhir-{digest[:20]}"


def _merge(rows: list[_Row]) -> list[CBCResult]:
    groups: dict[str, _Group] = {}
    for row in rows:
        group = groups.setdefault(row.result_id, _Group())
        if group.first is None:
            group.first = row
        elif row.patient_id != group.first.patient_id:
            raise AdapterError(
                f"{row.where}: subject differs from another observation of its specimen"
            )
        group.complete = group.complete or row.complete
        kept = group.rows.get(row.analyte)
        if kept is None or _KEEP_RANK[row.status] > _KEEP_RANK[kept.status]:
            group.rows[row.analyte] = row
    results: list[CBCResult] = []
    for result_id, group in groups.items():
        assert group.first is not None
        members = list(group.rows.values())
        document: dict[str, Any] = {
            "result_id": result_id,
            "patient_id": group.first.patient_id,
            "collected_at": min(r.collected_at for r in members),
            "status": max((r.status for r in members), key=_RESULT_RANK.__getitem__),
            "sex": next((r.sex for r in members if r.sex is not None), None),
            "components": {r.analyte.value: r.component for r in members},
            "partial": not group.complete,
        }
        try:
            results.append(CBCResult.model_validate(document))
        except ValidationError as exc:
            raise AdapterError(f"{group.first.where}: {describe_validation_error(exc)}") from None
    return results
