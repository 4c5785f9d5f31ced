r"""Langevin step cost: the project's sampler against the paper's loop and the network's floor.

  .venv/bin/python bench/langevin_bench.py [--nets=small_digits,small_fmnist,sngan32] \
      [--batches=1,8,64,256] [--rounds=5] [--call_s=0.3] [--group_budget_s=small_digits:60,...] \
      [--output=bench/results/langevin_bench.json] [--mode=steps|ops|paired]

For each network and batch size ("group"), in interleaved rounds (each round calls every variant
once, so a change of the shared machine's load shifts them alike; medians over --rounds), it
times K Langevin steps per call of:

- `sampler`: the project's sampler, `ebm_tf.mcmc.langevin.make_sampler` (plain `tf.function`);
- `baseline`: `make_langevin_update` below, the reference loop exactly as docs/paper_settings.md
  (section 2, "The reference loop, as written") writes it: a `tf.function` with
  `for i in tf.range(K)`, the gradient of sum(E)/T, `x -= eps^2/2 g; x += eps N(0, I)` with
  stateful `tf.random.normal`, and the drift-norm diagnostic every step;
- `floor`: K forward + input-gradient passes of the same network at the same batch inside one
  `tf.while_loop` (fixed input; the gradients are summed so that none is dead): what any
  Langevin loop must pay; `loop/floor` = sampler step / floor pass;
- in float32 and under the 'mixed_bfloat16' layer policy (bfloat16 compute, float32 variables,
  float32 energies and chain states);
- `sampler_eager` (`langevin_sample` called eagerly) and `sampler_xla` (`make_sampler(...,
  jit_compile=True)`), float32, where their cost fits the group budget;
- `sampler_noremap`, `floor_noremap`: float32 with grappler's remapper turned off
  (`tf.config.optimizer.set_experimental_options({'remapping': False})` around the call; TF
  re-instantiates the function for the other optimizer config, so both stay cached), to see
  what the remapper's conv + bias + activation fusions are worth.

K per group is chosen so that one sampler call takes about --call_s (from a calibration call);
every variant of a group runs the same K. A variant whose estimated run time (--rounds calls
plus two warm-up calls; traces and compiles not counted) would push the group past
--group_budget_s is skipped and listed with its estimate:
on this 2-core CPU EBMSNGAN32 at batch 256 takes tens of seconds per step and the bfloat16
input-gradient convolutions fall back to a slow Eigen kernel (see docs/benchmarks.md).

`--mode=paired` asks the narrower question of the float32 targets with a control: on this
shared 2-vCPU machine two identical `tf.function`s timed as above differ by up to 25% (session
6: the same sampler file loaded twice gave speed ratios 0.91-1.26 over six cells), so medians of
separate calls cannot judge a 5% target. Per (network, batch) cell every round calls each of
PAIRED_VARIANTS once in a freshly shuffled (seeded) order, K >= --min_steps steps per call; the
ratio of two variants is taken within each round and summarised by its median over the rounds
with a 95% bootstrap interval. `sampler_copy` (a second, identical `make_sampler`) is the A/A
control: a ratio whose interval overlaps the A/A interval is not distinguishable from noise.
The sampler variants also compute the final energies once per call, which the baseline and floor
do not (at most 1/(2K) of a call). Written to <output>_paired.json.

FLOPs: counted from the layers (2 * MACs of every Conv2D and Dense); one step = 2 x forward (the
input-gradient convolutions cost as much as the forward ones; no weight gradients). Peak:
dense float32 and bfloat16 matmuls (--matmul_n square), timed in interleaved rounds at the start
and the end of the run. Networks are untrained (the cost does not depend on the weights); eps
5e-3, T 1e-4 (the paper's CIFAR-10 shortrun).
"""

import json
import os
import platform
import time

from absl import app
from absl import flags
import tensorflow as tf

from ebm_tf.internal import file_io

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (registry name, image shape, builder kwargs): the digits and Fashion-MNIST presets' EBMs
# and the paper's CIFAR-10 EBM.
NETS = {"small_digits": ("ebm_small", (8, 8, 1), {"width": 16}),
        "small_fmnist": ("ebm_small", (28, 28, 1), {}),
        "sngan32": ("ebm_sngan32", (32, 32, 3), {})}
PRECISIONS = ("float32", "mixed_bfloat16")
# --mode=paired (float32): the sampler; a second make_sampler of the same energy (an identical,
# separate tf.function: the A/A control, whose ratio to the sampler shows what this machine can
# resolve); make_sampler(static_batch=True) (traced for the batch size: no dynamic-batch shape
# ops; step settings still tensors); langevin_sample traced with everything constant (batch, K,
# eps, T, as the paper's loop is); the paper's loop; the floor.
PAIRED_VARIANTS = ("sampler", "sampler_copy", "sampler_static_batch", "sampler_static",
                   "baseline", "floor")
EPSILON = 5e-3
TEMPERATURE = 1e-4

