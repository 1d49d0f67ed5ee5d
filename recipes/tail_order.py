"""Order a factored layer's tail so that each level-1 group holds tokens used alike.

The codec groups the tail's ids in blocks of K_2 consecutive ids, and fairseq numbers a
dictionary by frequency, so a group is a band of words of similar frequency and unrelated use.
This module reorders the dictionary file past the shortlist instead (the shortlisted entries and
the special symbols keep their ids): every tail token gets a distributional vector (its PPMI
co-occurrence with the target tokens just before and after it and with the source tokens of its
sentence pairs, reduced by a truncated SVD), and recursive bisection along the first principal
component cuts the tail into blocks of exactly K_2 (the last block takes the remainder). Tokens
never seen in the target text (a joint dictionary's source-only pieces, fairseq's padding
entries) get the zero vector: they tie in every split and so stay together, in frequency order,
mostly in groups of their own. Only the dictionary's order changes; the model, its exactness and
the decoding stay as they are.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import svds

NUM_SPECIALS = 4  # fairseq's <s> <pad> </s> <unk>: ids 0-3, not in the dictionary file
MAX_PAIRS = 200_000  # sentence pairs read for the context counts (enough for a 32k vocabulary)


def read_dictionary(path: Path) -> list[tuple[str, str]]:
    """A fairseq dictionary file as (token, rest of the line) pairs in file order; the rest is
    the count and any flag such as ``#fairseq:overwrite``."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        token, _, rest = line.partition(" ")
        entries.append((token, rest))
    return entries


def ppmi(counts: sparse.coo_matrix) -> sparse.csr_matrix:
    """PPMI(w, c) = max(0, log(n_wc n / (n_w n_c))) of a (rows, contexts) count matrix."""
    total = counts.sum()
    row_sums = np.asarray(counts.sum(axis=1)).ravel()
    col_sums = np.asarray(counts.sum(axis=0)).ravel()
    pmi = np.log(counts.data * total / (row_sums[counts.row] * col_sums[counts.col]))
    keep = pmi > 0
    return sparse.csr_matrix((pmi[keep], (counts.row[keep], counts.col[keep])), shape=counts.shape)


def row_normalised(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    """Each row divided by its L2 norm (all-zero rows stay zero)."""
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sparse.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ matrix


def most_frequent(lines: list[list[str]], limit: int) -> dict[str, int]:
    """The ``limit`` most frequent tokens of ``lines``, numbered from 0 by falling frequency
    (ties in order of first occurrence)."""
    counts = Counter(tok for tokens in lines for tok in tokens)
    return {tok: i for i, (tok, _) in enumerate(counts.most_common(limit))}


def context_counts(target: list[list[str]], source: list[list[str]], index: dict[str, int],
                   num_contexts: int) -> list[sparse.coo_matrix]:
    """Three (len(index), contexts) count matrices: left target neighbour, right target
    neighbour (sentence boundaries count as a context), and source tokens of the pair."""
    boundary = "</s>"
    tgt_ctx = {boundary: 0, **{t: i + 1 for t, i in most_frequent(target, num_contexts).items()}}
    src_ctx = most_frequent(source, num_contexts)
    rows: list[list[int]] = [[], [], []]
    cols: list[list[int]] = [[], [], []]
    for tgt, src in zip(target, source):
        tokens = [boundary, *tgt, boundary]
        source_cols = sorted({src_ctx[t] for t in src if t in src_ctx})
        for pos in range(1, len(tokens) - 1):
            row = index.get(tokens[pos])
            if row is None:
                continue
            for block, neighbour in ((0, tokens[pos - 1]), (1, tokens[pos + 1])):
                if neighbour in tgt_ctx:
                    rows[block].append(row)
                    cols[block].append(tgt_ctx[neighbour])
            rows[2] += [row] * len(source_cols)
            cols[2] += source_cols
    widths = (len(tgt_ctx), len(tgt_ctx), len(src_ctx))
    return [sparse.coo_matrix((np.ones(len(r)), (r, c)), shape=(len(index), w)).tocsr().tocoo()
            for r, c, w in zip(rows, cols, widths)]


def context_vectors(counts: list[sparse.coo_matrix], dim: int = 64) -> np.ndarray:
    """(rows, <= dim) unit vectors: the row-normalised PPMI blocks side by side, reduced to their
    top ``dim`` singular directions (u s); all-zero rows stay zero."""
    features = sparse.hstack([row_normalised(ppmi(block)) for block in counts]).tocsr()
    if features.nnz == 0:
        return np.zeros((features.shape[0], 1))
    if min(features.shape) <= dim + 1:  # too small for the sparse solver: an exact dense SVD
        u, s, _ = np.linalg.svd(features.toarray(), full_matrices=False)
        u, s = u[:, :dim], s[:dim]
    else:
        u, s, _ = svds(features, k=dim, random_state=0)
    vectors = u * s
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 1e-9)


def balanced_bisection(vectors: np.ndarray, group_size: int) -> list[np.ndarray]:
    """Rows of ``vectors`` cut into blocks of ``group_size`` (the last takes the remainder) by
    recursive splits along each subset's first principal component."""
    def split(rows: np.ndarray, groups: int) -> list[np.ndarray]:
        if groups == 1:
            return [np.sort(rows)]
        left_groups = groups // 2
        subset = vectors[rows] - vectors[rows].mean(axis=0)
        _, _, vt = np.linalg.svd(subset, full_matrices=False)
        order = rows[np.argsort(subset @ vt[0], kind="stable")]
        cut = left_groups * group_size
        return split(order[:cut], left_groups) + split(order[cut:], groups - left_groups)

    return split(np.arange(len(vectors)), -(-len(vectors) // group_size))


def token_lines(path: Path, limit: int) -> Iterator[list[str]]:
    """The first ``limit`` lines of a segmented text file, split into tokens."""
    with path.open(encoding="utf-8") as lines:
        for line in islice(lines, limit):
            yield line.split()


def context_ordered_dictionary(dictionary: Path, target_text: Path, source_text: Path, shortlist: int,
                               group_size: int, output: Path, max_pairs: int = MAX_PAIRS) -> list[list[str]]:
    """Write ``output``: ``dictionary`` with its entries past the shortlist (ids >= ``shortlist``)
    regrouped by context, ``group_size`` to a group, from the first ``max_pairs`` sentence pairs
    of the segmented training text. Returns the groups' tokens."""
    entries = read_dictionary(dictionary)
    fixed = shortlist - NUM_SPECIALS
    if not 0 <= fixed <= len(entries) - 2:
        raise ValueError(f"a shortlist of {shortlist} ids leaves no tail in {dictionary} ({len(entries)} entries "
                         f"+ {NUM_SPECIALS} special symbols): give a shortlist of 4 to {len(entries) + 2}")
    tail = entries[fixed:]
    counts = context_counts(list(token_lines(target_text, max_pairs)), list(token_lines(source_text, max_pairs)),
                            {token: row for row, (token, _) in enumerate(tail)}, num_contexts=4000)
    groups = balanced_bisection(context_vectors(counts), group_size)
    output.write_text("".join(f"{token} {rest}\n" for token, rest in entries[:fixed] + [tail[i] for g in groups for i in g]),
                      encoding="utf-8")
    return [[tail[i][0] for i in group] for group in groups]
