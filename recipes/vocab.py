"""Segmenters that turn text lines into space-separated tokens and back.

* :class:`SentencePiece` wraps a trained sentencepiece model (unigram subwords).
* :class:`WordLevel` is a reversible word tokeniser with no subword merges: it splits words from
  punctuation and marks a token that was glued to its left neighbour with ``JOINER``, so
  ``decode(encode(line)) == line`` for whitespace-normalised text. Its vocabulary size is set
  at binarisation (``fairseq-preprocess --nwordssrc/--nwordstgt``); rarer words become <unk>.

Both expose ``encode(lines) -> lines`` and ``decode(tokens) -> line``, and are saved as one
file so the pipeline can reload them by path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Protocol

import sentencepiece as spm

JOINER = "\uffed"  # "￭", as in OpenNMT's tokenizer
WORD_MODEL_TEXT = "mhce_nmt word-level segmenter v1\n"
_WORD = re.compile(r"\w+|[^\w\s]")
SPM_MAX_SENTENCES = 2_000_000  # sentencepiece learns from a shuffled sample of at most this many lines


class Segmenter(Protocol):
    """What the pipeline needs from a segmenter."""

    def encode(self, lines: list[str]) -> list[str]: ...

    def decode(self, tokens: list[str]) -> str: ...


class SentencePiece:
    """A trained sentencepiece model."""

    def __init__(self, model: Path) -> None:
        self.processor = spm.SentencePieceProcessor(model_file=str(model))

    @staticmethod
    def train(inputs: Iterable[Path], prefix: Path, vocab_size: int, max_sentences: int = SPM_MAX_SENTENCES,
              user_symbols: tuple[str, ...] = ()) -> Path:
        """Train a unigram model on ``inputs`` and return the ``.model`` path.

        ``hard_vocab_limit=False`` lets a tiny corpus end below ``vocab_size`` instead of
        failing; on real data the size is met exactly. It learns from a shuffled sample of
        ``max_sentences`` input lines (all of a smaller corpus); each of ``user_symbols`` is one
        piece wherever it occurs (sentencepiece's ``user_defined_symbols``).
        """
        symbols = {"user_defined_symbols": ",".join(user_symbols)} if user_symbols else {}
        spm.SentencePieceTrainer.train(
            input=",".join(str(p) for p in inputs),
            model_prefix=str(prefix),
            vocab_size=vocab_size,
            model_type="unigram",
            character_coverage=1.0,
            hard_vocab_limit=False,
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            num_threads=4,
            minloglevel=2,
            **symbols,
        )
        return prefix.with_suffix(".model")

    def encode(self, lines: list[str]) -> list[str]:
        """Each line as space-separated pieces."""
        return [" ".join(pieces) for pieces in self.processor.encode(lines, out_type=str)]

    def decode(self, tokens: list[str]) -> str:
        """Pieces back to text."""
        return self.processor.decode_pieces(tokens)

    def encode_sampled(self, lines: list[str], alpha: float, seed: int, nbest: int = 64) -> list[str]:
        """Each line as one segmentation drawn from the unigram model's `nbest` best, with
        p(seg) ~ p_unigram(seg)^alpha (subword regularization, Kudo 2018); decodes to the line."""
        spm.set_random_generator_seed(seed)
        pieces = self.processor.encode(lines, out_type=str, enable_sampling=True, alpha=alpha, nbest_size=nbest)
        return [" ".join(p) for p in pieces]


class WordLevel:
    """Reversible word/punctuation tokeniser (no model to train)."""

    @staticmethod
    def save(path: Path) -> Path:
        """Write the marker file that :func:`load_segmenter` recognises."""
        path.write_text(WORD_MODEL_TEXT, encoding="utf-8")
        return path

    @staticmethod
    def tokenize(line: str) -> str:
        """``"Hello, world."`` -> ``"Hello ￭, world ￭."``."""
        tokens = []
        end = None
        for match in _WORD.finditer(line):
            glued = end is not None and match.start() == end
            tokens.append(JOINER + match.group() if glued else match.group())
            end = match.end()
        return " ".join(tokens)

    def encode(self, lines: list[str]) -> list[str]:
        """Each line tokenised."""
        return [self.tokenize(line) for line in lines]

    def decode(self, tokens: list[str]) -> str:
        """Join tokens, gluing the ones marked with the joiner to their left neighbour."""
        out = ""
        for token in tokens:
            if token.startswith(JOINER):
                out += token[len(JOINER):]
            else:
                out += (" " if out else "") + token
        return out


def load_segmenter(model: Path) -> Segmenter:
    """Load a segmenter saved by the pipeline's ``spm`` stage."""
    if model.suffix == ".words":
        return WordLevel()
    return SentencePiece(model)
