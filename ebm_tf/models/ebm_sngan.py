"""EBMs from the SNGAN discriminator with spectral norm removed (docs/paper_settings.md section 5).

Port of `EBMSNGAN32/64/128` in point0bar1/ebm-life-cycle `nets.py` (itself a TF2 port of
Mimicry's SNGAN discriminators): residual blocks of 3x3 convolutions with pre-activation ReLU,
2x2 average pooling for down-sampling, 1x1 convolution shortcuts, no normalisation. Keras default
initialisers (glorot_uniform kernels, zero biases), "SAME" padding.

The models are Keras functional models: NHWC float32 images in [-1, 1] in, energies `[B, 1]`
float32 out (low energy = data). The head Dense runs in float32, so the energy stays float32 under
a 'mixed_bfloat16' policy.
"""
from typing import Optional, Sequence

import keras

from ebm_tf.models import shapes


def ebm_block_stem(x, out_channels: int, *, downsample: bool, name: str, dtype=None):
  """First EBM block (`EBMBlockStem`): no activation before the first convolution.

  h = conv3x3 -> ReLU -> conv3x3 -> [AvgPool2]; shortcut = [AvgPool2] -> conv1x1 when the channel
  count changes or the block down-samples, else identity; returns h + shortcut.

  Args:
    x: symbolic tensor [B, H, W, C_in].
    out_channels: output channels (also the hidden width).
    downsample: halve H and W with 2x2 average pooling.
    name: prefix for the layer names.
    dtype: Keras dtype policy for the layers (None: the global policy).

  Returns:
    Symbolic tensor [B, H', W', out_channels] with H' = H // 2 if downsample else H.
  """
  learnable_sc = x.shape[-1] != out_channels or downsample
  h = keras.layers.Conv2D(out_channels, 3, padding="same", dtype=dtype, name=f"{name}_conv1")(x)
  h = keras.layers.ReLU(dtype=dtype, name=f"{name}_relu1")(h)
  h = keras.layers.Conv2D(out_channels, 3, padding="same", dtype=dtype, name=f"{name}_conv2")(h)
  y = x
  if downsample:
    h = keras.layers.AveragePooling2D(2, dtype=dtype, name=f"{name}_pool")(h)
    y = keras.layers.AveragePooling2D(2, dtype=dtype, name=f"{name}_sc_pool")(y)
  if learnable_sc:
    y = keras.layers.Conv2D(out_channels, 1, padding="valid", dtype=dtype, name=f"{name}_sc")(y)
  return keras.layers.Add(dtype=dtype, name=f"{name}_add")([h, y])


def ebm_block(x, out_channels: int, *, downsample: bool, name: str, dtype=None):
  """Pre-activation EBM residual block (`EBMBlock`).

  h = ReLU -> conv3x3 -> ReLU -> conv3x3 -> [AvgPool2]; shortcut = conv1x1 -> [AvgPool2] when the
  channel count changes or the block down-samples, else identity; returns h + shortcut.

  Args:
    x: symbolic tensor [B, H, W, C_in].
    out_channels: output channels (also the hidden width).
    downsample: halve H and W with 2x2 average pooling.
    name: prefix for the layer names.
    dtype: Keras dtype policy for the layers (None: the global policy).

  Returns:
    Symbolic tensor [B, H', W', out_channels] with H' = H // 2 if downsample else H.
  """
  learnable_sc = x.shape[-1] != out_channels or downsample
  h = keras.layers.ReLU(dtype=dtype, name=f"{name}_relu1")(x)
  h = keras.layers.Conv2D(out_channels, 3, padding="same", dtype=dtype, name=f"{name}_conv1")(h)
  h = keras.layers.ReLU(dtype=dtype, name=f"{name}_relu2")(h)
  h = keras.layers.Conv2D(out_channels, 3, padding="same", dtype=dtype, name=f"{name}_conv2")(h)
  y = x
  if learnable_sc:
    y = keras.layers.Conv2D(out_channels, 1, padding="valid", dtype=dtype, name=f"{name}_sc")(y)
  if downsample:
    h = keras.layers.AveragePooling2D(2, dtype=dtype, name=f"{name}_pool")(h)
    y = keras.layers.AveragePooling2D(2, dtype=dtype, name=f"{name}_sc_pool")(y)
  return keras.layers.Add(dtype=dtype, name=f"{name}_add")([h, y])


