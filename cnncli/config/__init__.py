"""YAML -> validated, typed config objects. The only package that reads raw dicts.

Two kinds of file:
  architecture:  {input: [h, w, c], layers: [...]}
  training:      {model: PATH-or-architecture, data: {...}, train: {...}, output: PATH}
Every mistake raises ConfigError: one line naming the file, the key (and layer index), and the fix.
"""

from .run import (FOREIGN, Architecture, Augment, ConfigError, Cutout, Data, RandomResizedCrop, RunConfig,
                  Train, apply_overrides, as_number, check_keys, did_you_mean, expand_blocks, from_overrides,
                  is_architecture, is_int, is_number, load, load_architecture, load_run, parse_architecture,
                  parse_run, parse_section, read_yaml, resolved_yaml, section_dict, yaml11_numbers)

__all__ = ["Architecture", "expand_blocks", "load_architecture", "parse_architecture", "resolved_yaml",
           "Augment", "Cutout", "Data", "RandomResizedCrop", "RunConfig", "Train", "from_overrides",
           "is_architecture", "load", "load_run", "parse_run", "parse_section", "section_dict",
           "FOREIGN", "ConfigError", "apply_overrides", "as_number", "check_keys", "did_you_mean",
           "is_int", "is_number", "read_yaml", "yaml11_numbers"]
