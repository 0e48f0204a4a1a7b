"""`cnncli train --processes N`: start N processes of this same cnncli under mpiexec.

The mpiexec is the one beside this Python (`pip install 'cnncli[mpi]'` puts MPICH's there), so
the processes run in the same environment. It runs in a process group of its own: a Ctrl-C at the
terminal reaches this launcher alone, which hands mpiexec exactly one SIGINT per Ctrl-C (Hydra
forwards the first to every process and aborts the job on the second, as cnncli does alone).
With Hydra it gets -disable-auto-cleanup: when a process crashes or dies on another machine the
others are told (SIGUSR1) instead of being killed at once, so rank 0 can say where the run stands.
A process killed by a signal is different: Hydra then kills every process of that machine at
once (its proxy does so whatever the options), rank 0 included when it lives there. The launcher
outlives them: when the job failed and no process said why, it says where the run folder stands.
"""

import importlib.util
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from ..errors import CnnError
from .single import INSTALL, launched


def find_mpiexec():
    """-> the mpiexec to start, or a CnnError saying what to install. Imports nothing of MPI."""
    if importlib.util.find_spec("mpi4py") is None:
        raise CnnError(f"--processes needs MPI, which is not installed: {INSTALL}")
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if not found:
        raise CnnError(f"--processes needs an mpiexec, found neither beside {sys.executable} nor on PATH: {INSTALL}")
    return found


def is_hydra(mpiexec):
    try:
        out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "HYDRA" in out.upper()


def command(n, args):
    """The mpiexec command line that starts n processes of `cnncli train ARGS`."""
    if launched() is not None:
        raise CnnError("cnncli already runs under an MPI launcher: drop --processes (the launcher's "
                       "process count is used)")
    mpiexec = find_mpiexec()
    flags = ["-disable-auto-cleanup"] if is_hydra(mpiexec) else []
    return [mpiexec, *flags, "-n", str(n), sys.executable, "-m", "cnncli", "train", *args]


SPOKEN = ("error:", "internal error:", "interrupted")  # a process said why the job ended


def launch(n, args, run_dir=None):
    """Run `cnncli train ARGS` on n processes of this machine -> mpiexec's exit status.
    run_dir() -> the run folder, for the last word when the processes could not say it."""
    cmd = command(n, args)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    spoken = []
    relay = threading.Thread(target=_relay, args=(proc.stderr, spoken), daemon=True)
    relay.start()

    def forward(signum, frame):
        try:
            proc.send_signal(signum)
        except OSError:
            pass
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                code = proc.wait()
                break
            except InterruptedError:
                continue
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    relay.join(5)
    code = code if code >= 0 else 128 - code
    if code and not spoken:
        _last_word(n, code, run_dir)
    return code


def _relay(stream, spoken):
    """mpiexec's stderr to ours, line by line, noting whether a process said why it ended."""
    for raw in iter(stream.readline, b""):
        if raw.lstrip().decode(errors="replace").startswith(SPOKEN):
            spoken.append(raw)
        try:
            sys.stderr.buffer.write(raw)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def _last_word(n, code, run_dir):
    """The job failed and no process said why (Hydra killed them all): where the run stands."""
    from ..model import checkpoint
    from ..engine.run_folder import resume_hint
    from ..engine.trainer import saved_at

    folder = None
    try:
        folder = run_dir() if run_dir else None
    except Exception:  # the config the processes were given is theirs to judge
        pass
    where = ""
    if folder is not None:
        last = Path(folder) / "last.npz"
        try:
            state = checkpoint.load(last)[1]["state"]
            at = saved_at(state["epoch"], state.get("batch"))
            where = f"; {last} (after {at}) is intact; continue with: {resume_hint(folder, n)}"
        except Exception:
            where = f"; no checkpoint in {folder} yet"
    sys.stderr.write(f"error: a process of the job was killed (mpiexec's exit status {code}) and the job "
                     f"stopped{where}\n")
