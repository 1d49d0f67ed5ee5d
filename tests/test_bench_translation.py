"""The translation benchmark's options, table and plot (the training runs live in scripts/)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts import bench_translation as bench

RECORDS = [
    {"method": "softmax", "vocab": 27732, "updates": 40, "train_words_per_s": 1000.0, "train_wall_s": 90.0,
     "train_peak_rss_mb": 1500.0, "decode_sentences_per_s": 20.0, "output_layer_params": 7_100_000,
     "valid_ppl": 900.0, "bleu": 1.5, "chrf": 12.0, "bleu_signature": "nrefs:1|tok:13a", "chrf_signature": "nc:6"},
    {"method": "mhe", "vocab": 27732, "updates": 40, "train_words_per_s": 2500.0, "train_wall_s": 40.0,
     "train_peak_rss_mb": 900.0, "decode_sentences_per_s": 30.0, "output_layer_params": 7_200_000,
     "valid_ppl": 800.0, "bleu": 1.7, "chrf": 12.5, "exhaustive_bleu": 1.7},
]


def test_markdown_table_has_every_method_and_signatures():
    table = bench.markdown_table(RECORDS)
    lines = table.splitlines()
    assert lines[0].startswith("| method | train words/s")
    assert any(line.startswith("| softmax | 1000.0") for line in lines)
    assert any(line.startswith("| mhe | 2500.0") and "7,200,000" in line for line in lines)
    assert "nrefs:1|tok:13a" in table


def test_plot_only_redraws_from_json(tmp_path: Path):
    records = tmp_path / "run.json"
    records.write_text(json.dumps(RECORDS))
    layer = tmp_path / "layer.json"
    layer.write_text(json.dumps([{"method": m, "vocab": v, "train_ms": t} for m, v, t in
                                 [("softmax", 8192, 400.0), ("softmax", 32768, 1700.0),
                                  ("mhe", 8192, 20.0), ("mhe", 32768, 40.0)]]))
    bench.main(["--plot-only", str(records), "--layer-json", str(layer)])
    png = records.with_suffix(".png")
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| mhe |" in records.with_suffix(".md").read_text()


@pytest.mark.parametrize("bad", ["bogus", "mhp+shortlist0", "softmax+shortlist", "mhe+shortlist4k"])
def test_rejects_unknown_methods(bad, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--methods", bad])
    assert f"unknown method {bad!r}" in capsys.readouterr().err


def test_the_benchmarks_keep_their_corpus_without_the_extra_data(tmp_path: Path):
    """The recipe adds calibre and the Debian Reference by default; the benchmarks' records were all
    measured on the LibreOffice text alone, so their corpus leaves the extra data out."""
    _, recipe_args = bench.recipe_config(bench.parse_args(["--work-dir", str(tmp_path)]))
    assert recipe_args.more is False


def test_a_shortlist_method_may_name_its_size(tmp_path: Path):
    """mhp+shortlist1024 and mhe+shortlist4096 train with that N, each in a run directory of its own."""
    cfg, _ = bench.recipe_config(bench.parse_args(["--work-dir", str(tmp_path), "--methods", "mhp+shortlist1024"]))
    for method, size in (("mhp+shortlist1024", "1024"), ("mhe+shortlist4096", "4096")):
        arm = bench.method_settings(cfg, method)
        cmd = bench.train_command(arm.bin, arm.checkpoints, arm.train, 27_728)
        assert cmd[cmd.index("--mhce-shortlist") + 1] == size and arm.run_dir.name == f"spm32000-{method}"


def test_options_reach_the_training_and_decoding_commands(tmp_path: Path, monkeypatch):
    """--train-minutes caps fairseq-train (--stop-time-hours), --batch-size is the decode batch,
    --lenpen the decoding's length penalty (1 by default: fairseq's, no option), and the device is
    auto-detected: --cpu without a GPU, none with one."""
    args = bench.parse_args(["--work-dir", str(tmp_path), "--train-minutes", "1.5", "--batch-size", "128",
                             "--max-tokens", "8192", "--max-update", "900"])
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cfg, _ = bench.recipe_config(args)
    train = bench.train_command(cfg.bin, tmp_path, cfg.train, 27_728)
    assert train[train.index("--stop-time-hours") + 1] == "0.025"
    assert train[train.index("--max-update") + 1] == "900" and train[train.index("--max-tokens") + 1] == "8192"
    assert "--cpu" in train and cfg.batch_size == 128
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    gpu_cfg, _ = bench.recipe_config(args)
    assert "--cpu" not in bench.train_command(cfg.bin, tmp_path, gpu_cfg.train, 27_728)
    decode = bench.benchmark_decoding(gpu_cfg, "mhe", tmp_path / "c.pt", "8").command(tmp_path)
    assert "--cpu" not in decode and decode[decode.index("--batch-size") + 1] == "128"
    assert "--lenpen" not in decode and decode[decode.index("--mhe-topk-groups") + 1] == "8"
    longer, _ = bench.recipe_config(bench.parse_args(["--work-dir", str(tmp_path), "--lenpen", "1.5"]))
    decode = bench.benchmark_decoding(longer, "softmax", tmp_path / "c.pt", "full").command(tmp_path)
    assert decode[decode.index("--lenpen") + 1] == "1.5" and decode[decode.index("--path") + 1] == str(tmp_path / "c.pt")


def test_no_time_cap_by_default(tmp_path: Path):
    cfg, _ = bench.recipe_config(bench.parse_args(["--work-dir", str(tmp_path)]))
    assert cfg.train.stop_time_hours is None and cfg.train.max_update == 160


def test_bf16_trains_under_autocast_and_only_when_asked(tmp_path: Path):
    """--bf16 is the task's --autocast-bf16 (fairseq 0.12's own --bf16 means --tpu); without it the
    benchmark trains in fp32 whatever the demo's default."""
    args = bench.parse_args(["--work-dir", str(tmp_path), "--bf16"])
    cfg, _ = bench.recipe_config(args)
    cmd = bench.train_command(cfg.bin, tmp_path, cfg.train, 27_728)
    assert "--autocast-bf16" in cmd and "--bf16" not in cmd
    plain, _ = bench.recipe_config(bench.parse_args(["--work-dir", str(tmp_path)]))
    assert "--autocast-bf16" not in bench.train_command(cfg.bin, tmp_path, plain.train, 27_728)


