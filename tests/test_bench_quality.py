"""The quality benchmark's bookkeeping: log parsing, checkpoint lookup, arms, table and plot
(the training runs themselves live in scripts/bench_quality.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from recipes import config
from recipes.summary import record_origin
from scripts import bench_quality as bench

REPO = Path(__file__).resolve().parents[1]

# lines as fairseq-train's --log-file writes them (copied from a real run)
INNER = ("epoch 001:     {n} / 213 loss=12.971, nll_loss=12.672, total=3337.3, n_correct=6.3, "
         "ppl=6527.02, accuracy=0.189, wps={wps}, ups=0.74, wpb={wpb}, bsz=131.2, num_updates={n}, "
         "lr=2e-05, gnorm=11.909, train_wall=13, wall=29")
VALID = ("epoch {e:03d} | valid on 'valid' subset | loss 9.648 | nll_loss 8.864 | total 2193.54 | "
         "ppl {ppl} | accuracy 14.921 | wps 1408.7 | wpb 2193.5 | bsz 117.4 | num_updates {n}")
EPOCH = "epoch 001 | loss 10.8 | nll_loss 10.4 | ppl 1338.94 | wps 9999.9 | wpb 9999.9 | num_updates 213"


def record(method, variant, updates, bleu, vocab=16004, minutes=None):
    return {"vocab": vocab, "method": method, "variant": variant, "updates": updates, "bleu": bleu,
            "chrf": 40.0, "bp": 0.95, "hyp_ref_ratio": 0.951, "valid_ppl": 20.0, "train_words_per_s": 2000.0,
            "train_minutes": minutes, "decode_sentences_per_s": 30.0, "decode_tokens_per_s": 600.0,
            "bleu_signature": "nrefs:1|tok:13a", "commit": "0123abc", "command": "python scripts/bench_quality.py"}


def test_log_numbers_reads_medians_and_validation_by_update(tmp_path: Path):
    lines = [INNER.format(n=10, wps=50.0, wpb=3000.0), INNER.format(n=20, wps=2000.0, wpb=3100.0),
             INNER.format(n=20, wps=2000.0, wpb=3100.0),  # fairseq's log file repeats lines
             VALID.format(e=1, ppl=466.05, n=213), EPOCH, INNER.format(n=230, wps=2200.0, wpb=3200.0),
             INNER.format(n=240, wps=2100.0, wpb=2900.0), VALID.format(e=2, ppl=120.5, n=500)]
    log = tmp_path / "train.log"
    log.write_text("\n".join(lines) + "\n")
    numbers = bench.log_numbers(log)
    assert numbers["wps"] == 2100.0  # median after the first (warm-up) interval; summaries ignored
    assert numbers["wpb"] == 3100.0  # (the first interval left out as for wps)
    assert numbers["valid_ppl"] == {213: 466.05, 500: 120.5}
    assert bench.log_numbers(tmp_path / "missing.log") == {"wps": None, "wpb": None, "valid_ppl": {}}


def test_checkpoint_lookup_and_arm_directories(tmp_path: Path):
    (tmp_path / "checkpoint_3_500.pt").write_bytes(b"")
    (tmp_path / "checkpoint_5_1000.pt").write_bytes(b"")
    assert bench.checkpoint_at(tmp_path, 500).name == "checkpoint_3_500.pt"
    assert bench.checkpoint_at(tmp_path, 1500) is None
    assert bench.checkpoint_at(tmp_path, 100) is None  # not confused with ..._1000.pt
    assert bench.arm_dir(tmp_path, "mhe/per-level") == tmp_path / "arms" / "mhe-per-level"


def test_every_arm_names_a_known_method_and_its_options():
    for name, (method, variant, extra) in bench.ARMS.items():
        assert name == method + (f"/{variant}" if variant else "")
        assert method in ("softmax", "adaptive", "mhe", "mhp")
        assert bool(extra) == bool(variant)
    assert bench.ARMS["mhe/per-level"][2] == ("--mhce-smoothing", "per-level")


@pytest.mark.parametrize("arm", ["mhe/shortlist", "mhp/shortlist", "mhp/shortlist4096"])
def test_a_shortlist_arm_is_named_as_a_recipe_run_with_that_shortlist_is(arm: str):
    """A benchmark arm and a recipe run of the same shortlist size draw one curve: the arm's variant is
    the name recipe_record gives a summary whose output layer has that many shortlisted ids."""
    method, variant, extra = bench.ARMS[arm]
    size = int(extra[extra.index("--mhce-shortlist") + 1])
    summary = {"pair": "de-en", "mode": method, "arm": method, "tail_order": "frequency",
               "data_pairs": {"test": 2000}, "dictionary": {"de": 16000, "en": 16000}, "num_updates": 2000,
               "output": f"{method} (shortlist {size} + heads 110x109)"}
    assert bench.recipe_record(summary, "demo-fp32")["variant"] == variant


def test_table_orders_arms_and_updates_and_plot_is_written(tmp_path: Path):
    records = [record("mhe", "", 1000, 20.1, minutes=10.0), record("softmax", "", 500, 9.0, minutes=12.0),
               record("mhe", "", 500, 12.5, minutes=5.0), record("mhe", "per-level", 500, 11.0),
               record("softmax", "", 1000, 19.0, minutes=24.0)]
    table = bench.markdown_table(records)
    rows = [line for line in table.splitlines() if line.startswith("| 16,004")]
    assert [r.split(" | ")[1:3] for r in rows] == [["mhe", "500"], ["mhe", "1,000"], ["softmax", "500"],
                                                   ["softmax", "1,000"], ["mhe/per-level", "500"]]
    assert "| BP |" in table and "nrefs:1|tok:13a" in table
    path = tmp_path / "quality.json"
    path.write_text(json.dumps(records))
    assert bench.main(["--plot-only", str(path)]) == records
    assert path.with_suffix(".png").stat().st_size > 10_000
    assert path.with_suffix(".md").read_text() == table


@pytest.mark.parametrize("argv,message", [(["--interval", "0"], "--interval must be >= 1"),
                                          (["--max-update", "100", "--interval", "500"], "<= --max-update"),
                                          (["--arms", "nope"], "invalid choice")])
def test_bad_options_are_refused(capsys, argv, message):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


def test_records_are_keyed_by_the_training_schedule():
    default = bench.parse_args([])
    assert bench.settings_tag(default) == bench.DEFAULT_SETTINGS == "w1000-t4096-s1"
    other = bench.parse_args(["--seed", "2", "--warmup-updates", "500"])
    assert bench.settings_tag(other) == "w500-t4096-s2"
    legacy = record("mhe", "", 500, 12.0)  # written before records carried their settings
    assert bench.record_key(legacy) == (16004, "mhe", "", 500, "w1000-t4096-s1", 1)
    assert bench.record_key(dict(legacy, settings="w500-t4096-s2")) != bench.record_key(legacy)


def test_an_arm_with_every_point_recorded_is_skipped():
    args = bench.parse_args(["--max-update", "1000", "--interval", "500"])
    records = [record("mhe", "", 500, 10.0), record("mhe", "", 1000, 20.0), record("softmax", "", 500, 9.0)]
    assert bench.arm_scored(records, "mhe", 16004, args)
    assert not bench.arm_scored(records, "softmax", 16004, args)  # 1000 is missing
    assert not bench.arm_scored(records, "mhe", 32004, args)  # another vocabulary
    assert not bench.arm_scored(records, "mhe", 16004, bench.parse_args(["--max-update", "1500", "--interval", "500"]))


def test_points_are_scored_once_per_length_penalty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A saved checkpoint with a record at --lenpen (of this schedule and seed) is not decoded again; at
    another --lenpen every point is, at that length penalty (records before the field: 1)."""
    run_dir = tmp_path / "arms" / "mhe"
    for updates in (500, 1000):
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run_dir / "checkpoints" / f"checkpoint_1_{updates}.pt").write_bytes(b"")
    decoded = []

    def fake_decode(cfg, method, checkpoint, out_dir, topk):
        decoded.append((checkpoint.name, cfg.lenpen))
        return {"bleu": 1.0, "chrf": 2.0, "bp": 1.0, "lenpen": cfg.lenpen}

    monkeypatch.setattr(bench, "decode_checkpoint", fake_decode)
    for lenpen, expected in ((1.0, ["checkpoint_1_1000.pt"]), (2.0, ["checkpoint_1_500.pt", "checkpoint_1_1000.pt"])):
        args = bench.parse_args(["--max-update", "1000", "--interval", "500", "--lenpen", f"{lenpen:g}"])
        namespace = __import__("argparse").Namespace(
            work_dir=tmp_path, vocab_size=16000, max_update=1000, warmup_updates=1000, max_tokens=4096, seed=1,
            train_minutes=0, batch_size=64, bf16=False, model="small", lr=1e-3, dropout=0.2, lenpen=args.lenpen)
        cfg, _ = bench.recipe_config(namespace)
        records = [record("mhe", "", 500, 10.0)]  # written before records carried their length penalty
        decoded.clear()
        bench.score_arm(cfg, "mhe", run_dir, args, records, save=lambda current: None)
        assert decoded == [(name, lenpen) for name in expected]
        assert [(r["updates"], r.get("lenpen")) for r in records[1:]] == [(int(n[13:-3]), lenpen) for n in expected]


