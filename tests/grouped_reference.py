"""Operands and the naive reference of grouped_child_scores: child scores by gathering the weight rows,
and Zipf-like parent prefixes (a few heavy ones, many light, whole runs absent)."""
import torch


def naive(z, parents, table, bias, k, rows):
    """out[m, c] = <z[rows[m]], table[min(parents[m]*K + c, R-1)]> + bias[same], by gathering."""
    child = (parents.unsqueeze(1) * k + torch.arange(k)).clamp(max=table.size(0) - 1)  # (M, K)
    states = z if rows is None else z[rows]
    out = torch.einsum("me,mce->mc", states, table[child])
    return out if bias is None else out + bias[child]


def skewed_parents(m, prefixes, seed):
    """Zipf-like prefixes: a few heavy ones, many light ones, some absent; always the last one."""
    g = torch.Generator().manual_seed(seed)
    weights = 1.0 / torch.arange(1, prefixes + 1, dtype=torch.float64)
    weights[prefixes // 3: prefixes // 2] = 0  # a run of absent prefixes (whole empty blocks)
    parents = torch.multinomial(weights, m, replacement=True, generator=g)
    parents[0] = prefixes - 1
    return parents
