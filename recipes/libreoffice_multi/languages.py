"""Languages of the one-to-many recipe: Debian package names, help directories, tags, filters.

The default set covers seven scripts with eight targets: German and French (Latin), Russian
(Cyrillic), Greek, Japanese (kana + kanji), Simplified Chinese (Han), Korean (Hangul) and Hindi
(Devanagari). Each needs two small packages (help ~3.3 MB, UI ~0.8 MB; English help 1.8 MB),
35 MB in all. Their translated help coverage differs widely (German and Greek most of the
67,706 English paragraphs, Hindi only about 8,500), so the set also exercises low-resource
targets. Together they give about 264k train pairs, which a 60-minute CPU demo sees about
three times (``extract.py``); more languages would need ``--max-train-per-lang``.
"""

from __future__ import annotations

from dataclasses import replace

from recipes.libreoffice_de_en.clean import FilterConfig

DEFAULT_LANGS = ("de", "fr", "ru", "el", "ja", "zh-cn", "ko", "hi")

# Median English/target character ratio of the aligned help paragraphs (Debian 7.4.7): zh-cn 3.0,
# ja 2.0, ko 2.05 (ru 0.92, el 0.82, hi 1.0). Without scaling, the 2.5 ratio filter dropped 9,628
# of 38,235 translated zh-cn paragraphs, most of them good.
LENGTH_SCALE = {"zh-cn": 3.0, "zh-tw": 3.0, "ja": 2.0, "ko": 2.0}


def help_dir(lang: str) -> str:
    """Directory of ``lang`` under ``usr/share/libreoffice/help``: ``zh-cn`` -> ``zh-CN``."""
    if lang == "en":
        return "en-US"
    base, _, region = lang.partition("-")
    return f"{base}-{region.upper()}" if region else base


def help_package(lang: str) -> str:
    """Debian package of the help pages of ``lang`` (``en`` is ``libreoffice-help-en-us``)."""
    return "libreoffice-help-" + help_dir(lang).lower()


def ui_package(lang: str) -> str:
    """Debian package of the UI catalogues of a non-English ``lang``."""
    return "libreoffice-l10n-" + lang


def packages(langs: list[str]) -> list[str]:
    """English help plus every target's help and UI packages."""
    return [help_package("en")] + [name for lang in langs for name in (help_package(lang), ui_package(lang))]


def tag(lang: str) -> str:
    """The target-language tag prefixed to the source, e.g. ``<2ja>``.

    The tags must become user-defined symbols of the sentencepiece model so that each stays one
    piece (``--user_defined_symbols=<2de>,<2ja>,...``).
    """
    return f"<2{lang}>"


def filter_config(lang: str, base: FilterConfig = FilterConfig()) -> FilterConfig:
    """``base`` with the character-length scale of ``lang``'s script (:data:`LENGTH_SCALE`)."""
    return replace(base, length_scale=LENGTH_SCALE.get(lang, base.length_scale))
