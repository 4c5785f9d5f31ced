"""BigGAN-deep discriminator with spectral norm as an EBM (docs/paper_settings.md section 5).

Port of `EBMBigGAN` in point0bar1/ebm-life-cycle `nets.py` (from HF pytorch-pretrained-BigGAN):
`rgb_conv` conv3x3(C -> ch), BigGAN-deep bottleneck blocks, one `SelfAttention` layer, then
ReLU -> global average pool -> linear(1, no bias). Every convolution and linear layer is wrapped
in `keras.layers.SpectralNormalization` (the reference used `tfa.layers.SpectralNormalization`,
with the same semantics).

Spectral norm semantics (Keras 3, same as tensorflow-addons): only a call with `training=True`
runs the power iteration, and it *assigns* the normalised kernel `W / sigma(W)` back to the kernel
variable (and updates the `vector_u` estimate); a call with `training=False` uses the kernel as it
is. This works inside `tf.function`. Note that the reference always called its EBM with
`training=False`, so there the kernels were never normalised; a caller that wants spectral
normalisation must call the model with `training=True` (the network has no other
training-dependent layer).

Block (down, in, out) with mid = in / 4:
  h = ReLU -> sn1x1(in->mid) -> ReLU -> sn3x3 -> ReLU -> sn3x3 -> ReLU -> [AvgPool2] -> sn1x1(->out)
  shortcut = [AvgPool2](x), then concat(x, sn1x1(x -> out - in)) if out > in.
"""
from typing import Optional, Sequence

import keras
from keras import ops

from ebm_tf.models import shapes

# (downsample, in multiplier, out multiplier) per block and the index before which the
# self-attention layer goes, per reference image size (nets.py `EBMBigGAN`).
LAYOUTS = {
    224: ([(True, 1, 2), (False, 2, 2), (True, 2, 4), (False, 4, 4), (True, 4, 8), (False, 8, 8),
           (True, 8, 8), (False, 8, 8), (True, 8, 16), (False, 16, 16), (True, 16, 16),
           (False, 16, 16)], 4),
    128: ([(True, 1, 2), (False, 2, 2), (True, 2, 4), (False, 4, 4), (True, 4, 8), (False, 8, 8),
           (True, 8, 16), (False, 16, 16), (True, 16, 16), (False, 16, 16)], 2),
    64: ([(False, 1, 1), (True, 1, 2), (False, 2, 2), (True, 2, 4), (False, 4, 4), (True, 4, 8),
          (False, 8, 8), (True, 8, 16), (False, 16, 16)], 1),
}
LAYOUTS[256] = LAYOUTS[224]


def sn_conv(filters: int, kernel_size: int, *, name: str, use_bias: bool = True,
            power_iterations: int = 1, dtype=None) -> keras.layers.Layer:
  """A "SAME" Conv2D (Keras default init) wrapped in SpectralNormalization."""
  conv = keras.layers.Conv2D(filters, kernel_size, padding="same", use_bias=use_bias, dtype=dtype,
                             name=f"{name}_conv")
  return keras.layers.SpectralNormalization(conv, power_iterations=power_iterations, dtype=dtype,
                                            name=name)


