"""Training over several processes, data-parallel on MPI: the interface the trainer and `train`
use, its one-process implementation (`Single`), and how a process learns that a launcher started it.

Horovod's recipe: rank 0's initial state is broadcast, each process trains on its share of every
global batch, gradients are summed by one all-reduce per step, rank 0 alone prints and writes.
The MPI implementation is parallel/mpi.py; world.py imports it (with mpi4py) only when a launcher
(mpiexec, mpirun, srun) started several processes, so a plain `cnncli train` never loads MPI.
Every method of `Single` is what one process does anyway: the trainer has no `if mpi` branches.
"""

import functools
import hashlib
import os
from pathlib import Path

from ..engine.mixed import count_correct
from ..errors import CnnError

# (rank variable, size variable), set by the launcher in each process it starts; first match wins
LAUNCHERS = (("PMI_RANK", "PMI_SIZE"),                          # MPICH's mpiexec (Hydra), Intel MPI
             ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),  # Open MPI's mpirun
             ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS"),          # srun (a batch script outside srun has no step)
             ("PMIX_RANK", None))                               # PMIx alone: the size comes from MPI
INSTALL = "pip install 'cnncli[mpi]' (mpi4py, and mpich for mpiexec)"
# what each step's all-reduce carries after the gradients (float32 values, summed)
TRAILER = ("weight", "loss", "correct", "images", "interrupted", "gone")


def launched(environ=None):
    """-> (rank, size) when a launcher started this process as one of several, else None.
    size is None where only MPI knows it (PMIx)."""
    environ = os.environ if environ is None else environ
    for rank_key, size_key in LAUNCHERS:
        rank = _number(environ.get(rank_key))
        if rank is None:
            continue
        if size_key is None:
            return rank, None
        size = _number(environ.get(size_key))
        if size is not None:
            return (rank, size) if size > 1 else None
    return None


def _number(text):
    return int(text) if text is not None and text.strip().isdigit() else None


def threads_per_process(cpus, neighbours, environ=None):
    """CNNCLI_THREADS for this process, or None where the user set it. cpus: the CPUs it may use
    (a set); neighbours: those of every process of the job on this machine (its own included).
    The CPUs are shared out among the processes whose CPUs overlap them: all of the machine's when
    the launcher did not bind them (in a container too), each its own when it bound each apart."""
    environ = os.environ if environ is None else environ
    if environ.get("CNNCLI_THREADS", "").strip():
        return None
    sharing = sum(1 for other in neighbours if set(other) & set(cpus))
    return max(1, len(cpus) // max(sharing, 1))


def cpus():
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:
        return set(range(os.cpu_count() or 1))


@functools.lru_cache(maxsize=1)
def code_version():
    """'0.1.0+<hash of cnncli's source files>': processes of one job must run the same code."""
    from .. import __version__

    h = hashlib.sha256()
    root = Path(__file__).parent.parent
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return f"{__version__}+{h.hexdigest()[:10]}"


def fingerprint(**what):
    """What every process of a job must hold the same: the code, and what it was given."""
    return {"cnncli": code_version(), **what}


class ShareLoss:
    """The loss over this process's share of a batch as the weighted SUM of its images' losses:
    the loss with the normaliser 1 in place of the batch's (Loss.total), so the gradient rows are
    those of the sum. finish() keeps the share's weight, summed loss, correct and images for the
    step's all-reduce, and the model sees the value 0.0: the real one travels in the all-reduce,
    so a NaN on one process is found by all at the sum, after a backward that everyone made
    (batchnorm's sums are joined by all or none)."""

    def __init__(self, loss):
        self.loss = loss
        self.nothing()

    def nothing(self):
        self.weight = self.value = 0.0
        self.correct = self.images = 0

    def total(self, labels):
        return 1.0

    def __call__(self, logits, labels, total=1.0):
        return self.loss(logits, labels, total)

    def finish(self, value, probs, labels):
        self.weight = self.loss.total(labels)
        self.value = value
        self.correct = count_correct(probs, labels)
        self.images = len(labels)
        return 0.0


class Agreed:
    """A block every process runs (see Mpi.agreement); alone, it is just the block."""

    fingerprint = None

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        return False


class Single:
    """One process: the interface of Mpi, doing what training without MPI does."""

    rank, size, root = 0, 1, True

    def attach(self, model, where=None):
        """Called by the Trainer before its optimizer reads the gradients. where() -> text naming
        the run's position and checkpoint, for a message when another process is lost."""

    def step(self, model, x, y, loss, optimizer, stop=(False, False), rngs=None):
        """The one training step on this process's images -> (mean loss, correct, images) of the
        batch. rngs: the random layers' streams (Model.gradients)."""
        value, probs = model.train_step(x, y, loss, optimizer, rngs=rngs)
        return value, count_correct(probs, y), len(y)

    def stopping(self, interrupted, gone):
        """-> (interrupted, gone) as the processes agreed at the last step: every process stops
        after the same batch."""
        return bool(interrupted), bool(gone)

    def any(self, flag):
        """True on every process when `flag` is true on one."""
        return bool(flag)

    def agreement(self, limit=None):
        """A context every process enters; a CnnError in one, or a differing `.fingerprint`,
        is raised in all, as one line that names the process. limit: seconds to wait for the others."""
        return Agreed()

    def root_does(self, fn, *args):
        """fn(*args) on rank 0 alone (a write), as an agreement: its failure stops every process."""
        return fn(*args)

    def bcast(self, obj):
        """Rank 0's obj, on every process."""
        return obj

    def gather(self, obj):
        """[obj of each process] on rank 0 (None elsewhere); one process: obj itself."""
        return obj

    def average(self, loss, correct, n):
        """(mean loss, accuracy) over every process's images, from each one's own."""
        return loss, correct / n

    def share(self, data):
        """data (dataset.Prepared) with each Batches cut down to this process's share."""
        return data

    def seed(self, *key):
        """A generator seed for this process's own draws (dropout): the key, and the rank."""
        return list(key)

    def everywhere(self, error):
        """Mark an exception that every process raises at the same point (rank 0 prints it)."""
        error.everywhere = True
        return error

    def check_batch_size(self, batch_size):
        if batch_size < self.size:
            raise CnnError(f"train.batch_size {batch_size} is smaller than the {self.size} processes: each "
                           f"process needs images of every batch; set train.batch_size to {self.size} or "
                           "more, or start fewer processes")

    def broadcast_model(self, model):
        """Rank 0's weights and buffers in every process's model."""

    def adopt(self, state, report):
        """A resumed run's State, for this process: exact with the number of processes it was
        trained with; with another, it goes on from the same epoch and batch, not bit-identical."""
        if state.processes != self.size:
            at = f"epoch {state.epoch + 1}" + (f", batch {state.batch + 1}" if state.batch else "")
            report.message(f"note: this run was trained on {state.processes} process(es) and continues on "
                           f"{self.size} from {at}; the same batches, but no longer bit-identical to a run "
                           "that never stopped (dropout draws per process, sums in another order)")
            state.dropout_rng = None
        elif self.size > 1 and state.dropout_rng:
            state.dropout_rng = state.dropout_rng[self.rank]
        state.processes = self.size


__all__ = ["launched", "Single", "fingerprint", "INSTALL"]

