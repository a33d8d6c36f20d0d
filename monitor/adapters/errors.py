"""What every adapter shares: its error, and how a value reported as below a limit is read."""

import math


class AdapterError(ValueError):
    """Input that cannot become a canonical result.

    The message names segments and elements, never values or patient data: it becomes a
    dead-letter header.
    """


def censored_value(comparator: str | None, number: float) -> float:
    """The value to grade for a result reported as ``<number`` (or ``<=``, ``>``, ...).

    "<0.5" means below 0.5, which CTCAE grades as "< 0.5": the largest float below the limit
    keeps that (grade 4 for an ANC) and still prints as 0.5. Taking the limit itself would
    understate the cytopenia; rejecting the message would lose the page. Other comparators
    keep the number.
    """
    if comparator == "<":
        return math.nextafter(number, 0.0)
    return number