@keras.saving.register_keras_serializable(package="ebm_tf")
class SelfAttention(keras.layers.Layer):
  """SAGAN/BigGAN self-attention with spectrally normalised 1x1 convolutions.

  out = x + gamma * o(attn @ g), attn = softmax(theta(x) phi(x)^T) over the 2x2-max-pooled
  positions; theta and phi have C / 8 channels, g has C / 2, o maps back to C; no biases.

  Input and output: [B, H, W, C] with H and W even and C divisible by 8.
  `gamma` is created by `add_weight` with the Keras default initializer (glorot_uniform, as in
  the reference TF port; BigGAN in PyTorch starts it at zero): pass `gamma_initializer="zeros"`
  for the latter.
  """

  def __init__(self, channels: int, power_iterations: int = 1,
               gamma_initializer="glorot_uniform", **kwargs):
    super().__init__(**kwargs)
    if channels % 8:
      raise ValueError(f"SelfAttention channels must be divisible by 8; got {channels}")
    self.channels = channels
    self.power_iterations = power_iterations
    self.gamma_initializer = keras.initializers.get(gamma_initializer)
    sn = dict(use_bias=False, power_iterations=power_iterations, dtype=self.dtype_policy)
    self.theta = sn_conv(channels // 8, 1, name="theta", **sn)
    self.phi = sn_conv(channels // 8, 1, name="phi", **sn)
    self.g = sn_conv(channels // 2, 1, name="g", **sn)
    self.o = sn_conv(channels, 1, name="o", **sn)
    self.pool = keras.layers.MaxPooling2D(2, dtype=self.dtype_policy, name="pool")

  def build(self, input_shape):
    _, h, w, c = input_shape
    if c != self.channels or h is None or w is None or h % 2 or w % 2:
      raise ValueError(f"SelfAttention({self.channels}) needs inputs [B, H, W, {self.channels}] "
                       f"with even static H and W; got {tuple(input_shape)}")
    for layer in (self.theta, self.phi, self.g):
      layer.build(input_shape)
    self.o.build((None, h, w, c // 2))
    self.gamma = self.add_weight(name="gamma", shape=(1,), initializer=self.gamma_initializer,
                                 trainable=True)

  def call(self, x, training=False):
    _, h, w, c = x.shape
    n, n4 = h * w, (h // 2) * (w // 2)
    theta = ops.reshape(self.theta(x, training=training), (-1, n, c // 8))
    phi = ops.reshape(self.pool(self.phi(x, training=training)), (-1, n4, c // 8))
    attn = ops.softmax(ops.matmul(theta, ops.transpose(phi, (0, 2, 1))), axis=-1)
    g = ops.reshape(self.pool(self.g(x, training=training)), (-1, n4, c // 2))
    attn_g = ops.reshape(ops.matmul(attn, g), (-1, h, w, c // 2))
    return x + ops.cast(self.gamma, x.dtype) * self.o(attn_g, training=training)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update(channels=self.channels, power_iterations=self.power_iterations,
                  gamma_initializer=keras.initializers.serialize(self.gamma_initializer))
    return config


def biggan_block(x, out_channels: int, *, downsample: bool, name: str, power_iterations: int = 1,
                 dtype=None):
  """BigGAN-deep discriminator bottleneck block (`EBMBlockBigGAN`, reduction factor 4).

  Args:
    x: symbolic tensor [B, H, W, C_in], C_in divisible by 4.
    out_channels: C_out >= C_in.
    downsample: halve H and W with 2x2 average pooling.
    name: prefix for the layer names.
    power_iterations: spectral-norm power iterations per training call.
    dtype: Keras dtype policy for the layers (None: the global policy).

  Returns:
    Symbolic tensor [B, H', W', C_out], H' = H // 2 if downsample else H.
  """
  in_channels = x.shape[-1]
  mid = in_channels // 4
  if out_channels < in_channels:
    raise ValueError(f"{name}: BigGAN blocks cannot reduce channels ({in_channels} -> "
                     f"{out_channels})")
  sn = dict(power_iterations=power_iterations, dtype=dtype)
  relu = lambda i: keras.layers.ReLU(dtype=dtype, name=f"{name}_relu{i}")
  h = relu(0)(x)
  h = sn_conv(mid, 1, name=f"{name}_conv0", **sn)(h)
  h = relu(1)(h)
  h = sn_conv(mid, 3, name=f"{name}_conv1", **sn)(h)
  h = relu(2)(h)
  h = sn_conv(mid, 3, name=f"{name}_conv2", **sn)(h)
  h = relu(3)(h)
  y = x
  if downsample:
    h = keras.layers.AveragePooling2D(2, dtype=dtype, name=f"{name}_pool")(h)
    y = keras.layers.AveragePooling2D(2, dtype=dtype, name=f"{name}_sc_pool")(y)
  h = sn_conv(out_channels, 1, name=f"{name}_conv3", **sn)(h)
  if out_channels > in_channels:
    extra = sn_conv(out_channels - in_channels, 1, name=f"{name}_sc", **sn)(y)
    y = keras.layers.Concatenate(axis=-1, dtype=dtype, name=f"{name}_sc_concat")([y, extra])
  return keras.layers.Add(dtype=dtype, name=f"{name}_add")([h, y])


def ebm_biggan(image_shape: Sequence[int] = (224, 224, 3),
               channel_width: int = 48,
               layout: Optional[int] = None,
               power_iterations: int = 1,
               dtype: Optional[str] = None,
               name: str = "ebm_biggan") -> keras.Model:
  """Builds the spectrally normalised BigGAN-deep EBM.

  With the reference layout for 224 (and 256): 12 blocks with (down, in x ch, out x ch) =
  (T,1,2)(F,2,2)(T,2,4)(F,4,4)(T,4,8)(F,8,8)(T,8,8)(F,8,8)(T,8,16)(F,16,16)(T,16,16)(F,16,16) and
  SelfAttention(4 ch) before block index 4 (at 56x56 for 224 inputs); 224 -> 3x3 at the head
  (the last 2x2 pool floors 7 to 3, as in the reference).

  Args:
    image_shape: (H, W, C). H and W must survive the layout's down-samplings (at least 1 pixel
      at the end) and be even where the attention layer sits.
    channel_width: ch (48 in the reference). The attention input, ch times the layout's
      multiplier there (4 for 224, 2 for 128, 1 for 64), must be divisible by 8.
    layout: which reference layout to use: 64, 128 or 224 (= 256); default: the image height.
      A small image with a big layout (e.g. 64x64 with layout 224) gives a cheap test model.
    power_iterations: spectral-norm power iterations per training call.
    dtype: Keras dtype policy for all layers but the float32 head (None: global policy).
    name: model name.

  Returns:
    keras.Model mapping images [B, H, W, C] float32 in [-1, 1] to energies [B, 1] float32.
    Call with `training=True` to run (and apply) the spectral-norm power iteration.

  Raises:
    ValueError: for an unknown layout or an image_shape the layout cannot process.
  """
  h, w, c = shapes.as_shape(name, image_shape)
  layout = h if layout is None else layout
  if layout not in LAYOUTS:
    raise ValueError(f"{name} layout must be one of {sorted(LAYOUTS)}; got {layout} "
                     f"(image_shape {(h, w, c)})")
  blocks, attn_pos = LAYOUTS[layout]
  downs_before_attn = sum(d for d, _, _ in blocks[:attn_pos])
  downs = sum(d for d, _, _ in blocks)
  ah, aw = h >> downs_before_attn, w >> downs_before_attn
  if (min(h, w) >> downs) < 1 or ah * 2**downs_before_attn != h or \
      aw * 2**downs_before_attn != w or ah % 2 or aw % 2:
    raise ValueError(
        f"{name} with layout {layout} needs height and width divisible by "
        f"{2**(downs_before_attn + 1)} and at least {2**downs}; got image_shape {(h, w, c)}")
  if (channel_width * blocks[attn_pos][1]) % 8:
    raise ValueError(f"{name}: channel_width * {blocks[attn_pos][1]} must be divisible by 8; "
                     f"got channel_width {channel_width}")

  inputs = keras.Input(shape=(h, w, c), name="images")
  x = sn_conv(channel_width, 3, name="rgb_conv", power_iterations=power_iterations,
              dtype=dtype)(inputs)
  for i, (down, _, out_mult) in enumerate(blocks):
    if i == attn_pos:
      x = SelfAttention(x.shape[-1], power_iterations=power_iterations, dtype=dtype,
                        name="attention")(x)
    x = biggan_block(x, channel_width * out_mult, downsample=down, name=f"block{i}",
                     power_iterations=power_iterations, dtype=dtype)
  x = keras.layers.ReLU(dtype=dtype, name="head_relu")(x)
  x = keras.layers.GlobalAveragePooling2D(dtype=dtype, name="head_pool")(x)
  dense = keras.layers.Dense(1, use_bias=False, dtype="float32", name="head_dense_linear")
  energy = keras.layers.SpectralNormalization(dense, power_iterations=power_iterations,
                                              dtype="float32", name="head_dense")(x)
  return keras.Model(inputs, energy, name=name)
