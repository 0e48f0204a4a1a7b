"""Proof for `cnncli audit` (issue 27): labels flipped on purpose, found again.

  python scripts/audit_proof.py labels WORK [--datasets digits,shapes] [--trainings]
  python scripts/audit_proof.py figure WORK     # labels_*.json (+ photos_labels.json) -> labels.png

labels: for each data set (digits: scikit-learn's 1,797 real scans, written first with
scripts/export_digits.py WORK/digits; shapes: `cnncli synth`), flip 5% and 20% of the labels at
random (to any other class) and between similar classes (each class to the class a clean audit
confuses it with most), copy the images into class folders with the flipped labels, train a small
CNN on them, and compare three rankings at the number of flips n:
  loss     : the trained CNN's loss on its own training images (the baseline)
  audit    : audit --checkpoint of that CNN (5-fold softmax regression on its penultimate features)
  audit-k  : audit --config, 5 trainings from scratch (with --trainings)
precision@n = recall@n = flipped images among the first n; the suspect set's own precision and
recall too. Writes WORK/labels_<data sets>.json. Real photos and duplicates: scripts/audit_photos.py.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONV = "    - conv: {{filters: {f}, size: 3, padding: same, activation: relu}}\n    - maxpool: {{size: 2}}\n"
CONFIGS = {   # small CNNs; (input, conv filters, epochs, lr, schedule, augment)
    "digits": ("[16, 16, 1]", (16, 32), 8, 0.002, "constant", "{}"),
    # the quickstart network, as tests/conftest.py trains it (cosine over 10 epochs did no better:
    # precision at n 0.62 against the loss's 0.60 at 5% random flips)
    "shapes": ("[32, 32, 3]", (16, 32, 64), 8, 0.005, "constant", "{}"),
    # the same images and network trained as configs/quickstart.yaml trains it: flips and crops, cosine
    "shapes_recipe": ("[32, 32, 3]", (16, 32, 64), 12, 0.005, "cosine", "{flip: true, crop_padding: 2}"),
}


def config_text(name, data, out, n_classes):
    shape, filters, epochs, lr, schedule, augment = CONFIGS[name]
    convs = "".join(CONV.format(f=f) for f in filters)
    return f"""model:
  input: {shape}
  layers:
{convs}    - flatten
    - dense: {{units: 64, activation: relu}}
    - dense: {{units: {n_classes}, activation: softmax}}
data:
  train: {data}
  val_split: 0.1
  augment: {augment}
train:
  epochs: {epochs}
  batch_size: 32
  optimizer: adam
  lr: {lr}
  schedule: {schedule}
output: {out}
"""


def source_images(name, work):
    """-> (files, labels, classes) of the clean data set."""
    root = work / ("digits/train" if name == "digits" else "shapes/train")
    if name.startswith("shapes") and not root.exists():
        from cnncli.data.synthetic import write_shapes
        write_shapes(work / "shapes", per_class=500, size=32, n_classes=4, seed=0)
    if not root.exists():
        sys.exit(f"{root} is missing: run scripts/export_digits.py {work / 'digits'} first")
    from cnncli.data.folder import scan
    listing = scan(root)
    return listing.files, np.array(listing.labels), listing.classes


def flip(labels, rate, partner, seed):
    """-> (noisy labels, flipped mask): round(rate N) images; partner None: any other class at random."""
    rng = np.random.default_rng(seed)
    k = labels.max() + 1
    n = int(round(rate * len(labels)))
    idx = rng.choice(len(labels), n, replace=False)
    noisy = labels.copy()
    for i in idx:
        noisy[i] = partner[labels[i]] if partner is not None else \
            (labels[i] + rng.integers(1, k)) % k
    return noisy, noisy != labels


def write_set(root, files, labels, classes):
    if root.exists():
        shutil.rmtree(root)
    for c in classes:
        (root / c).mkdir(parents=True)
    for i, (f, y) in enumerate(zip(files, labels)):
        shutil.copyfile(f, root / classes[y] / f"{i:05d}{Path(f).suffix}")
    return [root / classes[y] / f"{i:05d}{Path(f).suffix}" for i, (f, y) in enumerate(zip(files, labels))]


def train(name, data, run, n_classes):
    from cnncli.commands.train import train as run_train
    from cnncli.engine.progress import QuietReporter
    run.parent.mkdir(parents=True, exist_ok=True)
    cfg = run.parent / f"{run.name}.yaml"
    cfg.write_text(config_text(name, data, run, n_classes))
    t0 = time.perf_counter()
    run_train(cfg, force=True, reporter=QuietReporter())
    return cfg, time.perf_counter() - t0


def loss_ranking(ckpt, data, files):
    """The baseline: files ordered by the checkpoint's loss on them, highest first."""
    from cnncli.commands.evaluate import score_folder
    s = score_folder(ckpt, data)
    loss = -np.log(np.clip(s.probs[np.arange(len(s.labels)), s.labels], 1e-12, None))
    return [s.files[i] for i in np.argsort(-loss, kind="stable")]


def scores(ranked, flipped_paths, n):
    """ranked: paths, most suspect first -> precision@n (= recall@n)."""
    top = [str(p) for p in ranked[:n]]
    return sum(p in flipped_paths for p in top) / n


