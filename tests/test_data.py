"""Folders, decoding rules, the cache, and batches."""

import os
import re

import numpy as np
import pytest
from PIL import Image

from cnncli.data.batches import Batches, channel_stats
from cnncli.data.cache import decode_folder
from cnncli.data.dataset import stratified_split
from cnncli.data.decode import BadImage, load_image
from cnncli.data.folder import natural_key, scan
from cnncli.errors import CnnError

from .imagegen import blob_image, make_folder, png_bytes


def test_classes_in_natural_order_hidden_ignored(tmp_path):
    for name in ("10", "2", "1", "B", "a"):
        make_folder(tmp_path, classes=(name,), per_class=2)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "a" / ".secret.png").write_bytes(png_bytes(Image.new("RGB", (4, 4))))
    (tmp_path / "a" / "notes.txt").write_text("x")
    (tmp_path / "a" / "sub").mkdir()
    (tmp_path / "a" / "sub" / "deep.png").write_bytes(png_bytes(Image.new("RGB", (4, 4))))
    listing = scan(tmp_path)
    assert listing.classes == ["1", "2", "10", "a", "B"]
    files_a = [p.name for p, l in zip(listing.files, listing.labels) if l == 3]
    assert files_a == ["img0.png", "img1.png", "deep.png"]
    assert sorted(["img10", "img9", "img1"], key=natural_key) == ["img1", "img9", "img10"]


def test_folder_mistakes(tmp_path):
    with pytest.raises(CnnError, match="does not exist"):
        scan(tmp_path / "nope")
    make_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(CnnError, match="at least two class sub-folders"):
        scan(tmp_path / "one")
    make_folder(tmp_path / "empty", classes=("a",))
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(CnnError, match="empty/b has no images"):
        scan(tmp_path / "empty")
    make_folder(tmp_path / "loose")
    blob_image(np.random.default_rng(0), 0).save(tmp_path / "loose" / "stray.png")
    assert "lie directly in" in scan(tmp_path / "loose").warnings[0]
    make_folder(tmp_path / "val", classes=("a", "zebra"))
    with pytest.raises(CnnError, match="'zebra' is not one of the model's classes"):
        scan(tmp_path / "val", classes=["a", "b", "c"], role="val")


def _save(img, path, **kw):
    img.save(path, **kw)
    return path


def test_decode_rules(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, :3] = (255, 0, 0)       # left half red
    base = Image.fromarray(rgb)
    # grayscale from RGB: ITU-R 601 luma, red -> 76
    g = load_image(_save(base, tmp_path / "a.png"), 4, 6, 1)
    assert g.shape == (4, 6, 1) and g[0, 0, 0] == 76 and g[0, 5, 0] == 0
    # grayscale into an RGB model: three equal channels
    gray = Image.fromarray(np.full((4, 6), 90, np.uint8), "L")
    assert (load_image(_save(gray, tmp_path / "g.png"), 4, 6, 3) == 90).all()
    # 16-bit: scaled by 255/65535
    a16 = Image.fromarray(np.full((4, 6), 65535, np.uint16))
    assert (load_image(_save(a16, tmp_path / "w.png"), 4, 6, 1) == 255).all()
    a16 = Image.fromarray(np.full((4, 6), 32896, np.uint16))
    assert (load_image(_save(a16, tmp_path / "w2.png"), 4, 6, 1) == 128).all()
    # transparency composited over white
    rgba = Image.new("RGBA", (6, 4), (0, 0, 0, 0))
    assert (load_image(_save(rgba, tmp_path / "t.png"), 4, 6, 3) == 255).all()
    # palette with a transparent index
    p = Image.new("P", (6, 4), 0)
    p.putpalette([10, 20, 30] * 256)
    p.info["transparency"] = 0
    assert (load_image(_save(p, tmp_path / "p.png", transparency=0), 4, 6, 3) == 255).all()
    # CMYK JPEG -> RGB
    cmyk = Image.new("CMYK", (6, 4), (0, 255, 255, 0))   # red in CMYK
    out = load_image(_save(cmyk, tmp_path / "c.jpg"), 4, 6, 3)
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 60
    # EXIF orientation 6 (rotate 90 CW to display): a 6x4 stored image shows as 4x6
    exif = Image.Exif()
    exif[0x0112] = 6
    tall = Image.fromarray(np.pad(np.full((4, 6, 3), 0, np.uint8), 0))
    tall.putpixel((0, 0), (255, 255, 255))
    tall.save(tmp_path / "e.jpg", exif=exif, quality=100)
    shown = load_image(tmp_path / "e.jpg", 6, 4, 1)
    assert shown.shape == (6, 4, 1) and shown[0, 3, 0] > 100   # top-left moved to top-right


