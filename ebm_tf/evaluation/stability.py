"""Along-the-chain quality of sampling jobs: the longrun test (docs/paper_settings.md section 8.3).

For every snapshot a `sampling` job wrote (samples after s Langevin steps), this module records:

  fd              Frechet distance of the samples' features to the reference set's (Inception
                  FID or the project classifier's feature distance: see `ebm_tf.evaluation.fid`);
  energy_mean     mean E(x) of the samples (the run's E, without prior or tau terms);
  energy_z        (energy_mean - mean E(data)) / std E(data): how far the chains' energies sit
                  from the data energies (a shortrun model's long chains fall far below them);
  energy_in_data  fraction of samples whose energy lies within the data's 1%..99% quantiles;
  saturation      fraction of pixel values with |x| >= 1 (compare with the data's own value);
  out_of_range    fraction of pixel values with |x| > 1.05 (0 for data in [-1, 1]).

Samples are clipped to [-1, 1] before feature extraction (as the reference's FID code); the
energy and pixel statistics use the unclipped states.
"""

import dataclasses
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from ebm_tf.data import datasets
from ebm_tf.evaluation import fid
from ebm_tf.evaluation import sampling
from ebm_tf.internal import file_io
from ebm_tf.internal import flag_config

METRICS_FILENAME = "stability.json"
PLOT_FILENAME = "stability.png"
OUT_OF_RANGE_MARGIN = 0.05


def _as_images(images, what: str = "images") -> np.ndarray:
  array = np.asarray(images, np.float32)
  if array.ndim < 2 or len(array) < 1:
    raise ValueError(f"{what} must have shape [N >= 1, ...]; got {array.shape}")
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{what} contain NaN or Inf")
  return array


def saturation(images) -> float:
  """Fraction of pixel values with |x| >= 1, in [0, 1]. images: float [N, ...]."""
  return float(np.mean(np.abs(_as_images(images)) >= 1.0))


def out_of_range(images, margin: float = OUT_OF_RANGE_MARGIN) -> float:
  """Fraction of pixel values with |x| > 1 + margin, in [0, 1]. images: float [N, ...]."""
  return float(np.mean(np.abs(_as_images(images)) > 1.0 + margin))


def energy_reference(data_energies) -> Dict[str, float]:
  """Summary of the data energies [N >= 2]: mean, std, q01, q99 (floats)."""
  values = np.asarray(data_energies, np.float64).reshape(-1)
  if len(values) < 2 or not np.all(np.isfinite(values)):
    raise ValueError(f"data energies must be >= 2 finite values; got {values.shape}")
  return dict(mean=float(values.mean()), std=float(values.std(ddof=1)),
              q01=float(np.quantile(values, 0.01)), q99=float(np.quantile(values, 0.99)))


def snapshot_metrics(images, energies, *, extractor, reference: fid.FeatureStats,
                     data_energy: Mapping[str, float], batch_size: int = 500) -> Dict[str, float]:
  """The metrics of one snapshot (see the module docstring).

  Args:
    images: float32 [N >= 2, H, W, C] chain states, unclipped.
    energies: float [N] their energies E(x).
    extractor: an `ebm_tf.evaluation.fid` feature extractor.
    reference: FeatureStats of the reference images under `extractor`.
    data_energy: `energy_reference` of the data energies.
  """
  images = _as_images(images)
  energies = np.asarray(energies, np.float64).reshape(-1)
  if len(energies) != len(images):
    raise ValueError(f"got {len(energies)} energies for {len(images)} images")
  stats = fid.compute_stats(extractor, np.clip(images, -1.0, 1.0), batch_size=batch_size)
  std = data_energy["std"] if data_energy["std"] > 0 else 1.0
  return dict(
      fd=float(fid.frechet_distance(stats, reference)),
      energy_mean=float(np.mean(energies)),
      energy_z=float((np.mean(energies) - data_energy["mean"]) / std),
      energy_in_data=float(np.mean((energies >= data_energy["q01"]) &
                                   (energies <= data_energy["q99"]))),
      saturation=saturation(images),
      out_of_range=out_of_range(images))


