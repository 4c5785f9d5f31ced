"""Tests for ebm_tf.defense.attacks: BPDA gradients, the permanent-break bookkeeping, the eps-ball and
[-1, 1] at every step, the /255 units, a real attack on an undefended digits classifier, the
attack methods (PGD, BIM, FGM, MIM) against cleverhans' own functions, the full-gradient chain
against closed forms and an independent unrolled chain, and bad arguments.

A small CNN is trained on sklearn digits (8x8x1) once per test class; the EBM is a tiny random
`ebm_small`, which is enough for the mechanics of purification."""

import fractions
import math
import re
from unittest import mock

import keras
import numpy as np
from absl.testing import parameterized
from cleverhans.tf2 import utils as cleverhans_utils
from cleverhans.tf2.attacks.basic_iterative_method import basic_iterative_method
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
from cleverhans.tf2.attacks.momentum_iterative_method import momentum_iterative_method
from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent
from scipy import stats
import tensorflow as tf

from ebm_tf.data import datasets
from ebm_tf.defense import attacks
from ebm_tf.defense import purify
from ebm_tf.models import build_classifier, build_ebm, energy_fn

_SEED = tf.constant([21, 22], tf.int32)
_PURIFY = dict(num_steps=4, step_size=0.05, temperature=0.01)
_CE = tf.nn.sparse_softmax_cross_entropy_with_logits


def _train_classifier(images, labels, steps=150, batch=64):
  keras.utils.set_random_seed(0)
  model = build_classifier("small_cnn", (8, 8, 1), 10)
  optimizer = keras.optimizers.Adam(3e-3)

  @tf.function
  def train_step(x, y):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(_CE(labels=y, logits=model(x, training=True)))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))

  rng = np.random.RandomState(0)
  for _ in range(steps):
    index = rng.randint(0, len(labels), batch)
    train_step(images[index], labels[index])
  return model


class _ScheduledLogits:
  """A fake defended classifier whose predictions follow a schedule, for the bookkeeping tests.

  Image b has all pixels near `_level(b)`, so its id survives small perturbations. Call i of
  the fake gives image b the logits [5, 0, 0] (class 0, the label) or, where schedule[i][b] is
  True, [0, 5, 0]; beyond the schedule the last row repeats. Class 0 also gets 1e-3 * mean(x)
  so that the attack has a gradient.
  """

  def __init__(self, schedule):
    self.schedule = tf.constant(schedule, tf.bool)
    self.calls = tf.Variable(0, dtype=tf.int32)

  def __call__(self, images, unused_seed):
    call = self.calls.assign_add(1) - 1
    row = tf.gather(self.schedule, tf.minimum(call, self.schedule.shape[0] - 1))
    ids = tf.cast(tf.round((tf.reduce_mean(images, axis=[1, 2, 3]) + 0.75) * 4.0), tf.int32)
    wrong = tf.gather(row, ids)
    correct = tf.constant([5.0, 0.0, 0.0])
    logits = tf.where(wrong[:, None], tf.constant([0.0, 5.0, 0.0]), correct)
    bump = 1e-3 * tf.reduce_mean(images, axis=[1, 2, 3])
    return logits + tf.stack([bump, tf.zeros_like(bump), tf.zeros_like(bump)], axis=1)


def _level(b):
  return b / 4.0 - 0.75


def _id_images(batch):
  return np.stack([np.full((8, 8, 1), _level(b), np.float32) for b in range(batch)])


class UnitsAndIntervalsTest(tf.test.TestCase, parameterized.TestCase):

  def test_to_pixel_units(self):
    self.assertAlmostEqual(attacks.to_pixel_units(8), 16.0 / 255.0)
    self.assertAlmostEqual(attacks.to_pixel_units(2.0), 4.0 / 255.0)
    self.assertEqual(attacks.to_pixel_units(0), 0.0)
    with self.assertRaisesRegex(ValueError, "eps_255 must be a finite number >= 0"):
      attacks.to_pixel_units(-1)

  @parameterized.parameters((0, 20), (7, 20), (20, 20), (57, 64), (1, 1))
  def test_wilson_interval_matches_scipy(self, k, n):
    mask = np.arange(n) < k
    acc, lo, hi = attacks.accuracy_with_ci(mask)
    expected = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    self.assertAlmostEqual(acc, k / n)
    self.assertAlmostEqual(lo, expected.low, places=6)
    self.assertAlmostEqual(hi, expected.high, places=6)

  def test_wilson_interval_errors(self):
    with self.assertRaisesRegex(ValueError, "non-empty 1-D"):
      attacks.accuracy_with_ci([])
    with self.assertRaisesRegex(ValueError, "0/1"):
      attacks.accuracy_with_ci([0, 2])
    with self.assertRaisesRegex(ValueError, "confidence"):
      attacks.accuracy_with_ci([1, 0], confidence=1.5)


