"""README.md's walkthrough ("Train on your own data"), run exactly as printed, so the README
cannot drift from the code.

The walkthrough's convention (stated in the README): the commands run from the repository root;
its first bash block assigns `DATA` (raw parallel text: {train,valid,test}.{de,en}) and `WORK`
(where every later step writes), both relative paths. Its other blocks, in order: sentencepiece
training and encoding (bash running a python heredoc), fairseq-preprocess, fairseq-train,
fairseq-generate and sacrebleu, fairseq-interactive, and a python block using the hub interface.

Here a temporary directory stands in for the repository root: `mhce_nmt` is a link to the
plugin, and DATA (the README's own relative path) holds a tiny raw German -> English corpus (a
word-for-word lexicon that covers the README's example sentence). Every bash block runs through
bash after the assignments (the console scripts of this venv first on PATH), the python block
through this interpreter. The sentencepiece and preprocess blocks build WORK as printed. The
training block runs as printed plus TRAIN_OVERRIDES (argparse keeps the last value), so that it
finishes in seconds; the decoding blocks then decode a tiny model trained on the README's own
binarised data for long enough to translate, saved where the README's training command saves.
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
SECTION = "Train on your own data"
TRAIN_OVERRIDES = ["--arch", "transformer_mhce_tiny", "--max-update", "2", "--mhce-shortlist", "16"]
LEXICON = {
    "Hallo": "Hello", "Welt": "world", "das": "the", "Haus": "house", "ist": "is", "klein": "small",
    "groß": "big", "Hund": "dog", "Katze": "cat", "und": "and", "rot": "red", "blau": "blue",
    "grün": "green", "Baum": "tree", "Wasser": "water", "gut": "good", "alt": "old", "neu": "new",
    "Buch": "book", "Tisch": "table", "Stuhl": "chair", "Fenster": "window", "Tür": "door",
    "Auto": "car", "Stadt": "city", "Straße": "street", "Sonne": "sun", "Mond": "moon",
    "Brot": "bread", "Milch": "milk",
    # the words of the README's example sentence, so that every character of it is known
    "Klicken": "Click", "Sie": "you", "auf": "on", "OK,": "OK,", "um": "in", "die": "the",
    "Datei": "file", "zu": "to", "speichern.": "save.",
}
SPLITS = {"train": 2000, "valid": 40, "test": 30}
Block = Tuple[str, str]  # (language, code)


def walkthrough() -> List[Block]:
    """The fenced blocks of the README's walkthrough section, in order."""
    text = README.read_text(encoding="utf-8")
    assert f"\n## {SECTION}\n" in text, f"README: no section '## {SECTION}'"
    section = text.split(f"\n## {SECTION}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, re.S)
    assert blocks and all(lang in ("bash", "python") for lang, _ in blocks), \
        f"{SECTION}: every block must be bash or python, found {[lang for lang, _ in blocks]}"
    return blocks


def assignments(block: str) -> Dict[str, str]:
    """NAME=value lines of the first bash block (nothing else may be in it but comments)."""
    lines = [l.strip() for l in block.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    assert all(re.fullmatch(r"\w+=\S+", l) for l in lines), f"the first block must only assign: {lines}"
    return dict(l.split("=", 1) for l in lines)


def block_with(blocks: List[Block], word: str, lang: str = "bash") -> str:
    """The one block of `lang` that contains `word`."""
    found = [code for l, code in blocks if l == lang and word in code]
    assert len(found) == 1, f"README: expected one {lang} block with {word}, found {len(found)}"
    return found[0]


def bash(root: Path, variables: str, script: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`script` after the walkthrough's assignments, in bash, from `root` (the stand-in repo root)."""
    env = dict(CLI_ENV, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + variables + "\n" + script], cwd=root,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script}\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
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


def stand_in_root(root: Path) -> Path:
    """A directory that acts as the repository root: `--user-dir mhce_nmt` resolves from it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mhce_nmt").symlink_to(PLUGIN, target_is_directory=True)
    return root


def example_sentence(blocks: List[Block]) -> str:
    """The German sentence the README pipes into fairseq-interactive."""
    match = re.search(r'echo "([^"]+)" \|', block_with(blocks, "fairseq-interactive"))
    assert match, "README: the interactive step must read `echo \"...\" | fairseq-interactive`"
    return match.group(1)


@pytest.fixture(scope="module")
def readme() -> Dict[str, object]:
    blocks = walkthrough()
    assert blocks[0][0] == "bash", "README: the walkthrough must start with a bash block assigning DATA and WORK"
    variables = assignments(blocks[0][1])
    for name in ("DATA", "WORK"):
        assert name in variables and not Path(variables[name]).is_absolute(), \
            f"README: the first block must set {name}=<relative dir>"
    return {"blocks": blocks, "variables": blocks[0][1], "data": variables["DATA"], "work": variables["WORK"]}


@pytest.fixture(scope="module")
def root(readme, tmp_path_factory, cli) -> Path:
    """Stand-in repository root: the tiny raw corpus at DATA, then the README's sentencepiece and
    preprocess blocks as printed, then a tiny model trained on their output at WORK/ckpt."""
    blocks, variables = readme["blocks"], readme["variables"]
    root = stand_in_root(tmp_path_factory.mktemp("readme"))
    write_corpus(root / readme["data"])
    bash(root, variables, block_with(blocks, "SentencePieceTrainer"))
    bash(root, variables, block_with(blocks, "fairseq-preprocess"))
    work = root / readme["work"]
    cli.run("fairseq_cli.train", train_args(work / "bin", work / "tiny", ["--mhce-mode", "mhe"], updates=120))
    (work / "ckpt").mkdir()
    shutil.copy(work / "tiny" / "checkpoint_last.pt", work / "ckpt" / "checkpoint_best.pt")
    return root


def test_example_sentence_is_in_the_tiny_corpus(readme):
    """Every word of the README's example sentence is in the lexicon (else sentencepiece would
    meet unknown characters): change LEXICON with the sentence."""
    missing = [w for w in example_sentence(readme["blocks"]).split() if w not in LEXICON]
    assert not missing, f"add {missing} to LEXICON"
    assert example_sentence(readme["blocks"]) in block_with(readme["blocks"], "from_pretrained", "python")


def test_sentencepiece_block_segments_every_split(readme, root):
    """One joint model at WORK/spm.model; every split written as pieces that decode to the raw line."""
    data, work = root / readme["data"], root / readme["work"]
    processor = spm.SentencePieceProcessor(model_file=str(work / "spm.model"))
    for split in SPLITS:
        for lang in ("de", "en"):
            raw = (data / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            seg = (work / "seg" / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            assert len(seg) == len(raw)
            assert all(line.split()[0].startswith("\u2581") for line in seg)
            assert [processor.decode_pieces(line.split()) for line in seg] == raw
    assert processor.unk_id() not in processor.encode(example_sentence(readme["blocks"]))


def test_preprocess_block_writes_one_joined_dictionary(readme, root):
    """fairseq-preprocess as printed: one dictionary for both languages, every split binarised,
    and enough target entries for the README's --mhe-topk-groups 8 (2 balanced heads: >= 64)."""
    bin_dir = root / readme["work"] / "bin"
    de, en = ((bin_dir / f"dict.{lang}.txt").read_text(encoding="utf-8") for lang in ("de", "en"))
    assert de == en
    assert len(en.splitlines()) + 4 >= 64
    for split in SPLITS:
        for lang in ("de", "en"):
            assert (bin_dir / f"{split}.de-en.{lang}.bin").is_file()


def test_train_command(readme, root, tmp_path):
    """fairseq-train as printed (plus TRAIN_OVERRIDES) writes WORK/ckpt/checkpoint_best.pt."""
    blocks, work_name = readme["blocks"], readme["work"]
    train = block_with(blocks, "fairseq-train").replace("\\\n", "")  # bash drops backslash-newline
    commands = [l.strip() for l in train.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    assert len(commands) == 1 and commands[0].startswith("fairseq-train "), commands
    printed = commands[0].split()
    for option in TRAIN_OVERRIDES[::2]:
        assert option in printed, f"README's training command has no {option} to override"
    assert f"`{' '.join(TRAIN_OVERRIDES)}` appended" in README.read_text(encoding="utf-8")
    other = stand_in_root(tmp_path / "root")
    (other / work_name).mkdir(parents=True)
    (other / work_name / "bin").symlink_to(root / work_name / "bin")
    proc = bash(other, readme["variables"], " ".join([commands[0], *TRAIN_OVERRIDES]))
    assert "done training" in proc.stdout + proc.stderr
    assert (other / work_name / "ckpt" / "checkpoint_best.pt").is_file()


def test_generate_then_sacrebleu(readme, root):
    """fairseq-generate writes desegmented D- lines to WORK/gen.out; the sacrebleu line scores
    them in test-set order (its BLEU equals sacrebleu's on the hypotheses sorted by id)."""
    work = root / readme["work"]
    proc = bash(root, readme["variables"], block_with(readme["blocks"], "fairseq-generate"))
    hyps = {}
    for line in (work / "gen.out").read_text(encoding="utf-8").splitlines():
        if line.startswith("D-"):
            key, _score, text = line.split("\t")
            hyps[int(key[2:])] = text
    refs = (root / readme["data"] / "test.en").read_text(encoding="utf-8").splitlines()
    assert sorted(hyps) == list(range(len(refs)))  # count in == count out
    assert not any("\u2581" in h for h in hyps.values())  # pieces removed
    scores = {m["name"]: m["score"] for m in json.loads(proc.stdout)}
    expected = sacrebleu.corpus_bleu([hyps[i] for i in range(len(refs))], [refs]).score
    assert scores["BLEU"] == pytest.approx(expected, abs=0.05)
    assert scores["BLEU"] > 60 and "chrF2" in scores


@pytest.fixture(scope="module")
def interactive(readme, root) -> Dict[str, str]:
    """The S-, H- and D- lines of the printed `echo "..." | fairseq-interactive ...`."""
    proc = bash(root, readme["variables"], block_with(readme["blocks"], "fairseq-interactive"))
    lines = {line.split("\t", 1)[0]: line.split("\t", 1)[1] for line in proc.stdout.splitlines()
             if line[:2] in ("S-", "H-", "D-")}
    assert {"S-0", "H-0", "D-0"} <= set(lines), proc.stdout[-2000:]
    return lines


def test_interactive_segments_in_and_desegments_out(readme, root, interactive):
    """sentencepiece on the way in (S- shows WORK/spm.model's pieces of the sentence), pieces
    removed on the way out (D- is H-'s pieces decoded)."""
    processor = spm.SentencePieceProcessor(model_file=str(root / readme["work"] / "spm.model"))
    sentence = example_sentence(readme["blocks"])
    assert interactive["S-0"] == " ".join(processor.encode(sentence, out_type=str))
    hypothesis, translation = interactive["H-0"].split("\t")[-1], interactive["D-0"].split("\t")[-1]
    assert translation and "\u2581" not in translation
    assert translation == processor.decode_pieces(hypothesis.split())


def test_hub_snippet_translates_like_interactive(readme, root, interactive):
    """The python block (raw text in and out) gives fairseq-interactive's translation."""
    python = block_with(readme["blocks"], "from_pretrained", "python")
    assert f'"{readme["work"]}"' in python, "README: the python block must use WORK's path"
    proc = subprocess.run([sys.executable, "-c", python], cwd=root, env=CLI_ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip().splitlines()[-1] == interactive["D-0"].split("\t")[-1], proc.stdout[-2000:]

