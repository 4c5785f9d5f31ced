"""Tests for ebm_tf.defense.exact_gradient: the segmented exact gradient against plain backprop through
an explicitly unrolled chain (a smooth energy, where it differs from BPDA), bitwise equality
with `purify.purify`, L = 0 against the classifier's gradient, ReLU energies against BPDA, the
graph structure behind the memory bound, and bad arguments."""

import math

import keras
import numpy as np
import tensorflow as tf

from ebm_tf.defense import attacks
from ebm_tf.defense import exact_gradient
from ebm_tf.defense import purify
from ebm_tf.models import build_ebm, energy_fn

_SEED = tf.constant([21, 22], tf.int32)


def _smooth_energy(seed=3):
  """A softplus conv energy on 4x4x1 images: its input Hessian does not vanish."""
  keras.utils.set_random_seed(seed)
  model = keras.Sequential([keras.Input((4, 4, 1)),
                            keras.layers.Conv2D(3, 3, padding="same", activation="softplus"),
                            keras.layers.Flatten(), keras.layers.Dense(1, use_bias=False)])
  return lambda x: model(x, training=False)[:, 0]


def _objective(purified):
  return tf.reduce_sum(tf.sin(3.0 * purified))


def _rel(a, b):
  return float(np.linalg.norm(np.ravel(a - b)) / np.linalg.norm(np.ravel(b)))