class BookkeepingTest(tf.test.TestCase, parameterized.TestCase):
  """The protocol's bookkeeping with fake defenses (no networks)."""

  @parameterized.named_parameters(("pgd", True, None), ("mim", False, 1.0))
  def test_broken_stays_broken_without_verification(self, random_start, momentum_decay):
    # Call 0 is the natural evaluation, call t + 1 the evaluation at step t. Image 0 is wrong
    # only at t = 1, image 2 only at t = 3, image 1 never.
    schedule = np.zeros([7, 3], bool)
    schedule[2, 0] = True
    schedule[4, 2] = True
    result = attacks.pgd_attack(_ScheduledLogits(schedule), _id_images(3), [0, 0, 0], _SEED,
                                eps_255=1, step_size_255=0.5, adv_steps=5,
                                random_start=random_start, momentum_decay=momentum_decay,
                                return_trajectory=True)
    self.assertAllEqual(result.broken_at, [1, -1, 3])
    self.assertAllClose(result.accuracy_curve, [1, 1, 2 / 3, 2 / 3, 1 / 3, 1 / 3, 1 / 3])
    self.assertAllEqual(result.robust_correct, [False, True, False])
    self.assertAllEqual(result.broken, [True, False, True])
    self.assertAllEqual(result.adversarial_images[0], result.trajectory[1][0])
    self.assertAllEqual(result.adversarial_images[2], result.trajectory[3][2])
    self.assertAllEqual(result.adversarial_images[1], result.trajectory[-1][1])

  def test_only_verified_breaks_count(self):
    # Attack evaluation t is call t (the natural accuracy comes from the verifier).
    attack = np.zeros([6, 4], bool)
    attack[1, 0] = True  # image 0: attack wrong at t = 1, but the verifier says correct
    attack[2, 1] = True  # image 1: attack wrong at t = 2, verifier agrees -> broken
    # Verifier: call 0 is the natural evaluation (image 3 is naturally wrong); afterwards it
    # gets images 1 and 3 wrong and images 0 and 2 right.
    verify = np.array([[False, False, False, True], [False, True, False, True]])
    result = attacks.pgd_attack(_ScheduledLogits(attack), _id_images(4), [0] * 4, _SEED,
                                eps_255=1, step_size_255=0.5, adv_steps=4,
                                verify_logits_fn=_ScheduledLogits(verify))
    self.assertAllEqual(result.natural_correct, [True, True, True, False])
    self.assertAllEqual(result.broken_at, [-1, 2, -1, -1])
    self.assertAllEqual(result.robust_correct, [True, False, True, False])
    self.assertAllClose(result.accuracy_curve, [0.75, 0.75, 0.75, 0.5, 0.5, 0.5])
    self.assertAllEqual(result.adversarial_images[3], _id_images(4)[3])

    # verify_all re-checks every defended image at every step: image 1 falls at t = 0. With
    # verify_batch_size=1 the natural evaluation takes verifier calls 0-3.
    verify = np.concatenate([np.repeat(verify[:1], 4, axis=0), verify[1:]])
    result = attacks.pgd_attack(_ScheduledLogits(attack), _id_images(4), [0] * 4, _SEED,
                                eps_255=1, step_size_255=0.5, adv_steps=4,
                                verify_logits_fn=_ScheduledLogits(verify), verify_all=True,
                                verify_batch_size=1)
    self.assertAllEqual(result.natural_correct, [True, True, True, False])
    self.assertAllEqual(result.broken_at, [-1, 0, -1, -1])

  def test_check_perturbation_catches_violations(self):
    x = np.zeros([2, 8, 8, 1], np.float32)
    attacks.check_perturbation(x + 0.1, x, 0.1)
    with self.assertRaisesRegex(AssertionError, "eps-ball"):
      attacks.check_perturbation(x + 0.11, x, 0.1)
    with self.assertRaisesRegex(AssertionError, re.escape("[-1, 1]")):
      attacks.check_perturbation(x + 1.01, x + 1.0, 0.1)


class DefenseAttackTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    train_x, train_y = datasets.load_array("digits", "train")
    test_x, test_y = datasets.load_array("digits", "test")
    cls.classifier = _train_classifier(train_x, train_y)
    cls.images, cls.labels = test_x[:100], test_y[:100]
    keras.utils.set_random_seed(1)
    cls.ebm = build_ebm("ebm_small", (8, 8, 1), width=4)

  @property
  def energy(self):
    return energy_fn(self.ebm)

  def _classifier_logits(self, images):
    return self.classifier(images, training=False)

  def test_undefended_pgd_breaks_the_classifier(self):
    result = attacks.undefended_pgd(self.classifier, self.images, self.labels, _SEED,
                                    eps_255=64, step_size_255=16, adv_steps=20,
                                    return_trajectory=True)
    natural = np.mean(np.argmax(self._classifier_logits(self.images), -1) == self.labels)
    self.assertGreater(natural, 0.85)
    self.assertAllClose(result.natural_accuracy, natural)
    self.assertLess(result.robust_accuracy, 0.10)
    self.assertAllEqual(result.accuracy_curve, np.sort(result.accuracy_curve)[::-1])
    self.assertAlmostEqual(result.eps, 128.0 / 255.0)
    for t, x_adv in enumerate(result.trajectory):
      attacks.check_perturbation(x_adv, self.images, result.eps, f"step {t}")
    # The adversarial images of broken points really fool the classifier.
    adv_pred = np.argmax(self._classifier_logits(result.adversarial_images[result.broken]), -1)
    self.assertTrue(np.all(adv_pred != self.labels[result.broken]))

  @parameterized.named_parameters(
      # (method, attack settings, cleverhans oracle for nb_iter steps: model, x, eps, eta, y)
      ("fgm", "fgm", dict(eps_255=32, step_size_255=32, adv_steps=1),
       lambda m, x, eps, eta, n, y: x if n == 0 else fast_gradient_method(
           m, x, eps, np.inf, clip_min=-1.0, clip_max=1.0, y=y, sanity_checks=False)),
      ("bim", "bim", dict(eps_255=32, step_size_255=8, adv_steps=6),
       lambda m, x, eps, eta, n, y: basic_iterative_method(
           m, x, eps, eta, n, np.inf, clip_min=-1.0, clip_max=1.0, y=y, sanity_checks=False)),
      ("pgd_without_random_start", "pgd", dict(eps_255=32, step_size_255=8, adv_steps=6),
       lambda m, x, eps, eta, n, y: projected_gradient_descent(
           m, x, eps, eta, n, np.inf, clip_min=-1.0, clip_max=1.0, y=y, rand_init=False,
           sanity_checks=False)),
      ("mim", "mim", dict(eps_255=32, step_size_255=8, adv_steps=6),
       lambda m, x, eps, eta, n, y: momentum_iterative_method(
           m, x, eps, eta, n, np.inf, clip_min=-1.0, clip_max=1.0, y=y, decay_factor=1.0,
           sanity_checks=False)),
  )
  def test_methods_equal_cleverhans_on_the_undefended_classifier(self, method, settings, oracle):
    # cleverhans maximises softmax cross-entropy on the logits, as pgd_attack does by default.
    # Every iterate t is compared with cleverhans' function run for t iterations (float32
    # rounding of the projection order aside: tolerance 1e-6 on [-1, 1] pixels).
    x, y = tf.constant(self.images[:40]), tf.constant(self.labels[:40])
    result = attacks.undefended_pgd(self.classifier, x, y, _SEED, attack_method=method,
                                    random_start=False, return_trajectory=True, **settings)
    eps = attacks.to_pixel_units(settings["eps_255"])
    eta = attacks.to_pixel_units(settings["step_size_255"])
    model = self._classifier_logits
    self.assertLen(result.trajectory, settings["adv_steps"] + 1)
    robust = np.argmax(model(x), -1) == y
    for t, x_adv in enumerate(result.trajectory):
      expected = oracle(model, x, eps, eta, t, y)
      self.assertAllClose(x_adv, expected, atol=1e-6, rtol=0, msg=f"{method} iterate {t}")
      attacks.check_perturbation(x_adv, x, eps, f"{method} iterate {t}")
      robust &= np.argmax(model(expected), -1) == y
    self.assertGreater(np.max(np.abs(result.trajectory[-1] - x)), 0.99 * eps)
    # Without a defense an image is robust iff the classifier gets every iterate right.
    self.assertAllEqual(result.robust_correct, robust)
    self.assertLess(result.robust_accuracy, result.natural_accuracy - 0.1)

  def test_mim_differs_from_bim_and_stays_in_the_ball(self):
    x, y = self.images[:40], self.labels[:40]
    kwargs = dict(eps_255=32, step_size_255=8, adv_steps=6, random_start=False,
                  return_trajectory=True)
    mim = attacks.undefended_pgd(self.classifier, x, y, _SEED, attack_method="mim", **kwargs)
    bim = attacks.undefended_pgd(self.classifier, x, y, _SEED, attack_method="bim", **kwargs)
    eps = attacks.to_pixel_units(32)
    for t, x_adv in enumerate(mim.trajectory):
      distance = np.max(np.abs(x_adv - x))
      self.assertLessEqual(distance, eps + 1e-6, f"iterate {t}")
      self.assertBetween(float(x_adv.min()), -1.0, 1.0)
      self.assertBetween(float(x_adv.max()), -1.0, 1.0)
    # Step 1 is the same sign step; later the accumulated momentum changes the direction.
    self.assertAllClose(mim.trajectory[1], bim.trajectory[1], atol=1e-6)
    self.assertGreater(np.mean(np.abs(mim.trajectory[-1] - bim.trajectory[-1]) > 1e-3), 0.01)

  def test_bpda_eot_mim_is_cleverhans_mim_on_the_bpda_model(self):
    # The defended attack: cleverhans' MIM driven by a BPDAModel whose call i uses the seed of
    # attack step i (fold_in(fold_in(seed, 2), i)) computes the same iterates.
    x, y = self.images[:12], self.labels[:12]
    seed = tf.constant([5, 9], tf.int32)
    energy = lambda x: 0.005 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])
    purify_settings = dict(purify_steps=3, purify_step_size=0.05, purify_temperature=0.01)
    result = attacks.bpda_eot_pgd(self.classifier, energy, x, y, seed, eps_255=48,
                                  step_size_255=16, adv_steps=3, eot_attack_reps=2,
                                  eot_defense_reps=4, attack_method="mim", random_start=False,
                                  return_trajectory=True, **purify_settings)
    eps, eta = attacks.to_pixel_units(48), attacks.to_pixel_units(16)
    fold = tf.random.experimental.stateless_fold_in
    for t in range(4):
      model = attacks.BPDAModel(self.classifier, energy, fold(seed, 2), num_steps=3,
                                step_size=0.05, temperature=0.01, eot_reps=2)
      expected = momentum_iterative_method(model, tf.constant(x), eps, eta, t, np.inf,
                                           clip_min=-1.0, clip_max=1.0, y=tf.constant(y),
                                           sanity_checks=False)
      self.assertAllClose(result.trajectory[t], expected, atol=1e-5, msg=f"iterate {t}")
      attacks.check_perturbation(result.trajectory[t], x, eps, f"iterate {t}")
    # Verification and permanent breaks as for PGD.
    self.assertAllEqual(result.accuracy_curve, np.sort(result.accuracy_curve)[::-1])
    self.assertAllEqual(result.broken, result.broken_at >= 0)
    for b in np.flatnonzero(result.broken):
      self.assertAllEqual(result.adversarial_images[b], result.trajectory[result.broken_at[b]][b])

  def test_bpda_gradient_is_the_classifier_gradient_at_the_purified_images(self):
    x, y = tf.constant(self.images[:6]), tf.constant(self.labels[:6])
    reps = 3

    def reference(seed):
      """Logits and d loss / d x for BPDA, computed from the purified images directly."""
      purified = purify.purify(self.energy, x, seed, num_repeats=reps, **_PURIFY)
      with tf.GradientTape() as tape:
        tape.watch(purified)
        logits = tf.reduce_mean(tf.stack([self._classifier_logits(purified[r])
                                          for r in range(reps)]), axis=0)
        loss = _CE(labels=y, logits=logits)
      return logits, tf.reduce_sum(tape.gradient(loss, purified), axis=0)

    expected_logits, expected_grad = reference(_SEED)
    with tf.GradientTape() as tape:
      tape.watch(x)
      logits = attacks.bpda_eot_logits(self.classifier, self.energy, x, _SEED, num_repeats=reps,
                                       **_PURIFY)
      loss = _CE(labels=y, logits=logits)
    grad = tape.gradient(loss, x)
    self.assertAllClose(logits, expected_logits, atol=1e-5)
    self.assertAllClose(grad, expected_grad, atol=1e-6)
    # ...and not the gradient at the unpurified images.
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = _CE(labels=y, logits=self._classifier_logits(x))
    self.assertNotAllClose(grad, tape.gradient(loss, x), atol=1e-6)

    # The cleverhans model_fn: call i uses call_seed(i), in cleverhans' own tf.function.
    model = attacks.BPDAModel(self.classifier, self.energy, [3, 4], eot_reps=reps, **_PURIFY)
    grad = cleverhans_utils.compute_gradient(model, _CE, x, y, False)
    self.assertAllClose(grad, reference(model.call_seed(0))[1], atol=1e-6)
    self.assertEqual(int(model.calls.numpy()), 1)
    grad = cleverhans_utils.compute_gradient(model, _CE, x, y, False)
    self.assertAllClose(grad, reference(model.call_seed(1))[1], atol=1e-6)

    # And it drives cleverhans' PGD (each iteration is one more call).
    eps = attacks.to_pixel_units(16)
    x_adv = projected_gradient_descent(model, x, eps, eps / 2, 2, np.inf, clip_min=-1.0,
                                       clip_max=1.0, y=y, rand_init=False, sanity_checks=False)
    attacks.check_perturbation(x_adv, x, eps)
    self.assertGreater(np.max(np.abs(x_adv - x)), 0.9 * eps)
    self.assertEqual(int(model.calls.numpy()), 4)

  def test_bpda_eot_pgd_protocol(self):
    x, y = self.images[:12], self.labels[:12]
    seed = tf.constant([5, 9], tf.int32)
    # A quadratic energy whose scale is a variable: cheap to trace, and the BPDA gradient
    # inside the attack's tf.function must still handle the variables the purifier reads.
    scale = tf.Variable(0.01)
    energy = lambda x: scale * 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])
    result = attacks.bpda_eot_pgd(self.classifier, energy, x, y, seed, eps_255=48,
                                  step_size_255=16, adv_steps=3, purify_steps=3,
                                  purify_step_size=0.05, purify_temperature=0.01,
                                  eot_attack_reps=2, eot_defense_reps=4,
                                  return_trajectory=True)
    fold = tf.random.experimental.stateless_fold_in
    # Natural accuracy: the defense with eot_defense_reps at fold_in(fold_in(seed, 0), 0).
    natural = purify.eot_predict(self.classifier, energy, x, fold(fold(seed, 0), 0),
                                 num_steps=3, step_size=0.05, temperature=0.01, num_repeats=4)
    self.assertAllEqual(result.natural_correct, natural.numpy() == y)
    # Random start: clip(x + eps U[-1, 1], -1, 1) with fold_in(seed, 1).
    eps = attacks.to_pixel_units(48)
    start = tf.clip_by_value(
        x + eps * tf.random.stateless_uniform(x.shape, fold(seed, 1), -1.0, 1.0), -1.0, 1.0)
    self.assertAllClose(result.trajectory[0], start)
    # The eps-ball and [-1, 1] hold along the whole trajectory, and the attack reaches the rim.
    self.assertEqual(result.trajectory.shape, (4, 12, 8, 8, 1))
    for t, x_adv in enumerate(result.trajectory):
      attacks.check_perturbation(x_adv, x, eps, f"step {t}")
    self.assertGreater(np.max(np.abs(result.trajectory[-1] - x)), 0.99 * eps)
    # Bookkeeping.
    curve = result.accuracy_curve
    self.assertLen(curve, 5)
    self.assertAllEqual(curve, np.sort(curve)[::-1])
    self.assertAllClose(curve[0], np.mean(result.natural_correct))
    self.assertAllClose(curve[-1], np.mean(result.robust_correct))
    self.assertAllEqual(result.broken, result.broken_at >= 0)
    self.assertTrue(result.broken.any())
    for b in np.flatnonzero(result.broken):
      self.assertAllEqual(result.adversarial_images[b], result.trajectory[result.broken_at[b]][b])
    for b in np.flatnonzero(result.robust_correct):
      self.assertAllEqual(result.adversarial_images[b], result.trajectory[-1][b])

  @parameterized.named_parameters(
      ("negative_eps", dict(eps_255=-1), "eps_255 must be a finite number >= 0"),
      ("negative_step", dict(step_size_255=-2), "step_size_255 must be a finite number >= 0"),
      ("negative_adv_steps", dict(adv_steps=-1), "adv_steps must be an integer >= 0"),
      ("float_adv_steps", dict(adv_steps=2.5), "adv_steps must be an integer >= 0"),
      ("negative_purify_steps", dict(purify_steps=-1), "purify_steps must be an integer >= 0"),
      ("zero_purify_step_size", dict(purify_step_size=0.0),
       "purify_step_size must be a finite number > 0"),
      ("zero_attack_reps", dict(eot_attack_reps=0), "eot_attack_reps must be an integer >= 1"),
      ("zero_defense_reps", dict(eot_defense_reps=0),
       "eot_defense_reps must be an integer >= 1"),
      ("images_out_of_range", dict(images=np.full((2, 8, 8, 1), 1.2, np.float32)),
       "images must have values in [-1, 1]"),
      ("images_wrong_rank", dict(images=np.zeros((2, 64), np.float32)),
       "images must have shape [batch, height, width, channels]"),
      ("labels_wrong_shape", dict(labels=np.zeros((3,), np.int64)), "labels must be integers of "
       "shape [2]"),
      ("bad_seed", dict(seed=[1, 2, 3]), "seed must be an int32/int64 tensor of shape [2]"),
      ("bad_method", dict(attack_method="cw"),
       "attack_method must be one of ('pgd', 'bim', 'fgm', 'mim', 'apgd'); got 'cw'"),
      ("upper_case_method", dict(attack_method="MIM"), "attack_method must be one of"),
      ("bim_with_random_start", dict(attack_method="bim"),
       "attack_method 'bim' starts from the clean images"),
      ("mim_with_random_start", dict(attack_method="mim", random_start=True),
       "attack_method 'mim' starts from the clean images"),
      ("fgm_two_steps", dict(attack_method="fgm", random_start=False, adv_steps=2,
                             step_size_255=8), "it needs adv_steps=1 and step_size_255 = "
       "eps_255 = 8; got adv_steps=2, step_size_255=8"),
      ("fgm_small_step", dict(attack_method="fgm", random_start=False),
       "it needs adv_steps=1 and step_size_255 = eps_255"),
      ("apgd_other_step", dict(attack_method="apgd"), "attack_method 'apgd' starts with the "
       "step 2 * eps and then sets it itself: it needs step_size_255 = 2 * eps_255 = 16.0 "
       "(--step_size_255); got step_size_255=2"),
  )
  def test_bad_arguments(self, override, message):
    kwargs = dict(images=self.images[:2], labels=self.labels[:2], seed=_SEED, eps_255=8,
                  step_size_255=2, adv_steps=1, purify_steps=1, purify_step_size=0.05,
                  purify_temperature=0.01, eot_attack_reps=1, eot_defense_reps=1)
    kwargs.update(override)
    with self.assertRaisesRegex(ValueError, re.escape(message)):
      attacks.bpda_eot_pgd(self.classifier, self.energy, **kwargs)

  def test_more_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "verify_all=True needs a verify_logits_fn"):
      attacks.pgd_attack(lambda x, s: x[:, 0, 0, :], self.images[:2], self.labels[:2], _SEED,
                         eps_255=8, step_size_255=2, adv_steps=1, verify_all=True)
    with self.assertRaisesRegex(ValueError, "do not depend on the images"):
      attacks.pgd_attack(lambda x, s: tf.zeros([tf.shape(x)[0], 10]), self.images[:2],
                         self.labels[:2], _SEED, eps_255=8, step_size_255=2, adv_steps=1)
    with self.assertRaisesRegex(ValueError, "labels must be < num_classes = 3"):
      attacks.pgd_attack(lambda x, s: tf.reshape(x, [-1, 64])[:, :3], self.images[:2], [0, 3],
                         _SEED, eps_255=8, step_size_255=2, adv_steps=1)
    with self.assertRaisesRegex(ValueError, "momentum_decay must be a finite number >= 0"):
      attacks.pgd_attack(lambda x, s: x[:, 0, 0, :], self.images[:2], self.labels[:2], _SEED,
                         eps_255=8, step_size_255=2, adv_steps=1, momentum_decay=-1.0)
    with self.assertRaisesRegex(ValueError, "attack_method must be one of"):
      attacks.undefended_pgd(self.classifier, self.images[:2], self.labels[:2], _SEED,
                             eps_255=8, step_size_255=2, adv_steps=1, attack_method="deepfool")
    with self.assertRaisesRegex(ValueError, "apgd has its own momentum: momentum_decay must "
                                "be None; got 1.0"):
      attacks.pgd_attack(lambda x, s: x[:, 0, 0, :], self.images[:2], self.labels[:2], _SEED,
                         eps_255=8, step_size_255=16, adv_steps=1, momentum_decay=1.0,
                         apgd=True)
    with self.assertRaisesRegex(ValueError, "eot_reps must be an integer >= 1"):
      attacks.BPDAModel(self.classifier, self.energy, _SEED, eot_reps=0, **_PURIFY)
    with self.assertRaisesRegex(ValueError, "max_chain_steps=50"):
      attacks.full_gradient_eot_pgd(
          self.classifier, self.energy, self.images[:2], self.labels[:2], _SEED, eps_255=8,
          step_size_255=2, adv_steps=1, purify_steps=2000, purify_step_size=0.01,
          purify_temperature=1e-4, eot_attack_reps=1, eot_defense_reps=1)


