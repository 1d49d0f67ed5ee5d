"""Quality at a trained operating point: learning curves of every output layer, side by side.

On the offline LibreOffice de->en corpus (recipes/libreoffice_de_en), each arm (an output layer,
optionally with an ablation variant) trains the recipe's CPU transformer with the same schedule
and seed, saving a checkpoint every --interval updates up to --max-update. Every checkpoint is
then decoded on the whole test set (beam 5, length penalty --lenpen, default 1; mhe/mhp coarse to
fine) and scored: BLEU, chrF, brevity penalty, hypothesis/reference length, validation perplexity,
decoding sentences/s and generated tokens/s. One JSON record per (vocab, method, variant, updates,
length penalty), rewritten after each one, so an interrupted run resumes where it stopped (training
resumes from checkpoint_last.pt).

    python -m scripts.bench_quality                                 # all arms at 16k
    python -m scripts.bench_quality --arms softmax mhe mhp --vocab-size 32000
    python -m scripts.bench_quality --plot-only results/quality_spm16000.json
    python -m scripts.bench_quality --merge results/gpu_h200/quality.json job1/*.json job2/*.json
    python -m scripts.bench_quality --valid-curves results/gpu_h200/valid_ppl.md WORK/quality-*/arms/*/checkpoints/train.log

Parallel runs (one arm per process, as scripts/gpu_quality.sh does on a GPU) each write their own
JSON under their own --out; --merge joins them into one file with its table and plot.

Arms: softmax and adaptive (stock fairseq), mhe and mhp (the plugin's defaults: joint label
smoothing), and ablations named method/variant: mhe/per-level and mhp/per-level (the old
per-head smoothing), mhe/tied (last level tied to the decoder input embeddings), mhe/shortlist
and mhp/shortlist (the 1,024 most frequent ids scored directly at level 1), mhp/shortlist4096
(4,096 ids, the recipe's mhp default), mhe/shortlist+tied (every output row the decoder input
embedding of its id, shortlist rows included).
Training minutes in the plot are updates x target words per update / words/s, with words/s the
median of the arm's own training log (take them from a quiet machine to compare speeds).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from recipes import config, logs, pipeline, run_state, runner
from recipes.commands import train_command
from recipes.libreoffice_de_en import run as libreoffice
from recipes.provenance import origin
from scripts.bench_translation import decode_test_set, device_name, recipe_config, run_measured

REPO = Path(__file__).resolve().parents[1]

#: arm name -> (method, variant, extra fairseq-train options)
ARMS: Dict[str, Tuple[str, str, Tuple[str, ...]]] = {
    "softmax": ("softmax", "", ()),
    "mhe": ("mhe", "", ()),
    "mhp": ("mhp", "", ()),
    "adaptive": ("adaptive", "", ()),
    "mhe/per-level": ("mhe", "per-level", ("--mhce-smoothing", "per-level")),
    "mhp/per-level": ("mhp", "per-level", ("--mhce-smoothing", "per-level")),
    "mhe/tied": ("mhe", "tied", ("--mhe-tie-label-embeddings",)),
    "mhe/shortlist": ("mhe", "shortlist", ("--mhce-shortlist", "1024")),
    "mhp/shortlist": ("mhp", "shortlist", ("--mhce-shortlist", "1024")),
    "mhp/shortlist4096": ("mhp", "shortlist4096", ("--mhce-shortlist", "4096")),
    "mhe/shortlist+tied": ("mhe", "shortlist+tied", ("--mhce-shortlist", "1024", "--mhe-tie-label-embeddings")),
}


DEFAULT_LR = 1e-3
DEFAULT_DROPOUT = 0.2


def settings_tag(args: argparse.Namespace) -> str:
    """The training schedule shared by every arm, e.g. 'w1000-t4096-s1' (warm-up, max tokens, seed),
    then '-lr2e-3' and '-d0.1' when the learning rate or dropout differ from the recipe's."""
    tag = f"w{args.warmup_updates}-t{args.max_tokens}-s{args.seed}"
    if args.lr != DEFAULT_LR:
        tag += f"-lr{args.lr:g}"
    if args.dropout != DEFAULT_DROPOUT:
        tag += f"-d{args.dropout:g}"
    return tag


