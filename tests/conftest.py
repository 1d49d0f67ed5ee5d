"""Session fixtures: one fairseq command server, one toy corpus binarised once, tiny models trained
once per configuration, only those the selected tests declare (@pytest.mark.trains), in the
background from the first test on."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest
import torch

from fastcli import CLIServer, forked_recipe_runner
from toy import preprocess, train_args, write_copy_corpus

#: models whose tests check what they learned train 150 updates (toy.train_args' default); the
#: others (exactness checks: any weights do) train LITTLE_TRAINING updates
LITTLE_TRAINING = 50
MODEL_UPDATES = {"mhe2_seed2": LITTLE_TRAINING, "mhe3": LITTLE_TRAINING, "mhe2_short": LITTLE_TRAINING,
                 "mhp2_short": LITTLE_TRAINING}
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


@pytest.fixture(autouse=True)
def recipe_commands_in_forks(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Recipes run their fairseq commands (recipes.runner.run) as forks of the session's CLI server:
    the same commands, without paying the import of torch & co. for each; only in tests marked e2e,
    and only from the test's own body (a module- or session-scoped fixture gets the real run)."""
    from recipes import runner

    def server() -> CLIServer:
        if request.node.get_closest_marker("e2e") is None:
            raise pytest.UsageError(f"{request.node.nodeid} runs fairseq commands: mark it @pytest.mark.e2e")
        return request.getfixturevalue("cli")

    monkeypatch.setattr(runner, "run", forked_recipe_runner(server, runner.run))


@pytest.fixture(scope="session")
def toy_bin(tmp_path_factory, cli) -> Path:
    """Binarised copy corpus (V=48 target symbols after fairseq's padding to 8)."""
    root = tmp_path_factory.mktemp("toy")
    write_copy_corpus(root / "raw")
    return preprocess(root / "raw", root / "bin", cli.run)


#: fixtures that run fairseq's command-line tools: a test that uses one (directly or through
#: another fixture) is marked e2e
COMMAND_FIXTURES = ("cli", "toy_bin", "trained", "model_pool")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "trains(*names): the tiny models (MODEL_CONFIGS) a test gets from `trained`")
    config.addinivalue_line("markers", "e2e: runs fairseq's commands, a recipe or a script end to end (set for "
                                       "every test that uses a command fixture)")
    config.addinivalue_line("markers", "slow: takes seconds on 2 idle cores; `pytest -m 'not slow and not e2e'` "
                                       "is the quick subset")
    config.addinivalue_line("markers", "early(batch): the module's command batch (fixture `early_batches`) "
                                       "starts in the background at the session's start")


def declared_models(item: pytest.Item) -> List[str]:
    """The MODEL_CONFIGS names a test declares with @pytest.mark.trains (module-level pytestmark too)."""
    names = [name for marker in item.iter_markers("trains") for name in marker.args]
    unknown = sorted(set(names) - set(MODEL_CONFIGS))
    if unknown:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.trains names unknown models {unknown}")
    return names


@pytest.hookimpl(hookwrapper=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: List[pytest.Item]) -> Iterator[None]:
    """Mark e2e every test that uses a command fixture (before `-m` selects by the marks); then,
    of the selected tests only, remember which tiny models and early command batches they need,
    so that only those run, and run the files that use the models last."""
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in COMMAND_FIXTURES):
            item.add_marker(pytest.mark.e2e)
    yield  # pytest's own hooks deselect here (-m, -k)
    using = [item for item in items if "trained" in getattr(item, "fixturenames", ())]
    config.stash[NEEDED_MODELS] = list(dict.fromkeys(name for item in using for name in declared_models(item)))
    config.stash[EARLY_BATCHES] = list(dict.fromkeys(
        marker.args[0] for item in items for marker in item.iter_markers("early")))
    # the files that use the models run last, while the models train from the first test on
    paths = {item.path for item in using}
    items[:] = [item for item in items if item.path not in paths] + [item for item in items if item.path in paths]


NEEDED_MODELS = pytest.StashKey[List[str]]()
#: a module's batch of commands, run(cli, toy_bin, root) -> results, that its tests share
CommandBatch = Callable[[CLIServer, Path, Path], Dict[str, object]]
EARLY_BATCHES = pytest.StashKey[List[CommandBatch]]()


@pytest.fixture(scope="session")
def model_pool(toy_bin, tmp_path_factory, cli, pytestconfig) -> Iterator[Callable[[str], Dict]]:
    """pool(name) -> {'ckpt': path, 'log': train output}; pool(None) starts the training of every
    model the selected tests declare without waiting, one at a time (a command runs on one thread,
    so the tests go on beside it on the other core)."""
    jobs: Dict[str, Future] = {}

    def train(name: str) -> Dict:
        save = tmp_path_factory.mktemp(name)
        seed = 2 if name.endswith("seed2") else 1
        updates = {"updates": MODEL_UPDATES[name]} if name in MODEL_UPDATES else {}
        proc = cli.run("fairseq_cli.train", train_args(toy_bin, save, MODEL_CONFIGS[name], seed=seed, **updates))
        return {"ckpt": save / "checkpoint_last.pt", "log": proc.stdout + proc.stderr}

    pool = ThreadPoolExecutor(1)

    def get(name: Optional[str]) -> Optional[Dict]:
        for n in ([name] if name else []) + pytestconfig.stash.get(NEEDED_MODELS, []):
            if n not in jobs:
                jobs[n] = pool.submit(train, n)
        return jobs[name].result() if name else None

    yield get
    pool.shutdown(wait=True, cancel_futures=True)  # a session stopped early (-x, Ctrl-C) trains no more


@pytest.fixture(scope="session")
def early_batches(cli, toy_bin, tmp_path_factory) -> Iterator[Callable[[CommandBatch], Dict[str, object]]]:
    """results(batch) -> what the module's command batch returned; a batch started in the background
    (`start`) is awaited, any other one runs now. One batch at a time (each runs its commands two
    at a time)."""
    futures: Dict[CommandBatch, Future] = {}
    pool = ThreadPoolExecutor(1)

    def results(batch: CommandBatch, start: bool = False) -> Optional[Dict[str, object]]:
        if batch not in futures:
            futures[batch] = pool.submit(batch, cli, toy_bin, tmp_path_factory.mktemp(batch.__module__))
        return None if start else futures[batch].result()

    yield results
    pool.shutdown(wait=True, cancel_futures=True)  # a session stopped early runs no more batches


@pytest.fixture(scope="session", autouse=True)
def commands_in_the_background(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> None:
    """From the first test on, the tiny models the selected tests need are trained, and the
    modules' early command batches run, beside the other tests (which run first:
    pytest_collection_modifyitems moves the files that use the models last). The cores are
    otherwise a third idle: most tests wait on one single-threaded command at a time."""
    if pytestconfig.stash.get(NEEDED_MODELS, []):
        request.getfixturevalue("model_pool")(None)
    for batch in pytestconfig.stash.get(EARLY_BATCHES, []):
        request.getfixturevalue("early_batches")(batch, start=True)


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
