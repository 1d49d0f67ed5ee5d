"""LibreOffice corpus extraction: help alignment, .mo reading, cleaning, page split, counts.

Runs on the small help pages under tests/fixtures/libreoffice_help and a .mo catalogue written
by the test itself; no Debian package is fetched.
"""

from __future__ import annotations

import json
import random
import struct
import zipfile
from pathlib import Path

import pytest

from recipes.libreoffice_de_en.clean import Pair, clean_pairs, normalize, strip_ui
from recipes.libreoffice_de_en.extract import build_corpus, packages, ui_pairs
from recipes.libreoffice_de_en.helphtml import align_help, parse_help_page
from recipes.libreoffice_de_en.mofile import read_mo
from recipes.libreoffice_de_en.more import (
    CALIBRE_LOCALES, DEBIAN_REFERENCE, calibre_pairs, debian_reference_pairs,
)
from recipes.libreoffice_de_en.split import split_by_page

ROOT = Path(__file__).resolve().parents[1]

HELP = ROOT / "tests" / "fixtures" / "libreoffice_help"

UI_MESSAGES = [  # (msgctxt, English msgid, German msgstr)
    ("STR_SAVE", "~Save", "~Speichern"),
    ("STR_YES", "_Yes", "_Ja"),
    ("STR_SAVE_AS", "Save _As...", "Speichern _unter..."),
    ("STR_WRITER", "%PRODUCTNAME Writer", "%PRODUCTNAME Writer"),          # untranslated
    ("STR_DELETE", "Delete '%1'?", "'%1' löschen?"),
    ("STR_ROW", "Row %ROWNUMBER", "Zeile %ROWNUMBER"),
    ("STR_PAGES", "Page %1 of %2", "Seite %1"),                            # placeholder lost
    ("STR_HTML", "<b>Bold</b> text", "<b>Fetter</b> Text"),
    ("STR_EMPTY", "Nothing", ""),                                         # not translated
    ("", "Cancel", "Abbrechen"),                                          # no context
    ("STR_CANCEL", "Cancel", "Abbruch"),                                  # duplicate source
]


def write_mo(path: Path, messages: list[tuple[str, str, str]], plural: tuple[str, str] | None = None) -> None:
    """A little-endian .mo file (GNU format, no hash table) with an optional plural entry."""
    items = [(b"", b"Content-Type: text/plain; charset=UTF-8\n")]
    items += [((c.encode() + b"\x04" if c else b"") + i.encode(), s.encode()) for c, i, s in messages]
    if plural:
        items.append((plural[0].encode() + b"\x00" + plural[0].encode() + b"s",
                      plural[1].encode() + b"\x00" + plural[1].encode() + b"e"))
    items.sort()
    table_size = 8 * len(items)
    offset = 28 + 2 * table_size
    tables, blob = [b"", b""], b""
    for column in (0, 1):
        for item in items:
            tables[column] += struct.pack("<2I", len(item[column]), offset + len(blob))
            blob += item[column] + b"\x00"
    header = struct.pack("<7I", 0x950412DE, 0, len(items), 28, 28 + table_size, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + tables[0] + tables[1] + blob)


@pytest.fixture()
def ui_root(tmp_path: Path) -> Path:
    """A ``program/resource`` tree with one German catalogue."""
    root = tmp_path / "resource"
    write_mo(root / "de" / "LC_MESSAGES" / "test.mo", UI_MESSAGES, plural=("%1 file", "%1 Datei"))
    return root


def test_parse_help_page_drops_hidden_variants_and_markup() -> None:
    page = parse_help_page((HELP / "en-US/text/shared/query.html").read_text())
    texts = {p.key: p.text for p in page}
    assert texts[("par_id211641581251728", 0)] == "Use the shortcut Ctrl + F to open the Find toolbar."
    assert texts[("par_id3145766", 0)] == "$[officename] saves text & tables. Really <fast>."
    assert texts[("par_id3153684", 1)] == "Clear Query"  # repeated id: second occurrence
    assert all("Choose Tools" not in t and "Please support" not in t for t in texts.values())


