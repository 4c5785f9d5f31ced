r"""Peak memory and time of the exact gradient through a whole purification chain.

  .venv/bin/python bench/exact_gradient_bench.py [--purify_steps=1000] [--batch_size=8] \
      [--segment_lengths=10,32,100] [--variants=bpda,exact,unrolled] [--rounds=2] \
      [--output=bench/results/exact_gradient_bench.json]

For one L-step purification (`ebm_tf.defense.purify` settings: eps = 1.25e-2, T = 1e-4, one chain per
image) of `batch_size` random 8x8x1 images through an untrained `ebm_small` (width
--ebm_width; the cost does not depend on the weights), each variant computes the value and the
input gradient of a fixed random linear functional of the purified images:

- bpda: the BPDA gradient (`attacks.bpda_purify`: forward chain only, identity backward);
- exact k=K: `exact_gradient.exact_gradient_purify` with segment length K (keeps ceil(L/K) + K
  states; L gradients forward, L recomputed, L Hessian-vector products backward);
- unrolled: plain backprop through the unrolled chain (`attacks.full_gradient_purify` with
  max_chain_steps = L: the tape keeps every step's activations).

Each (variant, round) runs in its own subprocess, so that its peak resident memory is its own:
peak = ru_maxrss at the end minus the resident size just before the first call (models built,
TensorFlow loaded); it includes tracing. Time: the second call of the traced function (wall
and process CPU seconds; the machine is shared, so CPU seconds are the steadier number).
Rounds are interleaved (round 1 of every variant, then round 2, ...); the table shows medians
and every exact row's gradient against the unrolled one (relative L2 difference).
"""

import json
import os
import platform
import resource
import subprocess
import sys

from absl import app
from absl import flags

from ebm_tf.internal import file_io

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ("bpda", "exact", "unrolled")

_STEPS = flags.DEFINE_integer("purify_steps", 1000, "Langevin steps L of the chain")
_BATCH = flags.DEFINE_integer("batch_size", 8, "images (chains)")
_WIDTH = flags.DEFINE_integer("ebm_width", 16, "ebm_small width (the digits midrun EBM: 16)")
_SEGMENTS = flags.DEFINE_list("segment_lengths", ["10", "32", "100"],
                              "segment lengths k of the exact variant")
_VARIANTS = flags.DEFINE_list("variants", list(VARIANTS), f"subset of {VARIANTS}")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "interleaved rounds (one subprocess each)")
_OUTPUT = flags.DEFINE_string("output", os.path.join(_ROOT, "bench", "results",
                                                     "exact_gradient_bench.json"),
                              "JSON output path")
_CASE = flags.DEFINE_string("case", "", "internal: run one case (JSON) in this process")


def _rss_mib() -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024.0
  raise RuntimeError("no VmRSS in /proc/self/status")


