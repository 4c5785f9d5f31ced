"""End-to-end tests of `python -m ebm_tf.train_classifier` from the classifier flagfile presets."""

import glob
import json
import os
import subprocess
import sys

from absl.testing import absltest
import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHORT = ["--train_steps=2", "--eval_every=1", "--log_every=1"]


def _train(model_dir, *args, timeout=600):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run(
      [sys.executable, "-m", "ebm_tf.train_classifier", f"--model_dir={model_dir}", *args],
      cwd=_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _latest_weights(model_dir, step):
  """Every variable of the classifier in checkpoints/ckpt-<step>, by checkpoint key."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  prefix = os.path.join(model_dir, "checkpoints", f"ckpt-{step}")
  return {name: tf.train.load_variable(prefix, name)
          for name, _ in tf.train.list_variables(prefix)
          if name.startswith(("classifier/", "optimizer/")) and "OPTIMIZER_SLOT" not in name
          and "iteration" not in name and "learning_rate" not in name}


class TrainClassifierBinaryTest(absltest.TestCase):

  def _assert_trained(self, result, model_dir, steps=2):
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(os.path.join(model_dir, "classifier_config.json")) as f:
      saved = json.load(f)
    for key in ("classifier", "dataset", "image_size", "num_classes"):
      self.assertIn(key, saved)
    self.assertTrue(os.path.exists(os.path.join(model_dir, "checkpoints",
                                                f"ckpt-{steps}.index")))
    self.assertNotEmpty(glob.glob(os.path.join(model_dir, "best", "ckpt-*.index")))
    self.assertTrue(os.path.exists(os.path.join(model_dir, "best", "best.json")))
    self.assertNotEmpty(glob.glob(os.path.join(model_dir, "tensorboard", "events.*")))
    self.assertIn(f"step {steps}/{steps}", result.stderr)
    self.assertIn("best test accuracy", result.stdout)
    return saved

  def test_digits_preset_default_and_mirrored_take_the_same_steps(self):
    # The same global batch of 64 split over 2 replicas (loss / replicas, summed gradients)
    # must give the same SGD steps as one replica.
    single = self.create_tempdir().full_path
    result = _train(single, "--flagfile=flags/classifier_digits.cfg", *_SHORT)
    saved = self._assert_trained(result, single)
    self.assertEqual((saved["classifier"], saved["dataset"], saved["num_classes"]),
                     ("small_cnn", "digits", 10))
    self.assertIn("1 replica(s), batch 64 per replica", result.stderr)
    mirrored = self.create_tempdir().full_path
    result = _train(mirrored, "--flagfile=flags/classifier_digits.cfg", *_SHORT,
                    "--strategy=mirrored", "--num_cpu_devices=2")
    self._assert_trained(result, mirrored)
    self.assertIn("MirroredStrategy: 2 replica(s), batch 32 per replica", result.stderr)
    want = _latest_weights(single, 2)
    got = _latest_weights(mirrored, 2)
    self.assertNotEmpty(want)
    self.assertEqual(sorted(got), sorted(want))
    for name in want:
      np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-6, err_msg=name)

  def test_cifar10_wrn_preset_steps_on_synthetic_data_with_a_tiny_wrn(self):
    model_dir = self.create_tempdir().full_path
    result = _train(model_dir, "--flagfile=flags/classifier_cifar10_wrn.cfg",
                    "--dataset=synthetic", "--image_size=32", "--random_crop=false",
                    "--classifier=wrn", "--wrn_depth=10", "--wrn_widen_factor=1",
                    "--batch_size=4", "--eval_examples=8", "--strategy=default", *_SHORT)
    saved = self._assert_trained(result, model_dir)
    self.assertEqual((saved["classifier"], saved["wrn_depth"], saved["image_size"]),
                     ("wrn", 10, 32))

  def test_full_wrn28_10_preset_steps_on_synthetic_data(self):
    if os.environ.get("EBM_SLOW_TESTS") != "1":
      self.skipTest("set EBM_SLOW_TESTS=1 for a WRN-28-10 step on CPU")
    model_dir = self.create_tempdir().full_path
    result = _train(model_dir, "--flagfile=flags/classifier_cifar10_wrn.cfg",
                    "--dataset=synthetic", "--image_size=32", "--random_crop=false",
                    "--batch_size=2", "--eval_examples=2", "--strategy=default",
                    "--train_steps=1", "--eval_every=1", "--log_every=1")
    self._assert_trained(result, model_dir, steps=1)

  def test_bad_flag_fails_with_a_clear_message(self):
    result = _train(self.create_tempdir().full_path, "--flagfile=flags/classifier_digits.cfg",
                    "--weight_decay=-1", timeout=120)
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("weight_decay must be >= 0 (0 = off); got -1.0", result.stderr)


if __name__ == "__main__":
  absltest.main()
