"""What a recipe run is: the recipe's choices (`Recipe`), the command-line options over them
(`add_arguments`) and the resolved run (`Config`: paths, training settings, shortlist, precision)."""
from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mhce_nmt.defaults import COARSE_TO_FINE_MODES, SMOOTHINGS, SOFTMAX_KERNELS
from recipes.commands import MODES, TrainSettings


SPLITS = ("train", "valid", "test")

# Small transformer sized for a 2-core CPU (3+3 layers, d=256).
# The CPU model's optimisation flags; its sizes and dropout 0.2 are the architecture's, CPU_ARCH
# (transformer_cpu, and transformer_mhce_cpu for the factored modes: mhce_nmt.defaults.CPU_MODEL_SIZES).
CPU_ARCH = "transformer_cpu"
CPU_MODEL_ARGS = (
    "--optimizer", "adam_fused", "--adam-betas", "(0.9,0.98)",
    "--lr", "1e-3", "--lr-scheduler", "inverse_sqrt",
)


@dataclass(frozen=True)
class Recipe:
    """What differs between recipes once the data is prepared."""

    name: str
    src: str
    tgt: str
    work_dir: Path
    base_arch: str = CPU_ARCH
    model_args: tuple[str, ...] = CPU_MODEL_ARGS
    softmax_args: tuple[str, ...] = ("--share-decoder-input-output-embed",)
    vocab_size: int = 16000
    word_vocab_size: int = 32000
    warmup_updates: int = 500
    max_tokens: int = 4096
    max_update: int | None = None
    train_minutes: float | None = None
    lr: float | None = None  # None: the value in model_args
    lr_schedule: str = "inverse_sqrt"  # "linear": warm-up, then straight down to 0 at --max-update;
    # "linear-budget": the same line ending at --max-update or --train-minutes, whichever comes first
    dropout: float | None = None  # None: the value in model_args
    # mhe/mhp's shortlist N (the most frequent ids scored directly) where it differs from the plugin's
    # rule, mhce_nmt.defaults.recommended_shortlist (None: the rule; 0: none):
    mhce_shortlist: int | None = None  # mhe's N (and mhp's, unless mhp_shortlist)
    mhp_shortlist: int | None = None  # mhp's N where it differs from mhce_shortlist
    wide_vocab: int | None = None  # from this vocabulary size up, mhe takes mhp's N as well (None: never)
    mhe_tied: bool = False  # mhe: tie every output row to the decoder input embeddings
    share_all: bool = False  # one input embedding table for both languages (joint dictionary only)
    spm_samples: int = 0  # sampled segmentations of each training pair added to its best one
    spm_alpha: float = 0.1  # their sentencepiece sampling smoothness (lower: noisier)
    lenpen: float = 1.0  # beam search length penalty (fairseq's --lenpen: > 1 favours longer output)
    average_last: int = 0  # decode the mean of the last N checkpoints (0 or 1: checkpoint_best)
    average_interval: int = 200  # updates between the averaged checkpoints
    autocast_bf16: bool = False  # bf16 autocast (the task's --autocast-bf16) where faster: a GPU, or a native-bf16 CPU that measures it faster
    tail_order: str = "frequency"  # mhe/mhp tail ids: fairseq's frequency order, or "context" (recipes/tail_order.py)
    spm_user_symbols: tuple[str, ...] = ()  # sentencepiece pieces kept whole wherever they occur (e.g. target tags)
    spm_input_sentences: int = 0  # sentencepiece trains on a shuffled sample of this many lines (0: its default cap)


