"""Tests for ebm_tf.models.biggan_ebm: size, plain-TF forward oracle, spectral normalisation."""
import numpy as np
import tensorflow as tf
import keras

from ebm_tf.models import biggan_ebm

# (downsample, in x ch, out x ch) for 224 inputs (docs/paper_settings.md section 5); attention
# before index 4.
LAYOUT_224 = [(True, 1, 2), (False, 2, 2), (True, 2, 4), (False, 4, 4), (True, 4, 8), (False, 8, 8),
              (True, 8, 8), (False, 8, 8), (True, 8, 16), (False, 16, 16), (True, 16, 16),
              (False, 16, 16)]
ATTN_POS = 4


def sn_params(c_in, c_out, k, bias=True):
  """Kernel + bias + the spectral-norm power-iteration vector u (c_out, not trainable)."""
  return k * k * c_in * c_out + (c_out if bias else 0) + c_out


def biggan_params(ch, c_img):
  total = sn_params(c_img, ch, 3)
  c_in = ch
  for i, (_, _, out_mult) in enumerate(LAYOUT_224):
    if i == ATTN_POS:
      total += (2 * sn_params(c_in, c_in // 8, 1, False) + sn_params(c_in, c_in // 2, 1, False) +
                sn_params(c_in // 2, c_in, 1, False) + 1)  # + gamma
    c_out, mid = ch * out_mult, c_in // 4
    total += sn_params(c_in, mid, 1) + 2 * sn_params(mid, mid, 3) + sn_params(mid, c_out, 1)
    if c_out > c_in:
      total += sn_params(c_in, c_out - c_in, 1)
    c_in = c_out
  return total + sn_params(c_in, 1, 1, bias=False)


def _conv(x, sn_layer):
  inner = sn_layer.layer
  y = tf.nn.conv2d(x, inner.kernel.numpy(), 1, "SAME")
  return y + inner.bias.numpy() if inner.use_bias else y


def _pool(x):
  return tf.nn.avg_pool2d(x, 2, 2, "VALID")


def reference_attention(att, x):
  _, h, w, c = x.shape
  theta = tf.reshape(_conv(x, att.theta), [-1, h * w, c // 8])
  phi = tf.reshape(tf.nn.max_pool2d(_conv(x, att.phi), 2, 2, "VALID"), [-1, h * w // 4, c // 8])
  attn = tf.nn.softmax(tf.matmul(theta, phi, transpose_b=True), axis=-1)
  g = tf.reshape(tf.nn.max_pool2d(_conv(x, att.g), 2, 2, "VALID"), [-1, h * w // 4, c // 2])
  return x + att.gamma.numpy() * _conv(tf.reshape(tf.matmul(attn, g), [-1, h, w, c // 2]), att.o)


def reference_energy(model, x, ch):
  """nets.py EBMBigGAN forward with kernels as they are (training=False), with tf.nn ops."""
  layer = model.get_layer
  x = _conv(x, layer("rgb_conv"))
  for i, (down, _, out_mult) in enumerate(LAYOUT_224):
    if i == ATTN_POS:
      x = reference_attention(layer("attention"), x)
    x0 = x
    for j in range(3):
      x = _conv(tf.nn.relu(x), layer(f"block{i}_conv{j}"))
    x = tf.nn.relu(x)
    if down:
      x, x0 = _pool(x), _pool(x0)
    x = _conv(x, layer(f"block{i}_conv3"))
    if ch * out_mult > x0.shape[-1]:
      x0 = tf.concat([x0, _conv(x0, layer(f"block{i}_sc"))], axis=-1)
    x = x + x0
  feats = tf.reduce_mean(tf.nn.relu(x), axis=[1, 2])
  return feats @ layer("head_dense").kernel.numpy()


def sn_layers(model):
  found = [l for l in model.layers if isinstance(l, keras.layers.SpectralNormalization)]
  att = model.get_layer("attention")
  return found + [att.theta, att.phi, att.g, att.o]


def top_singular_value(kernel):
  k = np.asarray(kernel)
  return np.linalg.svd(k.reshape(-1, k.shape[-1]), compute_uv=False)[0]


class FullSizeTest(tf.test.TestCase):

  def test_parameter_count_and_224_forward(self):
    model = biggan_ebm.ebm_biggan((224, 224, 3))
    self.assertEqual(biggan_params(48, 3), 4_299_242)
    self.assertEqual(model.count_params(), biggan_params(48, 3))
    self.assertEqual(model.get_layer("attention").input.shape, (None, 56, 56, 192))
    self.assertEqual(model.get_layer("head_relu").input.shape, (None, 3, 3, 768))
    # every conv/dense is spectrally normalised: 1 rgb + 4 per block + 4 shortcuts (blocks where
    # the width grows) + 4 attention + head
    self.assertLen(sn_layers(model), 1 + 4 * 12 + 4 + 4 + 1)
    out = model(tf.random.stateless_uniform([1, 224, 224, 3], [1, 2], -1, 1), training=False)
    self.assertEqual(out.shape, (1, 1))
    self.assertTrue(np.all(np.isfinite(out.numpy())))


class SmallTest(tf.test.TestCase):
  """The 224 layout at width 8 on 64x64 images (attention at 16x16)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # Shared by the tests below: each assertion holds for whatever weights the model has.
    cls.model = biggan_ebm.ebm_biggan((64, 64, 3), channel_width=8, layout=224)
    cls.x = tf.random.stateless_uniform([2, 64, 64, 3], [3, 4], -1, 1)

  def test_matches_reference_forward(self):
    rng = np.random.default_rng(0)
    for v in self.model.weights:
      if "bias" in v.path or "gamma" in v.path:
        v.assign(rng.normal(0, 0.1, v.shape).astype(np.float32))
    self.assertAllClose(self.model(self.x, training=False),
                        reference_energy(self.model, self.x, 8), rtol=1e-4, atol=1e-5)

  def test_inference_leaves_kernels_unchanged(self):
    before = [l.kernel.numpy() for l in sn_layers(self.model)]
    self.model(self.x, training=False)
    for b, l in zip(before, sn_layers(self.model)):
      self.assertAllEqual(b, l.kernel.numpy())

  def test_training_calls_in_tf_function_are_power_iterations(self):
    step = tf.function(lambda x: self.model(x, training=True))
    layers = [self.model.get_layer("block9_conv1"), self.model.get_layer("attention").o,
              self.model.get_layer("head_dense")]
    for _ in range(2):  # the second call must see the state written by the first
      expected = []
      for layer in layers:
        w = layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1])
        v = layer.vector_u.numpy() @ w.T
        v /= np.linalg.norm(v)
        u = v @ w
        u /= np.linalg.norm(u)
        expected.append((u, w / (v @ w @ u.T).item()))
      step(self.x)
      for layer, (u, w) in zip(layers, expected):
        self.assertAllClose(layer.vector_u.numpy(), u, rtol=1e-4, atol=1e-6, msg=layer.name)
        self.assertAllClose(layer.kernel.numpy().reshape(w.shape), w, rtol=1e-4, atol=1e-6,
                            msg=layer.name)

  def test_input_gradient_is_finite(self):
    for training in (False, True):
      with tf.GradientTape() as tape:
        tape.watch(self.x)
        energy = tf.reduce_sum(self.model(self.x, training=training))
      grad = tape.gradient(energy, self.x).numpy()
      self.assertTrue(np.all(np.isfinite(grad)))
      self.assertGreater(np.max(np.abs(grad)), 0.0)

  def test_mixed_bfloat16(self):
    model = biggan_ebm.ebm_biggan((64, 64, 3), channel_width=8, layout=224,
                                  dtype="mixed_bfloat16")
    self.assertEqual(model.get_layer("attention").compute_dtype, "bfloat16")
    for training in (True, False):
      out = model(self.x, training=training)
      self.assertEqual(out.dtype, tf.float32)
      self.assertTrue(np.all(np.isfinite(out.numpy())))


class LayerTest(tf.test.TestCase):

  def test_repeated_training_calls_normalise_the_kernel(self):
    x = tf.random.stateless_normal([2, 6, 6, 16], [5, 6])
    for layer in [biggan_ebm.sn_conv(24, 3, name="c3"), biggan_ebm.sn_conv(8, 1, name="c1"),
                  keras.layers.SpectralNormalization(keras.layers.Dense(5))]:
      layer(x)
      self.assertGreater(abs(top_singular_value(layer.kernel.numpy()) - 1.0), 0.1)
      for _ in range(40):
        layer(x, training=True)
      self.assertAllClose(top_singular_value(layer.kernel.numpy()), 1.0, atol=1e-2)

  def test_self_attention_config_round_trip(self):
    layer = biggan_ebm.SelfAttention(16, power_iterations=2, gamma_initializer="zeros")
    clone = biggan_ebm.SelfAttention.from_config(layer.get_config())
    self.assertEqual((clone.channels, clone.power_iterations), (16, 2))
    x = tf.random.stateless_normal([2, 4, 4, 16], [0, 1])
    self.assertAllClose(clone(x), x)  # gamma = 0 makes the layer the identity

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, r"layout must be one of \[64, 128, 224, 256\]"):
      biggan_ebm.ebm_biggan((96, 96, 3))
    with self.assertRaisesRegex(ValueError, r"divisible by 8 and at least 64; got image_shape"):
      biggan_ebm.ebm_biggan((32, 32, 3), channel_width=8, layout=224)
    with self.assertRaisesRegex(ValueError, r"divisible by 8"):
      biggan_ebm.SelfAttention(12)


if __name__ == "__main__":
  tf.test.main()
