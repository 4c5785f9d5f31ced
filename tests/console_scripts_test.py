"""Tests of ebm_tf.console_scripts: setup.py's commands run the binaries they name."""

import ast
import importlib
import os
import shutil
import subprocess
import sys

from absl.testing import absltest

from ebm_tf import console_scripts

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup_console_scripts():
  """CONSOLE_SCRIPTS of setup.py, read without running setup()."""
  with open(os.path.join(_ROOT, "setup.py")) as f:
    tree = ast.parse(f.read())
  for node in tree.body:
    if isinstance(node, ast.Assign) and node.targets[0].id == "CONSOLE_SCRIPTS":
      return ast.literal_eval(node.value)
  raise AssertionError("setup.py defines no CONSOLE_SCRIPTS")


class ConsoleScriptsTest(absltest.TestCase):

  def test_setup_installs_one_command_per_binary(self):
    expected = [f"{command}=ebm_tf.console_scripts:{console_scripts.entry_point_name(command)}"
                for command in console_scripts.SCRIPTS]
    self.assertCountEqual(_setup_console_scripts(), expected)

  def test_every_command_names_a_binary_module_with_main(self):
    for command, module_name in console_scripts.SCRIPTS.items():
      path = os.path.join(_ROOT, *module_name.split(".")) + ".py"
      self.assertTrue(os.path.exists(path), f"{command}: no {path}")
      with open(path) as f:
        tree = ast.parse(f.read())
      functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
      self.assertIn("main", functions, f"{command}: {module_name} has no main(argv)")
      self.assertTrue(callable(getattr(console_scripts,
                                       console_scripts.entry_point_name(command))))

  def test_installed_command_runs_the_binary(self):
    command = shutil.which("ebm-tf-ship-pretrained",
                           path=os.path.dirname(sys.executable) + os.pathsep +
                           os.environ.get("PATH", ""))
    if command is None:
      self.skipTest("ebm-tf is not pip-installed in this interpreter's environment (no "
                    "ebm-tf-ship-pretrained next to it)")
    result = subprocess.run([command, "--model_dir=/nonexistent", "--output_dir=/tmp/x",
                             "--card=/nonexistent/card.json"], capture_output=True, text=True,
                            timeout=300)
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("--card='/nonexistent/card.json': no such file", result.stderr)


if __name__ == "__main__":
  absltest.main()
