"""Tests of ebm_tf.defense.defense_eval: config checks, image selection, curves, worst case, resume."""

import dataclasses
import json
import os
from unittest import mock

from absl.testing import parameterized
from cleverhans.tf2.attacks.momentum_iterative_method import momentum_iterative_method
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ebm_tf.classifier import classifier_config
from ebm_tf.classifier import classifier_lib
from ebm_tf.classifier import keras_app_classifier
from ebm_tf.data import datasets
from ebm_tf.defense import attacks
from ebm_tf.defense import defense_eval
from ebm_tf.defense import purify as purify_lib
from ebm_tf import models
from ebm_tf.training import checkpoints
from ebm_tf.training import config as config_lib

Config = defense_eval.DefenseEvalConfig


def _config(**overrides):
  values = dict(ebm_dir="ebm", classifier_dir="clf", output_dir="out", dataset="digits",
                num_images=6, batch_size=4, adv_steps=2, eps_255=64.0, step_size_255=16.0,
                eot_attack_reps=2, eot_defense_reps=2, purify_steps=3,
                epsilon=1.25e-2, mcmc_temp=1e-4, seeds=(0, 1), log_every=0)
  values.update(overrides)
  return Config(**values)


def _record(natural, broken_at, seconds=1.0, indices=None):
  natural = np.asarray(natural, bool)
  broken_at = np.asarray(broken_at, np.int64)
  return {"natural_correct": natural.tolist(), "broken_at": broken_at.tolist(),
          "robust_correct": (natural & (broken_at < 0)).tolist(), "seconds": seconds,
          "indices": list(range(len(natural))) if indices is None else indices}


def _tiny_models():
  tf.keras.utils.set_random_seed(0)
  classifier = models.build_classifier("small_cnn", (8, 8, 1), 10)
  ebm = models.build_ebm("ebm_small", (8, 8, 1), width=4)
  return classifier, ebm


def _save_ebm_run(model_dir, image_size=None, width=4):
  config = config_lib.TrainConfig(dataset="digits", image_size=image_size, ebm="ebm_small",
                                  ebm_width=width, model_dir=model_dir)
  config_lib.save_config(config, model_dir)
  ebm = models.build_ebm("ebm_small", datasets.image_shape("digits", image_size), width=width)
  checkpoints.Checkpointer(os.path.join(model_dir, "checkpoints"), ebm=ebm).save(7)
  return ebm


def _save_classifier_run(model_dir, classifier):
  config = classifier_config.ClassifierConfig(dataset="digits", classifier="small_cnn",
                                              random_crop=False, model_dir=model_dir)
  classifier_config.save_config(config, model_dir)
  checkpoints.Checkpointer(os.path.join(model_dir, classifier_lib.BEST_DIR),
                           classifier=classifier).save(3)


class ConfigTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("negative_eps", dict(eps_255=-1.0), "eps_255 must be a finite number >= 0"),
      ("nan_step", dict(step_size_255=float("nan")), "step_size_255"),
      ("bad_defense", dict(defense="adversarial"), "defense must be one of"),
      ("bad_attack", dict(attack="cw"), "attack must be one of"),
      ("negative_segment_length", dict(attack="exact_gradient", segment_length=-1),
       "segment_length must be an integer >= 0"),
      ("no_seeds", dict(seeds=()), "seeds must be a non-empty list"),
      ("repeated_seeds", dict(seeds=(1, 1)), "seeds must be distinct"),
      ("zero_images", dict(num_images=0), "num_images must be an integer >= 1"),
      ("zero_reps", dict(eot_defense_reps=0), "eot_defense_reps must be an integer >= 1"),
      ("zero_temperature", dict(mcmc_temp=0.0), "mcmc_temp must be"),
      ("no_ebm_dir", dict(ebm_dir=""), "ebm_dir is required with defense 'purify'"),
      ("no_classifier_dir", dict(classifier_dir=""), "classifier_dir is required"),
      ("no_output_dir", dict(output_dir=""), "output_dir is required"),
      ("bad_dataset", dict(dataset="svhn"), "dataset must be"),
      ("long_full_gradient_chain", dict(attack="full_gradient", purify_steps=100),
       "must be <= max_chain_steps = 50; got 100"),
      ("bad_attack_method", dict(attack_method="cw"),
       r"attack_method must be one of \('pgd', 'bim', 'fgm', 'mim', 'apgd'\); got 'cw'"),
      ("bim_with_random_start", dict(attack_method="bim"),
       r"attack_method 'bim' starts from the clean images .*--random_start=false"),
      ("mim_with_random_start", dict(attack_method="mim", defense="none", ebm_dir=""),
       "attack_method 'mim' starts from the clean images"),
      ("fgm_with_two_steps", dict(attack_method="fgm", random_start=False),
       "attack_method 'fgm' is one step of size eps: it needs adv_steps=1"),
      ("apgd_with_its_own_step", dict(attack_method="apgd"),
       r"it needs step_size_255 = 2 \* eps_255 = 128.0 \(--step_size_255\); got "
       "step_size_255=16.0"),
      ("zero_shards", dict(num_shards=0), "num_shards must be an integer >= 1; got 0"),
      ("shard_index_out_of_range", dict(num_shards=2, shard_index=2),
       r"shard_index must be an integer in \[0, num_shards = 2\); got 2"),
      ("negative_shard_index", dict(shard_index=-1), "shard_index must be an integer in"),
      ("merge_only_in_a_shard", dict(num_shards=2, merge_only=True),
       "merge_only merges every shard's batches: run it without num_shards/shard_index"),
  )
  def test_bad_settings_raise(self, overrides, message):
    with self.assertRaisesRegex(ValueError, message):
      _config(**overrides)

  def test_defense_none_needs_no_ebm_and_runs_plain_pgd(self):
    config = _config(defense="none", ebm_dir="", attack="full_gradient", purify_steps=100)
    self.assertEqual(config.effective_attack, "pgd")
    self.assertEqual(_config(attack="none").effective_attack, "none")
    self.assertEqual(_config().effective_attack, "bpda_eot")

  def test_attack_methods_and_their_settings(self):
    for method in ("bim", "mim"):
      self.assertEqual(_config(attack_method=method, random_start=False).attack_method, method)
    fgm = _config(attack_method="fgm", random_start=False, adv_steps=1, step_size_255=64.0)
    self.assertEqual(fgm.attack_method, "fgm")
    # attack 'none' runs no attack: the method's settings are not checked.
    self.assertEqual(_config(attack="none", attack_method="bim").effective_attack, "none")
    with self.assertRaisesRegex(ValueError, "attack_method must be one of"):
      _config(attack="none", attack_method="fgsm")

  def test_paper_defaults(self):
    c = Config(ebm_dir="e", classifier_dir="c", output_dir="o")
    self.assertEqual(c.attack_method, "pgd")
    self.assertEqual((c.num_images, c.batch_size, c.eps_255, c.step_size_255, c.adv_steps,
                      c.eot_attack_reps, c.eot_defense_reps, c.purify_steps, c.split, c.shuffle),
                     (640, 64, 8.0, 2.0, 50, 48, 128, 2000, "test", True))
    # The purifier's Langevin step size and temperature default to the EBM run's (prepare);
    # the paper's CIFAR-10 values (0.01, 1e-4) are in flags/defense_cifar10.cfg.
    self.assertEqual((c.epsilon, c.mcmc_temp), (None, None))


class SelectImagesTest(tf.test.TestCase):

  def test_a_fixed_permutation_of_the_split(self):
    all_images, all_labels = datasets.load_array("digits", "test")
    images, labels, indices = defense_eval.select_images("digits", "test", 50, shuffle_seed=3)
    self.assertEqual(images.shape, (50, 8, 8, 1))
    self.assertLen(set(indices.tolist()), 50)
    self.assertAllEqual(images, all_images[indices])
    self.assertAllEqual(labels, all_labels[indices])
    again = defense_eval.select_images("digits", "test", 50, shuffle_seed=3)[2]
    self.assertAllEqual(again, indices)
    other = defense_eval.select_images("digits", "test", 50, shuffle_seed=4)[2]
    self.assertNotAllEqual(other, indices)
    # A longer selection extends the shorter one (so finished batches stay valid).
    longer = defense_eval.select_images("digits", "test", 80, shuffle_seed=3)[2]
    self.assertAllEqual(longer[:50], indices)
    self.assertNotAllEqual(indices, np.arange(50))
    ordered = defense_eval.select_images("digits", "test", 5, shuffle=False)[2]
    self.assertAllEqual(ordered, np.arange(5))

  def test_too_many_images_raise(self):
    with self.assertRaisesRegex(ValueError, "num_images must be <= the 297 images"):
      defense_eval.select_images("digits", "test", 298)


