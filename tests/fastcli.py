"""Run fairseq's command-line tools without paying most of their import time per command.

`CLIServer(workdir).run(module, args, ...)` behaves like `toy.run_cli`: the module runs as
`__main__` (`python -m module args`) in its own process, with its own stdout, stderr and exit
status. The difference: that process is forked from a server that has already imported torch,
scipy, sklearn, hydra, ... (~6.5 of the ~8 CPU-s a tiny training command spends importing);
fairseq, fairseq_cli and the --user-dir plugin are still imported by the command itself, so
their import-time side effects (logging set-up, registries) are those of a fresh process. An
uncaught exception goes through sys.excepthook, and the process leaves with the exit status
`python -m` would give, its logging and stdio flushed, through os._exit (no C++ static destructors). Set MHCE_TEST_NO_FORK=1 to run every command as a plain `python -m` subprocess.
"""
from __future__ import annotations

import io
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from recipes import runner
from toy import CLI_ENV

_SERVER = r"""
import json, logging, os, runpy, signal, sys, threading
# fairseq's slow third-party imports, once; fairseq itself is imported by each command, so its
# import-time side effects (logging set-up, registries, the --user-dir plugin) happen as usual.
# (torch.optim.Optimizer imports torch._dynamo on first use: 2 s per training command.)
import numpy, torch, torch.distributed, torch.multiprocessing, torch.nn.parallel, torch.utils.data
import torch._dynamo, torch.optim
import scipy.stats, sklearn.metrics, omegaconf, hydra, sacrebleu, bitarray, tqdm, yaml
assert "fairseq" not in sys.modules and not logging.root.handlers
assert threading.active_count() == 1  # safe to fork
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # finished request handlers are reaped by the OS

def command(req):
    # the fairseq command, in the grandchild; leaves by SystemExit like `python -m`
    for fd, path, flags in ((0, req["stdin"], os.O_RDONLY), (1, req["out"], os.O_WRONLY),
                            (2, req["err"], os.O_WRONLY)):
        os.dup2(os.open(path, flags), fd)
    sys.stdin = open(0, "r", closefd=False)
    os.environ.clear()
    os.environ.update(req["env"])
    if req["cwd"]:
        os.chdir(req["cwd"])
    sys.argv = [req["module"], *req["args"]]
    code = 0
    try:
        runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if stop.code is not None and not isinstance(stop.code, int):
            print(stop.code, file=sys.stderr)  # as the interpreter prints sys.exit("message")
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    # leave as the interpreter would (handlers flushed) but without C++ static destructors: a
    # joinable thread of a library destroyed at exit aborts the process ("terminate called without
    # an active exception", seen once in five suite runs on fairseq-train --stop-time-hours)
    logging.shutdown()
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(code)

for line in sys.stdin.buffer:
    req = json.loads(line)
    sys.stdout.flush(); sys.stderr.flush()
    if os.fork() != 0:
        continue  # server: next request
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        command(req)
    with open(req["pid"] + ".tmp", "w") as f:
        f.write(str(pid))
    os.replace(req["pid"] + ".tmp", req["pid"])
    _, status, usage = os.wait4(pid, 0)
    with open(req["rc"] + ".tmp", "w") as f:
        f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_utime + usage.ru_stime}")
    os.replace(req["rc"] + ".tmp", req["rc"])
    os._exit(0)
"""


