"""Wide ResNet classifier (WRN-28-10 for CIFAR-10; docs/paper_settings.md section 7.1).

Port of `WideResNetTF2` in point0bar1/ebm-life-cycle `nets.py` (from meliketoy/wide-resnet.pytorch):
conv3x3(C->16), three stages of (depth - 4) / 6 pre-activation blocks with widths
[16 k, 32 k, 64 k] and strides [1, 2, 2], then BN -> ReLU -> global average pool -> Dense.
Block: BN -> ReLU -> conv3x3 -> [dropout] -> BN -> ReLU -> conv3x3(stride); a stride-2 convolution
is an explicit 1-pixel zero pad then a VALID convolution (PyTorch padding, not TF's asymmetric
"SAME"); the shortcut is a 1x1 convolution (same stride) of the block input when the shape
changes, else identity.

Batch-norm momentum: Keras' `momentum` is the weight of the *old* moving statistic, PyTorch's is
the weight of the new batch. The reference's residual blocks passed `momentum=0.1` to Keras (the
PyTorch number), which makes the moving statistics nearly the last batch's; here every BN uses
`bn_momentum` (default 0.9, the Keras equivalent of PyTorch's 0.1) and epsilon 1e-5.

The global-average-pool layer is named "features" (the penultimate features, [B, 64 k]).
"""
from typing import Optional, Sequence

import keras

from ebm_tf.models import shapes


def _wrn_block(x, out_channels: int, *, stride: int, name: str, bn_momentum: float,
               bn_epsilon: float, dropout_rate: float, dtype=None):
  """Pre-activation wide residual block; returns [B, H / stride, W / stride, out_channels]."""
  learnable_sc = x.shape[-1] != out_channels or stride != 1

  def bn(n):
    return keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon,
                                           synchronized=True, dtype=dtype, name=f"{name}_{n}")

  h = bn("bn1")(x)
  h = keras.layers.ReLU(dtype=dtype, name=f"{name}_relu1")(h)
  h = keras.layers.Conv2D(out_channels, 3, padding="same", dtype=dtype, name=f"{name}_conv1")(h)
  if dropout_rate > 0:
    h = keras.layers.Dropout(dropout_rate, dtype=dtype, name=f"{name}_dropout")(h)
  h = bn("bn2")(h)
  h = keras.layers.ReLU(dtype=dtype, name=f"{name}_relu2")(h)
  if stride == 1:
    h = keras.layers.Conv2D(out_channels, 3, padding="same", dtype=dtype,
                            name=f"{name}_conv2")(h)
  else:
    h = keras.layers.ZeroPadding2D(1, dtype=dtype, name=f"{name}_pad")(h)
    h = keras.layers.Conv2D(out_channels, 3, strides=stride, padding="valid", dtype=dtype,
                            name=f"{name}_conv2")(h)
  y = x
  if learnable_sc:
    y = keras.layers.Conv2D(out_channels, 1, strides=stride, padding="valid", dtype=dtype,
                            name=f"{name}_sc")(x)
  return keras.layers.Add(dtype=dtype, name=f"{name}_add")([h, y])


def wide_resnet(image_shape: Sequence[int] = (32, 32, 3),
                num_classes: int = 10,
                depth: int = 28,
                widen_factor: int = 10,
                bn_momentum: float = 0.9,
                bn_epsilon: float = 1e-5,
                dropout_rate: float = 0.0,
                dtype: Optional[str] = None,
                name: Optional[str] = None) -> keras.Model:
  """Builds a WRN-depth-widen_factor classifier.

  Args:
    image_shape: (H, W, C) with H and W divisible by 4 (CIFAR-10: (32, 32, 3)).
    num_classes: number of logits.
    depth: 6 n + 4 (n blocks per stage); 28 in the reference.
    widen_factor: k, stage widths [16, 16 k, 32 k, 64 k]; 10 in the reference.
    bn_momentum: Keras momentum of every batch norm (weight of the old moving statistic).
    bn_epsilon: batch-norm epsilon (1e-5, PyTorch's default, as in the reference).
    dropout_rate: dropout between the two convolutions of a block (0 in the reference).
    dtype: Keras dtype policy for all layers but the float32 logits layer (None: global policy).
    name: model name (default 'wrn{depth}_{widen_factor}').

  Returns:
    keras.Model mapping images [B, H, W, C] float32 in [-1, 1] to logits [B, num_classes] float32.

  Raises:
    ValueError: for a depth that is not 6 n + 4, widen_factor < 1 or a bad image_shape.
  """
  name = name or f"wrn{depth}_{widen_factor}"
  shape = shapes.check_image_shape(name, image_shape, multiple_of=4)
  if depth < 10 or (depth - 4) % 6:
    raise ValueError(f"wide_resnet depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...); "
                     f"got {depth}")
  if widen_factor < 1:
    raise ValueError(f"wide_resnet widen_factor must be >= 1; got {widen_factor}")
  if num_classes < 1:
    raise ValueError(f"num_classes must be >= 1; got {num_classes}")
  blocks_per_stage = (depth - 4) // 6
  widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]

  inputs = keras.Input(shape=shape, name="images")
  x = keras.layers.Conv2D(16, 3, padding="same", dtype=dtype, name="conv1")(inputs)
  for stage, (width, first_stride) in enumerate(zip(widths, [1, 2, 2]), start=1):
    for b in range(blocks_per_stage):
      x = _wrn_block(x, width, stride=first_stride if b == 0 else 1,
                     name=f"stage{stage}_block{b + 1}", bn_momentum=bn_momentum,
                     bn_epsilon=bn_epsilon, dropout_rate=dropout_rate, dtype=dtype)
  x = keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, synchronized=True,
                                      dtype=dtype, name="out_bn")(x)
  x = keras.layers.ReLU(dtype=dtype, name="out_relu")(x)
  x = keras.layers.GlobalAveragePooling2D(dtype=dtype, name="features")(x)
  logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
  return keras.Model(inputs, logits, name=name)
