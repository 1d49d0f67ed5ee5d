"""--mhce-embeddings factored: an id's input vector is its shortlist row, else the sum of one row per
digit of its code (mhce_nmt.embedding), in the output layer's code layout.

Every expectation comes from a brute-force V x d table built from the module's raw parameters by
looping over the ids (digits by plain divmod, positions read off the layout): lookups, gradients
(and a float64 gradcheck), the padding row, the parameter count. Then through fairseq: the
factored model is the model with that table in nn.Embedding (sqrt(d) scaling included); MHP's heads
are the digit tables when tied (its scores are then a tied softmax over the table); a tiny model
trains with the CLI, resumes bit for bit, and fairseq-generate, fairseq-interactive and the hub
translate alike; what factored embeddings cannot honour is one line.
"""
from __future__ import annotations

import argparse
import logging
import math
import re
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Union

import pytest
import torch
from torch import nn
from torch.func import functional_call

from mhce_nmt.adapters.model import check_embedding_state, validate_args
from mhce_nmt.codec import LabelCodec, ShortlistCodec
from mhce_nmt.embedding import FactoredEmbedding, PermutedEmbedding
from mhce_nmt.errors import MHCEConfigError
from mhce_nmt.layout import write_layout
from clear_errors import assert_one_clear_line
from fastcli import CLIServer
from reference import mixed_radix_digits
from toy import CLI_ENV, PLUGIN, REPO, bleu, build_in_process, hypotheses, train_args, write_copy_corpus


SPECIALS, PAD, D = 4, 1, 5
# name -> (V of the positions past the shortlist, head sizes)
CODECS = {"h2_waste": (23, [5, 5]), "h2_exact": (20, [4, 5]), "h3_waste": (37, [3, 4, 4])}
# (test codec of the positions past the shortlist, shortlist N or 0, with a code layout)
CASES = [("h2_waste", 0, False), ("h3_waste", 0, False), ("h2_exact", 5, False), ("h3_waste", 6, False),
         ("h2_waste", 0, True), ("h3_waste", 6, True)]
Embedding = Union[FactoredEmbedding, PermutedEmbedding]


def random_layout(v: int, seed: int = 0) -> torch.Tensor:
    """The specials stay, every other id goes anywhere (into or out of a shortlist too)."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.arange(SPECIALS), SPECIALS + torch.randperm(v - SPECIALS, generator=g)])


def make(cname: str, shortlist: int, permuted: bool, seed: int = 0) -> Embedding:
    """A float64 factored embedding with random parameters (the stored pad row too)."""
    tail_v, sizes = CODECS[cname]
    tail = LabelCodec(tail_v, sizes)
    codec = ShortlistCodec(shortlist + tail_v, shortlist, tail) if shortlist else tail
    torch.manual_seed(seed)
    m = FactoredEmbedding(codec, D, PAD).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    return PermutedEmbedding(m, random_layout(codec.vocab_size, seed)) if permuted else m


def brute_force_table(m: Embedding, zero_pad: bool = True) -> torch.Tensor:
    """(V, d), differentiable in m's parameters: row v = S[p] for a shortlisted position p = pi(v),
    else sum_h D_h[d_h(p - N)] (digits by divmod, D_h the K_h rows of digit_weight after D_<h);
    the pad row is 0 (zero_pad) or its digits' sum."""
    inner = m.embedding if isinstance(m, PermutedEmbedding) else m
    v_total, shortlist, sizes = inner.num_embeddings, inner.shortlist, inner.tail.head_sizes
    positions = m.layout.tolist() if isinstance(m, PermutedEmbedding) else list(range(v_total))
    tables = torch.split(inner.digit_weight, sizes)
    rows: List[torch.Tensor] = []
    for v in range(v_total):
        p = positions[v]
        if v == PAD and zero_pad:
            rows.append(torch.zeros_like(inner.digit_weight[0]))
        elif p < shortlist:
            rows.append(inner.shortlist_weight[p])
        else:
            rows.append(sum(table[d] for table, d in zip(tables, mixed_radix_digits(p - shortlist, sizes))))
    return torch.stack(rows)


