"""Data at 224 pixels, measured end to end: JPEG photos of mixed sizes -> decode cache -> augmented
batches -> training steps, against the same model's steps on preloaded arrays.

  python scripts/bench_data.py make WORK --n 50000 --val 400   # JPEG folders (skimage.data photos)
  python scripts/bench_data.py e2e WORK --n 2000 --epochs 3     # cnncli train vs the in-memory loop
  python scripts/bench_data.py rss WORK --n 10000 50000 --steps 300   # peak RSS against the data set size

make: each image is a random crop of one of scikit-image's colour photos (its class): 160-640
pixels a side, aspect 3:4..4:3, resized from a crop of 60-100% of that size where the photo allows
(upsampled where it is smaller), JPEG quality 85-95. WORK/jpeg/train/CLASS/NNNNNN.jpg and
WORK/jpeg/val/...; the subsets WORK/sets/nN/train are hard links to the first N training files.

e2e: `cnncli train` (commands.train.train) at 224x224 with flip and random_resized_crop, then, in
the same process, the same network's train_step on preloaded float32 batches of the same size.
The run decodes into a fresh cache (its own folder under WORK) before epoch 1; every epoch reads it.

rss: per N, one process decodes into a fresh cache; a second, fresh process trains --steps steps
from that cache (commands.train.train, stopped by its reporter) and reports its peak RSS (VmHWM,
which counts the memory map's resident pages), data_wait and images/s.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
          "stereo_motorcycle")
SMALL_CNN = {"input": [224, 224, 3], "layers": [
    {"conv": {"filters": 16, "size": 3, "stride": 2, "padding": "same", "activation": "relu"}},   # 112
    {"maxpool": {"size": 2}},                                                                     # 56
    {"conv": {"filters": 32, "size": 3, "padding": "same", "activation": "relu"}},
    {"maxpool": {"size": 2}},                                                                     # 28
    {"conv": {"filters": 64, "size": 3, "stride": 2, "padding": "same", "activation": "relu"}},   # 14
    "globalavgpool",
    {"dense": {"units": len(PHOTOS), "activation": "softmax"}}]}
AUGMENT = {"flip": True, "random_resized_crop": {"scale": [0.35, 1.0], "ratio": [0.75, 1.3333]}}


# --- make: the JPEG folders --------------------------------------------------------------------

_SOURCES = None


def _source(k):
    global _SOURCES
    if _SOURCES is None:
        import skimage.data as d
        from PIL import Image
        _SOURCES = []
        for name in PHOTOS:
            a = getattr(d, name)()
            _SOURCES.append(Image.fromarray(a[0] if isinstance(a, tuple) else a).convert("RGB"))
    return _SOURCES[k]


def _write_one(job):
    """(path, seed, index) -> bytes written: one random crop of photo index % classes."""
    import numpy as np
    from PIL import Image

    path, seed, i = job
    rng = np.random.default_rng([seed, i])
    src = _source(i % len(PHOTOS))
    w = int(rng.integers(160, 641))
    h = int(np.clip(round(w / np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))), 160, 640))
    z = min(1.0, src.width / w, src.height / h) * rng.uniform(0.6, 1.0)   # the crop: z times the output size
    cw, ch = max(8, int(w * z)), max(8, int(h * z))
    left, top = int(rng.integers(0, src.width - cw + 1)), int(rng.integers(0, src.height - ch + 1))
    img = src.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.BILINEAR)
    img.save(path, "JPEG", quality=int(rng.integers(85, 96)))
    return os.path.getsize(path)


def make(work, n, n_val, workers):
    from multiprocessing import Pool

    work = Path(work)
    jobs = []
    for role, count, seed in (("train", n, 1), ("val", n_val, 2)):
        for k, name in enumerate(PHOTOS):
            (work / "jpeg" / role / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            path = work / "jpeg" / role / PHOTOS[i % len(PHOTOS)] / f"{i:06d}.jpg"
            if not path.exists():
                jobs.append((str(path), seed, i))
    start = time.perf_counter()
    with Pool(workers) as pool:
        written = sum(pool.imap_unordered(_write_one, jobs, chunksize=64))
    seconds = time.perf_counter() - start
    print(json.dumps({"written": len(jobs), "mb": round(written / 2**20, 1), "seconds": round(seconds, 1)}))


def subset(work, n):
    """WORK/sets/nN/train: hard links to the first n training images (their own file list, so
    their own cache entry)."""
    work = Path(work)
    root = work / "sets" / f"n{n}" / "train"
    for i in range(n):
        name = PHOTOS[i % len(PHOTOS)]
        src, dst = work / "jpeg" / "train" / name / f"{i:06d}.jpg", root / name / f"{i:06d}.jpg"
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, dst)
    return root



# --- e2e: cnncli train against the in-memory loop ----------------------------------------------

def _config(work, model, train_dir, val_dir, cache, out, epochs, batch):
    import yaml

    cfg = {"model": model, "output": str(out),
           "data": {"train": str(train_dir), "val": str(val_dir) if val_dir else None, "resize": "stretch",
                    "cache_dir": str(cache), "augment": AUGMENT},
           "train": {"epochs": epochs, "batch_size": batch, "optimizer": "adam", "lr": 0.001, "seed": 0}}
    if not val_dir:
        cfg["data"]["val_split"] = 0.0
        del cfg["data"]["val"]
    path = Path(work) / f"{Path(out).name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _model(name):
    import yaml

    if name == "small":
        return SMALL_CNN
    m = yaml.safe_load((ROOT / "configs" / "models" / f"{name}.yaml").read_text())
    layers = list(m["layers"])
    layers[-1] = {"dense": {**layers[-1]["dense"], "units": len(PHOTOS)}}   # one output per photo
    return {**m, "input": [224, 224, 3], "layers": layers}


def _peak_rss_mb():
    """VmHWM: the process's peak resident set, file-backed (memory-mapped) pages included."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb():
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.split(":")[0] in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def in_memory(cfg_path, batches, steps):
    """The same network's train_step on `batches` preloaded float32 batches, cycled for `steps`
    steps (after 3 warm-up steps) -> images/s."""
    sys.path.insert(0, str(ROOT))
    from cnncli import config
    from cnncli.engine.losses import Loss
    from cnncli.engine.optim import from_config

    cfg = config.load_run(cfg_path, ())
    model = cfg.model.build(seed=cfg.train.seed)
    opt, loss = from_config(model.trainable_params(), cfg.train), Loss(model.head)
    for x, y in batches[:3]:
        model.train_step(x, y, loss, opt)
    start, seen = time.perf_counter(), 0
    for s in range(steps):
        x, y = batches[s % len(batches)]
        model.train_step(x, y, loss, opt)
        seen += len(y)
    return seen / (time.perf_counter() - start)


