"""A training config -> RunConfig: the model (a path or inline), data, train and output sections,
checked key by key; and load, which reads either kind of file."""

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.optim import SCHEDULES
from .architecture import Architecture, load_architecture, parse_architecture
from .yaml_file import (ConfigError, _type_error, apply_overrides, as_number, check_keys, did_you_mean, is_int,
                        is_number, read_yaml)


# --- the training config ------------------------------------------------------------------

def _check(where, key, value, kind, **opt):
    """One typed value. kind: int | number | bool | str | path | choice | weights | floats | range | layers."""
    if kind == "number":
        value = as_number(value)
    elif kind in ("floats", "range") and isinstance(value, list):
        value = [as_number(v) for v in value]
    if kind == "int":
        lo = opt.get("min", 1)
        if not is_int(value) or value < lo:
            raise _type_error(where, key, f"an integer >= {lo}", value)
    elif kind == "number":
        lo, hi, closed = opt.get("min", 0.0), opt.get("max"), opt.get("closed")
        ok = is_number(value) and (value > lo if opt.get("open") else value >= lo) and (
            hi is None or (value <= hi if closed else value < hi))
        if not ok:
            rng = f"> {lo}" if opt.get("open") else f">= {lo}"
            top = f" and {'<=' if closed else '<'} {hi}" if hi is not None else ""
            raise _type_error(where, key, f"a number {rng}{top}", value)
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise _type_error(where, key, "true or false", value)
    elif kind in ("str", "path"):
        if not isinstance(value, str) or not value:
            raise _type_error(where, key, "a text value" if kind == "str" else "a path", value)
    elif kind == "choice":
        if value not in opt["choices"]:
            raise ConfigError(f"{where}: '{key}' must be one of {', '.join(opt['choices'])}, got {value!r}"
                              f"{did_you_mean(value, opt['choices'])}")
    elif kind == "weights":
        value = [as_number(v) for v in value] if isinstance(value, list) else value
        if value != "auto" and not (isinstance(value, list) and value and all(is_number(v) and v > 0 for v in value)):
            raise _type_error(where, key, "'auto' or a list of positive numbers, one per class", value)
        if isinstance(value, list):
            value = [float(v) for v in value]
    elif kind == "floats":
        n, lo, hi = opt["n"], opt.get("min"), opt.get("max")
        ok = isinstance(value, list) and len(value) in n and all(is_number(v) for v in value)
        if ok and lo is not None:
            ok = all(lo <= v < hi for v in value)
        if not ok:
            bounds = f" in [{lo}, {hi})" if lo is not None else ""
            raise _type_error(where, key, f"a list of {' or '.join(map(str, n))} numbers{bounds}", value)
        value = [float(v) for v in value]
    elif kind == "layers":   # a layer's name or index, or a list of them (resolved against the model later)
        items = value if isinstance(value, list) else [value]
        if not items or not all((is_int(v) and v >= 0) or (isinstance(v, str) and v) for v in items):
            raise _type_error(where, key, "a layer's name or index, or a list of them", value)
    elif kind == "range":
        lo, hi = opt["min"], opt["max"]
        ok = (isinstance(value, list) and len(value) == 2 and all(is_number(v) for v in value)
              and lo < value[0] <= value[1] <= hi)
        if not ok:
            raise _type_error(where, key, f"[low, high] with {lo} < low <= high <= {hi:g}", value)
        value = [float(v) for v in value]
    return value


def setting(default, kind, **limits):
    """A config key declared once: its default, its kind (see _check) and its limits, e.g.
    `epochs: int = setting(10, "int")`. A list default is copied for each instance."""
    meta = {"kind": kind, "limits": limits}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls):
    """A nested section of keys (data.augment, data.augment.cutout), parsed by parse_section."""
    return field(default_factory=cls, metadata={"kind": "section", "section": cls})


@dataclass
class RandomResizedCrop:
    """A crop of a random share of the area (scale) and aspect ratio (ratio), resized to the input.
    The defaults, [1, 1] and [1, 1], crop the whole image: off."""
    scale: list = setting([1.0, 1.0], "range", min=0.0, max=1.0)
    ratio: list = setting([1.0, 1.0], "range", min=0.0, max=10.0)


@dataclass
class Cutout:
    """`count` squares of `size` x `size` pixels erased to the mean (random erasing); size 0: off."""
    size: int = setting(0, "int", min=0)
    count: int = setting(1, "int", min=1)


@dataclass
class Augment:
    """Training-time augmentation, each key off by default, each drawn per image from the epoch's
    generator (the geometric ones compose into one affine warp per image)."""
    flip: bool = setting(False, "bool")
    vflip: bool = setting(False, "bool")
    crop_padding: int = setting(0, "int", min=0)
    rotate: float = setting(0.0, "number", max=180.0, closed=True)
    scale: list = setting([1.0, 1.0], "range", min=0.0, max=10.0)
    translate: float = setting(0.0, "number", max=1.0)
    shear: float = setting(0.0, "number", max=80.0, closed=True)
    random_resized_crop: RandomResizedCrop = section(RandomResizedCrop)
    brightness: float = setting(0.0, "number", max=1.0)
    contrast: float = setting(0.0, "number", max=1.0)
    saturation: float = setting(0.0, "number", max=1.0, closed=True)
    cutout: Cutout = section(Cutout)
    mixup: float = setting(0.0, "number", max=100.0, closed=True)
    cutmix: float = setting(0.0, "number", max=100.0, closed=True)


