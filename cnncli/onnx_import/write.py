"""Writing an import: OUT_DIR/model.yaml (the architecture, one layer a line with its index) and
OUT_DIR/model.npz (a checkpoint predict, evaluate, inspect, export and train --init read)."""

from pathlib import Path

from ..errors import CnnError
from ..files import write_text_atomic
from ..model import checkpoint

HEADER = "# imported by `cnncli import` from {file} ({producer}, opset {opset})\n"


def write(imported, out_dir):
    """-> (yaml path, checkpoint path)."""
    from ..config import resolved_yaml

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(exist_ok=True)
    except OSError as e:
        raise CnnError(f"cannot create {out_dir} ({e.strerror})") from None
    src = imported.meta["imported_from"]
    text = HEADER.format(file=Path(src["file"]).name, producer=src["producer"] or "unknown producer",
                         opset=src["opset"]) + resolved_yaml(imported.architecture.to_dict())
    yaml_path, ckpt_path = out_dir / "model.yaml", out_dir / "model.npz"
    checkpoint.save(ckpt_path, imported.arrays, imported.meta)
    write_text_atomic(yaml_path, text, "architecture")
    return yaml_path, ckpt_path
