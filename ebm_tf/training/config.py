"""The one configuration path: absl flags (flagfiles in `flags/`) -> a frozen `TrainConfig`.

Flag names follow the reference implementation's config keys where one exists (`epsilon`,
`mcmc_temp`, `data_epsilon`, `persistent_size`, `max_mcmc_updates`, ...). Library code never reads
flags: binaries call `define_train_flags()` once, parse, and hand `config_from_flags()` to the
library.
"""

import dataclasses
import json
import os
from typing import Optional, Tuple

from absl import flags

from ebm_tf.internal import file_io
from ebm_tf.internal import flag_config
from ebm_tf.mcmc import init_strategies

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything one EBM training run needs. Units: images live in [-1, 1]."""

  # Data.
  dataset: str = "digits"
  data_dir: Optional[str] = None
  image_size: Optional[int] = None
  random_crop: bool = False
  # Networks.
  ebm: str = "ebm_small"
  ebm_width: int = 0
  generator: str = "gen_small"
  gen_width: int = 0
  latent_dim: int = 16
  gen_batch_norm: bool = True
  update_generator: bool = True
  gen_checkpoint: Optional[str] = None
  # Optimisation.
  batch_size: int = 64
  train_steps: int = 1000
  ebm_lr_values: Tuple[float, ...] = (1e-4,)
  ebm_lr_boundaries: Tuple[int, ...] = ()
  gen_lr_values: Tuple[float, ...] = (1e-4,)
  gen_lr_boundaries: Tuple[int, ...] = ()
  beta_1: float = 0.9
  beta_2: float = 0.999
  ebm_opt_decay: float = 0.0
  gen_opt_decay: float = 0.0
  clip_ebm_grad: float = 0.0
  clip_gen_grad: float = 0.0
  # Langevin MCMC.
  data_epsilon: float = 1e-2
  epsilon: float = 5e-3
  mcmc_steps: int = 100
  mcmc_temp: float = 1e-4
  tau: float = 0.0
  max_langevin_norm: float = 0.0
  # MCMC initialisation.
  mcmc_init: str = "coop_persistent"
  persistent_size: int = 1000
  rejuvenation_prob: float = 0.5
  max_mcmc_updates: int = 2
  persistent_init_scale: float = 1.0
  # Longrun correction stage: a frozen prior EBM (the model_dir of its run) enters the Langevin
  # energy as E0 / prior_temp; a burn-in bank feeds the update bank (graduation after
  # graduation_draws draws of burnin_steps Langevin steps each).
  prior_model_dir: Optional[str] = None
  prior_temp: float = 1e-4
  burnin_size: int = 0
  burnin_steps: int = 0
  graduation_draws: int = 750
  # Evaluation samples during training: fresh G(z) (or the init source) run this many steps.
  eval_mcmc_steps: int = 0
  # Divergence guard: a step with non-finite metrics or |energy| > max_abs_energy (0 = off) is
  # undone by restoring the last checkpoint; the lr is multiplied by divergence_lr_factor.
  max_abs_energy: float = 0.0
  divergence_lr_factor: float = 1.0
  max_divergence_restarts: int = 3
  # Runtime.
  strategy: str = "default"
  num_cpu_devices: int = 0
  tpu: str = ""
  precision: str = "float32"
  jit_compile: bool = False
  seed: int = 0
  # Output.
  model_dir: str = ""
  log_every: int = 50
  checkpoint_every: int = 500
  image_every: int = 500
  max_to_keep: int = 5
  num_grid_images: int = 64

  def __post_init__(self):
    validate(self)

  @property
  def ebm_lr(self) -> float:
    return self.ebm_lr_values[0]

  @property
  def init_mode(self) -> init_strategies.InitMode:
    """`mcmc_init` parsed: the `InitMode` that owns the mode predicates (uses_generator, ...)."""
    return init_strategies.InitMode(self.mcmc_init)


def _check(ok: bool, message: str):
  if not ok:
    raise ValueError(message)


def validate(config: TrainConfig) -> None:
  """Raises ValueError naming the first bad setting of `config`."""
  c = config
  mode = init_strategies.InitMode.parse(c.mcmc_init)
  _check(c.strategy in STRATEGIES,
         f"strategy must be one of {STRATEGIES}; got {c.strategy!r}")
  _check(c.precision in PRECISIONS,
         f"precision must be one of {PRECISIONS}; got {c.precision!r}")
  _check(c.batch_size > 0, f"batch_size must be > 0; got {c.batch_size}")
  _check(c.train_steps >= 0, f"train_steps must be >= 0; got {c.train_steps}")
  _check(c.epsilon > 0, f"epsilon (Langevin step size) must be > 0; got {c.epsilon}")
  _check(c.mcmc_temp > 0, f"mcmc_temp must be > 0; got {c.mcmc_temp}")
  _check(c.mcmc_steps >= 0, f"mcmc_steps must be >= 0; got {c.mcmc_steps}")
  _check(c.data_epsilon >= 0, f"data_epsilon must be >= 0; got {c.data_epsilon}")
  _check(c.tau >= 0, f"tau must be >= 0 (0 = off); got {c.tau}")
  _check(c.max_langevin_norm >= 0,
         f"max_langevin_norm must be >= 0 (0 = off); got {c.max_langevin_norm}")
  _check(0.0 <= c.rejuvenation_prob <= 1.0,
         f"rejuvenation_prob must be in [0, 1]; got {c.rejuvenation_prob}")
  _check(c.max_mcmc_updates >= 0,
         f"max_mcmc_updates must be >= 0 (0 = no cap); got {c.max_mcmc_updates}")
  _check(c.ebm_width >= 0 and c.gen_width >= 0,
         f"ebm_width / gen_width must be >= 0 (0 = the architecture's default); got "
         f"{c.ebm_width}, {c.gen_width}")
  _check(c.latent_dim > 0, f"latent_dim must be > 0; got {c.latent_dim}")
  _check(0.0 <= c.ebm_opt_decay < 1.0,
         f"ebm_opt_decay (EMA momentum, 0 = off) must be in [0, 1); got {c.ebm_opt_decay}")
  _check(0.0 <= c.gen_opt_decay < 1.0,
         f"gen_opt_decay (EMA momentum, 0 = off) must be in [0, 1); got {c.gen_opt_decay}")
  _check(c.clip_ebm_grad >= 0 and c.clip_gen_grad >= 0,
         f"clip_ebm_grad / clip_gen_grad must be >= 0 (0 = off); got {c.clip_ebm_grad}, "
         f"{c.clip_gen_grad}")
  for name in ("ebm", "gen"):
    values = getattr(c, f"{name}_lr_values")
    boundaries = getattr(c, f"{name}_lr_boundaries")
    _check(len(values) == len(boundaries) + 1,
           f"{name}_lr_values needs exactly one more entry than {name}_lr_boundaries; got "
           f"{len(values)} values {list(values)} and {len(boundaries)} boundaries "
           f"{list(boundaries)}")
    _check(all(v > 0 for v in values), f"{name}_lr_values must be > 0; got {list(values)}")
    _check(list(boundaries) == sorted(set(boundaries)) and all(b > 0 for b in boundaries),
           f"{name}_lr_boundaries must be strictly increasing positive steps; got "
           f"{list(boundaries)}")
  if mode.needs_bank:
    _check(c.persistent_size >= c.batch_size,
           f"persistent_size ({c.persistent_size}) must be >= batch_size ({c.batch_size})")
  _check(c.prior_temp > 0, f"prior_temp must be > 0; got {c.prior_temp}")
  _check(c.burnin_size >= 0 and c.burnin_steps >= 0,
         f"burnin_size / burnin_steps must be >= 0; got {c.burnin_size}, {c.burnin_steps}")
  _check(c.graduation_draws >= 1, f"graduation_draws must be >= 1; got {c.graduation_draws}")
  if c.burnin_size:
    _check(mode.needs_bank,
           f"a burn-in bank (burnin_size={c.burnin_size}) needs a persistent mcmc_init; got "
           f"{c.mcmc_init!r}")
    _check(c.burnin_size >= c.batch_size,
           f"burnin_size ({c.burnin_size}) must be >= batch_size ({c.batch_size})")
    # The burn-in bank belongs to the longrun correction stage, whose energy is E/T + E0/T0:
    # without the prior run it would silently train a correction of nothing.
    _check(bool(c.prior_model_dir),
           f"a longrun correction run (burnin_size={c.burnin_size} > 0) needs "
           "--prior_model_dir, the model_dir of its frozen prior EBM's run")
  _check(c.update_generator or c.gen_checkpoint or not mode.uses_generator,
         "a frozen generator (update_generator=false) needs --gen_checkpoint, the run or "
         "checkpoint to load it from")
  for name in ("log_every", "checkpoint_every", "image_every", "max_to_keep"):
    _check(getattr(c, name) > 0, f"{name} must be > 0; got {getattr(c, name)}")
  _check(c.num_grid_images > 0, f"num_grid_images must be > 0; got {c.num_grid_images}")
  _check(c.max_abs_energy >= 0, f"max_abs_energy must be >= 0 (0 = off); got {c.max_abs_energy}")
  _check(0 < c.divergence_lr_factor <= 1,
         f"divergence_lr_factor must be in (0, 1]; got {c.divergence_lr_factor}")
  _check(c.max_divergence_restarts >= 0,
         f"max_divergence_restarts must be >= 0; got {c.max_divergence_restarts}")
  _check(c.num_cpu_devices >= 0, f"num_cpu_devices must be >= 0; got {c.num_cpu_devices}")


def define_train_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines one absl flag per `TrainConfig` field on `flag_values` (call once per binary)."""
  helps = {
      "dataset": "digits | fashion_mnist | mnist | cifar10 | celeb_a | imagenet2012 | synthetic",
      "data_dir": "tensorflow-datasets data_dir (prepared offline; nothing is downloaded)",
      "image_size": "output image size for celeb_a / imagenet2012 (None = dataset default)",
      "ebm": "energy network name (ebm_tf.models.build_ebm)",
      "ebm_width": "channel width of the small EBMs (0 = the architecture's default)",
      "generator": "generator network name (ebm_tf.models.build_generator)",
      "gen_width": "channel width of the small generators (0 = the architecture's default)",
      "gen_checkpoint": "checkpoint to load a pretrained generator from (frozen if "
                        "update_generator is false)",
      "batch_size": "global batch size (split evenly over replicas)",
      "train_steps": "number of EBM updates",
      "ebm_lr_values": "piecewise-constant EBM learning rates",
      "ebm_lr_boundaries": "steps at which the EBM learning rate changes",
      "ebm_opt_decay": "EMA momentum of EBM weights (0 = off; the reference never used its EMA)",
      "clip_ebm_grad": "per-tensor norm clip of EBM gradients (0 = off)",
      "data_epsilon": "std of Gaussian noise added to positive images every step",
      "epsilon": "Langevin step size: x <- x - eps^2/2 grad U + eps N(0, I)",
      "mcmc_steps": "Langevin steps per update (K)",
      "mcmc_temp": "temperature T: U = E / T",
      "tau": "std of the Gaussian term ||x||^2 / (2 tau^2) added to U (0 = off)",
      "max_langevin_norm": "per-sample clip of the Langevin drift eps^2/2 ||grad|| (0 = off)",
      "mcmc_init": f"one of {init_strategies.MODES}",
      "persistent_size": "persistent bank size (split over replicas)",
      "rejuvenation_prob": "probability that a drawn bank slot is re-initialised",
      "max_mcmc_updates": "force rejuvenation of slots used more than this often (0 = no cap)",
      "prior_model_dir": "longrun correction stage: model_dir of the frozen prior EBM's run",
      "prior_temp": "temperature T0 of the prior energy term E0 / T0",
      "burnin_size": "longrun burn-in bank size (0 = none)",
      "burnin_steps": "Langevin steps per burn-in draw (0 = mcmc_steps)",
      "graduation_draws": "burn-in draws after which a state graduates into the update bank",
      "eval_mcmc_steps": "Langevin steps for the sample grids from fresh states (0 = mcmc_steps)",
      "max_abs_energy": "divergence guard: undo a step whose mean |energy| exceeds this (0 = "
                        "only non-finite steps)",
      "divergence_lr_factor": "divergence guard: multiply the learning rates by this after "
                              "each restore",
      "max_divergence_restarts": "divergence guard: stop after this many consecutive restores",
      "strategy": f"tf.distribute strategy: one of {STRATEGIES}",
      "num_cpu_devices": "split the CPU into this many logical devices (tests stand-in for GPUs)",
      "tpu": "TPU address for --strategy=tpu",
      "precision": f"one of {PRECISIONS}",
      "jit_compile": "XLA-compile the train step (GPU/TPU; much slower on CPU)",
      "seed": "seed of every stateless random stream of the run",
      "model_dir": "where checkpoints, TensorBoard events and sample grids go",
  }
  flag_config.define_flags(TrainConfig, helps, flag_values)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS, **overrides) -> TrainConfig:
  """Builds the validated `TrainConfig` from parsed flags (`overrides` win)."""
  values = flag_config.from_flags(TrainConfig, flag_values, overrides)
  if not values["model_dir"]:
    raise ValueError("--model_dir is required: where checkpoints, TensorBoard events and "
                     "sample grids are written")
  return TrainConfig(**values)


