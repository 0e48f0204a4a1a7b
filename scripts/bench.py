"""Race cnncli against PyTorch (CPU) on the same machine, in the same run.

  python scripts/bench.py              # prints the table
  python scripts/bench.py --write      # also regenerates BENCHMARKS.md

Each measurement runs in a fresh worker process (so peak RSS is its own), cnncli and PyTorch
alternate, and the table shows medians over --repeats rounds. Throughput is steady state:
after warm-up steps, on synthetic data of the right shape (it does not depend on pixel values).
PyTorch is optional: without it the script prints cnncli's figures alone.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NETS = {"lenet5": "configs/models/lenet5.yaml", "vgg_cifar": "configs/models/vgg_cifar.yaml"}
BATCH = 64


# --- workers: one measurement each, printed as JSON ------------------------------------------

def _peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed_loop(step, seconds):
    """Run step() until `seconds` pass (at least 3 times) -> seconds per step (median of 3 blocks)."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds / 3 or n < 3:
        step()
        n += 1
    per = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            step()
        per.append((time.perf_counter() - t) / n)
    return statistics.median(per)


def worker_cnncli(net, seconds):
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from cnncli import config
    from cnncli.losses import Loss
    from cnncli.optim import SGD

    arch = config.load_architecture(ROOT / NETS[net])
    model = arch.build(seed=0)
    opt = SGD(model.named_params(), 0.01, momentum=0.9)
    loss = Loss(model.head)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH,) + arch.input).astype(np.float32)
    y = rng.integers(0, model.n_classes, BATCH)

    def train_step():
        model.train_step(x, y, loss, opt)

    for _ in range(3):
        train_step()
    train = _timed_loop(train_step, seconds)
    infer = _timed_loop(lambda: model.predict_proba(x), seconds / 2)
    return {"train_ips": BATCH / train, "infer_ips": BATCH / infer, "rss_mb": _peak_rss_mb()}


def torch_model(arch):
    """The identical network in PyTorch (NCHW), from cnncli's own shape walk."""
    import torch.nn as nn
    import torch.nn.functional as F

    model = arch.build(build_params=False)
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU}
    mods = []
    for layer in model.layers:
        k = layer.kind
        if k in ("conv", "maxpool", "avgpool"):
            t, b, left, r = layer.pads
            if (t, left) != (b, r):
                mods.append(_Pad((left, r, t, b), F))
                pad = 0
            else:
                pad = (t, left)
            if k == "conv":
                mods.append(nn.Conv2d(layer.in_shape[2], layer.filters, layer.size, layer.stride, pad, bias=layer.bias))
            else:
                cls = nn.MaxPool2d if k == "maxpool" else nn.AvgPool2d
                mods.append(cls(layer.size, layer.stride, pad))
        elif k == "flatten":
            mods.append(nn.Flatten())
        elif k == "dense":
            mods.append(nn.Linear(layer.in_shape[0], layer.units, bias=layer.bias))
        elif k == "dropout":
            mods.append(nn.Dropout(layer.rate))
        elif k == "globalavgpool":
            mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        elif k == "batchnorm":
            mods.append((nn.BatchNorm2d if len(layer.in_shape) == 3 else nn.BatchNorm1d)(layer.in_shape[-1]))
        if layer.activation in acts and layer is not model.layers[-1]:
            mods.append(acts[layer.activation]())
    return nn.Sequential(*mods)


class _Pad:
    def __new__(cls, pads, F):
        import torch.nn as nn

        class Pad(nn.Module):
            def forward(self, x):
                return F.pad(x, pads)
        return Pad()


def worker_torch(net, seconds):
    import torch

    sys.path.insert(0, str(ROOT))
    from cnncli import config

    arch = config.load_architecture(ROOT / NETS[net])
    model = torch_model(arch)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    h, w, c = arch.input
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, c, h, w, generator=g)
    y = torch.randint(0, 10, (BATCH,), generator=g)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    model.train()
    for _ in range(3):
        train_step()
    train = _timed_loop(train_step, seconds)
    model.eval()

    def infer():
        with torch.no_grad():
            torch.softmax(model(x), dim=1)
    infer_t = _timed_loop(infer, seconds / 2)
    return {"train_ips": BATCH / train, "infer_ips": BATCH / infer_t, "rss_mb": _peak_rss_mb(),
            "threads": torch.get_num_threads(), "version": torch.__version__}


def worker_startup(kind):
    """Cold compile / warm start: model built, one training step and one prediction done."""
    t0 = time.perf_counter()
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from cnncli import config
    from cnncli.losses import Loss

    arch = config.load_architecture(ROOT / NETS[kind])
    model = arch.build(seed=0)
    x = np.zeros((2,) + arch.input, np.float32)
    model.gradients(x, np.zeros(2, np.int64), Loss(model.head))
    model.predict_proba(x)
    return {"seconds": time.perf_counter() - t0}


