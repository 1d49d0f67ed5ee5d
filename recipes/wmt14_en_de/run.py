"""WMT'14 English->German, prepared as fairseq's examples/translation/prepare-wmt14en2de.sh.

Data: Europarl v7 + Common Crawl + News Commentary v12 (v9 with ``--icml17``) for training,
every 100th line of it for validation, newstest2014 (full) for test; train and valid are
cleaned with clean-corpus-n (ratio 1.5, 1-250). Differences from the script: Moses
punctuation normalisation and tokenisation plus BPE (40k) are replaced by character clean-up
and a joint sentencepiece model (40k), and the length filter counts whitespace words.
Training uses ``transformer_mhce_wmt_en_de`` (``transformer_wmt_en_de`` for the baselines)
with the hyper-parameters of fairseq's Scaling NMT recipe at base size (dropout 0.1). Needs
internet for the download.

    python -m recipes.wmt14_en_de.run --dry-run
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recipes import config, corpus, pipeline, runner

# (archive URL, training corpus prefix inside it or None). dev.tgz is fetched as by the
# reference script, which does not use newstest2013 either.
EUROPARL = ("http://statmt.org/wmt13/training-parallel-europarl-v7.tgz", "training/europarl-v7.de-en")
COMMONCRAWL = ("http://statmt.org/wmt13/training-parallel-commoncrawl.tgz", "commoncrawl.de-en")
NEWS_V12 = ("http://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz",
            "training/news-commentary-v12.de-en")
NEWS_V9 = ("http://statmt.org/wmt14/training-parallel-nc-v9.tgz", "training/news-commentary-v9.de-en")
DEV = ("http://data.statmt.org/wmt17/translation-task/dev.tgz", None)
TEST = ("http://statmt.org/wmt14/test-full.tgz", None)

RECIPE = config.Recipe(
    name="wmt14_en_de", src="en", tgt="de", work_dir=Path(__file__).resolve().parent / "work",
    mhce_shortlist=0,  # no shortlist, as this recipe ran before the plugin's default (mhce_nmt.defaults)
    base_arch="transformer_wmt_en_de",
    model_args=("--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--clip-norm", "0.0",
                "--lr", "5e-4", "--lr-scheduler", "inverse_sqrt", "--warmup-init-lr", "1e-07",
                "--dropout", "0.1", "--weight-decay", "0.0"),
    softmax_args=("--share-all-embeddings",),
    vocab_size=40000, warmup_updates=4000, max_tokens=3584, max_update=100000,
)


def archives(icml17: bool) -> list[tuple[str, str | None]]:
    """The archives to fetch; ``icml17`` swaps News Commentary v12 for v9."""
    return [EUROPARL, COMMONCRAWL, NEWS_V9 if icml17 else NEWS_V12, DEV, TEST]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the prepare stage."""
    parser.add_argument("--icml17", action="store_true",
                        help="News Commentary v9 instead of v12 (the WMT'14-only data of Gehring et al.)")


def stage_prepare(cfg: config.Config, args: argparse.Namespace) -> None:
    """Download, concatenate, split and clean the WMT'14 data into ``WORK/data``."""
    src, tgt = cfg.langs
    if runner.done("prepare", cfg, [cfg.data / f"{s}.{lang}" for s in config.SPLITS for lang in cfg.langs]):
        return
    orig = cfg.work_dir / "orig"
    sources = archives(args.icml17)
    for url, _prefix in sources:
        archive = orig / url.rsplit("/", 1)[1]
        corpus.download(url, archive, cfg.dry_run)
        corpus.untar(archive, orig, cfg.dry_run)
    prefixes = [prefix for _url, prefix in sources if prefix]
    runner.say("prepare", f"concatenate {', '.join(prefixes)}; valid = every 100th line; clean-corpus-n "
                 f"1.5 1 250 on train and valid; test = newstest2014 -> {cfg.data}")
    if cfg.dry_run:
        return
    train = {lang: [corpus.normalize_line(line) for prefix in prefixes
                    for line in corpus.read_lines(orig / f"{prefix}.{lang}")]
             for lang in cfg.langs}
    valid, rest = {}, {}
    for lang in cfg.langs:
        valid[lang], rest[lang] = corpus.every_nth(train[lang], 100)
    role = {"en": "src", "de": "ref"}
    test = {lang: corpus.seg_lines(orig / "test-full" / f"newstest2014-deen-{role[lang]}.{lang}.sgm")
            for lang in cfg.langs}
    corpus.write_split(cfg.data, "train", cfg.langs, corpus.clean_corpus(rest[src], rest[tgt], 1, 250, 1.5))
    corpus.write_split(cfg.data, "valid", cfg.langs, corpus.clean_corpus(valid[src], valid[tgt], 1, 250, 1.5))
    corpus.write_split(cfg.data, "test", cfg.langs, (test[src], test[tgt]))


def main(argv: list[str] | None = None) -> config.Config:
    """Run the recipe (all stages, or ``--stage NAME``)."""
    return pipeline.main(RECIPE, argv, ("prepare", stage_prepare), __doc__, add_arguments)


if __name__ == "__main__":
    main()
