"""Float64 brute-force references of the output layers, built from their raw parameters (every id
enumerated, explicit per-token and per-level loops, brute-force valid sets), independent of the
codec's and the layers' own code; and the candidates of a layer as a dense matrix to compare with them."""
import math

import torch
from torch import nn

from mhce_nmt.output import MHEOutput, MHPOutput
from reference import mixed_radix_digits


def strides(sizes):
    """Place values of the mixed-radix digits: stride[h] = prod(sizes[h+1:])."""
    return [math.prod(sizes[h + 1:]) for h in range(len(sizes))]


def valid_prefix_sets(v, sizes):
    """valid[h] = set of length-h prefix numbers that occur for some id < V (h = 1..H)."""
    s = strides(sizes)
    return {h: {u // s[h - 1] for u in range(v)} for h in range(1, len(sizes) + 1)}


def linear64(x, lin):
    """A Linear layer applied in float64."""
    return x @ lin.weight.double().t() + lin.bias.double()


def ref_mhe_levels(m, x, temperature=1.0, leaf_table=None):
    """{(level, parent): (valid children, (N, n_valid) log p(child | parent, x))}, float64.

    Level 1: Linear; level h: <proj_h(x), E_h[child]> + b_h[child]; each a softmax over the
    children that brute-force enumeration finds valid. leaf_table replaces E_H (a tied table's
    rows for this layer's ids).
    """
    v, sizes = m.codec.vocab_size, m.codec.head_sizes
    valid = valid_prefix_sets(v, sizes)
    x = x.double()
    out = {}
    l1 = linear64(x, m.level1)
    ch = [c for c in range(sizes[0]) if c in valid[1]]
    out[(1, 0)] = (ch, torch.log_softmax(l1[:, ch] / temperature, -1))
    for level in range(2, len(sizes) + 1):
        k = sizes[level - 1]
        proj = m.projections[level - 2]
        z = x if isinstance(proj, nn.Identity) else linear64(x, proj)
        table = (leaf_table if leaf_table is not None and level == len(sizes) else m.embeddings[level - 2]).double()
        bias = m.biases[level - 2].double()
        for p in sorted(valid[level - 1]):
            ch = [p * k + c for c in range(k) if p * k + c in valid[level]]
            s = torch.stack([z @ table[c] + bias[c] for c in ch], 1)
            out[(level, p)] = (ch, torch.log_softmax(s / temperature, -1))
    return out


def ref_joint_from_levels(levels, v, sizes):
    """(N, V) log p(y) = sum_h log p(d_h | d_<h) by walking every id's path."""
    s = strides(sizes)
    cols = []
    for i in range(v):
        total = 0.0
        for h in range(1, len(sizes) + 1):
            parent = i // s[h - 2] if h > 1 else 0
            ch, lp = levels[(h, parent)]
            total = total + lp[:, ch.index(i // s[h - 1])]
        cols.append(total)
    return torch.stack(cols, 1)


def ref_mhp(m, x, temperature=1.0):
    """(head log-probs list, log Z (N,), (N, V) joint) from the raw head weights, float64."""
    v, sizes = m.codec.vocab_size, m.codec.head_sizes
    logits = linear64(x.double(), m.heads)
    lps, start = [], 0
    for k in sizes:
        lps.append(torch.log_softmax(logits[:, start:start + k] / temperature, -1))
        start += k
    cols = [sum(lps[h][:, d] for h, d in enumerate(mixed_radix_digits(i, sizes))) for i in range(v)]
    unnorm = torch.stack(cols, 1)
    log_z = torch.logsumexp(unnorm, 1)
    return lps, log_z, unnorm - log_z.unsqueeze(1)


def ref_softmax(m, x, temperature=1.0):
    """(N, V) log-probs of a softmax layer, float64."""
    return torch.log_softmax((x.double() @ m.weight.double().t()) / temperature, -1)


def ref_log_probs(m, x, temperature=1.0):
    """(N, V) exact log-probs of an MHE, MHP or softmax layer, float64."""
    if isinstance(m, MHEOutput):
        return ref_joint_from_levels(ref_mhe_levels(m, x, temperature), m.codec.vocab_size,
                                     m.codec.head_sizes)
    if isinstance(m, MHPOutput):
        return ref_mhp(m, x, temperature)[2]
    return ref_softmax(m, x, temperature)


def smoothed(lp_valid, idx, eps):
    """fairseq label smoothing over the given valid classes: lp_valid (n,), target index idx."""
    n = lp_valid.numel()
    nll = -lp_valid[idx]
    if eps == 0:
        return nll
    if n == 1:
        return torch.zeros((), dtype=lp_valid.dtype)
    eps_i = eps / (n - 1)
    return (1 - eps - eps_i) * nll + eps_i * (-lp_valid).sum()


def ref_loss(m, x, y, eps, leaf_table=None):
    """Per-token smoothed loss, reference (N,) float64 (leaf_table: see ref_mhe_levels)."""
    v, sizes = m.codec.vocab_size, m.codec.head_sizes
    s = strides(sizes)
    out = []
    if isinstance(m, MHEOutput):
        levels = ref_mhe_levels(m, x, leaf_table=leaf_table)
        for n, t in enumerate(y.tolist()):
            total = 0.0
            for h in range(1, len(sizes) + 1):
                parent = t // s[h - 2] if h > 1 else 0
                ch, lp = levels[(h, parent)]
                total = total + smoothed(lp[n], ch.index(t // s[h - 1]), eps)
            out.append(total)
    elif isinstance(m, MHPOutput):
        lps, log_z, _ = ref_mhp(m, x)
        for n, t in enumerate(y.tolist()):
            d = mixed_radix_digits(t, sizes)
            out.append(sum(smoothed(lps[h][n], d[h], eps) for h in range(len(sizes))) + log_z[n])
    else:
        lp = ref_softmax(m, x)
        out = [smoothed(lp[n], t, eps) for n, t in enumerate(y.tolist())]
    return torch.stack([torch.as_tensor(o, dtype=torch.float64) for o in out])


def ref_short_logits(m, x64):
    """(N, N_s) raw shortlist scores, float64: Linear, tied <P x, W[s]> + c_s, or shortlist-tied
    <x, W[s]> + c_s."""
    if hasattr(m, "short"):
        return linear64(x64, m.short)
    if m.short_weight is not None:
        return x64 @ m.short_weight.double()[:m.codec.shortlist].t() + m.short_bias.double()
    w = m.tail.embeddings[-1].double()
    proj = m.tail.projections[-1]
    z = x64 if isinstance(proj, nn.Identity) else linear64(x64, proj)
    return z @ w[:m.codec.shortlist].t() + m.short_bias.double()


def ref_shortlist(m, x, temperature=1.0):
    """(N, V) exact log-probs from the parameters, float64. Tied: id v's output row is W[v],
    scored against the tail's last projection: shortlist a_s = <P x, W[s]> + c_s, tail leaf t
    uses row W[N_s + t]."""
    x64 = x.double()
    tail = m.tail
    a = ref_short_logits(m, x64) / temperature
    leaf_table = tail.embeddings[-1].double()[m.codec.shortlist:] if m.tied else None
    if m.tail.__class__.__name__ == "MHEOutput":
        valid_groups = sorted(valid_prefix_sets(tail.codec.vocab_size, tail.codec.head_sizes)[1])
        b = linear64(x64, tail.level1)[:, valid_groups] / temperature
        level1 = torch.log_softmax(torch.cat([a, b], 1), -1)  # one softmax over N_s + groups
        levels = ref_mhe_levels(tail, x, temperature, leaf_table)
        levels[(1, 0)] = (valid_groups, level1[:, m.codec.shortlist:])
        tail_lp = ref_joint_from_levels(levels, tail.codec.vocab_size, tail.codec.head_sizes)
        return torch.cat([level1[:, :m.codec.shortlist], tail_lp], 1)
    k1 = tail.codec.head_sizes[0]
    b = linear64(x64, tail.heads)[:, :k1] / temperature
    gate = torch.log_softmax(torch.cat([a, torch.logsumexp(b, -1, keepdim=True)], 1), -1)
    return torch.cat([gate[:, :-1], gate[:, -1:] + ref_mhp(tail, x, temperature)[2]], 1)


def dense_from_candidates(ids, scores, v):
    """A layer's candidates (ids, scores) as an (N, V) float64 matrix, -inf where an id is not a
    candidate; asserts every id is in range and no real id comes twice with a finite score."""
    n = ids.size(0)
    dense = torch.full((n, v), float("-inf"), dtype=torch.float64)
    for r in range(n):
        seen = set()
        for i, sc in zip(ids[r].tolist(), scores[r].tolist()):
            assert 0 <= i < v
            if math.isfinite(sc):
                assert i not in seen, "a real id returned twice with a finite score"
                seen.add(i)
                dense[r, i] = sc
            else:
                assert sc == float("-inf")
    return dense
