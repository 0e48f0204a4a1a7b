"""Frozen ImageNet features, full fine-tuning, training from scratch and a reference linear probe,
on two small real-photo tasks built from scikit-image's `data` module (photos that ship in the
package, no download).

  objects:  chelsea (cat), coffee, astronaut, rocket, hubble_deep_field (colour photos)
  textures: brick, grass, gravel, moon, cell (grayscale photos)

Each class is one photo; train and val crops come from one side of it (the left 60% for objects,
the top 60% for textures), test crops from the other (disjoint regions); square crops of varied
size (48-160 px), saved as PNG. Per task: (a) `cnncli init --data` from scratch, (b) `cnncli init
--pretrained efficientnet_lite0` phase 1 (train.yaml: the head on cached frozen features), (c)
its phase 2 (finetune.yaml: the whole network from (b)'s best.npz), each trained, evaluated on
test and timed (wall clock of `cnncli train`, a fresh decode cache per run: decoding included),
and (d) the reference linear probe (scripts/linear_probe.py, PyTorch + scikit-learn).

  python scripts/finetune_proof.py WORKDIR [--probe-python /work/torchvenv/bin/python]
      [--train 40] [--phase2-epochs N] [--tasks objects,textures] [--runs scratch,phase1,phase2,probe]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as photos

TASKS = {"objects": (("chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field"), "x"),
         "textures": (("brick", "grass", "gravel", "moon", "cell"), "y")}
VAL, TEST, SEED = 10, 20, 0


def crops(img, n, lo, hi, axis, rng):
    """n square crops of side 48-160 px from the [lo, hi) share of the photo along axis x or y."""
    h, w = img.shape[:2]
    out = []
    for _ in range(n):
        along = w if axis == "x" else h
        across = h if axis == "x" else w
        side = int(rng.integers(48, min(160, across, int((hi - lo) * along)) + 1))
        a = int(rng.integers(int(lo * along), int(hi * along) - side + 1))
        b = int(rng.integers(0, across - side + 1))
        y, x = (b, a) if axis == "x" else (a, b)
        out.append(img[y:y + side, x:x + side])
    return out


def build(root, task, n_train):
    rng = np.random.default_rng(SEED)
    names, axis = TASKS[task]
    for name in names:
        img = getattr(photos, name)()
        for split, n, lo, hi in (("train", n_train, 0.0, 0.6), ("val", VAL, 0.0, 0.6), ("test", TEST, 0.6, 1.0)):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i, c in enumerate(crops(img, n, lo, hi, axis, rng)):
                Image.fromarray(c).save(d / f"{i}.png")


def run(*args, cache=None):
    env = dict(os.environ, **({"CNNCLI_CACHE": str(cache)} if cache else {}))
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "cnncli", *args], capture_output=True, text=True, env=env)
    if p.returncode:
        sys.exit(f"cnncli {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}")
    return p.stdout + p.stderr, time.perf_counter() - start


def accuracy(text):
    m = re.search(r"accuracy[^0-9]*([0-9.]+)(%?)", text, re.I)
    value = float(m.group(1))
    return value / 100 if m.group(2) else value


def trained(work, name, config, *extra):
    out, seconds = run("train", str(config), "--force", *extra, cache=work / f"cache-{name}")
    return out, seconds


def task_run(work, task, args):
    folder = work / task / "photos"
    build(folder, task, args.train)
    rows = {}
    scratch, pre = work / task / "scratch", work / task / "pretrained"
    if "scratch" in args.runs:
        run("init", str(scratch), "--data", str(folder), "--force")
        _, t = trained(work / task, "scratch", scratch / "train.yaml", "--set", f"output={scratch / 'run'}")
        rows["scratch (init --data)"] = (scratch / "run", t)
    log1 = log2 = ""
    if "phase1" in args.runs:
        run("init", str(pre), "--data", str(folder), "--pretrained", "efficientnet_lite0", "--force")
        log1, t = trained(work / task, "phase1", pre / "train.yaml", "--set", f"output={pre / 'phase1'}")
        rows["frozen features (phase 1)"] = (pre / "phase1", t)
    if "phase2" in args.runs:
        phase2 = ["--set", f"output={pre / 'phase2'}", "--set", f"train.init={pre / 'phase1' / 'best.npz'}"]
        if args.phase2_epochs:
            phase2 += ["--set", f"train.epochs={args.phase2_epochs}"]
        log2, t = trained(work / task, "phase2", pre / "finetune.yaml", *phase2)
        rows["full fine-tuning (phase 2)"] = (pre / "phase2", t)
    result = {}
    for label, (run_dir, seconds) in rows.items():
        ev, _ = run("evaluate", str(run_dir / "best.npz"), str(folder / "test"))
        result[label] = {"test_acc": accuracy(ev), "seconds": seconds}
        print(f"{task}: {label}: test accuracy {result[label]['test_acc']:.4f}, train wall {seconds:.0f}s", flush=True)
    result["cache line"] = [line for line in log1.splitlines() if line.startswith("feature cache")]
    result["phase 2 start"] = [line for line in log2.splitlines() if line.startswith(("start:", "done:"))]
    if "probe" in args.runs and args.probe_python:
        result["reference linear probe"] = probe(folder, task, args)
    return result


def probe(folder, task, args):
    from cnncli.pretrained.catalog import CATALOG

    start = time.perf_counter()
    p = subprocess.run([args.probe_python, str(Path(__file__).parent / "linear_probe.py"), str(folder),
                        str(CATALOG["efficientnet_lite0"].weights_path())], capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"linear probe failed:\n{p.stderr}")
    result = json.loads(p.stdout.strip().splitlines()[-1])
    result["seconds"] = time.perf_counter() - start
    print(f"{task}: reference linear probe: test accuracy {result['test_acc']:.4f}, wall {result['seconds']:.0f}s",
          flush=True)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work")
    ap.add_argument("--probe-python", default="/work/torchvenv/bin/python")
    ap.add_argument("--train", type=int, default=40, help="training crops per class (<= 100)")
    ap.add_argument("--phase2-epochs", type=int, default=None)
    ap.add_argument("--tasks", default="objects,textures")
    ap.add_argument("--runs", default="scratch,phase1,phase2,probe", help="which of them to run")
    args = ap.parse_args()
    work = Path(args.work)
    results = {task: task_run(work, task, args) for task in args.tasks.split(",")}
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
