"""SNGAN generators used to initialise MCMC chains (docs/paper_settings.md section 5).

Port of `GenSNGAN32/64/128` in point0bar1/ebm-life-cycle `nets.py` (from Mimicry): a Dense layer
to a `bottom x bottom x ngf` map, residual up-sampling blocks
(BN-ReLU-bilinear Up x2-conv3x3-BN-ReLU-conv3x3, shortcut Up -> conv1x1), then BN -> ReLU ->
conv3x3 -> tanh. Batch norm is `keras.layers.BatchNormalization(synchronized=True)` (the Keras 3
form of `SyncBatchNormalization`, Keras default momentum 0.99 and epsilon 1e-3), so batch statistics
are all-reduced across replicas under `tf.distribute` strategies.

Training mode: the reference generator's `call` defaulted to `training=True` (batch statistics).
These are functional models and follow Keras semantics: `model(z)` uses the moving statistics;
pass `training=True` for batch statistics. A generator with `trainable = False` always uses the
moving statistics.

The latent dimension of a generator is the size of its input: `generator_latent_dim(model)`.
"""
from typing import Optional, Sequence

import keras
import tensorflow as tf

from ebm_tf.models import shapes


def _batch_norm(name: str, dtype=None):
  return keras.layers.BatchNormalization(synchronized=True, dtype=dtype, name=name)


def gen_block(x, out_channels: int, *, upsample: bool, name: str, dtype=None):
  """SNGAN generator residual block (`GenBlock`).

  h = BN -> ReLU -> [bilinear Up x2] -> conv3x3 -> BN -> ReLU -> conv3x3;
  shortcut = [bilinear Up x2] -> conv1x1 when the channel count changes or the block up-samples,
  else identity; returns h + shortcut.

  Args:
    x: symbolic tensor [B, H, W, C_in].
    out_channels: output channels (also the hidden width).
    upsample: double H and W with bilinear interpolation.
    name: prefix for the layer names.
    dtype: Keras dtype policy for the layers (None: the global policy).

  Returns:
    Symbolic tensor [B, H', W', out_channels], H' = 2 H if upsample else H.
  """
  learnable_sc = x.shape[-1] != out_channels or upsample
  h = _batch_norm(f"{name}_bn1", dtype)(x)
  h = keras.layers.ReLU(dtype=dtype, name=f"{name}_relu1")(h)
  y = x
  if upsample:
    h = keras.layers.UpSampling2D(2, interpolation="bilinear", dtype=dtype, name=f"{name}_up")(h)
    y = keras.layers.UpSampling2D(2, interpolation="bilinear", dtype=dtype,
                                  name=f"{name}_sc_up")(y)
  h = keras.layers.Conv2D(out_channels, 3, padding="same", dtype=dtype, name=f"{name}_conv1")(h)
  h = _batch_norm(f"{name}_bn2", dtype)(h)
  h = keras.layers.ReLU(dtype=dtype, name=f"{name}_relu2")(h)
  h = keras.layers.Conv2D(out_channels, 3, padding="same", dtype=dtype, name=f"{name}_conv2")(h)
  if learnable_sc:
    y = keras.layers.Conv2D(out_channels, 1, padding="valid", dtype=dtype, name=f"{name}_sc")(y)
  return keras.layers.Add(dtype=dtype, name=f"{name}_add")([h, y])


def sngan_generator(model_name: str, image_shape, *, latent_dim: int, bottom_height: int,
                    bottom_width: int, block_channels: Sequence[int], dtype=None) -> keras.Model:
  """Generic SNGAN generator: Dense -> reshape -> up-sampling GenBlocks -> BN-ReLU-conv3x3-tanh.

  The Dense output is reshaped channels-first, [ngf, bottom_height, bottom_width], and transposed
  to NHWC, as in the reference, so that reference weights keep their meaning.

  Args:
    model_name: name of the Keras model.
    image_shape: (H, W, C) output image shape; H = bottom_height * 2**len(block_channels), same W.
    latent_dim: size of z.
    bottom_height, bottom_width: spatial size of the first feature map.
    block_channels: [ngf, c_1, ..., c_n]: the Dense produces ngf channels and up-sampling
      block i maps c_{i-1} -> c_i (c_0 = ngf).
    dtype: Keras dtype policy for all layers but the float32 tanh (None: global policy).

  Returns:
    keras.Model mapping z [B, latent_dim] float32 to images [B, H, W, C] float32 in [-1, 1].
  """
  h_out, w_out, c_out = shapes.as_shape(model_name, image_shape)
  ngf, *outs = block_channels
  z = keras.Input(shape=(latent_dim,), name="latents")
  h = keras.layers.Dense(bottom_height * bottom_width * ngf, dtype=dtype, name="dense")(z)
  h = keras.layers.Reshape((ngf, bottom_height, bottom_width), dtype=dtype, name="reshape")(h)
  h = keras.layers.Permute((2, 3, 1), dtype=dtype, name="to_nhwc")(h)
  for i, channels in enumerate(outs, start=2):
    h = gen_block(h, channels, upsample=True, name=f"block{i}", dtype=dtype)
  h = _batch_norm("out_bn", dtype)(h)
  h = keras.layers.ReLU(dtype=dtype, name="out_relu")(h)
  h = keras.layers.Conv2D(c_out, 3, padding="same", dtype=dtype, name="out_conv")(h)
  images = keras.layers.Activation("tanh", dtype="float32", name="tanh")(h)
  if tuple(images.shape[1:]) != (h_out, w_out, c_out):
    raise ValueError(f"{model_name} produces images of shape {tuple(images.shape[1:])}; "
                     f"asked for image_shape {(h_out, w_out, c_out)}")
  return keras.Model(z, images, name=model_name)


