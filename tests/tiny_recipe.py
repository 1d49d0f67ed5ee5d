"""A tiny recipe for the pipeline tests: generated German-English sentence pairs, a tiny
transformer's options, and a recipe's Config from its command line."""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from recipes import config, pipeline

TINY_MODEL = (
    "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "32",
    "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--dropout", "0.1",
    "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "inverse_sqrt",
)

WORDS = {"Datei": "file", "Tabelle": "table", "Zelle": "cell", "Seite": "page", "Bild": "image",
         "Formel": "formula", "Spalte": "column", "Zeile": "row", "Vorlage": "template", "Folie": "slide"}
ACTIONS = {"Öffnen Sie": "Open", "Löschen Sie": "Delete", "Kopieren Sie": "Copy", "Speichern Sie": "Save",
           "Wählen Sie": "Select", "Drucken Sie": "Print"}


def synthetic_pairs(count: int, seed: int) -> list[tuple[str, str]]:
    """German-English pairs such as ("Öffnen Sie die Datei und die Zelle.", "Open the file and the cell.")."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        (de_verb, en_verb), (de1, en1), (de2, en2) = (rng.choice(list(ACTIONS.items())),
                                                       *rng.sample(list(WORDS.items()), 2))
        pairs.append((f"{de_verb} die {de1} und die {de2}.", f"{en_verb} the {en1} and the {en2}."))
    return pairs


def write_data(work: Path) -> None:
    """train/valid/test.{de,en} with 400/30/40 pairs."""
    data = work / "data"
    data.mkdir(parents=True)
    for split, count, seed in (("train", 400, 1), ("valid", 30, 2), ("test", 40, 3)):
        pairs = synthetic_pairs(count, seed)
        (data / f"{split}.de").write_text("".join(de + "\n" for de, _ in pairs), encoding="utf-8")
        (data / f"{split}.en").write_text("".join(en + "\n" for _, en in pairs), encoding="utf-8")


def recipe_config(recipe: config.Recipe, argv: list[str]) -> config.Config:
    """The Config a recipe's command line gives (options parsed as its run.py parses them)."""
    parser = argparse.ArgumentParser()
    config.add_arguments(parser, recipe, pipeline.STAGES)
    return config.config_from_args(parser.parse_args(argv), recipe)