_NETS = flags.DEFINE_list("nets", list(NETS), f"subset of {list(NETS)}")
_BATCHES = flags.DEFINE_list("batches", ["1", "8", "64", "256"], "batch sizes")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "interleaved timed rounds per group (median)")
_CALL_S = flags.DEFINE_float("call_s", 0.3, "target seconds of one float32 sampler call")
_MAX_K = flags.DEFINE_integer("max_steps", 50, "largest K per call")
_BUDGET = flags.DEFINE_list("group_budget_s", ["small_digits:60", "small_fmnist:100",
                                                "sngan32:200"],
                            "net:seconds; skip variants (and whole groups) that would make a "
                            "(net, batch) group take longer than this")
_VARIANTS = flags.DEFINE_list("variants", None, "only these variants (sampler_float32, the "
                              "reference of every ratio, always runs); default: all")
_MARGINAL = flags.DEFINE_bool("marginal", False,
                               "time the sampler, baseline and floor at K and 2K steps per "
                               "call and report (t(2K) - t(K)) / K per step, i.e. without the "
                               "per-call fixed costs (the sampler's input checks and final "
                               "energies pass), which are reported apart")
_MATMUL_N = flags.DEFINE_integer("matmul_n", 1024, "side of the square matmuls for the peak")
_MODE = flags.DEFINE_enum("mode", "steps", ["steps", "ops", "paired"],
                          "steps: the Langevin table; ops: float32 vs bfloat16 time of the ops "
                          "a step is made of (conv forward, conv input gradient, ReLU/pool "
                          "gradients) at layer shapes of the benchmarked networks; paired: "
                          "float32 speed ratios taken within shuffled rounds, with an A/A "
                          "control (see PAIRED_VARIANTS), written to <output>_paired.json")
_MIN_K = flags.DEFINE_integer("min_steps", 10, "--mode=paired: smallest K per call")
_PAIRED_MAX_K = flags.DEFINE_integer("paired_max_steps", 400, "--mode=paired: largest K per call")
_PAIRED_SEED = flags.DEFINE_integer("paired_seed", 0, "--mode=paired: seed of the round orders "
                                    "and of the bootstrap intervals")
_OUTPUT = flags.DEFINE_string("output", os.path.join(_ROOT, "bench", "results",
                                                     "langevin_bench.json"), "JSON output path")


def make_langevin_update(energy_fn, num_steps: int, epsilon: float, temperature: float):
  """The paper's Langevin loop (docs/paper_settings.md section 2; `train.py::make_langevin_update`).

  Args:
    energy_fn: x [B, ...] float32 -> energies [B] or [B, 1].
    num_steps: K, a Python int baked into the loop.
    epsilon: step size eps (Python float).
    temperature: T (Python float).

  Returns:
    A `tf.function` `update(x) -> (x after K steps float32, drift norm float32 scalar)`.
  """

  @tf.function
  def update(images):
    x = tf.identity(images)
    grad_norm = tf.constant(0.0)
    for _ in tf.range(num_steps):
      with tf.GradientTape() as tape:
        tape.watch(x)
        energy = tf.reduce_sum(energy_fn(x)) / temperature
      grads = tape.gradient(energy, x)
      x -= (epsilon**2 / 2) * grads
      x += epsilon * tf.random.normal(shape=tf.shape(x))
      grad_norm = tf.reduce_mean(tf.norm(tf.reshape(grads, [tf.shape(x)[0], -1]), axis=1))
      grad_norm *= epsilon**2 / 2
    return x, grad_norm

  return update


def make_floor(energy_fn, sample_shape, temperature: float):
  """`floor(x, k)`: k forward + input-gradient passes at the fixed x in one `tf.while_loop`.

  Returns the sum of the k gradients (float32, x's shape), so that no pass is dead code. The
  passes run one at a time (`parallel_iterations=1`): a Markov chain's step t + 1 needs step t's
  state, so a Langevin loop can never overlap its gradient passes, but these k passes are
  independent, and with the default `parallel_iterations=10` the executor ran up to 10 of them
  at once. That overlapped floor measured 3.2 ms per pass for ebm_small width 16 at batch 64 on
  the 2-core CPU, against 4.9 ms for the same passes one at a time (docs/benchmarks.md); it was a
  throughput no chain can reach, not the cost of one pass.
  """

  @tf.function(input_signature=[tf.TensorSpec([None, *sample_shape], tf.float32),
                                tf.TensorSpec([], tf.int32)])
  def floor(x, k):
    def body(i, acc):
      with tf.GradientTape() as tape:
        tape.watch(x)
        energy = tf.reduce_sum(energy_fn(x)) / temperature
      return i + 1, acc + tape.gradient(energy, x)

    return tf.while_loop(lambda i, _: i < k, body, (tf.constant(0), tf.zeros_like(x)),
                         parallel_iterations=1)[1]

  return floor


