"""The one exception type users see for bad mhce options or mismatched checkpoints."""


class MHCEConfigError(ValueError):
    """A configuration problem; the message names the problem and the fix."""