def test_learning_rate_and_dropout_join_the_schedule_and_reach_fairseq(tmp_path: Path):
    args = bench.parse_args(["--lr", "2e-3", "--dropout", "0.1", "--warmup-updates", "500"])
    assert bench.settings_tag(args) == "w500-t4096-s1-lr0.002-d0.1"
    namespace = __import__("argparse").Namespace(
        work_dir=tmp_path, vocab_size=16000, max_update=100, warmup_updates=500, max_tokens=4096, seed=1,
        train_minutes=0, batch_size=64, bf16=False, model="small", lr=args.lr, dropout=args.dropout, lenpen=1.0)
    cfg, _ = bench.recipe_config(namespace)
    words = list(cfg.train.model_args)
    assert words[len(words) - 1 - words[::-1].index("--lr") + 1] == "0.002"
    assert words[len(words) - 1 - words[::-1].index("--dropout") + 1] == "0.1"
    assert cfg.train.shortlist_args == ()  # arms choose their shortlist, never the demo's default


def test_merge_keeps_one_record_per_point_and_valid_curves_read_train_logs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps([record("mhe", "", 500, 10.0), record("softmax", "", 500, 9.0)]))
    second.write_text(json.dumps([record("mhe", "", 500, 11.0), record("mhe", "", 1000, 20.0)]))
    out = tmp_path / "merged" / "all.json"
    merged = bench.main(["--merge", str(out), str(first), str(second)])
    assert sorted((r["method"], r["updates"], r["bleu"]) for r in merged) == [
        ("mhe", 500, 11.0), ("mhe", 1000, 20.0), ("softmax", 500, 9.0)]
    assert json.loads(out.read_text()) == merged and out.with_suffix(".png").exists()
    with pytest.raises(SystemExit, match="not found"):
        bench.main(["--merge", str(out), str(tmp_path / "missing.json")])
    lenpens = tmp_path / "lenpens.json"  # one model decoded at two length penalties: two records
    lenpens.write_text(json.dumps([{**record("mhe", "", 500, 10.0), "lenpen": 1.0},
                                   {**record("mhe", "", 500, 10.5), "lenpen": 2.0}]))
    assert [r["bleu"] for r in bench.main(["--merge", str(out), str(lenpens)])] == [10.0, 10.5]

    log = tmp_path / "quality-spm16000-w500-t8192-s1" / "arms" / "mhe-shortlist" / "checkpoints" / "train.log"
    log.parent.mkdir(parents=True)
    log.write_text("\n".join([VALID.format(e=1, ppl=300.0, n=213), VALID.format(e=2, ppl=61.8, n=500),
                              VALID.format(e=2, ppl=61.8, n=500), VALID.format(e=5, ppl=20.6, n=1000)]) + "\n")
    table_path = tmp_path / "valid.md"
    assert bench.main(["--valid-curves", str(table_path), str(log)]) == []
    assert table_path.read_text().splitlines()[2] == "| spm16000-w500-t8192-s1 mhe-shortlist | 61.8 | 20.6 |"
    assert table_path.with_suffix(".png").stat().st_size > 10_000
    assert bench.main(["--valid-curves", str(table_path), str(log), "--valid-every", "213"]) == []
    assert table_path.read_text().splitlines()[0] == "| run | 213 |"  # 213's multiples only: epoch 1
    assert table_path.read_text().splitlines()[2] == "| spm16000-w500-t8192-s1 mhe-shortlist | 300.0 |"
    for bad in (["--valid-curves", str(table_path), str(log), "--valid-every", "0"], ["--valid-every", "213"]):
        with pytest.raises(SystemExit):
            bench.main(bad)
        assert "--valid-every" in capsys.readouterr().err.splitlines()[-1]