def energy_head(x, *, dtype=None, name: str = "head"):
  """ReLU -> global average pool -> Dense(1, no bias) in float32.

  Args:
    x: symbolic tensor [B, H, W, C].
    dtype: dtype policy for the ReLU and pooling; the Dense always runs in float32.
    name: prefix for the layer names.

  Returns:
    Symbolic energies [B, 1] float32.
  """
  x = keras.layers.ReLU(dtype=dtype, name=f"{name}_relu")(x)
  x = keras.layers.GlobalAveragePooling2D(dtype=dtype, name=f"{name}_pool")(x)
  return keras.layers.Dense(1, use_bias=False, dtype="float32", name=f"{name}_dense")(x)


def _ebm_sngan(model_name: str, image_shape, size: int, stages, dtype) -> keras.Model:
  """Builds Stem + blocks + head; `stages` is [(out_channels, downsample), ...] after the stem."""
  shape = shapes.check_image_shape(model_name, image_shape, size=size)
  inputs = keras.Input(shape=shape, name="images")
  (stem_channels, stem_down), *blocks = stages
  x = ebm_block_stem(inputs, stem_channels, downsample=stem_down, name="block1", dtype=dtype)
  for i, (channels, down) in enumerate(blocks, start=2):
    x = ebm_block(x, channels, downsample=down, name=f"block{i}", dtype=dtype)
  return keras.Model(inputs, energy_head(x, dtype=dtype), name=model_name)


def ebm_sngan32(image_shape: Sequence[int] = (32, 32, 3), ngf: int = 256,
                dtype: Optional[str] = None) -> keras.Model:
  """EBMSNGAN32: Stem(C->ngf, down) -> Block(down) -> 2 x Block -> head; 32->16->8.

  Args:
    image_shape: (32, 32, C); the reference uses C = 3 (4,204,800 parameters at ngf = 256).
    ngf: channel width of every block.
    dtype: Keras dtype policy for all layers but the float32 head (None: global policy).

  Returns:
    keras.Model mapping images [B, 32, 32, C] float32 in [-1, 1] to energies [B, 1] float32.

  Raises:
    ValueError: if image_shape is not (32, 32, C).
  """
  stages = [(ngf, True), (ngf, True), (ngf, False), (ngf, False)]
  return _ebm_sngan("ebm_sngan32", image_shape, 32, stages, dtype)


def ebm_sngan64(image_shape: Sequence[int] = (64, 64, 3), ngf: int = 1024,
                dtype: Optional[str] = None) -> keras.Model:
  """EBMSNGAN64: Stem(C->ngf/16) then Blocks doubling to ngf, all down-sampling; 64->2.

  Args:
    image_shape: (64, 64, C).
    ngf: width of the last block (1024 in the reference, about 19.5M parameters).
    dtype: Keras dtype policy for all layers but the float32 head (None: global policy).

  Returns:
    keras.Model mapping images [B, 64, 64, C] float32 in [-1, 1] to energies [B, 1] float32.

  Raises:
    ValueError: if image_shape is not (64, 64, C).
  """
  stages = [(ngf >> 4, True), (ngf >> 3, True), (ngf >> 2, True), (ngf >> 1, True), (ngf, True)]
  return _ebm_sngan("ebm_sngan64", image_shape, 64, stages, dtype)


def ebm_sngan128(image_shape: Sequence[int] = (128, 128, 3), ngf: int = 1024,
                 dtype: Optional[str] = None) -> keras.Model:
  """EBMSNGAN128: EBMSNGAN64's stages plus Block(ngf->ngf) without down-sampling; 128->4.

  Args:
    image_shape: (128, 128, C).
    ngf: width of the last two blocks (1024 in the reference, about 38.4M parameters).
    dtype: Keras dtype policy for all layers but the float32 head (None: global policy).

  Returns:
    keras.Model mapping images [B, 128, 128, C] float32 in [-1, 1] to energies [B, 1] float32.

  Raises:
    ValueError: if image_shape is not (128, 128, C).
  """
  stages = [(ngf >> 4, True), (ngf >> 3, True), (ngf >> 2, True), (ngf >> 1, True), (ngf, True),
            (ngf, False)]
  return _ebm_sngan("ebm_sngan128", image_shape, 128, stages, dtype)