@dataclass
class Columns:
    """The column names of a label file (data.train: train.csv): renamed with data.columns."""
    path: str = setting("path", "str")
    label: str = setting("label", "str")
    split: str = setting("split", "str")


@dataclass
class Data:
    train: str = setting(None, "path")
    val: str = setting(None, "path")
    val_split: float = setting(0.1, "number", max=1.0)
    resize: str = setting("stretch", "choice", choices=("stretch", "crop", "imagenet"))
    mean: list = setting(None, "floats", n=(1, 3))
    std: list = setting(None, "floats", n=(1, 3))
    augment: Augment = section(Augment)
    columns: Columns = section(Columns)
    cache_dir: str = setting(None, "path")
    workers: int = setting(None, "int")
    head: str = setting("auto", "choice", choices=("auto", "single", "multilabel"))  # multi-label or not
    label_separator: str = setting("|", "str")   # between the labels of one cell: dog|cat


@dataclass
class Train:
    epochs: int = setting(10, "int")
    batch_size: int = setting(32, "int")
    optimizer: str = setting("adam", "choice", choices=("sgd", "adam", "adamw"))
    lr: float = setting(0.001, "number", open=True)
    momentum: float = setting(0.9, "number", max=1.0)
    nesterov: bool = setting(False, "bool")
    betas: list = setting([0.9, 0.999], "floats", n=(2,), min=0.0, max=1.0)
    weight_decay: float = setting(0.0, "number")
    schedule: str = setting("constant", "choice", choices=SCHEDULES)
    warmup_epochs: float = setting(0.0, "number")
    step_size: int = setting(10, "int")
    gamma: float = setting(0.1, "number", open=True)
    min_lr: float = setting(0.0, "number")
    label_smoothing: float = setting(0.0, "number", max=1.0)
    shuffle: bool = setting(True, "bool")
    seed: int = setting(0, "int", min=0)
    patience: int = setting(None, "int")
    monitor: str = setting("val_acc", "choice", choices=("val_acc", "val_loss"))
    init: str = setting(None, "path")
    class_weights: object = setting(None, "weights")   # None | "auto" | [one weight per class]
    ema: float = setting(0.0, "number", max=1.0)       # decay of the weights' moving average; 0: off
    freeze: object = setting(None, "layers")   # a layer (and every one before it), or a list: held fixed
    freeze_batchnorm: bool = setting(False, "bool")   # batchnorm on its running statistics, left unchanged
    feature_cache: bool = setting(True, "bool")   # a frozen prefix's outputs computed once (engine/features.py)


def parse_section(cls, raw, where):
    """A section's raw mapping -> cls, each key checked as its field's metadata says."""
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a mapping of keys, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    declared = {name: f.metadata for name, f in fields.items()}
    check_keys(raw, list(declared), where)
    values = {}
    for key, value in raw.items():
        meta = declared[key]
        if value is None and meta["kind"] == "bool":   # null is no third state of a switch
            default = str(fields[key].default).lower()
            raise ConfigError(f"{where}: '{key}' must be true or false, got null (leave the key out for its "
                              f"default, {default})")
        if meta["kind"] == "section":
            values[key] = parse_section(meta["section"], value, f"{where}.{key}")
        elif value is not None:
            values[key] = _check(where, key, value, meta["kind"], **meta["limits"])
    return cls(**values)


def parse_columns(text, where="--columns"):
    """'{path: file, label: class}' (YAML, as data.columns is written in a training config or with
    --set) -> {'path': ..., 'label': ..., 'split': ...}, checked as data.columns is."""
    raw = apply_overrides({}, [f"columns={text}"], where)["columns"]
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} {text!r}: give the column names as data.columns takes them, "
                          "e.g. --columns '{path: file, label: class}'")
    return dataclasses.asdict(parse_section(Columns, raw, where))


def section_dict(obj):
    return {f.name: (section_dict(v) if dataclasses.is_dataclass(v := getattr(obj, f.name)) else v)
            for f in dataclasses.fields(obj)}


@dataclass
class RunConfig:
    model: Architecture
    data: Data
    train: Train
    output: str
    source: str
    notes: list = field(default_factory=list)   # what the user should hear about the config's paths

    def to_dict(self):
        return {"model": self.model.to_dict(), "data": section_dict(self.data),
                "train": section_dict(self.train), "output": self.output}