def some_ids(v: int, seed: int = 0) -> torch.Tensor:
    """(rows, 9): a column of pads, then every id at least once and random ones."""
    g = torch.Generator().manual_seed(seed)
    n = 8 * math.ceil(v / 8)
    ids = torch.cat([torch.arange(v), torch.randint(0, v, (n - v,), generator=g)])
    ids = ids[torch.randperm(n, generator=g)].view(-1, 8)
    return torch.cat([torch.full((ids.size(0), 1), PAD), ids], dim=1)


# ---------------------------------------------------------------------------------------------
# the module against brute force
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cname,shortlist,permuted", CASES)
def test_lookups_equal_the_brute_force_table(cname, shortlist, permuted):
    m = make(cname, shortlist, permuted)
    ids = some_ids(m.num_embeddings)
    table = brute_force_table(m)
    torch.testing.assert_close(m(ids), table[ids], rtol=1e-12, atol=1e-12)
    assert m(ids).shape == (*ids.shape, D)
    assert torch.equal(m(ids[:, 0]), torch.zeros(ids.size(0), D, dtype=torch.float64))  # pad, whatever S holds
    # no two ids share a vector (the digits are complementary partitions)
    assert torch.unique(table, dim=0).shape[0] == m.num_embeddings


@pytest.mark.parametrize("cname,shortlist,permuted", CASES)
def test_gradients_equal_the_brute_force_tables(cname, shortlist, permuted):
    m = make(cname, shortlist, permuted)
    ids = some_ids(m.num_embeddings, seed=1)
    weights = torch.randn(*ids.shape, D, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    params = [p for p in m.parameters()]
    ours = torch.autograd.grad((m(ids) * weights).sum(), params)
    reference = torch.autograd.grad((brute_force_table(m)[ids] * weights).sum(), params)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cname,shortlist,permuted", [c for c in CASES if c[1]] + [("h3_waste", 0, True)])
def test_gradcheck_float64(cname, shortlist, permuted):
    m = make(cname, shortlist, permuted)
    ids = some_ids(m.num_embeddings, seed=3)
    names = [name for name, _ in m.named_parameters()]

    def lookup(*values):
        return functional_call(m, dict(zip(names, values)), (ids,))

    params = tuple(p.detach().clone().requires_grad_() for p in m.parameters())
    assert torch.autograd.gradcheck(lookup, params)


@pytest.mark.parametrize("cname,shortlist,permuted", CASES)
def test_padding_embeds_to_zero_and_gets_no_gradient(cname, shortlist, permuted):
    m = make(cname, shortlist, permuted)
    pads = torch.full((3, 4), PAD)
    (m(pads) ** 2 + m(pads)).sum().backward()
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in m.parameters())
    inner = m.embedding if permuted else m
    if shortlist:  # the stored pad row never receives a gradient, with other ids beside it
        inner.zero_grad()
        m(some_ids(m.num_embeddings)).sum().backward()
        assert torch.equal(inner.shortlist_weight.grad[PAD], torch.zeros(D, dtype=torch.float64))
        assert inner.shortlist_weight.grad[[0, 2, 3]].ne(0).all()


@pytest.mark.parametrize("cname,shortlist,permuted", CASES)
def test_parameters_are_the_shortlist_and_one_row_per_digit(cname, shortlist, permuted):
    m = make(cname, shortlist, permuted)
    sizes = CODECS[cname][1]
    assert sum(p.numel() for p in m.parameters()) == (shortlist + sum(sizes)) * D
    assert {tuple(p.shape) for p in m.parameters()} == {(sum(sizes), D)} | ({(shortlist, D)} if shortlist else set())


@pytest.mark.parametrize("vocab,shortlist,heads", [(256_000, 0, 2), (256_000, 4096, 2), (128_000, 4096, 3)])
def test_large_vocabularies_take_n_plus_sum_k_rows(vocab, shortlist, heads):
    codec = ShortlistCodec.build(vocab, shortlist, None, heads) if shortlist else LabelCodec.build(vocab, None, heads)
    m = FactoredEmbedding(codec, 512, PAD)
    rows = shortlist + sum(codec.head_sizes)
    assert sum(p.numel() for p in m.parameters()) == rows * 512
    assert rows < vocab // 25  # e.g. 1,012 rows instead of 256,000


