"""Frozen ImageNet features against training from scratch, on a small real-photo task.

Classes are scikit-image's photos; training crops come from the left 60% of each photo, test
crops from the right 40% (disjoint regions), square crops of varied size (48-160 px) saved as
PNG. Then (a) `cnncli init --data` and (b) `cnncli init --pretrained efficientnet_lite0` are each
trained and evaluated on the test crops, timed. Usage: python scripts/finetune_proof.py WORKDIR
"""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as photos

CLASSES = ("chelsea", "coffee", "astronaut", "rocket")
TRAIN, TEST, SEED = 24, 10, 0


def crops(img, n, lo, hi, rng):
    h, w = img.shape[:2]
    out = []
    for _ in range(n):
        side = int(rng.integers(48, min(160, h, int((hi - lo) * w)) + 1))
        x = int(rng.integers(int(lo * w), int(hi * w) - side + 1))
        y = int(rng.integers(0, h - side + 1))
        out.append(img[y:y + side, x:x + side])
    return out


def build(root):
    rng = np.random.default_rng(SEED)
    for name in CLASSES:
        img = getattr(photos, name)()
        for split, n, lo, hi in (("train", TRAIN, 0.0, 0.6), ("test", TEST, 0.6, 1.0)):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i, c in enumerate(crops(img, n, lo, hi, rng)):
                Image.fromarray(c).save(d / f"{i}.png")


def run(*args):
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "cnncli", *args], capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"cnncli {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}")
    return p.stdout, time.perf_counter() - start


def main(work):
    work = Path(work)
    build(work / "photos")
    for label, extra in (("scratch", []), ("pretrained", ["--pretrained", "efficientnet_lite0"])):
        d = work / label
        run("init", str(d), "--data", str(work / "photos"), "--force", *extra)
        out, seconds = run("train", str(d / "train.yaml"), "--force", "--set", f"output={d / 'run'}", "--quiet")
        ev, _ = run("evaluate", str(d / "run" / "best.npz"), str(work / "photos" / "test"))
        acc = [line for line in ev.splitlines() if "accuracy" in line.lower()][:1]
        print(f"{label}: train {seconds:.0f}s; {acc}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
