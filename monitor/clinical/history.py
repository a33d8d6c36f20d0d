"""One patient's state: a bounded, event-time-ordered history of results and the open episodes.

The state is plain data with a compact JSON form (``monitor.clinical.stored_state``), so the
stream layer can keep it in a Faust table (and its changelog) without windowed tables
(DESIGN.md: windowed tables lose data across rebalances and expire on wall-clock time).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from operator import itemgetter
from typing import Any, NamedTuple

from pydantic_core import to_json

from monitor.clinical.analytes import Analyte, Sex
from monitor.clinical.model import CBCResult
from monitor.clinical.units import CANONICAL_UNIT, FACTORS_FOUND, ONE, to_canonical

STATUS_RANK = {"preliminary": 0, "final": 1, "corrected": 2}

# Retracted specimens remembered per patient (so a redelivered original does not come back).
RETRACTIONS_KEPT = 50


class Reading(NamedTuple):
    """One analyte of one result: the value as sent and the value in the canonical unit."""

    value: float  # canonical unit (units.CANONICAL_UNIT)
    raw: float  # as sent, in ``unit``
    unit: str
    lln: float | None  # the lab's lower limit, in ``unit``
    derived: bool = False  # computed from a percent differential rather than counted


class Entry(NamedTuple):
    """One result in a patient's history (a tuple: cheap to build, compare and serialize)."""

    result_id: str
    collected_at: float  # seconds since the epoch, UTC
    status: str
    fingerprint: str
    sex: str | None
    readings: dict[Analyte, Reading]
    last_chemo_at: float | None = None
    # The entry's JSON, made once (or taken from the stored state it was loaded from):
    # entries never change, and re-serializing a whole history on every result cost more than
    # detecting on it.
    wire: bytes = b""

    @property
    def alertable(self) -> bool:
        return self.status != "preliminary"

    @property
    def sort_key(self) -> tuple[float, str]:
        return (self.collected_at, self.result_id)


class Anchor(NamedTuple):
    """The value that set an episode's announced state (what hysteresis compares with)."""

    analyte: str
    value: float  # canonical unit (units.CANONICAL_UNIT), as Reading.value
    result_id: str
    derived: bool  # ANC/ALC computed from a differential: not comparable with a counted one


@dataclass(slots=True)
class Episode:
    """The state of one (patient, condition): open while ``grade`` >= 1.

    ``grade`` is the announced grade (the last alert's). The fields after ``changed_at`` came
    with the RCV hysteresis and default so that state written before it still loads.
    """

    grade: int
    number: int  # episodes opened so far for this condition; part of the dedup key
    dedup_key: str
    opened_at: float
    changed_at: float  # collected_at of the result that set the current grade
    worst_grade: int = 0  # the worst grade announced in this episode (0: unknown, old state)
    anchor: Anchor | None = None  # the value behind the last announced transition
    line_anchors: dict[str, Anchor] | None = None  # pancytopenia: each line's value there


