"""Small image folders of many kinds for data and training tests."""

import io

import numpy as np
from PIL import Image


def blob_image(rng, label, size=12, mode="RGB"):
    """A class-dependent pattern any small net separates: a bright quadrant per class."""
    a = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    q = size // 2
    r, c = divmod(label % 4, 2)
    a[r * q:(r + 1) * q, c * q:(c + 1) * q] += 150
    img = Image.fromarray(a, "RGB")
    return img.convert(mode) if mode != "RGB" else img


def make_folder(root, classes=("a", "b", "c"), per_class=10, size=12, seed=0, fmt="png"):
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            blob_image(rng, k, size).save(d / f"img{i}.{fmt}")
    return root


def png_bytes(img):
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
