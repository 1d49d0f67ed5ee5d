"""Coarse-to-fine decoding inside fairseq's beam search.

Only the step that turns decoder states into token scores changes: each model's factored layer
proposes candidates (top-g prefixes per level, their children fully expanded) with exact joint
log-probs; every other token gets -inf. eos, and prefix tokens when forced, are always scored
exactly, so max-len, min-len, --prefix-size, no-repeat-ngram, sampling and lenpen work as in
fairseq. Ensembles score the union of their candidates in every model and average probabilities.
No (hypotheses x V) matmul happens at any step.

Plain beam search with one model (fairseq's default search, no forced prefix, n-gram blocking,
suppressed tokens or language model) never builds a (hypotheses x V) tensor either: the step's
scores have one column per candidate, plus leading columns for fairseq's special tokens (column t
is token t, so fairseq's pad, unk, eos and max-len handling index them as usual), and the beam
search maps the columns it picks back to token ids. Its top-k then runs over beam x C, not
beam x V. Everything else takes the dense V-wide scores, with -inf outside the candidates.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from fairseq import search
from fairseq.sequence_generator import EnsembleModel, SequenceGenerator

from ..output import FactoredOutput
from . import model as mhce_model  # the module, not its names: registration may import this mid-way through model.py


class CandidateColumns:
    """Which token each column of the current step's scores stands for, when the step scored its
    candidates only: ids[r, c] for hypothesis r. Columns 0..specials-1 are tokens 0..specials-1."""

    def __init__(self, specials: int, filler: int):
        self.specials = specials
        self.filler = filler  # the token id of -inf columns that pad the scores to min_width (pad)
        self.min_width = 0  # fairseq's first step takes the top 2 x beam of one hypothesis's columns
        self.active = False  # this search scores candidate columns
        self.ids: Optional[Tensor] = None  # (hypotheses, columns) while a step's scores are columns

    def build(self, ids: Tensor, scores: Tensor) -> Tensor:
        """Candidates ids, scores (N, C) -> scores (N, specials + C), and self.ids to match.

        Column t < specials holds token t's best candidate score (-inf where it is no candidate);
        candidates that are special tokens are -inf in their own columns, so no token is offered
        twice (a single model offers each real token at most once with a finite score). Where
        fewer than min_width columns result, -inf columns of the filler token make up the rest, as
        the dense scores' -inf tokens would."""
        n, specials = ids.size(0), self.specials
        is_special = ids < specials
        leading = scores.new_full((n, specials), -math.inf)
        leading.scatter_reduce_(1, ids.clamp(max=specials - 1), scores.masked_fill(~is_special, -math.inf),
                                reduce="amax")
        filling = max(0, self.min_width - specials - ids.size(1))
        tokens = torch.arange(specials, device=ids.device).expand(n, specials)
        self.ids = torch.cat([tokens, ids, ids.new_full((n, filling), self.filler)], dim=1)
        return torch.cat([leading, scores.masked_fill(is_special, -math.inf),
                          scores.new_full((n, filling), -math.inf)], dim=1)

    def tokens(self, beams: Tensor, columns: Tensor) -> Tensor:
        """beams, columns (bsz, k) picked by the search -> their token ids (bsz, k)."""
        beam_size = self.ids.size(0) // beams.size(0)
        rows = beams + torch.arange(beams.size(0), device=beams.device).unsqueeze(1) * beam_size
        return self.ids[rows, columns]


class CandidateBeamSearch(search.BeamSearch):
    """fairseq's beam search over candidate columns: top-k over beam x C, then back to token ids."""

    def __init__(self, tgt_dict, columns: CandidateColumns):
        super().__init__(tgt_dict)
        self.columns = columns

    @torch.jit.unused
    def step(self, step: int, lprobs, scores: Optional[Tensor], prev_output_tokens: Optional[Tensor] = None,
             original_batch_idxs: Optional[Tensor] = None, candidate_multiple: int = 2):
        cand_scores, picked, beams = super().step(step, lprobs, scores, prev_output_tokens,
                                                  original_batch_idxs, candidate_multiple)
        if not self.columns.active:  # dense scores (forced prefix): the columns are token ids
            return cand_scores, picked, beams
        return cand_scores, self.columns.tokens(beams, picked), beams


