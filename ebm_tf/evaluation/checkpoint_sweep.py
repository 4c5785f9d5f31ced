"""FID over a run's checkpoints, to pick the one to report (docs/paper_settings.md section 8.1).

For each selected checkpoint, `stability.evaluate` draws `num_samples` fresh chains (by default
the paper's protocol: generator samples run for the run's `eval_mcmc_steps`) into
`<output_dir>/ckpt-<step>/` and scores the final samples against the training split; the sweep
collects one row per checkpoint into `<output_dir>/sweep.json` and plots FID against the
training step. Every part resumes: finished checkpoints are read back, not recomputed.
"""

import dataclasses
import os
import re
from typing import Any, Dict, List, Tuple

import tensorflow as tf

from ebm_tf.evaluation import sampling
from ebm_tf.evaluation import stability
from ebm_tf.internal import file_io

SWEEP_FILENAME = "sweep.json"
SWEEP_PLOT_FILENAME = "sweep.png"


def run_checkpoints(model_dir: str) -> List[Tuple[int, str]]:
  """(step, prefix) of every checkpoint listed in `<model_dir>/checkpoints`, by step.

  Raises:
    FileNotFoundError: no checkpoint there.
  """
  state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
  found = []
  # TF resolves paths recorded relative to the checkpoint directory.
  for path in (state.all_model_checkpoint_paths if state else []):
    match = re.search(r"ckpt-(\d+)$", path)
    if match and tf.io.gfile.exists(path + ".index"):
      found.append((int(match.group(1)), path))
  if not found:
    raise FileNotFoundError(f"no checkpoints in {model_dir}/checkpoints")
  return sorted(found)


def select_checkpoints(model_dir: str, spec: str) -> List[Tuple[int, str]]:
  """Checkpoints chosen by `spec`: 'all', 'latest', or comma-separated steps ('1000,2000').

  Raises:
    ValueError: a bad spec or a step with no checkpoint (the message lists the steps there).
  """
  available = run_checkpoints(model_dir)
  if spec == "all":
    return available
  if spec == "latest":
    return available[-1:]
  try:
    steps = [int(s) for s in spec.split(",") if s.strip()]
  except ValueError:
    raise ValueError(f"--checkpoints must be 'all', 'latest' or comma-separated steps; "
                     f"got {spec!r}") from None
  by_step = dict(available)
  missing = [s for s in steps if s not in by_step]
  if not steps or missing:
    raise ValueError(f"--checkpoints {spec!r}: no checkpoint for steps {missing or spec}; "
                     f"{model_dir} has steps {sorted(by_step)}")
  return [(s, by_step[s]) for s in steps]


def sweep(sample_config: sampling.SampleConfig, metrics: stability.MetricsConfig,
          checkpoints_spec: str = "all") -> Dict[str, Any]:
  """Scores each selected checkpoint's samples; writes sweep.json and sweep.png.

  Args:
    sample_config: the sampling settings for every checkpoint (its `checkpoint` and
      `record_steps` are ignored; `output_dir` is the sweep's directory).
    metrics: how samples are scored (feature, reference set).
    checkpoints_spec: see `select_checkpoints`.

  Returns:
    dict(feature, num_reference, rows=[{step, checkpoint, num_samples, fd, ...}], best_step).
  """
  cache_dir = metrics.cache_dir or os.path.join(sample_config.output_dir, "reference_stats")
  metrics = dataclasses.replace(metrics, cache_dir=cache_dir)
  rows, feature, num_reference, data_row = [], None, None, None
  for step, path in select_checkpoints(sample_config.model_dir, checkpoints_spec):
    job = dataclasses.replace(sample_config, checkpoint=path, record_steps=(),
                              output_dir=os.path.join(sample_config.output_dir, f"ckpt-{step}"))
    result = stability.evaluate(job, metrics)
    final = result["rows"][-1]
    rows.append(dict(final, step=step, chain_steps=final["step"], checkpoint=path))
    feature, num_reference, data_row = result["feature"], result["num_reference"], result["data"]
    summary = dict(feature=feature, num_reference=num_reference, data=data_row, rows=rows,
                   best_step=min(rows, key=lambda r: r["fd"])["step"])
    file_io.write_json_atomic(os.path.join(sample_config.output_dir, SWEEP_FILENAME), summary)
  plot_sweep(summary, os.path.join(sample_config.output_dir, SWEEP_PLOT_FILENAME),
             title=sample_config.model_dir)
  return summary


def plot_sweep(summary: Dict[str, Any], path: str, title: str = "") -> str:
  """PNG of FD against the training step, best checkpoint marked; written atomically."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  steps = [row["step"] for row in summary["rows"]]
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  ax.plot(steps, [row["fd"] for row in summary["rows"]], "o-")
  ax.axvline(summary["best_step"], linestyle=":", color="gray", label="best")
  ax.axhline(summary["data"]["fd"], linestyle="--", color="black", linewidth=0.8,
             label="held-out data")
  ax.set_xlabel("training step")
  ax.set_ylabel("Frechet distance")
  n = summary["rows"][-1]["num_samples"]
  ax.set_title(f"{title}\n{summary['feature']}\n{n} samples vs {summary['num_reference']} "
               "train images", fontsize=8)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  file_io.save_figure_atomic(fig, path)
  plt.close(fig)
  return path


def format_sweep_table(summary: Dict[str, Any]) -> str:
  """Markdown table: checkpoint step, FD (with sample counts), energy_z, out_of_range."""
  lines = [f"{summary['feature']}",
           "| checkpoint step | chain steps | samples | FD | energy_z | out_of_range |",
           "|---:|---:|---:|---:|---:|---:|"]
  for row in summary["rows"]:
    best = " (best)" if row["step"] == summary["best_step"] else ""
    lines.append(f"| {row['step']}{best} | {row['chain_steps']} | {row['num_samples']} | "
                 f"{row['fd']:.3f} | {row['energy_z']:.3g} | {row['out_of_range']:.3g} |")
  lines.append(f"| held-out data | - | - | {summary['data']['fd']:.3f} | "
               f"{summary['data']['energy_z']:.3g} | {summary['data']['out_of_range']:.3g} |")
  return "\n".join(lines)
