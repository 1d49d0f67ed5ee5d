"""Ground-truth tests for mhce_nmt.codec (mixed-radix LabelCodec, head-size parsing, auto sizes).

Every expectation is computed independently (pure-Python divmod, brute-force enumeration over all
ids), never by calling the codec method under test.
"""
import itertools
import math
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference import mixed_radix_digits
from mhce_nmt.codec import (
    CodecError, LabelCodec, auto_head_sizes, codec_from_spec, parse_head_sizes,
)


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# independent references
# ---------------------------------------------------------------------------------------------


def ref_prefix_sets(v, sizes):
    """valid[h] = set of tuples (d_1..d_h) that are prefixes of at least one id < V (h = 1..H)."""
    valid = {h: set() for h in range(1, len(sizes) + 1)}
    for i in range(v):
        d = mixed_radix_digits(i, sizes)
        for h in range(1, len(sizes) + 1):
            valid[h].add(tuple(d[:h]))
    return valid


def tuple_to_number(prefix, sizes):
    n = 0
    for d, k in zip(prefix, sizes):
        n = n * k + d
    return n


def valid_configs(max_v=300, max_heads=4):
    """Random (V, sizes) pairs accepted by LabelCodec, mixing exact (prod == V) and wasteful codes."""
    rng = random.Random(1234)
    configs = []
    while len(configs) < 60:
        h = rng.randint(1, max_heads)
        sizes = [rng.randint(2, 7) for _ in range(h)]
        cap = math.prod(sizes)
        rest = math.prod(sizes[1:]) if h > 1 else 1
        lo = max(2, rest + 1)  # the first head must be usable
        if lo > cap or cap > max_v * 4:
            continue
        v = rng.choice([cap, rng.randint(lo, cap)])
        configs.append((v, sizes))
    configs += [(25, [5, 5]), (23, [5, 5]), (37, [3, 4, 4]), (24, [2, 3, 4]), (2, [2]), (7, [10]),
                (9, [2, 2, 2, 2]), (17, [2, 2, 2, 3])]
    return configs


CONFIGS = valid_configs()


# ---------------------------------------------------------------------------------------------
# round trip, digits, ordering, prefixes, validity
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("v,sizes", CONFIGS)
def test_encode_matches_reference_and_round_trips(v, sizes):
    codec = LabelCodec(v, sizes)
    ids = torch.arange(v)
    digits = codec.encode(ids)
    assert digits.shape == (v, len(sizes))
    assert digits.dtype == torch.long
    expected = torch.tensor([mixed_radix_digits(i, sizes) for i in range(v)], dtype=torch.long)
    assert torch.equal(digits, expected)
    # digits in range
    for h, k in enumerate(sizes):
        assert int(digits[:, h].min()) >= 0 and int(digits[:, h].max()) < k
    # round trip
    assert torch.equal(codec.decode(digits), ids)
    # decode of arbitrary digit tuples (incl. invalid codes >= V) is the mixed-radix number
    all_codes = list(itertools.product(*[range(k) for k in sizes]))
    tens = torch.tensor(all_codes, dtype=torch.long)
    assert torch.equal(codec.decode(tens), torch.tensor([tuple_to_number(c, sizes) for c in all_codes]))
    assert torch.equal(codec.is_valid(codec.decode(tens)), codec.decode(tens) < v)


@pytest.mark.parametrize("v,sizes", CONFIGS)
def test_d1_most_significant_ordering_preserved(v, sizes):
    codec = LabelCodec(v, sizes)
    rows = [tuple(r) for r in codec.encode(torch.arange(v)).tolist()]
    # id order == lexicographic digit order, and all codes distinct
    assert rows == sorted(rows)
    assert len(set(rows)) == v


@pytest.mark.parametrize("v,sizes", CONFIGS)
def test_encode_works_on_batched_shapes(v, sizes):
    codec = LabelCodec(v, sizes)
    ids = torch.randint(0, v, (3, 5))
    d = codec.encode(ids)
    assert d.shape == (3, 5, len(sizes))
    assert torch.equal(codec.decode(d), ids)


