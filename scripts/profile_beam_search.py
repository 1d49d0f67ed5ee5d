"""Where the time of one beam search over the whole demo model goes, at a target vocabulary V.

Builds bench_scaling's model for --method at --vocab (the CPU demo's 3+3 layers, d=256, synthetic
dictionaries, untrained), decodes one batch of --sentences synthetic source sentences with beam 5
and every hypothesis forced to 20 tokens plus eos (bench_scaling's decoding), once to warm up,
once timed and once under torch.profiler, and reports the ops by self time for the batch.

--dense-scores makes the coarse-to-fine generator hand fairseq's beam search dense V-wide scores
(-inf outside the candidates), the path of sampling, ensembles, forced prefixes and n-gram
blocking, instead of candidate columns; it needs --method mhe or mhp.

    python -m scripts.profile_beam_search --method mhe --vocab 131072
    python -m scripts.profile_beam_search --method mhe --vocab 131072 --dense-scores --out /tmp/dense.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

import torch

from recipes.provenance import origin
from scripts import bench_scaling

TOP_OPS = 12


def profiled_batch(method: str, vocab: int, sentences: int, dense_scores: bool) -> dict:
    """Wall seconds of one beam-search batch, and its ops' self milliseconds (profiled run)."""
    from fairseq import search

    config = bench_scaling.Config(vocab, method, "", decode_sentences=sentences, threads=torch.get_num_threads())
    torch.manual_seed(bench_scaling.SEED)
    task, model, _trainer, cfg = bench_scaling.build(config)
    generator = bench_scaling.forced_length_generator(task, model, cfg)
    if dense_scores:
        generator.search = search.BeamSearch(task.target_dictionary)
    batch = next(bench_scaling.source_batches(task, config, torch.Generator().manual_seed(bench_scaling.SEED)))
    with torch.no_grad():
        task.inference_step(generator, [model], batch)
        start = time.perf_counter()
        task.inference_step(generator, [model], batch)
        wall = time.perf_counter() - start
        with torch.profiler.profile() as profile:
            task.inference_step(generator, [model], batch)
    ops = {event.key: event.self_cpu_time_total / 1e3 for event in profile.key_averages()}
    return {"wall_s": wall, "search": type(generator.search).__name__, "ops_ms": ops}


def table(result: dict) -> str:
    """The TOP_OPS ops by self time, with their share of all ops' time."""
    ops = result["ops_ms"]
    total = sum(ops.values())
    rows = [f"# {result['method']} V={result['vocab']:,}, {result['sentences']} sentences, beam "
            f"{bench_scaling.BEAM}, search {result['search']}: {result['wall_s']:.2f} s a batch "
            f"(profiled ops {total / 1e3:.2f} s)", f"{'op':32s} {'ms':>9s} {'share':>6s}"]
    for name, ms in sorted(ops.items(), key=lambda kv: -kv[1])[:TOP_OPS]:
        rows.append(f"{name:32s} {ms:9.1f} {ms / total:6.1%}")
    return "\n".join(rows)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; a one-line error for sizes below 1 and --dense-scores without mhe or mhp."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=bench_scaling.METHODS, default="mhe")
    parser.add_argument("--vocab", type=int, default=131072, help="target vocabulary size V (default %(default)s)")
    parser.add_argument("--sentences", type=int, default=bench_scaling.DECODE_BATCH,
                        help="source sentences in the batch (default %(default)s)")
    parser.add_argument("--dense-scores", action="store_true",
                        help="mhe/mhp: dense V-wide scores instead of candidate columns")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, help="also write the record (ops, wall time, origin) as JSON here")
    args = parser.parse_args(argv)
    if min(args.sentences, args.threads) < 1 or args.vocab < 100:
        parser.error("--sentences and --threads must be >= 1, --vocab >= 100")
    if args.dense_scores and args.method not in bench_scaling.FACTORED_METHODS:
        parser.error(f"--dense-scores is a choice of the coarse-to-fine generator: use it with --method mhe or mhp, "
                     f"not {args.method}")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    """Profile one batch; print the op table; return (and with --out write) the record."""
    args = parse_arguments(argv)
    torch.set_num_threads(args.threads)
    result = {"method": args.method, "vocab": args.vocab, "sentences": args.sentences,
              "dense_scores": args.dense_scores,
              **profiled_batch(args.method, args.vocab, args.sentences, args.dense_scores), **origin()}
    print(table(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