def step_flops(model) -> float:
  """FLOPs of one Langevin step per image: 2 x (2 MACs of every Conv2D and Dense layer)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  forward = 0
  for layer in model.layers:
    if isinstance(layer, keras.layers.Conv2D):
      _, h, w, _ = layer.output.shape
      forward += 2 * h * w * int(np.prod(layer.kernel.shape))
    elif isinstance(layer, keras.layers.Dense):
      forward += 2 * int(np.prod(layer.kernel.shape))
  return 2.0 * forward


def _median(values):
  values = sorted(values)
  return values[len(values) // 2]


def matmul_peak(n: int, rounds: int) -> dict:
  """Median FLOP/s of an n x n x n matmul in float32 and bfloat16 (interleaved rounds)."""
  fns = {}
  for dtype in (tf.float32, tf.bfloat16):
    a = tf.cast(tf.random.stateless_uniform([n, n], [1, 2]), dtype)
    b = tf.cast(tf.random.stateless_uniform([n, n], [3, 4]), dtype)
    fn = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)))
    fns[dtype.name] = (lambda fn=fn, a=a, b=b: fn(a, b).numpy())
    fns[dtype.name]()
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      began = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - began)
  return {name: 2.0 * n**3 / _median(t) for name, t in times.items()}


class _Remapping:
  """Context manager: grappler's remapper on or off for the calls inside."""

  def __init__(self, enabled: bool):
    self._enabled = enabled

  def __enter__(self):
    if not self._enabled:
      tf.config.optimizer.set_experimental_options({"remapping": False})

  def __exit__(self, *exc):
    if not self._enabled:
      tf.config.optimizer.set_experimental_options({"remapping": True})


