"""Linear + label-smoothed cross-entropy by fused kernels: the softmax baselines of a GPU user.

For logits = x W^T over V ids, fairseq's label_smoothed_nll_loss per token is
  loss = (1 - eps - eps_o) * nll + eps_o * sum_v -log p(v|x),   eps_o = eps / (V - 1).
KERNELS compute its sum over the non-padding tokens:
  eager    log_softmax of the whole (N, V) logits, as fairseq's criterion (any device)
  compile  the eager function under torch.compile: softmax and loss fused (any device)
  torch    torch.nn.functional.linear_cross_entropy's chunked op (options=LinearCrossEntropyOptions()),
           never all N x V logits (any device). It takes no label smoothing, so it gives the
           per-token nll, and the smoothing term comes in O(N d): with lse = nll + <x, W_y>,
           sum_v -log p(v|x) = V lse - <x, sum_v W_v>
  liger    Liger-Kernel's LigerFusedLinearCrossEntropyLoss (Triton, CUDA; pip install liger-kernel)
  cce      Apple's Cut Cross-Entropy (Triton, CUDA; pip install cut-cross-entropy): no label
           smoothing, so eps must be 0
liger takes torch's smoothing, (1 - s) nll + (s / V) sum_v -log p. With
s = rV / (1 + rV), r = eps_o / (1 - eps - eps_o), and the sum scaled by (1 - eps - eps_o) / (1 - s),
that is fairseq's loss exactly. Plain torch: fairseq is not imported here.
"""
from __future__ import annotations

import functools
import importlib.util
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..defaults import SOFTMAX_KERNELS
from ..errors import MHCEConfigError
from ..output.loss import smoothed_nll

KERNELS = SOFTMAX_KERNELS
#: kernels that need a package of their own and a CUDA device
_PACKAGES = {"liger": ("liger_kernel", "liger-kernel"), "cce": ("cut_cross_entropy", "cut-cross-entropy")}


def check_kernel(kernel: str, device: torch.device, eps: float) -> None:
    """One-line errors for a kernel that cannot run here (unknown, missing package, CPU, eps)."""
    if kernel not in KERNELS:
        raise MHCEConfigError(f"fused softmax kernel {kernel!r} is unknown: choose one of {', '.join(KERNELS)}.")
    if kernel in _PACKAGES:
        module, package = _PACKAGES[kernel]
        if importlib.util.find_spec(module) is None:
            raise MHCEConfigError(f"fused softmax kernel {kernel} needs the {package} package: "
                                  f"pip install {package} (on a CUDA machine), or choose torch or compile.")
        if device.type != "cuda":
            raise MHCEConfigError(f"fused softmax kernel {kernel} runs on CUDA only (Triton); on {device.type} "
                                  "choose torch, compile or eager.")
    if kernel == "cce" and eps > 0:
        raise MHCEConfigError("fused softmax kernel cce has no label smoothing: give --label-smoothing 0, or "
                              "choose liger or torch, which smooth as fairseq does.")


def torch_smoothing(eps: float, vocab: int) -> Tuple[float, float]:
    """(s, scale): scale * [(1-s) nll + (s/V) sum_v -log p] = fairseq's smoothed loss (module doc)."""
    if eps == 0:
        return 0.0, 1.0
    eps_o = eps / (vocab - 1)
    gold = 1.0 - eps - eps_o
    ratio_times_v = eps_o / gold * vocab
    s = ratio_times_v / (1.0 + ratio_times_v)
    return s, gold / (1.0 - s)


def eager_loss(x: Tensor, weight: Tensor, target: Tensor, eps: float, ignore_index: int) -> Tuple[Tensor, Tensor]:
    """x (N, d), weight (V, d), target (N,) -> (smoothed loss sum, nll sum) over tokens != ignore_index."""
    lprobs = torch.log_softmax((x @ weight.t()).float(), dim=-1)  # (N, V)
    nll = -lprobs.gather(1, target.clamp(min=0).unsqueeze(1)).squeeze(1)
    return _masked_sums(nll, -lprobs.sum(-1), target != ignore_index, eps, weight.size(0))


def _masked_sums(nll: Tensor, neg_sum: Tensor, keep: Tensor, eps: float, vocab: int) -> Tuple[Tensor, Tensor]:
    """nll, neg_sum = sum_v -log p(v|x), keep (N,) -> sums over kept tokens of fairseq's smoothed
    loss and of nll."""
    loss = smoothed_nll(nll, neg_sum, float(vocab), eps)
    zero = torch.zeros((), dtype=loss.dtype, device=loss.device)
    return torch.where(keep, loss, zero).sum(), torch.where(keep, nll, zero).sum()


@functools.lru_cache(maxsize=None)
def _compiled_loss() -> Callable:
    """eager_loss under torch.compile, compiled once per process."""
    return torch.compile(eager_loss, dynamic=True)


def _chunked_torch_loss(x: Tensor, weight: Tensor, target: Tensor, eps: float,
                        ignore_index: int) -> Tuple[Tensor, Tensor]:
    """fairseq's smoothed loss and nll sums from torch's chunked per-token nll (module docstring)."""
    from torch.nn import LinearCrossEntropyOptions

    nll = F.linear_cross_entropy(x, weight, target, reduction="none", ignore_index=ignore_index,
                                 options=LinearCrossEntropyOptions()).float()  # (N,), 0 where ignored
    states = x.float()
    gold = (states * weight.index_select(0, target.clamp(min=0)).float()).sum(-1)  # <x, W_y> (N,)
    vocab = weight.size(0)
    neg_sum = vocab * (nll + gold) - states @ weight.float().sum(0)  # sum_v -log p(v|x) (N,)
    return _masked_sums(nll, neg_sum, target != ignore_index, eps, vocab)


def linear_smoothed_cross_entropy(x: Tensor, weight: Tensor, target: Tensor, eps: float,
                                  ignore_index: int, kernel: str) -> Tuple[Tensor, Optional[Tensor]]:
    """x (N, d), weight (V, d), target (N,) -> (fairseq's label-smoothed loss summed over tokens
    != ignore_index, the nll sum where the kernel gives it, else None)."""
    if kernel == "eager":
        return eager_loss(x, weight, target, eps, ignore_index)
    if kernel == "compile":
        return _compiled_loss()(x, weight, target, eps, ignore_index)
    if kernel == "torch":
        return _chunked_torch_loss(x, weight, target, eps, ignore_index)
    if x.dtype != weight.dtype:  # under autocast: the Triton kernels take one dtype
        weight = weight.to(x.dtype)
    s, scale = torch_smoothing(eps, weight.size(0))
    if kernel == "liger":
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        out = LigerFusedLinearCrossEntropyLoss(ignore_index=ignore_index, label_smoothing=s,
                                               reduction="sum")(weight, x, target)
        loss = out[0] if isinstance(out, tuple) else getattr(out, "loss", out)
    elif kernel == "cce":
        from cut_cross_entropy import linear_cross_entropy

        loss = linear_cross_entropy(x, weight, target, ignore_index=ignore_index, reduction="sum")
    else:
        raise MHCEConfigError(f"fused softmax kernel {kernel!r} is unknown: choose one of {', '.join(KERNELS)}.")
    return loss.float() * scale, (loss.float() if eps == 0 else None)
