"""Tiny generated parallel data and fairseq CLI helpers shared by the end-to-end tests."""
from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Sequence

REPO = Path(__file__).resolve().parents[1]
PLUGIN = str(REPO / "mhce_nmt")

# fast, quiet, deterministic: no thread oversubscription between test subprocesses
CLI_ENV = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def write_copy_corpus(folder: Path, n_train: int = 1500, n_eval: int = 60, words: int = 40,
                         seed: int = 0) -> None:
    """Source: 2-7 random words; target: the same words (a trivially learnable copy task)."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(words)]
    folder.mkdir(parents=True, exist_ok=True)
    for split, size in (("train", n_train), ("valid", n_eval), ("test", n_eval)):
        sents = [[rng.choice(vocab) for _ in range(rng.randint(2, 7))] for _ in range(size)]
        (folder / f"{split}.src").write_text("\n".join(" ".join(s) for s in sents) + "\n")
        (folder / f"{split}.tgt").write_text("\n".join(" ".join(s) for s in sents) + "\n")


def run_cli(module: str, args: Sequence[str], cwd: Path | None = None, check: bool = True,
            stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run `python -m module args` with the test interpreter; fail with its output on error."""
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, env=CLI_ENV,
                          capture_output=True, text=True, input=stdin)
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {' '.join(map(str, args))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def run_stock_train(args: Sequence[str], run: Callable = run_cli) -> subprocess.CompletedProcess:
    """fairseq-train of a stock model with the plugin loaded (`run`: run_cli, or a CLIServer's
    run), with fairseq's background batch prefetching off (--data-buffer-size 0): its prefetch
    thread can still be inside torch when such a run ends at --max-update, and a process that
    leaves through the interpreter's exit then aborts ("terminate called without an active
    exception") after training has finished."""
    return run("fairseq_cli.train", [*args, "--data-buffer-size", "0"])


def preprocess(raw: Path, dest: Path, run: Callable = run_cli) -> Path:
    """fairseq-preprocess the copy corpus; `run` is run_cli or a CLIServer's run."""
    run("fairseq_cli.preprocess", [
        "--source-lang", "src", "--target-lang", "tgt", "--trainpref", raw / "train",
        "--validpref", raw / "valid", "--testpref", raw / "test", "--destdir", dest, "--workers", "1"])
    return dest


def train_args(data: Path, save_dir: Path, extra: Sequence[str], updates: int = 150,
               seed: int = 1) -> List[str]:
    """fairseq-train arguments for a tiny transformer_mhce on the toy data (CPU, seconds)."""
    return [
        data, "--user-dir", PLUGIN, "--task", "translation_mhce", "--arch", "transformer_mhce_tiny",
        "--criterion", "mhce_cross_entropy", "--label-smoothing", "0.1",
        "--optimizer", "adam", "--lr", "5e-3", "--lr-scheduler", "inverse_sqrt",
        "--warmup-updates", "30", "--max-tokens", "3000", "--max-update", str(updates),
        "--cpu", "--seed", str(seed), "--save-dir", save_dir, "--no-epoch-checkpoints",
        "--save-interval", "1000", "--disable-validation", "--log-format", "simple",
        "--log-interval", "10", "--num-workers", "0", *extra]


def train_losses(log: str) -> List[float]:
    """The `loss=` values of fairseq's train_inner lines, in order."""
    return [float(v) for v in re.findall(r"train_inner .*? loss=([0-9.]+)", log)]


def generate(data: Path, ckpt: Path, extra: Sequence[str] = (),
             run: Callable = run_cli) -> subprocess.CompletedProcess:
    """fairseq-generate on the test split (beam 5); `run` is run_cli or a CLIServer's run."""
    return run("fairseq_cli.generate", [
        data, "--user-dir", PLUGIN, "--path", ckpt, "--beam", "5", "--batch-size", "16",
        "--cpu", *extra])


def hypotheses(output: str) -> Dict[int, str]:
    """{sentence id: best hypothesis} from fairseq-generate output."""
    hyps: Dict[int, str] = {}
    for line in output.splitlines():
        if line.startswith("H-"):
            key, _score, text = line.split("\t")
            hyps.setdefault(int(key[2:]), text)
    return hyps


def bleu(output: str) -> float:
    match = re.search(r"BLEU4 = ([0-9.]+)", output)
    assert match, output[-2000:]
    return float(match.group(1))


def build_in_process(data: Path, extra: Sequence[str] = (), arch: str = "transformer_mhce_tiny"):
    """(task, model, criterion, sample) built like fairseq-train would, in this process; the
    sample is the first batch of the valid split."""
    import mhce_nmt  # noqa: F401  (registers the model, criterion and task)
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(data), "--task", "translation_mhce", "--arch", arch,
        "--criterion", "mhce_cross_entropy", "--label-smoothing", "0.1", "--cpu", "--seed", "1",
        "--max-tokens", "3000", *map(str, extra)])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    task.load_dataset("valid")
    batches = task.get_batch_iterator(dataset=task.dataset("valid"), max_tokens=3000,
                                      seed=1).next_epoch_itr(shuffle=False)
    return task, model, criterion, next(iter(batches))


def load_trained(trained: Callable[[str], Dict], toy_bin: Path, name: str, max_sentences: int = 16):
    """(model in eval mode, cfg, task, first valid batch) of a tiny model that the session's `trained`
    fixture trained on `toy_bin`."""
    import mhce_nmt  # noqa: F401  (registers the model, criterion and task)
    from fairseq import checkpoint_utils

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(trained(name)["ckpt"])], arg_overrides={"data": str(toy_bin)})
    task.load_dataset("valid")
    sample = next(iter(task.get_batch_iterator(dataset=task.dataset("valid"), max_sentences=max_sentences,
                                               max_positions=(1024, 1024)).next_epoch_itr(shuffle=False)))
    return models[0].eval(), cfg, task, sample
