"""Split cleaned pairs into train/valid/test by whole help page.

A page goes entirely to one split, so valid and test never share a page with train. UI strings
(``origin == "ui"``) have no page structure and always go to train.
"""

from __future__ import annotations

import random
from collections import defaultdict

from recipes.libreoffice_de_en.clean import Pair

SPLITS = ("train", "valid", "test")


def split_by_page(
    pairs: list[Pair], valid_size: int, test_size: int, seed: int = 1
) -> dict[str, list[Pair]]:
    """Fill test, then valid, with whole randomly chosen help pages until each holds at least
    ``test_size`` / ``valid_size`` pairs; everything else is train.

    The page order comes from a seeded shuffle of the sorted page names, so the split depends
    only on the data and the seed. Pairs keep their input order within each split.
    """
    by_page: dict[str, int] = defaultdict(int)
    for pair in pairs:
        if pair.origin == "help":
            by_page[pair.doc] += 1
    pages = sorted(by_page)
    random.Random(seed).shuffle(pages)
    assignment: dict[str, str] = {}
    filled = {"test": 0, "valid": 0}
    targets = {"test": test_size, "valid": valid_size}
    for page in pages:
        split = next((s for s in ("test", "valid") if filled[s] < targets[s]), "train")
        assignment[page] = split
        if split != "train":
            filled[split] += by_page[page]
    result: dict[str, list[Pair]] = {name: [] for name in SPLITS}
    for pair in pairs:
        result[assignment[pair.doc] if pair.origin == "help" else "train"].append(pair)
    return result
