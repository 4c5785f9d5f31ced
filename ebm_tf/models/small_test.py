"""Tests for ebm_tf.models.small: shapes for 8x8 and 28x28, sizes, range, a short fit."""
from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from ebm_tf.models import small


def conv_params(c_in, c_out, k):
  return k * k * c_in * c_out + c_out


class EbmSmallTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters((8, 8, 1), (28, 28, 1), (12, 16, 3))
  def test_shapes_and_gradient(self, h, w, c):
    model = small.ebm_small((h, w, c))
    x = tf.random.stateless_uniform([2, h, w, c], [1, 2], -1, 1)
    with tf.GradientTape() as tape:
      tape.watch(x)
      energy = model(x, training=False)
    self.assertEqual(energy.shape, (2, 1))
    self.assertEqual(energy.dtype, tf.float32)
    grad = tape.gradient(energy, x).numpy()
    self.assertTrue(np.all(np.isfinite(grad)))
    self.assertGreater(np.max(np.abs(grad)), 0.0)
    self.assertEqual(model.get_layer("block3_add").output.shape, (None, h // 4, w // 4, 64))

  def test_parameter_count(self):
    # stem (1->32: 2 convs + 1x1 shortcut), block (32->64, down), block (64->64), head
    expected = (conv_params(1, 32, 3) + conv_params(32, 32, 3) + conv_params(1, 32, 1) +
                conv_params(32, 64, 3) + conv_params(64, 64, 3) + conv_params(32, 64, 1) +
                2 * conv_params(64, 64, 3) + 64)
    self.assertEqual(expected, 141_088)  # ~0.1M (docs/paper_settings.md section 9)
    self.assertEqual(small.ebm_small((8, 8, 1)).count_params(), expected)
    self.assertEqual(small.ebm_small((28, 28, 1)).count_params(), expected)

  def test_bad_shape(self):
    with self.assertRaisesRegex(ValueError, r"ebm_small .*divisible by 4; got image_shape "
                                r"\(30, 30, 1\)"):
      small.ebm_small((30, 30, 1))


class GenSmallTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters((8, 8, 1), (28, 28, 1))
  def test_shape_and_range(self, h, w, c):
    model = small.gen_small((h, w, c))
    z = 4.0 * tf.random.stateless_normal([3, 16], [3, 4])
    for training in (True, False):
      x = model(z, training=training).numpy()
      self.assertEqual(x.shape, (3, h, w, c))
      self.assertTrue(np.all(np.abs(x) <= 1.0))
      self.assertGreater(np.std(x), 0.0)
    self.assertEqual(model.get_layer("reshape").output.shape, (None, 64, h // 4, w // 4))

  def test_parameter_count(self):
    block = 4 * 64 + conv_params(64, 64, 3) + 4 * 64 + conv_params(64, 64, 3) + conv_params(
        64, 64, 1)
    expected = (16 * 7 * 7 * 64 + 7 * 7 * 64) + 2 * block + 4 * 64 + conv_params(64, 1, 3)
    self.assertEqual(small.gen_small((28, 28, 1), latent_dim=16).count_params(), expected)

  def test_bad_shape(self):
    with self.assertRaisesRegex(ValueError, r"gen_small .*got image_shape \(10, 8, 1\)"):
      small.gen_small((10, 8, 1))


class SmallCnnTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters((8, 8, 1, 256), (28, 28, 1, 7 * 7 * 64))
  def test_shapes_and_count(self, h, w, c, flat):
    model = small.small_cnn((h, w, c), num_classes=10)
    self.assertEqual(model.output_shape, (None, 10))
    self.assertEqual(model.get_layer("features").output.shape, (None, 128))
    expected = conv_params(c, 32, 3) + conv_params(32, 64, 3) + flat * 128 + 128 + 128 * 10 + 10
    self.assertEqual(model.count_params(), expected)

  def test_fits_a_small_labelled_set(self):
    model = small.small_cnn((8, 8, 1), num_classes=4)
    x = tf.random.stateless_uniform([32, 8, 8, 1], [5, 6], -1, 1)
    y = tf.random.stateless_uniform([32], [7, 8], 0, 4, dtype=tf.int32)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    self.assertLess(model.evaluate(x, y, verbose=0), 0.5 * first)

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, r"small_cnn .*divisible by 4"):
      small.small_cnn((6, 6, 1))
    with self.assertRaisesRegex(ValueError, r"num_classes must be >= 1; got 0"):
      small.small_cnn((8, 8, 1), num_classes=0)


if __name__ == "__main__":
  tf.test.main()
