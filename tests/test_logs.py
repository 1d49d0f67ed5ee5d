"""recipes/logs.py: numbers from fairseq-train's log file, each update or epoch counted once."""
from __future__ import annotations

from pathlib import Path

from recipes import logs


def test_train_log_sums_the_training_wall_of_every_epoch_once(tmp_path: Path) -> None:
    # epoch summaries as fairseq-train's --log-file writes them (a real run, columns trimmed): it
    # repeats a line once more each epoch, and each summary's train_wall covers its epoch alone
    summary = ("epoch {e:03d} | loss 6.575 | ppl 42.13 | wps 1033.2 | ups 2.77 | wpb 372.6 | num_updates {n} | "
               "lr 0.000875 | gnorm 2.207 | train_wall {train} | wall {wall}")
    valid = "epoch {e:03d} | valid on 'valid' subset | loss 5.4 | nll_loss 4.1 | ppl {ppl} | num_updates {n}"
    lines = [summary.format(e=1, n=1750, train=643, wall=668), valid.format(e=1, ppl=84.94, n=1750),
             *[summary.format(e=2, n=3500, train=608, wall=1299)] * 2, *[valid.format(e=2, ppl=37.08, n=3500)] * 2,
             *[summary.format(e=3, n=3900, train=140, wall=1460)] * 3]
    log = tmp_path / "train.log"
    log.write_text("\n".join(lines) + "\n")
    stats = logs.parse_train_log(log)
    assert stats["train_wall_s"] == 643 + 608 + 140  # not the last epoch's 140
    assert stats["wall_s"] == 1460 and stats["num_updates"] == 3900 and stats["valid_ppl"] == 37.08


def test_words_per_second_is_the_median_after_warmup(tmp_path: Path):
    """Lines as fairseq-train's --log-file writes them (no logger name), plus the epoch and
    validation summaries, whose `| wps N` must not count."""
    inner = [f"epoch 001:     {i * 10} / 230 loss=10.8, nll_loss=10.4, ppl=1430.4, wps={w}, ups=0.42, "
             f"wpb=2678.5, bsz=242.4, num_updates={i * 10}, lr=0.001, gnorm=2.0, train_wall=24, wall=60"
             for i, w in enumerate([50.0, 1000.0, 1200.0, 1100.0], 1)]
    summaries = ["epoch 001 | loss 10.796 | nll_loss 10.387 | ppl 1338.94 | wps 9999.9 | ups 0.35 | "
                 "num_updates 40", "epoch 001 | valid on 'valid' subset | loss 9.8 | ppl 600 | wps 8888.8"]
    log = tmp_path / "train.log"
    log.write_text("\n".join(inner[:2] + summaries[:1] + inner[2:] + summaries[1:]) + "\n")
    assert logs.parse_train_log(log)["train_words_per_s"] == 1100.0  # first interval (warm-up) left out


def test_validations_keep_the_log_order_and_their_updates(tmp_path: Path) -> None:
    """A repeated line is repeated; the per-update perplexities keep the last line of an update and
    leave out a line without one; the train log's last validation is the last line."""
    line = "epoch {e:03d} | valid on 'valid' subset | loss {loss} | nll_loss 4.1 | ppl {ppl} | wps 1408.7{n}"
    text = "\n".join([line.format(e=1, loss=9.6, ppl=466.05, n=" | num_updates 213"),
                      line.format(e=2, loss=6.9, ppl=120.5, n=" | num_updates 500"),
                      line.format(e=2, loss=6.8, ppl=110.5, n=" | num_updates 500"),
                      line.format(e=3, loss=6.1, ppl=70.2, n="")]) + "\n"
    assert logs.validations(text) == [logs.Validation(9.6, 466.05, 213), logs.Validation(6.9, 120.5, 500),
                                      logs.Validation(6.8, 110.5, 500), logs.Validation(6.1, 70.2, None)]
    assert logs.valid_ppl_by_update(text) == {213: 466.05, 500: 110.5}
    log = tmp_path / "train.log"
    log.write_text(text)
    assert {k: v for k, v in logs.parse_train_log(log).items() if k.startswith("valid")} == {
        "valid_loss": 6.1, "valid_ppl": 70.2}


def test_a_log_not_written_yet_has_no_numbers(tmp_path: Path) -> None:
    missing = tmp_path / "train.log"
    assert logs.read_log(missing) == "" and logs.parse_train_log(missing) == {}
    assert logs.interval_median("", "wps") is None and logs.validations("") == []