def test_init_has_fairseqs_scale():
    """Rows ~ normal(0, 1/d) like fairseq's Embedding: each D_h at 1/(H d), so their sum at 1/d."""
    torch.manual_seed(0)
    m = FactoredEmbedding(ShortlistCodec.build(20_000, 100, None, 3), 64, PAD)
    assert (3 * m.digit_weight.var()).item() == pytest.approx(1 / 64, rel=0.1)
    assert m.shortlist_weight[PAD + 1:].var().item() == pytest.approx(1 / 64, rel=0.1)
    assert torch.equal(m.shortlist_weight[PAD], torch.zeros(64))


# ---------------------------------------------------------------------------------------------
# in fairseq's model
# ---------------------------------------------------------------------------------------------

FACTORED = ["--mhce-embeddings", "factored"]


def write_test_layout(path: Path) -> Path:
    """The layout of this file's models: a seeded random permutation of the toy's 48 target ids."""
    write_layout(path, random_layout(48, seed=7))
    return path


@pytest.fixture(scope="module")
def layout_file(tmp_path_factory) -> Path:
    return write_test_layout(tmp_path_factory.mktemp("factored_layout") / "layout.txt")


def with_full_tables(model) -> None:
    """Swap each factored embedding for nn.Embedding holding its brute-force table."""
    for coder in (model.encoder, model.decoder):
        table = brute_force_table(coder.embed_tokens).detach()
        coder.embed_tokens = nn.Embedding.from_pretrained(table, freeze=False, padding_idx=PAD)


@pytest.mark.parametrize("extra,layout", [
    (["--mhce-mode", "mhe", "--mhce-shortlist", "6"], False),
    (["--mhce-mode", "mhp", "--share-all-embeddings"], True),
    (["--mhce-mode", "mhe", "--mhce-heads", "4,4,4"], True),
], ids=["mhe-shortlist", "mhp-shared-layout", "mhe3-layout"])
def test_the_model_is_the_model_with_the_brute_force_tables(toy_bin, layout_file, extra, layout):
    """Encoder and decoder outputs equal those of fairseq's nn.Embedding holding the brute-force
    table: the factored vectors are scaled by sqrt(d) (embed_scale) like a full table's."""
    layout_option = ["--mhce-layout", str(layout_file)] if layout else []
    _task, model, _criterion, sample = build_in_process(toy_bin, [*FACTORED, *extra, *layout_option])
    model.eval()
    assert model.decoder.embed_scale == model.encoder.embed_scale == 8.0  # sqrt(d), d = 64
    assert isinstance(model.decoder.embed_tokens, PermutedEmbedding) == layout
    src = sample["net_input"]["src_tokens"]
    with torch.no_grad():
        _x, scaled = model.encoder.forward_embedding(src)
        table = brute_force_table(model.encoder.embed_tokens)
        torch.testing.assert_close(scaled, 8.0 * table[src], rtol=1e-6, atol=1e-6)
        factored = model(**sample["net_input"])[0]
        with_full_tables(model)
        torch.testing.assert_close(factored, model(**sample["net_input"])[0], rtol=1e-5, atol=1e-5)


def test_joint_dictionary_gets_the_target_codec_and_layout(toy_bin, layout_file):
    _task, model, _c, _s = build_in_process(toy_bin, [*FACTORED, "--mhce-shortlist", "6", "--mhce-layout",
                                                      str(layout_file)])
    encoder, decoder = model.encoder.embed_tokens, model.decoder.embed_tokens
    assert encoder is not decoder  # own tables without --share-all-embeddings
    assert torch.equal(encoder.layout, decoder.layout) and torch.equal(decoder.layout, random_layout(48, seed=7))
    assert encoder.embedding.codec_spec.tolist() == decoder.embedding.codec_spec.tolist() == [48, 6, 7, 6]
    _task, shared, _c, _s = build_in_process(toy_bin, [*FACTORED, "--share-all-embeddings"])
    assert shared.encoder.embed_tokens is shared.decoder.embed_tokens


@pytest.fixture(scope="module")
def separate_bin(tmp_path_factory, cli) -> Path:
    """Copy task with a source dictionary of its own: 50 source words (56 ids), 40 target words (48)."""
    root = tmp_path_factory.mktemp("separate")
    write_copy_corpus(root / "raw")
    for split in ("train", "valid", "test"):
        lines = (root / "raw" / f"{split}.src").read_text().splitlines()
        extra = [f"s{i % 50}" for i in range(len(lines))]  # every s-word occurs
        (root / "raw" / f"{split}.src").write_text("".join(f"{x} {line}\n" for x, line in zip(extra, lines)))
    cli.run("fairseq_cli.preprocess", [
        "--source-lang", "src", "--target-lang", "tgt", "--trainpref", root / "raw" / "train",
        "--validpref", root / "raw" / "valid", "--destdir", root / "bin", "--workers", "1"])
    return root / "bin"


