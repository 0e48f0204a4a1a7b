"""Proof for `cnncli audit` on real photos (issue 27): crops of scikit-image's photos, one class
per photo, features from the pretrained EfficientNet-Lite0 (`cnncli pretrained get
efficientnet_lite0 WORK/effnet` first).

  python scripts/audit_photos.py WORK

1. The crops: a non-overlapping 64 x 64 grid over each photo (no two crops share a pixel), split
   70 / 15 / 15 into WORK/photos/{train,val,test}/<photo>/.
2. Duplicates: `audit --checkpoint effnet` on the crops as they are (no pair may be found); then
   with planted copies of 5 crops each, put in another split: exact copies, JPEG re-encodes
   (quality 70), resized x0.5 and x1.5, crops of 4% off each side, 3%, 6% and 10% off one side
   (right, bottom, left, top, right) and 6% and 10% off one corner (two adjacent sides:
   bottom-right, top-left, top-right, bottom-left, bottom-right). Every planted pair must be
   found; any other pair is a false one.
3. Labels: 5% and 20% flipped, at random and to each class's most confused class; the features
   are computed once (the images do not change, only their labels), then the same engine
   functions audit runs (out_of_fold, label_issues) rank them; the baseline is the loss of one
   softmax regression fitted on every image (the trained head's loss).
Writes WORK/photos.json.
"""

import json
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIDES = ((0, 0, 1, 0), (0, 0, 0, 1), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0))       # right, bottom, left, top
CORNERS = ((0, 0, 1, 1), (1, 1, 0, 0), (0, 1, 1, 0), (1, 0, 0, 1), (0, 0, 1, 1))     # bottom-right, top-left, ...
PHOTOS = ("astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel", "moon", "rocket")
SIDE = 64


