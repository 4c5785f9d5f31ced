"""Tests for ebm_tf.models.mlp: numpy forward oracle, smooth input gradient, errors."""
import numpy as np
import tensorflow as tf

from ebm_tf.models import mlp


def numpy_energy(model, x):
  h = x.astype(np.float64)
  for i in (1, 2, 3):
    layer = model.get_layer(f"dense{i}")
    a = h @ layer.kernel.numpy() + layer.bias.numpy()
    h = a / (1.0 + np.exp(-a))  # swish
  return h @ model.get_layer("energy").kernel.numpy()


class MlpTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.model = mlp.ebm_mlp((2,))
    rng = np.random.default_rng(0)
    for v in self.model.weights:
      if "bias" in v.path:
        v.assign(rng.normal(0, 0.5, v.shape).astype(np.float32))
    self.x = tf.random.stateless_normal([16, 2], [1, 2])

  def test_matches_numpy_forward_and_count(self):
    out = self.model(self.x)
    self.assertEqual(out.shape, (16, 1))
    self.assertEqual(out.dtype, tf.float32)
    self.assertAllClose(out, numpy_energy(self.model, self.x.numpy()), rtol=1e-4, atol=1e-5)
    self.assertEqual(self.model.count_params(), (2 * 128 + 128) + 2 * (128 * 128 + 128) + 128)

  def test_input_gradient_matches_finite_differences(self):
    with tf.GradientTape() as tape:
      tape.watch(self.x)
      energy = tf.reduce_sum(self.model(self.x))
    grad = tape.gradient(energy, self.x).numpy()
    x, h = self.x.numpy().astype(np.float64), 1e-4
    fd = np.zeros_like(x)
    for j in range(2):
      e = np.zeros_like(x)
      e[:, j] = h
      fd[:, j] = (numpy_energy(self.model, x + e) - numpy_energy(self.model, x - e))[:, 0] / (2 * h)
    self.assertAllClose(grad, fd, rtol=1e-3, atol=1e-4)

  def test_other_dimension_and_activation(self):
    model = mlp.ebm_mlp((5,), hidden_units=(8, 8), activation="elu")
    self.assertEqual(model(tf.zeros([3, 5])).shape, (3, 1))

  def test_width_sets_every_hidden_layer(self):
    model = mlp.ebm_mlp((2,), width=32)
    self.assertEqual([model.get_layer(f"dense{i}").units for i in (1, 2, 3)], [32, 32, 32])
    self.assertEqual(model.count_params(), (2 * 32 + 32) + 2 * (32 * 32 + 32) + 32)

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "ebm_mlp width must be a positive int; got 0"):
      mlp.ebm_mlp((2,), width=0)
    with self.assertRaisesRegex(ValueError, r"smooth.*got 'relu'"):
      mlp.ebm_mlp((2,), activation="relu")
    with self.assertRaisesRegex(
        ValueError, r"ebm_mlp needs image_shape \(dim,\) of positive ints; got \(2, 2\)"):
      mlp.ebm_mlp((2, 2))
    with self.assertRaisesRegex(ValueError, r"hidden_units \(\)"):
      mlp.ebm_mlp((2,), hidden_units=())


if __name__ == "__main__":
  tf.test.main()
