"""The canonical JSON feed read row by row: a component that cannot be used (an unknown
analyte, a missing or non-numeric value, an unknown unit; other keys inside a component, such
as an abnormal flag, are ignored) or that is implausible
(``rows.screen``) is left out and reported, and the rest of the result is read. A lower limit
that cannot be used (a component's ``lln`` or an entry of ``context.lln_overrides`` that is not
a finite non-negative number in a known unit) is ignored: the default lower limit applies and
the value is kept (there is no channel for a non-fatal note, so it is not reported).

Valid messages take the fast path (``parse_result``, pydantic's JSON parser); only a message
that fails validation is looked at component by component.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import ValidationError

from monitor.adapters.errors import RowRejection
from monitor.adapters.rows import Parsed, screen
from monitor.clinical.analytes import Analyte
from monitor.clinical.model import CBCResult, Component, LlnOverride, parse_result
from monitor.clinical.units import is_known_unit

__all__ = ["read_result"]


def _position(key: str) -> str:
    return f"components.{key}" if key in Analyte.__members__.values() else "components.<unnamed>"


def _value_rejection(where: str, component: dict[str, Any]) -> RowRejection:
    """Why a component's value cannot be graded: no value at all, or a value that is no
    number (``no_value``); a negative or infinite number (``implausible``)."""
    value = component.get("value")
    if value is None:
        return RowRejection(where, "no_value", "value is missing")
    if isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value):
        return RowRejection(where, "implausible", "value is negative or not finite")
    return RowRejection(where, "no_value", "value is not a number")


def _component_rejection(key: str, component: Any) -> RowRejection | None:
    where = _position(key)
    if key not in Analyte.__members__.values():
        return RowRejection(where, "code", "not a CBC analyte")
    if not isinstance(component, dict):
        return RowRejection(where, "no_value", "component is not an object with a value")
    try:
        checked = Component.model_validate(component)
    except ValidationError as exc:
        fields = {str(e["loc"][0]) for e in exc.errors(include_input=False) if e["loc"]}
        if "value" in fields:
            return _value_rejection(where, component)
        # Only value, unit and lln are read (other keys are ignored), and an unusable lln was
        # dropped before: the unit is at fault.
        return RowRejection(where, "unit", "unit is missing or not text")
    if not is_known_unit(Analyte(key), checked.unit):
        return RowRejection(where, "unit", f"unknown unit for {key}")
    return None


def _usable_lln(component: dict[str, Any]) -> bool:
    try:
        Component.model_validate({**component, "value": 0})
    except ValidationError as exc:
        return not any(e["loc"][:1] == ("lln",) for e in exc.errors(include_input=False))
    return True


def _usable_override(key: object, override: object) -> bool:
    if not isinstance(key, str) or key not in Analyte.__members__.values():
        return False
    try:
        checked = LlnOverride.model_validate(override)
    except ValidationError:
        return False
    return is_known_unit(Analyte(key), checked.unit)


def _drop_unusable_limits(document: dict[str, Any]) -> bool:
    """Leave out each lower limit that cannot be used (a component's ``lln``, an entry of
    ``context.lln_overrides``): the default lower limit applies instead and the value is kept.
    True when anything was left out."""
    dropped = False
    components = document.get("components")
    if isinstance(components, dict):
        for component in components.values():
            if isinstance(component, dict) and "lln" in component and not _usable_lln(component):
                del component["lln"]
                dropped = True
    context = document.get("context")
    if isinstance(context, dict) and "lln_overrides" in context:
        overrides = context["lln_overrides"]
        if not isinstance(overrides, dict):
            del context["lln_overrides"]
            return True
        for key in [k for k, v in overrides.items() if not _usable_override(k, v)]:
            del overrides[key]
            dropped = True
    return dropped


def _without_bad_components(raw: bytes, exc: ValidationError) -> Parsed:
    """Drop the lower limits and the components that cannot be used and validate the rest;
    re-raises ``exc`` when neither was at fault (the message itself is invalid)."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        raise exc from None
    if not isinstance(document, dict):
        raise exc
    limits_dropped = _drop_unusable_limits(document)
    components = document.get("components")
    rejections: list[RowRejection] = []
    if isinstance(components, dict):
        for key in list(components):
            rejection = _component_rejection(key, components[key])
            if rejection is not None:
                rejections.append(rejection)
                del components[key]
    if not rejections and not limits_dropped:
        raise exc
    if rejections:
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
