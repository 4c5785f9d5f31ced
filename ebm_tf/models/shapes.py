"""Validation of the input shapes the model builders accept.

Every builder checks its `image_shape` here so that a shape that does not fit an architecture
fails at build time with a `ValueError` naming the model, the shape and the expectation.
"""
from typing import Optional, Sequence, Tuple


def as_shape(model_name: str, image_shape: Sequence[int], rank: int = 3) -> Tuple[int, ...]:
  """Returns `image_shape` as a tuple of positive Python ints.

  Args:
    model_name: name used in the error message, e.g. 'ebm_sngan32'.
    image_shape: per-example shape without the batch axis, e.g. (32, 32, 3) (HWC) or (2,).
    rank: the required number of axes (3 for NHWC images, 1 for vectors).

  Raises:
    ValueError: if `image_shape` is not a sequence of `rank` positive integers.
  """
  expected = {3: "(height, width, channels)", 1: "(dim,)"}.get(rank, f"of rank {rank}")
  try:
    shape = tuple(image_shape)
    ok = len(shape) == rank and all(
        not isinstance(d, bool) and int(d) == d and int(d) > 0 for d in shape)
  except (TypeError, ValueError):
    ok = False
  if not ok:
    raise ValueError(
        f"{model_name} needs image_shape {expected} of positive ints; got {image_shape!r}")
  return tuple(int(d) for d in shape)


def check_image_shape(model_name: str,
                      image_shape: Sequence[int],
                      *,
                      size: Optional[int] = None,
                      multiple_of: Optional[int] = None,
                      channels: Optional[int] = None) -> Tuple[int, int, int]:
  """Checks an HWC image shape against an architecture's requirements.

  Args:
    model_name: name used in the error message.
    image_shape: (height, width, channels).
    size: if given, height and width must both equal `size`.
    multiple_of: if given, height and width must be multiples of it (e.g. 4 for two 2x2 poolings).
    channels: if given, the channel count must equal it.

  Returns:
    The shape as a tuple of three Python ints.

  Raises:
    ValueError: naming the model, the expected shape and the shape given.
  """
  h, w, c = as_shape(model_name, image_shape, rank=3)
  if size is not None and (h, w) != (size, size):
    raise ValueError(f"{model_name} needs image_shape ({size}, {size}, C); got {(h, w, c)}")
  if multiple_of is not None and (h % multiple_of or w % multiple_of):
    raise ValueError(f"{model_name} needs image height and width divisible by {multiple_of}; "
                     f"got image_shape {(h, w, c)}")
  if channels is not None and c != channels:
    raise ValueError(f"{model_name} needs {channels} channels; got image_shape {(h, w, c)}")
  return h, w, c
