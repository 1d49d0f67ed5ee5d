"""Code layouts (`--mhce-layout`): a permutation pi puts id v on code position pi(v).

The layers score positions, PermutedOutput maps ids in and out. Every expectation comes from a
brute force over positions built from the layer's parameters in float64 (test_output_layers.py,
test_shortlist.py), whose column pi(v) is id v's, and losses from fairseq's own
label_smoothed_nll_loss on those log-probs. Then: the identity is today's layer bit for bit, a
checkpoint carries pi (trains, loads and decodes without the file), bad layout files are one
line, and `python -m recipes.layouts` writes valid layouts.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss

from mhce_nmt.errors import MHCEConfigError
from mhce_nmt.layout import LayoutError, identity_layout, inverse_layout, read_layout, write_layout
from mhce_nmt.adapters.model import check_layout_keeps_tied_rows, validate_args
from mhce_nmt.output import PermutedOutput, factored_loss
from clear_errors import assert_one_clear_line
from layer_builders import codec_of, inputs, make, make_shortlist
from layer_reference import ref_log_probs, ref_shortlist
from toy import PLUGIN, REPO, build_in_process, hypotheses, train_args

pytestmark = pytest.mark.usefixtures("one_thread")

SPECIALS = 4
# (mode, test codec of the positions past the shortlist, shortlist N or 0)
CASES = [("mhp", "h2_waste", 0), ("mhp", "h3_waste", 0), ("mhe", "h2_waste", 0), ("mhe", "h3_waste", 0),
         ("mhp", "h2_waste", 4), ("mhp", "h3_waste", 5), ("mhe", "h2_waste", 4), ("mhe", "h3_waste", 6)]


def random_layout(v: int, seed: int = 0) -> torch.Tensor:
    """The specials stay, every other id goes anywhere (into or out of a shortlist too)."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.arange(SPECIALS), SPECIALS + torch.randperm(v - SPECIALS, generator=g)])


def layer_over_positions(mode: str, cname: str, shortlist: int, seed: int = 0):
    return make_shortlist(mode, cname, shortlist, seed) if shortlist else make(mode, codec_of(cname), seed=seed)


def permuted(mode: str, cname: str, shortlist: int, seed: int = 0):
    layer = layer_over_positions(mode, cname, shortlist, seed)
    return PermutedOutput(layer, random_layout(layer.codec.vocab_size, seed), SPECIALS)


