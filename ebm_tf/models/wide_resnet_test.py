"""Tests for ebm_tf.models.wide_resnet: WRN-28-10 size, a plain-TF forward oracle, options."""
import numpy as np
import tensorflow as tf

from ebm_tf.models import wide_resnet


def conv_params(c_in, c_out, k):
  return k * k * c_in * c_out + c_out


def wrn_params(depth, k, c_img, num_classes, trainable_only=False):
  """Hand count of a WRN; a BN has 2 trainable and 2 moving-statistics parameters per channel."""
  bn = 2 if trainable_only else 4
  n = (depth - 4) // 6
  total = conv_params(c_img, 16, 3)
  c_in = 16
  for width, stride in zip([16 * k, 32 * k, 64 * k], [1, 2, 2]):
    for b in range(n):
      s = stride if b == 0 else 1
      total += bn * c_in + conv_params(c_in, width, 3) + bn * width + conv_params(width, width, 3)
      if c_in != width or s != 1:
        total += conv_params(c_in, width, 1)
      c_in = width
  return total + bn * c_in + c_in * num_classes + num_classes


def _bn(x, layer):
  return ((x - layer.moving_mean.numpy()) / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
          * layer.gamma.numpy() + layer.beta.numpy())


def _conv(x, layer, stride=1, padding="SAME"):
  return tf.nn.conv2d(x, layer.kernel.numpy(), stride, padding) + layer.bias.numpy()


def reference_logits(model, x, widths, n):
  """nets.py WideResNetTF2 forward in inference mode, with tf.nn ops and the model's weights."""
  layer = model.get_layer
  h = _conv(x, layer("conv1"))
  for stage, stride in enumerate([1, 2, 2], start=1):
    for b in range(1, n + 1):
      name, s = f"stage{stage}_block{b}", (stride if b == 1 else 1)
      o = _conv(tf.nn.relu(_bn(h, layer(f"{name}_bn1"))), layer(f"{name}_conv1"))
      o = tf.nn.relu(_bn(o, layer(f"{name}_bn2")))
      if s == 2:  # PyTorch-style symmetric padding, not TF "SAME"
        o = _conv(tf.pad(o, [[0, 0], [1, 1], [1, 1], [0, 0]]), layer(f"{name}_conv2"), 2, "VALID")
      else:
        o = _conv(o, layer(f"{name}_conv2"))
      if h.shape[-1] != widths[stage - 1] or s != 1:
        o += _conv(h, layer(f"{name}_sc"), s, "VALID")
      else:
        o += h
      h = o
  feats = tf.reduce_mean(tf.nn.relu(_bn(h, layer("out_bn"))), axis=[1, 2])
  return feats @ layer("logits").kernel.numpy() + layer("logits").bias.numpy()


class WideResNetTest(tf.test.TestCase):

  def test_wrn28_10_parameter_count(self):
    total, trainable = wrn_params(28, 10, 3, 10), wrn_params(28, 10, 3, 10, trainable_only=True)
    self.assertEqual(total, 36_507_242)  # 36.5M: all weights incl. BN moving statistics
    self.assertEqual(trainable, 36_489_290)
    model = wide_resnet.wide_resnet()
    self.assertEqual(model.count_params(), total)
    self.assertEqual(sum(int(np.prod(v.shape)) for v in model.trainable_weights), trainable)
    self.assertEqual(model.output_shape, (None, 10))
    self.assertEqual(model.get_layer("features").output.shape, (None, 640))

  def test_batch_norm_settings(self):
    model = wide_resnet.wide_resnet(depth=10, widen_factor=1)
    bns = [l for l in model.layers if "BatchNormalization" in type(l).__name__]
    self.assertLen(bns, 3 * 2 + 1)
    for l in bns:
      self.assertEqual((l.momentum, l.epsilon, l.synchronized), (0.9, 1e-5, True))
    model = wide_resnet.wide_resnet(depth=10, widen_factor=1, bn_momentum=0.5)
    self.assertEqual(model.get_layer("out_bn").momentum, 0.5)

  def test_tiny_wrn_matches_reference_forward(self):
    model = wide_resnet.wide_resnet(depth=16, widen_factor=2, num_classes=7)
    rng = np.random.default_rng(0)
    for v in model.weights:
      if "moving_variance" in v.path or "gamma" in v.path:
        v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
      elif any(k in v.path for k in ("moving_mean", "beta", "bias")):
        v.assign(rng.normal(0, 0.1, v.shape).astype(np.float32))
    x = tf.random.stateless_uniform([2, 32, 32, 3], [1, 2], -1, 1)
    out = model(x, training=False)
    self.assertEqual(out.shape, (2, 7))
    self.assertAllClose(out, reference_logits(model, x, [32, 64, 128], 2), rtol=1e-4, atol=1e-4)

  def test_training_step_updates_moving_stats_with_keras_momentum(self):
    model = wide_resnet.wide_resnet((8, 8, 1), depth=10, widen_factor=1, bn_momentum=0.9)
    x = tf.random.stateless_normal([4, 8, 8, 1], [3, 4]) + 2.0
    model(x, training=True)
    # first BN sees conv1's output; moving mean = 0.9 * 0 + 0.1 * batch mean
    h = model.get_layer("conv1")(x)
    self.assertAllClose(model.get_layer("stage1_block1_bn1").moving_mean,
                        0.1 * tf.reduce_mean(h, axis=[0, 1, 2]), atol=1e-5)

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, r"depth must be 6n\+4.*got 27"):
      wide_resnet.wide_resnet(depth=27)
    with self.assertRaisesRegex(ValueError, r"divisible by 4; got image_shape \(30, 30, 3\)"):
      wide_resnet.wide_resnet((30, 30, 3), depth=10, widen_factor=1)

  def test_mixed_bfloat16_logits_are_float32(self):
    model = wide_resnet.wide_resnet((8, 8, 1), depth=10, widen_factor=1, dtype="mixed_bfloat16")
    self.assertEqual(model(tf.zeros([2, 8, 8, 1]), training=True).dtype, tf.float32)


if __name__ == "__main__":
  tf.test.main()
