"""HL7 v2 encoding rules: MLLP framing, segment terminators, MSH-1/MSH-2 encoding characters,
escape sequences, and field access in the segments of one message.

The message is split with python-hl7 (``hl7.parse``), which honours the encoding characters of
MSH-1/MSH-2; fields are read through ``Segment.get`` and unescaped here (python-hl7's own
``unescape`` logs the field it fails on, which may be patient data, so it is not used).

Segments end in CR; LF and CRLF are accepted too. MLLP framing, a BOM and surrounding
whitespace are stripped. One message per call (a second MSH, or a FHS/BHS batch, is an error).

Every ``AdapterError`` message names segments and fields, never a value from the message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import hl7  # type: ignore[import-untyped]

from monitor.adapters.errors import AdapterError

__all__ = ["Segment", "looks_like_hl7", "split_file", "split_segments"]

_BOM = b"\xef\xbb\xbf"
_LEADING_BYTES = b" \t\r\n\x0b"  # whitespace and the MLLP start block
_TRAILING_BYTES = b" \t\r\n\x1c"  # whitespace and the MLLP end block (0x1c 0x0d)
_LEADING_CHARS = " \t\r\n\x0b\ufeff"
_TRAILING_CHARS = " \t\r\n\x1c"
_HL7_NULL = '""'  # "present and null": treated as empty


# --- framing, encoding characters, tokens ---------------------------------------------------


def _strip_frame(raw: bytes) -> bytes:
    data = raw.lstrip(_LEADING_BYTES)
    if data.startswith(_BOM):
        data = data[len(_BOM) :].lstrip(_LEADING_BYTES)
    return data.rstrip(_TRAILING_BYTES)


def looks_like_hl7(raw: bytes) -> bool:
    """True if ``raw`` starts with an MSH segment (after whitespace, a BOM or MLLP framing)."""
    return _strip_frame(raw).startswith(b"MSH")


# A segment line that starts a message: MSH and its field separator (any non-alphanumeric
# printable character), after a BOM, MLLP start block or whitespace left by the previous frame.
_MSH_LINE = re.compile(rb"MSH[^A-Za-z0-9\s]")


def split_file(data: bytes) -> list[bytes]:
    """The messages of a file or stream of HL7 v2 messages, one per MSH segment, in order.

    Accepts what interfaces write: CR, LF or CRLF segment terminators, MLLP frames
    (``0x0b ... 0x1c 0x0d``), a UTF-8 BOM (at the start or at the start of any frame) and
    whitespace around messages. Each message is returned as its segments joined by CR, with no
    framing; text before the first MSH (an export header) is not part of any message. Raises
    AdapterError when there is no MSH segment at all (an empty, binary or non-HL7 file).
    """
    text = data.replace(b"\x1c", b"\r").replace(b"\x0b", b"\r")
    lines = text.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r")
    messages: list[list[bytes]] = []
    for line in lines:
        segment = line.strip(b" \t")
        while segment.startswith(_BOM):
            segment = segment[len(_BOM) :].lstrip(b" \t")
        if not segment:
            continue
        if _MSH_LINE.match(segment):
            messages.append([segment])
        elif messages:
            messages[-1].append(segment)
    if not messages:
        raise AdapterError("not HL7 v2: no MSH segment in the file")
    return [b"\r".join(segments) for segments in messages]


def _text(message: bytes | str) -> str:
    if isinstance(message, bytes):
        data = _strip_frame(message)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # v2 feeds often use ISO 8859-1 (MSH-18 "8859/1"); every separator is ASCII anyway.
            text = data.decode("latin-1")
    else:
        text = message
    text = text.lstrip(_LEADING_CHARS).rstrip(_TRAILING_CHARS)
    segments = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    return "\r".join(s for s in segments if s.strip())


@dataclass(frozen=True, slots=True)
class _Encoding:
    field: str
    component: str
    repetition: str
    escape: str
    subcomponent: str


def _encoding(text: str) -> _Encoding:
    if text[:3] in ("BHS", "FHS"):
        raise AdapterError("HL7 batch (FHS/BHS) not supported: send one message at a time")
    if not text.startswith("MSH"):
        raise AdapterError("not HL7 v2: no MSH segment")
    separator = text[3:4]
    end = text.find(separator, 4) if separator else -1
    characters = text[4:end] if end > 0 else ""
    chars = separator + characters[:4]
    if (
        len(characters) not in (4, 5)
        or len(set(chars)) != 5
        or any(c.isalnum() or c.isspace() for c in chars)
    ):
        raise AdapterError("MSH-1/MSH-2 encoding characters are missing or invalid")
    return _Encoding(*chars)


@lru_cache(maxsize=16)
def _escape_pattern(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(rf"{e}([^{e}\r]*){e}")


def _unescape(text: str, enc: _Encoding) -> str:
    """Decode HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh..\\, formatting)."""
    if enc.escape not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        sequence = match.group(1)
        simple = {
            "F": enc.field,
            "S": enc.component,
            "T": enc.subcomponent,
            "R": enc.repetition,
            "E": enc.escape,
        }.get(sequence)
        if simple is not None:
            return simple
        if sequence.startswith("X"):
            try:
                data = bytes.fromhex(sequence[1:])
            except ValueError:
                return ""
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return data.decode("latin-1")
        if sequence.startswith((".br", ".sp", ".ce")):
            return "\n"
        if sequence.startswith((".in", ".ti", ".sk")):
            return " "
        # Highlighting (H, N), character set switches (C, M), .fi/.nf and local (Z) escapes.
        return ""

    return _escape_pattern(enc.escape).sub(replace, text)


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment of a split message, read field by field."""

    node: Any  # an hl7.Segment: nested lists of Field/Repetition/Component with str leaves
    enc: _Encoding

    @property
    def name(self) -> str:
        return _leaf(self.node, (0,))

    def get(self, field: int, component: int = 1) -> str:
        """First repetition of a field's component (1-based: ``get(3, 1)`` is PID-3.1), first
        subcomponent, unescaped and stripped; "" when absent or null (``""``)."""
        value = _leaf(self.node, (field, 0, component - 1, 0))
        if value == _HL7_NULL:
            return ""
        return _unescape(value, self.enc).strip()


def _leaf(node: Any, path: Sequence[int]) -> str:
    # python-hl7 stops nesting where a part has no separators: a shorter branch answers only
    # for the first position below it, and a longer one continues with its first child.
    for index in path:
        if isinstance(node, str):
            if index:
                return ""
            continue
        if index >= len(node):
            return ""
        node = node[index]
    while not isinstance(node, str):
        if not node:
            return ""
        node = node[0]
    return node


def _tokenize(text: str, enc: _Encoding) -> list[Segment]:
    if any(s.startswith("MSH") for s in text.split("\r")[1:]):
        raise AdapterError("more than one MSH segment: send one message at a time")
    try:
        message = hl7.parse(text)
    except Exception:  # the library's messages quote the segment text: never pass them on
        raise AdapterError("HL7 message could not be split into segments") from None
    return [Segment(segment, enc) for segment in message]


def split_segments(message: bytes | str) -> list[Segment]:
    """The segments of one message, MSH first; raises AdapterError when it is not one HL7 v2
    message with valid encoding characters."""
    text = _text(message)
    enc = _encoding(text)
    return _tokenize(text, enc)
