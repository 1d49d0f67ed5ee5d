"""IWSLT'14 German->English, prepared as fairseq's examples/translation/prepare-iwslt14.sh.

Data: the IWSLT'14 TED archive; train = train.tags.de-en without its metadata lines, cleaned
with clean-corpus-n (ratio 1.5, 1-175 words) and lowercased; valid = every 23rd training line;
test = dev2010 + TEDX.dev2012 + tst2010 + tst2011 + tst2012. Differences from the script:
Moses tokenisation and subword-nmt BPE (10k) are replaced by a joint sentencepiece model (10k),
and the length filter counts whitespace words of the untokenised text. Training uses
``transformer_mhce_iwslt_de_en`` (``transformer_iwslt_de_en`` for the softmax/adaptive
baselines) with fairseq's IWSLT hyper-parameters. Needs internet for the download.

    python -m recipes.iwslt14_de_en.run --dry-run
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recipes import config, corpus, pipeline, runner

URL = "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"
TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010",
             "IWSLT14.TED.tst2011", "IWSLT14.TED.tst2012")
META_TAGS = ("<url>", "<talkid>", "<keywords>")
STRIPPED_TAGS = ("<title>", "</title>", "<description>", "</description>")

RECIPE = config.Recipe(
    name="iwslt14_de_en", src="de", tgt="en", work_dir=Path(__file__).resolve().parent / "work",
    mhce_shortlist=0,  # no shortlist, as this recipe ran before the plugin's default (mhce_nmt.defaults)
    base_arch="transformer_iwslt_de_en",
    model_args=("--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--clip-norm", "0.0",
                "--lr", "5e-4", "--lr-scheduler", "inverse_sqrt", "--dropout", "0.3",
                "--weight-decay", "0.0001"),
    softmax_args=("--share-decoder-input-output-embed",),
    vocab_size=10000, warmup_updates=4000, max_tokens=4096, max_update=50000,
)


def train_side(path: Path) -> list[str]:
    """One side of train.tags.de-en: metadata lines dropped, title/description tags removed."""
    lines = []
    for line in corpus.read_lines(path):
        if any(tag in line for tag in META_TAGS):
            continue
        for tag in STRIPPED_TAGS:
            line = line.replace(tag, "")
        lines.append(corpus.normalize_line(line))
    return lines


def stage_prepare(cfg: config.Config, args: argparse.Namespace) -> None:
    """Download, filter, split and lowercase the IWSLT'14 data into ``WORK/data``."""
    src, tgt = cfg.langs
    if runner.done("prepare", cfg, [cfg.data / f"{s}.{lang}" for s in config.SPLITS for lang in cfg.langs]):
        return
    orig = cfg.work_dir / "orig"
    corpus.download(URL, orig / "de-en.tgz", cfg.dry_run)
    corpus.untar(orig / "de-en.tgz", orig, cfg.dry_run)
    runner.say("prepare", "filter train.tags, clean-corpus-n 1.5 1 175, lowercase; valid = every 23rd "
                 f"line; test = {' + '.join(TEST_SETS)} -> {cfg.data}")
    if cfg.dry_run:
        return
    raw = orig / "de-en"
    train_src, train_tgt = corpus.clean_corpus(
        train_side(raw / f"train.tags.de-en.{src}"), train_side(raw / f"train.tags.de-en.{tgt}"), 1, 175, 1.5)
    train_src, train_tgt = [s.lower() for s in train_src], [t.lower() for t in train_tgt]
    valid_src, train_src = corpus.every_nth(train_src, 23)
    valid_tgt, train_tgt = corpus.every_nth(train_tgt, 23)
    test = {lang: [line.lower() for name in TEST_SETS
                   for line in corpus.seg_lines(raw / f"{name}.de-en.{lang}.xml")]
            for lang in cfg.langs}
    corpus.write_split(cfg.data, "train", cfg.langs, (train_src, train_tgt))
    corpus.write_split(cfg.data, "valid", cfg.langs, (valid_src, valid_tgt))
    corpus.write_split(cfg.data, "test", cfg.langs, (test[src], test[tgt]))


def main(argv: list[str] | None = None) -> config.Config:
    """Run the recipe (all stages, or ``--stage NAME``)."""
    return pipeline.main(RECIPE, argv, ("prepare", stage_prepare), __doc__)


if __name__ == "__main__":
    main()
