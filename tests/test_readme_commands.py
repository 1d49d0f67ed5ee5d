"""README.md's "Using it" commands, run exactly as printed, so the README cannot drift from the code.

The convention (stated in the README): the commands run from the repository root, and `WORK`
(assigned in the bash block) names a directory holding `bin-spm16000/` (fairseq-preprocess
output of one language pair), `seg-spm16000/spm.model` (the sentencepiece model its text was
segmented with), `data/test.en` (raw test references) and, for decoding, the demo's model at
`CKPT` (also assigned in the block).
Here a temporary directory stands in for the repository root: `mhce_nmt` is a link to the plugin,
and WORK (the README's own relative path) holds a tiny German -> English corpus (a word-for-word
lexicon), a real sentencepiece model trained on it, its binarised data and a tiny mhe model
trained on it. Every bash command runs through bash (the console scripts of this venv first on
PATH), the python block through this interpreter. The one change: the training command gets
TRAIN_OVERRIDES appended (argparse keeps the last value), so that it finishes in seconds.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import sacrebleu
import sentencepiece as spm

from toy import CLI_ENV, PLUGIN, REPO, train_args

README = REPO / "README.md"
TRAIN_OVERRIDES = ["--arch", "transformer_mhce_tiny", "--max-update", "2"]
LEXICON = {
    "Hallo": "Hello", "Welt": "world", "das": "the", "Haus": "house", "ist": "is", "klein": "small",
    "groß": "big", "Hund": "dog", "Katze": "cat", "und": "and", "rot": "red", "blau": "blue",
    "grün": "green", "Baum": "tree", "Wasser": "water", "gut": "good", "alt": "old", "neu": "new",
    "Buch": "book", "Tisch": "table", "Stuhl": "chair", "Fenster": "window", "Tür": "door",
    "Auto": "car", "Stadt": "city", "Straße": "street", "Sonne": "sun", "Mond": "moon",
    "Brot": "bread", "Milch": "milk",
}
SPLITS = {"train": 2000, "valid": 40, "test": 30}
SPM_VOCAB = 200  # BPE: most words one piece, some (das, Stuhl) split, so desegmentation matters


def using_it() -> Tuple[List[str], str]:
    """(logical commands of the bash block, the python block) of the README's "Using it"."""
    section = README.read_text(encoding="utf-8").split("\n## Using it\n", 1)[1].split("\n## ", 1)[0]
    bash = re.findall(r"```bash\n(.*?)```", section, re.S)
    python = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(bash) == 1 and len(python) == 1, "Using it: expected one bash and one python block"
    lines = bash[0].replace("\\\n", "").splitlines()  # bash drops backslash-newline
    return [l.strip() for l in lines if l.strip() and not l.lstrip().startswith("#")], python[0]


def assignments(commands: List[str]) -> Dict[str, str]:
    return dict(re.fullmatch(r"(\w+)=(\S+)", c).groups() for c in commands if re.fullmatch(r"\w+=\S+", c))


def command_with(commands: List[str], word: str) -> str:
    """The one command of the block that runs `word`."""
    found = [c for c in commands if word in c.split()]
    assert len(found) == 1, f"README: expected one command running {word}, found {found}"
    return found[0]


