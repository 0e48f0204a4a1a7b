"""Atomic file writes: a temporary file in the same folder, fsynced, then renamed over the target.
A kill at any instant leaves the old file or the new one, never half of one; a failed write
removes its temporary file."""

import os
import socket
from pathlib import Path

from .errors import CnnError


def write_atomic(path, write, what="file"):
    """write(f) fills a binary file object; on success it replaces path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{unique()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:  # a full disk, or Ctrl-C mid-write: drop the partial file
        try:
            tmp.unlink()
        except OSError:
            pass
        if not isinstance(e, OSError):
            raise
        kept = f"; the previous {path.name} is intact" if path.exists() else ""
        raise CnnError(f"cannot write {what} {path} ({e.strerror or e}): free disk space or pick a "
                       f"writable output folder{kept}") from None


def unique():
    """'host-pid': a temporary name's part that no other process writing into a shared folder
    (another machine's included) can hold at the same time."""
    return f"{socket.gethostname()}-{os.getpid()}"


def write_text_atomic(path, text, what="file"):
    write_atomic(path, lambda f: f.write(text.encode("utf-8")), what)


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- locks: fcntl.flock on a file; the kernel releases it when the process ends, however it ends
# (exit, crash, SIGKILL), so a lock can never be left stale. Local file systems; on NFS, flock
# works across machines only where the server supports it.

def try_lock(path):
    """An exclusive lock on path (created if missing), without waiting -> an open fd holding it,
    or None when another process holds it."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def wait_lock(path):
    """An exclusive lock on path (created if missing), waiting for it -> an open fd holding it."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def unlock(fd):
    if fd is not None:
        os.close(fd)


def lock_holder(path):
    """What the holder of a run lock wrote into it ('pid 123 on host'), or 'another process'."""
    try:
        return Path(path).read_text().strip() or "another process"
    except OSError:
        return "another process"


def output_folder(out):
    """--out, made if missing -> its Path; one line when it cannot be."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CnnError(f"cannot write to {out} ({e.strerror}): pick a writable folder with --out") from None
    return out


def check_model_folder(out_dir, force):
    """A folder for model.yaml and model.npz (`import`, `pretrained get`): it may exist, and the two
    files in it are replaced only with --force, so that a trained model is never overwritten."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CnnError(f"{out_dir} is a file: give a folder to write model.yaml and model.npz into")
    if not force:
        for name in ("model.yaml", "model.npz"):
            if (out_dir / name).exists():
                raise CnnError(f"{out_dir / name} exists: pass --force to replace it, or give another folder")
    if not out_dir.parent.is_dir():
        raise CnnError(f"cannot write into {out_dir}: {out_dir.parent} is not a folder")
