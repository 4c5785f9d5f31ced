"""Long, resumable Langevin sampling from a trained run: the library behind `ebm_tf.sample`.

A sampling job runs `num_samples` chains of the run's energy (a longrun correction run samples
U = (E/T + E0/T0) / joint_temperature + ||x||^2 / (2 tau^2) with the prior E0 restored from the
run's own checkpoint) for `num_steps` Langevin steps, from one of the init sources:

  'coop'   fresh generator samples G(z), z ~ N(0, I) (the paper's FID protocol, section 3a);
  'data'   images of a dataset split (the run's dataset);
  'noise'  uniform noise in [-s, s] (s = the run's persistent_init_scale);
  'bank'   the persistent bank stored in the checkpoint (the training chains).

The chains run in chunks of `batch_size` and in segments of at most `segment_steps` steps; after
every segment the states of all chains go to `<output_dir>/chains.npz` (atomically), so a killed
job resumes where it stopped, and each (chunk, segment) draws its noise from a stateless seed
folded from (seed, chunk, segment start): a resumed job equals an uninterrupted one bit for bit.
At each of `record_steps` (and at `num_steps`) the states are written to
`<output_dir>/samples_<step>.npz` (images [N, ...] float32, unclipped; energies [N]) with a PNG
grid beside it; `trajectory.json` logs the mean energy and drift norm of each segment.

A finished (or killed) job may be continued to more steps by running it again with a larger
`num_steps` (and further record steps): the steps already run are kept, and the result equals a
job run to the larger `num_steps` at once, bit for bit, provided the steps already run were cut
into the same segments (same `segment_steps`, the same record steps up to the steps done). Any
other change of settings is refused with the settings that differ.
"""

import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from ebm_tf.data import datasets
from ebm_tf.internal import file_io
from ebm_tf.mcmc import init_strategies
from ebm_tf.mcmc import langevin
from ebm_tf import models
from ebm_tf.training import checkpoints
from ebm_tf.training import config as config_lib
from ebm_tf.training import runs
from ebm_tf.training import summaries

INITS = ("auto", "coop", "data", "noise", "bank")
STATE_FILENAME = "chains.npz"
TRAJECTORY_FILENAME = "trajectory.json"
SETTINGS_FILENAME = "sample_settings.json"
# Settings a job may change when it is run again: it then continues to the new length.
_EXTENSIBLE_SETTINGS = ("num_steps", "record_steps")
_BANK_IMAGES_KEY = "bank/images/.ATTRIBUTES/VARIABLE_VALUE"


@dataclasses.dataclass(frozen=True)
class SampleConfig:
  """One sampling job. Zero / negative sentinels mean "the run's own value"."""

  model_dir: str = ""  # an ebm_tf.train model_dir
  checkpoint: str = ""  # a checkpoint prefix ('' = the run's newest)
  init: str = "auto"  # one of INITS; 'auto' = coop if a generator is available, else data
  generator_dir: str = ""  # run or prefix holding "generator" ('' = the run's own / gen_checkpoint)
  split: str = "train"  # the split of 'data' init
  num_samples: int = 64
  batch_size: int = 64  # chains per sampler call
  num_steps: int = 0  # 0 = the run's eval_mcmc_steps (or mcmc_steps)
  record_steps: Tuple[int, ...] = ()  # extra snapshot steps (num_steps is always recorded)
  segment_steps: int = 1000  # steps between state saves (the resume granularity)
  step_size: float = 0.0  # 0 = the run's epsilon
  temperature: float = 0.0  # 0 = the run's mcmc_temp
  prior_temperature: float = 0.0  # 0 = the run's prior_temp (longrun correction runs)
  joint_temperature: float = 1.0  # divides E/T + E0/T0 (the paper's longrun FID uses 1.005-1.01)
  tau: float = -1.0  # < 0 = the run's tau; 0 = off
  seed: int = 0
  output_dir: str = ""
  grid_size: int = 64  # images in each PNG grid

  def __post_init__(self):
    validate(self)


