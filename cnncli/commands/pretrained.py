"""`cnncli pretrained list | get`: the pretrained networks cnncli knows, and one of them written
as a normal checkpoint (model.npz) beside its architecture (model.yaml)."""

from ..pretrained.catalog import CATALOG, MissingWeights


def networks():
    """-> one dict per known network: name, parameters, ImageNet top-1 as published, input size,
    licence, and whether its weights package is installed."""
    rows = []
    for e in CATALOG.values():
        try:
            e.weights_path()
            installed = True
        except MissingWeights:
            installed = False
        h, w, c = e.input
        rows.append({"name": e.name, "parameters": e.parameters, "imagenet_top1": e.top1,
                     "top1_source": e.top1_source, "input": [h, w, c], "licence": e.licence,
                     "package": e.distribution, "installed": installed})
    return rows


def get(name, out_dir, weights=None, force=False):
    """Write out_dir/model.npz and out_dir/model.yaml -> a summary dict (paths, classes, parameters)."""
    from ..pretrained.catalog import entry
    from ..pretrained.convert import get as write

    e = entry(name)
    ckpt, yaml_path = write(name, out_dir, weights, force)
    return {"name": e.name, "checkpoint": str(ckpt), "architecture": str(yaml_path), "classes": len(e.class_names()),
            "parameters": e.parameters, "note": e.preprocessing_note}
