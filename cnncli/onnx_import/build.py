"""From an ONNX file to a cnncli model in memory: read, convert, assemble, and build it with the
weights loaded (nothing written here; write.py writes)."""

import json
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..errors import CnnError
from ..model import checkpoint
from . import assemble
from .convert import Importer
from .reader import read


@dataclass
class Imported:
    architecture: object     # config.Architecture
    structure: object        # Model built without parameters: its layers, shapes and counts
    arrays: dict             # checkpoint arrays: the only copy of the weights until .model is asked for
    meta: dict               # checkpoint meta
    source: object           # reader.Source
    operators: Counter       # ONNX operators seen
    layers: Counter          # cnncli layer kinds made
    folded: Counter          # what was folded away
    onnx_weights: int        # numbers in the graph's float constants that layers took
    seconds: float = 0.0
    user_stats: tuple = None  # (mean, std) the graph's own input expects, on pixel / 255
    _loaded: bool = False

    @property
    def model(self):
        """The Model with the weights loaded (built on first use: writing the import needs only
        the arrays, so a plain `cnncli import` never holds a second copy of the weights)."""
        if not self._loaded:
            self.structure.init_params(None)
            self.structure.load_state_dict(self.arrays)
            self._loaded = True
        return self.structure


def build(path, classes_file=None, input_hwc=None, mean=None, std=None):
    """An .onnx file -> Imported. Every way it can fail is one CnnError line."""
    from ..config import ConfigError, parse_architecture

    start = time.perf_counter()
    src = read(path, input_hwc)
    h, w, c = src.shape
    user_mean, user_std = _stats(mean, c, "mean", 0.0), _stats(std, c, "std", 1.0)
    if np.any(user_std <= 0):
        raise CnnError("--std must be positive")
    imp = Importer(src, user_mean, user_std).run()
    assemble.head(imp)
    layers = assemble.fuse(assemble.join_adds(imp.layers))
    counts, folded, found = imp.counts, imp.folded, imp.preprocessing
    del imp      # its constants: the weights now live in the layers only
    raw = {"input": [h, w, c], "layers": assemble.specs(layers)}
    try:
        arch = parse_architecture(raw, f"{path} (imported)")
    except ConfigError as e:
        raise CnnError(f"{e} (the imported graph is not a network cnncli can build)") from None
    model = arch.build(build_params=False)
    arrays = {f"layers.{i}.{k}": np.ascontiguousarray(v, np.float32)
              for i, layer in enumerate(layers) for k, v in layer.weights.items()}
    checkpoint.check_arrays(model, arrays, path)
    classes = _classes(src, classes_file, model.n_classes)
    pre_mean, pre_std = _preprocessing(found, src, user_mean, user_std, mean is None and std is None)
    meta = {"architecture": arch.to_dict(), "classes": classes, "epoch": 0,
            "preprocessing": {"input": [h, w, c], "channels": c, "mean": pre_mean, "std": pre_std,
                              "resize": "stretch", "scale": "x = (pixel / 255 - mean) / std"},
            "imported_from": {"file": str(path), "producer": src.proto.producer_name, "opset": src.opset,
                              "output": "probabilities" if src.head_found else "logits"}}
    used = sum(v.size for v in arrays.values())
    kinds = Counter(layer.kind for layer in layers)
    return Imported(arch, model, arrays, meta, src, counts, kinds, folded, used,
                    time.perf_counter() - start, (user_mean, user_std))


def _stats(values, c, what, default):
    if values is None:
        return np.full(c, default, np.float64)
    values = np.asarray(values, np.float64).reshape(-1)
    if not np.all(np.isfinite(values)):
        raise CnnError(f"--{what} must be finite numbers, got {', '.join(f'{v:g}' for v in values)}")
    if values.size == 1:
        return np.full(c, values[0])
    if values.size != c:
        raise CnnError(f"--{what} gives {values.size} numbers for an input of {c} channels: give 1 or {c}")
    return values


def _classes(src, classes_file, n):
    """Class names: the file's metadata (cnncli's exports hold them), --classes FILE, or class_<i>."""
    names = None
    if classes_file is not None:
        try:
            names = [line.strip() for line in open(classes_file, encoding="utf-8") if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise CnnError(f"--classes {classes_file}: cannot read it ({getattr(e, 'strerror', None) or e}): give a "
                           "text file, one class name a line") from None
        where = f"--classes {classes_file}"
    elif "classes" in src.metadata:
        try:
            names = json.loads(src.metadata["classes"])
        except ValueError:
            names = None
        where = "the model's metadata"
    if names is None:
        return [f"class_{i}" for i in range(n)]
    if not isinstance(names, list) or len(names) != n or not all(isinstance(x, str) for x in names):
        raise CnnError(f"{where} names {len(names) if isinstance(names, list) else 'no'} classes; "
                       f"the network has {n}")
    return names


def _preprocessing(found, src, user_mean, user_std, from_metadata):
    """-> (mean, std) lists. A cnncli export's metadata holds them in full precision: used when
    they are what the graph computes (its constants are their float32 roundings)."""
    mean, std = found if found is not None else (user_mean, user_std)
    if from_metadata and "mean" in src.metadata and "std" in src.metadata:
        try:
            m, s = (np.asarray(json.loads(src.metadata[k]), np.float64) for k in ("mean", "std"))
            if m.shape == mean.shape and s.shape == std.shape and np.array_equal(
                    m.astype(np.float32), mean.astype(np.float32)) and np.array_equal(s.astype(np.float32),
                                                                                     std.astype(np.float32)):
                mean, std = m, s
        except ValueError:
            pass
    return [float(v) for v in mean], [float(v) for v in std]
