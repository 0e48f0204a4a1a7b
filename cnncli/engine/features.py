"""The frozen-feature cache: when train.freeze holds a prefix of the graph fixed and every epoch
shows each image as it is (no augmentation), each image's output at the end of that prefix (the
boundary) is computed once, in inference mode and in batches, stored beside the decode cache as a
memory-mapped float32 array (N, *boundary shape), and training runs only the layers after the
boundary on those features. Validation reads the same cache; checkpoints hold the whole network,
because the layers after the boundary share their arrays with the whole model (Tail).

The key covers the images (the decode cache's key), the frozen layers' specs and a sha256 of
their arrays, the boundary, and the preprocessing (input, resize rule, mean, std): a change in any
of them is another file, computed afresh. The boundary must be one tensor: a layer after it that
reads an earlier output (a skip connection over it) or the input would need more than the cache.
"""

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from ..data.augment import draw
from ..data.batches import Batches, FeatureBatches
from ..data.cache import default_cache_dir
from ..files import unique, unlock, wait_lock, write_text_atomic
from ..model.graph import INPUT, Model

VERSION = 1


def fixed(model, i):
    """Does layer i give every image the same output in every epoch: frozen, or without weights and
    without randomness or batch statistics (a pooling after the frozen backbone)?"""
    layer = model.layers[i]
    return i in model.frozen or not (layer.param_shapes() or layer.random or layer.batch_statistics)


def boundary(model):
    """-> (k, None): layers 0..k are fixed (frozen, or a parameter-free layer such as pooling) and
    no layer after k reads anything before k (the highest such k), or (None, why not)."""
    top = -1
    while top + 1 < len(model.layers) - 1 and fixed(model, top + 1):
        top += 1
    if top >= 0 and not model.frozen & set(range(top + 1)):
        top = -1
    if top < 0:
        return None, "train.freeze does not hold layers[0] fixed: there is no frozen prefix to compute once"
    crossing = None
    for k in range(top, -1, -1):
        reads = [(i, j) for i in range(k + 1, len(model.layers)) for j in model.sources[i] if j < k]
        if not reads:
            return k, None
        crossing = crossing or reads[0]
    i, j = crossing
    what = "the input" if j == INPUT else f"layers[{j}]"
    return None, (f"layers[{i}] reads {what} across the frozen prefix's end (a skip connection), so no single "
                  "output of the frozen layers holds all that the trainable ones read")


def augmenting(augment):
    """The augmentation keys that draw something (data/augment.draw's rule), [] for none."""
    if augment is None:
        return []
    p = draw(augment, np.random.default_rng(0), 1, 8, 8)
    return [k for k, v in p.items() if v is not None]


def why_not(cfg, model, data, dist):
    """-> (boundary k, None) when the cache can be used, else (None, why not)."""
    t = cfg.train
    keys = augmenting(cfg.data.augment)
    if not t.feature_cache:
        return None, "train.feature_cache is false"
    if keys:
        return None, (f"data.augment ({', '.join(keys)}) changes each image every epoch, so the frozen "
                      "layers' output is not the same twice")
    if dist.size > 1:
        return None, f"training runs over {dist.size} processes (data-parallel)"
    if t.ema:
        return None, "train.ema averages the weights of the whole network"
    if not data.keys.get("train") or (data.val is not None and not data.keys.get("val")):
        return None, "the images did not come through the decode cache"
    return boundary(model)


def attach(cfg, model, data, dist, report):
    """-> (data, model to train): the cached features and the layers after the boundary (a Tail
    sharing model's arrays) when the cache applies, else (data, model) unchanged. One line says
    which, and why not; nothing is said when nothing is frozen."""
    if not model.frozen:
        return data, model
    k, reason = why_not(cfg, model, data, dist)
    if k is None:
        report.message(f"feature cache: off: {reason}; every epoch runs the frozen layers")
        return data, model
    pre = data.preprocessing(cfg.model.input, cfg.data.resize)   # as the checkpoint records it: part of the key
    folder = Path(cfg.data.cache_dir or default_cache_dir()) / "features"
    report.phase(f"feature cache: layers[0..{k}]'s output for each image...")
    start = time.perf_counter()
    train, hit = features(model, k, data.train, data.keys["train"], pre, folder)
    val = None
    if data.val is not None:
        val_features, val_hit = (train, hit) if data.keys["val"] == data.keys["train"] else \
            features(model, k, data.val, data.keys["val"], pre, folder)
        hit = hit and val_hit
        val = FeatureBatches(val_features, data.val.labels, data.val.indices, data.val.batch_size)
    seconds = time.perf_counter() - start
    tail = Tail(model, k, cfg.train.freeze_batchnorm)
    shape = "x".join(map(str, model.layers[k].out_shape))
    report.message(f"feature cache: on: layers[0..{k}] (frozen, or without weights) run once per image, their "
                   f"output ({shape}) {'read from' if hit else 'computed and stored in'} {folder} in {seconds:.1f}s; "
                   f"each epoch trains layers[{k + 1}..{len(model.layers) - 1}] on it")
    train = FeatureBatches(train, data.train.labels, data.train.indices, data.train.batch_size)
    return dataclasses.replace(data, train=train, val=val), tail


