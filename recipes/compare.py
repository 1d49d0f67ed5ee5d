"""Compare a system with a baseline over several training seeds, on one test set.

For each metric (BLEU, chrF) it reports:

- each run's score, and per system the mean, the sample sd over seeds and a 95% t-interval of
  the mean (seed variance);
- per seed pair (baseline seed i against system seed i): the difference and sacreBLEU's paired
  bootstrap p-value (``sacrebleu --paired-bs``: the same resamples, seed $SACREBLEU_SEED or 12345,
  and the same test statistic, so the numbers agree with it);
- pooled over seeds: the difference of the seed means, and its 95% interval from B bootstrap
  resamples of the test sentences (one resample shared by every run, as a paired test shares
  it): delta_b = mean_i score(sys_i[idx_b]) - mean_i score(base_i[idx_b]); the interval is
  the 2.5th and 97.5th percentiles of delta_b. It covers test-set sampling given these seeds;
  the t-interval of the per-seed differences covers seed variance.

    python -m recipes.compare --refs WORK/data/test.en \\
        --baseline WORK/runs/spm16000-softmax WORK/runs/spm16000-softmax-seed2 \\
        --system WORK/runs/spm16000-mhe WORK/runs/spm16000-mhe-seed2 --out results/compare.json

A run is a recipe run directory (its gen/hyp.txt, and summary.json for the seed and commit) or a
plain hypothesis file. Runs are paired by position: give the seeds in the same order.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from recipes.textfiles import read_lines

DEFAULT_SAMPLES = 1000
# two-sided 95% Student t quantiles by degrees of freedom (scipy-free; df > 30 uses the normal 1.96)
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


@dataclass(frozen=True)
class Run:
    """One trained model's test output: its hypotheses, and what its summary says of it."""

    name: str
    hypotheses: list[str]
    seed: int | None = None
    commit: str | None = None


def read_run(path: Path) -> Run:
    """A recipe run directory (gen/hyp.txt + summary.json) or a hypothesis file."""
    hyp_file = path / "gen" / "hyp.txt" if path.is_dir() else path
    if not hyp_file.exists():
        sys.exit(f"error: {hyp_file} not found: give a recipe run directory that has decoded the test set, "
                 "or a hypothesis file")
    summary_file = path / "summary.json"
    summary = json.loads(summary_file.read_text(encoding="utf-8")) if path.is_dir() and summary_file.exists() else {}
    return Run(name=str(path), hypotheses=read_lines(hyp_file),
               seed=summary.get("seed"), commit=summary.get("commit"))


def t_quantile(df: int) -> float:
    """The 97.5th percentile of Student's t with `df` degrees of freedom (table; the next lower df)."""
    if df > 30:
        return 1.96
    return T_975[max(k for k in T_975 if k <= df)]


def mean_sd_interval(values: Sequence[float]) -> dict[str, object]:
    """Mean, sample sd and a 95% t-interval of the mean (sd and interval need two values)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"values": list(values), "mean": mean, "sd": None, "interval": None}
    sd = statistics.stdev(values)
    half = t_quantile(len(values) - 1) * sd / math.sqrt(len(values))
    return {"values": list(values), "mean": mean, "sd": sd, "interval": [mean - half, mean + half]}


def resample_indices(sentences: int, samples: int) -> np.ndarray:
    """(samples, sentences) bootstrap indices, drawn as sacreBLEU's paired test draws them."""
    seed = os.environ.get("SACREBLEU_SEED", "12345")
    rng = np.random.default_rng(None if seed.lower() == "none" else int(seed))
    return rng.choice(sentences, size=(samples, sentences), replace=True)


def metric(name: str):
    """A sacreBLEU metric object by name (bleu or chrf), with sacreBLEU's defaults."""
    from sacrebleu.metrics import BLEU, CHRF

    return {"bleu": BLEU, "chrf": CHRF}[name]()


def resampled_scores(scorer, hypotheses: Sequence[str], references: Sequence[str],
                     indices: np.ndarray) -> tuple[float, np.ndarray]:
    """(corpus score, the score of every resample) from sufficient statistics, as sacreBLEU does."""
    stats = scorer._extract_corpus_statistics(hypotheses, [references])
    score = scorer._aggregate_and_compute(stats).score
    stats_np = np.array(stats, dtype="float32")
    return score, np.array([scorer._compute_score_from_stats(s.sum(0)).score for s in stats_np[indices]])


def paired_p_value(base: np.ndarray, system: np.ndarray, observed: float) -> float:
    """sacreBLEU's paired bootstrap p: how often a centred resampled |difference| exceeds the observed one."""
    differences = np.abs(system - base)
    centred = differences - differences.mean()
    return (int(np.sum(centred > abs(observed))) + 1) / (len(centred) + 1)


