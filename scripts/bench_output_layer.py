#!/usr/bin/env python
"""Benchmark NMT output layers: full softmax, fairseq adaptive softmax, MHP, MHE, MHS.

For every vocabulary size V it times, on the same random decoder states:

* train_ms  -- forward + backward of the output layer plus its loss for --tokens decoder states
  of width --dim; targets are Zipf-distributed over ids sorted by frequency (id 0 is the most
  frequent, as in a real subword vocabulary), p(id = r) ~ 1 / (r + 1) ** --zipf.
  - softmax : mhce_nmt SoftmaxOutput (= fairseq's Linear(d, V, bias=False) output projection)
              + factored_loss, label smoothing 0.1 (fairseq's label_smoothed_cross_entropy).
  - adaptive: fairseq.modules.AdaptiveSoftmax (cutoffs V/16, V/4 by default, factor 4, no
              dropout) + the adaptive_loss criterion's computation (one plain CE per cluster,
              summed; adaptive_loss has no label smoothing).
  - softmax-compile / -torch / -liger / -cce: the same Linear(d, V) weight and loss through a fused
              kernel (mhce_nmt.baselines.fused_softmax: torch.compile of the eager loss, torch's
              F.linear_cross_entropy, Liger-Kernel, Cut Cross-Entropy). liger and cce need CUDA and
              their packages; cce has no label smoothing, so it runs with eps 0 (its records say so).
              Their decode step is the eager softmax's. Named in --methods only.
  - mhp, mhe, mhs: mhce_nmt.output.build_output_layer(mode, LabelCodec.build(V, None, 2), d)
              + factored_loss with eps 0.1, joint smoothing as the criterion's default (mhe:
              --smoothing-groups groups drawn per token for its uniform term; --smoothing per-level for
              the per-head one); mhs samples M = ceil(P_1 / 8) of the P_1 groups.
* decode_ms -- one beam-search step for --hyps hypotheses (default 64 sentences x beam 5):
  softmax / mhs (eval mode = full softmax) / adaptive (get_log_prob): full (hyps, V) log-probs
  then topk(2 * beam); mhp / mhe: layer.candidates(x, [--topk-groups]) then topk(2 * beam) over
  the candidate scores (coarse-to-fine, exact scores of the kept candidates).

Timing: every method lives in one process; after --warmup untimed calls, the --repeats timed
repetitions are interleaved across methods (round-robin, so machine noise hits all of them alike)
and the median is reported. torch threads are pinned to --threads (default os.cpu_count()).
Speed-ups are softmax_ms / method_ms at the same V; *_vs_fastest_softmax compares with the fastest
softmax of the run (eager or fused), train time and peak memory alike. --grouped-path forces MHE's
grouped products onto one way (mhce_nmt.output.grouped.PATHS) to compare them.

Memory (peak_mb): the extra memory one step needs on top of the steady state (parameters and
inputs allocated, no gradients held), i.e. activations, workspace and the gradients it creates.
  - CPU: measured after all timings, in a separate child process per vocabulary size whose glibc
    is set (MALLOC_MMAP_THRESHOLD_=65536 / mallopt) to return every freed block >= 64 KiB to the
    OS at once, so the resident set follows live memory instead of the allocator's cache.
    (--memory inprocess does the same in the timing process, after the timings.) For each
    method it warms up, resets the kernel's peak-RSS counter (write "5" to /proc/self/clear_refs),
    runs one step and reports VmHWM - VmRSS(before). Where /proc/self/clear_refs is unusable it
    falls back to a fresh child per method and step without warm-up, reading ru_maxrss deltas
    (that includes one-off library initialisation, so it over-estimates).
  - CUDA: torch.cuda.max_memory_allocated() - memory_allocated() around one step.
  peak_mb is the training step's figure; train_peak_mb / decode_peak_mb give both; param_mb is
  the parameter memory (not included in peak_mb).

What bounds each ratio (N tokens, H hypotheses, d = e = 512, 2 heads K_1 x K_2 ~ sqrt(V)):
  - mhp train: the FLOP ratio V / (K_1 + K_2) (three matmuls each, as softmax): 45 at V=8k,
    90 at 32k, 181 at 131k, minus the per-token loss work on K_1 + K_2 columns.
  - mhe train: the same FLOPs as mhp, but level 2 is one small matmul per prefix group and
    the step must read the V x e table twice and write its dense V x e gradient (fairseq sets
    grads to None, so that is a fresh 64 MiB at 32k every step): it is memory-bound there.
  - mhe decode: FLOP ratio V / (K_1 + g K_2) = 10 / 20 / 40 at 8k / 32k / 131k for g = 8; and
    with 320 unrelated hypotheses nearly every group is kept by ~14 of them, so each step streams
    the whole table for matmuls of ~14 rows, which run at about half the rate of softmax's one big
    matmul. mhp decode: V / (K_1 + K_2) plus topk over g K_2 candidates.
  - mhs train: the sampled groups always include every target's group; 2048 Zipf targets touch
    most groups (about 155 of 182 at 32k), so M = P_1 / 8 rarely binds and it costs about a softmax
    plus a gather of the weight rows. Its decoding is the full softmax.
  - adaptive: head of V/16 words + 2 cluster logits, tails V/16..V/4 (dim d/4) and V/4..V
    (dim d/16); with Zipf targets ~75% of tokens stop at the head.
On a shared machine, timings with several threads fall apart whenever another process takes a
core: every parallel region (one per small matmul or elementwise op) then waits for a descheduled
thread, which costs the many-small-ops layers (mhp, mhe) far more than softmax's few huge
matmuls. The table prints the 1-minute load average; if it exceeds the idle CPUs, compare the
min columns, rerun when idle, or use --threads 1.

Usage:
    python -m scripts.bench_output_layer                       # V = 8192 32768 131072, table
    python -m scripts.bench_output_layer --json bench.json     # also write the records
    python -m scripts.bench_output_layer --quick --vocab-sizes 1024 --json /tmp/b.json  # smoke

JSON: a list of records {"method", "vocab", "train_ms", "decode_ms", "peak_mb",
"train_speedup_vs_softmax", "decode_speedup_vs_softmax", "train_peak_mb", "decode_peak_mb",
"param_mb", ...}.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from mhce_nmt.errors import install_excepthook
from mhce_nmt.output.grouped import PATHS, forced_path

METHODS = ("softmax", "adaptive", "mhp", "mhe", "mhs")
#: the softmax through a fused linear + loss kernel (not run unless named in --methods)
FUSED_METHODS = ("softmax-compile", "softmax-torch", "softmax-liger", "softmax-cce")
#: mhp/mhe with a frequent-token shortlist of --shortlist ids (not run unless named in --methods);
#: +tied: mhe's output rows are a (V, d) decoder embedding (--mhe-tie-label-embeddings)
SHORTLIST_METHODS = ("mhp+shortlist", "mhe+shortlist", "mhe+shortlist+tied")
MIB = 1024.0 * 1024.0


# ---------------------------------------------------------------------------------------------
# workload
# ---------------------------------------------------------------------------------------------
def zipf_targets(n: int, vocab: int, exponent: float, generator: torch.Generator) -> torch.Tensor:
    """n ids in [0, V) with p(r) ~ 1/(r+1)^s (id 0 most frequent)."""
    ranks = torch.arange(1, vocab + 1, dtype=torch.float64)
    probs = ranks.pow(-exponent)
    probs /= probs.sum()
    return torch.multinomial(probs, n, replacement=True, generator=generator)


class Bench:
    """One method at one V: a train step (fwd + bwd + loss) and a decode step (scores + topk)."""

    def __init__(self, method: str, vocab: int, args: argparse.Namespace,
                 device: torch.device, dtype: torch.dtype):
        self.method = method
        self.family = method.split("+")[0].split("-")[0]  # mhe+shortlist is an mhe layer, softmax-torch a softmax
        self.kernel = method.partition("-")[2] or None  # fused softmax kernel
        self.epsilon = 0.0 if self.kernel == "cce" else args.epsilon  # cce has no label smoothing
        self.vocab = vocab
        self.args = args
        self.device = device
        self.k = 2 * args.beam
        self.layer = self._build(method, vocab, args.dim).to(device=device, dtype=dtype)
        gen = torch.Generator().manual_seed(args.seed + vocab)
        self.x = torch.randn(args.tokens, args.dim, generator=gen).to(device=device, dtype=dtype)
        self.x.requires_grad_(True)  # the decoder needs dL/dx, so it is part of the step
        self.y = zipf_targets(args.tokens, vocab, args.zipf, gen).to(device)
        self.xh = torch.randn(args.hyps, args.dim, generator=gen).to(device=device, dtype=dtype)

    def _build(self, method: str, vocab: int, dim: int) -> torch.nn.Module:
        if method == "adaptive":
            from fairseq.modules.adaptive_softmax import AdaptiveSoftmax

            self.cutoffs = adaptive_cutoffs(vocab, self.args.adaptive_cutoffs)
            return AdaptiveSoftmax(vocab, dim, list(self.cutoffs), dropout=0.0, factor=4.0)
        from mhce_nmt.codec import LabelCodec, ShortlistCodec
        from mhce_nmt.output import build_output_layer

        if method in SHORTLIST_METHODS:
            codec = ShortlistCodec.build(vocab, self.args.shortlist, None, 2)
        else:
            codec = LabelCodec.build(vocab, None, 2)
        self.codec = codec
        groups = None
        if method == "mhs":
            groups = max(1, math.ceil(codec.num_prefixes[0] / 8))
        tied = torch.nn.Parameter(torch.randn(vocab, dim) * dim ** -0.5) if method.endswith("+tied") else None
        return build_output_layer(self.family, codec, dim, mhs_groups=groups, tied_weight=tied)

    def param_mb(self) -> float:
        return sum(p.numel() * p.element_size() for p in self.layer.parameters()) / MIB

    # ---- steps ------------------------------------------------------------------------------
    def clear_grads(self) -> None:
        self.layer.zero_grad(set_to_none=True)
        self.x.grad = None

    def train_step(self) -> None:
        with forced_path(self.args.grouped_path):
            self._train_step()

    def _train_step(self) -> None:
        self.layer.train()
        self.clear_grads()
        if self.method == "adaptive":
            logits, targets = self.layer(self.x, self.y)
            loss = self.x.new_zeros((), dtype=torch.float32)
            for lg, tg in zip(logits, targets):
                if tg is not None:
                    loss = loss + F.cross_entropy(lg.float(), tg, reduction="sum")
        elif self.kernel:
            from mhce_nmt.baselines.fused_softmax import linear_smoothed_cross_entropy

            loss = linear_smoothed_cross_entropy(self.x, self.layer.weight, self.y, self.epsilon, -100,
                                                 self.kernel)[0]
        else:
            from mhce_nmt.output import factored_loss

            joint = self.args.smoothing == "joint" and self.args.epsilon > 0
            terms = self.layer.loss_terms(self.x, self.y, self.args.smoothing_groups if joint else None)
            loss = factored_loss(terms, self.args.epsilon, self.args.smoothing).loss.sum()
        loss.backward()

    @torch.no_grad()
    def decode_step(self) -> torch.Tensor:
        with forced_path(self.args.grouped_path):
            return self._decode_step()

    def _decode_step(self) -> torch.Tensor:
        self.layer.eval()
        if self.method == "adaptive":
            lp = self.layer.get_log_prob(self.xh.unsqueeze(0), None).squeeze(0)
            return lp.topk(self.k, dim=-1)[1]
        if self.family in ("mhp", "mhe"):
            ids, scores = self.layer.candidates(self.xh, [self.args.topk_groups])
            top, idx = scores.topk(min(self.k, scores.size(1)), dim=-1)
            return ids.gather(1, idx)
        lp = self.layer.log_probs(self.xh)
        return lp.topk(self.k, dim=-1)[1]


def adaptive_cutoffs(vocab: int, divisors: List[int]) -> List[int]:
    """V // d for each divisor, strictly increasing and below V (fairseq appends V itself)."""
    cuts = sorted({max(1, vocab // d) for d in divisors})
    cuts = [c for c in cuts if c < vocab]
    if not cuts:
        raise SystemExit(f"--adaptive-cutoffs {divisors} give no cutoff below V={vocab}")
    return cuts


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return (time.perf_counter() - start) * 1000.0


def time_vocab(vocab: int, methods: List[str], args, device, dtype) -> Dict[str, dict]:
    benches = {m: Bench(m, vocab, args, device, dtype) for m in methods}
    for _ in range(args.warmup):
        for b in benches.values():
            b.train_step()
            b.decode_step()
    train: Dict[str, List[float]] = {m: [] for m in methods}
    decode: Dict[str, List[float]] = {m: [] for m in methods}
    for _ in range(args.repeats):
        for m, b in benches.items():
            train[m].append(timed(b.train_step, device))
            b.clear_grads()
            decode[m].append(timed(b.decode_step, device))
    out = {}
    for m, b in benches.items():
        out[m] = {
            "train_ms": statistics.median(train[m]),
            "decode_ms": statistics.median(decode[m]),
            "train_ms_all": [round(t, 3) for t in train[m]],
            "decode_ms_all": [round(t, 3) for t in decode[m]],
            "param_mb": b.param_mb(),
        }
        if m == "adaptive":
            out[m]["adaptive_cutoffs"] = b.cutoffs
        if hasattr(b, "codec"):
            out[m]["heads"] = b.codec.head_sizes
    del benches
    gc.collect()
    return out


# ---------------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------------
def _proc_status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def release_freed_memory_to_os() -> bool:
    """glibc only: serve every block >= 64 KiB by mmap and trim the heap on free, so the resident
    set follows live memory (what the MALLOC_*_ env vars do for the child process)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(-3, 65536) == 1 and libc.mallopt(-1, 0) == 1  # M_MMAP/M_TRIM_THRESHOLD
        libc.malloc_trim(0)
        return ok
    except (OSError, AttributeError):
        return False


def hwm_resettable() -> bool:
    return _proc_status_kb("VmHWM") is not None and _reset_hwm()


def measure_step_memory(fn: Callable[[], object], device: torch.device, warm: bool) -> float:
    """Extra MiB one call of fn needs above the memory in use just before it."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / MIB
    if warm:
        _reset_hwm()
        base = _proc_status_kb("VmRSS")
        fn()
        return max(0, _proc_status_kb("VmHWM") - base) / 1024.0
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    fn()
    return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024.0


def memory_in_this_process(vocab: int, methods: List[str], args, device, dtype,
                           warm: bool = True, phases=("train", "decode")) -> Dict[str, dict]:
    out: Dict[str, dict] = {}
    for m in methods:
        b = Bench(m, vocab, args, device, dtype)
        rec = {}
        if warm:
            b.train_step()
            b.decode_step()
        for phase in phases:
            b.clear_grads()
            step = b.train_step if phase == "train" else b.decode_step
            rec[f"{phase}_peak_mb"] = measure_step_memory(step, device, warm)
        out[m] = rec
        del b
        gc.collect()
    return out


def memory_child_args(args, vocab: int, methods: List[str], extra: List[str]) -> List[str]:
    cmd = [sys.executable, "-m", "scripts.bench_output_layer", "--_memory-child", "--vocab-sizes", str(vocab),
           "--methods", *methods, "--tokens", str(args.tokens), "--dim", str(args.dim),
           "--hyps", str(args.hyps), "--beam", str(args.beam), "--topk-groups", str(args.topk_groups),
           "--zipf", str(args.zipf), "--epsilon", str(args.epsilon), "--seed", str(args.seed),
           "--adaptive-cutoffs", *map(str, args.adaptive_cutoffs), "--device", args.device,
           "--dtype", args.dtype, "--threads", str(args.threads), "--smoothing", args.smoothing,
           "--smoothing-groups", str(args.smoothing_groups), "--shortlist", str(args.shortlist)]
    if args.grouped_path:
        cmd += ["--grouped-path", args.grouped_path]
    return cmd + extra


def run_child(cmd: List[str]) -> Dict[str, dict]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where `-m scripts.NAME` runs
    proc = subprocess.run(cmd, env=env, cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("MEMORY_JSON "):
            return json.loads(line[len("MEMORY_JSON "):])
    raise RuntimeError(f"memory child printed no result:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def measure_memory(vocab: int, methods: List[str], args, device, dtype) -> Dict[str, dict]:
    if args.memory == "off":
        return {m: {"train_peak_mb": None, "decode_peak_mb": None} for m in methods}
    if args.memory == "inprocess" or device.type == "cuda":
        how = "cuda max_memory_allocated" if device.type == "cuda" else "in-process VmHWM reset"
        if device.type != "cuda":
            release_freed_memory_to_os()
        res = memory_in_this_process(vocab, methods, args, device, dtype, warm=True)
    elif hwm_resettable():
        how = "child process, VmHWM reset"
        res = run_child(memory_child_args(args, vocab, methods, []))
    else:  # fresh child per method and phase, no warm-up, ru_maxrss delta
        how = "fresh child per step, ru_maxrss delta (includes one-off init)"
        res = {}
        for m in methods:
            res[m] = {}
            for phase in ("train", "decode"):
                res[m].update(run_child(memory_child_args(args, vocab, [m], ["--_cold", phase]))[m])
    for rec in res.values():
        rec["memory_method"] = how
    return res


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocab-sizes", type=int, nargs="+", default=None,
                   help="target vocabulary sizes (default 8192 32768 131072; --quick: 2048)")
    p.add_argument("--shortlist", type=int, default=1024,
                   help="ids scored directly at level 1 by mhp+shortlist / mhe+shortlist (default 1024)")
    p.add_argument("--methods", nargs="+", choices=METHODS + SHORTLIST_METHODS + FUSED_METHODS,
                   default=list(METHODS),
                   help="methods to run (default: all but the shortlist and fused ones; softmax is always "
                        "added as the baseline)")
    p.add_argument("--grouped-path", choices=PATHS,
                   help="run MHE's grouped products on this way (default: chosen by device and dtype)")
    p.add_argument("--tokens", type=int, default=None, help="decoder states per training step "
                   "(default 2048; --quick: 512)")
    p.add_argument("--dim", type=int, default=512, help="decoder output width d (default 512)")
    p.add_argument("--hyps", type=int, default=None,
                   help="hypotheses per decoding step (default 320 = 64 sentences x beam 5; --quick: 40)")
    p.add_argument("--beam", type=int, default=5, help="beam size; each step keeps topk(2*beam) (default 5)")
    p.add_argument("--topk-groups", type=int, default=8,
                   help="mhp/mhe decoding: prefixes kept per coarse level, candidates(x, [g]) (default 8)")
    p.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of the target ids (default 1.0)")
    p.add_argument("--epsilon", type=float, default=0.1, help="label smoothing, all but adaptive (default 0.1)")
    p.add_argument("--smoothing", choices=("joint", "per-level"), default="joint",
                   help="mhp/mhe label smoothing: joint (fairseq's, the criterion's default) or "
                        "per-level (default %(default)s)")
    p.add_argument("--smoothing-groups", type=int, default=1,
                   help="mhe joint smoothing: other groups drawn per token for the uniform term, as the "
                        "criterion's --mhce-smoothing-groups (default 1; 0 = all, exact)")
    p.add_argument("--adaptive-cutoffs", type=int, nargs="+", default=[16, 4],
                   help="adaptive softmax cutoffs as divisors of V (default 16 4: cutoffs V/16, V/4)")
    p.add_argument("--repeats", type=int, default=None, help="timed repetitions (median; "
                   "default 5; --quick: 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 2; --quick: 1)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default os.cpu_count())")
    p.add_argument("--device", default="auto", help="auto (default: cuda if available), cpu, cuda, cuda:N")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                   help="parameter and state dtype (default fp32; losses are computed in fp32)")
    p.add_argument("--memory", choices=("subprocess", "inprocess", "off"), default=None,
                   help="how to measure peak memory on CPU (see module docstring; default "
                        "subprocess; --quick: inprocess)")
    p.add_argument("--seed", type=int, default=1, help="seed of states and targets (default 1)")
    p.add_argument("--json", metavar="PATH", help="write the records to PATH")
    p.add_argument("--quick", action="store_true",
                   help="fast smoke run: V=2048, 512 tokens, 40 hyps, 1 warm-up, 2 repeats, "
                        "in-process memory (explicit options still win)")
    p.add_argument("--_memory-child", dest="memory_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_cold", dest="cold", choices=("train", "decode"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {"vocab_sizes": ([2048] if quick else [8192, 32768, 131072]),
                "tokens": 512 if quick else 2048, "hyps": 40 if quick else 320,
                "repeats": 2 if quick else 5, "warmup": 1 if quick else 2,
                "memory": "inprocess" if quick else "subprocess"}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.repeats < 1 or args.warmup < 0 or args.tokens < 1 or args.hyps < 1:
        p.error("--repeats, --tokens and --hyps must be >= 1 and --warmup >= 0")
    if args.shortlist < 4 or args.smoothing_groups < 0:
        p.error(f"--shortlist must be >= 4 (the specials) and --smoothing-groups >= 0, got "
                f"{args.shortlist} and {args.smoothing_groups}")
    if "softmax" not in args.methods:
        args.methods = ["softmax"] + list(args.methods)  # the speed-up baseline
    return args


def _loadavg() -> Optional[float]:
    """1-minute load average (other processes competing for the CPUs), None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def format_table(records: List[dict]) -> str:
    head = (f"{'V':>7} {'method':<15} {'train_ms':>10} {'x':>7} {'xbest':>7} {'decode_ms':>10} {'x':>7} "
            f"{'peak_mb':>9} {'mem/best':>8} {'dec_mb':>8} {'param_mb':>9}   (min train / decode ms)")
    lines = [head, "-" * len(head)]

    def num(v, fmt):
        width = int(fmt.split(".")[0])
        return format(v, fmt) if v is not None else "-".rjust(width)

    for r in records:
        lines.append(
            f"{r['vocab']:>7} {r['method']:<15} {r['train_ms']:>10.2f} "
            f"{r['train_speedup_vs_softmax']:>6.1f}x {r['train_speedup_vs_fastest_softmax']:>6.1f}x "
            f"{r['decode_ms']:>10.2f} {r['decode_speedup_vs_softmax']:>6.1f}x {num(r['peak_mb'], '9.1f')} "
            f"{num(r['peak_mb_vs_fastest_softmax'], '8.3f')} {num(r['decode_peak_mb'], '8.1f')} {r['param_mb']:>9.1f}"
            f"   min {r['train_ms_min']:.2f} / {r['decode_ms_min']:.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    install_excepthook()  # a kernel that cannot run here, a bad option: one line
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    for method in args.methods:  # a fused kernel that cannot run here: one line, before any timing
        if method in FUSED_METHODS:
            from mhce_nmt.errors import MHCEConfigError
            from mhce_nmt.baselines.fused_softmax import check_kernel

            kernel = method.partition("-")[2]
            try:
                check_kernel(kernel, device, 0.0 if kernel == "cce" else args.epsilon)
            except MHCEConfigError as err:
                sys.exit(f"error: --methods {method}: {err}")

    if args.memory_child:  # internal: memory of each method at one V, printed as JSON
        release_freed_memory_to_os()
        vocab = args.vocab_sizes[0]
        if args.cold:
            res = memory_in_this_process(vocab, args.methods, args, device, dtype, warm=False,
                                         phases=(args.cold,))
        else:
            res = memory_in_this_process(vocab, args.methods, args, device, dtype, warm=True)
        print("MEMORY_JSON " + json.dumps(res), flush=True)
        return 0

    print(f"# device={device} dtype={args.dtype} threads={torch.get_num_threads()} tokens={args.tokens} "
          f"d={args.dim} hyps={args.hyps} beam={args.beam} topk_groups={args.topk_groups} "
          f"zipf={args.zipf} repeats={args.repeats} warmup={args.warmup} memory={args.memory}",
          flush=True)
    records: List[dict] = []
    for vocab in args.vocab_sizes:
        load_start = _loadavg()
        times = time_vocab(vocab, args.methods, args, device, dtype)
        load_end = _loadavg()
        mem = measure_memory(vocab, args.methods, args, device, dtype)
        base = times["softmax"]
        softmaxes = [m for m in args.methods if m == "softmax" or m in FUSED_METHODS]
        fastest = min(softmaxes, key=lambda m: times[m]["train_ms"])
        for m in args.methods:
            t, mm = times[m], mem[m]
            rec = {
                "method": m, "vocab": vocab,
                "train_ms": round(t["train_ms"], 3), "decode_ms": round(t["decode_ms"], 3),
                "peak_mb": None if mm["train_peak_mb"] is None else round(mm["train_peak_mb"], 1),
                "train_speedup_vs_softmax": round(base["train_ms"] / t["train_ms"], 2),
                "decode_speedup_vs_softmax": round(base["decode_ms"] / t["decode_ms"], 2),
                "train_peak_mb": None if mm["train_peak_mb"] is None else round(mm["train_peak_mb"], 1),
                "decode_peak_mb": None if mm["decode_peak_mb"] is None else round(mm["decode_peak_mb"], 1),
                "param_mb": round(t["param_mb"], 1),
                "fastest_softmax": fastest,
                "train_speedup_vs_fastest_softmax": round(times[fastest]["train_ms"] / t["train_ms"], 2),
                "peak_mb_vs_fastest_softmax": (
                    None if not mm["train_peak_mb"] or not mem[fastest]["train_peak_mb"]
                    else round(mm["train_peak_mb"] / mem[fastest]["train_peak_mb"], 3)),
                "label_smoothing": 0.0 if m == "softmax-cce" else (0.0 if m == "adaptive" else args.epsilon),
                "grouped_path": args.grouped_path,
                "memory_method": mm.get("memory_method"),
                "train_ms_min": min(t["train_ms_all"]), "decode_ms_min": min(t["decode_ms_all"]),
                "train_ms_all": t["train_ms_all"], "decode_ms_all": t["decode_ms_all"],
                "tokens": args.tokens, "dim": args.dim, "hyps": args.hyps, "beam": args.beam,
                "device": str(device), "dtype": args.dtype, "threads": torch.get_num_threads(),
                "loadavg_1min": [load_start, load_end],
            }
            for key in ("heads", "adaptive_cutoffs"):
                if key in t:
                    rec[key] = t[key]
            records.append(rec)
        print(format_table([r for r in records if r["vocab"] == vocab]), flush=True)
        if args.json:  # after every vocabulary size: a run cut short keeps what it measured
            with open(args.json, "w") as f:
                json.dump(records, f, indent=1)
        print(f"# 1-min load average before / after the timings: {load_start} / {load_end} "
              f"on {os.cpu_count()} CPUs", flush=True)
    if len(args.vocab_sizes) > 1:
        print("\n" + format_table(records))
    print("# x: speed-up over eager softmax; xbest and mem/best: against the fastest softmax of the run "
          f"({', '.join(sorted({r['fastest_softmax'] for r in records}))})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
        print(f"# wrote {len(records)} records to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
