"""Copies among images: exact (the same bytes), and near (a perceptual hash, or penultimate features).

pHash (Zauner 2010): the image as 32 x 32 grey (stretched), its 2-D DCT-II, the 8 x 8 lowest
frequencies; bit i is 1 where coefficient i exceeds their median (the DC term left out of the
median). Each image is hashed whole and with CROPS of each side cut off; the distance of two images
is the fewest bits in which the whole of one differs from any version of the other (so a copy cut
by a few percent meets the original's cut). Two images are a near pair when it is at most `max_bits`.
Features decide nothing, they are only reported: measured on 550 distinct 64 x 64 photo crops with
EfficientNet-Lite0's penultimate features, distinct crops reached cosine 0.999 while re-encoded and
half-size copies fell to 0.71 (scripts/audit_photos.py); a classifier's features of one class are
close whatever the picture.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .decode import BadImage, load_image

SIDE, LOW = 32, 8
CROPS = (0.0, 0.04, 0.08)   # share of each side cut off: the versions hashed
READ = 128                  # the grey picture the versions are cut from (stretched)
NEAR_MIN_SIDE = 16   # smaller images get exact copies only: 8x8 scans of one digit hash alike
MAX_BITS = 6         # pHash distance of a near pair: copies measured 0-2, distinct photo crops 8 and up


def _dct_matrix(n):
    """C[k, i] = cos(pi (2 i + 1) k / (2 n)): rows are the DCT-II basis (unscaled)."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    return np.cos(np.pi * (2 * i + 1) * k / (2 * n))


DCT = _dct_matrix(SIDE)
BIT_COUNT = np.array([bin(b).count("1") for b in range(256)], np.uint8)


def phashes(greys):
    """(V, 32, 32) uint8 -> (V,) 64-bit pHashes as Python ints (bit 63: the DC coefficient)."""
    g = np.asarray(greys, np.float64).reshape(-1, SIDE, SIDE)
    coeff = (DCT @ g @ DCT.T)[:, :LOW, :LOW].reshape(len(g), LOW * LOW)
    median = np.sort(coeff[:, 1:], axis=1)[:, (LOW * LOW - 1) // 2]       # of the 63 AC terms
    slack = 1e-9 * (np.abs(coeff).max(axis=1) + 1)          # rounding noise of a flat picture is no bit
    bits = np.packbits(coeff > (median + slack)[:, None], axis=1)          # (V, 8) bytes, big-endian
    return [int.from_bytes(row.tobytes(), "big") for row in bits]


def phash(grey):
    """(32, 32) or (32, 32, 1) uint8 -> its 64-bit pHash (phashes of one)."""
    return phashes(np.asarray(grey)[None])[0]


def hamming(a, b):
    """Bits that differ between two uint64 arrays (broadcast)."""
    x = np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64))
    return BIT_COUNT[x[..., None].view(np.uint8)].sum(axis=-1, dtype=np.int64)


def versions(grey):
    """(READ, READ) uint8 -> [pHash of each CROPS version]."""
    from PIL import Image

    img = Image.fromarray(np.asarray(grey, np.uint8).reshape(READ, READ))
    cut = [int(round(c * READ)) for c in CROPS]
    return phashes(np.stack([np.asarray(img.crop((m, m, READ - m, READ - m)).resize(
        (SIDE, SIDE), Image.Resampling.BILINEAR)) for m in cut]))


def distance(a, b):
    """(..., V) hash versions of two sets of images (broadcast) -> the fewest differing bits between
    the whole of one and any version of the other."""
    a, b = np.asarray(a, np.uint64), np.asarray(b, np.uint64)
    d = hamming(a[..., :1], b)                          # a whole, every version of b
    return np.minimum(d.min(axis=-1), hamming(a, b[..., :1]).min(axis=-1))


@dataclass
class Fingerprint:
    sha256: str = None
    phash: list = None      # [pHash of each CROPS version]
    size: tuple = None      # (width, height) of the file as stored
    error: str = None       # why it could not be read


def fingerprint(path):
    """An image file -> Fingerprint (error set and nothing else when it cannot be read)."""
    path = Path(path)
    source = {}
    try:
        grey = load_image(path, READ, READ, 1, "stretch", source)
        data = path.read_bytes()
    except BadImage as e:
        return Fingerprint(error=str(e))
    except OSError as e:
        return Fingerprint(error=f"cannot read: {e.strerror or e}")
    return Fingerprint(hashlib.sha256(data).hexdigest(), versions(grey), tuple(source["size"]))


@dataclass
class Pair:
    a: int
    b: int
    match: str       # 'exact' | 'near'
    bits: int        # pHash distance
    cosine: float    # of the features, or None


def exact_pairs(digests):
    """[sha256 or None] -> [(i, j)] with i < j, each later copy paired with the first of its group."""
    first, pairs = {}, []
    for i, d in enumerate(digests):
        if d is None:
            continue
        if d in first:
            pairs.append((first[d], i))
        else:
            first[d] = i
    return pairs


def _unit(features):
    f = np.asarray(features, np.float64)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def near_pairs(hashes, features=None, max_bits=MAX_BITS, block=1024):
    """hashes (N, V) uint64 (the CROPS versions), features (N, D) or None -> [Pair] of i < j by the
    module's rule. Quadratic in N, a block of rows at a time."""
    h = np.asarray(hashes, np.uint64)
    n = len(h)
    unit = None if features is None else _unit(features)
    found = []
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        bits = distance(h[rows, None], h[None, :])                  # (B, N)
        hit = (np.arange(n)[None, :] > rows[:, None]) & (bits <= max_bits)
        cos = None if unit is None else unit[rows] @ unit.T
        for r, j in zip(*np.nonzero(hit)):
            found.append(Pair(int(rows[r]), int(j), "near", int(bits[r, j]),
                              None if cos is None else float(cos[r, j])))
    return found


def find_pairs(prints, features=None, **rule):
    """[Fingerprint] (+ features of the readable ones, in order) -> [Pair]: exact copies, then near
    pairs (among images of NEAR_MIN_SIDE pixels a side or more) that are not exact copies. Indices
    are into prints."""
    ok = [i for i, p in enumerate(prints) if p.error is None]
    exact = exact_pairs([prints[i].sha256 for i in ok])
    same = {(ok[a], ok[b]) for a, b in exact}
    pairs = [Pair(a, b, "exact", 0, None) for a, b in sorted(same)]
    big = [r for r, i in enumerate(ok) if min(prints[i].size) >= NEAR_MIN_SIDE]
    hashes = np.array([prints[ok[r]].phash for r in big], np.uint64).reshape(len(big), len(CROPS))
    for p in near_pairs(hashes, None if features is None else np.asarray(features)[big], **rule):
        a, b = ok[big[p.a]], ok[big[p.b]]
        if (a, b) not in same and prints[a].sha256 != prints[b].sha256:
            pairs.append(Pair(a, b, "near", p.bits, p.cosine))
    return pairs
