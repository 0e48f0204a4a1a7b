"""Data-parallel pieces that need no MPI processes: launcher detection, threads per process, each
process's share of a batch, the share loss, synchronised batchnorm (two threads standing in for
two processes), and what a plain `cnncli train` must never do (import MPI)."""

import subprocess
import sys
import threading

import numpy as np
import pytest
import yaml

from cnncli.data.batches import Batches
from cnncli.data.share import Share, piece
from cnncli.parallel.single import launched, threads_per_process
from cnncli.engine.losses import Loss

from .conftest import sitecustomize, without_launcher
from .imagegen import make_folder


# --- which launcher started us -----------------------------------------------------------------

@pytest.mark.parametrize("env,expected", [
    ({}, None),
    ({"PMI_RANK": "1", "PMI_SIZE": "4"}, (1, 4)),                       # MPICH / Hydra
    ({"PMI_RANK": "0", "PMI_SIZE": "1"}, None),                         # mpiexec -n 1: one process
    ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8"}, (3, 8)),  # Open MPI
    ({"SLURM_PROCID": "2", "SLURM_STEP_NUM_TASKS": "4"}, (2, 4)),        # srun
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}, None),                 # an sbatch script outside srun
    ({"PMIX_RANK": "1"}, (1, None)),                                    # PMIx: the size comes from MPI
    ({"PMI_RANK": "x", "PMI_SIZE": "2"}, None),
])
def test_launcher_detection(env, expected):
    assert launched(env) == expected


def test_threads_per_process():
    machine = set(range(16))
    assert threads_per_process(machine, [machine] * 4, {}) == 4            # not bound: share the machine
    assert threads_per_process(machine, [machine] * 32, {}) == 1
    assert threads_per_process(machine, [machine] * 4, {"CNNCLI_THREADS": "3"}) is None   # the user's choice
    container = {0, 1}                                                     # 2 CPUs of a big host, for 2 processes
    assert threads_per_process(container, [container, container], {}) == 1
    bound = [set(range(i, i + 4)) for i in range(0, 16, 4)]                # the launcher gave each 4 cores
    assert threads_per_process(bound[1], bound, {}) == 4


# --- shares of a batch ------------------------------------------------------------------------

def Aug():
    """The config's own augmentation section (every key, its default), a few keys on."""
    from cnncli.config import Augment
    return Augment(flip=True, crop_padding=2, brightness=0.2)


@pytest.mark.parametrize("n_images,batch_size", [(27, 5), (26, 5), (130, 64), (9, 4)])
def test_shares_cover_every_batch_and_augment_as_one_process(n_images, batch_size):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n_images, 6, 6, 3), np.uint8)
    labels = rng.integers(0, 3, n_images)
    whole = Batches(images, labels, np.arange(n_images), [0.5] * 3, [0.25] * 3, batch_size, Aug())
    for size in (1, 2, 3, 4):
        shares = [Share(whole, r, size) for r in range(size)]
        assert all(len(s) == len(whole) for s in shares)
        per_share = [list(s.epoch(np.random.default_rng([7, 1, 0]))) for s in shares]
        for b, (x, y) in enumerate(whole.epoch(np.random.default_rng([7, 1, 0]))):
            np.testing.assert_array_equal(np.concatenate([p[b][0] for p in per_share]), x)
            np.testing.assert_array_equal(np.concatenate([p[b][1] for p in per_share]), y)


def test_piece_rule():
    assert [piece(10, 13, r, 4) for r in range(4)] == [(10, 10), (10, 11), (11, 12), (12, 13)]
    assert [piece(0, 64, r, 2) for r in range(2)] == [(0, 32), (32, 64)]


# --- the loss over a share ---------------------------------------------------------------------

@pytest.mark.parametrize("head,weights,smoothing", [("softmax", None, 0.0), ("softmax", [1.0, 2.5, 0.3], 0.1),
                                                    ("sigmoid", [0.7, 1.9], 0.0)])
def test_share_losses_add_up_to_the_whole_batch(head, weights, smoothing):
    from cnncli.parallel.single import ShareLoss

    rng = np.random.default_rng(3)
    k = 1 if head == "sigmoid" else 3
    logits = rng.normal(size=(11, k)).astype(np.float32)
    labels = rng.integers(0, 2 if head == "sigmoid" else 3, 11)
    loss = Loss(head, smoothing, weights)
    value, dlogits, _ = loss(logits, labels)
    parts, total_weight, total_value = [], 0.0, 0.0
    for lo, hi in [(0, 4), (4, 4), (4, 11)]:
        share = ShareLoss(loss)
        if hi > lo:
            part, d, p = share(logits[lo:hi], labels[lo:hi])
            assert share.finish(part, p, labels[lo:hi]) == 0.0   # the real value goes through the all-reduce
            parts.append(d)
        total_weight += share.weight if hi > lo else 0.0
        total_value += share.value if hi > lo else 0.0
    np.testing.assert_allclose(np.concatenate(parts) / total_weight, dlogits, rtol=1e-5, atol=1e-8)
    assert total_value / total_weight == pytest.approx(value, rel=1e-6)


# --- synchronised batchnorm, two threads for two processes -------------------------------------

