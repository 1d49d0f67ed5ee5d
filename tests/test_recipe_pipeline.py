"""Shared recipe pipeline: command builders, segmenters, one tiny end-to-end run, dry runs.

The end-to-end test trains a tiny transformer for a few updates on a few hundred generated
sentence pairs, then decodes and scores the test set; ``MODES`` lists the output layers it runs.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import types
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

from mhce_nmt.training import autocast
from recipes import config, pipeline, run_state, runner, textfiles
from recipes.commands import USER_DIR, TrainSettings, adaptive_cutoffs, generate_command, mhce_arch, train_command
from recipes.iwslt14_de_en import run as iwslt14
from recipes.libreoffice_de_en import run as libreoffice
from recipes.vocab import WordLevel
from recipes.wmt14_en_de import run as wmt14
from tiny_recipe import TINY_MODEL, recipe_config, write_data

MODES = ["mhe", "softmax"]


@pytest.mark.e2e
@pytest.mark.parametrize("mode", MODES)
def test_pipeline_end_to_end(tmp_path: Path, mode: str, capfd: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    write_data(work)
    recipe = config.Recipe(name="tiny", src="de", tgt="en", work_dir=work, model_args=TINY_MODEL,
                             vocab_size=120, warmup_updates=5, max_tokens=2048)
    argv = ["--mode", mode, "--max-update", "6", "--workers", "1", "--log-format", "simple"]
    cfg = pipeline.main(recipe, argv)

    out = capfd.readouterr().out
    assert "+ fairseq-train" in out
    # the closing report: table, five test translations, and a command for the user's own text
    assert "test BLEU" in out and "brevity penalty" in out and "[5] source     " in out
    command = out.split("Translate your own sentences")[1].splitlines()[1].strip()
    if mode in ("mhe", "softmax"):
        proc = subprocess.run(shlex.split(command), input="Öffnen Sie die Datei.\n", capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        detok = [line.split("\t")[2] for line in proc.stdout.splitlines() if line.startswith("D-")]
        assert len(detok) == 1 and "\u2581" not in detok[0]  # raw text out: no sentencepiece marks
    hyps = textfiles.read_lines(cfg.run_dir / "gen" / "hyp.txt")
    assert len(hyps) == 40
    train = json.loads((cfg.run_dir / "train.json").read_text())
    assert train["num_updates"] == 6 and train["model_params"] > 0
    score = json.loads((cfg.run_dir / "score.json").read_text())
    assert score["sentences"] == 40 and score["bleu_signature"].startswith("nrefs:1")
    assert 0 <= score["bleu"] <= 100 and 0 <= score["chrf"] <= 100
    summary = json.loads((cfg.run_dir / "summary.json").read_text())
    assert summary["data_pairs"] == {"train": 400, "valid": 30, "test": 40}
    assert summary["mode"] == mode and summary["output_layer_params"] > 0
    assert summary["decode_sentences_per_s"] > 0 and summary["precision"] == train["precision"] == "fp32"

    pipeline.main(recipe, argv)  # every stage's outputs exist now: nothing runs again
    out = capfd.readouterr().out
    assert "+ fairseq" not in out and out.count("outputs exist, skipping") == len(pipeline.STAGES)

    (cfg.run_dir / "gen" / "hyp.txt").touch()  # newer hypotheses: only score and summary are redone
    pipeline.main(recipe, argv)
    out = capfd.readouterr().out
    assert "+ fairseq" not in out and out.count("inputs changed since the last run") == 2

    (cfg.run_dir / "gen" / "hyp.txt").touch()  # a summary redone under other flags keeps the training's precision
    pipeline.main(recipe, [*argv, "--autocast-bf16"])
    assert json.loads((cfg.run_dir / "summary.json").read_text())["precision"] == "fp32"
    # the origin of the training and of the decoding, and the validation decode beside the test's
    (origin,) = runner.read_origins(cfg.run_dir / "train-origins.jsonl")
    assert origin["command"].startswith("fairseq-train") and origin["commit"] and origin["threads"] >= 1
    assert (summary["commit"], summary["command"]) == (origin["commit"], origin["command"])
    assert summary["decode_command"].startswith("fairseq-generate") and "--gen-subset test" in summary["decode_command"]
    assert 0 <= summary["valid_bleu"] <= 100 and summary["lenpen_chosen_by"] == "given"
    if mode == "softmax":  # other length penalties asked for: valid is decoded at each, test once at the best
        capfd.readouterr()
        pipeline.main(recipe, [*argv, "--valid-lenpens", "1", "2"])
        out = capfd.readouterr().out
        assert "decoding again" in out
        assert out.count("--gen-subset valid") == 2 and out.count("--gen-subset test") == 1
        valid = json.loads((cfg.run_dir / "valid.json").read_text())
        assert sorted(valid["by_lenpen"]) == ["1", "2"] and valid["chosen_by"] == "valid BLEU"
        best = max(("1", "2"), key=lambda lenpen: valid["by_lenpen"][lenpen]["bleu"])  # ties: the first listed
        assert f"{valid['lenpen']:g}" == best == f"{json.loads((cfg.run_dir / 'gen.json').read_text())['lenpen']:g}"


def test_invocation_is_the_command_that_ran_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as a module (``python -m recipes.libreoffice_de_en.run``, whose sys.argv[0] is the module's
    file), the recorded call names the module; run as a script, the script."""
    main = types.ModuleType("__main__")
    main.__spec__ = find_spec("recipes.libreoffice_de_en.run")
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", [libreoffice.__file__, "--mode", "softmax"])
    assert runner.invocation().split()[1:] == ["-m", "recipes.libreoffice_de_en.run", "--mode", "softmax"]
    main.__spec__ = None
    assert runner.invocation().split()[1:] == [libreoffice.__file__, "--mode", "softmax"]


def test_word_level_round_trip() -> None:
    segmenter = WordLevel()
    line = "Wählen Sie Format - Zellen... (Strg+1), dann „OK“."
    encoded = segmenter.encode([line])[0]
    assert "Zellen" in encoded.split() and "\uffed..." not in encoded
    assert segmenter.decode(encoded.split()) == line


