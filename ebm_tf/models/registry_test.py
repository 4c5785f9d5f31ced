"""Tests for the ebm_tf.models registry: names, errors, energy_fn, features, mixed precision."""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from ebm_tf import models

SMALL_EBMS = [("ebm_small", (8, 8, 1)), ("ebm_small", (28, 28, 1)), ("ebm_mlp", (2,))]


class NamesTest(tf.test.TestCase):

  def test_names(self):
    self.assertEqual(models.EBM_NAMES, ("ebm_sngan32", "ebm_sngan64", "ebm_sngan128",
                                        "ebm_biggan224", "ebm_small", "ebm_mlp"))
    self.assertEqual(models.GENERATOR_NAMES,
                     ("gen_sngan32", "gen_sngan64", "gen_sngan128", "gen_small"))
    self.assertEqual(models.CLASSIFIER_NAMES, ("wrn28_10", "wrn", "small_cnn"))

  def test_unknown_names_list_valid_names(self):
    with self.assertRaisesRegex(ValueError, r"unknown EBM name 'ebm_foo'; valid names: "
                                r"ebm_sngan32, .*ebm_mlp"):
      models.build_ebm("ebm_foo", (32, 32, 3))
    with self.assertRaisesRegex(ValueError, r"unknown generator name 'gen'; valid names: "
                                r"gen_sngan32, .*gen_small"):
      models.build_generator("gen", (32, 32, 3))
    with self.assertRaisesRegex(ValueError, r"unknown classifier name 'resnet'; valid names: "
                                r"wrn28_10, wrn, small_cnn"):
      models.build_classifier("resnet", (32, 32, 3), 10)

  def test_shapes_that_do_not_fit(self):
    cases = [
        (models.build_ebm, ("ebm_sngan32", (28, 28, 1)), r"ebm_sngan32 .*got \(28, 28, 1\)"),
        (models.build_ebm, ("ebm_sngan64", (32, 32, 3)), r"ebm_sngan64 .*got \(32, 32, 3\)"),
        (models.build_ebm, ("ebm_sngan128", (64, 64, 3)), r"ebm_sngan128"),
        (models.build_ebm, ("ebm_biggan224", (128, 128, 3)), r"ebm_biggan224 .*\(224, 224, C\)"),
        (models.build_ebm, ("ebm_small", (30, 28, 1)), r"ebm_small .*divisible by 4"),
        (models.build_ebm, ("ebm_mlp", (8, 8, 1)), r"ebm_mlp needs image_shape \(dim,\)"),
        (models.build_ebm, ("ebm_small", (8, 8)), r"ebm_small needs image_shape"),
        (models.build_generator, ("gen_sngan32", (64, 64, 3)), r"gen_sngan32 .*\(32, 32, C\)"),
        (models.build_generator, ("gen_sngan64", (32, 32, 3)), r"gen_sngan64"),
        (models.build_generator, ("gen_sngan128", (32, 32, 3)), r"gen_sngan128"),
        (models.build_generator, ("gen_small", (9, 8, 1)), r"gen_small .*divisible by 4"),
        (models.build_classifier, ("wrn28_10", (30, 30, 3), 10), r"wrn28_10 .*divisible by 4"),
        (models.build_classifier, ("small_cnn", (6, 6, 1), 10), r"small_cnn .*divisible by 4"),
    ]
    for fn, args, pattern in cases:
      with self.assertRaisesRegex(ValueError, pattern, msg=str(args)):
        fn(*args)

  def test_wrn28_10_is_fixed_and_wrn_takes_depth(self):
    with self.assertRaisesRegex(ValueError, r"wrn28_10 has depth 28 and widen_factor 10"):
      models.build_classifier("wrn28_10", (32, 32, 3), 10, depth=10)
    model = models.build_classifier("wrn", (32, 32, 3), 10, depth=10, widen_factor=1)
    self.assertEqual(model.name, "wrn10_1")
    self.assertEqual(model(tf.zeros([2, 32, 32, 3]), training=False).shape, (2, 10))