def one_setting(name, work, files, labels, classes, rate, partner, trainings, seed):
    from cnncli.commands.audit import audit
    mode = "similar" if partner is not None else "random"
    tag = f"{name}_{mode}_{int(rate * 100)}"
    noisy, flipped = flip(labels, rate, partner, seed)
    data = work / "sets" / tag
    paths = write_set(data, files, noisy, classes)
    flipped_paths = {str(p) for p, f in zip(paths, flipped) if f}
    n = len(flipped_paths)
    cfg, t_train = train(name, data, work / "runs" / tag, len(classes))
    ckpt = work / "runs" / tag / "last.npz"
    out = {"data": name, "flips": mode, "rate": rate, "images": len(paths), "n": n,
           "train_s": round(t_train, 1), "loss_p_at_n": scores(loss_ranking(ckpt, data, paths), flipped_paths, n)}
    for key, kwargs in [("audit", {"checkpoint": ckpt})] + ([("audit_k", {"config": cfg})] if trainings else []):
        t0 = time.perf_counter()
        summary = audit(data, work / "audits" / f"{tag}_{key}", folds=5, seed=0, **kwargs)
        found = [r["path"] for r in summary["rows"] if r["issue"] == "label"]
        hit = sum(p in flipped_paths for p in found)
        out[f"{key}_p_at_n"] = scores(summary["ranking"], flipped_paths, n)
        out[f"{key}_suspects"] = len(found)
        out[f"{key}_precision"] = hit / len(found) if found else 0.0
        out[f"{key}_recall"] = hit / n
        out[f"{key}_s"] = round(time.perf_counter() - t0, 1)
        out[f"{key}_seconds"] = {k: round(v, 2) for k, v in summary["seconds"].items()}
    print(json.dumps(out), flush=True)
    return out


def partners(name, work, files, labels, classes):
    """Each class's most confused class, from a clean audit's out-of-fold probabilities."""
    from cnncli.commands.audit import gather, features
    from cnncli.commands.predict import load
    from cnncli.engine.confident import out_of_fold
    data = work / "sets" / f"{name}_clean"
    write_set(data, files, labels, classes)
    cfg, _ = train(name, data, work / "runs" / f"{name}_clean", len(classes))
    loaded = load(work / "runs" / f"{name}_clean" / "last.npz")
    imgs = gather(data)
    from cnncli.commands.audit import _decode
    decoded, _ = _decode(imgs, np.arange(len(imgs.files)), loaded.shape, loaded.resize)
    p = out_of_fold(features(loaded, decoded), imgs.labels, len(classes))
    mass = np.array([p[imgs.labels == j].mean(axis=0) for j in range(len(classes))])
    np.fill_diagonal(mass, -1)
    return mass.argmax(axis=1)


def labels_proof(work, datasets, trainings):
    results = []
    for name in datasets:
        files, labels, classes = source_images(name, work)
        partner = partners(name, work, files, labels, classes)
        print(f"{name}: similar classes {dict((classes[i], classes[j]) for i, j in enumerate(partner))}", flush=True)
        for mode in ("random", "similar"):
            for rate in (0.05, 0.20):
                results.append(one_setting(name, work, files, labels, classes, rate,
                                           partner if mode == "similar" else None, trainings, seed=1))
    (work / f"labels_{'_'.join(datasets)}.json").write_text(json.dumps(results, indent=1))


def draw(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = [k for k in ("loss_p_at_n", "audit_p_at_n", "audit_k_p_at_n") if any(k in r for r in results)]
    names = {"loss_p_at_n": "baseline: the trained model's loss", "audit_p_at_n": "audit --checkpoint",
             "audit_k_p_at_n": "audit --config (5 trainings)"}
    fig, ax = plt.subplots(figsize=(max(10, 1.0 * len(results)), 4))   # 0.8 an image: the labels touched
    x = np.arange(len(results))
    for i, k in enumerate(keys):
        ax.bar(x + (i - (len(keys) - 1) / 2) * 0.8 / len(keys), [r.get(k, 0) for r in results], 0.8 / len(keys),
               label=names[k])
    ax.axhline(0.8, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, [f"{r['data'].replace('_', ' ')}\n{r['flips']} {r['rate']:.0%}\nn={r['n']}".replace(" recipe", "\n(recipe)")
                      for r in results], fontsize=8)
    ax.set_ylabel("precision at n flips")
    ax.set_ylim(0, 1.18)
    ax.set_yticks(np.arange(0, 1.01, 0.2))
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    ax.set_title("finding flipped labels: precision among the first n (n = number of flips)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("labels", "figure"))
    ap.add_argument("work", type=Path)
    ap.add_argument("--datasets", default="digits,shapes")
    ap.add_argument("--trainings", action="store_true")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    if a.what == "labels":
        labels_proof(a.work.resolve(), a.datasets.split(","), a.trainings)
    else:   # every labels_*.json, and photos_labels.json of scripts/audit_photos.py, in one figure
        rows = [r for f in sorted(a.work.glob("labels_*.json")) for r in json.loads(f.read_text())]
        photos = a.work / "photos_labels.json"
        if photos.exists():
            rows += [r for r in json.loads(photos.read_text())["labels"] if "flips" in r]
        draw(rows, a.work / "labels.png")
