"""One-to-many LibreOffice corpus and recipe: package names, tags, shared page split, per-language
scoring, the tags as sentencepiece symbols, the recipe's stages.

Tiny help trees, .mo catalogues and a tiny tagged corpus are written into a tmp dir; nothing is fetched.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU, CHRF
from test_recipe_extract import write_mo

from mhce_nmt.training import autocast
from recipes import pipeline, textfiles
from recipes.libreoffice_de_en.clean import FilterConfig, Pair, clean_pairs
from recipes.libreoffice_multi import languages
from recipes.libreoffice_multi import run as multi_run
from recipes.libreoffice_multi.extract import build_corpus, cap_train
from recipes.libreoffice_multi.score import bleu_tokenizer, load_references, score
from recipes.libreoffice_multi.split import page_assignment, split_languages
from recipes.textfiles import write_lines
from recipes.vocab import SentencePiece
from tiny_recipe import TINY_MODEL

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


# --- the recipe (recipes/libreoffice_multi/run.py) on a tiny synthetic corpus -----------------------------

TINY_WORDS = {  # English: German, Russian, Japanese
    "file": ("Datei", "файл", "ファイル"), "table": ("Tabelle", "таблицу", "表"), "cell": ("Zelle", "ячейку", "セル"),
    "page": ("Seite", "страницу", "ページ"), "image": ("Bild", "изображение", "画像"),
    "chart": ("Diagramm", "диаграмму", "グラフ"),
}
TINY_ACTIONS = {"Open": ("Öffnen Sie", "Откройте", "開きます"), "Delete": ("Löschen Sie", "Удалите", "削除します"),
                "Copy": ("Kopieren Sie", "Скопируйте", "コピーします"), "Save": ("Speichern Sie", "Сохраните", "保存します")}
TINY_LANGS = ("de", "ru", "ja")
TINY_SIZES = {"train": 120, "valid": 8, "test": 12}  # pairs per language


def tiny_pair(lang: str, rng: random.Random) -> tuple[str, str]:
    """One tagged English source and its ``lang`` translation, e.g. ("<2ja> Open the file and the cell.",
    "ファイルとセルを開きます。")."""
    column = TINY_LANGS.index(lang)
    action, (word1, word2) = rng.choice(list(TINY_ACTIONS)), rng.sample(list(TINY_WORDS), 2)
    verb, first, second = TINY_ACTIONS[action][column], TINY_WORDS[word1][column], TINY_WORDS[word2][column]
    target = {"de": f"{verb} die {first} und die {second}.", "ru": f"{verb} {first} и {second}.",
              "ja": f"{first}と{second}を{verb}。"}[lang]
    return f"{languages.tag(lang)} {action} the {word1} and the {word2}.", target


def write_tiny_corpus(data: Path) -> None:
    """What extract.py writes, for TINY_LANGS: joint and per-language files and counts.json."""
    data.mkdir(parents=True)
    rng = random.Random(1)
    for split, size in TINY_SIZES.items():
        pairs = {lang: [tiny_pair(lang, rng) for _ in range(size)] for lang in TINY_LANGS}
        joint = [pair for lang in TINY_LANGS for pair in pairs[lang]]
        write_lines(data / f"{split}.en", [src for src, _ in joint])
        write_lines(data / f"{split}.mul", [tgt for _, tgt in joint])
        if split != "train":
            for lang in TINY_LANGS:
                write_lines(data / f"{split}.en-{lang}.en", [src for src, _ in pairs[lang]])
                write_lines(data / f"{split}.en-{lang}.{lang}", [tgt for _, tgt in pairs[lang]])
    (data / "counts.json").write_text(json.dumps({"langs": list(TINY_LANGS), "target code": "mul"}))


def tiny_argv(work: Path, *more: str) -> list[str]:
    """A multi recipe command line on ``work`` with a tiny vocabulary and no bf16 probe."""
    return ["--work-dir", str(work), "--langs", *TINY_LANGS, "--vocab-size", "200", "--no-autocast-bf16",
            "--workers", "1", *more]


def test_the_tags_are_single_pieces_after_spm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tiny_corpus(tmp_path / "work" / "data")
    trained: list[tuple[int, tuple[str, ...]]] = []
    train = SentencePiece.train

    def recording(inputs, prefix, vocab_size, max_sentences, user_symbols):
        trained.append((max_sentences, user_symbols))
        return train(inputs, prefix, vocab_size, max_sentences, user_symbols)

    monkeypatch.setattr(SentencePiece, "train", staticmethod(recording))
    cfg = multi_run.main(tiny_argv(tmp_path / "work", "--stage", "spm"))
    assert trained == [(1_000_000, ("<2de>", "<2ru>", "<2ja>"))]  # one joint model, the recipe's sample size
    assert cfg.segmenter_path("en") == cfg.segmenter_path("mul")
    segmented = textfiles.read_lines(cfg.seg / "train.en")
    tags = [next(piece for piece in line.split() if piece != "\u2581") for line in segmented]
    assert tags == [languages.tag(lang) for lang in TINY_LANGS for _ in range(TINY_SIZES["train"])]
    model = SentencePiece(cfg.segmenter_path("en"))
    assert all(model.processor.piece_to_id(tag) != model.processor.unk_id() for tag in set(tags))
    assert model.decode(segmented[0].split()) == textfiles.read_lines(cfg.data / "train.en")[0]
    plain = train([cfg.data / "train.en", cfg.data / "train.mul"], tmp_path / "plain", 200)
    assert "<2ja>" not in SentencePiece(plain).encode(["<2ja> Open the file."])[0].split()  # without the option


def test_by_language_scores_each_slice_like_sacrebleu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    write_tiny_corpus(work / "data")
    cfg = multi_run.main(tiny_argv(work, "--stage", "by-language", "--dry-run"))
    refs = {lang: textfiles.read_lines(work / "data" / f"test.en-{lang}.{lang}") for lang in TINY_LANGS}
    # each language's own errors: the first 3 (de), 6 (ru) or 9 (ja) hypotheses are another sentence's reference
    hyps = {lang: lines[1:3 * (n + 1) + 1] + lines[3 * (n + 1):] for n, (lang, lines) in enumerate(refs.items())}
    write_lines(cfg.run_dir / "gen" / "hyp.txt", [line for lang in TINY_LANGS for line in hyps[lang]])
    multi_run.main(tiny_argv(work, "--stage", "by-language"))
    out = capsys.readouterr().out
    result = json.loads((cfg.run_dir / "score-by-language.json").read_text(encoding="utf-8"))
    assert list(result["languages"]) == list(TINY_LANGS) and result["headline"] == "macro chrF"
    for lang in TINY_LANGS:
        tokenizer = "13a" if lang != "ja" else bleu_tokenizer("ja")
        bleu = BLEU(tokenize=tokenizer).corpus_score(hyps[lang], [refs[lang]])
        chrf = CHRF().corpus_score(hyps[lang], [refs[lang]])
        scores = result["languages"][lang]
        assert (scores["BLEU"], scores["chrF"]) == (round(bleu.score, 2), round(chrf.score, 2))
        assert f"tok:{tokenizer}" in scores["BLEU signature"] and scores["sentences"] == TINY_SIZES["test"]
        assert re.search(rf"^  {re.escape(lang)} +{TINY_SIZES['test']} +{chrf.score:.2f} +{bleu.score:.2f}  "
                         rf"{re.escape(tokenizer)}$", out, re.M)
    assert len({result["languages"][lang]["chrF"] for lang in TINY_LANGS}) == 3
    assert result["macro chrF"] == round(sum(result["languages"][lang]["chrF"] for lang in TINY_LANGS) / 3, 2)
    assert f"macro chrF {result['macro chrF']:.2f}" in out and "  chrF nrefs:1|" in out

    write_lines(cfg.run_dir / "gen" / "hyp.txt", hyps["de"])  # a hypothesis file of another length
    with pytest.raises(SystemExit, match=r"^error: .*hyp.txt: 12 hypotheses for 36 references$"):
        multi_run.main(tiny_argv(work, "--stage", "by-language"))
    (work / "data" / "counts.json").write_text(json.dumps({"langs": ["ja", "ru", "de"]}))
    with pytest.raises(SystemExit, match=r"^error: .* are not .*test.mul: extract the corpus again$"):
        multi_run.main(tiny_argv(work, "--stage", "by-language"))


def test_dry_run_prints_every_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autocast, "cpu_has_native_bf16", lambda: False)
    work = tmp_path / "work"
    multi_run.main(["--dry-run", "--work-dir", str(work)])
    out = capsys.readouterr().out
    assert [line.split("] ")[0] for line in out.splitlines() if line.endswith("] start")] == [
        f"[{stage}" for stage in ("extract", *pipeline.STAGES, "by-language")]
    assert "+ apt-get download " + " ".join(languages.packages(list(languages.DEFAULT_LANGS))) in out
    assert out.count("+ dpkg-deb -x") == 17
    assert "vocab 64000, on " in out and "(a shuffled sample of 1,000,000 lines), user symbols <2de> <2fr> " \
        "<2ru> <2el> <2ja> <2zh-cn> <2ko> <2hi> -> " in out
    (preprocess,) = [line for line in out.splitlines() if line.startswith("+ fairseq-preprocess")]
    assert "--source-lang en --target-lang mul" in preprocess and "--joined-dictionary" in preprocess
    (train,) = [line for line in out.splitlines() if line.startswith("+ fairseq-train")]
    for fragment in ("--mhce-mode mhe", "--mhce-shortlist 4096", "--max-tokens 1024", "--max-update 20000",
                     "--total-num-update 20000 --budget-hours 0.75", "--lr 0.0014", "--warmup-updates 2000"):
        assert fragment in train
    generate = [line for line in out.splitlines() if line.startswith("+ fairseq-generate")]
    assert [line.split("--gen-subset ")[1].split()[0] for line in generate] == ["valid", "test"]
    assert "/runs/spm64000-mhe/score-by-language.json" in out
    assert not work.exists()


def test_a_corpus_of_other_languages_is_extracted_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tiny_corpus(tmp_path / "work" / "data")
    for langs, redone in ((TINY_LANGS, False), (("ja", "ru", "de"), True), (("ja",), True)):
        multi_run.main(["--dry-run", "--work-dir", str(tmp_path / "work"), "--no-autocast-bf16", "--stage", "extract",
                        "--langs", *langs])
        out = capsys.readouterr().out
        assert ("built for other languages" in out and "+ apt-get download" in out) == redone, out
        assert ("outputs exist, skipping" in out) == (not redone), out
    with pytest.raises(SystemExit, match=r"^error: --langs must be distinct target languages other than en, got ja en"):
        multi_run.main(["--dry-run", "--work-dir", str(tmp_path / "work"), "--langs", "ja", "en"])
    with pytest.raises(SystemExit, match=r"^error: this recipe's corpus is en -> mul .*\(got de -> en\)$"):
        multi_run.main(["--dry-run", "--work-dir", str(tmp_path / "work"), "--no-autocast-bf16", "--src", "de",
                        "--tgt", "en"])


@pytest.mark.e2e
def test_a_tiny_run_end_to_end_scores_every_language(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    write_tiny_corpus(work / "data")
    tiny = replace(multi_run.RECIPE, model_args=TINY_MODEL, warmup_updates=5, max_tokens=2048, train_minutes=None,
                   max_update=None, lr=None, dropout=None, lr_schedule="inverse_sqrt", autocast_bf16=False)
    monkeypatch.setattr(multi_run, "RECIPE", tiny)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny tensors: more threads only wait for each other
    cfg = multi_run.main(tiny_argv(work, "--max-update", "6", "--log-format", "simple"))
    out = capfd.readouterr().out
    assert "[extract] outputs exist, skipping" in out and "+ fairseq-train" in out and "test chrF" in out
    result = json.loads((cfg.run_dir / "score-by-language.json").read_text(encoding="utf-8"))
    assert [(lang, s["sentences"]) for lang, s in result["languages"].items()] == [
        (lang, TINY_SIZES["test"]) for lang in TINY_LANGS]
    assert f"macro chrF {result['macro chrF']:.2f}" in out
    multi_run.main(tiny_argv(work, "--max-update", "6", "--log-format", "simple"))  # resumable: nothing runs again
    assert capfd.readouterr().out.count("outputs exist, skipping") == 2 + len(pipeline.STAGES)
