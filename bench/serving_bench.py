r"""Serving latency and throughput of the purifier: in-process vs SavedModel vs gRPC vs REST.

  .venv/bin/python bench/serving_bench.py [--batch_sizes=1,64] [--num_steps=100,2000] \
      [--xla=false,true] [--output=bench/results/serving_bench.json]

For each XLA setting it builds one purifier (random tiny networks by default, or a trained run
with --checkpoint_dir/--classifier_dir), exports it, and for each batch size and step count
times `serving_default` calls (seed fixed, one EOT repeat) four ways:

  inprocess  the exported tf.Module's `serve` tf.function, in this process
  reloaded   `tf.saved_model.load(version_dir).signatures["serving_default"]`
  grpc       the project's gRPC client -> the loopback TF Serving stand-in (a test double
             running the version in a TF1 Session, as TF Serving does) in this process
  rest       the REST client -> the same stand-in

Each cell reports p50/p99 latency and throughput (images/s of one sequential client); the
modes are timed in interleaved rounds so that background load hits them alike. Targets:
gRPC adds at most 2 ms at p50 over in-process at batch 1, and the reloaded SavedModel is within
5% of in-process. The stand-in shares this process (and its cores) with the client, and is
not TF Serving: its numbers bound the protocol overhead, they do not measure TF Serving.
Cells are bounded: at most --iterations timed calls and about --max_seconds_per_cell seconds.
"""

import json
import os
import platform
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

import keras  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from ebm_tf import classifier_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from ebm_tf import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from export import client as client_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from ebm_tf import runs  # pylint: disable=g-import-not-at-top,wrong-import-position
from export import purifier_module  # pylint: disable=g-import-not-at-top,wrong-import-position
from export import saved_model_export  # pylint: disable=g-import-not-at-top,wrong-import-position
from export import standin_server  # pylint: disable=g-import-not-at-top,wrong-import-position

MODES = ("inprocess", "reloaded", "grpc", "rest")

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "64"], "request batch sizes")
_NUM_STEPS = flags.DEFINE_list("num_steps", ["100", "2000"], "Langevin steps per request")
_XLA = flags.DEFINE_list("xla", ["false", "true"], "jit_compile settings to export and time")
_MODES = flags.DEFINE_list("modes", list(MODES), f"subset of {MODES}")
_ITERATIONS = flags.DEFINE_integer("iterations", 30, "timed calls per cell (at most)")
_MAX_SECONDS = flags.DEFINE_float("max_seconds_per_cell", 30.0,
                                  "stop timing a cell after about this long (>= 3 calls)")
_CHECKPOINT_DIR = flags.DEFINE_string("checkpoint_dir", None,
                                      "EBM training run (default: random ebm_small)")
_CLASSIFIER_DIR = flags.DEFINE_string("classifier_dir", None,
                                      "classifier run (default: random small_cnn)")
_IMAGE_SHAPE = flags.DEFINE_list("image_shape", ["32", "32", "3"],
                                 "H,W,C of the random networks (without --checkpoint_dir)")
_OUTPUT = flags.DEFINE_string("output", os.path.join(_ROOT, "bench", "results",
                                                     "serving_bench.json"), "JSON output path")


def build_module(jit_compile: bool, max_batch: int, max_steps: int
                 ) -> purifier_module.PurifierModule:
  """The purifier to time: a trained run if given, else random ebm_small + small_cnn."""
  if _CHECKPOINT_DIR.value:
    ebm, train_config, _ = runs.restore_ebm(_CHECKPOINT_DIR.value)
    step_size, temperature = train_config.epsilon, train_config.mcmc_temp
  else:
    keras.utils.set_random_seed(0)
    shape = tuple(int(d) for d in _IMAGE_SHAPE.value)
    ebm = models.build_ebm("ebm_small", shape)
    step_size, temperature = 0.01, 1e-2
  shape = tuple(int(d) for d in ebm.inputs[0].shape[1:])
  if _CLASSIFIER_DIR.value:
    classifier, _ = classifier_lib.load_classifier(_CLASSIFIER_DIR.value)
  else:
    classifier = models.build_classifier("small_cnn", shape, 10)
  config = purifier_module.PurifierConfig(
      image_shape=shape, step_size=step_size, temperature=temperature,
      default_num_steps=min(100, max_steps), max_num_steps=max_steps, max_batch_size=max_batch,
      jit_compile=jit_compile)
  return purifier_module.PurifierModule(ebm, config, classifier)


def time_interleaved(calls: dict, iterations: int, max_seconds: float) -> dict:
  """Latencies (s) per mode: rounds of one call per mode, after one warm-up call each.

  Interleaving spreads background load (shared machines) evenly over the modes. At most
  `iterations` rounds; stops after ~max_seconds once every mode has 3 calls.
  """
  for call in calls.values():
    call()
  times = {mode: [] for mode in calls}
  deadline = time.perf_counter() + max_seconds
  rounds = 0
  while rounds < iterations and (rounds < 3 or time.perf_counter() < deadline):
    for mode, call in calls.items():
      start = time.perf_counter()
      call()
      times[mode].append(time.perf_counter() - start)
    rounds += 1
  return times


