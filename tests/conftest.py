"""Session fixtures: one toy corpus, binarised once; tiny models trained once per configuration."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict

import pytest
import torch

from toy import preprocess, run_cli, train_args, write_copy_corpus

MODEL_CONFIGS = {
    "mhe2": ["--mhce-mode", "mhe"],
    "mhe2_seed2": ["--mhce-mode", "mhe"],
    "mhe3": ["--mhce-mode", "mhe", "--mhce-heads", "4,4,4"],
    "mhp2": ["--mhce-mode", "mhp"],
    "mhs": ["--mhce-mode", "mhs", "--mhs-groups", "2"],
}


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only add latency (badly so on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def toy_bin(tmp_path_factory) -> Path:
    """Binarised copy corpus (V=48 target symbols after fairseq's padding to 8)."""
    root = tmp_path_factory.mktemp("toy")
    write_copy_corpus(root / "raw")
    return preprocess(root / "raw", root / "bin")


@pytest.fixture(scope="session")
def trained(toy_bin, tmp_path_factory) -> Callable[[str], Dict]:
    """trained(name) -> {'ckpt': path, 'log': train output}; each config is trained once."""
    cache: Dict[str, Dict] = {}

    def get(name: str) -> Dict:
        if name not in cache:
            save = tmp_path_factory.mktemp(name)
            seed = 2 if name.endswith("seed2") else 1
            proc = run_cli("fairseq_cli.train", train_args(toy_bin, save, MODEL_CONFIGS[name], seed=seed))
            cache[name] = {"ckpt": save / "checkpoint_last.pt", "log": proc.stdout + proc.stderr}
        return cache[name]

    return get
