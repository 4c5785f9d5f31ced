"""Tests for ebm_tf.training.checkpoints: round trip, max_to_keep, corrupt/interrupted saves, mismatch."""

import os
import signal
import subprocess
import sys
import textwrap
from unittest import mock

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from ebm_tf.internal import file_io
from ebm_tf.training import checkpoints


def setUpModule():
  # Two logical CPUs for the MirroredStrategy test; impossible once another test initialised TF.
  cpus = tf.config.list_physical_devices("CPU")
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
  except RuntimeError:
    pass


class _Bank(tf.Module):
  """A stand-in for a persistent chain bank: a non-trainable image buffer and ages."""

  def __init__(self):
    super().__init__()
    self.images = tf.Variable(tf.zeros([2, 3, 4, 4, 1]), trainable=False)
    self.ages = tf.Variable(tf.zeros([2, 3], tf.int32), trainable=False)


def _make_state(units=4, seed=0):
  """A fresh set of trackables; `seed` makes the initial values differ between calls."""
  init = keras.initializers.GlorotUniform(seed=seed)
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(units, kernel_initializer=init),
                            keras.layers.Dense(1, kernel_initializer=init)])
  optimizer = keras.optimizers.Adam(1e-2)
  optimizer.build(model.trainable_variables)
  return dict(model=model, optimizer=optimizer, step=tf.Variable(0, dtype=tf.int64),
              rng=tf.random.Generator.from_seed(seed + 100), bank=_Bank())


def _adam_step(state, seed):
  """One real Adam update on a random batch (fills the moment slots)."""
  x = tf.random.stateless_normal([8, 3], seed=[seed, 1])
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(state["model"](x) ** 2)
  grads = tape.gradient(loss, state["model"].trainable_variables)
  state["optimizer"].apply_gradients(zip(grads, state["model"].trainable_variables))


def _train_a_little(state, step, seed):
  """Gives every tracked value a new value that depends on `seed` (cheaper than training)."""
  variables = state["model"].variables + state["optimizer"].variables
  for i, v in enumerate(variables):
    value = tf.random.stateless_uniform(v.shape, seed=[seed, i], minval=1, maxval=100)
    v.assign(tf.cast(value, v.dtype))
  state["bank"].images.assign(tf.random.stateless_uniform([2, 3, 4, 4, 1], seed=[seed, -1]))
  state["bank"].ages.assign(tf.fill([2, 3], step))
  state["step"].assign(step)
  state["rng"].normal([3])


def _values(state):
  """Every tracked value as numpy arrays (the RNG by its state variable)."""
  return ([v.numpy() for v in state["model"].variables] +
          [v.numpy() for v in state["optimizer"].variables] +
          [state["step"].numpy(), state["rng"].state.numpy(),
           state["bank"].images.numpy(), state["bank"].ages.numpy()])


