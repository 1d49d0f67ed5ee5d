"""The summary stage: a run's data sizes, parameters, speeds, scores and origin, written to
summary.json and printed with example translations and the command for the user's own sentences."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from recipes.commands import interactive_command
from recipes.config import Config, SPLITS
from recipes.report import examples, report
from recipes.run_state import checkpoint_path, dictionary_size, output_layer_description, output_layer_params
from recipes.runner import done, load_json, say, write_json
from recipes.textfiles import read_lines


def stage_summary(cfg: Config) -> None:
    """Print and write the run's data sizes, parameters, speeds and scores."""
    summary_file = cfg.run_dir / "summary.json"
    inputs = [cfg.run_dir / name for name in ("train.json", "gen.json", "score.json")]
    if done("summary", cfg, [summary_file], inputs):
        return
    say("summary", f"collect sizes, timings and scores -> {summary_file}")
    if cfg.dry_run:
        return
    summary: dict[str, object] = {
        "pair": f"{cfg.src}-{cfg.tgt}", "mode": cfg.train.mode, "arm": cfg.train.arm, "seed": cfg.train.seed,
        "vocab": cfg.vocab_tag,
        "tail_order": cfg.tail_order, "data_pairs": {s: len(read_lines(cfg.data / f"{s}.{cfg.src}")) for s in SPLITS},
        "dictionary": {lang: dictionary_size(cfg.bin / f"dict.{lang}.txt") for lang in cfg.langs},
    }
    train = load_json(cfg.run_dir / "train.json")
    summary["precision"] = train.get("precision", cfg.train.precision)  # the training run's (older runs: today's flags)
    summary["autocast_bf16"] = summary["precision"] == "bf16 autocast"
    summary.update({k: train[k] for k in ("optimizer", "model_params") if k in train})
    if checkpoint_path(cfg).exists():
        summary["output_layer_params"] = output_layer_params(checkpoint_path(cfg))
    summary.update({k: train[k] for k in ("num_updates", "wall_s", "train_wall_s", "train_words_per_s",
                                          "valid_ppl") if k in train})
    summary["checkpoint"] = checkpoint_path(cfg).name + (
        f" (mean of {', '.join(train['averaged'])})" if train.get("averaged") else "")
    generation = load_json(cfg.run_dir / "gen.json")
    for key in ("sentences_per_s", "tokens_per_s"):
        if key in generation:
            summary[f"decode_{key}"] = generation[key]
    summary.update({k: generation[k] for k in ("beam", "lenpen") if k in generation})
    summary.update({k: v for k, v in load_json(cfg.run_dir / "score.json").items() if k != "sentences"})
    valid = load_json(cfg.run_dir / "valid.json")
    if valid:
        at = valid["by_lenpen"][f"{valid['lenpen']:g}"]
        summary.update({"valid_bleu": at["bleu"], "valid_chrf": at["chrf"], "valid_bp": at["bp"],
                        "lenpen_chosen_by": valid["chosen_by"], "valid_by_lenpen": valid["by_lenpen"]})
    summary["output"] = output_layer_description(cfg)
    summary.update(record_origin(train.get("origins", []), generation.get("origin")))
    write_json(summary_file, summary)
    print(closing_report(cfg, summary), flush=True)


def record_origin(train_origins: list[dict[str, object]], decode_origin: dict[str, object] | None) -> dict[str, object]:
    """A summary's provenance: the commit that trained the model (several, comma-joined, where a
    resumed run spans commits), whether any attempt ran from a changed tree, the training command,
    the machine facts of the last attempt, and the decoding's own commit and command (only these for
    a run trained before origins were recorded)."""
    fields: dict[str, object] = {}
    if decode_origin:
        fields.update(decode_commit=decode_origin["commit"], decode_dirty=decode_origin["dirty"],
                      decode_command=decode_origin["command"])
    if not train_origins:
        return fields
    last = train_origins[-1]
    return {
        "commit": ",".join(dict.fromkeys(str(o["commit"]) for o in train_origins)),
        "dirty": any(bool(o["dirty"]) for o in train_origins), "command": last["command"],
        "invoked": last.get("invoked"), "cpu": last["cpu"], "cpu_bf16": last.get("cpu_bf16"),
        "threads": last["threads"], "train_attempts": len(train_origins), **fields,
    }


def closing_report(cfg: Config, summary: dict[str, object]) -> str:
    """Summary table, five test translations and the command for the user's own sentences."""
    hyp_file = cfg.run_dir / "gen" / "hyp.txt"
    sources, references = read_lines(cfg.data / f"test.{cfg.src}"), read_lines(cfg.data / f"test.{cfg.tgt}")
    example_text = examples(sources, references, read_lines(hyp_file)) if hyp_file.exists() else "  (none)"
    executable = Path(sys.executable).parent / "fairseq-interactive"
    spm = None if cfg.word_level else cfg.segmenter_path(cfg.src)
    command = interactive_command(cfg.bin, checkpoint_path(cfg), cfg.train.mode, spm, beam=cfg.beam,
                                  topk_groups=cfg.topk_groups, cpu=cfg.train.cpu,
                                  lenpen=float(summary.get("lenpen") or cfg.lenpen),
                                  executable=str(executable) if executable.exists() else "fairseq-interactive")
    return report(summary, example_text, shlex.join(command))