def test_train_commands_per_mode() -> None:
    settings = TrainSettings(mode="mhe", model_args=config.CPU_MODEL_ARGS, max_update=100)
    mhe = train_command(Path("/b"), Path("/c"), settings, 16000)
    assert mhe[:14] == ["fairseq-train", "/b", "--user-dir", str(USER_DIR), "--task", "translation_mhce",
                        "--arch", "transformer_mhce", "--mhce-mode", "mhe", "--criterion",
                        "mhce_cross_entropy", "--label-smoothing", "0.1"]
    assert "--share-decoder-input-output-embed" not in mhe and "--cpu" in mhe
    softmax_settings = TrainSettings(mode="softmax", softmax_args=("--share",))
    softmax = train_command(Path("/b"), Path("/c"), softmax_settings, 16000)
    assert ["--arch", "transformer", "--criterion", "label_smoothed_cross_entropy"] == softmax[6:10]
    assert "--share" in softmax and "--user-dir" in softmax
    adaptive = train_command(Path("/b"), Path("/c"), TrainSettings(mode="adaptive"), 16000)
    assert adaptive[adaptive.index("--adaptive-softmax-cutoff") + 1] == "4000,8000"
    assert adaptive[adaptive.index("--criterion") + 1] == "adaptive_loss"
    assert adaptive_cutoffs(32004) == "8000,16000"
    assert mhce_arch("transformer_wmt_en_de") == "transformer_mhce_wmt_en_de"


def test_generate_commands_per_mode() -> None:
    mhp = generate_command(Path("/b"), Path("/c.pt"), Path("/g"), "mhp", topk_groups=4)
    assert mhp[4:8] == ["--task", "translation_mhce", "--mhe-topk-groups", "4"]
    for mode in ("mhs", "softmax", "adaptive"):
        assert generate_command(Path("/b"), Path("/c.pt"), Path("/g"), mode)[4:6] == ["--task", "translation"]
    assert generate_command(Path("/b"), Path("/c.pt"), Path("/g"), "softmax")[-11:] == [
        "--beam", "5", "--batch-size", "64", "--max-len-a", "1.2", "--max-len-b", "10", "--results-path", "/g",
        "--cpu"]


@pytest.mark.parametrize(
    ("recipe", "expected"),
    [
        (iwslt14, ["+ download http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz",
                   "--arch transformer_mhce_iwslt_de_en --mhce-mode mhe", "--lr 5e-4",
                   "--warmup-updates 4000", "--dropout 0.3", "--joined-dictionary",
                   "--task translation_mhce --mhe-topk-groups 8"]),
        (wmt14, ["+ download http://statmt.org/wmt14/test-full.tgz",
                 "+ download http://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz",
                 "--arch transformer_mhce_wmt_en_de --mhce-mode mhe", "--source-lang en --target-lang de",
                 "--warmup-init-lr 1e-07", "--max-tokens 3584"]),
        (libreoffice, ["+ apt-get download libreoffice-help-de libreoffice-help-en-us libreoffice-l10n-de calibre "
                       "debian-reference-de debian-reference-en",
                       "--arch transformer_mhce_cpu --mhce-mode mhe",  # the sizes are the architecture's
                       "--optimizer adam_fused", "--stop-time-hours 0.6833", "--max-update 12000",
                       "--lr 0.0014 --lr-scheduler linear_budget --warmup-updates 2000 --end-learning-rate 0 "
                       "--total-num-update 12000 --budget-hours 0.6833 --dropout 0.1", "--mhce-shortlist 1024", "--max-tokens 1024", "--autocast-bf16",
                       "checkpoints/checkpoint_best.pt",
                       "--results-path", "--lenpen 2 --cpu"]),
    ],
)
def test_dry_run_prints_every_command(recipe, expected: list[str], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setattr(autocast, "cpu_has_native_bf16", lambda: True)  # the demo's bf16 on a CPU that has it
    monkeypatch.setattr(autocast, "probe_cpu_precision", lambda size: autocast.PrecisionProbe(100.0, 60.0))
    work = tmp_path / "work"
    recipe.main(["--dry-run", "--work-dir", str(work)])
    out = capsys.readouterr().out
    for command in ("+ fairseq-preprocess", "+ fairseq-train"):
        assert out.count(command) == 1
    generate = [line for line in out.splitlines() if line.startswith("+ fairseq-generate")]
    assert [line.split("--gen-subset ")[1].split()[0] for line in generate] == ["valid", "test"]
    for fragment in expected:
        assert fragment in out
    assert not work.exists()


@pytest.mark.slow
@pytest.mark.parametrize("built_with_more", [False, True])
def test_a_corpus_of_other_packages_is_extracted_again(built_with_more: bool, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A work directory extracted with --no-more (or with --more) is redone when the other choice
    is asked for, and skipped when the same one is."""
    data = tmp_path / "work" / "data"
    data.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        for lang in ("de", "en"):
            (data / f"{split}.{lang}").write_text("x\n")
    debs = ["libreoffice-help-de_7.4_all.deb", "libreoffice-help-en-us_7.4_all.deb", "libreoffice-l10n-de_7.4_all.deb"]
    if built_with_more:
        debs += ["calibre_6.13_amd64.deb", "debian-reference-de_2.100_all.deb", "debian-reference-en_2.100_all.deb"]
    (data / "counts.json").write_text(json.dumps({"packages": debs}))
    for more_flag, redone in (("--more", not built_with_more), ("--no-more", built_with_more)):
        libreoffice.main(["--dry-run", "--work-dir", str(tmp_path / "work"), "--stage", "extract", more_flag])
        out = capsys.readouterr().out
        assert ("built from other packages" in out and "+ apt-get download" in out) == redone, out
        assert ("outputs exist, skipping" in out) == (not redone), out


def test_dry_run_softmax_baselines_share_embeddings(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    wmt14.main(["--dry-run", "--mode", "softmax", "--work-dir", str(tmp_path / "w"), "--icml17"])
    out = capsys.readouterr().out
    assert "--arch transformer_wmt_en_de" in out and "--share-all-embeddings" in out
    assert "training-parallel-nc-v9.tgz" in out and "nc-v12" not in out


def last_value(cmd: list[str], option: str) -> str:
    """What fairseq (argparse) keeps when an option repeats: the last occurrence."""
    return [cmd[i + 1] for i, word in enumerate(cmd) if word == option][-1]


def test_learning_rate_dropout_and_shortlist_reach_fairseq_train(tmp_path: Path) -> None:
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, lr=2e-3, dropout=0.1,
                             mhce_shortlist=1024)
    mhe = recipe_config(recipe, ["--mode", "mhe"])
    cmd = train_command(mhe.bin, mhe.checkpoints, mhe.train, 16000)
    assert last_value(cmd, "--lr") == "0.002" and last_value(cmd, "--dropout") == "0.1"  # over CPU_MODEL_ARGS
    assert last_value(cmd, "--mhce-shortlist") == "1024"
    own = recipe_config(recipe, ["--mode", "mhp", "--lr", "5e-4", "--dropout", "0.3", "--mhce-shortlist", "0"])
    cmd = train_command(own.bin, own.checkpoints, own.train, 16000)
    assert last_value(cmd, "--lr") == "0.0005" and last_value(cmd, "--dropout") == "0.3"
    assert last_value(cmd, "--mhce-shortlist") == "0"  # said: the plugin's own default is a shortlist
    softmax = recipe_config(recipe, ["--mode", "softmax"])  # the recipe's shortlist is for mhe/mhp only
    assert "--mhce-shortlist" not in train_command(softmax.bin, softmax.checkpoints, softmax.train, 16000)
    plain = recipe_config(config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path), ["--mode", "mhe"])
    cmd = train_command(plain.bin, plain.checkpoints, plain.train, 16000)
    assert last_value(cmd, "--lr") == "1e-3" and "--dropout" not in cmd  # model_args' lr, the architecture's 0.2


@pytest.mark.parametrize("mode", ["softmax", "adaptive", "mhs"])
def test_shortlist_for_other_output_layers_is_refused(tmp_path: Path, mode: str, capsys) -> None:
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path)
    with pytest.raises(SystemExit, match=f"--mhce-shortlist applies to --mode mhe or mhp, not {mode}"):
        recipe_config(recipe, ["--mode", mode, "--mhce-shortlist", "512"])


def test_fairseq_itself_keeps_the_last_lr_and_dropout(tmp_path: Path) -> None:
    """The recipe appends --lr/--dropout after model_args; fairseq's own parser keeps the last."""
    import mhce_nmt  # noqa: F401  (registers the plugin's architectures)
    from fairseq import options

    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, lr=2e-3, dropout=0.1,
                             mhce_shortlist=64, lr_schedule="linear", max_update=1500)
    cfg = recipe_config(recipe, ["--mode", "mhe"])
    cmd = train_command(Path("/bin-dir"), tmp_path / "ckpt", cfg.train, 16000)
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, cmd[1:])
    assert args.lr == [0.002] and args.dropout == 0.1 and args.mhce_shortlist == 64
    assert args.lr_scheduler == "polynomial_decay" and float(args.total_num_update) == 1500 and args.power == 1
    assert args.end_learning_rate == 0 and args.warmup_updates == 500
    with pytest.raises(SystemExit, match="--lr-schedule linear decays to 0 at --max-update"):
        recipe_config(config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path), ["--lr-schedule", "linear"])


