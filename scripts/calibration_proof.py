"""Calibration and "none of these", measured on three data sets with classes held out of training.

For each set: train on the known classes (training fits the temperature and the unknown scores on
its validation images at the end), then `cnncli evaluate --json --unknown` on the TEST images of
the known classes (never used to fit anything) and the test images of the held-out classes:
ECE and NLL before -> after the temperature, AUROC of each unknown score, and at the 5% threshold
picked on validation the false-rejection rate on known test images and the share of unknowns caught.

  shapes  cnncli synth, 6 classes: circle..triangle trained, the last 2 held out
  digits  scikit-learn's 8x8 scans (python scripts/export_digits.py DIR first, in a venv with
          scikit-learn): 0-7 trained, 8 and 9 held out; validation = data.val_split 0.25
  photos  crops of scikit-image's photos, train / val / test from disjoint regions of each photo;
          6 trained, 2 held out

Usage: python scripts/calibration_proof.py WORKDIR [DIGITS_DIR]   (writes WORKDIR/results.json,
WORKDIR/<set>/eval/reliability.png and prints a Markdown table)
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera", "hubble_deep_field", "immunohistochemistry",
          "coins")
RATE = 0.05


def run(*args):
    p = subprocess.run([sys.executable, "-m", "cnncli", *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    if p.returncode:
        sys.exit(f"cnncli {' '.join(map(str, args))} failed:\n{p.stdout}\n{p.stderr}")
    return p.stdout


def move_held_out(root, splits, held):
    """root/<split>/<class> for the held-out classes -> root/unknown/<split>/<class>."""
    for split in splits:
        for c in held:
            src = root / split / c
            dst = root / "unknown" / split / c
            dst.parent.mkdir(parents=True, exist_ok=True)
            src.rename(dst)


def photo_crops(root, per=(120, 50, 40), size=48, seed=0):
    """Square crops of each photo: train from x in [0, 0.5), val [0.5, 0.7), test [0.7, 1.0) of its width."""
    from skimage import data as photos
    from skimage.color import gray2rgb

    rng = np.random.default_rng(seed)
    for name in PHOTOS:
        img = getattr(photos, name)()
        img = gray2rgb(img) if img.ndim == 2 else img[..., :3]
        h, w = img.shape[:2]
        for split, n, lo, hi in (("train", per[0], 0.0, 0.5), ("val", per[1], 0.5, 0.7), ("test", per[2], 0.7, 1.0)):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                side = int(rng.integers(size, min(3 * size, h, int((hi - lo) * w)) + 1))
                x = int(rng.integers(int(lo * w), int(hi * w) - side + 1))
                y = int(rng.integers(0, h - side + 1))
                Image.fromarray(img[y:y + side, x:x + side]).save(d / f"{i}.png")


def config(path, base, n_classes, train, val, output, **changes):
    cfg = yaml.safe_load((ROOT / "configs" / base).read_text())
    cfg["model"]["layers"][-1]["dense"]["units"] = n_classes
    cfg["data"]["train"], cfg["output"] = str(train), str(output)
    cfg["data"].pop("val", None)
    cfg["data"].pop("val_split", None)
    cfg["data"].update({"val": str(val)} if val else {"val_split": 0.25})
    for key, value in changes.items():
        section, name = key.split("__")
        cfg[section][name] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


def measure(name, work, cfg, test, unknown):
    start = time.perf_counter()
    run("train", cfg, "--force", "--quiet")
    seconds = time.perf_counter() - start
    best = work / "run" / "best.npz"
    rep = json.loads(run("evaluate", best, test, "--unknown", unknown, "--json", "--out", work / "eval",
                         "--reject-rate", RATE))
    c, u = rep["calibration"], rep["unknown"]
    return {"set": name, "accuracy": rep["accuracy"], "test_images": rep["images"], "temperature": c["temperature"],
            "ece_before": c["ece"][0], "ece_after": c["ece"][1], "nll_before": c["nll"][0], "nll_after": c["nll"][1],
            "unknown_images": u["images"], "auroc": u["unknown_auroc"], "score": u["score"],
            "false_rejection": u["false_rejection"], "caught": u["caught"], "train_seconds": round(seconds, 1)}


def main(work, digits=None):
    work = Path(work)
    results = []
    # shapes
    s = work / "shapes"
    run("synth", s / "data", "--classes", 6, "--per-class", 400, "--val-per-class", 150, "--test-per-class", 150,
        "--seed", 1)
    move_held_out(s / "data", ("train", "val", "test"), ("square", "triangle"))
    cfg = config(s / "train.yaml", "quickstart.yaml", 4, s / "data" / "train", s / "data" / "val", s / "run",
                 train__epochs=15)
    results.append(measure("shapes", s, cfg, s / "data" / "test", s / "data" / "unknown" / "test"))
    # digits
    if digits:
        d = work / "digits"
        src = Path(digits)
        for split in ("train", "test"):
            for k in range(10):
                out = d / "data" / split / str(k)
                out.mkdir(parents=True, exist_ok=True)
                for f in (src / split / str(k)).glob("*.png"):
                    (out / f.name).write_bytes(f.read_bytes())
        move_held_out(d / "data", ("train", "test"), ("8", "9"))
        cfg = config(d / "train.yaml", "digits.yaml", 8, d / "data" / "train", None, d / "run", train__epochs=30)
        results.append(measure("digits", d, cfg, d / "data" / "test", d / "data" / "unknown" / "test"))
    # photos
    p = work / "photos"
    photo_crops(p / "data")
    move_held_out(p / "data", ("train", "val", "test"), PHOTOS[-2:])
    cfg = config(p / "train.yaml", "quickstart.yaml", len(PHOTOS) - 2, p / "data" / "train", p / "data" / "val",
                 p / "run", train__epochs=30)
    results.append(measure("photos", p, cfg, p / "data" / "test", p / "data" / "unknown" / "test"))
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print("| set | test images | accuracy | T | ECE before -> after | NLL before -> after | unknown AUROC "
          "(probability / distance) | score picked | false rejections (asked 5%) | unknowns caught |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['set']} | {r['test_images']} | {r['accuracy']:.1%} | {r['temperature']:.3f} | "
              f"{r['ece_before']:.2%} -> {r['ece_after']:.2%} | {r['nll_before']:.4f} -> {r['nll_after']:.4f} | "
              f"{r['auroc']['probability']:.3f} / {r['auroc']['distance']:.3f} ({r['unknown_images']} images) | "
              f"{r['score']} | {r['false_rejection']:.1%} | {r['caught']:.1%} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "calibration_proof", sys.argv[2] if len(sys.argv) > 2 else None)
