"""The option choices and measured defaults that the library and the recipes share: no torch, no
fairseq (importing ``mhce_nmt.defaults`` imports neither), so recipes and scripts read them cheaply.

The shortlist rule (``recommended_shortlist``), from the LibreOffice de-en records (README, "At 32k"):
mhe without a shortlist scored 2.63 BLEU below softmax; at 32k mhe with 4,096 ids scored directly
scored 1.16 BLEU more than with 1,024, at 16k 0.24 less, hence 1,024 below a 24k vocabulary and 4,096
from 24k up; mhp takes 4,096 at every size. mhs has no shortlist.
"""
from __future__ import annotations

#: --mhce-mode: the factored output layers transformer_mhce builds
FACTORED_MODES = ("mhp", "mhe", "mhs")
#: every layer `mhce_nmt.output.build_output_layer` builds (softmax: the plain V-way layer)
MODES = (*FACTORED_MODES, "softmax")
#: the modes decoded by keeping the top-G prefixes (--mhe-topk-groups), and that take a shortlist
COARSE_TO_FINE_MODES = ("mhe", "mhp")
#: the criterion's --mhce-smoothing: the uniform term over all V ids, or per head
SMOOTHINGS = ("joint", "per-level")
#: fused_label_smoothed_cross_entropy's --softmax-kernel (`mhce_nmt.baselines.fused_softmax`)
SOFTMAX_KERNELS = ("eager", "compile", "torch", "liger", "cce")

# mhe: N below WIDE_VOCAB, WIDE_SHORTLIST from it up; mhp: WIDE_SHORTLIST at every size
NARROW_SHORTLIST = 1024
WIDE_SHORTLIST = 4096
WIDE_VOCAB = 24000
# below this many target ids (toy and test dictionaries) no shortlist is recommended
SMALL_VOCAB = 1000
# elsewhere the shortlist holds at most this fraction of the vocabulary: N <= V // SHORTLIST_SHARE
SHORTLIST_SHARE = 3


def table_shortlist(mode: str, vocab_size: int) -> int:
    """The measured N for `mode` at `vocab_size`, before the small-vocabulary bound: mhe 1,024 below
    a 24k vocabulary and 4,096 from 24k up, mhp 4,096, any other mode (mhs, softmax) 0."""
    if mode == "mhp":
        return WIDE_SHORTLIST
    if mode == "mhe":
        return WIDE_SHORTLIST if vocab_size >= WIDE_VOCAB else NARROW_SHORTLIST
    return 0


def recommended_shortlist(mode: str, vocab_size: int) -> int:
    """The shortlist N (the most frequent target ids, specials included, scored directly) that
    ``--mhce-mode mode`` gets over a target dictionary of `vocab_size` ids when --mhce-shortlist is
    not given: mhe 1,024 below a 24k vocabulary and 4,096 from 24k up; mhp 4,096; mhs (and any other
    mode) 0. Small vocabularies: below 1,000 ids (toy and test dictionaries) 0, no shortlist; from
    1,000 up at most a third of the vocabulary, min(N, V // 3), so the tail keeps 2/3 of the ids
    (mhp at 16k keeps its 4,096).
    """
    if vocab_size < SMALL_VOCAB:
        return 0
    return min(table_shortlist(mode, vocab_size), vocab_size // SHORTLIST_SHARE)


def explain_shortlist(mode: str, vocab_size: int) -> str:
    """Why `recommended_shortlist(mode, vocab_size)` is what it is, in a few words: e.g.
    '1024, the recommended N below a 24k vocabulary'."""
    size = recommended_shortlist(mode, vocab_size)
    if mode not in COARSE_TO_FINE_MODES:
        return f"0, none: --mhce-mode {mode} has no shortlist"
    if vocab_size < SMALL_VOCAB:
        return f"0, none: a vocabulary of {vocab_size} ids (< {SMALL_VOCAB}) needs no shortlist"
    if size < table_shortlist(mode, vocab_size):
        return f"{size}, a third of the {vocab_size}-id vocabulary (the recommended {table_shortlist(mode, vocab_size)} is more)"
    if mode == "mhp":
        return f"{size}, the recommended N for mhp"
    side = "from" if vocab_size >= WIDE_VOCAB else "below"
    return f"{size}, the recommended N {side} a {WIDE_VOCAB // 1000}k vocabulary"


# The CPU demo's model (`--arch transformer_mhce_cpu`, and `transformer_cpu` for softmax and adaptive
# softmax, both registered by mhce_nmt.adapters.model): the sizes the LibreOffice recipe trains in its 41 minutes
# on 2 CPU cores. fairseq architecture options: a value given on the command line wins.
CPU_MODEL_SIZES = {
    "encoder_layers": 3, "decoder_layers": 3,
    "encoder_embed_dim": 256, "encoder_ffn_embed_dim": 1024,  # the decoder's follow the encoder's (fairseq's rule)
    "encoder_attention_heads": 4, "decoder_attention_heads": 4,
    "dropout": 0.2,
}
