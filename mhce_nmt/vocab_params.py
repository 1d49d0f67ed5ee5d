"""Vocabulary-dependent parameters of transformer_mhce: its input embeddings plus its output layer.

    python -m mhce_nmt.vocab_params [--vocab-sizes 32000,128000,256000] [--dims 256,512] [--shortlist 4096]

prints one markdown table (millions of parameters, each shared parameter counted once) for a joint
dictionary of V ids, d = embedding dim = decoder output dim, 2 heads (--mhce-num-heads' default):
fairseq's tied softmax (its embedding tables: V x d shared by encoder, decoder and output, or
2 V x d for separate encoder and decoder tables, each decoder table tied to the output), and MHP
and MHE with --mhce-embeddings full and factored, tied as far as each allows. It builds the
modules only (fairseq's V x d input tables on the meta device: counted, never allocated).
"""
from __future__ import annotations

import argparse
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from .codec import LabelCodec, ShortlistCodec
from .embedding import FactoredEmbedding, tie_heads_to_digit_tables
from .errors import install_excepthook
from .output import build_output_layer

PAD = 1  # fairseq's padding id
Codec = Union[LabelCodec, ShortlistCodec]


def unique_params(modules: Sequence[nn.Module]) -> int:
    """Parameters of `modules`, a parameter shared between them counted once."""
    return sum({id(p): p.numel() for m in modules for p in m.parameters()}.values())


def full_table(vocab_size: int, dim: int) -> nn.Embedding:
    with torch.device("meta"):
        return nn.Embedding(vocab_size, dim, padding_idx=PAD)


def shortlist_rows(codec: Codec, weight: Optional[nn.Parameter]) -> Optional[nn.Parameter]:
    """The rows --mhce-tie-shortlist ties the shortlist to (None without a shortlist)."""
    return weight if isinstance(codec, ShortlistCodec) else None


def softmax_joint(codec: Codec, dim: int) -> int:
    """--share-all-embeddings: one V x d table, the output projection tied to it."""
    return unique_params([full_table(codec.vocab_size, dim)])


def softmax_separate(codec: Codec, dim: int) -> int:
    """--share-decoder-input-output-embed: encoder and decoder tables, the output tied to the decoder's."""
    return unique_params([full_table(codec.vocab_size, dim), full_table(codec.vocab_size, dim)])


def mhp_full(codec: Codec, dim: int) -> int:
    """--share-all-embeddings --mhce-tie-shortlist: one V x d table, the heads untied."""
    table = full_table(codec.vocab_size, dim)
    output = build_output_layer("mhp", codec, dim, short_weight=shortlist_rows(codec, table.weight))
    return unique_params([table, output])


def mhp_factored(codec: Codec, dim: int) -> int:
    """--share-all-embeddings --mhce-tie-shortlist: one factored table, the heads are its digit tables."""
    embedding = FactoredEmbedding(codec, dim, PAD)
    output = build_output_layer("mhp", codec, dim, short_weight=shortlist_rows(codec, embedding.shortlist_weight))
    tie_heads_to_digit_tables(output, embedding)
    return unique_params([embedding, output])


def mhp_factored_separate(codec: Codec, dim: int) -> int:
    """Separate encoder and decoder factored tables, nothing tied."""
    return unique_params([FactoredEmbedding(codec, dim, PAD), FactoredEmbedding(codec, dim, PAD),
                          build_output_layer("mhp", codec, dim)])


def mhe_full(codec: Codec, dim: int) -> int:
    """--share-all-embeddings --mhe-tie-label-embeddings: every output row is the V x d table's."""
    table = full_table(codec.vocab_size, dim)
    return unique_params([table, build_output_layer("mhe", codec, dim, tied_weight=table.weight)])


def mhe_factored(codec: Codec, dim: int) -> int:
    """--share-all-embeddings --mhce-tie-shortlist: MHE keeps its own (V - N) x d last level."""
    embedding = FactoredEmbedding(codec, dim, PAD)
    output = build_output_layer("mhe", codec, dim, short_weight=shortlist_rows(codec, embedding.shortlist_weight))
    return unique_params([embedding, output])


SETUPS: Dict[str, Callable[[Codec, int], int]] = {
    "softmax tied, one joint table (reference)": softmax_joint,
    "softmax tied, separate encoder/decoder tables (reference)": softmax_separate,
    "mhp, full, shared, shortlist tied": mhp_full,
    "mhp, factored, shared, heads + shortlist tied": mhp_factored,
    "mhp, factored, separate tables, untied": mhp_factored_separate,
    "mhe, full, shared, all rows tied": mhe_full,
    "mhe, factored, shared, shortlist tied": mhe_factored,
}


def table(vocab_sizes: List[int], dims: List[int], shortlist: int) -> str:
    """The markdown table: one row per setup, one column per (V, d), in millions."""
    columns = [(v, d) for v in vocab_sizes for d in dims]
    header = " | ".join(f"V={v // 1000}k d={d}" for v, d in columns)
    lines = [f"| setup (N = {shortlist}, 2 heads; shortlist tied where N > 0) | {header} |",
             "|---|" + "---:|" * len(columns)]
    codecs = {v: ShortlistCodec.build(v, shortlist, None, 2) if shortlist else LabelCodec.build(v, None, 2)
              for v in vocab_sizes}
    lines.append("| factored table rows N + sum K | " + " | ".join(
        f"{shortlist + sum(codecs[v].head_sizes)}" for v, _ in columns) + " |")
    for name, count in SETUPS.items():
        lines.append(f"| {name} | " + " | ".join(f"{count(codecs[v], d) / 1e6:.2f}M" for v, d in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    install_excepthook()  # a bad size: one line
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab-sizes", default="32000,128000,256000")
    parser.add_argument("--dims", default="256,512")
    parser.add_argument("--shortlist", type=int, default=4096, help="N (0: no shortlist)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(table([int(v) for v in args.vocab_sizes.split(",")], [int(d) for d in args.dims.split(",")],
                args.shortlist))


if __name__ == "__main__":
    main()
