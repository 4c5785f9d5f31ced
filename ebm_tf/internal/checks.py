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
