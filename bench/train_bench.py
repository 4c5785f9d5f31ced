r"""Training-step throughput per regime, and the overhead of one iteration over its parts.

  .venv/bin/python bench/train_bench.py [--steps=20] [--output=bench/results/train_bench.json]

For each case (a preset plus overrides) and strategy (default: one device; mirrored: 2 logical
CPU devices, each case in its own process because the CPU split must precede TF's start), it
times `Trainer.train_step` and, on the same networks and batch sizes, in interleaved rounds
(medians over --steps rounds), its parts alone: the K Langevin steps of one replica batch, one
parameter-gradient pass of the EBM (loss + Adam update), the generator step, and, where the run
has them, the burn-in bank's Langevin steps (longrun correction) and the generator's fresh
samples G(z) that rejuvenated chains restart from (coop modes; the step draws them for the whole
batch and keeps those of the rejuvenated slots). overhead = step / sum(parts); the target is <=
1.1. `overhead_core` leaves the fresh G(z) pass out of the parts (Langevin steps, update and
burn-in, + gradient + generator step only), i.e. it counts that pass as overhead too.

A longrun correction case first trains its prior preset for one step (in a temporary
directory) to have a prior run to load.

On a 2-core CPU the mirrored rows measure the cost of distribution, not a speedup: both
"devices" share the same two cores, and each part is timed alone at the per-replica batch, so
a mirrored overhead near 2 is expected there; compare a mirrored row's step time with the
default row's (the same global work). Overheads below 1 happen where the step runs independent
parts concurrently (the update and burn-in chains of a correction run on two cores).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

from ebm_tf.internal import file_io

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (preset, overrides). The CIFAR-10 row uses the paper architecture at batch 64 on
# synthetic data of the right shape, with K reduced so that it runs on a CPU.
CASES = {
    "shortrun_digits": ("shortrun_digits", []),
    "midrun_digits": ("midrun_digits", []),
    "longrun_prior_digits": ("longrun_prior_digits", []),
    "longrun_correction_digits": ("longrun_correction_digits", []),
    "shortrun_cifar10_arch_k5": ("shortrun_cifar10", [
        "--dataset=synthetic", "--image_size=32", "--batch_size=64", "--mcmc_steps=5",
        "--persistent_size=256"]),
}

_STEPS = flags.DEFINE_integer("steps", 10, "timed training steps per case (after 2 warm-up)")
_CASES = flags.DEFINE_list("cases", list(CASES), f"cases to run, from {list(CASES)}")
_STRATEGIES = flags.DEFINE_list("strategies", ["default", "mirrored"],
                                "default and/or mirrored")
_OUTPUT = flags.DEFINE_string("output", os.path.join(_ROOT, "bench", "results",
                                                     "train_bench.json"), "JSON output path")
_WORKER = flags.DEFINE_string("worker", None, "internal: run one case=strategy in-process")


def _time_interleaved(fns, repeats: int):
  """Median seconds of each `fns[name]()` over `repeats` rounds, after two warm-up calls each.

  Each round calls every function once, in turn, so that a change of machine load (a shared
  VM's neighbours) shifts all of them alike instead of biasing their ratios.
  """
  for fn in fns.values():
    fn()
    fn()
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def run_case(case: str, strategy: str, steps: int) -> dict:
  """Times one case in this process; returns a result row."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ebm_tf.mcmc import langevin  # pylint: disable=g-import-not-at-top
  from ebm_tf.training import distribute  # pylint: disable=g-import-not-at-top
  from ebm_tf.training import train_lib  # pylint: disable=g-import-not-at-top

  preset, overrides = CASES[case]
  extra = ["--strategy=mirrored", "--num_cpu_devices=2"] if strategy == "mirrored" else [
      "--strategy=default"]
  if strategy == "mirrored":
    distribute.split_cpu(2)  # Before the prior run below starts TF.
  if preset.startswith("longrun_correction_"):
    prior_preset = "longrun_prior_" + preset[len("longrun_correction_"):]
    prior_config = _config(prior_preset, [*overrides, "--train_steps=1", "--eval_mcmc_steps=1",
                                          "--strategy=default"])
    train_lib.Trainer(prior_config).train()
    extra.append(f"--prior_model_dir={prior_config.model_dir}")
  config = _config(preset, [*overrides, *extra])
  trainer = train_lib.Trainer(config)
  trainer.restore_or_initialize()
  iterator = trainer.make_iterator()

  def train_step():
    float(trainer.train_step(iterator).loss)

  # The parts, alone, at one replica's batch size (replicas run them concurrently).
  batch = trainer.batch_per_replica
  x = tf.random.uniform([batch, *trainer.image_shape], -1.0, 1.0)
  seed = tf.constant([1, 2], tf.int32)
  kwargs = trainer._langevin_kwargs  # pylint: disable=protected-access
  energy = trainer._energy  # pylint: disable=protected-access
  langevin_fn = tf.function(lambda x: langevin.langevin_sample(energy, x, seed, **kwargs).samples)
  with trainer.strategy.scope():
    ebm_opt = train_lib.make_optimizer(config.ebm_lr_values, config.ebm_lr_boundaries, 0.0,
                                       0.9, 0.999, tf.Variable(1.0))
    ebm_opt.build(trainer.ebm.trainable_variables)

  @tf.function
  def gradient_pass(x):
    with tf.GradientTape() as tape:
      loss = train_lib.ml_loss(energy(x), energy(-x), config.mcmc_temp)
    grads = tape.gradient(loss, trainer.ebm.trainable_variables)
    ebm_opt.apply_gradients(zip(grads, trainer.ebm.trainable_variables))
    return loss

  parts = {"langevin": lambda: langevin_fn(x).numpy(),
           "ebm_gradient": lambda: gradient_pass(x).numpy()}
  if trainer.burnin_bank is not None:
    burnin_kwargs = dict(kwargs, num_steps=config.burnin_steps or config.mcmc_steps)
    burnin_fn = tf.function(
        lambda x: langevin.langevin_sample(energy, x, seed, **burnin_kwargs).samples)
    parts["burnin_langevin"] = lambda: burnin_fn(x).numpy()
  if trainer.generator is not None:
    with trainer.strategy.scope():
      gen_opt = train_lib.make_optimizer(config.gen_lr_values, config.gen_lr_boundaries, 0.0,
                                         0.9, 0.999, tf.Variable(1.0))
      gen_opt.build(trainer.generator.trainable_variables)
    z = tf.random.normal([batch, config.latent_dim])

    @tf.function
    def generator_step(z, x):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(x - trainer.generator(z, training=True))) / batch
      grads = tape.gradient(loss, trainer.generator.trainable_variables)
      gen_opt.apply_gradients(zip(grads, trainer.generator.trainable_variables))
      return loss

    parts["generator"] = lambda: generator_step(z, x).numpy()
  if config.init_mode.uses_generator:
    fresh_fn = tf.function(lambda z: trainer._generate(  # pylint: disable=protected-access
        z, training=config.gen_batch_norm))
    z = tf.random.normal([batch, config.latent_dim])
    parts["fresh_samples"] = lambda: fresh_fn(z).numpy()
  parts = _time_interleaved({"step": train_step, **parts}, steps)
  step_time = parts.pop("step")
  parts_sum = float(np.sum(list(parts.values())))
  core_sum = parts_sum - parts.get("fresh_samples", 0.0)
  return {"case": case, "strategy": strategy, "replicas": trainer.num_replicas,
          "global_batch": config.batch_size, "mcmc_steps": config.mcmc_steps,
          "burnin_steps": (config.burnin_steps or config.mcmc_steps) if config.burnin_size else 0,
          "step_s": step_time, "steps_per_s": 1.0 / step_time,
          **{f"{k}_s": v for k, v in parts.items()}, "parts_sum_s": parts_sum,
          "overhead": step_time / parts_sum, "overhead_core": step_time / core_sum}


