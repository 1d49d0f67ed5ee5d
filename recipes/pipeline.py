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

The options and the resolved run are in :mod:`recipes.config`, command running and up-to-date checks
in :mod:`recipes.runner`, what a run's files hold in :mod:`recipes.run_state`, the summary stage in
:mod:`recipes.summary`.

Standalone use on any prepared work directory (a small CPU transformer)::

    python -m recipes.pipeline --work-dir DIR --src de --tgt en --mode softmax
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from recipes import runner
from recipes.average import LAST, average_checkpoints, newest_checkpoints, saved_update
from recipes.commands import preprocess_command, train_command
from recipes.config import Config, DataStage, Recipe, SPLITS, add_arguments, config_from_args
from recipes.evaluate import Decoding, decode_split, score_files
from recipes.logs import parse_train_log
from recipes.progress import TrainProgress
from recipes.provenance import origin
from recipes.resume import option_value, resume_optimizer
from recipes.run_state import checkpoint_path, dictionary_size, refuse_another_shortlist, target_vocab_size
from recipes.runner import done, invocation, load_json, read_origins, say, write_json
from recipes.summary import stage_summary
from recipes.textfiles import read_lines, write_lines
from recipes.vocab import SPM_MAX_SENTENCES, SentencePiece, WordLevel, load_segmenter


STAGES = ("spm", "binarize", "train", "generate", "score", "summary")


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
            + (f" (a shuffled sample of {cfg.spm_input_sentences:,} lines)" if cfg.spm_input_sentences else "")
            + (f", user symbols {' '.join(cfg.spm_user_symbols)}" if cfg.spm_user_symbols else "")
            + f" -> {cfg.segmenter_path(group[0])}")
    if cfg.dry_run:
        return
    cfg.seg.mkdir(parents=True, exist_ok=True)
    if cfg.word_level:
        WordLevel.save(cfg.segmenter_path(cfg.src))
    for group in groups:
        prefix = cfg.segmenter_path(group[0]).with_suffix("")
        SentencePiece.train([cfg.data / f"train.{lang}" for lang in group], prefix, cfg.vocab_size,
                            cfg.spm_input_sentences or SPM_MAX_SENTENCES, cfg.spm_user_symbols)
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
    runner.run(cmd, cfg.dry_run)


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
        runner.run(cmd, dry_run=True)
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
    runner.run(cmd, dry_run=False, log=cfg.checkpoints / "train.out",
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
        runner.run(job.command(out_dir), dry_run=True)
        say("generate", f"desegment hypotheses in {split} order -> {out_dir / 'hyp.txt'}")
        return {}
    return decode_split(job, out_dir, cfg.data / f"{split}.{cfg.src}", cfg.segmenter_path(cfg.tgt),
                        lambda cmd, log: runner.run(cmd, dry_run=False, log=log))


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


STAGE_FUNCTIONS: dict[str, Callable[[Config], None]] = {
    "spm": stage_spm, "binarize": stage_binarize, "train": stage_train,
    "generate": stage_generate, "score": stage_score, "summary": stage_summary,
}


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
         extra_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
         extra_stages: tuple[DataStage, ...] = ()) -> Config:
    """Parse options and run the pipeline for ``recipe``; returns the resolved configuration.

    ``data_stage`` is the recipe's ``(name, function)`` that writes ``WORK/data``; the function
    gets the :class:`Config` and the parsed options (including those added by
    ``extra_arguments``). ``extra_stages`` are more such ``(name, function)`` pairs, run after
    the shared stages in the order given.
    """
    functions = dict(STAGE_FUNCTIONS)
    if data_stage is not None:
        name, prepare = data_stage
        functions = {name: lambda c: prepare(c, args), **STAGE_FUNCTIONS}
    for name, stage in extra_stages:
        functions[name] = lambda c, stage=stage: stage(c, args)
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