def run_worker(args, env=None, python=sys.executable):
    t = time.perf_counter()
    out = subprocess.run([python, __file__, "--worker", *args], capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["wall"] = time.perf_counter() - t
    return res


def command_seconds(argv, runs=5):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def have_torch():
    return subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0


# --- the race ---------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0, help="timing budget per measurement")
    ap.add_argument("--write", action="store_true", help="write BENCHMARKS.md")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        kind, *rest = a.worker
        res = {"cnncli": lambda: worker_cnncli(rest[0], float(rest[1])),
               "torch": lambda: worker_torch(rest[0], float(rest[1])),
               "startup": lambda: worker_startup(rest[0])}[kind]()
        print(json.dumps(res))
        return

    torch_ok = have_torch()
    lines = []

    def say(text=""):
        print(text, flush=True)
        lines.append(text)

    rows = {}
    for net in NETS:
        ours, theirs = [], []
        for _ in range(a.repeats):  # alternate, so drift on a shared machine hits both
            ours.append(run_worker(["cnncli", net, str(a.seconds)]))
            if torch_ok:
                theirs.append(run_worker(["torch", net, str(a.seconds)]))
        med = lambda runs, k: statistics.median(r[k] for r in runs) if runs else None  # noqa: E731
        rows[net] = {k: (med(ours, k), med(theirs, k)) for k in ("train_ips", "infer_ips", "rss_mb")}
        if theirs:
            rows[net]["torch"] = f"{theirs[0]['version']}, {theirs[0]['threads']} threads"

    sys.path.insert(0, str(ROOT))
    from cnncli import config
    from cnncli.summary import summarize
    macs = summarize(config.load_architecture(ROOT / NETS["vgg_cifar"]))["total_macs"]

    with tempfile.TemporaryDirectory() as cache:
        cold = run_worker(["startup", "vgg_cifar"], env={"NUMBA_CACHE_DIR": cache})
        warm = statistics.median(run_worker(["startup", "vgg_cifar"], env={"NUMBA_CACHE_DIR": cache})["wall"]
                                 for _ in range(3))
    cli = [sys.executable, "-m", "cnncli"]
    help_s = command_seconds(cli + ["--help"])
    inspect_s = command_seconds(cli + ["inspect", str(ROOT / NETS["vgg_cifar"])])
    predict_s = _predict_one_seconds(cli)

    def ratio(pair):
        a_, b_ = pair
        return f"{a_ / b_:.2f}×" if b_ else "n/a"

    def fmt(v, unit=""):
        return "n/a" if v is None else f"{v:,.0f}{unit}"

    say(f"machine: {platform.machine()}, {os.cpu_count()} cores, {_cpu_name()}; Python {platform.python_version()}")
    say(f"batch {BATCH}, SGD momentum 0.9, medians of {a.repeats} alternating rounds, each in a fresh process")
    if torch_ok:
        say(f"PyTorch {rows['lenet5'].get('torch', '')}")
    else:
        say("PyTorch not installed: cnncli figures only (pip install torch==2.13.0 to race it)")
    say()
    say("| network | figure | cnncli | PyTorch | cnncli / PyTorch |")
    say("| --- | --- | ---: | ---: | ---: |")
    for net, r in rows.items():
        say(f"| {net} | training images/s | {fmt(r['train_ips'][0])} | {fmt(r['train_ips'][1])} | {ratio(r['train_ips'])} |")
        say(f"| {net} | inference images/s | {fmt(r['infer_ips'][0])} | {fmt(r['infer_ips'][1])} | {ratio(r['infer_ips'])} |")
        say(f"| {net} | peak RSS, training (MB) | {fmt(r['rss_mb'][0])} | {fmt(r['rss_mb'][1])} | {ratio(r['rss_mb'])} |")
    gflops = macs * 2 * 3 * rows["vgg_cifar"]["train_ips"][0] / 1e9
    say()
    say(f"vgg_cifar: {macs:,} multiply-adds per image forward; training achieves {gflops:.1f} GFLOP/s "
        "(MACs × 2 × 3 × images/s)")
    say(f"cold start, empty JIT cache (build vgg_cifar, one training step, one prediction): {cold['wall']:.1f} s")
    say(f"warm start, JIT cache filled (the same, whole process): {warm:.2f} s")
    say(f"`cnncli --help`: {help_s:.2f} s; `cnncli inspect vgg_cifar.yaml`: {inspect_s:.2f} s; "
        f"`cnncli predict` one image, warm cache: {predict_s:.2f} s")
    if a.write:
        text = ["# Benchmarks", "", "Regenerated by `python scripts/bench.py --write`; never edited by hand.", "",
                "```", f"$ python scripts/bench.py --repeats {a.repeats} --seconds {a.seconds}", "```", ""] + lines
        (ROOT / "BENCHMARKS.md").write_text("\n".join(text) + "\n")
        print("wrote BENCHMARKS.md")


def _predict_one_seconds(cli):
    """A checkpoint of the quickstart-size net with random weights, and one PNG."""
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from cnncli import checkpoint, config

    with tempfile.TemporaryDirectory() as tmp:
        arch = config.load_architecture(ROOT / NETS["vgg_cifar"])
        model = arch.build(seed=0)
        ckpt = Path(tmp) / "model.npz"
        checkpoint.save(ckpt, model.state_dict(), {
            "architecture": arch.to_dict(), "classes": [str(i) for i in range(10)], "epoch": 0,
            "preprocessing": {"input": list(arch.input), "mean": [0.5] * 3, "std": [0.25] * 3, "resize": "stretch"}})
        img = Path(tmp) / "one.png"
        Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(img)
        subprocess.run(cli + ["predict", str(ckpt), str(img)], capture_output=True)  # fills the JIT cache
        return command_seconds(cli + ["predict", str(ckpt), str(img)], runs=3)


def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