def run_case(case: dict) -> dict:
  """Runs one case in this process; returns its measurements (and the gradient, as a list)."""
  import time  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ebm_tf.defense import attacks  # pylint: disable=g-import-not-at-top
  from ebm_tf.defense import exact_gradient  # pylint: disable=g-import-not-at-top
  from ebm_tf import models  # pylint: disable=g-import-not-at-top

  tf.keras.utils.set_random_seed(0)
  energy = models.energy_fn(models.build_ebm("ebm_small", (8, 8, 1), width=case["width"]))
  x = tf.random.stateless_uniform([case["batch"], 8, 8, 1], [0, 1], minval=-1.0, maxval=1.0)
  c = tf.random.stateless_normal([1, case["batch"], 8, 8, 1], [2, 3])
  seed = tf.constant([1, 2], tf.int32)
  settings = dict(num_steps=case["steps"], step_size=1.25e-2, temperature=1e-4)
  if case["variant"] == "bpda":
    purifier = lambda x: attacks.bpda_purify(energy, x, seed, **settings)
  elif case["variant"] == "exact":
    purifier = lambda x: exact_gradient.exact_gradient_purify(
        energy, x, seed, segment_length=case["segment_length"], **settings)
  else:
    purifier = lambda x: attacks.full_gradient_purify(energy, x, seed,
                                                      max_chain_steps=case["steps"], **settings)

  @tf.function
  def value_and_grad(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      value = tf.reduce_sum(c * purifier(x))
    return value, tape.gradient(value, x)

  base = _rss_mib()
  began = time.perf_counter()
  value_and_grad(x)[1].numpy()
  first = time.perf_counter() - began
  usage = resource.getrusage(resource.RUSAGE_SELF)
  began, cpu0 = time.perf_counter(), usage.ru_utime + usage.ru_stime
  value, grad = value_and_grad(x)
  grad = grad.numpy()
  wall = time.perf_counter() - began
  usage = resource.getrusage(resource.RUSAGE_SELF)
  cpu = usage.ru_utime + usage.ru_stime - cpu0
  peak = usage.ru_maxrss / 1024.0  # KiB on Linux
  if not np.all(np.isfinite(grad)):
    raise RuntimeError(f"{case}: non-finite gradient")
  return dict(case, baseline_rss_mib=base, peak_rss_mib=peak, peak_above_baseline_mib=peak - base,
              first_call_s=first, wall_s=wall, cpu_s=cpu, value=float(value),
              grad=grad.ravel().tolist())


def _label(case: dict) -> str:
  return f"exact k={case['segment_length']}" if case["variant"] == "exact" else case["variant"]


def table(rows, steps: int) -> str:
  """Median rows as a text table."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  unrolled = [r for r in rows if r["variant"] == "unrolled"]
  reference = np.asarray(unrolled[0]["grad"]) if unrolled else None
  bpda = [r for r in rows if r["variant"] == "bpda"]
  bpda_cpu = float(np.median([r["cpu_s"] for r in bpda])) if bpda else None
  header = (f"{'variant':<14} {'kept states':>11} {'peak MiB':>9} {'wall s':>8} {'cpu s':>8} "
            f"{'cpu / bpda':>10} {'rel diff vs unrolled':>21}")
  lines = [header, "-" * len(header)]
  labels = []
  for r in rows:
    if _label(r) not in labels:
      labels.append(_label(r))
  for label in labels:
    group = [r for r in rows if _label(r) == label]
    r = group[0]
    kept = {"bpda": "-", "unrolled": f"{steps + 1}"}.get(
        r["variant"], str(r["kept_states"]) if "kept_states" in r else "-")
    peak = float(np.median([g["peak_above_baseline_mib"] for g in group]))
    wall = float(np.median([g["wall_s"] for g in group]))
    cpu = float(np.median([g["cpu_s"] for g in group]))
    ratio = f"{cpu / bpda_cpu:10.2f}" if bpda_cpu else f"{'-':>10}"
    diff = "-"
    if reference is not None and r["variant"] != "unrolled":
      grad = np.asarray(r["grad"])
      diff = f"{np.linalg.norm(grad - reference) / np.linalg.norm(reference):.2e}"
    lines.append(f"{label:<14} {kept:>11} {peak:>9.1f} {wall:>8.2f} {cpu:>8.2f} {ratio} "
                 f"{diff:>21}")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _CASE.value:
    print("RESULT " + json.dumps(run_case(json.loads(_CASE.value))), flush=True)
    return
  for v in _VARIANTS.value:
    if v not in VARIANTS:
      raise app.UsageError(f"--variants must be a subset of {VARIANTS}; got {v!r}")
  if not all(k.isdigit() and int(k) >= 1 for k in _SEGMENTS.value):
    raise app.UsageError(f"--segment_lengths must be integers >= 1; got {_SEGMENTS.value}")
  from ebm_tf.defense import exact_gradient  # pylint: disable=g-import-not-at-top
  steps = _STEPS.value
  cases = []
  for v in _VARIANTS.value:
    for k in (_SEGMENTS.value if v == "exact" else [None]):
      case = dict(variant=v, steps=steps, batch=_BATCH.value, width=_WIDTH.value)
      if k is not None:
        case.update(segment_length=int(k),
                    kept_states=exact_gradient.kept_states(steps, int(k)))
      cases.append(case)
  rows = []
  for round_index in range(_ROUNDS.value):
    for case in cases:
      command = [sys.executable, os.path.abspath(__file__), f"--case={json.dumps(case)}"]
      done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=_ROOT,
                            env=dict(os.environ, PYTHONPATH=_ROOT))
      results = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
      if done.returncode != 0 or not results:
        raise RuntimeError(f"case {case} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
      row = dict(json.loads(results[-1][len("RESULT "):]), round=round_index)
      rows.append(row)
      print(f"round {round_index} {_label(row):<14} peak +{row['peak_above_baseline_mib']:.1f} "
            f"MiB, {row['wall_s']:.2f} s wall, {row['cpu_s']:.2f} s cpu", flush=True)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  text = table(rows, steps)
  print()
  print(f"L = {steps} steps, batch {_BATCH.value}, ebm_small width {_WIDTH.value} on 8x8x1, "
        f"medians of {_ROUNDS.value} interleaved rounds")
  print(text)
  for row in rows:  # the gradients are compared in the table; the JSON keeps a digest
    row["grad_norm"] = float(sum(g * g for g in row["grad"]) ** 0.5)
  summary_rows = [{k: v for k, v in r.items() if k != "grad"} for r in rows]
  result = {"rows": summary_rows, "table": text, "purify_steps": steps,
            "batch_size": _BATCH.value, "ebm_width": _WIDTH.value,
            "cpu_count": os.cpu_count(), "machine": platform.platform(),
            "load_average_end": os.getloadavg(), "tensorflow": tf.__version__,
            "note": "peak_above_baseline_mib = ru_maxrss - RSS before the first call (includes "
                    "tracing); wall_s / cpu_s of the second call; one subprocess per row"}
  os.makedirs(os.path.dirname(_OUTPUT.value), exist_ok=True)
  file_io.write_json_atomic(_OUTPUT.value, result)
  print(f"\nwrote {_OUTPUT.value} (load average at the end: "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())})")


if __name__ == "__main__":
  app.run(main)
