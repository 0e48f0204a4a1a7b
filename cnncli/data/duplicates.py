"""Copies among images: exact (the same bytes), and near (a perceptual hash, or penultimate features).

pHash (Zauner 2010): the image as 32 x 32 grey (stretched), its 2-D DCT-II, the 8 x 8 lowest
frequencies; bit i is 1 where coefficient i exceeds their median (the DC term left out of the
median). Each image is hashed whole and cut (BOXES): CUTS off one side, off two adjacent sides (a
corner) or off all four, at each of the nine ANCHORS; 55 versions. The distance of two images is
the fewest bits in which the whole of one differs from a version of the other (so a copy cut by a
few percent meets the original's cut); a cut version counts only when its THUMB x THUMB grey
thumbnail is within THUMB_RMS (root mean square) of the other's whole. Two images are a near pair
when the distance is at most `max_bits`.

Measured (scripts/phash_crops.py on the 550 distinct 64 x 64 crops of scripts/audit_photos.py):
- pHash tolerates about 1% of mismatch between the copy's cut and the version's: copies cut 0-6
  pixels against versions cut 0-14.5%, bits apart (median / 90th percentile / share within 6) at
  0, 1, 2 and 3% mismatch: one side 0/2/98%, 2/4/96-98%, 4/6-8/90-91%, 4/8-10/76-77%; a corner
  0/4/97%, 2/6/92-94%, 4-5/10/74-78%, 6-8/12/48-50%; all four 0/4/97%, 2-4/6-8/89-93%,
  6/10/67-71%, 8/14/40%. Hence cuts 2% apart (at most 1% off) up to 12%.
- Copies of 275 crops cut 1-7 pixels of 64 (1.6-10.9%) were found 270-273 times of 275 cut on a
  side, 264-274 on a corner, 264-270 all round (1-4 pixels); x0.5 273, x1.5 267, JPEG q70 260.
  113 of the 117 cut copies missed were of near-flat crops (grey standard deviation under 10 of
  255: 111 of them sky in rocket and camera), whose bits follow faint gradients that a cut changes.
- More versions are more chances for distinct pictures to meet: without the thumbnail rule 5 pairs
  of the 550 distinct crops came within 6 bits (sky against sky, brick against brick, flat orange
  against dark red); with it none, and it lost 2 of those 6,325 copies. Found copies' thumbnails
  were 0.7 grey levels apart at the median, 3.4 at the 99.5th percentile, 7.7 at most.
The whole against the whole has no thumbnail rule (a brightened copy is still found whole).
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
from .hash_index import hamming, within

SIDE, LOW = 32, 8
CUTS = (0.02, 0.04, 0.06, 0.08, 0.10, 0.12)   # share of the anchor's sides cut off
ANCHORS = {"all": (1, 1, 1, 1), "left": (1, 0, 0, 0), "top": (0, 1, 0, 0), "right": (0, 0, 1, 0),
           "bottom": (0, 0, 0, 1), "top-left": (1, 1, 0, 0), "top-right": (0, 1, 1, 0),
           "bottom-right": (0, 0, 1, 1), "bottom-left": (1, 0, 0, 1)}   # (left, top, right, bottom)
BOXES = ((0, 0, 0, 0),) + tuple(tuple(c * s for s in sides) for sides in ANCHORS.values() for c in CUTS)
READ = 128                  # the grey picture the versions are cut from (stretched)
NEAR_MIN_SIDE = 16   # smaller images get exact copies only: 8x8 scans of one digit hash alike
MAX_BITS = 6         # pHash distance of a near pair: what it finds and pairs is measured above
THUMB = 8            # a version's thumbnail: its 32 x 32 grey averaged to THUMB x THUMB
THUMB_RMS = 6.0      # grey levels (of 255): the most a cut version's thumbnail may differ from the whole's


def _dct_matrix(n):
    """C[k, i] = cos(pi (2 i + 1) k / (2 n)): rows are the DCT-II basis (unscaled)."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    return np.cos(np.pi * (2 * i + 1) * k / (2 * n))


DCT = _dct_matrix(SIDE)


