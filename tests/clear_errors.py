"""How the plugin fails on bad input: one clear line, no traceback."""
from __future__ import annotations

import subprocess


def last_line(text: str) -> str:
    """The last non-blank line of `text` ('' where there is none)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def assert_one_clear_line(proc: subprocess.CompletedProcess, expected: str) -> None:
    """Failed, and the last stderr line is our message; no traceback anywhere."""
    report = f"rc={proc.returncode}\n--- stderr ---\n{proc.stderr[-3000:]}"
    assert proc.returncode != 0, report
    line = last_line(proc.stderr)
    assert line.startswith("mhce_nmt: ") and expected in line, report
    assert "Traceback" not in proc.stderr, report