def ref_id_log_probs(m: PermutedOutput, x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(N, V) float64: brute force over positions, column pi(v) moved to column v one by one."""
    layer = m.layer
    by_position = ref_shortlist(layer, x, temperature) if hasattr(layer, "tail") else ref_log_probs(layer, x, temperature)
    return torch.stack([by_position[:, int(p)] for p in m.layout.tolist()], 1)


def every_id(v: int, n: int) -> torch.Tensor:
    return (torch.arange(n) * 5) % v


# ---------------------------------------------------------------------------------------------
# exactness against brute force
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode,cname,shortlist", CASES)
@pytest.mark.parametrize("temperature", [1.0, 1.7])
def test_log_probs_match_brute_force_and_are_normalised(mode, cname, shortlist, temperature):
    m = permuted(mode, cname, shortlist).eval()
    v = m.codec.vocab_size
    x, _ = inputs(6, v)
    lp = m.log_probs(x, temperature)
    torch.testing.assert_close(lp.double(), ref_id_log_probs(m, x, temperature), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lp.double().exp().sum(-1), torch.ones(6, dtype=torch.float64), atol=1e-5, rtol=0)
    ids = torch.randint(0, v, (6, 9), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(m.score(x, ids, temperature), lp.gather(1, ids), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode,cname,shortlist", CASES)
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_loss_and_gradients_equal_fairseq_on_the_exact_log_probs(mode, cname, shortlist, eps):
    """nll = -log p(y), the loss is fairseq's joint smoothing over ids, and the gradients are those
    of fairseq's loss through the (checked) full log-probs."""
    m = permuted(mode, cname, shortlist)
    v = m.codec.vocab_size
    x, _ = inputs(30, v, seed=2)
    y = every_id(v, 30)
    x1 = x.clone().requires_grad_(True)
    res = factored_loss(m.loss_terms(x1, y, sum_groups=0), eps, "joint")
    want, want_nll = label_smoothed_nll_loss(ref_id_log_probs(m, x), y.unsqueeze(-1), eps, ignore_index=None,
                                             reduce=False)
    torch.testing.assert_close(res.nll.double(), want_nll.view(-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.loss.double(), want.view(-1), atol=1e-5, rtol=1e-5)
    got = torch.autograd.grad(res.loss.sum(), [x1] + list(m.parameters()))
    x2 = x.clone().requires_grad_(True)
    ref = label_smoothed_nll_loss(m.log_probs(x2), y.unsqueeze(-1), eps, ignore_index=None, reduce=True)[0]
    for g, r in zip(got, torch.autograd.grad(ref, [x2] + list(m.parameters()))):
        torch.testing.assert_close(g, r, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("mode,cname,shortlist", [("mhp", "h2_waste", 4), ("mhe", "h3_waste", 0)])
def test_gradcheck_float64(mode, cname, shortlist):
    m = permuted(mode, cname, shortlist).double()
    assert m.layout.dtype == torch.long  # .double() leaves the permutation alone
    x, _ = inputs(4, m.codec.vocab_size, dtype=torch.float64)
    y = every_id(m.codec.vocab_size, 4)
    assert torch.autograd.gradcheck(
        lambda x: factored_loss(m.loss_terms(x, y, sum_groups=0), 0.1, "joint").loss, (x.requires_grad_(True),))


@pytest.mark.parametrize("mode,cname,shortlist", CASES)
def test_candidates_with_every_group_are_the_exhaustive_top_k(mode, cname, shortlist):
    """Every group kept: each id once with its exact score, so the top k of the candidates are
    the top k of the full log-probs. Pruned: every candidate's id and score stay exact."""
    m = permuted(mode, cname, shortlist).eval()
    v = m.codec.vocab_size
    x, _ = inputs(5, v, seed=8)
    lp = m.log_probs(x)
    ids, scores = m.candidates(x, None)
    finite = torch.isfinite(scores)
    for row in range(5):
        assert sorted(ids[row][finite[row]].tolist()) == list(range(v))
    top = scores.topk(5, dim=1)
    want = lp.topk(5, dim=1)
    assert torch.equal(ids.gather(1, top.indices), want.indices)
    torch.testing.assert_close(top.values, want.values)
    ids, scores = m.candidates(x, [1])
    finite = torch.isfinite(scores)
    assert finite.sum(1).max() < v  # really pruned
    torch.testing.assert_close(scores[finite], lp.gather(1, ids)[finite])


@pytest.mark.parametrize("mode,cname,shortlist", CASES)
def test_identity_layout_is_todays_layer_bit_for_bit(mode, cname, shortlist):
    layer = layer_over_positions(mode, cname, shortlist)
    m = PermutedOutput(layer, identity_layout(layer.codec.vocab_size), SPECIALS)
    v = layer.codec.vocab_size
    x, _ = inputs(7, v, seed=3)
    y = every_id(v, 7)
    assert torch.equal(m.log_probs(x), layer.log_probs(x))
    for a, b in zip(m.candidates(x, [2]), layer.candidates(x, [2])):
        assert torch.equal(a, b)
    ids = torch.randint(0, v, (7, 4), generator=torch.Generator().manual_seed(2))
    assert torch.equal(m.score(x, ids), layer.score(x, ids))
    mine = factored_loss(m.loss_terms(x, y, sum_groups=0), 0.1, "joint")
    today = factored_loss(layer.loss_terms(x, y, sum_groups=0), 0.1, "joint")
    assert torch.equal(mine.loss, today.loss) and torch.equal(mine.nll, today.nll)


def test_pad_and_specials_keep_their_codes():
    """The criterion drops pad targets by id before the layer; the specials' own codes are
    those of the dictionary order, so an id < 4 scores like today."""
    m = permuted("mhe", "h3_waste", 0)
    x, _ = inputs(3, m.codec.vocab_size)
    assert torch.equal(m.positions(torch.arange(SPECIALS)), torch.arange(SPECIALS))
    assert torch.equal(m.log_probs(x)[:, :SPECIALS], m.layer.log_probs(x)[:, :SPECIALS])


def test_state_dict_carries_the_layout():
    """A layer built with an identity placeholder takes pi from the state dict (its inverse too);
    a state dict whose layout is no permutation is refused."""
    m = permuted("mhe", "h2_waste", 4)
    state = m.state_dict()
    assert torch.equal(state["layout"], m.layout) and "ids_at" not in state
    fresh = PermutedOutput(layer_over_positions("mhe", "h2_waste", 4, seed=5), identity_layout(m.codec.vocab_size),
                           SPECIALS)
    fresh.load_state_dict(state)
    x, _ = inputs(4, m.codec.vocab_size)
    assert torch.equal(fresh.log_probs(x), m.log_probs(x))
    assert torch.equal(fresh.ids_at, inverse_layout(m.layout))
    state["layout"] = torch.zeros_like(state["layout"])
    with pytest.raises(LayoutError, match="the checkpoint's code layout is not a permutation"):
        fresh.load_state_dict(state)


# ---------------------------------------------------------------------------------------------
# layout files
# ---------------------------------------------------------------------------------------------

V = 48  # the toy data-bin's target dictionary (specials included)


@pytest.mark.parametrize("suffix", [".txt", ".npy", ".pt"])
def test_layout_file_formats(tmp_path, suffix):
    layout = random_layout(V, seed=4)
    path = tmp_path / f"layout{suffix}"
    if suffix == ".txt":
        write_layout(path, layout)
    elif suffix == ".npy":
        np.save(path, layout.numpy().astype(np.int32))
    else:
        torch.save(layout, path)
    assert torch.equal(read_layout(path, V, SPECIALS), layout)


BAD_FILES = {  # name -> (file text, the one error line must contain)
    "short": ("\n".join(map(str, range(V - 1))), f"has {V - 1} positions (shape ({V - 1},)) but the target "
                                                   f"dictionary has {V} ids"),
    "repeated": ("\n".join(map(str, [*range(V - 1), 5])), "is not a permutation: position 5 appears 2 times and "
                                                           f"position {V - 1} not at all"),
    "outside": ("\n".join(map(str, [*range(V - 1), V])), f"id {V - 1} has position {V}, outside 0..{V - 1}"),
    "moves_pad": ("\n".join(map(str, [0, 2, 1, *range(3, V)])), "moves special symbol id 1 to position 2"),
    "not_integers": ("0\n1\nx\n", "line 3: 'x' is not an integer"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_layout_file_is_one_line(tmp_path, name):
    text, expected = BAD_FILES[name]
    path = tmp_path / "layout.txt"
    path.write_text(text + "\n")
    with pytest.raises(LayoutError) as err:
        read_layout(path, V, SPECIALS)
    message = str(err.value)
    assert expected in message and "\n" not in message and message.startswith(f"--mhce-layout {path}")


def test_missing_and_mistyped_layout_files(tmp_path):
    with pytest.raises(LayoutError, match=r"does not exist: .*python -m recipes.layouts"):
        read_layout(tmp_path / "nowhere.txt", V, SPECIALS)
    np.save(tmp_path / "float.npy", np.arange(V, dtype=np.float64))
    with pytest.raises(LayoutError, match="holds torch.float64 values"):
        read_layout(tmp_path / "float.npy", V, SPECIALS)
    torch.save({"layout": torch.arange(V)}, tmp_path / "dict.pt")
    with pytest.raises(LayoutError, match="holds a dict, not a tensor"):
        read_layout(tmp_path / "dict.pt", V, SPECIALS)


def test_tied_rows_and_mhs_refuse_a_layout_that_moves_them():
    moved_tail = torch.cat([torch.arange(10), torch.arange(10, V).flip(0)])
    args = argparse.Namespace(mhce_layout="l.txt", mhe_tie_label_embeddings=True, mhce_tie_shortlist=False,
                              mhce_shortlist=10)
    with pytest.raises(MHCEConfigError, match=f"moves id 10 to position {V - 1}, but --mhe-tie-label-embeddings"):
        check_layout_keeps_tied_rows(args, moved_tail)
    args.mhe_tie_label_embeddings, args.mhce_tie_shortlist = False, True
    check_layout_keeps_tied_rows(args, moved_tail)  # the shortlist's ids stay: fine
    with pytest.raises(MHCEConfigError, match="moves id 4 to position 5, but --mhce-tie-shortlist"):
        check_layout_keeps_tied_rows(args, torch.tensor([0, 1, 2, 3, 5, 4, *range(6, V)]))
    with pytest.raises(MHCEConfigError, match="--mhce-layout applies to --mhce-mode mhp and mhe, not mhs"):
        validate_args(argparse.Namespace(mhce_mode="mhs", mhce_layout="l.txt"))


# ---------------------------------------------------------------------------------------------
# through fairseq: train with the file, decode without it
# ---------------------------------------------------------------------------------------------

LAYOUT_MODEL = ["--mhce-mode", "mhe", "--mhce-shortlist", "6"]


@pytest.fixture(scope="module")
def runs(toy_bin, tmp_path_factory, cli):
    """One model trained with a random layout, then (its file deleted) decoded; bad files and a
    resume with another layout (one command at a time)."""
    root = tmp_path_factory.mktemp("layout")
    layout = random_layout(V, seed=7)
    write_layout(root / "layout.txt", layout)
    out = {"root": root, "layout": layout}
    cli.run("fairseq_cli.train", train_args(toy_bin, root / "model", [*LAYOUT_MODEL, "--mhce-layout",
                                                                      root / "layout.txt"], updates=20))
    (root / "layout.txt").unlink()
    out["generate"] = cli.run("fairseq_cli.generate", [
        toy_bin, "--user-dir", PLUGIN, "--path", root / "model" / "checkpoint_last.pt", "--task", "translation_mhce",
        "--beam", "5", "--batch-size", "16", "--cpu"], check=False)
    write_layout(root / "other.txt", random_layout(V, seed=8))
    out["resume_other_layout"] = cli.run("fairseq_cli.train", train_args(
        toy_bin, root / "model", [*LAYOUT_MODEL, "--mhce-layout", root / "other.txt"], updates=25), check=False)
    (root / "short.txt").write_text(BAD_FILES["short"][0] + "\n")
    out["short_file"] = cli.run("fairseq_cli.train", train_args(
        toy_bin, root / "short", [*LAYOUT_MODEL, "--mhce-layout", root / "short.txt"], updates=2), check=False)
    return out


def test_checkpoint_holds_the_layout_and_decodes_without_the_file(runs):
    proc = runs["generate"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(hypotheses(proc.stdout)) == 60
    state = torch.load(runs["root"] / "model" / "checkpoint_last.pt")
    assert torch.equal(state["model"]["decoder.output_projection.layout"], runs["layout"])
    assert state["cfg"]["model"].mhce_layout_stored


def test_loaded_model_equals_the_model_built_from_the_file(runs, toy_bin):
    """Loaded without the file (pi from the state dict) = built from the file's options and given
    the same weights; the permutation really is applied."""
    from fairseq import checkpoint_utils

    ckpt = runs["root"] / "model" / "checkpoint_last.pt"
    (models,), _cfg, _task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)],
                                                                           arg_overrides={"data": str(toy_bin)})
    write_layout(runs["root"] / "again.txt", runs["layout"])
    _task, built, _criterion, sample = build_in_process(toy_bin, [*LAYOUT_MODEL, "--mhce-layout",
                                                                  runs["root"] / "again.txt"])
    built.load_state_dict(torch.load(ckpt)["model"])
    loaded = models.eval()
    built.eval()
    with torch.no_grad():
        net = loaded(**sample["net_input"])
        lp = loaded.get_normalized_probs(net, log_probs=True)
        torch.testing.assert_close(lp, built.get_normalized_probs(built(**sample["net_input"]), log_probs=True),
                                   rtol=0, atol=0)
        layer = loaded.decoder.output_projection
        assert isinstance(layer, PermutedOutput) and torch.equal(layer.layout, runs["layout"])
        torch.testing.assert_close(lp, layer.layer.log_probs(net[0])[..., runs["layout"]], rtol=0, atol=0)


def test_coarse_to_fine_decoding_with_a_layout_equals_fairseqs_generator(runs, toy_bin):
    from fairseq import checkpoint_utils
    from fairseq.sequence_generator import SequenceGenerator

    from mhce_nmt.adapters.generator import MHCESequenceGenerator

    ckpt = runs["root"] / "model" / "checkpoint_last.pt"
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)], arg_overrides={"data": str(toy_bin)})
    models[0].eval()
    task.load_dataset("test")
    sample = next(iter(task.get_batch_iterator(dataset=task.dataset("test"), max_sentences=8).next_epoch_itr(
        shuffle=False)))
    stock = SequenceGenerator(models, task.target_dictionary, beam_size=3)
    ours = MHCESequenceGenerator(models, task.target_dictionary, topk_groups=None, beam_size=3)
    with torch.no_grad():
        for a_hyps, b_hyps in zip(stock.generate(models, sample), ours.generate(models, sample)):
            for a, b in zip(a_hyps, b_hyps):
                assert a["tokens"].tolist() == b["tokens"].tolist()
                torch.testing.assert_close(a["score"], b["score"], atol=1e-4, rtol=1e-4)


