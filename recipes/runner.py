"""Running a stage's commands (printed first, then run, output optionally copied to a log) and its
bookkeeping: whether its outputs are up to date, JSON files, progress lines, training attempts' origins."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

from recipes.config import Config
from recipes.textfiles import read_lines


def say(stage: str, message: str) -> None:
    """Progress line of a stage."""
    print(f"[{stage}] {message}", flush=True)


def run(cmd: list[str], dry_run: bool, log: Path | None = None,
        on_line: Callable[[str], str | None] | None = None) -> None:
    """Print a command, then run it (unless ``dry_run``); fail loudly on a non-zero exit.

    With ``log``, the command's stdout and stderr are also copied to that file (progress bars
    still reach the terminal). With ``on_line`` as well, the output goes to the log only, and
    the terminal gets what ``on_line`` returns for each output line (None: nothing). Console
    scripts (``fairseq-train`` ...) are looked up next to the running interpreter first, so an
    un-activated virtual environment works.
    """
    print("+ " + shlex.join(cmd), flush=True)
    if dry_run:
        return
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which(cmd[0], path=search)
    if exe is None:
        raise FileNotFoundError(f"{cmd[0]} not found; run `make install` first")
    if log is None:
        subprocess.run([exe, *cmd[1:]], check=True)
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as copy, subprocess.Popen([exe, *cmd[1:]], stdout=subprocess.PIPE,
                                                  stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        relay_output(proc.stdout, copy, on_line)
    check_exit(proc.returncode, cmd, log, on_line)


def relay_output(output: BinaryIO, copy: BinaryIO, on_line: Callable[[str], str | None] | None) -> None:
    """A logged command's output (stdout and stderr), as it comes, into `copy` (the log) and to the
    terminal: all of it, or, with `on_line`, what on_line returns for each line (None: nothing)."""
    if on_line is None:
        while chunk := output.read1(65536):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            copy.write(chunk)
        return
    for raw in output:
        copy.write(raw)
        copy.flush()
        message = on_line(raw.decode("utf-8", errors="replace"))
        if message:
            print(message, flush=True)


def check_exit(returncode: int, cmd: list[str], log: Path, on_line: Callable[[str], str | None] | None) -> None:
    """Raise CalledProcessError for a logged command that failed; where its output went to the log
    only (`on_line`), print the log's end first."""
    if not returncode:
        return
    tail = log.read_text(encoding="utf-8", errors="replace")[-3000:] if on_line else ""
    if tail:
        print(f"--- end of {log} ---\n{tail}", file=sys.stderr, flush=True)
    raise subprocess.CalledProcessError(returncode, cmd)


def read_origins(path: Path) -> list[dict[str, object]]:
    """The origin of every training attempt of a run, oldest first (train-origins.jsonl)."""
    return [json.loads(line) for line in read_lines(path) if line.strip()] if path.exists() else []


def invocation() -> str:
    """This process's own command line (the recipe call that ran a stage): ``python -m MODULE ...`` where
    it ran as a module (sys.argv[0] then holds the module's file, which does not run alone)."""
    spec = sys.modules["__main__"].__spec__
    program = ["-m", spec.name.removesuffix(".__main__")] if spec is not None else sys.argv[:1]
    return shlex.join([Path(sys.executable).name, *program, *sys.argv[1:]])


def write_json(path: Path, value: dict[str, object]) -> None:
    """Pretty-printed JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_json(path: Path) -> dict[str, object]:
    """A JSON object written by :func:`write_json` (empty when the file does not exist)."""
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def done(stage: str, cfg: Config, outputs: Sequence[Path], inputs: Sequence[Path] = ()) -> bool:
    """True (and says so) when every output exists, none is older than an existing input, and
    ``--force`` was not given; so redoing one stage makes the later ones run again."""
    if cfg.force or not all(p.exists() for p in outputs):
        return False
    newest_input = max((p.stat().st_mtime for p in inputs if p.exists()), default=0.0)
    if min(p.stat().st_mtime for p in outputs) < newest_input:
        say(stage, "inputs changed since the last run, redoing")
        return False
    say(stage, f"outputs exist, skipping (use --force to redo): {outputs[0].parent}")
    return True
