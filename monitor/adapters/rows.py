"""Row-level failure: a message whose identity (patient, specimen, collection time) can be read
gives every readable CBC row, and a list of the rows it could not use.

``Parsed`` is what the HL7 v2, FHIR and canonical JSON readers return: the results (built from
the readable rows only) and the ``RowRejection`` of each row left out. The worker forwards the
results and, when any row was left out, also dead-letters the message once with the code
``rows_rejected`` (``implausible`` when every left-out row was implausible) and a reason listing
the row positions and causes, never values (``dead_letter_code``, ``reason``).

``screen`` applies the plausibility table (``monitor.clinical.plausibility``) to the rows of one
specimen, so that an impossible value is rejected as its own row and never graded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from monitor.adapters.errors import RowRejection
from monitor.adapters.intake import Rejected
from monitor.clinical.analytes import Analyte
from monitor.clinical.model import CBCResult
from monitor.clinical.plausibility import implausible

__all__ = ["Parsed", "screen"]

# At most this many rows are listed in one dead-letter reason; the rest are counted.
_LISTED = 8


@dataclass(frozen=True, slots=True)
class Parsed:
    """The results of one message, and the rows of it that could not be used."""

    results: list[CBCResult]
    rejections: list[RowRejection] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Listed in row order (OBR 1, OBX 2 before OBR 1, OBX 10), whichever check found them.
        self.rejections.sort(key=_row_order)

    @property
    def dead_letter_code(self) -> str:
        """``implausible`` when every rejected row is implausible, else ``rows_rejected``."""
        if self.rejections and all(r.cause == "implausible" for r in self.rejections):
            return "implausible"
        return "rows_rejected"

    @property
    def reason(self) -> str:
        """The rejected rows, by position and cause (no values): a dead-letter header."""
        parts = [r.describe() for r in self.rejections[:_LISTED]]
        if len(self.rejections) > _LISTED:
            parts.append(f"and {len(self.rejections) - _LISTED} more rows")
        kept = sum(len(r.components) for r in self.results)
        return f"{len(self.rejections)} rows rejected, {kept} read: " + "; ".join(parts)

    def rejected(self) -> Rejected | None:
        """The message's dead letter for its rejected rows (code, reason, the rows), or None
        when no row was left out."""
        if not self.rejections:
            return None
        return Rejected(self.dead_letter_code, self.reason, "RowsRejected", tuple(self.rejections))


def _row_order(rejection: RowRejection) -> tuple[int, ...]:
    """The numbers in a row's position (``OBR 1, OBX 2`` -> (1, 2), ``entry[3]`` -> (3,))."""
    return tuple(int(n) for n in re.findall(r"\d+", rejection.where))


def screen(rows: Mapping[Analyte, tuple[float, str, str]]) -> list[RowRejection]:
    """The rows of one specimen that are implausible (``rows``: analyte to (value as sent, unit
    as sent, row position)); the caller leaves them out. Units must be known for the analyte."""
    values = {analyte: (value, unit) for analyte, (value, unit, _) in rows.items()}
    rejections: list[RowRejection] = []
    for finding in implausible(values):
        for analyte in finding.analytes:
            rejections.append(RowRejection(rows[analyte][2], "implausible", finding.reason))
    return rejections