class ThreadSum:
    """total(values) for n threads: every thread's values added, in rank order (as an all-reduce)."""

    def __init__(self, n):
        self.barrier, self.slots, self.n = threading.Barrier(n), {}, n

    def total_for(self, rank):
        def total(values):
            self.slots[rank] = np.array(values, np.float64)
            self.barrier.wait()
            out = sum(self.slots[r] for r in range(self.n))
            self.barrier.wait()
            return out
        return total


@pytest.mark.parametrize("shape,cuts", [((10, 4, 4, 3), [0, 3, 10]), ((9, 5), [0, 0, 4, 9])])
def test_synchronised_batchnorm_equals_one_batch(shape, cuts):
    from cnncli.layers import Context
    from cnncli.layers.batchnorm import BatchNorm

    rng = np.random.default_rng(5)
    x = rng.normal(2.0, 3.0, shape).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)

    def layer():
        bn = BatchNorm()
        bn.build(shape[1:])
        bn.init_params(None, np.float32, "relu")
        bn.params["weight"][...] = np.linspace(0.5, 1.5, shape[-1])
        return bn
    one = layer()
    alone = Context(training=True)
    y = one.forward(x, alone)
    dx = one.backward(dy, alone)
    n = len(cuts) - 1
    sums, layers, out = ThreadSum(n), [layer() for _ in range(n)], [None] * n
    ctxs = [Context(training=True, reduce=sums.total_for(r)) for r in range(n)]

    def run(r):
        lo, hi = cuts[r], cuts[r + 1]
        out[r] = (layers[r].forward(x[lo:hi], ctxs[r]), layers[r].backward(dy[lo:hi], ctxs[r]))
    threads = [threading.Thread(target=run, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose(np.concatenate([o[0] for o in out]), y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([o[1] for o in out]), dx, rtol=1e-4, atol=1e-6)
    for name in ("weight", "bias"):   # each process keeps its own part of the parameter gradients
        np.testing.assert_allclose(sum(bn.grads[name] for bn in layers), one.grads[name], rtol=1e-5, atol=1e-6)
    for name in ("running_mean", "running_var"):
        for bn in layers:
            np.testing.assert_allclose(bn.buffers[name], one.buffers[name], rtol=1e-6)


# --- one process never touches MPI -------------------------------------------------------------

def _tiny_config(tmp_path):
    make_folder(tmp_path / "data", per_class=6)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"input": [12, 12, 3], "layers": ["flatten", {"dense": {"units": 3, "activation": "softmax"}}]},
        "data": {"train": str(tmp_path / "data"), "val_split": 0.0, "cache_dir": str(tmp_path / "cache")},
        "train": {"epochs": 1, "batch_size": 4}, "output": str(tmp_path / "run")}))
    return path


def test_a_plain_train_never_imports_mpi(tmp_path):
    cfg = _tiny_config(tmp_path)
    code = ("import sys; from cnncli.cli.app import app\n"
            "try:\n    app(['train', sys.argv[1], '-q'])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'mpi4py' not in sys.modules and 'cnncli.parallel.mpi' not in sys.modules, 'MPI was imported'\n")
    res = subprocess.run([sys.executable, "-c", code, str(cfg)], capture_output=True, text=True,
                         env=without_launcher())
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "run" / "last.npz").exists()


def _without_mpi(tmp_path):
    """A PYTHONPATH under which mpi4py cannot be found, as before `pip install 'cnncli[mpi]'`."""
    return str(sitecustomize(tmp_path / "no_mpi", "import sys\nsys.modules['mpi4py'] = None\n"))


def test_processes_without_mpi_installed_say_what_to_install(tmp_path):
    cfg = _tiny_config(tmp_path)
    res = subprocess.run([sys.executable, "-m", "cnncli", "train", str(cfg), "--processes", "2"],
                         capture_output=True, text=True, env=without_launcher(PYTHONPATH=_without_mpi(tmp_path)))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "pip install 'cnncli[mpi]'" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "run").exists()


def test_started_by_a_launcher_without_mpi_installed(tmp_path):
    cfg = _tiny_config(tmp_path)
    blocked = _without_mpi(tmp_path)
    for rank, lines in (("0", 1), ("1", 0)):   # rank 0 says it, once
        res = subprocess.run([sys.executable, "-m", "cnncli", "train", str(cfg)], capture_output=True, text=True,
                             env=without_launcher(PYTHONPATH=blocked, PMI_RANK=rank, PMI_SIZE="2"))
        assert res.returncode == 2 and res.stderr.count("\n") == lines, res.stderr
        assert lines == 0 or "pip install 'cnncli[mpi]'" in res.stderr


def test_processes_under_a_launcher_is_refused(tmp_path):
    cfg = _tiny_config(tmp_path)
    res = subprocess.run([sys.executable, "-m", "cnncli", "train", str(cfg), "--processes", "2"],
                         capture_output=True, text=True, env=without_launcher(PMI_RANK="0", PMI_SIZE="2"))
    assert res.returncode == 2 and "drop --processes" in res.stderr and res.stderr.count("\n") == 1


def test_a_batch_smaller_than_the_job_is_refused():
    from cnncli.parallel.single import Single
    from cnncli.errors import CnnError

    four = type("Four", (Single,), {"size": 4})()
    four.check_batch_size(4)
    with pytest.raises(CnnError, match="train.batch_size 3 is smaller than the 4 processes"):
        four.check_batch_size(3)