def parse_run(raw, source, base_dir):
    """A training config (raw dict) -> RunConfig.

    Every path in the file (model, data, init, output) is relative to the config file's folder
    (base_dir), wherever cnncli runs; --set values are the shell's, resolved before (load). A
    data or init path that is missing there but present relative to the current folder (the rule
    before 2026-12) is taken from there, with a note in cfg.notes."""
    for key in raw:   # `--set epochs=3`: a section's key given at the top
        owner = next((name for name, cls in (("train", Train), ("data", Data))
                      if key in {f.name for f in dataclasses.fields(cls)}), None)
        if owner and key not in ("train", "data"):
            raise ConfigError(f"{source}: unknown key {key!r} (did you mean '{owner}.{key}'?); "
                              "allowed: model, data, train, output")
    check_keys(raw, ("model", "data", "train", "output"), source)
    model = raw.get("model")
    if model is None:
        raise ConfigError(f"{source}: missing 'model': a path to an architecture file, "
                          "or the architecture inline (input:, layers:)")
    if isinstance(model, str):
        model_path = _resolve(model, base_dir)
        if not model.strip() or not model_path.exists():
            raise ConfigError(f"{source}: 'model': no such file {model!r}: give an architecture file")
        if model_path.is_dir():
            raise ConfigError(f"{source}: 'model': {model_path} is a folder: give an architecture file")
        arch = load_architecture(model_path)
    elif isinstance(model, dict):
        arch = parse_architecture(model, f"{source}: model")
    else:
        raise ConfigError(f"{source}: 'model' must be a path or a mapping with input: and layers:, got {model!r}")
    data = parse_section(Data, raw.get("data"), f"{source}: data")
    train = parse_section(Train, raw.get("train"), f"{source}: train")
    notes = []
    for section, key in (("data", "train"), ("data", "val"), ("data", "cache_dir"), ("train", "init")):
        obj = data if section == "data" else train
        if getattr(obj, key):
            setattr(obj, key, _file_path(getattr(obj, key), base_dir, f"{section}.{key}", notes, key != "cache_dir"))
    output = raw.get("output")
    if output is None:
        output = f"runs/{Path(source).stem}"
    elif not isinstance(output, str) or not output:
        raise ConfigError(f"{source}: 'output' must be a folder path, got {output!r}")
    return RunConfig(arch, data, train, str(_resolve(output, base_dir)), source, notes)


def _file_path(text, base_dir, key, notes, must_exist):
    """A path of the config file -> absolute, relative to its folder; one that exists only
    relative to the current folder (a config written under the old rule) is taken from there."""
    path = _resolve(text, Path(base_dir).absolute())
    old = _resolve(text, Path.cwd())
    if must_exist and not path.exists() and old.exists() and old != path:
        notes.append(f"{key} {text!r}: no {path} next to the config; using {old}, relative to the current "
                     f"folder as cnncli did before. Paths in a config are relative to its folder: write "
                     f"{os.path.relpath(old, Path(base_dir).absolute())!r}")
        return str(old)
    return str(path)


PATH_KEYS = ("data.train", "data.val", "data.cache_dir", "train.init", "output")


def shell_paths(overrides):
    """--set values of path keys are typed in the shell: relative to the current folder. -> the
    overrides with those made absolute (the file's own paths are relative to the file)."""
    out = []
    for item in overrides or ():
        key, sep, value = item.partition("=")
        text = value.strip()
        if sep and key.strip() in PATH_KEYS and text and not text.startswith(("{", "[", "~")) \
                and not os.path.isabs(text):
            item = f"{key}={os.path.abspath(text)}"
        out.append(item)
    return out


def _resolve(p, base_dir):
    """A path as the user wrote it, relative to base_dir, normalised for messages (no a/../b;
    symlinks left alone)."""
    p = Path(p).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else Path(base_dir) / p))


def is_architecture(raw):
    return "layers" in raw or "input" in raw


def load(path, overrides=()):
    """Read an architecture or training file -> Architecture or RunConfig (overrides applied)."""
    path = Path(path)
    raw = read_yaml(path)
    if isinstance(raw.get("model"), str) and any(o.strip().startswith("model.") for o in overrides or ()):
        model_path = _resolve(raw["model"], path.parent)   # --set into a model file's layers: inline it
        if model_path.is_file():
            raw["model"] = read_yaml(model_path)
    raw = apply_overrides(raw, shell_paths(overrides))
    try:
        return _parse(raw, path)
    except ConfigError as e:
        if not overrides:
            raise
        try:                       # the file alone is fine: the mistake came in with --set
            _parse(read_yaml(path), path)
        except ConfigError:
            raise e from None
        raise from_overrides(e, overrides) from None


def from_overrides(error, overrides):
    """A config error that came in with --set, saying so: the items whose last key the message
    names (all of them when none does)."""
    named = [o for o in overrides if f"'{o.partition('=')[0].strip().split('.')[-1]}'" in str(error)]
    return ConfigError(f"{error} (with --set {' '.join(named or overrides)})")


def _parse(raw, path):
    if is_architecture(raw):
        return parse_architecture(raw, str(path))
    return parse_run(raw, str(path), path.parent)


def load_run(path, overrides=()):
    cfg = load(path, overrides)
    if isinstance(cfg, Architecture):
        raise ConfigError(f"{path}: this is an architecture file; training needs a training config "
                          "with model:, data: and train: (see `cnncli init`)")
    return cfg
