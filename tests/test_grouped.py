"""grouped_child_scores against a naive gather-then-matmul reference, for every execution plan.

The function mixes padded batched matmuls (per block of prefixes, `cap` rows each) with one
matmul per prefix (rows past `cap`, the partial last prefix); these tests force each mix and
compare forward values and all three gradients with plain autograd through gathered weights.
"""
import itertools

import pytest
import torch

from mhce_nmt.output import grouped_cpu as grouped
from mhce_nmt.output.grouped import grouped_child_scores
from mhce_nmt.output.grouped_cpu import padded_rows
from grouped_reference import naive, skewed_parents

pytestmark = pytest.mark.usefixtures("one_thread")


CASES = list(itertools.product(
    [(3, 40, 7), (5, 37, 13)],     # (K, prefixes, rows past the last whole group: partial group)
    [None, 0, 1, 4, 1000],         # cap: cost model, per prefix only, tiny, some overflow, no overflow
    [True, False],                 # bias
    [False, True],                 # rows given (decoding) or not (training)
))


@pytest.mark.parametrize("shape,cap,with_bias,with_rows", CASES)
def test_forward_and_gradients_equal_naive_reference(shape, cap, with_bias, with_rows):
    k, prefixes, extra = shape
    table_rows = (prefixes - 1) * k + extra if extra < k else prefixes * k
    g = torch.Generator().manual_seed(k * 100 + prefixes)
    e, m = 6, 90
    table = torch.randn(table_rows, e, generator=g, dtype=torch.float64)
    bias = torch.randn(table_rows, generator=g, dtype=torch.float64) if with_bias else None
    parents = skewed_parents(m, -(-table_rows // k), seed=k)
    n = 25 if with_rows else m
    z = torch.randn(n, e, generator=g, dtype=torch.float64)
    rows = torch.randint(0, n, (m,), generator=g) if with_rows else None
    grad_out = torch.randn(m, k, generator=g, dtype=torch.float64)

    leaves = [t.clone().requires_grad_(True) for t in (z, table)] + (
        [bias.clone().requires_grad_(True)] if with_bias else [])
    out = grouped_child_scores(leaves[0], parents, leaves[1], leaves[2] if with_bias else None, k, rows, cap)
    grads = torch.autograd.grad(out, leaves, grad_out)

    ref_leaves = [t.clone().requires_grad_(True) for t in leaves]
    ref = naive(ref_leaves[0], parents, ref_leaves[1], ref_leaves[2] if with_bias else None, k, rows)
    ref_grads = torch.autograd.grad(ref, ref_leaves, grad_out)

    torch.testing.assert_close(out, ref)
    for name, got, want in zip(("z", "table", "bias"), grads, ref_grads):
        torch.testing.assert_close(got, want, msg=lambda s: f"{name}: {s}")


def test_block_boundaries_and_whole_table_without_rows():
    """More prefixes than one block, every prefix absent but one: gradients of the absent
    prefixes' rows are exactly zero whichever plan runs."""
    k, prefixes, e = 4, grouped.BLOCK_PREFIXES * 2 + 3, 5
    table = torch.randn(prefixes * k, e, dtype=torch.float64, requires_grad=True)
    z = torch.randn(6, e, dtype=torch.float64, requires_grad=True)
    parents = torch.full((6,), grouped.BLOCK_PREFIXES + 1)
    for cap in (None, 0, 2, 6):
        out = grouped_child_scores(z, parents, table, None, k, None, cap)
        (grad_table,) = torch.autograd.grad(out.sum(), [table])
        touched = torch.zeros(prefixes * k, dtype=torch.bool)
        touched[(grouped.BLOCK_PREFIXES + 1) * k: (grouped.BLOCK_PREFIXES + 2) * k] = True
        assert torch.count_nonzero(grad_table[~touched]) == 0
        torch.testing.assert_close(grad_table[touched], z.sum(0).expand(k, e))


def brute_force_cap(sizes, prefixes):
    def cost(c):
        over = [n for n in sizes if n > c]
        return (grouped.MATMUL_CALL_ROWS * ((c > 0) + len(over)) + prefixes * c
                + sum(n - c for n in over))
    return min(range(0, max(sizes, default=0) + 1), key=lambda c: (cost(c), c))


@pytest.mark.parametrize("seed", range(30))
def test_padded_rows_minimises_the_cost_model(seed):
    g = torch.Generator().manual_seed(seed)
    prefixes = int(torch.randint(1, 40, (1,), generator=g))
    present = int(torch.randint(0, prefixes + 1, (1,), generator=g))
    sizes = (torch.randint(1, 60, (present,), generator=g) ** (1 + seed % 3) // 10 + 1).tolist()

    def cost(c):
        return grouped.MATMUL_CALL_ROWS * (c > 0) + prefixes * c + sum(
            max(n - c, 0) + grouped.MATMUL_CALL_ROWS * (n > c) for n in sizes)

    assert cost(padded_rows(sizes, prefixes)) == cost(brute_force_cap(sizes, prefixes))


def test_padded_rows_extremes():
    assert padded_rows([], 16) == 0
    assert padded_rows([1], 16) == 0          # one light prefix: one small matmul
    assert padded_rows([14] * 16, 16) == 14   # a full block of equal prefixes: pure batch


def test_no_grad_calls_reuse_scratch_without_aliasing_results():
    """Decoding path (no autograd): buffers are lent between calls, results never alias them."""
    g = torch.Generator().manual_seed(3)
    k, prefixes, e = 5, 40, 7
    table = torch.randn(prefixes * k, e, generator=g, requires_grad=True)  # a parameter, as in a model
    bias = torch.randn(prefixes * k, generator=g)
    results = []
    with torch.no_grad():
        for m, n in ((300, 40), (50, 10), (900, 120)):  # grow, shrink, grow the buffers
            z = torch.randn(n, e, generator=g)
            parents = skewed_parents(m, prefixes, seed=m)
            rows = torch.randint(0, n, (m,), generator=g)
            out = grouped_child_scores(z, parents, table, bias, k, rows)
            assert not out.requires_grad
            results.append((out.clone(), out, naive(z, parents, table, bias, k, rows)))
    for kept, out, ref in results:
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        assert torch.equal(kept, out)  # later calls did not write into earlier results
