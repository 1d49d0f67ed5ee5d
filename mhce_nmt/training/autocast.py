"""bfloat16 autocast for training steps, on CPU as on CUDA.

fairseq 0.12's --bf16 implies --tpu (it fails on CPU and CUDA alike) and --amp is CUDA fp16, so
the task offers --autocast-bf16: each training step runs under torch.autocast(device, bfloat16).
Matrix products run in bf16; weights, gradients and optimizer state stay fp32. On CPUs with
AVX512-BF16 or AMX that speeds up a whole transformer step by ~1.25x (results/demo_runs/README.md).
On a CPU, attention's scaled_dot_product_attention runs in fp32 inside that autocast: torch's bf16
CPU attention kernels (forward + backward) took 2.4x the time of its fp32 ones on an AVX512-BF16
EPYC, 11% of the demo MHE model's bf16 step (results/step_profile/README.md).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import MHCEConfigError

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

#: bf16 autocast is chosen on a CPU when a probe step takes at most this share of fp32's time
BF16_MARGIN = 0.95


@dataclass(frozen=True)
class PrecisionProbe:
    """Median milliseconds of one probe training step in fp32 and under bf16 autocast."""

    fp32_ms: float
    bf16_ms: float

    @property
    def bf16_pays(self) -> bool:
        return self.bf16_ms <= BF16_MARGIN * self.fp32_ms


@functools.lru_cache(maxsize=None)
def probe_cpu_precision(output_size: int, model_dim: int = 256, ffn_dim: int = 1024, heads: int = 4,
                        layers: int = 2, tokens: int = 1024, repeats: int = 3) -> PrecisionProbe:
    """Time forward + backward of a small transformer stack shaped like the model (`layers` encoder
    layers, then an output product of `output_size` classes and cross-entropy, over `tokens` tokens)
    in fp32 and under the training autocast (attention in fp32), interleaved after a warm-up step
    each; the medians. A few seconds on 2 cores; once per process and shape."""
    with torch.random.fork_rng():  # the caller's random state is left as it was
        return _probe(output_size, model_dim, ffn_dim, heads, layers, tokens, repeats)


def _probe(output_size: int, model_dim: int, ffn_dim: int, heads: int, layers: int, tokens: int,
           repeats: int) -> PrecisionProbe:
    """probe_cpu_precision's measurement, under a fixed seed."""
    torch.manual_seed(0)
    stack = nn.Sequential(*[nn.TransformerEncoderLayer(model_dim, heads, ffn_dim, dropout=0.1, batch_first=True)
                            for _ in range(layers)])
    output = nn.Linear(model_dim, output_size)
    x = torch.randn(tokens // 32, 32, model_dim)
    y = torch.randint(output_size, (tokens // 32 * 32,))

    def step(bf16: bool) -> float:
        start = time.perf_counter()
        with training_autocast(stack, object(), bf16):
            logits = output(stack(x).reshape(-1, model_dim))
        nn.functional.cross_entropy(logits.float(), y).backward()
        return (time.perf_counter() - start) * 1e3

    step(False), step(True)  # warm-up: oneDNN builds its kernels for these shapes
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for bf16 in (False, True):
            times[bf16].append(step(bf16))
    return PrecisionProbe(statistics.median(times[False]), statistics.median(times[True]))


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
    previous = F.scaled_dot_product_attention  # restored as found: nested blocks and others' patches survive
    F.scaled_dot_product_attention = fp32_attention
    try:
        yield
    finally:
        F.scaled_dot_product_attention = previous


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
