"""Tests for ebm_tf.models.ebm_sngan: parameter counts, a plain-TF forward oracle, gradients."""
import numpy as np
import tensorflow as tf

from ebm_tf.models import ebm_sngan


def conv_params(c_in, c_out, k):
  return k * k * c_in * c_out + c_out


def sngan_ebm_params(c_in, stages):
  """Hand count: stages = [(c_out, downsample)], the first is the stem; no-bias Dense head."""
  total = 0
  for c_out, down in stages:
    total += conv_params(c_in, c_out, 3) + conv_params(c_out, c_out, 3)
    if c_in != c_out or down:
      total += conv_params(c_in, c_out, 1)
    c_in = c_out
  return total + c_in


# Reference forward pass written from nets.py with tf.nn ops, reading the model's weights.
def _conv(x, layer):
  return tf.nn.conv2d(x, layer.kernel.numpy(), 1, "SAME") + layer.bias.numpy()


def _pool(x):
  return tf.nn.avg_pool2d(x, 2, 2, "VALID")


def reference_energy(model, x, stages):
  layer = model.get_layer
  c_in = x.shape[-1]
  for i, (c_out, down) in enumerate(stages, start=1):
    name = f"block{i}"
    if i == 1:  # EBMBlockStem: no pre-activation, shortcut pools then convolves
      h = _conv(tf.nn.relu(_conv(x, layer(f"{name}_conv1"))), layer(f"{name}_conv2"))
      y = _pool(x) if down else x
      y = _conv(y, layer(f"{name}_sc")) if (c_in != c_out or down) else y
    else:  # EBMBlock: pre-activation, shortcut convolves then pools
      h = _conv(tf.nn.relu(_conv(tf.nn.relu(x), layer(f"{name}_conv1"))), layer(f"{name}_conv2"))
      y = _conv(x, layer(f"{name}_sc")) if (c_in != c_out or down) else x
      y = _pool(y) if down else y
    h = _pool(h) if down else h
    x, c_in = h + y, c_out
  features = tf.reduce_mean(tf.nn.relu(x), axis=[1, 2])
  return features @ layer("head_dense").kernel.numpy()


def randomize_biases(model, seed=0):
  rng = np.random.default_rng(seed)
  for v in model.weights:
    if "bias" in v.path:
      v.assign(rng.normal(0, 0.1, v.shape).astype(np.float32))


class ParamCountTest(tf.test.TestCase):

  def test_ebm_sngan32_has_4204800_parameters(self):
    stages = [(256, True), (256, True), (256, False), (256, False)]
    self.assertEqual(sngan_ebm_params(3, stages), 4_204_800)  # docs/paper_settings.md section 5
    self.assertEqual(ebm_sngan.ebm_sngan32().count_params(), 4_204_800)

  def test_ebm_sngan64(self):
    stages = [(64, True), (128, True), (256, True), (512, True), (1024, True)]
    expected = sngan_ebm_params(3, stages)
    self.assertEqual(expected, 19_542_720)  # ~19.5M in the spec
    self.assertEqual(ebm_sngan.ebm_sngan64().count_params(), expected)

  def test_ebm_sngan128(self):
    stages = [(64, True), (128, True), (256, True), (512, True), (1024, True), (1024, False)]
    expected = sngan_ebm_params(3, stages)
    self.assertEqual(expected, 38_419_136)  # ~38.4M in the spec
    model = ebm_sngan.ebm_sngan128()
    self.assertEqual(model.count_params(), expected)
    self.assertEqual(model.output_shape, (None, 1))


class ForwardTest(tf.test.TestCase):

  def test_matches_reference_forward_32(self):
    model = ebm_sngan.ebm_sngan32(ngf=16)
    randomize_biases(model)
    x = tf.random.stateless_uniform([2, 32, 32, 3], [1, 2], -1, 1)
    stages = [(16, True), (16, True), (16, False), (16, False)]
    out = model(x, training=False)
    self.assertEqual(out.shape, (2, 1))
    self.assertEqual(out.dtype, tf.float32)
    self.assertAllClose(out, reference_energy(model, x, stages), rtol=1e-4, atol=1e-5)

  def test_matches_reference_forward_64_grayscale(self):
    model = ebm_sngan.ebm_sngan64(image_shape=(64, 64, 1), ngf=32)
    randomize_biases(model, seed=1)
    x = tf.random.stateless_uniform([2, 64, 64, 1], [3, 4], -1, 1)
    stages = [(2, True), (4, True), (8, True), (16, True), (32, True)]
    self.assertAllClose(model(x), reference_energy(model, x, stages), rtol=1e-4, atol=1e-5)

  def test_full_size_32_forward_and_input_gradient(self):
    model = ebm_sngan.ebm_sngan32()
    x = tf.random.stateless_uniform([2, 32, 32, 3], [5, 6], -1, 1)
    with tf.GradientTape() as tape:
      tape.watch(x)
      energy = tf.reduce_sum(model(x, training=False))
    grad = tape.gradient(energy, x)
    self.assertEqual(grad.shape, x.shape)
    self.assertTrue(np.all(np.isfinite(grad.numpy())))
    self.assertGreater(float(tf.reduce_max(tf.abs(grad))), 0.0)

  def test_mixed_bfloat16_energy_is_float32(self):
    model = ebm_sngan.ebm_sngan32(ngf=16, dtype="mixed_bfloat16")
    self.assertEqual(model.get_layer("block2_conv1").compute_dtype, "bfloat16")
    out = model(tf.zeros([2, 32, 32, 3]))
    self.assertEqual(out.dtype, tf.float32)


class BadShapeTest(tf.test.TestCase):

  def test_wrong_image_size_raises(self):
    with self.assertRaisesRegex(ValueError, r"ebm_sngan32 .*\(32, 32, C\); got \(28, 28, 1\)"):
      ebm_sngan.ebm_sngan32((28, 28, 1))
    with self.assertRaisesRegex(ValueError, r"ebm_sngan64 .*got \(32, 32, 3\)"):
      ebm_sngan.ebm_sngan64((32, 32, 3))
    with self.assertRaisesRegex(ValueError, r"ebm_sngan128 .*got \(64, 64, 3\)"):
      ebm_sngan.ebm_sngan128((64, 64, 3))


if __name__ == "__main__":
  tf.test.main()
