"""Build an English -> many-languages corpus from LibreOffice's Debian help and UI packages.

For each target language (default :data:`languages.DEFAULT_LANGS`; why these, see
:mod:`languages`), the de-en recipe's modules align English help paragraphs with the target's
on ``par_id``/``hd_id`` and UI strings on (catalogue, msgctxt, msgid), then clean them with its
filters (:mod:`recipes.libreoffice_de_en.clean`; the length-ratio test is scaled per script,
:data:`languages.LENGTH_SCALE`). Valid and test take the same English help pages for every
language and no held-out English sentence stays in any train set (:mod:`split`); UI strings go
to train only. Every source starts with its target's tag (``<2ja> ...``).

Written into ``out_dir`` (default ``WORK_DIR/data``):

* ``{train,valid,test}.en`` / ``.mul``: the joint corpus, languages concatenated in ``--langs``
  order (the pipeline's ``{split}.{src}``/``{split}.{tgt}`` with src ``en``, tgt ``mul``);
* ``{valid,test}.en-XX.en`` / ``.en-XX.XX``: each language's part (tagged source, reference);
* ``counts.json``: pairs per language after every step, per split, and the held-out pages.

The default languages give about 264k train pairs (Debian 7.4.7: 11k for Hindi to 44k for
German). A 60-minute CPU demo on 2 cores (the de-en demo's pace: ~18,000 updates of 1,024 tokens,
roughly 900k pairs seen) sees each about three times, so nothing is capped by default;
``--max-train-per-lang N`` keeps a seeded sample of at most N train pairs per language for
shorter runs or more languages (held-out sets are never capped).

    python -m recipes.libreoffice_multi.extract --langs ja ru --work-dir /tmp/multi
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

from recipes.libreoffice_de_en import debpkg
from recipes.libreoffice_de_en.clean import FilterConfig, Pair, clean_pairs
from recipes.libreoffice_de_en.extract import HELP_ROOT, UI_ROOT, help_pairs, ui_pairs
from recipes.libreoffice_de_en.split import SPLITS
from recipes.libreoffice_multi import languages
from recipes.libreoffice_multi.split import LangSplits, page_assignment, split_languages

TARGET_CODE = "mul"


def clean_language(lang: str, help_roots: tuple[Path, Path], ui_root: Path | None,
                   base: FilterConfig = FilterConfig()) -> tuple[list[Pair], dict[str, object]]:
    """Aligned and cleaned English->``lang`` pairs (help first, so deduplication prefers help)
    and their counts; ``ui_root`` ``None`` leaves the UI strings out."""
    pairs, unmatched = help_pairs(*help_roots)
    raw: dict[str, int] = {"help paragraphs": len(pairs), "help paragraphs without partner": unmatched}
    if ui_root is not None:
        ui = ui_pairs(None, ui_root)
        raw["ui strings"] = len(ui)
        pairs += ui
    config = languages.filter_config(lang, base)
    kept, steps = clean_pairs(pairs, config)
    return kept, {"raw": raw, "length_scale": config.length_scale, "filters": steps}


def cap_train(splits: LangSplits, max_pairs: int | None, seed: int) -> None:
    """Keep a seeded sample of at most ``max_pairs`` train pairs per language, in input order."""
    if not max_pairs:
        return
    for lang, by_split in splits.items():
        train = by_split["train"]
        if len(train) > max_pairs:
            keep = sorted(random.Random(f"{seed}-{lang}").sample(range(len(train)), max_pairs))
            by_split["train"] = [train[i] for i in keep]


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_corpus(splits: LangSplits, out_dir: Path) -> None:
    """The joint files and the per-language held-out files (module docstring); tagged sources."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tagged = {lang: {name: [replace(p, src=f"{languages.tag(lang)} {p.src}") for p in pairs]
                     for name, pairs in by_split.items()} for lang, by_split in splits.items()}
    for name in SPLITS:
        joint = [p for by_split in tagged.values() for p in by_split[name]]
        _write(out_dir / f"{name}.en", [p.src for p in joint])
        _write(out_dir / f"{name}.{TARGET_CODE}", [p.tgt for p in joint])
    for lang, by_split in tagged.items():
        for name in ("valid", "test"):
            _write(out_dir / f"{name}.en-{lang}.en", [p.src for p in by_split[name]])
            _write(out_dir / f"{name}.en-{lang}.{lang}", [p.tgt for p in by_split[name]])