FLAG_HELP = {  # help texts of the SampleConfig flags (binaries sample, evaluate_stability)
    "model_dir": "the --model_dir of an ebm_tf.train run",
    "checkpoint": "checkpoint prefix to sample ('' = the newest)",
    "init": f"one of {INITS}: auto = coop when a generator exists, else data",
    "generator_dir": "run or checkpoint prefix holding the generator for --init=coop "
                     "('' = the run's own generator or its gen_checkpoint)",
    "split": "dataset split of --init=data",
    "num_samples": "number of chains",
    "batch_size": "chains per sampler call",
    "num_steps": "Langevin steps per chain (0 = the run's eval_mcmc_steps)",
    "record_steps": "comma-separated steps at which snapshots are also written",
    "segment_steps": "steps between saves of the chain states (resume granularity)",
    "step_size": "Langevin step size eps (0 = the run's epsilon)",
    "temperature": "temperature T of E (0 = the run's mcmc_temp)",
    "prior_temperature": "temperature T0 of the prior energy (0 = the run's prior_temp)",
    "joint_temperature": "divides E/T + E0/T0 (1 = as in training)",
    "tau": "std of the Gaussian term (< 0 = the run's tau, 0 = off)",
    "seed": "seed of the initial states and the Langevin noise",
    "output_dir": "where samples go (re-run with the same one to resume)",
    "grid_size": "images per PNG grid",
}


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise ValueError(message)


def validate(config: SampleConfig) -> None:
  """Raises ValueError naming the first bad setting of `config` and what was expected."""
  _check(bool(config.model_dir), "--model_dir is required (an ebm_tf.train run)")
  _check(bool(config.output_dir), "--output_dir is required")
  _check(config.init in INITS, f"--init must be one of {INITS}; got {config.init!r}")
  for name in ("num_samples", "batch_size", "segment_steps", "grid_size"):
    value = getattr(config, name)
    _check(isinstance(value, int) and value >= 1, f"--{name} must be an int >= 1; got {value!r}")
  _check(isinstance(config.num_steps, int) and config.num_steps >= 0,
         f"--num_steps must be an int >= 0 (0 = the run's eval_mcmc_steps); "
         f"got {config.num_steps!r}")
  steps = list(config.record_steps)
  _check(all(isinstance(s, int) and s >= 0 for s in steps) and steps == sorted(set(steps)),
         f"--record_steps must be increasing ints >= 0; got {config.record_steps!r}")
  _check(config.num_steps == 0 or not steps or steps[-1] <= config.num_steps,
         f"--record_steps {config.record_steps} go beyond --num_steps {config.num_steps}")
  for name in ("step_size", "temperature", "prior_temperature"):
    value = getattr(config, name)
    _check(np.isfinite(value) and value >= 0,
           f"--{name} must be > 0, or 0 for the run's value; got {value!r}")
  _check(np.isfinite(config.joint_temperature) and config.joint_temperature > 0,
         f"--joint_temperature must be > 0; got {config.joint_temperature!r}")
  _check(np.isfinite(config.tau), f"--tau must be finite; got {config.tau!r}")


@dataclasses.dataclass
class SamplingModel:
  """A run's sampling energy and init sources, restored from one checkpoint."""

  run_config: config_lib.TrainConfig
  checkpoint_path: str
  image_shape: Tuple[int, ...]
  energy_fn: Callable[[tf.Tensor], tf.Tensor]  # the run's E alone: x [B, ...] -> [B]
  langevin_kwargs: Dict[str, Any]  # fixed kwargs of langevin.make_sampler (prior, tau, ...)
  step_size: float
  temperature: float
  generator: Optional[Any] = None  # keras.Model or None
  generator_path: Optional[str] = None

  def settings(self) -> Dict[str, Any]:
    """JSON-friendly description of the sampling energy."""
    kwargs = {k: v for k, v in self.langevin_kwargs.items() if k != "prior_energy_fn"}
    return dict(checkpoint=self.checkpoint_path, step_size=self.step_size,
                temperature=self.temperature, generator=self.generator_path,
                prior=self.run_config.prior_model_dir or None, **kwargs)


def _latest_or(path: str, model_dir: str) -> str:
  if path:
    if not tf.io.gfile.exists(path + ".index"):
      raise FileNotFoundError(f"no checkpoint {path!r} (expected a prefix like "
                              f"{model_dir}/checkpoints/ckpt-1000)")
    return path
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  if latest is None:
    raise FileNotFoundError(f"no checkpoint in {model_dir}/checkpoints")
  return latest