DEFAULT_SETTINGS = "w1000-t4096-s1"



def record_key(r: Dict[str, object]) -> Tuple[object, ...]:
    """What makes two records the same point (records without settings or seed used the defaults)."""
    return (r["vocab"], r["method"], r["variant"], r["updates"], r.get("settings", DEFAULT_SETTINGS), r.get("seed", 1))


def point_key(vocab: int, arm: str, updates: int, args: argparse.Namespace) -> Tuple[object, ...]:
    """The record_key of `arm`'s point at `updates` in this run (its schedule and seed)."""
    method, variant, _extra = ARMS[arm]
    return (vocab, method, variant, updates, settings_tag(args), args.seed)


def decoded_lenpen(r: Dict[str, object]) -> float:
    """The length penalty a record was decoded at (records before the field: fairseq's default, 1)."""
    return 1.0 if r.get("lenpen") is None else float(r["lenpen"])


def scored_points(records: List[Dict[str, object]], lenpen: float) -> Set[Tuple[object, ...]]:
    """The record_key of every record decoded at `lenpen`."""
    return {record_key(r) for r in records if decoded_lenpen(r) == lenpen}


def arm_scored(records: List[Dict[str, object]], arm: str, vocab: int, args: argparse.Namespace) -> bool:
    """True when every curve point of `arm` already has a record at --lenpen (nothing to train or decode)."""
    have = scored_points(records, args.lenpen)
    return all(point_key(vocab, arm, u, args) in have for u in range(args.interval, args.max_update + 1, args.interval))


def arm_dir(work: Path, arm: str) -> Path:
    """runs of one arm: WORK/arms/<method>[-<variant>]."""
    return work / "arms" / arm.replace("/", "-")


def checkpoint_at(checkpoints: Path, updates: int) -> Optional[Path]:
    """fairseq's interval checkpoint checkpoint_<epoch>_<updates>.pt, if saved."""
    found = sorted(checkpoints.glob(f"checkpoint_*_{updates}.pt"))
    return found[0] if found else None


def train_arm(cfg: config.Config, arm: str, run_dir: Path, args: argparse.Namespace,
              while_training: Optional[Callable[[], None]] = None) -> None:
    """Train (or resume) one arm up to --max-update, saving every --interval updates.

    `while_training`, if given, is called every few seconds until fairseq-train exits (the
    GPU runs score each checkpoint as soon as it is saved)."""
    method, _variant, extra = ARMS[arm]
    checkpoints = run_dir / "checkpoints"
    wanted = range(args.interval, args.max_update + 1, args.interval)
    trained = logs.parse_train_log(checkpoints / "train.log").get("num_updates", 0)
    if all(checkpoint_at(checkpoints, u) for u in wanted) or trained >= args.max_update:
        runner.say(arm, f"trained to {trained} updates already, training skipped")
        return
    settings = replace(cfg.train, mode=method)
    cmd = train_command(cfg.bin, checkpoints, settings, run_state.target_vocab_size(cfg))
    cmd += ["--save-interval-updates", str(args.interval), "--keep-interval-updates", "-1", *extra]
    checkpoints.mkdir(parents=True, exist_ok=True)
    attempt = len(list(run_dir.glob("train-*.out")))
    log = run_dir / f"train-{attempt}.out"  # fairseq appends to checkpoints/train.log
    if while_training is None:
        run_measured(cmd, log)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        training = pool.submit(run_measured, cmd, log)
        while not training.done():
            while_training()
            time.sleep(5)
        training.result()  # raises if fairseq-train failed


def log_numbers(train_log: Path) -> Dict[str, object]:
    """From fairseq's train.log: median words/s and words per update of the training intervals,
    and the validation ppl at each update where fairseq validated."""
    text = logs.read_log(train_log)
    return {"wps": logs.interval_median(text, "wps"), "wpb": logs.interval_median(text, "wpb"),
            "valid_ppl": logs.valid_ppl_by_update(text)}


