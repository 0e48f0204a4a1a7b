"""Augmentation plans: every random number of an epoch drawn up front, per image, from the epoch's
generator (draw); a batch's share of them turned into the kernels' arguments (apply): one affine
map per image, colour factors, cutout corners, and the pairs that mixup and cutmix blend.

Geometry, in pixel coordinates centred on the image (x right, y down), from an output cell back
to the source: u -> A^-1 (u - t) with A = R(angle) Sh(shear) zoom (rotation counter-clockwise as
seen, shear along x: x += tan(shear) y, t = translate * (w, h)), then the flips, then the shift
(dx, dy) of crop_padding, then the resized crop (its centre plus its size / the input size).
"""

import math

import numpy as np

from ..kernels.augment import augment_batch, mix_batch
from ..engine.mixed import Mixed

ORIGINAL = ("flip", "dy", "dx", "gain")   # drawn first, in this order, as before the other keys existed


def rrc_on(aug):
    r = aug.random_resized_crop
    return list(r.scale) != [1.0, 1.0] or list(r.ratio) != [1.0, 1.0]


def draw(aug, rng, n, h, w):
    """-> {name: per-image array, or None for a key that is off}. Each key that is on draws from
    rng in a fixed order, so a batch depends only on (seed, epoch, batch index)."""
    p = dict.fromkeys(ORIGINAL)
    if aug.flip:
        p["flip"] = rng.random(n) < 0.5
    if aug.crop_padding:
        p["dy"] = rng.integers(-aug.crop_padding, aug.crop_padding + 1, n)
        p["dx"] = rng.integers(-aug.crop_padding, aug.crop_padding + 1, n)
    if aug.brightness:
        p["gain"] = rng.uniform(1 - aug.brightness, 1 + aug.brightness, n)
    if aug.vflip:
        p["vflip"] = rng.random(n) < 0.5
    if aug.rotate:
        p["angle"] = rng.uniform(-aug.rotate, aug.rotate, n)
    if list(aug.scale) != [1.0, 1.0]:
        p["zoom"] = rng.uniform(aug.scale[0], aug.scale[1], n)
    if aug.translate:
        p["tx"], p["ty"] = rng.uniform(-aug.translate, aug.translate, (2, n))
    if aug.shear:
        p["shear"] = rng.uniform(-aug.shear, aug.shear, n)
    if rrc_on(aug):
        r = aug.random_resized_crop
        area = rng.uniform(r.scale[0], r.scale[1], n) * h * w
        ratio = np.exp(rng.uniform(math.log(r.ratio[0]), math.log(r.ratio[1]), n))   # log-uniform, as torchvision
        cw, ch = np.minimum(np.sqrt(area * ratio), w), np.minimum(np.sqrt(area / ratio), h)
        at = rng.random((2, n))
        p["crop"] = np.stack([at[0] * (h - ch), at[1] * (w - cw), ch, cw], axis=1)   # top, left, height, width
    if aug.contrast:
        p["contrast"] = rng.uniform(1 - aug.contrast, 1 + aug.contrast, n)
    if aug.saturation:
        p["saturation"] = rng.uniform(1 - aug.saturation, 1 + aug.saturation, n)
    if aug.cutout.size:
        half = aug.cutout.size // 2   # centres anywhere in the image; a square may hang over the edge
        p["cutout"] = np.stack([rng.integers(0, h, (n, aug.cutout.count)),
                                rng.integers(0, w, (n, aug.cutout.count))], axis=2) - half
    if aug.mixup or aug.cutmix:
        p["share"], p["box"] = _mixing(aug, rng, n, h, w)
    return p


def _mixing(aug, rng, n, h, w):
    """-> (share of the own image (n,), cutmix boxes (n, 4) as (y0, y1, x0, x1), -1s for mixup).
    With both on, each image takes one of them with probability 1/2 (timm's switch)."""
    mix = rng.beta(aug.mixup, aug.mixup, n) if aug.mixup else None
    cut = rng.beta(aug.cutmix, aug.cutmix, n) if aug.cutmix else None
    use_cut = (rng.random(n) < 0.5) if aug.mixup and aug.cutmix else np.full(n, bool(aug.cutmix))
    box = np.full((n, 4), -1, np.int64)
    share = mix if mix is not None else np.ones(n)
    if cut is not None:
        centre = rng.random((2, n))
        side = np.sqrt(1.0 - cut)                                # the box takes 1 - lam of the area
        ch, cw = (h * side).astype(np.int64), (w * side).astype(np.int64)
        cy, cx = (centre[0] * h).astype(np.int64), (centre[1] * w).astype(np.int64)
        y0, y1 = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
        x0, x1 = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
        boxes = np.stack([y0, y1, x0, x1], axis=1)
        box[use_cut] = boxes[use_cut]
        # the share that the clipped box leaves to the own image (timm's corrected lambda)
        share = np.where(use_cut, 1.0 - (y1 - y0) * (x1 - x0) / (h * w), share)
    return share, box