def test_separate_source_dictionary_gets_its_own_codec(separate_bin, layout_file):
    task, model, criterion, sample = build_in_process(separate_bin, [*FACTORED, "--mhce-shortlist", "6",
                                                                     "--mhce-layout", str(layout_file)])
    assert len(task.source_dictionary) == 96 and len(task.target_dictionary) == 48
    encoder, decoder = model.encoder.embed_tokens, model.decoder.embed_tokens
    # automatic sizes for as many heads (2) over the source's 96 - 6 tail ids; no target layout
    assert isinstance(encoder, FactoredEmbedding) and encoder.codec_spec.tolist() == [96, 6, 10, 9]
    assert isinstance(decoder, PermutedEmbedding) and decoder.embedding.codec_spec.tolist() == [48, 6, 7, 6]
    loss, _size, _log = criterion(model, sample)
    loss.backward()
    assert encoder.digit_weight.grad.abs().sum() > 0


def test_mhp_heads_are_the_digit_tables_and_score_a_tied_softmax(toy_bin):
    """log p(v|x) = log_softmax_v(<e(v), x> + sum_h b_h[d_h(v)]) with e the brute-force table."""
    _task, model, criterion, sample = build_in_process(toy_bin, [*FACTORED, "--mhce-mode", "mhp",
                                                                 "--share-decoder-input-output-embed"])
    layer, embedding = model.decoder.output_projection, model.decoder.embed_tokens
    assert layer.heads.weight is embedding.digit_weight
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        table = brute_force_table(embedding, zero_pad=False)  # the output scores pad by its digits
        sizes = embedding.tail.head_sizes
        biases = torch.split(layer.heads.bias, sizes)
        bias = torch.tensor([sum(float(b[d]) for b, d in zip(biases, mixed_radix_digits(v, sizes)))
                             for v in range(48)])
        expected = torch.log_softmax(x @ table.t() + bias, dim=-1)
        torch.testing.assert_close(layer.log_probs(x), expected, rtol=1e-5, atol=1e-5)
    loss, _size, _log = criterion(model, sample)
    loss.backward()
    assert embedding.digit_weight.grad.abs().sum() > 0


def test_tie_shortlist_ties_the_factored_shortlist_rows_under_any_layout(toy_bin, layout_file):
    """Both sides index code positions, so a layout that moves shortlisted ids is fine (it is
    refused with full embeddings, whose rows are in id order)."""
    _task, model, _c, _s = build_in_process(toy_bin, [*FACTORED, "--mhce-shortlist", "6", "--mhce-tie-shortlist",
                                                      "--mhce-layout", str(layout_file)])
    assert model.decoder.output_projection.layer.short_weight is model.decoder.embed_tokens.embedding.shortlist_weight
    assert not hasattr(model.decoder.output_projection.layer, "short")
    with pytest.raises(MHCEConfigError, match="moves id 4 to position"):
        build_in_process(toy_bin, ["--mhce-shortlist", "6", "--mhce-tie-shortlist", "--mhce-layout", str(layout_file)])


@pytest.mark.parametrize("extra,warned", [
    (["--mhce-mode", "mhp", "--share-all-embeddings"], None),
    (["--mhce-mode", "mhe", "--share-all-embeddings"], "with --mhce-embeddings factored add --mhce-tie-shortlist"),
    (["--mhce-mode", "mhe", "--mhce-shortlist", "6", "--share-all-embeddings", "--mhce-tie-shortlist"],
     "only the shortlist's output rows are tied"),
], ids=["mhp", "mhe", "mhe-tie-shortlist"])
def test_share_all_embeddings_says_what_stays_untied(toy_bin, caplog, extra, warned):
    caplog.set_level(logging.WARNING, logger="mhce_nmt.adapters.model")
    build_in_process(toy_bin, [*FACTORED, *extra])
    messages = [r.getMessage() for r in caplog.records if "--share-all-embeddings with" in r.getMessage()]
    if warned is None:
        assert messages == []
    else:
        assert len(messages) == 1 and warned in messages[0], messages


