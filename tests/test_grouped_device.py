"""The accelerator ways of grouped_child_scores, run on the CPU: exact, and never a host sync.

Values and all three gradients are compared with plain autograd through gathered weights (the
same naive reference as test_grouped.py). The device ways leave the children past the end of
the table (the partial last prefix) to the caller's mask, as the CPU planner does, so those
columns get zero upstream gradient here, as they do behind a mask.

"No host sync" is checked on the meta device: meta tensors have shapes but no values, so any
step that reads a value back (.item(), .tolist(), nonzero, unique, a data-dependent branch)
raises there. A whole MHE training step (loss terms with joint smoothing, backward) and the
coarse-to-fine candidates must run on meta; the CPU planner must not (the check can fail).
"""
import itertools

import pytest
import torch

from mhce_nmt.codec import LabelCodec, ShortlistCodec
from mhce_nmt.output import build_output_layer, factored_loss
from mhce_nmt.output.grouped import DENSE_DECODE_MAX_ELEMENTS, choose_path, grouped_child_scores
from mhce_nmt.output.grouped_device import GATHER_CHUNK_ELEMENTS

from grouped_reference import naive, skewed_parents

pytestmark = pytest.mark.usefixtures("one_thread")

DEVICE_PATHS = ("grouped_mm", "gathered", "dense")


def operands(k, prefixes, extra, with_bias, with_rows, dtype, seed=0):
    table_rows = (prefixes - 1) * k + extra if extra < k else prefixes * k
    g = torch.Generator().manual_seed(seed * 1000 + k * 100 + prefixes)
    e, m = 6, 90
    table = torch.randn(table_rows, e, generator=g, dtype=dtype)
    bias = torch.randn(table_rows, generator=g, dtype=dtype) if with_bias else None
    parents = skewed_parents(m, -(-table_rows // k), seed=k)
    n = 25 if with_rows else m
    z = torch.randn(n, e, generator=g, dtype=dtype)
    rows = torch.randint(0, n, (m,), generator=g) if with_rows else None
    # children past the table are masked by every caller: no gradient reaches them
    real = (parents.unsqueeze(1) * k + torch.arange(k)) < table_rows
    grad_out = torch.randn(m, k, generator=g, dtype=dtype) * real
    return z, parents, table, bias, rows, grad_out, real


def run(fn, z, parents, table, bias, k, rows, grad_out):
    leaves = [t.clone().requires_grad_(True) for t in (z, table) + ((bias,) if bias is not None else ())]
    out = fn(leaves[0], parents, leaves[1], leaves[2] if bias is not None else None, k, rows)
    return out, torch.autograd.grad(out, leaves, grad_out)


CASES = list(itertools.product(
    DEVICE_PATHS,
    [(3, 40, 2), (5, 37, 2), (8, 12, 8)],  # (K, prefixes, children of the last prefix): partial or whole
    [True, False],                          # bias
    [False, True],                          # rows given (decoding, sampled groups) or not
))


@pytest.mark.parametrize("path,shape,with_bias,with_rows", CASES)
def test_device_paths_equal_naive_reference(path, shape, with_bias, with_rows):
    k, prefixes, extra = shape
    z, parents, table, bias, rows, grad_out, real = operands(k, prefixes, extra, with_bias, with_rows,
                                                             torch.float32)
    out, grads = run(lambda *a: grouped_child_scores(*a, path=path), z, parents, table, bias, k, rows, grad_out)
    ref, ref_grads = run(naive, z, parents, table, bias, k, rows, grad_out)
    torch.testing.assert_close(out[real], ref[real])
    assert torch.isfinite(out).all()
    for name, got, want in zip(("z", "table", "bias"), grads, ref_grads):
        torch.testing.assert_close(got, want, msg=lambda s: f"{name}: {s}")


@pytest.mark.parametrize("path", DEVICE_PATHS)
def test_device_paths_in_bf16_close_to_fp32(path):
    """bf16 operands (the grouped GEMM's dtype on sm90): within bf16 rounding of the fp32 result."""
    z, parents, table, bias, rows, grad_out, real = operands(5, 37, 2, True, True, torch.float32)
    ref = naive(z, parents, table, bias, 5, rows)
    out = grouped_child_scores(z.bfloat16(), parents, table.bfloat16(), bias.bfloat16(), 5, rows, path=path)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float()[real], ref[real], atol=0.1, rtol=0.05)


def test_gathered_chunks_cover_every_row(monkeypatch):
    """More rows than one chunk: every chunk is computed and every gradient accumulated."""
    from mhce_nmt.output import grouped_device
    z, parents, table, bias, rows, grad_out, real = operands(3, 40, 7, True, True, torch.float32)
    monkeypatch.setattr(grouped_device, "GATHER_CHUNK_ELEMENTS", 3 * 6 * 7)  # 7 rows a chunk
    out, grads = run(lambda *a: grouped_child_scores(*a, path="gathered"), z, parents, table, bias, 3, rows,
                     grad_out)
    ref, ref_grads = run(naive, z, parents, table, bias, 3, rows, grad_out)
    torch.testing.assert_close(out[real], ref[real])
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)
    assert GATHER_CHUNK_ELEMENTS >= 1 << 20  # the default keeps kernels large


