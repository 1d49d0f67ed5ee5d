#!/usr/bin/env python
"""Optimizer step time: fairseq's ``adam`` against the plugin's ``adam_fused``, side by side.

Builds the demo's model (``--arch transformer_mhce_cpu`` with ``recipes.pipeline.CPU_MODEL_ARGS``, mhe with a 1,024-id shortlist) over a
binarised data directory, as fairseq-train would, gives every parameter a random gradient and
times optimizer steps of both, interleaved round by round (machine noise hits both alike):

    python -m scripts.bench_optimizer recipes/libreoffice_de_en/work/bin-spm16000 --threads 2

Prints the median ms per step of each and their ratio; --json writes them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Dict, List

import torch

OPTIMIZERS = ("adam", "adam_fused")


def demo_parameters(data: Path) -> List[torch.nn.Parameter]:
    """The parameters of the demo's model over `data`, built by fairseq's task as in training."""
    import mhce_nmt  # noqa: F401  (registers the model and adam_fused)
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    from recipes.config import CPU_MODEL_ARGS

    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(data), "--task", "translation_mhce", "--arch", "transformer_mhce_cpu", "--mhce-mode", "mhe",
        "--mhce-shortlist", "1024", "--criterion", "mhce_cross_entropy", "--cpu", *CPU_MODEL_ARGS])
    cfg = convert_namespace_to_omegaconf(args)
    model = tasks.setup_task(cfg.task).build_model(cfg.model)
    return [p for p in model.parameters() if p.requires_grad]


def build(name: str, params: List[torch.nn.Parameter]):
    """fairseq's optimizer `name` over `params`, with the demo's betas and lr."""
    from fairseq.optim import OPTIMIZER_DATACLASS_REGISTRY, OPTIMIZER_REGISTRY

    settings = {"adam_betas": "(0.9,0.98)", "lr": [1.4e-3], **({"tpu": False} if name == "adam" else {})}
    return OPTIMIZER_REGISTRY[name](OPTIMIZER_DATACLASS_REGISTRY[name](**settings), params)


def main(argv: List[str] | None = None) -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="binarised data directory (dictionaries are what it reads)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds, each optimizer once per round")
    parser.add_argument("--steps", type=int, default=20, help="steps per optimizer per round")
    parser.add_argument("--json", type=Path, help="write the medians and their ratio here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    params = demo_parameters(args.data)
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    optimizers = {name: build(name, params) for name in OPTIMIZERS}
    for optimizer in optimizers.values():  # state allocated, first-call costs paid
        optimizer.step()
    ms: Dict[str, List[float]] = {name: [] for name in OPTIMIZERS}
    for _ in range(args.rounds):
        for name, optimizer in optimizers.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                optimizer.step()
            ms[name].append((time.perf_counter() - start) / args.steps * 1e3)
    result = {"parameters": sum(p.numel() for p in params), "threads": args.threads,
              **{f"{name}_ms": round(statistics.median(ms[name]), 2) for name in OPTIMIZERS}}
    result["speedup"] = round(result["adam_ms"] / result["adam_fused_ms"], 2)
    print(f"{result['parameters']:,} parameters, {args.threads} threads, median of {args.rounds} rounds of "
          f"{args.steps} steps: adam {result['adam_ms']} ms, adam_fused {result['adam_fused_ms']} ms per step "
          f"({result['speedup']}x)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