def crops():
    """-> [(photo, row, col, uint8 crop)] on a non-overlapping grid."""
    import skimage.data as d
    out = []
    for name in PHOTOS:
        img = getattr(d, name)()
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        img = img[..., :3]
        for r in range(img.shape[0] // SIDE):
            for c in range(img.shape[1] // SIDE):
                out.append((name, r, c, img[r * SIDE:(r + 1) * SIDE, c * SIDE:(c + 1) * SIDE]))
    return out


def write_crops(root, items, seed=0):
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(seed)
    paths = []
    for name, r, c, img in items:
        u = rng.random()
        split = "train" if u < 0.7 else "val" if u < 0.85 else "test"
        p = root / split / name / f"{name}_{r}_{c}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths


def plant(root, paths, seed=1):
    """Copies of 5 crops per kind, each into another split -> [(original, copy, kind)]."""
    rng = np.random.default_rng(seed)
    kinds = ("exact", "jpeg70", "half", "x1.5", "crop4%", "side3%", "side6%", "side10%", "corner6%", "corner10%")
    chosen = rng.choice(len(paths), 5 * len(kinds), replace=False)
    planted = []
    for n, i in enumerate(chosen):
        src = paths[i]
        kind = kinds[n // 5]
        split = {"train": "test", "val": "train", "test": "val"}[src.parent.parent.name]
        suffix = ".jpg" if kind == "jpeg70" else ".png"
        dst = root / split / src.parent.name / f"copy_{kind.replace('.', '_')}_{src.stem}{suffix}"
        img = Image.open(src).convert("RGB")
        if kind == "exact":
            shutil.copyfile(src, dst)
        elif kind == "jpeg70":
            img.save(dst, quality=70)
        elif kind in ("half", "x1.5"):
            s = 0.5 if kind == "half" else 1.5
            img.resize((round(SIDE * s), round(SIDE * s)), Image.Resampling.BICUBIC).save(dst)
        elif kind == "crop4%":
            m = round(0.04 * SIDE)
            img.crop((m, m, SIDE - m, SIDE - m)).save(dst)
        else:                                   # one side or one corner: (left, top, right, bottom) cut
            m = round(int(re.search(r"\d+", kind)[0]) / 100 * SIDE)        # side10%: 6 pixels of 64
            sides = (SIDES if kind.startswith("side") else CORNERS)[n % 5]
            l, t, r, b = [m * s for s in sides]
            img.crop((l, t, SIDE - r, SIDE - b)).save(dst)
        planted.append((str(src), str(dst), kind))
    return planted


def duplicates(work, ckpt):
    from cnncli.commands.audit import audit
    root = work / "photos"
    paths = write_crops(root, crops())
    t0 = time.perf_counter()
    clean = audit(root, work / "audits" / "photos_clean", checkpoint=ckpt)
    clean_s = time.perf_counter() - t0
    false_clean = [(r["path"], r["other"], r["detail"]) for r in clean["rows"] if r["issue"] == "duplicate"]
    planted = plant(root, paths)
    dirty = audit(root, work / "audits" / "photos_planted", checkpoint=ckpt)
    found = {frozenset((r["path"], r["other"])): r["detail"] for r in dirty["rows"] if r["issue"] == "duplicate"}
    want = {frozenset((a, b)): k for a, b, k in planted}
    by_kind = {}
    for pair, kind in want.items():
        by_kind.setdefault(kind, [0, 0])
        by_kind[kind][1] += 1
        by_kind[kind][0] += pair in found
    extra = [(sorted(p), d) for p, d in found.items() if p not in want]
    return {"crops": len(paths), "clean_pairs": len(false_clean), "clean_examples": false_clean[:5],
            "clean_seconds": round(clean_s, 1), "audit_seconds": clean["seconds"],
            "planted_found": {k: f"{a}/{b}" for k, (a, b) in by_kind.items()},
            "false_pairs_with_planted": len(extra), "false_examples": extra[:5],
            "details": [found.get(frozenset((a, b)), "MISSED") + f" [{k}]" for a, b, k in planted]}


def labels(work, ckpt):
    """Label flips on the crops (train, val and test together), features computed once."""
    from cnncli.commands.audit import _decode, features, gather
    from cnncli.commands.predict import load
    from cnncli.engine.confident import out_of_fold
    root = work / "photos_labels"
    write_crops(root, crops())
    imgs = gather(root)
    loaded = load(ckpt)
    t0 = time.perf_counter()
    decoded, _ = _decode(imgs, np.arange(len(imgs.files)), loaded.shape, loaded.resize)
    feats = features(loaded, decoded)
    feat_s = time.perf_counter() - t0
    k = len(imgs.classes)
    y = imgs.labels
    p = out_of_fold(feats, y, k)
    mass = np.array([p[y == j].mean(axis=0) for j in range(k)])
    np.fill_diagonal(mass, -1)
    partner = mass.argmax(axis=1)
    results = [{"clean_accuracy_out_of_fold": float((p.argmax(1) == y).mean()), "features_s": round(feat_s, 1),
                "images": len(y), "similar": {imgs.classes[i]: imgs.classes[j] for i, j in enumerate(partner)}}]
    for mode in ("random", "similar"):
        for rate in (0.05, 0.20):
            results.append(_flipped(feats, y, k, rate, partner if mode == "similar" else None, mode))
    return results


def _flipped(feats, y, k, rate, partner, mode, seed=1):
    from cnncli.engine.confident import in_sample_loss, label_issues, out_of_fold
    rng = np.random.default_rng(seed)
    n = int(round(rate * len(y)))
    idx = rng.choice(len(y), n, replace=False)
    noisy = y.copy()
    noisy[idx] = partner[y[idx]] if partner is not None else (y[idx] + rng.integers(1, k, n)) % k
    flipped = noisy != y
    t0 = time.perf_counter()
    probs = out_of_fold(feats, noisy, k)
    folds_s = time.perf_counter() - t0
    suspect, _, margin = label_issues(probs, noisy)
    ranked = np.lexsort((-margin, ~suspect))
    loss = in_sample_loss(feats, noisy, k)
    base = np.argsort(-loss, kind="stable")
    return {"data": "photos", "flips": mode, "rate": rate, "images": len(y), "n": n,
            "loss_p_at_n": float(flipped[base[:n]].mean()), "audit_p_at_n": float(flipped[ranked[:n]].mean()),
            "audit_suspects": int(suspect.sum()),
            "audit_precision": float(flipped[suspect].mean()) if suspect.any() else 0.0,
            "audit_recall": float((flipped & suspect).sum() / n), "folds_s": round(folds_s, 2)}


if __name__ == "__main__":
    work = Path(sys.argv[1]).resolve()
    ckpt = work / "effnet" / "model.npz"
    if not ckpt.exists():
        sys.exit(f"{ckpt} is missing: run cnncli pretrained get efficientnet_lite0 {work / 'effnet'}")
    which = sys.argv[2:] or ["duplicates", "labels"]
    out = {}
    if "duplicates" in which:
        out["duplicates"] = duplicates(work, ckpt)
        print(json.dumps(out["duplicates"], indent=1), flush=True)
    if "labels" in which:
        out["labels"] = labels(work, ckpt)
        for r in out["labels"]:
            print(json.dumps(r), flush=True)
    (work / f"photos_{'_'.join(which)}.json").write_text(json.dumps(out, indent=1))
