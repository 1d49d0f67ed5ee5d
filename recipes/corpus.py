"""Download and text-cleaning helpers for the public recipes (IWSLT'14, WMT'14).

They re-implement, in Python, the steps of fairseq's ``examples/translation/prepare-*.sh``
that matter once Moses tokenisation and BPE are replaced by sentencepiece: fetching and
unpacking archives, reading ``<seg>`` lines, Moses' ``clean-corpus-n.perl`` length filter,
and the every-n-th-line validation split.
"""

from __future__ import annotations

import re
import shutil
import tarfile
import unicodedata
import urllib.request
from pathlib import Path

_SEG = re.compile(r"^\s*<seg id=\"[0-9]*\">\s*(.*?)\s*</seg>\s*$")


def download(url: str, dest: Path, dry_run: bool) -> None:
    """Fetch ``url`` to ``dest`` unless it is already there (written atomically)."""
    print(f"+ download {url} -> {dest}", flush=True)
    if dry_run or dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url) as response, partial.open("wb") as out:
        shutil.copyfileobj(response, out)
    partial.rename(dest)


def untar(archive: Path, dest: Path, dry_run: bool) -> None:
    """Unpack a (compressed) tar archive into ``dest``, refusing unsafe member paths."""
    print(f"+ tar -xf {archive} -C {dest}", flush=True)
    if dry_run:
        return
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")


def normalize_line(line: str) -> str:
    """Drop non-printing characters and collapse whitespace (cf. Moses'
    ``remove-non-printing-char.perl``), and straighten ’ as the fairseq scripts do."""
    line = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in line)
    return " ".join(line.replace("\u2019", "'").split())


def read_lines(path: Path) -> list[str]:
    """Lines split on ``\n`` only: ``str.splitlines`` would also split on characters such as
    U+2028 or form feeds that occur inside web-crawled segments and misalign the two sides."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return [line.rstrip("\r") for line in text.split("\n")][: -1 if text.endswith("\n") else None]


def seg_lines(path: Path) -> list[str]:
    """The ``<seg id="N">text</seg>`` contents of an IWSLT .xml or WMT .sgm file, in order."""
    segments = []
    for line in read_lines(path):
        match = _SEG.match(line)
        if match:
            segments.append(normalize_line(match.group(1)))
    return segments


def clean_corpus(
    src: list[str], tgt: list[str], min_len: int, max_len: int, ratio: float
) -> tuple[list[str], list[str]]:
    """Moses ``clean-corpus-n.perl -ratio R``: keep pairs whose whitespace-token counts lie in
    ``[min_len, max_len]`` and differ by at most a factor ``ratio``."""
    if len(src) != len(tgt):
        raise ValueError(f"parallel files differ in length: {len(src)} vs {len(tgt)}")
    kept_src, kept_tgt = [], []
    for s, t in zip(src, tgt):
        ns, nt = len(s.split()), len(t.split())
        if min_len <= ns <= max_len and min_len <= nt <= max_len and ns <= ratio * nt and nt <= ratio * ns:
            kept_src.append(s)
            kept_tgt.append(t)
    return kept_src, kept_tgt


def every_nth(lines: list[str], n: int) -> tuple[list[str], list[str]]:
    """``awk 'NR%n == 0'`` and its complement: (every n-th line, all other lines)."""
    return lines[n - 1 :: n], [line for i, line in enumerate(lines, 1) if i % n]


def write_split(data_dir: Path, split: str, langs: tuple[str, str], columns: tuple[list[str], list[str]]) -> None:
    """Write ``{split}.{lang}`` for both languages and report the size."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for lang, lines in zip(langs, columns):
        (data_dir / f"{split}.{lang}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    print(f"[prepare] {split}: {len(columns[0])} pairs", flush=True)