@dataclass(frozen=True)
class Config:
    """One pipeline run: recipe choices plus command-line options."""

    work_dir: Path
    src: str
    tgt: str
    vocab_size: int
    word_level: bool
    joint: bool
    train: TrainSettings
    workers: int = 2
    beam: int = 5
    batch_size: int = 64
    topk_groups: int = 8
    lenpen: float = 1.0
    valid_lenpens: tuple[float, ...] = ()  # choose the test's length penalty among these on validation BLEU
    average_last: int = 0
    spm_samples: int = 0
    spm_alpha: float = 0.1
    tail_order: str = "frequency"
    spm_user_symbols: tuple[str, ...] = ()
    spm_input_sentences: int = 0
    shortlist: int = 0
    recipe_shortlist: int = 0  # the recipe's N for this mode at vocab_size: its run directory has no -sN
    precision_note: str = ""  # why training runs in the precision it does, when the recipe chose it
    force: bool = False
    dry_run: bool = False

    @property
    def langs(self) -> tuple[str, str]:
        return (self.src, self.tgt)

    @property
    def vocab_tag(self) -> str:
        """Names the segmentation: ``spm16000``, ``spm8000-sep``, ``word32000``, and
        ``spm16000-sample4-a0.1`` with 4 sampled segmentations of the training text."""
        kind = "word" if self.word_level else "spm"
        sampled = f"-sample{self.spm_samples}-a{self.spm_alpha:g}" if self.spm_samples else ""
        return f"{kind}{self.vocab_size}" + ("" if self.joint else "-sep") + sampled

    @property
    def data(self) -> Path:
        return self.work_dir / "data"

    @property
    def seg(self) -> Path:
        return self.work_dir / f"seg-{self.vocab_tag}"

    @property
    def order_tag(self) -> str:
        """``-ctxN`` when the dictionary past the N shortlisted ids is in context order."""
        return f"-ctx{self.shortlist}" if self.tail_order == "context" else ""

    @property
    def frequency_bin(self) -> Path:
        return self.work_dir / f"bin-{self.vocab_tag}"

    @property
    def bin(self) -> Path:
        return self.work_dir / f"bin-{self.vocab_tag}{self.order_tag}"

    @property
    def run_dir(self) -> Path:
        return self.work_dir / "runs" / f"{self.vocab_tag}{self.order_tag}-{self.train.arm}"

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    def segmenter_path(self, lang: str) -> Path:
        """Where the segmenter used for ``lang`` is saved."""
        if self.word_level:
            return self.seg / "segmenter.words"
        return self.seg / ("spm.model" if self.joint else f"spm.{lang}.model")


DataStage = tuple[str, Callable[[Config, argparse.Namespace], None]]


