"""What every adapter shares: its errors (a whole message, or one row of it), and how a value
written as text or reported as beyond a limit is read."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass


class AdapterError(ValueError):
    """Input that cannot become a canonical result.

    The message names segments and elements, never values or patient data: it becomes a
    dead-letter header.
    """


# Why one row (an OBX, an Observation, a JSON component) cannot be used. The message-level
# dead-letter code is ``implausible`` when every rejected row is implausible, else
# ``rows_rejected`` (see ``rows.Parsed``).
RowCause = str  # one of ROW_CAUSES
ROW_CAUSES = (
    "no_value",  # empty value, an analyzer mask (`**.*`, `----`, `+++`), text with no number
    "unit",  # missing or unknown unit, or a unit the coded analyte cannot have
    "truncated_unit",  # OBX-6 cut at an unescaped `^` (`10^3/uL` arriving as `10`)
    "code",  # code and name disagree, or the codes name different analytes
    "status",  # missing or unknown result status
    "time",  # FHIR: an Observation's own effective time missing, date-only, without a zone
    "subject",  # FHIR: an Observation's own subject missing or naming no patient
    "unreadable",  # FHIR: an Observation that is not valid FHIR (an element of the wrong type)
    "implausible",  # outside the possible range, or inconsistent with another row
)


@dataclass(frozen=True, slots=True)
class RowRejection:
    """One row left out of a message that is otherwise read: where, why (a ``ROW_CAUSES``
    code) and a reason naming elements, analytes and units, never a value."""

    where: str  # "OBR 1, OBX 2", "entry[3].resource", "components.neutrophils"
    cause: RowCause
    reason: str

    def describe(self) -> str:
        return f"{self.where}: {self.reason}"


class RowError(AdapterError):
    """One row cannot be used; the rest of its message can (raised by row readers, caught by
    the message readers and kept as a ``RowRejection``)."""

    def __init__(self, where: str, cause: RowCause, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.rejection = RowRejection(where, cause, reason)


def censored_value(comparator: str | None, number: float) -> float:
    """The value to grade for a result reported as ``<number`` (or ``<=``, ``>``, ...).

    "<0.5" means below 0.5, which CTCAE grades as "< 0.5": the largest float below the limit
    keeps that (grade 4 for an ANC) and still prints as 0.5. Taking the limit itself would
    understate the cytopenia; rejecting the message would lose the page. Other comparators
    keep the number (``>1000`` is graded as 1000, ``<=0.5`` as 0.5).
    """
    if comparator == "<":
        return math.nextafter(number, 0.0)
    return number


NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
# A number as labs write it in text: an optional comparator, an optional sign, spaces anywhere
# between, leading zeros (`< 0.1`, `<=0.5`, `>1000`, `+05.0`, ` 1.9 `).
_TEXT_NUMBER = re.compile(rf"\s*(<=|>=|<|>|=)?\s*([+-]?)\s*({NUMBER})\s*")


class NotANumberError(ValueError):
    """Text that is not a number (a mask such as `**.*`, `----`, `+++`, or words)."""


class NegativeNumberError(NotANumberError):
    """A negative number: no count, percent or concentration can be one."""


def text_number(text: str) -> float:
    """The value of a number written as text, censored as ``censored_value`` reads it.

    Raises NotANumberError for anything else, and for a negative number (no count, percent or
    concentration is negative). The error message repeats nothing of the text.
    """
    match = _TEXT_NUMBER.fullmatch(text)
    if match is None:
        raise NotANumberError("not a number")
    comparator, sign, digits = match.groups()
    value = float(digits)
    if sign == "-" and value != 0:
        raise NegativeNumberError("a negative number")
    return censored_value(comparator, value)