class BuildTest(tf.test.TestCase, parameterized.TestCase):

  def test_reference_sizes_by_name(self):
    self.assertEqual(models.build_ebm("ebm_sngan32", (32, 32, 3)).count_params(), 4_204_800)
    self.assertEqual(models.build_ebm("ebm_biggan224", (224, 224, 3)).output_shape, (None, 1))
    self.assertEqual(models.build_classifier("wrn28_10", (32, 32, 3), 10).output_shape,
                     (None, 10))

  @parameterized.parameters(*SMALL_EBMS, ("ebm_sngan32", (32, 32, 3)))
  def test_energy_fn(self, name, shape):
    model = models.build_ebm(name, shape)
    energy = models.energy_fn(model)
    x = tf.random.stateless_uniform((3,) + shape, [1, 2], -1, 1)
    with tf.GradientTape() as tape:
      tape.watch(x)
      e = energy(x)
      total = tf.reduce_sum(e)
    self.assertEqual(e.shape, (3,))
    self.assertEqual(e.dtype, tf.float32)
    self.assertAllClose(e, model(x, training=False)[:, 0])
    grad = tape.gradient(total, x).numpy()
    self.assertTrue(np.all(np.isfinite(grad)))
    self.assertGreater(np.max(np.abs(grad)), 0.0)

  def test_energy_fn_in_tf_function_with_unknown_batch(self):
    energy = models.energy_fn(models.build_ebm("ebm_small", (8, 8, 1)))
    f = tf.function(energy, input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32)])
    self.assertEqual(f(tf.zeros([5, 8, 8, 1])).shape, (5,))

  def test_energy_fn_rejects_wrong_shapes(self):
    energy = models.energy_fn(models.build_ebm("ebm_small", (8, 8, 1)))
    with self.assertRaisesRegex(ValueError, r"ebm_small expects inputs of shape "
                                r"\[batch, 8, 8, 1\]; got \[2, 28, 28, 1\]"):
      energy(tf.zeros([2, 28, 28, 1]))
    with self.assertRaisesRegex(ValueError, r"got \[8, 8, 1\]"):
      energy(tf.zeros([8, 8, 1]))

  @parameterized.parameters(("gen_small", (8, 8, 1), None, 16), ("gen_small", (28, 28, 1), 4, 4),
                            ("gen_sngan32", (32, 32, 3), None, 128))
  def test_generators(self, name, shape, latent_dim, expected_dim):
    gen = models.build_generator(name, shape, latent_dim)
    self.assertEqual(models.generator_latent_dim(gen), expected_dim)
    z = models.sample_latents([3, 4], 2, models.generator_latent_dim(gen))
    x = gen(z, training=True).numpy()
    self.assertEqual(x.shape, (2,) + shape)
    self.assertTrue(np.all(np.abs(x) <= 1.0))

  def test_bad_latent_dim(self):
    with self.assertRaisesRegex(ValueError, r"latent_dim must be a positive int; got 0"):
      models.build_generator("gen_small", (8, 8, 1), 0)

  @parameterized.parameters(("small_cnn", {}, 128), ("wrn", dict(depth=10, widen_factor=1), 64))
  def test_feature_model(self, name, kwargs, dim):
    clf = models.build_classifier(name, (8, 8, 1), 10, **kwargs)
    feats = models.feature_model(clf)
    x = tf.random.stateless_uniform([3, 8, 8, 1], [5, 6], -1, 1)
    f = feats(x)
    self.assertEqual(f.shape, (3, dim))
    dense = clf.get_layer("logits")
    self.assertAllClose(clf(x), f @ dense.kernel + dense.bias, rtol=1e-5, atol=1e-5)
    self.assertTrue(feats.get_layer("features") is clf.get_layer("features"))  # shared weights

  def test_feature_model_needs_features_layer(self):
    with self.assertRaisesRegex(ValueError, r"no layer named 'features'"):
      models.feature_model(models.build_ebm("ebm_small", (8, 8, 1)))

  def test_mixed_bfloat16_outputs_are_float32(self):
    dt = "mixed_bfloat16"
    for name, shape in SMALL_EBMS:
      model = models.build_ebm(name, shape, dtype=dt)
      self.assertEqual(model.layers[1].compute_dtype, "bfloat16")
      self.assertEqual(models.energy_fn(model)(tf.zeros((2,) + shape)).dtype, tf.float32)
    gen = models.build_generator("gen_small", (8, 8, 1), dtype=dt)
    self.assertEqual(gen(tf.zeros([2, 16]), training=True).dtype, tf.float32)
    clf = models.build_classifier("small_cnn", (8, 8, 1), 10, dtype=dt)
    self.assertEqual(clf(tf.zeros([2, 8, 8, 1])).dtype, tf.float32)


if __name__ == "__main__":
  tf.test.main()