def bench_export(jit_compile: bool, batch_sizes, step_counts, modes, export_base) -> list:
  """Rows for one XLA setting."""
  module = build_module(jit_compile, max(batch_sizes), max(step_counts))
  result = saved_model_export.export_saved_model(module, export_base,
                                                 f"purifier_xla{int(jit_compile)}",
                                                 warmup_batch_sizes=sorted(set(batch_sizes)))
  reloaded = tf.saved_model.load(result.version_dir).signatures["serving_default"]
  server = standin_server.StandinModelServer(result.model_dir, os.path.basename(
      result.model_dir)).start()
  grpc_client = client_lib.GrpcPurifierClient(server.grpc_target, server.model_name,
                                              timeout_s=3600)
  rest_client = client_lib.RestPurifierClient(server.rest_url, server.model_name,
                                              timeout_s=3600)
  rows = []
  try:
    for batch in batch_sizes:
      images = np.random.default_rng(batch).uniform(
          -1, 1, (batch,) + module.config.image_shape).astype(np.float32)
      for steps in step_counts:
        seed = np.array([1, 2], np.int64)
        tensors = dict(images=tf.constant(images), seed=tf.constant(seed),
                       num_steps=tf.constant(steps, tf.int32),
                       num_repeats=tf.constant(1, tf.int32))
        calls = {
            "inprocess": lambda: module.serve(**tensors)["purified"].numpy(),
            "reloaded": lambda: reloaded(**tensors)["purified"].numpy(),
            "grpc": lambda: grpc_client.purify(images, seed=seed, num_steps=steps,
                                               num_repeats=1)["purified"],
            "rest": lambda: rest_client.purify(images, seed=seed, num_steps=steps,
                                               num_repeats=1)["purified"],
        }
        timings = time_interleaved({m: calls[m] for m in modes}, _ITERATIONS.value,
                                   _MAX_SECONDS.value)
        for mode in modes:
          times = np.array(timings[mode])
          row = {"mode": mode, "xla": jit_compile, "batch": batch, "num_steps": steps,
                 "image_shape": list(module.config.image_shape),
                 "calls": len(times), "p50_ms": float(np.percentile(times, 50) * 1e3),
                 "p99_ms": float(np.percentile(times, 99) * 1e3),
                 "mean_ms": float(times.mean() * 1e3),
                 "images_per_s": float(batch / times.mean())}
          rows.append(row)
          print(_format_row(row), flush=True)
  finally:
    grpc_client.close()
    server.stop()
  return rows


def _format_row(row: dict) -> str:
  return (f"{row['mode']:>9} xla={str(row['xla']):5} batch={row['batch']:>3} "
          f"steps={row['num_steps']:>5} calls={row['calls']:>3} p50={row['p50_ms']:9.2f} ms "
          f"p99={row['p99_ms']:9.2f} ms {row['images_per_s']:9.1f} img/s")


def summarize(rows: list) -> list:
  """Per (xla, batch, steps): gRPC/REST p50 overhead (ms) and reloaded/in-process p50 ratio."""
  out = []
  keys = sorted({(r["xla"], r["batch"], r["num_steps"]) for r in rows})
  for key in keys:
    cell = {r["mode"]: r for r in rows if (r["xla"], r["batch"], r["num_steps"]) == key}
    if "inprocess" not in cell:
      continue
    base = cell["inprocess"]["p50_ms"]
    entry = {"xla": key[0], "batch": key[1], "num_steps": key[2], "inprocess_p50_ms": base}
    for mode in ("grpc", "rest"):
      if mode in cell:
        entry[f"{mode}_overhead_p50_ms"] = cell[mode]["p50_ms"] - base
    if "reloaded" in cell:
      entry["reloaded_over_inprocess"] = cell["reloaded"]["p50_ms"] / base
    if key[1] == 1 and "grpc" in cell:
      entry["grpc_target_met"] = entry["grpc_overhead_p50_ms"] <= 2.0
    if "reloaded" in cell:
      entry["reloaded_target_met"] = entry["reloaded_over_inprocess"] <= 1.05
    out.append(entry)
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  modes = [m for m in _MODES.value]
  unknown = sorted(set(modes) - set(MODES))
  if unknown:
    raise app.UsageError(f"unknown modes {unknown}; choose from {MODES}")
  batch_sizes = [int(b) for b in _BATCH_SIZES.value]
  step_counts = [int(s) for s in _NUM_STEPS.value]
  rows = []
  with tempfile.TemporaryDirectory() as export_base:
    for xla in _XLA.value:
      rows += bench_export(xla.lower() in ("1", "true", "yes"), batch_sizes, step_counts,
                           modes, export_base)
  summary = summarize(rows)
  print("\nsummary (p50 overheads vs in-process):")
  for entry in summary:
    print(json.dumps(entry))
  report = {
      "rows": rows, "summary": summary,
      "environment": {"tensorflow": tf.__version__, "python": platform.python_version(),
                      "cpu_count": os.cpu_count(),
                      "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
                      "load_average": list(os.getloadavg()),
                      "checkpoint_dir": _CHECKPOINT_DIR.value},
  }
  os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
  with open(_OUTPUT.value, "w") as f:
    json.dump(report, f, indent=2)
  print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
