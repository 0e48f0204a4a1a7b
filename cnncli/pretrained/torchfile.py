"""A PyTorch state_dict file -> {name: numpy array}, without PyTorch and without running its code.

A `.pth` file is a pickle that names Python globals and calls them. A plain `pickle.load` would
call any global the file names (os.system included), so the Unpickler here resolves only the
handful a state_dict uses, each mapped to a builder of our own, and refuses every other name in
`find_class`: before the opcode that would call it runs.

Two layouts are read (torch/serialization.py):
  zip (torch >= 1.6): `<root>/data.pkl`, storage k's raw bytes in `<root>/data/<k>`.
  legacy (before 1.6): five pickles in a row (magic number, protocol 1001, system info, the
    object, the storage keys), then each storage as int64 element count + raw bytes.
A tensor in the pickle is (storage, element offset, size, stride); its array is a strided view of
the storage's bytes, checked to stay inside them, copied to a C-contiguous array.
"""

import io
import math
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import CnnError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MAX_STORAGE_BYTES = 4 << 30


class WeightsError(CnnError):
    """A weights file that cannot be read, or that names a global outside the allowed few."""


class StorageType:
    """Stands for torch.FloatStorage and its kin: the element type of a storage."""

    def __init__(self, name, dtype):
        self.name, self.dtype = name, np.dtype(dtype).newbyteorder("<")


STORAGE_TYPES = {name: StorageType(name, dtype) for name, dtype in (
    ("FloatStorage", "f4"), ("DoubleStorage", "f8"), ("HalfStorage", "f2"), ("LongStorage", "i8"),
    ("IntStorage", "i4"), ("ShortStorage", "i2"), ("CharStorage", "i1"), ("ByteStorage", "u1"),
    ("BoolStorage", "?"))}


class Storage:
    """A storage named in the pickle: its key, element type and element count; bytes come later."""

    __slots__ = ("key", "dtype", "numel", "data")

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel, self.data = key, dtype, numel, None


class TensorRef:
    """A tensor in the pickle: a strided window on a storage, turned into an array at the end."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _ints(value, what):
    if not (isinstance(value, tuple) and all(isinstance(v, int) and v >= 0 for v in value)):
        raise pickle.UnpicklingError(f"a tensor's {what} is not a tuple of counts: {value!r}")
    return value


def _rebuild_tensor(storage, offset, size, stride, *rest):
    """torch._utils._rebuild_tensor(_v2): (storage, offset, size, stride[, requires_grad, hooks])."""
    if not isinstance(storage, Storage) or not isinstance(offset, int) or offset < 0:
        raise pickle.UnpicklingError("a tensor that does not refer to a storage")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise pickle.UnpicklingError(f"a tensor's size {size} and stride {stride} differ in length")
    return TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    """torch._utils._rebuild_parameter: an nn.Parameter is its tensor."""
    if not isinstance(data, TensorRef):
        raise pickle.UnpicklingError("a parameter that holds no tensor")
    return data


def _ordered_dict(*args):
    if args:  # a state_dict's OrderedDict is rebuilt empty, then filled by SETITEMS
        raise pickle.UnpicklingError("an OrderedDict built from arguments")
    return OrderedDict()


ALLOWED = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): st for name, st in STORAGE_TYPES.items()},
}


class Malformed(Exception):
    """Not a state_dict file, or an inconsistent one; the caller adds the path."""


class Refused(pickle.UnpicklingError):
    """The pickle names a global that a state_dict never needs."""


class SafeUnpickler(pickle.Unpickler):
    """Resolves only ALLOWED globals, to our own builders; every other name is refused here,
    before any opcode could call it."""

    def __init__(self, file, storages):
        super().__init__(file, encoding="utf-8")
        self.storages = storages   # key -> Storage, shared by the tensors that view it

    def find_class(self, module, name):
        found = ALLOWED.get((module, name))
        if found is None:
            raise Refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid):
        # zip: ('storage', type, key, location, numel); legacy adds view_metadata (None here)
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"an unknown persistent id {str(pid)[:60]}")
        stype, key, _location, numel = pid[1:5]
        if len(pid) == 6 and pid[5] is not None:
            raise pickle.UnpicklingError("a storage view (from a file older than PyTorch 0.4) is not supported")
        if not isinstance(stype, StorageType) or not isinstance(key, str) or not isinstance(numel, int) \
                or numel < 0 or numel * stype.dtype.itemsize > MAX_STORAGE_BYTES:
            raise pickle.UnpicklingError(f"a malformed storage record {str(pid)[:60]}")
        old = self.storages.setdefault(key, Storage(key, stype.dtype, numel))
        if old.dtype != stype.dtype or old.numel != numel:
            raise pickle.UnpicklingError(f"storage {key} is declared twice, differently")
        return old


def read_state_dict(path):
    """-> {name: C-contiguous numpy array}, in the file's order. Every way the file can be wrong
    (missing, truncated, corrupt, not a state_dict, a refused global) is one WeightsError line."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise WeightsError(f"{path}: cannot read the weights file ({e.strerror})") from None
    try:
        obj, storages = (_read_zip(path) if head == b"PK\x03\x04" else _read_legacy(path))
        return _materialise(obj, storages)
    except Refused as e:
        raise WeightsError(f"{path}: refused: its pickle names the global {e}, which a state_dict never "
                           "needs (a tampered or foreign file); nothing in it was run") from None
    except Malformed as e:
        raise WeightsError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, TypeError, KeyError,
            IndexError, AttributeError, OverflowError, struct.error, OSError, MemoryError) as e:
        raise WeightsError(f"{path}: truncated or corrupt weights file ({e.__class__.__name__}: "
                           f"{str(e)[:100]})") from None


