"""The canonical CBC result every adapter produces, validated with pydantic v2.

Validation errors name the field that is wrong and never echo the value, so they are safe to put
in a dead-letter header or a log line (see ``describe_validation_error``).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticKnownError

from monitor.clinical.analytes import SEX_SPELLINGS, Analyte, Sex, read_sex
from monitor.clinical.units import FACTORS_FOUND, is_known_unit

# ``retracted``: the lab withdrew the whole specimen (HL7 OBX-11 W/D on every row, a FHIR
# report entered-in-error); it carries no components and removes the specimen from history.
ResultStatus = Literal["final", "corrected", "preliminary", "retracted"]

_isfinite = math.isfinite

# An identifier is printable text of bounded length: large enough for any LIS accession number.
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^\S(.*\S)?$")]


# A date without a time of day ("2026-11-20", "20261120", "2026-11"): too coarse to order a
# patient's results or to tell whether it lies in the future, so refused with a reason saying so.
_DATE_ONLY = re.compile(r"\d{4}(?:-?\d{2}(?:-?\d{2})?)?")


def _timestamp_text(value: object) -> object:
    """Refuse what pydantic would otherwise read too generously: a date alone (it would become
    midnight) and a bare number (it would become seconds since 1970: ``"20261120"`` is 1970-08-23).
    Raises ValueError with a reason that names no value."""
    if isinstance(value, str):
        text = value.strip()
        # A date alone is at most 10 characters ("2026-11-20"); a longer text needs no match.
        if len(text) <= 10 and _DATE_ONLY.fullmatch(text):
            raise ValueError("a date without a time of day; a time and a zone offset are required")
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("a number, not an ISO 8601 date and time with a zone offset")
    return value


def _sex_spelling(value: object) -> object:
    """Any common spelling of sex (``"Male"``, ``"F"``, ``"unknown"``: ``SEX_SPELLINGS``) as the
    canonical value. Canonical JSON is our own contract, so text that is no spelling of sex is
    left for validation to refuse (the HL7 and FHIR adapters read it as unknown instead)."""
    if isinstance(value, str) and value.strip().lower() in SEX_SPELLINGS:
        return read_sex(value)
    return value


# Integers a double holds exactly: float() of one is what pydantic's float gives for it.
_EXACT_INT = 2**53
_inf = math.inf


def _measure(value: Any, read_float: ValidatorFunctionWrapHandler) -> float:
    """A measured number, in one Python call: refuse ``true``/``false`` (pydantic's lax mode
    would read them as 1 and 0: a platelet count of 1, an ANC of 0) with a ValueError naming no
    value; read anything else as pydantic's float does (a JSON number directly, text through
    ``read_float``, which raises pydantic's own float errors); then refuse a negative, NaN or
    infinite number with pydantic's own errors, in the order its ``ge=0`` and
    ``allow_inf_nan=False`` constraints gave them (NaN and -inf fail ``ge``), and read -0.0 as
    0.0. One call where a before and an after validator were two per number."""
    kind = type(value)
    if kind is float:
        number: float = value
    elif kind is int and -_EXACT_INT <= value <= _EXACT_INT:
        number = float(value)
    elif kind is bool:
        raise ValueError("a boolean, not a number")
    else:
        number = read_float(value)
    if not number >= 0:
        raise PydanticKnownError("greater_than_equal", {"ge": 0})
    if number == _inf:
        raise PydanticKnownError("finite_number")
    return number + 0.0  # -0.0 reads as 0.0


# A measured number: finite, not negative, never a boolean; -0.0 is 0.0. The JSON schema says
# what the constraints did ("ge": 0), unchanged.
Measure = Annotated[
    float,
    WrapValidator(_measure),
    Field(json_schema_extra={"ge": 0}),
]


# An event's time: ISO 8601 with a time of day and a zone offset.
EventTime = Annotated[AwareDatetime, BeforeValidator(_timestamp_text)]


class Component(BaseModel):
    """One analyte's value as the lab sent it, with the lab's lower limit in the same unit.

    Other keys a sender adds beside them (an abnormal flag, a reference range text) are ignored:
    the value and unit are what is graded, and a readable value is never lost over a key.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    value: Measure
    unit: str = Field(min_length=1, max_length=32)
    lln: Measure | None = None


class LlnOverride(BaseModel):
    """A per-patient lower limit (e.g. a Duffy-null patient's ANC), in the given unit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: Measure
    unit: str = Field(min_length=1, max_length=32)


class ResultContext(BaseModel):
    """What the ordering system knows about the patient around this specimen."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ward: str | None = Field(default=None, max_length=64)
    last_chemo_at: AwareDatetime | None = None
    lln_overrides: dict[Analyte, LlnOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_override_units(self) -> ResultContext:
        for analyte, override in self.lln_overrides.items():
            if not is_known_unit(analyte, override.unit):
                raise ValueError(f"lln_overrides.{analyte}: unknown unit for {analyte}")
        return self


class CBCResult(BaseModel):
    """One specimen's complete blood count (every component optional: partial panels are normal)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    result_id: Identifier
    patient_id: Identifier
    collected_at: EventTime
    status: ResultStatus = "final"
    sex: Annotated[Sex | None, BeforeValidator(_sex_spelling)] = None
    components: dict[Analyte, Component] = Field(default_factory=dict)
    context: ResultContext = Field(default_factory=ResultContext)
    # Only some of the specimen's components (FHIR sends Observations one at a time): merged
    # into what is known of the same result_id instead of replacing it.
    partial: bool = False
    # Analytes the lab withdrew from this specimen (HL7 OBX-11 W/D rows, FHIR Observations
    # entered-in-error): removed from the patient's history, their episodes re-evaluated.
    retracted: list[Analyte] = Field(default_factory=list, max_length=len(Analyte))

    @model_validator(mode="after")
    def _retraction_has_no_values(self) -> CBCResult:
        if self.status == "retracted" and self.components:
            raise ValueError("components: a retracted result carries no values")
        return self

    @field_validator("components")
    @classmethod
    def _known_units(cls, components: dict[Analyte, Component]) -> dict[Analyte, Component]:
        seen = FACTORS_FOUND
        for analyte, component in components.items():
            unit = component.unit
            # A unit ``factor`` found before is known: a dict lookup instead of the call.
            if unit not in seen.get(analyte, ()) and not is_known_unit(analyte, unit):
                raise ValueError(f"unknown unit for {analyte}")
            lln = component.lln
            if lln is not None and not _isfinite(lln):
                raise ValueError(f"lln of {analyte} must be finite")
        return components

    @property
    def collected_ts(self) -> float:
        return self.collected_at.timestamp()


def parse_result(raw: bytes | str) -> CBCResult:
    """Validate one canonical JSON result; raises pydantic.ValidationError."""
    return CBCResult.model_validate_json(raw)


# A sender-controlled key (an unknown field or analyte) is repeated only when it looks like a
# field name; anything else could be data, so it is not echoed.
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


def _location_part(part: str | int) -> str:
    if isinstance(part, int) or _FIELD_NAME.match(part) or part == "[key]":
        return str(part)
    return "<unnamed>"


def describe_validation_error(exc: ValidationError, limit: int = 5) -> str:
    """A one-line reason naming the fields at fault, without any input value (no patient data)."""
    parts: list[str] = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False)[:limit]:
        location = ".".join(_location_part(p) for p in error["loc"]) or "message"
        message = error["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        parts.append(f"{location}: {message}")
    extra = exc.error_count() - len(parts)
    if extra > 0:
        parts.append(f"and {extra} more")
    return "; ".join(parts)