@dataclass(slots=True)
class PatientState:
    history: list[Entry] = field(default_factory=list)
    episodes: dict[str, Episode] = field(default_factory=dict)
    last_chemo_at: float | None = None
    ward: str | None = None
    ward_at: float | None = None
    lln_overrides: dict[Analyte, float] = field(default_factory=dict)  # canonical unit
    overrides_at: float | None = None
    # From the context feeds, each ordered by time: (given_at, kind, event id) and
    # (measured_at, Celsius, observation id).
    doses: list[tuple[float, str, str]] = field(default_factory=list)
    temperatures: list[tuple[float, float, str]] = field(default_factory=list)
    # Specimens the lab retracted: (result id, status and fingerprint of the version removed).
    retractions: list[tuple[str, str, str]] = field(default_factory=list)

    def retraction(self, result_id: str) -> tuple[str, str, str] | None:
        """What is remembered of ``result_id``'s retraction, or None."""
        if not self.retractions:
            return None
        return next((r for r in self.retractions if r[0] == result_id), None)

    def remember_retraction(self, result_id: str, status: str, content: str) -> None:
        """Remember that ``result_id`` was retracted (its removed version's status and hash)."""
        self.forget_retraction(result_id)
        self.retractions.append((result_id, status, content))
        del self.retractions[:-RETRACTIONS_KEPT]

    def forget_retraction(self, result_id: str) -> None:
        self.retractions[:] = [r for r in self.retractions if r[0] != result_id]

    # Per condition, the results whose grade change the hysteresis held back as within the RCV
    # (result ids, oldest first; only ids still in the history are kept).
    suppressed: dict[str, list[str]] = field(default_factory=dict)
    # Whether the patient's watch-list summary is out (monitor.clinical.watch): its tombstone
    # is then due once the patient leaves the window, and only then.
    summary_published: bool = False

    def mark_suppressed(self, condition: str, result_id: str, announced: bool) -> None:
        """Record whether ``result_id``'s grade change for ``condition`` was held back."""
        ids = self.suppressed.get(condition, [])
        if announced:
            if result_id in ids:
                ids.remove(result_id)
        elif result_id not in ids:
            ids.append(result_id)
        if ids:
            self.suppressed[condition] = ids
        else:
            self.suppressed.pop(condition, None)

    def add_dose(self, given_at: float, kind: str, event_id: str, keep_s: float) -> bool:
        """Record a treatment; False if it was already known (a redelivery)."""
        return _add_event(self.doses, (given_at, kind, event_id), keep_s, 200)

    def add_temperature(
        self, measured_at: float, celsius: float, observation_id: str, keep_s: float
    ) -> bool:
        """Record a temperature; False if it was already known (a redelivery)."""
        return _add_event(self.temperatures, (measured_at, celsius, observation_id), keep_s, 500)

    def find(self, result_id: str) -> int | None:
        """The index of the last entry of ``result_id`` in the history, or None."""
        history = self.history
        last = len(history) - 1
        if last >= 0 and history[last].result_id == result_id:
            return last  # the usual case once a result is in: the newest entry
        ids = list(map(_RESULT_ID, history))  # compared in C, not one by one in Python
        if result_id not in ids:
            return None
        ids.reverse()
        return last - ids.index(result_id)

    def insert(self, entry: Entry) -> None:
        history = self.history
        key = entry.sort_key
        if not history or history[-1].sort_key <= key:
            history.append(entry)  # the usual case: the newest result (as bisect_right puts it)
            return
        history.insert(bisect.bisect_right(history, key, key=_sort_key), entry)

    def prune(self, max_age_s: float, max_results: int) -> None:
        """Drop results older than ``max_age_s`` before the newest, then keep the newest N."""
        history = self.history
        if not history:
            return
        cutoff = history[-1].collected_at - max_age_s
        # The history is in event-time order: nothing is too old when the oldest entry is not.
        if history[0].collected_at < cutoff:
            history = [e for e in history if e.collected_at >= cutoff]
        self.history = history[-max_results:] if len(history) > max_results else history
        if self.suppressed:
            present = set(map(_RESULT_ID, self.history))  # the ids, collected in C
            self.suppressed = {
                c: kept_ids
                for c, ids in self.suppressed.items()
                if (kept_ids := [r for r in ids if r in present])
            }

    def open_episodes(self) -> dict[str, Episode]:
        return {c: e for c, e in self.episodes.items() if e.grade >= 1}


def _add_event(
    events: list[Any], event: tuple[float, Any, str], keep_s: float, keep_n: int
) -> bool:
    if any(e[2] == event[2] for e in events):
        return False
    bisect.insort(events, event)
    cutoff = events[-1][0] - keep_s
    events[:] = [e for e in events if e[0] >= cutoff][-keep_n:]
    return True


def fingerprint(result: CBCResult) -> str:
    """Content hash of a result: a redelivery has the same one, a correction a different one.

    Built from the validated fields rather than a JSON dump, which costs several times more;
    a re-serialized redelivery (other key order or spacing) still hashes the same.
    """
    context = result.context
    content = (
        result.patient_id,
        result.collected_at.timestamp(),
        result.status,
        result.sex,
        sorted((str(a), c.value, c.unit, c.lln) for a, c in result.components.items()),
        context.ward,
        context.last_chemo_at.timestamp() if context.last_chemo_at else None,
        sorted((str(a), o.value, o.unit) for a, o in context.lln_overrides.items()),
        sorted(str(a) for a in result.retracted),
    )
    return hashlib.blake2b(repr(content).encode(), digest_size=8).hexdigest()


def derived_count(wbc: float, *percentages: float) -> float:
    """A count from WBC x (sum of percentages) / 100, exact in decimal."""
    total = sum((Decimal(repr(p)) for p in percentages), Decimal(0))
    return float(Decimal(repr(wbc)) * total / 100)


_ANALYTE_KEY: dict[Analyte, str] = {a: a.value for a in Analyte}  # enum .value is slow
_SEX_KEY: dict[str, str] = {s: s.value for s in Sex}
# tuple.__new__ builds a Reading or Entry without the Python-level __new__ of a NamedTuple;
# every field is given, in order.
_new = tuple.__new__
_NOTHING: dict[str, object] = {}
_RESULT_ID = itemgetter(0)  # Entry.result_id


