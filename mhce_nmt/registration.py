"""Registration with fairseq: what `--user-dir mhce_nmt` (or `import mhce_nmt` beside fairseq) adds.

Importing the adapters registers, through fairseq's registries, the model `transformer_mhce` and
its architectures (`transformer_mhce_cpu`, `transformer_cpu`, ...), the criteria
`mhce_cross_entropy` and `fused_label_smoothed_cross_entropy`, the task `translation_mhce`, the
learning-rate schedule `linear_budget` and the optimizer `adam_fused`; `mhce_nmt.compat`'s fixes are
applied, the trainer hands time-budgeted schedules its clock, and a configuration error reaches the
user as one line (`mhce_nmt.errors.install_excepthook`).

The package's `__init__` calls `register_when_fairseq_loads`: at once when fairseq is already
imported (fairseq-train loading `--user-dir`), otherwise as soon as fairseq is imported (a
post-import hook), so the plain-torch core (`mhce_nmt.codec`, `mhce_nmt.output`, ...) imports no
fairseq, and a process that imported it first still gets the registrations fairseq's
`import_user_module` would skip (it imports a user dir only once).
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Optional, Sequence

def register_with_fairseq() -> None:
    """Apply the fixes and import the adapters, which register themselves when first imported;
    every step is idempotent, so a second call changes nothing. It may run while one of those
    modules is half imported (a process whose first fairseq import came from it): so nothing here
    reads a name from them, and they import one another as modules."""
    from .compat import apply_fairseq_fixes
    from .errors import install_excepthook

    apply_fairseq_fixes()
    install_excepthook()
    from .adapters import criterion, model, task  # noqa: F401  (registers with fairseq)
    from .baselines import fused_criterion  # noqa: F401
    from .training import lr_scheduler, optimizer  # noqa: F401  (lr_scheduler also hands the trainer's clock on)


class _RegisterAfterFairseqImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for `fairseq` it returns the other finders' spec with a loader that
    runs `register_with_fairseq` right after fairseq's own `__init__`, and leaves sys.meta_path
    only once that import has succeeded (a spec asked for without an import, as
    `importlib.util.find_spec("fairseq")` does, or an import that failed, leaves it in place)."""

    def __init__(self) -> None:
        self.asking_the_others = False

    def find_spec(self, name: str, path: Optional[Sequence[str]],
                  target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        if name != "fairseq" or self.asking_the_others:
            return None
        self.asking_the_others = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.asking_the_others = False
        if spec is None or spec.loader is None:
            return spec
        exec_fairseq = spec.loader.exec_module

        def exec_then_register(module: ModuleType) -> None:
            exec_fairseq(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            register_with_fairseq()

        spec.loader.exec_module = exec_then_register
        return spec


def register_when_fairseq_loads() -> None:
    """Register now if fairseq is imported, later (when it is) if it is installed, else never."""
    if "fairseq" in sys.modules:
        register_with_fairseq()
    elif importlib.util.find_spec("fairseq") is not None and not any(
            isinstance(finder, _RegisterAfterFairseqImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterFairseqImport())
