"""FHIR R4 message traversal: an Observation, a DiagnosticReport (results contained or
referenced, panels expanded through ``hasMember``) or a Bundle of them, read into Observation
rows, and the rows of one specimen merged into one canonical CBC result.

Rules (see the adapter brief and CLINICAL.md section 3):

- Bundle types read: transaction, batch, collection, message, searchset, document.
- Observations of one specimen merge into one result (see ``observation`` for the specimen
  id); of two rows of one analyte the most settled is kept, and the result gets the least
  settled status.
- ``partial`` is set on results that may lack components: lone Observations, Observations no
  report in the message lists, and reports whose results are not all present, whose status is
  ``partial``/``registered``, or whose code is not a CBC panel (LOINC 58410-2, 57021-8): a
  second report for the same specimen (a manual differential) must merge, not replace.
- Observations ``entered-in-error`` (or in a report that is) withdraw their analyte from the
  specimen (``retracted``; a retraction, not a rejected row); a complete CBC report entered in
  error withdraws the whole specimen.

An Observation that cannot be used (``RowError``: one that does not validate, an unknown or
missing status, no value, unit or code, its own subject or effective time unreadable) and one
the plausibility check rejects (``rows.screen``) are left out and listed in
``Parsed.rejections`` (``read_fhir``); the results of a message with a row left out are
``partial``. The message itself is rejected (AdapterError) when it is not a Bundle,
Observation or DiagnosticReport, when a report's status, subject or time cannot be read, when
two Observations of one specimen name different patients, and when no row is read and every
rejected row's subject or time is unreadable (nothing identifies the message).

Error messages name elements and positions (``entry[3].resource``), never values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from monitor.adapters.errors import AdapterError, RowError, RowRejection
from monitor.adapters.fhir.observation import (
    IDENTITY_CAUSES,
    OBSERVATION_STATUS,
    RESULT_RANK,
    Report,
    Row,
    read_observation,
)
from monitor.adapters.fhir.references import Located, contained_scope, lookup
from monitor.adapters.fhir.resources import (
    LOINC_SYSTEM,
    Bundle,
    CodeableConcept,
    DiagnosticReport,
    Observation,
    Reference,
    load,
)
from monitor.adapters.loinc import CBC_PANELS
from monitor.adapters.rows import Parsed, screen
from monitor.clinical.analytes import Analyte
from monitor.clinical.model import CBCResult, describe_validation_error

__all__ = ["BUNDLE_TYPES", "parse_fhir", "read_fhir"]

BUNDLE_TYPES = frozenset({"transaction", "batch", "collection", "message", "searchset", "document"})

# DiagnosticReport.status (R4) -> canonical status; None means the report is skipped.
_REPORT_STATUS: dict[str, str | None] = {
    **OBSERVATION_STATUS,
    "partial": "preliminary",
    "appended": "corrected",
}
_REPORT_INCOMPLETE = frozenset({"partial", "registered"})

# Which of two rows of one analyte is kept: the most settled wins.
_KEEP_RANK = {"preliminary": 0, "final": 1, "corrected": 2}


@dataclass(slots=True)
class _Group:
    rows: dict[Analyte, Row] = field(default_factory=dict)
    retracted: dict[Analyte, Row] = field(default_factory=dict)
    first: Row | None = None
    complete: bool = False


def parse_fhir(raw: bytes, *, local_codes: Mapping[str, Analyte] | None = None) -> list[CBCResult]:
    """``read_fhir``, strict: raises AdapterError naming the first rejected Observation when any
    was left out (for callers that have no dead-letter path for rows)."""
    parsed = read_fhir(raw, local_codes=local_codes)
    if parsed.rejections:
        raise AdapterError(parsed.rejections[0].describe())
    return parsed.results


def read_fhir(raw: bytes, *, local_codes: Mapping[str, Analyte] | None = None) -> Parsed:
    """The CBC results in one FHIR R4 JSON resource, built from its readable Observations, and
    the Observations left out (position and cause, no values); raises AdapterError when the
    message itself cannot be read or has no CBC Observation at all.

    ``local_codes`` maps a site's own codes (of any coding system) to analytes.
    """
    message = load(raw)
    index: dict[str, Located] = {}
    observations: list[Located] = []
    reports: list[Located] = []
    if isinstance(message, Bundle):
        if message.type is None:
            raise AdapterError("Bundle.type: missing")
        if message.type not in BUNDLE_TYPES:
            raise AdapterError("Bundle.type: not a bundle type this adapter reads")
        for i, entry in enumerate(message.entry):
            if entry.resource is None:
                continue
            located = Located(entry.resource, f"entry[{i}].resource", contained=False)
            if entry.full_url:
                index[entry.full_url] = located
            if entry.resource.id:
                index.setdefault(f"{entry.resource.resource_type}/{entry.resource.id}", located)
            if isinstance(entry.resource, Observation):
                observations.append(located)
            elif isinstance(entry.resource, DiagnosticReport):
                reports.append(located)
    elif isinstance(message, Observation):
        observations.append(Located(message, "Observation", contained=False))
    elif isinstance(message, DiagnosticReport):
        reports.append(Located(message, "DiagnosticReport", contained=False))
    else:
        raise AdapterError("resourceType: not an Observation, DiagnosticReport or Bundle")

    rows: list[Row] = []
    rejections: list[RowRejection] = []
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
            try:
                row = read_observation(member, scope, index, local_codes, report)
            except RowError as exc:
                rejections.append(exc.rejection)
                continue
            if row is not None:
                rows.append(row)
    for located in observations:
        if id(located.resource) in listed:
            continue
        try:
            row = read_observation(located, {}, index, local_codes, None)
        except RowError as exc:
            rejections.append(exc.rejection)
            continue
        if row is not None:
            rows.append(row)
    if not rows and not rejections:
        raise AdapterError("message: no usable CBC observation")
    if not rows and all(r.cause in IDENTITY_CAUSES for r in rejections):
        # Nothing readable as a patient or a time at all: the message, not a row, is at fault.
        raise AdapterError(rejections[0].describe())
    return Parsed(_merge(rows, rejections), rejections)


def _read_report(located: Located) -> Report:
    report = located.resource
    assert isinstance(report, DiagnosticReport)
    if report.status is None:
        raise AdapterError(f"{located.where}: status missing")
    if report.status not in _REPORT_STATUS:
        raise AdapterError(f"{located.where}: status is not a DiagnosticReport status")
    return Report(
        report,
        located.where,
        contained_scope(report, located.where, {}),
        _REPORT_STATUS[report.status],
        complete=report.status not in _REPORT_INCOMPLETE and _is_cbc_panel(report.code),
    )


def _is_cbc_panel(code: CodeableConcept | None) -> bool:
    """A report coded as a CBC panel is the whole count; any other report (a separate manual
    differential, say) may be one of several for its specimen, so its results merge."""
    codings = code.coding if code is not None else []
    return any(c.system == LOINC_SYSTEM and c.code in CBC_PANELS for c in codings)


def _report_observations(
    report: Report, index: Mapping[str, Located]
) -> tuple[list[Located], bool]:
    """The Observations a report lists (panels expanded through hasMember), and whether any
    listed one is absent from the message."""
    if not report.resource.result:
        contained = [c for c in report.scope.values() if isinstance(c.resource, Observation)]
        return contained, False
    found: list[Located] = []
    seen: set[int] = set()
    missing = False
    pending: list[Reference] = list(report.resource.result)
    while pending:
        reference = pending.pop(0)
        target = lookup(reference.reference, report.scope, index) if reference.reference else None
        if target is None:
            missing = True
            continue
        if not isinstance(target.resource, Observation) or id(target.resource) in seen:
            continue
        seen.add(id(target.resource))
        found.append(target)
        pending.extend(target.resource.has_member)
    return found, missing


def _merge(rows: list[Row], rejections: list[RowRejection]) -> list[CBCResult]:
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
        if row.status == "retracted":
            group.retracted[row.analyte] = row
            continue
        kept = group.rows.get(row.analyte)
        if kept is None or _KEEP_RANK[row.status] > _KEEP_RANK[kept.status]:
            group.rows[row.analyte] = row
    results: list[CBCResult] = []
    for result_id, group in groups.items():
        assert group.first is not None
        left_out = screen(
            {a: (r.component["value"], r.component["unit"], r.where) for a, r in group.rows.items()}
        )
        rejections.extend(left_out)
        dropped = {r.where for r in left_out}
        members = [r for r in group.rows.values() if r.where not in dropped]
        # Observations entered in error withdraw their analyte unless the specimen sends it
        # again (and it is read); a complete report with nothing else, and no row of the
        # message rejected, is the whole specimen withdrawn.
        sent = {r.analyte for r in members}
        withdrawn = [r for a, r in group.retracted.items() if a not in sent]
        if not members and not withdrawn:
            continue  # every row of the specimen was rejected
        partial = not group.complete or bool(rejections)
        if members:
            status = max((r.status for r in members), key=RESULT_RANK.__getitem__)
            status = "corrected" if withdrawn and status == "final" else status
        else:
            status = "corrected" if partial else "retracted"
        everyone = members + withdrawn
        document: dict[str, Any] = {
            "result_id": result_id,
            "patient_id": group.first.patient_id,
            "collected_at": min(r.collected_at for r in everyone),
            "status": status,
            "sex": next((r.sex for r in everyone if r.sex is not None), None),
            "components": {r.analyte.value: r.component for r in members},
            "partial": partial,
            "retracted": sorted(r.analyte.value for r in withdrawn),
        }
        try:
            results.append(CBCResult.model_validate(document))
        except ValidationError as exc:
            raise AdapterError(f"{group.first.where}: {describe_validation_error(exc)}") from None
    return results
