"""Atomic file writes: a temporary file in the same folder, fsynced, then renamed over the target.
A kill at any instant leaves the old file or the new one, never half of one; a failed write
removes its temporary file."""

import os
from pathlib import Path

from .errors import CnnError


def write_atomic(path, write, what="file"):
    """write(f) fills a binary file object; on success it replaces path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
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
        raise CnnError(f"cannot write {what} {path} ({e.strerror or e}): free disk space or pick a "
                       f"writable output folder; the previous {path.name} is intact") from None


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
