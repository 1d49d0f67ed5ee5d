"""Stock fairseq commands with the plugin: train, generate, interactive, score, hub, reload."""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from typing import Dict

import pytest
import torch

from toy import CLI_ENV, PLUGIN, REPO, bleu, generate, hypotheses, train_losses

pytestmark = pytest.mark.trains("mhe2", "mhp2", "mhe3")

N_TEST = 60


@pytest.mark.parametrize("name", ["mhe2", "mhp2"])
def test_train_then_generate_learns_the_task(trained, toy_bin, cli, name):
    run = trained(name)
    losses = train_losses(run["log"])
    assert len(losses) >= 10
    assert losses[-1] < 0.5 * losses[0], losses
    exhaustive = generate(toy_bin, run["ckpt"], ["--task", "translation_mhce", "--mhe-topk-groups", "all"],
                          cli.run)
    pruned = generate(toy_bin, run["ckpt"], ["--task", "translation_mhce", "--mhe-topk-groups", "4"],
                      cli.run)
    assert len(hypotheses(exhaustive.stdout)) == N_TEST  # count in == count out
    assert len(hypotheses(pruned.stdout)) == N_TEST
    assert bleu(exhaustive.stdout) > 60
    assert bleu(pruned.stdout) == pytest.approx(bleu(exhaustive.stdout), abs=1.0)


def test_plain_translation_task_decodes_through_full_log_probs(trained, toy_bin, cli):
    run = trained("mhe2")
    stock = generate(toy_bin, run["ckpt"], ["--task", "translation"], cli.run)
    c2f = generate(toy_bin, run["ckpt"], ["--task", "translation_mhce", "--mhe-topk-groups", "all"],
                   cli.run)
    assert hypotheses(stock.stdout) == hypotheses(c2f.stdout)


def teacher_forced_log_probs(ckpt, data) -> Dict[int, torch.Tensor]:
    """{test sentence id: exact log p(y_t | y_<t, x) of its reference tokens (nats)}, one
    sentence at a time (no batching or padding) from the model's full log-probs."""
    from fairseq import checkpoint_utils

    import mhce_nmt  # noqa: F401

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(ckpt)], arg_overrides={"data": str(data)})
    model = models[0].eval()
    task.load_dataset("test")
    eos = task.target_dictionary.eos()
    out = {}
    with torch.no_grad():
        for item in task.dataset("test"):
            src, tgt = item["source"].unsqueeze(0), item["target"]
            prev = torch.cat([tgt.new_tensor([eos]), tgt[:-1]]).unsqueeze(0)
            lprobs = model.get_normalized_probs(model(src, torch.tensor([src.size(1)]), prev),
                                                log_probs=True)[0]
            out[int(item["id"])] = lprobs.gather(1, tgt.unsqueeze(1)).squeeze(1)
    return out


def test_score_reference(trained, toy_bin, cli):
    """--score-reference prints each reference's mean log2-prob (H-) and per-token log2-probs
    (P-, 4 decimals): both equal teacher-forced scores computed here."""
    ckpt = trained("mhe2")["ckpt"]
    out = generate(toy_bin, ckpt, ["--task", "translation_mhce", "--score-reference"], cli.run)
    rows = [line.split("\t") for line in out.stdout.splitlines() if line[:2] in ("H-", "P-")]
    scores = {int(r[0][2:]): float(r[1]) for r in rows if r[0].startswith("H-")}
    positional = {int(r[0][2:]): [float(v) for v in r[1].split()] for r in rows if r[0].startswith("P-")}
    expected = teacher_forced_log_probs(ckpt, toy_bin)
    assert sorted(scores) == sorted(positional) == sorted(expected) == list(range(N_TEST))
    for i, lprobs in expected.items():
        bits = lprobs / math.log(2)
        assert scores[i] == pytest.approx(float(bits.mean()), abs=1e-4), i
        assert positional[i] == pytest.approx(bits.tolist(), abs=2e-4), i


def test_interactive(trained, toy_bin, cli):
    proc = cli.run("fairseq_cli.interactive", [
        toy_bin, "--user-dir", PLUGIN, "--task", "translation_mhce", "--path", trained("mhe2")["ckpt"],
        "--beam", "5", "--mhe-topk-groups", "4", "--source-lang", "src", "--target-lang", "tgt", "--cpu"],
        stdin="w1 w2 w3 w4\nw5 w6\n")
    hyps = [line.split("\t")[2] for line in proc.stdout.splitlines() if line.startswith("H-")]
    assert hyps == ["w1 w2 w3 w4", "w5 w6"]


def test_hub_translate(trained, toy_bin):
    ckpt = trained("mhe2")["ckpt"]
    script = textwrap.dedent(f"""
        import mhce_nmt
        from mhce_nmt.adapters.model import TransformerMHCEModel
        from mhce_nmt.adapters.generator import MHCESequenceGenerator
        hub = TransformerMHCEModel.from_pretrained({str(ckpt.parent)!r}, checkpoint_file={ckpt.name!r},
            data_name_or_path={str(toy_bin)!r}, task="translation_mhce", mhe_topk_groups="4",
            source_lang="src", target_lang="tgt")
        assert isinstance(hub.task.build_generator(hub.models, hub.cfg.generation), MHCESequenceGenerator)
        print(hub.translate("w7 w8 w9", beam=5))
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=CLI_ENV, capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "w7 w8 w9"


def test_checkpoints_load_with_weights_only_default(trained):
    """torch >= 2.6 rejects fairseq checkpoints unless the plugin allow-lists their globals, which it
    does where it registers with fairseq (the core alone changes nothing in torch)."""
    ckpt = str(trained("mhe2")["ckpt"])
    bare = subprocess.run([sys.executable, "-c", f"import torch; torch.load({ckpt!r})"],
                          env=CLI_ENV, capture_output=True, text=True)
    if tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 6):
        assert bare.returncode != 0 and "argparse.Namespace" in bare.stderr
    plugin = subprocess.run([sys.executable, "-c", f"import mhce_nmt, fairseq, torch; torch.load({ckpt!r})"],
                            env=CLI_ENV, capture_output=True, text=True)
    assert plugin.returncode == 0, plugin.stderr[-2000:]


def test_checkpoint_stores_the_codec(trained):
    import fairseq, mhce_nmt  # noqa: F401, E401  (registered: fairseq's checkpoint globals allow-listed)

    state = torch.load(trained("mhe3")["ckpt"])
    model_args = state["cfg"]["model"]
    assert model_args.mhce_heads == "4,4,4" and model_args.mhce_vocab_size == 48
    assert state["model"]["decoder.output_projection.codec_spec"].tolist() == [48, 4, 4, 4]