def test_resize_stretch_and_crop(tmp_path):
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, 10:20] = 255          # a white centre third
    path = _save(Image.fromarray(wide), tmp_path / "wide.png")
    crop = load_image(path, 10, 10, 1, "crop")       # centre 10x10 = all white
    assert crop.min() > 240
    stretch = load_image(path, 10, 10, 1, "stretch")  # squeezed: black, white, black
    assert stretch[:, 0].max() < 30 and stretch[:, 5].min() > 220


@pytest.mark.parametrize("content,reason", [
    (b"", "empty file"),
    (b"hello, I am text", "not an image"),
    ("truncated", "cannot decode"),
])
def test_bad_files_raise_bad_image(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    if content == "truncated":
        content = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)))[:300]
    path.write_bytes(content)
    with pytest.raises(BadImage, match=reason):
        load_image(path, 8, 8, 3)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = _save(Image.new("L", (200, 200)), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(BadImage, match="decompression-bomb"):
        load_image(path, 8, 8, 1)


def test_cache_reuses_and_notices_a_replaced_file(tmp_path):
    root = make_folder(tmp_path / "data", per_class=4)
    (root / "a" / "broken.png").write_bytes(b"nope")
    listing = scan(root)
    first = decode_folder(listing, (12, 12, 3), cache_dir=tmp_path / "cache")
    assert not first.from_cache and len(first.labels) == 12 and len(first.skipped) == 1
    assert "broken.png" in first.skipped[0][0]
    second = decode_folder(scan(root), (12, 12, 3), cache_dir=tmp_path / "cache")
    assert second.from_cache
    np.testing.assert_array_equal(second.images, first.images)
    # replace an image by another of the same name: decoded again, new pixels
    target = root / "a" / "img0.png"
    Image.new("RGB", (12, 12), (255, 255, 255)).save(target)
    os.utime(target, ns=(1, 1))
    third = decode_folder(scan(root), (12, 12, 3), cache_dir=tmp_path / "cache")
    assert not third.from_cache and third.images[0].min() == 255


def test_parallel_decode_matches_serial(tmp_path):
    root = make_folder(tmp_path / "data", per_class=100, size=16)   # 300 files: the worker pool
    listing = scan(root)
    par = decode_folder(listing, (8, 8, 3), cache_dir=tmp_path / "c1", workers=2)
    ser = decode_folder(listing, (8, 8, 3), cache_dir=tmp_path / "c2", workers=1)
    np.testing.assert_array_equal(par.images, ser.images)
    np.testing.assert_array_equal(par.labels, ser.labels)


def _probed_pool(monkeypatch, seen, submitted):
    """cache's worker pool, made as decode_files makes it, reporting each worker's SIGINT handler
    (seen) and the chunks' futures (submitted)."""
    import signal

    import cnncli.data.cache as cache

    class Probed(cache.ProcessPoolExecutor):
        def map(self, fn, *iterables, **kw):
            seen.append(self.submit(signal.getsignal, signal.SIGINT).result())
            return super().map(fn, *iterables, **kw)

        def submit(self, fn, *a, **kw):
            future = super().submit(fn, *a, **kw)
            submitted.append(future)
            return future
    monkeypatch.setattr(cache, "ProcessPoolExecutor", Probed)
    monkeypatch.setattr(cache, "PARALLEL_FROM", 1)


def test_decode_workers_leave_ctrl_c_to_the_parent(tmp_path, monkeypatch):
    """A Ctrl-C reaches every process of the group: the workers ignore it (else each prints a
    KeyboardInterrupt traceback), the parent stops, and chunks not yet started are dropped."""
    import signal

    seen, submitted = [], []
    _probed_pool(monkeypatch, seen, submitted)
    root = make_folder(tmp_path / "data", per_class=110, size=8)     # 330 files: 6 chunks of 64

    def ctrl_c(done):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        decode_folder(scan(root), (8, 8, 3), cache_dir=tmp_path / "cache", workers=2, progress=ctrl_c)
    assert seen == [signal.SIG_IGN]
    assert any(f.cancelled() for f in submitted[1:])       # [0] is the probe


def test_a_ctrl_c_while_decode_workers_start_does_not_break_them(tmp_path, monkeypatch):
    """SIGINT sent to each worker right after it is spawned, while it is still importing (before its
    initializer can ignore it): held until then and discarded, so the decode completes."""
    import signal

    import cnncli.data.cache as cache

    class Interrupted(cache.ProcessPoolExecutor):
        def map(self, fn, *iterables, **kw):
            results = super().map(fn, *iterables, **kw)
            for pid in self._processes:
                os.kill(pid, signal.SIGINT)
            return results
    monkeypatch.setattr(cache, "ProcessPoolExecutor", Interrupted)
    monkeypatch.setattr(cache, "PARALLEL_FROM", 1)
    root = make_folder(tmp_path / "data", per_class=30, size=8)
    dec = decode_folder(scan(root), (8, 8, 3), cache_dir=tmp_path / "cache", workers=2)
    assert len(dec.labels) == 90 and dec.skipped == []


def test_a_file_deleted_after_the_scan_is_skipped_not_a_crash(tmp_path, monkeypatch):
    """Deleted between the folder's scan and the cache key's stat (once an internal error), or
    between the key and decoding: listed with the skipped files, with the reason."""
    import cnncli.data.dataset as dataset
    from cnncli import config

    root = make_folder(tmp_path / "data", per_class=4)
    gone = root / "b" / "img1.png"

    def scan_then_delete(*a, **k):
        listing = scan(*a, **k)
        gone.unlink()
        return listing
    monkeypatch.setattr(dataset, "scan", scan_then_delete)
    model = {"input": [12, 12, 3], "layers": ["flatten", {"dense": {"units": 3, "activation": "softmax"}}]}
    cfg = config.parse_run({"model": model, "data": {"train": str(root), "cache_dir": str(tmp_path / "cache")}},
                           "t.yaml", tmp_path)
    assert dataset.prepare(cfg).skipped == [(str(gone), "deleted after it was listed")]
    with pytest.raises(BadImage, match="^deleted after it was listed$"):
        load_image(gone, 12, 12, 3)


def test_stratified_split_is_seeded_and_stratified():
    labels = np.repeat([0, 1, 2], [10, 20, 3])
    tr, va = stratified_split(labels, 0.2, seed=0)
    assert sorted(np.bincount(labels[va]).tolist()) == [1, 2, 4]
    assert len(set(tr) & set(va)) == 0 and len(tr) + len(va) == 33
    tr2, va2 = stratified_split(labels, 0.2, seed=0)
    assert (va == va2).all()
    assert not (va == stratified_split(labels, 0.2, seed=1)[1]).all()


def test_batches_normalise_flip_and_keep_last_small_batch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 4, 5, 3)).astype(np.uint8)
    labels = np.arange(10)
    mean, std = channel_stats(images, np.arange(10))
    ref = images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, ref.mean(0))
    np.testing.assert_allclose(std, ref.std(0))
    b = Batches(images, labels, np.arange(10), mean, std, batch_size=4)
    out = list(b.epoch(None))
    assert [len(y) for _, y in out] == [4, 4, 2]
    x = np.concatenate([x for x, _ in out])
    np.testing.assert_allclose(x, (images / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)

    from cnncli.config import Augment
    Aug = Augment(flip=True, crop_padding=1)
    b = Batches(images, labels, np.arange(10), mean, std, batch_size=4, augment=Aug)
    order, p = b.plan(np.random.default_rng(3))
    got = np.concatenate([x for x, _ in b.epoch(np.random.default_rng(3))])
    for k in range(10):
        # the documented rule: out[i, j] = src[i + dy, j' + dx], j' = 4 - j when flipped
        src = (images[order[k]] / 255.0 - mean) / std
        dy, dx = p["dy"][k], p["dx"][k]
        want = np.zeros_like(src)
        for i in range(4):
            for j in range(5):
                jj = (4 - j if p["flip"][k] else j) + dx
                if 0 <= i + dy < 4 and 0 <= jj < 5:
                    want[i, j] = src[i + dy, jj]
        np.testing.assert_allclose(got[k], want, rtol=1e-5, atol=1e-5)


def test_odd_names_sort_without_crashing(tmp_path):
    for name in ("²", "x10", "x9", "１"):   # superscript two, full-width one
        make_folder(tmp_path, classes=(name,), per_class=1)
    assert scan(tmp_path).classes == ["１", "x9", "x10", "²"]


def test_interrupted_decode_leaves_no_temporary_file(tmp_path, monkeypatch):
    import cnncli.data.cache as cache
    root = make_folder(tmp_path / "data", per_class=3)

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(cache, "_decode_chunk", boom)
    with pytest.raises(KeyboardInterrupt):
        decode_folder(scan(root), (12, 12, 3), cache_dir=tmp_path / "cache")
    # nothing but the entry's (empty, unlocked) lock file
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.suffix != ".lock"] == []


