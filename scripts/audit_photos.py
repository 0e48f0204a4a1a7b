"""Proof for `cnncli audit` on real photos (issue 27): crops of scikit-image's photos, one class
per photo, features from the pretrained EfficientNet-Lite0 (`cnncli pretrained get
efficientnet_lite0 WORK/effnet` first).

  python scripts/audit_photos.py WORK [duplicates] [labels] [TRAIN_YAML]

1. The crops: a non-overlapping 64 x 64 grid over each photo (no two crops share a pixel), split
   70 / 15 / 15 into WORK/photos/{train,val,test}/<photo>/.
2. Duplicates: `audit --checkpoint effnet` on the crops as they are (no pair may be found); then
   with planted copies of 5 crops each, put in another split: exact copies, JPEG re-encodes
   (quality 70), resized x0.5 and x1.5, crops of 4% off each side, 3%, 6% and 10% off one side
   (right, bottom, left, top, right) and 6% and 10% off one corner (two adjacent sides:
   bottom-right, top-left, top-right, bottom-left, bottom-right). Every planted pair must be
   found; any other pair is a false one.
3. Labels: 5% and 20% flipped, at random and to each class's most confused class, each written
   as a label file (path, label, split) and run through the whole `audit --checkpoint effnet`
   (and `audit --config TRAIN_YAML` when one is given: k trainings, e.g. the frozen phase-1
   config `cnncli init --pretrained efficientnet_lite0` writes); the baseline is the loss of one
   softmax regression fitted on every image's features (the trained head's loss).
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


def labels(work, ckpt, config=None):
    """Label flips on the crops (train, val and test together): each flipped set is a label file
    (path, label, split) run through the whole `audit` (its own decode, features and folds); with
    config also `audit --config` (k trainings). The baseline needs the features once."""
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
            results.append(_flipped(work, imgs, feats, rate, partner if mode == "similar" else None, mode,
                                    ckpt, config))
    return results


def _flipped(work, imgs, feats, rate, partner, mode, ckpt, config, seed=1):
    from cnncli.commands.audit import audit
    from cnncli.engine.confident import in_sample_loss
    y, k = imgs.labels, len(imgs.classes)
    rng = np.random.default_rng(seed)
    n = int(round(rate * len(y)))
    idx = rng.choice(len(y), n, replace=False)
    noisy = y.copy()
    noisy[idx] = partner[y[idx]] if partner is not None else (y[idx] + rng.integers(1, k, n)) % k
    tag = f"{mode}_{int(rate * 100)}"
    table = work / "photos_labels" / f"labels_{tag}.csv"
    table.write_text("path,label,split\n" + "".join(
        f"{Path(f).relative_to(table.parent)},{imgs.classes[c]},{s}\n" for f, c, s in zip(imgs.files, noisy, imgs.splits)))
    flipped = {str(f) for f, a, b in zip(imgs.files, y, noisy) if a != b}
    base = np.argsort(-in_sample_loss(feats, noisy, k), kind="stable")
    out = {"data": "photos", "flips": mode, "rate": rate, "images": len(y), "n": n,
           "loss_p_at_n": float(np.mean([str(imgs.files[i]) in flipped for i in base[:n]]))}
    runs = {"audit": {"checkpoint": ckpt}, "audit_k": {"config": config} if config else None}
    for key, how in runs.items():
        if how is None:
            continue
        summary = audit(table, work / "audits" / f"photos_{tag}_{key}", **how)
        suspects = [r["path"] for r in summary["rows"] if r["issue"] == "label"]
        hit = sum(p in flipped for p in suspects)
        out |= {f"{key}_p_at_n": sum(p in flipped for p in summary["ranking"][:n]) / n,
                f"{key}_suspects": len(suspects), f"{key}_precision": hit / max(len(suspects), 1),
                f"{key}_recall": hit / n, f"{key}_seconds": summary["seconds"], f"{key}_source": summary["source"]}
    return out


if __name__ == "__main__":
    work = Path(sys.argv[1]).resolve()
    ckpt = work / "effnet" / "model.npz"
    if not ckpt.exists():
        sys.exit(f"{ckpt} is missing: run cnncli pretrained get efficientnet_lite0 {work / 'effnet'}")
    config = next((Path(a) for a in sys.argv[2:] if a.endswith(".yaml")), None)
    which = [a for a in sys.argv[2:] if not a.endswith(".yaml")] or ["duplicates", "labels"]
    if set(which) - {"duplicates", "labels"}:
        sys.exit(f"unknown part {sorted(set(which) - {'duplicates', 'labels'})[0]!r}: give duplicates, labels "
                 "and/or a training config ending in .yaml")
    out = {}
    if "duplicates" in which:
        out["duplicates"] = duplicates(work, ckpt)
        print(json.dumps(out["duplicates"], indent=1), flush=True)
    if "labels" in which:
        out["labels"] = labels(work, ckpt, config)
        for r in out["labels"]:
            print(json.dumps(r), flush=True)
    (work / f"photos_{'_'.join(which)}.json").write_text(json.dumps(out, indent=1))
