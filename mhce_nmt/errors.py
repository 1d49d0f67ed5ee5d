"""The one exception type users see for bad mhce options or mismatched checkpoints.

`install_excepthook` makes such an error reach the user of a fairseq command as one line,
`mhce_nmt: <message>`, instead of a deep traceback (set MHCE_TRACEBACK=1 to see the traceback),
also when fairseq re-raised it as another exception (its trainer wraps a checkpoint that does not
load in "Cannot load model parameters"); every other exception goes to the previous hook unchanged.
"""
import os
import sys
from typing import Optional


class MHCEConfigError(ValueError):
    """A configuration problem; the message names the problem and the fix."""


def config_error_in(exc: Optional[BaseException]) -> Optional[MHCEConfigError]:
    """exc if it is an MHCEConfigError, else the first one it was raised from or while handling."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, MHCEConfigError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def install_excepthook() -> None:
    """Print an uncaught MHCEConfigError (CodecError included), or one that another exception
    wraps, as one line (exit status stays 1)."""
    previous = sys.excepthook
    if getattr(previous, "_mhce_hook", False):
        return

    def hook(exc_type, exc, tb):
        error = config_error_in(exc)
        if error is not None and not os.environ.get("MHCE_TRACEBACK"):
            sys.stderr.flush()
            sys.stderr.write(f"mhce_nmt: {error}\n")
            sys.stderr.flush()
            return
        previous(exc_type, exc, tb)

    hook._mhce_hook = True
    sys.excepthook = hook
