"""`cnncli import` holds one copy of the weights: its peak memory, measured in a subprocess
(ru_maxrss, no timing), stays under 3x the weights' bytes above what merely importing cnncli,
numpy and onnx costs (measured here too, in a subprocess of its own). Before the fix it held
three copies plus the gradients' zeros (4.5x the weights above that)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx

RESNET50 = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"

# ru_maxrss is in KiB on Linux; the child prints its own peak (RUSAGE_SELF: not the parent's,
# not an earlier child's), once its work is done
PEAK = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"
FIXED = "import numpy, onnx, cnncli.cli.app, cnncli.onnx_import\n" + PEAK
IMPORT = ("import sys\nfrom cnncli.cli.app import app\n"
          "try:\n    app(['import', sys.argv[1], sys.argv[2]])\nexcept SystemExit as e:\n"
          "    assert not e.code, e.code\n" + PEAK)


def _peak(code, *args):
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])


def test_import_holds_one_copy_of_the_weights(tmp_path):
    out = tmp_path / "imported"
    peak = _peak(IMPORT, RESNET50, out)
    with np.load(out / "model.npz") as z:
        weights = sum(z[k].nbytes for k in z.files if k != "meta")
    assert weights > 100e6      # ResNet-50: 25.6M float32 numbers
    fixed = min(_peak(FIXED) for _ in range(2))
    assert peak < fixed + 3 * weights, json.dumps({"peak": peak, "fixed": fixed, "weights": weights})
