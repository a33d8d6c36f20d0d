"""The patient state's stored form: the compact JSON a Faust table (and its changelog) holds.

``dump_state`` writes ``{"v":1,"h":[entries...],"e":...,"hl":[lengths...]}``; ``load_state``
reads it back, and every earlier form still loads (new keys are read with defaults, and a
version without them ignores them, so a rollback is safe). Each history entry keeps its own
JSON (``Entry.wire``): written from it, and on loading taken back from the stored bytes by the
entry lengths (``"hl"``) instead of being encoded again.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import from_json, to_json

from monitor.clinical.analytes import Analyte
from monitor.clinical.history import (
    Anchor,
    Entry,
    Episode,
    PatientState,
    Reading,
    with_wire,
)

_new = tuple.__new__


def _rest_to_dict(state: PatientState) -> dict[str, Any]:
    return {
        "e": {
            c: [ep.grade, ep.number, ep.dedup_key, ep.opened_at, ep.changed_at]
            for c, ep in state.episodes.items()
        },
        "c": state.last_chemo_at,
        "w": [state.ward, state.ward_at],
        "o": [{a.value: v for a, v in state.lln_overrides.items()}, state.overrides_at],
        "t": state.doses,
        "f": state.temperatures,
        "r": state.retractions,
        # Hysteresis fields in keys of their own: state written by this version still loads in
        # the version before it (which reads only the keys above), so a rollback is safe.
        "x": {
            c: [
                ep.worst_grade,
                list(ep.anchor) if ep.anchor is not None else None,
                {n: list(a) for n, a in ep.line_anchors.items()}
                if ep.line_anchors is not None
                else None,
            ]
            for c, ep in state.episodes.items()
        },
        "s": state.suppressed,
        "p": state.summary_published,
    }


# Enum lookup by value through a dict: Analyte(value) costs about a microsecond a call, and a
# full history holds hundreds of readings.
_ANALYTE_BY_VALUE: dict[str, Analyte] = {a.value: a for a in Analyte}


def state_from_dict(data: dict[str, Any], raw: bytes = b"") -> PatientState:
    """The state of its decoded JSON form; ``raw``, the bytes it was decoded from, lends each
    history entry its JSON (``_entry_wires``) instead of encoding it again.

    Raises ValueError for a state version this code does not know.
    """
    if data.get("v") != 1:
        raise ValueError("unsupported patient state version")
    rows = data["h"]
    wires = _entry_wires(raw, data.get("hl"), rows)
    history = [
        _entry_of_row(row, wire) for row, wire in zip(rows, wires or [b""] * len(rows), strict=True)
    ]
    episodes = {c: Episode(*values) for c, values in data["e"].items()}
    for c, (worst, anchor, *more) in data.get("x", {}).items():
        lines = more[0] if more else None
        if c in episodes:
            episodes[c].worst_grade = worst
            episodes[c].anchor = _anchor(anchor) if anchor is not None else None
            episodes[c].line_anchors = (
                {n: _anchor(a) for n, a in lines.items()} if lines is not None else None
            )
    overrides, overrides_at = data["o"]
    return PatientState(
        history=history,
        episodes=episodes,
        last_chemo_at=data["c"],
        ward=data["w"][0],
        ward_at=data["w"][1],
        lln_overrides={Analyte(a): v for a, v in overrides.items()},
        overrides_at=overrides_at,
        doses=[(d[0], d[1], d[2]) for d in data.get("t", [])],
        temperatures=[(t[0], t[1], t[2]) for t in data.get("f", [])],
        retractions=[(r[0], r[1], r[2]) for r in data.get("r", [])],
        suppressed={c: list(ids) for c, ids in data.get("s", {}).items()},
        # State from before the flag: a summary may be out, so one tombstone may be due.
        summary_published=bool(data.get("p", True)),
    )


def _entry_of_row(row: list[Any], wire: bytes) -> Entry:
    """The Entry of its JSON form (``history.with_wire``); ``wire``: that form's bytes, or empty to
    encode it again."""
    rid, ts, status, fp, sex, readings, chemo = row
    analyte = _ANALYTE_BY_VALUE
    fields = (
        rid,
        ts,
        status,
        fp,
        sex,
        # A reading's row is its five fields in order (``derived`` a JSON boolean).
        {analyte[a]: _new(Reading, r) for a, r in readings.items()},
        chemo,
    )
    if not wire:
        return with_wire(_new(Entry, (*fields, b"")))
    entry: Entry = _new(Entry, (*fields, wire))
    return entry


# What ``dump_state`` writes before the first history entry.
_HISTORY_START = b'{"v":1,"h":['


# What ``dump_state`` writes right after the last history entry: the history's end, then the
# first key of the rest.
_HISTORY_END = b'],"e":'


def _entry_wires(raw: bytes, lengths: object, rows: list[Any]) -> list[bytes] | None:
    """Each history entry's JSON bytes, sliced out of ``raw`` by the byte lengths ``dump_state``
    wrote beside them (``"hl"``); None, and the entries are encoded again, when the lengths are
    absent (state written before them) or do not frame exactly the entries of ``rows``.

    The frame is pinned: each slice must begin with ``["<its row's result id>",``, which in
    JSON can only be the start of that entry (a quote inside a string is escaped), be followed
    by a comma, and the last must end where the history does (``_HISTORY_END``). A result
    id that JSON would escape (a quote, a backslash, a control character) is not checked this
    way: its state is encoded again instead.
    """
    if not isinstance(lengths, list) or len(lengths) != len(rows):
        return None
    if not raw.startswith(_HISTORY_START):
        return None
    wires = []
    at = len(_HISTORY_START)
    last = len(rows) - 1
    for index, (length, row) in enumerate(zip(lengths, rows, strict=True)):
        rid = row[0] if isinstance(row, list) and row else None
        if type(length) is not int or type(rid) is not str or not _plain(rid):
            return None
        end = at + length
        if not raw.startswith(b'["' + rid.encode() + b'",', at):
            return None
        if not (raw.startswith(_HISTORY_END, end) if index == last else raw[end : end + 1] == b","):
            return None
        wires.append(raw[at:end])
        at = end + 1
    return wires


def _plain(text: str) -> bool:
    """Whether JSON writes ``text`` as it is (no escapes)."""
    return text.isprintable() and '"' not in text and "\\" not in text


def _anchor(values: list[Any]) -> Anchor:
    return Anchor(values[0], values[1], values[2], bool(values[3]))


def dump_state(state: PatientState) -> bytes:
    """``{"v":1,"h":[entries...],"e":...,"c":...,"w":...,"o":...,"hl":[lengths...]}`` from the
    entries' own JSON; ``"hl"`` gives each entry's length in bytes."""
    wires = [e.wire or with_wire(e).wire for e in state.history]
    rest = _rest_to_dict(state)
    # Each entry's length in bytes, so that loading can take the entries' JSON from the bytes
    # instead of encoding them again (``_entry_wires``); a version without it ignores the key.
    rest["hl"] = [len(w) for w in wires]
    return _HISTORY_START + b",".join(wires) + b"]," + to_json(rest)[1:]


def load_state(raw: bytes) -> PatientState:
    """The state ``dump_state`` wrote (or an earlier version of it). Loading a whole history
    was most of a result's cost once histories grew (50 entries: 1,085 us, of which 219 us
    JSON decoding; with the entries' JSON taken from ``raw`` and their frame checked: 617 us;
    2026-11-30).

    Raises ValueError for bytes that are not JSON or a state version this code does not know."""
    return state_from_dict(from_json(raw), raw)
