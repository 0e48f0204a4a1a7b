"""`cnncli import`: an ONNX image classifier -> a cnncli architecture (model.yaml) and checkpoint
(model.npz). reader.py reads the file, convert.py walks its nodes (constants folded, element-wise
runs recognised as cnncli's functions by functions.py, per-channel affine maps by affine.py, every
other operator by its converter in ops.py), assemble.py makes the layer list, build.py builds and
loads the model, write.py writes it, check.py compares it with ONNX Runtime."""

from ..files import check_model_folder
from .build import Imported, build
from .check import TOLERANCE, Checked, compare
from .write import write


def import_onnx(path, out_dir, classes_file=None, input_hwc=None, mean=None, std=None, force=False):
    """An .onnx file -> OUT_DIR/model.yaml and OUT_DIR/model.npz -> (Imported, yaml path, npz path).
    Nothing is written when anything fails."""
    check_model_folder(out_dir, force)
    imported = build(path, classes_file, input_hwc, mean, std)
    yaml_path, ckpt_path = write(imported, out_dir)
    return imported, yaml_path, ckpt_path


__all__ = ["import_onnx", "build", "write", "compare", "Imported", "Checked", "TOLERANCE"]
