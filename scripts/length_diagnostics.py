"""Why does a model stop early? Teacher-forced end-of-sentence statistics of fairseq checkpoints.

For every reference position of a split (the model reads the reference prefix, as in training):
  p_eos_inside   mean p(eos) where the reference goes on (target is a real token)
  eos_beats_ref  fraction of those positions where p(eos) > p(reference token)
  eos_in_beam    fraction of those positions where eos is among the --beam most likely ids, i.e.
                 a beam of that size would consider ending the sentence there too early
  log10_p_eos_inside_qNN  quantiles (10, 50, 90, 99%) of log10 p(eos) at those positions: a floor
                 of p(eos) (say 5e-4 against 3e-6) shows in the low quantiles, not in the mean
  p_eos_final    mean p(eos) where the reference ends (target is eos)
  ref_nll        mean -log p(reference token) over all positions (nats)
A model whose p(eos) is high where the sentence goes on ends its beam-search hypotheses early:
short output, low brevity penalty. Works for every output layer (softmax, adaptive, mhe, mhp, mhs).

    python -m scripts.length_diagnostics DATA_BIN CKPT [CKPT ...] [--subset valid] [--beam 5] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

REPO = Path(__file__).resolve().parents[1]
USER_DIR = REPO / "mhce_nmt"


QUANTILES = (0.1, 0.5, 0.9, 0.99)


def eos_sums(lprobs: Tensor, target: Tensor, eos: int, pad: int, beam: int = 5) -> Dict[str, float]:
    """lprobs (..., V) log-probs, target (...) ids -> the sums behind :func:`finish` (pads skipped)."""
    ref = lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1).float()  # (...)
    eos_lp = lprobs[..., eos].float()
    inside = target.ne(pad) & target.ne(eos)
    final = target.eq(eos)
    eos_rank = (lprobs.float() > eos_lp.unsqueeze(-1)).sum(-1)  # ids strictly more likely than eos
    return {
        "inside": float(inside.sum()), "final": float(final.sum()),
        "p_eos_inside": float(eos_lp[inside].exp().sum()), "p_eos_final": float(eos_lp[final].exp().sum()),
        "eos_beats_ref": float((eos_lp > ref)[inside].sum()),
        "eos_in_beam": float((eos_rank < beam)[inside].sum()),
        "ref_nll": float(-ref[inside | final].sum()),
    }


def eos_log_probs_inside(lprobs: Tensor, target: Tensor, eos: int, pad: int) -> Tensor:
    """(M,) log p(eos) at the M positions where the reference goes on."""
    inside = target.ne(pad) & target.ne(eos)
    return lprobs[..., eos].float()[inside]


def finish(sums: Dict[str, float], inside_log_probs: Tensor) -> Dict[str, float]:
    """Means of the summed statistics and quantiles of log10 p(eos) (see the module docstring)."""
    inside, final = max(sums["inside"], 1.0), max(sums["final"], 1.0)
    stats = {
        "positions": int(sums["inside"] + sums["final"]), "sentences": int(sums["final"]),
        "p_eos_inside": sums["p_eos_inside"] / inside, "eos_beats_ref": sums["eos_beats_ref"] / inside,
        "eos_in_beam": sums["eos_in_beam"] / inside, "p_eos_final": sums["p_eos_final"] / final,
        "ref_nll": sums["ref_nll"] / max(sums["inside"] + sums["final"], 1.0),
    }
    if inside_log_probs.numel():
        log10 = (inside_log_probs.double() / torch.log(torch.tensor(10.0, dtype=torch.float64))).clamp(min=-99.0)
        for q, value in zip(QUANTILES, torch.quantile(log10, torch.tensor(QUANTILES, dtype=torch.float64))):
            stats[f"log10_p_eos_inside_q{round(q * 100):02d}"] = round(float(value), 3)
    return stats


def teacher_forced_batches(data: Path, checkpoint: Path, subset: str,
                           max_tokens: int) -> Iterator[Tuple[Tensor, Tensor, Any]]:
    """(lprobs (B, T, V), target (B, T), target dictionary) per batch of `subset`, the model
    reading the reference prefix (no gradients)."""
    from fairseq import checkpoint_utils, utils

    utils.import_user_module(argparse.Namespace(user_dir=str(USER_DIR)))
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(checkpoint)], arg_overrides={"data": str(data)})
    model = models[0].eval()
    task.load_dataset(subset)
    batches = task.get_batch_iterator(dataset=task.dataset(subset), max_tokens=max_tokens,
                                      ignore_invalid_inputs=True).next_epoch_itr(shuffle=False)
    with torch.no_grad():
        for sample in batches:
            net_output = model(**sample["net_input"])
            yield model.get_normalized_probs(net_output, log_probs=True), sample["target"], task.target_dictionary


def checkpoint_statistics(data: Path, checkpoint: Path, subset: str, max_tokens: int,
                          beam: int = 5) -> Dict[str, float]:
    """Teacher-forced statistics of one checkpoint on `subset` of the binarised `data`."""
    total: Dict[str, float] = {}
    inside: List[Tensor] = []
    for lprobs, target, dictionary in teacher_forced_batches(data, checkpoint, subset, max_tokens):
        eos, pad = dictionary.eos(), dictionary.pad()
        for key, value in eos_sums(lprobs, target, eos, pad, beam).items():
            total[key] = total.get(key, 0.0) + value
        inside.append(eos_log_probs_inside(lprobs, target, eos, pad))
    if not total:
        raise SystemExit(f"no {subset!r} sentences in {data}")
    return finish(total, torch.cat(inside))


def each_checkpoint(checkpoints: List[Path], measure: Callable[[Path], Dict[str, float]], fields: Dict[str, object],
                    row: Callable[[str, Dict[str, float]], str], json_path: Optional[Path]) -> List[Dict[str, object]]:
    """measure(ckpt) for every checkpoint: a printed row each (named by its last three path parts)
    and a record {checkpoint, **fields, **stats}; the records also go to json_path."""
    records = []
    for ckpt in checkpoints:
        if not ckpt.is_file():
            raise SystemExit(f"no checkpoint at {ckpt}")
        stats = measure(ckpt)
        records.append({"checkpoint": str(ckpt), **fields, **stats})
        print(row("/".join(ckpt.resolve().parts[-3:]), stats), flush=True)  # e.g. spm16000-mhe/checkpoints/x.pt
    if json_path:
        json_path.write_text(json.dumps(records, indent=2) + "\n")
    return records


def main(argv: Optional[List[str]] = None) -> List[Dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="fairseq-preprocess output (dictionaries and splits)")
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--subset", default="valid")
    parser.add_argument("--max-tokens", type=int, default=1024, help="per batch (B x T x V log-probs)")
    parser.add_argument("--beam", type=int, default=5, help="beam size for eos_in_beam (default 5)")
    parser.add_argument("--json", type=Path, help="also write the records here")
    args = parser.parse_args(argv)
    if args.max_tokens < 1 or args.beam < 1:
        parser.error(f"--max-tokens and --beam must be >= 1, got {args.max_tokens} and {args.beam}")
    print(f"{'checkpoint':60s} {'p_eos_inside':>12s} {'eos_beats_ref':>13s} {'eos_in_beam':>11s} "
          f"{'log10 p q10/q50':>15s} {'p_eos_final':>11s} {'ref_nll':>8s}")

    def row(name: str, stats: Dict[str, float]) -> str:
        quantiles = f"{stats['log10_p_eos_inside_q10']:.2f}/{stats['log10_p_eos_inside_q50']:.2f}"
        return (f"{name[-60:]:60s} {stats['p_eos_inside']:12.5f} {stats['eos_beats_ref']:13.4f} "
                f"{stats['eos_in_beam']:11.4f} {quantiles:>15s} {stats['p_eos_final']:11.4f} {stats['ref_nll']:8.3f}")

    return each_checkpoint(
        args.checkpoints, lambda ckpt: checkpoint_statistics(args.data, ckpt, args.subset, args.max_tokens, args.beam),
        {"subset": args.subset, "beam": args.beam}, row, args.json)


if __name__ == "__main__":
    main()
