"""Tests for tools/check_layering.py: the build's layer check."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_layering  # pylint: disable=g-import-not-at-top,wrong-import-position

PACKAGES = {"ebm_tf", "ebm_tf.internal", "ebm_tf.mcmc", "ebm_tf.defense", "ebm_tf.models"}


class CheckLayeringTest(unittest.TestCase):

  def _write(self, source):
    fd, path = tempfile.mkstemp(suffix=".py")
    with os.fdopen(fd, "w") as f:
      f.write(source)
    self.addCleanup(os.remove, path)
    return path

  def test_owning_package(self):
    self.assertEqual(check_layering.owning_package("ebm_tf.mcmc.langevin", PACKAGES), "ebm_tf.mcmc")
    self.assertEqual(check_layering.owning_package("ebm_tf.models", PACKAGES), "ebm_tf.models")
    self.assertEqual(check_layering.owning_package("ebm_tf.console_scripts", PACKAGES), "ebm_tf")
    self.assertEqual(check_layering.owning_package("export.warmup", PACKAGES), "export")
    self.assertIsNone(check_layering.owning_package("tensorflow.python", PACKAGES))

  def test_allowed_and_forbidden_imports(self):
    path = self._write("import os\nimport tensorflow as tf\n"
                       "from ebm_tf.internal import file_io\n"
                       "from ebm_tf.mcmc import init_strategies\n"
                       "from ebm_tf.defense import purify\n"
                       "from ebm_tf import models\n"
                       "import ebm_tf.console_scripts\n")
    errors = check_layering.forbidden_imports([path], "ebm_tf.mcmc", ["ebm_tf.internal"], PACKAGES)
    self.assertEqual(len(errors), 3, errors)
    self.assertIn(":5: `ebm_tf.defense` is in package ebm_tf.defense, which ebm_tf.mcmc may not "
                  "import", errors[0])
    self.assertIn(":6: `ebm_tf.models` is in package ebm_tf.models", errors[1])
    self.assertIn(":7: `ebm_tf.console_scripts` is in package ebm_tf,", errors[2])

  def test_main_writes_the_stamp_only_when_clean(self):
    good = self._write("from ebm_tf.internal import file_io\n")
    bad = self._write("from ebm_tf.defense import purify\n")
    stamp = os.path.join(tempfile.mkdtemp(), "ok")
    common = ["--package=ebm_tf.mcmc", "--allowed=ebm_tf.internal",
              "--packages=" + ",".join(sorted(PACKAGES)), "--output=" + stamp]
    self.assertEqual(check_layering.main(common + [bad]), 1)
    self.assertFalse(os.path.exists(stamp))
    self.assertEqual(check_layering.main(common + [good]), 0)
    self.assertTrue(os.path.exists(stamp))


if __name__ == "__main__":
  unittest.main()
