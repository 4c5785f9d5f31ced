"""MLP energy for low-dimensional (e.g. 2-D toy) data.

Smooth activations (swish by default; also 'elu', 'softplus', 'gelu', 'tanh') keep the input
gradient continuous, which Langevin dynamics needs: with ReLU the energy is piecewise linear and
its gradient jumps between regions.
"""
from typing import Optional, Sequence

import keras

from ebm_tf.models import shapes

SMOOTH_ACTIVATIONS = ("swish", "elu", "softplus", "gelu", "tanh")


def ebm_mlp(input_shape: Sequence[int] = (2,), hidden_units: Sequence[int] = (128, 128, 128),
            activation: str = "swish", dtype: Optional[str] = None,
            width: Optional[int] = None) -> keras.Model:
  """Builds x -> [Dense(units, activation)] * len(hidden_units) -> Dense(1, no bias).

  Args:
    input_shape: (D,), the data dimension.
    hidden_units: widths of the hidden layers.
    width: if set (a positive int, e.g. from `--ebm_width`), every hidden layer gets this width
      (the number of layers stays len(hidden_units)).
    activation: one of SMOOTH_ACTIVATIONS.
    dtype: Keras dtype policy for the hidden layers; the output layer is float32.

  Returns:
    keras.Model mapping points [B, D] float32 to energies [B, 1] float32.

  Raises:
    ValueError: for a shape that is not (D,), no hidden layers or a non-smooth activation.
  """
  shape = shapes.as_shape("ebm_mlp", input_shape, rank=1)
  if activation not in SMOOTH_ACTIVATIONS:
    raise ValueError(f"ebm_mlp activation must be one of {SMOOTH_ACTIVATIONS} (smooth, for "
                     f"Langevin gradients); got {activation!r}")
  if width is not None:
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
      raise ValueError(f"ebm_mlp width must be a positive int; got {width!r}")
    hidden_units = (width,) * len(hidden_units)
  if not hidden_units or any(int(u) < 1 for u in hidden_units):
    raise ValueError(f"ebm_mlp needs at least one hidden layer of positive width; "
                     f"got hidden_units {hidden_units!r}")
  inputs = keras.Input(shape=shape, name="points")
  x = inputs
  for i, units in enumerate(hidden_units, start=1):
    x = keras.layers.Dense(int(units), activation=activation, dtype=dtype, name=f"dense{i}")(x)
  energy = keras.layers.Dense(1, use_bias=False, dtype="float32", name="energy")(x)
  return keras.Model(inputs, energy, name="ebm_mlp")