def decode_checkpoint(cfg: config.Config, method: str, checkpoint: Path, out_dir: Path,
                      topk: str) -> Dict[str, object]:
    """Beam search over the whole test set at cfg's length penalty, desegment in order, sacreBLEU with
    brevity penalty."""
    stats, scores = decode_test_set(cfg, method, checkpoint, out_dir, topk, run_measured)
    return {
        "bleu": scores["bleu"], "chrf": scores["chrf"], "bp": scores["bp"],
        "hyp_ref_ratio": scores["hyp_ref_ratio"], "sentences": stats["sentences"], "lenpen": stats["lenpen"],
        "decode_sentences_per_s": stats.get("sentences_per_s"), "decode_tokens_per_s": stats.get("tokens_per_s"),
        "bleu_signature": scores["bleu_signature"], "bleu_detail": scores["bleu_detail"],
    }


def score_arm(cfg: config.Config, arm: str, run_dir: Path, args: argparse.Namespace,
              records: List[Dict[str, object]], save, finished: bool = True) -> None:
    """Decode and score every saved curve checkpoint that has no record at --lenpen yet (`finished`:
    training has ended, so a checkpoint still missing is reported as left out)."""
    method, variant, extra = ARMS[arm]
    vocab = run_state.target_vocab_size(cfg)
    for updates in range(args.interval, args.max_update + 1, args.interval):
        if point_key(vocab, arm, updates, args) in scored_points(records, args.lenpen):
            continue
        checkpoint = checkpoint_at(run_dir / "checkpoints", updates)
        if checkpoint is None:  # fairseq saves no interval checkpoint at the end of an epoch
            if finished:
                runner.say(arm, f"warning: no checkpoint at update {updates}, that point is left out")
            continue
        numbers = log_numbers(run_dir / "checkpoints" / "train.log")  # read now: training may go on
        topk = args.topk_groups if method in ("mhe", "mhp") else "full"
        record: Dict[str, object] = {
            "vocab": vocab, "vocab_tag": cfg.vocab_tag, "method": method, "variant": variant,
            "updates": updates, "settings": settings_tag(args), "seed": args.seed,
            "arm_options": " ".join(extra),
            "device": device_name(),
            **origin(),
            "valid_ppl": numbers["valid_ppl"].get(updates),
            "train_words_per_s": round(numbers["wps"], 1) if numbers["wps"] else None,
            "train_words_per_update": round(numbers["wpb"], 1) if numbers["wpb"] else None,
        }
        if numbers["wps"] and numbers["wpb"]:
            record["train_minutes"] = round(updates * numbers["wpb"] / numbers["wps"] / 60, 1)
        record.update(decode_checkpoint(cfg, method, checkpoint, run_dir / f"gen-{updates}", topk))
        records.append(record)
        save(records)
        print(json.dumps({k: record[k] for k in ("method", "variant", "updates", "bleu", "chrf", "bp",
                                                  "valid_ppl")}), flush=True)


def curve_label(r: Dict[str, object]) -> str:
    """method[/variant], then the seed and the length penalty where they are not 1."""
    lenpen, seed = r.get("lenpen"), r.get("seed", 1)
    return (r["method"] + (f"/{r['variant']}" if r["variant"] else "") + (f" seed {seed}" if seed != 1 else "")
            + (f" lenpen {lenpen:g}" if lenpen not in (None, 1, 1.0) else ""))


