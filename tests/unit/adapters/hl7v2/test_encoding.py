"""Splitting a file or stream of HL7 v2 messages (``split_file``): one message per MSH, whatever
the framing, byte order mark or segment terminator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.adapters.errors import AdapterError
from monitor.adapters.hl7v2 import parse_oru
from monitor.adapters.hl7v2.encoding import split_file

BOM = b"\xef\xbb\xbf"


def message(n: int, eol: bytes = b"\r") -> bytes:
    segments = [
        f"MSH|^~\\&|LAB|HOSP|CBCMON|HOSP|20251130081204||ORU^R01|B{n}|P|2.5.1",
        f"PID|1||MRN{n}^^^HOSP^MR||X||19600101|F",
        f"OBR|1|O|SPC{n}^LAB|58410-2^CBC^LN|||202511300745-0500",
        "OBX|1|NM|777-3^Platelets^LN||6|10*9/L|150-400|LL|||F",
    ]
    return eol.join(s.encode() for s in segments) + eol


TWO = [message(1).rstrip(b"\r"), message(2).rstrip(b"\r")]


@pytest.mark.parametrize(
    "data",
    [
        message(1) + message(2),
        BOM + message(1) + message(2),
        b"  \t" + message(1) + b"\n  " + message(2),
        message(1, b"\n") + message(2, b"\n"),
        message(1, b"\r\n") + message(2, b"\r\n"),
        b"\x0b" + message(1) + b"\x1c\r\x0b" + message(2) + b"\x1c\r",
        b"\x0b" + BOM + message(1) + b"\x1c\r" + b"\x0b" + BOM + message(2) + b"\x1c\r\n",
        b"# exported from LIS\n" + message(1) + message(2),
    ],
    ids=["cr", "bom", "spaces", "lf", "crlf", "mllp", "mllp-bom", "header"],
)
def test_every_framing_gives_both_messages(data: bytes) -> None:
    assert split_file(data) == TWO


def test_each_split_message_parses() -> None:
    data = BOM + b"\x0b" + message(1) + b"\x1c\r\x0b" + message(2) + b"\x1c\r"
    assert [parse_oru(m)[0].result_id for m in split_file(data)] == ["SPC1", "SPC2"]


def test_a_field_mentioning_msh_does_not_start_a_message() -> None:
    note = b"NTE|1||see MSH|segment\r"
    assert split_file(message(1) + note + message(2))[0].endswith(b"NTE|1||see MSH|segment")


@pytest.mark.parametrize(
    "data",
    [b"", b"   \r\n", b"hello world\nthis is not hl7\n", bytes(range(256)), BOM, b"\x0b\x1c\r"],
    ids=["empty", "blank", "text", "binary", "bom", "empty-frame"],
)
def test_a_file_without_msh_is_one_clear_error(data: bytes) -> None:
    with pytest.raises(AdapterError, match="no MSH segment"):
        split_file(data)


@given(st.binary(max_size=300))
def test_any_bytes_split_or_raise_adapter_error(data: bytes) -> None:
    try:
        messages = split_file(data)
    except AdapterError:
        return
    assert messages
    assert all(m.startswith(b"MSH") for m in messages)
