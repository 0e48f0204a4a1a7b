"""A run's output folder: its files, metrics.csv, and the lock that claims it for one training
process (the checks before a run starts, and the claim right before its first write)."""

import csv
import io
import os
import socket
from pathlib import Path

from ..errors import CnnError
from ..files import lock_holder

RUN_FILES = ("config.yaml", "metrics.csv", "last.npz", "best.npz", "skipped.txt", "curves.png")
# data_wait: fraction of the epoch spent waiting for the next batch (building it, when nothing is augmented)
COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s",
           "data_wait")


def resume_hint(output, processes=1):
    """The command that continues a run exactly where its last.npz stopped."""
    on = f" on {processes} processes (mpiexec -n {processes} or --processes {processes})" if processes > 1 else ""
    return f"cnncli train --resume {output}{on}"


def metrics_csv(history):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    columns = COLUMNS + (("val_map",) if any("val_map" in r for r in history) else ())  # multi-label
    w.writerow(columns)
    for row in history:
        w.writerow(["" if row.get(k) is None else (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])
                    for k in columns])
    return buf.getvalue()


LOCK = ".lock"  # in the run folder, locked for as long as a train or --resume runs there


def in_use(output):
    """-> the holder's description when a cnncli process is training in this folder, else None."""
    from ..files import try_lock, unlock

    lock = Path(output) / LOCK
    if not lock.exists():
        return None
    try:
        fd = try_lock(lock)
    except OSError:
        return None
    if fd is None:
        return lock_holder(lock)
    unlock(fd)
    return None


def in_use_error(output, holder):
    return CnnError(f"{output} is in use by another cnncli train ({holder}): wait for it to finish, "
                    "or set another output with --set output=PATH")


def check_output(output, force):
    """Refuse a folder in use, holding a run (unless force), or that cannot be written; touch
    nothing."""
    output = Path(output)
    holder = in_use(output)
    if holder:
        raise in_use_error(output, holder)
    run_files(output, force)
    nearest = output
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    reason = ("Not a directory" if not nearest.is_dir() else
              "Permission denied" if not os.access(nearest, os.W_OK | os.X_OK) else None)
    if reason:
        raise CnnError(f"cannot write to output folder {output} ({reason}): pick a writable folder "
                       "with --set output=PATH")


def run_files(output, force):
    """The run files in a folder; refused unless force (which will replace them)."""
    existing = [name for name in RUN_FILES if (Path(output) / name).exists()]
    if existing and not force:
        done = finished_epochs(Path(output) / "last.npz")
        go_on = (f"it finished its {done} epochs; train it longer with `{resume_hint(output)} --set "
                 f"train.epochs={done + 10}`" if done else f"continue it with `{resume_hint(output)}`")
        raise CnnError(f"{output} already holds a run ({', '.join(existing)}): {go_on}, start over with "
                       "--force, or set another output")
    return existing


def finished_epochs(last):
    """The epochs of a run whose last.npz says it finished them all, else None (read from its meta
    alone; a damaged file is None: --resume says what is wrong with it)."""
    import json

    import numpy as np

    try:
        with np.load(last, allow_pickle=False) as z:
            state = json.loads(str(z["meta"])).get("state") or {}
    except Exception:
        return None
    return state.get("epoch") if state.get("finished") == "epochs" else None


def lock_run(output):
    """Claim a run folder for this process: -> the lock's fd, held until the process closes it or
    ends (exit, crash or SIGKILL: the kernel releases it). Another holder: one line, exit 2."""
    from ..files import try_lock

    lock = Path(output) / LOCK
    fd = try_lock(lock)
    if fd is None:
        raise in_use_error(output, lock_holder(lock))
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    # a writer killed mid-write (SIGKILL, power loss) left its temporary file: with the folder's
    # lock held, no other process of this run is writing, so every one of them is stale
    for tmp in Path(output).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    return fd


def claim_output(output, force):
    """Make the run folder, lock it, and clear the run files a forced start replaces: called only
    once everything has been checked, right before the first file of the new run is written.
    -> the lock's fd. Checked again under the lock: a run that another process finished meanwhile
    is not overwritten without --force."""
    output = Path(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise CnnError(f"cannot write to output folder {output} ({e.strerror}): pick a writable folder "
                       "with --set output=PATH") from None
    fd = lock_run(output)
    try:
        existing = run_files(output, force)
    except BaseException:
        os.close(fd)
        raise
    for name in existing:
        (output / name).unlink(missing_ok=True)
    return fd