def e2e(work, n, epochs, batch, model_name, memory_steps):
    import csv
    import shutil

    sys.path.insert(0, str(ROOT))
    from cnncli.commands.train import train
    from cnncli.engine.progress import PlainReporter

    work = Path(work)
    train_dir = subset(work, n)
    cache, out = work / f"cache-e2e-{model_name}-{n}", work / "runs" / f"e2e-{model_name}-{n}"
    shutil.rmtree(cache, ignore_errors=True)   # a fresh cache: the run decodes, before epoch 1
    cfg_path = _config(work, _model(model_name), train_dir, work / "jpeg" / "val", cache, out, epochs, batch)
    start = time.perf_counter()
    train(cfg_path, force=True, reporter=PlainReporter(sys.stderr))
    wall = time.perf_counter() - start
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    # the in-memory loop: real batches of the cache (augmented, normalised), preloaded
    from cnncli.data.dataset import prepare
    from cnncli import config
    import numpy as np

    data = prepare(config.load_run(cfg_path, ()))
    it = data.train.epoch(np.random.default_rng(0), prefetch=0)
    batches = [next(it) for _ in range(min(8, len(data.train) - 1))]
    ips = in_memory(cfg_path, batches, memory_steps or len(data.train))
    return {"model": model_name, "n": n, "batch": batch, "wall_s": round(wall, 1),
            "epochs": [{"epoch": int(r["epoch"]), "images_per_s": round(float(r["images_per_s"]), 1),
                        "data_wait": round(float(r["data_wait"]), 4), "seconds": round(float(r["seconds"]), 1)}
                       for r in rows],
            "in_memory_images_per_s": round(ips, 1), "peak_rss_mb": round(_peak_rss_mb())}