class CheckpointerTest(tf.test.TestCase, parameterized.TestCase):

  def _dir(self):
    return os.path.join(self.get_temp_dir(), self.id().split(".")[-1])

  def assertValuesEqual(self, expected, actual):
    self.assertEqual(len(expected), len(actual))
    for e, a in zip(expected, actual):
      self.assertAllEqual(e, a)

  def _save_two(self, directory, **kwargs):
    """Saves steps 1 and 2 with different values; returns the values at each step."""
    state = _make_state()
    ckpt = checkpoints.Checkpointer(directory, **kwargs, **state)
    saved = {}
    for step in (1, 2):
      _train_a_little(state, step, seed=step)
      saved[step] = _values(state)
      ckpt.save(step)
    return saved

  def test_round_trip_restores_every_value(self):
    directory = self._dir()
    state = _make_state(seed=0)
    _adam_step(state, seed=3)
    state["step"].assign(7)
    state["bank"].ages.assign(tf.fill([2, 3], 7))
    state["rng"].normal([3])
    self.assertGreater(np.abs(state["optimizer"].variables[-1].numpy()).sum(), 0)  # Slots filled.
    path = checkpoints.Checkpointer(directory, **state).save(7)
    self.assertEqual(path, os.path.join(directory, "ckpt-7"))
    expected = _values(state)
    expected_draws = state["rng"].normal([5]).numpy()

    fresh = _make_state(seed=1)
    self.assertNotAllClose(expected[0], _values(fresh)[0])
    restored = checkpoints.Checkpointer(directory, **fresh).restore_latest()
    self.assertEqual(restored, path)
    self.assertValuesEqual(expected, _values(fresh))
    self.assertEqual(int(fresh["step"].numpy()), 7)
    self.assertEqual(int(fresh["optimizer"].iterations.numpy()), 1)
    self.assertAllEqual(fresh["bank"].ages.numpy(), np.full([2, 3], 7))
    # The restored generator continues the saved stream exactly.
    self.assertAllEqual(expected_draws, fresh["rng"].normal([5]).numpy())

  def test_empty_or_missing_directory_is_a_fresh_start(self):
    empty = self._dir()
    os.makedirs(empty)
    self.assertIsNone(checkpoints.Checkpointer(empty, **_make_state()).restore_latest())
    missing = os.path.join(empty, "not", "there")
    ckpt = checkpoints.Checkpointer(missing, **_make_state())
    self.assertIsNone(ckpt.restore_latest())
    self.assertIsNone(ckpt.latest_path)
    self.assertEqual(ckpt.all_paths, [])

  def test_keeps_the_newest_max_to_keep(self):
    directory = self._dir()
    state = _make_state()
    ckpt = checkpoints.Checkpointer(directory, max_to_keep=2, **state)
    for step in (10, 20, 30, 40):
      state["step"].assign(step)
      ckpt.save(step)
    expected = [os.path.join(directory, f"ckpt-{s}") for s in (30, 40)]
    self.assertEqual(ckpt.all_paths, expected)
    self.assertEqual(ckpt.latest_path, expected[-1])
    files = sorted(os.listdir(directory))
    self.assertFalse([f for f in files if f.startswith(("ckpt-10.", "ckpt-20."))], files)
    self.assertIn("ckpt-30.index", files)
    # A new Checkpointer reads the same list from the state file.
    fresh = _make_state()
    reopened = checkpoints.Checkpointer(directory, max_to_keep=2, **fresh)
    self.assertEqual(reopened.all_paths, expected)
    self.assertEqual(reopened.restore_latest(), expected[-1])
    self.assertEqual(int(fresh["step"].numpy()), 40)

  @parameterized.named_parameters(
      ("truncated_data", "truncate_data"),
      ("deleted_index", "delete_index"),
      ("garbage_index", "garbage_index"),
      ("truncated_index", "truncate_index"),
      ("flipped_data_byte", "flip_data_byte"),
      ("deleted_data", "delete_data"),
  )
  def test_corrupt_latest_falls_back_to_previous(self, damage):
    directory = self._dir()
    saved = self._save_two(directory)
    _damage(os.path.join(directory, "ckpt-2"), damage)

    fresh = _make_state(seed=5)
    with self.assertLogs(level="WARNING") as logs:
      restored = checkpoints.Checkpointer(directory, **fresh).restore_latest()
    self.assertEqual(restored, os.path.join(directory, "ckpt-1"))
    warning = "\n".join(logs.output)
    self.assertIn(os.path.join(directory, "ckpt-2"), warning)
    self.assertIn("unreadable", warning)
    self.assertValuesEqual(saved[1], _values(fresh))

  def test_all_corrupt_raises(self):
    directory = self._dir()
    self._save_two(directory)
    _damage(os.path.join(directory, "ckpt-1"), "truncate_data")
    _damage(os.path.join(directory, "ckpt-2"), "garbage_index")
    ckpt = checkpoints.Checkpointer(directory, **_make_state())
    with self.assertLogs(level="WARNING"):
      with self.assertRaisesRegex(checkpoints.UnreadableCheckpointError,
                                  r"none of the 2 checkpoints.*ckpt-2.*ckpt-1"):
        ckpt.restore_latest()

  def test_missing_state_file_uses_checkpoints_on_disk(self):
    directory = self._dir()
    saved = self._save_two(directory)
    os.remove(os.path.join(directory, "checkpoint"))
    fresh = _make_state(seed=5)
    with self.assertLogs(level="WARNING") as logs:
      restored = checkpoints.Checkpointer(directory, **fresh).restore_latest()
    self.assertIn("state file", "\n".join(logs.output))
    self.assertEqual(restored, os.path.join(directory, "ckpt-2"))
    self.assertValuesEqual(saved[2], _values(fresh))

  def test_wrong_shape_raises_without_fallback(self):
    directory = self._dir()
    self._save_two(directory)
    ckpt = checkpoints.Checkpointer(directory, **_make_state(units=5))
    with self.assertRaisesRegex(checkpoints.CheckpointMismatchError,
                                r"ckpt-2 does not match.*shape"):
      ckpt.restore_latest()

  def test_wrong_structure_raises(self):
    directory = self._dir()
    self._save_two(directory)
    state = _make_state()
    state["generator"] = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    ckpt = checkpoints.Checkpointer(directory, **state)
    with self.assertRaisesRegex(checkpoints.CheckpointMismatchError,
                                r"ckpt-2 does not match.*generator.*not bound"):
      ckpt.restore_latest()

  def test_restore_a_given_damaged_checkpoint_raises_and_changes_nothing(self):
    directory = self._dir()
    self._save_two(directory)
    _damage(os.path.join(directory, "ckpt-2"), "flip_data_byte")
    fresh = _make_state(seed=5)
    before = _values(fresh)
    ckpt = checkpoints.Checkpointer(directory, **fresh)
    with self.assertRaisesRegex(checkpoints.UnreadableCheckpointError,
                                "ckpt-2 cannot be read.*[Cc]hecksum"):
      ckpt.restore(ckpt.path_for_step(2))
    self.assertValuesEqual(before, _values(fresh))

  def test_partial_restore_of_one_network_is_allowed(self):
    directory = self._dir()
    saved = self._save_two(directory)
    model = _make_state(seed=9)["model"]
    ckpt = checkpoints.Checkpointer(directory, model=model)
    self.assertEqual(ckpt.path_for_step(1), os.path.join(directory, "ckpt-1"))
    ckpt.restore(ckpt.path_for_step(1), expect_partial=True)
    n = len(model.variables)
    self.assertValuesEqual(saved[1][:n], [v.numpy() for v in model.variables])

  def test_failed_write_leaves_previous_checkpoint_latest(self):
    directory = self._dir()
    saved = self._save_two(directory)
    state = _make_state()
    ckpt = checkpoints.Checkpointer(directory, **state)
    _train_a_little(state, 3, seed=3)
    # A directory where the final index file goes makes TF's merge step fail mid-write, after
    # the data file was already renamed into place.
    os.makedirs(os.path.join(directory, "ckpt-3.index"))
    with self.assertRaises(tf.errors.OpError):
      ckpt.save(3)
    self.assertTrue(any(f.startswith("ckpt-3.data") for f in os.listdir(directory)))
    self.assertEqual(ckpt.latest_path, os.path.join(directory, "ckpt-2"))
    fresh = _make_state(seed=5)
    restored = checkpoints.Checkpointer(directory, **fresh).restore_latest()
    self.assertEqual(restored, os.path.join(directory, "ckpt-2"))
    self.assertValuesEqual(saved[2], _values(fresh))

  def test_failed_sync_does_not_record_the_checkpoint(self):
    directory = self._dir()
    self._save_two(directory)
    state = _make_state()
    ckpt = checkpoints.Checkpointer(directory, **state)
    with mock.patch.object(file_io, "fsync_paths", side_effect=OSError("disk gone")):
      with self.assertRaisesRegex(OSError, "disk gone"):
        ckpt.save(3)
    self.assertIn("ckpt-3.index", os.listdir(directory))  # Written, but never recorded:
    reopened = checkpoints.Checkpointer(directory, **_make_state())
    self.assertEqual(reopened.latest_path, os.path.join(directory, "ckpt-2"))
    self.assertEqual(reopened.restore_latest(), os.path.join(directory, "ckpt-2"))

  def test_process_killed_during_save_keeps_previous_checkpoint(self):
    directory = self._dir()
    # The child saves step 1, then is SIGKILLed inside save(2) after TF wrote the new bundle and
    # just before the state file would name it: the last moment a crash can happen.
    script = textwrap.dedent("""
        import os, signal, sys
        import tensorflow as tf
        from tensorflow.python.checkpoint import checkpoint_management
        from ebm_tf.training import checkpoints
        weights = tf.Variable(tf.fill([64, 64], 1.0))
        step = tf.Variable(1, dtype=tf.int64)
        ckpt = checkpoints.Checkpointer(sys.argv[1], weights=weights, step=step)
        ckpt.save(1)
        weights.assign(tf.fill([64, 64], 2.0))
        step.assign(2)
        def killed(*args, **kwargs):
          os.kill(os.getpid(), signal.SIGKILL)
        checkpoint_management.update_checkpoint_state_internal = killed
        ckpt.save(2)
        print("NOT KILLED")
        """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
               TF_CPP_MIN_LOG_LEVEL="2")
    child = subprocess.run([sys.executable, "-c", script, directory], env=env,
                           capture_output=True, text=True, timeout=120)
    self.assertEqual(child.returncode, -signal.SIGKILL, child.stdout + child.stderr)
    self.assertIn("ckpt-2.index", os.listdir(directory))

    weights = tf.Variable(tf.zeros([64, 64]))
    step = tf.Variable(0, dtype=tf.int64)
    restored = checkpoints.Checkpointer(directory, weights=weights, step=step).restore_latest()
    self.assertEqual(restored, os.path.join(directory, "ckpt-1"))
    self.assertAllEqual(weights.numpy(), np.ones([64, 64], np.float32))
    self.assertEqual(int(step.numpy()), 1)

  def test_resave_same_step_overwrites(self):
    directory = self._dir()
    state = _make_state()
    ckpt = checkpoints.Checkpointer(directory, **state)
    _train_a_little(state, 5, seed=1)
    ckpt.save(5)
    _train_a_little(state, 5, seed=2)
    expected = _values(state)
    self.assertEqual(ckpt.save(5), os.path.join(directory, "ckpt-5"))
    self.assertEqual(ckpt.all_paths, [os.path.join(directory, "ckpt-5")])
    fresh = _make_state(seed=3)
    checkpoints.Checkpointer(directory, **fresh).restore_latest()
    self.assertValuesEqual(expected, _values(fresh))

  def test_mirrored_strategy_round_trip(self):
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < 2:
      self.skipTest("needs 2 logical CPUs (TF was initialised before setUpModule)")
    strategy = tf.distribute.MirroredStrategy([d.name for d in cpus[:2]])
    directory = self._dir()
    with strategy.scope():
      state = _make_state(seed=0)
      ckpt = checkpoints.Checkpointer(directory, **state)
    _train_a_little(state, 4, seed=4)
    expected = _values(state)
    ckpt.save(4)
    with strategy.scope():
      fresh = _make_state(seed=1)
      restored = checkpoints.Checkpointer(directory, **fresh).restore_latest()
    self.assertEqual(restored, os.path.join(directory, "ckpt-4"))
    self.assertIsInstance(fresh["step"], tf.distribute.DistributedValues)
    self.assertValuesEqual(expected, _values(fresh))

  def test_bad_arguments(self):
    state = _make_state()
    directory = self._dir()
    with self.assertRaisesRegex(ValueError, "max_to_keep must be a positive int or None; got 0"):
      checkpoints.Checkpointer(directory, max_to_keep=0, **state)
    with self.assertRaisesRegex(ValueError, "at least one trackable"):
      checkpoints.Checkpointer(directory)
    with self.assertRaisesRegex(ValueError, "trackable 'lr' must be .*got float"):
      checkpoints.Checkpointer(directory, lr=0.1, **state)
    with self.assertRaisesRegex(ValueError, "directory must be a non-empty path"):
      checkpoints.Checkpointer("", **state)
    ckpt = checkpoints.Checkpointer(directory, **state)
    for bad in (-1, 1.5, True, "3", tf.constant(2.0), tf.constant([1, 2])):
      with self.assertRaisesRegex(ValueError, "step must be"):
        ckpt.save(bad)
    self.assertEqual(ckpt.save(tf.constant(3, tf.int64)), os.path.join(directory, "ckpt-3"))
    self.assertEqual(ckpt.save(np.int32(4)), os.path.join(directory, "ckpt-4"))


def _damage(prefix, how):
  """Damages the checkpoint files of `prefix` in one of several ways."""
  index = prefix + ".index"
  data = prefix + ".data-00000-of-00001"
  if how == "truncate_data":
    with open(data, "r+b") as f:
      f.truncate(os.path.getsize(data) // 2)
  elif how == "delete_index":
    os.remove(index)
  elif how == "garbage_index":
    with open(index, "wb") as f:
      f.write(b"this is not a tensor bundle index " * 4)
  elif how == "truncate_index":
    with open(index, "r+b") as f:
      f.truncate(os.path.getsize(index) // 2)
  elif how == "flip_data_byte":
    content = bytearray(open(data, "rb").read())
    content[len(content) // 2] ^= 0xFF
    with open(data, "wb") as f:
      f.write(bytes(content))
  elif how == "delete_data":
    os.remove(data)
  else:
    raise ValueError(f"unknown damage {how!r}")


if __name__ == "__main__":
  tf.test.main()
