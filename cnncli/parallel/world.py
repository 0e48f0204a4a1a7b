"""Which communicator this process trains with, and how a process of a job speaks and ends:
world() makes it once (Single, or Mpi under a launcher of several processes); speaks and Ending
read it for the CLI. Apart from single.py, which mpi.py builds on, so that only this module
imports mpi.py (when a launcher started several processes)."""

import atexit
import signal

from ..errors import CnnError
from .single import INSTALL, Single, launched

_world = None  # this process's communicator, once train() asked for it


def world():
    """This process's communicator: Single, or (under a launcher, with several processes) Mpi."""
    global _world
    if _world is None:
        where = launched()
        if where is None:
            _world = Single()
        else:
            try:
                from .mpi import Mpi
            except ImportError as e:
                if where[0] != 0:
                    raise SystemExit(2) from None  # rank 0 says it, once
                raise CnnError(f"cnncli was started by an MPI launcher as one of several processes, but "
                               f"cannot load MPI ({e}): {INSTALL}") from None
            _world = Mpi.start()
    return _world


def speaks(error=None):
    """Whether this process prints for the job: always alone; in a job, rank 0 says what every
    process found (error None: the job's own messages), and a process says what only it saw."""
    comm = _world
    if comm is None or comm.root:
        return True
    return error is not None and not getattr(error, "everywhere", False)


class Ending:
    """How a process of a training job ends (for the CLI, around train()). What every process
    agreed on (an error found by all, Ctrl-C at a batch, the end) lets each exit normally with
    the same status. What only this process met (a bug, a full disk, a second Ctrl-C) must not
    leave the others waiting for it: once the CLI has printed it and exits, MPI ends the job."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        comm = _world
        if comm is None or comm.size == 1:
            return False
        comm.closing = True
        if hasattr(signal, "SIGUSR1"):  # the others ending now is no news (Hydra signals each exit)
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        if error is None or getattr(error, "everywhere", False):
            return False
        if not comm.root and error.args and isinstance(error.args[0], str):
            error.args = (f"{comm.name(comm.rank)}: {error.args[0]}",) + error.args[1:]
        code = 130 if isinstance(error, KeyboardInterrupt) else getattr(error, "exit_code", 1)
        atexit.register(comm.end_now, code)  # after the CLI has printed it
        return False


__all__ = ["world", "speaks", "Ending"]
