"""Where a whole training step goes: fairseq's own step (forward, loss, backward, optimizer) of the
recipe's model, for several output layers and precisions, side by side in one process.

Each configuration (method x precision) is a fairseq Trainer built from the recipe's own
``fairseq-train`` command (recipes.commands.train_command: the demo's CPU model, criterion,
optimizer and batch size), over the same binarised data. The script

1. times the steps interleaved: round after round, every configuration runs --steps-per-round
   updates on its next batches, so a drift of the host's speed hits every configuration alike;
   words/s = target tokens / wall seconds over all rounds after the first (warm-up);
2. profiles --profile-steps more updates of each with torch.profiler and lists the ops by self
   CPU time per update, the time outside any op (Python, dispatch), and the forward time of the
   output layer and its loss (torch.profiler record_function ranges set around the decoder's
   output layer and the criterion's loss here; their backward ops are not in the range).

    python -m scripts.profile_train_step --data recipes/libreoffice_de_en/work/bin-spm16000 \\
        --methods softmax mhe --precisions fp32 bf16 --out results/step_profile/demo_16k

Writes OUT.json (every number, with the run's origin) and OUT.md (the tables).
"""
from __future__ import annotations

import argparse
import json
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from recipes.commands import TrainSettings, train_command
from recipes.config import default_shortlist
from recipes.libreoffice_de_en.run import RECIPE
from recipes.provenance import origin

PRECISIONS = ("fp32", "bf16", "bf16 attention")
OUTPUT_RANGE = "output layer + loss"


@dataclass
class Configuration:
    """One method at one precision: its fairseq trainer and the batches it steps through."""

    method: str
    precision: str  # fp32, bf16 (attention in fp32 on a CPU) or "bf16 attention" (attention in bf16 too)
    command: list[str]
    trainer: object = None
    batches: Iterator[list[dict]] | None = None
    epoch: object = None
    words: int = 0
    seconds: float = 0.0
    round_words_per_s: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.method} {self.precision}"


def recipe_settings(method: str, precision: str, shortlist: int, max_tokens: int, seed: int) -> TrainSettings:
    """The demo recipe's training settings for `method` (its model, optimizer, schedule and shortlist)."""
    schedule = ("--warmup-updates", str(RECIPE.warmup_updates), "--lr", f"{RECIPE.lr:g}", "--dropout", f"{RECIPE.dropout:g}")
    return TrainSettings(
        mode=method, base_arch=RECIPE.base_arch, model_args=(*RECIPE.model_args, *schedule),
        softmax_args=RECIPE.softmax_args, max_tokens=max_tokens, seed=seed, cpu=True,
        autocast_bf16=precision.startswith("bf16"),
        shortlist_args=("--mhce-shortlist", str(shortlist)) if shortlist and method in ("mhe", "mhp") else (),
    )


def build(config: Configuration) -> None:
    """A fairseq Trainer from the command's arguments, and an endless iterator over its batches."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.trainer import Trainer

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, config.command[1:])
    cfg = convert_namespace_to_omegaconf(args)
    from fairseq import utils

    utils.import_user_module(cfg.common)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    config.trainer = Trainer(cfg, task, model, criterion)
    label_output_layer(model, criterion)
    config.batches = endless_batches(config)


def endless_batches(config: Configuration) -> Iterator[list[dict]]:
    """One-sample groups of the trainer's shuffled training batches, epoch after epoch."""
    epoch = 1
    while True:
        epoch_itr = config.trainer.get_train_iterator(epoch=epoch, load_dataset=True)
        for sample in epoch_itr.next_epoch_itr(shuffle=True):
            yield [sample]
        epoch += 1


