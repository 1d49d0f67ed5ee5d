"""The one exception type users see for bad mhce options or mismatched checkpoints.

`install_excepthook` makes such an error reach the user of a fairseq command as one line,
`mhce_nmt: <message>`, instead of a deep traceback (set MHCE_TRACEBACK=1 to see the traceback);
every other exception goes to the previous hook unchanged.
"""
import os
import sys


class MHCEConfigError(ValueError):
    """A configuration problem; the message names the problem and the fix."""


def install_excepthook() -> None:
    """Print an uncaught MHCEConfigError (CodecError included) as one line (exit status stays 1)."""
    previous = sys.excepthook
    if getattr(previous, "_mhce_hook", False):
        return

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, MHCEConfigError) and not os.environ.get("MHCE_TRACEBACK"):
            sys.stderr.flush()
            sys.stderr.write(f"mhce_nmt: {exc}\n")
            sys.stderr.flush()
            return
        previous(exc_type, exc, tb)

    hook._mhce_hook = True
    sys.excepthook = hook
