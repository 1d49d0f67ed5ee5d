"""The plugin's shortlist default (mhce_nmt.defaults.recommended_shortlist): the rule itself, a model
built without --mhce-shortlist getting it (with one log line), 0 and explicit N kept, and a stored
config (a checkpoint's) never re-deriving another N."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mhce_nmt.defaults import explain_shortlist, recommended_shortlist


@pytest.mark.parametrize("mode,vocab,expected", [
    ("mhe", 16000, 1024), ("mhe", 23999, 1024), ("mhe", 24000, 4096), ("mhe", 32000, 4096),
    ("mhp", 16000, 4096), ("mhp", 32000, 4096), ("mhs", 32000, 0), ("softmax", 32000, 0),
    ("mhe", 48, 0), ("mhp", 999, 0), ("mhe", 1000, 333), ("mhp", 8000, 2666), ("mhe", 5000, 1024)])
def test_recommended_shortlist(mode, vocab, expected):
    assert recommended_shortlist(mode, vocab) == expected


def test_explanations_name_the_rule():
    assert explain_shortlist("mhe", 16000) == "1024, the recommended N below a 24k vocabulary"
    assert explain_shortlist("mhe", 32000) == "4096, the recommended N from a 24k vocabulary"
    assert explain_shortlist("mhp", 8000).startswith("2666, a third of the 8000-id vocabulary")
    assert explain_shortlist("mhe", 48).startswith("0, none")


def write_dicts(folder: Path, size: int) -> Path:
    """dict.de.txt / dict.en.txt of `size` entries in all (fairseq adds its 4 specials)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"w{i} {100000 - i}\n" for i in range(size - 4))
    for lang in ("de", "en"):
        (folder / f"dict.{lang}.txt").write_text(lines, encoding="utf-8")
    return folder


def build(data: Path, extra=()):
    """(cfg.model after the build, the output layer's codec) of a tiny transformer_mhce."""
    import mhce_nmt  # noqa: F401
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(data), "--task", "translation_mhce", "-s", "de", "-t", "en", "--arch", "transformer_mhce_tiny",
        "--criterion", "mhce_cross_entropy", "--cpu", *extra])
    cfg = convert_namespace_to_omegaconf(args)
    model = tasks.setup_task(cfg.task).build_model(cfg.model)
    return cfg.model, model.decoder.output_projection.codec


@pytest.fixture(scope="module")
def data5000(tmp_path_factory) -> Path:
    return write_dicts(tmp_path_factory.mktemp("dicts"), 5000)


def test_model_without_shortlist_option_gets_the_recommended_n(data5000, caplog):
    with caplog.at_level(logging.INFO, logger="mhce_nmt.adapters.model"):
        config, codec = build(data5000, ["--mhce-mode", "mhe"])
    assert codec.shortlist == 1024 and config.mhce_shortlist == 1024  # stored as the resolved N
    lines = [r.getMessage() for r in caplog.records if "--mhce-shortlist not given" in r.getMessage()]
    assert lines == ["--mhce-shortlist not given: 1024, the recommended N below a 24k vocabulary"]
    config, codec = build(data5000, ["--mhce-mode", "mhp", "--mhce-shortlist", "auto"])
    assert codec.shortlist == 1666 and config.mhce_shortlist == 1666  # min(4096, V // 3)


def test_zero_and_explicit_n_are_kept(data5000):
    config, codec = build(data5000, ["--mhce-mode", "mhe", "--mhce-shortlist", "0"])
    assert not hasattr(codec, "shortlist") or not codec.shortlist
    assert config.mhce_shortlist == 0
    _config, codec = build(data5000, ["--mhce-mode", "mhe", "--mhce-shortlist", "64"])
    assert codec.shortlist == 64


def test_a_stored_config_keeps_its_n():
    """Checkpoints store the resolved N (0 for those trained without a shortlist); a config that already
    holds a built codec (mhce_vocab_size) and no N at all keeps none."""
    from argparse import Namespace

    from mhce_nmt.adapters.model import resolve_shortlist

    assert resolve_shortlist(Namespace(mhce_mode="mhe", mhce_shortlist=0, mhce_vocab_size=5000), 5000) == 0
    stored = Namespace(mhce_mode="mhe", mhce_vocab_size=5000)
    assert resolve_shortlist(stored, 5000) == 0 and stored.mhce_shortlist == 0
    assert resolve_shortlist(Namespace(mhce_mode="mhe", mhce_shortlist=None), 5000) == 1024


def test_a_shortlist_that_is_not_a_number_is_refused_in_one_line(capsys) -> None:
    import mhce_nmt
    from fairseq import options

    with pytest.raises(SystemExit):
        options.parse_args_and_arch(options.get_training_parser(), [
            "data", "--user-dir", str(Path(mhce_nmt.__file__).parent), "--task", "translation_mhce",
            "--arch", "transformer_mhce_tiny", "--mhce-shortlist", "abc"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--mhce-shortlist" in last and "'abc' is not a number: give N >= 0 (0 = none) or auto" in last