# --- rss: 10,000 against 50,000 images ---------------------------------------------------------

def stop_after(steps):
    """A quiet reporter whose reader 'goes away' after `steps` batches: the trainer stops there as
    for a closed pipe (engine/progress.py's `gone`), saving last.npz with the epoch's partial sums."""
    from cnncli.engine.progress import QuietReporter

    class StopAfter(QuietReporter):
        def batch(self, done, loss, acc, images_per_s):
            if done >= steps:
                self.gone = True
    return StopAfter()


def decode_only(work, n):
    sys.path.insert(0, str(ROOT))
    from cnncli import config
    from cnncli.data.dataset import prepare

    work = Path(work)
    cfg_path = _config(work, SMALL_CNN, subset(work, n), None, work / f"cache-rss-{n}", work / "runs" / f"rss-{n}",
                       1, 32)
    start = time.perf_counter()
    data = prepare(config.load_run(cfg_path, ()))
    return {"n": n, "decode_s": round(time.perf_counter() - start, 1), "from_cache": data.decoded_from_cache,
            "decode_peak_rss_mb": round(_peak_rss_mb()), "cache_mb": round(data.train.images.nbytes / 2**20)}


def train_steps(work, n, steps):
    sys.path.insert(0, str(ROOT))
    from cnncli.commands.train import train
    from cnncli.engine.trainer import Interrupted
    from cnncli.model import checkpoint

    work = Path(work)
    out = work / "runs" / f"rss-{n}"
    cfg_path = work / f"{out.name}.yaml"
    start = time.perf_counter()
    try:
        train(cfg_path, force=True, reporter=stop_after(steps))
    except Interrupted:
        pass
    wall = time.perf_counter() - start
    _, meta = checkpoint.load(out / "last.npz")
    p = meta["state"]["partial"]
    return {"n": n, "steps": meta["state"]["batch"], "images_per_s": round(p["seen"] / p["seconds"], 1),
            "data_wait": round(p["wait"] / p["seconds"], 4), "train_s": round(p["seconds"], 1),
            "wall_s": round(wall, 1), "peak_rss_mb": round(_peak_rss_mb()), "end_rss_mb": _rss_mb()}


def rss(work, ns, steps, fresh):
    import shutil

    rows = []
    for n in ns:
        if fresh:   # decode again: the decoding process's own peak RSS
            shutil.rmtree(Path(work) / f"cache-rss-{n}", ignore_errors=True)
        row = {}
        for args in (["_decode", work, str(n)], ["_steps", work, str(n), str(steps)]):
            done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
            if done.returncode:
                sys.exit(done.stderr)
            row.update(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("work")
    m.add_argument("--n", type=int, default=50000)
    m.add_argument("--val", type=int, default=400)
    m.add_argument("--workers", type=int, default=2)
    e = sub.add_parser("e2e")
    e.add_argument("work")
    e.add_argument("--n", type=int, default=2000)
    e.add_argument("--epochs", type=int, default=3)
    e.add_argument("--batch", type=int, default=32)
    e.add_argument("--model", default="small", help="small, or a file of configs/models (mobilenet_v2)")
    e.add_argument("--memory-steps", type=int, default=0, help="in-memory loop steps (0: one epoch's)")
    r = sub.add_parser("rss")
    r.add_argument("work")
    r.add_argument("--n", type=int, nargs="+", default=[10000, 50000])
    r.add_argument("--steps", type=int, default=300)
    r.add_argument("--fresh", action="store_true", help="delete the caches first (the decode is measured)")
    if len(sys.argv) > 1 and sys.argv[1] in ("_decode", "_steps"):   # rss's worker processes
        fn = decode_only if sys.argv[1] == "_decode" else train_steps
        print(json.dumps(fn(sys.argv[2], *map(int, sys.argv[3:]))))
        return
    a = ap.parse_args()
    if a.cmd == "make":
        make(a.work, a.n, a.val, a.workers)
    elif a.cmd == "e2e":
        print(json.dumps(e2e(a.work, a.n, a.epochs, a.batch, a.model, a.memory_steps)))
    else:
        rss(a.work, a.n, a.steps, a.fresh)


if __name__ == "__main__":
    main()
