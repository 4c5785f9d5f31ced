"""Tests for ebm_tf.models.generators: counts, a plain-TF forward oracle, range, latents."""
import numpy as np
import tensorflow as tf

from ebm_tf.models import generators


def conv_params(c_in, c_out, k):
  return k * k * c_in * c_out + c_out


def sngan_gen_params(nz, bottom, channels, c_img):
  """Hand count: Dense + up-sampling GenBlocks (2 BN with 4 params/channel) + BN + conv."""
  total = nz * bottom * bottom * channels[0] + bottom * bottom * channels[0]
  for c_in, c_out in zip(channels[:-1], channels[1:]):
    total += 4 * c_in + conv_params(c_in, c_out, 3) + 4 * c_out + conv_params(c_out, c_out, 3)
    total += conv_params(c_in, c_out, 1)  # always learnable: every block up-samples
  return total + 4 * channels[-1] + conv_params(channels[-1], c_img, 3)


def _bn(x, layer):
  return ((x - layer.moving_mean.numpy()) / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
          * layer.gamma.numpy() + layer.beta.numpy())


def _conv(x, layer):
  return tf.nn.conv2d(x, layer.kernel.numpy(), 1, "SAME") + layer.bias.numpy()


def _up(x):
  return tf.image.resize(x, [2 * x.shape[1], 2 * x.shape[2]], method="bilinear")


def reference_images(model, z, ngf, bottom, num_blocks):
  """nets.py GenSNGAN forward in inference mode, with tf.nn ops and the model's weights."""
  layer = model.get_layer
  h = z @ layer("dense").kernel.numpy() + layer("dense").bias.numpy()
  h = tf.transpose(tf.reshape(h, [-1, ngf, bottom, bottom]), [0, 2, 3, 1])  # NCHW -> NHWC
  for i in range(2, 2 + num_blocks):
    r = _conv(_up(tf.nn.relu(_bn(h, layer(f"block{i}_bn1")))), layer(f"block{i}_conv1"))
    r = _conv(tf.nn.relu(_bn(r, layer(f"block{i}_bn2"))), layer(f"block{i}_conv2"))
    h = r + _conv(_up(h), layer(f"block{i}_sc"))
  return tf.tanh(_conv(tf.nn.relu(_bn(h, layer("out_bn"))), layer("out_conv")))


def randomize_bn_and_biases(model, seed=0):
  rng = np.random.default_rng(seed)
  for v in model.weights:
    if "moving_variance" in v.path or "gamma" in v.path:
      v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
    elif any(k in v.path for k in ("moving_mean", "beta", "bias")):
      v.assign(rng.normal(0, 0.1, v.shape).astype(np.float32))


class ParamCountTest(tf.test.TestCase):

  def test_gen_sngan32(self):
    expected = sngan_gen_params(128, 4, [256] * 4, 3)
    self.assertEqual(expected, 4_280_323)
    model = generators.gen_sngan32()
    self.assertEqual(model.count_params(), expected)
    self.assertEqual(model.output_shape, (None, 32, 32, 3))

  def test_gen_sngan64_and_128(self):
    m64 = generators.gen_sngan64()
    self.assertEqual(m64.count_params(), sngan_gen_params(128, 4, [1024, 512, 256, 128, 64], 3))
    self.assertEqual(m64.output_shape, (None, 64, 64, 3))
    m128 = generators.gen_sngan128()
    self.assertEqual(m128.count_params(),
                     sngan_gen_params(128, 4, [1024, 1024, 512, 256, 128, 64], 3))
    self.assertEqual(m128.output_shape, (None, 128, 128, 3))

  def test_batch_norm_is_synchronized(self):
    model = generators.gen_sngan32(ngf=8)
    bns = [l for l in model.layers if "BatchNormalization" in type(l).__name__]
    self.assertLen(bns, 7)
    self.assertTrue(all(l.synchronized for l in bns))


class ForwardTest(tf.test.TestCase):

  def test_matches_reference_forward(self):
    model = generators.gen_sngan32(ngf=8, latent_dim=5)
    randomize_bn_and_biases(model)
    z = generators.sample_latents([1, 2], 2, 5)
    self.assertAllClose(model(z, training=False), reference_images(model, z, 8, 4, 3),
                        rtol=1e-4, atol=1e-5)

  def test_matches_reference_forward_64(self):
    model = generators.gen_sngan64(ngf=64, latent_dim=4, image_shape=(64, 64, 1))
    randomize_bn_and_biases(model, seed=3)
    z = generators.sample_latents([3, 4], 2, 4)
    self.assertAllClose(model(z), reference_images(model, z, 64, 4, 4), rtol=1e-4, atol=1e-5)

  def test_output_range_full_size_32(self):
    model = generators.gen_sngan32()
    z = 5.0 * generators.sample_latents([7, 8], 2, 128)  # large z to push tanh to saturation
    for training in (True, False):
      x = model(z, training=training).numpy()
      self.assertEqual(x.shape, (2, 32, 32, 3))
      self.assertEqual(x.dtype, np.float32)
      self.assertTrue(np.all(np.abs(x) <= 1.0))
      self.assertGreater(np.std(x), 0.0)

  def test_training_uses_batch_statistics(self):
    model = generators.gen_sngan32(ngf=8, latent_dim=4)
    randomize_bn_and_biases(model)
    z = generators.sample_latents([1, 1], 4, 4)
    self.assertNotAllClose(model(z, training=True), model(z, training=False))

  def test_mixed_bfloat16_outputs_float32(self):
    model = generators.gen_sngan32(ngf=8, dtype="mixed_bfloat16")
    x = model(generators.sample_latents([0, 0], 2, 128), training=True)
    self.assertEqual(x.dtype, tf.float32)
    self.assertTrue(np.all(np.abs(x.numpy()) <= 1.0))

  def test_bad_shape(self):
    with self.assertRaisesRegex(ValueError, r"gen_sngan32 .*got \(28, 28, 1\)"):
      generators.gen_sngan32((28, 28, 1))


class LatentTest(tf.test.TestCase):

  def test_latent_dim(self):
    self.assertEqual(generators.generator_latent_dim(generators.gen_sngan32(ngf=8)), 128)
    self.assertEqual(
        generators.generator_latent_dim(generators.gen_sngan32(ngf=8, latent_dim=7)), 7)

  def test_sample_latents_is_stateless_standard_normal(self):
    z = generators.sample_latents(tf.constant([3, 4], tf.int64), 4000, 8)
    self.assertEqual(z.shape, (4000, 8))
    self.assertEqual(z.dtype, tf.float32)
    self.assertAllEqual(z, generators.sample_latents([3, 4], 4000, 8))
    self.assertNotAllClose(z, generators.sample_latents([3, 5], 4000, 8))
    # 5-sigma bounds for the mean (se 1/sqrt(32000)) and variance (se sqrt(2/32000)).
    self.assertAllClose(np.mean(z), 0.0, atol=5 / np.sqrt(32000))
    self.assertAllClose(np.var(z), 1.0, atol=5 * np.sqrt(2 / 32000))
    self.assertAllClose(np.cov(z.numpy().T), np.eye(8), atol=0.07)

  def test_sample_latents_in_tf_function(self):
    f = tf.function(lambda seed, n: generators.sample_latents(seed, n, 3))
    self.assertEqual(f(tf.constant([1, 2]), tf.constant(5)).shape, (5, 3))

  def test_bad_seed(self):
    with self.assertRaisesRegex(ValueError, r"seed must have shape \[2\]; got \[3\]"):
      generators.sample_latents([1, 2, 3], 4, 2)


if __name__ == "__main__":
  tf.test.main()
