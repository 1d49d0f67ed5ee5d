"""Decode and score checkpoints, or the parameter mean of several, on the recipe's whole test set.

    python -m scripts.score_checkpoints --mode mhe CKPT_DIR/checkpoint_10_2000.pt \
        CKPT_DIR/checkpoint_8_1600.pt+CKPT_DIR/checkpoint_10_2000.pt --json scores.json

A spec joined by '+' is averaged first (recipes/average.py) into OUT_DIR. Each spec is decoded as
the recipes decode (beam 5; mhe/mhp coarse to fine at --topk-groups) against the recipe's test
set for --vocab-size (recipes/libreoffice_de_en, prepared by the recipe or bench_quality.py) and
printed as one JSON line: BLEU, chrF, brevity penalty, hyp/ref length, decoding speed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

from recipes.average import average_checkpoints
from recipes.commands import MODES
from scripts.bench_quality import decode_checkpoint
from scripts.bench_translation import recipe_config

REPO = Path(__file__).resolve().parents[1]


def checkpoint_for(spec: str, out_dir: Path) -> Path:
    """The checkpoint a spec names: a path, or the mean of '+'-joined paths (written to out_dir)."""
    parts = [Path(p) for p in spec.split("+")]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        sys.exit(f"error: checkpoint not found: {', '.join(missing)}")
    if len(parts) == 1:
        return parts[0]
    return average_checkpoints(parts, out_dir / ("avg_" + "_".join(p.stem for p in parts) + ".pt"))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="+", metavar="CKPT[+CKPT...]")
    parser.add_argument("--mode", required=True, choices=MODES, help="the checkpoints' output layer")
    parser.add_argument("--work-dir", type=Path, default=REPO / "recipes" / "libreoffice_de_en" / "work")
    parser.add_argument("--vocab-size", type=int, default=16000, help="joint sentencepiece vocabulary")
    parser.add_argument("--topk-groups", default="8", help="coarse-to-fine G for mhe/mhp")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per decoding batch")
    parser.add_argument("--out-dir", type=Path, default=Path("scored"), help="decodes and averages go here")
    parser.add_argument("--json", type=Path, help="also write the scores here")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> List[Dict[str, object]]:
    args = parse_args(argv)
    bench = argparse.Namespace(work_dir=args.work_dir, vocab_size=args.vocab_size, max_update=1, warmup_updates=1,
                               max_tokens=4096, seed=1, train_minutes=0, batch_size=args.batch_size, bf16=False,
                               model="small",
                               lr=1e-3, dropout=0.2, lenpen=1.0)
    cfg, _ = recipe_config(bench)
    if not cfg.bin.is_dir():
        sys.exit(f"error: {cfg.bin} not found: prepare the corpus first "
                 f"(python -m scripts.bench_quality --vocab-size {args.vocab_size} --prepare-only)")
    topk = args.topk_groups if args.mode in ("mhe", "mhp") else "full"
    results = []
    for n, spec in enumerate(args.specs):
        checkpoint = checkpoint_for(spec, args.out_dir)
        scores = decode_checkpoint(cfg, args.mode, checkpoint, args.out_dir / f"gen-{n}", topk)
        results.append({"checkpoint": spec, **{k: scores[k] for k in (
            "bleu", "chrf", "bp", "hyp_ref_ratio", "decode_sentences_per_s", "decode_tokens_per_s")}})
        print(json.dumps(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
