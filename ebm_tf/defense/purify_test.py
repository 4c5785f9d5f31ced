"""Tests for ebm_tf.defense.purify: the closed-form law of Langevin purification on a quadratic energy,
the [R, B, ...] layout, logit (not probability) averaging, tracing, and argument checks."""

import re

import keras
import numpy as np
from absl.testing import parameterized
import tensorflow as tf

from ebm_tf.defense import purify

_SEED = tf.constant([11, 12], tf.int32)


def _quadratic_energy(temperature, a):
  """E(x) = T * a * ||x||^2 / 2, so U = E/T has gradient a * x and one ULA step is
  x <- (1 - (eps^2/2) a) x + eps * xi."""
  return lambda x: temperature * a * 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])


def _zero_energy(x):
  return 0.0 * tf.reduce_sum(x, axis=[1, 2, 3])


def _images(batch, shape=(4, 4, 1), seed=(1, 2)):
  return tf.random.stateless_uniform([batch, *shape], seed, minval=-1.0, maxval=1.0)


class PurifyTest(tf.test.TestCase, parameterized.TestCase):

  def test_quadratic_energy_matches_closed_form_law_without_clipping(self):
    # After K steps from x0: x_K ~ N(rho^K x0, eps^2 sum_{j<K} rho^(2j)), rho = 1 - eps^2 a / 2.
    temperature, a, eps, steps, reps = 1e-4, 20.0, 0.1, 3, 400
    rho = 1.0 - 0.5 * eps**2 * a
    x0 = np.stack([np.full((4, 4, 1), 1.0), np.linspace(-1, 1, 16).reshape(4, 4, 1)])
    x0 = x0.astype(np.float32)
    out = purify.purify(_quadratic_energy(temperature, a), x0, _SEED, num_steps=steps,
                        step_size=eps, temperature=temperature, num_repeats=reps).numpy()
    self.assertEqual(out.shape, (reps, 2, 4, 4, 1))
    mean = rho**steps * x0
    std = eps * np.sqrt(sum(rho**(2 * j) for j in range(steps)))
    z = (out - mean[None]) / std
    # Per pixel over the R repeats (each image keeps its own mean: the [R, B] layout).
    self.assertLess(np.max(np.abs(z.mean(axis=0))), 5.0 / np.sqrt(reps))
    # Pooled: 12,800 standardised values.
    self.assertAllClose(z.mean(), 0.0, atol=4.0 / np.sqrt(z.size))
    self.assertAllClose(z.var(), 1.0, atol=0.05)
    # No pixel clamp: chains started at 1 leave [-1, 1] (P(x_K > 1) is about 5% here).
    self.assertGreater(np.mean(out[:, 0] > 1.0), 0.01)

  def test_seed_controls_the_noise(self):
    x = _images(3)
    kwargs = dict(num_steps=2, step_size=0.1, temperature=1.0, num_repeats=2)
    a = purify.purify(_zero_energy, x, _SEED, **kwargs)
    b = purify.purify(_zero_energy, x, _SEED, **kwargs)
    c = purify.purify(_zero_energy, x, _SEED + 1, **kwargs)
    self.assertAllEqual(a, b)
    self.assertNotAllClose(a, c)
    self.assertNotAllClose(a[0], a[1])  # the repeats are independent chains

  def test_per_image_seeds_fold_the_repeat_into_each_images_seed(self):
    # Oracle: repeat r of image i is the sampler's chain seeded fold_in(seeds[i], r), run alone.
    from ebm_tf.mcmc import langevin  # pylint: disable=g-import-not-at-top
    energy = _quadratic_energy(1.0, 5.0)
    x = _images(3)
    seeds = tf.constant([[1, 5], [2, 5], [1, 6]], tf.int64)
    kwargs = dict(num_steps=3, step_size=0.1, temperature=1.0)
    out = purify.purify(energy, x, seeds, num_repeats=2, **kwargs)
    self.assertEqual(out.shape, (2, 3, 4, 4, 1))
    for r in range(2):
      for i in range(3):
        chain_seed = tf.random.experimental.stateless_fold_in(seeds[i], r)[None]
        alone = langevin.langevin_sample(energy, x[i:i + 1], chain_seed, **kwargs).samples
        self.assertAllEqual(out[r, i], alone[0])
    # An image's purifications do not depend on the rest of the batch.
    self.assertAllEqual(purify.purify(energy, x[1:2], seeds[1:2], num_repeats=2, **kwargs),
                        out[:, 1:2])
    self.assertNotAllClose(out[0], out[1])
    with self.assertRaisesRegex(ValueError, r"per-image seeds must be .* \[batch, 2\]"):
      purify.per_image_chain_seeds(tf.zeros([3, 3], tf.int64), 1)

  def test_zero_steps_returns_the_images_repeated(self):
    x = _images(3)
    out = purify.purify(_zero_energy, x, _SEED, num_steps=0, step_size=0.1, temperature=1.0,
                        num_repeats=4)
    self.assertAllEqual(out, tf.repeat(x[None], 4, axis=0))

  def test_make_purifier_matches_purify_and_traces_once(self):
    energy = _quadratic_energy(0.5, 3.0)
    purifier = purify.make_purifier(energy, (4, 4, 1))
    for batch, steps, eps, reps in [(3, 2, 0.1, 2), (5, 4, 0.05, 3), (1, 0, 0.2, 1)]:
      x = _images(batch)
      expected = purify.purify(energy, x, _SEED, num_steps=steps, step_size=eps,
                               temperature=0.5, num_repeats=reps)
      got = purifier(x, _SEED, steps, eps, 0.5, reps)
      self.assertAllClose(got, expected, atol=1e-6)
    self.assertEqual(purifier.experimental_get_tracing_count(), 1)

  def test_eot_averages_logits_not_probabilities(self):
    # One purification step on a flat energy: purified = x + eps * xi. The classifier gives
    # class 0 a logit of +30 on the repeat with the largest mean pixel and -3 on the others, so
    # the mean logit of class 0 is (30 - 3 (R - 1)) / R = 8 > 0 (class 0) while the mean
    # probability of class 0 is (1 + 2 sigmoid(-3)) / 3 < 1/2 (class 1).
    x = _images(1, seed=(5, 6))
    kwargs = dict(num_steps=1, step_size=0.5, temperature=1.0, num_repeats=3)
    purified = purify.purify(_zero_energy, x, _SEED, **kwargs).numpy()
    means = np.sort(purified.mean(axis=(1, 2, 3, 4)))
    threshold = 0.5 * (means[-1] + means[-2])

    def classifier(images):
      logit0 = tf.where(tf.reduce_mean(images, axis=[1, 2, 3]) > threshold, 30.0, -3.0)
      return tf.stack([logit0, tf.zeros_like(logit0)], axis=1)

    logits = purify.eot_logits(classifier, _zero_energy, x, _SEED, **kwargs)
    per_repeat = np.stack([classifier(purified[r]).numpy() for r in range(3)])
    self.assertAllClose(logits, per_repeat.mean(axis=0))
    self.assertAllClose(logits, [[8.0, 0.0]])
    mean_probabilities = tf.nn.softmax(per_repeat, axis=-1).numpy().mean(axis=0)
    self.assertEqual(np.argmax(mean_probabilities, axis=-1)[0], 1)
    self.assertAllEqual(purify.eot_predict(classifier, _zero_energy, x, _SEED, **kwargs), [0])

  def test_make_eot_logits_matches_and_traces_once(self):
    weights = tf.random.stateless_normal([16, 5], (3, 4))

    def classifier(images):
      return tf.reshape(images, [-1, 16]) @ weights

    energy = _quadratic_energy(1.0, 2.0)
    logits_fn = purify.make_eot_logits(classifier, energy, (4, 4, 1))
    for batch, reps in [(2, 3), (4, 1)]:
      x = _images(batch)
      expected = purify.eot_logits(classifier, energy, x, _SEED, num_steps=2, step_size=0.1,
                                   temperature=1.0, num_repeats=reps)
      self.assertAllClose(logits_fn(x, _SEED, 2, 0.1, 1.0, reps), expected, atol=1e-5)
    self.assertEqual(logits_fn.experimental_get_tracing_count(), 1)

  def test_keras_classifier_runs_in_inference_mode(self):
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dropout(0.9), keras.layers.Dense(3)])
    x = _images(8)
    self.assertAllClose(purify.classify(model, x), model(x, training=False))

  @parameterized.named_parameters(
      ("outside_range", np.full((2, 4, 4, 1), 1.5, np.float32), "[-1, 1]"),
      ("wrong_rank", np.zeros((4, 4, 1), np.float32), "shape [batch, height, width, channels]"),
      ("integer_dtype", np.zeros((2, 4, 4, 1), np.int32), "dtype int32"),
      ("nan", np.full((2, 4, 4, 1), np.nan, np.float32), "finite"),
  )
  def test_bad_images(self, images, message):
    with self.assertRaisesRegex(ValueError, re.escape(message)):
      purify.purify(_zero_energy, images, _SEED, num_steps=1, step_size=0.1, temperature=1.0)

  @parameterized.named_parameters(
      ("zero_repeats", dict(num_repeats=0), "num_repeats must be an integer >= 1"),
      ("negative_repeats", dict(num_repeats=-2), "num_repeats must be an integer >= 1"),
      ("float_repeats", dict(num_repeats=1.5), "num_repeats must be an integer >= 1"),
      ("bool_repeats", dict(num_repeats=True), "num_repeats must be an integer >= 1"),
      ("negative_steps", dict(num_steps=-1), "num_steps must be an integer >= 0"),
      ("zero_step_size", dict(step_size=0.0), "step_size must be a finite number > 0"),
      ("zero_temperature", dict(temperature=0.0), "temperature must be a finite number > 0"),
  )
  def test_bad_settings(self, override, message):
    kwargs = dict(num_steps=1, step_size=0.1, temperature=1.0, num_repeats=1)
    kwargs.update(override)
    with self.assertRaisesRegex(ValueError, message):
      purify.purify(_zero_energy, _images(2), _SEED, **kwargs)

  def test_graph_side_checks(self):
    purifier = purify.make_purifier(_zero_energy, (4, 4, 1))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r"\[-1, 1\]"):
      purifier(2.0 * tf.ones([2, 4, 4, 1]), _SEED, 1, 0.1, 1.0, 1)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "num_repeats must be >= 1"):
      purifier(_images(2), _SEED, 1, 0.1, 1.0, 0)

  def test_bad_image_shape_and_purified_rank(self):
    with self.assertRaisesRegex(ValueError, "image_shape must be"):
      purify.make_purifier(_zero_energy, (4, 4))
    with self.assertRaisesRegex(ValueError, "purified must have shape"):
      purify.mean_logits(lambda x: x, tf.zeros([2, 4, 4, 1]))


if __name__ == "__main__":
  tf.test.main()
