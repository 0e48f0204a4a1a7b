"""The labels of mixed images (mixup, cutmix): two classes per image and the weight of the first.

Image i is weight[i] of class first[i] and 1 - weight[i] of class second[i]; its soft target is
t_i = weight[i] one_hot(first[i]) + (1 - weight[i]) one_hot(second[i]), whose entries sum to 1.
An ordinary batch keeps plain int labels: only mixing makes one of these.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Mixed:
    first: np.ndarray    # (N,) int64: the image's own class
    second: np.ndarray   # (N,) int64: the class of the image mixed into it
    weight: np.ndarray   # (N,) float32 in [0, 1]: the share of `first`

    def __len__(self):
        return len(self.first)

    def __getitem__(self, rows):
        """The labels of some rows (a slice: a shard's images)."""
        return Mixed(self.first[rows], self.second[rows], self.weight[rows])

    def dominant(self):
        """(N,) the class with the larger share (the own class on a tie): what accuracy counts."""
        return np.where(self.weight >= 0.5, self.first, self.second)

    def soft(self, n_classes):
        """(N, K) float64 soft targets; each row sums to 1."""
        t = np.zeros((len(self), n_classes))
        rows = np.arange(len(self))
        t[rows, self.first] += self.weight
        t[rows, self.second] += 1.0 - self.weight.astype(np.float64)
        return t


def hard(labels):
    """Plain int labels as they are; the dominant class of Mixed labels."""
    return labels.dominant() if isinstance(labels, Mixed) else labels


def count_correct(probs, labels):
    """How many rows of probs have their top class at the (dominant) label; multi-label targets
    (N, K): how many images have every label right at 0.5 (exact match; a mixed target counts
    as present where its share is 0.5 or more)."""
    first = labels.first if isinstance(labels, Mixed) else labels
    if np.ndim(first) == 2:
        if isinstance(labels, Mixed):
            w = labels.weight.astype(np.float64)[:, None]
            labels = w * labels.first + (1.0 - w) * labels.second
        return int(((probs >= 0.5) == (np.asarray(labels) >= 0.5)).all(axis=1).sum())
    return int((probs.argmax(axis=1) == hard(labels)).sum())