def label_output_layer(model, criterion) -> None:
    """Wrap the output layer and the loss in a profiler range, so their forward ops are counted
    apart: fairseq's projection and compute_loss for the stock models, the factored layer's
    loss_terms and the criterion's factored_loss for the plugin's."""
    import torch

    def labelled(fn):
        def wrapper(*args, **kwargs):
            with torch.profiler.record_function(OUTPUT_RANGE):
                return fn(*args, **kwargs)
        return wrapper

    from mhce_nmt.adapters import criterion as mhce_criterion

    if not isinstance(criterion, mhce_criterion.MHCECrossEntropyCriterion):  # fairseq's own criteria
        model.decoder.output_layer = labelled(model.decoder.output_layer)
        if hasattr(criterion, "compute_loss"):  # label_smoothed_cross_entropy (adaptive_loss has none)
            criterion.compute_loss = labelled(criterion.compute_loss)
        return

    layer = mhce_criterion.output_layer_of(model)
    layer.loss_terms = labelled(layer.loss_terms)
    if not hasattr(mhce_criterion.factored_loss, "__wrapped_for_profile__"):
        mhce_criterion.factored_loss = labelled(mhce_criterion.factored_loss)
        mhce_criterion.factored_loss.__wrapped_for_profile__ = True


def step(config: Configuration, updates: int) -> tuple[int, float]:
    """`updates` training steps, their target words and wall time added to the configuration."""
    start = time.perf_counter()
    words = 0
    for _ in range(updates):
        samples = next(config.batches)
        words += int(samples[0]["ntokens"])
        config.trainer.train_step(samples)
    seconds = time.perf_counter() - start
    config.round_words_per_s.append(words / seconds)
    return words, seconds


def profile(config: Configuration, updates: int, top: int) -> dict[str, object]:
    """Per-update self CPU time of the top ops, the output layer's inclusive share, and the time
    outside any op."""
    import torch

    with torch.profiler.profile() as prof:
        start = time.perf_counter()
        for _ in range(updates):
            config.trainer.train_step(next(config.batches))
        wall_ms = (time.perf_counter() - start) * 1e3 / updates
    averages = prof.key_averages()
    self_ms = {e.key: e.self_cpu_time_total / 1e3 / updates for e in averages}
    in_ops = sum(v for k, v in self_ms.items() if k != OUTPUT_RANGE)
    output_range = next((e for e in averages if e.key == OUTPUT_RANGE), None)
    backward = sum(self_ms.get(k, 0.0) for k in self_ms if "Backward" in k and OUTPUT_RANGE not in k)
    ranked = sorted(((k, v) for k, v in self_ms.items() if k != OUTPUT_RANGE), key=lambda kv: -kv[1])
    return {"profiled_ms_per_update": wall_ms, "ops_ms_per_update": in_ops,
            "outside_ops_ms_per_update": wall_ms - in_ops,
            "output_forward_ms_per_update": output_range.cpu_time_total / 1e3 / updates if output_range else None,
            "autograd_nodes_ms_per_update": backward,
            "top_ops": [{"op": k, "self_ms_per_update": round(v, 3),
                         "calls_per_update": next(e.count for e in averages if e.key == k) / updates}
                        for k, v in ranked[:top]]}


