"""Context order of the tail: balanced groups, tokens used alike grouped together, and the
recipe's binarisation with the regrouped dictionary (a permutation that keeps the shortlist)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from recipes import config, pipeline, run_state
from recipes.tail_order import (
    balanced_bisection, context_counts, context_ordered_dictionary, context_vectors, read_dictionary,
)
from tiny_recipe import recipe_config, write_data


def test_bisection_cuts_exact_blocks_and_recovers_separated_clusters() -> None:
    """Five well-separated blobs of 7 points (the last of 4), shuffled: blocks of 7 are the blobs."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 8)) * 10
    labels = np.repeat(np.arange(5), 7)[:32]
    vectors = centres[labels] + rng.normal(size=(32, 8)) * 0.1
    perm = rng.permutation(32)
    groups = balanced_bisection(vectors[perm], group_size=7)
    assert [len(g) for g in groups] == [7, 7, 7, 7, 4]
    assert sorted(np.concatenate(groups).tolist()) == list(range(32))
    assert sorted(sorted(labels[perm][g].tolist()) for g in groups) == sorted(
        [[k] * 7 for k in range(4)] + [[4] * 4])


def alike_corpus(seed: int = 0) -> tuple[list[str], list[str], list[str], list[str]]:
    """Colour words only follow 'the' and precede 'car'; animal words only follow 'a' and precede
    'runs'; each class is translated from its own source words."""
    rng = random.Random(seed)
    colours, animals = ["red", "blue", "green", "pink"], ["dog", "cat", "cow", "pig"]
    tgt, src = [], []
    for _ in range(400):
        if rng.random() < 0.5:
            word = rng.choice(colours)
            tgt.append(f"the {word} car")
            src.append(f"das {word.upper()} Auto")
        else:
            word = rng.choice(animals)
            tgt.append(f"a {word} runs")
            src.append(f"ein {word.upper()} rennt")
    return tgt, src, colours, animals


def test_tokens_used_alike_share_a_group_and_the_shortlist_keeps_its_ids(tmp_path: Path) -> None:
    tgt, src, colours, animals = alike_corpus()
    frequency_order = ["the", "a", "car", "runs", "red", "dog", "blue", "cat", "green", "cow", "pink", "pig"]
    dictionary = tmp_path / "dict.txt"
    dictionary.write_text("".join(f"{t} {100 - i}\n" for i, t in enumerate(frequency_order)), encoding="utf-8")
    (tmp_path / "train.en").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    (tmp_path / "train.de").write_text("\n".join(src) + "\n", encoding="utf-8")
    output = tmp_path / "dict.ctx.txt"
    groups = context_ordered_dictionary(dictionary, tmp_path / "train.en", tmp_path / "train.de",
                                        shortlist=8, group_size=4, output=output)
    assert sorted(map(sorted, groups)) == sorted([sorted(colours), sorted(animals)])
    ordered = read_dictionary(output)
    assert [t for t, _ in ordered[:4]] == frequency_order[:4]  # ids 4-7: shortlisted, unchanged
    assert sorted(ordered) == sorted(read_dictionary(dictionary))  # a permutation, counts kept


def test_tokens_never_in_the_target_text_get_zero_vectors_and_a_group_of_their_own(tmp_path: Path) -> None:
    """Source-only pieces and padding entries have no context: zero vectors, which tie in every
    split, so they end up together (here 8 live tokens and 4 dead ones in groups of 4)."""
    tgt, src, colours, animals = alike_corpus()
    dead = ["Auto", "rennt", "madeupword0000", "ein"]
    order = ["the", "a", "car", "runs", "red", "Auto", "dog", "rennt", "blue", "cat", "madeupword0000", "green",
             "cow", "pink", "pig", "ein"]
    dictionary = tmp_path / "dict.txt"
    dictionary.write_text("".join(f"{t} {100 - i}\n" for i, t in enumerate(order)), encoding="utf-8")
    (tmp_path / "train.en").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    (tmp_path / "train.de").write_text("\n".join(src) + "\n", encoding="utf-8")
    counts = context_counts([line.split() for line in tgt], [line.split() for line in src],
                            {t: row for row, t in enumerate(order[4:])}, num_contexts=100)
    vectors = context_vectors(counts)
    dead_rows = [order[4:].index(t) for t in dead]
    assert np.all(vectors[dead_rows] == 0)
    assert np.allclose(np.linalg.norm(np.delete(vectors, dead_rows, axis=0), axis=1), 1.0)
    groups = context_ordered_dictionary(dictionary, tmp_path / "train.en", tmp_path / "train.de",
                                        shortlist=8, group_size=4, output=tmp_path / "out.txt")
    assert sorted(map(sorted, groups)) == sorted([sorted(colours), sorted(animals), sorted(dead)])


