"""A deterministic data set that is always there: coloured shapes on noisy backgrounds.

Classes: circle, square, triangle, cross, ring, bar (the first `n_classes`). Each image has a
random size, position, rotation (triangle, bar), colour, background colour and pixel noise, so a
network must learn shape, not colour or position. Drawn at 4x and downsampled for smooth edges.

`write_shapes` also writes root/boxes.csv: each image's shape bounding box, so a picture of what
the network looks at (Grad-CAM) can be checked against where the shape really is. Box
coordinates are pixels of the saved image, x to the right and y down, edges not centres: pixel
(i, j) covers [j, j + 1) x [i, i + 1), so a box spans x0 <= x < x1, y0 <= y < y1.

The hard variant (`synth --hard`) is made for comparing training recipes on small data: every
shape rotated, smaller and of more varied size, closer in colour to a background that is a
gradient with blotches, crossed by clutter (lines and dots, some over the shape), with per-channel
colour casts and stronger noise.
"""

import csv
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import CnnError
from ..files import write_text_atomic

SHAPES = ("circle", "square", "triangle", "cross", "ring", "bar")


def _color(rng, avoid=None):
    while True:
        c = rng.integers(0, 256, 3)
        if avoid is None or np.abs(c.astype(int) - avoid).sum() > 200:
            return c


def draw(shape, size, rng):
    """One RGB image (size x size) of `shape`, as a uint8 array."""
    return draw_with_box(shape, size, rng)[0]


def draw_with_box(shape, size, rng):
    """-> (uint8 image (size, size, 3), the shape's box (x0, y0, x1, y1) in the image's pixels).
    The box costs no random draw: the images are those `draw` always made."""
    s = size * 4
    bg = _color(rng)
    fg = _color(rng, bg)
    img = Image.new("RGB", (s, s), tuple(int(v) for v in bg))
    d = ImageDraw.Draw(img)
    r = rng.uniform(0.22, 0.4) * s
    cx, cy = rng.uniform(r + 2, s - r - 2, 2)
    fill = tuple(int(v) for v in fg)
    extent = [(cx - r, cy - r), (cx + r, cy + r)]   # corners of what is drawn, at 4x
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        extent = [(cx - r * 0.85, cy - r * 0.85), (cx + r * 0.85, cy + r * 0.85)]
        d.rectangle([*extent[0], *extent[1]], fill=fill)
    elif shape == "triangle":
        a = rng.uniform(0, 2 * math.pi)
        extent = [(cx + r * math.cos(a + k * 2 * math.pi / 3), cy + r * math.sin(a + k * 2 * math.pi / 3))
                  for k in range(3)]
        d.polygon(extent, fill=fill)
    elif shape == "cross":
        w = r * 0.3
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    elif shape == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=max(int(r * 0.3), 2))
    elif shape == "bar":
        a = rng.uniform(0, math.pi)
        dx, dy = math.cos(a), math.sin(a)
        w = r * 0.22
        extent = [(cx - r * dx - w * dy, cy - r * dy + w * dx), (cx + r * dx - w * dy, cy + r * dy + w * dx),
                  (cx + r * dx + w * dy, cy + r * dy - w * dx), (cx - r * dx + w * dy, cy - r * dy - w * dx)]
        d.polygon(extent, fill=fill)
    img = img.resize((size, size), Image.Resampling.BOX)
    arr = np.asarray(img, np.float32) + rng.normal(0, rng.uniform(4, 16), (size, size, 3))
    xs, ys = [p[0] for p in extent], [p[1] for p in extent]
    # 4x pixel coordinates -> the saved image's; Pillow fills the pixel at the far corner too (+1)
    box = tuple(float(np.clip(v / 4, 0, size)) for v in (min(xs), min(ys), max(xs) + 1, max(ys) + 1))
    return np.clip(arr, 0, 255).astype(np.uint8), box


def _outline(shape, cx, cy, r, a):
    """The polygon(s) of a rotated shape: [(points, ...)] for square, triangle, cross and bar."""
    def rot(points):
        c, s = math.cos(a), math.sin(a)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]
    if shape == "square":
        h = r * 0.8
        return [rot([(-h, -h), (h, -h), (h, h), (-h, h)])]
    if shape == "triangle":
        return [rot([(r * math.cos(k * 2 * math.pi / 3), r * math.sin(k * 2 * math.pi / 3)) for k in range(3)])]
    if shape == "cross":
        w = r * 0.3
        return [rot([(-r, -w), (r, -w), (r, w), (-r, w)]), rot([(-w, -r), (w, -r), (w, r), (-w, r)])]
    if shape == "bar":
        w = r * 0.22
        return [rot([(-r, -w), (r, -w), (r, w), (-r, w)])]
    raise ValueError(shape)