def load_model(model_dir: str, checkpoint: str = "", *, generator_dir: str = "",
               need_generator: bool = False, step_size: float = 0.0, temperature: float = 0.0,
               prior_temperature: float = 0.0, joint_temperature: float = 1.0,
               tau: float = -1.0) -> SamplingModel:
  """Restores a run's EBM (and prior EBM, generator) for sampling; zeros mean the run's values.

  Args:
    model_dir: an `ebm_tf.train` model_dir (config.json + checkpoints/).
    checkpoint: a checkpoint prefix; '' = the newest.
    generator_dir: where the generator comes from ('' = this checkpoint if the run has one,
      else the run's gen_checkpoint).
    need_generator: raise if no generator can be found.
    step_size, temperature, prior_temperature: > 0 overrides; 0 = the run's.
    joint_temperature: > 0.
    tau: >= 0 overrides (0 = off); < 0 = the run's.

  Raises:
    FileNotFoundError: missing config.json, checkpoint or prior run config.
    ValueError: a generator is needed but the run has none and no generator_dir was given.
  """
  run_config = config_lib.load_config(model_dir)
  path = _latest_or(checkpoint, model_dir)
  image_shape = tuple(datasets.image_shape(run_config.dataset, run_config.image_size))
  ebm = runs.build_ebm(run_config)
  trackables = dict(ebm=ebm)
  kwargs: Dict[str, Any] = {}
  if run_config.prior_model_dir:
    # The prior's weights are in this run's own checkpoint; its architecture in the prior's config.
    prior_config = config_lib.load_config(run_config.prior_model_dir)
    trackables["prior_ebm"] = runs.build_ebm(prior_config)
    kwargs.update(prior_energy_fn=models.energy_fn(trackables["prior_ebm"]),
                  prior_temperature=prior_temperature or run_config.prior_temp)
  checkpoints.restore_from_run(path, **trackables)
  run_tau = run_config.tau if tau < 0 else tau
  if run_tau:
    kwargs["tau"] = float(run_tau)
  if joint_temperature != 1.0:
    kwargs["joint_temperature"] = float(joint_temperature)
  if run_config.max_langevin_norm:
    kwargs["grad_clip_norm"] = float(run_config.max_langevin_norm)
  generator, generator_path = None, None
  source = generator_dir
  if not source and run_config.generator and run_config.init_mode.uses_generator:
    source = path if not run_config.gen_checkpoint or run_config.update_generator else (
        run_config.gen_checkpoint)
  if not source and run_config.gen_checkpoint:
    source = run_config.gen_checkpoint
  if source:
    gen_config = run_config
    if generator_dir and tf.io.gfile.exists(os.path.join(generator_dir, config_lib.CONFIG_FILENAME)):
      gen_config = config_lib.load_config(generator_dir)
    generator = runs.build_generator(gen_config)
    generator.trainable = False  # BN uses its moving statistics (docs/paper_settings.md 8.1)
    generator_path = checkpoints.restore_from_run(source, generator=generator)
  elif need_generator:
    raise ValueError(f"init 'coop' needs a generator, but run {model_dir!r} has none; pass "
                     "--generator_dir (e.g. a shortrun run with the same image shape)")
  return SamplingModel(run_config=run_config, checkpoint_path=path, image_shape=image_shape,
                       energy_fn=models.energy_fn(ebm), langevin_kwargs=kwargs,
                       step_size=float(step_size or run_config.epsilon),
                       temperature=float(temperature or run_config.mcmc_temp),
                       generator=generator, generator_path=generator_path)


def resolve_init(init: str, model: SamplingModel) -> str:
  """'auto' -> 'coop' when the model has a generator, else 'data'; other values unchanged."""
  if init == "auto":
    return "coop" if model.generator is not None else "data"
  return init


