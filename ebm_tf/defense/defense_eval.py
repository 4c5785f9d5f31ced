"""Robust accuracy of the Langevin-purification defense: the library behind `ebm_tf.attack`.

The protocol of Hill et al. (2022), docs/paper_settings.md section 7: a naturally trained classifier
(a `ebm_tf.train_classifier` run) is defended by purifying every input with Langevin MCMC on a
midrun EBM (an `ebm_tf.train` run) and averaging the logits over EOT repeats; it is attacked by
l_inf PGD with BPDA + EOT gradients (`ebm_tf.defense.attacks.bpda_eot_pgd`), every break confirmed
with `eot_defense_reps` purifications (`attack_method` swaps PGD for cleverhans' BIM, FGM or MIM,
computed in the same loop: `ebm_tf.defense.attacks`). Images come from the test split, shuffled with
a fixed seed, in batches; each (attack seed, batch) is one independent unit of work:

    setup = prepare(DefenseEvalConfig(ebm_dir=..., classifier_dir=..., output_dir=...))
    summary = evaluate(setup)     # writes everything below; resumes where it stopped

Output directory layout:
  batches/seed<k>_batch<i>.json  one finished batch (written atomically; a restart skips it):
                                 image indices, labels, per-image natural/robust correctness,
                                 the evaluation at which each image broke, the batch's curve,
                                 seconds, and the settings fingerprint it was computed with.
  seed<k>.json, seed<k>.png      per attack seed: natural and robust accuracy with 95% Wilson
                                 intervals, the accuracy-over-attack-steps curve and its plot.
  summary.json, accuracy_curve.png
                                 all seeds: the worst case (min robust accuracy over seeds),
                                 the per-image worst case (robust under every seed), settings,
                                 compute time.

Curves have adv_steps + 2 entries: [0] natural accuracy (clean images through the defense),
[t + 1] the fraction of images not broken by evaluation t (t = 0 is the start point: the random
start, or the clean images for attack_method 'bim', 'fgm' and 'mim'; t = n the iterate after n
steps). With attack 'none' the curve is [natural accuracy].

Seeds: batch i of attack seed k uses the stateless seed [k, i] (int32 [2]) for everything
random in that batch (random start, purification noise), so a batch's result does not depend
on which other batches ran or in what order.

Sharding (N machines or GPUs sharing one evaluation): with num_shards = N > 1 and shard_index
k, `evaluate` computes only the units (seed, batch) at positions u = k, k + N, k + 2N, ... of
the seed-major plan (`shard_plan`), writes their batch records into the same batches/ folder
and returns a shard report instead of writing summary.json. Any run without shard settings
over that folder (`merge_only=True` to refuse computing anything) reuses every record and
writes the one summary; records with other settings are refused, naming the settings.
"""

import dataclasses
import json
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from ebm_tf.classifier import classifier_lib
from ebm_tf.classifier import keras_app_classifier
from ebm_tf.data import datasets
from ebm_tf.defense import attacks
from ebm_tf.defense import exact_gradient
from ebm_tf.defense import purify as purify_lib
from ebm_tf.internal import file_io
from ebm_tf import models
from ebm_tf.training import config as config_lib
from ebm_tf.training import runs
from ebm_tf.training import summaries

DEFENSES = ("purify", "none")
ATTACKS = ("bpda_eot", "full_gradient", "exact_gradient", "none")
BATCH_DIR = "batches"
SUMMARY_FILENAME = "summary.json"
CURVE_FILENAME = "accuracy_curve.png"
FORMAT_VERSION = 1
# Config fields that do not change any batch's result (excluded from the resume fingerprint).
_NOT_IN_FINGERPRINT = ("output_dir", "seeds", "num_images", "log_every", "num_shards",
                       "shard_index", "merge_only")
# Fields added after batches were first written: left out of the fingerprint while they hold
# the value that those batches were computed with, so that older output directories resume.
_FINGERPRINT_ONLY_IF_NOT = {"attack_method": "pgd", "classifier": "", "classifier_weights": "",
                            "classifier_input_size": 0, "segment_length": 0}
# Fields renamed after batches were first written: the fingerprint keeps the names those
# batches were written with, and a None (unset with defense 'none') as the former default.
_FINGERPRINT_LEGACY_NAMES = {"epsilon": ("purify_step_size", 0.01),
                             "mcmc_temp": ("purify_temperature", 1e-4)}
ATTACK_METHODS = attacks.ATTACK_METHODS