def markdown_table(records: Sequence[Dict[str, object]]) -> str:
    """One row per record, arms in their first-seen order, updates ascending."""
    cols = [("vocab", "V"), ("arm", "arm"), ("updates", "updates"), ("train_minutes", "train min"),
            ("train_words_per_s", "train words/s"), ("valid_ppl", "valid ppl"), ("bleu", "BLEU"),
            ("chrf", "chrF"), ("bp", "BP"), ("hyp_ref_ratio", "hyp/ref"), ("lenpen", "lenpen"),
            ("decode_sentences_per_s", "decode sent/s"), ("decode_tokens_per_s", "decode tok/s")]
    order = {label: i for i, label in enumerate(dict.fromkeys(curve_label(r) for r in records))}
    rows = sorted(records, key=lambda r: (r["vocab"], order[curve_label(r)], r["updates"]))
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for key, _ in cols:
            value = curve_label(r) if key == "arm" else r.get(key)
            cells.append("" if value is None else f"{value:,}" if isinstance(value, int) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    if rows:
        lines += ["", f"BLEU signature: `{rows[0]['bleu_signature']}`"]
    return "\n".join(lines) + "\n"


def plot(records: Sequence[Dict[str, object]], path: Path) -> None:
    """Learning curves where the records span several update counts; else one operating point."""
    import matplotlib

    matplotlib.use("Agg")
    if len({r["updates"] for r in records}) > 1:
        plot_curves(records, path)
    else:
        plot_operating_point(records, path)


def arm_rows(records: Sequence[Dict[str, object]]) -> List[str]:
    """The dot chart's rows, top to bottom: every arm (method[/variant]) once, in first-seen order."""
    names = [r["method"] + (f"/{r['variant']}" if r["variant"] else "") for r in records]
    return list(dict.fromkeys(names))


def plot_operating_point(records: Sequence[Dict[str, object]], path: Path) -> None:
    """Records of one update count (recipe runs): BLEU and brevity penalty per arm, one dot per
    (seed, length penalty), so seeds show the run-to-run spread beside the arms' differences."""
    import matplotlib.pyplot as plt

    rows = arm_rows(records)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.9 + 0.45 * len(rows)), sharey=True)
    marks = {1.0: "o", 2.0: "s"}
    seeds = sorted({r.get("seed", 1) for r in records})
    shown = set()
    for r in records:
        y = rows.index(r["method"] + (f"/{r['variant']}" if r["variant"] else ""))
        seed, lenpen = r.get("seed", 1), float(r.get("lenpen") or 1.0)
        key = (seed, lenpen)
        style = dict(marker=marks.get(lenpen, "^"), color=f"C{seeds.index(seed) % 10}", linestyle="none",
                     label=None if key in shown else f"seed {seed}, lenpen {lenpen:g}")
        shown.add(key)
        axes[0].plot([r["bleu"]], [y], **style)
        axes[1].plot([r["bp"]], [y], **style)
    axes[0].set_yticks(range(len(rows)), rows)
    axes[0].invert_yaxis()
    axes[0].set_xlabel(f"test BLEU after {records[0]['updates']:,} updates")
    axes[1].set_xlabel("brevity penalty")
    axes[1].axvline(1.0, color="grey", linewidth=0.8)
    for ax in axes:
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()  # below the panels, clear of every row's dots
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(labels))
    fig.tight_layout(rect=(0, 0.45 / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=120)


def plot_curves(records: Sequence[Dict[str, object]], path: Path) -> None:
    """BLEU against updates and against training minutes, one line per arm and vocabulary."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    curves = sorted({(r["vocab"], curve_label(r)) for r in records})
    for i, (vocab, label) in enumerate(curves):
        points = sorted((r for r in records if (r["vocab"], curve_label(r)) == (vocab, label)),
                        key=lambda r: r["updates"])
        style = dict(marker="o", color=f"C{i % 10}", label=f"{label} (V={vocab:,})",
                     linestyle="-" if "/" not in label else "--")
        axes[0].plot([r["updates"] for r in points], [r["bleu"] for r in points], **style)
        timed = [r for r in points if r.get("train_minutes")]
        axes[1].plot([r["train_minutes"] for r in timed], [r["bleu"] for r in timed], **style)
    axes[0].set_xlabel("updates")
    axes[1].set_xlabel("training minutes (updates x words/update / words/s)")
    for ax in axes:
        ax.set_ylabel("test BLEU")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=REPO / "recipes" / "libreoffice_de_en" / "work")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS),
                        help="in this order (default: all)")
    parser.add_argument("--vocab-size", type=int, default=16000, help="joint sentencepiece vocabulary")
    parser.add_argument("--max-update", type=int, default=3000)
    parser.add_argument("--interval", type=int, default=500, help="updates between scored checkpoints")
    parser.add_argument("--warmup-updates", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=DEFAULT_LR, help="peak learning rate (default %(default)g)")
    parser.add_argument("--dropout", type=float, default=DEFAULT_DROPOUT, help="default %(default)g")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per decoding batch")
    parser.add_argument("--topk-groups", default="8", help="coarse-to-fine G for mhe/mhp")
    parser.add_argument("--lenpen", type=float, default=1.0,
                        help="beam search length penalty, > 1 favours longer output (default %(default)g); the "
                             "records of each length penalty are points of their own")
    parser.add_argument("--out", type=Path, default=REPO / "results", help="where JSON/markdown/PNG go")
    parser.add_argument("--score-during-training", action="store_true",
                        help="decode each checkpoint as soon as it is saved (for GPUs; on a CPU it would "
                             "slow training and spoil its words/s)")
    no_training = parser.add_mutually_exclusive_group()
    no_training.add_argument("--plot-only", type=Path, metavar="JSON", help="redraw table and plot, train nothing")
    no_training.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                             help="OUT IN [IN ...]: join the records of parallel runs into OUT (+ .md, .png)")
    no_training.add_argument("--valid-curves", type=Path, nargs="+", metavar="PATH",
                             help="OUT.md TRAIN_LOG [...]: validation ppl against updates from fairseq "
                                  "train.logs (table and OUT.png), train nothing")
    parser.add_argument("--valid-every", type=int, metavar="N",
                        help="with --valid-curves: the table keeps updates that are multiples of N (default "
                             "500), the plot every point from N on (an epoch's length in updates gives one "
                             "column per epoch)")
    no_training.add_argument("--recipe-summaries", type=Path, nargs="+", metavar="PATH",
                             help="OUT SUMMARY [...]: recipe runs' summary.json files as records of this "
                                  "benchmark (arms trained by recipes/*/run.py with one schedule, named by "
                                  "--settings), written to OUT (+ .md, .png); train nothing")
    parser.add_argument("--settings", metavar="TAG",
                        help="with --recipe-summaries: the schedule the runs shared, a tag for the records "
                             "(default: recipe)")
    no_training.add_argument("--prepare-only", action="store_true",
                             help="extract, segment and binarise the corpus for --vocab-size, train nothing "
                                  "(before parallel runs, which must not prepare it at once)")
    args = parser.parse_args(argv)
    if args.valid_curves is not None and len(args.valid_curves) < 2:
        parser.error("--valid-curves needs the output file and at least one train.log")
    if args.valid_every is not None and (args.valid_curves is None or args.valid_every < 1):
        parser.error(f"--valid-every {args.valid_every}: give N >= 1, with --valid-curves")
    if args.settings is not None and args.recipe_summaries is None:
        parser.error(f"--settings {args.settings} tags recipe summaries: give it with --recipe-summaries")
    if args.recipe_summaries is not None and len(args.recipe_summaries) < 2:
        parser.error("--recipe-summaries needs the output file and at least one summary.json")
    if args.merge is not None and len(args.merge) < 2:
        parser.error("--merge needs the output file and at least one input file")
    if args.interval < 1 or args.max_update < args.interval:
        parser.error(f"--interval must be >= 1 and <= --max-update, got {args.interval} and {args.max_update}")
    return args


def curve_name(train_log: Path) -> str:
    """'spm16000-w500-t8192-s1 mhe-shortlist' from WORK/quality-<schedule>/arms/<arm>/checkpoints/train.log."""
    arm_dir = train_log.parent.parent
    return f"{arm_dir.parent.parent.name.removeprefix('quality-')} {arm_dir.name}"


def valid_curves(logs: Sequence[Path], out: Path, every: int = 500) -> str:
    """Validation perplexity against updates, one row per training log (fairseq validates at every
    saved checkpoint and epoch end); the table keeps multiples of `every`, the plot every point
    from `every` on. Logs of the same schedule and arm are told apart by a number."""
    curves: Dict[str, Dict[int, float]] = {}
    for log in logs:
        name = curve_name(log)
        if name in curves:
            name += f" ({sum(1 for other in curves if other.startswith(name)) + 1})"
        curves[name] = log_numbers(log)["valid_ppl"]
    columns = sorted({u for ppl in curves.values() for u in ppl if u % every == 0})
    lines = ["| run | " + " | ".join(f"{u:,}" for u in columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for name, ppl in curves.items():
        lines.append(f"| {name} | " + " | ".join(str(ppl.get(u, "")) for u in columns) + " |")
    table = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (name, ppl) in enumerate(curves.items()):
        updates = sorted(u for u in ppl if u >= every)
        ax.plot(updates, [ppl[u] for u in updates], marker=".", color=plt.cm.tab20(i % 20), label=name)
    ax.set_xlabel("updates")
    ax.set_ylabel("validation perplexity")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    return table


def merge_records(inputs: Sequence[Path]) -> List[Dict[str, object]]:
    """The records of several runs, one per point and length penalty (a recipe run decoded at two
    is two records): for a point in more than one file, the later file's record wins."""
    merged: Dict[Tuple[object, ...], Dict[str, object]] = {}
    for path in inputs:
        records = json.loads(path.read_text())
        refuse_without_commit(records, path)
        for r in records:
            merged[(*record_key(r), decoded_lenpen(r))] = r
    return list(merged.values())


#: what ties a record to the code and machine that made it (recipes.pipeline.record_origin)
ORIGIN_KEYS = ("commit", "dirty", "command", "cpu", "cpu_bf16", "threads", "decode_commit", "decode_command")


def refuse_without_commit(records: Sequence[Dict[str, object]], source: Path) -> None:
    """Exit in one line where a record or summary of `source` has no commit: its numbers cannot be traced
    to the code that made them."""
    if any(not r.get("commit") for r in records):
        sys.exit(f"error: {source} has a record without a commit (written before records carried their origin); "
                 "retrain or re-summarise it with the current recipe (its summary then names the commit), "
                 "or leave it out")


def recipe_record(summary: Dict[str, object], settings: str) -> Dict[str, object]:
    """One recipe run's summary.json -> a record of this benchmark (one point: its last update).
    The run's seed is a field, not part of the variant: a seed named in `settings` (`-s2-`) must match."""
    seed = int(summary.get("seed", 1))  # summaries before the field: the recipe's default seed 1
    named = re.search(r"(?:^|-)s(\d+)(?:-|$)", settings)
    if named and int(named.group(1)) != seed:
        sys.exit(f"error: a {summary.get('arm', summary['mode'])} summary was trained with seed {seed} but "
                 f"--settings {settings} names seed {named.group(1)}; give each seed's summaries their own --settings")
    arm = summary.get("arm", summary["mode"])  # softmax-liger: a fused kernel; mhe-tied: tied output rows
    suffix = re.sub(r"-?seed\d+$", "", arm.partition("-")[2])  # mhe-tieshort-seed2 -> tieshort
    suffix = re.sub(r"(?:^|-)s\d+(?=-|$)", "", suffix).strip("-")  # mhe-s4096: the size is read below
    size = re.search(r"shortlist (\d+)", str(summary.get("output", "")))  # 'mhp (shortlist 4096 + heads 110x109)'
    # the records' names: "shortlist" is mhe's N (1,024), another N is named, whatever the mode's default
    mhe_n = config.default_shortlist(libreoffice.RECIPE, "mhe", libreoffice.RECIPE.vocab_size)
    parts = [] if size is None else ["shortlist" + ("" if int(size.group(1)) == mhe_n else size.group(1))]
    parts += ["ctx"] if summary.get("tail_order") == "context" else []  # tail grouped by context
    variant = "+".join(parts + ([suffix] if suffix else []))
    keys = ("bleu", "chrf", "bp", "hyp_ref_ratio", "valid_bleu", "valid_chrf", "valid_bp", "valid_ppl",
            "train_words_per_s", "decode_sentences_per_s", "decode_tokens_per_s", "lenpen", "lenpen_chosen_by",
            "beam", "bleu_signature", "bleu_detail", *ORIGIN_KEYS)
    return {"vocab": summary["dictionary"][summary["pair"].split("-")[1]], "method": summary["mode"],
            "variant": variant, "updates": summary["num_updates"], "settings": settings, "seed": seed,
            "sentences": summary["data_pairs"]["test"], **{k: summary.get(k) for k in keys}}


def write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file, so a run stopped mid-write never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_outputs(records: List[Dict[str, object]], json_path: Path) -> None:
    """JSON, markdown table and plot side by side."""
    write_atomically(json_path, json.dumps(records, indent=2) + "\n")
    write_atomically(json_path.with_suffix(".md"), markdown_table(records))
    plot(records, json_path.with_suffix(".png"))


def main(argv: Optional[List[str]] = None) -> List[Dict[str, object]]:
    args = parse_args(argv)
    if args.plot_only:
        records = json.loads(args.plot_only.read_text())
        args.plot_only.with_suffix(".md").write_text(markdown_table(records))
        plot(records, args.plot_only.with_suffix(".png"))
        return records
    if args.valid_curves:
        missing = [str(p) for p in args.valid_curves[1:] if not p.exists()]
        if missing:
            sys.exit(f"error: --valid-curves input not found: {', '.join(missing)}")
        print(valid_curves(args.valid_curves[1:], args.valid_curves[0], every=args.valid_every or 500), end="")
        return []
    if args.recipe_summaries:
        missing = [str(p) for p in args.recipe_summaries[1:] if not p.exists()]
        if missing:
            sys.exit(f"error: --recipe-summaries input not found: {', '.join(missing)}")
        tag = args.settings or "recipe"
        summaries = {p: json.loads(p.read_text()) for p in args.recipe_summaries[1:]}
        for path, summary in summaries.items():
            refuse_without_commit([summary], path)
        records = [recipe_record(summary, tag) for summary in summaries.values()]
        write_outputs(records, args.recipe_summaries[0])
        print(markdown_table(records), end="")
        return records
    if args.merge:
        missing = [str(p) for p in args.merge[1:] if not p.exists()]
        if missing:
            sys.exit(f"error: --merge input not found: {', '.join(missing)}")
        records = merge_records(args.merge[1:])
        write_outputs(records, args.merge[0])
        print(f"wrote {args.merge[0]} ({len(records)} records), .md, .png")
        return records
    bench = argparse.Namespace(work_dir=args.work_dir, vocab_size=args.vocab_size, max_update=args.max_update,
                               warmup_updates=args.warmup_updates, max_tokens=args.max_tokens, seed=args.seed,
                               train_minutes=0, batch_size=args.batch_size, bf16=False, model="small", lr=args.lr,
                               dropout=args.dropout, lenpen=args.lenpen)
    cfg, recipe_args = recipe_config(bench)
    libreoffice.stage_extract(cfg, recipe_args)
    pipeline.stage_spm(cfg)
    pipeline.stage_binarize(cfg)
    if args.prepare_only:
        return []
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if settings_tag(args) == DEFAULT_SETTINGS else f"_{settings_tag(args)}"
    json_path = args.out / f"quality_{cfg.vocab_tag}{suffix}.json"
    records: List[Dict[str, object]] = json.loads(json_path.read_text()) if json_path.exists() else []

    def save(current: List[Dict[str, object]]) -> None:
        write_atomically(json_path, json.dumps(current, indent=2) + "\n")
        write_atomically(json_path.with_suffix(".md"), markdown_table(current))

    tag = settings_tag(args)  # another schedule never resumes or reuses the default one's runs
    work = cfg.work_dir / (f"quality-{cfg.vocab_tag}" + ("" if tag == DEFAULT_SETTINGS else f"-{tag}"))
    for arm in args.arms:
        run_dir = arm_dir(work, arm)
        if arm_scored(records, arm, run_state.target_vocab_size(cfg), args):
            runner.say(arm, f"every point up to {args.max_update} updates has a record in {json_path}, skipped")
            continue
        during = None
        if args.score_during_training:
            def during(arm=arm, run_dir=run_dir) -> None:
                score_arm(cfg, arm, run_dir, args, records, save, finished=False)
        train_arm(cfg, arm, run_dir, args, during)
        score_arm(cfg, arm, run_dir, args, records, save)
        plot(records, json_path.with_suffix(".png"))
    print(markdown_table(records))
    print(f"wrote {json_path}, .md, .png")
    return records


if __name__ == "__main__":
    main()
