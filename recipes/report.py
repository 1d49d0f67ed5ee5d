"""What the end of a recipe run says to a person: a summary table, example translations, and the
command that translates their own sentences with the trained model."""
from __future__ import annotations

from typing import Mapping, Sequence

#: (summary key, label, format) rows of the table, in order; missing keys are left out
ROWS = (
    ("data_pairs", "data (train / valid / test pairs)", "pairs"),
    ("dictionary", "dictionaries (entries)", "dict"),
    ("output", "output layer", "str"),
    ("model_params", "model parameters", "int"),
    ("output_layer_params", "of which the output layer", "int"),
    ("num_updates", "updates", "int"),
    ("checkpoint", "decoded checkpoint", "str"),
    ("wall_s", "training time (wall clock)", "minutes"),
    ("train_words_per_s", "training speed (target words/s)", "float1"),
    ("precision", "training precision", "str"),
    ("valid_ppl", "validation perplexity (last checkpoint)", "float2"),
    ("valid_bleu", "validation BLEU", "float2"),
    ("bleu", "test BLEU", "float2"),
    ("chrf", "test chrF", "float2"),
    ("bp", "brevity penalty (hyp/ref length)", "bp"),
    ("lenpen", "beam search length penalty", "lenpen"),
    ("decode_sentences_per_s", "decoding (sentences/s)", "float1"),
    ("decode_tokens_per_s", "decoding (tokens/s)", "float1"),
)


def _cell(kind: str, value: object, summary: Mapping[str, object]) -> str:
    if kind == "pairs":
        return " / ".join(f"{value[s]:,}" for s in ("train", "valid", "test"))
    if kind == "dict":
        return ", ".join(f"{lang} {n:,}" for lang, n in value.items())
    if kind == "int":
        return f"{int(value):,}"
    if kind == "minutes":
        return f"{float(value) / 60:.1f} min"
    if kind == "bp":
        ratio = summary.get("hyp_ref_ratio")
        return f"{float(value):.3f}" + (f" ({float(ratio):.3f})" if ratio is not None else "")
    if kind == "lenpen":
        chosen = summary.get("lenpen_chosen_by")
        return f"{float(value):g}" + (" (highest validation BLEU)" if chosen == "valid BLEU" else "")
    if kind.startswith("float"):
        return f"{float(value):,.{kind[-1]}f}"
    return str(value)


def summary_table(summary: Mapping[str, object]) -> str:
    """A two-column plain-text table of what is in `summary`."""
    rows = [(label, _cell(kind, summary[key], summary)) for key, label, kind in ROWS if summary.get(key) is not None]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)


def example_indices(count: int, total: int) -> list[int]:
    """`count` evenly spaced indices into `total` lines (all of them when there are fewer)."""
    if total <= count:
        return list(range(total))
    return [i * total // count for i in range(count)]


def examples(sources: Sequence[str], references: Sequence[str], hypotheses: Sequence[str],
             count: int = 5) -> str:
    """Source, reference and hypothesis of `count` evenly spaced test sentences."""
    blocks = []
    for n, i in enumerate(example_indices(count, len(sources)), 1):
        blocks.append(f"  [{n}] source     {sources[i]}\n      reference  {references[i]}\n"
                      f"      hypothesis {hypotheses[i]}")
    return "\n".join(blocks)


def report(summary: Mapping[str, object], example_text: str, interactive: str) -> str:
    """The whole closing message of a run."""
    return (f"\n=== {summary['pair']} with {summary['output']} ===\n{summary_table(summary)}\n"
            f"\nExample translations (test set):\n{example_text}\n"
            f"\nTranslate your own sentences (one per line on stdin; the D- lines are the output):\n"
            f"  {interactive}\n")
