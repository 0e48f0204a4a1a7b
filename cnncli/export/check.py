"""`cnncli export --check`: run the written .onnx file in ONNX Runtime and compare it with cnncli's
own forward on the same inputs: random pixels, and image files preprocessed as `cnncli predict`
does (cnncli's decoder at the checkpoint's size and resize rule; pixel / 255 for ONNX, cnncli's
own normalisation for cnncli)."""

from dataclasses import dataclass

import numpy as np

from ..errors import CnnError
from ..model.checkpoint import temperature

TOLERANCE = 1e-5


@dataclass
class CheckReport:
    runtime: str            # ONNX Runtime's version
    output: str             # 'probabilities' or 'logits'
    random: int             # random inputs compared
    images: int             # image files compared
    max_diff: float         # the largest |onnx - cnncli| over all of them
    scale: float            # probabilities: 1; logits: the largest |logit| when over 1
    tolerance: float
    skipped: list = None    # [(path, reason)]: image files that could not be read, left out as predict does

    @property
    def ok(self):
        return self.max_diff <= self.tolerance * self.scale


def require_runtime():
    """-> the onnxruntime module, or one line saying what to install."""
    try:
        import onnxruntime
    except ImportError:
        raise CnnError("--check runs the model in ONNX Runtime, which is not installed: "
                       "pip install 'cnncli[onnx]' brings it (or pip install onnxruntime)") from None
    return onnxruntime


def find_images(paths):
    """Files, folders (recursive) and globs, as `cnncli predict` takes them -> image files.
    A path that gives no image is an error."""
    from ..commands.predict import collect

    files, missing = collect(paths)
    if missing:
        path, reason = missing[0]
        raise CnnError(f"--check-images {path}: {reason}")
    return files


def read_images(loaded, paths):
    """-> (uint8 (N, H, W, C) decoded by cnncli's decoder at the checkpoint's size and resize rule,
    [(path, reason)] of the files that could not be read: skipped, as predict and evaluate do)."""
    from ..data.cache import decode_files

    files = find_images(paths)
    images, skipped = [], []
    for i, item in decode_files(files, loaded.shape, loaded.resize, None, None):
        if isinstance(item, str):
            skipped.append((str(files[i]), item))
        else:
            images.append(item[0])   # (array, what it was before conversion)
    h, w, c = loaded.shape
    return (np.stack(images) if images else np.zeros((0, h, w, c), np.uint8)), skipped


def check(ckpt_path, onnx_path, images=(), n_random=8, seed=0, tolerance=TOLERANCE):
    """Run onnx_path in ONNX Runtime on n_random random inputs and on the image files `images`,
    and compare with the checkpoint's own forward (Model.predict_proba, or the logits) -> CheckReport."""
    from ..kernels.augment import prepare_batch
    from ..commands.predict import load

    ort = require_runtime()
    loaded = load(ckpt_path)
    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as e:  # an opset or IR version newer than this runtime, a damaged file
        raise CnnError(f"{onnx_path}: ONNX Runtime {ort.__version__} cannot load it "
                       f"({str(e).splitlines()[0][:160]})") from None
    output = session.get_outputs()[0].name
    model, t = loaded.model, temperature(loaded.meta)
    h, w, c = loaded.shape

    def theirs(pixels):              # (N, H, W, C) in [0, 1] -> ONNX's output
        return session.run([output], {"pixels": np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))})[0]

    def ours(x):                     # normalised (N, H, W, C) -> cnncli's output
        return model.forward(x) if output == "logits" else model.evaluate([(x, None)], temperature=t)[0]

    pairs = []
    if n_random:
        pixels = np.random.default_rng(seed).random((n_random, h, w, c), dtype=np.float32)
        x = ((pixels - loaded.mean) / loaded.std).astype(np.float32)
        pairs.append((theirs(pixels), ours(x)))
    decoded, skipped = read_images(loaded, images) if images else (np.zeros((0, h, w, c), np.uint8), [])
    if len(decoded):
        pairs.append((theirs(decoded.astype(np.float32) / np.float32(255)),
                      ours(prepare_batch(decoded, loaded.mean, loaded.std))))
    diffs = [np.max(np.abs(a - b)) for a, b in pairs]
    diff = float(np.max(diffs)) if diffs else 0.0    # NaN stays NaN, and fails
    scale = 1.0
    if output == "logits" and pairs:
        scale = max(1.0, max(float(np.max(np.abs(b))) for _, b in pairs))
    return CheckReport(ort.__version__, output, n_random, len(decoded), diff, scale, tolerance, skipped)