@dataclasses.dataclass(frozen=True)
class DefenseEvalConfig:
  """One robust-accuracy evaluation; defaults: the CIFAR-10 protocol (docs/paper_settings.md 7.4).

  Perturbation sizes are in /255 units of [0, 1] images (applied as v * 2/255 on [-1, 1]).
  """

  # Models. The classifier is either a project classifier run (classifier_dir) or a
  # keras.applications ImageNet model (classifier 'keras_app:<Name>' with a local weights file).
  ebm_dir: str = ""  # an ebm_tf.train model_dir; unused with defense 'none'
  classifier_dir: str = ""  # an ebm_tf.train_classifier model_dir
  classifier_which: str = "best"  # 'best' | 'latest'
  classifier: str = ""  # '' (classifier_dir) | 'keras_app:<Name>' (ebm_tf.classifier.keras_app_classifier)
  classifier_weights: str = ""  # keras_app: local .h5 / .weights.h5 / .keras file
  classifier_input_size: int = 0  # keras_app: input side (0 = the model's default)
  # Images: the first num_images of the split after a fixed shuffle, in batches.
  dataset: str = ""  # '' = the classifier's dataset
  data_dir: Optional[str] = None
  image_size: Optional[int] = None  # None = the classifier's image_size
  split: str = "test"
  shuffle: bool = True
  shuffle_seed: int = 0
  num_images: int = 640
  batch_size: int = 64
  # Defense and attack.
  defense: str = "purify"
  attack: str = "bpda_eot"
  attack_method: str = "pgd"  # 'pgd' | 'bim' | 'fgm' | 'mim' (cleverhans' methods, one loop)
  eps_255: float = 8.0
  step_size_255: float = 2.0
  adv_steps: int = 50
  random_start: bool = True
  eot_attack_reps: int = 48
  eot_defense_reps: int = 128
  purify_steps: int = 2000
  # The purifier's Langevin step size and temperature, named as in training (TrainConfig
  # epsilon and mcmc_temp); None = the EBM run's (its config.json), as the exporter does.
  epsilon: Optional[float] = None
  mcmc_temp: Optional[float] = None
  attack_purify_steps: int = 0  # full_gradient: Langevin steps differentiated (0 = purify_steps)
  max_chain_steps: int = attacks.MAX_CHAIN_STEPS  # full_gradient memory cap
  # exact_gradient: chain steps per recomputed segment (0 = round(sqrt(purify_steps))).
  segment_length: int = 0
  verify_batch_size: int = 0  # images per EOT-defense verification call (0 = the whole batch)
  seeds: Tuple[int, ...] = (0, 1)
  # Output.
  output_dir: str = ""
  log_every: int = 10  # attack evaluations between progress lines inside a batch (0 = none)
  # Scale-out: this process computes shard shard_index of num_shards (module docstring).
  num_shards: int = 1
  shard_index: int = 0
  merge_only: bool = False  # compute nothing: fail unless every batch is already in output_dir

  def __post_init__(self):
    validate(self)

  @property
  def effective_attack(self) -> str:
    """'none', 'pgd' (the classifier alone: defense 'none'), 'bpda_eot', 'full_gradient' or
    'exact_gradient'."""
    if self.attack == "none":
      return "none"
    return "pgd" if self.defense == "none" else self.attack


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise ValueError(message)


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def validate(config: DefenseEvalConfig) -> None:
  """Raises ValueError naming the first bad setting of `config` and what was expected."""
  c = config
  _check(c.defense in DEFENSES, f"defense must be one of {DEFENSES}; got {c.defense!r}")
  _check(c.attack in ATTACKS, f"attack must be one of {ATTACKS}; got {c.attack!r}")
  _check(c.attack_method in ATTACK_METHODS,
         f"attack_method must be one of {ATTACK_METHODS}; got {c.attack_method!r}")
  _check(c.classifier_which in classifier_lib.WHICH,
         f"classifier_which must be one of {classifier_lib.WHICH}; got {c.classifier_which!r}")
  _check(not (c.classifier_dir and c.classifier),
         f"give one classifier: classifier_dir {c.classifier_dir!r} (an ebm_tf.train_classifier "
         f"run) or classifier {c.classifier!r} (keras.applications), not both")
  _check(bool(c.classifier_dir) or bool(c.classifier),
         "classifier_dir is required: the model_dir of an ebm_tf.train_classifier run (or "
         "classifier 'keras_app:<Name>' with classifier_weights, a keras.applications model)")
  if c.classifier:
    name = keras_app_classifier.parse_spec(c.classifier)
    _check(bool(c.classifier_weights),
           f"classifier_weights is required with classifier {c.classifier!r}: a local "
           f"{'/'.join(keras_app_classifier.WEIGHTS_SUFFIXES)} file (nothing is downloaded)")
    _check(_is_int(c.classifier_input_size) and c.classifier_input_size >= 0,
           f"classifier_input_size must be an integer >= 0 (0 = the model's default); got "
           f"{c.classifier_input_size!r}")
    keras_app_classifier.resolve_input_size(name, c.classifier_input_size)
  else:
    _check(not c.classifier_weights and c.classifier_input_size == 0,
           "classifier_weights and classifier_input_size are for classifier 'keras_app:<Name>'; "
           f"got classifier_weights {c.classifier_weights!r}, classifier_input_size "
           f"{c.classifier_input_size!r} with classifier_dir {c.classifier_dir!r}")
  _check(c.defense == "none" or bool(c.ebm_dir),
         "ebm_dir is required with defense 'purify': the model_dir of an ebm_tf.train run "
         "(or pass defense 'none' to attack the classifier alone)")
  _check(bool(c.output_dir), "output_dir is required: where results are written")
  _check(c.dataset == "" or c.dataset in datasets.DATASETS,
         f"dataset must be '' (the classifier's) or one of {list(datasets.DATASETS)}; got "
         f"{c.dataset!r}")
  _check(c.image_size is None or (_is_int(c.image_size) and c.image_size > 0),
         f"image_size must be a positive int or None; got {c.image_size!r}")
  for name in ("eps_255", "step_size_255"):
    value = getattr(c, name)
    _check(isinstance(value, (int, float)) and np.isfinite(value) and value >= 0,
           f"{name} must be a finite number >= 0 (in /255 units); got {value!r}")
  for name in ("epsilon", "mcmc_temp"):
    value = getattr(c, name)
    _check(value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                             and np.isfinite(value) and value > 0),
           f"{name} must be a finite number > 0 (or None: the EBM run's); got {value!r}")
  for name, minimum in (("num_images", 1), ("batch_size", 1), ("adv_steps", 0),
                        ("eot_attack_reps", 1), ("eot_defense_reps", 1), ("purify_steps", 0),
                        ("attack_purify_steps", 0), ("max_chain_steps", 1),
                        ("segment_length", 0),
                        ("verify_batch_size", 0), ("shuffle_seed", 0), ("log_every", 0)):
    value = getattr(c, name)
    _check(_is_int(value) and value >= minimum,
           f"{name} must be an integer >= {minimum}; got {value!r}")
  _check(len(c.seeds) >= 1 and all(_is_int(s) and 0 <= s < 2**31 for s in c.seeds),
         f"seeds must be a non-empty list of integers in [0, 2^31); got {list(c.seeds)}")
  _check(len(set(c.seeds)) == len(c.seeds), f"seeds must be distinct; got {list(c.seeds)}")
  _check(_is_int(c.num_shards) and c.num_shards >= 1,
         f"num_shards must be an integer >= 1; got {c.num_shards!r}")
  _check(_is_int(c.shard_index) and 0 <= c.shard_index < c.num_shards,
         f"shard_index must be an integer in [0, num_shards = {c.num_shards}); got "
         f"{c.shard_index!r}")
  _check(isinstance(c.merge_only, bool), f"merge_only must be a bool; got {c.merge_only!r}")
  _check(not (c.merge_only and c.num_shards > 1),
         f"merge_only merges every shard's batches: run it without num_shards/shard_index; got "
         f"num_shards={c.num_shards}")
  if c.effective_attack != "none":
    attacks.attack_method_settings(c.attack_method, eps_255=c.eps_255,
                                   step_size_255=c.step_size_255, adv_steps=c.adv_steps,
                                   random_start=c.random_start)
  if c.effective_attack == "full_gradient":
    chain = c.attack_purify_steps or c.purify_steps
    _check(chain <= c.max_chain_steps,
           f"the full-gradient attack differentiates through attack_purify_steps Langevin steps "
           f"(0 = purify_steps = {c.purify_steps}); it must be <= max_chain_steps = "
           f"{c.max_chain_steps}; got {chain}")


