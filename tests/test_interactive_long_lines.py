"""fairseq-interactive with the plugin's task: an input line longer than the model's source positions
is skipped with one logged line (its number and the limit) and the later lines are still translated."""
from __future__ import annotations

from toy import PLUGIN, train_args


def test_an_over_long_line_is_skipped_and_the_run_goes_on(toy_bin, cli, tmp_path):
    cli.run("fairseq_cli.train", train_args(toy_bin, tmp_path, [], updates=2))
    lines = ["w1 w2", "w1 w2 w3 w4 w5 w6 w7 w8", "w5 w6", "w3"]
    proc = cli.run("fairseq_cli.interactive", [
        toy_bin, "--user-dir", PLUGIN, "--task", "translation_mhce", "--path", tmp_path / "checkpoint_last.pt",
        "--beam", "2", "--source-lang", "src", "--target-lang", "tgt", "--cpu",
        "--max-source-positions", "6", "--buffer-size", "2", "--batch-size", "2"],
        stdin="".join(line + "\n" for line in lines))
    assert proc.returncode == 0, proc.stderr[-3000:]
    sources = [line.split("\t")[1] for line in proc.stdout.splitlines() if line.startswith("S-")]
    assert sources == ["w1 w2", "w5 w6", "w3"]
    assert sum(line.startswith("H-") for line in proc.stdout.splitlines()) == 3
    skipped = [line for line in proc.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "input line 2 skipped: 9 tokens" in skipped[0]
    assert "more than the model's 6 source positions" in skipped[0]
