"""`mhce_cross_entropy`: label-smoothed cross-entropy of a factored output layer.

Default (--mhce-smoothing joint): fairseq's label_smoothed_cross_entropy on the joint
distribution, 1-eps on the gold id and eps/(V-1) on every other id (MHE in training: an unbiased
estimate of the uniform term from --mhce-smoothing-groups groups drawn per token; exact in
validation). per-level: fairseq's formula inside every head. nll_loss = exact -log p(y), logged in base 2 like fairseq's, so `ppl` is comparable.
MHS training scores a sampled softmax (LossTerms.sampled): its -log p(y) over the sampled groups is
logged as sampled_nll_loss instead, with no ppl; validation (eval mode) is exact, nll_loss and ppl.
"""

import math
from dataclasses import dataclass, field

from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from omegaconf import II

from ..errors import MHCEConfigError
from ..output import FactoredOutput, factored_loss
from ..output.loss import SMOOTHINGS
from . import model as mhce_model  # the module, not its names: registration may import this mid-way through model.py

#: MHE: other groups drawn per token and level for the uniform term of joint smoothing (README, Method)
DEFAULT_SMOOTHING_GROUPS = 1


@dataclass
class MHCECrossEntropyConfig(FairseqDataclass):
    label_smoothing: float = field(
        default=0.0, metadata={"help": "epsilon for label smoothing; 0 = none"})
    mhce_smoothing: str = field(
        default="joint", metadata={"help": "joint: fairseq's smoothing of the joint distribution "
                                   "(eps/(V-1) per non-gold id); per-level: fairseq's formula "
                                   "inside every head"})
    mhce_smoothing_groups: int = field(
        default=DEFAULT_SMOOTHING_GROUPS,
        metadata={"help": "mhe with joint smoothing, in training: other groups drawn per token to "
                          "estimate the uniform term (unbiased; each costs one more level-2 "
                          "product); 0 = every group (exact, the cost of a full softmax). "
                          "Validation is always exact"})
    sentence_avg: bool = II("optimization.sentence_avg")


def configured_model_class(cfg):
    """The model class of the run `cfg` (the criterion's config node) belongs to, if known."""
    try:
        model_cfg = cfg._get_root().get("model")  # fairseq-train: the root config's model node
        name = getattr(model_cfg, "_name", None) or getattr(model_cfg, "arch", None)
    except Exception:  # a plain dataclass / dict config (in-process use): nothing to check
        return None
    from fairseq.models import ARCH_MODEL_REGISTRY

    return ARCH_MODEL_REGISTRY.get(name) if isinstance(name, str) else None


def output_layer_of(model) -> FactoredOutput:
    """The model's factored output layer, or a clear error for a stock model."""
    layer = mhce_model.factored_output(model)
    if layer is None:
        raise MHCEConfigError(
            "--criterion mhce_cross_entropy needs a factored output layer: use --arch "
            "transformer_mhce (or a variant), or label_smoothed_cross_entropy for a stock model."
        )
    return layer


@register_criterion("mhce_cross_entropy", dataclass=MHCECrossEntropyConfig)
class MHCECrossEntropyCriterion(FairseqCriterion):
    """Criterion for transformer_mhce; never builds (tokens x V) scores on its training path."""

    def __init__(self, task, label_smoothing: float = 0.0, sentence_avg: bool = False,
                 mhce_smoothing: str = "joint", mhce_smoothing_groups: int = DEFAULT_SMOOTHING_GROUPS):
        super().__init__(task)
        if not 0.0 <= label_smoothing < 1.0:
            raise MHCEConfigError(f"--label-smoothing {label_smoothing} must be in [0, 1).")
        if mhce_smoothing not in SMOOTHINGS:
            raise MHCEConfigError(
                f"--mhce-smoothing {mhce_smoothing!r} is unknown: choose one of {', '.join(SMOOTHINGS)}.")
        if mhce_smoothing_groups < 0:
            raise MHCEConfigError(
                f"--mhce-smoothing-groups {mhce_smoothing_groups} must be >= 0 (0 = every group).")
        self.eps = label_smoothing
        self.sentence_avg = sentence_avg
        self.smoothing = mhce_smoothing
        self.smoothing_groups = mhce_smoothing_groups

    @classmethod
    def build_criterion(cls, cfg, task):
        """Reject a stock fairseq model before any data is loaded (forward checks the rest)."""
        model_cls = configured_model_class(cfg)
        if model_cls is not None and model_cls.__module__.startswith("fairseq."):
            output_layer_of(None)  # raises: fairseq's own models have no factored output
        return super().build_criterion(cfg, task)

    def forward(self, model, sample, reduce: bool = True):
        layer = output_layer_of(model)
        net_output = model(**sample["net_input"])
        features = net_output[0]  # (B, T, d)
        target = model.get_targets(sample, net_output)  # (B, T)
        keep = target.ne(self.padding_idx)
        joint = self.eps > 0 and self.smoothing == "joint"
        groups = self.smoothing_groups if model.training else 0  # exact (deterministic) validation loss
        terms = layer.loss_terms(features[keep], target[keep], sum_groups=groups if joint else None)
        result = factored_loss(terms, self.eps, self.smoothing)
        loss, nll = result.loss.sum(), result.nll.sum()
        ntokens = sample["ntokens"]
        sample_size = sample["target"].size(0) if self.sentence_avg else ntokens
        logging_output = {
            "loss": loss.data,
            "sampled_nll_loss" if terms.sampled else "nll_loss": nll.data,
            "ntokens": ntokens,
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
            "n_correct": result.joint_correct.sum().data,
            "total": keep.sum().data,
        }
        for h, correct in enumerate(result.level_correct, start=1):
            logging_output[f"n_correct_h{h}"] = correct.sum().data
        return loss, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        """loss/nll_loss in base 2 (ppl = 2^nll_loss, only from the exact nll_loss, never from
        sampled_nll_loss); accuracy = all heads right; acc_hN per head."""
        def total(key):
            return utils.item(sum(log.get(key, 0) for log in logging_outputs))

        sample_size, ntokens = total("sample_size"), total("ntokens")
        metrics.log_scalar("loss", total("loss") / sample_size / math.log(2), sample_size, round=3)
        for key in ("nll_loss", "sampled_nll_loss"):
            if any(key in log for log in logging_outputs):
                metrics.log_scalar(key, total(key) / ntokens / math.log(2), ntokens, round=3)
        if any("nll_loss" in log for log in logging_outputs):
            metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))
        count = total("total")
        if count > 0:
            metrics.log_scalar("total", count)
            keys = ["n_correct"] + sorted(
                {k for log in logging_outputs for k in log if k.startswith("n_correct_h")})
            for key in keys:
                metrics.log_scalar(key, total(key))
                name = "accuracy" if key == "n_correct" else "acc_" + key[len("n_correct_"):]
                metrics.log_derived(name, _accuracy(key))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


def _accuracy(key: str):
    def derive(meters):
        seen = meters["total"].sum
        return round(meters[key].sum * 100.0 / seen, 3) if seen > 0 else float("nan")
    return derive
