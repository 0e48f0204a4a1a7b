"""Checkpoints: one .npz that numpy.load(path, allow_pickle=False) opens; loading never runs code.

Arrays:  layers.<i>.weight / .bias / .running_mean / .running_var   (PyTorch / ONNX layout;
         i = the layer's index in the architecture's layer list)
         optim.step, optim.<slot>.layers.<i>.<name>                  (last.npz only: for --resume)
         calibration.<name>                                          (best.npz: unknown-image scores)
meta:    a 0-d string array holding JSON: format, format_version, cnncli_version, architecture,
         classes, preprocessing, epoch, metrics, (last.npz) the training state, and (best.npz,
         cnncli calibrate) calibration: temperature and what it was fitted on.
Writes go to a temporary file in the same folder, are fsynced, then renamed over the old file:
a kill at any instant leaves either the old checkpoint or the new one, never half of one.
"""

import json
import math
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import CnnError
from ..files import write_atomic

FORMAT = "cnncli-checkpoint"
FORMAT_VERSION = 1
MAX_ARRAY_BYTES = 4 << 30  # refuse a declared shape that would need more than 4 GiB


class CheckpointError(CnnError):
    pass


def save(path, arrays, meta):
    """Write arrays + meta atomically to path."""
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "cnncli_version": __version__, **meta}
    payload = dict(arrays)
    payload["meta"] = np.array(json.dumps(meta))
    write_atomic(path, lambda f: np.savez(f, **payload), "checkpoint")


def load(path):
    """-> (arrays dict, meta dict). Every way a file can be wrong is one CheckpointError line."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.is_dir():
        found = [p.name for p in (path / "best.npz", path / "last.npz") if p.exists()]
        hint = f": use {path / found[0]}" if found else ""
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{hint}")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read it ({e.strerror})") from None
    if magic != b"PK\x03\x04":
        raise CheckpointError(f"{path}: not a checkpoint (a cnncli checkpoint is an .npz file such as "
                              "best.npz or last.npz)" + (", and this one is empty" if not magic else ""))
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if "meta" not in names:
                raise CheckpointError(f"{path}: not a cnncli checkpoint (no 'meta' entry)")
            _check_sizes(path, z)
            arrays = {k: z[k] for k in names}
    except CheckpointError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise CheckpointError(f"{path}: holds object arrays that would need pickle to load; "
                                  "refused (a cnncli checkpoint never does)") from None
        raise CheckpointError(f"{path}: corrupt or not a checkpoint ({e})") from None
    except Exception as e:  # zipfile and numpy raise many kinds on damaged bytes (found by fuzzing)
        raise CheckpointError(f"{path}: truncated, corrupt or not an .npz checkpoint "
                              f"({e.__class__.__name__}: {str(e)[:80]})") from None
    meta = _parse_meta(path, arrays.pop("meta"))
    return arrays, meta


def _check_sizes(path, z):
    """Read every array's header first: refuse object arrays (pickle) and absurd declared shapes
    before numpy allocates anything."""
    from numpy.lib import format as npformat

    for name in z.zip.namelist():
        with z.zip.open(name) as f:
            version = npformat.read_magic(f)
            read_header = {(1, 0): npformat.read_array_header_1_0,
                           (2, 0): npformat.read_array_header_2_0}.get(version)
            if read_header is None:
                raise CheckpointError(f"{path}: entry '{name}' has an unknown .npy version {version}")
            shape, _, dtype = read_header(f)
        if dtype.hasobject:
            raise CheckpointError(f"{path}: entry '{name}' is an object array that would need pickle "
                                  "to load; refused (a cnncli checkpoint never holds one)")
        size = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if size > MAX_ARRAY_BYTES:
            raise CheckpointError(f"{path}: entry '{name}' declares shape {shape} ({size:,} bytes); refused")


def _parse_meta(path, raw):
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise CheckpointError(f"{path}: 'meta' is not a JSON string")
    try:
        meta = json.loads(str(raw))
    except ValueError:
        raise CheckpointError(f"{path}: 'meta' is not valid JSON (the file is damaged)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cnncli checkpoint (meta.format is not '{FORMAT}')")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: meta.format_version is missing")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version} is newer than this cnncli "
                              f"({__version__}, format {FORMAT_VERSION}): upgrade cnncli")
    for key, kind in (("architecture", dict), ("classes", list), ("preprocessing", dict)):
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(f"{path}: meta.{key} is missing or not a {kind.__name__}")
    if not all(isinstance(c, str) for c in meta["classes"]):
        raise CheckpointError(f"{path}: meta.classes must be names (strings)")
    pre = meta["preprocessing"]
    inp = pre.get("input")
    if not (isinstance(inp, list) and len(inp) == 3 and all(isinstance(v, int) and v > 0 for v in inp)):
        raise CheckpointError(f"{path}: meta.preprocessing.input must be [height, width, channels]")
    for key in ("mean", "std"):
        v = pre.get(key)
        if not (isinstance(v, list) and len(v) == inp[2]
                and all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)):
            raise CheckpointError(f"{path}: meta.preprocessing.{key} must list {inp[2]} finite number(s)")
    if min(pre["std"]) <= 0:
        raise CheckpointError(f"{path}: meta.preprocessing.std must be positive")
    c = meta.get("calibration") or {}
    t = c.get("temperature", 1.0) if isinstance(c, dict) else None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t > 0):
        raise CheckpointError(f"{path}: meta.calibration.temperature must be a positive number; "
                              "run cnncli calibrate on it again")
    return meta


def temperature(meta):
    """The calibration temperature T a checkpoint's probabilities use, softmax(z / T); 1 if none."""
    return float((meta.get("calibration") or {}).get("temperature", 1.0))