def test_resuming_with_another_layout_file_is_one_line(runs):
    assert_one_clear_line(runs["resume_other_layout"], "the checkpoint's code layout differs from --mhce-layout")


def test_a_bad_layout_file_stops_training_in_one_line(runs):
    assert_one_clear_line(runs["short_file"], f"has {V - 1} positions (shape ({V - 1},)) but the target dictionary "
                                              f"has {V} ids")
    assert "train_inner" not in runs["short_file"].stdout


# ---------------------------------------------------------------------------------------------
# python -m recipes.layouts
# ---------------------------------------------------------------------------------------------


def positions_to_ids(path: Path) -> np.ndarray:
    layout = np.array([int(line) for line in path.read_text().split()])
    assert sorted(layout.tolist()) == list(range(len(layout)))
    return np.argsort(layout)


def test_kmeans_groups_the_output_rows_that_lie_together(tmp_path, cli):
    """7 tight clusters of tail rows (6 x 6 and one of 4), shuffled: each level-1 group of the
    layout (S = 6 for a 40-id tail, heads 7x6) is one cluster, the partial one last."""
    rng = np.random.default_rng(0)
    shortlist, tail = 8, 40
    hidden = np.repeat(np.arange(7), 6)[:tail]
    rng.shuffle(hidden)
    weight = rng.normal(size=(shortlist + tail, 16))
    weight[shortlist:] = rng.normal(size=(7, 16))[hidden] * 5 + rng.normal(size=(tail, 16)) * 0.1
    tied = {"model": {"decoder.embed_tokens.weight": torch.tensor(weight)},
            "cfg": {"model": argparse.Namespace(share_all_embeddings=True)}}
    for name, state in (("softmax", {"model": {"decoder.output_projection.weight": torch.tensor(weight)}}),
                        ("tied", tied)):
        torch.save(state, tmp_path / f"{name}.pt")
        proc = cli.run("recipes.layouts", ["kmeans", "--checkpoint", tmp_path / f"{name}.pt", "--mhce-shortlist",
                                           shortlist, "--output", tmp_path / f"{name}.txt"], cwd=REPO)
        assert "7 groups of 6 (the last 4)" in proc.stdout
        ids = positions_to_ids(tmp_path / f"{name}.txt")
        assert ids[:shortlist].tolist() == list(range(shortlist))
        groups = [ids[shortlist + 6 * g: shortlist + 6 * (g + 1)] - shortlist for g in range(7)]
        assert [len(set(hidden[g])) for g in groups] == [1] * 7
        assert len(groups[-1]) == 4 and hidden[groups[-1][0]] == 6
    torch.save({"model": {"decoder.embed_tokens.weight": torch.tensor(weight)}}, tmp_path / "untied.pt")
    proc = cli.run("recipes.layouts", ["kmeans", "--checkpoint", tmp_path / "untied.pt", "--mhce-shortlist", 0,
                                       "--output", tmp_path / "x.txt"], cwd=REPO, check=False)
    assert_one_clear_line(proc, "has no decoder.output_projection.weight")


