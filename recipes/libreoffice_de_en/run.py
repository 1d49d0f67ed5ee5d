"""Main job: LibreOffice help + UI, plus calibre's UI strings and the Debian Reference for training
(Debian packages, no internet beyond their registry; ``--no-more`` leaves the last two out) -> train -> BLEU.

Stages: extract -> spm -> binarize -> train -> generate -> score -> summary, everything under
``recipes/libreoffice_de_en/work/``. ``make demo`` runs it with the defaults (mode mhe with a
1,024-token shortlist, joint sentencepiece 16k, bf16 autocast where it is faster (a GPU, or a CPU with
AVX512-BF16 or AMX where a probe at the start measures it faster; fp32 elsewhere), batches of 1,024 tokens, 12,000 updates or 41 minutes of
training, whichever comes first: at most 45 minutes in all on 2 CPU cores).

    python -m recipes.libreoffice_de_en.run --mode softmax --max-update 30
    python -m recipes.libreoffice_de_en.run --stage score
    python -m recipes.libreoffice_de_en.run --dry-run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recipes import config, pipeline, runner
from recipes.libreoffice_de_en import debpkg, more
from recipes.libreoffice_de_en.extract import add_extract_arguments, extract, filter_config, packages

# The demo's schedule for 41 minutes on 2 CPU cores (README, "Quickstart"): a higher peak learning
# rate and lighter dropout than the recipe's base, decaying linearly to 0 at the end of the 41 minutes
# (linear-budget; update 12,000 would end it first on a faster machine), so the run ends fully decayed
# whatever the machine's speed, and the 1,024 most frequent ids scored directly (mhe; mhp 4,096, and mhe
# too from a 24k vocabulary up: at 32k mhe with 4,096 scored 1.16 BLEU more than with 1,024, at the
# demo's 16k 0.24 less; README, "At 32k": the plugin's own default, mhce_nmt.defaults). Batches of 1,024
# tokens: on a 2-core CPU they train at about the words/s of larger ones (results/cpu_profile), so the
# same minutes hold more updates, and at equal words they reached a lower validation perplexity and
# more BLEU than 2,048 or 4,096 (results/demo_runs/README.md); the warm-up covers the same words as 500 updates of 4,096,
# and the peak lr is 1.4e-3 (2e-3 scored 0.97 BLEU less at this batch size).
# Training steps run under bf16 autocast where it is faster: a GPU, or a CPU with AVX512-BF16 or AMX on which a
# probe of the model's shapes at the start measures it faster (config.training_precision); other CPUs emulate bf16, 34x slower than fp32 (results/cpu_profile), and train
# in fp32. The optimizer is the plugin's adam_fused (recipes.pipeline.CPU_MODEL_ARGS): fairseq's adam in
# torch's fused kernel, 2.9x faster per step on 2 cores, about 6% of the update. Beam search with length penalty 2.0: on the validation set it lifted the brevity penalty of
# the demo's model from 0.924 to 0.995 and BLEU from 30.65 to 31.30 (1.5: 31.13).
RECIPE = config.Recipe(
    name="libreoffice_de_en", src="de", tgt="en", work_dir=Path(__file__).resolve().parent / "work",
    train_minutes=41.0, max_update=12000, warmup_updates=2000, max_tokens=1024, lr=1.4e-3,
    lr_schedule="linear-budget", dropout=0.1, lenpen=2.0,
    autocast_bf16=True,
)


def stage_extract(cfg: config.Config, args: argparse.Namespace) -> None:
    """Fetch the Debian packages and write ``WORK/data`` (see ``extract.py``)."""
    outputs = [cfg.data / f"{s}.{lang}" for s in config.SPLITS for lang in cfg.langs]
    wanted = packages(cfg.src, cfg.tgt) + (more.packages(cfg.src, cfg.tgt) if args.more else [])
    if extracted_packages(cfg.data / "counts.json") not in (None, set(wanted)):
        runner.say("extract", "the corpus was built from other packages (--more / --no-more), redoing")
    elif runner.done("extract", cfg, outputs + [cfg.data / "counts.json"]):
        return
    if cfg.dry_run:
        debpkg.print_fetch_commands(wanted, cfg.work_dir / "packages")
        runner.say("extract", f"align, clean and split by help page -> {cfg.data}")
        return
    extract(cfg.src, cfg.tgt, cfg.work_dir, cfg.data, args.valid_size, args.test_size, args.split_seed,
            filter_config(args), with_ui=not args.no_ui, with_more=args.more)


def extracted_packages(counts_file: Path) -> set[str] | None:
    """The names of the packages an existing corpus was built from (``counts.json``), or None."""
    if not counts_file.exists():
        return None
    debs = json.loads(counts_file.read_text(encoding="utf-8")).get("packages", [])
    return {deb.split("_", 1)[0] for deb in debs}


def main(argv: list[str] | None = None) -> config.Config:
    """Run the recipe (all stages, or ``--stage NAME``)."""
    return pipeline.main(RECIPE, argv, ("extract", stage_extract), __doc__, add_extract_arguments)


if __name__ == "__main__":
    main()
