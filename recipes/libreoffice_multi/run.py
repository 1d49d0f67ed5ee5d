"""One-to-many demo: English into German, French, Russian, Greek, Japanese, Chinese, Korean and Hindi
with one model, from LibreOffice's help and UI (Debian packages, no internet beyond their registry).

Stages: extract -> spm -> binarize -> train -> generate -> score -> summary -> by-language, everything
under ``recipes/libreoffice_multi/work/``. The data stage is :mod:`recipes.libreoffice_multi.extract`
(every source line starts with its target's tag, ``<2ja> ...``; the joint files are ``*.en`` and
``*.mul``); the shared stages train and decode one model on the joint corpus; ``by-language`` cuts the
test hypotheses into the languages' slices and writes each language's chrF and BLEU (the headline is
the macro average of chrF) to ``score-by-language.json`` (:mod:`recipes.libreoffice_multi.score`).
``make demo-multilingual`` runs it with the defaults: 51 minutes end to end on 2 idle CPU cores (``make install``
excluded), 45.8 of them training (one timed run, ``results/multilingual_demo``).

    python -m recipes.libreoffice_multi.run --vocab-size 64000 --max-update 30
    python -m recipes.libreoffice_multi.run --langs ja ko --stage extract
    python -m recipes.libreoffice_multi.run --dry-run

Defaults and why:

* One joint sentencepiece model over ``train.en`` and ``train.mul`` and fairseq's joined dictionary
  (the pipeline's default, not ``--separate-vocab``): LibreOffice's translations keep many English
  strings (function names, menu paths, file formats) that the target side must copy, and a joint
  vocabulary gives them the same pieces on both sides; it is also what ``--share-all-embeddings``
  needs. The target-language tags are sentencepiece user-defined symbols, so each stays one piece
  (spm writes the line-initial word boundary ``▁`` before it as a piece of its own); in the joint
  dictionary they are 8 of about 64,000 entries, never seen as targets. Separate models
  (``--separate-vocab``) would spend a whole ``--vocab-size`` on English alone and give fairseq two
  dictionaries, so nothing could be shared between the sides.
* ``--vocab-size 64000`` (of 64k, 128k, 256k): the 8 languages' scripts (about 5,000 CJK characters
  alone) need far more than the de-en demo's 16k, but this corpus does not fill more. Trained on its
  whole 526k lines, the unigram model stops at 145,624 pieces when 256k are asked for; at 128k,
  90,856 pieces occur fewer than 10 times in the training text (at 64k 23,434), and lines are only
  3% shorter (13.9 pieces instead of 14.3). Each of those rows costs the two input embeddings and
  Adam's update every step on 2 cores for almost no training signal. Sentencepiece itself is no
  constraint: 30 s and 0.9 GB at 64k, 24 s and 0.9 GB at 128k (2 busy cores).
* Sentencepiece learns from a shuffled sample of at most 1,000,000 lines (``spm_input_sentences``):
  all of the default corpus, and a bounded time and memory (about 1.6 GB) when ``--langs`` adds
  more languages.
* ``--mode mhe`` with the plugin's 4,096-id shortlist (its rule from a 24k vocabulary up): at 64k
  a softmax scores 64,000 rows for every target token, which dominates a CPU step; mhe scores the
  shortlist, the groups and one group's members.
* The de-en demo's schedule (batches of 1,024 tokens, peak lr 1.4e-3 after 2,000 warm-up updates,
  dropout 0.1, linearly down to 0 at the end of the budget, beam search with length penalty 2.0),
  with 45 minutes of training (or 20,000 updates, whichever comes first), so that extraction
  (1.6 min with the download), sentencepiece and binarising (1.3 min) and decoding the 1,700 valid
  and 3,230 test sentences (2.5 min) fit in 60 minutes (51 measured). These were tuned on the de-en
  corpus, not on this one.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from recipes import config, pipeline, runner
from recipes.libreoffice_de_en import debpkg
from recipes.libreoffice_multi import languages
from recipes.libreoffice_multi.extract import TARGET_CODE, extract
from recipes.libreoffice_multi.score import load_references, score
from recipes.textfiles import read_lines

RECIPE = config.Recipe(
    name="libreoffice_multi", src="en", tgt=TARGET_CODE, work_dir=Path(__file__).resolve().parent / "work",
    vocab_size=64000, train_minutes=45.0, max_update=20000, warmup_updates=2000, max_tokens=1024, lr=1.4e-3,
    lr_schedule="linear-budget", dropout=0.1, lenpen=2.0, autocast_bf16=True,
    spm_user_symbols=tuple(languages.tag(lang) for lang in languages.DEFAULT_LANGS),
    spm_input_sentences=1_000_000,
)
SCORE_FILE = "score-by-language.json"


def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the data stage (as in ``extract.py``, whose work directory is the recipe's)."""
    parser.add_argument("--langs", nargs="+", default=list(languages.DEFAULT_LANGS),
                        help="target languages, Debian codes, in the joint files' order (default: %(default)s)")
    parser.add_argument("--valid-size", type=int, default=300, help="minimum valid English paragraphs (whole pages)")
    parser.add_argument("--test-size", type=int, default=500, help="minimum test English paragraphs (whole pages)")
    parser.add_argument("--split-seed", type=int, default=1, help="seed of the page shuffle and the train cap")
    parser.add_argument("--max-train-per-lang", type=int, help="seeded sample of at most this many train pairs")
    parser.add_argument("--no-ui", action="store_true", help="leave the UI catalogues out of train")


