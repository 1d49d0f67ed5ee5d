"""Write code layouts for `--mhce-layout FILE`: which code position each target id takes.

A layout is a permutation pi of the V target ids (mhce_nmt/layout.py): id v is written with the
code of position pi(v). The codec cuts the positions past the shortlist (N ids) into level-1
groups of S = K_2 * ... * K_H consecutive positions (S = K_2 with two heads), so a layout
chooses which ids share a group. Both commands keep the special symbols and the shortlist where
they are (pi(v) = v for v < N; without a shortlist, the group holding the specials keeps its
ids too) and fill the rest in groups of exactly S, the last one partial: every code stays valid.

  kmeans        balanced k-means of a trained softmax checkpoint's output embeddings (the rows
                of decoder.output_projection.weight, the decoder input embeddings when tied),
                unit-normalised: groups of ids that the softmax scored alike.
  cooccurrence  the PPMI + SVD recursive bisection of recipes/tail_order.py (tokens used alike
                in the training text), as a layout instead of a reordered dictionary.

    python -m recipes.layouts kmeans --checkpoint softmax/checkpoint_best.pt \\
        --mhce-shortlist 1024 --output layout.kmeans.txt
    python -m recipes.layouts cooccurrence --dictionary bin/dict.en.txt --target-text seg/train.en \\
        --source-text seg/train.de --mhce-shortlist 1024 --output layout.cooc.txt
    fairseq-train bin ... --mhce-mode mhe --mhce-shortlist 1024 --mhce-layout layout.kmeans.txt

Give the same --mhce-shortlist and --mhce-heads / --mhce-num-heads as the model's: they fix S.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch

from mhce_nmt.codec import LabelCodec, ShortlistCodec
from mhce_nmt.compat import allow_fairseq_checkpoints
from mhce_nmt.errors import MHCEConfigError, install_excepthook
from mhce_nmt.layout import check_layout, write_layout
from recipes.tail_order import (
    MAX_PAIRS, NUM_SPECIALS, balanced_bisection, context_counts, context_vectors, read_dictionary, token_lines,
)

KMEANS_ITERATIONS = 30


def group_size(vocab_size: int, shortlist: int, heads: Optional[str], num_heads: int) -> int:
    """S: the tail positions per level-1 group of the codec these options give the model."""
    if shortlist:
        return ShortlistCodec.build(vocab_size, shortlist, heads, num_heads).tail.strides[0]
    return LabelCodec.build(vocab_size, heads, num_heads).strides[0]


def first_free_position(vocab_size: int, shortlist: int, size: int) -> int:
    """The first position a layout may fill: N, where the tail's groups start; without a
    shortlist, the end of the groups holding the special symbols (they keep their ids)."""
    if 0 < shortlist < NUM_SPECIALS:
        raise MHCEConfigError(f"--mhce-shortlist {shortlist} leaves special symbols out: use at least "
                              f"{NUM_SPECIALS}, or 0 for no shortlist (as the model requires).")
    first = shortlist if shortlist else -(-NUM_SPECIALS // size) * size
    if first >= vocab_size - 1:
        raise MHCEConfigError(f"a vocabulary of {vocab_size} ids leaves no ids to group past the first {first}: "
                              "nothing to lay out.")
    return first


def layout_from_groups(vocab_size: int, first: int, groups: Sequence[np.ndarray]) -> np.ndarray:
    """pi: ids < first stay; the free ids first + i, i in groups[0], groups[1], ..., take the
    positions first, first + 1, ... in that order."""
    layout = np.arange(vocab_size)
    layout[np.concatenate(groups) + first] = np.arange(first, vocab_size)
    return layout


def capacitated_assignment(distances: np.ndarray, capacities: np.ndarray) -> np.ndarray:
    """(n,) cluster per point with exactly capacities[g] points in cluster g (sum = n), by
    deferred acceptance: every free point proposes to its nearest cluster not yet tried, every
    cluster keeps its `capacity` nearest proposers and frees the others. Stable: no point and
    cluster both prefer each other to what they got."""
    n = len(distances)
    preference = np.argsort(distances, axis=1, kind="stable")
    tried = np.zeros(n, dtype=np.int64)
    labels = np.full(n, -1)
    free = np.arange(n)
    while free.size:
        labels[free] = preference[free, tried[free]]
        tried[free] += 1
        holders = np.flatnonzero(np.isin(labels, labels[free]))  # of the clusters proposed to
        held = holders[np.lexsort((distances[holders, labels[holders]], labels[holders]))]
        cluster = labels[held]
        rank = np.arange(held.size) - np.searchsorted(cluster, cluster)  # rank within its cluster
        free = held[rank >= capacities[cluster]]
        labels[free] = -1
    return labels


def balanced_kmeans(vectors: np.ndarray, size: int, iterations: int = KMEANS_ITERATIONS) -> List[np.ndarray]:
    """Rows of `vectors` in groups of exactly `size` but one partial group (n mod size, when
    not 0), returned last: k-means (squared Euclidean) started from the balanced PCA bisection,
    whose assignment step fills every cluster to its capacity (capacitated_assignment). The
    partial capacity goes to the cluster that the fewest rows are nearest to. Rows of a group in
    ascending order."""
    groups = balanced_bisection(vectors, size)
    count, remainder = len(groups), len(vectors) - (len(groups) - 1) * size
    labels = np.empty(len(vectors), dtype=np.int64)
    for g, rows in enumerate(groups):
        labels[rows] = g
    partial = count - 1
    for _ in range(iterations):
        centroids = np.stack([vectors[labels == g].mean(axis=0) for g in range(count)])
        distances = (centroids ** 2).sum(axis=1) - 2 * vectors @ centroids.T  # + |x|^2, the same per row
        partial = int(np.argmin(np.bincount(distances.argmin(axis=1), minlength=count)))
        capacities = np.full(count, size)
        capacities[partial] = remainder
        new = capacitated_assignment(distances, capacities)
        if np.array_equal(new, labels):
            break
        labels = new
    order = [g for g in range(count) if g != partial] + [partial]
    return [np.flatnonzero(labels == g) for g in order]


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm (all-zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def output_embeddings(checkpoint: Path) -> np.ndarray:
    """(V, d) output rows of a fairseq softmax checkpoint: decoder.output_projection.weight, or the
    decoder input embeddings when the model ties them."""
    allow_fairseq_checkpoints()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    weights = state["model"]
    model_cfg = (state.get("cfg") or {}).get("model")
    options = model_cfg if isinstance(model_cfg, dict) else vars(model_cfg) if model_cfg is not None else {}
    tied = any(options.get(flag) for flag in ("share_decoder_input_output_embed", "share_all_embeddings"))
    for key in ("decoder.output_projection.weight",) + (("decoder.embed_tokens.weight",) if tied else ()):
        if key in weights:
            return weights[key].float().numpy()
    raise MHCEConfigError(f"{checkpoint} has no decoder.output_projection.weight (and does not tie it to "
                          "decoder.embed_tokens.weight): give a checkpoint of a softmax model (--arch transformer, "
                          "or transformer_mhce with --mhce-mode mhs) trained on this data-bin.")


def kmeans_layout(embeddings: np.ndarray, shortlist: int, heads: Optional[str], num_heads: int,
                  iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """pi grouping the free ids by balanced k-means of their unit-normalised output rows."""
    vocab_size = len(embeddings)
    size = group_size(vocab_size, shortlist, heads, num_heads)
    first = first_free_position(vocab_size, shortlist, size)
    groups = balanced_kmeans(unit_rows(embeddings[first:].astype(np.float64)), size, iterations)
    return layout_from_groups(vocab_size, first, groups)


def cooccurrence_layout(dictionary: Path, target_text: Path, source_text: Path, shortlist: int,
                        heads: Optional[str], num_heads: int, max_pairs: int = MAX_PAIRS) -> np.ndarray:
    """pi grouping the free ids by recipes/tail_order.py's context vectors and bisection."""
    entries = read_dictionary(dictionary)
    vocab_size = NUM_SPECIALS + len(entries)
    size = group_size(vocab_size, shortlist, heads, num_heads)
    first = first_free_position(vocab_size, shortlist, size)
    free = {token: row for row, (token, _) in enumerate(entries[first - NUM_SPECIALS:])}
    counts = context_counts(list(token_lines(target_text, max_pairs)), list(token_lines(source_text, max_pairs)),
                            free, num_contexts=4000)
    return layout_from_groups(vocab_size, first, balanced_bisection(context_vectors(counts), size))