class ExactGradientTest(tf.test.TestCase):

  def test_matches_unrolled_backprop_and_purify_bitwise(self):
    energy = _smooth_energy()
    temperature, eps, steps, reps = 0.05, 0.2, 20, 2
    x = tf.random.stateless_uniform([3, 4, 4, 1], (5, 6), -1.0, 1.0)
    settings = dict(num_steps=steps, step_size=eps, temperature=temperature, num_repeats=reps)

    @tf.function
    def exact(x, segment_length):
      with tf.GradientTape() as tape:
        tape.watch(x)
        out = exact_gradient.exact_gradient_purify(energy, x, _SEED, segment_length=segment_length,
                                                   **settings)
        objective = _objective(out)
      return out, tape.gradient(objective, x)

    @tf.function
    def bpda(x):
      with tf.GradientTape() as tape:
        tape.watch(x)
        objective = _objective(attacks.bpda_purify(energy, x, _SEED, **settings))
      return tape.gradient(objective, x)

    # Independent oracle: the update written out in Python, differentiated by an outer tape.
    with tf.GradientTape() as tape:
      tape.watch(x)
      chains = tf.tile(x, [reps, 1, 1, 1])
      for t in range(steps):
        with tf.GradientTape() as inner:
          inner.watch(chains)
          potential = tf.reduce_sum(energy(chains)) / temperature
        noise = tf.random.stateless_normal(
            tf.shape(chains), tf.random.experimental.stateless_fold_in(_SEED, t))
        chains = chains - 0.5 * eps**2 * inner.gradient(potential, chains) + eps * noise
      objective = _objective(chains)
    oracle = tape.gradient(objective, x).numpy()

    purified = tf.function(lambda x: purify.purify(energy, x, _SEED, **settings))(x).numpy()
    # k = 6 does not divide 20 (a short last segment); k = 20 is one segment.
    for segment_length in (6, 20):
      out, grad = exact(x, segment_length)
      self.assertAllEqual(out, purified)  # bitwise: verification sees the same chains
      self.assertLess(_rel(grad.numpy(), oracle), 1e-5, f"segment_length={segment_length}")
    # The Hessian terms matter here: BPDA's identity Jacobian gives another gradient.
    self.assertGreater(_rel(bpda(x).numpy(), oracle), 0.05)

  def test_zero_steps_is_the_classifier_gradient(self):
    weights = tf.random.stateless_normal([16, 3], (7, 8))
    classifier = lambda x: tf.tanh(tf.reshape(x, [-1, 16]) @ weights)
    energy = _smooth_energy()
    x = tf.random.stateless_uniform([2, 4, 4, 1], (9, 9), -1.0, 1.0)
    labels = tf.constant([0, 2])

    def loss(logits):
      return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

    with tf.GradientTape() as tape:
      tape.watch(x)
      logits = exact_gradient.exact_gradient_eot_logits(
          classifier, energy, x, _SEED, num_steps=0, step_size=0.1, temperature=0.1,
          num_repeats=3)
      value = loss(logits)
    with tf.GradientTape() as reference:
      reference.watch(x)
      expected = loss(classifier(x))
    self.assertAllClose(logits, classifier(x), atol=1e-6)
    self.assertAllClose(value, expected, atol=1e-6)
    # EOT over 3 identical "purifications" averages logits: the gradient is the classifier's.
    self.assertAllClose(tape.gradient(value, x), reference.gradient(expected, x), atol=1e-6)

  def test_relu_energy_gives_bpda_gradient(self):
    # ebm_small is piecewise linear: Hessian(E) = 0 almost everywhere, every step Jacobian is I.
    keras.utils.set_random_seed(1)
    energy = energy_fn(build_ebm("ebm_small", (8, 8, 1), width=4))
    x = tf.random.stateless_uniform([2, 8, 8, 1], (3, 4), -1.0, 1.0)
    settings = dict(num_steps=12, step_size=0.05, temperature=0.01, num_repeats=2)
    c = tf.random.stateless_normal([2, 2, 8, 8, 1], (5, 5))

    @tf.function
    def grads(x):
      with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        exact = tf.reduce_sum(c * exact_gradient.exact_gradient_purify(energy, x, _SEED,
                                                                       **settings))
        bpda = tf.reduce_sum(c * attacks.bpda_purify(energy, x, _SEED, **settings))
      return exact, bpda, tape.gradient(exact, x), tape.gradient(bpda, x)

    exact, bpda, exact_grad, bpda_grad = grads(x)
    self.assertAllEqual(exact, bpda)
    self.assertAllClose(exact_grad, bpda_grad, rtol=1e-6, atol=1e-6)
    self.assertAllClose(bpda_grad, tf.reduce_sum(c, axis=0))

  def test_memory_bound_is_structural(self):
    # Autodiff stores nothing per step: the exact gradient's graph has no while-loop
    # accumulators (TensorListPushBack) -- plain backprop through the chain has one per
    # intermediate -- and the kept states are one TensorArray of ceil(L/k) chain states.
    energy = _smooth_energy()
    steps, k = 30, 7
    x = tf.zeros([2, 4, 4, 1])
    settings = dict(num_steps=steps, step_size=0.1, temperature=0.1)

    def graph_ops(purifier):
      @tf.function
      def value_and_grad(x):
        with tf.GradientTape() as tape:
          tape.watch(x)
          objective = _objective(purifier(x))
        return tape.gradient(objective, x)
      graph_def = value_and_grad.get_concrete_function(x).graph.as_graph_def()
      nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
      return nodes

    exact_nodes = graph_ops(lambda x: exact_gradient.exact_gradient_purify(
        energy, x, _SEED, segment_length=k, **settings))
    unrolled_nodes = graph_ops(lambda x: attacks.full_gradient_purify(energy, x, _SEED,
                                                                      **settings))
    self.assertNotIn("TensorListPushBack", {n.op for n in exact_nodes})
    self.assertIn("TensorListPushBack", {n.op for n in unrolled_nodes})
    self.assertEqual(exact_gradient.segment_starts(steps, k), [0, 7, 14, 21, 28])
    self.assertEqual(exact_gradient.kept_states(steps, k), math.ceil(steps / k) + k)
    self.assertEqual(exact_gradient.kept_states(1000, 32), 32 + 32)
    self.assertEqual(exact_gradient.default_segment_length(1000), 32)
    self.assertEqual(exact_gradient.default_segment_length(2000), 45)
    self.assertEqual(exact_gradient.default_segment_length(0), 1)

  def test_runs_in_the_pgd_loop(self):
    weights = tf.random.stateless_normal([16, 3], (7, 8))
    classifier = lambda x: tf.reshape(x, [-1, 16]) @ weights
    x = tf.random.stateless_uniform([4, 4, 4, 1], (9, 9), -1.0, 1.0)
    y = np.argmax(classifier(x), -1)  # the clean images are classified correctly
    kwargs = dict(eps_255=32, step_size_255=16, adv_steps=2, purify_steps=4,
                  purify_step_size=0.1, purify_temperature=0.5, eot_attack_reps=2,
                  eot_defense_reps=2, return_trajectory=True)
    # A ReLU energy: the exact attack takes BPDA's steps.
    keras.utils.set_random_seed(2)
    relu = keras.Sequential([keras.Input((4, 4, 1)),
                             keras.layers.Conv2D(3, 3, padding="same", activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(1, use_bias=False)])
    relu_energy = lambda x: relu(x, training=False)[:, 0]
    exact = attacks.exact_gradient_eot_pgd(classifier, relu_energy, x, y, _SEED,
                                           segment_length=3, **kwargs)
    bpda = attacks.bpda_eot_pgd(classifier, relu_energy, x, y, _SEED, **kwargs)
    self.assertAllClose(exact.trajectory, bpda.trajectory, atol=1e-6)
    self.assertAllEqual(exact.accuracy_curve, bpda.accuracy_curve)
    self.assertGreater(np.max(np.abs(exact.trajectory[-1] - x)), 0.99 * exact.eps)
    # A smooth energy and another attack method (MIM, from the clean images).
    energy = _smooth_energy()
    mim = dict(kwargs, attack_method="mim", random_start=False)
    exact = attacks.exact_gradient_eot_pgd(classifier, energy, x, y, _SEED, **mim)
    for t, x_adv in enumerate(exact.trajectory):
      attacks.check_perturbation(x_adv, x, exact.eps, f"step {t}")
    with self.assertRaisesRegex(ValueError, "segment_length must be an integer >= 1; got 0"):
      attacks.exact_gradient_eot_pgd(classifier, energy, x, y, _SEED, segment_length=0,
                                     **kwargs)

  def test_bad_arguments(self):
    energy = _smooth_energy()
    x = tf.zeros([1, 4, 4, 1])
    good = dict(num_steps=3, step_size=0.1, temperature=0.1)
    for override, message in ((dict(segment_length=0), "segment_length must be a Python "
                                                       "integer >= 1; got 0"),
                              (dict(num_steps=2.5), "num_steps must be a Python integer >= 0; "
                                                    "got 2.5"),
                              (dict(num_steps=-1), "num_steps must be a Python integer >= 0"),
                              (dict(step_size=0.0), "step_size must be a finite number > 0"),
                              (dict(num_repeats=0), "num_repeats must be an integer >= 1"),
                              (dict(images=x + 2.0), r"images must have values in \[-1, 1\]")):
      kwargs = dict(good, images=x)
      kwargs.update(override)
      images = kwargs.pop("images")
      with self.subTest(override=list(override)), self.assertRaisesRegex(ValueError, message):
        exact_gradient.exact_gradient_purify(energy, images, _SEED, **kwargs)
    with self.assertRaisesRegex(ValueError, "seed must be an int32/int64 tensor of shape"):
      exact_gradient.exact_gradient_purify(energy, x, [1, 2, 3], **good)


if __name__ == "__main__":
  tf.test.main()
