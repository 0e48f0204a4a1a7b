"""`cnncli import --check`: the ONNX file in ONNX Runtime against the imported model on random
pixels, compared where both compute the same thing (probabilities where the graph has its head,
else logits), relative to the output's scale."""

from dataclasses import dataclass

import numpy as np

from ..export.check import require_runtime
from ..errors import CnnError

TOLERANCE = 1e-4


@dataclass
class Checked:
    runtime: str
    inputs: int
    max_diff: float
    scale: float
    tolerance: float = TOLERANCE

    @property
    def ok(self):
        return self.max_diff <= self.tolerance * self.scale


def compare(imported, path, n=4, seed=0):
    """Run both on n random images of pixels in [0, 1] -> Checked."""
    ort = require_runtime()
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:
        raise CnnError(f"{path}: ONNX Runtime {ort.__version__} cannot load it ({str(e).splitlines()[0][:160]})") from None
    src, model, meta = imported.source, imported.model, imported.meta
    h, w, c = src.shape
    pre = meta["preprocessing"]
    pixels = np.random.default_rng(seed).random((n, h, w, c), dtype=np.float32)
    user_mean, user_std = imported.user_stats
    theirs_in = ((pixels - user_mean) / user_std).astype(np.float32).transpose(0, 3, 1, 2)
    batch = 1 if src.batch == 1 else n
    theirs = np.concatenate([session.run([src.output], {src.input: np.ascontiguousarray(theirs_in[i:i + batch])})[0]
                             for i in range(0, n, batch)]).reshape(n, -1)
    x = ((pixels - np.array(pre["mean"])) / np.array(pre["std"])).astype(np.float32)
    ours = model.predict_proba(x) if src.head_found else model.forward(x)
    if src.head == "sigmoid" and src.head_found:
        ours = ours.reshape(n, -1)
    diff = float(np.max(np.abs(theirs - ours)))
    scale = max(1.0, float(np.max(np.abs(ours))))
    return Checked(ort.__version__, n, diff, scale)
