"""Coarse-to-fine decoding against fairseq's stock generator on exact full log-probs."""
from __future__ import annotations

from typing import Dict, List

import pytest
import torch
from fairseq import checkpoint_utils, search
from fairseq.sequence_generator import SequenceGenerator

import mhce_nmt  # noqa: F401
from mhce_nmt.errors import MHCEConfigError
from mhce_nmt.adapters.generator import CandidateBeamSearch, MHCESequenceGenerator
from mhce_nmt.adapters.task import parse_topk_groups

pytestmark = pytest.mark.trains("mhe2", "mhe3", "mhp2", "mhe2_seed2", "mhe2_short", "mhp2_short", "mhs")


def load(trained, toy_bin, *names):
    paths = [str(trained(n)["ckpt"]) for n in names]
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(paths, arg_overrides={"data": str(toy_bin)})
    for m in models:
        m.eval()
    task.load_dataset("test")
    return models, task


def batches(task, size: int = 16) -> List[Dict]:
    """The shortest and the longest batch of the test set (mixed lengths, padding)."""
    itr = task.get_batch_iterator(dataset=task.dataset("test"), max_sentences=size,
                                  max_positions=(1024, 1024)).next_epoch_itr(shuffle=False)
    samples = list(itr)
    return [samples[0], samples[-1]]


def decode(gen, models, sample, prefix_size: int = 0, seed: int | None = None):
    if seed is not None:
        torch.manual_seed(seed)
    prefix = sample["target"][:, :prefix_size] if prefix_size else None
    with torch.no_grad():
        return gen.generate(models, sample, prefix_tokens=prefix)