def describe(layout: np.ndarray, shortlist: int, size: int) -> str:
    """One line: what the layout moves and its groups."""
    first = first_free_position(len(layout), shortlist, size)
    free = len(layout) - first
    last = free - (math.ceil(free / size) - 1) * size
    return (f"{len(layout)} ids, ids < {first} in place, {math.ceil(free / size)} groups of {size} "
            f"(the last {last}), {int((layout != np.arange(len(layout))).sum())} ids moved")


def add_codec_options(parser: argparse.ArgumentParser) -> None:
    """The model's codec options (they fix N and S) and the output file."""
    parser.add_argument("--mhce-shortlist", type=int, required=True,
                        help="the model's shortlist N (as its training log states it; 0 = none): ids < N keep "
                             "their positions")
    parser.add_argument("--mhce-heads", help="the model's --mhce-heads, if it gives them")
    parser.add_argument("--mhce-num-heads", type=int, default=2, help="the model's --mhce-num-heads (default 2)")
    parser.add_argument("--output", type=Path, required=True,
                        help="the layout file to write (text: one position per line, in id order)")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m recipes.layouts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    kmeans = commands.add_parser("kmeans", help="balanced k-means of a softmax checkpoint's output embeddings")
    kmeans.add_argument("--checkpoint", type=Path, required=True,
                        help="a softmax model's fairseq checkpoint, trained on the same target dictionary")
    kmeans.add_argument("--iterations", type=int, default=KMEANS_ITERATIONS,
                        help=f"k-means iterations at most (default {KMEANS_ITERATIONS})")
    add_codec_options(kmeans)
    cooc = commands.add_parser("cooccurrence", help="PPMI+SVD bisection of the training text (tail_order.py)")
    cooc.add_argument("--dictionary", type=Path, required=True, help="the data-bin's dict.<tgt>.txt")
    cooc.add_argument("--target-text", type=Path, required=True, help="segmented target training text")
    cooc.add_argument("--source-text", type=Path, required=True, help="segmented source training text")
    cooc.add_argument("--max-pairs", type=int, default=MAX_PAIRS,
                      help=f"sentence pairs read for the counts (default {MAX_PAIRS})")
    add_codec_options(cooc)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    install_excepthook()  # a bad checkpoint or option: one line
    args = parse_args(argv)
    if args.command == "kmeans":
        embeddings = output_embeddings(args.checkpoint)
        layout = kmeans_layout(embeddings, args.mhce_shortlist, args.mhce_heads, args.mhce_num_heads, args.iterations)
    else:
        layout = cooccurrence_layout(args.dictionary, args.target_text, args.source_text, args.mhce_shortlist,
                                     args.mhce_heads, args.mhce_num_heads, args.max_pairs)
    check_layout(torch.from_numpy(layout), len(layout), NUM_SPECIALS, str(args.output))
    write_layout(args.output, layout)
    size = group_size(len(layout), args.mhce_shortlist, args.mhce_heads, args.mhce_num_heads)
    print(f"wrote {args.output}: {describe(layout, args.mhce_shortlist, size)}")


if __name__ == "__main__":
    main()