def test_cooccurrence_groups_tokens_used_alike(tmp_path, cli):
    """Colour words follow 'the', animal words follow 'a': with heads 2,4 (S = 4) the tail past
    the 8-id shortlist is one group of each. Without a shortlist the specials' group stays."""
    rng = np.random.default_rng(1)
    colours, animals = ["red", "blue", "green", "pink"], ["dog", "cat", "cow", "pig"]
    tgt, src = [], []
    for _ in range(300):
        if rng.random() < 0.5:
            word = colours[rng.integers(4)]
            tgt.append(f"the {word} car")
            src.append(f"das {word.upper()} Auto")
        else:
            word = animals[rng.integers(4)]
            tgt.append(f"a {word} runs")
            src.append(f"ein {word.upper()} rennt")
    order = ["the", "a", "car", "runs", "red", "dog", "blue", "cat", "green", "cow", "pink", "pig"]
    (tmp_path / "dict.txt").write_text("".join(f"{t} {100 - i}\n" for i, t in enumerate(order)))
    (tmp_path / "train.en").write_text("\n".join(tgt) + "\n")
    (tmp_path / "train.de").write_text("\n".join(src) + "\n")
    common = ["cooccurrence", "--dictionary", tmp_path / "dict.txt", "--target-text", tmp_path / "train.en",
              "--source-text", tmp_path / "train.de"]
    cli.run("recipes.layouts", [*common, "--mhce-heads", "2,4", "--mhce-shortlist", 8, "--output", tmp_path / "short.txt"], cwd=REPO)
    ids = positions_to_ids(tmp_path / "short.txt")
    tokens = ["<s>", "<pad>", "</s>", "<unk>", *order]
    assert ids[:8].tolist() == list(range(8))
    groups = [sorted(tokens[i] for i in ids[start:start + 4]) for start in (8, 12)]
    assert sorted(groups) == sorted([sorted(animals), sorted(colours)])
    cli.run("recipes.layouts", [*common, "--mhce-heads", "4,4", "--mhce-shortlist", 0, "--output", tmp_path / "none.txt"],
            cwd=REPO)
    assert positions_to_ids(tmp_path / "none.txt")[:4].tolist() == list(range(4))


def test_layouts_help_and_the_shortlist_they_need(cli):
    proc = cli.run("recipes.layouts", ["cooccurrence", "--dictionary", "d.txt", "--target-text", "t.en",
                                       "--source-text", "t.de", "--output", "x.txt"], cwd=REPO, check=False)
    assert proc.returncode == 2 and "--mhce-shortlist" in proc.stderr  # N must be the model's: no default
    proc = cli.run("recipes.layouts", ["--help"], cwd=REPO)
    assert "kmeans" in proc.stdout and "cooccurrence" in proc.stdout and "--mhce-layout" in proc.stdout