def compare(references: Sequence[str], baseline: Sequence[Run], system: Sequence[Run],
            metrics: Sequence[str] = ("bleu", "chrf"), samples: int = DEFAULT_SAMPLES) -> dict[str, object]:
    """The comparison of the module docstring, as a JSON-ready dict."""
    if len(baseline) != len(system) or not baseline:
        raise ValueError(f"give as many system runs as baseline runs (one per seed, paired by position), got "
                         f"{len(baseline)} and {len(system)}")
    for run in (*baseline, *system):
        if len(run.hypotheses) != len(references):
            raise ValueError(f"{run.name}: {len(run.hypotheses)} hypotheses for {len(references)} references")
    indices = resample_indices(len(references), samples)
    report: dict[str, object] = {"sentences": len(references), "samples": samples,
                                 "baseline": [r.name for r in baseline], "system": [r.name for r in system],
                                 "seeds": [[b.seed, s.seed] for b, s in zip(baseline, system)],
                                 "commits": [[b.commit, s.commit] for b, s in zip(baseline, system)]}
    for name in metrics:
        scorer = metric(name)
        base = [resampled_scores(scorer, r.hypotheses, references, indices) for r in baseline]
        sys_ = [resampled_scores(scorer, r.hypotheses, references, indices) for r in system]
        per_seed = [{"baseline": b[0], "system": s[0], "difference": s[0] - b[0],
                     "p_value": paired_p_value(b[1], s[1], s[0] - b[0])} for b, s in zip(base, sys_)]
        pooled = np.mean([s[1] for s in sys_], axis=0) - np.mean([b[1] for b in base], axis=0)
        observed = statistics.fmean(s[0] for s in sys_) - statistics.fmean(b[0] for b in base)
        report[name] = {
            "baseline": mean_sd_interval([b[0] for b in base]), "system": mean_sd_interval([s[0] for s in sys_]),
            "per_seed": per_seed, "difference_over_seeds": mean_sd_interval([p["difference"] for p in per_seed]),
            "pooled": {"difference": observed,
                       "interval": [float(np.percentile(pooled, 2.5)), float(np.percentile(pooled, 97.5))]},
        }
    return report


def markdown(report: dict[str, object], baseline_label: str, system_label: str) -> str:
    """The report as a short markdown table per metric."""
    def number(value: object) -> str:
        return "" if value is None else f"{value:.2f}"

    def interval(value: object) -> str:
        return "" if value is None else f"[{value[0]:.2f}, {value[1]:.2f}]"

    lines = [f"{system_label} against {baseline_label}: {len(report['baseline'])} seed(s), "
             f"{report['sentences']:,} test sentences, {report['samples']:,} bootstrap resamples", ""]
    for name in ("bleu", "chrf"):
        if name not in report:
            continue
        part = report[name]
        lines += [f"| {name} | each seed | mean | sd | 95% interval of the mean |", "|---|---|---|---|---|"]
        for label, key in ((baseline_label, "baseline"), (system_label, "system"),
                           (f"{system_label} - {baseline_label}", "difference_over_seeds")):
            stats = part[key]
            lines.append(f"| {label} | {', '.join(f'{v:.2f}' for v in stats['values'])} | {number(stats['mean'])} | "
                         f"{number(stats['sd'])} | {interval(stats['interval'])} |")
        pooled = part["pooled"]
        p_values = ", ".join(f"{p['p_value']:.3f}" for p in part["per_seed"])
        lines += ["", f"{name}: pooled difference {pooled['difference']:+.2f}, 95% bootstrap interval "
                      f"{interval(pooled['interval'])}; paired bootstrap p per seed: {p_values}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refs", type=Path, required=True, help="the test set's raw references, one per line")
    parser.add_argument("--baseline", type=Path, nargs="+", required=True, metavar="RUN",
                        help="the baseline's runs, one per seed")
    parser.add_argument("--system", type=Path, nargs="+", required=True, metavar="RUN",
                        help="the system's runs, one per seed, in the baseline's seed order")
    parser.add_argument("--labels", nargs=2, default=("baseline", "system"), metavar=("BASELINE", "SYSTEM"))
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="bootstrap resamples (default %(default)s)")
    parser.add_argument("--out", type=Path, help="write the report here as JSON (and the table as .md beside it)")
    args = parser.parse_args(argv)
    if args.samples < 10:
        parser.error(f"--samples {args.samples}: give at least 10 resamples (sacreBLEU uses 1,000)")
    if len(args.baseline) != len(args.system):
        parser.error(f"--baseline has {len(args.baseline)} runs and --system {len(args.system)}: give one per seed, "
                     "the same seeds in the same order")
    if not args.refs.exists():
        parser.error(f"--refs {args.refs} not found")
    references = read_lines(args.refs)
    baseline, system = [read_run(p) for p in args.baseline], [read_run(p) for p in args.system]
    mismatched = [(b.seed, s.seed) for b, s in zip(baseline, system) if None not in (b.seed, s.seed) and b.seed != s.seed]
    if mismatched:
        parser.error(f"runs paired by position have different seeds {mismatched}: give the seeds in the same order")
    try:
        report = compare(references, baseline, system, samples=args.samples)
    except ValueError as error:
        parser.error(str(error))
    report["labels"] = list(args.labels)
    table = markdown(report, *args.labels)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        args.out.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