class FullGradientTest(tf.test.TestCase):
  """The differentiable chain against closed forms and an independent unrolled chain."""

  def test_quadratic_energy_jacobian_is_closed_form(self):
    # E = T a ||x||^2 / 2: each step is x <- rho x + eps xi with rho = 1 - eps^2 a / 2, so
    # d sum(c * x_K) / d x_0 = R c rho^K (BPDA would give R c).
    temperature, a, eps, steps, reps = 0.1, 8.0, 0.1, 6, 3
    energy = lambda x: temperature * a * 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])
    x = tf.random.stateless_uniform([2, 4, 4, 1], (1, 2), -1.0, 1.0)
    c = tf.random.stateless_normal([2, 4, 4, 1], (3, 4))
    with tf.GradientTape() as tape:
      tape.watch(x)
      out = attacks.full_gradient_purify(energy, x, _SEED, num_steps=steps, step_size=eps,
                                         temperature=temperature, num_repeats=reps)
      objective = tf.reduce_sum(out * c[None])
    rho = 1.0 - 0.5 * eps**2 * a
    self.assertAllClose(tape.gradient(objective, x), reps * c * rho**steps, rtol=1e-5)

  def test_matches_purify_and_an_unrolled_differentiable_chain(self):
    # A smooth (softplus) conv energy: its Hessian does not vanish, unlike a ReLU network's.
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4, 4, 1)),
                              keras.layers.Conv2D(3, 3, padding="same", activation="softplus"),
                              keras.layers.Flatten(), keras.layers.Dense(1, use_bias=False)])
    energy = lambda x: model(x, training=False)[:, 0]
    temperature, eps, steps, reps = 0.05, 0.2, 5, 2
    x = tf.random.stateless_uniform([3, 4, 4, 1], (5, 6), -1.0, 1.0)
    with tf.GradientTape() as tape:
      tape.watch(x)
      out = attacks.full_gradient_purify(energy, x, _SEED, num_steps=steps, step_size=eps,
                                         temperature=temperature, num_repeats=reps)
      objective = tf.reduce_sum(tf.sin(3.0 * out))
    grad = tape.gradient(objective, x)
    self.assertAllClose(out, purify.purify(energy, x, _SEED, num_steps=steps, step_size=eps,
                                           temperature=temperature, num_repeats=reps),
                        atol=1e-6)
    # Independent oracle: the update written out, differentiated by an outer tape.
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
      objective = tf.reduce_sum(tf.sin(3.0 * chains))
    self.assertAllClose(grad, tape.gradient(objective, x), atol=1e-5)

  def test_full_gradient_pgd_runs_within_the_ball(self):
    weights = tf.random.stateless_normal([16, 3], (7, 8))
    classifier = lambda x: tf.reshape(x, [-1, 16]) @ weights
    energy = lambda x: 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])
    x = tf.random.stateless_uniform([4, 4, 4, 1], (9, 9), -1.0, 1.0)
    y = np.argmax(classifier(x), -1)
    kwargs = dict(eps_255=32, step_size_255=16, adv_steps=3, purify_steps=4,
                  purify_step_size=0.1, purify_temperature=1.0, eot_attack_reps=2,
                  eot_defense_reps=3, return_trajectory=True)
    # An attack chain shorter than the defense's (every defended image is verified each step).
    result = attacks.full_gradient_eot_pgd(classifier, energy, x, y, _SEED,
                                           attack_purify_steps=2, **kwargs)
    for t, x_adv in enumerate(result.trajectory):
      attacks.check_perturbation(x_adv, x, result.eps, f"step {t}")
    self.assertGreater(np.max(np.abs(result.trajectory[-1] - x)), 0.99 * result.eps)
    self.assertAllEqual(result.accuracy_curve, np.sort(result.accuracy_curve)[::-1])
    with self.assertRaisesRegex(ValueError, "max_chain_steps=3"):
      attacks.full_gradient_purify(energy, x, _SEED, num_steps=4, step_size=0.1,
                                   temperature=1.0, max_chain_steps=3)


