"""bfloat16 autocast for training steps, on CPU as on CUDA.

fairseq 0.12's --bf16 implies --tpu (it fails on CPU and CUDA alike) and --amp is CUDA fp16, so
the task offers --autocast-bf16: each training step runs under torch.autocast(device, bfloat16).
Matrix products run in bf16; weights, gradients and optimizer state stay fp32. On CPUs with
AVX512-BF16 or AMX that speeds up a whole transformer step by ~1.25x (results/demo_runs/README.md).
On a CPU, attention's scaled_dot_product_attention runs in fp32 inside that autocast: torch's bf16
CPU attention kernels (forward + backward) took 2.3x the time of its fp32 ones on an AVX512-BF16
EPYC, 11% of the demo MHE model's bf16 step (results/step_profile/README.md).
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import ContextManager, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from .errors import MHCEConfigError

logger = logging.getLogger(__name__)

#: /proc/cpuinfo flags of native bf16 arithmetic (without them CPU autocast only adds casts)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU advertises AVX512-BF16 or AMX-BF16 (False where cpuinfo is absent)."""
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


_cpu_checked = False  # /proc/cpuinfo is read once per process, not on every step


class AutocastCriterion:
    """criterion(model, sample) under `autocast`: fairseq's train_step calls the criterion inside
    torch.cuda.amp.autocast(enabled=False) when its optimizer is not AMP's, which would switch off
    an outer CUDA autocast, so the autocast is entered here, inside it."""

    def __init__(self, criterion: nn.Module, autocast: ContextManager):
        self.criterion, self.autocast = criterion, autocast

    def __call__(self, model: nn.Module, sample: dict):
        with self.autocast:
            return self.criterion(model, sample)


_bf16_attention = F.scaled_dot_product_attention


def fp32_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask=None,
                   *args, **kwargs) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v as F.scaled_dot_product_attention computes it, in fp32 with
    autocast off when the inputs are bf16 (the result stays fp32; the next product's autocast casts it)."""
    if query.dtype != torch.bfloat16:
        return _bf16_attention(query, key, value, attn_mask, *args, **kwargs)
    if attn_mask is not None and attn_mask.is_floating_point():
        attn_mask = attn_mask.float()
    with torch.autocast("cpu", enabled=False):
        return _bf16_attention(query.float(), key.float(), value.float(), attn_mask, *args, **kwargs)


@contextlib.contextmanager
def attention_in_fp32() -> Iterator[None]:
    """Within the block, torch.nn.functional.scaled_dot_product_attention (which torch's
    multi_head_attention_forward, fairseq's training path, calls) is fp32_attention."""
    F.scaled_dot_product_attention = fp32_attention
    try:
        yield
    finally:
        F.scaled_dot_product_attention = _bf16_attention


def training_autocast(model: nn.Module, optimizer: object, enabled: bool,
                      bf16_attention: bool = False) -> ContextManager:
    """torch.autocast(bfloat16) on the model's device when enabled, else a null context; on a CPU
    with attention in fp32 inside it unless `bf16_attention`.

    Refuses fairseq's own reduced precision (its optimizer wrappers hold fp16/bf16 weights);
    warns once on a CPU without native bf16, where autocast is slower than fp32.
    """
    if not enabled:
        return contextlib.nullcontext()
    wrapper = type(optimizer).__name__
    if wrapper in ("FP16Optimizer", "MemoryEfficientFP16Optimizer", "AMPOptimizer"):
        raise MHCEConfigError(
            "--autocast-bf16 cannot be combined with --fp16, --bf16 or --amp (the optimizer is "
            f"fairseq's {wrapper}): drop one of them.")
    device_type = next(model.parameters()).device.type
    global _cpu_checked
    if device_type == "cpu" and not _cpu_checked:
        _cpu_checked = True
        if not cpu_has_native_bf16():
            logger.warning("--autocast-bf16: this CPU has neither AVX512-BF16 nor AMX, so bf16 products "
                           "are emulated and training is many times slower than fp32 (34x on a 2-core AVX2 AMD EPYC); "
                           "drop --autocast-bf16 here.")
    autocast = torch.autocast(device_type, dtype=torch.bfloat16)
    if device_type != "cpu" or bf16_attention:
        return autocast
    return autocast_with_fp32_attention(autocast)


@contextlib.contextmanager
def autocast_with_fp32_attention(autocast: ContextManager) -> Iterator[None]:
    """`autocast` and attention_in_fp32, both entered when the block is (not before)."""
    with autocast, attention_in_fp32():
        yield
