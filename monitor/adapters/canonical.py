"""The canonical JSON feed read row by row: a component that cannot be used (an unknown
analyte, a missing or non-numeric value, an unknown unit) or that is implausible
(``rows.screen``) is left out and reported, and the rest of the result is read.

Valid messages take the fast path (``parse_result``, pydantic's JSON parser); only a message
that fails validation is looked at component by component.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from monitor.adapters.errors import RowRejection
from monitor.adapters.rows import Parsed, screen
from monitor.clinical.analytes import Analyte
from monitor.clinical.model import CBCResult, Component, parse_result
from monitor.clinical.units import is_known_unit

__all__ = ["read_result"]


def _position(key: str) -> str:
    return f"components.{key}" if key in Analyte.__members__.values() else "components.<unnamed>"


def _component_rejection(key: str, component: Any) -> RowRejection | None:
    where = _position(key)
    if key not in Analyte.__members__.values():
        return RowRejection(where, "code", "not a CBC analyte")
    try:
        checked = Component.model_validate(component)
    except ValidationError as exc:
        fields = {str(e["loc"][0]) for e in exc.errors(include_input=False) if e["loc"]}
        if "value" in fields:
            return RowRejection(where, "no_value", "value is missing, not a number or negative")
        if "unit" in fields:
            return RowRejection(where, "unit", "unit is missing")
        return RowRejection(where, "no_value", "component is not valid")
    if not is_known_unit(Analyte(key), checked.unit):
        return RowRejection(where, "unit", f"unknown unit for {key}")
    return None


def _without_bad_components(raw: bytes, exc: ValidationError) -> Parsed:
    """Drop the components that cannot be used and validate the rest; re-raises ``exc`` when
    no component was at fault (the message itself is invalid)."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        raise exc from None
    components = document.get("components") if isinstance(document, dict) else None
    if not isinstance(components, dict):
        raise exc
    rejections: list[RowRejection] = []
    for key in list(components):
        rejection = _component_rejection(key, components[key])
        if rejection is not None:
            rejections.append(rejection)
            del components[key]
    if not rejections:
        raise exc
    document["partial"] = True
    result = CBCResult.model_validate(document)  # the identity must still be valid
    # A result whose only content is a retraction still withdraws its analytes.
    return Parsed([result] if result.components or result.retracted else [], rejections)


def read_result(raw: bytes | str) -> Parsed:
    """One canonical JSON result with its unusable and implausible components left out and
    listed; raises pydantic.ValidationError when the message itself is invalid."""
    data = raw.encode() if isinstance(raw, str) else raw
    try:
        parsed = Parsed([parse_result(data)])
    except ValidationError as exc:
        parsed = _without_bad_components(data, exc)
    if not parsed.results:
        return parsed
    result = parsed.results[0]
    left_out = screen(
        {a: (c.value, c.unit, f"components.{a}") for a, c in result.components.items()}
    )
    if not left_out:
        return parsed
    dropped = {r.where for r in left_out}
    kept = {a: c for a, c in result.components.items() if f"components.{a}" not in dropped}
    rejections = [*parsed.rejections, *left_out]
    if not kept and not result.retracted:
        return Parsed([], rejections)
    return Parsed([result.model_copy(update={"components": kept, "partial": True})], rejections)
