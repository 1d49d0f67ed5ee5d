"""`fused_label_smoothed_cross_entropy`: fairseq's label_smoothed_cross_entropy for a stock
transformer whose output projection and loss run as one fused kernel (`fused_softmax.KERNELS`).

The softmax baseline a GPU user would train: the same loss as label_smoothed_cross_entropy
(tests compare with fairseq's own function), without the (tokens x V) logits of the eager way.
Training uses --fused-kernel; validation runs the eager way, so nll_loss and ppl are exact there.
liger gives no nll under label smoothing, so its training log has the loss only (cce refuses
smoothing; eager, compile and torch log nll_loss and ppl in training too).
"""

import math
from dataclasses import dataclass, field

import torch
from fairseq import utils
from fairseq.criterions import register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)
from fairseq.logging import metrics

from ..errors import MHCEConfigError
from .fused_softmax import KERNELS, check_kernel, linear_smoothed_cross_entropy


@dataclass
class FusedLabelSmoothedCrossEntropyConfig(LabelSmoothedCrossEntropyCriterionConfig):
    fused_kernel: str = field(
        default="torch", metadata={"help": f"training kernel of linear + loss: {', '.join(KERNELS)} "
                                           "(liger and cce need their packages and CUDA)"})


@register_criterion("fused_label_smoothed_cross_entropy", dataclass=FusedLabelSmoothedCrossEntropyConfig)
class FusedLabelSmoothedCrossEntropyCriterion(LabelSmoothedCrossEntropyCriterion):
    def __init__(self, task, sentence_avg, label_smoothing, ignore_prefix_size=0, report_accuracy=False,
                 fused_kernel="torch"):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size, report_accuracy)
        if ignore_prefix_size or report_accuracy:
            raise MHCEConfigError("fused_label_smoothed_cross_entropy supports neither --ignore-prefix-size nor "
                                  "--report-accuracy: use label_smoothed_cross_entropy for those.")
        self.fused_kernel = fused_kernel
        self._checked = False

    def forward(self, model, sample, reduce=True):
        """Decoder features -> fused linear + smoothed loss (training) or the eager one (validation)."""
        projection = getattr(getattr(model, "decoder", None), "output_projection", None)
        if not isinstance(projection, torch.nn.Linear) or projection.bias is not None:
            raise MHCEConfigError("fused_label_smoothed_cross_entropy needs a decoder whose output is one "
                                  "Linear(d, V) without bias (a stock transformer); this model has "
                                  f"{type(projection).__name__}.")
        kernel = self.fused_kernel if model.training else "eager"
        if not self._checked and model.training:
            check_kernel(kernel, projection.weight.device, self.eps)
            self._checked = True
        features, _ = model(**sample["net_input"], features_only=True)
        target = model.get_targets(sample, None).reshape(-1)
        loss, nll_loss = linear_smoothed_cross_entropy(
            features.reshape(-1, features.size(-1)), projection.weight, target, self.eps, self.padding_idx, kernel)
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        logging_output = {
            "loss": loss.data, "ntokens": sample["ntokens"], "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
        }
        if nll_loss is not None:
            logging_output["nll_loss"] = nll_loss.data
        return loss, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        """loss always; nll_loss and ppl where every output has them (validation, eager/compile)."""
        loss_sum = sum(log.get("loss", 0) for log in logging_outputs)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        metrics.log_scalar("loss", loss_sum / sample_size / math.log(2), sample_size, round=3)
        if logging_outputs and all("nll_loss" in log for log in logging_outputs):
            nll_sum = sum(log["nll_loss"] for log in logging_outputs)
            metrics.log_scalar("nll_loss", nll_sum / ntokens / math.log(2), ntokens, round=3)
            metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))
