"""Pure builders of the fairseq command lines used by every recipe.

Nothing here runs a process or touches the disk, so tests can inspect the exact commands.
``mhe``/``mhp``/``mhs`` train the plugin's ``transformer_mhce*`` architectures with the
``translation_mhce`` task and ``mhce_cross_entropy`` criterion; ``softmax`` and ``adaptive`` are
stock fairseq baselines with the same model dimensions. Every command loads the plugin with
``--user-dir``: besides registering the models, it makes checkpoint loading work on torch >= 2.6.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mhce_nmt.defaults import COARSE_TO_FINE_MODES, FACTORED_MODES

REPO_ROOT = Path(__file__).resolve().parents[1]
USER_DIR = REPO_ROOT / "mhce_nmt"
#: what a recipe trains: the factored layers, and the softmax baselines fairseq has (softmax, adaptive)
MODES = ("mhe", "mhp", "mhs", "softmax", "adaptive")


@dataclass(frozen=True)
class TrainSettings:
    """Everything :func:`train_command` needs besides paths.

    ``base_arch`` is a stock fairseq architecture (``transformer``, ``transformer_iwslt_de_en``,
    ...); factored modes use its ``transformer_mhce`` counterpart. ``model_args`` are the
    recipe's dimensions and optimisation flags; ``softmax_args`` are added for ``softmax`` only
    (embedding sharing, which the other output layers do not support), ``shortlist_args`` for
    ``mhe``/``mhp`` only (empty: ``--mhce-shortlist 0``, no shortlist, whatever the plugin's default).
    """

    mode: str = "mhe"
    base_arch: str = "transformer"
    model_args: tuple[str, ...] = ()
    softmax_args: tuple[str, ...] = ()
    shortlist_args: tuple[str, ...] = ()
    save_interval_updates: int = 0  # > 0: also keep the last keep_interval_updates of these
    keep_interval_updates: int = 0
    max_tokens: int = 4096
    max_update: int | None = None
    stop_time_hours: float | None = None
    seed: int = 1
    cpu: bool = True
    fp16: bool = False
    autocast_bf16: bool = False  # the plugin task's --autocast-bf16 (softmax/adaptive train with that task too)
    softmax_kernel: str = "eager"  # softmax only: fused_softmax.KERNELS; eager = fairseq's own criterion
    mhe_tied: bool = False  # mhe only: output rows tied to the decoder input embeddings
    mhce_embed_dim: int = 0  # mhe only: label-embedding width E (0: the decoder's)
    tie_shortlist: bool = False  # mhe/mhp with a shortlist: its rows are the decoder input embeddings
    layout: str = ""  # mhe/mhp: --mhce-layout FILE, the code layout (a permutation of the target ids)
    factored_embeddings: bool = False  # mhe/mhp: --mhce-embeddings factored
    smoothing: str = "joint"  # mhe/mhp: the criterion's --mhce-smoothing (per-level: the ablation)
    share_all: bool = False  # one embedding table for the encoder and decoder inputs (a joint dictionary)
    shortlist_tag: str = ""  # "-sN" when the run's shortlist N is not its recipe's (mhe-s4096)
    run_name: str = ""  # names the run instead of the default below (a benchmark's arm)
    log_format: str = "simple"
    log_interval: int = 10

    @property
    def precision(self) -> str:
        """What training computes in: "fp16" (CUDA mixed precision), "bf16 autocast" or "fp32"."""
        return "fp16" if self.fp16 else "bf16 autocast" if self.autocast_bf16 else "fp32"

    @property
    def arm(self) -> str:
        """The run's name: the mode, and the fused kernel of a softmax that has one (softmax-liger),
        or -tied / -eE for a tied mhe or one of label-embedding width E (mhe-tied, mhe-e64), then
        -tieshort for a shortlist tied to the input embeddings, -layout-<file stem> for a code layout,
        -factored for factored input embeddings, -per-level for per-level label
        smoothing, -sN for a shortlist other than the recipe's, -shareall for shared encoder and
        decoder input embeddings and -seedN for a seed other than 1 (so another seed never resumes
        this one's checkpoints); run_name where given."""
        if self.run_name:
            return self.run_name
        if self.mode == "softmax" and self.softmax_kernel != "eager":
            base = f"{self.mode}-{self.softmax_kernel}"
        elif self.mode != "mhe":
            base = self.mode
        else:
            base = "mhe" + ("-tied" if self.mhe_tied else "") + (f"-e{self.mhce_embed_dim}" if self.mhce_embed_dim else "")
        tie = "-tieshort" if self.tie_shortlist else ""
        tie += f"-layout-{Path(self.layout).stem}" if self.layout else ""
        tie += "-factored" if self.factored_embeddings else ""
        smoothing = "-per-level" if self.smoothing == "per-level" else ""
        seed = f"-seed{self.seed}" if self.seed != 1 else ""
        return base + tie + smoothing + self.shortlist_tag + ("-shareall" if self.share_all else "") + seed


def mhce_arch(base_arch: str) -> str:
    """``transformer`` -> ``transformer_mhce``; ``transformer_iwslt_de_en`` ->
    ``transformer_mhce_iwslt_de_en``."""
    if not base_arch.startswith("transformer"):
        raise ValueError(f"no mhce counterpart for architecture {base_arch!r}")
    return "transformer_mhce" + base_arch[len("transformer"):]


def adaptive_cutoffs(vocab_size: int) -> str:
    """Adaptive-softmax cutoffs V/4 and V/2 (rounded down to a multiple of 8 when V >= 64)."""
    step = 8 if vocab_size >= 64 else 1
    first, second = (vocab_size // 4) // step * step, (vocab_size // 2) // step * step
    if not 0 < first < second < vocab_size:
        raise ValueError(f"vocabulary of {vocab_size} is too small for an adaptive softmax")
    return f"{first},{second}"


def preprocess_command(
    src: str, tgt: str, text_prefix: Path, dest: Path, joined: bool, workers: int,
    nwords: int | None = None, dictionary: Path | None = None,
) -> list[str]:
    """``fairseq-preprocess`` over ``{train,valid,test}.{src,tgt}`` under ``text_prefix``.

    ``nwords`` caps each dictionary (used by the word-level vocabulary); with ``joined`` the
    two languages share one dictionary, read from ``dictionary`` when given.
    """
    cmd = [
        "fairseq-preprocess", "--source-lang", src, "--target-lang", tgt,
        "--trainpref", str(text_prefix / "train"), "--validpref", str(text_prefix / "valid"),
        "--testpref", str(text_prefix / "test"), "--destdir", str(dest), "--workers", str(workers),
    ]
    if joined:
        cmd.append("--joined-dictionary")
    if dictionary:
        cmd += ["--srcdict", str(dictionary)]
    if nwords:
        cmd += ["--nwordssrc", str(nwords), "--nwordstgt", str(nwords)]
    return cmd


def train_command(bin_dir: Path, save_dir: Path, settings: TrainSettings, tgt_vocab_size: int) -> list[str]:
    """The ``fairseq-train`` command for ``settings.mode``.

    ``tgt_vocab_size`` (the target dictionary's size) sets the adaptive-softmax cutoffs.
    """
    mode = settings.mode
    cmd = ["fairseq-train", str(bin_dir), "--user-dir", str(USER_DIR)]
    # stock models train with the plugin's task only for --autocast-bf16 (its training step is fairseq's)
    stock_task = "translation_mhce" if settings.autocast_bf16 else "translation"
    if mode in FACTORED_MODES:
        cmd += [
            "--task", "translation_mhce", "--arch", mhce_arch(settings.base_arch),
            "--mhce-mode", mode, "--criterion", "mhce_cross_entropy", "--label-smoothing", "0.1",
        ]
    elif mode == "softmax":
        criterion = ["--criterion", "label_smoothed_cross_entropy"] if settings.softmax_kernel == "eager" else [
            "--criterion", "fused_label_smoothed_cross_entropy", "--fused-kernel", settings.softmax_kernel]
        cmd += [
            "--task", stock_task, "--arch", settings.base_arch, *criterion, "--label-smoothing", "0.1",
            *settings.softmax_args,
        ]
    elif mode == "adaptive":
        cmd += [
            "--task", stock_task, "--arch", settings.base_arch,
            "--adaptive-softmax-cutoff", adaptive_cutoffs(tgt_vocab_size),
            "--criterion", "adaptive_loss", "--ddp-backend", "legacy_ddp",
        ]
    else:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    cmd += list(settings.model_args)
    if mode in COARSE_TO_FINE_MODES:  # no shortlist_args: none (the plugin's own default is a shortlist)
        cmd += list(settings.shortlist_args) or ["--mhce-shortlist", "0"]
    if mode == "mhe" and settings.mhe_tied:
        cmd.append("--mhe-tie-label-embeddings")
    if mode in COARSE_TO_FINE_MODES and settings.layout:
        cmd += ["--mhce-layout", str(Path(settings.layout).resolve())]
    if mode in COARSE_TO_FINE_MODES and settings.factored_embeddings:
        cmd += ["--mhce-embeddings", "factored"]
    if mode in COARSE_TO_FINE_MODES and settings.tie_shortlist:
        cmd.append("--mhce-tie-shortlist")
    if mode in COARSE_TO_FINE_MODES and settings.smoothing != "joint":
        cmd += ["--mhce-smoothing", settings.smoothing]
    if mode == "mhe" and settings.mhce_embed_dim:
        cmd += ["--mhce-embed-dim", str(settings.mhce_embed_dim)]
    if settings.share_all:
        cmd.append("--share-all-embeddings")
    cmd += ["--max-tokens", str(settings.max_tokens), "--seed", str(settings.seed)]
    if settings.max_update:
        cmd += ["--max-update", str(settings.max_update)]
    if settings.stop_time_hours:
        cmd += ["--stop-time-hours", f"{settings.stop_time_hours:.4g}"]
    if settings.save_interval_updates:
        cmd += ["--save-interval-updates", str(settings.save_interval_updates),
                "--keep-interval-updates", str(settings.keep_interval_updates)]
    if settings.cpu:
        cmd.append("--cpu")
    if settings.fp16:
        cmd.append("--fp16")
    if settings.autocast_bf16:
        cmd.append("--autocast-bf16")
    cmd += [
        "--save-dir", str(save_dir), "--no-epoch-checkpoints",
        "--log-format", settings.log_format, "--log-interval", str(settings.log_interval),
        "--log-file", str(save_dir / "train.log"),
    ]
    return cmd


def generate_command(
    bin_dir: Path, checkpoint: Path, results_dir: Path, mode: str, *, beam: int = 5,
    batch_size: int = 64, topk_groups: int = 8, cpu: bool = True, max_len: tuple[float, int] = (1.2, 10),
    lenpen: float = 1.0, subset: str = "test",
) -> list[str]:
    """``fairseq-generate`` on `subset`; the output goes to ``results_dir/generate-<subset>.txt``.

    ``mhe``/``mhp`` decode coarse-to-fine with the plugin's task (``--mhe-topk-groups``);
    the other modes use the stock translation task. Hypotheses are capped at
    ``max_len[0] * source length + max_len[1]`` tokens (fairseq's default cap of 200 tokens
    lets an undertrained model spend most of the decoding time on runaway repetitions).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    cmd = ["fairseq-generate", str(bin_dir), "--user-dir", str(USER_DIR)]
    if mode in COARSE_TO_FINE_MODES:
        cmd += ["--task", "translation_mhce", "--mhe-topk-groups", str(topk_groups)]
    else:
        cmd += ["--task", "translation"]
    cmd += [
        "--path", str(checkpoint), "--gen-subset", subset, "--beam", str(beam),
        "--batch-size", str(batch_size), "--max-len-a", f"{max_len[0]:g}", "--max-len-b", str(max_len[1]),
        "--results-path", str(results_dir),
    ]
    if lenpen != 1.0:
        cmd += ["--lenpen", f"{lenpen:g}"]
    if cpu:
        cmd.append("--cpu")
    return cmd


def interactive_command(
    bin_dir: Path, checkpoint: Path, mode: str, sentencepiece_model: Path | None, *, beam: int = 5,
    topk_groups: int = 8, cpu: bool = True, executable: str = "fairseq-interactive", lenpen: float = 1.0,
) -> list[str]:
    """``fairseq-interactive`` that translates raw text lines from stdin with a trained model:
    sentencepiece applied on the way in and removed on the way out (its D- lines)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    cmd = [executable, str(bin_dir), "--user-dir", str(USER_DIR)]
    if mode in COARSE_TO_FINE_MODES:
        cmd += ["--task", "translation_mhce", "--mhe-topk-groups", str(topk_groups)]
    else:
        cmd += ["--task", "translation"]
    cmd += ["--path", str(checkpoint), "--beam", str(beam)]
    if lenpen != 1.0:
        cmd += ["--lenpen", f"{lenpen:g}"]
    if sentencepiece_model is not None:
        cmd += ["--bpe", "sentencepiece", "--sentencepiece-model", str(sentencepiece_model)]
    if cpu:
        cmd.append("--cpu")
    return cmd
