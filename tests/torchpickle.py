"""Writes PyTorch state_dict files without PyTorch, opcode by opcode (pickle protocol 2), in the
two layouts torch.save has used: zip (torch >= 1.6) and legacy. For the reader's tests: the
layouts, strided (column-major) tensors, and files that name a global a state_dict never does.
(Both layouts as written here were checked once to load in torch 2.13's torch.load, weights_only.)
"""

import io
import pickle
import struct
import zipfile

import numpy as np

STORAGE = {"<f4": "FloatStorage", "<f8": "DoubleStorage", "<i8": "LongStorage", "<i4": "IntStorage"}


def _str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i):
    return b"J" + struct.pack("<i", i)


def _tuple(items):
    return b"(" + b"".join(_int(i) for i in items) + b"t"


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def state_pickle(arrays, legacy=False, column_major=False, payload=b""):
    """-> (pickle bytes, [(storage key, raw bytes, item size)]). An OrderedDict of name -> tensor; each
    tensor's storage holds its elements in C or column-major order (the stride says which).
    payload: opcodes pushing one more value, stored under the key 'extra'."""
    out = [b"\x80\x02", _global("collections", "OrderedDict"), b")R", b"("]
    storages = []
    for i, (name, a) in enumerate(arrays.items()):
        data = np.asfortranarray(a) if column_major else np.ascontiguousarray(a)
        stride = tuple(s // a.itemsize for s in data.strides) if a.ndim else ()
        key = str(i)
        pid = [_str("storage"), _global("torch", STORAGE[a.dtype.str]), _str(key), _str("cpu"), _int(a.size)]
        if legacy:
            pid.append(b"N")   # view_metadata
        out += [_str(name), _global("torch._utils", "_rebuild_tensor_v2"), b"(", b"(", *pid, b"t", b"Q",
                _int(0), _tuple(a.shape), _tuple(stride), b"\x89", _global("collections", "OrderedDict"), b")R",
                b"t", b"R"]
        storages.append((key, data.ravel(order="K").tobytes(), a.itemsize))
    if payload:
        out += [_str("extra"), payload]
    out += [b"u", b"."]
    return b"".join(out), storages


def write_zip(path, arrays, **kw):
    body, storages = state_pickle(arrays, **kw)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", body)
        z.writestr("archive/byteorder", "little")
        for key, raw, _ in storages:
            z.writestr(f"archive/data/{key}", raw)
        z.writestr("archive/version", "3\n")


def write_legacy(path, arrays, body=None, **kw):
    pickled, storages = state_pickle(arrays, legacy=True, **kw)
    f = io.BytesIO()
    for value in (0x1950A86A20F9469CFC6C, 1001,
                  {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(value, f, protocol=2)
    f.write(pickled if body is None else body)
    pickle.dump([key for key, _, _ in storages], f, protocol=2)
    for key, raw, itemsize in storages:
        f.write(struct.pack("<q", len(raw) // itemsize) + raw)   # element count, then the bytes
    path.write_bytes(f.getvalue())


def shell_payload(command):
    """Opcodes that call os.system(command) when a plain pickle.load reads them."""
    return _global("os", "system") + b"(" + _str(command) + b"tR"