def geometric(p):
    return any(p.get(k) is not None for k in ("flip", "dy", "vflip", "angle", "zoom", "tx", "shear", "crop"))


def matrices(p, sl, n, h, w):
    """-> (n, 2, 3) float64: output cell (i, j) -> source (y, x) for the images in slice sl."""
    def get(key, default):
        v = p.get(key)
        return np.full(n, default, np.float64) if v is None else np.asarray(v[sl], np.float64)

    theta, phi = np.radians(get("angle", 0.0)), np.radians(get("shear", 0.0))
    zoom = get("zoom", 1.0)
    cos, sin, tan = np.cos(theta), np.sin(theta), np.tan(phi)
    # A^-1 = zoom^-1 Sh(-shear) R(-angle), R(a) = [[cos, sin], [-sin, cos]] on (x, y), y down
    inv = np.empty((n, 2, 2))
    inv[:, 0, 0], inv[:, 0, 1] = cos - tan * sin, -sin - tan * cos
    inv[:, 1, 0], inv[:, 1, 1] = sin, cos
    inv /= zoom[:, None, None]
    t = np.stack([get("tx", 0.0) * w, get("ty", 0.0) * h], axis=1)
    flip = np.stack([np.where(get("flip", 0.0) > 0, -1.0, 1.0), np.where(get("vflip", 0.0) > 0, -1.0, 1.0)], axis=1)
    lin = inv * flip[:, :, None]                                          # F A^-1
    off = -np.einsum("nab,nb->na", lin, t) + np.stack([get("dx", 0.0), get("dy", 0.0)], axis=1)
    crop = p.get("crop")
    if crop is None:
        centre, size = np.tile([w / 2, h / 2], (n, 1)), np.ones((n, 2))
    else:
        top, left, ch, cw = np.asarray(crop[sl], np.float64).T
        centre, size = np.stack([left + cw / 2, top + ch / 2], axis=1), np.stack([cw / w, ch / h], axis=1)
    lin = lin * size[:, :, None]                                          # D F A^-1
    off = centre + off * size - 0.5                                       # source (x, y) = lin u + off
    u0 = np.array([0.5 - w / 2, 0.5 - h / 2])                             # u = (j, i) + u0
    m = np.empty((n, 2, 3))
    m[:, 0, 0], m[:, 0, 1] = lin[:, 1, 1], lin[:, 1, 0]                   # y = . i + . j + .
    m[:, 0, 2] = lin[:, 1, 0] * u0[0] + lin[:, 1, 1] * u0[1] + off[:, 1]
    m[:, 1, 0], m[:, 1, 1] = lin[:, 0, 1], lin[:, 0, 0]                   # x = . i + . j + .
    m[:, 1, 2] = lin[:, 0, 0] * u0[0] + lin[:, 0, 1] * u0[1] + off[:, 0]
    return m


def apply(src, labels, mean, std, p, sl, size):
    """One batch: uint8 src (B, h, w, c) and int labels -> (float32 x, labels or Mixed). sl: the
    batch's slice of the epoch's plan; size: the cutout side."""
    n, h, w, _ = src.shape
    part = lambda k: None if p.get(k) is None else p[k][sl]   # noqa: E731
    x = augment_batch(src, mean, std, matrices(p, sl, n, h, w) if geometric(p) else None,
                      part("gain"), part("contrast"), part("saturation"), part("cutout"), size)
    if p.get("share") is None:
        return x, labels
    partner = np.arange(n)[::-1]          # image i blends with image B-1-i of the same batch
    share = part("share").astype(np.float32)
    x = mix_batch(x, partner, share, part("box"))
    return x, Mixed(labels, labels[partner], share)
