"""The package's layers: the plain-torch core imports no fairseq (not even through the package's
`__init__`) and nothing outside the core; fairseq still gets every registration, whatever is
imported first."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mhce_nmt"
CORE = ["codec", "layout", "errors", "defaults", "embedding", "vocab_params", "output", "output.base",
        "output.loss", "output.grouped", "output.grouped_cpu", "output.grouped_device", "output.mhe",
        "output.mhp", "output.mhs", "output.shortlist", "output.permuted", "output.softmax"]
PLAIN_TORCH_EXTRAS = ["training.autocast", "training.cpu_runtime", "baselines.fused_softmax"]
OUTSIDE_CORE = ("adapters", "training", "baselines", "compat", "registration")


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


REGISTERED = ("from fairseq.models import ARCH_MODEL_REGISTRY\n"
              "from fairseq.criterions import CRITERION_REGISTRY\n"
              "from fairseq.tasks import TASK_REGISTRY\n"
              "assert 'transformer_mhce' in ARCH_MODEL_REGISTRY and 'transformer_cpu' in ARCH_MODEL_REGISTRY\n"
              "assert 'mhce_cross_entropy' in CRITERION_REGISTRY and 'translation_mhce' in TASK_REGISTRY\n"
              "from fairseq.optim import OPTIMIZER_REGISTRY\n"
              "assert 'adam_fused' in OPTIMIZER_REGISTRY\n"
              "print('registered')")


@pytest.mark.slow
def test_core_modules_import_no_fairseq_and_an_adapter_imported_then_registers_everything() -> None:
    """In a fresh interpreter each core module (and the plain-torch training and baseline modules)
    is imported in turn and fairseq checked absent after each one; something asks whether fairseq
    is installed (importlib.util.find_spec, no import). Then the hub's order: `from
    mhce_nmt.adapters.model import TransformerMHCEModel` imports fairseq half-way through model.py,
    and the criteria, task and optimizer get registered too. (fairseq first, then the user dir,
    is every fairseq command's order.)"""
    checks = "".join(
        f"import mhce_nmt.{name}\nassert 'fairseq' not in sys.modules, 'mhce_nmt.{name} imported fairseq'\n"
        for name in CORE + PLAIN_TORCH_EXTRAS)
    proc = run_python("import importlib.util, sys\n" + checks + "print('clean')\n"
                      "assert importlib.util.find_spec('fairseq') and 'fairseq' not in sys.modules\n"  # a check, no import
                      "from mhce_nmt.adapters.model import TransformerMHCEModel\n" + REGISTERED)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["clean", "registered"]


def imported_modules(path: Path) -> set[str]:
    """The mhce_nmt modules `path` imports, as dotted names relative to the package."""
    package_parts = path.relative_to(PACKAGE).with_suffix("").parts[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package_parts[:len(package_parts) - node.level + 1])
                module = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("mhce_nmt"):
                module = node.module.removeprefix("mhce_nmt").lstrip(".")
            else:
                continue
            names.update([module] if node.module else [f"{module}.{a.name}".lstrip(".") for a in node.names])
        elif isinstance(node, ast.Import):
            names.update(a.name.removeprefix("mhce_nmt.") for a in node.names if a.name.startswith("mhce_nmt."))
    return names


def test_no_core_module_imports_outside_the_core() -> None:
    """Read from the source (ast): no import in codec, layout, output/, embedding, ... names
    adapters, training, baselines, compat or registration."""
    core_files = [PACKAGE / (name.replace(".", "/") + ".py") for name in CORE if name != "output"]
    core_files.append(PACKAGE / "output" / "__init__.py")
    upward = {str(f.relative_to(PACKAGE)): sorted(m for m in imported_modules(f) if m.split(".")[0] in OUTSIDE_CORE)
              for f in core_files}
    assert {f: m for f, m in upward.items() if m} == {}
    # the reader resolves relative imports: registration's own show up
    assert {"adapters", "training", "baselines", "compat"} <= imported_modules(PACKAGE / "registration.py")