def bash(root: Path, commands: List[str], command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`command` after the block's assignments, in bash, from `root` (the stand-in repo root)."""
    lines = [c for c in commands if re.fullmatch(r"\w+=\S+", c)] + [command]
    env = dict(CLI_ENV, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + "\n".join(lines)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
    return proc


def write_corpus(data: Path) -> None:
    """Random 2-5 word German sentences and their word-for-word English translations."""
    rng = random.Random(0)
    words = sorted(LEXICON)
    data.mkdir(parents=True)
    for split, size in SPLITS.items():
        sents = [[rng.choice(words) for _ in range(rng.randint(2, 5))] for _ in range(size)]
        (data / f"{split}.de").write_text("".join(" ".join(s) + "\n" for s in sents), encoding="utf-8")
        (data / f"{split}.en").write_text(
            "".join(" ".join(LEXICON[w] for w in s) + "\n" for s in sents), encoding="utf-8")


def segment(data: Path, seg: Path) -> None:
    """Train a joint sentencepiece model on the training text; write every split as pieces."""
    seg.mkdir(parents=True)
    spm.SentencePieceTrainer.train(
        input=f"{data / 'train.de'},{data / 'train.en'}", model_prefix=str(seg / "spm"),
        vocab_size=SPM_VOCAB, model_type="bpe", character_coverage=1.0, hard_vocab_limit=False,
        num_threads=1, minloglevel=2)
    processor = spm.SentencePieceProcessor(model_file=str(seg / "spm.model"))
    for split in SPLITS:
        for lang in ("de", "en"):
            lines = (data / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            pieces = processor.encode(lines, out_type=str)
            (seg / f"{split}.{lang}").write_text("".join(" ".join(p) + "\n" for p in pieces),
                                                 encoding="utf-8")


def stand_in_root(root: Path) -> Path:
    """A directory that acts as the repository root: `--user-dir mhce_nmt` resolves from it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mhce_nmt").symlink_to(PLUGIN, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def readme() -> Tuple[List[str], str, str]:
    """(bash commands, python block, WORK as the README assigns it: a relative path)."""
    commands, python = using_it()
    work = assignments(commands).get("WORK")
    assert work and not Path(work).is_absolute(), "README: the bash block must set WORK=<relative dir>"
    return commands, python, work


@pytest.fixture(scope="module")
def decode_root(readme, tmp_path_factory, cli) -> Path:
    """Stand-in repository root whose WORK holds the tiny corpus, spm model, data and model."""
    _, _, work_name = readme
    root = stand_in_root(tmp_path_factory.mktemp("readme_decode"))
    work = root / work_name
    write_corpus(work / "data")
    segment(work / "data", work / "seg-spm16000")
    cli.run("fairseq_cli.preprocess", [
        "--source-lang", "de", "--target-lang", "en", "--trainpref", work / "seg-spm16000" / "train",
        "--validpref", work / "seg-spm16000" / "valid", "--testpref", work / "seg-spm16000" / "test",
        "--destdir", work / "bin-spm16000", "--joined-dictionary", "--workers", "1"])
    cli.run("fairseq_cli.train", train_args(work / "bin-spm16000", work / "ckpt", ["--mhce-mode", "mhe"],
                                            updates=120))
    shutil.copy(work / "ckpt" / "checkpoint_last.pt", work / "ckpt" / "checkpoint_best.pt")
    demo_model = root / assignments(readme[0])["CKPT"].replace("$WORK", work_name)  # where make demo puts it
    demo_model.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(work / "ckpt" / "checkpoint_last.pt", demo_model)
    return root


def test_the_tiny_data_exercises_sentencepiece(readme, decode_root):
    """The fixture's premises: some words are several pieces, and the target vocabulary has
    enough level-1 groups for the README's --mhe-topk-groups 8."""
    work = decode_root / readme[2]
    pieces = (work / "seg-spm16000" / "test.de").read_text(encoding="utf-8").split()
    assert any(not p.startswith("\u2581") for p in pieces)  # a piece inside a word
    entries = len((work / "bin-spm16000" / "dict.en.txt").read_text(encoding="utf-8").splitlines())
    assert entries + 4 >= 64  # 2 balanced heads: >= 8 groups


def test_train_command(readme, decode_root, tmp_path):
    """fairseq-train as printed (plus TRAIN_OVERRIDES) writes WORK/ckpt/checkpoint_best.pt."""
    commands, _, work_name = readme
    train = command_with(commands, "fairseq-train")
    printed = train.split()
    for option in TRAIN_OVERRIDES[::2]:
        assert option in printed, f"README's training command has no {option} to override"
    assert f"`{' '.join(TRAIN_OVERRIDES)}` appended" in README.read_text(encoding="utf-8")
    root = stand_in_root(tmp_path / "root")
    (root / work_name).mkdir(parents=True)
    (root / work_name / "bin-spm16000").symlink_to(decode_root / work_name / "bin-spm16000")
    proc = bash(root, commands, " ".join([train, *TRAIN_OVERRIDES]))
    assert "done training" in proc.stdout + proc.stderr
    assert (root / work_name / "ckpt" / "checkpoint_best.pt").is_file()


def test_generate_then_sacrebleu(readme, decode_root):
    """fairseq-generate writes desegmented D- lines to WORK/gen.out; the sacrebleu line scores
    them in test-set order (its BLEU equals sacrebleu's on the hypotheses sorted by id)."""
    commands, _, work_name = readme
    work = decode_root / work_name
    bash(decode_root, commands, command_with(commands, "fairseq-generate"))
    hyps = {}
    for line in (work / "gen.out").read_text(encoding="utf-8").splitlines():
        if line.startswith("D-"):
            key, _score, text = line.split("\t")
            hyps[int(key[2:])] = text
    refs = (work / "data" / "test.en").read_text(encoding="utf-8").splitlines()
    assert sorted(hyps) == list(range(len(refs)))  # count in == count out
    assert not any("\u2581" in h for h in hyps.values())  # pieces removed
    proc = bash(decode_root, commands, command_with(commands, "sacrebleu"))
    scores = {m["name"]: m["score"] for m in json.loads(proc.stdout)}
    expected = sacrebleu.corpus_bleu([hyps[i] for i in range(len(refs))], [refs]).score
    assert scores["BLEU"] == pytest.approx(expected, abs=0.05)
    assert scores["BLEU"] > 60 and "chrF2" in scores


def test_interactive_translates_raw_german(readme, decode_root):
    """The printed `echo "Hallo Welt" | fairseq-interactive ...`: sentencepiece on the way in
    (S- shows pieces), pieces removed on the way out (D- is the plain translation)."""
    commands, _, _ = readme
    proc = bash(decode_root, commands, command_with(commands, "fairseq-interactive"))
    lines = dict(line.split("\t", 1) for line in proc.stdout.splitlines() if line[:2] in ("S-", "D-"))
    assert lines.get("S-0") == "\u2581Hallo \u2581Welt", proc.stdout[-2000:]
    assert lines["D-0"].split("\t")[-1] == "Hello world", proc.stdout[-2000:]


def test_hub_snippet_translates_raw_german(readme, decode_root):
    _, python, _ = readme
    proc = subprocess.run([sys.executable, "-c", python], cwd=decode_root, env=CLI_ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip().splitlines()[-1] == "Hello world", proc.stdout[-2000:]