def test_dictionary_lines_keep_their_flags(tmp_path: Path) -> None:
    dictionary = tmp_path / "dict.txt"
    dictionary.write_text("▁the 10\n<mask> 0 #fairseq:overwrite\n", encoding="utf-8")
    assert read_dictionary(dictionary) == [("▁the", "10"), ("<mask>", "0 #fairseq:overwrite")]


def test_a_shortlist_that_leaves_no_tail_is_refused(tmp_path: Path) -> None:
    dictionary = tmp_path / "dict.txt"
    dictionary.write_text("a 3\nb 2\nc 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="leaves no tail"):
        context_ordered_dictionary(dictionary, dictionary, dictionary, shortlist=6, group_size=2,
                                   output=tmp_path / "out.txt")


@pytest.mark.e2e
def test_recipe_binarises_with_the_regrouped_dictionary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--tail-order context: bin-<vocab>-ctxN holds the same data under a dictionary that permutes
    the frequency dictionary's tail and keeps its first N ids; the run directory says so."""
    work = tmp_path / "work"
    write_data(work)
    recipe = config.Recipe(name="tiny", src="de", tgt="en", work_dir=work, vocab_size=120, mhce_shortlist=16)
    cfg = recipe_config(recipe, ["--workers", "1", "--tail-order", "context"])
    assert cfg.bin.name == "bin-spm120-ctx16" and cfg.run_dir.name == "spm120-ctx16-mhe"
    pipeline.stage_spm(cfg)
    pipeline.stage_binarize(cfg)
    frequency = read_dictionary(cfg.frequency_bin / "dict.en.txt")
    context = read_dictionary(cfg.bin / "dict.en.txt")
    assert read_dictionary(cfg.bin / "dict.de.txt") == context
    assert context[:12] == frequency[:12] and sorted(context) == sorted(frequency) and context != frequency
    from mhce_nmt.adapters.model import codec_from_args

    # the groups were cut to the codec the model builds from this dictionary and the recipe's options
    train_args = __import__("argparse").Namespace(mhce_shortlist=16)
    codec = codec_from_args(train_args, run_state.dictionary_size(cfg.bin / "dict.en.txt"))
    assert f" {codec.tail.strides[0]} to a level-1 group" in capsys.readouterr().out
    from fairseq.data import Dictionary, data_utils

    words = {}
    for bin_dir in (cfg.frequency_bin, cfg.bin):
        d = Dictionary.load(str(bin_dir / "dict.en.txt"))
        data = data_utils.load_indexed_dataset(str(bin_dir / "train.de-en.en"), d)
        words[bin_dir.name] = [d.string(data[i]) for i in range(len(data))]
    assert words[cfg.bin.name] == words[cfg.frequency_bin.name]  # the same text under other ids


@pytest.mark.parametrize("argv", [["--mode", "softmax"], ["--mode", "mhe", "--mhce-shortlist", "0"],
                                  ["--mode", "mhe", "--separate-vocab"]])
@pytest.mark.slow
def test_tail_order_context_needs_a_shortlisted_joint_factored_layer(tmp_path: Path, argv: list[str]) -> None:
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, mhce_shortlist=1024)
    with pytest.raises(SystemExit, match="--tail-order context regroups a joint sentencepiece dictionary"):
        recipe_config(recipe, [*argv, "--tail-order", "context"])