def add_arguments(parser: argparse.ArgumentParser, recipe: Recipe, stage_names: tuple[str, ...]) -> None:
    """Options shared by every recipe's ``run.py``."""
    parser.add_argument("--work-dir", type=Path, default=recipe.work_dir, help="default %(default)s")
    parser.add_argument("--src", default=recipe.src, help="source language (default %(default)s)")
    parser.add_argument("--tgt", default=recipe.tgt, help="target language (default %(default)s)")
    parser.add_argument("--mode", default="mhe", choices=MODES, help="output layer (default %(default)s)")
    parser.add_argument("--vocab-size", type=int, help=f"sentencepiece vocabulary (default {recipe.vocab_size}); "
                        f"with --word-level the dictionary cap (default {recipe.word_vocab_size})")
    parser.add_argument("--word-level", action="store_true", help="word/punctuation tokens, no subword merges")
    parser.add_argument("--separate-vocab", action="store_true", help="one vocabulary per language")
    parser.add_argument("--train-minutes", type=float, default=recipe.train_minutes,
                        help="training time budget (default %(default)s; 0 = none)")
    parser.add_argument("--max-update", type=int, default=recipe.max_update, help="default %(default)s")
    parser.add_argument("--warmup-updates", type=int, default=recipe.warmup_updates, help="default %(default)s")
    parser.add_argument("--max-tokens", type=int, default=recipe.max_tokens, help="default %(default)s")
    parser.add_argument("--lr", type=float, default=recipe.lr,
                        help="peak learning rate (default %(default)s; None: the recipe's model arguments)")
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=recipe.lr_schedule,
                        help="inverse_sqrt (fairseq's transformer default), linear: after the warm-up, down "
                             "to 0 at --max-update, or linear-budget: down to 0 at --max-update or after "
                             "--train-minutes of training, whichever comes first (default %(default)s)")
    parser.add_argument("--dropout", type=float, default=recipe.dropout,
                        help="default %(default)s (None: the recipe's model arguments)")
    parser.add_argument("--mhce-shortlist", type=int, metavar="N",
                        help="mhe/mhp: score the N most frequent ids directly (default " + (
                            "the plugin's: mhe 1024 below a 24k vocabulary and 4096 from 24k up, mhp 4096"
                            if recipe.mhce_shortlist is None and recipe.mhp_shortlist is None else
                            f"{recipe.mhce_shortlist}"
                            + (f", mhp {recipe.mhp_shortlist}" if recipe.mhp_shortlist is not None else "")
                            + (f", mhe's too from --vocab-size {recipe.wide_vocab} up" if recipe.wide_vocab else ""))
                             + "; 0 = none)")
    parser.add_argument("--mhe-tie-label-embeddings", action=argparse.BooleanOptionalAction, default=None,
                        help="mhe: every id's output row is its decoder input embedding (shortlist rows "
                             f"and the last level), as softmax ties them (default {recipe.mhe_tied}; "
                             "the run directory is <vocab>-mhe-tied)")
    parser.add_argument("--mhce-tie-shortlist", action="store_true",
                        help="mhe/mhp with a shortlist: its rows are the decoder input embeddings of its ids, "
                             "the tail stays untied (the run directory is <vocab>-<mode>-tieshort)")
    parser.add_argument("--mhce-layout", type=Path, metavar="FILE",
                        help="mhe/mhp: the code layout, a permutation of the target ids written by `python -m "
                             "recipes.layouts` (the run directory gets -layout-<file stem>)")
    parser.add_argument("--mhce-embeddings", choices=("full", "factored"), default="full",
                        help="mhe/mhp: factored input embeddings over the output layer's codec (default "
                             "%(default)s; the run directory gets -factored)")
    parser.add_argument("--mhce-smoothing", choices=SMOOTHINGS, default="joint",
                        help="mhe/mhp: label smoothing of the joint distribution, as fairseq's softmax "
                             "(default), or fairseq's formula inside every head (the ablation; the run "
                             "directory is <vocab>-<mode>-per-level)")
    parser.add_argument("--mhce-embed-dim", type=int, default=0, metavar="E",
                        help="mhe: label-embedding width E of the levels after the first (default: the "
                             "decoder's; the run directory is <vocab>-mhe-eE)")
    parser.add_argument("--tail-order", choices=("frequency", "context"), default=recipe.tail_order,
                        help="mhe/mhp: the order of the target ids past the shortlist, which the codec cuts into "
                             "level-1 groups: fairseq's frequency order, or grouped by context "
                             "(run directory <vocab>-ctxN-<mode>; default %(default)s)")
    parser.add_argument("--share-all-embeddings", action=argparse.BooleanOptionalAction, default=recipe.share_all,
                        help="one embedding table for the encoder and decoder inputs, over the joint "
                             "dictionary (fairseq's option; default %(default)s; the run directory gets "
                             "-shareall)")
    parser.add_argument("--spm-samples", type=int, default=recipe.spm_samples, metavar="K",
                        help="subword regularization: add K sampled sentencepiece segmentations of every "
                             "training pair to its best one (valid and test keep the best; default %(default)s)")
    parser.add_argument("--spm-alpha", type=float, default=recipe.spm_alpha,
                        help="sampling smoothness of --spm-samples, in (0, 1]: lower is noisier "
                             "(default %(default)s)")
    parser.add_argument("--average-last", type=int, default=recipe.average_last, metavar="N",
                        help="decode the mean of checkpoint_last and the N-1 checkpoints before it, saved "
                             "every --average-interval updates (default %(default)s; 0 or 1 = "
                             "checkpoint_best)")
    parser.add_argument("--average-interval", type=int, default=recipe.average_interval, metavar="UPDATES",
                        help="default %(default)s")
    parser.add_argument("--valid-interval", type=int, default=0, metavar="UPDATES",
                        help="also validate (and save checkpoint_best.pt where validation loss is lowest) every "
                             "UPDATES updates, not only at epoch ends (default 0: epoch ends only)")
    parser.add_argument("--seed", type=int, default=1,
                        help="training seed (default 1; another seed's run directory ends in -seedN)")
    parser.add_argument("--fp16", action="store_true", help="mixed precision (GPU only)")
    parser.add_argument("--softmax-kernel", choices=SOFTMAX_KERNELS, default="eager",
                        help="--mode softmax: eager (fairseq's label_smoothed_cross_entropy) or a fused linear + "
                             "loss kernel of fused_label_smoothed_cross_entropy (liger and cce: CUDA and their "
                             "packages) (default %(default)s)")
    parser.add_argument("--autocast-bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="train under torch.autocast in bfloat16 (matrix products in bf16, weights fp32; "
                             "pays on GPUs and on CPUs with AVX512-BF16 or AMX) (default: "
                             + ("on a GPU, and on a CPU where a short probe at the start measures it faster; else fp32)"
                                if recipe.autocast_bf16 else "off)"))
    parser.add_argument("--log-format", choices=("tqdm", "simple"),
                        help="fairseq progress display (default tqdm on a terminal, else simple)")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="generation batch size")
    parser.add_argument("--topk-groups", type=int, default=8, help="mhe/mhp decoding: groups kept per step")
    parser.add_argument("--lenpen", type=float, default=recipe.lenpen,
                        help="beam search length penalty, > 1 favours longer output (default %(default)g)")
    parser.add_argument("--valid-lenpens", type=float, nargs="+", default=(), metavar="LENPEN",
                        help="decode the validation set at each of these length penalties and the test set once, "
                             "at the one with the highest validation BLEU (instead of --lenpen)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="fairseq-preprocess workers")
    parser.add_argument("--stage", choices=stage_names, help="run this stage only")
    parser.add_argument("--force", action="store_true", help="redo stages whose outputs exist")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")


LR_SCHEDULES = ("inverse_sqrt", "linear", "linear-budget")


def schedule_overrides(args: argparse.Namespace) -> tuple[str, ...]:
    """``--lr``/``--dropout``/the schedule over the recipe's model arguments (``overridden``: each
    option given once). linear = fairseq's polynomial_decay of power 1 from the peak to 0 at --max-update;
    linear-budget = the plugin's linear_budget, down to 0 at --max-update or at --train-minutes of
    training, whichever comes first."""
    options: tuple[str, ...] = ()
    if args.lr_schedule == "linear":
        if not args.max_update:
            sys.exit("error: --lr-schedule linear decays to 0 at --max-update; give --max-update N")
        options += ("--lr-scheduler", "polynomial_decay", "--power", "1", "--end-learning-rate", "0",
                    "--total-num-update", str(args.max_update))
    elif args.lr_schedule == "linear-budget":
        if not args.max_update and not args.train_minutes:
            sys.exit("error: --lr-schedule linear-budget decays to 0 at --max-update or --train-minutes, whichever "
                     "comes first; give at least one of them")
        options += ("--lr-scheduler", "linear_budget", "--end-learning-rate", "0",
                    "--total-num-update", str(args.max_update or 0),
                    "--budget-hours", f"{(args.train_minutes or 0) / 60:.4g}")
    if args.lr is not None:
        options += ("--lr", f"{args.lr:g}")
    if args.dropout is not None:
        options += ("--dropout", f"{args.dropout:g}")
    return options


def overridden(options: tuple[str, ...], overrides: tuple[str, ...]) -> tuple[str, ...]:
    """`options` with `overrides` (flag, value pairs): a flag already there takes the new value in its
    place, the others are appended; so each option is given once, with the value it had when the
    overrides came after (fairseq keeps the last)."""
    merged = list(options)
    for flag, value in zip(overrides[::2], overrides[1::2]):
        if flag in merged and merged.index(flag) + 1 < len(merged):
            merged[merged.index(flag) + 1] = value
        else:
            merged += [flag, value]
    return tuple(merged)


def shortlist_size(args: argparse.Namespace, recipe: Recipe) -> int:
    """The run's shortlist N for mhe/mhp (the recipe's unless given; 0 for other modes, where
    --mhce-shortlist is refused)."""
    if args.mhce_shortlist and args.mode not in COARSE_TO_FINE_MODES:
        sys.exit(f"error: --mhce-shortlist applies to --mode mhe or mhp, not {args.mode}; drop the option")
    size = recipe_shortlist(args, recipe) if args.mhce_shortlist is None else args.mhce_shortlist
    return size if args.mode in COARSE_TO_FINE_MODES else 0


def recipe_shortlist(args: argparse.Namespace, recipe: Recipe) -> int:
    """The recipe's N for --mode at the requested vocabulary: a run without --mhce-shortlist gets it, and its
    run directory has no -sN (0 for modes without a shortlist)."""
    if args.mode not in COARSE_TO_FINE_MODES:
        return 0
    return default_shortlist(recipe, args.mode, requested_vocab_size(args, recipe))


def default_shortlist(recipe: Recipe, mode: str, vocab_size: int) -> int:
    """The recipe's shortlist N for `mode` at `vocab_size`: mhp's own N where the recipe sets one, and
    mhe's too from the recipe's wide_vocab up; mhce_shortlist otherwise; where the recipe sets none of
    these, the plugin's rule (mhce_nmt.defaults.recommended_shortlist: mhe 1,024 below a 24k vocabulary
    and 4,096 from 24k up, mhp 4,096), which a fairseq-train without --mhce-shortlist gets too."""
    from mhce_nmt.defaults import recommended_shortlist

    wide = recipe.wide_vocab is not None and vocab_size >= recipe.wide_vocab
    if recipe.mhp_shortlist is not None and (mode == "mhp" or (mode == "mhe" and wide)):
        return recipe.mhp_shortlist
    if recipe.mhce_shortlist is not None:
        return recipe.mhce_shortlist
    return recommended_shortlist(mode, vocab_size)


def requested_vocab_size(args: argparse.Namespace, recipe: Recipe) -> int:
    """--vocab-size, else the recipe's: sentencepiece pieces, or with --word-level the dictionary cap."""
    return args.vocab_size or (recipe.word_vocab_size if args.word_level else recipe.vocab_size)


def shortlist_args(args: argparse.Namespace, recipe: Recipe) -> tuple[str, ...]:
    """``--mhce-shortlist N`` for mhe/mhp with a shortlist; nothing otherwise."""
    size = shortlist_size(args, recipe)
    return ("--mhce-shortlist", str(size)) if size else ()


def shortlist_tag(args: argparse.Namespace, recipe: Recipe) -> str:
    """``-sN`` for a run whose --mhce-shortlist N is not the recipe's, so it gets its own directory."""
    given = args.mhce_shortlist is not None and args.mhce_shortlist != recipe_shortlist(args, recipe)
    return f"-s{args.mhce_shortlist}" if given and args.mode in COARSE_TO_FINE_MODES else ""


def training_precision(asked: bool | None, recipe_wants_bf16: bool, gpu: bool, output_size: int) -> tuple[bool, str]:
    """(bf16 autocast on?, why): --autocast-bf16/--no-autocast-bf16 as given; else the recipe's bf16
    on a GPU, and on a CPU where a probe of the model's shapes (`output_size`: its largest output
    product) measures bf16 autocast at least 5% faster than fp32; fp32 elsewhere, with the reason
    (a CPU without AVX512-BF16 or AMX emulates bf16 and is not probed)."""
    from mhce_nmt.training.autocast import BF16_MARGIN, cpu_has_native_bf16, probe_cpu_precision

    if asked is not None:
        return asked, ""
    if not recipe_wants_bf16:
        return False, ""
    if gpu:
        return True, "bf16 autocast (the recipe's default on a GPU; --no-autocast-bf16 trains in fp32)"
    if not cpu_has_native_bf16():
        return False, ("fp32: this CPU has neither AVX512-BF16 nor AMX, where bf16 autocast is emulated and slower "
                       "(--autocast-bf16 forces it)")
    probe = probe_cpu_precision(output_size)
    measured = (f"a probe step of the model's shapes took {probe.bf16_ms:.0f} ms under bf16 autocast and "
                f"{probe.fp32_ms:.0f} ms in fp32 on this CPU")
    if probe.bf16_pays:
        return True, f"bf16 autocast: {measured} (--no-autocast-bf16 trains in fp32)"
    return False, (f"fp32: {measured}; bf16 is chosen when it takes at most {BF16_MARGIN:.0%} of fp32's time "
                   "(--autocast-bf16 forces it)")


def probe_output_size(mode: str, vocab_size: int, shortlist: int) -> int:
    """The largest output product of a training step: V for softmax and mhs, adaptive softmax's head
    (V/4 + 2 clusters), and for mhe/mhp the first level (N + the groups of the V - N others)."""
    if mode in ("softmax", "mhs"):
        return vocab_size
    if mode == "adaptive":
        return vocab_size // 4 + 2
    return shortlist + math.isqrt(max(vocab_size - shortlist, 1)) + 1


def config_from_args(args: argparse.Namespace, recipe: Recipe) -> Config:
    """Turn parsed options into a :class:`Config`."""
    import torch

    if args.valid_interval < 0 or (args.valid_interval and args.average_last > 1):
        sys.exit(f"error: --valid-interval {args.valid_interval}: give UPDATES >= 1, and not with --average-last "
                 "(whose checkpoints every --average-interval updates are validated already)")
    if args.average_last < 0 or args.average_interval < 1:
        sys.exit(f"error: --average-last must be >= 0 and --average-interval >= 1, got {args.average_last} "
                 f"and {args.average_interval}")

    gpu = torch.cuda.is_available()
    if args.spm_samples < 0 or not 0 < args.spm_alpha <= 1:
        sys.exit(f"error: --spm-samples must be >= 0 and --spm-alpha in (0, 1], got {args.spm_samples} and "
                 f"{args.spm_alpha:g}")
    if args.spm_samples and args.word_level:
        sys.exit("error: --spm-samples samples sentencepiece segmentations; --word-level has none. Drop one")
    if args.mhce_embed_dim and (args.mode != "mhe" or args.mhce_embed_dim < 1):
        sys.exit(f"error: --mhce-embed-dim applies to --mode mhe with E >= 1, got --mode {args.mode} and "
                 f"{args.mhce_embed_dim}")
    if args.mhce_smoothing != "joint" and args.mode not in COARSE_TO_FINE_MODES:
        sys.exit(f"error: --mhce-smoothing applies to --mode mhe or mhp, not {args.mode}; drop the option")
    if args.mhe_tie_label_embeddings and args.mode != "mhe":
        sys.exit(f"error: --mhe-tie-label-embeddings applies to --mode mhe, not {args.mode}; drop the option")
    mhe_tied = recipe.mhe_tied if args.mhe_tie_label_embeddings is None else args.mhe_tie_label_embeddings
    for given, option in ((args.mhce_layout, "--mhce-layout"), (args.mhce_embeddings != "full", "--mhce-embeddings")):
        if given and args.mode not in COARSE_TO_FINE_MODES:
            sys.exit(f"error: {option} applies to --mode mhe or mhp, not {args.mode}; drop the option")
    if args.mhce_layout and not args.mhce_layout.is_file():
        sys.exit(f"error: --mhce-layout {args.mhce_layout} not found: write it with `python -m recipes.layouts`")
    if args.mhce_tie_shortlist and not shortlist_size(args, recipe):
        sys.exit("error: --mhce-tie-shortlist ties a shortlist's rows: it needs --mode mhe or mhp with "
                 "--mhce-shortlist N > 0")
    if args.mhce_tie_shortlist and mhe_tied and args.mode == "mhe":
        sys.exit("error: --mhce-tie-shortlist with a tied mhe (--mhe-tie-label-embeddings or the recipe's default), "
                 "which ties the shortlist's rows already: give --no-mhe-tie-label-embeddings or drop "
                 "--mhce-tie-shortlist")
    if args.share_all_embeddings and args.separate_vocab:
        sys.exit("error: --share-all-embeddings needs one joint dictionary; drop --separate-vocab or give "
                 "--no-share-all-embeddings")
    if args.tail_order == "context" and (args.mode not in COARSE_TO_FINE_MODES or args.separate_vocab
                                         or args.word_level or shortlist_size(args, recipe) < 4
                                         or {"--mhce-heads", "--mhce-num-heads"} & set(recipe.model_args)):
        sys.exit("error: --tail-order context regroups a joint sentencepiece dictionary past the shortlist into "
                 "the default heads' groups: it needs --mode mhe or mhp with --mhce-shortlist N >= 4, no "
                 "--separate-vocab, no --word-level, and no --mhce-heads/--mhce-num-heads in the model arguments")
    if args.softmax_kernel != "eager" and args.mode != "softmax":
        sys.exit(f"error: --softmax-kernel applies to --mode softmax, not {args.mode}; drop the option")
    if args.fp16 and not gpu:
        sys.exit("error: --fp16 is CUDA mixed precision and no GPU is visible; drop it (on a CPU, --autocast-bf16 "
                 "pays where the CPU has AVX512-BF16 or AMX)")
    if args.fp16 and args.autocast_bf16:
        sys.exit("error: --fp16 and --autocast-bf16 are two kinds of mixed precision; drop one of them")
    vocab_size = requested_vocab_size(args, recipe)
    autocast_bf16, precision_note = training_precision(
        args.autocast_bf16, recipe.autocast_bf16 and not args.fp16, gpu,
        probe_output_size(args.mode, vocab_size, shortlist_size(args, recipe)))
    settings = TrainSettings(
        mode=args.mode, base_arch=recipe.base_arch,
        model_args=overridden(recipe.model_args, ("--warmup-updates", str(args.warmup_updates), *schedule_overrides(args))),
        softmax_args=recipe.softmax_args, shortlist_args=shortlist_args(args, recipe),
        save_interval_updates=args.average_interval if args.average_last > 1 else args.valid_interval,
        keep_interval_updates=args.average_last if args.average_last > 1 else int(args.valid_interval > 0),
        max_tokens=args.max_tokens, max_update=args.max_update,
        stop_time_hours=args.train_minutes / 60 if args.train_minutes else None, seed=args.seed,
        cpu=not gpu, fp16=args.fp16, autocast_bf16=autocast_bf16, softmax_kernel=args.softmax_kernel,
        mhe_tied=mhe_tied and args.mode == "mhe", mhce_embed_dim=args.mhce_embed_dim,
        tie_shortlist=args.mhce_tie_shortlist,
        layout=str(args.mhce_layout.resolve()) if args.mhce_layout else "",
        factored_embeddings=args.mhce_embeddings == "factored",
        smoothing=args.mhce_smoothing,
        share_all=args.share_all_embeddings, shortlist_tag=shortlist_tag(args, recipe),
        log_format=args.log_format or ("tqdm" if sys.stderr.isatty() else "simple"),
    )
    return Config(
        work_dir=args.work_dir.resolve(), src=args.src, tgt=args.tgt, vocab_size=vocab_size,
        word_level=args.word_level, joint=not args.separate_vocab, train=settings,
        workers=args.workers, beam=args.beam, batch_size=args.batch_size,
        topk_groups=args.topk_groups, lenpen=args.lenpen, valid_lenpens=tuple(args.valid_lenpens),
        average_last=args.average_last,
        spm_samples=args.spm_samples, spm_alpha=args.spm_alpha, tail_order=args.tail_order,
        spm_user_symbols=recipe.spm_user_symbols, spm_input_sentences=recipe.spm_input_sentences,
        shortlist=shortlist_size(args, recipe), precision_note=precision_note,
        recipe_shortlist=recipe_shortlist(args, recipe),
        force=args.force,
        dry_run=args.dry_run,
    )
