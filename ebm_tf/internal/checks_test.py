"""Tests for ebm_tf.internal.checks: the argument checks shared by every layer."""

import numpy as np
import tensorflow as tf

from ebm_tf.internal import checks


class CheckIntTest(tf.test.TestCase):

  def test_accepts_python_and_numpy_ints(self):
    self.assertEqual(checks.check_int(3, "n", 1), 3)
    self.assertIsInstance(checks.check_int(np.int64(0), "n"), int)

  def test_rejects_bools_floats_and_small_values(self):
    for value in (True, 2.0, -1):
      with self.assertRaisesRegex(ValueError, "n must be an integer >= 0; got"):
        checks.check_int(value, "n")
    with self.assertRaisesRegex(ValueError, "k must be a Python integer >= 1; got 0"):
      checks.check_int(0, "k", 1, kind="a Python integer")


class CheckSeedTest(tf.test.TestCase):

  def test_dtypes(self):
    self.assertEqual(checks.check_seed([1, 2]).dtype, tf.int32)
    self.assertEqual(checks.check_seed(tf.constant([1, 2], tf.int64)).dtype, tf.int64)
    self.assertEqual(checks.check_seed(np.array([1, 2], np.uint8)).dtype, tf.int64)
    self.assertEqual(checks.check_seed(tf.constant([1, 2], tf.int64), dtype=tf.int32).dtype,
                     tf.int32)

  def test_bad_seeds(self):
    for seed in ([1, 2, 3], [[1, 2]], [1.0, 2.0]):
      with self.assertRaisesRegex(ValueError, r"seed must be an int32/int64 tensor of shape \[2\]"):
        checks.check_seed(seed)
    with self.assertRaisesRegex(ValueError, "chain_seed must be a stateless seed"):
      checks.check_seed(None, "chain_seed")

  def test_unknown_shape_only_when_allowed(self):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def loose(seed):
      return checks.check_seed(seed, static_shape=False)

    self.assertAllEqual(loose(tf.constant([3, 4])), [3, 4])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def strict(seed):
      return checks.check_seed(seed)

    with self.assertRaisesRegex(ValueError, r"shape \[2\]"):
      strict.get_concrete_function()

  def test_per_chain_seeds(self):
    x = tf.zeros([3, 2])
    asserts = []
    self.assertEqual(checks.check_seed(tf.zeros([3, 2], tf.int32), per_chain_like=x,
                                       asserts=asserts).shape, [3, 2])
    self.assertEmpty(asserts)
    with self.assertRaisesRegex(ValueError, r"per-chain seed must have shape \[batch, 2\] = "
                                r"\[3, 2\]"):
      checks.check_seed(tf.zeros([4, 2], tf.int32), per_chain_like=x, asserts=asserts)
    with self.assertRaisesRegex(ValueError, r"shape \[2\] \(or \[batch, 2\]"):
      checks.check_seed(tf.zeros([3, 3], tf.int32), per_chain_like=x, asserts=asserts)


class CheckImagesTest(tf.test.TestCase):

  def test_tensor_and_numpy_results(self):
    x = np.linspace(-1, 1, 32, dtype=np.float64).reshape(2, 4, 4, 1)
    out = checks.check_images(x)
    self.assertTrue(tf.is_tensor(out))
    self.assertEqual(out.dtype, tf.float32)
    out = checks.check_images(tf.constant(x), as_numpy=True)
    self.assertIsInstance(out, np.ndarray)
    self.assertEqual(out.dtype, np.float32)

  def test_tolerance_clips(self):
    x = np.full((1, 2, 2, 1), 1.0005, np.float32)
    self.assertEqual(checks.check_images(x, range_tolerance=1e-3, as_numpy=True).max(), 1.0)
    with self.assertRaisesRegex(ValueError, "images must have values in \\[-1, 1\\]; got min "
                                "1.0005 and max 1.0005"):
      checks.check_images(x)

  def test_errors(self):
    good = np.zeros((2, 4, 4, 1), np.float32)
    cases = [
        (dict(images=good[0]), r"images must have shape \[batch, height, width, channels\]"),
        (dict(images=good, image_shape=(4, 4, 3)), r"shape \[batch, 4, 4, 3\].*got \[2, 4, 4, 1\]"),
        (dict(images=np.zeros((2, 4, 4, 2), np.float32), channels=(1, 3)),
         r"\[batch, height, width, 1 or 3\]"),
        (dict(images=good[:0], min_batch=1), r"\(batch >= 1\)"),
        (dict(images=good.astype(np.int32)), "floats in .*dtype int32"),
        (dict(images=np.where(good == 0, np.nan, good)), "images must be finite; got 32 NaN/inf"),
        (dict(images=good - 2, name="x_adv"), "x_adv must have values in .*min -2 and max -2"),
    ]
    for kwargs, pattern in cases:
      with self.assertRaisesRegex(ValueError, pattern):
        checks.check_images(**kwargs)

  def test_graph_assertions(self):
    @tf.function(input_signature=[tf.TensorSpec([None, 2, 2, 1], tf.float32)])
    def check(x):
      return checks.check_images(x)

    self.assertAllEqual(check(tf.zeros([1, 2, 2, 1])), tf.zeros([1, 2, 2, 1]))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r"\[-1, 1\]"):
      check(tf.fill([1, 2, 2, 1], 2.0))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "images must"):
      check(tf.fill([1, 2, 2, 1], np.nan))  # not finite (nor in range)


if __name__ == "__main__":
  tf.test.main()
