"""Small networks for CPU-scale runs (docs/paper_settings.md section 9): tiny EBM, generator, CNN.

- `ebm_small`: EBMSNGAN-style EBM, Stem(C->32, down) -> Block(32->64, down) -> Block(64->64) ->
  ReLU -> GAP -> Dense(1, no bias); no normalisation; about 0.14M parameters for C = 1.
- `gen_small`: SNGAN-style generator, Dense(z -> (H/4)(W/4) 64) -> 2 up-sampling GenBlocks
  (bilinear, synchronized BN) -> BN -> ReLU -> conv3x3(->C) -> tanh.
- `small_cnn`: 2-conv classifier whose penultimate Dense layer is named "features" (used for the
  classifier-feature Frechet distance).

All take any image_shape (H, W, C) with H and W divisible by 4 (e.g. 8x8x1 digits, 28x28x1).
"""
from typing import Optional, Sequence

import keras

from ebm_tf.models import ebm_sngan
from ebm_tf.models import generators
from ebm_tf.models import shapes


def ebm_small(image_shape: Sequence[int] = (8, 8, 1), width: int = 32,
              dtype: Optional[str] = None) -> keras.Model:
  """Tiny EBMSNGAN: Stem(C->width, down) -> Block(->2 width, down) -> Block(2 width) -> head.

  Args:
    image_shape: (H, W, C), H and W divisible by 4.
    width: channels of the stem; the two blocks have 2 * width.
    dtype: Keras dtype policy for all layers but the float32 head (None: global policy).

  Returns:
    keras.Model mapping images [B, H, W, C] float32 in [-1, 1] to energies [B, 1] float32.

  Raises:
    ValueError: if H or W is not divisible by 4.
  """
  shape = shapes.check_image_shape("ebm_small", image_shape, multiple_of=4)
  inputs = keras.Input(shape=shape, name="images")
  x = ebm_sngan.ebm_block_stem(inputs, width, downsample=True, name="block1", dtype=dtype)
  x = ebm_sngan.ebm_block(x, 2 * width, downsample=True, name="block2", dtype=dtype)
  x = ebm_sngan.ebm_block(x, 2 * width, downsample=False, name="block3", dtype=dtype)
  return keras.Model(inputs, ebm_sngan.energy_head(x, dtype=dtype), name="ebm_small")


def gen_small(image_shape: Sequence[int] = (8, 8, 1), latent_dim: int = 16, width: int = 64,
              dtype: Optional[str] = None) -> keras.Model:
  """Tiny GenSNGAN: Dense(z -> H/4 x W/4 x width) -> 2 x GenBlock(width, up) -> BN-ReLU-conv-tanh.

  Args:
    image_shape: (H, W, C), H and W divisible by 4.
    latent_dim: size of z.
    width: channels of every block.
    dtype: Keras dtype policy (None: global policy); the tanh output is float32.

  Returns:
    keras.Model mapping z [B, latent_dim] float32 to images [B, H, W, C] float32 in [-1, 1].
    BN uses batch statistics only when called with training=True.

  Raises:
    ValueError: if H or W is not divisible by 4.
  """
  h, w, c = shapes.check_image_shape("gen_small", image_shape, multiple_of=4)
  return generators.sngan_generator("gen_small", (h, w, c), latent_dim=latent_dim,
                                    bottom_height=h // 4, bottom_width=w // 4,
                                    block_channels=[width] * 3, dtype=dtype)


def small_cnn(image_shape: Sequence[int] = (8, 8, 1), num_classes: int = 10,
              filters: Sequence[int] = (32, 64), feature_dim: int = 128,
              dtype: Optional[str] = None) -> keras.Model:
  """Small classifier: 2 x (conv3x3 + ReLU + 2x2 max pool) -> Flatten -> Dense(features) -> logits.

  Args:
    image_shape: (H, W, C), H and W divisible by 4.
    num_classes: number of logits.
    filters: channels of the two convolutions.
    feature_dim: width of the penultimate ReLU Dense layer, named "features".
    dtype: Keras dtype policy for all layers but the float32 logits layer (None: global policy).

  Returns:
    keras.Model mapping images [B, H, W, C] float32 in [-1, 1] to logits [B, num_classes] float32.

  Raises:
    ValueError: if H or W is not divisible by 4, or num_classes < 1.
  """
  shape = shapes.check_image_shape("small_cnn", image_shape, multiple_of=4)
  if num_classes < 1:
    raise ValueError(f"num_classes must be >= 1; got {num_classes}")
  inputs = keras.Input(shape=shape, name="images")
  x = inputs
  for i, f in enumerate(filters, start=1):
    x = keras.layers.Conv2D(f, 3, padding="same", activation="relu", dtype=dtype,
                            name=f"conv{i}")(x)
    x = keras.layers.MaxPooling2D(2, dtype=dtype, name=f"pool{i}")(x)
  x = keras.layers.Flatten(dtype=dtype, name="flatten")(x)
  x = keras.layers.Dense(feature_dim, activation="relu", dtype=dtype, name="features")(x)
  logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
  return keras.Model(inputs, logits, name="small_cnn")
