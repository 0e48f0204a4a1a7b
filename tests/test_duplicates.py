"""Near copies cut on one side, a corner or all round (data/duplicates.py), the thumbnail rule, and
the multi-index search (data/hash_index.py) against comparing every pair."""

import numpy as np
import pytest
from PIL import Image

from cnncli.data.duplicates import (BOXES, MAX_BITS, THUMB, THUMB_RMS, distance, find_pairs, fingerprint,
                                    near_pairs)
from cnncli.data.hash_index import hamming, within

from . import naive


def _crops(name, side=64):
    """Non-overlapping side x side crops of one of scikit-image's photos (its wheel ships them)."""
    from skimage import data
    img = getattr(data, name)()
    img = (np.stack([img] * 3, axis=-1) if img.ndim == 2 else img)[..., :3]
    return [img[r:r + side, c:c + side] for r in range(0, img.shape[0] - side + 1, side)
            for c in range(0, img.shape[1] - side + 1, side)]


@pytest.mark.parametrize("box", [(0, 0, 6, 0), (6, 0, 0, 0), (0, 6, 0, 0), (0, 0, 0, 4),
                                 (0, 0, 6, 6), (4, 4, 0, 0), (6, 0, 0, 6), (6, 6, 6, 6)])
def test_a_copy_cut_on_one_side_a_corner_or_all_round_is_found(tmp_path, box):
    # (left, top, right, bottom) pixels of 64 cut: 9.4% off the right, the left or the top, 6.3% off the bottom,
    # corners: 9.4% bottom-right, 6.3% top-left, 9.4% bottom-left; 9.4% all round
    img = Image.fromarray(_crops("chelsea")[12])
    img.save(tmp_path / "a.png")
    l, t, r, b = box
    img.crop((l, t, 64 - r, 64 - b)).save(tmp_path / "cut.png")
    prints = [fingerprint(tmp_path / n) for n in ("a.png", "cut.png")]
    assert hamming(prints[0].phash[0], prints[1].phash[0]) > MAX_BITS      # whole against whole: missed
    assert distance(prints[0].phash, prints[1].phash, prints[0].thumb, prints[1].thumb) <= MAX_BITS
    assert [(p.a, p.b, p.match) for p in find_pairs(prints)] == [(0, 1, "near")]


def test_distinct_photo_crops_make_no_pair(tmp_path):
    names = []
    for photo in ("astronaut", "coffee", "rocket"):
        for i, crop in enumerate(_crops(photo)):
            names.append(tmp_path / f"{photo}{i}.png")
            Image.fromarray(crop).save(names[-1])
    prints = [fingerprint(p) for p in names]
    assert len(prints) > 150 and find_pairs(prints) == []


def test_a_cut_version_counts_only_with_a_like_thumbnail_the_whole_always():
    rng = np.random.default_rng(0)
    v, k = len(BOXES), 7
    h = rng.integers(0, 2 ** 63, (3, v), dtype=np.int64).astype(np.uint64)
    th = rng.integers(20, 200, (3, v, THUMB * THUMB)).astype(np.uint8)
    h[1, 0] = h[0, k]                       # 1 is a cut of 0, its thumbnail 10 grey levels brighter
    th[1, 0] = th[0, k] + 10
    h[2, 0] = h[0, 0]                       # 2 is 0 whole, with another thumbnail
    assert [(p.a, p.b, p.bits) for p in near_pairs(h, th)] == [(0, 2, 0)]
    th[1, 0] = th[0, k] + int(THUMB_RMS)    # as dark as the rule allows
    assert [(p.a, p.b, p.bits) for p in near_pairs(h, th)] == [(0, 1, 0), (0, 2, 0)]
    assert distance(h[0], h[1]) == 0 and distance(h[0], h[1], th[0], th[1], max_rms=THUMB_RMS - 1) > MAX_BITS


def _planted(rng, n, v, pairs, most_bits=9):
    """Random hashes (n, v) and thumbnails; for `pairs` images, the whole is another's version with
    0..most_bits bits flipped and its thumbnail moved by up to 9 grey levels."""
    h = rng.integers(0, 2 ** 63, (n, v), dtype=np.int64).astype(np.uint64) * np.uint64(2)
    th = rng.integers(0, 256, (n, v, THUMB * THUMB)).astype(np.uint8)
    for i in rng.choice(n, pairs, replace=False):
        j, k = rng.integers(n), rng.integers(v)
        mask = sum(1 << int(b) for b in rng.choice(64, rng.integers(0, most_bits + 1), replace=False))
        h[i, 0] = h[j, k] ^ np.uint64(mask)
        th[i, 0] = np.clip(th[j, k].astype(int) + rng.integers(-9, 10, THUMB * THUMB), 0, 255)
    return h, th


@pytest.mark.parametrize("max_bits", [0, 2, 6, 9])
def test_within_finds_exactly_what_comparing_every_pair_finds(max_bits):
    rng = np.random.default_rng(max_bits)
    h, _ = _planted(rng, 300, 5, 150, most_bits=12)
    query, table = h[:, 0], h.ravel()
    q, t, bits = within(query, table, max_bits, block=64)
    every = hamming(query[:, None], table[None, :])                       # (300, 1500)
    want = np.nonzero(every <= max_bits)
    assert len(want[0]) > 300                    # the planted pairs, and each whole against itself
    assert (q.tolist(), t.tolist()) == (want[0].tolist(), want[1].tolist())
    assert bits.tolist() == every[want].tolist()


def test_near_pairs_equal_the_slow_twin_on_planted_pairs():
    rng = np.random.default_rng(1)
    h, th = _planted(rng, 120, len(BOXES), 60)
    fast = [(p.a, p.b, p.bits) for p in near_pairs(h, th)]
    slow = naive.near_pairs(h, th, MAX_BITS, THUMB_RMS)
    assert len(slow) > 20 and fast == slow
