"""Configuration of a naturally trained classifier run: absl flags -> a frozen `ClassifierConfig`.

The classifier is the one the EBM purification defense protects (docs/paper_settings.md section
7.1): trained on clean data only, never adversarially, never on purified images. The dataclass
defaults are the reference recipe (`train_clf.py` + `configs_clf/cifar10_wrn.py`): WRN-28-10 on
CIFAR-10, SGD with momentum 0.9 (no Nesterov), learning rate 0.1 -> 0.01 -> 0.001 at epochs 40 and
60 of 499 steps, 100 epochs, batch 96, L2 `5e-4 * sum(tf.nn.l2_loss(v))` over all trainable
variables, pad-4 random crop + flip augmentation, test accuracy every 5 epochs, the best kept. The
step counts are in optimizer steps (epochs x 499); the presets in `flags/classifier_*.cfg` spell the
arithmetic out.

Library code never reads flags: the binary calls `define_classifier_flags()` once, parses, and
hands `config_from_flags()` to `ebm_tf.classifier.classifier_lib`.
"""

import dataclasses
import json
import os
from typing import Any, Dict, Optional, Tuple

from absl import flags

from ebm_tf.data import datasets
from ebm_tf.internal import file_io
from ebm_tf.internal import flag_config
from ebm_tf import models
from ebm_tf.training import distribute

PRECISIONS = ("float32", "mixed_bfloat16")
CONFIG_FILENAME = "classifier_config.json"
# Keys written to classifier_config.json beside the fields, derived from them (for readers that do
# not import ebm_tf, e.g. the exporter); `load_config` drops them.
DERIVED_KEYS = ("num_classes", "image_shape")


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
  """Everything one classifier training run needs. Images live in [-1, 1]; steps are SGD steps."""

  # Data.
  dataset: str = "cifar10"
  data_dir: Optional[str] = None
  image_size: Optional[int] = None
  random_crop: bool = True
  # Network.
  classifier: str = "wrn28_10"
  wrn_depth: int = 28
  wrn_widen_factor: int = 10
  # Optimisation.
  batch_size: int = 96
  train_steps: int = 49_900
  lr_values: Tuple[float, ...] = (0.1, 0.01, 0.001)
  lr_boundaries: Tuple[int, ...] = (19_960, 29_940)
  momentum: float = 0.9
  nesterov: bool = False
  weight_decay: float = 5e-4
  # Evaluation: accuracy on `eval_split` every `eval_every` steps and at the end; the best is kept.
  eval_every: int = 2_495
  eval_split: str = "test"
  eval_examples: int = 0
  eval_batch_size: int = 500
  # Runtime.
  strategy: str = "default"
  num_cpu_devices: int = 0
  tpu: str = ""
  precision: str = "float32"
  seed: int = 0
  # Output.
  model_dir: str = ""
  log_every: int = 100
  max_to_keep: int = 3

  def __post_init__(self):
    validate(self)

  @property
  def image_shape(self) -> Tuple[int, int, int]:
    """(H, W, C) of the classifier's input images."""
    return tuple(datasets.image_shape(self.dataset, self.image_size))

  @property
  def num_classes(self) -> int:
    """Number of logits: the dataset's number of classes."""
    return datasets.num_classes(self.dataset)

  @property
  def model_kwargs(self) -> Dict[str, Any]:
    """Architecture options passed to `models.build_classifier` (only 'wrn' takes any)."""
    if self.classifier == "wrn":
      return {"depth": self.wrn_depth, "widen_factor": self.wrn_widen_factor}
    return {}


def _check(ok: bool, message: str):
  if not ok:
    raise ValueError(message)


def validate(config: ClassifierConfig) -> None:
  """Raises ValueError naming the first bad setting of `config`."""
  c = config
  _check(c.dataset in datasets.DATASETS,
         f"dataset must be one of {list(datasets.DATASETS)}; got {c.dataset!r}")
  _check(c.image_size is None or (isinstance(c.image_size, int) and c.image_size > 0),
         f"image_size must be a positive int or None (the dataset's size); got {c.image_size!r}")
  _check(c.classifier in models.CLASSIFIER_NAMES,
         f"classifier must be one of {list(models.CLASSIFIER_NAMES)}; got {c.classifier!r}")
  _check(c.wrn_depth >= 10 and (c.wrn_depth - 4) % 6 == 0,
         f"wrn_depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...); got {c.wrn_depth}")
  _check(c.wrn_widen_factor >= 1, f"wrn_widen_factor must be >= 1; got {c.wrn_widen_factor}")
  _check(c.strategy in distribute.STRATEGIES,
         f"strategy must be one of {distribute.STRATEGIES}; got {c.strategy!r}")
  _check(c.precision in PRECISIONS,
         f"precision must be one of {PRECISIONS}; got {c.precision!r}")
  _check(c.batch_size > 0, f"batch_size must be > 0; got {c.batch_size}")
  _check(c.train_steps >= 1, f"train_steps must be >= 1; got {c.train_steps}")
  _check(len(c.lr_values) == len(c.lr_boundaries) + 1,
         f"lr_values needs exactly one more entry than lr_boundaries; got {len(c.lr_values)} "
         f"values {list(c.lr_values)} and {len(c.lr_boundaries)} boundaries "
         f"{list(c.lr_boundaries)}")
  _check(all(v > 0 for v in c.lr_values), f"lr_values must be > 0; got {list(c.lr_values)}")
  _check(list(c.lr_boundaries) == sorted(set(c.lr_boundaries))
         and all(b > 0 for b in c.lr_boundaries),
         f"lr_boundaries must be strictly increasing positive steps; got {list(c.lr_boundaries)}")
  _check(0.0 <= c.momentum < 1.0, f"momentum must be in [0, 1); got {c.momentum}")
  _check(c.weight_decay >= 0, f"weight_decay must be >= 0 (0 = off); got {c.weight_decay}")
  _check(bool(c.eval_split), f"eval_split must be a split name; got {c.eval_split!r}")
  _check(c.eval_examples >= 0, f"eval_examples must be >= 0 (0 = the whole split); got "
         f"{c.eval_examples}")
  for name in ("eval_every", "eval_batch_size", "log_every", "max_to_keep"):
    _check(getattr(c, name) > 0, f"{name} must be > 0; got {getattr(c, name)}")
  _check(c.num_cpu_devices >= 0, f"num_cpu_devices must be >= 0; got {c.num_cpu_devices}")


