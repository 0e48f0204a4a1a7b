"""An architecture file -> Architecture: input, layers, blocks expanded; and its resolved YAML."""

import inspect as pyinspect
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..layers import ALIASES, LAYERS, WIRING
from .yaml_file import ConfigError, _type_error, check_keys, did_you_mean, is_int, read_yaml, yaml11_numbers


# --- the architecture ---------------------------------------------------------------------

@dataclass
class Architecture:
    input: tuple            # (h, w, c)
    layers: list            # [(type, args)]: blocks expanded, aliases resolved, args validated
    source: str = "<inline>"
    origins: list = None    # per layer: None, or the block use it came from (for error lines)

    def to_dict(self):
        return {"input": list(self.input), "layers": [{k: dict(a)} for k, a in self.layers]}

    def build(self, seed=0, build_params=True, init=True):
        """-> Model; raises ConfigError naming the layer (or saying it does not fit in memory).
        init=False allocates zeros, for weights about to be loaded from a checkpoint."""
        from ..model import Model, SpecError
        try:
            return Model(self.input, self.layers, seed=seed, build_params=build_params, init=init)
        except SpecError as e:
            raise ConfigError(self._where(e.index, e.key) + f": {e}") from None
        except MemoryError:
            model = Model(self.input, self.layers, build_params=False)
            raise ConfigError(f"{self.source}: the network's {model.n_params():,} parameters "
                              f"({model.n_params() * 4 / 1e9:.1f} GB) do not fit in memory: "
                              "shrink the input or the dense layers") from None

    def _where(self, index, key=None):
        if index is None:
            return self.source
        kind = self.layers[index][0]
        origin = self.origins[index] if self.origins else None
        return (f"{self.source}: layers[{index}] ({kind}" + (f", '{key}'" if key else "")
                + (f", {origin}" if origin else "") + ")")


def parse_architecture(raw, source):
    check_keys(raw, ("input", "layers", "blocks"), source)
    if "input" not in raw:
        raise ConfigError(f"{source}: missing 'input': give the image size as [height, width, channels], e.g. [28, 28, 1]")
    if "layers" not in raw:
        raise ConfigError(f"{source}: missing 'layers': list the layers, e.g. - conv: {{filters: 8, size: 3}}")
    inp = raw["input"]
    if not (isinstance(inp, list) and len(inp) == 3 and all(is_int(v) and v > 0 for v in inp)):
        raise ConfigError(f"{source}: 'input' must be [height, width, channels] of positive integers, got {inp!r}")
    layers = raw["layers"]
    if not isinstance(layers, list) or not layers:
        raise ConfigError(f"{source}: 'layers' must be a non-empty list, got {layers!r}")
    items, origins = expand_blocks(layers, raw.get("blocks"), source)
    specs = [_parse_layer(item, i, source, origin) for i, (item, origin) in enumerate(zip(items, origins))]
    arch = Architecture(tuple(inp), specs, source, origins if any(origins) else None)
    arch.build(build_params=False)  # wiring and shapes: a bad 'from', a filter larger than its input...
    return arch