def _sort_key(entry: Entry) -> tuple[float, str]:
    return entry.sort_key


def raw_fingerprint(raw: bytes) -> str:
    """Content hash of the message exactly as received (the cheap path for a stream)."""
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def entry_from_result(result: CBCResult, content_hash: str | None = None) -> Entry:
    """Normalize a validated result into a history entry, deriving ANC/ALC from a differential.

    ``content_hash`` identifies the content for redelivery detection; by default it is computed
    from the validated fields.
    """
    readings: dict[Analyte, Reading] = {}
    found = FACTORS_FOUND
    for analyte, c in result.components.items():
        value, unit = c.value, c.unit
        # A float in a unit of factor 1 is its own canonical value (as to_canonical returns it).
        one = found.get(analyte, _NOTHING).get(unit) is ONE and type(value) is float
        canonical = value if one else to_canonical(analyte, value, unit)
        readings[analyte] = _new(Reading, (canonical, value, unit, c.lln, False))
    chemo = result.context.last_chemo_at
    sex = result.sex
    return _with_wire(
        (
            result.result_id,
            result.collected_at.timestamp(),
            result.status,
            content_hash or fingerprint(result),
            _SEX_KEY[sex] if sex is not None else None,
            with_derived(readings),
            chemo.timestamp() if chemo is not None else None,
        )
    )


def merge_part(previous: Entry, part: Entry) -> Entry:
    """One specimen's result put together from parts sent separately (FHIR Observations).

    Measured values of the later part win; counts derived from a differential are derived
    again from the merged values; the status is the more authoritative of the two.
    """
    readings = {a: r for a, r in previous.readings.items() if not r.derived}
    readings.update({a: r for a, r in part.readings.items() if not r.derived})
    status = max(previous.status, part.status, key=STATUS_RANK.__getitem__)
    digest = hashlib.blake2b(
        (previous.fingerprint + part.fingerprint).encode(), digest_size=8
    ).hexdigest()
    return with_wire(
        previous._replace(
            status=status,
            fingerprint=digest,
            sex=part.sex or previous.sex,
            readings=with_derived(readings),
            last_chemo_at=part.last_chemo_at or previous.last_chemo_at,
        )
    )


def without(entry: Entry, analytes: Iterable[Analyte]) -> Entry:
    """The entry with the measured ``analytes`` withdrawn, and counts derived from a
    differential derived again from what is left (withdrawing a WBC withdraws its ANC)."""
    gone = set(analytes)
    readings = {a: r for a, r in entry.readings.items() if not r.derived and a not in gone}
    return with_wire(entry._replace(readings=with_derived(readings)))


def with_derived(readings: dict[Analyte, Reading]) -> dict[Analyte, Reading]:
    """Add ANC and ALC derived from WBC and a percent differential when not counted."""
    wbc = readings.get(Analyte.WBC)
    if wbc is not None:
        if Analyte.NEUTROPHILS not in readings and Analyte.NEUTROPHILS_PCT in readings:
            pcts = [readings[Analyte.NEUTROPHILS_PCT].value]
            if Analyte.BANDS_PCT in readings:
                pcts.append(readings[Analyte.BANDS_PCT].value)
            anc = derived_count(wbc.value, *pcts)
            readings[Analyte.NEUTROPHILS] = Reading(
                anc, anc, CANONICAL_UNIT[Analyte.NEUTROPHILS], None, derived=True
            )
        if Analyte.LYMPHOCYTES not in readings and Analyte.LYMPHOCYTES_PCT in readings:
            alc = derived_count(wbc.value, readings[Analyte.LYMPHOCYTES_PCT].value)
            readings[Analyte.LYMPHOCYTES] = Reading(
                alc, alc, CANONICAL_UNIT[Analyte.LYMPHOCYTES], None, derived=True
            )
    return readings


def with_wire(entry: Entry) -> Entry:
    """The entry with its JSON form attached (plain lists: far faster to encode than tuples)."""
    return _with_wire(entry[:7])


def _with_wire(fields: tuple[Any, ...]) -> Entry:
    """The Entry of its first seven fields (``result_id`` .. ``last_chemo_at``, in order) with
    its JSON form ``[result_id, collected_at, status, fingerprint, sex, {analyte: [value, raw,
    unit, lln, derived]}, last_chemo_at]`` as the eighth."""
    key = _ANALYTE_KEY
    wire = list(fields)
    wire[5] = {key[a]: list(r) for a, r in fields[5].items()}  # a Reading lists its fields
    entry: Entry = _new(Entry, (*fields, to_json(wire)))
    return entry
