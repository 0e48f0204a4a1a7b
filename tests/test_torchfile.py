"""The state_dict reader: both layouts, strided tensors, the real EfficientNet-Lite0 file, and
files that are corrupt, truncated or name a global a state_dict never needs (refused before
anything runs)."""

import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from cnncli.pretrained.catalog import CATALOG
from cnncli.pretrained.torchfile import WeightsError, n_elements, read_state_dict

from .torchpickle import shell_payload, write_legacy, write_zip


def _arrays():
    rng = np.random.default_rng(0)
    return {"conv.weight": rng.normal(size=(4, 3, 3, 2)).astype(np.float32),
            "bn.running_var": rng.uniform(0.5, 2, size=4).astype(np.float32),
            "bn.num_batches_tracked": np.array(7, np.int64),
            "fc.bias": rng.normal(size=5)}


@pytest.mark.parametrize("write", [write_zip, write_legacy])
@pytest.mark.parametrize("column_major", [False, True])
def test_layouts_and_strides_read_exactly(tmp_path, write, column_major):
    arrays = _arrays()
    path = tmp_path / "w.pth"
    write(path, arrays, column_major=column_major)
    got = read_state_dict(path)
    assert list(got) == list(arrays)
    for k, a in arrays.items():
        assert got[k].dtype == a.dtype and got[k].shape == a.shape
        np.testing.assert_array_equal(got[k], a)
        assert got[k].flags["C_CONTIGUOUS"]


def test_the_real_efficientnet_lite0_file():
    """The published file (legacy layout, column-major conv weights): 296 tensors, 4,652,008
    trainable numbers, and values that torch.load gives (recorded from torch 2.13)."""
    sd = read_state_dict(CATALOG["efficientnet_lite0"].weights_path())
    assert len(sd) == 296
    assert n_elements(sd) == 4_652_008
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    np.testing.assert_allclose(sd["_conv_stem.weight"][0, 0, 0], [-1.1103361, -1.3087704, -0.01015691], rtol=1e-6)
    assert sd["_fc.weight"].shape == (1000, 1280) and sd["_bn0.num_batches_tracked"].dtype == np.int64


def _payload_ran(marker):
    return marker.exists()


@pytest.mark.parametrize("layout", ["zip", "legacy", "legacy-header"])
def test_a_foreign_global_is_refused_before_it_runs(tmp_path, layout):
    marker = tmp_path / "payload_ran"
    payload = shell_payload(f"touch {marker}")
    path = tmp_path / "evil.pth"
    if layout == "zip":
        write_zip(path, _arrays(), payload=payload)
    elif layout == "legacy":
        write_legacy(path, _arrays(), payload=payload)
    else:   # the payload in place of the whole object, after the three header pickles
        write_legacy(path, _arrays(), body=b"\x80\x02" + payload + b".")
    with pytest.raises(WeightsError) as e:
        read_state_dict(path)
    msg = str(e.value)
    assert "\n" not in msg and "refused" in msg and "os.system" in msg
    assert not _payload_ran(marker)


def test_the_payload_is_real(tmp_path):
    """The control for the test above: the same bytes through a plain pickle.load do run the command."""
    marker = tmp_path / "payload_ran"
    body = b"\x80\x02" + shell_payload(f"touch {marker}") + b"."
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.loads({body!r})"], check=True)
    assert _payload_ran(marker)


def test_a_pickle_with_a_reduce_of_os_system_is_refused(tmp_path):
    """A file made the usual way: an object whose __reduce__ returns (os.system, (cmd,))."""
    marker = tmp_path / "payload_ran"

    class Evil:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
    with pytest.raises(WeightsError, match="refused"):
        read_state_dict(path)
    assert not _payload_ran(marker)


def test_truncated_and_corrupt_files_are_one_line(tmp_path):
    real = CATALOG["efficientnet_lite0"].weights_path().read_bytes()
    zipped = tmp_path / "z.pth"
    write_zip(zipped, _arrays())
    cases = {"truncated_legacy.pth": real[:len(real) // 2], "header_only.pth": real[:300],
             "truncated_zip.pth": zipped.read_bytes()[:-40], "noise.pth": bytes(range(256)) * 8,
             "empty.pth": b""}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(WeightsError) as e:
            read_state_dict(path)
        assert "\n" not in str(e.value) and str(path) in str(e.value), name


def test_a_storage_shorter_than_its_tensor_is_refused(tmp_path):
    path = tmp_path / "short.pth"
    write_zip(path, _arrays())
    with zipfile.ZipFile(path) as z:
        items = {n: z.read(n) for n in z.namelist()}
    items["archive/data/0"] = items["archive/data/0"][:-8]
    with zipfile.ZipFile(path, "w") as z:
        for n, b in items.items():
            z.writestr(n, b)
    with pytest.raises(WeightsError, match="storage 0 is truncated"):
        read_state_dict(path)


def test_a_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="cannot read"):
        read_state_dict(tmp_path / "none.pth")