def test_benchmarks_keep_their_schedule_whatever_the_demo_uses(tmp_path: Path):
    from recipes.libreoffice_de_en import run as libreoffice

    assert libreoffice.RECIPE.lr_schedule == "linear-budget"  # the demo's choice
    assert config.default_shortlist(libreoffice.RECIPE, "mhe", libreoffice.RECIPE.vocab_size) == 1024
    namespace = __import__("argparse").Namespace(
        work_dir=tmp_path, vocab_size=16000, max_update=100, warmup_updates=1000, max_tokens=4096, seed=1,
        train_minutes=0, batch_size=64, bf16=False, model="small", lr=1e-3, dropout=0.2, lenpen=1.0)
    cfg, _ = bench.recipe_config(namespace)
    assert cfg.average_last == 0 and cfg.train.save_interval_updates == 0 and cfg.train.shortlist_args == ()
    assert {"polynomial_decay", "linear_budget"}.isdisjoint(cfg.train.model_args)  # inverse_sqrt, whatever the demo uses
    words = list(cfg.train.model_args)
    assert words[len(words) - 1 - words[::-1].index("--lr") + 1] == "0.001"
    assert "adam_fused" in config.CPU_MODEL_ARGS  # the demo's optimizer; the records were measured with adam
    assert words[len(words) - 1 - words[::-1].index("--optimizer") + 1] == "adam"