def requested_langs(argv: list[str] | None) -> list[str]:
    """The ``--langs`` of a command line (the default languages where it has none); exits with a
    one-line error where they repeat a language or name English."""
    parser = argparse.ArgumentParser(add_help=False)
    add_extract_arguments(parser)
    langs = parser.parse_known_args(argv)[0].langs
    if "en" in langs or len(set(langs)) != len(langs):
        sys.exit(f"error: --langs must be distinct target languages other than en, got {' '.join(langs)}")
    return langs


def require_pair(cfg: config.Config) -> None:
    """Exit with a one-line error unless the run is en -> mul, the pair the data stage writes."""
    if (cfg.src, cfg.tgt) != ("en", TARGET_CODE):
        sys.exit(f"error: this recipe's corpus is en -> {TARGET_CODE} (the target language is the source's tag); "
                 f"drop --src/--tgt (got {cfg.src} -> {cfg.tgt})")


def extracted_langs(counts_file: Path) -> list[str] | None:
    """The target languages of an existing corpus (``counts.json``), in order, or None."""
    if not counts_file.exists():
        return None
    return json.loads(counts_file.read_text(encoding="utf-8")).get("langs")


def stage_extract(cfg: config.Config, args: argparse.Namespace) -> None:
    """Fetch the Debian packages of ``--langs`` and write ``WORK/data`` (see ``extract.py``); redone
    when the corpus there holds other languages."""
    require_pair(cfg)
    outputs = [cfg.data / f"{split}.{lang}" for split in config.SPLITS for lang in cfg.langs]
    outputs += [cfg.data / "counts.json"]
    outputs += [cfg.data / f"{split}.en-{lang}.{side}" for split in ("valid", "test") for lang in args.langs
                for side in ("en", lang)]
    if extracted_langs(cfg.data / "counts.json") not in (None, args.langs):
        runner.say("extract", f"the corpus was built for other languages than {' '.join(args.langs)}, redoing")
    elif runner.done("extract", cfg, outputs):
        return
    if cfg.dry_run:
        debpkg.print_fetch_commands(languages.packages(args.langs), cfg.work_dir / "packages")
        runner.say("extract", f"align, clean, split by help page and tag every language -> {cfg.data}")
        return
    extract(args.langs, cfg.work_dir, cfg.data, args.valid_size, args.test_size, args.split_seed,
            args.max_train_per_lang, with_ui=not args.no_ui)


