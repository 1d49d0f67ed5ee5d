"""`transformer_mhce`: fairseq's transformer whose decoder output layer is a FactoredOutput.

The decoder returns features (B, T, d) like fairseq's adaptive-softmax decoder; the criterion
calls `output_projection.loss_terms` and `get_normalized_probs` calls `output_projection.log_probs`.
With --mhce-layout FILE the output layer is a PermutedOutput around the factored layer: id v takes
code position pi(v) (mhce_nmt.layout), and pi is a buffer of the checkpoint.
With --mhce-embeddings factored the input embeddings are FactoredEmbeddings (mhce_nmt.embedding) over
the same codec (and, under a layout, the same pi: a PermutedEmbedding), in place of fairseq's V x d
tables; `build_embedding` makes them, and the decoder ties them to its output layer where asked.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any, Dict, List, Optional, Union

import torch
from torch import Tensor
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import TransformerDecoder, TransformerModel
from fairseq.models.transformer.transformer_legacy import (
    base_architecture,
    tiny_architecture,
    transformer_iwslt_de_en,
    transformer_wmt_en_de,
)

from ..codec import LabelCodec, ShortlistCodec, parse_head_sizes
from ..defaults import CPU_MODEL_SIZES, FACTORED_MODES, explain_shortlist, recommended_shortlist
from ..embedding import FactoredEmbedding, PermutedEmbedding, tie_heads_to_digit_tables
from ..errors import MHCEConfigError
from ..layout import first_moved, identity_layout, read_layout
from ..output import FactoredOutput, PermutedOutput, build_output_layer

OUTPUT_KEY = "decoder.output_projection."
EMBEDDINGS = ("full", "factored")

logger = logging.getLogger(__name__)


def codec_from_args(args: Any, vocab_size: int) -> Union[LabelCodec, ShortlistCodec]:
    """The codec the arguments describe for a target dictionary of `vocab_size` entries
    (a ShortlistCodec when --mhce-shortlist N > 0: the heads then code the V - N tail ids).

    A codec stored with a model (mhce_vocab_size) must match the dictionary it is loaded with.
    """
    stored_vocab = getattr(args, "mhce_vocab_size", None)
    if stored_vocab is not None and int(stored_vocab) != vocab_size:
        raise MHCEConfigError(
            f"the model was trained with a target dictionary of {stored_vocab} entries and heads "
            f"{args.mhce_heads}, but the target dictionary given has {vocab_size}: load it with the "
            "same data-bin (dict.<tgt>.txt) it was trained on."
        )
    heads, num_heads = getattr(args, "mhce_heads", None), int(getattr(args, "mhce_num_heads", 2))
    shortlist = int(getattr(args, "mhce_shortlist", 0) or 0)
    if shortlist:
        return ShortlistCodec.build(vocab_size, shortlist, heads, num_heads)
    return LabelCodec.build(vocab_size, heads, num_heads)


def shortlist_option(value: str) -> Optional[int]:
    """--mhce-shortlist's value: an integer N (0: none), or 'auto' (None: recommended_shortlist)."""
    if value == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number: give N >= 0 (0 = none) or auto") from None


def resolve_shortlist(args: Any, vocab_size: int) -> int:
    """Set args.mhce_shortlist to the N the model is built with, and return it: the given N, else
    (None: --mhce-shortlist not given, or auto) mhce_nmt.defaults.recommended_shortlist(mode,
    vocab_size), with one log line saying which N and why. A config that already holds a built codec
    (mhce_vocab_size, a checkpoint's) and no shortlist keeps none: checkpoints store the resolved N."""
    if getattr(args, "mhce_shortlist", None) is not None:
        return int(args.mhce_shortlist)
    if getattr(args, "mhce_vocab_size", None) is not None:
        args.mhce_shortlist = 0
        return 0
    mode = getattr(args, "mhce_mode", None) or "mhe"
    args.mhce_shortlist = recommended_shortlist(mode, vocab_size)
    if mode != "mhs":
        logger.info(f"--mhce-shortlist not given: {explain_shortlist(mode, vocab_size)}")
    return args.mhce_shortlist


