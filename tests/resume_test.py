"""Kill/resume of the training binary: a resumed run ends bitwise where an uninterrupted one does.

Everything runs `python -m ebm_tf.train` in subprocesses on the default strategy (one device,
where the data iterator's position is part of the checkpoint), on the digits shortrun preset
shrunk to seconds per run. Each binary spends most of its time importing TensorFlow and tracing,
so setUpClass runs the four binaries in two phases of two concurrent processes:

  phase 1: the reference run R (uninterrupted, keeps every checkpoint) and run A, SIGKILLed as
           soon as its checkpoint state file names ckpt-4;
  phase 2: A restarted with the same command, and run C started from a copy of R's ckpt-0/2/4
           with ckpt-4's data file truncated.

The tests then check what the runs did. Every tensor of a checkpoint is compared except those of
variant dtype (the tf.data iterator state, which has no numpy form; its effect shows in every
later step's data).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest
import numpy as np
import tensorflow as tf

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STEPS = 10
_FLAGS = ["--flagfile=flags/shortrun_digits.cfg", f"--train_steps={_STEPS}",
          "--checkpoint_every=2", "--max_to_keep=100", "--mcmc_steps=2", "--eval_mcmc_steps=2",
          "--batch_size=8", "--persistent_size=32", "--ebm_width=8", "--gen_width=8",
          "--latent_dim=4", "--log_every=1", "--image_every=1000", "--num_grid_images=4"]
_KILL_AT = 4
_TIMEOUT_S = 420  # Per binary; several engineers share 2 cores.


class _Run:
  """One `python -m ebm_tf.train` subprocess whose stdout+stderr go to a log file."""

  started = []

  def __init__(self, model_dir: str, log_path: str, *extra: str):
    self.model_dir = model_dir
    self.log_path = log_path
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with open(self.log_path, "w") as log:
      self.process = subprocess.Popen(
          [sys.executable, "-m", "ebm_tf.train", f"--model_dir={model_dir}", *_FLAGS, *extra],
          cwd=_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    _Run.started.append(self)

  def wait(self, deadline: float) -> int:
    try:
      return self.process.wait(timeout=max(deadline - time.monotonic(), 1.0))
    except subprocess.TimeoutExpired:
      self.process.kill()
      self.process.wait()
      raise AssertionError(f"ebm_tf.train timed out; log tail:\n{self.log()[-3000:]}") from None

  @classmethod
  def kill_all(cls):
    """Kills the runs this module started that are still running."""
    for run in cls.started:
      if run.process.poll() is None:
        run.process.kill()
        run.process.wait()

  def log(self) -> str:
    with open(self.log_path) as f:
      return f.read()


def _state_steps(checkpoint_dir: str):
  """Steps named in the CheckpointManager state file (newest last), [] when there is none."""
  try:
    with open(os.path.join(checkpoint_dir, "checkpoint")) as f:
      text = f.read()
  except FileNotFoundError:
    return []
  return [int(s) for s in re.findall(r'all_model_checkpoint_paths: ".*?ckpt-(\d+)"', text)]


def _kill_once_saved(run: _Run, step: int, deadline: float):
  """SIGKILLs `run` as soon as its state file names ckpt-`step` (polls every 10 ms).

  Returns (exited_before_kill, steps named in the state file after the kill).
  """
  checkpoint_dir = os.path.join(run.model_dir, "checkpoints")
  while time.monotonic() < deadline:
    if run.process.poll() is not None:
      break
    if step in _state_steps(checkpoint_dir):
      run.process.send_signal(signal.SIGKILL)
      run.process.wait()
      return False, _state_steps(checkpoint_dir)
    time.sleep(0.01)
  exited = run.process.poll() is not None
  if not exited:
    run.process.kill()
    run.process.wait()
  return exited, _state_steps(checkpoint_dir)


def _read_checkpoint(prefix: str):
  """{key: numpy value} of every non-variant tensor, and the sorted variant keys."""
  reader = tf.train.load_checkpoint(prefix)
  dtypes = reader.get_variable_to_dtype_map()
  values = {k: reader.get_tensor(k) for k in dtypes if dtypes[k] != tf.variant}
  return values, sorted(k for k in dtypes if dtypes[k] == tf.variant)


class ResumeTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp(prefix="resume_test_")
    cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
    cls.addClassCleanup(_Run.kill_all)  # Runs first, and also when setUpClass fails.
    deadline = time.monotonic() + _TIMEOUT_S
    cls.reference_dir = os.path.join(cls.tmp, "reference")
    cls.killed_dir = os.path.join(cls.tmp, "killed")
    cls.corrupt_dir = os.path.join(cls.tmp, "corrupt")
    # Phase 1: the uninterrupted reference, and the run that is killed after ckpt-4.
    reference = _Run(cls.reference_dir, cls.reference_dir + ".log")
    killed = _Run(cls.killed_dir, cls.killed_dir + ".log")
    cls.killed_exited_early, cls.steps_at_kill = _kill_once_saved(killed, _KILL_AT, deadline)
    cls.killed_log = killed.log()
    cls.reference_rc = reference.wait(deadline)
    cls.reference_log = reference.log()
    if cls.reference_rc != 0:
      raise AssertionError(f"the reference run failed:\n{cls.reference_log[-3000:]}")
    # Phase 2: restart A with the same command; start C from R's ckpt-0/2/4, ckpt-4 truncated.
    deadline = time.monotonic() + _TIMEOUT_S
    resumed = _Run(cls.killed_dir, cls.killed_dir + "-resumed.log")
    source = os.path.join(cls.reference_dir, "checkpoints")
    target = os.path.join(cls.corrupt_dir, "checkpoints")
    os.makedirs(target)
    for name in os.listdir(source):
      if re.fullmatch(r"ckpt-[024]\..*", name):
        shutil.copy(os.path.join(source, name), target)
    # CheckpointManager's state file; without timestamps newer than last_preserved_timestamp the
    # manager would not list ckpt-0 and ckpt-2 as its checkpoints.
    now = time.time()
    with open(os.path.join(target, "checkpoint"), "w") as f:
      f.write('model_checkpoint_path: "ckpt-4"\n'
              + "".join(f'all_model_checkpoint_paths: "ckpt-{s}"\n' for s in (0, 2, 4))
              + "".join(f"all_model_checkpoint_timestamps: {now - 3 + i}\n" for i in range(3))
              + f"last_preserved_timestamp: {now - 10}\n")
    data_file = os.path.join(target, "ckpt-4.data-00000-of-00001")
    with open(data_file, "r+b") as f:
      f.truncate(os.path.getsize(data_file) // 2)
    corrupt = _Run(cls.corrupt_dir, cls.corrupt_dir + ".log", "--train_steps=6")
    cls.resumed_rc = resumed.wait(deadline)
    cls.resumed_log = resumed.log()
    cls.corrupt_rc = corrupt.wait(deadline)
    cls.corrupt_log = corrupt.log()

  def _assert_bitwise_equal(self, prefix, reference_prefix):
    values, variants = _read_checkpoint(prefix)
    expected, expected_variants = _read_checkpoint(reference_prefix)
    self.assertEqual(variants, expected_variants)
    # Only the data iterator's state may escape the comparison.
    self.assertTrue(all(k.startswith("data_iterator/") for k in variants), variants)
    self.assertEqual(sorted(values), sorted(expected))
    # Keras weights are keyed by their optimizer's path (the first path to them in the graph).
    for family in ("ebm_optimizer/_trainable_variables/", "ebm_optimizer/_variables/",
                   "gen_optimizer/_trainable_variables/", "gen_optimizer/_variables/",
                   "generator/", "bank/images/", "bank/latents/", "bank/ages/", "step/",
                   "restarts/", "lr_scale/"):
      self.assertTrue(any(k.startswith(family) for k in values), f"no {family} tensors")
    different = [k for k in sorted(values)
                 if np.asarray(values[k]).dtype != np.asarray(expected[k]).dtype
                 or np.shape(values[k]) != np.shape(expected[k])
                 or np.asarray(values[k]).tobytes() != np.asarray(expected[k]).tobytes()]
    self.assertEmpty(different, f"{prefix} differs from {reference_prefix} in {different}")

  def test_reference_run_kept_every_checkpoint(self):
    self.assertEqual(_state_steps(os.path.join(self.reference_dir, "checkpoints")),
                     list(range(0, _STEPS + 1, 2)))
    values, _ = _read_checkpoint(os.path.join(self.reference_dir, "checkpoints", f"ckpt-{_STEPS}"))
    self.assertEqual(int(values["step/.ATTRIBUTES/VARIABLE_VALUE"]), _STEPS)

  def test_killed_run_resumes_and_ends_bitwise_equal_to_uninterrupted_run(self):
    self.assertFalse(self.killed_exited_early,
                     "the run finished (or died) before ckpt-4 was saved; log tail:\n"
                     + self.killed_log[-3000:])
    self.assertIn(_KILL_AT, self.steps_at_kill)
    newest = max(self.steps_at_kill)
    self.assertLess(newest, _STEPS, "killed too late: the run had saved its last checkpoint")
    self.assertEqual(self.resumed_rc, 0, self.resumed_log[-3000:])
    checkpoint_dir = os.path.join(self.killed_dir, "checkpoints")
    self.assertIn(f"resumed from {checkpoint_dir}/ckpt-{newest} at step {newest}",
                  self.resumed_log)
    self.assertIn(f"step {_STEPS}/{_STEPS}", self.resumed_log)
    for step in range(newest, _STEPS + 1, 2):
      self._assert_bitwise_equal(os.path.join(checkpoint_dir, f"ckpt-{step}"),
                                 os.path.join(self.reference_dir, "checkpoints", f"ckpt-{step}"))

  def test_truncated_newest_checkpoint_is_skipped_with_a_warning(self):
    self.assertEqual(self.corrupt_rc, 0, self.corrupt_log[-3000:])
    checkpoint_dir = os.path.join(self.corrupt_dir, "checkpoints")
    self.assertRegex(self.corrupt_log,
                     rf"checkpoint {re.escape(checkpoint_dir)}/ckpt-4 is unreadable \(.+\); "
                     "trying the previous one")
    self.assertIn(f"resumed from {checkpoint_dir}/ckpt-2 at step 2", self.corrupt_log)
    self.assertIn("step 6/6", self.corrupt_log)
    # Steps 3-6 were retrained from ckpt-2: the re-saved ckpt-4 and ckpt-6 are the reference's.
    for step in (4, 6):
      self._assert_bitwise_equal(os.path.join(checkpoint_dir, f"ckpt-{step}"),
                                 os.path.join(self.reference_dir, "checkpoints", f"ckpt-{step}"))


if __name__ == "__main__":
  tf.test.main()
