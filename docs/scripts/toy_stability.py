r"""Long-chain stability of trained 2-D toy EBMs, measured against the exact density.

For each trained run, chains start from exact toy samples (drawn independently of the training
data) and from uniform noise on [-3, 3]^2 (the same starts for every run) and run far beyond the
run's training chain length, with the run's own step size and temperature; at each recorded step
the histogram of the chains is compared with the exact bin masses
(`ebm_tf.toy_eval.chain_distance_curves`). The command behind docs/toy_stability.{json,png}:

  .venv/bin/python docs/scripts/toy_stability.py \
      --runs=shortrun=runs/shortrun_toy,longrun=runs/longrun_toy \
      --record_steps=0,30,300,3000,10000,30000 --num_chains=500 --bins=20 --seed=0 \
      --output_json=docs/toy_stability.json --output_png=docs/toy_stability.png

Writes the JSON (the command, settings, each run's measured training chain length, the i.i.d.
reference and one curve per run and init) and a PNG of TV and KL against the step. A thin caller
of ebm_tf.toy_eval.
"""

import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from ebm_tf import data
from ebm_tf import models
from ebm_tf import runs
from ebm_tf import toy_eval

_RUNS = flags.DEFINE_list("runs", ["shortrun=runs/shortrun_toy", "longrun=runs/longrun_toy"],
                          "name=model_dir pairs of trained toy runs.")
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
  for spec in _RUNS.value:
    name, sep, model_dir = spec.partition("=")
    if not sep:
      raise app.UsageError(f"--runs entries must be name=model_dir; got {spec!r}")
    ebm, config, path = runs.restore_ebm(model_dir)
    if not data.is_toy(config.dataset):
      raise app.UsageError(f"run {model_dir!r} was trained on {config.dataset!r}, not a toy")
    run_toy = data.toy_density(config.dataset)
    if toy is not None and run_toy.name != toy.name:
      raise app.UsageError("all runs must be trained on the same toy")
    toy = run_toy
    step_size = _STEP_SIZE.value or config.epsilon
    entry = {"model_dir": model_dir, "checkpoint": path, "dataset": config.dataset,
             "mcmc_init": config.mcmc_init, "rejuvenation_prob": config.rejuvenation_prob,
             "persistent_size": config.persistent_size, "mcmc_steps": config.mcmc_steps,
             "train_steps": config.train_steps, "epsilon": config.epsilon,
             "mcmc_temp": config.mcmc_temp, "eval_step_size": step_size,
             "training_chain_length": _training_chain_length(path, config.mcmc_steps),
             "curves": {}}
    energy_fn = models.energy_fn(ebm)
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
        temperature=config.mcmc_temp, bins=bins, tau=config.tau or None)
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
