"""Why does a model stop early? Teacher-forced end-of-sentence statistics of fairseq checkpoints.

For every reference position of a split (the model reads the reference prefix, as in training):
  p_eos_inside   mean p(eos) where the reference goes on (target is a real token)
  eos_beats_ref  fraction of those positions where p(eos) > p(reference token)
  p_eos_final    mean p(eos) where the reference ends (target is eos)
  ref_nll        mean -log p(reference token) over all positions (nats)
A model whose p(eos) is high where the sentence goes on ends its beam-search hypotheses early:
short output, low brevity penalty. Works for every output layer (softmax, adaptive, mhe, mhp, mhs).

    python scripts/length_diagnostics.py DATA_BIN CKPT [CKPT ...] [--subset valid] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import Tensor

REPO = Path(__file__).resolve().parents[1]
USER_DIR = REPO / "mhce_nmt"


def eos_sums(lprobs: Tensor, target: Tensor, eos: int, pad: int) -> Dict[str, float]:
    """lprobs (..., V) log-probs, target (...) ids -> the sums behind :func:`finish` (pads skipped)."""
    ref = lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1).float()  # (...)
    eos_lp = lprobs[..., eos].float()
    inside = target.ne(pad) & target.ne(eos)
    final = target.eq(eos)
    return {
        "inside": float(inside.sum()), "final": float(final.sum()),
        "p_eos_inside": float(eos_lp[inside].exp().sum()), "p_eos_final": float(eos_lp[final].exp().sum()),
        "eos_beats_ref": float((eos_lp > ref)[inside].sum()),
        "ref_nll": float(-ref[inside | final].sum()),
    }


def finish(sums: Dict[str, float]) -> Dict[str, float]:
    """Means of the summed statistics (see the module docstring)."""
    inside, final = max(sums["inside"], 1.0), max(sums["final"], 1.0)
    return {
        "positions": int(sums["inside"] + sums["final"]), "sentences": int(sums["final"]),
        "p_eos_inside": sums["p_eos_inside"] / inside, "eos_beats_ref": sums["eos_beats_ref"] / inside,
        "p_eos_final": sums["p_eos_final"] / final,
        "ref_nll": sums["ref_nll"] / max(sums["inside"] + sums["final"], 1.0),
    }


def checkpoint_statistics(data: Path, checkpoint: Path, subset: str, max_tokens: int) -> Dict[str, float]:
    """Teacher-forced statistics of one checkpoint on `subset` of the binarised `data`."""
    from fairseq import checkpoint_utils, utils

    utils.import_user_module(argparse.Namespace(user_dir=str(USER_DIR)))
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(checkpoint)], arg_overrides={"data": str(data)})
    model = models[0].eval()
    task.load_dataset(subset)
    batches = task.get_batch_iterator(dataset=task.dataset(subset), max_tokens=max_tokens,
                                      ignore_invalid_inputs=True).next_epoch_itr(shuffle=False)
    eos, pad = task.target_dictionary.eos(), task.target_dictionary.pad()
    total: Dict[str, float] = {}
    with torch.no_grad():
        for sample in batches:
            net_output = model(**sample["net_input"])
            lprobs = model.get_normalized_probs(net_output, log_probs=True)  # (B, T, V)
            for key, value in eos_sums(lprobs, sample["target"], eos, pad).items():
                total[key] = total.get(key, 0.0) + value
    if not total:
        raise SystemExit(f"no {subset!r} sentences in {data}")
    return finish(total)


def main(argv: Optional[List[str]] = None) -> List[Dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="fairseq-preprocess output (dictionaries and splits)")
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--subset", default="valid")
    parser.add_argument("--max-tokens", type=int, default=1024, help="per batch (B x T x V log-probs)")
    parser.add_argument("--json", type=Path, help="also write the records here")
    args = parser.parse_args(argv)
    if args.max_tokens < 1:
        parser.error(f"--max-tokens must be >= 1, got {args.max_tokens}")
    records = []
    print(f"{'checkpoint':60s} {'p_eos_inside':>12s} {'eos_beats_ref':>13s} {'p_eos_final':>11s} {'ref_nll':>8s}")
    for ckpt in args.checkpoints:
        if not ckpt.is_file():
            raise SystemExit(f"no checkpoint at {ckpt}")
        stats = checkpoint_statistics(args.data, ckpt, args.subset, args.max_tokens)
        records.append({"checkpoint": str(ckpt), "subset": args.subset, **stats})
        name = "/".join(ckpt.resolve().parts[-3:])  # e.g. spm32000-mhe/checkpoints/checkpoint_last.pt
        print(f"{name[-60:]:60s} {stats['p_eos_inside']:12.5f} {stats['eos_beats_ref']:13.4f} "
              f"{stats['p_eos_final']:11.4f} {stats['ref_nll']:8.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    return records


if __name__ == "__main__":
    main()
