"""Coarse-to-fine decoding inside fairseq's beam search.

Only the step that turns decoder states into token scores changes: each model's factored layer
proposes candidates (top-g prefixes per level, their children fully expanded) with exact joint
log-probs; every other token gets -inf. eos, and prefix tokens when forced, are always scored
exactly, so max-len, min-len, --prefix-size, no-repeat-ngram, sampling and lenpen work as in
fairseq. Ensembles score the union of their candidates in every model and average probabilities.
No (hypotheses x V) matmul happens at any step.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor
from fairseq.sequence_generator import EnsembleModel, SequenceGenerator

from ..output import FactoredOutput
from . import model as mhce_model  # the module, not its names: registration may import this mid-way through model.py


class CoarseToFineEnsemble(EnsembleModel):
    """EnsembleModel whose forward_decoder returns sparse-as-dense log-probs from candidates."""

    def __init__(self, models, topk_groups: Optional[Sequence[int]], eos: int):
        super().__init__(models)
        self.topk_groups = topk_groups
        self.eos = eos
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
        layers = self.layers()
        vocab = layers[0].codec.vocab_size
        eos = torch.full((states[0].size(0), 1), self.eos, dtype=torch.long, device=states[0].device)
        if len(layers) == 1:
            ids, scores = layers[0].candidates(states[0], self.topk_groups, temperature)
            ids = torch.cat([ids, eos], dim=1)
            scores = torch.cat([scores, layers[0].score(states[0], eos, temperature)], dim=1)
        else:
            proposals = [layer.candidates(x, self.topk_groups, temperature)[0]
                         for layer, x in zip(layers, states)]
            ids = torch.cat(proposals + [eos], dim=1)
            scores = self.ensemble_scores(ids)
        lprobs = scores.new_full((ids.size(0), vocab), -math.inf)
        lprobs.scatter_reduce_(1, ids, scores, reduce="amax")
        avg_attn = None
        if attns:
            avg_attn = torch.stack(attns, 0).mean(0)
        return lprobs, avg_attn

    def ensemble_scores(self, ids: Tensor) -> Tensor:
        """Exact log of the models' mean probability of `ids` (N, C) at the last step."""
        per_model = [layer.score(x, ids, self.last_temperature)
                     for layer, x in zip(self.layers(), self.last_states)]
        return torch.logsumexp(torch.stack(per_model, 0), dim=0) - math.log(len(per_model))


class MHCESequenceGenerator(SequenceGenerator):
    """fairseq's SequenceGenerator with coarse-to-fine candidate scoring."""

    def __init__(self, models, tgt_dict, topk_groups: Optional[Sequence[int]] = None, **kwargs):
        ensemble = CoarseToFineEnsemble(models, topk_groups, tgt_dict.eos())
        for layer in ensemble.layers():
            layer.resolve_topk(topk_groups)  # clear error for out-of-range values
        super().__init__(ensemble, tgt_dict, **kwargs)

    def _prefix_tokens(self, step: int, lprobs, scores, tokens, prefix_tokens, beam_size: int):
        """Give forced prefix tokens their exact scores, then let fairseq force them."""
        forced = prefix_tokens[:, step].unsqueeze(-1).repeat(1, beam_size).view(-1, 1)
        exact = self.model.ensemble_scores(forced).to(lprobs)
        lprobs.scatter_(1, forced, exact.masked_fill(forced.eq(self.pad), -math.inf))
        return super()._prefix_tokens(step, lprobs, scores, tokens, prefix_tokens, beam_size)