def bench_group(net: str, batch: int, rounds: int, call_s: float, max_steps: int,
                budget_s: float, history: dict) -> dict:
  """Times every affordable variant of one (network, batch); returns a result row.

  `history[net]` carries (batch, float32 step seconds, bf16 slowdown) of the previous batch of
  the same network, for the cost estimates; a group whose float32 triple alone (sampler,
  baseline, floor) is estimated past `budget_s` is skipped whole (returns a row with `skipped`).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from ebm_tf.mcmc import langevin  # pylint: disable=g-import-not-at-top
  from ebm_tf import models  # pylint: disable=g-import-not-at-top

  name, shape, kwargs = NETS[net]
  group_began = time.perf_counter()
  load_before = os.getloadavg()
  prev_batch, prev_step, prev_slowdown = history.get(net, (batch, 0.0, 1.0))
  predicted_step = prev_step * batch / prev_batch
  if 3 * (rounds + 4) * predicted_step > budget_s:
    return {"net": net, "model": name, "image_shape": list(shape), "batch": batch,
            "skipped_group": f"estimated {predicted_step:.0f} s per float32 step (linear in "
                             f"batch from batch {prev_batch}): the float32 sampler, baseline "
                             f"and floor alone exceed the {budget_s:.0f} s group budget",
            "load_avg_before": list(load_before)}
  nets = {"float32": models.build_ebm(name, shape, **kwargs)}
  nets["mixed_bfloat16"] = models.build_ebm(name, shape, dtype="mixed_bfloat16", **kwargs)
  nets["mixed_bfloat16"].set_weights(nets["float32"].get_weights())
  energies = {p: models.energy_fn(m) for p, m in nets.items()}
  x = tf.random.stateless_uniform([batch, *shape], [0, batch], minval=-1.0, maxval=1.0)
  seed = tf.constant([1, 2], tf.int32)
  samplers = {p: langevin.make_sampler(e, shape) for p, e in energies.items()}
  floors = {p: make_floor(e, shape, TEMPERATURE) for p, e in energies.items()}

  def sampler_call(precision, k, remap=True):
    def run():
      with _Remapping(remap):
        samplers[precision](x, seed, k, EPSILON, TEMPERATURE).samples.numpy()
    return run

  # Calibration: one float32 sampler step (after the trace) sets K.
  sampler_call("float32", 1)()
  began = time.perf_counter()
  sampler_call("float32", 1)()
  one_step = time.perf_counter() - began
  k = int(max(1, min(max_steps, round(call_s / max(one_step, 1e-6)))))

  # name -> (cost estimate of one call in seconds, builder returning the call).
  def baseline(precision, steps=None):
    update = make_langevin_update(energies[precision], steps or k, EPSILON, TEMPERATURE)
    return lambda: update(x)[0].numpy()

  def floor(precision, remap=True, steps=None):
    def run():
      with _Remapping(remap):
        floors[precision](x, steps or k).numpy()
    return run

  def eager():
    return lambda: langevin.langevin_sample(
        energies["float32"], x, seed, num_steps=k_slow, step_size=EPSILON,
        temperature=TEMPERATURE).samples.numpy()

  def xla():
    fn = langevin.make_sampler(energies["float32"], shape, jit_compile=True)
    return lambda: fn(x, seed, k_slow, EPSILON, TEMPERATURE).samples.numpy()

  f32_call = one_step * k
  slow = 1.5 * prev_slowdown  # bf16 gets relatively slower with the batch here.
  k_slow = max(1, k // 5)  # Eager and XLA calls run fewer steps.
  candidates = [
      ("sampler_float32", f32_call, lambda: sampler_call("float32", k)),
      ("baseline_float32", f32_call, lambda: baseline("float32")),
      ("floor_float32", f32_call, lambda: floor("float32")),
      ("sampler_float32_noremap", f32_call, lambda: sampler_call("float32", k, remap=False)),
      ("floor_float32_noremap", f32_call, lambda: floor("float32", remap=False)),
      ("sampler_mixed_bfloat16", slow * f32_call, lambda: sampler_call("mixed_bfloat16", k)),
      ("baseline_mixed_bfloat16", slow * f32_call, lambda: baseline("mixed_bfloat16")),
      ("floor_mixed_bfloat16", slow * f32_call, lambda: floor("mixed_bfloat16")),
      ("sampler_eager_float32", (3.0 if batch >= 64 else 20.0) * f32_call * k_slow / k, eager),
      # XLA on this CPU: 5-19x slower measured before; plus a compile.
      ("sampler_xla_float32", 15.0 * f32_call * k_slow / k + 10.0, xla),
  ]
  if _MARGINAL.value:  # The same calls at 2K steps: per step = (t(2K) - t(K)) / K.
    k2 = 2 * k
    candidates = [c for c in candidates if "eager" not in c[0] and "xla" not in c[0]]
    candidates += [
        ("sampler_float32@2k", 2 * f32_call, lambda: sampler_call("float32", k2)),
        ("baseline_float32@2k", 2 * f32_call, lambda: baseline("float32", k2)),
        ("floor_float32@2k", 2 * f32_call, lambda: floor("float32", steps=k2)),
        ("sampler_mixed_bfloat16@2k", 2 * slow * f32_call,
         lambda: sampler_call("mixed_bfloat16", k2)),
        ("baseline_mixed_bfloat16@2k", 2 * slow * f32_call,
         lambda: baseline("mixed_bfloat16", k2)),
        ("floor_mixed_bfloat16@2k", 2 * slow * f32_call,
         lambda: floor("mixed_bfloat16", steps=k2)),
    ]
  fns, skipped = {}, {}
  planned = 0.0  # Estimated run time (not counting traces and compiles).
  for variant, estimate, build in candidates:
    if (_VARIANTS.value and variant.split("@")[0] not in _VARIANTS.value and
        variant.split("@")[0] != "sampler_float32"):
      continue
    cost = estimate * (rounds + 2)  # + two warm-up calls
    if planned + cost > budget_s and variant not in ("sampler_float32",
                                                     "sampler_float32@2k"):
      skipped[variant] = f"estimated {estimate:.1f} s per call x {rounds + 2} > group budget"
      continue
    planned += cost
    fns[variant] = build()
  warmup = {}
  for variant, fn in fns.items():
    began = time.perf_counter()
    fn()
    warmup[variant] = time.perf_counter() - began
    began = time.perf_counter()
    fn()
    warmup[variant + "_second"] = time.perf_counter() - began
  slowdown = prev_slowdown
  if "sampler_mixed_bfloat16" in fns:  # Measured slowdown, for the next batch's estimate.
    slowdown = warmup["sampler_mixed_bfloat16_second"] / max(f32_call, 1e-6)
  history[net] = (batch, one_step, slowdown)
  times = {variant: [] for variant in fns}
  for _ in range(rounds):
    for variant, fn in fns.items():
      began = time.perf_counter()
      fn()
      times[variant].append(time.perf_counter() - began)
  steps_of = lambda v: k_slow if v in ("sampler_eager_float32", "sampler_xla_float32") else k
  per_step = {variant: _median(t) / steps_of(variant) for variant, t in times.items()}
  # The fastest round too: on a machine shared with many jobs the minimum is the least
  # disturbed call (reported beside the median, not instead of it).
  min_step = {variant: min(t) / steps_of(variant) for variant, t in times.items()
              if "@" not in variant}
  per_call_fixed = {}
  if _MARGINAL.value:
    for variant in [v for v in per_step if v + "@2k" in per_step]:
      at_k, at_2k = _median(times[variant]), _median(times.pop(variant + "@2k"))
      per_step[variant] = max(at_2k - at_k, 1e-9) / k
      per_call_fixed[variant] = at_k - k * per_step[variant]
      per_step.pop(variant + "@2k")
    for variant in [v for v in per_step if "@" in v]:  # Its K-step partner was skipped.
      per_step.pop(variant)
      times.pop(variant, None)
  flops = step_flops(nets["float32"]) * batch
  row = {"net": net, "model": name, "image_shape": list(shape), "batch": batch, "steps": k,
         "steps_eager_xla": k_slow, "marginal": _MARGINAL.value,
         "per_call_fixed_ms": {v: s * 1e3 for v, s in per_call_fixed.items()},
         "rounds": rounds, "ms_per_step": {v: s * 1e3 for v, s in per_step.items()},
         "ms_per_step_min_round": {v: s * 1e3 for v, s in min_step.items()},
         "image_steps_per_s": {v: batch / s for v, s in per_step.items()},
         "gflop_per_step": flops / 1e9,
         "achieved_gflops": {v: flops / s / 1e9 for v, s in per_step.items()},
         "first_call_s": warmup, "skipped": skipped,
         "load_avg_before": list(load_before), "load_avg_after": list(os.getloadavg()),
         "group_s": time.perf_counter() - group_began}
  ratio = lambda a, b: per_step[b] / per_step[a] if a in per_step and b in per_step else None
  row["ratios"] = {
      # speed ratios (> 1: the first is faster)
      "sampler_vs_baseline_float32": ratio("sampler_float32", "baseline_float32"),
      "sampler_vs_baseline_bf16": ratio("sampler_mixed_bfloat16", "baseline_mixed_bfloat16"),
      "bf16_sampler_vs_baseline_float32": ratio("sampler_mixed_bfloat16", "baseline_float32"),
      # time ratios (loop / floor, remapper on / off)
      "loop_over_floor_float32": ratio("floor_float32", "sampler_float32"),
      "loop_over_floor_bf16": ratio("floor_mixed_bfloat16", "sampler_mixed_bfloat16"),
      "remap_on_over_off_sampler": ratio("sampler_float32_noremap", "sampler_float32"),
      "remap_on_over_off_floor": ratio("floor_float32_noremap", "floor_float32"),
      "eager_over_function": ratio("sampler_float32", "sampler_eager_float32"),
      "xla_over_function": ratio("sampler_float32", "sampler_xla_float32"),
  }
  return row


def _fmt(value, spec=".2f"):
  return "-" if value is None else format(value, spec)


def _table(rows, peak) -> str:
  cols = ["sampler_float32", "baseline_float32", "floor_float32", "sampler_mixed_bfloat16",
          "baseline_mixed_bfloat16", "floor_mixed_bfloat16", "sampler_eager_float32",
          "sampler_xla_float32"]
  short = ["samp32", "base32", "floor32", "samp16", "base16", "floor16", "eager32", "xla32"]
  header = (f"{'net':<13} {'batch':>5} {'K':>3} " + " ".join(f"{s:>9}" for s in short) +
            f" {'s/b 32':>7} {'s/b 16':>7} {'16/b32':>7} {'l/f 32':>7} {'l/f 16':>7}"
            f" {'remapS':>7} {'remapF':>7} {'img-st/s':>9} {'GF/s32':>7} {'%pk32':>6}"
            f" {'GF/s16':>7} {'%pk16':>6} {'load':>5}")
  lines = ["ms per Langevin step (median of interleaved rounds); ratios: s/b = sampler speed / "
           "baseline speed, 16/b32 = bf16 sampler speed / float32 baseline speed, l/f = loop "
           "step / floor pass, remapS/F = time with remapper on / off (sampler, floor)",
           header, "-" * len(header)]
  for r in rows:
    if "skipped_group" in r:
      lines.append(f"{r['net']:<13} {r['batch']:>5}   skipped: {r['skipped_group']}")
      continue
    ms, ra, gf = r["ms_per_step"], r["ratios"], r["achieved_gflops"]
    pk32 = gf.get("sampler_float32")
    pk16 = gf.get("sampler_mixed_bfloat16")
    lines.append(
        f"{r['net']:<13} {r['batch']:>5} {r['steps']:>3} " +
        " ".join(f"{_fmt(ms.get(c), '.1f'):>9}" for c in cols) +
        f" {_fmt(ra['sampler_vs_baseline_float32']):>7} {_fmt(ra['sampler_vs_baseline_bf16']):>7}"
        f" {_fmt(ra['bf16_sampler_vs_baseline_float32']):>7}"
        f" {_fmt(ra['loop_over_floor_float32']):>7} {_fmt(ra['loop_over_floor_bf16']):>7}"
        f" {_fmt(ra['remap_on_over_off_sampler']):>7} {_fmt(ra['remap_on_over_off_floor']):>7}"
        f" {_fmt(r['image_steps_per_s']['sampler_float32'], '.1f'):>9}"
        f" {_fmt(pk32, '.1f'):>7} {_fmt(pk32 and 100 * pk32 * 1e9 / peak['float32'], '.1f'):>6}"
        f" {_fmt(pk16, '.1f'):>7}"
        f" {_fmt(pk16 and 100 * pk16 * 1e9 / peak['bfloat16'], '.1f'):>6}"
        f" {r['load_avg_before'][0]:>5.1f}")
  return "\n".join(lines)


# name -> (activations [B, H, W, C], conv kernel [3, 3, C, C]): EBMSNGAN32's 16x16 block at
# batch 8 and ebm_small's (Fashion-MNIST) 14x14 block at batch 64.
OP_SHAPES = {"sngan32_block_b8": [8, 16, 16, 256], "small_fmnist_block_b64": [64, 14, 14, 64]}


def op_times(rounds: int) -> list:
  """Median seconds of each op in float32 and bfloat16 at OP_SHAPES (interleaved rounds)."""
  rows = []
  for shape_name, shape in OP_SHAPES.items():
    channels = shape[-1]
    fns = {}
    for dtype in (tf.float32, tf.bfloat16):
      act = tf.cast(tf.random.stateless_uniform(shape, [1, 2], -1.0, 1.0), dtype)
      kernel = tf.cast(tf.random.stateless_normal([3, 3, channels, channels], [3, 4]) * 0.05,
                       dtype)
      ops = {
          "conv2d": lambda a, k: tf.nn.conv2d(a, k, 1, "SAME"),
          "conv2d_backprop_input": lambda a, k: tf.raw_ops.Conv2DBackpropInput(
              input_sizes=tf.shape(a), filter=k, out_backprop=a, strides=[1, 1, 1, 1],
              padding="SAME"),
          # The same input gradient as a forward convolution with the spatially flipped,
          # in/out-transposed kernel (stride 1, SAME, odd kernel): a candidate work-around.
          "conv2d_flipped_kernel": lambda a, k: tf.nn.conv2d(
              a, tf.transpose(tf.reverse(k, [0, 1]), [0, 1, 3, 2]), 1, "SAME"),
          "relu_grad": lambda a, k: tf.raw_ops.ReluGrad(gradients=a, features=a),
          "avg_pool_grad": lambda a, k: tf.raw_ops.AvgPoolGrad(
              orig_input_shape=tf.shape(a), grad=a[:, ::2, ::2, :], ksize=[1, 2, 2, 1],
              strides=[1, 2, 2, 1], padding="VALID"),
      }
      for op_name, op in ops.items():
        fn = tf.function(op)
        fns[(op_name, dtype.name)] = (lambda fn=fn, a=act, k=kernel: fn(a, k).numpy())
        fns[(op_name, dtype.name)]()
    act = tf.random.stateless_uniform(shape, [1, 2], -1.0, 1.0)
    kernel = tf.random.stateless_normal([3, 3, channels, channels], [3, 4]) * 0.05
    exact = ops["conv2d_backprop_input"](act, kernel)
    flipped_error = float(tf.reduce_max(tf.abs(ops["conv2d_flipped_kernel"](act, kernel) - exact))
                          / tf.reduce_max(tf.abs(exact)))
    print(f"{shape_name}: float32 |flipped-kernel conv - Conv2DBackpropInput| / max = "
          f"{flipped_error:.1e}", flush=True)
    times = {key: [] for key in fns}
    for _ in range(rounds):
      for key, fn in fns.items():
        began = time.perf_counter()
        fn()
        times[key].append(time.perf_counter() - began)
    for op_name in ops:
      f32, bf16 = _median(times[(op_name, "float32")]), _median(times[(op_name, "bfloat16")])
      rows.append({"shape": shape_name, "activations": shape, "op": op_name,
                   "flipped_kernel_rel_error_f32": flipped_error,
                   "float32_ms": f32 * 1e3, "bfloat16_ms": bf16 * 1e3,
                   "bf16_over_f32": bf16 / f32})
      print(f"{shape_name:<24} {op_name:<22} float32 {f32 * 1e3:9.2f} ms  bfloat16 "
            f"{bf16 * 1e3:9.2f} ms  bf16/f32 {bf16 / f32:7.2f}", flush=True)
  return rows


def median_interval(values, rng, level: float = 0.95,
                    resamples: int = 4000):
  """Median of `values` and a percentile-bootstrap interval of the median.

  Args:
    values: 1-D sequence of floats (per-round ratios), at least 3.
    rng: numpy Generator (fixed seed for a reproducible interval).
    level: interval coverage in (0, 1).
    resamples: bootstrap resamples.

  Returns:
    (median, low, high) floats.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  values = np.asarray(values, np.float64)
  if values.ndim != 1 or values.size < 3:
    raise ValueError(f"median_interval needs a 1-D sequence of >= 3 values; got shape "
                     f"{values.shape}")
  picks = rng.integers(0, values.size, size=(resamples, values.size))
  medians = np.median(values[picks], axis=1)
  tail = (1.0 - level) / 2.0
  return (float(np.median(values)), float(np.quantile(medians, tail)),
          float(np.quantile(medians, 1.0 - tail)))


