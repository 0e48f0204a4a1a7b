"""Race cnncli against PyTorch (CPU) on the same machine, in the same run.

  python scripts/bench.py              # prints the table
  python scripts/bench.py --write      # also regenerates BENCHMARKS.md
  python scripts/bench.py --nets resnet18 mobilenet_v2 --batch224 32 --avx2
  python scripts/bench.py --nets resnet18 mobilenet_v2 efficientnet_lite0 --avx2 --write
                                       # its own section of BENCHMARKS.md (bench-avx2-b16)
  python scripts/bench.py --write      # on a CPU without AVX-512: its own section (bench-cpu-avx2-b16)

The small networks (28-32 pixels) run at batch 64; the 224-pixel ones (ResNet-18, MobileNetV2,
EfficientNet-Lite0) at --batch224 (16), with one more row: a frozen backbone (every layer but
the classifier frozen: the backbone runs in inference mode, only the head trains), the step
fine-tuning on frozen features takes. --avx2 makes both sides use AVX2 code on an AVX-512 machine
(numba's NUMBA_CPU_NAME=haswell, OPENBLAS_CORETYPE=Haswell, PyTorch's ATEN_CPU_CAPABILITY=avx2
and ONEDNN_MAX_CPU_ISA=AVX2), as a machine without AVX-512 runs.

Each measurement runs in a fresh worker process (so peak RSS is its own; cnncli's adds what its
shard worker processes hold privately, _workers_private_mb), cnncli and PyTorch alternate, and
the table shows medians over --repeats rounds. Throughput is steady state: after warm-up steps,
on synthetic data of the right shape (it does not depend on pixel values).
PyTorch is optional: without it the script prints cnncli's figures alone. The PyTorch network is
scripts/torch_graph.py's TorchGraph, built from the same cnncli graph (layers + sources).
Both sides run with the same glibc malloc thresholds (cnncli/memory.keep_freed_memory, which
cnncli calls for itself: freed blocks kept for reuse, not handed back to the kernel). Without them
PyTorch's training step page-faults its activations in again whenever glibc's dynamic threshold
has not risen, and its figures were 14-22% lower (ResNet-20, VGG-CIFAR, ResNet-18, MobileNetV2)
and, for LeNet-5, 8.1-12.1k images/s from one run to the next (12.3k with the thresholds).
GFLOP/s are counted as direct convolution would need them (cnncli's multiply-adds × 2, × 3 for a
training step), beside the machine's float32 peak as numpy's BLAS reaches it on a 2048² matmul.
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
NETS = {"lenet5": "configs/models/lenet5.yaml", "vgg_cifar": "configs/models/vgg_cifar.yaml",
        "resnet20": "configs/models/resnet20.yaml", "resnet18": "configs/models/resnet18.yaml",
        "mobilenet_v2": "configs/models/mobilenet_v2.yaml",
        "efficientnet_lite0": "cnncli/pretrained/efficientnet_lite0.yaml"}
LARGE = ("resnet18", "mobilenet_v2", "efficientnet_lite0")   # 224 pixels: --batch224, and a frozen row
BATCH = 64
AVX2 = {"NUMBA_CPU_NAME": "haswell", "OPENBLAS_CORETYPE": "Haswell", "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2"}


# --- workers: one measurement each, printed as JSON ------------------------------------------

def _peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _workers_private_mb(model):
    """What cnncli's shard worker processes (parallel/processes.py) hold of their own, in MB: their
    private pages (written since the fork, or allocated), from /proc/PID/smaps_rollup, read after
    the training loop. Their malloc keeps freed blocks (memory.keep_freed_memory), so
    this is about their peak; the pages they share with the training process are counted there."""
    workers = model.shards.workers
    total = 0
    for pid in (workers.pids() if workers is not None else []):
        with open(f"/proc/{pid}/smaps_rollup") as f:
            total += sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean", "Private_Dirty")))
    return total / 1024


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


def worker_cnncli(net, seconds, batch=BATCH):
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from cnncli import config
    from cnncli.engine.losses import Loss
    from cnncli.engine.optim import SGD

    arch = config.load_architecture(ROOT / NETS[net])
    model = arch.build(seed=0)
    opt = SGD(model.named_params(), 0.01, momentum=0.9)
    loss = Loss(model.head)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + arch.input).astype(np.float32)
    y = rng.integers(0, model.n_classes, batch)

    def train_step():
        model.train_step(x, y, loss, opt)

    for _ in range(3):
        train_step()
    train = _timed_loop(train_step, seconds)
    rss = _peak_rss_mb() + _workers_private_mb(model)   # the training peak, before the inference loop
    infer = _timed_loop(lambda: model.predict_proba(x), seconds / 2)
    out = {"train_ips": batch / train, "infer_ips": batch / infer, "rss_mb": rss}
    if net in LARGE:           # every layer but the classifier frozen: train.freeze up to layer -2
        from cnncli.model import freeze
        freeze.apply(model, len(model.layers) - 2)
        opt = SGD(model.trainable_params(), 0.01, momentum=0.9)
        for _ in range(2):
            train_step()
        out["frozen_ips"] = batch / _timed_loop(train_step, seconds / 2)
    return out


def worker_torch(net, seconds, batch=BATCH):
    sys.path.insert(0, str(ROOT))
    from cnncli.memory import keep_freed_memory
    keep_freed_memory()      # as cnncli sets them for itself; loads no numba (see the docstring)

    import torch
    from cnncli import config

    sys.path.insert(0, str(ROOT / "scripts"))
    from torch_graph import torch_graph

    arch = config.load_architecture(ROOT / NETS[net])
    graph = arch.build(build_params=False)  # shapes only: cnncli's arrays stay out of this RSS
    model = torch_graph(graph)              # PyTorch's default initialisation
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    h, w, c = arch.input
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, c, h, w, generator=g)
    y = torch.randint(0, graph.n_classes, (batch,), generator=g)
    if graph.head == "sigmoid":  # the same fused loss as cnncli's sigmoid head
        bce = torch.nn.BCEWithLogitsLoss()
        yf = y.float()[:, None]

        def loss_fn(z, _):
            return bce(z, yf)
    else:
        loss_fn = torch.nn.CrossEntropyLoss()

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    model.train()
    for _ in range(3):
        train_step()
    train = _timed_loop(train_step, seconds)
    rss = _peak_rss_mb()
    model.eval()

    def infer():
        with torch.no_grad():
            model.probabilities(x)
    infer_t = _timed_loop(infer, seconds / 2)
    out = {"train_ips": batch / train, "infer_ips": batch / infer_t, "rss_mb": rss,
           "threads": torch.get_num_threads(), "version": torch.__version__}
    if net in LARGE:           # the backbone fixed and in eval mode (as cnncli's frozen layers)
        for p in model.parameters():
            p.requires_grad_(False)
        model.layers[-1].train()
        for p in model.layers[-1].parameters():
            p.requires_grad_(True)
        opt = torch.optim.SGD(model.layers[-1].parameters(), lr=0.01, momentum=0.9)
        for _ in range(2):
            train_step()
        out["frozen_ips"] = batch / _timed_loop(train_step, seconds / 2)
    return out


def worker_peak(size=2048):
    """The machine's float32 peak as numpy's BLAS reaches it (with its own threads): the best of
    several size x size x size matmuls -> GFLOP/s."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size)).astype(np.float32) for _ in range(2))
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # warm-up: threads started, pages touched
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < 1.0 or best == float("inf"):
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t)
    return {"gflops": 2 * size ** 3 / best / 1e9, "blas": _blas_name()}