def evaluate_snapshots(output_dir: str, *, extractor, reference: fid.FeatureStats,
                       data_energy: Mapping[str, float], data_metrics: Mapping[str, float],
                       batch_size: int = 500) -> Dict[str, Any]:
  """Metrics of every snapshot of a sampling job; cached in `<output_dir>/stability.json`.

  A snapshot whose metrics are in the cache (same extractor label and reference count) is not
  recomputed, so an interrupted evaluation resumes.

  Args:
    output_dir: a `sampling` job directory (samples_<step>.npz files).
    extractor, reference, data_energy: as in `snapshot_metrics`.
    data_metrics: the same metrics for held-out data (the "data" reference line).

  Returns:
    dict(feature=label, num_reference, data=data_metrics, data_energy, rows=[{step, ...}]).
  """
  snapshots = sampling.list_snapshots(output_dir)
  if not snapshots:
    raise FileNotFoundError(f"no samples_<step>.npz in {output_dir!r}: run ebm_tf.sample first")
  path = os.path.join(output_dir, METRICS_FILENAME)
  result = dict(feature=extractor.label, num_reference=int(reference.count),
                data=dict(data_metrics), data_energy=dict(data_energy), rows=[])
  cached = {}
  if tf.io.gfile.exists(path):
    with open(path) as f:
      old = json.load(f)
    if (old.get("feature") == result["feature"]
        and old.get("num_reference") == result["num_reference"]):
      cached = {row["step"]: row for row in old["rows"]}
  for step, snapshot in snapshots:
    if step in cached:
      result["rows"].append(cached[step])
      continue
    images, energies = sampling.load_snapshot(snapshot)
    row = dict(step=step, num_samples=len(images),
               **snapshot_metrics(images, energies, extractor=extractor, reference=reference,
                                  data_energy=data_energy, batch_size=batch_size))
    logging.info("step %d: %s", step, row)
    result["rows"].append(row)
    file_io.write_json_atomic(path, result)
  file_io.write_json_atomic(path, result)
  return result


def data_reference_metrics(images, energies, *, extractor, reference: fid.FeatureStats,
                           data_energy: Mapping[str, float],
                           batch_size: int = 500) -> Dict[str, float]:
  """`snapshot_metrics` of held-out data images: the level a perfect sampler would reach."""
  return snapshot_metrics(images, energies, extractor=extractor, reference=reference,
                          data_energy=data_energy, batch_size=batch_size)


_PANELS = (("fd", "Frechet distance"), ("energy_z", "(E - mean E(data)) / std E(data)"),
           ("out_of_range", "fraction of pixels |x| > 1.05"))


def plot_curves(curves: Mapping[str, Mapping[str, Any]], path: str, title: str = "",
                marks: Optional[Mapping[str, Sequence[int]]] = None) -> str:
  """Writes a PNG of the metrics vs Langevin steps (symlog x axis) for one or more jobs.

  Args:
    curves: label -> an `evaluate_snapshots` result.
    path: the PNG path (written via a temp file and a rename).
    title: figure title (the feature label is added).
    marks: optional label -> steps to mark with dotted vertical lines (e.g. training length).
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  if not curves:
    raise ValueError("plot_curves needs at least one curve")
  fig, axes = plt.subplots(1, len(_PANELS), figsize=(5 * len(_PANELS), 3.8))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  feature = next(iter(curves.values()))["feature"]
  for i, (label, result) in enumerate(curves.items()):
    color = colors[i % len(colors)]
    steps = [row["step"] for row in result["rows"]]
    for ax, (key, name) in zip(axes, _PANELS):
      ax.plot(steps, [row[key] for row in result["rows"]], "o-", color=color, label=label)
      ax.axhline(result["data"][key], color=color, linestyle="--", linewidth=0.8)
      for step in (marks or {}).get(label, ()):
        ax.axvline(step, color=color, linestyle=":", linewidth=0.8)
  for ax, (key, name) in zip(axes, _PANELS):
    if key == "energy_z":  # A diverging chain's energy spans orders of magnitude.
      ax.set_yscale("symlog", linthresh=1)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)
    ax.set_xlabel("Langevin steps")
    ax.set_title(name, fontsize=9)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle(f"{title}\n{feature}; dashed = held-out data" if title else
               f"{feature}; dashed = held-out data", fontsize=9)
  fig.tight_layout()
  file_io.save_figure_atomic(fig, path)
  plt.close(fig)
  return path


def format_table(curves: Mapping[str, Mapping[str, Any]]) -> str:
  """A Markdown table of every curve's rows (label, step, fd, energy_z, ...)."""
  keys = ("fd", "energy_z", "energy_in_data", "saturation", "out_of_range")
  lines = ["| model | steps | " + " | ".join(keys) + " |",
           "|---|---:|" + "---:|" * len(keys)]
  for label, result in curves.items():
    lines.append(f"| {label}: held-out data | - | " +
                 " | ".join(f"{result['data'][k]:.3g}" for k in keys) + " |")
    for row in result["rows"]:
      lines.append(f"| {label} | {row['step']} | " +
                   " | ".join(f"{row[k]:.3g}" for k in keys) + " |")
  return "\n".join(lines)


