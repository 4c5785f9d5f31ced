r"""Purification throughput: eager vs tf.function vs XLA (jit_compile), per energy network.

  .venv/bin/python bench/purify_bench.py [--purify_steps=2000] [--batch_size=64] \
      [--timed_steps=small:20,sngan32:2] [--modes=eager,function,xla] \
      [--output=bench/results/purify_bench.json]

Times `ebm_tf.defense.purify` (one Langevin chain per image, no EOT repeats) on random images for each
network and mode: after one warm-up call (tracing / XLA compilation, reported separately), the
median of --repeats calls of `timed_steps` Langevin steps gives seconds per step, and the
throughput at --purify_steps steps is batch_size / (seconds_per_step * purify_steps). When
timed_steps < purify_steps (the default on a CPU) that throughput is EXTRAPOLATED linearly and
labelled so in the table and the JSON. Networks: 'small' = ebm_small width 16 on 8x8x1 (the
digits midrun EBM), 'sngan32' = EBMSNGAN32 on 32x32x3 (the paper's CIFAR-10 EBM), both
untrained (the cost does not depend on the weights).
"""

import json
import os
import platform
import time

from absl import app
from absl import flags

from ebm_tf.internal import file_io

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETS = {"small": ("ebm_small", (8, 8, 1), {"width": 16}),
        "sngan32": ("ebm_sngan32", (32, 32, 3), {})}
MODES = ("eager", "function", "xla")

_PURIFY_STEPS = flags.DEFINE_integer("purify_steps", 2000, "purification length reported")
_BATCH = flags.DEFINE_integer("batch_size", 64, "images purified together")
_TIMED = flags.DEFINE_list("timed_steps", ["small:20", "sngan32:2"],
                           "net:steps actually run per timed call (per net)")
_MODES = flags.DEFINE_list("modes", list(MODES), f"subset of {MODES}")
_NETS = flags.DEFINE_list("nets", list(NETS), f"subset of {list(NETS)}")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timed calls per case (median)")
_OUTPUT = flags.DEFINE_string("output", os.path.join(_ROOT, "bench", "results",
                                                     "purify_bench.json"), "JSON output path")


def bench_case(net: str, mode: str, timed_steps: int, batch_size: int, repeats: int,
               purify_steps: int) -> dict:
  """Times one (network, mode); returns a result row."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ebm_tf.defense import purify  # pylint: disable=g-import-not-at-top
  from ebm_tf import models  # pylint: disable=g-import-not-at-top

  name, shape, kwargs = NETS[net]
  energy = models.energy_fn(models.build_ebm(name, shape, **kwargs))
  x = tf.random.stateless_uniform([batch_size, *shape], [0, 1], minval=-1.0, maxval=1.0)
  seed = tf.constant([1, 2], tf.int32)
  if mode == "eager":
    def run():
      return purify.purify(energy, x, seed, num_steps=timed_steps, step_size=0.01,
                           temperature=1e-4).numpy()
  else:
    purifier = purify.make_purifier(energy, shape, jit_compile=mode == "xla")

    def run():
      return purifier(x, seed, timed_steps, 0.01, 1e-4, 1).numpy()
  began = time.perf_counter()
  out = run()
  first = time.perf_counter() - began
  if not np.all(np.isfinite(out)):
    raise RuntimeError(f"{net}/{mode}: non-finite purified images")
  times = []
  for _ in range(repeats):
    began = time.perf_counter()
    run()
    times.append(time.perf_counter() - began)
  call = float(np.median(times))
  per_step = call / timed_steps
  return {"net": net, "model": name, "image_shape": list(shape), "mode": mode,
          "batch_size": batch_size, "timed_steps": timed_steps, "repeats": repeats,
          "first_call_s": first, "warmup_overhead_s": max(0.0, first - call),
          "seconds_per_step": per_step, "purify_steps": purify_steps,
          "images_per_s": batch_size / (per_step * purify_steps),
          "seconds_per_batch": per_step * purify_steps,
          "extrapolated": timed_steps < purify_steps}


def _format_row(row: dict, eager_rate=None) -> str:
  speedup = f"{row['images_per_s'] / eager_rate:7.2f}x" if eager_rate else f"{'-':>8}"
  label = " (extrapolated)" if row["extrapolated"] else ""
  return (f"{row['net']:<8} {'x'.join(map(str, row['image_shape'])):<8} {row['mode']:<9} "
          f"{row['timed_steps']:>6} {row['seconds_per_step'] * 1e3:>10.1f} "
          f"{row['warmup_overhead_s']:>9.1f} {row['images_per_s']:>12.4g} {speedup}{label}")


def table(rows) -> str:
  header = (f"{'net':<8} {'shape':<8} {'mode':<9} {'timed':>6} {'ms/step':>10} {'warmup s':>9} "
            f"{'img/s@' + str(rows[0]['purify_steps']) if rows else 'img/s':>12} "
            f"{'vs eager':>8}")
  lines = [header, "-" * len(header)]
  for row in rows:
    eager = [r for r in rows if r["net"] == row["net"] and r["mode"] == "eager"]
    lines.append(_format_row(row, eager[0]["images_per_s"] if eager else None))
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  timed = {}
  for item in _TIMED.value:
    net, _, steps = item.partition(":")
    if net not in NETS or not steps.isdigit() or int(steps) < 1:
      raise app.UsageError(f"--timed_steps entries must be net:steps with net in {list(NETS)} "
                           f"and steps >= 1; got {item!r}")
    timed[net] = int(steps)
  for mode in _MODES.value:
    if mode not in MODES:
      raise app.UsageError(f"--modes must be a subset of {MODES}; got {mode!r}")
  rows = []
  for net in _NETS.value:
    if net not in NETS:
      raise app.UsageError(f"--nets must be a subset of {list(NETS)}; got {net!r}")
    for mode in _MODES.value:
      rows.append(bench_case(net, mode, timed.get(net, 10), _BATCH.value, _REPEATS.value,
                             _PURIFY_STEPS.value))
      print(_format_row(rows[-1]), flush=True)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  device = ", ".join(d.device_type for d in tf.config.list_physical_devices()) or "CPU"
  print()
  print(table(rows))
  os.makedirs(os.path.dirname(_OUTPUT.value), exist_ok=True)
  result = {"rows": rows, "devices": device, "cpu_count": os.cpu_count(),
            "machine": platform.platform(), "load_average": os.getloadavg(),
            "tensorflow": tf.__version__,
            "note": "images_per_s at purify_steps, extrapolated from timed_steps when "
                    "'extrapolated' is true; one chain per image (no EOT repeats)"}
  file_io.write_json_atomic(_OUTPUT.value, result)
  print(f"\nwrote {_OUTPUT.value} (load average at the end: "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())})")


if __name__ == "__main__":
  app.run(main)
