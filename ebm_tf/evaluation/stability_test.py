"""Tests for ebm_tf.evaluation.stability: the along-the-chain metrics, on a Gaussian with a known answer."""

import json
import os
from unittest import mock

import numpy as np
import tensorflow as tf

from ebm_tf.data import datasets
from ebm_tf.evaluation import fid
from ebm_tf.evaluation import sampling
from ebm_tf.evaluation import stability
from ebm_tf.training import config as config_lib

_SIGMA = 0.3
_SHAPE = (2, 2, 1)


class _FlatFeatures(fid.FeatureExtractor):
  """The pixels themselves as features: an extractor whose distance we can reason about."""

  name = "flat"
  label = "flattened pixels (test)"

  def __init__(self):
    self.calls = 0

  def _extract(self, images):
    self.calls += 1
    return images.reshape(len(images), -1)


def _gaussian_model(sampling_temperature: float) -> sampling.SamplingModel:
  """E(x) = ||x||^2 / (2 sigma^2): at T = 1 the chains sample N(0, sigma^2 I)."""
  energy = lambda x: tf.reduce_sum(tf.square(x), axis=[1, 2, 3]) / (2 * _SIGMA ** 2)
  return sampling.SamplingModel(
      run_config=config_lib.TrainConfig(), checkpoint_path="closed-form", image_shape=_SHAPE,
      energy_fn=energy, langevin_kwargs={}, step_size=0.05, temperature=sampling_temperature)


def _gaussian_data(n: int, seed: int) -> np.ndarray:
  return (_SIGMA * tf.random.stateless_normal([n, *_SHAPE], seed=[seed, 7])).numpy()


class MetricsTest(tf.test.TestCase):

  def test_pixel_statistics(self):
    images = np.array([-1.0, -0.5, 0.0, 1.0, 1.04, 1.06, -2.0, 0.99]).reshape(2, 2, 2, 1)
    self.assertAlmostEqual(stability.saturation(images), 5 / 8)
    self.assertAlmostEqual(stability.out_of_range(images), 2 / 8)
    with self.assertRaisesRegex(ValueError, "NaN or Inf"):
      stability.saturation(np.full([2, 2, 2, 1], np.nan))

  def test_energy_reference_and_snapshot_metrics(self):
    rng = np.random.default_rng(0)
    data_energies = rng.normal(3.0, 2.0, size=1000)
    reference = stability.energy_reference(data_energies)
    self.assertAllClose([reference["mean"], reference["std"]],
                        [np.mean(data_energies), np.std(data_energies, ddof=1)])
    self.assertAllClose(reference["q99"], np.quantile(data_energies, 0.99))
    images = rng.uniform(-1.2, 1.2, size=(50, *_SHAPE)).astype(np.float32)
    energies = np.full([50], reference["mean"] - 3 * reference["std"])
    extractor = _FlatFeatures()
    ref_stats = fid.feature_stats(rng.normal(size=(200, 4)))
    metrics = stability.snapshot_metrics(images, energies, extractor=extractor,
                                         reference=ref_stats, data_energy=reference)
    expected_fd = fid.frechet_distance(
        fid.feature_stats(np.clip(images, -1, 1).reshape(50, -1)), ref_stats)
    self.assertAllClose(metrics["fd"], expected_fd)
    self.assertAllClose(metrics["energy_z"], -3.0)
    self.assertEqual(metrics["energy_in_data"], 0.0)
    self.assertAllClose(metrics["out_of_range"], np.mean(np.abs(images) > 1.05))
    with self.assertRaisesRegex(ValueError, "got 3 energies for 50 images"):
      stability.snapshot_metrics(images, energies[:3], extractor=extractor,
                                 reference=ref_stats, data_energy=reference)


