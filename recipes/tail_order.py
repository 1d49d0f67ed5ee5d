"""Order a factored layer's tail so that each level-1 group holds tokens used alike.

The codec groups the tail's ids in blocks of K_2 consecutive ids, and fairseq numbers a
dictionary by frequency, so a group is a band of words of similar frequency and unrelated use.
This module reorders the dictionary file past the shortlist instead (the shortlisted entries and
the special symbols keep their ids): every tail token gets a distributional vector (its PPMI
co-occurrence with the target tokens just before and after it and with the source tokens of its
sentence pairs, reduced by a truncated SVD), and recursive bisection along the first principal
component cuts the tail into blocks of exactly K_2 (the last block takes the remainder). Groups
then hold tokens that occur in like contexts, which a linear level-1 classifier can separate.
Only the dictionary's order changes; the model, its exactness and the decoding stay as they are.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import svds

NUM_SPECIALS = 4  # fairseq's <s> <pad> </s> <unk>: ids 0-3, not in the dictionary file


def read_dictionary(path: Path) -> list[tuple[str, str]]:
    """A fairseq dictionary file as (token, rest of the line) pairs, in file order."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        token, _, rest = line.rpartition(" ")
        entries.append((token, rest) if token else (rest, ""))
    return entries


def ppmi(counts: sparse.csr_matrix) -> sparse.csr_matrix:
    """Positive pointwise mutual information of a (rows, contexts) count matrix."""
    counts = counts.tocoo()
    total = counts.sum()
    row_sums = np.asarray(counts.sum(axis=1)).ravel()
    col_sums = np.asarray(counts.sum(axis=0)).ravel()
    pmi = np.log(counts.data * total / (row_sums[counts.row] * col_sums[counts.col]))
    keep = pmi > 0
    return sparse.csr_matrix((pmi[keep], (counts.row[keep], counts.col[keep])), shape=counts.shape)


def row_normalised(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix


def context_vectors(target_lines: Sequence[str], source_lines: Sequence[str], index: dict[str, int],
                    num_rows: int, num_contexts: int = 4000, dim: int = 64) -> np.ndarray:
    """(num_rows, dim) unit vectors for the tokens numbered by ``index`` (rows >= num_rows are
    ignored): PPMI with the left and right target neighbours and the source tokens of the pair,
    each block over its ``num_contexts`` most frequent context tokens, then a truncated SVD."""
    tgt_freq: dict[str, int] = {}
    src_freq: dict[str, int] = {}
    for line in target_lines:
        for tok in line.split():
            tgt_freq[tok] = tgt_freq.get(tok, 0) + 1
    for line in source_lines:
        for tok in line.split():
            src_freq[tok] = src_freq.get(tok, 0) + 1
    boundary = "</s>"
    tgt_ctx = {t: i for i, t in enumerate([boundary, *sorted(tgt_freq, key=lambda t: -tgt_freq[t])[:num_contexts]])}
    src_ctx = {t: i for i, t in enumerate(sorted(src_freq, key=lambda t: -src_freq[t])[:num_contexts])}
    rows: list[list[int]] = [[], [], []]
    cols: list[list[int]] = [[], [], []]
    for tgt, src in zip(target_lines, source_lines):
        tokens = [boundary, *tgt.split(), boundary]
        source = sorted({src_ctx[t] for t in src.split() if t in src_ctx})
        for pos in range(1, len(tokens) - 1):
            row = index.get(tokens[pos], num_rows)
            if row >= num_rows:
                continue
            for block, neighbour in ((0, tokens[pos - 1]), (1, tokens[pos + 1])):
                if neighbour in tgt_ctx:
                    rows[block].append(row)
                    cols[block].append(tgt_ctx[neighbour])
            rows[2] += [row] * len(source)
            cols[2] += source
    blocks = []
    for block, width in ((0, len(tgt_ctx)), (1, len(tgt_ctx)), (2, len(src_ctx))):
        counts = sparse.csr_matrix((np.ones(len(rows[block])), (rows[block], cols[block])),
                                   shape=(num_rows, width))
        counts.sum_duplicates()
        blocks.append(row_normalised(ppmi(counts)))
    features = sparse.hstack(blocks).tocsr()
    k = min(dim, min(features.shape) - 1)
    u, s, _ = svds(features, k=k, random_state=0)
    vectors = u * s
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def balanced_bisection(vectors: np.ndarray, group_size: int) -> list[np.ndarray]:
    """Rows of ``vectors`` cut into blocks of ``group_size`` (the last takes the remainder) by
    recursive splits along each subset's first principal component."""
    def split(rows: np.ndarray, groups: int) -> list[np.ndarray]:
        if groups == 1:
            return [np.sort(rows)]
        left_groups = groups // 2
        subset = vectors[rows] - vectors[rows].mean(axis=0)
        _, _, vt = np.linalg.svd(subset, full_matrices=False)
        projection = subset @ vt[0]
        order = rows[np.argsort(projection, kind="stable")]
        cut = left_groups * group_size
        return split(order[:cut], left_groups) + split(order[cut:], groups - left_groups)

    num_groups = -(-len(vectors) // group_size)
    return split(np.arange(len(vectors)), num_groups)


def context_ordered_dictionary(dictionary: Path, target_text: Path, source_text: Path, shortlist: int,
                               group_size: int, output: Path) -> list[list[str]]:
    """Write ``output``: ``dictionary`` with its entries past the shortlist (ids >= ``shortlist``)
    regrouped by context, ``group_size`` to a group. Returns the groups' tokens."""
    entries = read_dictionary(dictionary)
    fixed = shortlist - NUM_SPECIALS
    if not 0 <= fixed < len(entries) - 1:
        raise ValueError(f"a shortlist of {shortlist} ids leaves no tail in {dictionary} ({len(entries)} entries "
                         f"+ {NUM_SPECIALS} special symbols)")
    tail = entries[fixed:]
    index = {token: i for i, (token, _) in enumerate(tail)}
    vectors = context_vectors(target_text.read_text(encoding="utf-8").splitlines(),
                              source_text.read_text(encoding="utf-8").splitlines(), index, len(tail))
    groups = balanced_bisection(vectors, group_size)
    ordered = entries[:fixed] + [tail[i] for group in groups for i in group]
    output.write_text("".join(f"{token} {rest}\n" for token, rest in ordered), encoding="utf-8")
    return [[tail[i][0] for i in group] for group in groups]