def test_autocast_bf16_reaches_fairseq_train_for_every_mode(tmp_path: Path, monkeypatch) -> None:
    """The demo trains under bf16 autocast where it pays; stock models then train with the plugin's
    task (whose training step applies it), and fairseq's own parser accepts the command."""
    import mhce_nmt  # noqa: F401  (registers the plugin's task options)
    from fairseq import options

    monkeypatch.setattr(autocast, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(autocast, "probe_cpu_precision", lambda size: autocast.PrecisionProbe(100.0, 60.0))
    assert libreoffice.RECIPE.autocast_bf16
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, autocast_bf16=True)
    for mode in ("mhe", "softmax", "adaptive"):
        cfg = recipe_config(recipe, ["--mode", mode])
        cmd = train_command(Path("/bin-dir"), tmp_path / "ckpt", cfg.train, 16000)
        assert "--autocast-bf16" in cmd and last_value(cmd, "--task") == "translation_mhce"
        args = options.parse_args_and_arch(options.get_training_parser(), cmd[1:])
        assert args.autocast_bf16 is True
    off = recipe_config(recipe, ["--mode", "softmax", "--no-autocast-bf16"])
    cmd = train_command(off.bin, off.checkpoints, off.train, 16000)
    assert "--autocast-bf16" not in cmd and last_value(cmd, "--task") == "translation"
    with pytest.raises(SystemExit, match="--fp16 is CUDA mixed precision and no GPU is visible"):
        recipe_config(recipe, ["--fp16"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(SystemExit, match="--fp16 and --autocast-bf16 are two kinds of mixed precision"):
        recipe_config(recipe, ["--fp16", "--autocast-bf16"])
    fp16 = recipe_config(recipe, ["--fp16"])  # fp16 is its own mixed precision: the recipe's bf16 steps aside
    assert fp16.train.precision == "fp16" and "--autocast-bf16" not in train_command(
        fp16.bin, fp16.checkpoints, fp16.train, 16000)


@pytest.mark.parametrize("native_bf16", [False, True])
@pytest.mark.parametrize("gpu", [False, True])
@pytest.mark.parametrize("bf16_ms", [60.0, 97.0])
def test_the_recipes_bf16_default_applies_where_it_measures_faster(monkeypatch, native_bf16: bool, gpu: bool,
                                                                  bf16_ms: float) -> None:
    """Asked for or refused, bf16 autocast is as given; the recipe's default is bf16 on a GPU, and on a
    CPU with native bf16 where the probe of the model's shapes finds it at least 5% faster than fp32
    (the note gives both times); fp32 elsewhere, with the reason; a recipe without bf16 stays fp32."""
    probed = []
    monkeypatch.setattr(autocast, "cpu_has_native_bf16", lambda: native_bf16)
    monkeypatch.setattr(autocast, "probe_cpu_precision",
                        lambda size: probed.append(size) or autocast.PrecisionProbe(100.0, bf16_ms))
    for asked in (True, False):
        assert config.training_precision(asked, True, gpu, 16004) == (asked, "")
        assert config.training_precision(asked, False, gpu, 16004) == (asked, "")
    assert config.training_precision(None, False, gpu, 16004) == (False, "")
    on, note = config.training_precision(None, True, gpu, 16004)
    assert on == (gpu or (native_bf16 and bf16_ms < 95.0))
    assert probed == ([16004] if native_bf16 and not gpu else [])
    if not gpu and native_bf16:
        assert f"took {bf16_ms:.0f} ms under bf16 autocast and 100 ms in fp32" in note
    elif not gpu:
        assert "neither AVX512-BF16 nor AMX" in note


def test_the_probe_times_both_precisions_of_the_models_shapes() -> None:
    """The probe runs fp32 and bf16-autocast steps of a stack shaped as asked; bf16 pays at <= 95%."""
    probe = autocast.probe_cpu_precision.__wrapped__(64, model_dim=16, ffn_dim=32, heads=2, layers=1, tokens=64,
                                                     repeats=1)
    assert probe.fp32_ms > 0 and probe.bf16_ms > 0
    assert autocast.PrecisionProbe(100.0, 95.0).bf16_pays and not autocast.PrecisionProbe(100.0, 95.1).bf16_pays
    assert config.probe_output_size("softmax", 16004, 0) == 16004
    assert config.probe_output_size("mhe", 16004, 1024) == 1024 + 122 + 1  # N + ceil(sqrt(V - N))


def test_the_demo_on_a_cpu_without_native_bf16_trains_fp32_and_says_why(tmp_path: Path, monkeypatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Emulated bf16 is slower than fp32: there the demo's train stage says it trains in fp32 and
    its command has no --autocast-bf16, which the user can still force."""
    monkeypatch.setattr(autocast, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    libreoffice.main(["--dry-run", "--work-dir", str(tmp_path / "work")])
    out = capsys.readouterr().out
    train = next(line for line in out.splitlines() if line.startswith("+ fairseq-train"))
    assert "[train] fp32: this CPU has neither AVX512-BF16 nor AMX" in out and "--autocast-bf16" not in train
    libreoffice.main(["--dry-run", "--work-dir", str(tmp_path / "work"), "--autocast-bf16"])
    out = capsys.readouterr().out
    assert "fp32:" not in out and "--autocast-bf16" in next(
        line for line in out.splitlines() if line.startswith("+ fairseq-train"))


@pytest.mark.parametrize("mode", ["mhe", "adaptive"])
def test_softmax_kernel_for_other_modes_is_refused(tmp_path: Path, mode: str) -> None:
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path)
    with pytest.raises(SystemExit, match=f"--softmax-kernel applies to --mode softmax, not {mode}"):
        recipe_config(recipe, ["--mode", mode, "--softmax-kernel", "torch"])
    cfg = recipe_config(recipe, ["--mode", "softmax", "--softmax-kernel", "torch"])
    assert cfg.run_dir.name.endswith("softmax-torch") and cfg.train.arm == "softmax-torch"


def test_mhe_tie_label_embeddings_option(tmp_path: Path) -> None:
    """--mhe-tie-label-embeddings reaches fairseq-train and names the run mhe-tied; the recipe's
    default applies to mhe only, and asking for it with another mode is refused."""
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, mhce_shortlist=64)
    cfg = recipe_config(recipe, ["--mode", "mhe", "--mhe-tie-label-embeddings"])
    cmd = train_command(cfg.bin, cfg.checkpoints, cfg.train, 16000)
    assert "--mhe-tie-label-embeddings" in cmd and last_value(cmd, "--mhce-shortlist") == "64"
    assert cfg.run_dir.name == "spm16000-mhe-tied"
    untied = recipe_config(recipe, ["--mode", "mhe"])
    assert "--mhe-tie-label-embeddings" not in train_command(untied.bin, untied.checkpoints, untied.train, 16000)
    assert untied.run_dir.name == "spm16000-mhe"
    tied_recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, mhe_tied=True)
    assert recipe_config(tied_recipe, ["--mode", "mhe"]).train.arm == "mhe-tied"
    assert recipe_config(tied_recipe, ["--mode", "mhe", "--no-mhe-tie-label-embeddings"]).train.arm == "mhe"
    assert recipe_config(tied_recipe, ["--mode", "mhp"]).train.arm == "mhp"
    with pytest.raises(SystemExit, match="--mhe-tie-label-embeddings applies to --mode mhe, not softmax"):
        recipe_config(recipe, ["--mode", "softmax", "--mhe-tie-label-embeddings"])


def test_spm_samples_add_sampled_segmentations_of_the_training_text(tmp_path: Path) -> None:
    """--spm-samples K: train.{de,en} hold the best segmentation, then K sampled ones of every pair,
    each decoding back to its raw line (aligned across languages); valid and test keep the best;
    the segmentation gets its own directories, so the unsampled data stays as it was."""
    work = tmp_path / "work"
    write_data(work)
    recipe = config.Recipe(name="tiny", src="de", tgt="en", work_dir=work, vocab_size=120)
    best = recipe_config(recipe, ["--workers", "1"])
    sampled = recipe_config(recipe, ["--workers", "1", "--spm-samples", "2", "--spm-alpha", "0.2"])
    assert best.vocab_tag == "spm120" and sampled.vocab_tag == "spm120-sample2-a0.2"
    assert sampled.run_dir.name == "spm120-sample2-a0.2-mhe" and sampled.bin.name == "bin-spm120-sample2-a0.2"
    pipeline.stage_spm(best)
    pipeline.stage_spm(sampled)
    from recipes.vocab import SentencePiece

    for lang in ("de", "en"):
        raw = textfiles.read_lines(work / "data" / f"train.{lang}")
        lines = textfiles.read_lines(sampled.seg / f"train.{lang}")
        assert len(lines) == 3 * len(raw)
        assert lines[:len(raw)] == textfiles.read_lines(best.seg / f"train.{lang}")  # the best one first
        segmenter = SentencePiece(sampled.segmenter_path(lang))
        assert [segmenter.decode(l.split()) for l in lines] == raw * 3
        assert lines[len(raw):] != lines[:len(raw)] * 2  # the samples differ from the best
        for split in ("valid", "test"):
            assert textfiles.read_lines(sampled.seg / f"{split}.{lang}") == textfiles.read_lines(best.seg / f"{split}.{lang}")


@pytest.mark.parametrize("argv,message", [
    (["--spm-samples", "-1"], "--spm-samples must be >= 0"), (["--spm-samples", "2", "--spm-alpha", "0"], "in (0, 1]"),
    (["--spm-samples", "2", "--word-level"], "--word-level has none")])
def test_bad_spm_sampling_options_are_refused(tmp_path: Path, argv: list[str], message: str) -> None:
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path)
    with pytest.raises(SystemExit, match=__import__("re").escape(message)):
        recipe_config(recipe, argv)


def test_mhce_embed_dim_option(tmp_path: Path) -> None:
    """--mhce-embed-dim E reaches fairseq-train for mhe and names the run mhe-eE; refused elsewhere."""
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path)
    cfg = recipe_config(recipe, ["--mode", "mhe", "--mhce-embed-dim", "64"])
    assert last_value(train_command(cfg.bin, cfg.checkpoints, cfg.train, 16000), "--mhce-embed-dim") == "64"
    assert cfg.run_dir.name == "spm16000-mhe-e64"
    both = recipe_config(recipe, ["--mode", "mhe", "--mhce-embed-dim", "64", "--mhe-tie-label-embeddings"])
    assert both.run_dir.name == "spm16000-mhe-tied-e64"
    for argv in (["--mode", "mhp", "--mhce-embed-dim", "64"], ["--mode", "mhe", "--mhce-embed-dim", "-1"]):
        with pytest.raises(SystemExit, match="--mhce-embed-dim applies to --mode mhe with E >= 1"):
            recipe_config(recipe, argv)


def test_share_all_embeddings_option(tmp_path: Path) -> None:
    """--share-all-embeddings reaches fairseq-train for every mode and names the run -shareall;
    with --separate-vocab (two dictionaries) it is refused."""
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path)
    for mode, name in (("mhe", "spm16000-mhe-shareall"), ("softmax", "spm16000-softmax-shareall"),
                       ("mhp", "spm16000-mhp-shareall")):
        cfg = recipe_config(recipe, ["--mode", mode, "--share-all-embeddings"])
        assert "--share-all-embeddings" in train_command(cfg.bin, cfg.checkpoints, cfg.train, 16000)
        assert cfg.run_dir.name == name
    plain = recipe_config(recipe, ["--mode", "mhe"])
    assert "--share-all-embeddings" not in train_command(plain.bin, plain.checkpoints, plain.train, 16000)
    assert plain.run_dir.name == "spm16000-mhe"
    shared_recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, share_all=True)
    assert recipe_config(shared_recipe, ["--mode", "mhe", "--no-share-all-embeddings"]).train.arm == "mhe"
    with pytest.raises(SystemExit, match="--share-all-embeddings needs one joint dictionary"):
        recipe_config(recipe, ["--share-all-embeddings", "--separate-vocab"])


def test_a_shortlist_other_than_the_recipes_gets_its_own_run_directory(tmp_path: Path) -> None:
    """--mhce-shortlist N other than the recipe's names the run -sN (so it never reuses the default
    run's checkpoints); the recipe's own N, or a mode without a shortlist, adds nothing."""
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, mhce_shortlist=1024)
    big = recipe_config(recipe, ["--mode", "mhe", "--mhce-shortlist", "4096"])
    assert big.run_dir.name == "spm16000-mhe-s4096"
    assert last_value(train_command(big.bin, big.checkpoints, big.train, 16000), "--mhce-shortlist") == "4096"
    assert recipe_config(recipe, ["--mode", "mhp", "--mhce-shortlist", "0"]).run_dir.name == "spm16000-mhp-s0"
    assert recipe_config(recipe, ["--mode", "mhe", "--mhce-shortlist", "1024"]).run_dir.name == "spm16000-mhe"
    assert recipe_config(recipe, ["--mode", "softmax"]).run_dir.name == "spm16000-softmax"
    both = recipe_config(recipe, ["--mode", "mhe", "--mhce-shortlist", "2048", "--share-all-embeddings"])
    assert both.run_dir.name == "spm16000-mhe-s2048-shareall"


def test_mhp_may_have_a_shortlist_of_its_own(tmp_path: Path) -> None:
    """A recipe's mhp_shortlist is mhp's default N (mhe keeps mhce_shortlist); the run directory
    names an N only where it differs from the mode's default. The LibreOffice recipe: mhe 1,024,
    mhp 4,096."""
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, mhce_shortlist=1024, mhp_shortlist=4096)
    mhp = recipe_config(recipe, ["--mode", "mhp"])
    assert last_value(train_command(mhp.bin, mhp.checkpoints, mhp.train, 16000), "--mhce-shortlist") == "4096"
    assert mhp.run_dir.name == "spm16000-mhp"
    assert recipe_config(recipe, ["--mode", "mhp", "--mhce-shortlist", "4096"]).run_dir.name == "spm16000-mhp"
    assert recipe_config(recipe, ["--mode", "mhp", "--mhce-shortlist", "1024"]).run_dir.name == "spm16000-mhp-s1024"
    mhe = recipe_config(recipe, ["--mode", "mhe"])
    assert last_value(train_command(mhe.bin, mhe.checkpoints, mhe.train, 16000), "--mhce-shortlist") == "1024"
    assert recipe_config(recipe, ["--mode", "mhe", "--mhce-shortlist", "4096"]).run_dir.name == "spm16000-mhe-s4096"
    from recipes.libreoffice_de_en.run import RECIPE
    assert [config.default_shortlist(RECIPE, mode, 16000) for mode in ("mhe", "mhp")] == [1024, 4096]


def test_from_the_recipes_wide_vocab_up_mhe_takes_mhps_shortlist(tmp_path: Path) -> None:
    """With wide_vocab set, mhe's default N is mhp's from that vocabulary size up (sentencepiece pieces, or
    the --word-level dictionary cap), mhce_shortlist below it; a given N is kept, and the run directory
    names it where it differs from the default at that size. The LibreOffice recipe: 4,096 from 24k up."""
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, mhce_shortlist=1024,
                             mhp_shortlist=4096, wide_vocab=24000)
    for options, shortlist, run in ((["--vocab-size", "16000"], "1024", "spm16000-mhe"),
                                    (["--vocab-size", "23999"], "1024", "spm23999-mhe"),
                                    (["--vocab-size", "24000"], "4096", "spm24000-mhe"),
                                    (["--vocab-size", "32000"], "4096", "spm32000-mhe"),
                                    (["--vocab-size", "32000", "--mhce-shortlist", "1024"], "1024", "spm32000-mhe-s1024"),
                                    (["--vocab-size", "16000", "--mhce-shortlist", "4096"], "4096", "spm16000-mhe-s4096"),
                                    (["--word-level"], "4096", "word32000-mhe")):
        cfg = recipe_config(recipe, ["--mode", "mhe", *options])
        assert last_value(train_command(cfg.bin, cfg.checkpoints, cfg.train, 30000), "--mhce-shortlist") == shortlist
        assert (cfg.shortlist, cfg.run_dir.name) == (int(shortlist), run)
    old = recipe_config(recipe, ["--mode", "mhe", "--vocab-size", "32000"])  # trained when mhe's N was 1,024
    old.checkpoints.mkdir(parents=True)
    torch.save({"cfg": {"model": argparse.Namespace(mhce_shortlist=1024)}}, old.checkpoints / "checkpoint_last.pt")
    with pytest.raises(SystemExit, match=f"{old.run_dir} holds a mhe trained with --mhce-shortlist 1024, this run "
                                         f"asks for 4096: move it to {old.run_dir}-s1024, where --mhce-shortlist "
                                         "1024 goes on with it, or give --force to train afresh here"):
        pipeline.stage_train(old)
    (old.checkpoints / "checkpoint_last.pt").rename(tmp_path / "last.pt")
    moved = recipe_config(recipe, ["--mode", "mhe", "--vocab-size", "32000", "--mhce-shortlist", "1024"])
    moved.checkpoints.mkdir(parents=True)
    (tmp_path / "last.pt").rename(moved.checkpoints / "checkpoint_last.pt")
    run_state.refuse_another_shortlist(moved, moved.checkpoints / "checkpoint_last.pt", "")  # the same N
    torch.save({"cfg": {"model": argparse.Namespace(mhce_shortlist=4096)}}, moved.checkpoints / "checkpoint_best.pt")
    with pytest.raises(SystemExit, match=f"{moved.run_dir} holds a mhe trained with --mhce-shortlist 4096, this run "
                                         f"asks for 1024: move it to {old.run_dir}, where --mhce-shortlist 4096 "
                                         "goes on with it, or train afresh here with --stage train --force"):
        pipeline.stage_generate(moved)  # the recipe's N at 32k: the directory without -sN
    best = moved.checkpoints / "checkpoint_best.pt"
    torch.save({"args": argparse.Namespace(mhce_shortlist=4096)}, best)  # an older fairseq's checkpoint
    with pytest.raises(SystemExit, match="holds a mhe trained with --mhce-shortlist 4096, this run asks for 1024"):
        run_state.refuse_another_shortlist(moved, best, "")
    torch.save({"model": {}}, best)  # no configuration saved: nothing to compare, fairseq's own checks decide
    run_state.refuse_another_shortlist(moved, best, "")
    narrow = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, mhce_shortlist=1024, mhp_shortlist=4096)
    assert recipe_config(narrow, ["--mode", "mhe", "--vocab-size", "32000"]).shortlist == 1024  # no wide_vocab
    from recipes.libreoffice_de_en.run import RECIPE
    assert [config.default_shortlist(RECIPE, mode, 32000) for mode in ("mhe", "mhp")] == [4096, 4096]


def test_per_level_smoothing_is_an_ablation_with_its_own_run(tmp_path: Path) -> None:
    """--mhce-smoothing per-level reaches fairseq-train's criterion for mhe and mhp, names the run
    -per-level and the summary's output layer says so (read from the checkpoint's criterion);
    joint (the default) adds nothing, and other modes refuse the option."""
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, mhce_shortlist=1024)
    for mode in ("mhe", "mhp"):
        cfg = recipe_config(recipe, ["--mode", mode, "--mhce-smoothing", "per-level"])
        assert last_value(train_command(cfg.bin, cfg.checkpoints, cfg.train, 16000), "--mhce-smoothing") == "per-level"
        assert cfg.run_dir.name == f"spm16000-{mode}-per-level"
    joint = recipe_config(recipe, ["--mode", "mhe", "--mhce-smoothing", "joint"])
    assert "--mhce-smoothing" not in train_command(joint.bin, joint.checkpoints, joint.train, 16000)
    assert joint.run_dir.name == "spm16000-mhe"
    with pytest.raises(SystemExit, match="--mhce-smoothing applies to --mode mhe or mhp, not softmax"):
        recipe_config(recipe, ["--mode", "softmax", "--mhce-smoothing", "per-level"])
    cfg = recipe_config(recipe, ["--mode", "mhp", "--mhce-smoothing", "per-level"])
    run_state.checkpoint_path(cfg).parent.mkdir(parents=True)
    model = argparse.Namespace(mhce_heads="110,109", mhce_shortlist=4096)
    # fairseq saves the criterion's section as a dict (a Namespace where args built it)
    for smoothing, said, section in (("per-level", True, dict), ("joint", False, dict),
                                     ("per-level", True, argparse.Namespace), ("joint", False, argparse.Namespace)):
        torch.save({"cfg": {"model": model, "criterion": section(mhce_smoothing=smoothing)}},
                   run_state.checkpoint_path(cfg))
        described = run_state.output_layer_description(cfg)
        assert described.startswith("mhp (shortlist 4096 + heads 110x109") and ("per-level smoothing" in described) == said


def test_mhce_tie_shortlist_option(tmp_path: Path) -> None:
    """--mhce-tie-shortlist reaches fairseq-train for mhe and mhp with a shortlist and names the
    run -tieshort; refused without a shortlist, for other modes, and beside a tied mhe."""
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, mhce_shortlist=1024)
    for mode in ("mhe", "mhp"):
        cfg = recipe_config(recipe, ["--mode", mode, "--mhce-tie-shortlist"])
        assert "--mhce-tie-shortlist" in train_command(cfg.bin, cfg.checkpoints, cfg.train, 16000)
        assert cfg.run_dir.name == f"spm16000-{mode}-tieshort"
    plain = recipe_config(recipe, ["--mode", "mhe"])
    assert "--mhce-tie-shortlist" not in train_command(plain.bin, plain.checkpoints, plain.train, 16000)
    for argv in (["--mode", "softmax"], ["--mode", "mhe", "--mhce-shortlist", "0"]):
        with pytest.raises(SystemExit, match="--mhce-tie-shortlist ties a shortlist's rows"):
            recipe_config(recipe, [*argv, "--mhce-tie-shortlist"])
    with pytest.raises(SystemExit, match="give --no-mhe-tie-label-embeddings or drop --mhce-tie-shortlist"):
        recipe_config(recipe, ["--mode", "mhe", "--mhe-tie-label-embeddings", "--mhce-tie-shortlist"])
    tied_recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, mhce_shortlist=1024, mhe_tied=True)
    both = recipe_config(tied_recipe, ["--mode", "mhe", "--no-mhe-tie-label-embeddings", "--mhce-tie-shortlist"])
    assert both.run_dir.name == "spm16000-mhe-tieshort"


def test_a_seed_other_than_1_gets_its_own_run_directory(tmp_path: Path) -> None:
    """--seed N other than 1 names the run -seedN, so a second seed never resumes the first one's
    checkpoints, and reaches fairseq-train; seed 1 adds nothing."""
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, mhce_shortlist=1024)
    for mode in ("mhe", "softmax"):
        cfg = recipe_config(recipe, ["--mode", mode, "--seed", "2"])
        assert cfg.run_dir.name == f"spm16000-{mode}-seed2"
        assert last_value(train_command(cfg.bin, cfg.checkpoints, cfg.train, 16000), "--seed") == "2"
    assert recipe_config(recipe, ["--mode", "mhe", "--seed", "1"]).run_dir.name == "spm16000-mhe"
    both = recipe_config(recipe, ["--mode", "mhe", "--mhce-tie-shortlist", "--seed", "3"])
    assert both.run_dir.name == "spm16000-mhe-tieshort-seed3"


def test_lr_schedule_linear_budget_reaches_fairseq_with_both_budgets(tmp_path: Path) -> None:
    """--lr-schedule linear-budget: the plugin's linear_budget ends at --max-update or at the time cap
    (the same hours as --stop-time-hours); fairseq's own parser reads it; one of the two is needed."""
    import mhce_nmt  # noqa: F401  (registers the plugin's architectures and schedule)
    from fairseq import options

    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, lr=2e-3, mhce_shortlist=64,
                             max_update=3000, train_minutes=39.0)
    cfg = recipe_config(recipe, ["--mode", "mhe", "--lr-schedule", "linear-budget"])
    cmd = train_command(Path("/bin-dir"), tmp_path / "ckpt", cfg.train, 16000)
    args = options.parse_args_and_arch(options.get_training_parser(), cmd[1:])
    assert args.lr_scheduler == "linear_budget" and args.total_num_update == 3000 and args.end_learning_rate == 0
    assert args.budget_hours == args.stop_time_hours == 0.65 and args.max_update == 3000
    time_only = recipe_config(recipe, ["--lr-schedule", "linear-budget", "--max-update", "0"])
    assert last_value(train_command(Path("/b"), tmp_path, time_only.train, 16000), "--total-num-update") == "0"
    with pytest.raises(SystemExit, match="give at least one of them"):
        recipe_config(recipe, ["--lr-schedule", "linear-budget", "--max-update", "0", "--train-minutes", "0"])


@pytest.mark.e2e
def test_a_run_begun_with_fairseqs_adam_resumes_with_it_under_adam_fused(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A run interrupted under fairseq's adam (the recipe's optimizer before adam_fused) goes on with
    adam and says so, where fairseq would stop with an AssertionError."""
    work = tmp_path / "work"
    write_data(work)
    argv = ["--mode", "mhe", "--workers", "1", "--log-format", "simple"]
    old, new = (config.Recipe(name="tiny", src="de", tgt="en", work_dir=work, vocab_size=120, warmup_updates=5,
                                max_tokens=2048, model_args=(*TINY_MODEL, "--optimizer", optimizer))
                for optimizer in ("adam", "adam_fused"))
    for stage in ("spm", "binarize", "train"):
        cfg = pipeline.main(old, [*argv, "--max-update", "3", "--stage", stage])
    last = cfg.checkpoints / "checkpoint_last.pt"

    def saved_optimizers() -> list[str]:
        return [h["optimizer_name"] for h in torch.load(last, weights_only=False)["optimizer_history"]]

    assert saved_optimizers() == ["FairseqAdam"]
    (cfg.run_dir / "train.json").unlink()  # interrupted: the recipe trains again, from checkpoint_last.pt
    capfd.readouterr()

    pipeline.main(new, [*argv, "--max-update", "6", "--stage", "train"])
    assert "holds --optimizer adam's state: resuming with it" in capfd.readouterr().out
    assert re.search(r"\(epoch \d+ @ 3 updates\)", (cfg.checkpoints / "train.out").read_text())
    trained = json.loads((cfg.run_dir / "train.json").read_text())
    assert (trained["num_updates"], trained["optimizer"]) == (6, "adam")
    assert saved_optimizers()[-1] == "FairseqAdam"


def test_force_starts_afresh_with_the_recipes_optimizer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, mhce_shortlist=1024)
    argv = ["--mode", "mhe", "--stage", "train", "--dry-run"]
    checkpoints = recipe_config(recipe, argv).checkpoints
    checkpoints.mkdir(parents=True)
    torch.save({"optimizer_history": [{"optimizer_name": "FairseqAdam"}]}, checkpoints / "checkpoint_last.pt")
    for extra, optimizer in (([], "adam"), (["--force"], "adam_fused")):
        pipeline.main(recipe, [*argv, *extra])
        out = capsys.readouterr().out
        command = shlex.split(next(line[2:] for line in out.splitlines() if line.startswith("+ fairseq-train")))
        assert last_value(command, "--optimizer") == optimizer
        assert ("resuming with it" in out) == (optimizer == "adam")


@pytest.mark.parametrize("saved, requested, expected", [
    ("FairseqAdam", "adam_fused", "adam"), ("FusedAdam", "adam", "adam_fused"),  # the pair: the saved one
    ("FairseqAdam", "adam", None), ("FusedAdam", "adam_fused", None),  # the same class: as asked
    ("FP16Optimizer", "adam_fused", None), (None, "adam_fused", None),  # a wrapper, no history: fairseq decides
    ("FairseqAdam", "sgd", None),  # outside the pair: fairseq's own check
])
def test_the_optimizer_a_checkpoint_resumes_with(saved: str | None, requested: str, expected: str | None,
                                                 tmp_path: Path) -> None:
    from recipes.resume import resume_optimizer

    checkpoint = tmp_path / "checkpoint_last.pt"
    assert resume_optimizer(checkpoint, requested) is None  # no checkpoint yet
    torch.save({"optimizer_history": [{"criterion_name": "C", "optimizer_name": saved}] if saved else []}, checkpoint)
    assert resume_optimizer(checkpoint, requested) == expected


@pytest.mark.slow
def test_a_code_layout_and_factored_embeddings_reach_fairseq_and_name_the_run(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--mhce-layout FILE and --mhce-embeddings factored pass to fairseq-train (the layout by absolute path)
    and give the run its own directory; for softmax, or with a missing file, the recipe stops in one line."""
    layout = tmp_path / "kmeans.txt"
    layout.write_text("0\n1\n2\n3\n", encoding="utf-8")
    cfg = libreoffice.main(["--dry-run", "--work-dir", str(tmp_path / "work"), "--mhce-layout", str(layout),
                            "--mhce-embeddings", "factored", "--stage", "train"])
    train = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("+ fairseq-train"))
    assert f"--mhce-layout {layout.resolve()} --mhce-embeddings factored" in train
    assert cfg.run_dir.name == "spm16000-mhe-layout-kmeans-factored"
    for argv, message in ((["--mode", "softmax", "--mhce-layout", str(layout)], "--mhce-layout applies to --mode mhe or mhp"),
                          (["--mode", "adaptive", "--mhce-embeddings", "factored"], "--mhce-embeddings applies"),
                          (["--mhce-layout", str(tmp_path / "missing.txt")], "missing.txt not found")):
        with pytest.raises(SystemExit, match=re.escape(message)):
            libreoffice.main(["--dry-run", "--work-dir", str(tmp_path / "work"), *argv])