CONFIG_FILENAME = "config.json"


def save_config(config: TrainConfig, model_dir: str) -> str:
  """Writes `config` as `<model_dir>/config.json` (atomically: temp file, then rename).

  Downstream tools (sampling, export, evaluation) rebuild the run's networks from it.
  """
  return file_io.write_json_atomic(os.path.join(model_dir, CONFIG_FILENAME),
                                   dataclasses.asdict(config))


def load_config(model_dir: str, **overrides) -> TrainConfig:
  """Reads `<model_dir>/config.json` written by a training run (`overrides` win)."""
  path = os.path.join(model_dir, CONFIG_FILENAME)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no {CONFIG_FILENAME} in {model_dir!r}: is it the --model_dir of an "
                            "ebm_tf training run?")
  with open(path) as f:
    values = json.load(f)
  known = {field.name: field for field in dataclasses.fields(TrainConfig)}
  unknown = sorted(set(values) - set(known))
  if unknown:
    raise ValueError(f"{path} has settings this version of ebm_tf does not know: {unknown}")
  for name, value in values.items():
    if isinstance(known[name].default, tuple):
      values[name] = tuple(value)
  values.update(overrides)
  for name in _RUN_PATH_FIELDS:
    values[name] = resolve_run_path(model_dir, values.get(name))
  return TrainConfig(**values)


# Settings that name another run (its model_dir or a checkpoint prefix).
_RUN_PATH_FIELDS = ("prior_model_dir", "gen_checkpoint")


def resolve_run_path(model_dir: str, path: Optional[str]) -> Optional[str]:
  """Resolves a path that the config of run `model_dir` records for another run.

  An absolute path, or a relative one that exists from the current directory (how a training
  command line gives it), is returned as it is. A relative path that does not exist from here
  but does from `model_dir` (as shipped models record their prior, `../<prior name>`) is
  returned joined to `model_dir`. Anything else is returned unchanged, for the tool that uses
  it to report as missing.
  """
  if not path or os.path.isabs(path) or "://" in path:
    return path
  if os.path.exists(path) or os.path.exists(path + ".index"):
    return path
  joined = os.path.normpath(os.path.join(model_dir, path))
  if os.path.exists(joined) or os.path.exists(joined + ".index"):
    return joined
  return path