class SummaryTest(tf.test.TestCase):

  def test_curve_counts_images_not_yet_broken(self):
    natural = [[1, 1, 0, 1], [1, 1, 1]]
    broken_at = [[-1, 0, -1, 2], [1, -1, 0]]
    records = [_record(n, b) for n, b in zip(natural, broken_at)]
    curve = defense_eval.curve_from_records(records, adv_steps=2)
    # Oracle: count by hand, image by image.
    flat = [(n, b) for ns, bs in zip(natural, broken_at) for n, b in zip(ns, bs)]
    expected = [sum(n for n, _ in flat) / 7]
    for t in range(3):
      expected.append(sum(1 for n, b in flat if n and (b < 0 or b > t)) / 7)
    self.assertAllClose(curve, expected)
    self.assertAllClose(curve, [6 / 7, 4 / 7, 3 / 7, 2 / 7])
    self.assertAllClose(defense_eval.curve_from_records(records, 2, attacked=False), [6 / 7])

  def test_seed_summary_has_wilson_intervals_and_time(self):
    records = [_record([1, 1, 0, 1], [-1, 0, -1, -1], seconds=2.5),
               _record([1, 0], [-1, -1], seconds=1.0, indices=[4, 5])]
    summary = defense_eval.summarize_seed(records, _config(), seed=1)
    self.assertEqual(summary["num_images"], 6)
    self.assertEqual(summary["natural_accuracy"]["correct"], 4)
    self.assertEqual(summary["robust_accuracy"]["correct"], 3)
    self.assertAllClose(summary["robust_accuracy"]["value"], 0.5)
    # Wilson 95% interval of 3/6: centre (p + z^2/2n)/(1 + z^2/n), closed form.
    z, n, p = 1.959963984540054, 6, 0.5
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    self.assertAllClose(summary["robust_accuracy"]["ci95"], [centre - half, centre + half])
    self.assertAllClose(summary["compute_seconds"], 3.5)
    self.assertLen(summary["accuracy_curve"], 4)

  def test_worst_case_is_the_minimum_over_seeds(self):
    robust = {0: [1, 1, 0, 1, 0], 3: [1, 0, 1, 1, 0], 5: [1, 1, 1, 1, 0]}
    seed_summaries = []
    for seed, mask in robust.items():
      records = [_record([1, 1, 1, 1, 0], [-1 if m else 1 for m in mask])]
      seed_summaries.append(defense_eval.summarize_seed(records, _config(), seed))
    overall = defense_eval.summarize_seeds(seed_summaries)
    self.assertAllClose(overall["worst_case_robust_accuracy"]["value"], 3 / 5)
    self.assertIn(overall["worst_case_robust_accuracy"]["seed"], (0, 3))
    # Per image: robust only if robust under every seed: images 0 and 3.
    self.assertAllClose(overall["per_image_worst_case_robust_accuracy"]["value"], 2 / 5)
    self.assertAllClose(overall["mean_robust_accuracy"], (3 + 3 + 4) / 15)
    other = dict(seed_summaries[0], indices=[9, 8, 7, 6, 5])
    with self.assertRaisesRegex(ValueError, "same images"):
      defense_eval.summarize_seeds([seed_summaries[1], other])


class EvaluateTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.classifier, self.ebm = _tiny_models()

  def _setup(self, **overrides):
    config = _config(output_dir=self.output_dir, defense="none", ebm_dir="",
                     **overrides)
    return defense_eval.prepare(config, classifier=self.classifier)

  def test_writes_outputs_and_resumes_by_batch(self):
    self.output_dir = self.create_tempdir().full_path
    setup = self._setup()
    results = []
    original = attacks.undefended_pgd

    def spy(*args, **kwargs):
      results.append(original(*args, **kwargs))
      return results[-1]

    with mock.patch.object(attacks, "undefended_pgd", side_effect=spy):
      summary = defense_eval.evaluate(setup)
    self.assertLen(results, 4)  # 2 batches (4 + 2 images) x 2 seeds
    self.assertEqual(summary["num_images"], 6)
    for name in ("summary.json", "seed0.json", "seed1.json", "seed0.png", "accuracy_curve.png",
                 "batches/seed0_batch0.json", "batches/seed1_batch1.json"):
      self.assertTrue(os.path.exists(os.path.join(self.output_dir, name)), name)
    # The seed curve is the size-weighted mean of the attacks' own per-batch curves.
    seed0 = results[0].accuracy_curve * 4 + results[1].accuracy_curve * 2
    self.assertAllClose(summary["per_seed"][0]["accuracy_curve"], seed0 / 6)
    self.assertLen(summary["per_seed"][0]["accuracy_curve"], 2 + 2)
    worst = min(s["robust_accuracy"]["value"] for s in summary["per_seed"])
    self.assertEqual(summary["worst_case_robust_accuracy"]["value"], worst)

    # Second run: every batch is reused, nothing is attacked.
    with mock.patch.object(attacks, "undefended_pgd", side_effect=AssertionError("rerun")):
      again = defense_eval.evaluate(self._setup())
    self.assertEqual(again["batches_reused"], 4)
    self.assertEqual(again["per_seed"], summary["per_seed"])

    # More images: only the batches whose images changed are computed.
    results.clear()
    with mock.patch.object(attacks, "undefended_pgd", side_effect=spy):
      grown = defense_eval.evaluate(self._setup(num_images=8))
    self.assertLen(results, 2)  # batch 1 of each seed (2 -> 4 images)
    self.assertEqual((grown["batches_reused"], grown["num_images"]), (2, 8))

    # Other settings in the same output_dir are refused, naming the change.
    with self.assertRaisesRegex(ValueError, r"other settings \(eps_255: 64.0 -> 32.0"):
      defense_eval.evaluate(self._setup(num_images=8, eps_255=32.0))

  def test_attack_method_reaches_the_attack_and_matches_cleverhans(self):
    self.output_dir = self.create_tempdir().full_path
    setup = self._setup(attack_method="mim", random_start=False, eps_255=32.0,
                        step_size_255=8.0, adv_steps=3)
    model = lambda images: self.classifier(images, training=False)
    # The untrained classifier's own predictions as labels: every image starts correct.
    x = setup.images[:4]
    y = np.argmax(model(x), -1)
    with mock.patch.object(attacks, "undefended_pgd", side_effect=attacks.undefended_pgd) as spy:
      result = defense_eval.attack_batch(setup, x, y, defense_eval.batch_seed(0, 0))
    self.assertEqual(spy.call_args.kwargs["attack_method"], "mim")
    self.assertTrue(result.natural_correct.all())
    # Oracle: cleverhans' MIM on the classifier. An image broken at evaluation t keeps
    # iterate t; the others end at iterate adv_steps.
    eps, eta = attacks.to_pixel_units(32.0), attacks.to_pixel_units(8.0)
    iterates = [momentum_iterative_method(model, tf.constant(x), eps, eta, t, np.inf,
                                          clip_min=-1.0, clip_max=1.0, y=tf.constant(y),
                                          sanity_checks=False).numpy() for t in range(4)]
    for b in range(4):
      t = result.broken_at[b] if result.broken[b] else 3
      self.assertAllClose(result.adversarial_images[b], iterates[t][b], atol=1e-6)

  def test_shards_partition_the_plan_and_their_merge_is_the_unsharded_result(self):
    plan = [(s, i) for s in (0, 1) for i in range(3)]
    shards = [defense_eval.shard_plan(plan, 4, k) for k in range(4)]
    self.assertEqual(shards, [[(0, 0), (1, 1)], [(0, 1), (1, 2)], [(0, 2)], [(1, 0)]])
    self.assertEqual(defense_eval.shard_plan(plan, 1, 0), plan)

    overrides = dict(num_images=10, attack_method="apgd", step_size_255=128.0, adv_steps=3)
    self.output_dir = self.create_tempdir().full_path
    whole = defense_eval.evaluate(self._setup(**overrides))  # 3 batches x 2 seeds
    self.output_dir = self.create_tempdir().full_path
    computed = []
    original = attacks.undefended_pgd

    def spy(*args, **kwargs):
      computed.append(tuple(int(v) for v in args[3].numpy()))  # the batch seed [seed, batch]
      return original(*args, **kwargs)

    reports = []
    for k in (1, 0):
      with mock.patch.object(attacks, "undefended_pgd", side_effect=spy):
        reports.append(defense_eval.evaluate(self._setup(num_shards=2, shard_index=k,
                                                         **overrides)))
    self.assertEqual(computed, [(0, 1), (1, 0), (1, 2), (0, 0), (0, 2), (1, 1)])
    self.assertEqual([r["batches_missing"] for r in reports], [3, 0])
    self.assertFalse(os.path.exists(os.path.join(self.output_dir, "summary.json")))
    self.assertIn("shard 0 of 2: 3 batches (3 computed, 0 reused); every batch is in",
                  defense_eval.format_shard_report(reports[1]))
    # A shard run again reuses its batches.
    again = defense_eval.evaluate(self._setup(num_shards=2, shard_index=1, **overrides))
    self.assertEqual((again["batches_computed_this_run"], again["batches_reused"]), (0, 3))
    with mock.patch.object(attacks, "undefended_pgd", side_effect=AssertionError("merge")):
      merged = defense_eval.evaluate(self._setup(merge_only=True, **overrides))
    self.assertEqual(merged["batches_reused"], 6)
    for key in ("per_image_worst_case_robust_accuracy", "worst_case_robust_accuracy",
                "mean_robust_accuracy", "attack_method"):
      self.assertEqual(merged[key], whole[key], key)
    for a, b in zip(merged["per_seed"], whole["per_seed"]):
      self.assertEqual((a["natural_accuracy"], a["robust_accuracy"], a["accuracy_curve"]),
                       (b["natural_accuracy"], b["robust_accuracy"], b["accuracy_curve"]))
    # A shard with other settings is refused, naming them; so is a merge with batches missing.
    with self.assertRaisesRegex(ValueError, r"other settings \(eps_255: 64.0 -> 32.0"):
      defense_eval.evaluate(self._setup(num_shards=2, shard_index=0,
                                        **dict(overrides, eps_255=32.0, step_size_255=64.0)))
    self.output_dir = self.create_tempdir().full_path
    defense_eval.evaluate(self._setup(num_shards=3, shard_index=2, **overrides))
    with self.assertRaisesRegex(ValueError, r"merge_only: 4 of the 6 batches are not in .*"
                                r"\(seed 0 batch 0, seed 0 batch 1, seed 1 batch 0, seed 1 batch "
                                r"1\): run the missing shards first"):
      defense_eval.evaluate(self._setup(merge_only=True, **overrides))

  def test_resume_refuses_another_attack_method(self):
    self.output_dir = self.create_tempdir().full_path
    pgd = self._setup(num_images=4, seeds=(0,))
    # Default 'pgd' is left out of the fingerprint: output directories from before
    # attack_method existed still resume.
    self.assertNotIn("attack_method", defense_eval.fingerprint(pgd))
    # epsilon / mcmc_temp keep the names older batches were written with.
    self.assertEqual({k: defense_eval.fingerprint(pgd).get(k) for k in (
        "purify_step_size", "purify_temperature", "epsilon", "mcmc_temp")},
                     {"purify_step_size": 1.25e-2, "purify_temperature": 1e-4, "epsilon": None,
                      "mcmc_temp": None})
    defense_eval.evaluate(pgd)
    mim = self._setup(num_images=4, seeds=(0,), attack_method="mim", random_start=False)
    self.assertEqual(defense_eval.fingerprint(mim)["attack_method"], "mim")
    with self.assertRaisesRegex(ValueError, r"computed with other settings \(attack_method: "
                                r"None -> 'mim'; random_start: True -> False"):
      defense_eval.evaluate(mim)

    self.output_dir = self.create_tempdir().full_path
    summary = defense_eval.evaluate(self._setup(num_images=4, seeds=(0,), attack_method="mim",
                                                random_start=False))
    self.assertEqual(summary["attack_method"], "mim")
    self.assertEqual(summary["settings"]["attack_method"], "mim")
    self.assertIn("method mim", defense_eval.format_summary(summary))
    with open(os.path.join(self.output_dir, "summary.json")) as f:
      self.assertEqual(json.load(f)["settings"]["attack_method"], "mim")
    with self.assertRaisesRegex(ValueError, r"other settings \(attack_method: 'mim' -> 'bim'"):
      defense_eval.evaluate(self._setup(num_images=4, seeds=(0,), attack_method="bim",
                                        random_start=False))
    with self.assertRaisesRegex(ValueError, r"other settings \(attack_method: 'mim' -> None"):
      defense_eval.evaluate(self._setup(num_images=4, seeds=(0,), random_start=False))
    again = defense_eval.evaluate(self._setup(num_images=4, seeds=(0,), attack_method="mim",
                                              random_start=False))
    self.assertEqual(again["batches_reused"], 1)

  def test_batches_are_reproducible_and_seeded_per_batch(self):
    self.output_dir = self.create_tempdir().full_path
    setup = self._setup()
    x, y = setup.images[:4], setup.labels[:4]
    first = defense_eval.attack_batch(setup, x, y, defense_eval.batch_seed(0, 0))
    second = defense_eval.attack_batch(setup, x, y, defense_eval.batch_seed(0, 0))
    self.assertAllEqual(first.adversarial_images, second.adversarial_images)
    other = defense_eval.attack_batch(setup, x, y, defense_eval.batch_seed(0, 1))
    self.assertNotAllClose(first.adversarial_images, other.adversarial_images)
    self.assertAllEqual(defense_eval.batch_seed(3, 5), [3, 5])

  def test_purified_natural_accuracy_matches_the_eot_classifier(self):
    self.output_dir = self.create_tempdir().full_path
    config = _config(output_dir=self.output_dir, attack="none", verify_batch_size=3,
                     eot_defense_reps=3)
    energy = models.energy_fn(self.ebm)
    setup = defense_eval.prepare(config, classifier=self.classifier, energy_fn=energy)
    x, y = setup.images[:5], setup.labels[:5]
    seed = defense_eval.batch_seed(1, 0)
    result = defense_eval.attack_batch(setup, x, y, seed)
    # Oracle: the eager EOT classifier on each verification chunk with its folded seed.
    predictions = np.concatenate([
        purify_lib.eot_predict(self.classifier, energy, x[s:s + 3],
                               tf.random.experimental.stateless_fold_in(seed, k),
                               num_steps=3, step_size=1.25e-2, temperature=1e-4,
                               num_repeats=3).numpy()
        for k, s in enumerate((0, 3))])
    self.assertAllEqual(result.natural_correct, predictions == y)
    self.assertAllEqual(result.robust_correct, result.natural_correct)
    self.assertLen(result.accuracy_curve, 1)

  def test_full_gradient_attack_runs_on_a_purified_classifier(self):
    # (The BPDA + EOT attack runs end to end in tests/attack_binary_test.py.)
    self.output_dir = self.create_tempdir().full_path
    energy = models.energy_fn(self.ebm)
    config = _config(output_dir=self.output_dir, attack="full_gradient", adv_steps=1,
                     purify_steps=2)
    setup = defense_eval.prepare(config, classifier=self.classifier, energy_fn=energy)
    with mock.patch.object(attacks, "full_gradient_eot_pgd",
                           side_effect=attacks.full_gradient_eot_pgd) as spy:
      result = defense_eval.attack_batch(setup, setup.images[:2], setup.labels[:2],
                                         defense_eval.batch_seed(0, 0))
    self.assertEqual(spy.call_count, 1)
    self.assertLen(result.accuracy_curve, 3)
    attacks.check_perturbation(result.adversarial_images, setup.images[:2],
                               attacks.to_pixel_units(64.0))

  def test_exact_gradient_attack_equals_bpda_on_a_relu_ebm(self):
    # ebm_small is ReLU: every step Jacobian is I, so the exact gradient through the whole
    # chain is BPDA's, and the two attacks take the same steps on the same chains.
    self.output_dir = self.create_tempdir().full_path
    energy = models.energy_fn(self.ebm)
    results, images = {}, {}
    for attack, function in (("bpda_eot", "bpda_eot_pgd"),
                             ("exact_gradient", "exact_gradient_eot_pgd")):
      config = _config(output_dir=os.path.join(self.output_dir, attack), attack=attack,
                       adv_steps=2, purify_steps=5, num_images=2, seeds=(0,))
      setup = defense_eval.prepare(config, classifier=self.classifier, energy_fn=energy)
      original = getattr(attacks, function)
      returned = []
      with mock.patch.object(attacks, function,
                             side_effect=lambda *a, **k: returned.append(original(*a, **k))
                             or returned[-1]):
        summary = defense_eval.evaluate(setup)
      self.assertLen(returned, 1)
      images[attack] = returned[0].adversarial_images
      with open(os.path.join(self.output_dir, attack, "batches", "seed0_batch0.json")) as f:
        results[attack] = json.load(f)
      if attack == "exact_gradient":
        # k = round(sqrt(5)) = 2 is recorded in the summary and in the resume fingerprint.
        self.assertEqual(summary["segment_length"], 2)
        self.assertEqual(defense_eval.fingerprint(setup)["segment_length"], 2)
        with self.assertRaisesRegex(ValueError, r"other settings \(segment_length: 2 -> 3"):
          defense_eval.evaluate(defense_eval.prepare(
              dataclasses.replace(config, segment_length=3), classifier=self.classifier,
              energy_fn=energy))
      else:
        self.assertNotIn("segment_length", summary)
        self.assertNotIn("segment_length", defense_eval.fingerprint(setup))
    for key in ("natural_correct", "robust_correct", "broken_at", "accuracy_curve"):
      self.assertEqual(results["exact_gradient"][key], results["bpda_eot"][key], key)
    self.assertAllClose(images["exact_gradient"], images["bpda_eot"], atol=1e-6)
    # (exact_gradient_test.py compares the two attacks' PGD iterates on attacked images.)