def config_as_dict(config: DefenseEvalConfig) -> Dict[str, Any]:
  """The config's fields as a JSON-ready dict (tuples become lists)."""
  return {k: list(v) if isinstance(v, tuple) else v
          for k, v in dataclasses.asdict(config).items()}


# ------------------------------------------------------------------------------------------
# Models and images.


def load_ebm(ebm_dir: str) -> Tuple[keras.Model, config_lib.TrainConfig, str]:
  """Rebuilds the energy network of an `ebm_tf.train` run and restores its newest checkpoint.

  Args:
    ebm_dir: the run's model_dir (holds config.json and checkpoints/).

  Returns:
    (model, train_config, checkpoint_prefix): a float32 keras.Model mapping images
    [B, H, W, C] in [-1, 1] to energies [B, 1], with (H, W, C) = the run's image shape.

  Raises:
    FileNotFoundError: ebm_dir, its config.json or its checkpoint is missing.
    checkpoints.CheckpointMismatchError: the checkpoint does not hold this network.
  """
  if not os.path.isdir(ebm_dir):
    raise FileNotFoundError(f"ebm_dir {ebm_dir!r} does not exist: pass the --model_dir of an "
                            "ebm_tf.train run")
  model, train_config, path = runs.restore_ebm(ebm_dir)
  logging.info("EBM %s %s restored from %s", train_config.ebm, tuple(model.inputs[0].shape[1:]),
               path)
  return model, train_config, path


