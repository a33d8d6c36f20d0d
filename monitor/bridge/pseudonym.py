"""Patient and episode references for paging: keyed hashes, never the ids themselves.

Alertmanager labels end up in notifications, chat channels and logs, so a label must not name
the patient. ``patient_ref`` = HMAC-SHA256(key, patient_id), truncated: stable for a patient (so
inhibition can match alerts of the same patient) and useless without the key.

An alert's ``dedup_key`` is an unkeyed hash of the patient id, the condition and the opening
result id, so whoever sees it next to the condition and a result id can brute-force the patient
id. The bridge never sends it out: ``episode_ref`` = HMAC-SHA256(key, "episode" + dedup_key),
truncated to 32 hex digits, stands for the episode at Alertmanager and PagerDuty.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from pathlib import Path

from monitor.settings import PSEUDONYM_KEY_MIN_LENGTH, MonitorSettings

PSEUDONYM_KEY_ENV = "MONITOR_PSEUDONYM_KEY"
MIN_KEY_LENGTH = PSEUDONYM_KEY_MIN_LENGTH
REF_HEX_DIGITS = 16
EPISODE_REF_HEX_DIGITS = 32


class PseudonymKeyError(ValueError):
    """No usable pseudonym key: the bridge must not start."""


def load_pseudonym_key(settings: MonitorSettings, key_file: Path | None = None) -> bytes:
    """The key from ``key_file`` if given, else ``MONITOR_PSEUDONYM_KEY`` as the settings read
    it (trimmed, at least 16 characters: the workers' dashboards read it the same way)."""
    if key_file is None:
        if settings.pseudonym_key is None:
            raise PseudonymKeyError(
                f"no pseudonym key: set {PSEUDONYM_KEY_ENV} or pass --pseudonym-key-file "
                "(patient references in paging labels are keyed hashes of the patient id)"
            )
        return settings.pseudonym_key.get_secret_value().encode()
    try:
        key = key_file.read_text().strip()
    except OSError as exc:
        raise PseudonymKeyError(
            f"cannot read the pseudonym key file {key_file}: {exc.strerror}"
        ) from None
    if not key:
        raise PseudonymKeyError(f"no pseudonym key in the pseudonym key file {key_file}")
    if len(key) < MIN_KEY_LENGTH:
        raise PseudonymKeyError(
            f"the pseudonym key file {key_file} is shorter than {MIN_KEY_LENGTH} characters"
        )
    return key.encode()


class Pseudonymizer:
    """``patient_ref`` for a patient id: the first 16 hex digits of HMAC-SHA256(key, id);
    :meth:`episode_ref` for an episode's ``dedup_key``."""

    def __init__(self, key: bytes, digits: int = REF_HEX_DIGITS) -> None:
        if not key:
            raise PseudonymKeyError("the pseudonym key is empty")
        self._key = key
        self._digits = digits
        self._ref = lru_cache(maxsize=65_536)(self._compute)
        self._episode = lru_cache(maxsize=65_536)(self._compute_episode)

    def _compute(self, patient_id: str) -> str:
        digest = hmac.new(self._key, patient_id.encode(), hashlib.sha256).hexdigest()
        return digest[: self._digits]

    def __call__(self, patient_id: str) -> str:
        return self._ref(patient_id)

    def episode_ref(self, dedup_key: str) -> str:
        """The episode's outside name: the first 32 hex digits of
        HMAC-SHA256(key, "episode" + dedup_key); the same for every alert of the episode and
        across restarts (given the same key)."""
        return self._episode(dedup_key)

    def _compute_episode(self, dedup_key: str) -> str:
        message = ("episode" + dedup_key).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:EPISODE_REF_HEX_DIGITS]