def _config(preset: str, overrides):
  """The TrainConfig of flags/<preset>.cfg + overrides, in a fresh temporary model_dir, with the
  generator trained from scratch (a bench needs no pretrained one)."""
  from ebm_tf.training import config as config_lib  # pylint: disable=g-import-not-at-top
  flag_values = flags.FlagValues()
  config_lib.define_train_flags(flag_values)
  model_dir = tempfile.mkdtemp(prefix=f"train_bench_{preset}_")
  flag_values(["bench", f"--flagfile={_ROOT}/flags/{preset}.cfg", f"--model_dir={model_dir}",
               "--gen_checkpoint=", "--update_generator=true", *overrides])
  return config_lib.config_from_flags(flag_values)


def main(argv):
  del argv
  if _WORKER.value:
    case, strategy = _WORKER.value.split("=")
    print("RESULT " + json.dumps(run_case(case, strategy, _STEPS.value)), flush=True)
    return
  rows = []
  for case in _CASES.value:
    if case not in CASES:
      raise app.UsageError(f"--cases: unknown case {case!r}; known: {list(CASES)}")
    for strategy in _STRATEGIES.value:
      command = [sys.executable, os.path.abspath(__file__), f"--worker={case}={strategy}",
                 f"--steps={_STEPS.value}"]
      done = subprocess.run(command, cwd=_ROOT, capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
      lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
      if done.returncode or not lines:
        raise RuntimeError(f"{case} / {strategy} failed:\n{done.stderr[-3000:]}")
      rows.append(json.loads(lines[-1][len("RESULT "):]))
      print(_format_row(rows[-1]), flush=True)
  print()
  print(_table(rows))
  file_io.write_json_atomic(_OUTPUT.value, {"steps": _STEPS.value, "rows": rows})
  print(f"\nwrote {_OUTPUT.value}")


def _format_row(row: dict) -> str:
  ms = lambda key: f"{row[key] * 1e3:.1f}" if key in row else "-"
  return (f"{row['case']:<26} {row['strategy']:<9} {row['replicas']:>2} "
          f"{row['global_batch']:>5} {row['mcmc_steps']:>4} {row['burnin_steps']:>4} "
          f"{row['steps_per_s']:>8.2f} {ms('step_s'):>9} {ms('langevin_s'):>9} "
          f"{ms('burnin_langevin_s'):>9} {ms('ebm_gradient_s'):>8} {ms('generator_s'):>8} "
          f"{ms('fresh_samples_s'):>8} {row['overhead']:>8.3f} {row['overhead_core']:>8.3f}")


def _table(rows) -> str:
  header = (f"{'case':<26} {'strategy':<9} {'R':>2} {'batch':>5} {'K':>4} {'Kb':>4} "
            f"{'steps/s':>8} {'step ms':>9} {'K-lang ms':>9} {'burn ms':>9} {'grad ms':>8} "
            f"{'gen ms':>8} {'G(z) ms':>8} {'overhead':>8} {'ovh_core':>8}")
  return "\n".join([header, "-" * len(header)] + [_format_row(r) for r in rows])


if __name__ == "__main__":
  app.run(main)
