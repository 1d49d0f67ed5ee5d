"""Where the time of one coarse-to-fine decoding step goes.

The step is bench_output_layer.py's own (its `Bench.decode_step`: `layer.candidates(x, [G])` +
top-k(2 * beam) for --hyps random decoder states, same layer and states for the same seed). It
times the step, then
profiles the same step with torch.profiler and prints, per step: the ops by self time, the
time outside any op (Python, dispatch), and the throughput of the matrix products against a
dense (hyps x d) @ (d x V) product timed in the same run, so the bound of the step is measured
here rather than assumed.

    python -m scripts.profile_decode_step                      # mhe, V=32768, G=8, 320 hyps
    python -m scripts.profile_decode_step --method mhp --vocab 131072
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch

from scripts import bench_output_layer as bench

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
CPU = torch.device("cpu")


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(bench.timed(fn, CPU) for _ in range(repeats))


def matmul_flops(shapes: List[List[int]], name: str) -> int:
    """FLOPs of one mm/addmm/bmm/baddbmm call from its recorded input shapes."""
    if name in ("aten::mm", "aten::bmm"):
        a, b = shapes[0], shapes[1]
    else:  # addmm / baddbmm: (bias, a, b, ...)
        a, b = shapes[1], shapes[2]
    batch = a[0] if len(a) == 3 else 1
    return 2 * batch * a[-2] * a[-1] * b[-1]


def profile_step(step: Callable[[], object], steps: int) -> Dict[str, float]:
    """Per-step self time of every op (ms), the matrix products' FLOPs and time, and the
    profiled step's wall time (the profiler slows every op down a little)."""
    with torch.profiler.profile(record_shapes=True) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        profiled_ms = (time.perf_counter() - start) * 1e3 / steps
    per_op: Dict[str, float] = {}
    flops, matmul_ms = 0, 0.0
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CPU or event.name.startswith("ProfilerStep"):
            continue
        ms = event.self_cpu_time_total / 1e3 / steps
        per_op[event.name] = per_op.get(event.name, 0.0) + ms
        if event.name in MATMUL_OPS and event.input_shapes:
            flops += matmul_flops(event.input_shapes, event.name) // steps
            matmul_ms += event.cpu_time_total / 1e3 / steps
    per_op["_matmul_flops"], per_op["_matmul_ms"], per_op["_wall_ms"] = float(flops), matmul_ms, profiled_ms
    return per_op


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=("mhe", "mhp"), default="mhe")
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--hyps", type=int, default=320, help="hypotheses per step (64 sentences x beam 5)")
    parser.add_argument("--topk-groups", type=int, default=8)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if min(args.repeats, args.threads, args.hyps, args.topk_groups, args.beam) < 1:
        parser.error("--repeats, --threads, --hyps, --topk-groups and --beam must be >= 1")
    torch.set_num_threads(args.threads)
    bench_args = bench.parse_args([
        "--vocab-sizes", str(args.vocab), "--methods", args.method, "--dim", str(args.dim),
        "--hyps", str(args.hyps), "--topk-groups", str(args.topk_groups), "--beam", str(args.beam),
        "--seed", str(args.seed)])
    workload = bench.Bench(args.method, args.vocab, bench_args, CPU, torch.float32)
    step, states, codec = workload.decode_step, workload.xh, workload.codec
    weight = torch.randn(args.vocab, args.dim) * args.dim ** -0.5

    @torch.no_grad()
    def dense():
        return states @ weight.t()

    wall = median_ms(step, args.repeats)
    dense_ms = median_ms(dense, args.repeats)
    ops = profile_step(step, args.repeats)
    flops, matmul_ms, profiled = ops.pop("_matmul_flops"), ops.pop("_matmul_ms"), ops.pop("_wall_ms")
    in_ops = sum(ops.values())
    dense_gflops = 2 * args.hyps * args.dim * args.vocab / dense_ms / 1e6
    print(f"# {args.method} V={args.vocab} codec {codec} d={args.dim} hyps={args.hyps} "
          f"G={args.topk_groups} threads={args.threads}")
    print(f"step (median of {args.repeats}): {wall:.2f} ms; profiled step {profiled:.2f} ms = "
          f"{in_ops:.2f} ms inside ops + {max(profiled - in_ops, 0.0):.2f} ms outside (Python, dispatch)")
    print(f"matrix products: {flops / 1e9:.3f} GFLOP in {matmul_ms:.2f} ms = "
          f"{flops / max(matmul_ms, 1e-9) / 1e6:.1f} GFLOP/s; dense (hyps x d) @ (d x V): "
          f"{dense_ms:.2f} ms = {dense_gflops:.1f} GFLOP/s")
    print(f"{'op':28s} {'ms/step':>8s}")
    for name, ms in sorted(ops.items(), key=lambda kv: -kv[1])[:15]:
        print(f"{name:28s} {ms:8.3f}")
    return {"wall_ms": wall, "profiled_ms": profiled, "ops_ms": in_ops, "matmul_gflop": flops / 1e9, "matmul_ms": matmul_ms,
            "dense_ms": dense_ms}


if __name__ == "__main__":
    main()
