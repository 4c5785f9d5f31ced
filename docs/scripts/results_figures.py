r"""Assembles the figures and tables of docs/results.md from the evaluation directories.

  .venv/bin/python docs/scripts/results_figures.py [--results=runs/results] [--docs=docs]

Reads the stability.json / sweep.json files that docs/scripts/results_digits.sh produced and
writes docs/results_*.png (curves via ebm_tf.evaluation.stability.plot_curves, sample grids side by side)
and prints the Markdown tables.
"""

import json
import os

from absl import app
from absl import flags
import numpy as np

from ebm_tf.evaluation import checkpoint_sweep
from ebm_tf.evaluation import sampling
from ebm_tf.evaluation import stability
from ebm_tf.internal import file_io
from ebm_tf.training import summaries

_RESULTS = flags.DEFINE_string("results", "runs/results", "results_digits.sh output folder")
_DOCS = flags.DEFINE_string("docs", "docs", "where figures go")

# label -> (evaluation directory, training-trajectory length in Langevin steps to mark)
_PROTOCOL = {
    "shortrun (3K iters)": ("stability_shortrun", 150),
    "midrun": ("stability_midrun", 1000),
    "longrun (prior + correction)": ("stability_longrun", 8200),
}


def _load(path):
  with open(path) as f:
    return json.load(f)


def _grid_row(directory, steps, path, num_images=32):
  """One PNG: the first `num_images` samples at each of `steps`, grids side by side."""
  grids = []
  for step in steps:
    images, _ = sampling.load_snapshot(sampling.snapshot_path(directory, step))
    grids.append(summaries.image_grid(np.clip(images[:num_images], -1, 1), num_rows=4))
  height = max(g.shape[0] for g in grids)
  spacer = np.full([height, 6, grids[0].shape[2]], 128, np.uint8)
  parts = []
  for grid in grids:
    parts += [np.pad(grid, [(0, height - grid.shape[0]), (0, 0), (0, 0)]), spacer]
  row = np.concatenate(parts[:-1], axis=1)
  row = np.repeat(np.repeat(row, 3, axis=0), 3, axis=1)  # 8x8 digits: upscale for reading
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with file_io.atomic_file(path, "wb") as f:
    f.write(tf.io.encode_png(row).numpy())
  print(f"wrote {path} (steps {steps})")


def main(argv):
  del argv
  results, docs = _RESULTS.value, _DOCS.value
  curves, marks = {}, {}
  for label, (name, trajectory) in _PROTOCOL.items():
    path = os.path.join(results, name, stability.METRICS_FILENAME)
    if os.path.exists(path):
      curves[label] = _load(path)
      marks[label] = [trajectory]
  if curves:
    stability.plot_curves(curves, os.path.join(docs, "results_stability_digits.png"),
                          title="digits 8x8: 128 chains from the same training images, each "
                                "model's own Langevin settings (dotted: training trajectory)",
                          marks=marks)
    print(stability.format_table(curves))
  for label, (name, _) in _PROTOCOL.items():
    directory = os.path.join(results, name)
    steps = [s for s, _ in sampling.list_snapshots(directory) if s in (0, 1750, 17500, 50000)]
    if steps:
      _grid_row(directory, steps, os.path.join(docs, f"results_grid_{name}.png"))
  own = os.path.join(results, "stability_shortrun_own")
  if os.path.exists(os.path.join(own, stability.METRICS_FILENAME)):
    result = _load(os.path.join(own, stability.METRICS_FILENAME))
    stability.plot_curves({"shortrun from its generator": result},
                          os.path.join(docs, "results_shortrun_own_digits.png"),
                          title="shortrun digits model: fresh G(z) chains (eval steps 175)",
                          marks={"shortrun from its generator": [175]})
    print(stability.format_table({"shortrun, G(z) init": result}))
    _grid_row(own, [s for s, _ in sampling.list_snapshots(own) if s in (0, 175, 1750, 17500)],
              os.path.join(docs, "results_grid_shortrun_own.png"))
  sweep = os.path.join(results, "sweep_shortrun", checkpoint_sweep.SWEEP_FILENAME)
  if os.path.exists(sweep):
    summary = _load(sweep)
    checkpoint_sweep.plot_sweep(summary, os.path.join(docs, "results_sweep_shortrun.png"),
                                title="shortrun digits: FD over checkpoints")
    print(checkpoint_sweep.format_sweep_table(summary))


if __name__ == "__main__":
  app.run(main)