class ApgdTest(tf.test.TestCase, parameterized.TestCase):
  """attack_method 'apgd': its schedule, its halving/restart rule, the iterates, an oracle."""

  def test_checkpoints_are_the_closed_form(self):
    # The reference's rounding: w_j = sum_{i < j} max(h0 - i d, m), integer arithmetic.
    for n in range(301):
      h0, d, m = max(22 * n // 100, 1), max(3 * n // 100, 1), max(6 * n // 100, 1)
      expected = [w for w in np.cumsum([max(h0 - i * d, m) for i in range(n + 1)]) if w <= n]
      self.assertEqual(attacks.apgd_checkpoints(n), expected if n else [], f"n = {n}")

  def test_checkpoints_against_the_papers_fractions(self):
    # Croce and Hein: p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06),
    # w_j = ceil(p_j n), exactly (fractions). The reference rounds each increment down: the
    # two agree for n = 100 and 200, not for n = 50.
    def paper(n):
      p = [fractions.Fraction(0), fractions.Fraction(22, 100)]
      while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - fractions.Fraction(3, 100),
                             fractions.Fraction(6, 100)))
      return [w for w in (math.ceil(q * n) for q in p[1:]) if w <= n]
    self.assertEqual(attacks.apgd_checkpoints(100), [22, 41, 57, 70, 80, 87, 93, 99])
    for n in (100, 200):
      self.assertEqual(attacks.apgd_checkpoints(n), paper(n))
    self.assertEqual(attacks.apgd_checkpoints(50), [11, 21, 30, 38, 45])
    self.assertEqual(paper(50), [11, 21, 29, 35, 40, 44, 47, 50])

  def test_halving_rule(self):
    # Four images, h = 4 steps since the last check (rho * h = 3).
    losses = np.array([[0, 0, 0, 0],
                       [1, 1, 1, 1],
                       [2, 2, 2, 2],
                       [3, 1, 3, 3],
                       [4, 2, 4, 4]], np.float32)
    best = np.array([4, 2, 10, 4], np.float32)
    best_at_last = np.array([4, 2, 10, 3], np.float32)
    reduced = np.array([True, True, False, False])
    # 0: 4 increases, reduced last time -> keep. 1: 3 increases <= 3 -> halve (condition 1).
    # 2: 4 increases, but not reduced and no improvement of the best -> halve (condition 2).
    # 3: 4 increases and the best improved -> keep.
    self.assertAllEqual(attacks.apgd_halve(losses, best, best_at_last, reduced),
                        [False, True, True, False])
    # Equal losses are no increase.
    self.assertAllEqual(attacks.apgd_halve(np.ones([5, 1]), [1.0], [0.0], [True]), [True])
    with self.assertRaisesRegex(ValueError, r"losses must have shape \[h \+ 1, B\]"):
      attacks.apgd_halve(np.ones([1, 2]), [1, 1], [1, 1], [True, True])

  def test_halving_and_restart_on_hand_made_losses(self):
    # Two one-pixel images at 0, eps = 0.5, initial step 1. n = 20: checks after
    # evaluations 4, 7, 9, 10, ...
    state = attacks._ApgdState(np.zeros([2, 1, 1, 1], np.float32), 0.5, 1.0, 20)
    losses = [[10, 5], [1, 1], [2, 2], [3, 1], [4, 2], [5, 3], [6, 4], [7, 5]]
    grads = [[1, -1]] + [[1, 1]] * 7
    x, iterates, steps = np.zeros([2, 1, 1, 1], np.float32), [], []
    for t, (loss, grad) in enumerate(zip(losses, grads)):
      x = state.step(t, x, np.asarray(loss, np.float32),
                     np.reshape(np.asarray(grad, np.float32), [2, 1, 1, 1]))
      iterates.append(x.reshape(-1).tolist())
      steps.append(state.step_size.tolist())
    # Image 1 (x1 = -0.5, then momentum): x2 = -0.5 + 0.75 (0.5 + 0.5) + 0.25 (-0.5 - 0).
    self.assertEqual(iterates[0], [0.5, -0.5])
    self.assertEqual(iterates[1], [0.5, 0.125])
    # Check at 4: image 1's window [0, 1, 2, 1, 2] has 3 <= 0.75 * 4 increases: its step halves
    # and it restarts from its best point x0 = 0 with x0's gradient (-1), the momentum term
    # taken from the start of the previous step (x3 = 0.5):
    # z = -0.5, x5 = 0 + 0.75 (-0.5) + 0.25 (0 - 0.5) = -0.5 (the current gradient +1 would
    # give 0.25). Image 0 (4 increases; condition 2 is off at the first check) keeps going.
    self.assertEqual(steps[3], [1.0, 1.0])
    self.assertEqual(steps[4], [1.0, 0.5])
    self.assertEqual(iterates[4], [0.5, -0.5])
    # Check at 7: image 0 (3 of 3 increases) was not halved at 4 and its best (10, at the
    # start) did not improve: condition 2 halves it and it restarts from x0 = 0 with gradient
    # +1: x8 = 0 + 0.75 * 0.5 + 0.25 (0 - 0.5) = 0.25. Image 1 was halved at 4: no condition 2.
    self.assertEqual(steps[7], [0.5, 0.5])
    self.assertEqual(iterates[7][0], 0.25)

  def test_beats_fixed_step_pgd_where_it_oscillates(self):
    # One pixel; CE(label 0) peaks at x = c, and the image is misclassified only within
    # |x - c| < 0.0141. Fixed-step PGD from 0 (steps of 16/255 or 32/255 on [-1, 1]) jumps
    # back and forth over the peak; APGD halves its step and closes in.
    c = 0.3

    def logits_fn(images, unused_seed):
      v = tf.reshape(images, [-1])
      return tf.stack([tf.zeros_like(v), 0.02 - 100.0 * tf.square(v - c)], axis=1)

    def loss(values):
      return np.log1p(np.exp(0.02 - 100.0 * (values - c) ** 2))

    x = np.zeros([1, 1, 1, 1], np.float32)
    kwargs = dict(eps_255=64, adv_steps=50, random_start=False, return_trajectory=True)
    apgd = attacks.pgd_attack(logits_fn, x, [0], _SEED, step_size_255=128, apgd=True, **kwargs)
    apgd_path = apgd.trajectory.reshape(-1)
    for step in (16, 32):
      pgd = attacks.pgd_attack(logits_fn, x, [0], _SEED, step_size_255=step, **kwargs)
      path = pgd.trajectory.reshape(-1)
      self.assertAllClose(path[-4:-2], path[-2:])  # a 2-cycle around c
      self.assertNotAllClose(path[-1], path[-2])
      self.assertTrue(pgd.robust_correct[0], step)
      self.assertGreater(np.max(loss(apgd_path)), np.max(loss(path)) + 0.1)
      self.assertLess(abs(apgd_path[-1] - c), np.min(np.abs(path - c)))
    self.assertFalse(apgd.robust_correct[0])
    self.assertGreater(apgd.broken_at[0], 0)

  def test_iterates_stay_in_the_ball_and_range(self):
    # Images at the edges of [-1, 1] and a random start: every iterate is projected.
    weights = tf.random.stateless_normal([16, 3], (3, 4))
    classifier = lambda images: tf.reshape(images, [-1, 16]) @ weights
    x = tf.sign(tf.random.stateless_uniform([8, 4, 4, 1], (5, 6), -1.0, 1.0))
    x = tf.where(tf.random.stateless_uniform([8, 4, 4, 1], (6, 7)) < 0.3, 0.0, x)
    result = attacks.undefended_pgd(classifier, x, np.argmax(classifier(x), -1), _SEED,
                                    eps_255=32, step_size_255=64, adv_steps=12,
                                    attack_method="apgd", return_trajectory=True)
    eps = attacks.to_pixel_units(32)
    for t, x_adv in enumerate(result.trajectory):
      self.assertLessEqual(np.max(np.abs(x_adv - x)), eps + 1e-6, f"iterate {t}")
      self.assertBetween(float(x_adv.min()), -1.0, 1.0)
      self.assertBetween(float(x_adv.max()), -1.0, 1.0)
    self.assertGreater(np.max(np.abs(result.trajectory[-1] - x)), 0.99 * eps)

  def test_equals_torchattacks_apgd_on_a_mirrored_model(self):
    # Oracle: torchattacks.APGD (a port of fra31/auto-attack's APGDAttack) on a torch copy of
    # a small Keras MLP with the same weights, on [0, 1] images u = (x + 1) / 2. Every input
    # the torch model sees (the start point, then the iterate after each step) is compared
    # with this module's iterates: this checks the schedule, the halving and restarts and the
    # momentum step together.
    try:
      import torch  # pylint: disable=g-import-not-at-top
      import torchattacks  # pylint: disable=g-import-not-at-top
    except ImportError as error:
      self.skipTest(f"torchattacks is not installed ({error}); `pip install --no-deps "
                    "torchattacks==3.5.1` (its requirements pin requests~=2.25.1 and pull "
                    "torchvision, hence CUDA torch)")
    images, _ = datasets.load_array("digits", "test")
    x = images[np.flatnonzero(images.reshape(len(images), -1).max(1) == 1.0)[:16]]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10)])
    y = np.argmax(model(x).numpy(), -1).astype(np.int64)
    (k1, b1), (k2, b2) = [layer.get_weights() for layer in model.layers if layer.weights]

    class Mirror(torch.nn.Module):

      def __init__(self):
        super().__init__()
        self.hidden, self.out, self.seen = torch.nn.Linear(64, 16), torch.nn.Linear(16, 10), []

      def forward(self, u):
        self.seen.append(u.detach().clone())
        return self.out(torch.relu(self.hidden(torch.flatten(2 * u - 1, 1))))

    mirror = Mirror()
    with torch.no_grad():
      for layer, (kernel, bias) in ((mirror.hidden, (k1, b1)), (mirror.out, (k2, b2))):
        layer.weight.copy_(torch.from_numpy(kernel.T))
        layer.bias.copy_(torch.from_numpy(bias))
    u = torch.from_numpy(((x + 1) / 2).transpose(0, 3, 1, 2).copy())
    # torchattacks always starts at clamp(u + eps t / max|t|, 0, 1), t = 2 rand - 1: with t
    # one-hot at a pixel where u = 1 the start is u itself, as random_start=False here.
    rand = torch.full(u.shape, 0.5)
    rand.view(len(u), -1)[torch.arange(len(u)), u.reshape(len(u), -1).argmax(1)] = 1.0
    halvings = []
    original = attacks.apgd_halve

    def spy(*args, **kwargs):
      halvings.append(original(*args, **kwargs))
      return halvings[-1]

    for steps, eps_255 in ((20, 16.0),):
      mirror.seen.clear()
      attack = torchattacks.APGD(mirror, norm="Linf", eps=attacks.to_pixel_units(eps_255) / 2,
                                 steps=steps, loss="ce", rho=0.75)
      with mock.patch.object(torch, "rand", return_value=rand):
        _, torch_robust, _, _ = attack.attack_single_run(u, torch.from_numpy(y))
      with mock.patch.object(attacks, "apgd_halve", side_effect=spy):
        result = attacks.undefended_pgd(model, x, y, _SEED, eps_255=eps_255,
                                        step_size_255=2 * eps_255, adv_steps=steps,
                                        random_start=False, attack_method="apgd",
                                        return_trajectory=True)
      seen = np.stack([(2 * v.numpy() - 1).transpose(0, 2, 3, 1) for v in mirror.seen])
      self.assertEqual(seen.shape, result.trajectory.shape)
      self.assertAllClose(result.trajectory, seen, atol=1e-5, rtol=0)
      self.assertAllEqual(result.robust_correct, torch_robust.numpy())
      self.assertLen(halvings, len([w for w in attacks.apgd_checkpoints(steps) if w < steps]))
    # The comparison covers both outcomes of the rule.
    self.assertTrue(np.any(halvings) and not np.all(halvings), halvings)

  def test_bpda_eot_apgd_verifies_every_break(self):
    weights = tf.random.stateless_normal([16, 3], (1, 2))
    classifier = lambda images: tf.reshape(images, [-1, 16]) @ weights
    x = tf.random.stateless_uniform([8, 4, 4, 1], (2, 3), -1.0, 1.0)
    y = np.argmax(classifier(x), -1)
    energy = lambda v: 0.005 * tf.reduce_sum(tf.square(v), axis=[1, 2, 3])
    result = attacks.bpda_eot_pgd(
        classifier, energy, x, y, _SEED, eps_255=48, step_size_255=96, adv_steps=4,
        purify_steps=3, purify_step_size=0.05, purify_temperature=0.01, eot_attack_reps=2,
        eot_defense_reps=4, attack_method="apgd", return_trajectory=True)
    eps = attacks.to_pixel_units(48)
    for t, x_adv in enumerate(result.trajectory):
      attacks.check_perturbation(x_adv, x, eps, f"iterate {t}")
    self.assertAllEqual(result.accuracy_curve, np.sort(result.accuracy_curve)[::-1])
    self.assertAllEqual(result.broken, result.broken_at >= 0)
    self.assertLess(result.robust_accuracy, result.natural_accuracy)
    for b in np.flatnonzero(result.broken):
      self.assertAllEqual(result.adversarial_images[b], result.trajectory[result.broken_at[b]][b])


if __name__ == "__main__":
  tf.test.main()