def test_synth_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner
    from cnncli.cli.app import app
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = CliRunner().invoke(app, ["synth", str(blocker / "sub"), "--per-class", "1"])
    assert res.exit_code == 2 and "cannot write the data set" in res.output
    res = CliRunner().invoke(app, ["synth", str(tmp_path / "s"), "--seed", "-1"])
    assert res.exit_code == 2


def test_synth_writes_each_shapes_box_and_the_same_images(tmp_path):
    from cnncli.data.synthetic import SHAPES, draw, draw_with_box, read_boxes, write_shapes

    write_shapes(tmp_path, per_class=3, size=32, n_classes=6, seed=5, val_per_class=2)
    boxes = read_boxes(tmp_path)
    assert len(boxes) == 6 * 5 and "val/bar/bar_00001.png" in boxes
    for rel, (x0, y0, x1, y1) in boxes.items():
        assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32
        img = np.asarray(Image.open(tmp_path / rel)).astype(int)
        bg = np.median(img[[0, 0, -1, -1], [0, -1, 0, -1]], axis=0)   # shapes never reach a corner
        shape = np.abs(img - bg).sum(axis=-1) > 150                      # foreground and background differ by > 200
        yy, xx = np.nonzero(shape)
        inside = (xx + 0.5 >= x0 - 1) & (xx + 0.5 < x1 + 1) & (yy + 0.5 >= y0 - 1) & (yy + 0.5 < y1 + 1)
        assert shape.sum() > 20 and inside.mean() > 0.97, rel
    # draw and draw_with_box make the same image from the same random numbers, and leave the
    # generator in the same state: the box costs no draw
    for shape in SHAPES:
        a, b = np.random.default_rng(1), np.random.default_rng(1)
        np.testing.assert_array_equal(draw(shape, 32, a), draw_with_box(shape, 32, b)[0])
        assert a.random() == b.random()