def test_recipe_summaries_become_records_with_their_length_penalty(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A recipe run's summary.json (fields as recipes/pipeline.py writes them) -> one record per
    run; the same arm at two length penalties stays two curves; a shortlist other than 1,024 ids (mhe's
    default) is named by its size, read from the summary's output layer (arm mhp-s4096, or mhp at its
    default of 4,096), and 1,024 is plain "shortlist" whatever the run directory says (mhp-s1024)."""
    def summary(mode, output, bleu, lenpen, arm=None):
        return {"tail_order": "context" if "context" in output else "frequency","pair": "de-en", "mode": mode, "arm": arm or mode, "vocab": "spm16000", "data_pairs": {"train": 9, "valid": 3, "test": 2000},
                "dictionary": {"de": 16000, "en": 16000}, "num_updates": 2000, "train_words_per_s": 1500.0,
                "valid_ppl": 13.1, "decode_sentences_per_s": 40.0, "decode_tokens_per_s": 800.0, "beam": 5,
                "lenpen": lenpen, "bleu": bleu, "bleu_signature": "nrefs:1|tok:13a", "bleu_detail": "BLEU = ...",
                "bp": 0.99, "hyp_ref_ratio": 0.99, "chrf": 52.0, "output": output, "valid_bleu": bleu + 1,
                **record_origin([ORIGIN], {**ORIGIN, "command": "fairseq-generate data"})}
    files = []
    for i, (mode, output, bleu, lenpen) in enumerate((
            ("softmax", "softmax", 28.0, 1.0), ("mhe", "mhe (shortlist 1024 + heads 123x122)", 27.8, 1.0),
            ("mhe", "mhe (shortlist 1024 + heads 123x122)", 28.5, 2.0),
            ("mhe-tied", "mhe (shortlist 1024 + heads 123x122, tied)", 28.6, 1.0),
            ("mhe", "mhe (shortlist 1024 + heads 123x122, tail grouped by context)", 28.9, 2.0),
            ("mhp-s4096", "mhp (shortlist 4096 + heads 110x109)", 28.2, 2.0),
            ("mhp", "mhp (shortlist 4096 + heads 110x109)", 28.3, 2.0),  # mhp's default N today
            ("mhp-s1024", "mhp (shortlist 1024 + heads 123x122)", 27.2, 2.0),
            ("mhe-per-level", "mhe (shortlist 1024 + heads 123x122, per-level smoothing)", 27.5, 2.0),
            ("mhe-tieshort-s2048-seed3", "mhe (shortlist 2048 + heads 119x118)", 28.4, 2.0))):
        files.append(tmp_path / f"s{i}.json")
        files[-1].write_text(json.dumps(summary(mode.split("-")[0], output, bleu, lenpen, arm=mode)))
    out = tmp_path / "demo.json"
    records = bench.main(["--recipe-summaries", str(out), *map(str, files), "--settings", "demo-fp32"])
    assert [(r["method"], r["variant"], r["updates"], r["bleu"], r["lenpen"], r["vocab"], r["settings"])
            for r in records] == [("softmax", "", 2000, 28.0, 1.0, 16000, "demo-fp32"),
                                  ("mhe", "shortlist", 2000, 27.8, 1.0, 16000, "demo-fp32"),
                                  ("mhe", "shortlist", 2000, 28.5, 2.0, 16000, "demo-fp32"),
                                  ("mhe", "shortlist+tied", 2000, 28.6, 1.0, 16000, "demo-fp32"),
                                  ("mhe", "shortlist+ctx", 2000, 28.9, 2.0, 16000, "demo-fp32"),
                                  ("mhp", "shortlist4096", 2000, 28.2, 2.0, 16000, "demo-fp32"),
                                  ("mhp", "shortlist4096", 2000, 28.3, 2.0, 16000, "demo-fp32"),
                                  ("mhp", "shortlist", 2000, 27.2, 2.0, 16000, "demo-fp32"),
                                  ("mhe", "shortlist+per-level", 2000, 27.5, 2.0, 16000, "demo-fp32"),
                                  ("mhe", "shortlist2048+tieshort", 2000, 28.4, 2.0, 16000, "demo-fp32")]
    assert {(r["valid_bleu"], r["commit"], r["dirty"], r["command"], r["decode_command"]) for r in records[:1]} == {
        (29.0, "0123abc", False, "fairseq-train data --seed 1", "fairseq-generate data")}
    table = out.with_suffix(".md").read_text()
    assert "| mhe/shortlist lenpen 2 |" in table and "| mhe/shortlist |" in table
    assert out.with_suffix(".png").exists()
    with pytest.raises(SystemExit, match="not found"):
        bench.main(["--recipe-summaries", str(out), str(tmp_path / "missing.json")])
    untagged = bench.main(["--recipe-summaries", str(out), str(files[0])])
    assert [r["settings"] for r in untagged] == ["recipe"]  # no --settings: the runs' tag is "recipe"
    for alone in (["--settings", "demo-fp32"], ["--plot-only", str(out), "--settings", "demo-fp32"]):
        with pytest.raises(SystemExit):  # a tag with nothing to tag is refused, not ignored
            bench.main(alone)
        assert "--settings demo-fp32" in capsys.readouterr().err.splitlines()[-1]


ORIGIN = {"commit": "0123abc", "dirty": False, "command": "fairseq-train data --seed 1", "cpu": "AMD EPYC",
          "cpu_bf16": "none", "threads": 2, "python": "3.11.7", "invoked": "python recipes/x/run.py"}


def test_records_and_summaries_without_a_commit_are_refused(tmp_path: Path):
    """A number that cannot be traced to its code is not merged: a record or summary without a commit
    stops the run in one line naming the file."""
    unrecorded = tmp_path / "old.json"
    unrecorded.write_text(json.dumps([record("mhe", "", 500, 10.0), {**record("mhe", "", 1000, 11.0), "commit": ""}]))
    with pytest.raises(SystemExit, match=r"old\.json has a record without a commit"):
        bench.main(["--merge", str(tmp_path / "out.json"), str(unrecorded)])
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"pair": "de-en", "mode": "softmax", "dictionary": {"en": 16000},
                                   "num_updates": 8000, "data_pairs": {"test": 2000}}))
    with pytest.raises(SystemExit, match=r"summary\.json has a record without a commit"):
        bench.main(["--recipe-summaries", str(tmp_path / "out.json"), str(summary)])
    assert not (tmp_path / "out.json").exists()


def test_a_resumed_run_names_every_commit_that_trained_it():
    second = {**ORIGIN, "commit": "4567def", "dirty": True, "command": "fairseq-train data --seed 1 --resume"}
    fields = record_origin([ORIGIN, second, ORIGIN], None)
    assert (fields["commit"], fields["dirty"], fields["command"], fields["train_attempts"]) == (
        "0123abc,4567def", True, "fairseq-train data --seed 1", 3)
    assert "decode_commit" not in fields and record_origin([], None) == {}
    assert record_origin([], ORIGIN) == {"decode_commit": "0123abc", "decode_dirty": False,
                                                  "decode_command": "fairseq-train data --seed 1"}


def test_a_recipe_summary_of_another_seed_keeps_its_variant_and_names_its_seed(tmp_path: Path):
    """A run trained with --seed 2 (arm mhe-tieshort-seed2) is the variant of its seed-1 twin with
    seed 2 as a field and in its curve's label; settings that name another seed are refused."""
    summary = {"pair": "de-en", "mode": "mhe", "arm": "mhe-tieshort-seed2", "seed": 2, "tail_order": "frequency",
               "data_pairs": {"test": 2000}, "dictionary": {"de": 16000, "en": 16000}, "num_updates": 2000,
               "lenpen": 2.0, "bleu": 28.1, "bleu_signature": "nrefs:1", "output": "mhe (shortlist 1024 + heads 123x122)",
               "commit": "0123abc"}
    path = tmp_path / "seed2.json"
    path.write_text(json.dumps(summary))
    (record,) = bench.main(["--recipe-summaries", str(tmp_path / "out.json"), str(path), "--settings", "w500-s2-fp32"])
    assert (record["variant"], record["seed"], record["settings"]) == ("shortlist+tieshort", 2, "w500-s2-fp32")
    assert bench.curve_label(record) == "mhe/shortlist+tieshort seed 2 lenpen 2"
    with pytest.raises(SystemExit, match="trained with seed 2 but --settings w500-s1-fp32 names seed 1"):
        bench.main(["--recipe-summaries", str(tmp_path / "out.json"), str(path), "--settings", "w500-s1-fp32"])
    seed1 = tmp_path / "seed1.json"
    seed1.write_text(json.dumps({**summary, "arm": "mhe-tieshort", "seed": 1, "bleu": 27.9}))
    (first,) = bench.main(["--recipe-summaries", str(tmp_path / "one.json"), str(seed1), "--settings", "demo"])
    (second,) = bench.main(["--recipe-summaries", str(tmp_path / "two.json"), str(path), "--settings", "demo"])
    merged = bench.main(["--merge", str(tmp_path / "both.json"), str(tmp_path / "one.json"), str(tmp_path / "two.json")])
    assert sorted((r["seed"], r["bleu"]) for r in merged) == [(1, 27.9), (2, 28.1)]  # two seeds, two records