class GaussianSignatureTest(tf.test.TestCase):
  """Chains of the right energy stay on the data; chains of a too-cold one leave it."""

  def _evaluate(self, sampling_temperature, out):
    model = _gaussian_model(sampling_temperature)
    data = _gaussian_data(400, seed=1)
    sampling.run_chains(model, data[:200], num_steps=1000, output_dir=out, seed=0,
                        record_steps=(0, 100), segment_steps=500, batch_size=200)
    extractor = _FlatFeatures()
    reference = fid.compute_stats(extractor, np.clip(_gaussian_data(2000, seed=2), -1, 1))
    data_energy = stability.energy_reference(sampling.batched_energies(model.energy_fn,
                                                                        data[200:]))
    data_metrics = stability.data_reference_metrics(
        data[200:], sampling.batched_energies(model.energy_fn, data[200:]),
        extractor=extractor, reference=reference, data_energy=data_energy)
    result = stability.evaluate_snapshots(out, extractor=extractor, reference=reference,
                                          data_energy=data_energy, data_metrics=data_metrics)
    return result, extractor

  def test_right_energy_is_stable_and_cold_energy_degrades(self):
    good, extractor = self._evaluate(1.0, self.create_tempdir().full_path)
    cold, _ = self._evaluate(0.01, self.create_tempdir().full_path)
    self.assertEqual([r["step"] for r in good["rows"]], [0, 100, 1000])
    for row in good["rows"]:  # N(0, sigma^2) is stationary for T = 1 (ULA bias ~ eps^2).
      self.assertLess(abs(row["energy_z"]), 0.3)
      self.assertLess(row["fd"], 0.02)
      self.assertGreater(row["energy_in_data"], 0.9)
    # At T = 0.01 the chains are an AR(1) process x' = (1 - h) x + eps xi with
    # h = eps^2 / (2 sigma^2 T), stationary variance v = eps^2 / (1 - (1 - h)^2) (the exact ULA
    # law, biased above sigma^2 T): the energies collapse and FD -> 4 (sigma - sqrt(v))^2.
    h = 0.05 ** 2 / (2 * _SIGMA ** 2 * 0.01)
    v = 0.05 ** 2 / (1 - (1 - h) ** 2)
    last = cold["rows"][-1]
    self.assertAllClose(last["fd"], 4 * (_SIGMA - np.sqrt(v)) ** 2, rtol=0.15)
    # Data energies are chi2_4 / 2: mean 2, std sqrt(2); the chains' mean is 4 v / (2 sigma^2).
    self.assertAllClose(last["energy_z"], (4 * v / (2 * _SIGMA ** 2) - 2) / np.sqrt(2), atol=0.15)
    self.assertLess(last["energy_in_data"], 0.2)
    self.assertGreater(extractor.calls, 0)

  def test_cached_rows_are_not_recomputed(self):
    out = self.create_tempdir().full_path
    self._evaluate(1.0, out)
    extractor = _FlatFeatures()
    reference = fid.feature_stats(np.random.default_rng(0).normal(size=(20, 4)))
    with open(os.path.join(out, stability.METRICS_FILENAME)) as f:
      first = json.load(f)
    with mock.patch.object(_FlatFeatures, "label", first["feature"]):
      reference = reference._replace(count=first["num_reference"])
      again = stability.evaluate_snapshots(out, extractor=extractor, reference=reference,
                                           data_energy=first["data_energy"],
                                           data_metrics=first["data"])
    self.assertEqual(extractor.calls, 0)
    self.assertEqual(again["rows"], first["rows"])

  def test_plot_and_table(self):
    out = self.create_tempdir().full_path
    result, _ = self._evaluate(1.0, out)
    path = stability.plot_curves({"gaussian": result}, os.path.join(out, "p.png"),
                                 title="t", marks={"gaussian": [100]})
    self.assertGreater(os.path.getsize(path), 1000)
    table = stability.format_table({"gaussian": result})
    self.assertEqual(len(table.splitlines()), 2 + 1 + 3)
    with self.assertRaisesRegex(ValueError, "at least one curve"):
      stability.plot_curves({}, os.path.join(out, "q.png"))

  def test_score_job_uses_the_reference_and_heldout_splits_of_the_models_dataset(self):
    out = self.create_tempdir().full_path
    energy = lambda x: tf.reduce_sum(tf.square(x), axis=[1, 2, 3])
    model = sampling.SamplingModel(
        run_config=config_lib.TrainConfig(dataset="digits"), checkpoint_path="closed-form",
        image_shape=(8, 8, 1), energy_fn=energy, langevin_kwargs={}, step_size=0.01,
        temperature=1.0)
    train = datasets.load_array("digits", "train", max_examples=16)[0]
    test = datasets.load_array("digits", "test", max_examples=16)[0]
    sampling.run_chains(model, train, num_steps=5, output_dir=out, seed=0, record_steps=(0,),
                        segment_steps=5, batch_size=16)
    extractor = _FlatFeatures()
    with mock.patch.object(fid, "make_extractor", return_value=extractor) as make:
      result = stability.score_job(
          out, model, stability.MetricsConfig(feature="classifier", classifier_dir="clf"), 16)
    make.assert_called_once_with("classifier", "clf")
    self.assertEqual(result["num_reference"], 16)
    self.assertEqual([row["step"] for row in result["rows"]], [0, 5])
    # Step 0 holds the first 16 training images, the reference set itself.
    self.assertAllClose(result["rows"][0]["fd"], 0.0, atol=1e-3)
    reference = fid.compute_stats(_FlatFeatures(), np.clip(train, -1, 1))
    expected_heldout = fid.frechet_distance(fid.compute_stats(_FlatFeatures(), test), reference)
    self.assertAllClose(result["data"]["fd"], expected_heldout, rtol=1e-5)
    self.assertAllClose(result["data_energy"]["mean"], np.mean(energy(train).numpy()),
                        rtol=1e-6)

  def test_no_snapshots(self):
    with self.assertRaisesRegex(FileNotFoundError, "run ebm_tf.sample first"):
      stability.evaluate_snapshots(self.create_tempdir().full_path, extractor=_FlatFeatures(),
                                   reference=None, data_energy={}, data_metrics={})


class MetricsConfigTest(tf.test.TestCase):

  def test_bad_settings(self):
    with self.assertRaisesRegex(ValueError, "--feature must be 'classifier' or 'inception'"):
      stability.MetricsConfig(feature="kid")
    with self.assertRaisesRegex(ValueError, "needs --classifier_dir"):
      stability.MetricsConfig(feature="classifier")
    with self.assertRaisesRegex(ValueError, "--reference_count must be an int >= 0"):
      stability.MetricsConfig(feature="inception", reference_count=-1)


if __name__ == "__main__":
  tf.test.main()
