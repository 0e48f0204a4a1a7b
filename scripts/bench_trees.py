"""cnncli against cnncli: the same benchmark (scripts/bench.py's cnncli worker) on two source
trees, alternating, in one run, so that a refactor's cost is measured on the same machine at the
same time (the machines are shared and noisy). PyTorch plays no part. Batches as bench.py's:
64, and --batch224 (16) for the 224-pixel networks.

  git worktree add /tmp/before <commit>
  python scripts/bench_trees.py /tmp/before        # this tree against it
  python scripts/bench_trees.py /tmp/before . --repeats 5 --seconds 3

Each measurement is a fresh process of that tree's scripts/bench.py (its own imports, its own
numba cache); rows are medians over the rounds, and the ratio is this tree / the other.
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for the workers, as for bench.py's figures.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench import BATCH, LARGE  # noqa: E402  (beside this script; the 224-pixel networks run at --batch224)
NETS = ("lenet5", "vgg_cifar", "resnet20")
KEYS = ("train_ips", "infer_ips", "rss_mb")


def measure(tree, net, seconds, batch):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                            "PYTHONDONTWRITEBYTECODE")}
    out = subprocess.run([sys.executable, str(Path(tree) / "scripts" / "bench.py"), "--worker", "cnncli", net,
                          str(seconds), str(batch)], capture_output=True, text=True, env=env, cwd=tree)
    if out.returncode != 0:
        raise SystemExit(f"{tree}: the {net} worker failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="the other source tree (a git worktree of the commit before)")
    ap.add_argument("head", nargs="?", default=str(ROOT), help="this tree (default: the one holding this script)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--nets", nargs="+", default=list(NETS))
    ap.add_argument("--batch224", type=int, default=16, help="batch of the 224-pixel networks, as bench.py's")
    a = ap.parse_args()
    batch = {net: a.batch224 if net in LARGE else BATCH for net in a.nets}
    for tree in (a.base, a.head):   # compile (or load) each tree's kernels before the clock
        measure(tree, a.nets[0], 0.1, batch[a.nets[0]])
    print(f"{'network':10} {'figure':10} {'base':>10} {'head':>10} {'head/base':>9}")
    for net in a.nets:
        runs = {"base": [], "head": []}
        for r in range(a.repeats):   # alternate, and swap who goes first, so drift hits both
            order = ("base", "head") if r % 2 == 0 else ("head", "base")
            for side in order:
                runs[side].append(measure(getattr(a, side), net, a.seconds, batch[net]))
        for k in KEYS:
            base = statistics.median(x[k] for x in runs["base"])
            head = statistics.median(x[k] for x in runs["head"])
            print(f"{net:10} {k:10} {base:10.1f} {head:10.1f} {head / base:9.3f}", flush=True)


if __name__ == "__main__":
    main()