def _blas_name():
    """numpy's BLAS, with the kernels OpenBLAS chose for this CPU ("scipy-openblas, SkylakeX
    kernels"): the same library runs about half as fast with its AVX2 (Haswell) kernels on an
    AVX-512 CPU, and OPENBLAS_CORETYPE in the environment overrides its choice."""
    import ctypes

    import numpy as np
    try:
        name = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # older numpy: no dict form
        name = "numpy's BLAS"
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
    except OSError:   # not Linux
        paths = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for fn in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename"):
            if hasattr(lib, fn):
                getattr(lib, fn).restype = ctypes.c_char_p
                forced = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("OPENBLAS_"))
                how = f"{forced} in the environment" if forced else "OpenBLAS's own choice"
                return f"{name}, {getattr(lib, fn)().decode()} kernels ({how})"
    return name


def worker_startup(kind):
    """Cold compile / warm start: model built, one training step and one prediction done."""
    t0 = time.perf_counter()
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from cnncli import config
    from cnncli.engine.losses import Loss

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


def command_seconds(argv, runs=5, env=None):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False, env={**os.environ, **(env or {})})
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
    ap.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    ap.add_argument("--batch224", type=int, default=16, help="batch size of the 224-pixel networks")
    ap.add_argument("--avx2", action="store_true", help="AVX2 code only, on both sides (an AVX-512 machine "
                    "measuring as one without)")
    ap.add_argument("--no-e2e", action="store_true", help="leave out the end-to-end line (bench_data.py e2e, "
                    "about 20 s)")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        kind, *rest = a.worker
        batch = int(rest[2]) if len(rest) > 2 else BATCH
        res = {"cnncli": lambda: worker_cnncli(rest[0], float(rest[1]), batch),
               "torch": lambda: worker_torch(rest[0], float(rest[1]), batch),
               "startup": lambda: worker_startup(rest[0]),
               "peak": lambda: worker_peak()}[kind]()
        print(json.dumps(res))
        return

    if a.avx2 and a.write and not has_avx512():   # its sections hold an AVX-512 CPU's emulation
        ap.error("--avx2 --write: this CPU has no AVX-512 (its own code is AVX2): leave --avx2 out")
    section = _section_name(a)
    if a.write and section is None and set(a.nets) != set(NETS):
        ap.error("--write regenerates all of BENCHMARKS.md: run every network (leave --nets out)")
    torch_ok = have_torch()
    lines = []
    # Every process below loads cnncli's modules as a user's Python does, from the .pyc it wrote
    # the first time: with PYTHONDONTWRITEBYTECODE set (some workplaces set it), a module edited
    # since its last .pyc is compiled again at every start, which the startup figures then include.
    no_pyc = os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None

    def say(text=""):
        print(text, flush=True)
        lines.append(text)

    med = lambda runs, k: statistics.median(r[k] for r in runs) if runs else None  # noqa: E731
    env = AVX2 if a.avx2 else {}
    batches = {net: a.batch224 if net in LARGE else BATCH for net in a.nets}
    rows, peaks = {}, []
    for net in a.nets:
        ours, theirs = [], []
        args = [net, str(a.seconds), str(batches[net])]
        for _ in range(a.repeats):  # alternate, so drift on a shared machine hits both
            ours.append(run_worker(["cnncli", *args], env))
            if torch_ok:
                theirs.append(run_worker(["torch", *args], env))
            peaks.append(run_worker(["peak"], env))  # between the races: the same drift
        keys = ("train_ips", "infer_ips", "rss_mb") + (("frozen_ips",) if net in LARGE else ())
        rows[net] = {k: (med(ours, k), med(theirs, k)) for k in keys}
        if theirs:
            rows[net]["torch"] = f"{theirs[0]['version']}, {theirs[0]['threads']} threads"
    peak = med(peaks, "gflops")

    sys.path.insert(0, str(ROOT))
    from cnncli import config

    def macs_of(net):
        """Multiply-adds per image forward, as direct convolution and dense layers need them."""
        model = config.load_architecture(ROOT / NETS[net]).build(build_params=False)
        return sum(layer.macs() for layer in model.layers)

    with tempfile.TemporaryDirectory() as cache:
        cold = run_worker(["startup", "vgg_cifar"], env={**env, "NUMBA_CACHE_DIR": cache})
        warm = statistics.median(run_worker(["startup", "vgg_cifar"], env={**env, "NUMBA_CACHE_DIR": cache})["wall"]
                                 for _ in range(3))
    cli = [sys.executable, "-m", "cnncli"]
    help_s = command_seconds(cli + ["--help"], env=env)     # --avx2: these with AVX2 code too
    inspect_s = command_seconds(cli + ["inspect", str(ROOT / NETS["vgg_cifar"])], env=env)
    predict_s = _predict_one_seconds(cli, env)

    def ratio(pair):
        a_, b_ = pair
        return f"{a_ / b_:.2f}×" if b_ else "n/a"

    def fmt(v, unit="", digits=None):
        if v is None:
            return "n/a"
        return f"{v:,.{digits if digits is not None else (1 if v < 100 else 0)}f}{unit}"

    say(f"machine: {platform.machine()}, {os.cpu_count()} cores, {_cpu_name()}; Python {platform.python_version()}")
    say(f"numpy's BLAS: {peaks[0]['blas']}")
    if no_pyc:
        say("PYTHONDONTWRITEBYTECODE was set: unset for these runs (modules load from their .pyc)")
    say(f"batch {BATCH} (28-32 pixels), {a.batch224} (224 pixels), SGD momentum 0.9, medians of {a.repeats} "
        "alternating rounds, each in a fresh process")
    if a.avx2:
        say("AVX2 only: " + ", ".join(f"{k}={v}" for k, v in AVX2.items()) + " in every worker")
    if torch_ok:
        say(f"PyTorch {next(iter(rows.values())).get('torch', '')}; glibc's malloc thresholds set as cnncli "
            "sets its own (mmap 32 MiB, trim 1 GiB) on both sides")
    else:
        say("PyTorch not installed: cnncli figures only (pip install torch==2.13.0 to race it)")
    say()
    say("| network | figure | cnncli | PyTorch | cnncli / PyTorch |")
    say("| --- | --- | ---: | ---: | ---: |")
    for net, r in rows.items():
        say(f"| {net} | training images/s | {fmt(r['train_ips'][0])} | {fmt(r['train_ips'][1])} | {ratio(r['train_ips'])} |")
        say(f"| {net} | inference images/s | {fmt(r['infer_ips'][0])} | {fmt(r['infer_ips'][1])} | {ratio(r['infer_ips'])} |")
        say(f"| {net} | peak RSS, training (MB) | {fmt(r['rss_mb'][0])} | {fmt(r['rss_mb'][1])} | {ratio(r['rss_mb'])} |")
        if "frozen_ips" in r:
            say(f"| {net} | frozen backbone, head training images/s | {fmt(r['frozen_ips'][0], '', 1)} | "
                f"{fmt(r['frozen_ips'][1], '', 1)} | {ratio(r['frozen_ips'])} |")
    say()
    say(f"machine peak: {peak:.1f} GFLOP/s (float32 2048×2048 matmul in numpy, its BLAS's own threads; "
        f"median of {len(peaks)} runs, best of each)")
    say("GFLOP/s as direct convolution would need them (multiply-adds × 2 × images/s; × 3 for a training "
        "step: forward, input gradient, weight gradient), cnncli / PyTorch, (share of the peak):")

    def gf(ips, macs, factor):
        if ips is None:
            return "n/a"
        g = macs * 2 * factor * ips / 1e9
        return f"{g:.1f} ({g / peak:.0%})"

    for net, r in rows.items():
        macs = macs_of(net)
        say(f"- {net}: {macs:,} multiply-adds per image forward; training {gf(r['train_ips'][0], macs, 3)} / "
            f"{gf(r['train_ips'][1], macs, 3)}; inference {gf(r['infer_ips'][0], macs, 1)} / "
            f"{gf(r['infer_ips'][1], macs, 1)}")
    say(f"cold start, empty JIT cache (build vgg_cifar, one training step, one prediction): {cold['wall']:.1f} s")
    say(f"warm start, JIT cache filled (the same, whole process): {warm:.2f} s")
    say(f"`cnncli --help`: {help_s:.2f} s; `cnncli inspect vgg_cifar.yaml`: {inspect_s:.2f} s; "
        f"`cnncli predict` one image (vgg_cifar), warm cache: {predict_s:.2f} s")
    if not a.no_e2e:
        say(end_to_end_line(end_to_end(env)))
    if a.write and section is not None:
        write_section(ROOT / "BENCHMARKS.md", section, [f"## {_section_title(a)}", "", "```",
                      "$ python scripts/bench.py " + " ".join(sys.argv[1:]), "```", ""] + lines)
        print(f"wrote BENCHMARKS.md's {section} section")
    elif a.write:
        text = ["# Benchmarks", "", "Regenerated by `python scripts/bench.py --write`; never edited by hand.", "",
                "```", f"$ python scripts/bench.py --repeats {a.repeats} --seconds {a.seconds}", "```", ""] + lines
        kept = kept_sections(ROOT / "BENCHMARKS.md")
        (ROOT / "BENCHMARKS.md").write_text("\n".join(text) + "\n" + kept)
        print("wrote BENCHMARKS.md")