def markdown(report: dict[str, object]) -> str:
    """The speed table and each configuration's top ops."""
    lines = [f"Training steps of the demo's model (`{report['data']}`, {report['max_tokens']:,} tokens a batch), "
             f"{report['origin']['cpu']} ({report['origin']['cpu_bf16']}), {report['threads']} threads, "
             f"{report['rounds']} rounds of {report['steps_per_round']} updates each, interleaved; commit "
             f"{report['origin']['commit'][:10]}{' (changed tree)' if report['origin']['dirty'] else ''}.", "",
             "| configuration | words/s | vs softmax (same precision) | ms/update profiled | outside ops | "
             "output layer + loss forward |", "|---|---|---|---|---|---|"]
    for row in report["configurations"]:
        base = next((r for r in report["configurations"] if r["method"] == "softmax"
                     and r["precision"] == row["precision"]), None)
        ratio = f"{row['words_per_s'] / base['words_per_s']:.2f}x" if base else ""
        prof = row["profile"]
        forward = prof["output_forward_ms_per_update"]
        lines.append(f"| {row['method']} {row['precision']} | {row['words_per_s']:,.0f} | {ratio} | "
                     f"{prof['profiled_ms_per_update']:.1f} | {prof['outside_ops_ms_per_update']:.1f} | "
                     f"{'' if forward is None else f'{forward:.1f}'} |")
    for row in report["configurations"]:
        lines += ["", f"### {row['method']} {row['precision']}: ops by self CPU time per update", "",
                  "| op | ms/update | calls/update |", "|---|---|---|"]
        lines += [f"| `{op['op']}` | {op['self_ms_per_update']:.2f} | {op['calls_per_update']:.0f} |"
                  for op in row["profile"]["top_ops"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="fairseq-preprocess output (bin-spm16000)")
    parser.add_argument("--methods", nargs="+", default=["softmax", "mhe"], choices=["softmax", "mhe", "mhp", "adaptive"])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS[:2]), choices=PRECISIONS,
                        help="fp32; bf16 autocast (attention in fp32 on a CPU, the task's default); 'bf16 attention': "
                             "bf16 autocast with --autocast-bf16-attention (default: fp32 bf16)")
    parser.add_argument("--shortlist", type=int, help="mhe/mhp shortlist N (default: the recipe's for the vocabulary)")
    parser.add_argument("--max-tokens", type=int, default=RECIPE.max_tokens, help="default %(default)s (the demo's)")
    parser.add_argument("--rounds", type=int, default=6, help="timed rounds, the first one a warm-up (default %(default)s)")
    parser.add_argument("--steps-per-round", type=int, default=20, help="default %(default)s")
    parser.add_argument("--profile-steps", type=int, default=20, help="default %(default)s")
    parser.add_argument("--top", type=int, default=25, help="ops listed per configuration (default %(default)s)")
    parser.add_argument("--tgt", default="en", help="the target language: dict.TGT.txt sets V (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="OUT.json and OUT.md are written")
    args = parser.parse_args(argv)
    if args.rounds < 2 or args.steps_per_round < 1 or args.profile_steps < 1:
        parser.error("--rounds must be >= 2 (the first is a warm-up), --steps-per-round and --profile-steps >= 1")
    target_dictionary = args.data / f"dict.{args.tgt}.txt"
    if not target_dictionary.exists():
        parser.error(f"--data {args.data} holds no {target_dictionary.name}: give a fairseq-preprocess output "
                     "directory and its target language (--tgt)")
    import torch

    vocab = sum(1 for _ in target_dictionary.open(encoding="utf-8")) + 4
    configurations = []
    with tempfile.TemporaryDirectory() as save_dir:
        for method in args.methods:
            shortlist = args.shortlist if args.shortlist is not None else default_shortlist(RECIPE, method, vocab)
            for precision in args.precisions:
                settings = recipe_settings(method, precision, shortlist, args.max_tokens, args.seed)
                command = train_command(args.data, Path(save_dir), settings, vocab)
                if precision == "bf16 attention":
                    command.append("--autocast-bf16-attention")
                configurations.append(Configuration(method, precision, command))
        for config in configurations:
            build(config)
        for round_number in range(args.rounds):
            for config in configurations:
                words, seconds = step(config, args.steps_per_round)
                if round_number:  # the first round warms caches and kernels up
                    config.words += words
                    config.seconds += seconds
        profiles = {config.name: profile(config, args.profile_steps, args.top) for config in configurations}
    report = {
        "data": str(args.data), "vocab": vocab, "max_tokens": args.max_tokens, "rounds": args.rounds,
        "steps_per_round": args.steps_per_round, "threads": torch.get_num_threads(), "origin": origin(),
        "configurations": [{"method": c.method, "precision": c.precision, "command": shlex.join(c.command),
                            "words_per_s": c.words / c.seconds,
                            "round_words_per_s": [round(v, 1) for v in c.round_words_per_s],
                            "profile": profiles[c.name]} for c in configurations],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    args.out.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)
    return report


if __name__ == "__main__":
    main()
