r"""Long-chain stability of trained 2-D toy EBMs, measured against the exact density.

For each trained run, chains start from exact toy samples (drawn independently of the training
data) and from uniform noise on [-3, 3]^2 (the same starts for every run) and run far beyond the
run's training chain length, with the run's own step size and temperature; at each recorded step
the histogram of the chains is compared with the exact bin masses
(`ebm_tf.evaluation.toy_eval.chain_distance_curves`). The command behind docs/toy_stability.{json,png}:

  .venv/bin/python docs/scripts/toy_stability.py \
      --runs=shortrun=runs/shortrun_toy,longrun=runs/longrun_toy \
      --record_steps=0,30,300,3000,10000,30000 --num_chains=500 --bins=20 --seed=0 \
      --output_json=docs/toy_stability.json --output_png=docs/toy_stability.png

A run given as `name=exact` is the exact energy -log p of the toy (--toy, or the other runs'
toy) sampled by the same sampler at --exact_step_size: the sampler's own share of the distance.
The new longrun preset and the full three-toy protocol: docs/scripts/toy_results.sh.

Writes the JSON (the command, settings, each run's measured training chain length, its own law
exp(-E/T) binned on the grid against the exact bin masses (`model_density`: the model's bias
without any sampling), the i.i.d. reference and one curve per run and init) and a PNG of TV and
KL against the step. A thin caller of ebm_tf.evaluation.toy_eval.
"""

import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from ebm_tf.data import datasets
from ebm_tf.evaluation import toy_eval
from ebm_tf import models
from ebm_tf.training import runs

_RUNS = flags.DEFINE_list("runs", ["shortrun=runs/shortrun_toy", "longrun=runs/longrun_toy"],
                          "name=model_dir pairs of trained toy runs; model_dir 'exact' is the "
                          "exact energy -log p of --toy (T = 1, no tau) sampled with "
                          "--exact_step_size: what the sampler does with the right density.")
_TOY = flags.DEFINE_string("toy", None, "toy dataset (e.g. toy_two_rings); needed only when "
                           "every run is 'exact', else checked against the runs'.")
_EXACT_STEP_SIZE = flags.DEFINE_float("exact_step_size", 0.05, "Langevin step size of the "
                                      "'exact' run.")
_RECORD_STEPS = flags.DEFINE_list("record_steps", ["0", "30", "300", "3000", "10000", "30000"],
                                  "Langevin steps at which the chains are scored.")
_INITS = flags.DEFINE_list("inits", ["data", "noise"],
                           "chain starts: 'data' (exact toy samples, independent of the training "
                           "data) and/or 'noise' (uniform on [-s, s]^2, s = --noise_scale).")
_NOISE_SCALE = flags.DEFINE_float("noise_scale", 3.0, "half-width of the uniform noise init.")
_NUM_CHAINS = flags.DEFINE_integer("num_chains", 500, "chains per curve.")
_BINS = flags.DEFINE_integer("bins", 20, "histogram bins per axis.")
_SEED = flags.DEFINE_integer("seed", 0, "seed of the initial states and of the chains.")
_STEP_SIZE = flags.DEFINE_float("step_size", None, "Langevin step size (default: each run's "
                                "epsilon).")
_OUTPUT_JSON = flags.DEFINE_string("output_json", "docs/toy_stability.json", "JSON output.")
_OUTPUT_PNG = flags.DEFINE_string("output_png", "docs/toy_stability.png", "PNG output.")