def test_autocast_runs_the_products_in_the_autocast_dtype_and_returns_fp32_gradients():
    z, parents, table, bias, rows, grad_out, real = operands(5, 37, 2, True, False, torch.float32)
    leaves = [t.clone().requires_grad_(True) for t in (z, table, bias)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = grouped_child_scores(leaves[0], parents, leaves[1], leaves[2], 5)
    assert out.dtype == torch.bfloat16
    grads = torch.autograd.grad(out, leaves, grad_out.bfloat16())
    assert [g.dtype for g in grads] == [torch.float32] * 3
    ref, ref_grads = run(naive, z, parents, table, bias, 5, None, grad_out)
    torch.testing.assert_close(out.float()[real], ref[real], atol=0.1, rtol=0.05)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=0.2, rtol=0.05)


def test_choose_path_by_device_dtype_size_and_kernel(monkeypatch):
    from mhce_nmt.output import grouped

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    big, small = DENSE_DECODE_MAX_ELEMENTS + 1, DENSE_DECODE_MAX_ELEMENTS
    monkeypatch.setattr(grouped, "fast_grouped_mm", lambda device: True)  # an sm90 GPU
    assert choose_path(cpu, torch.bfloat16, big, 128, True) == "planned"
    assert choose_path(cpu, torch.float32, small, 128, False) == "planned"
    assert choose_path(cuda, torch.bfloat16, small, 128, True) == "grouped_mm"
    assert choose_path(cuda, torch.float32, small, 128, True) == "gathered"
    assert choose_path(cuda, torch.float16, big, 128, True) == "gathered"
    assert choose_path(cuda, torch.bfloat16, big, 128, False) == "grouped_mm"
    assert choose_path(cuda, torch.bfloat16, small, 128, False) == "dense"
    assert choose_path(cuda, torch.float32, big, 128, False) == "dense"
    assert choose_path(cuda, torch.bfloat16, big, 1024, True) == "gathered"  # the kernel's group limit
    assert choose_path(cuda, torch.bfloat16, big, 1024, False) == "dense"
    monkeypatch.setattr(grouped, "fast_grouped_mm", lambda device: False)  # older GPU or torch: a sync
    assert choose_path(cuda, torch.bfloat16, small, 128, True) == "gathered"
    assert choose_path(cuda, torch.bfloat16, big, 128, False) == "dense"


def test_fast_grouped_mm_only_where_torch_has_the_kernel():
    from mhce_nmt.output.grouped import fast_grouped_mm

    assert fast_grouped_mm(torch.device("meta"))  # torch 2.13 has F.grouped_mm
    assert not fast_grouped_mm(torch.device("cpu"))


def test_unknown_path_is_refused():
    z, parents, table, bias, rows, _, _ = operands(3, 40, 7, False, False, torch.float32)
    with pytest.raises(ValueError, match="unknown path 'fast'"):
        grouped_child_scores(z, parents, table, bias, 3, path="fast")


