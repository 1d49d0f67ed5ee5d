"""Fixes that make stock fairseq commands work with this stack (torch >= 2.6, fairseq-fixed).

1. torch.load defaults to weights_only=True since torch 2.6, and fairseq checkpoints pickle
   their config (an argparse.Namespace). We allow-list exactly that global for the safe
   unpickler instead of disabling it.
2. fairseq-fixed's compiled batch_by_size drops the tail of the last bucket when
   required_batch_size_multiple > 1 (fairseq-generate silently skipped the longest test
   sentences). We append the dropped indices as extra batches, so count in == count out.
3. fairseq wraps the model in torch's DistributedDataParallel with device_ids=[device_id] even
   with --cpu, which torch rejects for CPU modules: `fairseq-train --cpu --distributed-world-size
   2 --distributed-backend gloo` (default --ddp-backend pytorch_ddp) failed before the first
   update. We pass device_ids/output_device only for GPU modules.
"""
import argparse
import functools
import inspect
from typing import Callable

import numpy as np
import torch


def allow_fairseq_checkpoints() -> None:
    """Register argparse.Namespace with torch's weights-only unpickler (no-op on old torch)."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:
        add([argparse.Namespace])


def complete_batches(batch_by_size: Callable) -> Callable:
    """Wrap fairseq's batch_by_size so that every index ends up in some batch."""
    if getattr(batch_by_size, "_mhce_complete", False):
        return batch_by_size
    signature = inspect.signature(batch_by_size)

    @functools.wraps(batch_by_size)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        params = bound.arguments
        batches = batch_by_size(*bound.args, **bound.kwargs)
        indices = np.asarray(params["indices"], dtype=np.int64)
        if params.get("fixed_shapes") is not None or len(indices) == 0:
            return batches
        seen = np.concatenate([np.asarray(b, dtype=np.int64) for b in batches]) if len(batches) else []
        if len(seen) >= len(indices):
            return batches
        dropped = ~np.isin(indices, seen)
        vec = params.get("num_tokens_vec")
        params.update(
            indices=indices[dropped],
            num_tokens_vec=None if vec is None else np.asarray(vec)[dropped],
            required_batch_size_multiple=1,
        )
        return list(batches) + list(batch_by_size(**params))

    wrapper._mhce_complete = True
    return wrapper


def patch_fairseq_batching() -> None:
    """Install complete_batches on fairseq.data.data_utils.batch_by_size."""
    from fairseq.data import data_utils

    data_utils.batch_by_size = complete_batches(data_utils.batch_by_size)


def patch_fairseq_cpu_ddp() -> None:
    """Make fairseq's pytorch_ddp wrapper accept CPU modules (see 3. above)."""
    from fairseq.models import distributed_fairseq_model as dfm

    base = dfm.DistributedDataParallel
    if getattr(base, "_mhce_cpu_ok", False):
        return

    class DistributedDataParallel(base):  # same name: fairseq's isinstance checks still hold
        _mhce_cpu_ok = True

        def __init__(self, module, device_ids=None, output_device=None, *args, **kwargs):
            if device_ids is not None and all(p.device.type == "cpu" for p in module.parameters()):
                device_ids = output_device = None  # torch: CPU modules take neither
            super().__init__(module, device_ids, output_device, *args, **kwargs)

    dfm.DistributedDataParallel = DistributedDataParallel


def apply_fairseq_fixes() -> None:
    """Apply fixes 1-3 (each is idempotent)."""
    allow_fairseq_checkpoints()
    patch_fairseq_batching()
    patch_fairseq_cpu_ddp()
