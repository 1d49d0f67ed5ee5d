"""MHS is a stock softmax model at inference; the criterion's sums equal exact log-probs."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from fairseq.models.transformer import TransformerModel

import mhce_nmt  # noqa: F401
from mhce_nmt.adapters.criterion import MHCECrossEntropyCriterion
from mhce_nmt.errors import MHCEConfigError
from toy import bleu, generate, load_trained, train_losses

pytestmark = pytest.mark.trains("mhs", "mhe2", "mhe3", "mhp2")


def test_mhs_checkpoint_is_a_stock_transformer(trained, toy_bin):
    model, cfg, task, sample = load_trained(trained, toy_bin, "mhs")
    args = copy.deepcopy(cfg.model)
    args.arch = "transformer_tiny"
    stock = TransformerModel.build_model(args, task).eval()
    stock.load_state_dict(model.state_dict(), strict=True)  # no conversion
    with torch.no_grad():
        ours = model.get_normalized_probs(model(**sample["net_input"]), log_probs=True)
        theirs = stock.get_normalized_probs(stock(**sample["net_input"]), log_probs=True)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_mhs_learns_and_decodes_with_the_stock_generator(trained, toy_bin, cli):
    run = trained("mhs")
    losses = train_losses(run["log"])
    assert losses[-1] < 0.5 * losses[0]
    out = generate(toy_bin, run["ckpt"], ["--task", "translation"], cli.run)
    assert bleu(out.stdout) > 60


def test_mhs_shares_input_output_embeddings(toy_bin, tmp_path):
    from fairseq import options, tasks

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(toy_bin), "--user-dir", mhce_nmt.__path__[0], "--task", "translation_mhce",
        "--arch", "transformer_mhce_tiny", "--mhce-mode", "mhs", "--share-decoder-input-output-embed",
        "--criterion", "mhce_cross_entropy"])
    task = tasks.setup_task(args)
    model = task.build_model(args)
    assert model.decoder.output_projection.weight is model.decoder.embed_tokens.weight
    args_mhe = copy.deepcopy(args)
    args_mhe.mhce_mode, args_mhe.mhce_heads, args_mhe.mhce_vocab_size = "mhe", None, None
    with pytest.raises(MHCEConfigError, match="share-decoder-input-output-embed"):
        task.build_model(args_mhe)


@pytest.mark.parametrize("name", ["mhe2", "mhe3", "mhp2", "mhs"])
def test_criterion_sums_equal_exact_log_probs(trained, toy_bin, name):
    model, _cfg, task, sample = load_trained(trained, toy_bin, name)
    criterion = MHCECrossEntropyCriterion(task, label_smoothing=0.0)
    with torch.no_grad():
        loss, sample_size, log = criterion(model, sample)
        lprobs = model.get_normalized_probs(model(**sample["net_input"]), log_probs=True)
    target = sample["target"]
    keep = target.ne(task.target_dictionary.pad())
    exact = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)[keep].sum()
    torch.testing.assert_close(loss, exact, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(log["nll_loss"], exact, atol=1e-3, rtol=1e-4)
    assert sample_size == sample["ntokens"] == int(keep.sum())
    if name in ("mhp2", "mhs"):  # a cascade's 'every level right' may differ from the joint argmax
        greedy = lprobs.argmax(-1)[keep] == target[keep]
        assert int(log["n_correct"]) == int(greedy.sum())
    smoothed = MHCECrossEntropyCriterion(task, label_smoothing=0.1)
    with torch.no_grad():
        loss_ls, _, log_ls = smoothed(model, sample)
    assert loss_ls > loss and torch.allclose(log_ls["nll_loss"], log["nll_loss"])


def test_criterion_metrics_are_base_2(trained, toy_bin):
    from fairseq.logging import metrics

    model, _cfg, task, sample = load_trained(trained, toy_bin, "mhe2")
    criterion = MHCECrossEntropyCriterion(task, label_smoothing=0.1)
    with torch.no_grad():
        _, _, log = criterion(model, sample)
    with metrics.aggregate() as agg:
        MHCECrossEntropyCriterion.reduce_metrics([log])
        values = agg.get_smoothed_values()
    nll_bits = float(log["nll_loss"]) / log["ntokens"] / math.log(2)
    assert values["nll_loss"] == pytest.approx(nll_bits, abs=1e-3)
    assert values["ppl"] == pytest.approx(2 ** nll_bits, rel=1e-2)
    assert {"accuracy", "acc_h1", "acc_h2"} <= set(values)


def test_criterion_rejects_stock_models_and_bad_smoothing(trained, toy_bin):
    from fairseq.models.transformer import TransformerModel as Stock

    model, cfg, task, sample = load_trained(trained, toy_bin, "mhs")
    args = copy.deepcopy(cfg.model)
    args.arch = "transformer_tiny"
    stock = Stock.build_model(args, task)
    with pytest.raises(MHCEConfigError, match="factored output layer"):
        MHCECrossEntropyCriterion(task)(stock, sample)
    with pytest.raises(MHCEConfigError, match="label-smoothing"):
        MHCECrossEntropyCriterion(task, label_smoothing=1.5)