def input_codec(args: Any, vocab_size: int) -> Union[LabelCodec, ShortlistCodec]:
    """The codec of a --mhce-embeddings factored input table over a dictionary of `vocab_size`
    entries: the target's (codec_from_args) for a dictionary of its size (a joint one); a source
    dictionary of another size gets automatic head sizes for as many heads, and the same shortlist N."""
    if vocab_size == int(args.mhce_vocab_size):
        return codec_from_args(args, vocab_size)
    num_heads = len(parse_head_sizes(args.mhce_heads))
    shortlist = int(getattr(args, "mhce_shortlist", 0) or 0)
    if shortlist:
        return ShortlistCodec.build(vocab_size, shortlist, None, num_heads)
    return LabelCodec.build(vocab_size, None, num_heads)


def factored_embeddings(args: Any) -> bool:
    """--mhce-embeddings factored (mhce_nmt.embedding) rather than fairseq's V x d tables."""
    return getattr(args, "mhce_embeddings", "full") == "factored"


def shares_digit_tables(args: Any) -> bool:
    """MHP's heads are the per-digit input tables: --mhce-embeddings factored, --mhce-mode mhp and
    --share-decoder-input-output-embed (or --share-all-embeddings, which implies it in fairseq)."""
    shared = getattr(args, "share_decoder_input_output_embed", False) or getattr(args, "share_all_embeddings", False)
    return factored_embeddings(args) and getattr(args, "mhce_mode", "mhe") == "mhp" and bool(shared)


def check_factored_embeddings(args: Any, mode: str) -> None:
    """Reject what --mhce-embeddings factored cannot honour: its tables have N + sum K rows, no V x d."""
    if mode == "mhs":
        raise MHCEConfigError(
            "--mhce-embeddings factored applies to --mhce-mode mhp and mhe, not mhs: mhs keeps a V x d softmax, "
            "tied to a V x d input table. Use --mhce-embeddings full, or --mhce-mode mhp or mhe.")
    if getattr(args, "mhe_tie_label_embeddings", False):
        raise MHCEConfigError(
            "--mhe-tie-label-embeddings ties MHE's last level (one row per id) to a V x d input table, which "
            "--mhce-embeddings factored does not have: drop it (--mhce-tie-shortlist ties the shortlist's rows), "
            "or use --mhce-embeddings full.")
    explicit_share = getattr(args, "share_decoder_input_output_embed", False) and not getattr(
        args, "share_all_embeddings", False)
    if explicit_share and mode == "mhe":
        raise MHCEConfigError(
            "--share-decoder-input-output-embed with --mhce-embeddings factored ties MHP's heads to the per-digit "
            "input tables; MHE's levels embed prefixes, not digits: drop it, or use --mhce-mode mhp.")
    if getattr(args, "mhce_tie_shortlist", False) and not (getattr(args, "mhce_shortlist", 0) or 0):
        raise MHCEConfigError("--mhce-tie-shortlist ties the shortlist's rows: give --mhce-shortlist N > 0.")
    for option in ("encoder_embed_path", "decoder_embed_path"):
        if getattr(args, option, None):
            raise MHCEConfigError(
                f"--{option.replace('_', '-')} loads pretrained rows into a V x d table, which --mhce-embeddings "
                "factored does not have: drop it, or use --mhce-embeddings full.")


