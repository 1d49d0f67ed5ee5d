"""Brute-force references shared by the tests (plain Python, independent of mhce_nmt)."""
from typing import List, Sequence


def mixed_radix_digits(i: int, sizes: Sequence[int]) -> List[int]:
    """Digits of i with radices `sizes`, d_1 most significant, by repeated divmod from the right."""
    out = []
    for k in reversed(sizes):
        i, d = divmod(i, k)
        out.append(d)
    return list(reversed(out))
