"""Export a checkpoint to ONNX (write.py: the file; graph.py: one emitter per layer kind) and
check it against cnncli's own forward in ONNX Runtime (check.py). Needs `cnncli[onnx]`."""

from .check import TOLERANCE, CheckReport, check, find_images, require_runtime
from .write import DEFAULT_OPSET, MIN_OPSET, ExportInfo, export, require_onnx

__all__ = ["export", "check", "find_images", "require_onnx", "require_runtime", "ExportInfo", "CheckReport",
           "DEFAULT_OPSET", "MIN_OPSET", "TOLERANCE"]