def _read_zip(path):
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise Malformed("a zip file without one <folder>/data.pkl: not a PyTorch state_dict file")
        root = pkl[0][:-len("data.pkl")]
        order = z.read(root + "byteorder").decode() if root + "byteorder" in names else "little"
        if order != "little":
            raise Malformed("big-endian tensors are not supported")
        storages = {}
        obj = SafeUnpickler(io.BytesIO(z.read(pkl[0])), storages).load()
        for key, s in storages.items():
            s.data = _exact(z.read(f"{root}data/{key}"), s, path)
    return obj, storages


def _read_legacy(path):
    with open(path, "rb") as f:
        storages = {}
        load = lambda: SafeUnpickler(f, storages).load()  # noqa: E731  (each pickle in turn)
        if load() != LEGACY_MAGIC:
            raise Malformed("not a PyTorch weights file (neither a zip nor the legacy magic number)")
        if load() != LEGACY_PROTOCOL:
            raise Malformed("an unknown legacy PyTorch protocol version")
        info = load()
        if not isinstance(info, dict) or not info.get("little_endian", False):
            raise Malformed("big-endian tensors are not supported")
        obj = load()
        keys = load()
        if not isinstance(keys, list) or set(keys) != set(storages):
            raise Malformed("the storage list does not match the tensors (corrupt file)")
        for key in keys:
            s = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            if numel != s.numel:
                raise Malformed(f"storage {key} holds {numel} elements, its tensors say {s.numel}")
            s.data = _exact(f.read(numel * s.dtype.itemsize), s, path)
    return obj, storages


def _exact(raw, storage, path):
    if len(raw) != storage.numel * storage.dtype.itemsize:
        raise Malformed(f"storage {storage.key} is truncated ({len(raw):,} of "
                           f"{storage.numel * storage.dtype.itemsize:,} bytes)")
    return np.frombuffer(raw, storage.dtype)


def _materialise(obj, storages):
    """The unpickled mapping -> {name: array}: every value must be a tensor."""
    if not isinstance(obj, dict):
        raise Malformed(f"holds a {type(obj).__name__}, not a state_dict (a mapping of names to tensors)")
    out = OrderedDict()
    for name, t in obj.items():
        if not isinstance(name, str) or not isinstance(t, TensorRef):
            raise Malformed(f"entry {str(name)[:40]!r} is not a tensor: not a state_dict")
        out[name] = _array(name, t)
    return out


def _array(name, t):
    """A strided window on the storage, after checking it stays inside; copied, C order."""
    data = t.storage.data
    if any(d == 0 for d in t.size):
        return np.zeros(t.size, data.dtype)
    last = t.offset + sum((d - 1) * s for d, s in zip(t.size, t.stride))
    if last >= len(data):
        raise Malformed(f"tensor {name!r} of size {t.size} reaches element {last:,} of a storage of "
                           f"{len(data):,} (corrupt file)")
    item = data.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(data[t.offset:], shape=t.size,
                                           strides=tuple(s * item for s in t.stride), writeable=False)
    return np.array(view, dtype=data.dtype.newbyteorder("="), order="C")


def n_elements(arrays, skip=("running_mean", "running_var", "num_batches_tracked")):
    """How many numbers the trainable tensors hold (batchnorm statistics and counters left out)."""
    return sum(math.prod(a.shape) for k, a in arrays.items() if k.rsplit(".", 1)[-1] not in skip)
