"""Decode a folder once into a memory-mapped uint8 array (N, h, w, c), reused by later epochs and
later runs. The key covers the file list, each file's size and mtime, the preprocessing and the
cache version, so a changed, added or removed image means a fresh decode, never a stale one.
Files are written under temporary names and renamed, so a killed decode never leaves a
half-written cache behind; a lock per entry makes runs started together decode a folder once.
"""

import contextlib
import hashlib
import json
import mmap
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context, resource_tracker
from pathlib import Path

import numpy as np

from ..errors import CnnError
from ..files import unique, unlock, wait_lock, write_text_atomic
from .decode import BadImage, load_image

CACHE_VERSION = 2   # 2: the index records what decoding converted
PARALLEL_FROM = 256   # fewer files than this decode in-process: a worker pool costs more
RELEASE_EVERY = 256   # images written between drops of the written pages from the decoding process
# A batch reader (data/batches.py) drops a cache larger than this from its RSS after every batch;
# a smaller one stays resident (its whole file is the bound). Dropped every batch, LeNet-5's 1.1 MB
# cache of digits had each batch fault its pages back in: a batch's gather and drop took 139 us
# against 16 us for the gather alone, in a 3.3 ms step (measured 2026-12-07). Dropping a large
# cache after every 32 MB read instead did not bound RSS: it kept 110-160 MB more of a 224-pixel
# cache mapped (the kernel maps more of the file around each page it faults in).
RESIDENT_BYTES = 32 << 20


def default_cache_dir():
    return Path(os.environ.get("CNNCLI_CACHE") or Path.home() / ".cache" / "cnncli")


@dataclass
class Decoded:
    images: np.ndarray    # (N, h, w, c) uint8, memory-mapped when cached
    labels: np.ndarray    # (N,) int64
    files: list           # str paths of the N images
    skipped: list         # [(path, reason)]
    from_cache: bool
    converted: dict = None  # what decoding changed: see conversions()
    key: str = None         # cache_key(): the images' identity (the frozen-feature cache keys on it)


def release(images):
    """Drop a memory-mapped array's pages from this process's resident set. They stay in the page
    cache (dirty ones are still written to the file) and are read back when next touched, so a
    process that reads or writes a cache holds what one batch or chunk needs, not all it touched:
    its RSS does not grow with the data set. An array that is not memory-mapped is left alone, and
    so is a copy-on-write map (mode "c"), whose written pages DONTNEED would throw away."""
    mm = getattr(images, "_mmap", None)
    if getattr(images, "mode", None) == "c":
        return
    if mm is not None and not mm.closed and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


def cache_key(listing, shape, resize):
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "shape": list(shape), "resize": resize,
                         "classes": listing.classes}).encode())
    for path, label in zip(listing.files, listing.labels):
        try:
            st = path.stat()
            stamp = f"{st.st_size}\t{st.st_mtime_ns}"
        except FileNotFoundError:   # deleted since the scan: decoding skips it, saying so
            stamp = "deleted"
        h.update(f"\n{path.resolve()}\t{label}\t{stamp}".encode())
    return h.hexdigest()[:32]


def _decode_chunk(args):
    paths, shape, resize = args
    out = []
    for p in paths:
        try:
            source = {}
            out.append((load_image(Path(p), *shape, resize, source), (*source["size"], source["gray"])))
        except BadImage as e:
            out.append(str(e))
        except Exception as e:  # a decoder bug must not kill a run: skip the file, say why
            out.append(f"cannot decode: {e.__class__.__name__}: {e}")
    return out


def decode_files(files, shape, resize, workers, progress):
    """Yield (index, (array, (width, height, gray) before conversion) or a reason) for every file, in order."""
    chunk = 64
    jobs = [([str(p) for p in files[i:i + chunk]], shape, resize) for i in range(0, len(files), chunk)]
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(files) >= PARALLEL_FROM:
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_ignore_sigint)
        try:
            with _sigint_held():      # map's first submits start the workers
                results = pool.map(_decode_chunk, jobs)
            yield from _numbered(results, progress)
        finally:  # Ctrl-C: the workers ignore it, so drop the chunks not started instead of decoding them
            pool.shutdown(cancel_futures=True)
    else:
        yield from _numbered(map(_decode_chunk, jobs), progress)


@contextlib.contextmanager
def _sigint_held():
    """SIGINT blocked while worker processes start: they inherit the block, so a Ctrl-C during
    their start-up cannot interrupt it (printing a traceback); the parent gets it when the block ends."""
    resource_tracker.ensure_running()   # when it starts its tracker process, it unblocks SIGINT
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _ignore_sigint():
    """A decode worker's initializer. A Ctrl-C reaches the whole process group; only the parent acts
    on it (a worker would print a KeyboardInterrupt traceback of its own). One held since the
    worker started is discarded."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _numbered(results, progress):
    i = 0
    for batch in results:
        for item in batch:
            yield i, item
            i += 1
        if progress:
            progress(i)


def decode_folder(listing, shape, resize="stretch", cache_dir=None, workers=None, progress=None):
    """Listing -> Decoded, from the cache when it matches, else decoding (all cores) and caching."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = cache_key(listing, shape, resize)
    npy, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    hit = _read_cache(npy, meta_path, shape)
    if hit is not None:
        hit.key = key
        return hit
    # one process decodes a folder; others that want the same entry wait, then read it
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        lock = wait_lock(cache_dir / f"{key}.lock")
    except OSError:
        lock = None  # cache folder not writable: each process decodes into memory
    try:
        hit = _read_cache(npy, meta_path, shape)
        hit = hit if hit is not None else _decode_and_publish(listing, shape, resize, workers, progress,
                                                              cache_dir, key, npy, meta_path)
        hit.key = key
        return hit
    finally:
        unlock(lock)