E2E = {"n": 1000, "val": 100, "epochs": 3, "batch": 32}   # bench_data.py e2e's run in bench.py


def end_to_end(env):
    """bench_data.py's e2e in a temporary folder (its JPEGs written there first) -> its JSON, or a
    string saying why not (no scikit-image, whose photos the JPEGs are cut from)."""
    if subprocess.run([sys.executable, "-c", "import skimage"], capture_output=True).returncode != 0:
        return "scikit-image is not installed (pip install scikit-image)"
    script, full = str(ROOT / "scripts" / "bench_data.py"), {**os.environ, **env}
    with tempfile.TemporaryDirectory() as work:
        made = subprocess.run([sys.executable, script, "make", work, "--n", str(E2E["n"]), "--val", str(E2E["val"])],
                              capture_output=True, text=True, env=full)
        out = made if made.returncode else subprocess.run(
            [sys.executable, script, "e2e", work, "--n", str(E2E["n"]), "--epochs", str(E2E["epochs"]),
             "--batch", str(E2E["batch"])], capture_output=True, text=True, env=full)
    if out.returncode:      # the line says so; the run's other figures are still written
        return "bench_data.py failed: " + (out.stderr.strip().splitlines() or ["no output"])[-1]
    return json.loads(out.stdout.strip().splitlines()[-1])


