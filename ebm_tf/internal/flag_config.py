"""Frozen dataclass configs <-> absl flags and JSON: the shared mechanics of every config.

A config is a frozen dataclass whose field defaults are bool, int, float, str, None or tuples of
numbers; each field becomes one absl flag of the same name (tuples: comma-separated lists).
"""

import dataclasses
import typing
from typing import Any, Dict, Mapping, Type, TypeVar

from absl import flags

ConfigT = TypeVar("ConfigT")


def define_flags(config_class: Type[ConfigT], helps: Mapping[str, str],
                 flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines one absl flag per field of `config_class` on `flag_values`.

  A None default is an integer flag for `image_size` and fields typed Optional[int], a float
  flag for Optional[float], else a string flag.
  `helps` maps field names to help texts (the name is the fallback).
  """
  for field in dataclasses.fields(config_class):
    name, default = field.name, field.default
    help_text = helps.get(name, name.replace("_", " "))
    if isinstance(default, bool):
      flags.DEFINE_bool(name, default, help_text, flag_values=flag_values)
    elif isinstance(default, tuple):
      flags.DEFINE_list(name, [str(v) for v in default], help_text, flag_values=flag_values)
    elif isinstance(default, int):
      flags.DEFINE_integer(name, default, help_text, flag_values=flag_values)
    elif isinstance(default, float):
      flags.DEFINE_float(name, default, help_text, flag_values=flag_values)
    elif name == "image_size" or _optional_of(config_class, name) is int:
      flags.DEFINE_integer(name, None, help_text, flag_values=flag_values)
    elif _optional_of(config_class, name) is float:
      flags.DEFINE_float(name, None, help_text, flag_values=flag_values)
    else:
      flags.DEFINE_string(name, default, help_text, flag_values=flag_values)


def _optional_of(config_class, name: str):
  """T of a field annotated Optional[T] (None for other annotations)."""
  try:
    hint = typing.get_type_hints(config_class).get(name)
  except (NameError, TypeError):
    return None
  args = [a for a in typing.get_args(hint) if a is not type(None)]
  return args[0] if len(args) == 1 and typing.get_origin(hint) is typing.Union else None


def _parse_numbers(name: str, strings, kind):
  try:
    return tuple(kind(s) for s in strings)
  except ValueError:
    raise ValueError(f"--{name} must be a comma-separated list of {kind.__name__} values; got "
                     f"{','.join(strings)!r}") from None


def from_flags(config_class: Type[ConfigT], flag_values: flags.FlagValues,
               overrides: Mapping[str, Any]) -> Dict[str, Any]:
  """The field values of `config_class` read from parsed flags (`overrides` win).

  List flags become tuples of ints (names ending in `_boundaries` or `_steps`, or a default of
  ints) or of floats.
  """
  values = {}
  for field in dataclasses.fields(config_class):
    value = flag_values[field.name].value
    if isinstance(field.default, tuple):
      ints = field.name.endswith(("_boundaries", "_steps")) or (
          field.default and isinstance(field.default[0], int))
      kind = int if ints else float
      value = _parse_numbers(field.name, value or [], kind)
    values[field.name] = value
  values.update(overrides)
  return values