def phashes(greys):
    """(V, 32, 32) uint8 -> (V,) 64-bit pHashes as Python ints (bit 63: the DC coefficient)."""
    g = np.asarray(greys, np.float64).reshape(-1, SIDE, SIDE)
    coeff = (DCT[:LOW] @ g @ DCT[:LOW].T).reshape(len(g), LOW * LOW)      # the 8 x 8 lowest only
    median = np.sort(coeff[:, 1:], axis=1)[:, (LOW * LOW - 1) // 2]       # of the 63 AC terms
    slack = 1e-9 * (np.abs(coeff).max(axis=1) + 1)          # rounding noise of a flat picture is no bit
    bits = np.packbits(coeff > (median + slack)[:, None], axis=1)          # (V, 8) bytes, big-endian
    return [int.from_bytes(row.tobytes(), "big") for row in bits]


def phash(grey):
    """(32, 32) or (32, 32, 1) uint8 -> its 64-bit pHash (phashes of one)."""
    return phashes(np.asarray(grey)[None])[0]


def versions(grey, boxes=BOXES):
    """(READ, READ) uint8 -> ([pHash of each version], (V, THUMB * THUMB) uint8 thumbnails); a
    version is the picture with the shares (left, top, right, bottom) of `boxes` cut off."""
    from PIL import Image

    img = Image.fromarray(np.asarray(grey, np.uint8).reshape(READ, READ))
    cut = np.array(boxes) * READ                                         # (V, 4) pixels off each side
    small = np.stack([np.asarray(img.resize((SIDE, SIDE), Image.Resampling.BILINEAR, (l, t, READ - r, READ - b)))
                      for l, t, r, b in cut.tolist()])                        # (V, 32, 32)
    k = SIDE // THUMB
    thumbs = small.reshape(len(cut), THUMB, k, THUMB, k).mean(axis=(2, 4)).round().astype(np.uint8)
    return phashes(small), thumbs.reshape(len(cut), THUMB * THUMB)


def thumb_rms(a, b):
    """(..., THUMB * THUMB) thumbnails (broadcast) -> root-mean-square grey difference."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return np.sqrt((d * d).mean(axis=-1))


def _apart(whole, whole_thumb, vers, vers_thumb, max_rms):
    """Bits between the whole of a and each version of b; a cut version unlike in thumbnail: 65."""
    d = hamming(whole[..., None], vers)
    if whole_thumb is None:
        return d
    far = thumb_rms(np.asarray(whole_thumb)[..., None, :], vers_thumb) > max_rms
    far[..., 0] = False                               # the whole against the whole: pHash alone
    return np.where(far, 65, d)


def distance(a, b, thumb_a=None, thumb_b=None, max_rms=THUMB_RMS):
    """(..., V) hash versions of two sets of images (broadcast), and their (..., V, THUMB * THUMB)
    thumbnails (None: no thumbnail rule) -> the fewest differing bits between the whole of one and
    a version of the other."""
    a, b = np.asarray(a, np.uint64), np.asarray(b, np.uint64)
    ta = None if thumb_a is None else np.asarray(thumb_a)
    tb = None if thumb_b is None else np.asarray(thumb_b)
    return np.minimum(_apart(a[..., 0], None if ta is None else ta[..., 0, :], b, tb, max_rms).min(axis=-1),
                      _apart(b[..., 0], None if tb is None else tb[..., 0, :], a, ta, max_rms).min(axis=-1))


@dataclass
class Fingerprint:
    sha256: str = None
    phash: list = None      # [pHash of each BOXES version] (None under NEAR_MIN_SIDE pixels)
    thumb: np.ndarray = None  # (V, THUMB * THUMB) uint8: each BOXES version's thumbnail
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
    size = tuple(source["size"])
    hashes, thumbs = versions(grey) if min(size) >= NEAR_MIN_SIDE else (None, None)   # exact copies only
    return Fingerprint(hashlib.sha256(data).hexdigest(), hashes, thumbs, size)


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


def near_pairs(hashes, thumbs, features=None, max_bits=MAX_BITS, max_rms=THUMB_RMS):
    """hashes (N, V) uint64 (the BOXES versions), thumbs (N, V, THUMB * THUMB) their thumbnails,
    features (N, D) or None -> [Pair] of i < j by the module's rule (`distance`), ordered by (i, j).
    The wholes are looked up among all versions by hash_index.within, not compared with every pair."""
    h, th = np.asarray(hashes, np.uint64), np.asarray(thumbs)
    n, v = h.shape
    q, t, bits = within(h[:, 0], h.ravel(), max_bits)      # whole of q within max_bits of version t
    j, k = t // v, t % v
    ok = (q != j) & ((k == 0) | (thumb_rms(th[q, 0], th[j, k]) <= max_rms))
    a, b, bits = np.minimum(q, j)[ok], np.maximum(q, j)[ok], bits[ok]
    order = np.lexsort((bits, b, a))                        # the fewest bits of each pair first
    a, b, bits = a[order], b[order], bits[order]
    first = np.ones(len(a), bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    unit = None if features is None else _unit(features)
    return [Pair(int(i), int(jj), "near", int(d), None if unit is None else float(unit[i] @ unit[jj]))
            for i, jj, d in zip(a[first], b[first], bits[first])]


def find_pairs(prints, features=None, **rule):
    """[Fingerprint] (+ features of the readable ones, in order) -> [Pair]: exact copies, then near
    pairs (among images of NEAR_MIN_SIDE pixels a side or more) that are not exact copies. Indices
    are into prints."""
    ok = [i for i, p in enumerate(prints) if p.error is None]
    exact = exact_pairs([prints[i].sha256 for i in ok])
    same = {(ok[a], ok[b]) for a, b in exact}
    pairs = [Pair(a, b, "exact", 0, None) for a, b in sorted(same)]
    big = [r for r, i in enumerate(ok) if prints[i].phash is not None]     # fingerprint's size rule
    hashes = np.array([prints[ok[r]].phash for r in big], np.uint64).reshape(len(big), len(BOXES))
    thumbs = np.array([prints[ok[r]].thumb for r in big], np.uint8).reshape(len(big), len(BOXES), THUMB * THUMB)
    feats = None if features is None else np.asarray(features)[big]
    for p in near_pairs(hashes, thumbs, feats, **rule):
        a, b = ok[big[p.a]], ok[big[p.b]]
        if (a, b) not in same and prints[a].sha256 != prints[b].sha256:
            pairs.append(Pair(a, b, "near", p.bits, p.cosine))
    return pairs