def test_align_help_pairs_same_page_and_id() -> None:
    aligned, unmatched = align_help(HELP / "de", HELP / "en-US")
    assert unmatched == 3  # one English-only paragraph, a German-only page of two
    assert {page for page, _s, _t in aligned} == {"text/shared/query.html", "text/swriter/fields.html"}
    pairs = {s.key: (s.text, t.text) for _page, s, t in aligned}
    assert pairs[("par_id3153684", 0)] == ("Abfrage ausführen", "Run Query")
    assert pairs[("par_id3153684", 1)] == ("Abfrage löschen", "Clear Query")


def test_read_mo_skips_header_plural_and_empty(ui_root: Path) -> None:
    entries = read_mo(ui_root / "de" / "LC_MESSAGES" / "test.mo")
    assert len(entries) == len(UI_MESSAGES) - 1
    by_key = {(e.context, e.msgid): e.msgstr for e in entries}
    assert by_key[("STR_SAVE", "~Save")] == "~Speichern"
    assert by_key[("", "Cancel")] == "Abbrechen"
    assert not any("file" in e.msgid for e in entries)


def test_ui_pairs_take_english_from_msgid(ui_root: Path) -> None:
    pairs = ui_pairs(ui_root, None)
    assert ("Speichern _unter...", "Save _As...") in {(p.src, p.tgt) for p in pairs}
    assert {(p.src, p.tgt) for p in ui_pairs(None, ui_root)} == {(p.tgt, p.src) for p in pairs}


def test_normalize_and_strip_ui_are_consistent() -> None:
    assert normalize("$[officename]\u2028 <ahelp hid=\".\">opens</ahelp>\tfiles") == "LibreOffice opens files"
    assert strip_ui(normalize("Delete '%1'?")) == "Delete?"
    assert strip_ui(normalize("'%1' löschen?")) == "löschen?"
    assert strip_ui("Pa~ges:") == "Pages"
    assert strip_ui("Save _As...") == "Save As..."
    assert strip_ui("SOME_IDENTIFIER_NAME") == "SOME_IDENTIFIER_NAME"


def test_clean_pairs_report_is_consistent(ui_root: Path) -> None:
    aligned, _ = align_help(HELP / "de", HELP / "en-US")
    pairs = [Pair(s.text, t.text, "help", page, code="code" in s.css_class) for page, s, t in aligned]
    pairs += ui_pairs(ui_root, None)
    kept, report = clean_pairs(pairs)
    removed = {step["step"]: step["removed"] for step in report}
    assert report[0]["remaining"] == len(pairs) and report[-1]["remaining"] == len(kept)
    assert sum(removed.values()) == len(pairs) - len(kept)
    assert removed["code paragraphs"] == 1
    assert removed["placeholder mismatch"] == 1        # Page %1 of %2
    assert removed["untranslated (source == target)"] == 2  # LibreOffice Base, LibreOffice Writer
    assert removed["length-ratio outliers"] == 1       # loose translation of "Checks spelling."
    assert removed["duplicate sources"] == 1           # heading repeated on a second page
    texts = {(p.src, p.tgt) for p in kept}
    assert ("Speichern", "Save") in texts and ("Ja", "Yes") in texts
    assert ("Fetter Text", "Bold text") in texts
    assert ("Zeile", "Row") in texts
    assert ("LibreOffice speichert Text & Tabellen. Wirklich <schnell>.",
            "LibreOffice saves text & tables. Really <fast>.") in texts
    assert len({p.src for p in kept}) == len(kept)