def build_corpus(
    sources: dict[str, tuple[tuple[Path, Path], Path | None]],
    out_dir: Path,
    valid_size: int = 300,
    test_size: int = 500,
    seed: int = 1,
    max_train_per_lang: int | None = None,
    config: FilterConfig = FilterConfig(),
    provenance: dict[str, object] | None = None,
) -> dict[str, object]:
    """Clean, split, tag and write every language; return the counts (also ``counts.json``).

    ``sources`` maps each target language, in output order, to its (English, target) help
    directories and its UI resource directory (``None``: no UI strings).
    """
    start = time.perf_counter()
    kept: dict[str, list[Pair]] = {}
    per_lang: dict[str, dict[str, object]] = {}
    for lang, (help_roots, ui_root) in sources.items():
        kept[lang], per_lang[lang] = clean_language(lang, help_roots, ui_root, config)
        print(f"[extract] {lang}: {len(kept[lang])} pairs after cleaning", flush=True)
    assignment = page_assignment(kept, valid_size, test_size, seed)
    splits, removed = split_languages(kept, assignment)
    cap_train(splits, max_train_per_lang, seed)
    write_corpus(splits, out_dir)
    for lang, by_split in splits.items():
        per_lang[lang]["held-out English removed"] = removed[lang]
        per_lang[lang]["splits"] = {name: len(by_split[name]) for name in SPLITS}
    table = {name: {lang: len(splits[lang][name]) for lang in splits} for name in SPLITS}
    for name, row in table.items():
        row["total"] = sum(row.values())
        print(f"[extract] {name}: " + ", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    counts = {
        "langs": list(sources), "target code": TARGET_CODE, "tags": {lang: languages.tag(lang) for lang in sources},
        "seed": seed, "max_train_per_lang": max_train_per_lang, **(provenance or {}),
        "splits": table, "languages": per_lang,
        "held-out pages": {name: sorted(p for p, s in assignment.items() if s == name) for name in ("valid", "test")},
        "build_s": round(time.perf_counter() - start, 1),
    }
    (out_dir / "counts.json").write_text(json.dumps(counts, indent=2, ensure_ascii=False) + "\n")
    return counts


def extract(langs: list[str], work_dir: Path, out_dir: Path | None = None, valid_size: int = 300,
            test_size: int = 500, seed: int = 1, max_train_per_lang: int | None = None,
            with_ui: bool = True) -> dict[str, object]:
    """Fetch the packages of ``langs`` into ``work_dir`` and build the corpus (``work_dir/data``)."""
    if "en" in langs or len(set(langs)) != len(langs):
        raise ValueError(f"targets must be distinct and not English: {langs}")
    out_dir = out_dir or work_dir / "data"
    start = time.perf_counter()
    names = languages.packages(langs)
    roots = debpkg.fetch(names, work_dir / "packages")
    debs = [deb.name for name in names for deb in sorted((work_dir / "packages" / "debs").glob(f"{name}_*.deb"))]
    provenance = {"packages": debs, "package bytes": sum((work_dir / "packages" / "debs" / d).stat().st_size
                                                          for d in debs),
                  "fetch_s": round(time.perf_counter() - start, 1)}
    english = roots[languages.help_package("en")] / HELP_ROOT / languages.help_dir("en")
    sources = {
        lang: ((english, roots[languages.help_package(lang)] / HELP_ROOT / languages.help_dir(lang)),
               roots[languages.ui_package(lang)] / UI_ROOT if with_ui else None)
        for lang in langs
    }
    counts = build_corpus(sources, out_dir, valid_size, test_size, seed, max_train_per_lang,
                          provenance=provenance)
    print(f"[extract] wrote {out_dir} in {time.perf_counter() - start:.1f}s", flush=True)
    return counts


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the extractor."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--langs", nargs="+", default=list(languages.DEFAULT_LANGS),
                        help="target languages, Debian codes (default: %(default)s)")
    parser.add_argument("--work-dir", type=Path, required=True, help="packages are fetched here")
    parser.add_argument("--out-dir", type=Path, help="corpus output (default WORK_DIR/data)")
    parser.add_argument("--valid-size", type=int, default=300, help="minimum valid English paragraphs (whole pages)")
    parser.add_argument("--test-size", type=int, default=500, help="minimum test English paragraphs (whole pages)")
    parser.add_argument("--split-seed", type=int, default=1, help="seed of the page shuffle and the train cap")
    parser.add_argument("--max-train-per-lang", type=int, help="seeded sample of at most this many train pairs")
    parser.add_argument("--no-ui", action="store_true", help="leave the UI catalogues out of train")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``extract.py``."""
    args = build_parser().parse_args(argv)
    extract(args.langs, args.work_dir, args.out_dir, args.valid_size, args.test_size, args.split_seed,
            args.max_train_per_lang, with_ui=not args.no_ui)


if __name__ == "__main__":
    main()