def end_to_end_line(r):
    """The end-to-end figure, one line: epochs 2..E (the first compiles) against the in-memory loop."""
    head = (f"end to end (scripts/bench_data.py e2e: `cnncli train` on {E2E['n']:,} JPEG photos of mixed sizes "
            f"decoded into its cache, 224×224, flip + random resized crop, a small CNN, Adam, batch {E2E['batch']})")
    if isinstance(r, str):
        return f"{head}: not run, {r}"
    later = [e for e in r["epochs"] if e["epoch"] > 1]
    ips = len(later) / sum(1 / e["images_per_s"] for e in later)   # images over the epochs' time (n each)
    wait = max(e["data_wait"] for e in later)
    return (f"{head}: epochs 2-{r['epochs'][-1]['epoch']} {ips:.0f} images/s, data wait at most {wait:.1%} of an "
            f"epoch; the same network's steps on preloaded batches of that data {r['in_memory_images_per_s']:.0f} "
            f"images/s: end to end / in memory {ips / r['in_memory_images_per_s']:.2f}×; peak RSS "
            f"{r['peak_rss_mb']:,} MB")


def has_avx512():
    """Does this CPU have AVX-512 (Linux's /proc/cpuinfo; False where it cannot tell)?"""
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def _section_name(a):
    """The BENCHMARKS.md section a run other than the default one (an AVX-512 CPU's own code,
    224-pixel batch 16, every network) writes with --write: None for the default run (the top).
    A CPU without AVX-512 writes its own sections (bench-cpu-avx2-b16), not the top: the top
    stays the AVX-512 machine's, and --avx2's emulation stays beside the real thing."""
    if not a.avx2 and a.batch224 == 16 and has_avx512():
        return None
    kind = "-avx2" if a.avx2 else "" if has_avx512() else "-cpu-avx2"
    return f"bench{kind}-b{a.batch224}"


