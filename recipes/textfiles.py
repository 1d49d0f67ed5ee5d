"""UTF-8 text files as lists of lines, ``\\n`` the only line separator (the recipes' plain and
segmented text, and the hypotheses they decode)."""
from __future__ import annotations

from pathlib import Path


def read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file, without newlines (only ``\\n`` separates lines)."""
    with path.open(encoding="utf-8", newline="\n") as f:
        return [line.rstrip("\n") for line in f]


def write_lines(path: Path, lines: list[str]) -> None:
    """Write lines with ``\\n`` endings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        f.writelines(line + "\n" for line in lines)