def validate_args(args: Any) -> None:
    """Reject options the factored output cannot honour, before any model is built."""
    mode = getattr(args, "mhce_mode", "mhe")
    if mode not in ("mhp", "mhe", "mhs"):
        raise MHCEConfigError(f"--mhce-mode {mode!r} is unknown: choose one of mhp, mhe, mhs.")
    embeddings = getattr(args, "mhce_embeddings", "full")
    if embeddings not in EMBEDDINGS:
        raise MHCEConfigError(f"--mhce-embeddings {embeddings!r} is unknown: choose one of {', '.join(EMBEDDINGS)}.")
    if getattr(args, "adaptive_softmax_cutoff", None):
        raise MHCEConfigError(
            "--adaptive-softmax-cutoff cannot be combined with transformer_mhce: the factored "
            "output replaces the softmax. Drop the option (or use --arch transformer for adaptive softmax)."
        )
    if factored_embeddings(args):
        check_factored_embeddings(args, mode)
    explicit_share = getattr(args, "share_decoder_input_output_embed", False) and not getattr(
        args, "share_all_embeddings", False)
    if explicit_share and mode in ("mhp", "mhe") and not shares_digit_tables(args):
        raise MHCEConfigError(
            f"--share-decoder-input-output-embed does not apply to --mhce-mode {mode}: its heads are "
            "not a V x d matrix. Drop it; with mhe use --mhe-tie-label-embeddings instead."
        )
    if getattr(args, "mhe_tie_label_embeddings", False) and mode != "mhe":
        raise MHCEConfigError("--mhe-tie-label-embeddings needs --mhce-mode mhe.")
    shortlist = getattr(args, "mhce_shortlist", 0) or 0
    if shortlist < 0:
        raise MHCEConfigError(f"--mhce-shortlist {shortlist} must be >= 0 (0 = no shortlist).")
    if getattr(args, "mhce_layout", None) and mode == "mhs":
        raise MHCEConfigError(
            "--mhce-layout applies to --mhce-mode mhp and mhe, not mhs: mhs decodes with one softmax over "
            "every id, whose rows are in id order. Drop --mhce-layout.")
    # shortlist with mhs, and --mhce-tie-shortlist without a shortlist, beside a tied tail or with
    # embeddings of another width: refused by build_output_layer
    note = untied_output_note(args, mode)
    if note:
        logger.warning(note)


def untied_output_note(args: Any, mode: str) -> Optional[str]:
    """The warning for --share-all-embeddings with an output layer it cannot tie, else None.

    fairseq's --share-all-embeddings shares the encoder and decoder input embeddings (that still
    happens) and ties the output projection to them; MHP heads are not a V x d matrix, and MHE
    ties only with --mhe-tie-label-embeddings (its last level's label embeddings, and the
    shortlist's rows). MHS ties as fairseq does. With --mhce-tie-shortlist only the shortlist's
    rows are tied, and the note says so. With --mhce-embeddings factored, MHP ties (its heads are
    the per-digit input tables) and MHE's shortlist rows are all it can tie.
    """
    tied = mode == "mhs" or getattr(args, "mhe_tie_label_embeddings", False) or shares_digit_tables(args)
    if not getattr(args, "share_all_embeddings", False) or tied:
        return None
    if getattr(args, "mhce_tie_shortlist", False):
        return (f"--share-all-embeddings with --mhce-mode {mode} and --mhce-tie-shortlist: the encoder and "
                "decoder input embeddings are shared, and only the shortlist's output rows are tied to them "
                "(the factored tail keeps its own parameters).")
    note = (f"--share-all-embeddings with --mhce-mode {mode}: the encoder and decoder input "
            "embeddings are shared, the output layer is not tied")
    if mode == "mhe" and factored_embeddings(args):
        return note + "; with --mhce-embeddings factored add --mhce-tie-shortlist to tie the shortlist's rows."
    if mode == "mhe":
        return note + "; add --mhe-tie-label-embeddings to tie its output rows to them."
    return note + " (its heads are not a V x d matrix)."


def check_shortlist_covers_specials(args: Any, dictionary: Any) -> None:
    """The shortlist must hold every special symbol (bos, pad, eos, unk, ...): ids < nspecial."""
    shortlist = getattr(args, "mhce_shortlist", 0) or 0
    if shortlist and shortlist < dictionary.nspecial:
        raise MHCEConfigError(
            f"--mhce-shortlist {shortlist} leaves special symbols out: the target dictionary's first "
            f"{dictionary.nspecial} ids are specials (bos, pad, eos, unk); use at least {dictionary.nspecial}.")


def layout_from_args(args: Any, dictionary: Any) -> Optional[Tensor]:
    """The code layout pi of --mhce-layout: read from its file for a new model; an identity
    placeholder when the model's checkpoint holds it (--mhce-layout-stored: load_state_dict fills
    it in); None without --mhce-layout."""
    if not getattr(args, "mhce_layout", None):
        return None
    if getattr(args, "mhce_layout_stored", False):
        return identity_layout(len(dictionary))
    return read_layout(args.mhce_layout, len(dictionary), dictionary.nspecial)