# ---------------------------------------------------------------- no host sync (meta device)

def layer_over_1000(mode, shortlist=0):
    """A layer over V = 1,000 (heads 32 x 32: the last prefix is partial); mode mhe-tied: mhe whose
    output rows are a (V, 16) decoder embedding."""
    codec = ShortlistCodec.build(1000, shortlist) if shortlist else LabelCodec.build(1000)
    tied = torch.nn.Parameter(torch.randn(1000, 16) * 0.25) if mode == "mhe-tied" else None
    return build_output_layer(mode.split("-")[0], codec, 16, tied_weight=tied)


def meta_layer(mode, dtype, shortlist=0):
    """layer_over_1000 on the meta device."""
    return layer_over_1000(mode, shortlist).to("meta", dtype)


@pytest.mark.parametrize("mode,shortlist", [("mhe", 0), ("mhe", 64), ("mhp", 0), ("mhp", 64), ("mhe-tied", 64)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_training_step_reads_no_value_back(mode, shortlist, dtype):
    """loss terms with joint smoothing and their backward on meta tensors: nothing can be read."""
    layer = meta_layer(mode, dtype, shortlist)
    x = torch.randn(64, 16, device="meta", dtype=dtype, requires_grad=True)
    target = torch.randint(0, 1000, (64,), device="meta")
    terms = layer.loss_terms(x, target, sum_groups=2)
    factored_loss(terms, 0.1, "joint").loss.sum().backward()  # the criterion's loss, as in training
    assert x.grad.shape == x.shape
    assert all(p.grad is not None for p in layer.parameters() if p.requires_grad)


@pytest.mark.parametrize("mode,shortlist,dtype,path", [
    ("mhe", 0, torch.float32, None), ("mhe", 64, torch.float32, None), ("mhp", 0, torch.float32, None),
    ("mhe", 0, torch.bfloat16, "grouped_mm"), ("mhe", 64, torch.bfloat16, "grouped_mm"),
])
def test_coarse_to_fine_candidates_read_no_value_back(mode, shortlist, dtype, path):
    """Decoding steps: the dense way (chosen here) and the grouped GEMM (a large bf16 table's)."""
    from mhce_nmt.output.grouped import forced_path

    layer = meta_layer(mode, dtype, shortlist)
    with torch.no_grad(), forced_path(path):
        ids, scores = layer.candidates(torch.randn(30, 16, device="meta", dtype=dtype), [4])
    assert ids.shape == scores.shape and ids.shape[0] == 30


def test_cpu_planner_reads_values_back_so_the_meta_check_can_fail():
    z, parents, table, bias, rows, _, _ = operands(3, 40, 7, True, False, torch.float32)
    with pytest.raises((NotImplementedError, RuntimeError)):
        grouped_child_scores(z.to("meta"), parents.to("meta"), table.to("meta"), bias.to("meta"), 3,
                             path="planned")


@pytest.mark.parametrize("path", DEVICE_PATHS)
@pytest.mark.parametrize("mode,shortlist", [("mhe", 0), ("mhe", 64), ("mhe-tied", 64)])
def test_coarse_to_fine_decoding_on_every_way_equals_brute_force(path, mode, shortlist):
    """Candidates with every group kept, on each device way: the exact log-probs of all V ids
    (brute force: the layer's full (N, V) log_probs, level by level)."""
    from mhce_nmt.output.grouped import forced_path

    torch.manual_seed(0)
    layer = layer_over_1000(mode, shortlist).eval()
    x = torch.randn(7, 16)
    with torch.no_grad():
        full = layer.log_probs(x)  # (7, V)
        with forced_path(path):
            ids, scores = layer.candidates(x, None)  # every group kept: exhaustive
    real = torch.isfinite(scores)
    assert int(real.sum(1).min()) == 1000  # every id once per row
    torch.testing.assert_close(scores[real].view(7, 1000), full.gather(1, ids[real].view(7, 1000)),
                               rtol=1e-4, atol=1e-5)