def feature_key(model, k, images_key, pre):
    """sha256 over the images' key, layers 0..k's specs and arrays, and the preprocessing."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": VERSION, "images": images_key, "boundary": k, "input": list(model.input_shape),
                         "specs": model.specs[:k + 1], "dtype": str(model.dtype), "preprocessing": pre},
                        sort_keys=True, default=str).encode())
    for i in range(k + 1):
        layer = model.layers[i]
        for kind, arrays in (("p", layer.params), ("b", layer.buffers)):
            for name in sorted(arrays):
                a = np.ascontiguousarray(arrays[name])
                h.update(f"{i}.{kind}.{name}.{a.dtype}.{a.shape}".encode())
                h.update(a.tobytes())
    return h.hexdigest()[:32]


def features(model, k, batches, images_key, pre, folder):
    """-> (float32 (N, *boundary shape) memory map of every image in batches.images, read from the
    cache?). Computed under a lock (runs started together compute once), written under a temporary
    name and renamed; a folder that cannot be written leaves the features in memory."""
    key = feature_key(model, k, images_key, pre)
    npy, meta = folder / f"{key}.npy", folder / f"{key}.json"
    shape = (len(batches.images),) + tuple(model.layers[k].out_shape)
    hit = _read(npy, meta, shape)
    if hit is not None:
        return hit, True
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = wait_lock(folder / f"{key}.lock")
    except OSError:
        return _compute(model, k, batches, np.empty(shape, np.float32)), False
    try:
        hit = _read(npy, meta, shape)
        return (hit, True) if hit is not None else (_publish(model, k, batches, shape, folder, key, npy, meta), False)
    finally:
        unlock(lock)


def _publish(model, k, batches, shape, folder, key, npy, meta):
    tmp = folder / f"{key}.{unique()}.tmp.npy"
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    except OSError:
        return _compute(model, k, batches, np.empty(shape, np.float32))
    try:
        _compute(model, k, batches, out)
        out.flush()
        os.replace(tmp, npy)
        write_text_atomic(meta, json.dumps({"count": shape[0], "shape": list(shape[1:])}), "feature cache index")
    finally:
        tmp.unlink(missing_ok=True)
    del out
    return np.load(npy, mmap_mode="r")


def _read(npy, meta, shape):
    try:
        info = json.loads(meta.read_text())
        arr = np.load(npy, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if arr.shape != shape or arr.dtype != np.float32 or info.get("count") != shape[0]:
        return None
    return arr


def _compute(model, k, batches, out):
    """out[i] = layers 0..k's inference output for image i of batches.images, in order."""
    every = Batches(batches.images, batches.labels, np.arange(len(batches.images)), batches.mean, batches.std,
                    batches.batch_size)
    plan = prefix_plan(model, k)
    start = 0
    for x, _ in every.epoch(None):
        out[start:start + len(x)] = model.forward(x, plan=plan, stop=k)
        start += len(x)
    return out


def prefix_plan(model, k):
    """The model's inference plan (conv -> batchnorm -> activation folded) for layers 0..k; none when
    a fold reaches across k (layer k's own output would then not be computed): a layer after k
    folded into a conv at or before it, or a depthwise conv whose 1x1 stages (its entry's items
    4 and 5, expand and project) lie on both sides of k."""
    plan = model.inference_plan()
    spans = [(v[4][0] if v[4] else j, v[5][0] if v[5] else j) for j, v in plan.items() if v is not None and len(v) > 4]
    inside = {m for span in spans for m in span}
    if any(j > k and v is None and j not in inside and model.sources[j][0] <= k for j, v in plan.items()) or \
            any(lo <= k < hi for lo, hi in spans):
        return {}
    return {i: v for i, v in plan.items() if i <= k}


class Tail(Model):
    """Layers k+1.. of `model`, reading layer k's output as their input and sharing `model`'s
    parameters, gradients and buffers (what the optimizer steps here, the whole model's checkpoint
    holds); parameter keys keep their index in the whole model ('layers.<i>.<name>'), so the
    optimizer's state in last.npz reads the same with the cache or without it."""

    def __init__(self, model, k, batchnorm_statistics=False):
        off = k + 1
        specs = []
        for i in range(off, len(model.layers)):
            kind, args = model.specs[i]
            refs = ["input" if j == k else j - off for j in model.sources[i]]
            specs.append((kind, {**args, "from": refs if model.layers[i].n_inputs is None else refs[0]}))
        super().__init__(model.layers[k].out_shape, specs, dtype=model.dtype, build_params=False)
        self.offset = off
        for mine, theirs in zip(self.layers, model.layers[off:]):
            mine.params, mine.grads, mine.buffers = theirs.params, theirs.grads, theirs.buffers
        self.freeze({i - off for i in model.frozen if i >= off}, batchnorm_statistics)

    def _shifted(self, params):
        out = []
        for key, p, g in params:
            _, i, name = key.split(".", 2)
            out.append((f"layers.{int(i) + self.offset}.{name}", p, g))
        return out

    def named_params(self):
        return self._shifted(super().named_params())

    def trainable_params(self):
        return self._shifted(super().trainable_params())
