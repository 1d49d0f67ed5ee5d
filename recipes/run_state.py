"""What a run's files say: dictionary sizes, which checkpoint is decoded, and from a checkpoint its
output layer (parameters, description) and shortlist N: the one module that reads the plugin's
state-dict keys and config fields."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from mhce_nmt.defaults import COARSE_TO_FINE_MODES, FACTORED_MODES
from recipes.config import Config
from recipes.resume import option_value


OUTPUT_LAYER_PREFIXES = ("decoder.output_projection.", "decoder.adaptive_softmax.", "decoder.output_layer.")


def dictionary_size(dict_file: Path) -> int:
    """Size of a fairseq dictionary: its entries plus the 4 special symbols."""
    return sum(1 for _ in dict_file.open(encoding="utf-8")) + 4


def target_vocab_size(cfg: Config) -> int:
    """The target dictionary's size (the configured vocabulary size before binarisation)."""
    dict_file = cfg.bin / f"dict.{cfg.tgt}.txt"
    return dictionary_size(dict_file) if dict_file.exists() else cfg.vocab_size + 4


def checkpoint_path(cfg: Config) -> Path:
    """The checkpoint that is decoded: ``checkpoint_avg.pt`` (the mean of the last
    ``--average-last`` checkpoints) when averaging, else ``checkpoint_best.pt`` (lowest
    validation loss)."""
    return cfg.checkpoints / ("checkpoint_avg.pt" if cfg.average_last > 1 else "checkpoint_best.pt")


def section_value(section: object, name: str) -> object:
    """One field of a checkpoint's cfg section, which fairseq saves as a dict (criterion, task) or, for
    models built from command-line args, an argparse.Namespace; None when absent."""
    return section.get(name) if isinstance(section, dict) else getattr(section, name, None)


def output_layer_params(checkpoint: Path) -> int:
    """Parameters of the output layer, from the state dict entries under
    :data:`OUTPUT_LAYER_PREFIXES` (a projection tied to the embeddings counts too; of a
    shortlist tied alone, the N rows it scores)."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    count = sum(t.numel() for k, t in state.items()
                if k.startswith(OUTPUT_LAYER_PREFIXES) and t.is_floating_point())  # not the codec specs or layout
    for inner in ("", "layer."):  # a code layout wraps the factored layer (PermutedOutput.layer)
        short = state.get(f"decoder.output_projection.{inner}short_weight")
        if short is not None:  # the shared (V, d) table, of which the shortlist scores N rows
            count -= (short.size(0) - int(state[f"decoder.output_projection.{inner}shortlist_spec"][1])) * short.size(1)
    return count


def output_layer_description(cfg: Config) -> str:
    """e.g. 'mhe (heads 127x126)', 'mhe (shortlist 1024 + heads 123x122, tied)',
    'mhe (shortlist 1024 + heads 123x122, shortlist tied)', 'mhe (shortlist 1024 + heads 123x122, tail grouped
    by context)', 'mhp (shortlist 4096 + heads 110x109, per-level smoothing)', 'softmax'."""
    if cfg.train.mode not in FACTORED_MODES or not checkpoint_path(cfg).exists():
        return cfg.train.mode
    import torch

    state_cfg = torch.load(checkpoint_path(cfg), map_location="cpu", weights_only=False)["cfg"]
    model_cfg = state_cfg["model"]
    heads = str(section_value(model_cfg, "mhce_heads") or "").replace(",", "x")
    shortlist = section_value(model_cfg, "mhce_shortlist") or 0
    tied = ", tied" if section_value(model_cfg, "mhe_tie_label_embeddings") else ""
    tied += ", shortlist tied" if section_value(model_cfg, "mhce_tie_shortlist") else ""
    order = ", tail grouped by context" if cfg.tail_order == "context" else ""
    smoothing = section_value(state_cfg.get("criterion"), "mhce_smoothing")
    order += ", per-level smoothing" if smoothing == "per-level" else ""
    return f"{cfg.train.mode} ({f'shortlist {shortlist} + ' if shortlist else ''}heads {heads}{tied}{order})"


def refuse_another_shortlist(cfg: Config, checkpoint: Path, fix: str) -> None:
    """Exit in one line where `checkpoint` (the run directory's) scores another shortlist N than this run
    asks for (a default that changed since it trained), rather than resume it into fairseq's shape mismatch
    or decode the other model; `fix` ends the message after the move it suggests."""
    if cfg.train.mode not in COARSE_TO_FINE_MODES or not checkpoint.exists():
        return
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    saved_cfg = (state.get("cfg") or {}).get("model") or state.get("args")  # fairseq's cfg, or an old one's args
    if saved_cfg is None:  # no model configuration to compare: fairseq's own load checks decide
        return
    saved = int(section_value(saved_cfg, "mhce_shortlist") or 0)
    asked = int(option_value(cfg.train.shortlist_args, "--mhce-shortlist") or 0)
    if saved == asked:
        return
    move = ""
    if not cfg.train.run_name:  # a benchmark's arm is named by its method, not by N
        tag = "" if saved == cfg.recipe_shortlist else f"-s{saved}"
        its_own = replace(cfg, train=replace(cfg.train, shortlist_tag=tag)).run_dir
        move = f"move it to {its_own}, where --mhce-shortlist {saved} goes on with it, or "
    sys.exit(f"error: {cfg.run_dir} holds a {cfg.train.mode} trained with --mhce-shortlist {saved}, this run "
             f"asks for {asked}: {move}{fix}")