def gen_sngan32(image_shape: Sequence[int] = (32, 32, 3), latent_dim: int = 128, ngf: int = 256,
                dtype: Optional[str] = None) -> keras.Model:
  """GenSNGAN32: Dense(4*4*ngf) -> 3 x GenBlock(ngf -> ngf, up) -> BN-ReLU-conv3x3-tanh; 4 -> 32.

  Args:
    image_shape: (32, 32, C).
    latent_dim: size of z (128 in the reference).
    ngf: channel width (256 in the reference).
    dtype: Keras dtype policy (None: global policy); the tanh output is float32.

  Returns:
    keras.Model mapping z [B, latent_dim] to images [B, 32, 32, C] float32 in [-1, 1].

  Raises:
    ValueError: if image_shape is not (32, 32, C).
  """
  shape = shapes.check_image_shape("gen_sngan32", image_shape, size=32)
  return sngan_generator("gen_sngan32", shape, latent_dim=latent_dim, bottom_height=4,
                         bottom_width=4, block_channels=[ngf] * 4, dtype=dtype)


def gen_sngan64(image_shape: Sequence[int] = (64, 64, 3), latent_dim: int = 128, ngf: int = 1024,
                dtype: Optional[str] = None) -> keras.Model:
  """GenSNGAN64: Dense(4*4*ngf) -> 4 up-sampling GenBlocks ngf -> ngf/16 (halving); 4 -> 64.

  Args:
    image_shape: (64, 64, C).
    latent_dim: size of z (128 in the reference).
    ngf: channel width of the first feature map (1024 in the reference).
    dtype: Keras dtype policy (None: global policy); the tanh output is float32.

  Returns:
    keras.Model mapping z [B, latent_dim] to images [B, 64, 64, C] float32 in [-1, 1].

  Raises:
    ValueError: if image_shape is not (64, 64, C).
  """
  shape = shapes.check_image_shape("gen_sngan64", image_shape, size=64)
  return sngan_generator("gen_sngan64", shape, latent_dim=latent_dim, bottom_height=4,
                         bottom_width=4, block_channels=[ngf >> i for i in range(5)], dtype=dtype)


def gen_sngan128(image_shape: Sequence[int] = (128, 128, 3), latent_dim: int = 128,
                 ngf: int = 1024, dtype: Optional[str] = None) -> keras.Model:
  """GenSNGAN128: Dense(4*4*ngf) -> GenBlock(ngf -> ngf) then 4 halving blocks; 4 -> 128.

  Args:
    image_shape: (128, 128, C).
    latent_dim: size of z (128 in the reference).
    ngf: channel width of the first feature map (1024 in the reference).
    dtype: Keras dtype policy (None: global policy); the tanh output is float32.

  Returns:
    keras.Model mapping z [B, latent_dim] to images [B, 128, 128, C] float32 in [-1, 1].

  Raises:
    ValueError: if image_shape is not (128, 128, C).
  """
  shape = shapes.check_image_shape("gen_sngan128", image_shape, size=128)
  channels = [ngf] + [ngf >> i for i in range(5)]
  return sngan_generator("gen_sngan128", shape, latent_dim=latent_dim, bottom_height=4,
                         bottom_width=4, block_channels=channels, dtype=dtype)


def generator_latent_dim(model: keras.Model) -> int:
  """Returns the latent size of a generator built here: the last axis of its input."""
  return int(model.inputs[0].shape[-1])


def sample_latents(seed, batch: int, latent_dim: int) -> tf.Tensor:
  """Draws generator latents z ~ N(0, I) with a stateless seed.

  Args:
    seed: int32/int64 tensor (or sequence) of shape [2].
    batch: number of latents (Python int or scalar int tensor).
    latent_dim: size of each latent.

  Returns:
    float32 tensor [batch, latent_dim]; the same seed gives the same latents.

  Raises:
    ValueError: if the seed does not have shape [2].
  """
  seed = tf.convert_to_tensor(seed)
  if seed.shape.rank is not None and seed.shape.as_list() != [2]:
    raise ValueError(f"seed must have shape [2]; got {seed.shape.as_list()}")
  return tf.random.stateless_normal([batch, latent_dim], seed=seed, dtype=tf.float32)