def check_layout_keeps_tied_rows(args: Any, layout: Tensor) -> None:
    """Tied output rows are decoder input embeddings in id order: the ids they serve must keep
    their positions (every id with --mhe-tie-label-embeddings, ids < N with --mhce-tie-shortlist).
    Factored input embeddings index code positions, as the output layer does: any layout keeps
    them in step."""
    if factored_embeddings(args):
        return
    tied = [(getattr(args, "mhe_tie_label_embeddings", False), layout.numel(), "--mhe-tie-label-embeddings",
             "every output row"),
            (getattr(args, "mhce_tie_shortlist", False), getattr(args, "mhce_shortlist", 0) or 0,
             "--mhce-tie-shortlist", "the shortlist's rows (ids < N)")]
    for enabled, count, option, rows in tied:
        moved = first_moved(layout, count) if enabled else None
        if moved is not None:
            raise MHCEConfigError(
                f"--mhce-layout {args.mhce_layout} moves id {moved} to position {int(layout[moved])}, but "
                f"{option} ties {rows} to the decoder input embeddings in id order: use a layout that keeps "
                f"those ids in place, or drop {option}.")


class TransformerMHCEDecoder(TransformerDecoder):
    """Transformer decoder whose output layer is a FactoredOutput; forward returns features."""

    def build_output_projection(self, args, dictionary, embed_tokens):
        args = self.args  # the namespace with the mhce_* options (the base passes a TransformerConfig)
        codec = codec_from_args(args, len(dictionary))
        mode = args.mhce_mode
        factored = factored_embeddings(args)
        input_rows = embed_tokens.shortlist_weight if factored else embed_tokens.weight  # rows by position / by id
        tied = None
        if mode == "mhe" and args.mhe_tie_label_embeddings:
            tied = embed_tokens.weight
        elif mode == "mhs" and args.share_decoder_input_output_embed:
            tied = embed_tokens.weight
        self.output_projection = build_output_layer(
            mode, codec, self.output_embed_dim,
            embed_dim=args.mhce_embed_dim or None,
            tied_weight=tied,
            short_weight=input_rows if args.mhce_tie_shortlist else None,
            mhs_groups=args.mhs_groups or None,
            mhs_logq_correction=args.mhs_logq_correction,
        )
        if shares_digit_tables(args):
            tie_heads_to_digit_tables(self.output_projection, embed_tokens)
        if mode != "mhs":
            # the factored heads are not tied to the input embeddings in fairseq's sense
            self.share_input_output_embed = False

    def output_layer(self, features):
        """Features pass through: the factored layer is applied by the criterion / scorer."""
        return features

    def get_normalized_probs(self, net_output, log_probs: bool, sample=None):
        """As fairseq's; a training step that asks for them (a stock criterion, e.g.
        label_smoothed_cross_entropy) gets one warning: it trains exactly, but through full V-way
        log-probabilities, none of the factored layer's speed (mhce_cross_entropy uses loss_terms)."""
        if self.training and torch.is_grad_enabled() and not getattr(self, "_warned_full_log_probs", False):
            self._warned_full_log_probs = True
            logger.warning(
                "a training step asked transformer_mhce for full V-way log-probabilities (a stock criterion such as "
                "label_smoothed_cross_entropy): exact, but none of the factored output's speed; "
                "train with --criterion mhce_cross_entropy.")
        return self.get_normalized_probs_scriptable(net_output, log_probs, sample)

    def get_normalized_probs_scriptable(self, net_output, log_probs: bool, sample=None):
        """Exact (B, T, V) (log-)probabilities from the factored layer."""
        lprobs = self.output_projection.log_probs(net_output[0])
        return lprobs if log_probs else lprobs.exp()


