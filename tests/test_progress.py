"""The recipe's training progress line, from fairseq-train output lines (copied from a real run)."""
from __future__ import annotations

import sys

from recipes.runner import run
from recipes.progress import TrainProgress

INNER = ("epoch 002:     97 / 213 loss=8.653, nll_loss=7.754, total=3097.6, n_correct=736.6, ppl={ppl}, "
         "accuracy=23.78, wps=2524.2, ups={ups}, wpb=3097.6, bsz=216.8, num_updates={n}, lr=0.00031, "
         "gnorm=1.8, train_wall=12, wall={wall}")
VALID = ("epoch 002 | valid on 'valid' subset | loss 9.648 | nll_loss 8.864 | ppl {ppl} | "
         "accuracy 14.921 | wps 1408.7 | wpb 2193.5 | bsz 117.4 | num_updates {n}")


def test_prints_at_most_once_a_minute_and_after_validation():
    progress = TrainProgress(max_update=3000, train_minutes=20.0, every_s=60)
    assert progress("2026-11-30 15:03:10 | INFO | fairseq_cli.train | task: TranslationMHCETask") is None
    first = progress(INNER.format(ppl=215.86, ups=0.8, n=310, wall=370))
    assert first == "[train] update 310/3000 | 6.2 min trained, ~13.8 min left | train ppl 215.86"
    assert progress(INNER.format(ppl=200.1, ups=0.8, n=320, wall=400)) is None  # 30 s later: quiet
    after_valid = progress(VALID.format(ppl=150.25, n=320))
    assert after_valid == ("[train] update 320/3000 | 6.7 min trained, ~13.3 min left | train ppl 200.1 | "
                           "valid ppl 150.25 (update 320)")
    later = progress(INNER.format(ppl=90.0, ups=0.5, n=400, wall=431))
    assert later.endswith("train ppl 90 | valid ppl 150.25 (update 320)")


def test_minutes_left_takes_the_first_stopping_rule():
    assert TrainProgress(max_update=1000).minutes_left(400, wall_s=120) == 3.0  # 600 more at 200 a minute
    assert TrainProgress(max_update=1000, train_minutes=2.5).minutes_left(400, 120) == 0.5
    assert TrainProgress().minutes_left(400, 120) is None
    assert TrainProgress(train_minutes=1.0).minutes_left(10, 600) == 0.0
    assert TrainProgress(max_update=1000).minutes_left(0, 5) is None
    line = TrainProgress(every_s=0)(INNER.format(ppl=5.5, ups=1.0, n=7, wall=60))
    assert line == "[train] update 7 | 1.0 min trained | train ppl 5.5"


def test_minutes_left_keeps_the_pace_so_far_across_a_validation():
    # a real run's two lines either side of a validation: fairseq's ups for the interval that
    # held it fell from 1.5 to 0.4; the pace so far (840 updates in 552 s) hardly moved
    progress = TrainProgress(max_update=5800, every_s=0)
    before = progress(INNER.format(ppl=73.91, ups=1.5, n=840, wall=552))
    after = progress(INNER.format(ppl=58.05, ups=0.4, n=850, wall=576))
    assert before.startswith("[train] update 840/5800 | 9.2 min trained, ~54.3 min left")
    assert after.startswith("[train] update 850/5800 | 9.6 min trained, ~55.9 min left")


def test_run_sends_output_to_the_log_and_only_progress_to_the_terminal(tmp_path, capsys):
    script = tmp_path / "fake_train.py"
    script.write_text("print('config dump: lots of text')\n"
                      f"print({INNER.format(ppl=12.5, ups=1.0, n=10, wall=70)!r})\n")
    log = tmp_path / "out" / "train.out"
    run([sys.executable, str(script)], dry_run=False, log=log, on_line=TrainProgress(every_s=0))
    out = capsys.readouterr().out
    assert "config dump" not in out and "[train] update 10 | 1.2 min trained | train ppl 12.5" in out
    assert "config dump: lots of text" in log.read_text()


def test_mhs_training_lines_without_ppl_still_report_progress():
    line = INNER.format(ppl=1.0, ups=0.5, n=20, wall=130).replace("ppl=1.0, ", "").replace(
        "nll_loss=7.754", "sampled_nll_loss=7.754")
    progress = TrainProgress(every_s=0)
    assert progress(line) == "[train] update 20 | 2.2 min trained | train ppl - (sampled softmax)"
    big = INNER.format(ppl=1.0, ups="1.5e+03", n=30, wall=200)
    assert progress(big).startswith("[train] update 30 | 3.3 min trained")
