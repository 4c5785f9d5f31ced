"""Argument checks shared by every layer: each raises ValueError naming the bad value."""

import numpy as np
import tensorflow as tf


def check_points_2d(x, name: str) -> np.ndarray:
  """Returns `x` (array or tensor) as a numpy float array [N, 2], N >= 1; else ValueError naming `name`."""
  if isinstance(x, (tf.Tensor, tf.Variable)):
    x = x.numpy()
  x = np.asarray(x)
  if x.ndim != 2 or x.shape[1] != 2 or x.shape[0] < 1 or not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"{name} must be a float array of shape [N, 2] with N >= 1 (2-D points); "
                     f"got {x.dtype} of shape {list(x.shape)}")
  return x


def check_int(value, name: str, minimum: int = 0, *, kind: str = "an integer") -> int:
  """Returns `value` (a Python or numpy integer, not a bool) as an int >= `minimum`; else
  ValueError "<name> must be <kind> >= <minimum>; got <value>"."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name} must be {kind} >= {minimum}; got {value!r}")
  return int(value)


def check_seed(seed, name: str = "seed", *, dtype=None, per_chain_like=None, asserts=None,
               static_shape: bool = True) -> tf.Tensor:
  """Returns a stateless seed, an int32/int64 tensor of shape [2], as a tensor.

  Args:
    seed: the seed (array, list or tensor); None is an error.
    name: the argument name used in error messages.
    dtype: cast the seed to this dtype (e.g. tf.int32); None: int32 and int64 are kept and other
      integer dtypes become int64 (the dtypes the stateless random ops take).
    per_chain_like: a tensor [B, ...]: a [B, 2] seed, one per chain, is accepted too. B is checked
      statically where both are known, else by a graph assertion appended to `asserts`.
    asserts: a list collecting the graph assertions (with `per_chain_like`).
    static_shape: False accepts a seed whose shape is only compatible with [2] (unknown in a
      graph); True needs the static shape [2].

  Raises:
    ValueError: a non-integer seed, one of another shape, or None.
  """
  if seed is None:
    raise ValueError(f"{name} must be a stateless seed, an int32/int64 tensor of shape [2]; "
                     "got None")
  seed = tf.convert_to_tensor(seed)
  per_chain = per_chain_like is not None and seed.shape.rank == 2
  if per_chain:
    ok = seed.shape[-1] == 2
  elif static_shape:
    ok = seed.shape.rank == 1 and seed.shape[0] == 2
  else:
    ok = seed.shape.is_compatible_with([2])
  if not seed.dtype.is_integer or not ok:
    expected = ("[2] (or [batch, 2], one seed per chain)" if per_chain_like is not None
                else "[2]")
    raise ValueError(f"{name} must be an int32/int64 tensor of shape {expected}; got "
                     f"{seed.dtype.name} {seed.shape}")
  if dtype is not None:
    seed = tf.cast(seed, dtype)
  elif seed.dtype not in (tf.int32, tf.int64):
    seed = tf.cast(seed, tf.int64)
  if per_chain:
    batch, seeds = per_chain_like.shape[0], seed.shape[0]
    if batch is not None and seeds is not None:
      if batch != seeds:
        raise ValueError(f"per-chain {name} must have shape [batch, 2] = [{batch}, 2]; got "
                         f"{seed.shape}")
    else:
      asserts.append(tf.debugging.Assert(
          tf.equal(tf.shape(seed)[0], tf.shape(per_chain_like)[0]),
          [f"per-chain {name} must have shape [batch, 2]; got seeds for", tf.shape(seed)[0],
           "chains, batch", tf.shape(per_chain_like)[0]]))
  return seed


_IMAGE_RANGE_HINT = "(clip them with np.clip(x, -1, 1) first)"


def check_images(images, name: str = "images", *, image_shape=None, channels=None,
                 min_batch: int = 0, range_tolerance: float = 0.0, as_numpy: bool = False):
  """Checks a batch of float images [B, H, W, C] with values in [-1, 1] and returns it as float32.

  Args:
    images: float array or tensor [B, H, W, C].
    name: the argument name used in error messages.
    image_shape: (H, W, C) the images must have, or None for any.
    channels: the allowed channel counts, e.g. (1, 3), or None for any.
    min_batch: the smallest batch B allowed.
    range_tolerance: values up to this far outside [-1, 1] are clipped to it; farther ones are
      an error.
    as_numpy: return a numpy array (the input is converted first; eager only). Otherwise a
      float32 tensor; inside a `tf.function` its value checks are graph assertions
      (tf.errors.InvalidArgumentError) attached to it.

  Returns:
    float32 images [B, H, W, C] (numpy with `as_numpy`, else a tensor), clipped to [-1, 1]
    where `range_tolerance` allows.

  Raises:
    ValueError: a non-float dtype, another rank or shape, or (eagerly) NaN/Inf values or values
      outside [-1, 1] (beyond the tolerance).
  """
  if as_numpy or not tf.is_tensor(images):
    images = np.asarray(images)
  dims = [None if d is None else int(d) for d in images.shape] if (
      isinstance(images, np.ndarray) or images.shape.rank is not None) else None
  if image_shape is not None:
    want = f"[batch, {', '.join(str(d) for d in image_shape)}]"
  elif channels is not None:
    want = f"[batch, height, width, {' or '.join(str(c) for c in channels)}]"
  else:
    want = "[batch, height, width, channels]"
  shape_ok = (dims is not None and len(dims) == 4 and
              (dims[0] is None or dims[0] >= min_batch) and
              (channels is None or dims[-1] in channels) and
              (image_shape is None or tuple(dims[1:]) == tuple(image_shape)))
  if not shape_ok:
    raise ValueError(f"{name} must have shape {want}"
                     f"{f' (batch >= {min_batch})' if min_batch else ''} in [-1, 1]; got "
                     f"{dims if dims is not None else 'unknown rank'}")
  try:
    floating = tf.as_dtype(images.dtype).is_floating
  except TypeError:
    floating = False
  if not floating:
    raise ValueError(f"{name} must be floats in [-1, 1] of shape {want}; got dtype "
                     f"{getattr(images.dtype, 'name', images.dtype)}")
  if isinstance(images, np.ndarray):
    x = images.astype(np.float32, copy=False)
    _check_image_values(x, name, range_tolerance)
    if range_tolerance:
      x = np.clip(x, -1.0, 1.0)
    return x if as_numpy else tf.convert_to_tensor(x)
  x = tf.cast(images, tf.float32)
  if tf.executing_eagerly():
    _check_image_values(x.numpy(), name, range_tolerance)
  else:
    finite = tf.reduce_all(tf.math.is_finite(x))
    in_range = tf.logical_and(tf.reduce_all(x >= -1.0 - range_tolerance),
                              tf.reduce_all(x <= 1.0 + range_tolerance))
    asserts = [
        tf.debugging.Assert(finite, [f"{name} must be finite; got NaN or Inf values"]),
        tf.debugging.Assert(in_range, [f"{name} must have values in [-1, 1]; got min and max",
                                       tf.reduce_min(x), tf.reduce_max(x)]),
    ]
    with tf.control_dependencies(asserts):
      x = tf.identity(x)
  return tf.clip_by_value(x, -1.0, 1.0) if range_tolerance else x


def _check_image_values(x: np.ndarray, name: str, range_tolerance: float) -> None:
  finite = np.isfinite(x)
  if not np.all(finite):
    raise ValueError(f"{name} must be finite; got {int(np.sum(~finite))} NaN/inf values")
  if x.size:
    low, high = float(x.min()), float(x.max())
    if low < -1.0 - range_tolerance or high > 1.0 + range_tolerance:
      raise ValueError(f"{name} must have values in [-1, 1]; got min {low:.6g} and max "
                       f"{high:.6g} {_IMAGE_RANGE_HINT}")
