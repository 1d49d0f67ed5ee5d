"""The criterion's logged MHE accuracies against a brute-force count from exact log-probs.

acc_hN: level N is right when, among the children of the target's own first N-1 digits, the
target's digit N carries the most probability mass; the mass of a child is the sum of p(v) over
every token v below it, from the model's exact (V-way) log-probs, with digits from
tests/reference.py. accuracy: every level right. (For a cascade this differs from "the joint
argmax is the target".)
"""
from __future__ import annotations

from typing import Dict, List

import pytest
import torch
from fairseq.logging import metrics

import mhce_nmt  # noqa: F401
from mhce_nmt.adapters.criterion import MHCECrossEntropyCriterion
from reference import mixed_radix_digits
from toy import build_in_process, load_trained

pytestmark = pytest.mark.trains("mhe2", "mhe3")


def brute_force_correct(lprobs: torch.Tensor, target: torch.Tensor, sizes: List[int]) -> Dict[str, int]:
    """{'n_correct_hN': count, 'n_correct': count of all levels right} over rows of lprobs (N, V)."""
    vocab = lprobs.size(1)
    digits = torch.tensor([mixed_radix_digits(v, sizes) for v in range(vocab)])  # (V, H)
    probs = lprobs.double().exp()  # (N, V)
    gold = digits[target]  # (N, H)
    right = torch.ones(len(target), len(sizes), dtype=torch.bool)
    for h, k in enumerate(sizes):
        below = (digits[None, :, :h] == gold[:, None, :h]).all(2)  # (N, V): v shares y's first h digits
        child = torch.nn.functional.one_hot(digits[:, h], k).double()  # (V, k): v's digit h
        mass = (probs * below) @ child  # (N, k): the mass below each child of y's prefix
        right[:, h] = mass.argmax(1) == gold[:, h]
    counts = {f"n_correct_h{h + 1}": int(right[:, h].sum()) for h in range(len(sizes))}
    counts["n_correct"] = int(right.all(1).sum())
    return counts


@pytest.mark.parametrize("source", ["mhe2", "mhe3", "untrained-mhe3"])
def test_logged_accuracies_equal_brute_force(trained, toy_bin, source):
    if source.startswith("untrained"):  # random weights: accuracies far from 100 %
        torch.manual_seed(0)
        task, model, _criterion, sample = build_in_process(
            toy_bin, ["--mhce-mode", "mhe", "--mhce-heads", "4,4,4"])
    else:
        model, _cfg, task, sample = load_trained(trained, toy_bin, source, max_sentences=64)
    model.eval()
    sizes = [int(k) for k in model.decoder.output_projection.codec.head_sizes]
    criterion = MHCECrossEntropyCriterion(task, label_smoothing=0.1)
    with torch.no_grad():
        _, _, log = criterion(model, sample)
        lprobs = model.get_normalized_probs(model(**sample["net_input"]), log_probs=True)
    keep = sample["target"].ne(task.target_dictionary.pad())
    expected = brute_force_correct(lprobs[keep], sample["target"][keep], sizes)
    total = int(keep.sum())
    assert int(log["total"]) == total
    assert {k: int(v) for k, v in log.items() if k.startswith("n_correct")} == expected
    with metrics.aggregate() as agg:
        MHCECrossEntropyCriterion.reduce_metrics([log])
        values = agg.get_smoothed_values()
    names = {"n_correct": "accuracy", **{f"n_correct_h{h}": f"acc_h{h}" for h in range(1, len(sizes) + 1)}}
    for key, name in names.items():
        assert values[name] == pytest.approx(100.0 * expected[key] / total, abs=1e-3), name
    if source.startswith("untrained"):  # the counts discriminate: some right, some wrong
        assert all(0 < expected[f"n_correct_h{h}"] < total for h in range(1, len(sizes) + 1))
