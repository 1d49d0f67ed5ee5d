"""``--optimizer adam_fused``: fairseq's ``adam`` (Adam with decoupled weight decay, i.e. AdamW)
computed by torch's fused kernel, one pass over each tensor on CPU and CUDA alike.

    m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2;   p <- p (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps)

fairseq's own ``adam`` runs about eight tensor-wide operations per parameter from Python; on a CPU
each one streams the whole tensor through memory. For the demo's model (17.9M parameters, 2 cores
of an AVX2 EPYC) its step took 34.5 ms against 12.0 ms here (scripts/bench_optimizer.py): about 6% of
a 1,024-token update.
The one difference in the math is where eps enters: fairseq adds it to sqrt(v) before the bias
correction, torch after it (eps / sqrt(1 - b2^t) in fairseq's terms); the two steps agree to float
rounding wherever sqrt(v) >> eps. fairseq refuses to resume one's checkpoint with the other
(resume with the optimizer it was trained with, or add --reset-optimizer; the recipes resume with
the saved one by themselves, recipes/resume.py), except under --fp16/--amp, where it records only
its wrapper's name: there either loads the other's state (same names), and this one stays fused.
(No `from __future__ import annotations`: fairseq reads the config dataclass's annotations as types.)
"""
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
from fairseq.dataclass import FairseqDataclass
from fairseq.optim import FairseqOptimizer, register_optimizer
from omegaconf import II

from ..errors import MHCEConfigError


@dataclass
class FusedAdamConfig(FairseqDataclass):
    adam_betas: str = field(default="(0.9, 0.999)", metadata={"help": "betas for the Adam optimizer"})
    adam_eps: float = field(default=1e-8, metadata={"help": "epsilon for the Adam optimizer"})
    weight_decay: float = field(default=0.0, metadata={"help": "decoupled weight decay, as fairseq's adam"})
    lr: List[float] = II("optimization.lr")


def parse_betas(text: str) -> Tuple[float, float]:
    """'(0.9,0.98)' -> (0.9, 0.98); anything else is refused in one line."""
    try:
        betas = tuple(float(b) for b in text.strip().strip("()[]").split(","))
    except ValueError:
        betas = ()
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise MHCEConfigError(f"--adam-betas {text!r}: give two numbers in [0, 1), e.g. '(0.9,0.98)'")
    return betas  # type: ignore[return-value]


@register_optimizer("adam_fused", dataclass=FusedAdamConfig)
class FusedAdam(FairseqOptimizer):
    """torch.optim.AdamW(fused=True) behind fairseq's optimizer interface (same options as ``adam``)."""

    def __init__(self, cfg: FusedAdamConfig, params: Iterable[torch.nn.Parameter]) -> None:
        super().__init__(cfg)
        params = list(params)
        dtypes = {p.dtype for p in params if torch.is_tensor(p)}
        if dtypes - {torch.float32, torch.float64}:
            raise MHCEConfigError(f"--optimizer adam_fused steps fp32 weights; these are {sorted(map(str, dtypes))}: "
                                  "train with --autocast-bf16 (fp32 weights) or use --optimizer adam")
        self._optimizer = torch.optim.AdamW(params, **self.optimizer_config, fused=True)

    @property
    def optimizer_config(self) -> Dict[str, Any]:
        """The arguments a checkpoint's optimizer state is loaded with (fairseq overrides its lr)."""
        lr = self.cfg.lr[0] if isinstance(self.cfg.lr, Collection) else self.cfg.lr
        return {"lr": lr, "betas": parse_betas(str(self.cfg.adam_betas)), "eps": self.cfg.adam_eps,
                "weight_decay": self.cfg.weight_decay}

    def load_state_dict(self, state_dict: Dict[str, Any], optimizer_overrides: Optional[Dict[str, Any]] = None) -> None:
        """fairseq's load, kept on torch's fused kernel. A state saved by fairseq's ``adam`` (the same
        update and state names; fairseq lets it through only inside its --fp16/--amp wrapper, whose
        class name is all a checkpoint records) has no ``fused`` flag and would step unfused."""
        groups = [{**group, "fused": True} for group in state_dict["param_groups"]]
        super().load_state_dict({**state_dict, "param_groups": groups}, optimizer_overrides)

    @property
    def supports_flat_params(self) -> bool:
        """One flat fp32 tensor (fairseq's --fp16/--bf16 master weights) is as good as many."""
        return True
