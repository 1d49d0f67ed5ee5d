"""Shared recipe stages: spm -> binarize -> train -> generate -> score -> summary.

A recipe only prepares ``WORK/data/{train,valid,test}.{src,tgt}`` (plain text); every later
stage is shared. Each stage skips itself when its outputs exist (``--force`` redoes it), can be
run alone (``--stage NAME``), and prints every command before running it (``--dry-run`` prints
without running). Layout under the work directory::

    data/                 plain text from the recipe's data stage (references stay untouched)
    seg-<vocab>/          segmenter model(s) and segmented text; <vocab> e.g. spm16000, word32000
    bin-<vocab>/          fairseq-preprocess output
    bin-<vocab>-ctxN/     the same with the dictionary's tail past N ids grouped by context
    runs/<vocab>-<mode>/  checkpoints/, gen/, train.json, gen.json, score.json, summary.json
                          (runs/<vocab>-ctxN-<mode>/ with --tail-order context)

Standalone use on any prepared work directory (a small CPU transformer)::

    python -m recipes.pipeline --work-dir DIR --src de --tgt en --mode softmax
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from recipes.average import LAST, average_checkpoints, newest_checkpoints, saved_update
from recipes.commands import (
    COARSE_TO_FINE_MODES, FACTORED_MODES, MODES, TrainSettings, interactive_command, preprocess_command,
    train_command,
)
from recipes.evaluate import Decoding, decode_split, score_files
from recipes.logs import parse_train_log
from recipes.progress import TrainProgress
from recipes.provenance import origin
from recipes.report import examples, report
from recipes.resume import option_value, resume_optimizer
from recipes.textfiles import read_lines, write_lines
from recipes.vocab import SentencePiece, WordLevel, load_segmenter

SPLITS = ("train", "valid", "test")
STAGES = ("spm", "binarize", "train", "generate", "score", "summary")
OUTPUT_LAYER_PREFIXES = ("decoder.output_projection.", "decoder.adaptive_softmax.", "decoder.output_layer.")

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


# --------------------------------------------------------------------------- helpers


def say(stage: str, message: str) -> None:
    """Progress line of a stage."""
    print(f"[{stage}] {message}", flush=True)


def run(cmd: list[str], dry_run: bool, log: Path | None = None,
        on_line: Callable[[str], str | None] | None = None) -> None:
    """Print a command, then run it (unless ``dry_run``); fail loudly on a non-zero exit.

    With ``log``, the command's stdout and stderr are also copied to that file (progress bars
    still reach the terminal). With ``on_line`` as well, the output goes to the log only, and
    the terminal gets what ``on_line`` returns for each output line (None: nothing). Console
    scripts (``fairseq-train`` ...) are looked up next to the running interpreter first, so an
    un-activated virtual environment works.
    """
    print("+ " + shlex.join(cmd), flush=True)
    if dry_run:
        return
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which(cmd[0], path=search)
    if exe is None:
        raise FileNotFoundError(f"{cmd[0]} not found; run `make install` first")
    if log is None:
        subprocess.run([exe, *cmd[1:]], check=True)
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as copy, subprocess.Popen([exe, *cmd[1:]], stdout=subprocess.PIPE,
                                                  stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        if on_line is None:
            while chunk := proc.stdout.read1(65536):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                copy.write(chunk)
        else:
            for raw in proc.stdout:
                copy.write(raw)
                copy.flush()
                message = on_line(raw.decode("utf-8", errors="replace"))
                if message:
                    print(message, flush=True)
    if proc.returncode:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:] if on_line else ""
        if tail:
            print(f"--- end of {log} ---\n{tail}", file=sys.stderr, flush=True)
        raise subprocess.CalledProcessError(proc.returncode, cmd)


def read_origins(path: Path) -> list[dict[str, object]]:
    """The origin of every training attempt of a run, oldest first (train-origins.jsonl)."""
    return [json.loads(line) for line in read_lines(path) if line.strip()] if path.exists() else []


def invocation() -> str:
    """This process's own command line (the recipe call that ran a stage): ``python -m MODULE ...`` where
    it ran as a module (sys.argv[0] then holds the module's file, which does not run alone)."""
    spec = sys.modules["__main__"].__spec__
    program = ["-m", spec.name.removesuffix(".__main__")] if spec is not None else sys.argv[:1]
    return shlex.join([Path(sys.executable).name, *program, *sys.argv[1:]])


def write_json(path: Path, value: dict[str, object]) -> None:
    """Pretty-printed JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_json(path: Path) -> dict[str, object]:
    """A JSON object written by :func:`write_json` (empty when the file does not exist)."""
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def done(stage: str, cfg: Config, outputs: Sequence[Path], inputs: Sequence[Path] = ()) -> bool:
    """True (and says so) when every output exists, none is older than an existing input, and
    ``--force`` was not given; so redoing one stage makes the later ones run again."""
    if cfg.force or not all(p.exists() for p in outputs):
        return False
    newest_input = max((p.stat().st_mtime for p in inputs if p.exists()), default=0.0)
    if min(p.stat().st_mtime for p in outputs) < newest_input:
        say(stage, "inputs changed since the last run, redoing")
        return False
    say(stage, f"outputs exist, skipping (use --force to redo): {outputs[0].parent}")
    return True


def dictionary_size(dict_file: Path) -> int:
    """Size of a fairseq dictionary: its entries plus the 4 special symbols."""
    return sum(1 for _ in dict_file.open(encoding="utf-8")) + 4


# --------------------------------------------------------------------------- stages


def stage_spm(cfg: Config) -> None:
    """Train the segmenter(s) on the training text and segment every split. With --spm-samples K
    the training text is its best segmentation followed by K sampled ones of every pair (the two
    sides sampled independently, lines aligned); valid and test keep the best."""
    outputs = [cfg.seg / f"{s}.{lang}" for s in SPLITS for lang in cfg.langs]
    outputs += [cfg.segmenter_path(lang) for lang in cfg.langs]
    if done("spm", cfg, outputs, [cfg.data / f"{s}.{lang}" for s in SPLITS for lang in cfg.langs]):
        return
    groups = [] if cfg.word_level else [cfg.langs] if cfg.joint else [(lang,) for lang in cfg.langs]
    if cfg.word_level:
        say("spm", f"word-level segmenter (no subword merges) -> {cfg.segmenter_path(cfg.src)}")
    for group in groups:
        inputs = " ".join(str(cfg.data / f"train.{lang}") for lang in group)
        say("spm", f"train sentencepiece unigram, vocab {cfg.vocab_size}, on {inputs}"
            f" -> {cfg.segmenter_path(group[0])}")
    if cfg.dry_run:
        return
    cfg.seg.mkdir(parents=True, exist_ok=True)
    if cfg.word_level:
        WordLevel.save(cfg.segmenter_path(cfg.src))
    for group in groups:
        prefix = cfg.segmenter_path(group[0]).with_suffix("")
        SentencePiece.train([cfg.data / f"train.{lang}" for lang in group], prefix, cfg.vocab_size)
    for lang_index, lang in enumerate(cfg.langs):
        segmenter = load_segmenter(cfg.segmenter_path(lang))
        for split in SPLITS:
            lines = read_lines(cfg.data / f"{split}.{lang}")
            segmented = segmenter.encode(lines)
            if split == "train":
                for copy in range(1, cfg.spm_samples + 1):
                    segmented += segmenter.encode_sampled(lines, cfg.spm_alpha, seed=100 * copy + lang_index)
            write_lines(cfg.seg / f"{split}.{lang}", segmented)
        say("spm", f"segmented {lang}: " + ", ".join(
            f"{s} {sum(len(l.split()) for l in read_lines(cfg.seg / f'{s}.{lang}'))} tokens" for s in SPLITS)
            + (f" (train: the best segmentation and {cfg.spm_samples} sampled, alpha {cfg.spm_alpha:g})"
               if cfg.spm_samples else ""))


def stage_binarize(cfg: Config) -> None:
    """``fairseq-preprocess`` the segmented text (joined dictionary when the vocab is joint).
    With ``--tail-order context``, binarise again with the frequency dictionary's tail
    regrouped by context (:mod:`recipes.tail_order`)."""
    binarize_into(cfg, cfg.frequency_bin)
    if cfg.tail_order == "context":
        binarize_into(cfg, cfg.bin, ordered_dictionary=context_dictionary(cfg))


def binarize_into(cfg: Config, bin_dir: Path, ordered_dictionary: Path | None = None) -> None:
    """One ``fairseq-preprocess`` into ``bin_dir``: fairseq builds the dictionaries, or reads
    ``ordered_dictionary`` for both languages (the joint vocabulary)."""
    outputs = [bin_dir / f"dict.{lang}.txt" for lang in cfg.langs]
    outputs += [bin_dir / f"{s}.{cfg.src}-{cfg.tgt}.{lang}.bin" for s in SPLITS for lang in cfg.langs]
    inputs = [cfg.seg / f"{s}.{lang}" for s in SPLITS for lang in cfg.langs]
    if done("binarize", cfg, outputs, inputs + ([ordered_dictionary] if ordered_dictionary else [])):
        return
    cmd = preprocess_command(cfg.src, cfg.tgt, cfg.seg, bin_dir, cfg.joint, cfg.workers,
                             nwords=cfg.vocab_size if cfg.word_level else None, dictionary=ordered_dictionary)
    if not cfg.dry_run:
        shutil.rmtree(bin_dir, ignore_errors=True)  # fairseq-preprocess refuses existing dictionaries
    run(cmd, cfg.dry_run)


def context_dictionary(cfg: Config) -> Path:
    """``WORK/seg-<vocab>/dict.ctxN.txt``: the frequency dictionary with its tail past the N
    shortlisted ids regrouped by context into the codec's level-1 groups."""
    from mhce_nmt.codec import ShortlistCodec
    from recipes.tail_order import context_ordered_dictionary

    output = cfg.seg / f"dict{cfg.order_tag.replace('-', '.')}.txt"
    source = cfg.frequency_bin / f"dict.{cfg.tgt}.txt"
    if cfg.dry_run:
        say("binarize", f"regroup {source}'s ids past the first {cfg.shortlist} by context -> {output}")
        return output
    if done("binarize", cfg, [output], [source]):
        return output
    vocab_size = dictionary_size(source)
    group_size = ShortlistCodec.build(vocab_size, cfg.shortlist).tail.strides[0]  # the model's default heads
    say("binarize", f"regroup the {vocab_size - cfg.shortlist} tail ids past the shortlist by context, "
        f"{group_size} to a level-1 group -> {output}")
    groups = context_ordered_dictionary(source, cfg.seg / f"train.{cfg.tgt}", cfg.seg / f"train.{cfg.src}",
                                        cfg.shortlist, group_size, output)
    say("binarize", "first groups: " + " | ".join(" ".join(g[:6]) for g in groups[:3]))
    return output


def target_vocab_size(cfg: Config) -> int:
    """The target dictionary's size (the configured vocabulary size before binarisation)."""
    dict_file = cfg.bin / f"dict.{cfg.tgt}.txt"
    return dictionary_size(dict_file) if dict_file.exists() else cfg.vocab_size + 4


def stage_train(cfg: Config) -> None:
    """``fairseq-train``; resumes from ``checkpoint_last.pt`` when a previous run stopped early."""
    marker = cfg.run_dir / "train.json"
    if not cfg.force:
        refuse_another_shortlist(cfg, cfg.checkpoints / LAST, "give --force to train afresh here")
    if done("train", cfg, [marker], [cfg.bin / f"dict.{lang}.txt" for lang in cfg.langs]):
        trained = load_json(marker)
        if cfg.average_last > 1 and not cfg.dry_run and len(trained.get("averaged", [])) != cfg.average_last:
            say("train", f"--average-last {cfg.average_last} differs from the trained run's: averaging again")
            write_json(marker, {**trained, "averaged": [p.name for p in average_last_checkpoints(cfg)]})
        return
    requested = option_value(cfg.train.model_args, "--optimizer")
    resume_with = None if cfg.force else resume_optimizer(cfg.checkpoints / LAST, requested)
    if resume_with:
        say("train", f"{cfg.checkpoints / LAST} holds --optimizer {resume_with}'s state: resuming "
            f"with it (the same update as {requested}; --force starts afresh with {requested})")
        cfg = replace(cfg, train=replace(cfg.train, model_args=(*cfg.train.model_args, "--optimizer", resume_with)))
    cfg = resumed_precision(cfg)
    cmd = train_command(cfg.bin, cfg.checkpoints, cfg.train, target_vocab_size(cfg))
    if cfg.precision_note:
        say("train", cfg.precision_note)
    if cfg.dry_run:
        run(cmd, dry_run=True)
        return
    if cfg.force:
        shutil.rmtree(cfg.checkpoints, ignore_errors=True)
    cfg.checkpoints.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    minutes = cfg.train.stop_time_hours * 60 if cfg.train.stop_time_hours else None
    say("train", f"fairseq's full output goes to {cfg.checkpoints / 'train.out'}; a progress line every minute")
    origins_file = cfg.run_dir / "train-origins.jsonl"  # one line per attempt: a resumed run may span commits
    if cfg.force:
        origins_file.unlink(missing_ok=True)
    with origins_file.open("a", encoding="utf-8") as origins:
        origins.write(json.dumps({**origin(cmd), "invoked": invocation()}, ensure_ascii=False) + "\n")
    run(cmd, dry_run=False, log=cfg.checkpoints / "train.out",
        on_line=TrainProgress(max_update=cfg.train.max_update, train_minutes=minutes))
    stats = parse_train_log(cfg.checkpoints / "train.log")
    if cfg.average_last > 1:
        stats["averaged"] = [path.name for path in average_last_checkpoints(cfg)]
    write_json(marker, {"mode": cfg.train.mode, "precision": cfg.train.precision, "optimizer": resume_with or requested,
                        "session_wall_s": round(time.perf_counter() - start, 1), **stats,
                        "origins": read_origins(origins_file)})


def resumed_precision(cfg: Config) -> Config:
    """A run resumed from checkpoint_last.pt goes on in the precision its first attempt trained in
    (train-origins.jsonl) where the recipe chose the precision, so a probe that measures the other
    way on a later day cannot switch a run midway; --autocast-bf16/--no-autocast-bf16 and --force
    still decide."""
    origins = read_origins(cfg.run_dir / "train-origins.jsonl")
    if cfg.force or not cfg.precision_note or not origins or not (cfg.checkpoints / LAST).exists():
        return cfg
    began_bf16 = "--autocast-bf16" in shlex.split(str(origins[0]["command"]))
    if began_bf16 == cfg.train.autocast_bf16:
        return cfg
    precision = "bf16 autocast" if began_bf16 else "fp32"
    return replace(cfg, train=replace(cfg.train, autocast_bf16=began_bf16),
                   precision_note=f"{precision}: the precision this run began in, kept on resuming (today's choice "
                                  f"would differ: {cfg.precision_note})")


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


def average_last_checkpoints(cfg: Config) -> list[Path]:
    """Write checkpoint_avg.pt, the mean of checkpoint_last.pt and the interval checkpoints
    before it (--average-last in all); warns when training left fewer."""
    interval = cfg.train.save_interval_updates
    chosen = newest_checkpoints(cfg.checkpoints, cfg.average_last, saved_update(cfg.checkpoints / LAST), interval)
    if len(chosen) < cfg.average_last:
        say("train", f"warning: only {len(chosen)} checkpoints {interval} updates apart to average, not "
                     f"{cfg.average_last} (training was shorter than --average-last x --average-interval)")
    average_checkpoints(chosen, checkpoint_path(cfg))
    say("train", f"{checkpoint_path(cfg).name}: the mean of {', '.join(p.name for p in chosen)}")
    return chosen


def checkpoint_path(cfg: Config) -> Path:
    """The checkpoint that is decoded: ``checkpoint_avg.pt`` (the mean of the last
    ``--average-last`` checkpoints) when averaging, else ``checkpoint_best.pt`` (lowest
    validation loss)."""
    return cfg.checkpoints / ("checkpoint_avg.pt" if cfg.average_last > 1 else "checkpoint_best.pt")


def stage_generate(cfg: Config) -> None:
    """Beam search on the validation set, at each --valid-lenpens value (or --lenpen alone), then on
    the test set once, at the length penalty with the highest validation BLEU; each output
    desegmented and in the original sentence order.

    Fails when fairseq returns a different number of hypotheses than there are source lines.
    """
    hyp_file, stats_file, valid_file = cfg.run_dir / "gen" / "hyp.txt", cfg.run_dir / "gen.json", cfg.run_dir / "valid.json"
    lenpens = cfg.valid_lenpens or (cfg.lenpen,)
    decoded_at = sorted(load_json(valid_file).get("by_lenpen", {}))
    if decoded_at and decoded_at != sorted(f"{lenpen:g}" for lenpen in lenpens) and not cfg.dry_run:
        say("generate", f"valid.json was decoded at length penalties {', '.join(decoded_at)}: decoding again")
        valid_file.unlink()
    if done("generate", cfg, [hyp_file, stats_file, valid_file], [cfg.run_dir / "train.json"]):
        return
    if not cfg.dry_run and not checkpoint_path(cfg).exists():
        sys.exit(f"error: {checkpoint_path(cfg)} not found: run the train stage first (with the same "
                 f"--average-last; 0 decodes checkpoint_best.pt)")
    if not cfg.dry_run:
        refuse_another_shortlist(cfg, checkpoint_path(cfg), "train afresh here with --stage train --force")
    valid: dict[str, dict[str, object]] = {}
    for lenpen in lenpens:
        out_dir = cfg.run_dir / f"gen-valid-lp{lenpen:g}"
        stats = decode(cfg, "valid", lenpen, out_dir)
        if not cfg.dry_run:
            scores = score_files(out_dir / "hyp.txt", cfg.data / f"valid.{cfg.tgt}")
            valid[f"{lenpen:g}"] = {**{k: scores[k] for k in ("bleu", "chrf", "bp", "hyp_ref_ratio")},
                                    **{k: stats[k] for k in ("sentences_per_s",) if k in stats}}
            say("generate", f"valid, lenpen {lenpen:g}: BLEU {scores['bleu']}, chrF {scores['chrf']}, BP {scores['bp']}")
    if cfg.dry_run:
        decode(cfg, "test", cfg.lenpen, cfg.run_dir / "gen")
        if len(lenpens) > 1:
            say("generate", "the test set is decoded once, at the length penalty of the highest valid BLEU")
        return
    chosen = max(lenpens, key=lambda lenpen: valid[f"{lenpen:g}"]["bleu"])  # ties: the first listed
    write_json(valid_file, {"lenpen": chosen, "chosen_by": "valid BLEU" if len(lenpens) > 1 else "given",
                            "by_lenpen": valid})
    stats = decode(cfg, "test", chosen, cfg.run_dir / "gen")
    write_json(stats_file, stats)
    say("generate", f"{stats['sentences']} test hypotheses at lenpen {chosen:g} -> {hyp_file}")


def decoding(cfg: Config, split: str, lenpen: float) -> Decoding:
    """How the run decodes `split`: its checkpoint, beam, batch size, groups and device, at `lenpen`."""
    return Decoding(cfg.bin, checkpoint_path(cfg), cfg.train.mode, split=split, beam=cfg.beam,
                    batch_size=cfg.batch_size, topk_groups=cfg.topk_groups, cpu=cfg.train.cpu, lenpen=lenpen)


def decode(cfg: Config, split: str, lenpen: float, out_dir: Path) -> dict[str, object]:
    """:func:`recipes.evaluate.decode_split` of `split` into `out_dir`: its hypotheses desegmented in source
    order into ``out_dir/hyp.txt``; returns sizes, speed and origin (nothing but the printed command on a dry run)."""
    job = decoding(cfg, split, lenpen)
    if cfg.dry_run:
        run(job.command(out_dir), dry_run=True)
        say("generate", f"desegment hypotheses in {split} order -> {out_dir / 'hyp.txt'}")
        return {}
    return decode_split(job, out_dir, cfg.data / f"{split}.{cfg.src}", cfg.segmenter_path(cfg.tgt),
                        lambda cmd, log: run(cmd, dry_run=False, log=log))


def stage_score(cfg: Config) -> None:
    """sacreBLEU BLEU and chrF of the hypotheses against the untouched references."""
    score_file = cfg.run_dir / "score.json"
    if done("score", cfg, [score_file], [cfg.run_dir / "gen" / "hyp.txt", cfg.data / f"test.{cfg.tgt}"]):
        return
    hyp_file, ref_file = cfg.run_dir / "gen" / "hyp.txt", cfg.data / f"test.{cfg.tgt}"
    say("score", f"sacrebleu BLEU + chrF of {hyp_file} against {ref_file}")
    if cfg.dry_run:
        return
    scores = score_files(hyp_file, ref_file)
    write_json(score_file, scores)
    say("score", f"BLEU {scores['bleu']} ({scores['bleu_signature']}), chrF {scores['chrf']}")


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


def section_value(section: object, name: str) -> object:
    """One field of a checkpoint's cfg section, which fairseq saves as a dict (criterion, task) or, for
    models built from command-line args, an argparse.Namespace; None when absent."""
    return section.get(name) if isinstance(section, dict) else getattr(section, name, None)


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


STAGE_FUNCTIONS: dict[str, Callable[[Config], None]] = {
    "spm": stage_spm, "binarize": stage_binarize, "train": stage_train,
    "generate": stage_generate, "score": stage_score, "summary": stage_summary,
}


# --------------------------------------------------------------------------- command line

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
#: the criterion's --mhce-smoothing values (mhce_nmt.output.loss.SMOOTHINGS, named here so that
#: parsing a recipe's options does not import torch)
SMOOTHINGS = ("joint", "per-level")
SOFTMAX_KERNELS = ("eager", "compile", "torch", "liger", "cce")  # mhce_nmt.fused_softmax.KERNELS


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
    from mhce_nmt.autocast import BF16_MARGIN, cpu_has_native_bf16, probe_cpu_precision

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
        shortlist=shortlist_size(args, recipe), precision_note=precision_note,
        recipe_shortlist=recipe_shortlist(args, recipe),
        force=args.force,
        dry_run=args.dry_run,
    )