@pytest.mark.parametrize("v,sizes", CONFIGS)
def test_prefix_num_prefixes_strides(v, sizes):
    codec = LabelCodec(v, sizes)
    h_total = len(sizes)
    assert codec.num_heads == h_total
    assert codec.head_sizes == sizes
    assert codec.capacity == math.prod(sizes)
    assert codec.strides == [math.prod(sizes[h + 1:]) for h in range(h_total)]
    valid = ref_prefix_sets(v, sizes)
    ids = torch.arange(v)
    for length in range(1, h_total + 1):
        got = codec.prefix(ids, length).tolist()
        want = [tuple_to_number(mixed_radix_digits(i, sizes)[:length], sizes[:length]) for i in range(v)]
        assert got == want
        # the number of valid prefixes of this length, by brute force
        assert codec.num_prefixes[length - 1] == len(valid[length])
        # valid prefixes are exactly 0..P-1 (they are contiguous from 0)
        assert sorted(tuple_to_number(p, sizes[:length]) for p in valid[length]) == list(
            range(len(valid[length])))
    assert codec.num_prefixes[-1] == v
    assert codec.prefix(ids, h_total).tolist() == list(range(v))


@pytest.mark.parametrize("v,sizes", CONFIGS)
def test_child_valid_brute_force(v, sizes):
    codec = LabelCodec(v, sizes)
    valid = ref_prefix_sets(v, sizes)
    # level 1: the parent is the empty prefix (0)
    mask1 = codec.child_valid(1, torch.zeros((), dtype=torch.long))
    assert mask1.shape == (sizes[0],)
    assert mask1.tolist() == [(c,) in valid[1] for c in range(sizes[0])]
    for level in range(2, len(sizes) + 1):
        # every parent prefix of length level-1, valid or not
        parents_t = list(itertools.product(*[range(k) for k in sizes[: level - 1]]))
        parents = torch.tensor([tuple_to_number(p, sizes) for p in parents_t], dtype=torch.long)
        mask = codec.child_valid(level, parents)
        assert mask.shape == (len(parents_t), sizes[level - 1])
        want = [[(p + (c,)) in valid[level] for c in range(sizes[level - 1])] for p in parents_t]
        assert mask.tolist() == want
        # batched parents keep their shape
        mask2 = codec.child_valid(level, parents.view(1, -1))
        assert mask2.shape == (1, len(parents_t), sizes[level - 1])


def test_child_valid_example():
    # V=23, 5x5: codes 23, 24 invalid -> the last group (first digit 4) has 3 valid children
    codec = LabelCodec(23, [5, 5])
    assert codec.num_prefixes == [5, 23]
    assert codec.child_valid(1, torch.tensor(0)).tolist() == [True] * 5
    assert codec.child_valid(2, torch.tensor([3, 4])).tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    assert codec.is_valid(torch.tensor([-1, 0, 22, 23, 24])).tolist() == [False, True, True, False, False]
    assert codec.all_ids().tolist() == list(range(23))


def test_spec_round_trip_and_equality():
    codec = LabelCodec(37, [3, 4, 4])
    assert codec.spec() == [37, 3, 4, 4]
    again = codec_from_spec(codec.spec())
    assert again == codec and again.strides == codec.strides
    assert codec != LabelCodec(37, [4, 4, 3]) and codec != LabelCodec(36, [3, 4, 4])
    assert codec_from_spec(torch.tensor(codec.spec()).tolist()) == codec
    assert "37" in repr(codec) and "3x4x4" in repr(codec)


# ---------------------------------------------------------------------------------------------
# property-based: random V, H, head sizes
# ---------------------------------------------------------------------------------------------


@st.composite
def codec_args(draw):
    h = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(2, 9), min_size=h, max_size=h))
    cap = math.prod(sizes)
    rest = math.prod(sizes[1:]) if h > 1 else 1
    v = draw(st.integers(max(2, rest + 1), cap))
    return v, sizes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(codec_args())
