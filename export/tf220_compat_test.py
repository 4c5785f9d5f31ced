"""The export loads and answers in the TF 2.20 runtime (TF Serving 2.20.0's), as in TF 2.21.

TF Serving's newest release this project can confirm is 2.20.0, while exports are written by
TF 2.21. This test exports a tiny purifier (with classifier) in this process (TF 2.21), runs
`serving_default` and `purify_batchable` on a few images here (the module's tf.functions), and
then in a subprocess with a TF 2.20 interpreter (tensorflow-cpu 2.20 in its own virtual
environment, made by scripts/tf220_venv.sh) that loads the version with the TF1 Session loader
and tag "serve", as TF Serving does (export/session_runner.py). Same images and seeds; the
answers must agree to rtol 1e-5 / atol 1e-6 (float outputs) and exactly (class ids). The
answers were bitwise equal when this test was written; the tolerance leaves room for a
different oneDNN build without hiding a changed computation (a changed noise stream or step
count moves the outputs by ~1e-2).

The 2.20 interpreter is $EBM_TF220_PYTHON, else <$EBM_TF220_VENV or
~/.cache/ebm_tf/tf220-venv>/bin/python. Without it the 2.20 test is skipped with the command that
creates it; under CI (CI=true, set by .ci/run) it fails instead.
"""

import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf

from export import session_runner
from export import testing_utils

_RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "session_runner.py")
_RTOL, _ATOL = 1e-5, 1e-6


def tf220_python():
  """The TF 2.20 interpreter's path, or None when it is not there."""
  explicit = os.environ.get("EBM_TF220_PYTHON")
  if explicit:
    return explicit if os.path.isfile(explicit) else None
  home = os.environ.get("HOME")
  venv = os.environ.get("EBM_TF220_VENV") or (
      os.path.join(home, ".cache", "ebm_tf", "tf220-venv") if home else None)
  if venv and os.path.isfile(os.path.join(venv, ".ebm_tf220_installed")):
    return os.path.join(venv, "bin", "python")
  return None


def _requests():
  images = testing_utils.images(3, seed=8, low=-0.9, high=0.9)
  return {
      "serving_default": {"images": images, "seed": np.array([5, 6], np.int64),
                          "num_steps": np.int32(5), "num_repeats": np.int32(2)},
      "purify_batchable": {"images": images,
                           "seeds": np.array([[1, 2], [3, 4], [5, 6]], np.int64)},
  }


class Tf220CompatTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    base = tempfile.mkdtemp(prefix="tf220_compat_")
    cls.addClassCleanup(shutil.rmtree, base, True)
    cls.module, cls.result = testing_utils.tiny_export(
        base, with_classifier=True, batchable_num_steps=5, batchable_num_repeats=2)
    cls.requests = _requests()
    signatures = {"serving_default": cls.module.serve,
                  "purify_batchable": cls.module.purify_batchable}
    cls.expected = {name: {k: v.numpy() for k, v in signatures[name](**inputs).items()}
                    for name, inputs in cls.requests.items()}

  def _assert_same_answers(self, answers, runtime):
    for name, expected in self.expected.items():
      self.assertEqual(sorted(answers[name]), sorted(expected), msg=f"{runtime} {name}")
      for output, value in expected.items():
        got = answers[name][output]
        self.assertEqual(got.dtype, value.dtype, msg=f"{runtime} {name}/{output}")
        if value.dtype.kind == "f":
          self.assertAllClose(got, value, rtol=_RTOL, atol=_ATOL,
                              msg=f"{runtime} {name}/{output}")
        else:
          self.assertAllEqual(got, value, msg=f"{runtime} {name}/{output}")
    # The outputs are not trivial: the chains moved.
    moved = np.abs(self.expected["purify_batchable"]["purified"]
                   - self.requests["purify_batchable"]["images"]).max()
    self.assertGreater(moved, 1e-3)

  def test_tf1_session_loader_in_this_runtime(self):
    # The runner itself, in TF 2.21: the Session loader reproduces the in-process functions.
    answers = session_runner.run_signatures(self.result.version_dir, self.requests)
    self._assert_same_answers(answers, tf.__version__)

  def test_tf220_runtime_loads_the_export_and_gives_the_same_answers(self):
    python = tf220_python()
    if python is None:
      message = ("no TF 2.20 interpreter: create it with `bash scripts/tf220_venv.sh` (or set "
                 "EBM_TF220_PYTHON)")
      if os.environ.get("CI", "").lower() == "true":
        self.fail(message + " -- required under CI")
      self.skipTest(message)
    work = self.create_tempdir()
    inputs = os.path.join(work.full_path, "requests.npz")
    output = os.path.join(work.full_path, "answers.npz")
    np.savez(inputs, **{f"{sig}/{name}": value for sig, values in self.requests.items()
                        for name, value in values.items()})
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run(
        [python, _RUNNER, f"--version_dir={self.result.version_dir}", f"--inputs={inputs}",
         f"--output={output}"], capture_output=True, text=True, env=env, timeout=600,
        cwd=work.full_path, check=False)
    self.assertEqual(proc.returncode, 0, msg=f"TF 2.20 runner failed:\n{proc.stderr[-4000:]}")
    with np.load(output) as data:
      version = str(data["tf_version"])
      answers = {}
      for key in data.files:
        if key != "tf_version":
          signature, _, name = key.partition("/")
          answers.setdefault(signature, {})[name] = data[key]
    self.assertTrue(version.startswith("2.20."), msg=f"expected TF 2.20.x, ran {version}")
    self.assertNotEqual(version, tf.__version__)
    self._assert_same_answers(answers, f"TF {version}")
    bitwise = all(np.array_equal(answers[s][o], v) for s, out in self.expected.items()
                  for o, v in out.items())
    print(f"TF {version} vs TF {tf.__version__}: bitwise equal = {bitwise}", file=sys.stderr)


if __name__ == "__main__":
  tf.test.main()
