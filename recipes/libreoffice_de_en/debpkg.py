"""Fetch Debian packages by name and unpack them without installing anything.

``apt-get download NAME`` writes the .deb into the current directory using the configured
sources; ``dpkg-deb -x`` unpacks its data archive into a plain directory.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def ensure_apt_lists() -> None:
    """Run ``apt-get update`` when no package lists exist yet and we are allowed to (root)."""
    lists = Path("/var/lib/apt/lists")
    has_lists = lists.is_dir() and any(p.name.endswith("Packages") or "Packages." in p.name
                                       for p in lists.iterdir())
    if not has_lists and os.geteuid() == 0:
        _run(["apt-get", "update"])


def download(names: list[str], deb_dir: Path) -> dict[str, Path]:
    """Download the named packages into ``deb_dir`` (skipping ones already there).

    Returns ``{package name: .deb path}``. Fails loudly when apt cannot find a package.
    """
    deb_dir.mkdir(parents=True, exist_ok=True)
    missing = [n for n in names if not list(deb_dir.glob(f"{n}_*.deb"))]
    if missing:
        ensure_apt_lists()
        _run(["apt-get", "download", *missing], cwd=deb_dir)
    found = {}
    for name in names:
        debs = sorted(deb_dir.glob(f"{name}_*.deb"))
        if not debs:
            raise FileNotFoundError(f"apt-get download {name} produced no .deb in {deb_dir}")
        found[name] = debs[-1]
    return found


def unpack(deb: Path, root: Path) -> Path:
    """Unpack ``deb`` into ``root/<package name>`` once; return that directory."""
    target = root / deb.name.split("_", 1)[0]
    stamp = target / ".unpacked"
    if not stamp.exists():
        target.mkdir(parents=True, exist_ok=True)
        _run(["dpkg-deb", "-x", str(deb), str(target)])
        stamp.write_text(deb.name + "\n")
    return target


def fetch(names: list[str], work: Path) -> dict[str, Path]:
    """Download and unpack packages under ``work``; return ``{name: unpacked root}``."""
    debs = download(names, work / "debs")
    return {name: unpack(deb, work / "unpacked") for name, deb in debs.items()}


def print_fetch_commands(names: list[str], work: Path) -> None:
    """What :func:`fetch` runs for ``names`` under ``work``, printed as a dry run prints commands."""
    print("+ " + shlex.join(["apt-get", "download", *names]), flush=True)
    for name in names:
        print("+ " + shlex.join(["dpkg-deb", "-x", f"{name}_*.deb", str(work / "unpacked" / name)]), flush=True)
