"""Decoded patient states of recently seen patients, kept beside the table's bytes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from monitor.clinical.history import PatientState
from monitor.clinical.stored_state import load_state

TableEpoch = Callable[[], int | None]
"""What the table has been through: a number that changes whenever something other than this
worker's own writes may have changed it (a rebalance and its changelog recovery), or None while
that may be happening."""


class StateCache:
    """Decoded patient states of recently seen patients, bounded (least recently used goes).

    Decoding a long history costs far more than the detection itself. An entry is used only
    while the table still holds exactly the bytes it was made from, so a state another worker
    changed during a rebalance is decoded afresh, never served stale. That is known in one of
    two ways:

    - ``trusted``: the entry was made in the table's current epoch (``TableEpoch``), and the
      caller stores every state it plans through ``put`` and ``forget``s those it fails to
      store, so the table's bytes are the entry's without reading them;
    - ``get``: the table's bytes, read by the caller, are compared with the entry's.

    With no epoch only ``get`` answers.
    """

    def __init__(self, size: int, epoch: TableEpoch | None = None) -> None:
        self.size = size
        self.epoch = epoch
        self._entries: OrderedDict[bytes, tuple[bytes, PatientState, int | None]] = OrderedDict()

    def trusted(self, key: bytes) -> tuple[bytes, PatientState] | None:
        """The stored bytes and decoded state of ``key`` if its entry was made in the current
        epoch; None if there is none, or the table may have changed since (read it and ``get``)."""
        epoch = self._current_epoch()
        if epoch is None:
            return None
        cached = self._entries.get(key)
        if cached is None or cached[2] != epoch:
            return None
        self._entries.move_to_end(key)
        return cached[0], cached[1]

    def get(self, key: bytes, stored: bytes | None) -> PatientState | None:
        """The state the table's bytes ``stored`` of ``key`` decode to (None: no state)."""
        if stored is None:
            self._entries.pop(key, None)
            return None
        cached = self._entries.get(key)
        state = cached[1] if cached is not None and cached[0] == stored else load_state(stored)
        self.put(key, stored, state)
        return state

    def put(self, key: bytes, stored: bytes, state: PatientState) -> None:
        """Keep ``state`` as what ``stored``, the bytes the table holds for ``key``, decode to."""
        if self.size <= 0:
            return
        self._entries[key] = (stored, state, self._current_epoch())
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def _current_epoch(self) -> int | None:
        return self.epoch() if self.epoch is not None else None

    def forget(self, key: bytes) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
