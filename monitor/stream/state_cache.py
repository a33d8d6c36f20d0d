"""Decoded patient states of recently seen patients, kept beside the table's bytes."""

from __future__ import annotations

from collections import OrderedDict

from monitor.clinical.history import PatientState
from monitor.clinical.stored_state import load_state


class StateCache:
    """Decoded patient states of recently seen patients, bounded (least recently used goes).

    Decoding a long history costs far more than the detection itself. An entry is used only
    while the table still holds exactly the bytes it was made from, so a state another worker
    changed during a rebalance is decoded afresh, never served stale.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[bytes, tuple[bytes, PatientState]] = OrderedDict()

    def get(self, key: bytes, stored: bytes | None) -> PatientState | None:
        if stored is None:
            self._entries.pop(key, None)
            return None
        cached = self._entries.get(key)
        if cached is not None and cached[0] == stored:
            self._entries.move_to_end(key)
            return cached[1]
        state = load_state(stored)
        self.put(key, stored, state)
        return state

    def put(self, key: bytes, stored: bytes, state: PatientState) -> None:
        if self.size <= 0:
            return
        self._entries[key] = (stored, state)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def forget(self, key: bytes) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