def select_images(dataset: str, split: str, num_images: int, *, shuffle: bool = True,
                  shuffle_seed: int = 0, data_dir: Optional[str] = None,
                  image_size: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The evaluation images: the first num_images of a split after a fixed permutation.

  The split is streamed once and only the selected images are kept, so a large split (ImageNet
  validation: 50,000 images, 30 GB as float32 at 224) needs memory for num_images only.

  Args:
    dataset, split, data_dir, image_size: as in `ebm_tf.data.datasets.load_split`.
    num_images: int >= 1, at most the split's size.
    shuffle: permute the split with `np.random.RandomState(shuffle_seed)` (else split order).
    shuffle_seed: int >= 0.

  Returns:
    (images float32 [N, H, W, C] in [-1, 1], labels int64 [N], indices int64 [N]), where
    indices are the positions of the images in the split's `load_split` (= `load_array`) order.

  Raises:
    ValueError: num_images < 1 or larger than the split.
  """
  if not _is_int(num_images) or num_images < 1:
    raise ValueError(f"num_images must be an integer >= 1; got {num_images!r}")
  split_data = datasets.load_split(dataset, split, data_dir=data_dir, image_size=image_size)
  size = int(split_data.cardinality())
  if size < 0:  # Unknown cardinality: count once.
    size = int(split_data.reduce(np.int64(0), lambda n, _: n + 1))
  if num_images > size:
    raise ValueError(f"num_images must be <= the {size} images of dataset {dataset!r} "
                     f"split {split!r}; got {num_images}")
  order = (np.random.RandomState(shuffle_seed).permutation(size) if shuffle
           else np.arange(size))
  indices = order[:num_images].astype(np.int64)
  wanted = tf.constant(np.sort(indices))
  picked = split_data.enumerate().filter(
      lambda position, _: tf.reduce_any(tf.equal(position, wanted)))
  positions, images, labels = [], [], []
  for batch_positions, batch in picked.batch(256).as_numpy_iterator():
    positions.append(batch_positions)
    images.append(batch["image"])
    labels.append(batch["label"])
  positions = np.concatenate(positions)
  rows = np.searchsorted(positions, indices)  # positions are ascending
  images = np.concatenate(images).astype(np.float32)[rows]
  labels = np.concatenate(labels).astype(np.int64)[rows]
  return images, labels, indices


@dataclasses.dataclass
class EvalSetup:
  """Everything `evaluate` needs: the config, the loaded models and the evaluation images."""
  config: DefenseEvalConfig
  classifier: keras.Model
  energy_fn: Optional[Callable[[tf.Tensor], tf.Tensor]]
  images: np.ndarray  # float32 [N, H, W, C] in [-1, 1]
  labels: np.ndarray  # int64 [N]
  indices: np.ndarray  # int64 [N], positions in the split
  models_info: Dict[str, Any]  # names, shapes and checkpoint paths (part of the fingerprint)


def _shape_str(shape) -> str:
  return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def prepare(config: DefenseEvalConfig,
            classifier: Optional[keras.Model] = None,
            energy_fn: Optional[Callable[[tf.Tensor], tf.Tensor]] = None) -> EvalSetup:
  """Loads the models and images of `config` and checks that they fit together.

  A keras.applications classifier (config.classifier 'keras_app:<Name>') is built for the
  evaluation images' shape (config.dataset / image_size, by default the EBM run's) and resizes
  and rescales them itself (`keras_app_classifier.build_classifier`).

  Args:
    config: the evaluation settings.
    classifier, energy_fn: optional already-built models (tests); by default they are loaded
      from config.classifier_dir (`classifier_lib.load_classifier`) or built from
      config.classifier and config.classifier_weights, and from config.ebm_dir.

  Returns:
    An `EvalSetup`; its config has epsilon and mcmc_temp set (unset ones from the EBM run's
    config.json: the training run's Langevin step size and temperature).

  Raises:
    FileNotFoundError: a model directory, its config or checkpoint, or the classifier weights
      file is missing.
    ValueError: the EBM, the classifier and the images do not have the same image shape,
      labels exceed the classifier's classes, or a given energy_fn comes without epsilon and
      mcmc_temp.
  """
  info: Dict[str, Any] = {}
  classifier, ebm_run, (default_dataset, default_size) = _load_classifier(config, classifier,
                                                                          energy_fn, info)
  clf_shape = tuple(int(d) for d in classifier.inputs[0].shape[1:])
  info["classifier"]["image_shape"] = list(clf_shape)
  config, energy_fn = _load_purifier(config, energy_fn, ebm_run, clf_shape, info)
  images, labels, indices = _load_images(config, default_dataset, default_size, clf_shape,
                                         int(classifier.outputs[0].shape[-1]), info)
  return EvalSetup(config=config, classifier=classifier, energy_fn=energy_fn, images=images,
                   labels=labels, indices=indices, models_info=info)


def _load_classifier(config: DefenseEvalConfig, classifier, energy_fn, info):
  """The classifier of `config` (or the given one); records it in info["classifier"].

  Returns:
    (classifier, the EBM run (load_ebm's triple) if it had to be loaded first, else None,
    (the default dataset, the default image_size) of the evaluation images).
  """
  ebm_run = None
  if classifier is None and config.classifier:
    # The keras.applications classifier takes the images at the EBM's resolution: their shape
    # comes from the flags or else from the EBM run.
    keras_app_classifier.check_weights_path(config.classifier_weights)  # before any loading
    if config.defense == "purify" and energy_fn is None:
      ebm_run = load_ebm(config.ebm_dir)
    ebm_config = ebm_run[1] if ebm_run is not None else None
    dataset = config.dataset or (ebm_config.dataset if ebm_config is not None else "")
    image_size = config.image_size
    if image_size is None and ebm_config is not None:
      image_size = ebm_config.image_size
    if not dataset:
      raise ValueError(f"dataset must be given with classifier {config.classifier!r} when no "
                       "EBM run is loaded (it sets the images' shape)")
    name = keras_app_classifier.parse_spec(config.classifier)
    input_size = keras_app_classifier.resolve_input_size(name, config.classifier_input_size)
    classifier = keras_app_classifier.build_classifier(
        name, datasets.image_shape(dataset, image_size), input_size=input_size,
        weights=config.classifier_weights)
    info["classifier"] = keras_app_classifier.describe(name, input_size,
                                                       config.classifier_weights)
    return classifier, ebm_run, (dataset, image_size)
  if classifier is None:
    if not os.path.isdir(config.classifier_dir):
      raise FileNotFoundError(f"classifier_dir {config.classifier_dir!r} does not exist: pass "
                              "the --model_dir of an ebm_tf.train_classifier run")
    classifier, clf_config = classifier_lib.load_classifier(config.classifier_dir,
                                                            config.classifier_which)
    sub = classifier_lib.BEST_DIR if config.classifier_which == "best" else (
        classifier_lib.CHECKPOINT_DIR)
    latest = tf.train.latest_checkpoint(os.path.join(config.classifier_dir, sub))
    info["classifier"] = {"name": clf_config.classifier, "dataset": clf_config.dataset,
                          "image_size": clf_config.image_size,
                          "checkpoint": os.path.realpath(latest) if latest else None}
    return classifier, None, (clf_config.dataset, clf_config.image_size)
  info["classifier"] = {"name": classifier.name, "checkpoint": None}
  return classifier, None, (config.dataset, config.image_size)


def _load_purifier(config: DefenseEvalConfig, energy_fn, ebm_run, clf_shape, info):
  """The purifier's energy (None with defense 'none') and the config with epsilon and
  mcmc_temp resolved (unset: the EBM run's); records the EBM in info["ebm"]."""
  if config.defense == "none":
    return config, None
  if energy_fn is not None:
    info["ebm"] = {"name": "given", "checkpoint": None}
    if config.epsilon is None or config.mcmc_temp is None:
      raise ValueError(f"epsilon and mcmc_temp must be given with a given energy function (no "
                       f"EBM run to take them from); got epsilon {config.epsilon!r}, mcmc_temp "
                       f"{config.mcmc_temp!r}")
    return config, energy_fn
  ebm, ebm_config, ebm_path = ebm_run if ebm_run is not None else load_ebm(config.ebm_dir)
  ebm_shape = tuple(int(d) for d in ebm.inputs[0].shape[1:])
  if ebm_shape != clf_shape:
    raise ValueError(
        f"image shape mismatch: the EBM in {config.ebm_dir!r} takes images "
        f"{_shape_str(ebm_shape)} (dataset {ebm_config.dataset!r}, image_size "
        f"{ebm_config.image_size}) but the classifier "
        f"{config.classifier_dir or config.classifier!r} takes "
        f"{_shape_str(clf_shape)}: both must be trained on the same image shape")
  info["ebm"] = {"name": ebm_config.ebm, "width": ebm_config.ebm_width,
                 "dataset": ebm_config.dataset, "image_shape": list(ebm_shape),
                 "mcmc_init": ebm_config.mcmc_init, "train_epsilon": ebm_config.epsilon,
                 "train_mcmc_steps": ebm_config.mcmc_steps,
                 "rejuvenation_prob": ebm_config.rejuvenation_prob,
                 "train_steps": ebm_config.train_steps,
                 "checkpoint": os.path.realpath(ebm_path)}
  config = dataclasses.replace(
      config, epsilon=float(ebm_config.epsilon if config.epsilon is None else config.epsilon),
      mcmc_temp=float(ebm_config.mcmc_temp if config.mcmc_temp is None else config.mcmc_temp))
  return config, models.energy_fn(ebm)


def _load_images(config: DefenseEvalConfig, default_dataset, default_size, clf_shape,
                 num_classes: int, info):
  """The evaluation images, labels and split indices (`select_images`), checked against the
  classifier's input shape and classes; records them in info["data"]."""
  dataset = config.dataset or default_dataset
  image_size = config.image_size if config.image_size is not None else default_size
  if not dataset:
    raise ValueError("dataset must be given when the classifier is not loaded from a run")
  data_shape = tuple(datasets.image_shape(dataset, image_size))
  if data_shape != clf_shape:
    raise ValueError(f"image shape mismatch: dataset {dataset!r} with image_size {image_size} "
                     f"gives images {_shape_str(data_shape)} but the classifier takes "
                     f"{_shape_str(clf_shape)}")
  images, labels, indices = select_images(
      dataset, config.split, config.num_images, shuffle=config.shuffle,
      shuffle_seed=config.shuffle_seed, data_dir=config.data_dir, image_size=image_size)
  if labels.max() >= num_classes:
    raise ValueError(f"labels of dataset {dataset!r} must be < the classifier's {num_classes} "
                     f"classes; got {labels.max()}")
  info["data"] = {"dataset": dataset, "image_size": image_size, "split": config.split,
                  "image_shape": list(data_shape)}
  return images, labels, indices


# ------------------------------------------------------------------------------------------
# One batch.


def batch_seed(seed: int, batch_index: int) -> tf.Tensor:
  """The stateless seed int32 [2] of batch `batch_index` under attack seed `seed`: [seed, i]."""
  return tf.constant([seed, batch_index], tf.int32)


def _natural_only(setup: EvalSetup, images, labels, seed) -> attacks.AttackResult:
  """attack 'none': the defense (or the bare classifier) on the clean images only."""
  c = setup.config
  if setup.energy_fn is None:
    logits = purify_lib.classify(setup.classifier, tf.constant(images)).numpy()
  else:
    logits_fn = purify_lib.make_eot_logits(setup.classifier, setup.energy_fn, images.shape[1:])
    chunk = c.verify_batch_size or len(labels)
    logits = np.concatenate([
        logits_fn(tf.constant(images[start:start + chunk]),
                  tf.random.experimental.stateless_fold_in(seed, k), c.purify_steps,
                  c.epsilon, c.mcmc_temp, c.eot_defense_reps).numpy()
        for k, start in enumerate(range(0, len(labels), chunk))])
  correct = np.argmax(logits, axis=-1) == labels
  return attacks.AttackResult(
      accuracy_curve=np.asarray([np.mean(correct)]), natural_correct=correct,
      robust_correct=correct.copy(), broken=np.zeros_like(correct),
      broken_at=np.full(labels.shape, -1, np.int64), adversarial_images=images.copy(),
      eps=0.0, step_size=0.0, trajectory=None)


def attack_batch(setup: EvalSetup, images: np.ndarray, labels: np.ndarray,
                 seed) -> attacks.AttackResult:
  """Runs the configured attack on one batch.

  Args:
    setup: from `prepare`.
    images: float32 [B, H, W, C] in [-1, 1].
    labels: int64 [B].
    seed: int32 [2] stateless seed (see `batch_seed`).

  Returns:
    An `ebm_tf.defense.attacks.AttackResult` (curve of length adv_steps + 2; 1 for attack 'none').
  """
  c = setup.config
  kind = c.effective_attack
  if kind == "none":
    return _natural_only(setup, images, labels, seed)
  common = dict(eps_255=c.eps_255, step_size_255=c.step_size_255, adv_steps=c.adv_steps,
                random_start=c.random_start, attack_method=c.attack_method,
                log_every=c.log_every)
  if kind == "pgd":
    return attacks.undefended_pgd(setup.classifier, images, labels, seed, **common)
  defense = dict(purify_steps=c.purify_steps, purify_step_size=c.epsilon,
                 purify_temperature=c.mcmc_temp, eot_attack_reps=c.eot_attack_reps,
                 eot_defense_reps=c.eot_defense_reps,
                 verify_batch_size=c.verify_batch_size or None)
  if kind == "bpda_eot":
    return attacks.bpda_eot_pgd(setup.classifier, setup.energy_fn, images, labels, seed,
                                **common, **defense)
  if kind == "exact_gradient":
    return attacks.exact_gradient_eot_pgd(setup.classifier, setup.energy_fn, images, labels,
                                          seed, **common, **defense,
                                          segment_length=effective_segment_length(c))
  return attacks.full_gradient_eot_pgd(
      setup.classifier, setup.energy_fn, images, labels, seed, **common, **defense,
      attack_purify_steps=c.attack_purify_steps or None, max_chain_steps=c.max_chain_steps)


def effective_segment_length(config: DefenseEvalConfig) -> Optional[int]:
  """The exact-gradient attack's segment length k (config.segment_length, 0 = round(sqrt L));
  None for other attacks."""
  if config.effective_attack != "exact_gradient":
    return None
  return config.segment_length or exact_gradient.default_segment_length(config.purify_steps)


# ------------------------------------------------------------------------------------------
# Records, summaries and files.


def fingerprint(setup: EvalSetup) -> Dict[str, Any]:
  """The settings a batch's result depends on (compared on resume).

  Every config field but `_NOT_IN_FINGERPRINT`, and the models; attack_method only when it is
  not 'pgd' (batches from before it existed were computed with 'pgd'); epsilon and mcmc_temp
  under their former names (`_FINGERPRINT_LEGACY_NAMES`). The exact-gradient
  attack records its effective segment length (which changes float rounding of the gradient).
  """
  settings = {k: v for k, v in config_as_dict(setup.config).items()
              if k not in _NOT_IN_FINGERPRINT and _FINGERPRINT_ONLY_IF_NOT.get(k, object()) != v}
  for name, (legacy, former_default) in _FINGERPRINT_LEGACY_NAMES.items():
    if name in settings:
      value = settings.pop(name)
      settings[legacy] = former_default if value is None else value
  if effective_segment_length(setup.config) is not None:
    settings["segment_length"] = effective_segment_length(setup.config)
  settings["models"] = setup.models_info
  return json.loads(json.dumps(settings))  # normalised as it reads back from JSON


def batch_path(output_dir: str, seed: int, batch_index: int) -> str:
  """`<output_dir>/batches/seed<seed>_batch<batch_index>.json`."""
  return os.path.join(output_dir, BATCH_DIR, f"seed{seed}_batch{batch_index}.json")


def batch_record(seed: int, batch_index: int, indices, labels, result: attacks.AttackResult,
                 seconds: float, settings: Mapping[str, Any]) -> Dict[str, Any]:
  """The JSON record of one finished batch (per-image results; see the module docstring)."""
  return {
      "format": FORMAT_VERSION, "seed": int(seed), "batch": int(batch_index),
      "indices": [int(i) for i in indices], "labels": [int(l) for l in labels],
      "natural_correct": [bool(v) for v in result.natural_correct],
      "robust_correct": [bool(v) for v in result.robust_correct],
      "broken_at": [int(v) for v in result.broken_at],
      "accuracy_curve": [float(v) for v in result.accuracy_curve],
      "seconds": float(seconds), "settings": dict(settings),
  }


def curve_from_records(records: Sequence[Mapping[str, Any]], adv_steps: int,
                       attacked: bool = True) -> np.ndarray:
  """The accuracy curve over all images of `records`, from the per-image break indices.

  Args:
    records: batch records (`batch_record`).
    adv_steps: PGD steps of the attack.
    attacked: False for attack 'none' (the curve is [natural accuracy]).

  Returns:
    float64 [adv_steps + 2] (or [1]): [0] = mean natural_correct; [t + 1] = the fraction of
    images naturally correct and not broken at any evaluation <= t.
  """
  natural = np.concatenate([np.asarray(r["natural_correct"], bool) for r in records])
  if not attacked:
    return np.asarray([natural.mean()])
  broken_at = np.concatenate([np.asarray(r["broken_at"], np.int64) for r in records])
  steps = np.arange(adv_steps + 1)
  alive = natural[None, :] & ((broken_at[None, :] < 0) | (broken_at[None, :] > steps[:, None]))
  return np.concatenate([[natural.mean()], alive.mean(axis=1)])


def _accuracy(mask) -> Dict[str, Any]:
  value, low, high = attacks.accuracy_with_ci(np.asarray(mask, bool))
  return {"value": value, "ci95": [low, high], "correct": int(np.sum(mask)),
          "num_images": int(np.size(mask))}


def summarize_seed(records: Sequence[Mapping[str, Any]], config: DefenseEvalConfig,
                   seed: int) -> Dict[str, Any]:
  """Natural and robust accuracy (95% Wilson CIs), curve and compute time of one attack seed.

  Args:
    records: the seed's batch records, in batch order.
    config: the evaluation config.
    seed: the attack seed.

  Returns:
    A JSON-ready dict (keys: seed, num_images, natural_accuracy, robust_accuracy,
    accuracy_curve, compute_seconds, ...).
  """
  natural = np.concatenate([np.asarray(r["natural_correct"], bool) for r in records])
  robust = np.concatenate([np.asarray(r["robust_correct"], bool) for r in records])
  curve = curve_from_records(records, config.adv_steps, config.effective_attack != "none")
  return {
      "seed": int(seed), "num_images": int(natural.size), "num_batches": len(records),
      "natural_accuracy": _accuracy(natural), "robust_accuracy": _accuracy(robust),
      "accuracy_curve": [float(v) for v in curve],
      "curve_index": "0 = natural accuracy; t + 1 = after attack evaluation t (t = 0: the "
                     "start point, random or the clean images; t = n: after n steps)",
      "compute_seconds": float(sum(r["seconds"] for r in records)),
      "robust_correct": [bool(v) for v in robust],
      "indices": [int(i) for r in records for i in r["indices"]],
  }


def summarize_seeds(seed_summaries: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
  """The worst case over attack seeds.

  Returns:
    {"worst_case_robust_accuracy": {value, ci95, seed, ...} (the minimum robust accuracy over
     seeds), "per_image_worst_case_robust_accuracy": {value, ci95, ...} (images robust under
     every seed), "mean_natural_accuracy", "mean_robust_accuracy"}.

  Raises:
    ValueError: no seeds, or seeds evaluated on different images.
  """
  if not seed_summaries:
    raise ValueError("need at least one seed summary")
  indices = seed_summaries[0]["indices"]
  if any(s["indices"] != indices for s in seed_summaries):
    raise ValueError("every seed must be evaluated on the same images to take a worst case")
  worst = min(seed_summaries, key=lambda s: (s["robust_accuracy"]["value"], s["seed"]))
  all_seeds = np.logical_and.reduce([np.asarray(s["robust_correct"], bool)
                                     for s in seed_summaries])
  return {
      "worst_case_robust_accuracy": dict(worst["robust_accuracy"], seed=worst["seed"]),
      "per_image_worst_case_robust_accuracy": _accuracy(all_seeds),
      "mean_natural_accuracy": float(np.mean([s["natural_accuracy"]["value"]
                                              for s in seed_summaries])),
      "mean_robust_accuracy": float(np.mean([s["robust_accuracy"]["value"]
                                             for s in seed_summaries])),
  }


def plot_accuracy_curves(curves: Mapping[str, Sequence[float]], path: str, *,
                         title: str = "") -> str:
  """Plots accuracy against PGD step as a PNG (matplotlib, Agg backend).

  Args:
    curves: label -> curve ([natural, eval 0, ..., eval n]: n + 2 values in [0, 1]; a
      1-entry curve, attack 'none', is drawn as a single point).
    path: the .png to write (folders are created).
    title: the figure title.

  Returns:
    path.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  figure, axes = plt.subplots(figsize=(6.4, 4.0))
  longest = 1
  for label, curve in curves.items():
    curve = np.asarray(curve, np.float64)
    longest = max(longest, len(curve))
    x = np.arange(len(curve)) - 1  # -1: clean images, 0: start point, n: after n steps
    axes.plot(x, curve, marker="o" if len(curve) < 25 else None, markersize=3, label=label)
  ticks = [t for t in axes.get_xticks() if -1 <= t <= longest - 2 and t == int(t)]
  axes.set_xticks([-1] + [t for t in ticks if t >= 0])
  axes.set_xticklabels(["clean"] + [str(int(t)) for t in ticks if t >= 0])
  axes.set_xlabel("attack step (0 = start point)")
  axes.set_ylabel("accuracy (images not yet broken)")
  axes.set_ylim(-0.02, 1.02)
  axes.grid(alpha=0.3)
  axes.legend(fontsize=8)
  if title:
    axes.set_title(title, fontsize=9)
  figure.tight_layout()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  figure.savefig(path, dpi=110)
  plt.close(figure)
  return path


def _plan(setup: EvalSetup) -> List[Tuple[int, int, slice]]:
  """(seed, batch_index, image slice) of every unit of work, seed-major."""
  n, b = len(setup.labels), setup.config.batch_size
  return [(seed, i, slice(start, min(start + b, n)))
          for seed in setup.config.seeds for i, start in enumerate(range(0, n, b))]


def shard_plan(plan: Sequence[Any], num_shards: int, shard_index: int) -> List[Any]:
  """The units of shard `shard_index` of `num_shards`: plan[k], plan[k + n], plan[k + 2n], ...

  Round-robin over the seed-major (seed, batch) plan, so every shard gets batches of every
  seed and the shards' sizes differ by at most one. The shards of one plan are disjoint and
  together cover it.
  """
  return list(plan[shard_index::num_shards])


def _dict_diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> List[str]:
  keys = sorted(set(a) | set(b))
  diff = []
  for k in keys:
    if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
      diff += _dict_diff(a[k], b[k], f"{prefix}{k}.")
    elif a.get(k) != b.get(k):
      diff.append(f"{prefix}{k}: {a.get(k)!r} -> {b.get(k)!r}")
  return diff


def load_finished_batches(setup: EvalSetup) -> Dict[Tuple[int, int], Dict[str, Any]]:
  """The batch records already in output_dir that this evaluation can reuse.

  A record is reused when it holds the same images (indices) as the planned batch; one with
  other images (e.g. a last batch that grew with num_images) is recomputed.

  Raises:
    ValueError: a record was computed with other settings (the message lists them); start a
      new output_dir (or delete its batches/) rather than mix results.
  """
  settings = fingerprint(setup)
  finished = {}
  for seed, i, part in _plan(setup):
    path = batch_path(setup.config.output_dir, seed, i)
    if not os.path.exists(path):
      continue
    with open(path) as f:
      record = json.load(f)
    if record.get("settings") != settings:
      changes = _dict_diff(record.get("settings", {}), settings)
      raise ValueError(f"{path} was computed with other settings ({'; '.join(changes[:5])}): "
                       f"use a new --output_dir, or delete "
                       f"{os.path.join(setup.config.output_dir, BATCH_DIR)} to recompute")
    if record["indices"] != [int(k) for k in setup.indices[part]]:
      logging.info("batch %d of seed %d in %s holds other images: recomputing it", i, seed,
                   path)
      continue
    finished[(seed, i)] = record
  return finished


def evaluate(setup: EvalSetup) -> Dict[str, Any]:
  """Runs (or resumes) the evaluation of `setup` and writes its output directory.

  Every (seed, batch) whose record already exists with the same settings is reused; the
  others are computed and written as soon as each finishes. Logs a progress line with an ETA
  after every batch. With config.num_shards > 1 only the shard's units (`shard_plan`) are
  computed and no summary is written (module docstring).

  Returns:
    Unsharded: the summary (also written to <output_dir>/summary.json): per-seed results, the
    worst case over seeds, settings, number of images, compute time. Sharded: a shard report
    {shard_index, num_shards, batches_of_this_shard, batches_computed_this_run,
    batches_reused, batches_in_plan, batches_missing (all shards), this_run_seconds}.

  Raises:
    ValueError: records in output_dir from other settings (see `load_finished_batches`), or
      merge_only with batches missing (the message names them).
  """
  c = setup.config
  start_time = time.perf_counter()
  os.makedirs(os.path.join(c.output_dir, BATCH_DIR), exist_ok=True)
  finished = load_finished_batches(setup)
  plan = _plan(setup)
  mine = shard_plan(plan, c.num_shards, c.shard_index) if c.num_shards > 1 else plan
  todo = [unit for unit in mine if unit[:2] not in finished]
  _log_plan(setup, plan, mine, todo, finished)
  _run_batches(setup, todo, finished, len(mine))
  if c.num_shards > 1:
    return _shard_report(setup, plan, mine, todo, start_time)
  return _write_summary(setup, plan, finished, todo, start_time)


def _log_plan(setup: EvalSetup, plan, mine, todo, finished) -> None:
  """Fails merge_only with batches missing; logs what this run computes and reuses."""
  c = setup.config
  if c.merge_only and todo:
    missing = ", ".join(f"seed {s} batch {i}" for s, i, _ in todo[:5])
    raise ValueError(f"merge_only: {len(todo)} of the {len(plan)} batches are not in "
                     f"{os.path.join(c.output_dir, BATCH_DIR)} ({missing}"
                     f"{', ...' if len(todo) > 5 else ''}): run the missing shards first")
  if len(c.seeds) < 2:
    logging.warning("one attack seed: the worst case over seeds needs at least two "
                    "(--seeds=0,1)")
  if c.num_shards > 1:
    logging.info("shard %d of %d: %d of the plan's %d batches", c.shard_index, c.num_shards,
                 len(mine), len(plan))
  reused = [unit[:2] for unit in mine if unit[:2] in finished]
  logging.info("%d images in %d batch(es) x %d seed(s): %d batch(es) to run, %d reused from %s",
               len(setup.labels), len(plan) // len(c.seeds), len(c.seeds), len(todo),
               len(reused), os.path.join(c.output_dir, BATCH_DIR))
  for seed, i in sorted(reused):
    logging.info("reusing batch %d of seed %d (%s)", i, seed, batch_path(c.output_dir, seed, i))


def _run_batches(setup: EvalSetup, todo, finished, num_mine: int) -> None:
  """Attacks the (seed, batch) units `todo`, writing each record as it finishes (into
  `finished` too) and logging a progress line with an ETA."""
  c = setup.config
  settings = fingerprint(setup)
  run_seconds = []
  for seed, i, part in todo:
    images, labels = setup.images[part], setup.labels[part]
    logging.info("seed %d batch %d: %d images, attack %s (%s)", seed, i, len(labels),
                 c.effective_attack, c.attack_method)
    began = time.perf_counter()
    result = attack_batch(setup, images, labels, batch_seed(seed, i))
    seconds = time.perf_counter() - began
    record = batch_record(seed, i, setup.indices[part], labels, result, seconds, settings)
    file_io.write_json_atomic(batch_path(c.output_dir, seed, i), record)
    finished[(seed, i)] = record
    run_seconds.append(seconds)
    left = len(todo) - len(run_seconds)
    eta = summaries.format_duration(np.mean(run_seconds) * left)
    logging.info("seed %d batch %d done in %s: natural %.3f robust %.3f | %d/%d batches | "
                 "ETA %s", seed, i, summaries.format_duration(seconds),
                 result.natural_accuracy, result.robust_accuracy,
                 num_mine - left, num_mine, eta)


def _shard_report(setup: EvalSetup, plan, mine, todo, start_time: float) -> Dict[str, Any]:
  """The report of a sharded run (`evaluate`), after re-reading every shard's records."""
  c = setup.config
  # Re-read every record: a sibling shard run with other settings fails here too.
  finished = load_finished_batches(setup)
  missing = [unit[:2] for unit in plan if unit[:2] not in finished]
  logging.info("shard %d of %d done; %d of the %d batches still missing in %s%s",
               c.shard_index, c.num_shards, len(missing), len(plan),
               os.path.join(c.output_dir, BATCH_DIR),
               "" if missing else ": merge with the same command without "
               "--num_shards/--shard_index")
  return {"shard_index": c.shard_index, "num_shards": c.num_shards,
          "batches_of_this_shard": len(mine), "batches_computed_this_run": len(todo),
          "batches_reused": len(mine) - len(todo), "batches_in_plan": len(plan),
          "batches_missing": len(missing),
          "this_run_seconds": float(time.perf_counter() - start_time)}


def _write_summary(setup: EvalSetup, plan, finished, todo, start_time: float) -> Dict[str, Any]:
  """Writes the per-seed files, summary.json and the curves of an unsharded run; returns the
  summary (`evaluate`)."""
  c = setup.config
  seed_summaries = []
  for seed in c.seeds:
    records = [finished[(s, i)] for s, i, _ in plan if s == seed]
    summary = summarize_seed(records, c, seed)
    seed_summaries.append(summary)
    file_io.write_json_atomic(os.path.join(c.output_dir, f"seed{seed}.json"),
               dict(summary, settings=config_as_dict(c), models=setup.models_info))
    plot_accuracy_curves({f"seed {seed}": summary["accuracy_curve"]},
                         os.path.join(c.output_dir, f"seed{seed}.png"),
                         title=_title(setup, summary))
  overall = summarize_seeds(seed_summaries)
  out = {
      "num_images": int(len(setup.labels)), "seeds": list(c.seeds),
      "defense": c.defense, "attack": c.effective_attack,
      "attack_method": c.attack_method if c.effective_attack != "none" else None,
      **({"segment_length": effective_segment_length(c)}
         if c.effective_attack == "exact_gradient" else {}),
      **overall,
      "per_seed": [{k: s[k] for k in ("seed", "natural_accuracy", "robust_accuracy",
                                       "accuracy_curve", "compute_seconds")}
                   for s in seed_summaries],
      "compute_seconds": float(sum(s["compute_seconds"] for s in seed_summaries)),
      "this_run_seconds": float(time.perf_counter() - start_time),
      "batches_computed_this_run": len(todo), "batches_reused": len(plan) - len(todo),
      "settings": config_as_dict(c), "models": setup.models_info,
      "eps_pixels": attacks.to_pixel_units(c.eps_255),
      "step_size_pixels": attacks.to_pixel_units(c.step_size_255),
      "device": _device_description(),
  }
  file_io.write_json_atomic(os.path.join(c.output_dir, SUMMARY_FILENAME), out)
  plot_accuracy_curves({f"seed {s['seed']}": s["accuracy_curve"] for s in seed_summaries},
                       os.path.join(c.output_dir, CURVE_FILENAME),
                       title=_title(setup, seed_summaries[0]))
  return out


def _title(setup: EvalSetup, summary: Mapping[str, Any]) -> str:
  c = setup.config
  defense = ("no defense" if c.defense == "none" else
             f"purify K={c.purify_steps} eps={c.epsilon:g} T={c.mcmc_temp:g}")
  attack = c.effective_attack if c.attack_method == "pgd" else (
      f"{c.effective_attack} {c.attack_method}")
  return (f"{defense}; {attack} eps={c.eps_255:g}/255 step={c.step_size_255:g}/255"
          f"\n{summary['num_images']} images")


def _device_description() -> str:
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    return f"{len(gpus)} GPU(s)"
  return f"CPU ({os.cpu_count()} cores visible)"


def format_shard_report(report: Mapping[str, Any]) -> str:
  """One human-readable line of a sharded `evaluate`'s report."""
  then = ("every batch is in: merge with the same command without --num_shards/--shard_index"
          if not report["batches_missing"] else
          f"{report['batches_missing']} of {report['batches_in_plan']} batches still missing "
          f"(other shards)")
  return (f"shard {report['shard_index']} of {report['num_shards']}: "
          f"{report['batches_of_this_shard']} batches ({report['batches_computed_this_run']} "
          f"computed, {report['batches_reused']} reused); {then}")


def format_summary(summary: Mapping[str, Any]) -> str:
  """A few human-readable lines of an `evaluate` summary."""
  def acc(a):
    return f"{a['value']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]"
  method = f", method {summary['attack_method']}" if summary.get("attack_method") else ""
  lines = [f"defense {summary['defense']}, attack {summary['attack']}{method}, "
           f"{summary['num_images']} images, seeds {summary['seeds']}"]
  for s in summary["per_seed"]:
    seconds = summaries.format_duration(s["compute_seconds"])
    lines.append(f"  seed {s['seed']}: natural {acc(s['natural_accuracy'])}  robust "
                 f"{acc(s['robust_accuracy'])}  ({seconds})")
  worst = summary["worst_case_robust_accuracy"]
  lines.append(f"  worst case over seeds (min robust): {acc(worst)} (seed {worst['seed']})")
  lines.append(f"  robust under every seed (per image): "
               f"{acc(summary['per_image_worst_case_robust_accuracy'])}")
  lines.append(f"  compute {summaries.format_duration(summary['compute_seconds'])} "
               f"(this run {summaries.format_duration(summary['this_run_seconds'])})")
  return "\n".join(lines)
