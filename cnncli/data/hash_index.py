"""Pairs of 64-bit hashes within `max_bits` of each other, without comparing every pair.

Multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012): cut the 64 bits into CHUNKS runs; two
hashes within r bits differ in at most r // CHUNKS bits on at least one run (pigeonhole). Each run
of the table is a direct-address index (key -> its rows); a query looks up every key within
r // CHUNKS bits of its own run, and only those candidates are compared in full.
"""

from itertools import combinations

import numpy as np

CHUNKS = 3               # runs of 22, 21 and 21 bits: at r = 6, keys within 2 bits (254 look-ups a run)
BIT_COUNT = np.array([bin(b).count("1") for b in range(256)], np.uint8)


def hamming(a, b):
    """Bits that differ between two uint64 arrays (broadcast)."""
    x = np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64))
    return BIT_COUNT[x[..., None].view(np.uint8)].sum(axis=-1, dtype=np.int64)


def _runs():
    """-> [(shift, width)] of the CHUNKS runs covering bits 0..63."""
    widths = [64 // CHUNKS + (k < 64 % CHUNKS) for k in range(CHUNKS)]
    return list(zip(np.cumsum([0] + widths[:-1]).tolist(), widths))


def _flips(width, radius):
    """Every key of `width` bits with at most `radius` bits set: what a run's key is XORed with."""
    return np.array([sum(1 << b for b in bits) for k in range(radius + 1)
                     for bits in combinations(range(width), k)], np.int64)


class _Run:
    """One run's index over the table: rows sorted by key, and where each key's rows start."""

    def __init__(self, table, shift, width):
        self.shift, self.mask = np.uint64(shift), np.uint64((1 << width) - 1)
        keys = self.key(table)
        self.rows = np.argsort(keys, kind="stable")
        self.count = np.bincount(keys, minlength=1 << width).astype(np.int32)
        self.start = (np.cumsum(self.count, dtype=np.int64) - self.count).astype(np.int32)

    def key(self, h):
        return ((h >> self.shift) & self.mask).astype(np.int64)

    def candidates(self, query, flips):
        """query (B,) uint64 -> (q, t): every table row t whose key is within the flips of q's."""
        probe = (self.key(query)[:, None] ^ flips[None, :]).ravel()          # (B * F,)
        n, first = self.count[probe], self.start[probe]
        hit = np.nonzero(n)[0]
        n, first = n[hit].astype(np.int64), first[hit].astype(np.int64)
        offset = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)          # 0..n-1 within each key
        return np.repeat(hit // len(flips), n), self.rows[np.repeat(first, n) + offset]


def within(query, table, max_bits, block=4096):
    """query (Q,), table (T,) uint64 -> (q, t, bits) int64 arrays: every pair with hamming(query[q],
    table[t]) <= max_bits, once each, ordered by q then t."""
    query, table = np.asarray(query, np.uint64).ravel(), np.asarray(table, np.uint64).ravel()
    if not len(query) or not len(table):
        return tuple(np.zeros(0, np.int64) for _ in range(3))
    runs = [_Run(table, s, w) for s, w in _runs()]
    flips = [_flips(w, max_bits // CHUNKS) for _, w in _runs()]
    out = []
    for lo in range(0, len(query), block):
        q = query[lo:lo + block]
        pairs = [run.candidates(q, f) for run, f in zip(runs, flips)]
        qi = np.concatenate([p[0] for p in pairs])
        ti = np.concatenate([p[1] for p in pairs])
        key = np.sort(qi * len(table) + ti)
        key = key[np.r_[True, key[1:] != key[:-1]]]             # a pair found by several runs, once
        qi, ti = key // len(table), key % len(table)
        bits = hamming(q[qi], table[ti])
        keep = bits <= max_bits
        out.append((qi[keep] + lo, ti[keep], bits[keep]))
    return tuple(np.concatenate(col) for col in zip(*out))
