"""CPU training tunes its process: oneDNN keeps every batch shape's kernels (checked through
oneDNN's own verbose log of cache hits), glibc keeps large freed blocks (checked through
malloc's own accounting, mallinfo2), what the user set is kept, and the task logs what it did."""
import ctypes
import platform
import subprocess
import sys
import textwrap

import pytest

from mhce_nmt.training import cpu_runtime
from mhce_nmt.training.autocast import cpu_has_native_bf16

from toy import CLI_ENV, train_args

GLIBC = platform.libc_ver()[0] == "glibc"


#: the tests' processes start without any of the settings a user could have made
CLEAN_ENV = {k: v for k, v in CLI_ENV.items()
             if k not in ("LD_PRELOAD", "GLIBC_TUNABLES", "THP_MEM_ALLOC_ENABLE", cpu_runtime.ONEDNN_CACHE_ENV,
                          cpu_runtime.ONEDNN_CACHE_ENV_OLD, *cpu_runtime.MALLOC_THRESHOLD_ENV)}


def test_the_onednn_cache_is_widened_unless_the_user_set_it():
    env = {}
    assert cpu_runtime.widen_onednn_cache(env) == "ONEDNN_PRIMITIVE_CACHE_CAPACITY=65536"
    assert env == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "65536"}
    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY"):
        env = {name: "16"}
        assert cpu_runtime.widen_onednn_cache(env) == f"kept your {name}=16"
        assert env == {name: "16"}


@pytest.mark.parametrize("env, named", [
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=0"}, "glibc.malloc.trim_threshold"),
    ({"MALLOC_MMAP_THRESHOLD_": "65536"}, "MALLOC_MMAP_THRESHOLD_"),
    ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "jemalloc")])
def test_malloc_is_left_alone_when_the_user_set_its_thresholds_or_replaced_it(env, named):
    said = cpu_runtime.keep_freed_memory(env)
    assert said.startswith("kept your malloc settings") and named in said


def test_settings_that_leave_the_thresholds_alone_do_not_count_as_the_users():
    assert cpu_runtime.user_set_malloc({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "MALLOC_ARENA_MAX": "2",
                                        "LD_PRELOAD": "/opt/intel/lib/libiomp5.so", "OMP_NUM_THREADS": "2"}) is None


def run_script(script: str, tune: bool) -> str:
    """stdout of `script` (which reads TUNE) in a fresh interpreter without the user's settings."""
    code = f"TUNE = {tune}\n" + textwrap.dedent(script)
    proc = subprocess.run([sys.executable, "-c", code], env=CLEAN_ENV, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


MALLOC_ACCOUNTING = """
    import ctypes, torch
    from mhce_nmt.training import cpu_runtime
    class MallInfo2(ctypes.Structure):  # glibc >= 2.33
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    if TUNE:
        assert cpu_runtime.keep_freed_memory({}).startswith("malloc mmap_threshold=")
    MiB = 1 << 20
    mapped_before = libc.mallinfo2().hblkhd
    x = torch.empty(6 << 20).fill_(1.0)  # 24 MiB, as one of a step's activations
    mapped = libc.mallinfo2().hblkhd - mapped_before
    del x
    print(mapped // MiB, libc.mallinfo2().fordblks // MiB)
"""


def mallinfo2_available() -> bool:
    """glibc 2.33 or newer (mallinfo2 reports sizes past 2 GiB, as size_t)."""
    return GLIBC and hasattr(ctypes.CDLL(None), "mallinfo2")


@pytest.mark.slow
@pytest.mark.skipif(not mallinfo2_available(), reason="glibc's malloc (2.33 or newer, for mallinfo2) is the one tuned")
def test_freed_tensor_memory_is_kept_for_reuse_once_malloc_is_tuned():
    """By default glibc maps a 24 MiB tensor on its own and unmaps it when freed, so the next one
    faults its pages in afresh; tuned, it comes from the heap and stays there, free, for the next."""
    default = [int(n) for n in run_script(MALLOC_ACCOUNTING, tune=False).split()]
    tuned = [int(n) for n in run_script(MALLOC_ACCOUNTING, tune=True).split()]
    assert default[0] == 24 and default[1] < 24, default  # (MiB mapped for it, MiB kept free after del)
    assert tuned[0] == 0 and tuned[1] >= 24, tuned


SHAPE_SWEEPS = """
    import os, torch
    from mhce_nmt.training import cpu_runtime
    torch.nn.functional.linear(torch.randn(8, 256), torch.randn(64, 256))  # fp32 first, as before training
    if TUNE:
        cpu_runtime.widen_onednn_cache(os.environ)
    w = torch.randn(64, 256)  # small products (oneDNN takes them from K=256): the cache counts shapes
    with torch.backends.mkldnn.verbose(2), torch.autocast("cpu", dtype=torch.bfloat16):  # 2: log creations
        for sweep in range(2):
            print(f"sweep {sweep}", flush=True)
            for m in range(1, 1101):  # more shapes than oneDNN's default 1,024 cache entries
                torch.nn.functional.linear(torch.randn(m, 256), w)
"""


def cache_hits_of_second_sweep(tune: bool) -> int:
    log = run_script(SHAPE_SWEEPS, tune)
    second = log.partition("sweep 1")[2].splitlines()
    assert sum("primitive,create:" in line for line in second) == 1100  # every product went through oneDNN
    return sum("primitive,create:cache_hit" in line for line in second)


@pytest.mark.slow
@pytest.mark.skipif(not cpu_has_native_bf16(), reason="torch runs bf16 products through oneDNN on AVX512-BF16/AMX CPUs")
def test_a_repeated_epoch_of_shapes_hits_the_widened_onednn_cache():
    assert cache_hits_of_second_sweep(tune=False) == 0  # 1,100 shapes evict each other from 1,024 entries
    assert cache_hits_of_second_sweep(tune=True) == 1100


@pytest.mark.parametrize("flag", [[], ["--no-cpu-runtime-tuning"]])
def test_the_task_tunes_cpu_training_and_says_so_unless_told_not_to(toy_bin, tmp_path, cli, flag):
    proc = cli.run("fairseq_cli.train", train_args(toy_bin, tmp_path, ["--mhce-mode", "mhe", *flag], updates=2))
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if "CPU training:" in line]
    if flag:
        assert said == []
    else:
        assert len(said) == 1  # once per process, not once per step
        users = cpu_runtime.user_set_malloc(CLI_ENV)  # a developer's own settings are kept
        expected = (cpu_runtime.widen_onednn_cache(dict(CLI_ENV)),
                    "kept your malloc settings" if users else
                    "malloc mmap_threshold=33554432 trim_threshold=1073741824" if GLIBC else "malloc left alone")
        assert all(part in said[0] for part in expected), said[0]