def test_synth_hard_writes_train_val_and_test_the_same_every_time(tmp_path):
    from pathlib import Path

    from typer.testing import CliRunner
    from cnncli.cli.app import app

    for name in ("a", "b"):
        res = CliRunner().invoke(app, ["synth", str(tmp_path / name), "--hard", "--per-class", "2",
                                       "--val-per-class", "1", "--test-per-class", "1", "--size", "16"])
        assert res.exit_code == 0 and "8 train, 4 val, 4 test images" in res.output
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 16 and {f.parts[0] for f in files} == {"train", "val", "test"}
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    plain = tmp_path / "plain"
    CliRunner().invoke(app, ["synth", str(plain), "--per-class", "2", "--val-per-class", "0", "--size", "16"])
    first = Path("train") / "circle" / "circle_00000.png"
    assert (plain / first).read_bytes() != (tmp_path / "a" / first).read_bytes()


def _mapped_kb(match):
    """Resident kB of this process's memory maps of files whose path ends with `match` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
                inside = line.rstrip().endswith(match)
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="reads Linux's /proc/self/smaps")
def test_reading_the_cache_keeps_a_batch_resident_not_the_data_set(tmp_path, monkeypatch):
    # 400 images of 32 x 32 x 3 (1,200 kB, 3 kB each): the statistics and an epoch read them all
    from cnncli.data import cache

    monkeypatch.setattr(cache, "RESIDENT_BYTES", 600 << 10)   # half the file: dropped after every batch
    path = tmp_path / "cache.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(400, 32, 32, 3))
    out[:] = np.random.default_rng(0).integers(0, 256, out.shape, dtype=np.uint8)
    out.flush()
    del out
    images = np.load(path, mmap_mode="r")
    mean, std = channel_stats(images, np.arange(400), chunk_values=32 * 32 * 3 * 50)
    assert _mapped_kb("cache.npy") <= 8          # without release: the whole file, 1,200 kB
    from cnncli.config import Augment
    batches = Batches(images, np.zeros(400, np.int64), np.arange(400), mean, std, 16, Augment(flip=True))
    peak, n = 0, 0
    for x, y in batches.epoch(np.random.default_rng(0), prefetch=0):   # the prefetch thread runs make() too
        peak, n = max(peak, _mapped_kb("cache.npy")), n + len(y)
    assert n == 400 and peak <= 8                # without release: the whole file, 1,200 kB


def test_a_cache_smaller_than_the_resident_bound_is_not_dropped_every_batch(tmp_path, monkeypatch):
    # dropping its pages every batch made each batch fault them back in: 4% of LeNet-5's step
    from cnncli.data import cache

    images = np.zeros((400, 32, 32, 3), np.uint8)   # 1,200 kB
    calls = []
    monkeypatch.setattr(cache, "release", lambda images: calls.append(1))
    batches = Batches(images, np.zeros(400, np.int64), np.arange(400), [0.5] * 3, [0.2] * 3, 16)
    assert sum(len(y) for _, y in batches.epoch(np.random.default_rng(0))) == 400 and not calls
    monkeypatch.setattr(cache, "RESIDENT_BYTES", 900 << 10)    # smaller than the cache: after every batch
    assert sum(len(y) for _, y in batches.epoch(np.random.default_rng(0))) == 400 and len(calls) == 25


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="reads Linux's /proc/self/smaps")
def test_decoding_into_the_cache_does_not_keep_what_it_wrote(tmp_path, monkeypatch):
    from cnncli.data import cache

    make_folder(tmp_path / "imgs", ("a", "b"), per_class=150, size=8)
    listing = scan(tmp_path / "imgs")
    calls = []
    real = cache.release
    monkeypatch.setattr(cache, "release", lambda images: calls.append(len(images)) or real(images))
    dec = decode_folder(listing, (32, 32, 3), cache_dir=tmp_path / "c", workers=1)
    assert len(dec.files) == 300 and not dec.from_cache
    assert _mapped_kb(".npy") <= 8                # the array written (900 kB) is left on disk, not in RSS
    np.testing.assert_array_equal(dec.images, decode_folder(listing, (32, 32, 3), cache_dir=tmp_path / "c").images)
    assert len(calls) >= 300 // cache.RELEASE_EVERY + 1   # the loop's own releases ran too, not only the last


def test_channel_stats_are_the_exact_level_counts_across_chunks():
    # levels 0, 255, 51, 102 -> 0, 1, 0.2, 0.4: mean 0.4, variance 1.2 / 4 - 0.16 = 0.14
    images = np.array([[[[0], [255]]], [[[51], [102]]]], np.uint8)   # (2, 1, 2, 1)
    for chunk_values in (2, 1 << 22):                                 # an image a chunk, or both at once
        mean, std = channel_stats(images, np.array([1, 0]), chunk_values=chunk_values)
        np.testing.assert_allclose(mean, [0.4], rtol=1e-15)
        np.testing.assert_allclose(std, [np.sqrt(0.14)], rtol=1e-14)
    mean, std = channel_stats(images, np.array([0]))
    np.testing.assert_allclose((mean, std), ([0.5], [0.5]), rtol=1e-15)


def test_batches_are_built_ahead_on_a_thread_only_when_there_is_something_to_augment(monkeypatch):
    """A batch to augment is made on the prefetch thread, one ahead of the step; a plain one
    (normalising only: validation, prediction, no augmentation keys) in line, where it costs the
    step less. The batches are the same either way."""
    import threading

    import cnncli.data.batches as batches_module
    from cnncli.config import Augment

    started = []

    class Counted(threading.Thread):
        def start(self):
            if getattr(self, "_target", None) is not None and "Batches.epoch" in self._target.__qualname__:
                started.append(self)   # batches.py's prefetch thread, not any other
            super().start()

    monkeypatch.setattr(batches_module.threading, "Thread", Counted)
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3)).astype(np.uint8)
    for augment, threads in ((None, 0), (Augment(), 0), (Augment(flip=True), 1)):
        b = Batches(images, np.arange(40) % 4, np.arange(40), [0.5] * 3, [0.25] * 3, 16, augment)
        got = list(b.epoch(np.random.default_rng(3)))
        assert len(started) == threads, augment
        want = list(b.epoch(np.random.default_rng(3), prefetch=0))
        assert len(got) == len(want) == 3
        for (x, y), (x2, y2) in zip(got, want):
            np.testing.assert_array_equal(x, x2)
            np.testing.assert_array_equal(y, y2)
        started.clear()
    flips = Batches(images, np.arange(40) % 4, np.arange(40), [0.5] * 3, [0.25] * 3, 16, Augment(flip=True))
    assert len(list(flips.epoch(None))) == 3 and not started   # no generator (validation): nothing drawn, in line