def calibration(path):
    """-> (meta['calibration'] or {}, {name: array} of the 'calibration.<name>' arrays)."""
    arrays, meta = load(path)
    return meta.get("calibration") or {}, {k[len("calibration."):]: v for k, v in arrays.items()
                                          if k.startswith("calibration.")}


def check_arrays(model, arrays, where):
    """Every parameter and buffer the model needs, present, of its shape, float and finite."""
    for i, layer in enumerate(model.layers):
        for name, shape in {**layer.param_shapes(), **layer.buffer_shapes()}.items():
            key = f"layers.{i}.{name}"
            if key not in arrays:
                raise CheckpointError(f"{where}: array '{key}' is missing")
            a = arrays[key]
            if a.shape != tuple(shape) or a.dtype.kind != "f":
                raise CheckpointError(f"{where}: array '{key}' has shape {a.shape} ({a.dtype}), "
                                      f"the architecture needs {tuple(shape)} (float)")
            if not np.all(np.isfinite(a)):
                raise CheckpointError(f"{where}: array '{key}' holds NaN or infinite values")


def thresholds_of(meta, k):
    """A multi-label checkpoint's per-label thresholds (meta.multilabel.thresholds), 0.5 each
    where it holds none (one saved before validation, or from a run without it)."""
    found = (meta.get("multilabel") or {}).get("thresholds")
    if isinstance(found, list) and len(found) == k and all(isinstance(v, (int, float)) for v in found):
        return [float(v) for v in found]
    return [0.5] * k


def load_model(path):
    """-> (Model with the checkpoint's weights, meta, arrays). Shapes are checked first."""
    from ..config import ConfigError, parse_architecture

    arrays, meta = load(path)
    try:
        arch = parse_architecture(meta["architecture"], f"{path} (architecture)")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    model = arch.build(init=False)
    if len(meta["classes"]) != model.n_classes:
        raise CheckpointError(f"{path}: {len(meta['classes'])} class names for a {model.n_classes}-class model")
    check_arrays(model, arrays, path)
    model.load_state_dict(arrays)
    return model, meta, arrays