@register_model("transformer_mhce")
class TransformerMHCEModel(TransformerModel):
    """Transformer NMT model with a multi-head factored output layer (MHP, MHE or MHS)."""

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        group = parser.add_argument_group("mhce output layer")
        group.add_argument("--mhce-mode", choices=FACTORED_MODES,
                           help="factored output: mhp (head product), mhe (cascade), mhs (sampled groups)")
        group.add_argument("--mhce-heads", type=str,
                           help="explicit head sizes, e.g. 200,200 (product >= target vocab size)")
        group.add_argument("--mhce-num-heads", type=int,
                           help="number of heads when --mhce-heads is not given (sizes chosen automatically)")
        group.add_argument("--mhce-embed-dim", type=int,
                           help="mhe: label-embedding dim of levels > 1 (default: decoder output dim)")
        group.add_argument("--mhe-tie-label-embeddings", action="store_true",
                           help="mhe: tie the output rows to the decoder input embeddings: the last level's "
                                "label embeddings, and with --mhce-shortlist the shortlist's rows too")
        group.add_argument("--mhce-tie-shortlist", action="store_true",
                           help="mhp/mhe with --mhce-shortlist: the shortlist's rows are the decoder input "
                                "embeddings of its ids (as in fairseq's tied softmax, plus a bias); the tail "
                                "stays untied")
        group.add_argument("--mhs-groups", type=int,
                           help="mhs: groups in each training softmax (default: 1/8 of the groups)")
        group.add_argument("--mhs-logq-correction", action="store_true",
                           help="mhs: subtract log inclusion probability from sampled groups' logits")
        group.add_argument("--mhce-shortlist", type=shortlist_option, metavar="N|auto",
                           help="mhp/mhe: the N most frequent target ids (specials included) are scored "
                                "directly at level 1 beside the groups of the rest; 0: none (default auto: "
                                "mhce_nmt.defaults.recommended_shortlist: mhe 1024 below a 24k vocabulary, "
                                "4096 from 24k up, mhp 4096, none below 1000 ids, at most V // 3)")
        group.add_argument("--mhce-vocab-size", type=int,
                           help="set automatically: the target vocab size the codec was built for")
        group.add_argument("--mhce-layout", type=str, metavar="FILE",
                           help="mhp/mhe: code layout, a permutation pi of the target ids: id v is written "
                                "with the code of position pi(v) (positions < N are the shortlist's, the "
                                "rest the tail's mixed-radix codes), so p(v|x) = p_codes(pi(v)|x). FILE holds "
                                "pi in id order (the dictionary's ids, specials included): one integer per "
                                "line, or a .npy/.pt array of V integers; the special symbols keep their "
                                "positions. Written by `python -m recipes.layouts kmeans|cooccurrence`. "
                                "Stored in the checkpoint: decoding needs no file (default: none, the "
                                "dictionary's frequency order)")
        group.add_argument("--mhce-layout-stored", action="store_true",
                           help="set automatically: the checkpoint holds the --mhce-layout permutation")
        group.add_argument("--mhce-embeddings", choices=EMBEDDINGS,
                           help="input embeddings: full (fairseq's V x d tables, the default) or factored (mhp/"
                                "mhe: an id's vector is its shortlist row when it has one, else the sum of one "
                                "row per digit of its code, (N + sum K) x d parameters, in the output layer's "
                                "code layout; the encoder's too, over its own dictionary's codec). mhp's heads "
                                "are the digit tables with --share-decoder-input-output-embed or "
                                "--share-all-embeddings; --mhce-tie-shortlist ties the shortlist's rows")

    @classmethod
    def build_model(cls, args, task):
        mhce_base_architecture(args)
        resolve_shortlist(args, len(task.target_dictionary))
        validate_args(args)
        check_shortlist_covers_specials(args, task.target_dictionary)
        codec = codec_from_args(args, len(task.target_dictionary))
        layout = layout_from_args(args, task.target_dictionary)
        if layout is not None:
            check_layout_keeps_tied_rows(args, layout)
        # store the resolved codec in the config so a checkpoint never re-derives another one
        args.mhce_heads = ",".join(map(str, codec.head_sizes))
        args.mhce_vocab_size = codec.vocab_size
        model = super().build_model(args, task)
        # the file pi was read from: a checkpoint loaded into this model must hold the same pi
        model.layout_file = args.mhce_layout if layout is not None and not args.mhce_layout_stored else None
        if layout is not None:
            model.decoder.output_projection = PermutedOutput(
                model.decoder.output_projection, layout, task.target_dictionary.nspecial)
            if factored_embeddings(args):
                permute_input_embeddings(model, layout, task.source_dictionary == task.target_dictionary)
            args.mhce_layout_stored = True  # the checkpoint's config: load pi from its state dict
        return model

    @classmethod
    def build_embedding(cls, args, dictionary, embed_dim, path=None):
        """fairseq's V x d table, or with --mhce-embeddings factored a FactoredEmbedding over the
        codec of the dictionary's size (input_codec)."""
        if not factored_embeddings(args):
            return super().build_embedding(args, dictionary, embed_dim, path)
        return FactoredEmbedding(input_codec(args, len(dictionary)), embed_dim, dictionary.pad())

    @classmethod
    def build_decoder(cls, args, tgt_dict, embed_tokens):
        return TransformerMHCEDecoder(args, tgt_dict, embed_tokens,
                                      no_encoder_attn=getattr(args, "no_cross_attention", False))

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args: Optional[Any] = None):
        """Check the checkpoint's output layer (codec and mode) and input embeddings (full or
        factored, codec) before fairseq loads weights."""
        expected = self.state_dict()
        check_output_state(expected, state_dict, getattr(self, "layout_file", None))
        check_embedding_state(expected, state_dict)
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)


