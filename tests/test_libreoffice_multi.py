"""One-to-many LibreOffice corpus: package names, tags, shared page split, per-language scoring.

Tiny help trees and .mo catalogues are written into a tmp dir; nothing is fetched.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU, CHRF
from test_recipe_extract import write_mo

from recipes.libreoffice_de_en.clean import FilterConfig, Pair, clean_pairs
from recipes.libreoffice_multi import languages
from recipes.libreoffice_multi.extract import build_corpus, cap_train
from recipes.libreoffice_multi.score import bleu_tokenizer, load_references, score
from recipes.libreoffice_multi.split import page_assignment, split_languages

# page -> [(paragraph id, English, Japanese, Russian)]; None: not translated in that language.
PAGES = {
    f"text/page{n}.html": [
        (f"par_id{n}{i}", f"Sentence {i} of page {n} explains a feature.",
         f"ページ{n}の文{i}は機能を説明します。",
         None if (n + i) % 5 == 0 else f"Предложение {i} страницы {n} описывает функцию.")
        for i in range(1, 4)
    ]
    for n in range(12)
}
PAGES["text/page3.html"].append(("par_id399", "Click OK.", "OKをクリックします。", "Нажмите OK."))
PAGES["text/page9.html"].append(("par_id999", "Click OK.", "OKをクリックします。", "Нажмите ОК."))
UI = [("STR_OK", "Click OK.", "OKをクリックします。", "Нажмите OK."),
      ("STR_SAVE", "~Save", "保存(~S)", "~Сохранить")]


def write_page(path: Path, paragraphs: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f'<p id="{pid}" class="paragraph">{text}</p>\n' for pid, text in paragraphs)
    path.write_text(f"<html><body>{body}</body></html>", encoding="utf-8")


@pytest.fixture()
def sources(tmp_path: Path) -> dict[str, tuple[tuple[Path, Path], Path]]:
    """English, Japanese and Russian help trees and UI catalogues."""
    column = {"en": 1, "ja": 2, "ru": 3}
    for lang, col in column.items():
        for page, rows in PAGES.items():
            write_page(tmp_path / "help" / languages.help_dir(lang) / page,
                       [(row[0], row[col]) for row in rows if row[col] is not None])
    english = tmp_path / "help" / "en-US"
    result = {}
    for lang in ("ja", "ru"):
        ui_root = tmp_path / f"ui-{lang}"
        write_mo(ui_root / lang / "LC_MESSAGES" / "test.mo", [(c, en, row[column[lang] - 2]) for c, en, *row in UI])
        result[lang] = ((english, tmp_path / "help" / languages.help_dir(lang)), ui_root)
    return result


def test_package_names_and_help_dirs() -> None:
    assert languages.help_dir("zh-cn") == "zh-CN" and languages.help_dir("en") == "en-US"
    assert languages.packages(["ja", "pt-br"]) == [
        "libreoffice-help-en-us", "libreoffice-help-ja", "libreoffice-l10n-ja",
        "libreoffice-help-pt-br", "libreoffice-l10n-pt-br"]


def test_length_scale_keeps_chinese_and_defaults_unchanged() -> None:
    pair = Pair("Choose Format - Character to open the Character dialog, then set the font and size.",
                "选择格式 - 字符，设置字体和大小。", "help", "p")
    assert not clean_pairs([pair])[0]  # 83 vs 18 characters: a plain ratio test drops it
    assert clean_pairs([pair], languages.filter_config("zh-cn"))[0] == [pair]
    assert languages.filter_config("ru") == FilterConfig()


def test_shared_split_and_no_held_out_english_in_train() -> None:
    pairs = {
        lang: [Pair(f"s{p}-{i}", f"{lang}{p}-{i}", "help", f"page{p:02d}")
               for p in range(40) for i in range(1 + p % 4) if lang == "ja" or (p + i) % 3]
        + [Pair(f"s{p}-0", f"{lang}-ui{p}", "ui", "x.mo") for p in range(0, 40, 2)]
        for lang in ("ja", "ru", "el")
    }
    assignment = page_assignment(pairs, valid_size=10, test_size=15, seed=2)
    assert all(assignment[f"page{p:02d}"] == "train" for p in (0, 12, 24, 36))  # no ru/el pairs there
    splits, removed = split_languages(pairs, assignment)
    held = {name: {p.src for by in splits.values() for p in by[name]} for name in ("valid", "test")}
    for lang, by_split in splits.items():
        pages = {name: {p.doc for p in by_split[name]} for name in by_split}
        assert pages["test"] <= {p for p, s in assignment.items() if s == "test"}
        assert not {p.src for p in by_split["train"]} & (held["valid"] | held["test"])
        assert not {p.src for p in by_split["valid"]} & held["test"]
        assert removed[lang]["train"] > 0  # the UI copies of held-out sources
    assert {p.doc for p in splits["ja"]["test"]} >= {p.doc for p in splits["ru"]["test"]}
    assert len({p.doc for p in splits["ja"]["test"]}) > 1


def test_cap_train_samples_train_only() -> None:
    pairs = [Pair(f"s{i}", f"t{i}", "help", "p") for i in range(10)]
    splits = {"ja": {"train": pairs, "valid": pairs[:3], "test": pairs[:4]}}
    cap_train(splits, 4, seed=1)
    train = splits["ja"]["train"]
    assert len(train) == 4 and train == sorted(train, key=pairs.index) and len(splits["ja"]["test"]) == 4
    cap_train(splits, None, seed=1)
    assert splits["ja"]["train"] == train


def test_build_corpus_tags_splits_and_counts(tmp_path: Path, sources: dict) -> None:
    out = tmp_path / "data"
    counts = build_corpus(sources, out, valid_size=3, test_size=3, seed=1)
    assert counts == json.loads((out / "counts.json").read_text())
    test_pages = counts["held-out pages"]["test"]
    assert test_pages and not set(test_pages) & set(counts["held-out pages"]["valid"])
    for split in ("train", "valid", "test"):
        src = (out / f"{split}.en").read_text(encoding="utf-8").splitlines()
        tgt = (out / f"{split}.mul").read_text(encoding="utf-8").splitlines()
        assert len(src) == len(tgt) == counts["splits"][split]["total"] > 0
        assert [s.split()[0] for s in src] == ["<2ja>"] * counts["splits"][split]["ja"] + \
            ["<2ru>"] * counts["splits"][split]["ru"]
    train_english = {line.split(" ", 1)[1] for line in (out / "train.en").read_text(encoding="utf-8").splitlines()}
    for lang in ("ja", "ru"):
        lang_test = (out / f"test.en-{lang}.en").read_text(encoding="utf-8").splitlines()
        assert len(lang_test) == counts["splits"]["test"][lang] == counts["languages"][lang]["splits"]["test"]
        assert all(line.startswith(f"<2{lang}> ") for line in lang_test)
        assert not {line.split(" ", 1)[1] for line in lang_test} & train_english
    english_test = {line.split(" ", 1)[1] for line in (out / "test.en").read_text(encoding="utf-8").splitlines()}
    by_page = {en: page for page, rows in PAGES.items() for _, en, *_ in rows}
    assert {by_page[en] for en in english_test} <= set(test_pages)
    assert "Save" in (out / "train.en").read_text(encoding="utf-8")  # UI strings in train only
    assert counts["languages"]["ja"]["length_scale"] == 2.0


def test_score_matches_sacrebleu_per_language(tmp_path: Path) -> None:
    refs = {"ru": ["Нажмите кнопку OK.", "Откройте меню Файл."],
            "zh-cn": ["选择格式菜单。", "点击确定按钮。"]}
    hyps = ["Нажмите OK.", "Откройте меню Файл.", "选择格式。", "点击确定按钮。"]
    result = score(hyps, refs)
    for lang, part in (("ru", hyps[:2]), ("zh-cn", hyps[2:])):
        bleu = BLEU(tokenize="13a" if lang == "ru" else "zh").corpus_score(part, [refs[lang]]).score
        chrf = CHRF().corpus_score(part, [refs[lang]]).score
        assert result["languages"][lang]["BLEU"] == round(bleu, 2)
        assert result["languages"][lang]["chrF"] == round(chrf, 2)
        assert "tok:" in result["languages"][lang]["BLEU signature"]
    chrfs = [result["languages"][lang]["chrF"] for lang in refs]
    assert result["macro chrF"] == round(sum(chrfs) / 2, 2)
    assert bleu_tokenizer("ja") in ("ja-mecab", "char") and bleu_tokenizer("fr") == "13a"
    with pytest.raises(ValueError):
        score(hyps[:3], refs)
    (tmp_path / "counts.json").write_text(json.dumps({"langs": ["ru", "zh-cn"]}))
    for lang, lines in refs.items():
        (tmp_path / f"test.en-{lang}.{lang}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    assert load_references(tmp_path, "test") == refs
