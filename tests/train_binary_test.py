"""End-to-end tests of the training binary `python -m ebm_tf.train` from flagfile presets."""

import glob
import os
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHORT = ["--train_steps=3", "--mcmc_steps=2", "--eval_mcmc_steps=2", "--log_every=1",
          "--image_every=3", "--checkpoint_every=3", "--num_grid_images=4"]


def _train(model_dir, *args, timeout=600):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run(
      [sys.executable, "-m", "ebm_tf.train", f"--model_dir={model_dir}", *args],
      cwd=_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


class TrainBinaryTest(parameterized.TestCase):

  def _assert_trained(self, result, model_dir, steps=3):
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertTrue(os.path.exists(os.path.join(model_dir, "checkpoints", f"ckpt-{steps}.index")))
    self.assertNotEmpty(glob.glob(os.path.join(model_dir, "samples", f"samples_{steps:07d}.png")))
    self.assertNotEmpty(glob.glob(os.path.join(model_dir, "tensorboard", "events.*")))
    self.assertIn(f"step {steps}/{steps}", result.stderr)

  def test_digits_preset_trains(self):
    model_dir = self.create_tempdir().full_path
    result = _train(model_dir, "--flagfile=flags/shortrun_digits.cfg", *_SHORT)
    self._assert_trained(result, model_dir)
    self.assertIn("1 replica(s)", result.stderr)

  def test_mirrored_strategy_on_two_logical_cpus(self):
    model_dir = self.create_tempdir().full_path
    result = _train(model_dir, "--flagfile=flags/shortrun_digits.cfg", *_SHORT,
                    "--strategy=mirrored", "--num_cpu_devices=2")
    self._assert_trained(result, model_dir)
    self.assertIn("MirroredStrategy: 2 replica(s), 2 local, batch 32 per replica",
                  result.stderr)

  @parameterized.parameters(
      ("shortrun_cifar10", 32, []),
      ("shortrun_celeb_a", 64, []),
      ("shortrun_imagenet", 128, ["--random_crop=false"]),
  )
  def test_paper_preset_builds_and_steps_on_synthetic_data(self, preset, size, extra):
    if size > 32 and os.environ.get("EBM_SLOW_TESTS") != "1":
      self.skipTest("set EBM_SLOW_TESTS=1 for the 64x64 and 128x128 paper presets")
    model_dir = self.create_tempdir().full_path
    result = _train(model_dir, f"--flagfile=flags/{preset}.cfg", "--dataset=synthetic",
                    f"--image_size={size}", "--batch_size=4", "--persistent_size=8",
                    "--strategy=default", *extra, *_SHORT)
    self._assert_trained(result, model_dir)

  def test_midrun_and_longrun_paper_presets_chain_on_synthetic_data(self):
    """shortrun (generator) -> midrun / longrun prior (frozen generator) -> longrun correction
    (frozen prior), each from its CIFAR-10 paper preset, a few steps on synthetic 32x32 data."""
    if os.environ.get("EBM_SLOW_TESTS") != "1":
      self.skipTest("set EBM_SLOW_TESTS=1 for the chained CIFAR-10 paper presets")
    tiny = ["--dataset=synthetic", "--image_size=32", "--batch_size=4", "--persistent_size=8",
            "--strategy=default", *_SHORT]
    root = self.create_tempdir().full_path
    dirs = {name: os.path.join(root, name) for name in
            ("shortrun", "midrun", "midrun_data", "prior", "correction")}
    result = _train(dirs["shortrun"], "--flagfile=flags/shortrun_cifar10.cfg", *tiny)
    self._assert_trained(result, dirs["shortrun"])
    for name, preset in (("midrun", "midrun_cifar10"), ("prior", "longrun_prior_cifar10")):
      result = _train(dirs[name], f"--flagfile=flags/{preset}.cfg",
                      f"--gen_checkpoint={dirs['shortrun']}", *tiny)
      self._assert_trained(result, dirs[name])
      self.assertIn("generator loaded from", result.stderr)
    result = _train(dirs["midrun_data"], "--flagfile=flags/midrun_cifar10_data.cfg", *tiny)
    self._assert_trained(result, dirs["midrun_data"])
    result = _train(dirs["correction"], "--flagfile=flags/longrun_correction_cifar10.cfg",
                    f"--gen_checkpoint={dirs['shortrun']}", f"--prior_model_dir={dirs['prior']}",
                    "--burnin_size=8", "--burnin_steps=2", "--graduation_draws=2", *tiny)
    self._assert_trained(result, dirs["correction"])
    self.assertIn("prior EBM (ebm_sngan32) loaded from", result.stderr)

  def test_bad_flag_fails_with_a_clear_message(self):
    result = _train(self.create_tempdir().full_path, "--flagfile=flags/shortrun_digits.cfg",
                    "--epsilon=0", timeout=120)
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("epsilon (Langevin step size) must be > 0; got 0.0", result.stderr)

  def test_missing_flagfile_fails(self):
    result = _train(self.create_tempdir().full_path, "--flagfile=flags/no_such.cfg",
                    timeout=120)
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("no_such.cfg", result.stderr)


if __name__ == "__main__":
  absltest.main()