def check_output_state(expected: Dict[str, Any], found: Dict[str, Any], layout_file: Optional[str] = None) -> None:
    """Clear errors for a checkpoint whose output layer differs from the model built for it
    (a model built from --mhce-layout FILE must meet the checkpoint's own layout)."""
    spec_keys = [OUTPUT_KEY + inner + name for inner in ("", "layer.")  # inner: inside a PermutedOutput
                 for name in ("shortlist_spec", "codec_spec", "tail.codec_spec")]
    for spec_key in spec_keys:
        if spec_key in expected and spec_key in found:
            want, got = expected[spec_key].tolist(), found[spec_key].tolist()
            if want != got:
                shortlisted = spec_key.endswith("shortlist_spec")
                raise MHCEConfigError(
                    f"checkpoint codec ({describe_spec(got, shortlisted)}) does not match the model built "
                    f"for this dictionary ({describe_spec(want, shortlisted)}): use the dictionary and "
                    "--mhce-* options it was trained with."
                )
    want_keys = {k for k in expected if k.startswith(OUTPUT_KEY)}
    got_keys = {k for k in found if k.startswith(OUTPUT_KEY)}
    if want_keys != got_keys:
        raise MHCEConfigError(
            f"checkpoint output layer has parameters {sorted(got_keys)} but the model expects "
            f"{sorted(want_keys)}: it was trained with another --mhce-mode, --mhce-shortlist, --mhce-layout or "
            "tying option."
        )
    layout_key = OUTPUT_KEY + "layout"
    if layout_file and layout_key in found and not torch.equal(expected[layout_key], found[layout_key]):
        raise MHCEConfigError(
            f"the checkpoint's code layout differs from --mhce-layout {layout_file}: give the layout file "
            "it was trained with.")


def check_embedding_state(expected: Dict[str, Any], found: Dict[str, Any]) -> None:
    """Clear errors for a checkpoint whose input embeddings differ from the model built for it:
    another --mhce-embeddings, or factored tables over another dictionary's codec."""
    for side in ("encoder", "decoder"):
        prefix = f"{side}.embed_tokens."
        want = {k: v for k, v in expected.items() if k.startswith(prefix)}
        got = {k: v for k, v in found.items() if k.startswith(prefix)}
        trained, built = embeddings_kind(got), embeddings_kind(want)
        if got and trained != built:
            raise MHCEConfigError(
                f"the checkpoint's {side} input embeddings are {trained} but the model is built with "
                f"--mhce-embeddings {built}: give --mhce-embeddings {trained}, as it was trained.")
        spec_key = next((k for k in want if k.endswith("codec_spec")), None)
        if spec_key in got and want[spec_key].tolist() != got[spec_key].tolist():
            raise MHCEConfigError(
                f"the checkpoint's {side} input embeddings code [V, N, K...] = {got[spec_key].tolist()} but the "
                f"model built for this dictionary codes {want[spec_key].tolist()}: use the data-bin "
                "(dict.*.txt) and --mhce-* options it was trained with.")


def embeddings_kind(state: Dict[str, Any]) -> str:
    """'factored' for the state of a FactoredEmbedding (its digit tables), else 'full'."""
    return "factored" if any(k.endswith("digit_weight") for k in state) else "full"