def test_property_round_trip_and_validity(args):
    v, sizes = args
    codec = LabelCodec(v, sizes)
    ids = torch.arange(v)
    digits = codec.encode(ids)
    for h, k in enumerate(sizes):
        assert 0 <= int(digits[:, h].min()) and int(digits[:, h].max()) < k
    assert torch.equal(codec.decode(digits), ids)
    # a few random ids against the pure-python reference
    for i in {0, v - 1, v // 2}:
        assert digits[i].tolist() == mixed_radix_digits(i, sizes)
    # ordering: strictly increasing in lexicographic order
    rows = [tuple(r) for r in digits.tolist()]
    assert all(a < b for a, b in zip(rows, rows[1:]))
    # validity per level vs brute force
    valid = ref_prefix_sets(v, sizes)
    for level in range(1, len(sizes) + 1):
        assert codec.num_prefixes[level - 1] == len(valid[level])
        n_par = math.prod(sizes[: level - 1])
        parents = torch.arange(n_par)
        mask = codec.child_valid(level, parents if level > 1 else torch.tensor(0))
        mask = mask.view(-1, sizes[level - 1])
        for p in range(n_par):
            pt = tuple(mixed_radix_digits(p, sizes[: level - 1])) if level > 1 else ()
            for c in range(sizes[level - 1]):
                assert bool(mask[p, c]) == ((pt + (c,)) in valid[level])
    # the first head is usable: at least 2 valid level-1 classes
    assert int(codec.child_valid(1, torch.tensor(0)).sum()) >= 2


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 5000), st.integers(1, 4))
def test_property_auto_sizes(v, h):
    if h > 1 and 2 ** (h - 1) >= v:
        with pytest.raises(CodecError):
            auto_head_sizes(v, h)
        return
    sizes = auto_head_sizes(v, h)
    assert len(sizes) == h and all(isinstance(k, int) and k >= 2 for k in sizes)
    cap = math.prod(sizes)
    assert cap >= v
    # no wasted last head row: removing one class from the last head would not cover V
    assert cap - v < cap // sizes[-1]
    codec = LabelCodec.build(v, None, num_heads=h)  # must be a valid codec
    assert codec.head_sizes == sizes
    ids = torch.arange(v)
    assert torch.equal(codec.decode(codec.encode(ids)), ids)


@pytest.mark.parametrize("v", [1000, 4099, 32000, 32768, 50000, 250000])
@pytest.mark.parametrize("h", [2, 3, 4])
def test_auto_sizes_balanced_and_little_waste(v, h):
    sizes = auto_head_sizes(v, h)
    cap = math.prod(sizes)
    assert cap >= v
    assert max(sizes) / min(sizes) <= 1.25, sizes
    # near V^(1/H)
    root = v ** (1.0 / h)
    assert all(root - 1 <= k <= root + 2 for k in sizes), (sizes, root)
    # little waste: at most a few percent of V
    assert (cap - v) / v < 0.05 * h, (sizes, cap)
    # no more waste than the best balanced choice with every size in {r-1, r, r+1}, r=round(root)
    r = round(root)
    best = min(math.prod(c) for c in itertools.product([r - 1, r, r + 1, r + 2], repeat=h)
               if math.prod(c) >= v)
    assert cap - v <= (best - v) + cap // min(sizes), (sizes, cap, best)


def test_auto_sizes_32768_two_heads():
    sizes = auto_head_sizes(32768, 2)
    assert math.prod(sizes) >= 32768
    assert math.prod(sizes) <= 32942
    assert max(sizes) - min(sizes) <= 1
    # brute force: with balanced sizes (|a-b| <= 1) no product covers 32768 with less waste
    best = min(a * b for a in range(150, 220) for b in (a - 1, a, a + 1) if a * b >= 32768)
    assert math.prod(sizes) == best


def test_auto_single_head_is_v():
    assert auto_head_sizes(37, 1) == [37]
    assert LabelCodec.build(37, None, num_heads=1).head_sizes == [37]


# ---------------------------------------------------------------------------------------------
# build / parsing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec,want", [
    ("200,200", [200, 200]), (" 4 , 5 ", [4, 5]), ("4x5", [4, 5]), ("7", [7]), ([3, 4], [3, 4]),
    ((3, 4, 5), [3, 4, 5]),
])
def test_parse_head_sizes_ok(spec, want):
    assert parse_head_sizes(spec) == want


def test_build_explicit_vs_auto():
    assert LabelCodec.build(23, "5,5").head_sizes == [5, 5]
    assert LabelCodec.build(23, [5, 5]).head_sizes == [5, 5]
    assert LabelCodec.build(1000, None, num_heads=3).head_sizes == auto_head_sizes(1000, 3)
    # an empty / blank --mhce-heads (the argparse default) means "choose automatically"
    assert LabelCodec.build(1000, "", num_heads=2).head_sizes == auto_head_sizes(1000, 2)
    assert LabelCodec.build(1000, "  ", num_heads=2).head_sizes == auto_head_sizes(1000, 2)


