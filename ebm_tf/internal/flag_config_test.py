"""Tests for ebm_tf.internal.flag_config: dataclass <-> absl flags and JSON."""

import dataclasses
import json
import os
from typing import Optional, Tuple

from absl import flags
from absl.testing import absltest

from ebm_tf.internal import flag_config


@dataclasses.dataclass(frozen=True)
class _Toy:
  name: str = "a"
  on: bool = False
  count: int = 3
  rate: float = 0.5
  image_size: Optional[int] = None
  where: Optional[str] = None
  lr_values: Tuple[float, ...] = (1e-3,)
  lr_boundaries: Tuple[int, ...] = ()
  scale: Optional[float] = None
  steps: Optional[int] = None


def _parse(args):
  flag_values = flags.FlagValues()
  flag_config.define_flags(_Toy, {"count": "how many"}, flag_values)
  flag_values(["prog", *args])
  return flag_values


class FlagConfigTest(absltest.TestCase):

  def test_every_field_becomes_a_typed_flag(self):
    flag_values = _parse(["--name=b", "--on", "--count=7", "--rate=0.25", "--image_size=16",
                          "--where=/x", "--lr_values=1e-3,1e-4", "--lr_boundaries=10"])
    values = flag_config.from_flags(_Toy, flag_values, {})
    self.assertEqual(_Toy(**values), _Toy("b", True, 7, 0.25, 16, "/x", (1e-3, 1e-4), (10,)))
    self.assertEqual(flag_values["count"].help, "how many")

  def test_defaults_and_overrides(self):
    values = flag_config.from_flags(_Toy, _parse([]), {"count": 9})
    self.assertEqual(_Toy(**values), _Toy(count=9))

  def test_optional_numbers_are_typed_flags_with_default_none(self):
    self.assertEqual(flag_config.from_flags(_Toy, _parse([]), {})["scale"], None)
    values = flag_config.from_flags(_Toy, _parse(["--scale=2e-2", "--steps=5"]), {})
    self.assertEqual((values["scale"], values["steps"]), (2e-2, 5))
    self.assertIsInstance(values["scale"], float)

  def test_bad_list_names_the_flag(self):
    with self.assertRaisesRegex(ValueError, "--lr_boundaries must be a comma-separated list of "
                                "int values; got '1.5'"):
      flag_config.from_flags(_Toy, _parse(["--lr_boundaries=1.5"]), {})


if __name__ == "__main__":
  absltest.main()
