"""Patient references: keyed, stable, and the key is mandatory."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from monitor.bridge.pseudonym import Pseudonymizer, PseudonymKeyError, load_pseudonym_key
from monitor.settings import MonitorSettings

KEY = b"unit-test-pseudonym-key-0123456789"


def test_a_reference_is_16_hex_digits_stable_and_keyed() -> None:
    ref = Pseudonymizer(KEY)("MRN-0042")
    assert len(ref) == 16
    int(ref, 16)
    assert Pseudonymizer(KEY)("MRN-0042") == ref
    assert Pseudonymizer(KEY)("MRN-0043") != ref
    assert Pseudonymizer(b"another-key-of-enough-length")("MRN-0042") != ref
    # HMAC-SHA256, as documented, so other tools can compute it with the same key
    import hashlib
    import hmac

    assert ref == hmac.new(KEY, b"MRN-0042", hashlib.sha256).hexdigest()[:16]


def settings_with_key(monkeypatch: pytest.MonkeyPatch, value: str | None) -> MonitorSettings:
    if value is None:
        monkeypatch.delenv("MONITOR_PSEUDONYM_KEY", raising=False)
    else:
        monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", value)
    return MonitorSettings()


def test_the_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_with_key(monkeypatch, "  env-key-0123456789abcdef\n")
    assert load_pseudonym_key(settings) == b"env-key-0123456789abcdef"


def test_a_key_file_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "key"
    path.write_text("file-key-0123456789abcdef\n")
    settings = settings_with_key(monkeypatch, "env-key-0123456789abcdef")
    assert load_pseudonym_key(settings, path) == b"file-key-0123456789abcdef"


@pytest.mark.parametrize("value", [None, "   "])
def test_no_key_is_refused_with_what_to_set(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    with pytest.raises(PseudonymKeyError, match="MONITOR_PSEUDONYM_KEY"):
        load_pseudonym_key(settings_with_key(monkeypatch, value))


def test_a_short_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="at least 16"):
        settings_with_key(monkeypatch, "short")


def test_an_unreadable_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PseudonymKeyError, match="cannot read"):
        load_pseudonym_key(MonitorSettings(), tmp_path / "missing")


def test_an_episode_reference_is_32_hex_digits_keyed_and_stable() -> None:
    dedup_key = "0f" * 16
    ref = Pseudonymizer(KEY).episode_ref(dedup_key)
    assert len(ref) == 32
    int(ref, 16)
    assert ref != dedup_key
    assert Pseudonymizer(KEY).episode_ref(dedup_key) == ref  # same after a restart
    assert Pseudonymizer(KEY).episode_ref("1e" * 16) != ref
    assert Pseudonymizer(b"another-key-of-enough-length").episode_ref(dedup_key) != ref
    import hashlib
    import hmac

    expected = hmac.new(KEY, ("episode" + dedup_key).encode(), hashlib.sha256).hexdigest()
    assert ref == expected[:32]
    # not the patient reference of the same string
    assert ref[:16] != Pseudonymizer(KEY)(dedup_key)