def permute_input_embeddings(model: TransformerModel, layout: Tensor, joint: bool) -> None:
    """The decoder's factored embedding (the encoder's too when the dictionary is joint, shared or
    not) looks ids up through the layout pi, as the output layer scores them."""
    decoder_embedding = model.decoder.embed_tokens
    model.decoder.embed_tokens = PermutedEmbedding(decoder_embedding, layout)
    if model.encoder.embed_tokens is decoder_embedding:  # --share-all-embeddings: one module
        model.encoder.embed_tokens = model.decoder.embed_tokens
    elif joint:
        model.encoder.embed_tokens = PermutedEmbedding(model.encoder.embed_tokens, layout)


def factored_output(model: Any) -> Optional[FactoredOutput]:
    """A fairseq model's factored output layer (its decoder's output_projection), or None for a
    stock model: the one place that knows where transformer_mhce keeps it."""
    layer = getattr(getattr(model, "decoder", None), "output_projection", None)
    return layer if isinstance(layer, FactoredOutput) else None


def describe_spec(spec: List[int], shortlisted: bool) -> str:
    """[V, K...] -> 'V=.., heads AxB'; [V, N, K...] -> 'V=.., shortlist N, heads AxB'."""
    heads = spec[2:] if shortlisted else spec[1:]
    middle = f", shortlist {spec[1]}" if shortlisted else ""
    return f"V={spec[0]}{middle}, heads {'x'.join(map(str, heads))}"


def mhce_base_architecture(args):
    """Defaults of the mhce options (fairseq arch functions fill only missing values)."""
    args.mhce_mode = getattr(args, "mhce_mode", None) or "mhe"
    args.mhce_heads = getattr(args, "mhce_heads", None)
    args.mhce_num_heads = getattr(args, "mhce_num_heads", None) or 2
    args.mhce_embed_dim = getattr(args, "mhce_embed_dim", None)
    args.mhe_tie_label_embeddings = getattr(args, "mhe_tie_label_embeddings", False)
    args.mhce_tie_shortlist = getattr(args, "mhce_tie_shortlist", False)
    args.mhs_groups = getattr(args, "mhs_groups", None)
    args.mhs_logq_correction = getattr(args, "mhs_logq_correction", False)
    args.mhce_vocab_size = getattr(args, "mhce_vocab_size", None)
    args.mhce_shortlist = getattr(args, "mhce_shortlist", None)  # None: build_model resolves it (resolve_shortlist)
    args.mhce_layout = getattr(args, "mhce_layout", None)
    args.mhce_layout_stored = getattr(args, "mhce_layout_stored", False)
    args.mhce_embeddings = getattr(args, "mhce_embeddings", None) or "full"


@register_model_architecture("transformer_mhce", "transformer_mhce")
def transformer_mhce(args):
    mhce_base_architecture(args)
    base_architecture(args)


@register_model_architecture("transformer_mhce", "transformer_mhce_iwslt_de_en")
def transformer_mhce_iwslt_de_en(args):
    mhce_base_architecture(args)
    transformer_iwslt_de_en(args)


@register_model_architecture("transformer_mhce", "transformer_mhce_wmt_en_de")
def transformer_mhce_wmt_en_de(args):
    mhce_base_architecture(args)
    transformer_wmt_en_de(args)


def cpu_model_sizes(args) -> None:
    """The CPU demo's sizes (mhce_nmt.defaults.CPU_MODEL_SIZES) where the arguments give none."""
    for name, value in CPU_MODEL_SIZES.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)


@register_model_architecture("transformer_mhce", "transformer_mhce_cpu")
def transformer_mhce_cpu(args):
    """3+3 layers, d=256, FFN 1024, 4 heads, dropout 0.2 (mhce_nmt.defaults.CPU_MODEL_SIZES): the
    LibreOffice recipe's model, which it trains for 41 minutes on 2 CPU cores."""
    cpu_model_sizes(args)
    transformer_mhce(args)


@register_model_architecture("transformer", "transformer_cpu")
def transformer_cpu(args):
    """fairseq's transformer at transformer_mhce_cpu's sizes: the recipe's softmax and adaptive
    softmax baselines (needs --user-dir mhce_nmt)."""
    cpu_model_sizes(args)
    base_architecture(args)


@register_model_architecture("transformer_mhce", "transformer_mhce_tiny")
def transformer_mhce_tiny(args):
    """2+2 layers, d=64: for tests and smoke runs."""
    mhce_base_architecture(args)
    tiny_architecture(args)