def _training_chain_length(checkpoint_path, mcmc_steps):
  """Langevin steps since the last restart of the bank's chains at the end of training:
  (age + 1) * K for age the draws since rejuvenation (None without a bank)."""
  reader = tf.train.load_checkpoint(checkpoint_path)
  keys = [k for k in reader.get_variable_to_shape_map() if k.startswith("bank/ages")]
  if not keys:
    return None
  steps = (reader.get_tensor(keys[0]).astype(np.int64) + 1) * mcmc_steps
  return {"mean": float(steps.mean()), "median": float(np.median(steps)),
          "max": int(steps.max())}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  record_steps = [int(s) for s in _RECORD_STEPS.value]
  base_seed = tf.constant([_SEED.value, 0], tf.int32)
  fold = tf.random.experimental.stateless_fold_in
  n, bins = _NUM_CHAINS.value, _BINS.value
  payload = {"command": " ".join([os.path.basename(sys.executable), *sys.argv]),
             "settings": {"record_steps": record_steps, "num_chains": n, "bins": bins,
                          "seed": _SEED.value, "inits": list(_INITS.value),
                          "noise_scale": _NOISE_SCALE.value},
             "runs": {}}
  curves = {}
  toy = None
  if _TOY.value:
    if not datasets.is_toy(_TOY.value):
      raise app.UsageError(f"--toy must be one of {list(datasets.TOY_DATASETS)}; got {_TOY.value!r}")
    toy = datasets.toy_density(_TOY.value)
  specs = [spec.partition("=") for spec in _RUNS.value]
  for spec, (name, sep, model_dir) in zip(_RUNS.value, specs):
    if not sep:
      raise app.UsageError(f"--runs entries must be name=model_dir; got {spec!r}")
  if toy is None and all(model_dir == "exact" for _, _, model_dir in specs):
    raise app.UsageError("--toy is needed when every run is 'exact'")
  # Trained runs first: they fix the toy that the 'exact' runs sample.
  for name, _, model_dir in sorted(specs, key=lambda spec: spec[2] == "exact"):
    if model_dir == "exact":
      step_size, temperature, tau = _EXACT_STEP_SIZE.value, 1.0, None
      energy_fn = toy.energy
      entry = {"model_dir": "exact", "dataset": f"toy_{toy.name}", "eval_step_size": step_size,
               "mcmc_temp": 1.0, "curves": {}}
    else:
      ebm, config, path = runs.restore_ebm(model_dir)
      if not datasets.is_toy(config.dataset):
        raise app.UsageError(f"run {model_dir!r} was trained on {config.dataset!r}, not a toy")
      run_toy = datasets.toy_density(config.dataset)
      if toy is not None and run_toy.name != toy.name:
        raise app.UsageError("all runs (and --toy) must be the same toy")
      toy = run_toy
      step_size = _STEP_SIZE.value or config.epsilon
      temperature, tau = config.mcmc_temp, config.tau or None
      entry = {"model_dir": model_dir, "checkpoint": path, "dataset": config.dataset,
               "mcmc_init": config.mcmc_init, "rejuvenation_prob": config.rejuvenation_prob,
               "persistent_size": config.persistent_size, "mcmc_steps": config.mcmc_steps,
               "train_steps": config.train_steps, "epsilon": config.epsilon,
               "mcmc_temp": config.mcmc_temp, "tau": config.tau, "eval_step_size": step_size,
               "training_chain_length": _training_chain_length(path, config.mcmc_steps),
               "curves": {}}
      energy_fn = models.energy_fn(ebm)
    # The model's own law exp(-E/T) on the grid: is the model the right density at all?
    entry["model_density"] = toy_eval.model_density_distances(
        energy_fn, toy, temperature=temperature, tau=tau, bins=bins)
    print(f"{name:>10s} model exp(-E/T) on the grid: tv {entry['model_density']['tv']:.3f}  "
          f"kl {entry['model_density']['kl']:.3f}", flush=True)
    x_inits = {}
    for i, init in enumerate(_INITS.value):
      init_seed = fold(base_seed, i)
      if init == "data":
        x_inits[init] = toy.sample(init_seed, n).numpy()
      elif init == "noise":
        x_inits[init] = _NOISE_SCALE.value * tf.random.stateless_uniform(
            [n, 2], init_seed, minval=-1.0, maxval=1.0).numpy()
      else:
        raise app.UsageError(f"--inits entries must be 'data' or 'noise'; got {init!r}")
    start = time.time()
    # All inits of a run go through the sampler as one batch of independent chains.
    run_curves = toy_eval.chain_distance_curves(
        energy_fn, toy, x_inits, fold(base_seed, 100), record_steps, step_size=step_size,
        temperature=temperature, bins=bins, tau=tau)
    entry["chain_seconds"] = round(time.time() - start, 1)
    logging.info("%s: %.0f s", name, time.time() - start)
    for init, curve in run_curves.items():
      for point in curve:
        print(f"{name:>10s} {init:>5s} step {point['step']:>6d}  tv {point['tv']:.3f}  "
              f"kl {point['kl']:.3f}  mean E {point['mean_energy']:.3f}  "
              f"outside {point['frac_outside_bounds']:.3f}", flush=True)
      entry["curves"][init] = curve
      curves[f"{name} from {init}"] = curve
    payload["runs"][name] = entry
  reference = toy_eval.iid_reference(toy, n, fold(base_seed, 1000), bins=bins)
  payload["iid_reference"] = reference
  print(f"i.i.d. exact samples (n={n}): tv {reference['tv']:.3f} kl {reference['kl']:.3f} "
        f"(E[tv] bound {reference['tv_bound']:.3f})")
  toy_eval.write_json(payload, _OUTPUT_JSON.value)
  toy_eval.plot_distance_curves(
      curves, _OUTPUT_PNG.value, reference=reference,
      title=f"{toy.name}: exact binned distance of {n} Langevin chains ({bins}x{bins} bins)")
  print(f"wrote {_OUTPUT_JSON.value} and {_OUTPUT_PNG.value}")


if __name__ == "__main__":
  app.run(main)
