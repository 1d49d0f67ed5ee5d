"""Output layers behind one interface (see base.FactoredOutput); `build_output_layer` picks one.
A PermutedOutput around one applies a code layout (target id v scored as code position pi(v))."""
from __future__ import annotations

from typing import Optional, Union

from torch import nn

from ..codec import LabelCodec, ShortlistCodec
from ..defaults import MODES
from ..errors import MHCEConfigError
from .base import CascadeOutput, FactoredOutput, LevelScores, LossTerms
from .loss import FactoredLoss, factored_loss
from .mhe import MHEOutput
from .mhp import MHPOutput
from .mhs import MHSOutput
from .permuted import PermutedOutput
from .shortlist import ShortlistOutput
from .softmax import SoftmaxOutput



def build_output_layer(mode: str, codec: Union[LabelCodec, ShortlistCodec], input_dim: int, *,
                       embed_dim: Optional[int] = None,
                       tied_weight: Optional[nn.Parameter] = None,
                       short_weight: Optional[nn.Parameter] = None,
                       mhs_groups: Optional[int] = None,
                       mhs_logq_correction: bool = False) -> FactoredOutput:
    """The output layer for `mode`; tied_weight is the decoder input embedding when sharing.
    A ShortlistCodec gives a ShortlistOutput around an mhp/mhe layer over its tail ids;
    short_weight (the decoder input embedding) ties the shortlist's rows only."""
    if isinstance(codec, ShortlistCodec):
        if mode not in ("mhp", "mhe"):
            raise MHCEConfigError(
                f"--mhce-shortlist applies to --mhce-mode mhp and mhe, not {mode}: {mode} already "
                "scores every id with one softmax. Drop --mhce-shortlist.")
        if tied_weight is not None:  # every row of W is an output row: shortlist, then tail leaves
            if mode != "mhe":
                raise MHCEConfigError("--mhe-tie-label-embeddings needs --mhce-mode mhe.")
            tail = MHEOutput(codec.tail, input_dim, embed_dim=embed_dim, tied_label_weight=tied_weight,
                             tied_row_offset=codec.shortlist)
        else:
            tail = build_output_layer(mode, codec.tail, input_dim, embed_dim=embed_dim)
        return ShortlistOutput(codec, input_dim, tail, short_weight=short_weight)
    if short_weight is not None:
        raise MHCEConfigError("--mhce-tie-shortlist ties the shortlist's rows: give --mhce-shortlist N > 0.")
    if mode == "mhp":
        return MHPOutput(codec, input_dim)
    if mode == "mhe":
        return MHEOutput(codec, input_dim, embed_dim=embed_dim, tied_label_weight=tied_weight)
    if mode == "mhs":
        return MHSOutput(codec, input_dim, mhs_groups, mhs_logq_correction, weight=tied_weight)
    if mode == "softmax":
        return SoftmaxOutput(codec, input_dim, weight=tied_weight)
    raise MHCEConfigError(f"--mhce-mode {mode!r} is unknown: choose one of {', '.join(MODES)}.")


__all__ = [
    "MODES", "build_output_layer", "FactoredOutput", "CascadeOutput", "LevelScores", "LossTerms",
    "FactoredLoss", "factored_loss", "MHPOutput", "MHEOutput", "MHSOutput", "SoftmaxOutput",
    "ShortlistOutput", "PermutedOutput",
]
