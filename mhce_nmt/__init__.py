"""mhce_nmt: multi-head factored output layers (MHP, MHE, MHS) for fairseq NMT.

Importing the package (e.g. `--user-dir mhce_nmt`) registers the model `transformer_mhce` and its
variants, the criteria `mhce_cross_entropy` and `fused_label_smoothed_cross_entropy` (fused softmax
baselines), the task `translation_mhce`, the learning-rate schedule `linear_budget` and the optimizer
`adam_fused` (fairseq's adam in torch's fused kernel), and applies the
fixes in `mhce_nmt.compat` (checkpoint loading on torch >= 2.6, no dropped batches, DDP on CPU, the
trainer's clock for time-budgeted schedules);
its configuration errors reach the user as one line (`mhce_nmt.errors`). The math lives in
`mhce_nmt.codec`, `mhce_nmt.layout` and `mhce_nmt.output` (plain torch; usable without fairseq).
"""
from .compat import allow_fairseq_checkpoints
from .errors import install_excepthook

allow_fairseq_checkpoints()
install_excepthook()  # bad options / mismatched checkpoints: one line, not a traceback

try:
    import fairseq  # noqa: F401
except ImportError:  # plain-torch use of codec/output without fairseq installed
    pass
else:
    from .compat import patch_fairseq_batching, patch_fairseq_cpu_ddp, patch_fairseq_trainer_clock

    patch_fairseq_batching()
    patch_fairseq_cpu_ddp()
    patch_fairseq_trainer_clock()
    from . import criterion, fused_criterion, lr_scheduler, model, optimizer, task  # noqa: F401  (registers with fairseq)

__version__ = "0.1.0"