def initial_states(model: SamplingModel, init: str, num_samples: int, seed: int, *,
                   split: str = "train", data_dir: Optional[str] = None) -> np.ndarray:
  """Initial chain states float32 [num_samples, *image_shape] from an init source.

  'coop': G(z) in [-1, 1] with z ~ N(0, I) drawn from `seed`; 'data': the first `num_samples`
  images of `split` after a shuffle with `seed`; 'noise': uniform in [-s, s] (s = the run's
  persistent_init_scale); 'bank': the checkpoint's persistent bank (all replicas' rows), the
  first `num_samples` slots. 'coop' and 'noise' start through `init_strategies.fresh_states`
  (modes 'coop' and 'persistent'), the path that training starts its chains with.

  Raises:
    ValueError: unknown init; no generator for 'coop'; no bank or too few slots for 'bank';
      too few images for 'data'.
  """
  c = model.run_config
  tf_seed = tf.constant([seed, 0x5A3], tf.int32)
  if init == "coop":
    if model.generator is None:
      raise ValueError("init 'coop' needs a generator (see --generator_dir)")
    latent_dim = models.generator_latent_dim(model.generator)
    generate = lambda z: tf.cast(model.generator(z, training=False), tf.float32)
    chunks = []
    for start in range(0, num_samples, 512):  # Chunk i's latents from fold_in(seed, 512 * i).
      images, _ = init_strategies.fresh_states(
          "coop", tf.random.experimental.stateless_fold_in(tf_seed, start),
          min(512, num_samples - start), model.image_shape, latent_dim=latent_dim,
          generator_fn=generate)
      chunks.append(images.numpy())
    return np.concatenate(chunks).astype(np.float32)
  if init == "data":
    images = datasets.load_split(c.dataset, split, data_dir=c.data_dir, image_size=c.image_size)
    images = images.map(lambda e: e["image"]).shuffle(10_000, seed=seed).take(num_samples)
    array = np.stack(list(images.as_numpy_iterator())) if num_samples else np.zeros(0)
    if len(array) < num_samples:
      raise ValueError(f"init 'data': split {split!r} of {c.dataset!r} has {len(array)} images; "
                       f"--num_samples is {num_samples}")
    return array.astype(np.float32)
  if init == "noise":  # The fresh states of mode 'persistent'.
    images, _ = init_strategies.fresh_states("persistent", tf_seed, num_samples,
                                             model.image_shape,
                                             init_scale=c.persistent_init_scale)
    return images.numpy()
  if init == "bank":
    reader = tf.train.load_checkpoint(model.checkpoint_path)
    if not reader.has_tensor(_BANK_IMAGES_KEY):
      raise ValueError(f"init 'bank': checkpoint {model.checkpoint_path} holds no persistent "
                       f"bank (run mcmc_init {c.mcmc_init!r})")
    bank = reader.get_tensor(_BANK_IMAGES_KEY).reshape([-1, *model.image_shape])
    if len(bank) < num_samples:
      raise ValueError(f"init 'bank': the bank has {len(bank)} states; --num_samples is "
                       f"{num_samples}")
    return bank[:num_samples].astype(np.float32)
  raise ValueError(f"init must be one of {INITS[1:]}; got {init!r}")


def segment_ends(num_steps: int, record_steps: Sequence[int], segment_steps: int) -> List[int]:
  """The step counts at which a job stops to save: every `segment_steps`, each record step and
  `num_steps`, increasing, without 0. E.g. (2500, [100], 1000) -> [100, 1000, 2000, 2500]."""
  ends = set(range(segment_steps, num_steps, segment_steps)) | set(record_steps) | {num_steps}
  return sorted(s for s in ends if 0 < s <= num_steps)


def _fingerprint(values: Dict[str, Any]) -> str:
  return hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def snapshot_path(output_dir: str, step: int) -> str:
  """`<output_dir>/samples_<step, 9 digits>.npz`."""
  return os.path.join(output_dir, f"samples_{step:09d}.npz")


def list_snapshots(output_dir: str) -> List[Tuple[int, str]]:
  """(step, path) of every snapshot in `output_dir`, by step."""
  found = []
  for name in tf.io.gfile.listdir(output_dir) if tf.io.gfile.isdir(output_dir) else []:
    if name.startswith("samples_") and name.endswith(".npz"):
      found.append((int(name[len("samples_"):-len(".npz")]), os.path.join(output_dir, name)))
  return sorted(found)


