"""Output layers for the tests: the test codecs, a layer of each mode and the shortlist layer over
them with seeded, randomised parameters (so that every parameter matters), and random inputs."""
import torch
from torch import nn

from mhce_nmt.codec import LabelCodec, ShortlistCodec
from mhce_nmt.output import MHEOutput, MHPOutput, MHSOutput, SoftmaxOutput, build_output_layer

# name -> (V, head sizes)
CODECS = {
    "h2_waste": (23, [5, 5]),       # codes 23, 24 invalid
    "h2_exact": (20, [4, 5]),       # prod(K) == V
    "h3_waste": (37, [3, 4, 4]),    # partial groups at levels 1 and 2; prefix 9 has one child
    "h3_exact": (24, [2, 3, 4]),
}
D = 6


def codec_of(name):
    """The LabelCodec of a test codec in CODECS."""
    v, sizes = CODECS[name]
    return LabelCodec(v, sizes)


def randomise(module, seed):
    """Non-zero biases and non-trivial weights so every parameter matters."""
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    return module


def make(mode, codec, d=D, embed_dim=None, seed=0, **kw):
    """An mhp, mhe, mhs or softmax layer over `codec` with seeded, randomised parameters."""
    torch.manual_seed(seed)
    if mode == "mhp":
        m = MHPOutput(codec, d)
    elif mode == "mhe":
        m = MHEOutput(codec, d, embed_dim=embed_dim, **kw)
    elif mode == "mhs":
        m = MHSOutput(codec, d, **kw)
    elif mode == "softmax":
        m = SoftmaxOutput(codec, d, **kw)
    else:
        raise AssertionError(mode)
    return randomise(m, seed)


def inputs(n, v, d=D, seed=0, dtype=torch.float32):
    """(x, y): n random decoder states of width d and n random target ids below v."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randint(0, v, (n,), generator=g)
    return x, y


def make_shortlist(mode, cname, shortlist, seed=0, embed_dim=None):
    """A ShortlistOutput whose tail has the named test codec (V = shortlist + tail V); mhe-tied
    gets a decoder embedding W (V, e) as its tied weight."""
    tail_v, sizes = CODECS[cname]
    codec = ShortlistCodec(shortlist + tail_v, shortlist, LabelCodec(tail_v, sizes))
    torch.manual_seed(seed)
    tied = nn.Parameter(torch.randn(codec.vocab_size, embed_dim or D)) if mode == "mhe-tied" else None
    short = nn.Parameter(torch.randn(codec.vocab_size, D)) if mode.endswith("-tieshort") else None
    m = build_output_layer(mode.split("-")[0], codec, D, embed_dim=embed_dim, tied_weight=tied, short_weight=short)
    if tied is not None:
        assert m.tail.embeddings[-1] is tied  # the reference reads W through it
    if short is not None:
        assert m.short_weight is short and not hasattr(m, "short")
    return randomise(m, seed)
