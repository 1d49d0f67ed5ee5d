"""Split every language's pairs by the same English help pages.

The valid and test pages are chosen once, by :func:`recipes.libreoffice_de_en.split.split_by_page`
over the union of the English paragraphs of all languages (one entry per distinct page and
English text), so every language's valid and test sets come from the same pages. Only pages
with kept pairs in every language are candidates (the others go to train): translation coverage
differs a lot (Hindi translates about one help paragraph in eight), and pages some language
lacks would shrink its held-out sets. A candidate page can still miss some paragraphs in some
language; that language then has fewer pairs from it.

A page split alone does not keep an English sentence out of training: the same sentence can
occur on a train page, in a UI catalogue, or be kept for another language. So every English
source of any language's test set is then removed from every valid and train set, and every
valid source from every train set.
"""

from __future__ import annotations

from recipes.libreoffice_de_en.clean import Pair
from recipes.libreoffice_de_en.split import SPLITS, split_by_page

LangSplits = dict[str, dict[str, list[Pair]]]


def page_assignment(pairs_by_lang: dict[str, list[Pair]], valid_size: int, test_size: int,
                    seed: int = 1) -> dict[str, str]:
    """``{help page: split}`` chosen on the union of English help paragraphs of all languages.

    ``valid_size`` and ``test_size`` count distinct English paragraphs of the union on pages
    that every language has (module docstring), so each language gets at most that many pairs.
    """
    pages = [{p.doc for p in pairs if p.origin == "help"} for pairs in pairs_by_lang.values()]
    everywhere = set.intersection(*pages)
    union: dict[tuple[str, str], Pair] = {}
    for pairs in pairs_by_lang.values():
        for pair in pairs:
            if pair.origin == "help" and pair.doc in everywhere:
                union.setdefault((pair.doc, pair.src), pair)
    splits = split_by_page(sorted(union.values(), key=lambda p: (p.doc, p.src)), valid_size, test_size, seed)
    assignment = dict.fromkeys(set.union(*pages), "train")
    assignment.update({pair.doc: name for name, pairs in splits.items() for pair in pairs})
    return assignment


def split_languages(pairs_by_lang: dict[str, list[Pair]],
                    assignment: dict[str, str]) -> tuple[LangSplits, dict[str, dict[str, int]]]:
    """Split each language by ``assignment`` (non-help pairs go to train), then drop held-out
    English from the other splits.

    Returns the splits and, per language, how many pairs the cross-split removal dropped from
    ``valid`` and ``train``.
    """
    result: LangSplits = {}
    for lang, pairs in pairs_by_lang.items():
        result[lang] = {name: [] for name in SPLITS}
        for pair in pairs:
            split = assignment[pair.doc] if pair.origin == "help" else "train"
            result[lang][split].append(pair)
    held_out: set[str] = set()
    removed: dict[str, dict[str, int]] = {lang: {} for lang in result}
    for split in ("test", "valid", "train"):
        for lang, splits in result.items():
            kept = [p for p in splits[split] if p.src not in held_out]
            if split != "test":
                removed[lang][split] = len(splits[split]) - len(kept)
            splits[split] = kept
        held_out |= {p.src for splits in result.values() for p in splits[split]}
    return result, removed