def run_stages(cfg: Config, stages: list[str],
               functions: dict[str, Callable[[Config], None]] = STAGE_FUNCTIONS) -> None:
    """Run the named stages in order, timing each."""
    for name in stages:
        start = time.perf_counter()
        say(name, "start")
        functions[name](cfg)
        say(name, f"finished in {time.perf_counter() - start:.1f}s")


def main(recipe: Recipe, argv: list[str] | None = None, data_stage: DataStage | None = None,
         description: str | None = None,
         extra_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> Config:
    """Parse options and run the pipeline for ``recipe``; returns the resolved configuration.

    ``data_stage`` is the recipe's ``(name, function)`` that writes ``WORK/data``; the function
    gets the :class:`Config` and the parsed options (including those added by
    ``extra_arguments``).
    """
    functions = dict(STAGE_FUNCTIONS)
    if data_stage is not None:
        name, prepare = data_stage
        functions = {name: lambda c: prepare(c, args), **STAGE_FUNCTIONS}
    parser = argparse.ArgumentParser(description=description or __doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, recipe, tuple(functions))
    if extra_arguments is not None:
        extra_arguments(parser)
    args = parser.parse_args(argv)
    cfg = config_from_args(args, recipe)
    run_stages(cfg, [args.stage] if args.stage else list(functions), functions)
    return cfg


GENERIC = Recipe(name="generic", src="de", tgt="en", work_dir=Path("work"))

if __name__ == "__main__":
    main(GENERIC)
