"""The CPU demo's model is one definition: the architectures transformer_mhce_cpu and transformer_cpu
(mhce_nmt.defaults.CPU_MODEL_SIZES), which the recipe's commands name; each option in a recipe's
fairseq-train command is given once, with the values the recipe asks for."""
from __future__ import annotations

from pathlib import Path

import pytest

from recipes import config
from recipes.commands import train_command
from recipes.libreoffice_de_en import run as libreoffice
from tiny_recipe import recipe_config

SIZES = {"encoder_layers": 3, "decoder_layers": 3, "encoder_embed_dim": 256, "decoder_embed_dim": 256,
         "encoder_ffn_embed_dim": 1024, "decoder_ffn_embed_dim": 1024, "encoder_attention_heads": 4,
         "decoder_attention_heads": 4}


@pytest.mark.parametrize("mode,arch", [("mhe", "transformer_mhce_cpu"), ("mhp", "transformer_mhce_cpu"),
                                       ("softmax", "transformer_cpu"), ("adaptive", "transformer_cpu")])
def test_the_demo_trains_the_cpu_architecture_with_each_option_once(tmp_path: Path, mode, arch):
    import mhce_nmt  # noqa: F401  (registers both architectures)
    from fairseq import options

    from dataclasses import replace
    recipe = replace(libreoffice.RECIPE, work_dir=tmp_path)
    cfg = recipe_config(recipe, ["--mode", mode, "--no-autocast-bf16"])
    cmd = train_command(cfg.bin, cfg.checkpoints, cfg.train, 16000)
    flags = [word for word in cmd if word.startswith("--")]
    assert len(flags) == len(set(flags)), sorted(f for f in flags if flags.count(f) > 1)
    assert cmd[cmd.index("--arch") + 1] == arch
    parsed = vars(options.parse_args_and_arch(options.get_training_parser(), cmd[1:]))
    assert {name: parsed[name] for name in SIZES} == SIZES
    assert (parsed["dropout"], parsed["lr"], parsed["lr_scheduler"]) == (0.1, [0.0014], "linear_budget")


def test_the_cpu_sizes_are_defined_once():
    from mhce_nmt.defaults import CPU_MODEL_SIZES

    assert {name: CPU_MODEL_SIZES.get(name, SIZES[name.replace("decoder", "encoder")]) for name in SIZES} == SIZES
    assert CPU_MODEL_SIZES["dropout"] == 0.2 and "decoder_embed_dim" not in CPU_MODEL_SIZES  # the encoder's decide
    assert not any(flag.replace("-", "_").strip("_") in CPU_MODEL_SIZES for flag in config.CPU_MODEL_ARGS)


def test_a_wider_encoder_takes_the_decoder_along():
    """--encoder-embed-dim 512 on the CPU architecture widens the decoder too (fairseq's rule), so
    shared embeddings still fit."""
    import mhce_nmt  # noqa: F401  (registers the architectures)
    from fairseq import options

    for arch in ("transformer_mhce_cpu", "transformer_cpu"):
        parsed = options.parse_args_and_arch(options.get_training_parser(), [
            "data", "--user-dir", str(Path(mhce_nmt.__file__).parent), "--arch", arch, "--encoder-embed-dim", "512",
            "--encoder-ffn-embed-dim", "2048", "--task", "translation"])
        assert (parsed.decoder_embed_dim, parsed.decoder_ffn_embed_dim) == (512, 2048)
