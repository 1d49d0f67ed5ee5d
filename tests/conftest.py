"""Session fixtures: one fairseq command server, one toy corpus binarised once, tiny models trained
once per configuration, only those the selected tests declare (@pytest.mark.trains), two at a time."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest
import torch

from fastcli import CLIServer
from toy import preprocess, train_args, write_copy_corpus

MODEL_CONFIGS = {
    "mhe2": ["--mhce-mode", "mhe"],
    "mhe2_seed2": ["--mhce-mode", "mhe"],
    "mhe3": ["--mhce-mode", "mhe", "--mhce-heads", "4,4,4"],
    "mhp2": ["--mhce-mode", "mhp"],
    "mhs": ["--mhce-mode", "mhs", "--mhs-groups", "2"],
    "mhe2_short": ["--mhce-mode", "mhe", "--mhce-shortlist", "10"],
    "mhp2_short": ["--mhce-mode", "mhp", "--mhce-shortlist", "10"],
}


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only add latency (badly so on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def cli(tmp_path_factory) -> Iterator[CLIServer]:
    """Runs fairseq commands as their own processes, forked from one pre-imported server."""
    server = CLIServer(tmp_path_factory.mktemp("cli"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def toy_bin(tmp_path_factory, cli) -> Path:
    """Binarised copy corpus (V=48 target symbols after fairseq's padding to 8)."""
    root = tmp_path_factory.mktemp("toy")
    write_copy_corpus(root / "raw")
    return preprocess(root / "raw", root / "bin", cli.run)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "trains(*names): the tiny models (MODEL_CONFIGS) a test gets from `trained`")


def declared_models(item: pytest.Item) -> List[str]:
    """The MODEL_CONFIGS names a test declares with @pytest.mark.trains (module-level pytestmark too)."""
    names = [name for marker in item.iter_markers("trains") for name in marker.args]
    unknown = sorted(set(names) - set(MODEL_CONFIGS))
    if unknown:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.trains names unknown models {unknown}")
    return names


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: List[pytest.Item]) -> None:
    """Remember which tiny models the selected tests need, so that only those are trained."""
    needed: Dict[str, None] = {}
    for item in items:
        if "trained" in getattr(item, "fixturenames", ()):
            needed.update(dict.fromkeys(declared_models(item)))
    config.stash[NEEDED_MODELS] = list(needed)


NEEDED_MODELS = pytest.StashKey[List[str]]()


@pytest.fixture(scope="session")
def model_pool(toy_bin, tmp_path_factory, cli, pytestconfig) -> Iterator[Callable[[str], Dict]]:
    """pool(name) -> {'ckpt': path, 'log': train output}. The first call starts every model the
    selected tests declare (the asked one first), two at a time (each command runs on one thread)."""
    jobs: Dict[str, Future] = {}

    def train(name: str) -> Dict:
        save = tmp_path_factory.mktemp(name)
        seed = 2 if name.endswith("seed2") else 1
        proc = cli.run("fairseq_cli.train", train_args(toy_bin, save, MODEL_CONFIGS[name], seed=seed))
        return {"ckpt": save / "checkpoint_last.pt", "log": proc.stdout + proc.stderr}

    with ThreadPoolExecutor(2) as pool:
        def get(name: str) -> Dict:
            if name not in jobs:
                for n in [name] + [n for n in pytestconfig.stash.get(NEEDED_MODELS, []) if n not in jobs]:
                    jobs[n] = pool.submit(train, n)
            return jobs[name].result()

        yield get


@pytest.fixture
def trained(model_pool, request) -> Callable[[str], Dict]:
    """trained(name) -> {'ckpt': path, 'log': train output} for a model the test declares with
    @pytest.mark.trains(name), trained once per session."""
    declared = declared_models(request.node)

    def get(name: str) -> Dict:
        if name not in declared:
            raise pytest.UsageError(f"{request.node.nodeid} uses trained({name!r}): declare it with "
                                    f"@pytest.mark.trains({name!r})")
        return model_pool(name)

    return get