def test_base_model_and_fused_softmax_methods_reach_fairseq_train(tmp_path: Path):
    import mhce_nmt  # noqa: F401  (registers the plugin's criterion options)
    from fairseq import options

    cfg, _ = bench.recipe_config(bench.parse_args(["--work-dir", str(tmp_path), "--model", "base"]))
    for method, criterion in (("softmax", "label_smoothed_cross_entropy"),
                              ("softmax-liger", "fused_label_smoothed_cross_entropy")):
        arm = bench.method_settings(cfg, method)
        cmd = bench.train_command(arm.bin, arm.checkpoints, arm.train, 32_000)
        parsed = options.parse_args_and_arch(options.get_training_parser(), cmd[1:])
        assert parsed.criterion == criterion and parsed.encoder_embed_dim == 512 and parsed.decoder_layers == 6
        assert arm.run_dir.name.endswith(method)  # one run directory per arm
    assert parsed.fused_kernel == "liger"
    assert set(bench.FUSED_SOFTMAX_METHODS) == {"softmax-compile", "softmax-torch", "softmax-liger", "softmax-cce"}


@pytest.mark.parametrize("bad", [["--train-minutes", "-1"], ["--batch-size", "0"]])
def test_rejects_bad_cap_and_batch_size(bad, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(bad)
    assert "--train-minutes must be >= 0" in capsys.readouterr().err


def test_prepare_only_is_an_option():
    args = bench.parse_args(["--prepare-only", "--vocab-size", "32000", "--test-lines", "500"])
    assert args.prepare_only and args.vocab_size == 32000 and args.test_lines == 500


def test_shortlist_methods_train_with_the_recipes_shortlist_in_their_own_run_directory(tmp_path: Path):
    """mhe+shortlist / mhp+shortlist take the LibreOffice recipe's N for the mode at --vocab-size (mhp
    4,096; mhe 4,096 from 24k up, 1,024 below); plain mhe has no shortlist."""
    import mhce_nmt  # noqa: F401
    from fairseq import options

    for vocab, mhe_size in ((32000, 4096), (16000, 1024)):
        args = bench.parse_args(["--work-dir", str(tmp_path), "--vocab-size", str(vocab),
                                 "--methods", "softmax", "mhe+shortlist", "mhp+shortlist"])
        cfg, _ = bench.recipe_config(args)
        for method in ("mhe", "mhe+shortlist", "mhp+shortlist"):
            arm = bench.method_settings(cfg, method)
            cmd = bench.train_command(arm.bin, arm.checkpoints, arm.train, vocab)
            parsed = options.parse_args_and_arch(options.get_training_parser(), cmd[1:])
            assert parsed.mhce_mode == method[:3]
            assert parsed.mhce_shortlist == {"mhe": 0, "mhe+shortlist": mhe_size, "mhp+shortlist": 4096}[method]
            assert arm.run_dir.name == f"spm{vocab}-{method}"
