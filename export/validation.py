"""Graph-side checks of serving requests: each bad input becomes an InvalidArgument error.

A served SavedModel cannot raise Python errors: TF Serving feeds request tensors straight into the
graph (it does not check shapes against the signature; a wrong dtype is rejected by the executor
with "Type mismatch: actual int32 vs. expect float"). These checks run inside the graph, before
any Langevin step, as a chain of `tf.debugging.Assert` ops, so the first failed check is the one
reported, and its message names the input and what was expected, e.g.

    assertion failed: [images must have shape [batch, 8, 8, 1] (NHWC); got shape] [3 4 4 1]

TF Serving returns such an error as gRPC INVALID_ARGUMENT (HTTP 400 for REST clients) and keeps
serving. The checks must stay outside XLA-compiled functions (Assert is a no-op under XLA).
"""

from typing import Callable, List, Sequence, Tuple

import tensorflow as tf

Check = Callable[[], Tuple[tf.Tensor, list]]

INPUT_RANGES = ("reject", "clip")


def gate(tensors: Sequence[tf.Tensor], checks: Sequence[Check]) -> List[tf.Tensor]:
  """Runs `checks` in order and returns `tensors` made to depend on all of them.

  Each check is a callable returning `(condition, data)` for `tf.debugging.Assert`; it is built
  under a control dependency on the previous assertion, so a later check (which may assume an
  earlier one, e.g. a rank) is only evaluated once the earlier ones passed.

  Args:
    tensors: tensors to gate (returned as `tf.identity` copies in the same order).
    checks: zero or more check callables.

  Returns:
    A list of tensors with the values of `tensors`, computed only after every check passed.
  """
  previous = []
  for check in checks:
    with tf.control_dependencies(previous):
      condition, data = check()
      previous = [tf.debugging.Assert(condition, data, summarize=16)]
  with tf.control_dependencies(previous):
    return [tf.identity(t) for t in tensors]


def image_checks(images: tf.Tensor, image_shape: Sequence[int], max_batch_size: int,
                 check_values: bool = True, reject_out_of_range: bool = True) -> List[Check]:
  """Checks of an images tensor: NHWC shape, batch size, and (float images) finite values in range.

  Args:
    images: the request's images, expected [batch, H, W, C].
    image_shape: (H, W, C) the model takes.
    max_batch_size: largest batch accepted (>= 1).
    check_values: check for NaN/Inf (float images only).
    reject_out_of_range: also require values in [-1, 1].

  Returns:
    A list of checks for `gate`.
  """
  h, w, c = (int(d) for d in image_shape)
  expected = tf.constant([h, w, c], tf.int32)

  def shape_check():
    shape = tf.shape(images, out_type=tf.int32)
    padded = tf.concat([shape, tf.zeros([4], tf.int32)], axis=0)  # Safe to slice at any rank.
    ok = tf.logical_and(tf.equal(tf.size(shape), 4),
                        tf.reduce_all(tf.equal(padded[1:4], expected)))
    return ok, [f"images must have shape [batch, {h}, {w}, {c}] (NHWC); got shape", shape]

  def batch_check():
    batch = tf.shape(images, out_type=tf.int32)[0]
    ok = tf.logical_and(batch >= 1, batch <= max_batch_size)
    return ok, [f"images batch size must be between 1 and {max_batch_size}; got", batch]

  checks = [shape_check, batch_check]
  if check_values:
    def finite_check():
      bad = tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(images)), tf.int32))
      return tf.equal(bad, 0), ["images must be finite; number of NaN or Inf values:", bad]
    checks.append(finite_check)
  if check_values and reject_out_of_range:
    def range_check():
      low, high = tf.reduce_min(images), tf.reduce_max(images)
      ok = tf.logical_and(low >= -1.0, high <= 1.0)
      return ok, ["images must be in [-1, 1] (or export with --input_range=clip); got min",
                  low, "max", high]
    checks.append(range_check)
  return checks


def seed_checks(seed: tf.Tensor) -> List[Check]:
  """Checks that `seed` has shape [2] (its dtype is fixed by the signature)."""
  def check():
    shape = tf.shape(seed, out_type=tf.int32)
    ok = tf.logical_and(tf.equal(tf.size(shape), 1),
                        tf.reduce_all(tf.equal(tf.concat([shape, [0]], 0)[0], 2)))
    return ok, [f"seed must be a {seed.dtype.name} vector of shape [2]; got shape", shape]
  return [check]


def scalar_range_checks(value: tf.Tensor, name: str, low: int, high: int) -> List[Check]:
  """Checks that `value` is a scalar in [low, high]."""
  def rank_check():
    shape = tf.shape(value, out_type=tf.int32)
    return tf.equal(tf.size(shape), 0), [f"{name} must be a scalar; got shape", shape]

  def range_check():
    ok = tf.logical_and(value >= low, value <= high)
    return ok, [f"{name} must be in [{low}, {high}]; got", value]
  return [rank_check, range_check]


def per_image_seed_checks(seeds: tf.Tensor, images: tf.Tensor) -> List[Check]:
  """Checks that `seeds` has shape [batch, 2] with the batch of `images` (one seed per image)."""
  def check():
    shape = tf.shape(seeds, out_type=tf.int32)
    padded = tf.concat([shape, [0, 0]], 0)
    batch = tf.shape(images, out_type=tf.int32)[0]
    ok = tf.logical_and(tf.equal(tf.size(shape), 2),
                        tf.logical_and(tf.equal(padded[0], batch), tf.equal(padded[1], 2)))
    return ok, [f"seeds must be a {seeds.dtype.name} matrix of shape [batch, 2], one seed per "
                "image; got shape", shape, "for images batch", batch]
  return [check]