_HELPS = {
    "dataset": "digits | fashion_mnist | mnist | cifar10 | imagenet2012 | synthetic",
    "data_dir": "tensorflow-datasets data_dir (prepared offline; nothing is downloaded)",
    "image_size": "square image side (default: the dataset's own size)",
    "random_crop": "augmentation (cifar10: pad 4 + random 32x32 crop + horizontal flip)",
    "classifier": f"classifier network: one of {models.CLASSIFIER_NAMES}",
    "wrn_depth": "depth (6n+4) of --classifier=wrn",
    "wrn_widen_factor": "widen factor k of --classifier=wrn",
    "batch_size": "global batch size (split evenly over replicas)",
    "train_steps": "number of SGD steps (epochs x steps per epoch)",
    "lr_values": "piecewise-constant learning rates",
    "lr_boundaries": "steps after which the learning rate changes (keras PiecewiseConstantDecay)",
    "momentum": "SGD momentum",
    "nesterov": "Nesterov momentum (off in the reference)",
    "weight_decay": "L2 coefficient: loss += weight_decay * sum(tf.nn.l2_loss(v)) over all "
                    "trainable variables",
    "eval_every": "evaluate on eval_split (and checkpoint) every this many steps; the best "
                  "accuracy's weights go to <model_dir>/best",
    "eval_split": "split used for evaluation and choosing the best checkpoint",
    "eval_examples": "evaluate on the first this many examples of eval_split (0 = all)",
    "eval_batch_size": "batch size of evaluation",
    "strategy": f"tf.distribute strategy: one of {distribute.STRATEGIES}",
    "num_cpu_devices": "split the CPU into this many logical devices (tests stand-in for GPUs)",
    "tpu": "TPU address for --strategy=tpu",
    "precision": f"one of {PRECISIONS} (layer compute dtype; variables and logits stay float32)",
    "seed": "seed of the initial weights, the data order and the augmentation",
    "model_dir": "where classifier_config.json, checkpoints/, best/ and tensorboard/ go",
    "log_every": "progress line and TensorBoard training scalars every this many steps",
    "max_to_keep": "number of training checkpoints kept in <model_dir>/checkpoints",
}


def define_classifier_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines one absl flag per `ClassifierConfig` field on `flag_values` (call once per binary)."""
  flag_config.define_flags(ClassifierConfig, _HELPS, flag_values)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS,
                      **overrides) -> ClassifierConfig:
  """Builds the validated `ClassifierConfig` from parsed flags (`overrides` win).

  Raises:
    ValueError: a bad setting, or no --model_dir.
  """
  values = flag_config.from_flags(ClassifierConfig, flag_values, overrides)
  if not values["model_dir"]:
    raise ValueError("--model_dir is required: where classifier_config.json, checkpoints, the "
                     "best checkpoint and TensorBoard events are written")
  return ClassifierConfig(**values)


def config_dict(config: ClassifierConfig) -> Dict[str, Any]:
  """The JSON content of classifier_config.json: every field plus `DERIVED_KEYS`."""
  values = dataclasses.asdict(config)
  values["lr_values"] = list(config.lr_values)
  values["lr_boundaries"] = list(config.lr_boundaries)
  values["num_classes"] = config.num_classes
  values["image_shape"] = list(config.image_shape)
  return values


def save_config(config: ClassifierConfig, model_dir: str) -> str:
  """Writes `<model_dir>/classifier_config.json` atomically (temp file, then rename).

  The file holds every field (`"classifier"`, `"dataset"`, `"image_size"` - null for the
  dataset's own size - ...) plus `"num_classes"` and `"image_shape"` [H, W, C]. Returns its path.
  """
  return file_io.write_json_atomic(os.path.join(model_dir, CONFIG_FILENAME),
                                   config_dict(config))


def load_config(model_dir: str, **overrides) -> ClassifierConfig:
  """Reads `<model_dir>/classifier_config.json` written by a training run (`overrides` win).

  Raises:
    FileNotFoundError: no classifier_config.json in model_dir.
    ValueError: the file has unknown settings or bad values.
  """
  path = os.path.join(model_dir, CONFIG_FILENAME)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no {CONFIG_FILENAME} in {model_dir!r}: is it the --model_dir of "
                            "an ebm_tf.train_classifier run?")
  with open(path) as f:
    values = json.load(f)
  for key in DERIVED_KEYS:
    values.pop(key, None)
  known = {field.name: field for field in dataclasses.fields(ClassifierConfig)}
  unknown = sorted(set(values) - set(known))
  if unknown:
    raise ValueError(f"{path} has settings this version of ebm_tf does not know: {unknown}")
  for name, value in values.items():
    if isinstance(known[name].default, tuple):
      values[name] = tuple(value)
  values.update(overrides)
  return ClassifierConfig(**values)