def paired_cell(net: str, batch: int, rounds: int, call_s: float, budget_s: float,
                rng) -> dict:
  """`--mode=paired`: PAIRED_VARIANTS of one (net, batch) in shuffled rounds; returns a row.

  A cell whose estimated run time (len(PAIRED_VARIANTS) x (rounds + 2) calls of at least --min_steps
  steps, from one timed sampler step) exceeds `budget_s` is skipped (a row with `skipped`).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from ebm_tf.mcmc import langevin  # pylint: disable=g-import-not-at-top
  from ebm_tf import models  # pylint: disable=g-import-not-at-top

  name, shape, kwargs = NETS[net]
  energy = models.energy_fn(models.build_ebm(name, shape, **kwargs))
  x = tf.random.stateless_uniform([batch, *shape], [0, batch], minval=-1.0, maxval=1.0)
  seed = tf.constant([1, 2], tf.int32)
  eps, temp = EPSILON, TEMPERATURE
  sampler, sampler_copy = (langevin.make_sampler(energy, shape) for _ in range(2))
  static_batch = langevin.make_sampler(energy, shape, static_batch=True)
  sampler(x, seed, 1, eps, temp)  # trace
  began = time.perf_counter()
  sampler(x, seed, 1, eps, temp).samples.numpy()
  one_step = time.perf_counter() - began
  k = int(min(_PAIRED_MAX_K.value, max(_MIN_K.value, round(call_s / one_step))))
  estimate = len(PAIRED_VARIANTS) * (rounds + 2) * k * one_step
  if estimate > budget_s:
    return {"net": net, "model": name, "image_shape": list(shape), "batch": batch,
            "skipped": f"estimated {estimate:.0f} s ({k} steps x {one_step:.3g} s x "
                       f"{len(PAIRED_VARIANTS)} variants x {rounds + 2} calls) > the "
                       f"{budget_s:.0f} s group budget"}
  static = tf.function(lambda x: langevin.langevin_sample(
      energy, x, seed, num_steps=k, step_size=eps, temperature=temp).samples)
  baseline = make_langevin_update(energy, k, eps, temp)
  floor = make_floor(energy, shape, temp)
  calls = {
      "sampler": lambda: sampler(x, seed, k, eps, temp).samples.numpy(),
      "sampler_copy": lambda: sampler_copy(x, seed, k, eps, temp).samples.numpy(),
      "sampler_static_batch": lambda: static_batch(x, seed, k, eps, temp).samples.numpy(),
      "sampler_static": lambda: static(x).numpy(),
      "baseline": lambda: baseline(x)[0].numpy(),
      "floor": lambda: floor(x, k).numpy(),
  }
  for call in calls.values():  # trace + warm-up
    call()
    call()
  load_before = os.getloadavg()
  times = {v: [] for v in PAIRED_VARIANTS}
  order = list(PAIRED_VARIANTS)
  for _ in range(rounds):
    rng.shuffle(order)
    for variant in order:
      began = time.perf_counter()
      calls[variant]()
      times[variant].append(time.perf_counter() - began)
  t = {v: np.asarray(times[v]) for v in PAIRED_VARIANTS}
  ratio = lambda num, den: median_interval(t[num] / t[den], rng)
  return {
      "net": net, "model": name, "image_shape": list(shape), "batch": batch, "steps": k,
      "rounds": rounds,
      "ms_per_step_median": {v: float(np.median(t[v])) / k * 1e3 for v in PAIRED_VARIANTS},
      # speed ratios, > 1: the variant is faster than the baseline (baseline time / its time)
      "speed_vs_baseline": {v: ratio("baseline", v) for v in
                            ("sampler", "sampler_copy", "sampler_static_batch",
                             "sampler_static")},
      # the A/A control: sampler_copy time / sampler time (1 = identical)
      "aa_copy_over_sampler": ratio("sampler_copy", "sampler"),
      "static_batch_over_sampler": ratio("sampler_static_batch", "sampler"),
      "static_over_sampler": ratio("sampler_static", "sampler"),
      # loop/floor: variant time / floor time
      "loop_over_floor": {v: ratio(v, "floor") for v in ("sampler", "sampler_static_batch",
                                                         "sampler_static", "baseline")},
      "load_avg_before": list(load_before), "load_avg_after": list(os.getloadavg()),
  }


def _interval(triple) -> str:
  median, low, high = triple
  return f"{median:.2f} [{low:.2f},{high:.2f}]"


def _paired_table(rows) -> str:
  """--mode=paired: the printed table: medians and 95% intervals of the paired ratios."""
  header = (f"{'net':<13} {'batch':>5} {'K':>4} {'ms samp':>8} {'ms base':>8} {'ms floor':>8} "
            f"{'A/A copy/samp':>18} {'samp speed/base':>18} {'stbatch speed/base':>18} "
            f"{'static speed/base':>18} {'samp/floor':>18} {'stbatch/floor':>18} {'load':>5}")
  lines = ["paired per-round ratios, median [95% bootstrap interval]; speed/base > 1: faster "
           "than the paper's loop; A/A: a second copy of the same sampler (the noise)",
           header, "-" * len(header)]
  for r in rows:
    if "skipped" in r:
      lines.append(f"{r['net']:<13} {r['batch']:>5}   skipped: {r['skipped']}")
      continue
    ms = r["ms_per_step_median"]
    lines.append(
        f"{r['net']:<13} {r['batch']:>5} {r['steps']:>4} {ms['sampler']:>8.2f} "
        f"{ms['baseline']:>8.2f} {ms['floor']:>8.2f} "
        f"{_interval(r['aa_copy_over_sampler']):>18} "
        f"{_interval(r['speed_vs_baseline']['sampler']):>18} "
        f"{_interval(r['speed_vs_baseline']['sampler_static_batch']):>18} "
        f"{_interval(r['speed_vs_baseline']['sampler_static']):>18} "
        f"{_interval(r['loop_over_floor']['sampler']):>18} "
        f"{_interval(r['loop_over_floor']['sampler_static_batch']):>18} "
        f"{r['load_avg_before'][0]:>5.1f}")
  return "\n".join(lines)


def _paired_main():
  """--mode=paired over --nets x --batches; writes <output>_paired.json."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  if _ROUNDS.value < 3:
    raise app.UsageError(f"--mode=paired needs --rounds >= 3; got {_ROUNDS.value}")
  budgets = dict(item.split(":") for item in _BUDGET.value)
  missing = [net for net in _NETS.value if net not in budgets]
  if missing:
    raise app.UsageError(f"--group_budget_s has no budget for {missing}")
  rng = np.random.default_rng(_PAIRED_SEED.value)
  began = time.perf_counter()
  rows = []
  for net in _NETS.value:
    if net not in NETS:
      raise app.UsageError(f"--nets: unknown network {net!r}; known: {list(NETS)}")
    for batch in sorted(int(b) for b in _BATCHES.value):
      if batch < 1:
        raise app.UsageError(f"--batches must be positive integers; got {_BATCHES.value}")
      rows.append(paired_cell(net, batch, _ROUNDS.value, _CALL_S.value,
                              float(budgets[net]), rng))
      print(_paired_table(rows[-1:]).splitlines()[-1], flush=True)
  print()
  print(_paired_table(rows))
  output = _OUTPUT.value.replace(".json", "_paired.json")
  file_io.write_json_atomic(output, {
      "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                  "tensorflow": tf.__version__},
      "settings": {"epsilon": EPSILON, "temperature": TEMPERATURE, "rounds": _ROUNDS.value,
                   "call_s": _CALL_S.value, "min_steps": _MIN_K.value,
                   "max_steps": _PAIRED_MAX_K.value, "seed": _PAIRED_SEED.value,
                   "group_budget_s": budgets},
      "rows": rows, "wall_s": time.perf_counter() - began})
  print(f"wrote {output} ({(time.perf_counter() - began) / 60:.1f} min)")


