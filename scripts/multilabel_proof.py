"""Multi-label proof on real photos: mosaics of scikit-image photo crops, one multi-label model
against a one-vs-rest baseline of independent binary models with the same total budget; and a
10,000-row CSV against the same images in class folders (training images per second).

    python scripts/multilabel_proof.py OUT [--epochs 12] [--speed-rows 10000]

Each 32x32 image is a 2x2 mosaic of 16x16 tiles: 1 to 3 tiles are crops of distinct label photos
(astronaut, coffee, chelsea, rocket, motorcycle, immunohistochemistry), the others crops of
grey texture photos (brick, grass, gravel, moon) that are no label. Crops come from disjoint
horizontal bands of each photo per split (train: top 60%, val: the next 15%, test: the bottom
25%), so no test pixel was seen in training. Writes OUT/results.json and prints a summary.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LABELS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "immunohistochemistry")
TEXTURES = ("brick", "grass", "gravel", "moon")
BANDS = {"train": (0.0, 0.6), "val": (0.6, 0.75), "test": (0.75, 1.0)}
TILE = 16


def photos():
    import skimage.data as d

    out = {}
    for name in LABELS + TEXTURES:
        a = d.stereo_motorcycle()[0] if name == "motorcycle" else getattr(d, name)()
        out[name] = np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3]
    return out


def crop(rng, photo, band):
    """A square crop, side 15-25% of the photo's shorter side, inside the band's rows -> TILE x TILE."""
    h, w, _ = photo.shape
    side = int(rng.uniform(0.15, 0.25) * min(h, w))
    top, bottom = int(band[0] * h), int(band[1] * h)
    side = min(side, bottom - top)
    y = rng.integers(top, bottom - side + 1)
    x = rng.integers(0, w - side + 1)
    tile = Image.fromarray(np.ascontiguousarray(photo[y:y + side, x:x + side])).resize((TILE, TILE), Image.BILINEAR)
    a = np.asarray(tile)
    return a[:, ::-1] if rng.random() < 0.5 else a


def mosaic(rng, pics, split):
    """-> (32x32x3 image, label names)."""
    n = int(rng.integers(1, 4))
    chosen = list(rng.choice(len(LABELS), n, replace=False))
    cells = rng.permutation(4)
    img = np.zeros((2 * TILE, 2 * TILE, 3), np.uint8)
    for c in range(4):
        name = LABELS[chosen[list(cells).index(c)]] if list(cells).index(c) < n else TEXTURES[rng.integers(len(TEXTURES))]
        r, q = divmod(c, 2)
        img[r * TILE:(r + 1) * TILE, q * TILE:(q + 1) * TILE] = crop(rng, pics[name], BANDS[split])
    return img, sorted((LABELS[k] for k in chosen), key=LABELS.index)


def build(out, counts, seed=0):
    """Mosaics into out/img/<split>/, rows in out/labels.csv (path, label a|b, split)."""
    rng = np.random.default_rng(seed)
    pics = photos()
    rows = ["path,label,split"]
    for split, n in counts.items():
        (out / "img" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, names = mosaic(rng, pics, split)
            path = f"img/{split}/{i}.png"
            Image.fromarray(img).save(out / path)
            rows.append(f"{path},{'|'.join(names)},{split}")
    (out / "labels.csv").write_text("\n".join(rows) + "\n")
    return rows[1:]


MODEL = """model:
  input: [32, 32, 3]
  layers:
    - conv: {{filters: 32, size: 3, padding: same, bias: false}}
    - batchnorm
    - relu
    - maxpool: {{size: 2}}
    - conv: {{filters: 64, size: 3, padding: same, bias: false}}
    - batchnorm
    - relu
    - maxpool: {{size: 2}}
    - conv: {{filters: 96, size: 3, padding: same, bias: false}}
    - batchnorm
    - relu
    - globalavgpool
    - dense: {{units: {units}, activation: sigmoid}}
data:
  train: {data}
  cache_dir: {cache}
  augment: {{flip: true}}