# ---------------------------------------------------------------------------------------------
# errors: the message names the problem and suggests a fix
# ---------------------------------------------------------------------------------------------


def _msg(excinfo):
    return str(excinfo.value).lower()


@pytest.mark.parametrize("spec", ["", "   ", "200,", ",200", "200,,200", " , "])
def test_malformed_heads_string(spec):
    with pytest.raises(CodecError) as e:
        parse_head_sizes(spec)
    m = _msg(e)
    assert "--mhce-heads" in m and "malformed" in m
    assert "comma-separated" in m and "200,200" in m
    with pytest.raises(CodecError):
        LabelCodec(100, spec)


@pytest.mark.parametrize("spec,bad", [("a,b", "a"), ("200,x1", None), ("2.5,4", "2.5"), ("10,ten", "ten")])
def test_non_integer_heads_string(spec, bad):
    with pytest.raises(CodecError) as e:
        parse_head_sizes(spec)
    m = _msg(e)
    assert "--mhce-heads" in m and "malformed" in m
    assert "not an integer" in m or "comma-separated" in m
    if bad is not None:
        assert repr(bad) in str(e.value)
    assert "200,200" in m


@pytest.mark.parametrize("spec", [[], [2.0, 3], [True, 4], ["4", 5]])
def test_bad_head_size_list(spec):
    with pytest.raises(CodecError) as e:
        parse_head_sizes(spec)
    m = _msg(e)
    assert "integers" in m and "non-empty" in m


def test_error_product_too_small():
    with pytest.raises(CodecError) as e:
        LabelCodec(1000, [10, 10])
    m = _msg(e)
    assert "10x10" in m and "100" in m and "1000" in m
    assert "product" in m and ">= 1000" in m
    # suggests working sizes and the automatic choice
    sugg = ",".join(map(str, auto_head_sizes(1000, 2)))
    assert f"--mhce-heads {sugg}" in m
    assert math.prod(auto_head_sizes(1000, 2)) >= 1000
    assert "drop --mhce-heads" in m
    with pytest.raises(CodecError, match="--mhce-heads"):
        LabelCodec.build(1000, "10,10")


@pytest.mark.parametrize("sizes,bad", [([1, 100], 1), ([100, 1], 1), ([0, 50, 50], 0), ([-3, 50], -3)])
def test_error_head_below_two(sizes, bad):
    with pytest.raises(CodecError) as e:
        LabelCodec(40, sizes)
    m = _msg(e)
    assert "at least 2" in m and str(bad) in m
    assert "fewer, larger heads" in m


def test_error_first_head_unusable():
    # 4 x 10: the last head alone already codes 10 >= V=10 ids -> d_1 is always 0
    with pytest.raises(CodecError) as e:
        LabelCodec(10, [4, 10])
    m = _msg(e)
    assert "first head" in m and "0" in m
    assert "remove a head" in m or "shrink" in m
    with pytest.raises(CodecError, match="first head"):
        LabelCodec(8, [2, 2, 2, 2])
    # exactly one id short of that is fine
    LabelCodec(11, [4, 10])


@pytest.mark.parametrize("v,h", [(4, 3), (8, 4), (2, 2), (16, 5), (3, 3)])
def test_error_too_many_heads_for_vocab(v, h):
    with pytest.raises(CodecError) as e:
        auto_head_sizes(v, h)
    m = _msg(e)
    assert "too many" in m and f"--mhce-num-heads {h}" in m
    assert "at most" in m
    # the suggested number of heads works and one more does not
    max_heads = int(m.split("at most")[1].split()[0])
    auto_head_sizes(v, max_heads)
    with pytest.raises(CodecError):
        auto_head_sizes(v, max_heads + 1)
    with pytest.raises(CodecError):
        LabelCodec.build(v, None, num_heads=h)


@pytest.mark.parametrize("v", [0, 1, -5])
def test_error_vocab_too_small(v):
    with pytest.raises(CodecError, match="too small"):
        LabelCodec(v, [2, 2])
    with pytest.raises(CodecError, match="too small"):
        auto_head_sizes(v, 2)


def test_error_zero_heads():
    with pytest.raises(CodecError, match="--mhce-num-heads 0"):
        auto_head_sizes(100, 0)


def test_codec_error_is_value_error():
    assert issubclass(CodecError, ValueError)
