"""Tests of the servable purifier module, in-process (export and serving are tested elsewhere)."""

import numpy as np
import tensorflow as tf

from ebm_tf.defense import purify
from ebm_tf.mcmc import langevin
from export import purifier_module
from export import testing_utils


def _seed(a, b):
  return tf.constant([a, b], tf.int64)


class PurifierModuleTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.module = testing_utils.tiny_module(with_classifier=True)
    cls.config = cls.module.config
    cls.ebm = cls.module._nets.ebm  # pylint: disable=protected-access
    cls.classifier = cls.module._nets.classifier  # pylint: disable=protected-access
    cls.x = testing_utils.images(3, seed=5, low=-0.9, high=0.9)

  def test_output_shapes_and_dtypes(self):
    out = self.module.serve(self.x, _seed(1, 2), tf.constant(2), tf.constant(2))
    self.assertEqual(sorted(out), ["class_ids", "energies", "logits", "purified"])
    self.assertEqual(out["purified"].shape, (3, 8, 8, 1))
    self.assertEqual(out["energies"].shape, (3,))
    self.assertEqual(out["logits"].shape, (3, testing_utils.NUM_CLASSES))
    self.assertEqual(out["class_ids"].dtype, tf.int64)
    self.assertAllEqual(out["class_ids"], np.argmax(out["logits"], axis=-1))

  def test_same_seed_same_output_other_seed_differs(self):
    a = self.module.serve(self.x, _seed(3, 4), tf.constant(4), tf.constant(1))
    b = self.module.serve(self.x, _seed(3, 4), tf.constant(4), tf.constant(1))
    c = self.module.serve(self.x, _seed(3, 5), tf.constant(4), tf.constant(1))
    self.assertAllEqual(a["purified"], b["purified"])
    self.assertAllEqual(a["logits"], b["logits"])
    self.assertGreater(np.abs(a["purified"] - c["purified"]).max(), 1e-4)

  def test_one_step_is_the_langevin_update(self):
    # Oracle: x - (eps^2 / 2) grad(sum E / T) + eps * xi with xi the sampler's documented
    # stateless noise for step 0, computed here with a plain GradientTape.
    eps, temp = self.config.step_size, self.config.temperature
    seed = _seed(11, 12)
    x = tf.constant(self.x)
    with tf.GradientTape() as tape:
      tape.watch(x)
      total = tf.reduce_sum(self.ebm(x, training=False)) / temp
    xi = tf.random.stateless_normal(x.shape, seed=tf.random.experimental.stateless_fold_in(
        seed, tf.constant(0, tf.int32)))
    expected = x - 0.5 * eps ** 2 * tape.gradient(total, x) + eps * xi
    out = self.module.purify(x, seed, tf.constant(1))
    self.assertAllClose(out["purified"], expected, rtol=1e-5, atol=1e-6)
    self.assertAllClose(out["energies"], self.ebm(expected, training=False)[:, 0], rtol=1e-4,
                        atol=1e-6)

  def test_zero_steps_returns_the_input(self):
    out = self.module.serve(self.x, _seed(0, 0), tf.constant(0), tf.constant(2))
    self.assertAllEqual(out["purified"], self.x)
    self.assertAllClose(out["energies"], self.ebm(self.x)[:, 0], rtol=1e-6, atol=1e-7)
    self.assertAllClose(out["logits"], self.classifier(self.x), rtol=1e-5, atol=1e-6)

  def test_logits_are_averaged_over_independent_repeats(self):
    repeats, steps, seed = 3, 2, _seed(7, 8)
    out = self.module.serve(self.x, seed, tf.constant(steps), tf.constant(repeats))
    chains = langevin.langevin_sample(
        lambda z: self.ebm(z, training=False), np.tile(self.x, [repeats, 1, 1, 1]), seed,
        num_steps=steps, step_size=self.config.step_size,
        temperature=self.config.temperature).samples.numpy().reshape((repeats,) + self.x.shape)
    self.assertGreater(np.abs(chains[0] - chains[1]).max(), 1e-4)  # Repeats are independent.
    expected = np.mean([self.classifier(c).numpy() for c in chains], axis=0)
    self.assertAllClose(out["logits"], expected, rtol=1e-5, atol=1e-6)
    self.assertAllClose(out["purified"], chains[0], rtol=1e-6, atol=1e-6)

  def test_agrees_with_the_library_eot_classifier(self):
    # ebm_tf.defense.purify is the library's purification + EOT classifier (same chain layout).
    repeats, steps, seed = 2, 2, _seed(9, 9)
    out = self.module.serve(self.x, seed, tf.constant(steps), tf.constant(repeats))
    kwargs = dict(num_steps=steps, step_size=self.config.step_size,
                  temperature=self.config.temperature, num_repeats=repeats)
    energy = lambda z: self.ebm(z, training=False)
    self.assertAllClose(out["logits"], purify.eot_logits(self.classifier, energy, self.x, seed,
                                                         **kwargs), rtol=1e-5, atol=1e-6)
    self.assertAllClose(out["purified"], purify.purify(energy, self.x, seed, **kwargs)[0],
                        rtol=1e-6, atol=1e-6)

  def test_defaults(self):
    out = self.module.serve(self.x)
    explicit = self.module.serve(self.x, _seed(0, 0), tf.constant(self.config.default_num_steps),
                                 tf.constant(self.config.default_num_repeats))
    self.assertAllEqual(out["purified"], explicit["purified"])

  def test_uint8_variant_matches_the_float_signature(self):
    u8 = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1)).astype(np.uint8)
    out = self.module.serve_uint8(u8, _seed(1, 1), tf.constant(2), tf.constant(1))
    ref = self.module.serve(u8.astype(np.float32) / 127.5 - 1.0, _seed(1, 1), tf.constant(2),
                            tf.constant(1))
    self.assertAllClose(out["purified"], ref["purified"], rtol=1e-6, atol=1e-6)
    expected_u8 = np.round((np.clip(ref["purified"], -1, 1) + 1) * 127.5).astype(np.uint8)
    self.assertAllEqual(out["purified_uint8"], expected_u8)

  def test_energy_signature(self):
    self.assertAllClose(self.module.energy(self.x)["energies"], self.ebm(self.x)[:, 0],
                        rtol=1e-6, atol=1e-7)

  def test_batchable_signature_is_batch_invariant_bitwise(self):
    # Each of 64 images purified alone equals the same image inside the batch of 64, bitwise
    # (one device): per-image seeds, per-image forward passes. 40 steps cross a noise block.
    module = testing_utils.tiny_module(with_classifier=True, max_batch_size=64,
                                       max_num_steps=40, batchable_num_steps=40,
                                       batchable_num_repeats=2)
    x = testing_utils.images(64, seed=21, low=-0.9, high=0.9)
    seeds = np.stack([np.arange(64), np.full(64, 3)], axis=1).astype(np.int64)
    batch = {k: v.numpy() for k, v in module.purify_batchable(x, seeds).items()}
    self.assertEqual(sorted(batch), ["class_ids", "energies", "logits", "purified"])
    self.assertEqual(batch["purified"].shape, (64, 8, 8, 1))
    self.assertEqual(batch["logits"].shape, (64, testing_utils.NUM_CLASSES))
    for i in range(64):
      alone = module.purify_batchable(x[i:i + 1], seeds[i:i + 1])
      for name, value in alone.items():
        self.assertAllEqual(value[0], batch[name][i], msg=f"{name} of image {i}")
    # Another company and order: the same rows.
    order = np.array([63, 5, 17, 0])
    mixed = module.purify_batchable(x[order], seeds[order])
    self.assertAllEqual(mixed["purified"], batch["purified"][order])
    self.assertAllEqual(mixed["logits"], batch["logits"][order])
    # Chains really move and differ per seed.
    self.assertGreater(np.abs(batch["purified"] - x).max(), 1e-3)
    twin = module.purify_batchable(x[:1], seeds[1:2])["purified"]
    self.assertGreater(np.abs(twin[0] - batch["purified"][0]).max(), 1e-4)

  def test_batchable_signature_agrees_with_the_library(self):
    # Oracle: ebm_tf.defense.purify with per-image seeds and the EOT mean of the classifier's logits.
    module = testing_utils.tiny_module(with_classifier=True, batchable_num_steps=3,
                                       batchable_num_repeats=2)
    seeds = np.array([[1, 2], [3, 4], [5, 6]], np.int64)
    out = module.purify_batchable(self.x, seeds)
    energy = lambda z: module._nets.ebm(z, training=False)  # pylint: disable=protected-access
    kwargs = dict(num_steps=3, step_size=self.config.step_size,
                  temperature=self.config.temperature, num_repeats=2)
    purified = purify.purify(energy, self.x, seeds, **kwargs)
    self.assertAllClose(out["purified"], purified[0], rtol=1e-6, atol=1e-6)
    logits = purify.mean_logits(module._nets.classifier, purified)  # pylint: disable=protected-access
    self.assertAllClose(out["logits"], logits, rtol=1e-5, atol=1e-6)
    self.assertAllClose(out["energies"], energy(purified[0])[:, 0], rtol=1e-5, atol=1e-6)
    self.assertAllEqual(out["class_ids"], np.argmax(logits, -1))

  def test_batchable_signature_rejects_bad_seeds(self):
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                r"seeds must be a int64 matrix of shape \[batch, 2\].*\[2 2\]"):
      self.module.purify_batchable(self.x, np.zeros([2, 2], np.int64))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r"must be in \[-1, 1\]"):
      self.module.purify_batchable(self.x * 3, np.zeros([3, 2], np.int64))

  def test_bad_requests_raise_invalid_argument(self):
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r"must be in \[-1, 1\]"):
      self.module.serve(self.x * 3)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r"num_steps must be in \[0, 20\]"):
      self.module.purify(self.x, _seed(0, 0), tf.constant(21))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r"num_repeats must be in \[1, 4\]"):
      self.module.serve(self.x, _seed(0, 0), tf.constant(1), tf.constant(5))

  def test_clip_mode_clips_instead_of_rejecting(self):
    module = testing_utils.tiny_module(with_classifier=False, input_range="clip")
    x = self.x * 3
    clipped = module.purify(x, _seed(1, 1), tf.constant(0))
    self.assertAllEqual(clipped["purified"], np.clip(x, -1, 1))

  def test_without_classifier(self):
    module = testing_utils.tiny_module(with_classifier=False)
    self.assertFalse(module.has_classifier)
    self.assertIs(module.serve, module.purify)
    self.assertEqual(module.signature_input_names()["serving_default"],
                     ("images", "seed", "num_steps"))
    out = module.serve_uint8(np.zeros([1, 8, 8, 1], np.uint8), _seed(0, 0), tf.constant(1))
    self.assertEqual(sorted(out), ["energies", "purified", "purified_uint8"])

  def test_tracks_network_variables_not_keras_models(self):
    expected = len(self.ebm.variables) + len(self.classifier.variables)
    self.assertLen(self.module.variables, expected)

  def test_config_validation(self):
    config = testing_utils.tiny_config
    with self.assertRaisesRegex(ValueError, "image_shape must be three positive ints"):
      config(image_shape=(8, 8))
    with self.assertRaisesRegex(ValueError, "step_size must be a number > 0"):
      config(step_size=0.0)
    with self.assertRaisesRegex(ValueError, r"default_num_steps must be in \[0, max_num_steps"):
      config(default_num_steps=30)
    with self.assertRaisesRegex(ValueError, r"batchable_num_steps must be an int in \[0, 20\]"):
      config(batchable_num_steps=21)
    self.assertEqual(config().batchable_num_repeats, config().default_num_repeats)
    with self.assertRaisesRegex(ValueError, "input_range must be one of"):
      config(input_range="wrap")
    with self.assertRaisesRegex(ValueError, r"takes images of shape \(8, 8, 1\)"):
      purifier_module.PurifierModule(self.ebm, config(image_shape=(16, 16, 1)))


if __name__ == "__main__":
  tf.test.main()
