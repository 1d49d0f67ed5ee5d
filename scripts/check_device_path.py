#!/usr/bin/env python
"""On a CUDA device: the sync-free grouped products are exact, and a training step never syncs.

For MHE (with and without a shortlist) and MHP at --vocab, in fp32 and bf16:
  1. one training step (loss terms with joint smoothing, backward) on the device, with
     torch.cuda.set_sync_debug_mode("error"): any host sync raises;
  2. the same step on the CPU (the host-planned way) from the same weights and inputs: the
     per-level scores and every gradient must agree (fp32: 1e-4 relative; bf16: bf16 rounding);
  3. coarse-to-fine candidates on the device against the CPU's, ids and scores.
Prints one line per check and exits 1 if any failed. The CPU tests (tests/test_grouped_device.py)
check the same ways on the CPU and, on the meta device, that they read no value back.

    python -m scripts.check_device_path --vocab 32768 --tokens 4096 --json OUT.json
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List

import torch

from mhce_nmt.codec import LabelCodec, ShortlistCodec
from mhce_nmt.output import build_output_layer, factored_loss
from mhce_nmt.output.grouped import choose_path

LAYERS = (("mhe", 0), ("mhe", 1024), ("mhp", 0))


def step(layer, x, target, groups):
    """Loss terms, label smoothing 0.1 (joint from `groups` sampled groups; None: per level),
    backward: (per-level logits, grads of x and of every weight)."""
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    terms = layer.loss_terms(x, target, groups)
    factored_loss(terms, 0.1, "per-level" if groups is None else "joint").loss.sum().backward()
    grads = [x.grad] + [p.grad for p in layer.parameters()]
    return [level.logits.detach() for level in terms.levels], grads


def close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> float:
    """Largest error relative to the reference's scale (NaN if the shapes differ)."""
    if a.shape != b.shape:
        return float("nan")
    a, b = a.float().cpu(), b.float().cpu()
    finite = torch.isfinite(b)
    return float((a[finite] - b[finite]).abs().max() / b[finite].abs().max().clamp(min=1e-6)) if finite.any() else 0.0


def check(mode: str, shortlist: int, dtype: torch.dtype, args) -> Dict[str, object]:
    torch.manual_seed(0)
    codec = ShortlistCodec.build(args.vocab, shortlist) if shortlist else LabelCodec.build(args.vocab)
    cpu_layer = build_output_layer(mode, codec, args.dim).to(dtype)
    gpu_layer = build_output_layer(mode, codec, args.dim).to(dtype)
    gpu_layer.load_state_dict(cpu_layer.state_dict())
    gpu_layer.cuda()
    x = torch.randn(args.tokens, args.dim).to(dtype)
    target = torch.randint(0, args.vocab, (args.tokens,))
    record: Dict[str, object] = {"layer": mode + (f"+shortlist{shortlist}" if shortlist else ""),
                                 "dtype": str(dtype).replace("torch.", ""),
                                 "train_path": None, "decode_path": None}
    tolerance = 1e-4 if dtype == torch.float32 else 3e-2
    x_gpu, target_gpu = x.cuda(), target.cuda()  # host-to-device copies are syncs: before the check
    groups = codec.num_prefixes[0] if not shortlist else codec.tail.num_prefixes[0]
    table = args.vocab * args.dim
    record["train_path"] = choose_path(x_gpu.device, dtype, table, groups, True) if mode == "mhe" else None
    record["decode_path"] = choose_path(x_gpu.device, dtype, table, groups, False) if mode == "mhe" else None
    # the training step as configured (joint smoothing, one sampled group) must not sync ...
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step(gpu_layer, x_gpu, target_gpu, 1)
        record["train_sync_free"] = True
    except RuntimeError as err:
        record["train_sync_free"] = f"no: {str(err).splitlines()[0]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    # ... and gives the CPU's values (per-level smoothing: the devices would sample other groups)
    gpu_levels, gpu_grads = step(gpu_layer, x_gpu, target_gpu, None)
    cpu_levels, cpu_grads = step(cpu_layer, x, target, None)
    errors = [close(g, c, dtype) for g, c in zip(gpu_levels + gpu_grads, cpu_levels + cpu_grads)]
    record["train_max_rel_error"] = max(errors)
    with torch.no_grad():
        hyps = x[: args.hyps]
        gpu_ids, gpu_scores = gpu_layer.candidates(hyps.cuda(), [args.topk_groups])
        cpu_ids, cpu_scores = cpu_layer.candidates(hyps, [args.topk_groups])
    record["decode_ids_equal_share"] = float((gpu_ids.cpu() == cpu_ids).float().mean())
    record["decode_max_rel_error"] = close(gpu_scores, cpu_scores, dtype)
    record["ok"] = (record["train_sync_free"] is True and record["train_max_rel_error"] <= tolerance
                    and record["decode_max_rel_error"] <= tolerance
                    and record["decode_ids_equal_share"] >= (1.0 if dtype == torch.float32 else 0.95))
    return record


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--hyps", type=int, default=320)
    parser.add_argument("--topk-groups", type=int, default=8)
    parser.add_argument("--json", help="write the records here")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("error: no CUDA device here; the CPU checks are tests/test_grouped_device.py (make test)")
    records = []
    for mode, shortlist in LAYERS:
        for dtype in (torch.float32, torch.bfloat16):
            record = check(mode, shortlist, dtype, args)
            records.append(record)
            print(json.dumps(record), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    failed = [r for r in records if not r["ok"]]
    print(f"{len(records) - len(failed)} of {len(records)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
