"""YAML -> validated, typed config objects. The only package that reads raw dicts.

Two kinds of file:
  architecture:  {input: [h, w, c], layers: [...]}
  training:      {model: PATH-or-architecture, data: {...}, train: {...}, output: PATH}
Every mistake raises ConfigError: one line naming the file, the key (and layer index), and the fix.
yaml_file.py reads a file and applies --set; architecture.py and run.py parse the two kinds.
"""

from .architecture import (Architecture, expand_blocks, load_architecture, parse_architecture,
                           resolved_yaml)
from .run import (Augment, Columns, Cutout, Data, RandomResizedCrop, RunConfig, Train, from_overrides,
                  is_architecture, load, load_run, parse_columns, parse_run, parse_section,
                  section_dict)
from .yaml_file import (FOREIGN, ConfigError, apply_overrides, as_number, check_keys, did_you_mean,
                        is_int, is_number, read_yaml, yaml11_numbers)

__all__ = ["Architecture", "expand_blocks", "load_architecture", "parse_architecture", "resolved_yaml",
           "Augment", "Columns", "Cutout", "Data", "RandomResizedCrop", "RunConfig", "Train", "from_overrides",
           "is_architecture", "load", "load_run", "parse_columns", "parse_run", "parse_section", "section_dict",
           "FOREIGN", "ConfigError", "apply_overrides", "as_number", "check_keys", "did_you_mean",
           "is_int", "is_number", "read_yaml", "yaml11_numbers"]