class CoarseToFineEnsemble(EnsembleModel):
    """EnsembleModel whose forward_decoder returns log-probs of candidates only: as candidate
    columns (see CandidateColumns) when `columns.active`, else sparse-as-dense over V."""

    def __init__(self, models, topk_groups: Optional[Sequence[int]], eos: int, columns: CandidateColumns):
        super().__init__(models)
        self.topk_groups = topk_groups
        self.eos = eos
        self.columns = columns
        self.last_states: List[Tensor] = []
        self.last_temperature = 1.0

    def layers(self) -> List[FactoredOutput]:
        return [mhce_model.factored_output(m) for m in self.models]

    @torch.jit.unused
    def forward_decoder(self, tokens, encoder_outs: List[Dict[str, List[Tensor]]],
                        incremental_states, temperature: float = 1.0):
        states, attns = [], []
        for i, model in enumerate(self.models):
            decoder_out = model.decoder.forward(
                tokens,
                encoder_out=encoder_outs[i] if self.has_encoder() else None,
                incremental_state=incremental_states[i] if self.has_incremental_states() else None,
            )
            states.append(decoder_out[0][:, -1, :])  # (N, d)
            attn = decoder_out[1]["attn"][0] if len(decoder_out) > 1 and decoder_out[1] else None
            if attn is not None:
                attns.append(attn[:, -1, :])
        self.last_states, self.last_temperature = states, temperature
        ids, scores = self.candidates()
        if self.columns.active:
            lprobs = self.columns.build(ids, scores)
        else:
            lprobs = scores.new_full((ids.size(0), self.layers()[0].codec.vocab_size), -math.inf)
            lprobs.scatter_reduce_(1, ids, scores, reduce="amax")
        avg_attn = None
        if attns:
            avg_attn = torch.stack(attns, 0).mean(0)
        return lprobs, avg_attn

    def candidates(self) -> Tuple[Tensor, Tensor]:
        """The last step's candidate ids (N, C) with eos among them, and their exact log-probs."""
        layers, states = self.layers(), self.last_states
        eos = torch.full((states[0].size(0), 1), self.eos, dtype=torch.long, device=states[0].device)
        if len(layers) == 1:
            ids, scores = layers[0].candidates(states[0], self.topk_groups, self.last_temperature)
            eos_score = layers[0].score(states[0], eos, self.last_temperature)
            return torch.cat([ids, eos], dim=1), torch.cat([scores, eos_score], dim=1)
        proposals = [layer.candidates(x, self.topk_groups, self.last_temperature)[0]
                     for layer, x in zip(layers, states)]
        ids = torch.cat(proposals + [eos], dim=1)
        return ids, self.ensemble_scores(ids)

    def ensemble_scores(self, ids: Tensor) -> Tensor:
        """Exact log of the models' mean probability of `ids` (N, C) at the last step."""
        per_model = [layer.score(x, ids, self.last_temperature)
                     for layer, x in zip(self.layers(), self.last_states)]
        return torch.logsumexp(torch.stack(per_model, 0), dim=0) - math.log(len(per_model))


class MHCESequenceGenerator(SequenceGenerator):
    """fairseq's SequenceGenerator with coarse-to-fine candidate scoring."""

    def __init__(self, models, tgt_dict, topk_groups: Optional[Sequence[int]] = None, **kwargs):
        specials = max(tgt_dict.bos(), tgt_dict.pad(), tgt_dict.eos(), tgt_dict.unk()) + 1
        self.columns = CandidateColumns(specials, tgt_dict.pad())  # before super().__init__ sets vocab_size
        ensemble = CoarseToFineEnsemble(models, topk_groups, tgt_dict.eos(), self.columns)
        for layer in ensemble.layers():
            layer.resolve_topk(topk_groups)  # clear error for out-of-range values
        super().__init__(ensemble, tgt_dict, **kwargs)
        self.columns.min_width = 2 * self.beam_size + 1  # beam_size is fixed (capped at V - 1) by now
        if self.can_score_candidate_columns():
            self.search = CandidateBeamSearch(tgt_dict, self.columns)

    def can_score_candidate_columns(self) -> bool:
        """Whether candidate columns can serve this generator: fairseq's plain beam search, with
        nothing that indexes the step's scores by a token id beyond the specials (eos included),
        and one model (an ensemble's members propose the same tokens, which would fill two columns)."""
        return (len(self.model.models) == 1 and type(self.search) in (search.BeamSearch, CandidateBeamSearch)
                and self.eos < self.columns.specials and self.lm_model is None
                and self.repeat_ngram_blocker is None and self.token_indices_to_suppress is None)

    @property
    def vocab_size(self) -> int:
        """The width of the current step's scores: its candidate columns, or V (fairseq's
        constructor reads it, as V, to cap the beam; the columns are padded to 2 x beam + 1)."""
        return self.full_vocab_size if self.columns.ids is None else self.columns.ids.size(1)

    @vocab_size.setter
    def vocab_size(self, size: int) -> None:
        self.full_vocab_size = size  # V: len(tgt_dict)

    def _generate(self, sample, prefix_tokens: Optional[Tensor] = None, constraints: Optional[Tensor] = None,
                  bos_token: Optional[int] = None):
        """Candidate columns with the candidate search and no forced prefix; dense scores otherwise."""
        self.columns.active = (isinstance(self.search, CandidateBeamSearch) and prefix_tokens is None
                               and self.can_score_candidate_columns())
        try:
            return super()._generate(sample, prefix_tokens, constraints, bos_token)
        finally:
            self.columns.active, self.columns.ids = False, None

    def _prefix_tokens(self, step: int, lprobs, scores, tokens, prefix_tokens, beam_size: int):
        """Give forced prefix tokens their exact scores, then let fairseq force them."""
        forced = prefix_tokens[:, step].unsqueeze(-1).repeat(1, beam_size).view(-1, 1)
        exact = self.model.ensemble_scores(forced).to(lprobs)
        lprobs.scatter_(1, forced, exact.masked_fill(forced.eq(self.pad), -math.inf))
        return super()._prefix_tokens(step, lprobs, scores, tokens, prefix_tokens, beam_size)
