"""Every equally likely draw of the groups MHE samples for its smoothing term: the sampled joint loss
under each, whose mean is the loss's expectation (the tests compare it with fairseq's exact loss)."""
import itertools

import torch

from mhce_nmt.output import factored_loss


def draw_assignments(codec, draws):
    """Every assignment of `draws` offsets per level 2..H: offset r picks the r-th parent among
    the valid ones other than the token's own; each token's draw is uniform over these."""
    per_level = [list(itertools.product(range(codec.num_prefixes[level - 2] - 1), repeat=draws))
                 for level in range(2, codec.num_heads + 1)]
    return list(itertools.product(*per_level))


def fixed_draws(codec, assignment):
    """A sample_parents that gives every token the parents `assignment` names for its level."""
    def sample(level, parents, draws):
        rows = []
        for own in parents.tolist():
            others = [q for q in range(codec.num_prefixes[level - 2]) if q != own]
            rows.append([others[r] for r in assignment[level - 2]])
        return torch.tensor(rows, dtype=torch.long).view(len(rows), draws)
    return sample


def losses_over_all_draws(monkeypatch, layer, tail, x, y, draws, eps):
    """The sampled joint loss under every equally likely draw assignment (their mean is the expectation)."""
    losses = []
    for assignment in draw_assignments(tail.codec, draws):
        monkeypatch.setattr(tail, "sample_parents", fixed_draws(tail.codec, assignment))
        losses.append(factored_loss(layer.loss_terms(x, y, sum_groups=draws), eps, "joint").loss.double())
    monkeypatch.undo()
    return torch.stack(losses)
