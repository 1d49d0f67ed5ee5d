"""A stock criterion on a factored model (label_smoothed_cross_entropy with transformer_mhce) trains
exactly but through full V-way log-probabilities: one warning, naming --criterion mhce_cross_entropy;
the plugin's criterion, and decoding (eval mode), get none."""
from __future__ import annotations

import logging

import torch

from toy import build_in_process

WARNING = "train with --criterion mhce_cross_entropy"


def warnings_in(caplog) -> list:
    return [r.getMessage() for r in caplog.records if WARNING in r.getMessage()]


def test_stock_criterion_on_a_factored_model_is_warned_about_once(toy_bin, caplog):
    from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion

    task, model, _criterion, sample = build_in_process(toy_bin)
    stock = LabelSmoothedCrossEntropyCriterion(task, sentence_avg=False, label_smoothing=0.1)
    model.train()
    with caplog.at_level(logging.WARNING, logger="mhce_nmt.adapters.model"):
        for _ in range(2):
            loss, _size, _log = stock(model, sample)
            loss.backward()
    assert torch.isfinite(loss)
    assert len(warnings_in(caplog)) == 1
    assert "\n" not in warnings_in(caplog)[0] and "label_smoothed_cross_entropy" in warnings_in(caplog)[0]


def test_plugin_criterion_and_decoding_are_not_warned_about(toy_bin, caplog):
    _task, model, criterion, sample = build_in_process(toy_bin)
    with caplog.at_level(logging.WARNING, logger="mhce_nmt.adapters.model"):
        model.train()
        loss, _size, _log = criterion(model, sample)
        loss.backward()
        model.eval()
        with torch.no_grad():
            net_output = model(**sample["net_input"])
            model.get_normalized_probs(net_output, log_probs=True)
    assert warnings_in(caplog) == []
