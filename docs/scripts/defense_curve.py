r"""Robust accuracy against the l_inf radius: one Markdown table and one plot from attack runs.

  .venv/bin/python docs/scripts/defense_curve.py --output=docs/defense_digits_curve.png \
      --runs="undefended:16=runs/x/undef_eps16,undefended:32=runs/x/undef_eps32,..."

Each entry of --runs is `label:eps_255=DIR`, DIR an `ebm_tf.attack` --output_dir holding a
summary.json. Prints one Markdown row per (label, radius): natural accuracy (mean over seeds),
the worst case over seeds of the robust accuracy with its 95% Wilson interval, images, seeds,
compute; and plots the worst-case robust accuracy with its interval against the radius, one
line per label (ebm_tf.internal.file_io.save_figure_atomic). Missing summaries are listed as not run.
"""

import json
import os

from absl import app
from absl import flags

from ebm_tf.internal import file_io
from ebm_tf.training import summaries

_RUNS = flags.DEFINE_list("runs", [], "label:eps_255=DIR entries")
_OUTPUT = flags.DEFINE_string("output", "", "PNG written ('' = no plot)")
_TITLE = flags.DEFINE_string("title", "", "plot title")


def _parse(entry):
  head, directory = entry.split("=", 1)
  label, eps = head.rsplit(":", 1)
  return label, float(eps), directory


def main(argv):
  del argv
  lines = ["| defense | eps (/255) | natural | robust, worst of seeds [95% CI] | images | seeds | "
           "compute |", "|---|---|---|---|---|---|---|"]
  curves = {}
  for entry in _RUNS.value:
    label, eps, directory = _parse(entry)
    path = os.path.join(directory, "summary.json")
    if not os.path.exists(path):
      lines.append(f"| {label} | {eps:g} | not run | | | | |")
      continue
    with open(path) as f:
      s = json.load(f)
    worst = s["worst_case_robust_accuracy"]
    lines.append(
        f"| {label} | {eps:g} | {s['mean_natural_accuracy']:.3f} | **{worst['value']:.3f}** "
        f"[{worst['ci95'][0]:.3f}, {worst['ci95'][1]:.3f}] | {s['num_images']} | "
        f"{','.join(str(k) for k in s['seeds'])} | "
        f"{summaries.format_duration(s['compute_seconds'])} |")
    curves.setdefault(label, []).append((eps, worst["value"], *worst["ci95"]))
  print("\n".join(lines))
  if _OUTPUT.value and curves:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
    figure, axes = plt.subplots(figsize=(6.0, 4.0))
    for label, points in curves.items():
      points.sort()
      x = [p[0] for p in points]
      y = [p[1] for p in points]
      err = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
      axes.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
    axes.set_xlabel("l_inf radius eps (/255)")
    axes.set_ylabel("robust accuracy (worst of seeds, 95% CI)")
    axes.set_ylim(-0.02, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    if _TITLE.value:
      axes.set_title(_TITLE.value, fontsize=9)
    figure.tight_layout()
    file_io.save_figure_atomic(figure, _OUTPUT.value)
    plt.close(figure)
    print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
