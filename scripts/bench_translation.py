"""Translation benchmark: the same small transformer with each output layer, side by side.

On the offline LibreOffice help corpus (recipes/libreoffice_de_en), trains softmax, adaptive,
mhp, mhe and mhs for the same number of updates and seed, decodes the test set with beam 5
(mhe/mhp coarse-to-fine at the default G, and mhe also exhaustively), and reports per method:
training target words/s, wall time, peak RSS, decoding sentences/s, output-layer parameters,
sacreBLEU BLEU and chrF with signatures. Writes JSON, a markdown table and a PNG plot.

    python -m scripts.bench_translation            # defaults: 32k joint spm, 160 updates, 1000 test lines
    python -m scripts.bench_translation --quick    # ~10 minutes: 8k vocab, 40 updates, 300 test lines
    python -m scripts.bench_translation --methods softmax mhe --max-update 600 --vocab-size 16000

Runs unchanged on a GPU (auto-detected). There, --bf16 trains under bf16 autocast (the task's
--autocast-bf16: MHE's grouped products become one grouped GEMM), --model base gives the
transformer_wmt_en_de width (d=512, 6+6 layers), and the fused softmax baselines run as methods
softmax-compile, softmax-torch, softmax-liger and softmax-cce (criterion
fused_label_smoothed_cross_entropy; liger and cce need their packages and CUDA):

    python -m scripts.bench_translation --model base --bf16 --methods softmax softmax-liger mhe mhp
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from mhce_nmt.defaults import SOFTMAX_KERNELS
from recipes import config, evaluate, pipeline, run_state
from recipes.commands import MODES, train_command
from recipes.libreoffice_de_en import run as libreoffice
from recipes.libreoffice_de_en.extract import add_extract_arguments
from recipes.logs import parse_train_log
from recipes.textfiles import read_lines, write_lines

REPO = Path(__file__).resolve().parents[1]

DEFAULT_METHODS = ("softmax", "adaptive", "mhp", "mhe", "mhs")
#: softmax trained through a fused linear + loss kernel (mhce_nmt.baselines.fused_softmax)
FUSED_SOFTMAX_METHODS = tuple(f"softmax-{k}" for k in SOFTMAX_KERNELS if k != "eager")
#: mhe/mhp with the recipe's frequent-token shortlist at --vocab-size (mhp 4,096 ids; mhe 1,024 below
#: 24k, 4,096 from 24k up; not run unless named); another size may follow, e.g. mhp+shortlist1024
SHORTLIST_METHODS = ("mhe+shortlist", "mhp+shortlist")
SHORTLIST_METHOD = re.compile(r"(mhe|mhp)\+shortlist([1-9]\d*)?")
#: --model base: transformer_wmt_en_de's width and depth, over the recipe's CPU-sized model
BASE_MODEL_ARGS = (
    "--encoder-layers", "6", "--decoder-layers", "6", "--encoder-embed-dim", "512", "--decoder-embed-dim", "512",
    "--encoder-ffn-embed-dim", "2048", "--decoder-ffn-embed-dim", "2048",
    "--encoder-attention-heads", "8", "--decoder-attention-heads", "8",
)


def method_settings(cfg: config.Config, method: str) -> config.Config:
    """cfg for one method: a mode, softmax-KERNEL (softmax through a fused kernel), or
    mhe+shortlist[N] / mhp+shortlist[N] (--mhce-shortlist N, the recipe's N for the mode unless given; run
    directory of its own)."""
    base, _, variant = method.partition("+")
    mode, _, kernel = base.partition("-")
    size = variant.removeprefix("shortlist") or str(config.default_shortlist(libreoffice.RECIPE, mode, cfg.vocab_size))
    shortlist = ("--mhce-shortlist", size) if variant else ()
    return replace(cfg, train=replace(cfg.train, mode=mode, softmax_kernel=kernel or "eager",
                                      shortlist_args=shortlist, shortlist_tag="",  # the method names the run
                                      run_name=method if variant else ""))


def run_measured(cmd: List[str], log: Path) -> Dict[str, float]:
    """Run a console-script command, tee its output to `log`; wall seconds and peak RSS (MB)."""
    print("+ " + " ".join(cmd), flush=True)
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which(cmd[0], path=search)
    if exe is None:
        raise FileNotFoundError(f"{cmd[0]} not found; run `make install` first")
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("wb") as copy:
        proc = subprocess.Popen([exe, *cmd[1:]], stdout=copy, stderr=subprocess.STDOUT)
        _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}); end of {log}:\n{tail}")
    return {"wall_s": time.perf_counter() - start, "peak_rss_mb": usage.ru_maxrss / 1024}


def subset_test(cfg: config.Config, lines: int) -> None:
    """Keep the first `lines` test pairs (for --quick)."""
    for lang in cfg.langs:
        path = cfg.data / f"test.{lang}"
        kept = read_lines(path)[:lines]
        write_lines(path, kept)


def benchmark_decoding(cfg: config.Config, mode: str, checkpoint: Path, topk: str) -> evaluate.Decoding:
    """How the benchmarks decode the test set with `checkpoint`: cfg's beam, batch size, device and
    length penalty, and `topk` level-1 groups for mhe/mhp."""
    return evaluate.Decoding(cfg.bin, checkpoint, mode, beam=cfg.beam, batch_size=cfg.batch_size, topk_groups=topk,
                             cpu=cfg.train.cpu, lenpen=cfg.lenpen)


def decode_test_set(cfg: config.Config, mode: str, checkpoint: Path, out_dir: Path, topk: str,
                    run: evaluate.Runner) -> Tuple[Dict[str, object], Dict[str, object]]:
    """Decode the test set with `checkpoint` into `out_dir` (``fairseq-generate`` run by `run`), desegmented
    in order, and score it with sacreBLEU: (the decoding's sizes and speed, the scores), as
    recipes.evaluate gives them."""
    stats = evaluate.decode_split(benchmark_decoding(cfg, mode, checkpoint, topk), out_dir,
                                  cfg.data / f"test.{cfg.src}", cfg.segmenter_path(cfg.tgt), run)
    return stats, evaluate.score_files(out_dir / "hyp.txt", cfg.data / f"test.{cfg.tgt}")


def decode(cfg: config.Config, method: str, run_dir: Path, topk: str) -> Dict[str, object]:
    """fairseq-generate on the test set, desegment in order, score with sacreBLEU; with the decoding's
    wall time and peak RSS."""
    method_cfg = method_settings(cfg, method)
    measured: List[Dict[str, float]] = []
    stats, scores = decode_test_set(cfg, method_cfg.train.mode, run_state.checkpoint_path(method_cfg),
                                    run_dir / f"gen-{topk}", topk,
                                    run=lambda cmd, log: measured.append(run_measured(cmd, log)))
    return {
        "decode_sentences_per_s": stats.get("sentences_per_s"), "lenpen": stats["lenpen"],
        "decode_wall_s": round(measured[0]["wall_s"], 1),
        "decode_peak_rss_mb": round(measured[0]["peak_rss_mb"], 1), **scores,
    }


def device_name() -> str:
    """What fairseq trains on here: the GPU's name, or "cpu (N threads)"."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def bench_method(cfg: config.Config, method: str, topk: str, exhaustive: bool) -> Dict[str, object]:
    """Train one method from scratch, then decode and score; one record."""
    method_cfg = method_settings(cfg, method)
    mode = method_cfg.train.mode
    run_dir = method_cfg.run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    method_cfg.checkpoints.mkdir(parents=True)
    cmd = train_command(cfg.bin, method_cfg.checkpoints, method_cfg.train, run_state.target_vocab_size(cfg))
    measured = run_measured(cmd, run_dir / "train.out")
    stats = parse_train_log(method_cfg.checkpoints / "train.log")
    record: Dict[str, object] = {
        "method": method, "device": device_name(), "vocab": run_state.target_vocab_size(cfg),
        "updates": stats.get("num_updates"), "train_words_per_s": stats.get("train_words_per_s"),
        "train_wall_s": round(measured["wall_s"], 1), "train_peak_rss_mb": round(measured["peak_rss_mb"], 1),
        "valid_ppl": stats.get("valid_ppl"), "model_params": stats.get("model_params"),
        "output_layer_params": run_state.output_layer_params(run_state.checkpoint_path(method_cfg)),
    }
    record.update(decode(cfg, method, run_dir, topk if mode in ("mhe", "mhp") else "full"))
    if exhaustive and mode == "mhe":
        full = decode(cfg, method, run_dir, "all")
        record.update({f"exhaustive_{k}": v for k, v in full.items()
                       if k in ("bleu", "bp", "chrf", "decode_sentences_per_s")})
    print(json.dumps(record), flush=True)
    return record


def add_relative_numbers(records: List[Dict[str, object]]) -> None:
    """train_speedup_vs_softmax and bleu_minus_softmax for every record, once softmax ran."""
    softmax = next((r for r in records if r["method"] == "softmax"), None)
    for r in records:
        if softmax and r["train_words_per_s"] and softmax["train_words_per_s"]:
            r["train_speedup_vs_softmax"] = round(r["train_words_per_s"] / softmax["train_words_per_s"], 2)
            r["bleu_minus_softmax"] = round(r["bleu"] - softmax["bleu"], 2)


def markdown_table(records: Sequence[Dict[str, object]]) -> str:
    cols = [("method", "method"), ("train_words_per_s", "train words/s"),
            ("train_speedup_vs_softmax", "vs softmax"), ("train_wall_s", "train wall s"),
            ("train_peak_rss_mb", "peak RSS MB"), ("decode_sentences_per_s", "decode sent/s"),
            ("output_layer_params", "output-layer params"), ("valid_ppl", "valid ppl"),
            ("bleu", "BLEU"), ("bp", "BP"), ("chrf", "chrF"), ("exhaustive_bleu", "BLEU exhaustive"),
            ("exhaustive_bp", "BP exhaustive")]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in records:
        lines.append("| " + " | ".join("" if r.get(k) is None else f"{r[k]:,}" if isinstance(r.get(k), int)
                                       else str(r[k]) for k, _ in cols) + " |")
    sig = next((r for r in records if "bleu_signature" in r), None)
    if sig:
        lines += ["", f"BLEU signature: `{sig['bleu_signature']}`; chrF signature: `{sig['chrf_signature']}`"]
    return "\n".join(lines) + "\n"


def plot(records: Sequence[Dict[str, object]], layer_json: Optional[Path], path: Path) -> None:
    """Left: training words/s vs BLEU per method. Right: output-layer train ms vs V (if given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layer = json.loads(layer_json.read_text()) if layer_json and layer_json.exists() else None
    fig, axes = plt.subplots(1, 2 if layer else 1, figsize=(11 if layer else 6, 4.2))
    axes = list(axes) if layer else [axes]
    methods = sorted({r["method"] for r in records} | {r["method"] for r in layer or []})
    color = {m: f"C{i}" for i, m in enumerate(methods)}  # one colour per method in both panels
    ax = axes[0]
    for r in records:
        ax.scatter(r["train_words_per_s"], r["bleu"], s=60, color=color[r["method"]])
        ax.annotate(r["method"], (r["train_words_per_s"], r["bleu"]), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel("training target words/s")
    ax.set_ylabel("test BLEU")
    ax.set_title(f"same model, {records[0]['updates']} updates, V={records[0]['vocab']}")
    ax.grid(alpha=0.3)
    if layer:
        ax = axes[1]
        for method in sorted({r["method"] for r in layer}):
            pts = sorted((r["vocab"], r["train_ms"]) for r in layer if r["method"] == method)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method, color=color[method])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("target vocabulary V")
        ax.set_ylabel("output layer fwd+bwd ms (2048 tokens)")
        ax.legend()
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def recipe_config(args: argparse.Namespace) -> Tuple[config.Config, argparse.Namespace]:
    """The recipe's Config for these benchmark options (device auto-detected), and its parsed options.

    The benchmark's own schedule, never the demo's: its lr and dropout, no shortlist (arms that
    want one say so), checkpoint_best decoded rather than an average; its own corpus, the
    LibreOffice text alone (--no-more); and fairseq's own adam rather than the recipe's
    adam_fused (same update, faster step): every benchmark record so far was measured so."""
    argv_recipe = ["--work-dir", str(args.work_dir), "--vocab-size", str(args.vocab_size),
                   "--max-update", str(args.max_update), "--warmup-updates", str(args.warmup_updates),
                   "--max-tokens", str(args.max_tokens), "--seed", str(args.seed),
                   "--train-minutes", str(args.train_minutes), "--batch-size", str(args.batch_size),
                   "--lenpen", f"{args.lenpen:g}",
                   "--lr", f"{args.lr:g}", "--dropout", f"{args.dropout:g}", "--mhce-shortlist", "0",
                   "--average-last", "0", "--lr-schedule", "inverse_sqrt",
                   "--autocast-bf16" if args.bf16 else "--no-autocast-bf16", "--log-format", "simple", "--no-more"]
    parser_recipe = argparse.ArgumentParser()
    config.add_arguments(parser_recipe, libreoffice.RECIPE, ("extract",) + pipeline.STAGES)
    add_extract_arguments(parser_recipe)
    recipe_args = parser_recipe.parse_args(argv_recipe)
    cfg = config.config_from_args(recipe_args, libreoffice.RECIPE)
    cfg = replace(cfg, train=replace(cfg.train, model_args=(*cfg.train.model_args, "--optimizer", "adam")))
    if args.model == "base":  # fairseq keeps the last value of a repeated option
        cfg = replace(cfg, train=replace(cfg.train, model_args=(*cfg.train.model_args, *BASE_MODEL_ARGS)))
    return cfg, recipe_args


def method_name(text: str) -> str:
    """argparse type of --methods: a known method, or mhe/mhp+shortlistN."""
    if text in MODES + FUSED_SOFTMAX_METHODS or SHORTLIST_METHOD.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(
        f"unknown method {text!r}; use one of {', '.join(MODES + FUSED_SOFTMAX_METHODS + SHORTLIST_METHODS)}, "
        f"or mhe/mhp+shortlistN with N >= 1")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The benchmark's options (--quick filled in)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=REPO / "recipes" / "libreoffice_de_en" / "work")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), type=method_name,
                        metavar="METHOD",
                        help=f"any of {', '.join(MODES + FUSED_SOFTMAX_METHODS + SHORTLIST_METHODS)}; a shortlist "
                             f"size may follow, e.g. mhp+shortlist1024 (default: {' '.join(DEFAULT_METHODS)})")
    parser.add_argument("--model", choices=("small", "base"), default="small",
                        help="small: the recipe's 3+3 layers of width 256; base: transformer_wmt_en_de's 6+6 of 512 "
                             "(default %(default)s)")
    parser.add_argument("--vocab-size", type=int, default=32000, help="joint sentencepiece vocabulary")
    parser.add_argument("--max-update", type=int, default=160,
                        help="updates per method (default 160: under an hour for all five on 2 CPU cores)")
    parser.add_argument("--warmup-updates", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--train-minutes", type=float, default=0,
                        help="safety cap on each method's training time (0 = none); the `updates` column "
                             "shows where a capped method stopped")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per decoding batch")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default %(default)g)")
    parser.add_argument("--dropout", type=float, default=0.2, help="default %(default)g")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--topk-groups", default="8", help="coarse-to-fine G for mhe/mhp")
    parser.add_argument("--lenpen", type=float, default=1.0,
                        help="beam search length penalty, > 1 favours longer output (default %(default)g)")
    parser.add_argument("--no-exhaustive", action="store_true", help="skip mhe's exhaustive decode")
    parser.add_argument("--test-lines", type=int, default=1000, help="decode the first N test pairs (0 = all)")
    parser.add_argument("--bf16", action="store_true",
                        help="train under bf16 autocast (the task's --autocast-bf16; GPUs, and CPUs with "
                             "AVX512-BF16 or AMX)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (~10 min on 2 cores): 8k vocab, 40 updates, 300 test lines, own work dir")
    parser.add_argument("--prepare-only", action="store_true",
                        help="extract, segment and binarise the benchmark's corpus, train nothing (to pack it "
                             "for a machine without network, as scripts/gpu_check.sh expects)")
    parser.add_argument("--layer-json", type=Path, help="bench_output_layer.py JSON for the plot's 2nd panel")
    parser.add_argument("--out", type=Path, default=REPO / "bench_out", help="where JSON/markdown/PNG go")
    parser.add_argument("--plot-only", type=Path, metavar="JSON",
                        help="redraw the PNG (and markdown) from an earlier run's JSON, train nothing")
    args = parser.parse_args(argv)
    if args.train_minutes < 0 or args.batch_size < 1:
        parser.error(f"--train-minutes must be >= 0 (0 = no cap) and --batch-size >= 1, got "
                     f"{args.train_minutes:g} and {args.batch_size}")
    if args.quick:
        args.vocab_size, args.max_update, args.warmup_updates = 8000, 40, 20
        args.test_lines = min(args.test_lines or 300, 300)
    return args


def main(argv: Optional[List[str]] = None) -> List[Dict[str, object]]:
    args = parse_args(argv)
    if args.plot_only:
        records = json.loads(args.plot_only.read_text())
        args.plot_only.with_suffix(".md").write_text(markdown_table(records))
        plot(records, args.layer_json, args.plot_only.with_suffix(".png"))
        return records
    cfg, recipe_args = recipe_config(args)
    libreoffice.stage_extract(cfg, recipe_args)
    # own work dir (never touches the recipe's runs); the recipe's data, optionally a test subset
    cfg = replace(cfg, work_dir=cfg.work_dir / ("bench" + (f"-test{args.test_lines}" if args.test_lines else "")))
    if not (cfg.data / f"test.{cfg.src}").exists():
        shutil.copytree(args.work_dir / "data", cfg.data)
        if args.test_lines:
            subset_test(cfg, args.test_lines)
    pipeline.stage_spm(cfg)
    pipeline.stage_binarize(cfg)
    if args.prepare_only:
        print(f"prepared {cfg.work_dir}")
        return []
    args.out.mkdir(parents=True, exist_ok=True)
    tag = f"translation_V{args.vocab_size}_u{args.max_update}" + ("_base" if args.model == "base" else "")
    tag += "_bf16" if args.bf16 else ""
    tag += f"_lr{args.lr:g}" if args.lr != 1e-3 else ""
    tag += f"_d{args.dropout:g}" if args.dropout != 0.2 else ""
    tag += f"_lp{args.lenpen:g}" if args.lenpen != 1.0 else ""
    records: List[Dict[str, object]] = []
    for method in args.methods:  # the JSON is rewritten after each method: a failure keeps the rest
        records.append(bench_method(cfg, method, args.topk_groups, not args.no_exhaustive))
        add_relative_numbers(records)
        (args.out / f"{tag}.json").write_text(json.dumps(records, indent=2) + "\n")
    table = markdown_table(records)
    (args.out / f"{tag}.md").write_text(table)
    plot(records, args.layer_json, args.out / f"{tag}.png")
    print(table)
    print(f"wrote {args.out / tag}.json, .md, .png")
    return records


if __name__ == "__main__":
    main()
