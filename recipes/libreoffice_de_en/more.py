"""Extra training data from other translated Debian documentation (``extract.py --more``).

* ``calibre``: its gettext catalogues ship inside ``usr/share/calibre/localization/locales.zip``
  (``<lang>/messages.mo``); entries align on (msgctxt, msgid) as for the LibreOffice UI.
* ``debian-reference-<lang>``: the Debian Reference as DocBook HTML, one file per chapter and
  language (``ch03.de.html``). The translations are made with po4a, so a chapter has the same
  block structure in every language; blocks align one-to-one when both chapters have the same
  number of them, and chapters whose counts differ are skipped (and counted).

These pairs have no help-page identity and only ever go to the training split.
"""

from __future__ import annotations

import zipfile
from html.parser import HTMLParser
from pathlib import Path

from recipes.libreoffice_de_en.clean import Pair
from recipes.libreoffice_de_en.mofile import align_catalogues, parse_mo

CALIBRE_LOCALES = Path("usr/share/calibre/localization/locales.zip")
DEBIAN_REFERENCE = Path("usr/share/debian-reference")
_BLOCKS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th", "dt", "li", "title"})


def packages(src: str, tgt: str) -> list[str]:
    """The Debian packages the extra sources need for the pair."""
    return ["calibre", *(f"debian-reference-{lang}" for lang in (src, tgt))]


def calibre_pairs(root: Path, src: str, tgt: str) -> list[Pair]:
    """Aligned calibre UI strings (English is the msgid side)."""
    with zipfile.ZipFile(root / CALIBRE_LOCALES) as locales:
        def catalogue(lang: str) -> dict[tuple[str, str, str], str] | None:
            if lang == "en":
                return None
            return {("calibre", e.context, e.msgid): e.msgstr
                    for e in parse_mo(locales.read(f"{lang}/messages.mo"))}

        aligned = align_catalogues(catalogue(src), catalogue(tgt))
    return [Pair(s, t, "calibre", name) for name, s, t in aligned]


class _BlockParser(HTMLParser):
    """Text of block elements in document order; a nested block's text is its own, not its
    parent's, and ``<pre>`` contents (commands, listings) are skipped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self._open: list[list[str]] = []
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "pre":
            self._pre += 1
        elif tag in _BLOCKS:
            self._open.append([])

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._pre = max(0, self._pre - 1)
        elif tag in _BLOCKS and self._open:
            self.blocks.append("".join(self._open.pop()))

    def handle_data(self, data: str) -> None:
        if self._open and not self._pre:
            self._open[-1].append(data)


def html_blocks(html: str) -> list[str]:
    """Block texts of one DocBook HTML page (empty blocks included, to keep positions)."""
    parser = _BlockParser()
    parser.feed(html)
    parser.close()
    return parser.blocks


def debian_reference_pairs(src_root: Path, tgt_root: Path, src: str, tgt: str) -> tuple[list[Pair], int]:
    """Aligned Debian Reference blocks, and the number of chapters skipped for a structure
    mismatch (or a missing translation)."""
    pairs: list[Pair] = []
    skipped = 0
    for src_file in sorted((src_root / DEBIAN_REFERENCE).glob(f"*.{src}.html")):
        chapter = src_file.name[: -len(f".{src}.html")]
        tgt_file = tgt_root / DEBIAN_REFERENCE / f"{chapter}.{tgt}.html"
        if not tgt_file.exists():
            skipped += 1
            continue
        src_blocks = html_blocks(src_file.read_text(encoding="utf-8"))
        tgt_blocks = html_blocks(tgt_file.read_text(encoding="utf-8"))
        if len(src_blocks) != len(tgt_blocks):
            skipped += 1
            continue
        pairs += [Pair(s, t, "debian-reference", f"debian-reference/{chapter}")
                  for s, t in zip(src_blocks, tgt_blocks)]
    return pairs, skipped