@pytest.mark.parametrize("inner", ["", "layer."])
def test_output_layer_params_count_parameters_only_and_the_shortlists_own_rows(tmp_path: Path, inner: str) -> None:
    """A tied shortlist scores N rows of the shared (V, d) table: N x d count, not V x d; the codec specs and
    a code layout's permutation are buffers, not parameters; the same inside a PermutedOutput ("layer.")."""
    prefix = f"decoder.output_projection.{inner}"
    state = {f"{prefix}short_weight": torch.zeros(10, 4), f"{prefix}shortlist_spec": torch.tensor([10, 3, 2, 4]),
             f"{prefix}tail.embeddings.0": torch.zeros(7, 4), "decoder.output_projection.layout": torch.arange(10),
             "decoder.embed_tokens.weight": torch.zeros(10, 4)}
    torch.save({"model": state}, tmp_path / "checkpoint.pt")
    assert run_state.output_layer_params(tmp_path / "checkpoint.pt") == 3 * 4 + 7 * 4


@pytest.mark.parametrize("began_bf16", [False, True])
def test_a_resumed_run_keeps_the_precision_it_began_in_unless_the_user_chose(tmp_path: Path, monkeypatch,
                                                                           began_bf16: bool) -> None:
    """The recipe's probe may measure the other way on a later day: a run resumed from checkpoint_last.pt
    goes on in the precision of its first attempt, and says so; an explicit flag or --force decides."""
    monkeypatch.setattr(autocast, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(autocast, "probe_cpu_precision",  # today's probe says the opposite of the first attempt
                        lambda size: autocast.PrecisionProbe(100.0, 120.0 if began_bf16 else 60.0))
    recipe = config.Recipe(name="t", src="de", tgt="en", work_dir=tmp_path, autocast_bf16=True)
    cfg = recipe_config(recipe, ["--mode", "softmax"])
    assert cfg.train.autocast_bf16 is not began_bf16 and cfg.precision_note
    first = ["fairseq-train", "bin", "--max-tokens", "1024"] + (["--autocast-bf16"] if began_bf16 else [])
    (cfg.checkpoints).mkdir(parents=True)
    (cfg.run_dir / "train-origins.jsonl").write_text(json.dumps({"command": shlex.join(first)}) + "\n")
    assert pipeline.resumed_precision(cfg) is cfg  # nothing to resume yet
    (cfg.checkpoints / "checkpoint_last.pt").write_bytes(b"")
    kept = pipeline.resumed_precision(cfg)
    assert kept.train.autocast_bf16 is began_bf16 and "the precision this run began in" in kept.precision_note
    for flag in ("--autocast-bf16", "--no-autocast-bf16", "--force"):
        chosen = recipe_config(recipe, ["--mode", "softmax", flag])
        assert pipeline.resumed_precision(chosen).train.autocast_bf16 is chosen.train.autocast_bf16
