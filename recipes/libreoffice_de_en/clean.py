"""Normalise and filter LibreOffice segment pairs the way an MT practitioner would.

Both sides of a pair always go through the same function, so markup, product-name variables,
accelerators and placeholders are removed consistently. Filters run in a fixed order and report
how many pairs each one removed, so the corpus statistics can be audited.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable, Iterable

PRODUCT_VARIABLES = {"%PRODUCTNAME": "LibreOffice", "$[officename]": "LibreOffice"}

# UI origins and their toolkit's mnemonic marker (GTK ``_``, Qt ``&``); other origins are prose.
UI_MNEMONIC = {"ui": "_", "calibre": "&"}

# Markup that survives in UI strings and help sources (e.g. <ahelp>, <emph>, calibre's <p>).
_MARKUP_TAG = re.compile(
    r"</?(?:a|ahelp|alt|b|bookmark_value|br|caseinline|code|dd|defaultinline|div|dl|dt|em|emph|"
    r"embedvar|font|h[1-6]|hr|i|image|item|keycode|li|link|literal|menuitem|ol|p|pre|small|span|"
    r"strong|sub|sup|switchinline|table|td|th|tr|tt|u|ul|variable)\b[^<>]*>",
    re.IGNORECASE,
)
# UI placeholders: %1, %PRODUCTVERSION, $(ARG1), $1, $name (LibreOffice); {0}, {title},
# %(num)d (Python); printf-style %s, %d.
_PLACEHOLDER = re.compile(
    r"%\([a-z_]+\)[a-z]|%[A-Z][A-Z0-9_]*|%[0-9]+|%[sdnurp]\b|\{[A-Za-z0-9_]*\}"
    r"|\$\([A-Za-z0-9_]+\)|\$[0-9]+|\$[a-z]+\b"
)
_EMPTY_BRACKETS = re.compile(r"""'\s*'|"\s*"|„\s*“|“\s*”|‘\s*’|«\s*»|»\s*«|\(\s*\)|\[\s*\]""")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,:;!?)\]])")
_LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class Pair:
    """A candidate segment pair. ``doc`` is the help page (or catalogue) it came from."""

    src: str
    tgt: str
    origin: str  # "help", "ui" (LibreOffice UI), or a --more source: "calibre", "debian-reference"
    doc: str
    code: bool = False


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of the length filters.

    ``length_scale`` multiplies the target's character count before the ratio test, for a target
    script that packs more per character than the source (Chinese about 3, Japanese and Korean
    about 2 against English); 1.0 compares plain character counts.
    """

    max_words: int = 120
    max_chars: int = 800
    max_ratio: float = 2.5
    ratio_slack: int = 10
    length_scale: float = 1.0


def normalize(text: str) -> str:
    """Unicode NFC, product-name variables resolved, markup dropped, whitespace collapsed.

    Control and format characters are removed and every Unicode space or line separator
    becomes one ASCII space, so a segment can never be split into two lines downstream.
    """
    text = unicodedata.normalize("NFC", text)
    for variable, value in PRODUCT_VARIABLES.items():
        text = text.replace(variable, value)
    text = _MARKUP_TAG.sub(" ", text)
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)
    return " ".join(text.split())


def placeholders(text: str) -> list[str]:
    """The UI placeholders of a (normalised) string, sorted, so two sides can be compared."""
    return sorted(_PLACEHOLDER.findall(text))


def strip_ui(text: str, mnemonic: str = "_") -> str:
    """Remove accelerators and placeholders from a normalised UI string.

    ``~`` is LibreOffice's accelerator marker. A single ``mnemonic`` in front of a letter marks
    the toolkit's keyboard shortcut (GTK ``_Yes``, ``Pa_ge``; Qt ``&Open``); a string with
    several is left alone (identifiers, ``&&``). Punctuation left orphaned by a removed
    placeholder is tidied up.
    """
    text = text.replace("~", "")
    if text.count(mnemonic) == 1:
        text = re.sub(re.escape(mnemonic) + r"(?=\w)", "", text)
    text = _PLACEHOLDER.sub(" ", text)
    text = _EMPTY_BRACKETS.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(text.split()))
    return text.strip(" :-")


def _too_long(pair: Pair, config: FilterConfig) -> bool:
    return any(
        len(side.split()) > config.max_words or len(side) > config.max_chars
        for side in (pair.src, pair.tgt)
    )


def _bad_ratio(pair: Pair, config: FilterConfig) -> bool:
    a, b = len(pair.src) + config.ratio_slack, len(pair.tgt) * config.length_scale + config.ratio_slack
    return max(a, b) > config.max_ratio * min(a, b)


def _has_letters(text: str) -> bool:
    return bool(_LETTER.search(text))


def _step(name: str, removed: int, remaining: list[Pair]) -> dict[str, object]:
    return {
        "step": name,
        "removed": removed,
        "remaining": len(remaining),
        "by_origin": dict(sorted(Counter(p.origin for p in remaining).items())),
    }


def _repeated_source() -> Callable[[Pair], bool]:
    """A predicate that is true for every pair whose source segment was seen before."""
    seen: set[str] = set()

    def repeated(pair: Pair) -> bool:
        if pair.src in seen:
            return True
        seen.add(pair.src)
        return False

    return repeated


def strip_text(pair: Pair) -> Pair:
    """The final text of a pair: UI strings also lose accelerators and placeholders."""
    mnemonic = UI_MNEMONIC.get(pair.origin)
    if mnemonic is None:
        return pair
    return replace(pair, src=strip_ui(pair.src, mnemonic), tgt=strip_ui(pair.tgt, mnemonic))


def clean_pairs(
    pairs: Iterable[Pair], config: FilterConfig = FilterConfig()
) -> tuple[list[Pair], list[dict[str, object]]]:
    """Normalise, filter and deduplicate pairs; report each step as ``{step, removed, remaining}``.

    Deduplication keeps the first pair for each source segment, so with pages in a fixed order
    the result is deterministic and a source segment can never reach two splits.
    """
    current = [replace(p, src=normalize(p.src), tgt=normalize(p.tgt)) for p in pairs]
    report: list[dict[str, object]] = [_step("raw pairs", 0, current)]

    def drop(step: str, predicate: Callable[[Pair], bool]) -> None:
        nonlocal current
        kept = [p for p in current if not predicate(p)]
        report.append(_step(step, len(current) - len(kept), kept))
        current = kept

    drop("code paragraphs", lambda p: p.code)
    drop("placeholder mismatch",
         lambda p: p.origin in UI_MNEMONIC and placeholders(p.src) != placeholders(p.tgt))
    current = [strip_text(p) for p in current]
    drop("empty or no letters", lambda p: not (_has_letters(p.src) and _has_letters(p.tgt)))
    drop("untranslated (source == target)", lambda p: p.src == p.tgt)
    drop("over-long", lambda p: _too_long(p, config))
    drop("length-ratio outliers", lambda p: _bad_ratio(p, config))
    drop("duplicate sources", _repeated_source())
    return current, report
