"""Where does a model lose likelihood? Teacher-forced -log p(y) split along a shortlist layout.

Any model's exact log-probs L (V,) are read through one layout: ids below N are the shortlist,
the rest are cut into groups of K consecutive ids (MHE's tail: group = (y - N) // K). For a
shortlisted target y the whole cost is -L[y]; for a tail target it splits exactly into
  gate  = -log P(tail),          P(tail)    = sum_{v >= N} p(v)
  group = -log P(g | tail),      P(g)       = sum of p over the group's ids
  leaf  = -log p(y | g)
so a softmax and an MHE model can be compared term by term (bits per target token):
  nll_bits          mean -log2 p(y) over every target token
  shortlist_bits    the shortlisted targets' part of that mean
  gate/group/leaf_bits  the tail targets' parts (the four parts sum to nll_bits)
  tail_share        fraction of target tokens in the tail

    python -m scripts.nll_breakdown DATA_BIN CKPT [CKPT ...] --shortlist 1024 --group-size 122
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import Tensor

from scripts.length_diagnostics import each_checkpoint, teacher_forced_batches

PARTS = ("shortlist", "gate", "group", "leaf")


def breakdown_sums(lprobs: Tensor, target: Tensor, pad: int, shortlist: int, group_size: int) -> Dict[str, float]:
    """lprobs (B, T, V) natural-log probabilities, target (B, T) -> summed nats of each part and
    the token counts (pad positions skipped)."""
    keep = target.ne(pad)
    lp = lprobs[keep].double()  # (M, V)
    y = target[keep]  # (M,)
    gold = lp.gather(1, y.unsqueeze(1)).squeeze(1)
    tail = y >= shortlist
    tail_lp, tail_y = lp[tail, shortlist:], y[tail] - shortlist  # (M_t, V - N), (M_t,)
    tail_mass = torch.logsumexp(tail_lp, dim=-1)
    groups = math.ceil(tail_lp.size(1) / group_size)
    padded = tail_lp.new_full((tail_lp.size(0), groups * group_size), float("-inf"))
    padded[:, : tail_lp.size(1)] = tail_lp
    group_mass = torch.logsumexp(padded.view(-1, groups, group_size), dim=-1)  # (M_t, groups)
    own_group = group_mass.gather(1, (tail_y // group_size).unsqueeze(1)).squeeze(1)
    return {
        "shortlist": float(-gold[~tail].sum()),
        "gate": float(-tail_mass.sum()),
        "group": float(-(own_group - tail_mass).sum()),
        "leaf": float(-(gold[tail] - own_group).sum()),
        "tokens": float(y.numel()),
        "tail_tokens": float(tail.sum()),
    }


def finish(sums: Dict[str, float]) -> Dict[str, float]:
    """Summed nats -> bits per target token (the parts add up to nll_bits) and the tail share."""
    per_token = sums["tokens"] * math.log(2)
    stats = {f"{part}_bits": sums[part] / per_token for part in PARTS}
    stats["nll_bits"] = sum(stats[f"{part}_bits"] for part in PARTS)
    stats["tail_share"] = sums["tail_tokens"] / sums["tokens"]
    return stats


def checkpoint_breakdown(data: Path, checkpoint: Path, subset: str, max_tokens: int, shortlist: int,
                         group_size: int) -> Dict[str, float]:
    total: Dict[str, float] = {}
    for lprobs, target, dictionary in teacher_forced_batches(data, checkpoint, subset, max_tokens):
        if lprobs.size(-1) <= shortlist:
            raise SystemExit(f"--shortlist {shortlist} leaves no tail in a vocabulary of {lprobs.size(-1)}: "
                             "use a smaller --shortlist.")
        for key, value in breakdown_sums(lprobs, target, dictionary.pad(), shortlist, group_size).items():
            total[key] = total.get(key, 0.0) + value
    if not total:
        raise SystemExit(f"no {subset!r} sentences in {data}")
    return finish(total)


def main(argv: Optional[List[str]] = None) -> List[Dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="fairseq-preprocess output (dictionaries and splits)")
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--shortlist", type=int, required=True, metavar="N", help="ids below N are the shortlist")
    parser.add_argument("--group-size", type=int, required=True, metavar="K",
                        help="tail ids per group (MHE: the last head size)")
    parser.add_argument("--subset", default="valid")
    parser.add_argument("--max-tokens", type=int, default=1024, help="per batch (B x T x V log-probs)")
    parser.add_argument("--json", type=Path, help="also write the records here")
    args = parser.parse_args(argv)
    if args.shortlist < 0 or args.group_size < 1 or args.max_tokens < 1:
        parser.error(f"--shortlist must be >= 0 and --group-size, --max-tokens >= 1, got {args.shortlist}, "
                     f"{args.group_size} and {args.max_tokens}")
    print(f"{'checkpoint':50s} {'nll':>6s} {'shortlist':>9s} {'gate':>6s} {'group':>6s} {'leaf':>6s} {'tail':>6s}")

    def row(name: str, stats: Dict[str, float]) -> str:
        return (f"{name[-50:]:50s} {stats['nll_bits']:6.3f} {stats['shortlist_bits']:9.3f} {stats['gate_bits']:6.3f} "
                f"{stats['group_bits']:6.3f} {stats['leaf_bits']:6.3f} {stats['tail_share']:6.3f}")

    def measure(ckpt: Path) -> Dict[str, float]:
        return checkpoint_breakdown(args.data, ckpt, args.subset, args.max_tokens, args.shortlist, args.group_size)

    return each_checkpoint(args.checkpoints, measure,
                           {"subset": args.subset, "shortlist": args.shortlist, "group_size": args.group_size},
                           row, args.json)


if __name__ == "__main__":
    main()