# ---------------------------------------------------------------------------------------------
# what factored embeddings cannot honour
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options,expected", [
    (dict(mhce_mode="mhs"), "--mhce-embeddings factored applies to --mhce-mode mhp and mhe, not mhs"),
    (dict(mhe_tie_label_embeddings=True), "which --mhce-embeddings factored does not have: drop it"),
    (dict(share_decoder_input_output_embed=True), "MHE's levels embed prefixes, not digits: drop it, or use "
                                                  "--mhce-mode mhp"),
    (dict(mhce_tie_shortlist=True), "--mhce-tie-shortlist ties the shortlist's rows: give --mhce-shortlist N > 0"),
    (dict(decoder_embed_path="vectors.txt"), "--decoder-embed-path loads pretrained rows into a V x d table"),
    (dict(mhce_embeddings="hashed"), "--mhce-embeddings 'hashed' is unknown: choose one of full, factored"),
])
def test_bad_combinations_are_refused(options, expected):
    args = argparse.Namespace(**{"mhce_mode": "mhe", "mhce_embeddings": "factored", **options})
    with pytest.raises(MHCEConfigError, match=re.escape(expected)):
        validate_args(args)


def test_tied_heads_need_the_embedding_width(toy_bin):
    with pytest.raises(MHCEConfigError, match="per-digit input tables of width 64, but the decoder output dim is 16"):
        build_in_process(toy_bin, [*FACTORED, "--mhce-mode", "mhp", "--share-decoder-input-output-embed",
                                   "--decoder-output-dim", "16"])


def test_checkpoint_of_other_embeddings_is_refused():
    factored = {"encoder.embed_tokens.digit_weight": torch.zeros(13, 4),
                "encoder.embed_tokens.codec_spec": torch.tensor([48, 6, 7, 6])}
    full = {"encoder.embed_tokens.weight": torch.zeros(48, 4)}
    with pytest.raises(MHCEConfigError, match="encoder input embeddings are full but the model is built with "
                                              "--mhce-embeddings factored: give --mhce-embeddings full"):
        check_embedding_state(factored, full)
    other = dict(factored, **{"encoder.embed_tokens.codec_spec": torch.tensor([56, 6, 8, 7])})
    with pytest.raises(MHCEConfigError, match=r"code \[V, N, K...\] = \[56, 6, 8, 7\] but the model built for this "
                                              r"dictionary codes \[48, 6, 7, 6\]"):
        check_embedding_state(factored, other)
    check_embedding_state(factored, dict(factored))


# ---------------------------------------------------------------------------------------------
# through fairseq's commands
# ---------------------------------------------------------------------------------------------

MAIN = [*FACTORED, "--mhce-mode", "mhp", "--mhce-shortlist", "6", "--share-all-embeddings", "--mhce-tie-shortlist"]
RESUMED = [*FACTORED, "--mhce-mode", "mhe", "--mhce-heads", "4,4,4", "--log-interval", "1"]
SENTENCES = 8


def run_everything(cli: CLIServer, toy_bin: Path, root: Path) -> Dict[str, object]:
    """A factored model trained (150 updates, with the file's layout), decoded three ways; a resumed
    run and an uninterrupted one (8 updates); a resume with full embeddings (two commands at a time)."""
    layout = ["--mhce-layout", str(write_test_layout(root / "layout.txt"))]

    def train(name: str, extra: List[str], updates: int, check: bool = True):
        return cli.run("fairseq_cli.train", train_args(toy_bin, root / name, extra, updates=updates), check=check)

    out = {"root": root}
    with ThreadPoolExecutor(2) as pool:
        main = pool.submit(train, "main", [*MAIN, *layout], 150)
        split = pool.submit(lambda: (train("split", [*RESUMED, *layout], 4), train("split", [*RESUMED, *layout], 8)))
        whole = pool.submit(train, "whole", [*RESUMED, *layout], 8)
        out["main"], out["split"], out["whole"] = main.result(), split.result(), whole.result()
    (root / "full").mkdir()
    shutil.copy(root / "whole" / "checkpoint_last.pt", root / "full" / "checkpoint_last.pt")
    out["resume_full"] = train("full", [*RESUMED[2:], *layout], 12, check=False)
    ckpt = root / "main" / "checkpoint_last.pt"
    out["ckpt"] = ckpt
    out["generate"] = cli.run("fairseq_cli.generate", [
        toy_bin, "--user-dir", PLUGIN, "--path", ckpt, "--task", "translation_mhce", "--beam", "5",
        "--batch-size", "16", "--cpu"])
    lines = (toy_bin.parent / "raw" / "test.src").read_text().splitlines()[:SENTENCES]
    out["lines"] = lines
    out["interactive"] = cli.run("fairseq_cli.interactive", [
        toy_bin, "--user-dir", PLUGIN, "--task", "translation_mhce", "--path", ckpt, "--beam", "5",
        "--source-lang", "src", "--target-lang", "tgt", "--cpu"], stdin="\n".join(lines) + "\n")
    return out


pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.early.with_args(run_everything)]


@pytest.fixture(scope="module")
def runs(early_batches) -> Dict[str, object]:
    """run_everything's results, started at the session's start."""
    return early_batches(run_everything)


def test_trains_and_learns_the_copy_task(runs):
    assert bleu(runs["generate"].stdout) > 60
    assert len(hypotheses(runs["generate"].stdout)) == 60


def test_generate_interactive_and_hub_agree(runs, toy_bin):
    generated = hypotheses(runs["generate"].stdout)
    interactive = hypotheses(runs["interactive"].stdout)
    assert interactive == {i: generated[i] for i in range(SENTENCES)}
    ckpt = runs["ckpt"]
    script = textwrap.dedent(f"""
        import mhce_nmt
        from mhce_nmt.adapters.model import TransformerMHCEModel
        hub = TransformerMHCEModel.from_pretrained({str(ckpt.parent)!r}, checkpoint_file={ckpt.name!r},
            data_name_or_path={str(toy_bin)!r}, task="translation_mhce", source_lang="src", target_lang="tgt")
        for line in hub.translate({runs["lines"]!r}, beam=5):
            print("HUB", line)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=CLI_ENV, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hub = [line[4:] for line in proc.stdout.splitlines() if line.startswith("HUB ")]
    assert hub == [generated[i] for i in range(SENTENCES)]


def test_checkpoint_reloads_with_every_tie(runs, toy_bin, layout_file):
    """Loaded (pi from the checkpoint, no file): one shared embedding, the heads and the shortlist
    rows are its tables, and it equals the model built from the options given the same weights."""
    from fairseq import checkpoint_utils

    (model,), _cfg, _task = checkpoint_utils.load_model_ensemble_and_task(
        [str(runs["ckpt"])], arg_overrides={"data": str(toy_bin)})
    embedding = model.decoder.embed_tokens
    assert model.encoder.embed_tokens is embedding and isinstance(embedding, PermutedEmbedding)
    assert torch.equal(embedding.layout, random_layout(48, seed=7))
    layer = model.decoder.output_projection.layer
    assert layer.tail.heads.weight is embedding.embedding.digit_weight
    assert layer.short_weight is embedding.embedding.shortlist_weight
    _t, built, _c, sample = build_in_process(toy_bin, [*MAIN, "--mhce-layout", str(layout_file)])
    built.load_state_dict(torch.load(runs["ckpt"])["model"])
    model.eval()
    built.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**sample["net_input"])[0], built(**sample["net_input"])[0], rtol=0, atol=0)


def test_resumed_training_is_bit_identical(runs):
    first, second = runs["split"]
    assert "(epoch 1 @ 4 updates)" in second.stdout + second.stderr
    a = torch.load(runs["root"] / "whole" / "checkpoint_last.pt")["model"]
    b = torch.load(runs["root"] / "split" / "checkpoint_last.pt")["model"]
    assert a.keys() == b.keys() and "decoder.embed_tokens.embedding.digit_weight" in a
    assert not [k for k in a if not torch.equal(a[k], b[k])]


def test_resuming_with_full_embeddings_is_one_line(runs):
    assert_one_clear_line(runs["resume_full"], "the checkpoint's encoder input embeddings are factored but the "
                                               "model is built with --mhce-embeddings full: give --mhce-embeddings "
                                               "factored")
    assert "train_inner" not in runs["resume_full"].stdout
