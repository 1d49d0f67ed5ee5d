"""Extract the translatable paragraphs of LibreOffice's exported help pages.

Every paragraph and heading that comes from the help sources carries an id such as
``par_id3150085`` or ``hd_id3159176``. The same id marks the same paragraph in every language,
so two pages at the same relative path align on ``(id, occurrence)``.

Platform and module variants (``<span hidden id="MAC...">Command</span><span hidden
id="default...">Ctrl</span>``) are all hidden until the help's JavaScript reveals one; the
``default...`` variant is kept and the others are dropped. ``<br>`` becomes a space and
character references are decoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

PARAGRAPH_ID = re.compile(r"^(?:par|hd)_id")
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "source", "track", "wbr"})


@dataclass(frozen=True)
class Paragraph:
    """One id-carrying paragraph: its key within the page, CSS class and raw text."""

    key: tuple[str, int]
    css_class: str
    text: str


class _ParagraphParser(HTMLParser):
    """Collects the text of elements whose id matches :data:`PARAGRAPH_ID`."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[Paragraph] = []
        self._stack: list[tuple[str, bool]] = []  # (tag, hidden) of open elements
        self._capture: tuple[str, str, int] | None = None  # (id, class, stack depth)
        self._chunks: list[str] = []
        self._seen: dict[str, int] = {}

    def _hidden(self) -> bool:
        return any(hidden for _tag, hidden in self._stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in _VOID:
            if tag == "br" and self._capture:
                self._chunks.append(" ")
            return
        element_id = attributes.get("id") or ""
        self._stack.append((tag, "hidden" in attributes and not element_id.startswith("default")))
        if self._capture is None and PARAGRAPH_ID.match(element_id):
            self._capture = (element_id, attributes.get("class") or "", len(self._stack))
            self._chunks = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br" and self._capture:
            self._chunks.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or not any(open_tag == tag for open_tag, _ in self._stack):
            return
        while self._stack:
            open_tag, _hidden = self._stack.pop()
            if self._capture and len(self._stack) < self._capture[2]:
                self._finish()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._capture and not self._hidden():
            self._chunks.append(data)

    def _finish(self) -> None:
        assert self._capture is not None
        element_id, css_class, _depth = self._capture
        occurrence = self._seen.get(element_id, 0)
        self._seen[element_id] = occurrence + 1
        self.paragraphs.append(Paragraph((element_id, occurrence), css_class, "".join(self._chunks)))
        self._capture = None

    def close(self) -> None:
        super().close()
        if self._capture:
            self._finish()


def parse_help_page(html: str) -> list[Paragraph]:
    """Return the id-carrying paragraphs of one help page, in document order."""
    parser = _ParagraphParser()
    parser.feed(html)
    parser.close()
    return parser.paragraphs


def help_pages(root: Path) -> dict[str, Path]:
    """Map each page's path relative to ``root`` (a language's help directory) to its file."""
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*.html"))}


def align_help(src_root: Path, tgt_root: Path) -> tuple[list[tuple[str, Paragraph, Paragraph]], int]:
    """Align the help pages of two languages by relative path, then paragraphs by key.

    Returns ``(aligned, unmatched)``: aligned ``(page, source paragraph, target paragraph)``
    triples in page order, and how many paragraphs of either side found no partner (including
    every paragraph of a page that exists in one language only).
    """
    src_pages, tgt_pages = help_pages(src_root), help_pages(tgt_root)
    aligned: list[tuple[str, Paragraph, Paragraph]] = []
    unmatched = 0
    for page in sorted(set(src_pages) | set(tgt_pages)):
        src = _read_page(src_pages.get(page))
        tgt = {p.key: p for p in _read_page(tgt_pages.get(page))}
        for paragraph in src:
            partner = tgt.pop(paragraph.key, None)
            if partner is None:
                unmatched += 1
            else:
                aligned.append((page, paragraph, partner))
        unmatched += len(tgt)
    return aligned, unmatched


def _read_page(path: Path | None) -> list[Paragraph]:
    if path is None:
        return []
    return parse_help_page(path.read_text(encoding="utf-8", errors="replace"))