class PrepareFromRunsTest(tf.test.TestCase):

  def test_loads_runs_and_rejects_mismatched_shapes(self):
    root = self.create_tempdir().full_path
    classifier, _ = _tiny_models()
    _save_classifier_run(os.path.join(root, "clf"), classifier)
    saved_ebm = _save_ebm_run(os.path.join(root, "ebm8"))
    config = _config(ebm_dir=os.path.join(root, "ebm8"), classifier_dir=os.path.join(root, "clf"),
                     output_dir=os.path.join(root, "out"), dataset="")
    setup = defense_eval.prepare(config)
    self.assertEqual(setup.images.shape, (6, 8, 8, 1))
    self.assertEqual(setup.models_info["data"]["dataset"], "digits")
    self.assertEqual((setup.config.epsilon, setup.config.mcmc_temp), (1.25e-2, 1e-4))  # given
    # Unset, the purifier's Langevin settings are the EBM run's (as the exporter's).
    train = config_lib.load_config(os.path.join(root, "ebm8"))
    unset = defense_eval.prepare(dataclasses.replace(config, epsilon=None, mcmc_temp=None))
    self.assertEqual((unset.config.epsilon, unset.config.mcmc_temp),
                     (train.epsilon, train.mcmc_temp))
    with self.assertRaisesRegex(ValueError, "epsilon and mcmc_temp must be given"):
      defense_eval.prepare(dataclasses.replace(config, epsilon=None), classifier=classifier,
                           energy_fn=models.energy_fn(saved_ebm))
    self.assertEndsWith(setup.models_info["ebm"]["checkpoint"], "ckpt-7")
    x = tf.constant(setup.images)
    self.assertAllClose(setup.energy_fn(x), models.energy_fn(saved_ebm)(x))
    self.assertAllClose(setup.classifier(x), classifier(x))

    _save_ebm_run(os.path.join(root, "ebm16"), image_size=16)
    with self.assertRaisesRegex(ValueError, r"image shape mismatch: the EBM .* takes images "
                                r"\[16, 16, 1\] .* classifier .* takes \[8, 8, 1\]"):
      defense_eval.prepare(dataclasses.replace(config, ebm_dir=os.path.join(root, "ebm16")))
    with self.assertRaisesRegex(ValueError, r"image shape mismatch: dataset 'digits' with "
                                r"image_size 16 gives images \[16, 16, 1\]"):
      defense_eval.prepare(dataclasses.replace(config, image_size=16))
    with self.assertRaisesRegex(FileNotFoundError, "ebm_dir .*nowhere.* does not exist"):
      defense_eval.prepare(dataclasses.replace(config, ebm_dir=os.path.join(root, "nowhere")))
    with self.assertRaisesRegex(FileNotFoundError, "classifier_dir .* does not exist"):
      defense_eval.prepare(dataclasses.replace(config, classifier_dir=os.path.join(root, "x")))


