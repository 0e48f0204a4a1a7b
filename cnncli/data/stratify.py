"""Iterative stratification of multi-label data (Sechidis, Tsoumakas and Vlahavas, ECML PKDD 2011,
Algorithm 1): every label lands in each split near its asked share, where treating each label
combination as one class would leave rare combinations all in training.

Units (single images, or groups kept together) are dealt out label by label, rarest label first:
each unit holding that label goes to the split that still wants the most of it (ties: the split
that still wants the most images, then a seeded draw). Units with no label go where the most
images are still wanted."""

import numpy as np


def iterative(counts, sizes, fractions, seed):
    """counts (U, K): each unit's images per label; sizes (U,): its images; fractions (S,): each
    split's share, summing to 1 -> (U,) split index per unit. Same seed, same answer."""
    counts = np.asarray(counts, np.int64)
    sizes = np.asarray(sizes, np.int64)
    rng = np.random.default_rng([seed, 2011])
    fractions = np.asarray(fractions, np.float64)
    want_label = fractions[:, None] * counts.sum(axis=0)[None, :]    # (S, K) images still wanted
    want = fractions * sizes.sum()                                     # (S,)
    order = rng.permutation(len(counts))         # the seeded order units are taken in
    left = np.ones(len(counts), bool)
    out = np.full(len(counts), -1, np.int64)

    def place(u, label):
        keys = (want_label[:, label] if label is not None else want, want, rng.random(len(want)))
        s = int(np.lexsort(keys[::-1])[-1])      # the largest by the first key, then the next
        out[u] = s
        left[u] = False
        want_label[s] -= counts[u]
        want[s] -= sizes[u]

    while left.any():
        remaining = (counts[left] > 0).sum(axis=0)          # (K,) units still to place per label
        if not remaining.any():
            for u in order[left[order]]:
                place(u, None)
            break
        label = int(np.flatnonzero(remaining == remaining[remaining > 0].min())[0])
        for u in order[left[order] & (counts[order, label] > 0)]:
            place(u, label)
    return out