def assert_same(stock_out, ours_out):
    assert len(stock_out) == len(ours_out)
    for stock_hyps, our_hyps in zip(stock_out, ours_out):
        assert len(stock_hyps) == len(our_hyps)
        for a, b in zip(stock_hyps, our_hyps):
            assert a["tokens"].tolist() == b["tokens"].tolist()
            torch.testing.assert_close(a["score"], b["score"], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(a["positional_scores"], b["positional_scores"], atol=1e-4, rtol=1e-4)


CASES = {
    "greedy": dict(beam_size=1),
    "beam5_nbest3": dict(beam_size=5, max_len_b=12, nbest=3),
    "penalties": dict(beam_size=4, len_penalty=2.0, unk_penalty=0.5, min_len=4, no_repeat_ngram_size=2),
}


@pytest.mark.parametrize("names", [("mhe2",), ("mhe3",), ("mhp2",), ("mhe2", "mhe2_seed2"),
                                   ("mhe2_short",), ("mhp2_short",)],
                         ids=["mhe-H2", "mhe-H3", "mhp-H2", "ensemble", "mhe-shortlist", "mhp-shortlist"])
@pytest.mark.parametrize("case", list(CASES))
def test_all_groups_equals_stock_generator(trained, toy_bin, names, case):
    models, task = load(trained, toy_bin, *names)
    kwargs = dict(CASES[case])
    # nbest is no generator option: generators return every finished beam hypothesis, best
    # first, and fairseq-generate / the hub print the first nbest of them
    nbest = kwargs.pop("nbest", 1)
    stock = SequenceGenerator(models, task.target_dictionary, **kwargs)
    ours = MHCESequenceGenerator(models, task.target_dictionary, topk_groups=None, **kwargs)
    for sample in batches(task):
        stock_out, ours_out = decode(stock, models, sample), decode(ours, models, sample)
        assert all(len(hyps) >= nbest for hyps in stock_out)
        assert_same(stock_out, ours_out)  # every hypothesis, in order: the nbest printed and the rest


def test_prefix_tokens_and_sampling_equal_stock(trained, toy_bin):
    models, task = load(trained, toy_bin, "mhe2")
    stock = SequenceGenerator(models, task.target_dictionary, beam_size=3)
    ours = MHCESequenceGenerator(models, task.target_dictionary, topk_groups=None, beam_size=3)
    sample = batches(task)[0]
    assert_same(decode(stock, models, sample, prefix_size=2), decode(ours, models, sample, prefix_size=2))
    tgt = task.target_dictionary
    sampling = dict(beam_size=2, search_strategy=search.Sampling(tgt, sampling_topk=5))
    stock = SequenceGenerator(models, tgt, **sampling)
    ours = MHCESequenceGenerator(models, tgt, topk_groups=None, **sampling)
    assert_same(decode(stock, models, sample, seed=7), decode(ours, models, sample, seed=7))


def teacher_forced_scores(model, sample, row: int, tokens: torch.Tensor) -> torch.Tensor:
    """Exact log p(tokens[t] | tokens[<t], source) from the model's full log-probs."""
    src = sample["net_input"]["src_tokens"][row : row + 1]
    length = sample["net_input"]["src_lengths"][row : row + 1]
    prev = torch.cat([tokens.new_tensor([model.decoder.dictionary.eos()]), tokens[:-1]]).unsqueeze(0)
    with torch.no_grad():
        out = model(src, length, prev)
        lprobs = model.get_normalized_probs(out, log_probs=True)[0]
    return lprobs.gather(1, tokens.unsqueeze(1)).squeeze(1)


@pytest.mark.parametrize("name,groups", [("mhe2", [2]), ("mhe3", [2, 3]), ("mhp2", [1]),
                                         ("mhe2_short", [1]), ("mhp2_short", [2])])
def test_pruned_decoding_scores_are_exact(trained, toy_bin, name, groups):
    models, task = load(trained, toy_bin, name)
    vocab = len(task.target_dictionary)
    gen = MHCESequenceGenerator(models, task.target_dictionary, topk_groups=groups, beam_size=5)
    sample = batches(task)[0]
    for row, hyps in enumerate(decode(gen, models, sample)):
        for hyp in hyps:
            assert int(hyp["tokens"].max()) < vocab
            exact = teacher_forced_scores(models[0], sample, row, hyp["tokens"])
            torch.testing.assert_close(hyp["positional_scores"], exact, atol=1e-4, rtol=1e-4)


def test_topk_groups_errors(trained, toy_bin):
    models, task = load(trained, toy_bin, "mhe2")
    with pytest.raises(ValueError, match="out of range"):
        MHCESequenceGenerator(models, task.target_dictionary, topk_groups=[999])
    models3, task3 = load(trained, toy_bin, "mhe3")
    with pytest.raises(ValueError, match="coarse levels"):
        MHCESequenceGenerator(models3, task3.target_dictionary, topk_groups=[2, 2, 2])
    for bad in ["0", "a", "2,-1", ""]:
        with pytest.raises(MHCEConfigError, match="mhe-topk-groups"):
            parse_topk_groups(bad)
    assert parse_topk_groups("all") is None and parse_topk_groups("8,4") == [8, 4]
    assert parse_topk_groups("auto", models3[0].decoder.output_projection) == [3, 8]


def test_task_picks_generator(trained, toy_bin):
    models, task = load(trained, toy_bin, "mhe2")
    assert isinstance(task.build_generator(models, task.cfg), MHCESequenceGenerator)
    mhs_models, mhs_task = load(trained, toy_bin, "mhs")
    gen = mhs_task.build_generator(mhs_models, mhs_task.cfg)
    assert type(gen) is SequenceGenerator  # MHS infers with the full softmax


PRUNED = [("mhe2", [1], 4), ("mhe3", [2, 3], 4), ("mhp2", [1], 4), ("mhe2_short", [1], 4), ("mhp2_short", [2], 4),
          ("mhe2", [1], 12)]  # mhe2 [1]: 7 children + eos + 4 specials = 12 columns, fewer than the beam


@pytest.mark.parametrize("name,groups,beam", PRUNED)
def test_candidate_columns_equal_dense_scores(trained, toy_bin, name, groups, beam):
    """Plain beam search over candidate columns (its top-k over beam x C) finds what fairseq's
    own beam search finds over the dense V-wide scores, specials' penalties and limits included."""
    models, task = load(trained, toy_bin, name)
    tgt = task.target_dictionary
    options = dict(beam_size=beam, len_penalty=1.5, unk_penalty=0.5, min_len=3, max_len_b=10)
    columns = MHCESequenceGenerator(models, tgt, topk_groups=groups, **options)
    dense = MHCESequenceGenerator(models, tgt, topk_groups=groups, **options)
    dense.search = search.BeamSearch(tgt)  # the same candidates, scattered into V columns
    assert isinstance(columns.search, CandidateBeamSearch)
    widths = score_widths(columns)
    for sample in batches(task):
        assert_same(decode(dense, models, sample), decode(columns, models, sample))
    assert widths and max(widths) < len(tgt)


def test_dense_scores_where_columns_cannot_serve(trained, toy_bin):
    """Ensembles, n-gram blocking, sampling and forced prefixes index the scores by token id:
    those searches get V columns."""
    models, task = load(trained, toy_bin, "mhe2")
    tgt = task.target_dictionary
    ensemble, _ = load(trained, toy_bin, "mhe2", "mhe2_seed2")
    assert isinstance(MHCESequenceGenerator(models, tgt, beam_size=2).search, CandidateBeamSearch)
    for gen in [MHCESequenceGenerator(ensemble, tgt, beam_size=2),
                MHCESequenceGenerator(models, tgt, beam_size=2, no_repeat_ngram_size=2),
                MHCESequenceGenerator(models, tgt, beam_size=2, search_strategy=search.Sampling(tgt))]:
        assert type(gen.search) is not CandidateBeamSearch
    gen = MHCESequenceGenerator(models, tgt, topk_groups=[1], beam_size=2)
    widths = score_widths(gen)
    decode(gen, models, batches(task)[0], prefix_size=2)
    assert set(widths) == {len(tgt)}
    decode(gen, models, batches(task)[0])
    assert min(widths) < len(tgt)


def score_widths(gen: MHCESequenceGenerator) -> List[int]:
    """A list that gets the width of every step's scores the generator's ensemble returns."""
    widths: List[int] = []
    forward = gen.model.forward_decoder

    def recording_forward(*args, **kwargs):
        lprobs, attn = forward(*args, **kwargs)
        widths.append(lprobs.size(-1))
        return lprobs, attn

    gen.model.forward_decoder = recording_forward
    return widths