class KerasAppClassifierTest(tf.test.TestCase, parameterized.TestCase):
  """A keras.applications classifier (ebm_tf.classifier.keras_app_classifier) behind the EBM's images."""

  @parameterized.named_parameters(
      ("both", dict(classifier="keras_app:EfficientNetB0", classifier_weights="w.h5"),
       "give one classifier: classifier_dir 'clf' .* or classifier 'keras_app:EfficientNetB0'"),
      ("no_weights", dict(classifier_dir="", classifier="keras_app:EfficientNetB0"),
       "classifier_weights is required with classifier 'keras_app:EfficientNetB0': a local "
       ".* file \\(nothing is downloaded\\)"),
      ("weights_without_keras_app", dict(classifier_weights="w.h5"),
       "classifier_weights and classifier_input_size are for classifier 'keras_app:<Name>'"),
      ("not_keras_app", dict(classifier_dir="", classifier="EfficientNetB0",
                             classifier_weights="w.h5"),
       "classifier must be 'keras_app:<Name>'"),
      ("small_input", dict(classifier_dir="", classifier="keras_app:EfficientNetB0",
                           classifier_weights="w.h5", classifier_input_size=16),
       "input_size of EfficientNetB0 must be an integer >= 32"),
  )
  def test_bad_settings_raise(self, overrides, message):
    with self.assertRaisesRegex(ValueError, message):
      _config(**overrides)

  def test_prepares_from_the_ebm_run_and_attacks_through_the_resize(self):
    root = self.create_tempdir().full_path
    ebm_dir = os.path.join(root, "ebm")
    config_lib.save_config(config_lib.TrainConfig(dataset="synthetic", image_size=16,
                                                  ebm="ebm_small", ebm_width=4,
                                                  model_dir=ebm_dir), ebm_dir)
    tf.keras.utils.set_random_seed(0)
    ebm = models.build_ebm("ebm_small", (16, 16, 3), width=4)
    checkpoints.Checkpointer(os.path.join(ebm_dir, "checkpoints"), ebm=ebm).save(1)
    app = keras_app_classifier.build_app("EfficientNetB0", 32)
    weights = os.path.join(root, "b0.weights.h5")
    app.save_weights(weights)
    config = _config(ebm_dir=ebm_dir, classifier_dir="", classifier="keras_app:EfficientNetB0",
                     classifier_weights=weights, classifier_input_size=32, dataset="",
                     output_dir=os.path.join(root, "out"), num_images=2, batch_size=2,
                     adv_steps=1, eps_255=8.0, step_size_255=4.0, seeds=(0,))
    setup = defense_eval.prepare(config)
    # The images' shape is the EBM run's (synthetic at 16); the classifier resizes to 32.
    self.assertEqual(setup.images.shape, (2, 16, 16, 3))
    self.assertEqual(setup.models_info["data"]["dataset"], "synthetic")
    self.assertEqual(tuple(setup.classifier.inputs[0].shape), (None, 16, 16, 3))
    info = setup.models_info["classifier"]
    self.assertEqual((info["name"], info["input_size"], info["weights"]),
                     ("keras_app:EfficientNetB0", 32, os.path.realpath(weights)))
    pixels = keras_app_classifier.classifier_pixels(setup.images, "EfficientNetB0", 32)
    self.assertAllClose(setup.classifier(setup.images, training=False),
                        app(pixels, training=False), rtol=1e-4, atol=1e-4)
    summary = defense_eval.evaluate(setup)
    self.assertLen(summary["per_seed"][0]["accuracy_curve"], 3)
    self.assertEqual(summary["models"]["classifier"]["name"], "keras_app:EfficientNetB0")

    missing = os.path.join(root, "efficientnetb0.h5")
    with self.assertRaisesRegex(FileNotFoundError,
                                f"classifier weights file '{missing}' does not exist"):
      defense_eval.prepare(dataclasses.replace(config, classifier_weights=missing))
    with self.assertRaisesRegex(ValueError, "dataset must be given with classifier "
                                "'keras_app:EfficientNetB0' when no EBM run is loaded"):
      defense_eval.prepare(dataclasses.replace(config, defense="none", ebm_dir=""))

  def test_selects_validation_images_of_imagenet_from_tfds(self):
    # tfds's mocked imagenet2012 (random examples of its real features; nothing downloads).
    with tfds.testing.mock_data(num_examples=10, policy=tfds.testing.MockPolicy.USE_CODE), \
        mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True):
      everything, all_labels = datasets.load_array("imagenet2012", "validation",
                                               data_dir="/unused", image_size=24)
      images, labels, indices = defense_eval.select_images(
          "imagenet2012", "validation", 4, shuffle_seed=0, data_dir="/unused", image_size=24)
    self.assertEqual(images.shape, (4, 24, 24, 3))
    self.assertAllEqual(indices, np.random.RandomState(0).permutation(10)[:4])
    self.assertAllEqual(images, everything[indices])
    self.assertAllEqual(labels, all_labels[indices])


class PlotTest(tf.test.TestCase):

  def test_writes_a_png(self):
    path = os.path.join(self.create_tempdir().full_path, "sub", "curve.png")
    defense_eval.plot_accuracy_curves({"a": [1.0, 0.8, 0.5], "b": [0.9]}, path, title="t")
    with open(path, "rb") as f:
      self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


if __name__ == "__main__":
  tf.test.main()
