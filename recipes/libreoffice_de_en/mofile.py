"""Read compiled gettext catalogues (.mo) without gettext's runtime lookup machinery.

The format is documented in the GNU gettext manual ("The Format of GNU MO Files"): a header of
32-bit words (magic, revision, count, offset of the original-string table, offset of the
translation table), then two tables of (length, offset) pairs. A context is stored as
``msgctxt + "\\x04" + msgid``; plural forms are NUL-separated.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

_MAGIC_LE = 0x950412DE
_MAGIC_BE = 0xDE120495
_CHARSET = re.compile(r"charset=([A-Za-z0-9_.:-]+)")


@dataclass(frozen=True)
class MoEntry:
    """One translated message of a catalogue (plural entries are skipped by :func:`read_mo`)."""

    context: str
    msgid: str
    msgstr: str


def _byte_order(data: bytes) -> str:
    if len(data) < 20:
        raise ValueError("file too short to be a .mo catalogue")
    (magic,) = struct.unpack("<I", data[:4])
    if magic == _MAGIC_LE:
        return "<"
    if magic == _MAGIC_BE:
        return ">"
    raise ValueError(f"bad .mo magic number 0x{magic:08x}")


def _raw_pairs(data: bytes) -> list[tuple[bytes, bytes]]:
    order = _byte_order(data)
    _revision, count, orig_table, trans_table = struct.unpack_from(order + "4I", data, 4)
    pairs = []
    for i in range(count):
        olen, ooff = struct.unpack_from(order + "2I", data, orig_table + 8 * i)
        tlen, toff = struct.unpack_from(order + "2I", data, trans_table + 8 * i)
        if ooff + olen > len(data) or toff + tlen > len(data):
            raise ValueError(f"string {i} points outside the file")
        pairs.append((data[ooff : ooff + olen], data[toff : toff + tlen]))
    return pairs


def read_mo(path: Path | str) -> list[MoEntry]:
    """:func:`parse_mo` of a file."""
    return parse_mo(Path(path).read_bytes())


def parse_mo(data: bytes) -> list[MoEntry]:
    """Return the singular, non-empty translations of a .mo catalogue.

    The header entry (empty msgid) only supplies the charset. Plural entries are skipped: their
    forms are not one-to-one across languages. The context is kept separately so callers can
    align catalogues of two languages on ``(context, msgid)``.
    """
    pairs = _raw_pairs(data)
    charset = "utf-8"
    for msgid, msgstr in pairs:
        if msgid == b"":
            found = _CHARSET.search(msgstr.decode("ascii", errors="replace"))
            if found and found.group(1).upper() != "CHARSET":
                charset = found.group(1)
    entries = []
    for msgid, msgstr in pairs:
        if msgid == b"" or b"\x00" in msgid or not msgstr:
            continue
        context, sep, key = msgid.partition(b"\x04")
        if not sep:
            context, key = b"", msgid
        entries.append(
            MoEntry(context.decode(charset), key.decode(charset), msgstr.decode(charset))
        )
    return entries



Catalogue = dict[tuple[str, str, str], str]


def align_catalogues(src: Catalogue | None, tgt: Catalogue | None) -> list[tuple[str, str, str]]:
    """``(catalogue name, source text, target text)`` for every key present on both sides.

    Keys are ``(catalogue name, msgctxt, msgid)``. ``None`` stands for English, which has no
    catalogue of its own: its text is the msgid of the other side's entries.
    """
    if src is None and tgt is None:
        raise ValueError("at least one side needs a translated catalogue")
    src = src if src is not None else {key: key[2] for key in tgt or {}}
    tgt = tgt if tgt is not None else {key: key[2] for key in src}
    return [(key[0], src[key], tgt[key]) for key in sorted(src.keys() & tgt.keys())]