def test_split_by_page_never_shares_a_page() -> None:
    rng = random.Random(0)
    pairs = [Pair(f"s{p}-{i}", f"t{p}-{i}", "help", f"page{p}.html")
             for p in range(60) for i in range(rng.randint(1, 30))]
    pairs += [Pair(f"u{i}", f"v{i}", "ui", "sw.mo") for i in range(50)]
    splits = split_by_page(pairs, valid_size=100, test_size=120, seed=3)
    pages = {name: {p.doc for p in ps if p.origin == "help"} for name, ps in splits.items()}
    assert not pages["train"] & pages["valid"] and not pages["train"] & pages["test"]
    assert not pages["valid"] & pages["test"]
    assert len(splits["valid"]) >= 100 and len(splits["test"]) >= 120
    assert all(p.origin == "help" for name in ("valid", "test") for p in splits[name])
    assert sum(map(len, splits.values())) == len(pairs)
    assert split_by_page(pairs, 100, 120, seed=3) == splits
    assert split_by_page(pairs, 100, 120, seed=4) != splits


def test_build_corpus_writes_splits_and_counts(tmp_path: Path, ui_root: Path) -> None:
    out = tmp_path / "data"
    counts = build_corpus((HELP / "de", HELP / "en-US"), {"ui strings": ui_pairs(ui_root, None)}, out, "de", "en",
                          valid_size=1, test_size=1)
    on_disk = json.loads((out / "counts.json").read_text())
    assert on_disk["raw"] == {"help paragraphs": 13, "help paragraphs without partner": 3, "ui strings": 10}
    assert on_disk["filters"] == counts["filters"]
    for split in ("train", "valid", "test"):
        src = (out / f"{split}.de").read_text().splitlines()
        tgt = (out / f"{split}.en").read_text().splitlines()
        assert len(src) == len(tgt) == on_disk["splits"][split]["pairs"] > 0
    assert on_disk["splits"]["train"]["by_origin"] == {"ui": on_disk["splits"]["train"]["pairs"]}
    assert on_disk["splits"]["valid"]["help pages"] == on_disk["splits"]["test"]["help pages"] == 1
    assert sum(s["pairs"] for s in on_disk["splits"].values()) == on_disk["filters"][-1]["remaining"]


def test_packages_for_each_supported_pair() -> None:
    assert packages("de", "en") == ["libreoffice-help-de", "libreoffice-help-en-us", "libreoffice-l10n-de"]
    assert packages("en", "fr") == ["libreoffice-help-en-us", "libreoffice-help-fr", "libreoffice-l10n-fr"]


def test_calibre_pairs_from_locales_zip(tmp_path: Path) -> None:
    mo = tmp_path / "messages.mo"
    write_mo(mo, [("", "&Open book", "Buch &öffnen"), ("", "{0} of {1} books", "{0} von {1} Büchern")])
    (tmp_path / CALIBRE_LOCALES).parent.mkdir(parents=True)
    with zipfile.ZipFile(tmp_path / CALIBRE_LOCALES, "w") as locales:
        locales.write(mo, "de/messages.mo")
    pairs = calibre_pairs(tmp_path, "de", "en")
    kept, _ = clean_pairs(pairs)
    assert {(p.src, p.tgt) for p in kept} == {("Buch öffnen", "Open book"), ("von Büchern", "of books")}


def test_debian_reference_aligns_chapters_with_equal_structure(tmp_path: Path) -> None:
    pages = {
        "ch01.en.html": "<h2>Intro</h2><p>Run <code>ls</code> now.</p><pre>ls -l</pre>"
                        "<table><tr><td>size</td></tr></table>",
        "ch01.de.html": "<h2>Einleitung</h2><p>Führen Sie jetzt <code>ls</code> aus.</p><pre>ls -l</pre>"
                        "<table><tr><td>Größe</td></tr></table>",
        "ch02.en.html": "<p>One.</p><p>Two.</p>",
        "ch02.de.html": "<p>Eins und zwei.</p>",
    }
    for name, html in pages.items():
        lang = name.split(".")[1]
        path = tmp_path / lang / DEBIAN_REFERENCE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"<html><body>{html}</body></html>")
    pairs, skipped = debian_reference_pairs(tmp_path / "de", tmp_path / "en", "de", "en")
    assert skipped == 1
    assert [(p.src, p.tgt) for p in pairs] == [
        ("Einleitung", "Intro"), ("Führen Sie jetzt ls aus.", "Run ls now."), ("Größe", "size")]