def draw_hard(shape, size, rng):
    """One hard RGB image (size x size) of `shape`, as a uint8 array (see the module's docstring)."""
    s = size * 4
    c0, c1 = _color(rng).astype(np.float64), _color(rng).astype(np.float64)
    yy, xx = np.mgrid[0:s, 0:s] / s
    a = rng.uniform(0, 2 * math.pi)
    t = np.clip((xx - 0.5) * math.cos(a) + (yy - 0.5) * math.sin(a) + 0.5, 0, 1)[..., None]
    bg = c0 * (1 - t) + c1 * t
    for _ in range(3):                                   # soft blotches
        by, bx, br = rng.uniform(0, 1, 2).tolist() + [rng.uniform(0.1, 0.3)]
        blob = np.exp(-((yy - by) ** 2 + (xx - bx) ** 2) / (2 * br * br))[..., None]
        bg += blob * rng.uniform(-60, 60, 3)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    mid = tuple(int(v) for v in bg[s // 2, s // 2])

    def clutter(n):
        for _ in range(n):
            col = tuple(int(v) for v in _color(rng))
            if rng.random() < 0.6:
                p = rng.uniform(0, s, 4)
                d.line([(p[0], p[1]), (p[2], p[3])], fill=col, width=int(rng.integers(2, 5)))
            else:
                x, y, q = *rng.uniform(0, s, 2), rng.uniform(0.02, 0.06) * s
                d.ellipse([x - q, y - q, x + q, y + q], fill=col)
    clutter(int(rng.integers(1, 4)))
    r = rng.uniform(0.2, 0.36) * s
    cx, cy = rng.uniform(r + 2, s - r - 2, 2)
    fill = tuple(int(v) for v in _color(rng, np.array(mid)))
    angle = rng.uniform(0, 2 * math.pi)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=max(int(r * 0.3), 2))
    else:
        for poly in _outline(shape, cx, cy, r, angle):
            d.polygon(poly, fill=fill)
    clutter(int(rng.integers(0, 3)))                     # some clutter crosses the shape
    img = img.resize((size, size), Image.Resampling.BOX)
    cast = rng.uniform(0.8, 1.2, 3)                      # a colour cast per image
    arr = np.asarray(img, np.float32) * cast + rng.normal(0, rng.uniform(6, 18), (size, size, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def write_shapes(root, per_class=600, size=32, n_classes=4, seed=0, val_per_class=0, test_per_class=0, hard=False):
    """Write root/train/<shape>/<i>.png (and root/val/..., root/test/... when asked) and, for the
    plain set, root/boxes.csv -> counts."""
    try:
        return _write_shapes(Path(root), per_class, size, n_classes, seed, val_per_class, test_per_class, hard)
    except OSError as e:
        raise CnnError(f"cannot write the data set to {root} ({e.strerror or e}): pick a writable folder") from None


def _write_shapes(root, per_class, size, n_classes, seed, val_per_class, test_per_class=0, hard=False):
    if not 2 <= n_classes <= len(SHAPES):
        raise CnnError(f"the number of classes must be 2..{len(SHAPES)}, got {n_classes}")
    counts, rows = {}, []
    for split, n, offset in (("train", per_class, 0), ("val", val_per_class, 1), ("test", test_per_class, 2)):
        if n == 0:
            continue
        for k, shape in enumerate(SHAPES[:n_classes]):
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([seed, offset, k] + ([1] if hard else []))
            for i in range(n):
                name = f"{shape}_{i:05d}.png"
                if hard:   # the hard set has no boxes (clutter crosses the shapes)
                    Image.fromarray(draw_hard(shape, size, rng)).save(folder / name)
                    continue
                image, box = draw_with_box(shape, size, rng)
                Image.fromarray(image).save(folder / name)
                rows.append([f"{split}/{shape}/{name}", shape, *(f"{v:.2f}" for v in box)])
        counts[split] = n * n_classes
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(BOX_COLUMNS)
    w.writerows(rows)
    if not hard:
        write_text_atomic(root / "boxes.csv", buf.getvalue(), "box list")
    return counts


BOX_COLUMNS = ("path", "class", "x0", "y0", "x1", "y1")


def read_boxes(root):
    """root/boxes.csv -> {path relative to root (posix): (x0, y0, x1, y1)}."""
    path = Path(root) / "boxes.csv"
    try:
        with open(path, newline="") as f:
            return {r["path"]: tuple(float(r[k]) for k in BOX_COLUMNS[2:]) for r in csv.DictReader(f)}
    except (OSError, KeyError, ValueError) as e:
        raise CnnError(f"cannot read {path} ({e}): write the data set again with `cnncli synth`") from None