FLAG_HELP = {  # help texts of the MetricsConfig flags
    "feature": "'classifier' (the project classifier's features; not comparable to Inception "
               "FID) or 'inception' (Inception FID, needs the [fid] extra)",
    "classifier_dir": "an ebm_tf.train_classifier run (for --feature=classifier)",
    "reference_split": "split of the reference images (the paper: train)",
    "reference_count": "reference images (0 = --num_samples)",
    "heldout_split": "split of the held-out images drawn as the 'data' line",
    "cache_dir": "where reference statistics are cached ('' = OUT/reference_stats)",
}


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
  """How the snapshots of a sampling job are scored."""

  feature: str = "classifier"  # 'classifier' (project classifier features) or 'inception'
  classifier_dir: str = ""  # an ebm_tf.train_classifier run (feature 'classifier')
  reference_split: str = "train"  # the paper's reference set: the training split
  reference_count: int = 0  # 0 = as many as --num_samples
  heldout_split: str = "test"  # held-out data: the "data" line of the plots
  cache_dir: str = ""  # where reference statistics are cached ('' = <output_dir>/..)

  def __post_init__(self):
    if self.feature not in ("classifier", "inception"):
      raise ValueError(f"--feature must be 'classifier' or 'inception'; got {self.feature!r}")
    if self.feature == "classifier" and not self.classifier_dir:
      raise ValueError("--feature=classifier needs --classifier_dir (an ebm_tf.train_classifier "
                       "run)")
    if not isinstance(self.reference_count, int) or self.reference_count < 0:
      raise ValueError(f"--reference_count must be an int >= 0; got {self.reference_count!r}")


def score_job(output_dir: str, model: sampling.SamplingModel, metrics: MetricsConfig,
              num_samples: int) -> Dict[str, Any]:
  """Scores every snapshot in a sampling job's `output_dir` (`evaluate_snapshots`) against the
  reference and held-out data of the model's dataset.

  Args:
    output_dir: a `sampling` job directory (samples_<step>.npz files).
    model: the job's model (`sampling.load_model`): its energies and run config.
    metrics: how to score.
    num_samples: int >= 1, the job's chain count (reference and held-out counts default to it).

  Returns:
    The `evaluate_snapshots` result.
  """
  c = model.run_config
  extractor = fid.make_extractor(metrics.feature, metrics.classifier_dir or None)
  count = metrics.reference_count or num_samples
  cache_dir = metrics.cache_dir or os.path.join(output_dir, "reference_stats")
  reference = fid.reference_stats(extractor, c.dataset, count, split=metrics.reference_split,
                                  data_dir=c.data_dir, image_size=c.image_size,
                                  cache_dir=cache_dir)
  data_energy = energy_reference(sampling.batched_energies(
      model.energy_fn, datasets.load_array(c.dataset, metrics.reference_split, max_examples=count,
                                       data_dir=c.data_dir, image_size=c.image_size)[0]))
  heldout, _ = datasets.load_array(c.dataset, metrics.heldout_split, max_examples=num_samples,
                                   data_dir=c.data_dir, image_size=c.image_size)
  data_metrics = data_reference_metrics(
      heldout, sampling.batched_energies(model.energy_fn, heldout), extractor=extractor,
      reference=reference, data_energy=data_energy)
  return evaluate_snapshots(output_dir, extractor=extractor, reference=reference,
                            data_energy=data_energy, data_metrics=data_metrics)


def evaluate(sample_config: sampling.SampleConfig, metrics: MetricsConfig) -> Dict[str, Any]:
  """Runs (or resumes) the sampling job, scores every snapshot, writes stability.json/.png.

  Returns:
    The `evaluate_snapshots` result, plus 'sampling' (the job summary).
  """
  model = sampling.load_job_model(sample_config)
  summary = sampling.sample(sample_config, model)
  result = score_job(sample_config.output_dir, model, metrics, sample_config.num_samples)
  plot_curves({os.path.basename(os.path.normpath(sample_config.model_dir)): result},
              os.path.join(sample_config.output_dir, PLOT_FILENAME),
              title=f"{sample_config.model_dir} ({summary['init']} init)")
  result["sampling"] = summary
  return result


def define_flags(flag_values=None) -> None:
  """Defines the flags of `sampling.SampleConfig` and `MetricsConfig` (binaries only)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flag_values or flags.FLAGS
  flag_config.define_flags(sampling.SampleConfig, sampling.FLAG_HELP, flag_values)
  flag_config.define_flags(MetricsConfig, FLAG_HELP, flag_values)


def configs_from_flags(flag_values) -> "tuple[sampling.SampleConfig, MetricsConfig]":
  """The (sampling, metrics) configs of parsed flags; ValueError names a bad flag."""
  return (sampling.SampleConfig(**flag_config.from_flags(sampling.SampleConfig, flag_values, {})),
          MetricsConfig(**flag_config.from_flags(MetricsConfig, flag_values, {})))