train: {{epochs: {epochs}, batch_size: 32, optimizer: adamw, lr: 0.003, weight_decay: 0.01, schedule: cosine, seed: 0}}
output: {output}
"""


def cnncli(*args):
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "cnncli", *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"cnncli {' '.join(map(str, args))} failed:\n{res.stdout}\n{res.stderr}")
    return res.stdout, time.perf_counter() - start


def train(out, name, data, units, epochs):
    cfg = out / f"{name}.yaml"
    cfg.write_text(MODEL.format(units=units, data=data, cache=out / "cache", epochs=epochs, output=out / "runs" / name))
    _, seconds = cnncli("train", cfg, "--force")
    return out / "runs" / name / "best.npz", seconds


def scores(ckpt, files):
    """Probabilities of the files through a checkpoint (the library's own scoring)."""
    from cnncli.commands.predict import _scores, load
    from cnncli.data.cache import decode_files

    loaded = load(ckpt)
    images = [item[0] for _, item in decode_files(files, loaded.shape, loaded.resize, None, None)]
    return _scores(loaded, images)[0]


def proof(out, epochs, counts):
    from cnncli.engine.multilabel_metrics import best_threshold, summarize

    rows = build(out, counts)
    split_files = {s: [out / r.split(",")[0] for r in rows if r.endswith("," + s)] for s in counts}
    truth = {s: np.array([[int(n in r.split(",")[1].split("|")) for n in LABELS] for r in rows if r.endswith("," + s)])
             for s in counts}
    ckpt, ml_seconds = train(out, "multilabel", out / "labels.csv", len(LABELS), epochs)
    rep = json.loads(cnncli("evaluate", ckpt, out / "labels.csv", "--split", "test", "--json")[0])
    per_model = max(1, epochs // len(LABELS))          # the same total budget: K models, epochs / K each
    base_test, base_val, base_seconds = [], [], 0.0
    for k, name in enumerate(LABELS):                  # one-vs-rest: 'no' / 'yes' per label
        lines = ["path,label,split"] + [f"{r.split(',')[0]},{'yes' if name in r.split(',')[1].split('|') else 'no'},"
                                        f"{r.split(',')[2]}" for r in rows]
        (out / f"ovr_{name}.csv").write_text("\n".join(lines) + "\n")
        b, seconds = train(out, f"ovr_{name}", out / f"ovr_{name}.csv", 1, per_model)
        base_seconds += seconds
        base_test.append(scores(b, split_files["test"])[:, 1])
        base_val.append(scores(b, split_files["val"])[:, 1])
    base_test, base_val = np.stack(base_test, 1), np.stack(base_val, 1)
    thresholds = [best_threshold(base_val[:, k], truth["val"][:, k]) for k in range(len(LABELS))]
    base = summarize(base_test, truth["test"], list(LABELS), thresholds)
    return {"images": counts, "labels": list(LABELS), "epochs_multilabel": epochs, "epochs_per_binary_model": per_model,
            "multilabel": {"map": rep["map"], "exact_match": rep["exact_match"], "hamming_accuracy": rep["hamming_accuracy"],
                           "f1": {c["label"]: c["f1"] for c in rep["per_label"]},
                           "ap": {c["label"]: c["ap"] for c in rep["per_label"]}, "train_seconds": ml_seconds},
            "one_vs_rest": {"map": base["map"], "exact_match": base["exact_match"],
                            "hamming_accuracy": base["hamming_accuracy"],
                            "f1": {c["label"]: c["f1"] for c in base["per_label"]},
                            "ap": {c["label"]: c["ap"] for c in base["per_label"]}, "train_seconds": base_seconds}}


def speed(out, n, epochs=2, repeats=2):
    """n images in class folders (each mosaic's first label) and a CSV of the same files: training
    images per second of each (mean over the epochs after the first), alternating runs."""
    rng = np.random.default_rng(1)
    pics = photos()
    root = out / "speed"
    rows = ["path,label"]
    for i in range(n if not (root / "rows.csv").exists() else 0):
        img, names = mosaic(rng, pics, "train")
        d = root / "folders" / names[0]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i}.png")
        rows.append(f"folders/{names[0]}/{i}.png,{names[0]}")
    if len(rows) > 1:
        (root / "rows.csv").write_text("\n".join(rows) + "\n")
    results = {"folders": [], "csv": []}
    for rep in range(repeats):
        for kind, data in (("folders", root / "folders"), ("csv", root / "rows.csv")):
            cfg = root / f"{kind}.yaml"
            cfg.write_text(MODEL.format(units=len(LABELS), data=data, cache=root / "cache", epochs=epochs,
                                        output=root / "runs" / kind).replace("activation: sigmoid", "activation: softmax"))
            out_text, _ = cnncli("train", cfg, "--force")
            import csv
            with open(root / "runs" / kind / "metrics.csv") as f:
                ips = [float(r["images_per_s"]) for r in csv.DictReader(f)][1:]
            results[kind].append({"images_per_s": float(np.mean(ips)), "from_cache": "decode cache" in out_text})
    return {"rows": n, "epochs": epochs, **results}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--train", type=int, default=1500)
    ap.add_argument("--speed-rows", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=2, help="alternating folder / CSV runs")
    ap.add_argument("--speed-only", action="store_true")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    results = {} if a.speed_only else {"proof": proof(a.out, a.epochs, {"train": a.train, "val": a.train // 5,
                                                                        "test": a.train // 3})}
    if a.speed_rows:
        results["speed"] = speed(a.out, a.speed_rows, repeats=a.repeats)
    (a.out / ("speed.json" if a.speed_only else "results.json")).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