def _decode_and_publish(listing, shape, resize, workers, progress, cache_dir, key, npy, meta_path):
    n = len(listing.files)
    tmp = None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f"{key}.{unique()}.tmp.npy"  # a shared cache folder: unique across machines
        images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n,) + tuple(shape))
    except OSError:
        tmp = None  # cache folder not writable: decode into memory
        images = np.empty((n,) + tuple(shape), np.uint8)
    keep, skipped, sources = [], [], []
    try:
        for i, item in decode_files(listing.files, shape, resize, workers, progress):
            if isinstance(item, str):
                skipped.append((str(listing.files[i]), item))
            else:
                images[len(keep)] = item[0]
                sources.append(item[1])
                keep.append(i)
                if len(keep) % RELEASE_EVERY == 0:
                    release(images)
    except BaseException:  # Ctrl-C or a failure mid-decode: leave no full-size temporary behind
        if tmp is not None:
            del images
            tmp.unlink(missing_ok=True)
        raise
    labels = np.array([listing.labels[i] for i in keep], np.int64)
    files = [str(listing.files[i]) for i in keep]
    converted = conversions(sources, shape)
    result = Decoded(images[:len(keep)], labels, files, skipped, False, converted)
    if tmp is not None:  # publish: array first, then the meta file that marks it complete
        images.flush()
        release(images)
        meta = {"count": len(keep), "shape": list(shape), "labels": labels.tolist(), "files": files,
                "skipped": skipped, "converted": converted}
        try:
            os.replace(tmp, npy)
            write_text_atomic(meta_path, json.dumps(meta), "decode cache index")
        except (OSError, CnnError):
            pass  # the run goes on from memory; the next run decodes again
    return result


def _read_cache(npy, meta_path, shape):
    try:
        meta = json.loads(meta_path.read_text())
        images = np.load(npy, mmap_mode="r")
        count = int(meta["count"])
        labels = np.array(meta["labels"], np.int64)
        files, skipped = list(meta["files"]), [tuple(s) for s in meta["skipped"]]
        converted = dict(meta["converted"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if images.shape[1:] != tuple(shape) or images.shape[0] < count or len(labels) != count:
        return None
    return Decoded(images[:count], labels, files, skipped, True, converted)


def conversions(sources, shape):
    """[(w, h, gray)] of the decoded files -> counts of what decoding changed: resized (and the
    range of sizes they came in), grayscale repeated to RGB, colour taken to luma."""
    h, w, c = shape
    sizes = [(sw, sh) for sw, sh, _ in sources if (sw, sh) != (w, h)]
    return {"resized": len(sizes),
            "from": [list(min(sizes, key=lambda s: s[0] * s[1])), list(max(sizes, key=lambda s: s[0] * s[1]))]
            if sizes else None,
            "gray_to_rgb": sum(1 for *_, gray in sources if gray) if c == 3 else 0,
            "color_to_gray": sum(1 for *_, gray in sources if not gray) if c == 1 else 0}


def describe_conversions(conv, shape):
    """One line of what decoding changed, or None: '1,200 image(s) resized from 28x28 ... 64x48
    to 32x32; 30 grayscale image(s) repeated to RGB' (sizes are width x height)."""
    h, w, _ = shape
    parts = []
    if conv.get("resized"):
        lo, hi = conv["from"]
        span = f"{lo[0]}x{lo[1]}" + (f" ... {hi[0]}x{hi[1]}" if lo != hi else "")
        parts.append(f"{conv['resized']:,} image(s) resized from {span} to {w}x{h}")
    if conv.get("gray_to_rgb"):
        parts.append(f"{conv['gray_to_rgb']:,} grayscale image(s) repeated to RGB")
    if conv.get("color_to_gray"):
        parts.append(f"{conv['color_to_gray']:,} colour image(s) taken to grayscale (luma)")
    return "; ".join(parts) or None


def describe_source(source, shape):
    """What decoding did to one image, or None: 'resized from 8x8 to 32x32; grayscale to RGB'."""
    (sw, sh, gray), (h, w, c) = source, shape
    parts = [f"resized from {sw}x{sh} to {w}x{h}"] if (sw, sh) != (w, h) else []
    parts += ["grayscale to RGB"] if gray and c == 3 else ["colour to grayscale"] if not gray and c == 1 else []
    return "; ".join(parts) or None


def merge_conversions(*convs):
    """The counts of several decoded folders together (training and validation)."""
    out = {"resized": 0, "from": None, "gray_to_rgb": 0, "color_to_gray": 0}
    for conv in convs:
        out["resized"] += conv["resized"]
        out["gray_to_rgb"] += conv["gray_to_rgb"]
        out["color_to_gray"] += conv["color_to_gray"]
        if conv["from"]:
            sizes = ([] if out["from"] is None else out["from"]) + conv["from"]
            out["from"] = [min(sizes, key=lambda s: s[0] * s[1]), max(sizes, key=lambda s: s[0] * s[1])]
    return out