class CLIServer:
    """One pre-imported fairseq process; `run` forks a fresh command process from it."""

    def __init__(self, workdir: Path, timeout: float = 600.0):
        self.workdir = Path(workdir)
        self.timeout = timeout
        self.lock = threading.Lock()
        self.count = 0
        self.cpu_s = 0.0
        self.forking = os.environ.get("MHCE_TEST_NO_FORK") != "1" and hasattr(os, "fork")
        self.proc = None
        if self.forking:
            self.log = open(self.workdir / "server.log", "w")
            self.proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE,
                                         stdout=self.log, stderr=self.log, env=CLI_ENV)

    def run(self, module: str, args: Sequence, cwd: Optional[Path] = None, check: bool = True,
            stdin: Optional[str] = None, env: Optional[dict] = None,
            timeout: Optional[float] = None) -> subprocess.CompletedProcess:
        timeout = self.timeout if timeout is None else timeout
        if not self.forking:  # plain `python -m module args`, as toy.run_cli
            proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd,
                                  env=dict(CLI_ENV, **(env or {})), capture_output=True, text=True,
                                  input=stdin, timeout=timeout)
            return self._checked(proc, check)
        with self.lock:
            self.count += 1
            base = Path(tempfile.mkdtemp(prefix=f"cmd{self.count}_", dir=self.workdir))
        files = {name: str(base / name) for name in ("stdin", "out", "err", "rc", "pid")}
        Path(files["stdin"]).write_text(stdin or "")
        Path(files["out"]).touch()
        Path(files["err"]).touch()
        req = dict(files, module=module, args=[str(a) for a in args],
                   cwd=str(cwd) if cwd else None, env=dict(CLI_ENV, **(env or {})))
        with self.lock:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fairseq CLI server died: {(self.workdir / 'server.log').read_text()[-3000:]}")
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        rc_file = Path(files["rc"])
        while not rc_file.exists():
            if time.monotonic() > deadline:
                self._kill(Path(files["pid"]))
                raise TimeoutError(f"{module} {' '.join(req['args'])} ran past {timeout} s:\n"
                                   f"{Path(files['err']).read_text()[-3000:]}")
            time.sleep(0.02)
        code, cpu = rc_file.read_text().split()
        proc = subprocess.CompletedProcess([module, *req["args"]], int(code),
                                           Path(files["out"]).read_text(),
                                           Path(files["err"]).read_text())
        with self.lock:
            self.cpu_s += float(cpu)  # CPU seconds of the commands (for timing reports)
        return self._checked(proc, check)

    @staticmethod
    def _checked(proc: subprocess.CompletedProcess, check: bool) -> subprocess.CompletedProcess:
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, proc.args))} failed:\n{proc.stdout[-3000:]}\n"
                                 f"{proc.stderr[-6000:]}")
        return proc

    @staticmethod
    def _kill(pid_file: Path) -> None:
        """Kill the command that ran too long (its pid, written by its parent in the server)."""
        for _ in range(100):
            if pid_file.exists() and pid_file.read_text().strip():
                try:
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
            self.log.close()
            if os.environ.get("MHCE_TEST_TIMING"):
                print(f"\n[fastcli] {self.count} commands, {self.cpu_s:.1f} CPU-s", file=sys.__stderr__)


#: the fairseq console scripts that recipes run, and the modules behind them
CONSOLE_MODULES = {"fairseq-preprocess": "fairseq_cli.preprocess", "fairseq-train": "fairseq_cli.train",
                   "fairseq-generate": "fairseq_cli.generate", "fairseq-interactive": "fairseq_cli.interactive"}


def forked_recipe_runner(server: Callable[[], CLIServer], fallback: Callable) -> Callable:
    """A stand-in for `recipes.runner.run` (same arguments) that runs fairseq's console scripts as
    `python -m fairseq_cli.X` forked from `server()`, in the current directory and environment: the
    same commands, without importing torch anew for each. The real run's own functions
    (runner.relay_output, runner.check_exit) handle their output, once the command has ended:
    stdout, then stderr, where the real run interleaves them. Anything else (a dry run, another
    program) goes to `fallback`, the real `run`."""

    def run(cmd: list, dry_run: bool, log: Optional[Path] = None,
            on_line: Optional[Callable[[str], Optional[str]]] = None) -> None:
        module = CONSOLE_MODULES.get(cmd[0])
        if dry_run or module is None:
            return fallback(cmd, dry_run, log, on_line)
        print("+ " + shlex.join(cmd), flush=True)
        proc = server().run(module, cmd[1:], cwd=Path.cwd(), check=False, env=dict(os.environ))
        output = (proc.stdout + proc.stderr).encode()
        if log is None:  # the real run: output straight to the terminal, no on_line
            sys.stdout.buffer.write(output)
            sys.stdout.buffer.flush()
            if proc.returncode:
                raise subprocess.CalledProcessError(proc.returncode, cmd)
            return
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as copy:
            runner.relay_output(io.BytesIO(output), copy, on_line)
        runner.check_exit(proc.returncode, cmd, log, on_line)

    return run
