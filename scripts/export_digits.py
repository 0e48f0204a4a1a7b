"""Write scikit-learn's bundled handwritten digits (1,797 real scans, 8x8, 10 classes; no download)
as PNG class folders, for trying cnncli on real images:

  pip install scikit-learn            # only for this script; not a cnncli dependency
  python scripts/export_digits.py data/digits
  cnncli train configs/digits.yaml

Images are scaled from 0..16 to 0..255 and written at 8x8; cnncli resizes them to the model input.
A fixed, stratified 20% goes to data/digits/test.
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main(out):
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(0)
    out = Path(out)
    for k in range(10):
        idx = np.flatnonzero(d.target == k)
        idx = idx[rng.permutation(len(idx))]
        n_test = len(idx) // 5
        for split, part in (("test", idx[:n_test]), ("train", idx[n_test:])):
            folder = out / split / str(k)
            folder.mkdir(parents=True, exist_ok=True)
            for i in part:
                img = (d.images[i] * (255.0 / 16.0)).round().astype(np.uint8)
                Image.fromarray(img, "L").save(folder / f"{i:04d}.png")
    print(f"wrote {len(d.target)} digits to {out}/train and {out}/test")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/digits")