def test_records_of_one_update_count_draw_one_row_per_arm(tmp_path: Path, monkeypatch):
    """Recipe runs share one update count: a dot chart with one row per arm (seeds and length
    penalties are dots in it), not learning curves of single points; several counts draw curves."""
    drawn = []
    monkeypatch.setattr(bench, "plot_operating_point", lambda records, path: drawn.append("point"))
    monkeypatch.setattr(bench, "plot_curves", lambda records, path: drawn.append("curves"))
    one = [{"method": m, "variant": v, "updates": 2000, "seed": s, "lenpen": lp, "bleu": 28.0, "bp": 0.99}
           for m, v, s, lp in (("softmax", "", 1, 1.0), ("mhe", "shortlist", 1, 2.0), ("softmax", "", 2, 2.0),
                               ("mhp", "shortlist4096", 1, 1.0))]
    assert bench.arm_rows(one) == ["softmax", "mhe/shortlist", "mhp/shortlist4096"]
    bench.plot(one, tmp_path / "one.png")
    bench.plot([*one, {**one[0], "updates": 1000}], tmp_path / "two.png")
    assert drawn == ["point", "curves"]


@pytest.mark.parametrize("jobs_file", sorted((REPO / "scripts").glob("gpu_quality*.jobs")), ids=lambda p: p.name)
def test_every_prepared_gpu_jobs_file_parses_as_bench_quality_runs(jobs_file: Path):
    """scripts/gpu_quality.sh reads 'name | bench_quality.py options' a line: a prepared file must name
    each job once and give options bench_quality accepts, so a GPU session does not lose its minutes."""
    lines = [line for line in jobs_file.read_text().splitlines() if line.strip()]
    names = [line.split("|", 1)[0].strip() for line in lines]
    assert lines and all(names) and len(set(names)) == len(names)
    for line in lines:
        args = bench.parse_args(line.split("|", 1)[1].split())
        assert args.arms and args.max_update % args.interval == 0
