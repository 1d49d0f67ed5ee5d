"""recipes.compare: per-seed paired bootstrap equal to sacreBLEU's own, the pooled interval against
corpus scores of explicitly resampled sentence lists, and the seed statistics against scipy."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest
from scipy import stats

from recipes import compare

WORDS = "the a file is open save click on button menu dialog window text page new old".split()


def corpus(seed: int, sentences: int = 60) -> tuple[list[str], list[list[str]]]:
    """References, and three noisy systems of rising quality (each keeps more reference words)."""
    rng = random.Random(seed)
    refs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))) for _ in range(sentences)]
    systems = []
    for keep in (0.5, 0.6, 0.7):
        systems.append([" ".join(w if rng.random() < keep else rng.choice(WORDS) for w in r.split()) for r in refs])
    return refs, systems


def test_one_seed_matches_sacrebleus_paired_bootstrap() -> None:
    refs, (base, system, _) = corpus(0)
    report = compare.compare(refs, [compare.Run("b", base)], [compare.Run("s", system)], samples=200)
    test = PairedTest([("b", base), ("s", system)], {"BLEU": BLEU(references=[refs]), "chrF": CHRF(references=[refs])},
                      references=None, test_type="bs", n_samples=200)
    _signatures, scores = test()
    for ours, theirs in (("bleu", "BLEU"), ("chrf", "chrF2")):
        (seed,) = report[ours]["per_seed"]
        assert seed["baseline"] == pytest.approx(scores[theirs][0].score)
        assert seed["system"] == pytest.approx(scores[theirs][1].score)
        assert seed["p_value"] == pytest.approx(scores[theirs][1].p_value)


def test_the_pooled_interval_is_the_percentiles_of_resampled_corpus_scores() -> None:
    refs, (base1, sys1, base2) = corpus(1, sentences=40)
    sys2 = [r if i % 3 else h for i, (r, h) in enumerate(zip(refs, base2))]
    samples = 30
    report = compare.compare(refs, [compare.Run("b1", base1), compare.Run("b2", base2)],
                             [compare.Run("s1", sys1), compare.Run("s2", sys2)], metrics=("bleu",), samples=samples)
    bleu = BLEU()
    deltas = []
    for idx in compare.resample_indices(len(refs), samples):
        def score(hyps: list[str]) -> float:
            return bleu.corpus_score([hyps[i] for i in idx], [[refs[i] for i in idx]]).score
        deltas.append((score(sys1) + score(sys2)) / 2 - (score(base1) + score(base2)) / 2)
    pooled = report["bleu"]["pooled"]
    assert pooled["interval"] == pytest.approx([np.percentile(deltas, 2.5), np.percentile(deltas, 97.5)], abs=1e-3)
    full = [bleu.corpus_score(h, [refs]).score for h in (base1, base2, sys1, sys2)]
    assert pooled["difference"] == pytest.approx((full[2] + full[3]) / 2 - (full[0] + full[1]) / 2)
    assert report["bleu"]["system"]["values"] == pytest.approx(full[2:])


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 9, 10])
def test_seed_interval_uses_students_t(df: int) -> None:
    values = [28.0 + 0.3 * i * (-1) ** i for i in range(df + 1)]
    summary = compare.mean_sd_interval(values)
    low, high = stats.t.interval(0.95, df, loc=np.mean(values), scale=stats.sem(values))
    assert summary["sd"] == pytest.approx(np.std(values, ddof=1))
    assert summary["interval"] == pytest.approx([low, high], abs=2e-3)
    assert compare.mean_sd_interval([1.0])["interval"] is None  # one seed is a probe: no interval


def test_the_command_line_reads_run_directories_and_refuses_bad_pairs(tmp_path: Path, capsys) -> None:
    refs, (base, system, _) = corpus(2, sentences=20)
    (tmp_path / "test.en").write_text("\n".join(refs) + "\n", encoding="utf-8")
    runs = []
    for name, hyps, seed in (("softmax", base, 1), ("mhe", system, 1), ("mhe-seed2", system, 2)):
        (tmp_path / name / "gen").mkdir(parents=True)
        (tmp_path / name / "gen" / "hyp.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
        (tmp_path / name / "summary.json").write_text(json.dumps({"seed": seed, "commit": "0123abc"}))
        runs.append(tmp_path / name)
    out = tmp_path / "out" / "compare.json"
    report = compare.main(["--refs", str(tmp_path / "test.en"), "--baseline", str(runs[0]), "--system", str(runs[1]),
                           "--labels", "softmax", "mhe", "--samples", "50", "--out", str(out)])
    assert report["seeds"] == [[1, 1]] and report["commits"] == [["0123abc", "0123abc"]]
    assert json.loads(out.read_text())["bleu"]["per_seed"][0]["p_value"] == report["bleu"]["per_seed"][0]["p_value"]
    assert "| mhe - softmax |" in out.with_suffix(".md").read_text()
    for argv, message in (
            (["--baseline", str(runs[0]), "--system", str(runs[1]), str(runs[2])], "give one per seed"),
            (["--baseline", str(runs[0]), "--system", str(runs[2])], "different seeds"),
            (["--baseline", str(tmp_path / "missing"), "--system", str(runs[1])], "not found"),
            (["--baseline", str(runs[0]), "--system", str(runs[1]), "--samples", "1"], "at least 10")):
        with pytest.raises(SystemExit) as stopped:  # argparse prints its error, read_run exits with it
            compare.main(["--refs", str(tmp_path / "test.en"), *argv])
        said = (capsys.readouterr().err + str(stopped.value.code)).strip().splitlines()
        assert any(message in line for line in said[-2:])  # one line says it, after argparse's usage


@pytest.mark.e2e
def test_the_evaluation_docs_commands_run_as_printed(tmp_path: Path, monkeypatch) -> None:
    """docs/evaluation.md's compare block runs from a repository root holding those run directories; its
    recipe command is the recipe's (checked with --dry-run appended)."""
    import re
    import shlex
    import subprocess
    import sys

    docs = (Path(compare.__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text(encoding="utf-8")
    blocks = [b.replace("\\\n", "") for b in re.findall(r"```bash\n(.*?)```", docs, re.S)]
    recipe_line, = [line for b in blocks for line in b.splitlines() if "-m recipes.libreoffice_de_en.run" in line]
    repo = Path(compare.__file__).resolve().parents[1]
    argv = shlex.split(recipe_line)[3:]
    monkeypatch.chdir(repo)
    from recipes.libreoffice_de_en import run as libreoffice
    cfg = libreoffice.main([*argv, "--dry-run", "--work-dir", str(tmp_path / "work")])
    assert cfg.valid_lenpens == (1.0, 1.5, 2.0) and cfg.train.save_interval_updates == 500

    compare_block, = [b for b in blocks if "recipes.compare" in b]
    refs, (base, system, _) = corpus(3, sentences=20)
    work = tmp_path / "root" / "recipes" / "libreoffice_de_en" / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "test.en").write_text("\n".join(refs) + "\n", encoding="utf-8")
    for name in re.findall(r"\$W/(\S+)", compare_block):
        seed = int(name.rsplit("seed", 1)[1]) if "seed" in name else 1
        (work / "runs" / name / "gen").mkdir(parents=True)
        hyps = system if "mhe" in name else base
        (work / "runs" / name / "gen" / "hyp.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
        (work / "runs" / name / "summary.json").write_text(json.dumps({"seed": seed, "commit": "0123abc"}))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(repo)}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", compare_block], cwd=tmp_path / "root", env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "root" / "results" / "compare_spm16000_mhe.json").read_text())
    assert report["seeds"] == [[1, 1], [2, 2], [3, 3]] and report["labels"] == ["softmax", "mhe"]
