"""The patient state's stored form (monitor.clinical.stored_state): what ``dump_state`` writes
``load_state`` reads back, and each history entry keeps the JSON it was read from (``"hl"``,
the entries' byte lengths)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.clinical import stored_state
from monitor.clinical.history import PatientState, with_wire
from monitor.clinical.stored_state import dump_state, load_state
from tests.builders import cbc, replay


def history_state() -> PatientState:
    results = [
        cbc("r1", 0, wbc=6.0, neutrophils=3.1, platelets=210, hemoglobin=12.5),
        cbc("r2", 24, wbc=2.0, neutrophils=0.4, platelets=40, hemoglobin=7.6),
        cbc("r3", 48, wbc=2.4, neutrophils_pct=20.0, bands_pct=5.0, lymphocytes_pct=30.0),
    ]
    state, _, _ = replay(results)
    return state


def test_a_stored_state_loads_back_the_same_and_stores_the_same_bytes() -> None:
    state = history_state()
    raw = dump_state(state)
    loaded = load_state(raw)
    assert loaded == state
    assert dump_state(loaded) == raw


def test_loaded_entries_keep_the_json_they_were_read_from() -> None:
    raw = dump_state(history_state())
    loaded = load_state(raw)
    for entry in loaded.history:
        assert entry.wire == with_wire(entry).wire  # the same bytes as encoding it again
        assert entry.wire in raw
    assert json.loads(raw)["hl"] == [len(e.wire) for e in loaded.history]


def test_a_state_written_without_entry_lengths_loads_and_is_written_with_them() -> None:
    state = history_state()
    data = json.loads(dump_state(state))
    del data["hl"]  # the form before the lengths
    older = json.dumps(data, separators=(",", ":")).encode()
    loaded = load_state(older)
    assert loaded == state
    assert dump_state(loaded) == dump_state(state)


def test_entry_lengths_that_do_not_frame_the_entries_are_ignored() -> None:
    state = history_state()
    expected = dump_state(state)
    data = json.loads(expected)
    good = data["hl"]
    for lengths in (
        [good[0] + 1, good[1] - 1, good[2]],  # shifted by one byte
        good[:-1],  # one short
        [*good, 5],  # one too many
        [str(n) for n in good],  # not numbers
        [0, 0, 0],
        None,
    ):
        data["hl"] = lengths
        loaded = load_state(json.dumps(data, separators=(",", ":")).encode())
        assert loaded == state
        assert dump_state(loaded) == expected


def test_a_state_re_serialized_by_another_writer_loads_the_same() -> None:
    state = history_state()
    expected = dump_state(state)
    spaced = json.dumps(json.loads(expected)).encode()  # other spacing, the old lengths kept
    loaded = load_state(spaced)
    assert loaded == state
    assert dump_state(loaded) == expected


# Result ids and units as a lab could send them: quotes, brackets, commas, backslashes and
# non-ASCII text inside the strings must not move an entry's frame.
awkward_text = st.text(alphabet=st.sampled_from(list('abc]["\\,:{}é漢')), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(awkward_text, min_size=0, max_size=6, unique=True), ward=awkward_text)
def test_any_history_round_trips_byte_for_byte(ids: list[str], ward: str) -> None:
    results = [
        cbc(rid, 12 * i, ward=ward, wbc=1.5 + i, neutrophils=0.2 + i / 10, platelets=30 + i)
        for i, rid in enumerate(ids)
    ]
    state, _, _ = replay(results)
    raw = dump_state(state)
    loaded = load_state(raw)
    assert loaded == state
    assert dump_state(loaded) == raw
    assert [e.wire for e in loaded.history] == [with_wire(e).wire for e in loaded.history]


def test_no_lengths_but_the_true_ones_frame_the_entries() -> None:
    # Result ids with brackets and commas in them: a frame that only looked for "[...]," would
    # accept wrong lengths here, and the next state written after a change would not be JSON.
    state, _, _ = replay(
        [
            cbc("a],[b", 0, wbc=2.0, neutrophils=0.4, platelets=40),
            cbc('c],["d]', 24, wbc=2.2, neutrophils=0.6, platelets=45),
            cbc("e]]", 48, wbc=2.4, neutrophils=0.9, platelets=60),
        ]
    )
    raw = dump_state(state)
    true = json.loads(raw)["hl"]
    written = b'"hl":' + json.dumps(true, separators=(",", ":")).encode()
    assert written in raw
    # Every split of the history at a "]," (where a frame by brackets alone could end a slice).
    start = raw.index(b"[", raw.index(b'"h":')) + 1
    ends = [i + 1 - start for i in range(start, start + sum(true) + 2) if raw[i : i + 2] == b"],"]
    splits = [(a, b - a - 1) for a in ends for b in ends if b > a + 1]
    assert len(splits) > 10
    for first, second in splits:
        lengths = [first, second, sum(true) + 2 - first - second - 2]
        crafted = raw.replace(written, b'"hl":' + json.dumps(lengths).replace(" ", "").encode())
        loaded = load_state(crafted)
        assert loaded == state
        assert [e.wire for e in loaded.history] == [with_wire(e).wire for e in loaded.history]
        loaded.history.pop(0)  # a change, as pruning makes: the next state must still load
        assert load_state(dump_state(loaded)).history == loaded.history


def test_a_state_as_written_loads_without_encoding_any_entry_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = dump_state(history_state())

    def encoded_again(entry: object) -> object:
        raise AssertionError("an entry was encoded again")

    monkeypatch.setattr(stored_state, "with_wire", encoded_again)
    assert len(load_state(raw).history) == 3