def stage_by_language(cfg: config.Config, args: argparse.Namespace) -> None:
    """sacreBLEU chrF and BLEU of each target language's slice of the test hypotheses (in
    ``test.en`` order: the languages concatenated in ``counts.json``'s order), written to
    ``score-by-language.json`` and printed as a table headed by the macro chrF."""
    require_pair(cfg)
    hyp_file, out_file = cfg.run_dir / "gen" / "hyp.txt", cfg.run_dir / SCORE_FILE
    if runner.done("by-language", cfg, [out_file], [hyp_file, cfg.data / "counts.json"]):
        return
    runner.say("by-language", f"sacrebleu chrF + BLEU of each language's slice of {hyp_file} against "
               f"{cfg.data}/test.en-XX.XX -> {out_file}")
    if cfg.dry_run:
        return
    scores = language_scores(hyp_file, cfg.data)
    runner.write_json(out_file, scores)
    print(language_table(scores), flush=True)


def language_scores(hyp_file: Path, data: Path) -> dict[str, object]:
    """Per-language and macro scores of ``hyp_file`` against ``data``'s test references; exits with
    a one-line error where the hypotheses or the per-language files do not match the joint test set."""
    refs = load_references(data, "test")
    joint = read_lines(data / f"test.{TARGET_CODE}")
    if [line for lines in refs.values() for line in lines] != joint:
        sys.exit(f"error: {data}/test.en-XX.XX in counts.json's order are not {data}/test.{TARGET_CODE}: "
                 "extract the corpus again")
    try:
        result = score(read_lines(hyp_file), refs)
    except ValueError as error:
        sys.exit(f"error: {hyp_file}: {error}")
    return {"split": "test", "headline": "macro chrF", "hypotheses": str(hyp_file), **result}


def language_table(scores: dict[str, object]) -> str:
    """The per-language chrF and BLEU table, the macro averages, and the sacreBLEU signatures."""
    per_lang: dict[str, dict[str, object]] = scores["languages"]
    rows = [f"  {'language':<9} {'sentences':>9} {'chrF':>6} {'BLEU':>6}  BLEU tokenizer"]
    for lang, s in per_lang.items():
        rows.append(f"  {lang:<9} {s['sentences']:>9,} {s['chrF']:>6.2f} {s['BLEU']:>6.2f}  "
                    f"{signature_field(str(s['BLEU signature']), 'tok')}")
    total = sum(int(s["sentences"]) for s in per_lang.values())
    rows.append(f"  {'macro':<9} {total:>9,} {scores['macro chrF']:>6.2f} {scores['macro BLEU']:>6.2f}")
    by_signature: dict[str, list[str]] = {}
    for lang, s in per_lang.items():
        by_signature.setdefault(str(s["BLEU signature"]), []).append(lang)
    chrf_signatures = sorted({str(s["chrF signature"]) for s in per_lang.values()})
    lines = [f"\n=== en -> {len(per_lang)} languages, test set: macro chrF {scores['macro chrF']:.2f} "
             f"(macro BLEU {scores['macro BLEU']:.2f}) ===", *rows, "sacreBLEU signatures:",
             *(f"  chrF {signature}" for signature in chrf_signatures),
             *(f"  BLEU {signature} ({' '.join(langs)})" for signature, langs in by_signature.items())]
    return "\n".join(lines)


def signature_field(signature: str, key: str) -> str:
    """One ``key:value`` field of a sacreBLEU signature (``nrefs:1|case:mixed|tok:13a|...``)."""
    fields = dict(part.split(":", 1) for part in signature.split("|") if ":" in part)
    return fields.get(key, "?")


def main(argv: list[str] | None = None) -> config.Config:
    """Run the recipe (all stages, or ``--stage NAME``), with the tags of ``--langs`` as sentencepiece
    user symbols."""
    recipe = replace(RECIPE, spm_user_symbols=tuple(languages.tag(lang) for lang in requested_langs(argv)))
    return pipeline.main(recipe, argv, ("extract", stage_extract), __doc__, add_extract_arguments,
                         extra_stages=(("by-language", stage_by_language),))


if __name__ == "__main__":
    main()
