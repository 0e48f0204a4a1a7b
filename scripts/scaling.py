"""Data-parallel scaling: processes against threads on this machine, the bytes each step's
all-reduce moves, and a model of the step time on 8 and 64 machines.

  python scripts/scaling.py                 # all three networks, about 2 minutes on 2 cores
  python scripts/scaling.py --nets lenet5 --seconds 2
  python scripts/scaling.py --rate lenet5=17787 --rate vgg_cifar=734 --rate resnet20=466   # model at these rates

Measured here: training images/s of one process with all the cores' threads against as many
processes of one thread (mpiexec from `pip install 'cnncli[mpi]'`), both through the one step
(parallel/mpi.py's step: share of the batch, gradients_ready, the all-reduce), on synthetic data, the
global batch the same; rounds alternate, medians are shown. And the seconds one all-reduce of the
step's flat buffer takes between the processes of this machine (shared memory).

Modelled (a ring all-reduce between machines, as MPI does for large buffers):
  t_comm = 2 (N-1)/N x bytes / bandwidth + 2 (N-1) x alpha                 (the gradients)
         + 3 x batchnorm layers x ceil(log2 N) x alpha                      (synchronised batchnorm:
                                                                            3 small all-reduces each,
                                                                            latency-bound)
  t_comp = global batch / (N x R),  R = one machine's training images/s (measured here)
Communication is not overlapped with computation (the all-reduce follows the backward pass).
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NETS = {"lenet5": "configs/models/lenet5.yaml", "vgg_cifar": "configs/models/vgg_cifar.yaml",
        "resnet20": "configs/models/resnet20.yaml"}
ALPHA = 30e-6          # seconds per message between machines (MPI over TCP on Ethernet)
LINKS = (10e9, 25e9)   # bits/s
MACHINES = (8, 64)


# --- the worker: runs alone, or as every process of an mpiexec -----------------------------

def worker(net, batch, seconds):
    import time

    import numpy as np

    sys.path.insert(0, str(ROOT))
    from cnncli import config
    from cnncli.data.share import piece
    from cnncli.parallel.world import world
    from cnncli.engine.losses import Loss
    from cnncli.engine.optim import SGD

    comm = world()
    model = config.load(ROOT / NETS[net]).build(seed=0)
    comm.attach(model)
    opt = SGD(model.named_params(), 0.01, momentum=0.9)
    loss = Loss(model.head)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch,) + model.input_shape).astype(np.float32)
    y = rng.integers(0, model.n_classes, batch)
    lo, hi = piece(0, batch, comm.rank, comm.size)
    xs, ys = x[lo:hi], y[lo:hi]

    def step():
        comm.step(model, xs, ys, loss, opt)

    def timed(fn, n):
        comm.any(False)  # start together
        start = time.perf_counter()
        for _ in range(n):
            fn()
        comm.any(False)
        return (time.perf_counter() - start) / n
    per = timed(step, 3)                              # warm-up; also sizes the blocks
    n = comm.bcast(max(3, int(seconds / 3 / per)))    # rank 0's count: every process the same steps
    per = statistics.median(timed(step, n) for _ in range(3))
    out = {"images_per_s": batch / per, "processes": comm.size}
    if comm.size > 1:  # the step's all-reduce alone, as a step makes it (watched)
        from mpi4py import MPI
        alone = lambda: comm.collective(lambda: comm.comm.Allreduce(MPI.IN_PLACE, comm.flat, op=MPI.SUM), 60)  # noqa: E731
        out["allreduce_s"] = statistics.median(timed(alone, 20) for _ in range(5))
    if comm.root:
        print(json.dumps(out), flush=True)


# --- the driver -------------------------------------------------------------------------------

def measure(net, processes, threads, batch, seconds):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "SLURM_"))}
    env["CNNCLI_THREADS"] = str(threads)
    cmd = [sys.executable, __file__, "--worker", net, "--batch", str(batch), "--seconds", str(seconds)]
    if processes > 1:
        cmd = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(processes)] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def step_bytes(net):
    """-> (bytes of the step's all-reduce, batchnorm layers, bytes of their sums per step)."""
    sys.path.insert(0, str(ROOT))
    from cnncli import config
    from cnncli.parallel.single import TRAILER

    model = config.load(ROOT / NETS[net]).build(build_params=False)
    params = sum(layer.n_params() for layer in model.layers)
    norms = [layer for layer in model.layers if layer.kind == "batchnorm"]
    # per batchnorm layer: (C + 1) + C float64 values forward, 2C + 1 backward
    bn_bytes = sum(8 * ((layer.in_shape[-1] + 1) + layer.in_shape[-1] + (2 * layer.in_shape[-1] + 1))
                   for layer in norms)
    return 4 * (params + len(TRAILER)), len(norms), bn_bytes, params


def model_time(nbytes, norms, machines, bandwidth, batch, rate):
    comm = (2 * (machines - 1) / machines * nbytes * 8 / bandwidth + 2 * (machines - 1) * ALPHA
            + 3 * norms * math.ceil(math.log2(machines)) * ALPHA)
    comp = batch / (machines * rate)
    # the batch for which comm is 10% of the step: comp = 9 comm
    return comm, comp, math.ceil(9 * comm * machines * rate)


def half_way(nbytes, norms, bandwidth, batch, rate):
    """The fewest machines at which communication takes half of the step at this global batch."""
    for machines in range(2, 4097):
        comm, comp, _ = model_time(nbytes, norms, machines, bandwidth, batch, rate)
        if comm >= comp:
            return machines
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    ap.add_argument("--batch", type=int, default=64, help="global batch (default 64)")
    ap.add_argument("--seconds", type=float, default=4.0, help="per measurement (default 4)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--rate", action="append", default=[], metavar="NET=IMAGES_PER_S",
                    help="one machine's training images/s for the model, instead of the 1-process measurement")
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.batch, args.seconds)
    cores = len(os.sched_getaffinity(0))
    print(f"$ python scripts/scaling.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"machine: {cores} cores; global batch {args.batch}, SGD momentum 0.9, synthetic data; medians of "
          f"{args.rounds} alternating rounds, each in fresh processes\n")
    print(f"| network | parameters | all-reduce per step | batchnorm sums per step | 1 process x {cores} threads "
          f"| {cores} processes x 1 thread | ratio | one all-reduce here |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    measured = {}
    rates = {k: float(v) for k, v in (r.split("=") for r in args.rate)}
    for net in args.nets:
        one, many, reduce_s = [], [], []
        for _ in range(args.rounds):
            one.append(measure(net, 1, cores, args.batch, args.seconds)["images_per_s"])
            m = measure(net, cores, 1, args.batch, args.seconds)
            many.append(m["images_per_s"])
            reduce_s.append(m["allreduce_s"])
        nbytes, norms, bn_bytes, params = step_bytes(net)
        r1, rn = statistics.median(one), statistics.median(many)
        measured[net] = (nbytes, norms, rates.get(net, r1))
        bn = f"{norms} layers: {3 * norms} all-reduces, {bn_bytes:,} B" if norms else "none"
        print(f"| {net} | {params:,} | {nbytes:,} B | {bn} | {r1:,.0f} img/s | {rn:,.0f} img/s | {rn / r1:.2f}x "
              f"| {statistics.median(reduce_s) * 1e3:.3f} ms |", flush=True)
    given = ", ".join(f"{k} {v:,.0f} img/s" for k, v in rates.items() if k in measured)
    print(f"\nModel of one step between machines (ring all-reduce, alpha = {ALPHA * 1e6:.0f} us per message, "
          f"no overlap; a machine trains at the 1-process rate above{'; given: ' + given if given else ''}):\n")
    print("| network | machines | link | t_comm | t_comp at batch "
          f"{args.batch} | comm share | global batch for comm <= 10% |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for net, (nbytes, norms, rate) in measured.items():
        for machines in MACHINES:
            for link in LINKS:
                comm, comp, needed = model_time(nbytes, norms, machines, link, args.batch, rate)
                print(f"| {net} | {machines} | {link / 1e9:.0f} Gb/s | {comm * 1e3:.2f} ms | {comp * 1e3:.2f} ms | "
                      f"{comm / (comm + comp):.0%} | {needed:,} ({needed / machines:,.0f} per machine) |")
    print(f"\nCommunication takes half of the step at global batch {args.batch} from:")
    for net, (nbytes, norms, rate) in measured.items():
        where = [f"{half_way(nbytes, norms, link, args.batch, rate)} machines at {link / 1e9:.0f} Gb/s" for link in LINKS]
        print(f"- {net}: {', '.join(where)}")


if __name__ == "__main__":
    main()