def main(argv):
  del argv
  if _MODE.value == "ops":
    began = time.perf_counter()
    load = os.getloadavg()
    rows = op_times(_ROUNDS.value)
    output = _OUTPUT.value.replace(".json", "_ops.json")
    file_io.write_json_atomic(output, {
        "rounds": _ROUNDS.value, "load_avg_before": list(load),
        "load_avg_after": list(os.getloadavg()), "onednn_opts": os.environ.get(
            "TF_ENABLE_ONEDNN_OPTS", "unset (TF default)"), "rows": rows,
        "wall_s": time.perf_counter() - began})
    print(f"wrote {output}")
    return
  if _MODE.value == "paired":
    _paired_main()
    return
  for net in _NETS.value:
    if net not in NETS:
      raise app.UsageError(f"--nets: unknown network {net!r}; known: {list(NETS)}")
  batches = [int(b) for b in _BATCHES.value]
  if any(b < 1 for b in batches):
    raise app.UsageError(f"--batches must be positive integers; got {_BATCHES.value}")
  budgets = dict(item.split(":") for item in _BUDGET.value)
  missing = [net for net in _NETS.value if net not in budgets]
  if missing:
    raise app.UsageError(f"--group_budget_s has no budget for {missing}")
  began = time.perf_counter()
  peak_start = matmul_peak(_MATMUL_N.value, 3)
  print(f"matmul {_MATMUL_N.value}^3: float32 {peak_start['float32'] / 1e9:.1f} GFLOP/s, "
        f"bfloat16 {peak_start['bfloat16'] / 1e9:.1f} GFLOP/s, load {os.getloadavg()}",
        flush=True)
  rows, history = [], {}
  for net in _NETS.value:
    for batch in sorted(batches):
      row = bench_group(net, batch, _ROUNDS.value, _CALL_S.value, _MAX_K.value,
                        float(budgets[net]), history)
      rows.append(row)
      # Partial results after every group (a run on a busy machine may be cut short).
      file_io.write_json_atomic(_OUTPUT.value, {"partial": True, "matmul_flops": {
          "start": peak_start}, "rows": rows, "wall_s": time.perf_counter() - began})
      print(json.dumps({k: v for k, v in row.items() if k in (
          "net", "batch", "steps", "ms_per_step", "ratios", "skipped", "skipped_group",
          "load_avg_before", "group_s")}), flush=True)
  peak_end = matmul_peak(_MATMUL_N.value, 3)
  peak = {k: max(peak_start[k], peak_end[k]) for k in peak_start}
  print()
  print(f"matmul peak (max of start/end) float32 {peak['float32'] / 1e9:.1f} GFLOP/s, "
        f"bfloat16 {peak['bfloat16'] / 1e9:.1f} GFLOP/s (bf16/f32 "
        f"{peak['bfloat16'] / peak['float32']:.2f})")
  print(_table(rows, peak))
  result = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "tensorflow": tf.__version__},
            "settings": {"epsilon": EPSILON, "temperature": TEMPERATURE,
                         "rounds": _ROUNDS.value, "call_s": _CALL_S.value,
                         "group_budget_s": budgets, "matmul_n": _MATMUL_N.value},
            "matmul_flops": {"start": peak_start, "end": peak_end, "peak": peak},
            "rows": rows, "wall_s": time.perf_counter() - began}
  file_io.write_json_atomic(_OUTPUT.value, result)
  print(f"\nwrote {_OUTPUT.value} ({result['wall_s'] / 60:.1f} min)")


if __name__ == "__main__":
  app.run(main)
