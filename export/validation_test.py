"""Tests of the graph-side request checks (run inside a tf.function, as in a served graph)."""

import numpy as np
import tensorflow as tf

from export import validation


def _checked_images(max_batch_size=4, reject_out_of_range=True):
  @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
  def fn(images):
    (out,) = validation.gate([images], validation.image_checks(
        images, (4, 4, 1), max_batch_size, reject_out_of_range=reject_out_of_range))
    return out
  return fn


class ValidationTest(tf.test.TestCase):

  def test_valid_images_pass_unchanged(self):
    x = np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 4, 4, 1)
    self.assertAllEqual(_checked_images()(x), x)

  def test_each_bad_image_input_names_the_problem(self):
    fn = _checked_images()
    good = np.zeros([2, 4, 4, 1], np.float32)
    cases = [
        (np.zeros([2, 4, 4, 3], np.float32), r"images must have shape \[batch, 4, 4, 1\].*2 4 4 3"),
        (np.zeros([4, 4, 1], np.float32), r"images must have shape \[batch, 4, 4, 1\].*4 4 1"),
        (np.zeros([5, 4, 4, 1], np.float32), r"batch size must be between 1 and 4; got\] \[5\]"),
        (np.zeros([0, 4, 4, 1], np.float32), r"batch size must be between 1 and 4; got\] \[0\]"),
        (np.where(np.arange(32).reshape(2, 4, 4, 1) < 3, np.nan, good), r"NaN or Inf.*\[3\]"),
        (np.full([1, 4, 4, 1], np.inf, np.float32), r"NaN or Inf.*\[16\]"),
        (np.full([1, 4, 4, 1], 1.5, np.float32), r"must be in \[-1, 1\].*1.5"),
        (np.full([1, 4, 4, 1], -1.0001, np.float32), r"must be in \[-1, 1\].*-1.0001"),
    ]
    for value, pattern in cases:
      with self.subTest(pattern=pattern):
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, pattern):
          fn(value.astype(np.float32))

  def test_first_failing_check_is_reported(self):
    # Wrong shape and out of range: the shape check comes first.
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "must have shape"):
      _checked_images()(np.full([2, 3, 3, 1], 5.0, np.float32))

  def test_range_check_off(self):
    x = np.full([1, 4, 4, 1], 3.0, np.float32)
    self.assertAllEqual(_checked_images(reject_out_of_range=False)(x), x)

  def test_controls(self):
    @tf.function(input_signature=[tf.TensorSpec(None, tf.int64), tf.TensorSpec(None, tf.int32)])
    def fn(seed, num_steps):
      return validation.gate([seed, num_steps], validation.seed_checks(seed)
                             + validation.scalar_range_checks(num_steps, "num_steps", 0, 10))

    seed, steps = fn(np.array([1, 2], np.int64), np.int32(10))
    self.assertAllEqual(seed, [1, 2])
    self.assertEqual(int(steps), 10)
    for args, pattern in [((np.array([1, 2, 3]), 1), r"seed must be a int64 vector of shape \[2\]"),
                          ((np.array([[1, 2]]), 1), r"shape \[2\]; got shape\] \[1 2\]"),
                          ((np.array([1, 2]), [1, 2]), r"num_steps must be a scalar"),
                          ((np.array([1, 2]), 11), r"num_steps must be in \[0, 10\]; got\] \[11\]"),
                          ((np.array([1, 2]), -1), r"num_steps must be in \[0, 10\]; got\] \[-1\]")]:
      with self.subTest(pattern=pattern):
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, pattern):
          fn(np.asarray(args[0], np.int64), np.asarray(args[1], np.int32))


if __name__ == "__main__":
  tf.test.main()