def _split_item(item, where):
    """A list item of 'layers' -> (type, args): '- flatten', '- conv: {...}', '- dropout: 0.5'."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict) and len(item) == 1:
        (kind, args), = item.items()
        if not isinstance(kind, str):
            raise ConfigError(f"{where}: the layer type must be a name, got {kind!r}")
        return kind, {} if args is None else args
    raise ConfigError(f"{where}: write a layer as '- flatten' or '- conv: {{filters: 8, size: 3}}' "
                      f"(one type per list item), got {item!r}")


def _parse_layer(item, index, source, origin=None):
    where = f"{source}: layers[{index}]"
    kind, args = _split_item(item, where + (f" ({origin})" if origin else ""))
    names = list(LAYERS) + list(ALIASES)
    if kind not in names:
        raise ConfigError(f"{where}: unknown layer type {kind!r}{did_you_mean(kind, names)}; "
                          f"known: {', '.join(LAYERS)} (and {', '.join(ALIASES)} as short for activation)")
    def label(key=None):
        return f"{where} ({kind}" + (f", '{key}'" if key else "") + (f", {origin}" if origin else "") + ")"
    real, preset = ALIASES.get(kind, (kind, {}))
    cls = LAYERS[real]
    params = [p for p in pyinspect.signature(cls.__init__).parameters.values()
              if p.name != "self" and p.name not in preset]
    if not isinstance(args, dict):
        if not params:
            raise ConfigError(f"{label()}: takes no arguments, got {args!r}")
        args = {params[0].name: args}   # '- activation: relu', '- dropout: 0.5', '- dense: 10'
    allowed = [p.name for p in params] + list(WIRING)
    check_keys(args, allowed, label())
    args = {k: (v if k in WIRING else yaml11_numbers(v)) for k, v in args.items()}
    required = [p.name for p in params if p.default is pyinspect.Parameter.empty]
    for name in required:
        if name not in args:
            raise ConfigError(f"{label()}: missing '{name}'")
    try:
        cls(**{**preset, **{k: v for k, v in args.items() if k not in WIRING}})  # argument checks
    except Exception as e:  # LayerError carries the key
        key = getattr(e, "key", None)
        raise ConfigError(f"{label(key)}: {e}") from None
    return real, {**preset, **args}


# --- blocks: a list of layers defined once and used like a layer type --------------------

def expand_blocks(layers, blocks, source):
    """Replace each use of a block by its layers -> (items, origins).

    blocks: {name: [layer, ...]}. Inside a block, a value written "$p" is a parameter, given
    where the block is used: `- basic: {filters: 32, repeat: 3, name: stage1}` (repeat: how many
    copies in a row, default 1; name: names the block's output, its last layer). Offsets in
    `from` are relative, so -1 inside a block's first layer is the layer before the block; a
    `name` inside a block is local to each copy and becomes '<block><copy>.<name>' (basic2.in).
    """
    if blocks is None:
        return list(layers), [None] * len(layers)
    if not isinstance(blocks, dict):
        raise ConfigError(f"{source}: 'blocks' must map block names to lists of layers, got {blocks!r}")
    for bname, body in blocks.items():
        if not isinstance(body, list) or not body:
            raise ConfigError(f"{source}: blocks.{bname} must be a non-empty list of layers, got {body!r}")
        if bname in LAYERS or bname in ALIASES:
            raise ConfigError(f"{source}: blocks.{bname}: '{bname}' is a layer type; give the block another name")
    items, origins, copies = [], [], {}
    for i, item in enumerate(layers):
        kind, args = _split_item(item, f"{source}: layers[{i}]")
        if kind not in blocks:
            items.append(item)
            origins.append(None)
            continue
        where = f"{source}: layers[{i}] (block {kind})"
        if not isinstance(args, dict):
            raise ConfigError(f"{where}: give the block's parameters as a mapping, e.g. "
                              f"- {kind}: {{repeat: 2}}; got {args!r}")
        args = dict(args)
        repeat = args.pop("repeat", 1)
        if not is_int(repeat) or repeat < 1:
            raise _type_error(where, "repeat", "an integer >= 1", repeat)
        out_name = args.pop("name", None)
        wanted = sorted(_block_params(blocks[kind]))
        for key in args:
            if key not in wanted:
                raise ConfigError(f"{where}: unknown parameter {key!r}{did_you_mean(key, wanted)}; "
                                  f"the block's parameters: {', '.join(wanted) or 'none'}, and repeat, name")
        for key in wanted:
            if key not in args:
                raise ConfigError(f"{where}: missing parameter '{key}' (written ${key} in blocks.{kind})")
        for r in range(repeat):
            copies[kind] = copies.get(kind, 0) + 1
            body = _instantiate(blocks[kind], args, f"{kind}{copies[kind]}", f"{where} ")
            if out_name is not None and r == repeat - 1:
                body[-1] = _with_name(body[-1], out_name, where)
            items += body
            origins += [f"block {kind} at layers[{i}] of the file" + (f", copy {r + 1}" if repeat > 1 else "")] * len(body)
    return items, origins


def _block_params(value):
    """The $names used anywhere in a block."""
    if isinstance(value, str) and value.startswith("$"):
        return {value[1:]}
    if isinstance(value, list):
        return set().union(*(_block_params(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(_block_params(v) for v in value.values())) if value else set()
    return set()


def _fill(value, params, local):
    """Substitute $parameters; rename local names (in 'name' and 'from')."""
    if isinstance(value, str) and value.startswith("$"):
        return params[value[1:]]
    if isinstance(value, list):
        return [_fill(v, params, local) for v in value]
    if isinstance(value, dict):
        out = {k: _fill(v, params, local) for k, v in value.items()}
        for key in ("name", "from"):
            if key in out:
                ref = out[key]
                out[key] = [local.get(r, r) if isinstance(r, str) else r for r in ref] if isinstance(ref, list) \
                    else local.get(ref, ref) if isinstance(ref, str) else ref
        return out
    return value


def _instantiate(body, params, copy, where):
    local = {}
    for item in body:
        if isinstance(item, dict) and len(item) == 1:
            args = next(iter(item.values()))
            if isinstance(args, dict) and isinstance(args.get("name"), str):
                local[args["name"]] = f"{copy}.{args['name']}"
    return [_fill(item, params, local) for item in body]


def _with_name(item, name, where):
    kind, args = _split_item(item, where)
    if not isinstance(args, dict):
        raise ConfigError(f"{where}: the block's last layer must be written as a mapping to take 'name'")
    return {kind: {**args, "name": name}}


def resolved_yaml(d):
    """YAML of a resolved config (architecture or training): blocks expanded, each layer on one
    line followed by its final index, the index that 'from', checkpoints and errors use (--set
    model.layers.N counts the file's own list, where a block's use is one item)."""
    arch = d["model"] if "model" in d else d
    marker = "@@LAYERS@@"
    text = yaml.safe_dump({**d, "model": {**arch, "layers": marker}} if "model" in d
                          else {**d, "layers": marker}, sort_keys=False)
    lines = []
    for line in text.splitlines():
        if line.strip().startswith("layers:") and marker in line:
            indent = line[:len(line) - len(line.lstrip())]
            lines.append(f"{indent}layers:")
            for i, item in enumerate(arch["layers"]):
                flow = yaml.safe_dump(item, default_flow_style=True, width=10 ** 6, sort_keys=False).strip()
                lines.append(f"{indent}- {flow}  # {i}")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def load_architecture(path):
    path = Path(path)
    return parse_architecture(read_yaml(path), str(path))