def load_snapshot(path: str) -> Tuple[np.ndarray, np.ndarray]:
  """(images float32 [N, ...] unclipped, energies float32 [N]) of a snapshot file."""
  with np.load(path) as f:
    return f["images"], f["energies"]


def run_chains(model: SamplingModel, initial: np.ndarray, *, num_steps: int, output_dir: str,
               seed: int, record_steps: Sequence[int] = (), segment_steps: int = 1000,
               batch_size: int = 64, grid_size: int = 64,
               settings: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """Runs (or resumes) the chains and writes snapshots; returns a summary dict.

  Args:
    model: from `load_model`.
    initial: float32 [N, *image_shape] initial states (used only on a fresh start).
    num_steps: Langevin steps per chain, >= 0.
    output_dir: the job's directory; an existing `chains.npz` there is resumed (or continued to
      a larger `num_steps`) if it was written with the same settings (else ValueError naming
      the settings that differ).
    seed: int; the noise of chunk i, segment starting at step s uses
      fold_in(fold_in([seed, 0x5A4], i), s).
    record_steps: steps (<= num_steps) at which snapshots are written, besides num_steps.
    segment_steps, batch_size: see the module docstring.
    grid_size: images in each snapshot's PNG grid.
    settings: extra JSON-friendly values that identify the job (checked on resume).

  Returns:
    dict(num_samples, num_steps, seconds (this invocation), snapshots [paths], resumed_from).
  """
  initial = _check_initial(initial, model.image_shape)
  tf.io.gfile.makedirs(output_dir)
  job = dict(settings or {}, model=model.settings(), num_samples=len(initial),
             num_steps=num_steps, seed=seed, segment_steps=segment_steps,
             batch_size=batch_size, record_steps=list(record_steps))
  job = json.loads(json.dumps(job, sort_keys=True, default=str))  # as stored and reloaded
  images, done, trajectory = _resume_or_start(output_dir, job, initial)
  resumed_from = done
  sampler = langevin.make_sampler(model.energy_fn, model.image_shape, **model.langevin_kwargs)
  base_seed = tf.constant([seed, 0x5A4], tf.int32)
  record = set(record_steps) | {num_steps}
  ends = [s for s in segment_ends(num_steps, record_steps, segment_steps) if s > done]
  progress = summaries.Progress(max(num_steps, 1), start_step=min(done, max(num_steps, 1)),
                                every_n_steps=None, every_seconds=30.0)
  start_time = time.monotonic()
  if done == 0 and 0 in record:
    energies = batched_energies(model.energy_fn, images, batch_size)
    _write_snapshot(output_dir, 0, images, energies, grid_size)
  for end in ends:
    images, energies, drift_norm = _run_segment(model, sampler, images, base_seed, done, end,
                                                batch_size)
    trajectory.append(dict(start=done, end=end, mean_energy=float(np.mean(energies)),
                           drift_norm=drift_norm,
                           saturation=float(np.mean(np.abs(images) >= 1.0))))
    done = end
    if done in record:
      _write_snapshot(output_dir, done, images, energies, grid_size)
    _save_state(output_dir, images, done, job, trajectory)
    progress.update(done, mean_energy=trajectory[-1]["mean_energy"])
  return dict(num_samples=len(images), num_steps=num_steps,
              seconds=time.monotonic() - start_time, resumed_from=resumed_from,
              snapshots=[p for _, p in list_snapshots(output_dir)])


def _check_initial(initial, image_shape: Tuple[int, ...]) -> np.ndarray:
  """`initial` as float32 [N >= 1, *image_shape], finite; else ValueError."""
  initial = np.asarray(initial, np.float32)
  if initial.shape[1:] != image_shape or len(initial) < 1:
    raise ValueError(f"initial states must have shape [N >= 1, {image_shape}]; got "
                     f"{initial.shape}")
  if not np.all(np.isfinite(initial)):
    raise ValueError("initial states contain NaN or Inf")
  return initial


def _resume_or_start(output_dir: str, job: Dict[str, Any], initial: np.ndarray
                     ) -> Tuple[np.ndarray, int, List[Dict[str, Any]]]:
  """(images float32 [N, ...], steps done, trajectory rows) of the job in `output_dir`: the saved
  chains when `chains.npz` exists, else `initial` at step 0 (and the job's settings are written).

  Saved chains are used only if they were run with `job`'s settings, up to `num_steps` and
  `record_steps` (a longer job continues them), and cut into the segments `job` would have
  cut its first steps into; ValueError otherwise, naming the difference.
  """
  state_path = os.path.join(output_dir, STATE_FILENAME)
  trajectory_path = os.path.join(output_dir, TRAJECTORY_FILENAME)
  if not tf.io.gfile.exists(state_path):
    file_io.write_json_atomic(os.path.join(output_dir, SETTINGS_FILENAME), job)
    return initial, 0, []
  with np.load(state_path) as f:
    images, done = f["images"], int(f["steps_done"])
    stored_fingerprint = str(f["fingerprint"])
    stored_job = json.loads(str(f["job"])) if "job" in f.files else None
  if stored_job is None:  # chains saved before the job was stored beside them
    settings_path = os.path.join(output_dir, SETTINGS_FILENAME)
    if tf.io.gfile.exists(settings_path):
      with tf.io.gfile.GFile(settings_path) as f:
        stored_job = json.load(f)
    if stored_job is None or _fingerprint(stored_job) != stored_fingerprint:
      raise ValueError(f"{state_path} does not match {SETTINGS_FILENAME} beside it, so its "
                       "settings are unknown; use another --output_dir or delete it")
  differ = [f"{key}: {stored_job.get(key)!r} there, {job.get(key)!r} now"
            for key in sorted(set(stored_job) | set(job))
            if key not in _EXTENSIBLE_SETTINGS and stored_job.get(key) != job.get(key)]
  if differ:
    raise ValueError(f"{state_path} was computed with other settings ({'; '.join(differ)}); "
                     "use another --output_dir or delete it")
  num_steps, record_steps = job["num_steps"], job["record_steps"]
  segment_steps = job["segment_steps"]  # equal to the stored job's (checked above)
  if done > num_steps:
    raise ValueError(f"{state_path} has run {done} steps already, more than the {num_steps} "
                     "asked; ask for at least as many or use another --output_dir")
  cut_before = [e for e in segment_ends(stored_job["num_steps"], stored_job["record_steps"],
                                        segment_steps) if e <= done]
  cut_now = [e for e in segment_ends(num_steps, record_steps, segment_steps) if e <= done]
  if cut_before != cut_now:
    raise ValueError(
        f"{state_path}: its first {done} steps ran in segments ending at {cut_before}, a job of "
        f"{num_steps} steps with record steps {record_steps} cuts them at {cut_now}, so its "
        "noise would differ from an uninterrupted run; record steps up to "
        f"{done} must be {[e for e in cut_before if e % segment_steps]}")
  missing = [s for s in record_steps
             if s <= done and not tf.io.gfile.exists(snapshot_path(output_dir, s))]
  if missing:
    raise ValueError(f"{state_path}: record steps {missing} were passed without a snapshot; "
                     f"only steps after {done} can be added")
  trajectory = []
  if tf.io.gfile.exists(trajectory_path):
    with open(trajectory_path) as f:
      trajectory = [row for row in json.load(f)["segments"] if row["end"] <= done]
  if num_steps > stored_job["num_steps"]:
    logging.info("continuing %s from step %d to %d (it was a job of %d steps)", output_dir,
                 done, num_steps, stored_job["num_steps"])
  else:
    logging.info("resuming %s at step %d of %d", output_dir, done, num_steps)
  return images, done, trajectory


def _run_segment(model: SamplingModel, sampler, images: np.ndarray, base_seed: tf.Tensor,
                 done: int, end: int, batch_size: int) -> Tuple[np.ndarray, np.ndarray, float]:
  """Runs every chain from step `done` to `end` in chunks of `batch_size`; chunk i's noise from
  fold_in(fold_in(base_seed, i), done). Returns (images float32 [N, ...], energies float32 [N],
  mean drift norm over the chunks); FloatingPointError if a chain became non-finite."""
  new_images, energy_parts, drift_parts = [], [], []
  for chunk, start in enumerate(range(0, len(images), batch_size)):
    chunk_seed = tf.random.experimental.stateless_fold_in(
        tf.random.experimental.stateless_fold_in(base_seed, chunk), done)
    result = sampler(images[start:start + batch_size], chunk_seed, end - done,
                     model.step_size, model.temperature)
    new_images.append(result.samples.numpy())
    energy_parts.append(result.energies.numpy())
    drift_parts.append(float(result.drift_norm))
  images = np.concatenate(new_images)
  if not np.all(np.isfinite(images)):
    raise FloatingPointError(f"chains became non-finite between steps {done} and {end}; "
                             "lower --step_size or check the model")
  return images, np.concatenate(energy_parts), float(np.mean(drift_parts))


def _save_state(output_dir: str, images: np.ndarray, done: int, job: Dict[str, Any],
                trajectory: List[Dict[str, Any]]) -> None:
  """Writes the chains with their job's settings (`chains.npz`, the record a resume checks),
  the settings file and the trajectory log, each atomically."""
  file_io.save_npz_atomic(os.path.join(output_dir, STATE_FILENAME), images=images,
                          steps_done=np.int64(done), fingerprint=np.str_(_fingerprint(job)),
                          job=np.str_(json.dumps(job, sort_keys=True)))
  file_io.write_json_atomic(os.path.join(output_dir, SETTINGS_FILENAME), job)
  file_io.write_json_atomic(os.path.join(output_dir, TRAJECTORY_FILENAME),
                            dict(segments=trajectory))


def batched_energies(energy_fn: Callable[[tf.Tensor], tf.Tensor], images,
                     batch_size: int = 500) -> np.ndarray:
  """E(x) float32 [N] of images float32 [N, ...] in chunks of `batch_size`."""
  images = np.asarray(images, np.float32)
  energy = tf.function(energy_fn)
  return np.concatenate([energy(tf.constant(images[i:i + batch_size])).numpy()
                         for i in range(0, len(images), batch_size)])


def _write_snapshot(output_dir: str, step: int, images: np.ndarray, energies: np.ndarray,
                    grid_size: int) -> None:
  file_io.save_npz_atomic(snapshot_path(output_dir, step), images=images, energies=energies,
                   step=np.int64(step))
  summaries.save_image_grid(np.clip(images[:grid_size], -1.0, 1.0),
                            os.path.join(output_dir, f"samples_{step:09d}.png"))


def load_job_model(config: SampleConfig) -> SamplingModel:
  """`load_model` with the settings of the sampling job `config`."""
  return load_model(config.model_dir, config.checkpoint, generator_dir=config.generator_dir,
                    need_generator=config.init == "coop", step_size=config.step_size,
                    temperature=config.temperature,
                    prior_temperature=config.prior_temperature,
                    joint_temperature=config.joint_temperature, tau=config.tau)


def sample(config: SampleConfig, model: Optional[SamplingModel] = None) -> Dict[str, Any]:
  """Runs the sampling job `config` (resuming it when `output_dir` holds one); see module doc.

  `model`: `load_job_model(config)` if the caller has it already (else it is loaded here).
  """
  model = model or load_job_model(config)
  init = resolve_init(config.init, model)
  num_steps = config.num_steps or model.run_config.eval_mcmc_steps or model.run_config.mcmc_steps
  if config.record_steps and config.record_steps[-1] > num_steps:
    raise ValueError(f"--record_steps {config.record_steps} go beyond the number of steps "
                     f"{num_steps}")
  state_exists = tf.io.gfile.exists(os.path.join(config.output_dir, STATE_FILENAME))
  initial = (np.zeros([config.num_samples, *model.image_shape], np.float32) if state_exists
             else initial_states(model, init, config.num_samples, config.seed,
                                 split=config.split, data_dir=model.run_config.data_dir))
  settings = dict(init=init, split=config.split if init == "data" else None,
                  generator_dir=config.generator_dir)
  summary = run_chains(model, initial, num_steps=num_steps, output_dir=config.output_dir,
                       seed=config.seed, record_steps=config.record_steps,
                       segment_steps=config.segment_steps, batch_size=config.batch_size,
                       grid_size=config.grid_size, settings=settings)
  summary.update(init=init, checkpoint=model.checkpoint_path)
  return summary