def _section_title(a):
    isa = "AVX2 code only (NUMBA_CPU_NAME, OPENBLAS_CORETYPE, ATEN and oneDNN told so, both sides)" if a.avx2 \
        else "The CPU's own code" if has_avx512() else f"A CPU without AVX-512 ({_cpu_name()}), its own code"
    return f"{isa}; 224-pixel networks at batch {a.batch224}"


def write_section(path, name, lines):
    """Put lines between <!-- name --> and <!-- /name --> in path, replacing that section only."""
    import re

    text = path.read_text() if path.exists() else ""
    block = f"\n<!-- {name} -->\n" + "\n".join(lines) + f"\n<!-- /{name} -->\n"
    pattern = re.compile(rf"\n<!-- {re.escape(name)} -->\n.*?\n<!-- /{re.escape(name)} -->\n", flags=re.S)
    path.write_text(pattern.sub(lambda m: block, text) if pattern.search(text) else text + block)


def kept_sections(path):
    """The sections other scripts write into BENCHMARKS.md (between <!-- name --> and <!-- /name -->,
    e.g. scripts/augment_speed.py's), carried over when this script rewrites the file."""
    import re

    text = path.read_text() if path.exists() else ""
    return "".join(m.group(0) for m in re.finditer(r"\n<!-- ([\w-]+) -->\n.*?\n<!-- /\1 -->\n", text, flags=re.S))


def _predict_one_seconds(cli, env=None):
    """A checkpoint of vgg_cifar with random weights, and one PNG."""
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from cnncli import config
    from cnncli.model import checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        arch = config.load_architecture(ROOT / NETS["vgg_cifar"])
        model = arch.build(seed=0)
        ckpt = Path(tmp) / "model.npz"
        checkpoint.save(ckpt, model.state_dict(), {
            "architecture": arch.to_dict(), "classes": [str(i) for i in range(10)], "epoch": 0,
            "preprocessing": {"input": list(arch.input), "mean": [0.5] * 3, "std": [0.25] * 3, "resize": "stretch"}})
        img = Path(tmp) / "one.png"
        Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(img)
        subprocess.run(cli + ["predict", str(ckpt), str(img)], capture_output=True,   # fills the JIT cache
                       env={**os.environ, **(env or {})})
        return command_seconds(cli + ["predict", str(ckpt), str(img)], runs=3, env=env)


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
