"""The layout of a classifier training run, as the exporter reads it.

A classifier run directory (`--classifier_dir`) holds

    classifier_config.json   {"classifier": "small_cnn", "dataset": "digits", "image_size": null,
                              "num_classes": 10, ...any other keys the trainer records}
    checkpoints/             a tf.train.Checkpoint with the network under the key "classifier"
                             (written e.g. by `ebm_tf.checkpoints.Checkpointer(dir, classifier=m)`)

The classifier trainer should write the config with `save_classifier_config` so both sides agree.
"""

import dataclasses
import json
import os
from typing import Any, Dict, Optional, Tuple

import keras
import tensorflow as tf

from ebm_tf import data
from ebm_tf import models

CONFIG_FILENAME = "classifier_config.json"
CHECKPOINT_SUBDIR = "checkpoints"
CHECKPOINT_KEY = "classifier"


@dataclasses.dataclass(frozen=True)
class ClassifierRunConfig:
  """What the exporter needs to rebuild a trained classifier.

  Attributes:
    classifier: a name from `ebm_tf.models.CLASSIFIER_NAMES`.
    dataset: a dataset name of `ebm_tf.data` (fixes the image shape with `image_size`).
    image_size: None for the dataset's default size, else the side of the square images.
    num_classes: number of logits, >= 1.
    extra: any other keys of the config file (kept, not interpreted).
  """
  classifier: str
  dataset: str
  image_size: Optional[int]
  num_classes: int
  extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.classifier not in models.CLASSIFIER_NAMES:
      raise ValueError(f"classifier must be one of {models.CLASSIFIER_NAMES}; got "
                       f"{self.classifier!r}")
    if (isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int)
        or self.num_classes < 1):
      raise ValueError(f"num_classes must be an int >= 1; got {self.num_classes!r}")
    data.image_shape(self.dataset, self.image_size)  # Validates dataset and image_size.

  @property
  def image_shape(self) -> Tuple[int, int, int]:
    """(H, W, C) of the classifier's input images."""
    return data.image_shape(self.dataset, self.image_size)


def save_classifier_config(config: ClassifierRunConfig, classifier_dir: str) -> str:
  """Writes `<classifier_dir>/classifier_config.json` atomically and returns its path."""
  os.makedirs(classifier_dir, exist_ok=True)
  values = {"classifier": config.classifier, "dataset": config.dataset,
            "image_size": config.image_size, "num_classes": config.num_classes}
  values.update({k: v for k, v in config.extra.items() if k not in values})
  path = os.path.join(classifier_dir, CONFIG_FILENAME)
  temp = f"{path}.tmp-{os.getpid()}"
  with open(temp, "w") as f:
    json.dump(values, f, indent=2, sort_keys=True)
  os.replace(temp, path)
  return path


def load_classifier_config(classifier_dir: str) -> ClassifierRunConfig:
  """Reads `<classifier_dir>/classifier_config.json`.

  Raises:
    FileNotFoundError: no config file in `classifier_dir`.
    ValueError: a required key is missing or has a bad value.
  """
  path = os.path.join(classifier_dir, CONFIG_FILENAME)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no {CONFIG_FILENAME} in {classifier_dir!r}: is it the output "
                            "directory of a classifier training run?")
  with open(path) as f:
    values = json.load(f)
  required = ("classifier", "dataset", "num_classes")
  missing = [k for k in required if k not in values]
  if missing:
    raise ValueError(f"{path} lacks required keys {missing}; it must hold at least "
                     f"{list(required) + ['image_size']}")
  extra = {k: v for k, v in values.items()
           if k not in ("classifier", "dataset", "image_size", "num_classes")}
  return ClassifierRunConfig(classifier=values["classifier"], dataset=values["dataset"],
                             image_size=values.get("image_size"),
                             num_classes=values["num_classes"], extra=extra)


def restore_classifier(classifier_dir: str, checkpoint_path: Optional[str] = None
                       ) -> Tuple[keras.Model, ClassifierRunConfig, str]:
  """Builds the run's classifier and restores its weights.

  Args:
    classifier_dir: the classifier run directory (layout in the module docstring).
    checkpoint_path: a checkpoint prefix; None for the latest one under `checkpoints/`.

  Returns:
    (model mapping images [B, H, W, C] float32 in [-1, 1] to logits [B, num_classes],
     the run config, the restored checkpoint prefix).

  Raises:
    FileNotFoundError: no config or no checkpoint.
    ValueError: the checkpoint does not hold a matching "classifier".
  """
  config = load_classifier_config(classifier_dir)
  if checkpoint_path is None:
    checkpoint_path = tf.train.latest_checkpoint(os.path.join(classifier_dir, CHECKPOINT_SUBDIR))
    if checkpoint_path is None:
      raise FileNotFoundError(f"no checkpoint in {os.path.join(classifier_dir, CHECKPOINT_SUBDIR)}")
  model = models.build_classifier(config.classifier, config.image_shape, config.num_classes)
  restore_keras_model(model, CHECKPOINT_KEY, checkpoint_path)
  return model, config, checkpoint_path


def restore_keras_model(model: keras.Model, key: str, checkpoint_path: str) -> None:
  """Restores `model` from the entry `key` of the tf.train.Checkpoint at `checkpoint_path`.

  Every variable of `model` must be found in the checkpoint's object graph under `key` (other
  entries, such as optimizer slots, are ignored).

  Raises:
    ValueError: the checkpoint has no `key` or its values do not fit `model`.
  """
  status = tf.train.Checkpoint(**{key: model}).restore(checkpoint_path)
  try:
    status.assert_existing_objects_matched()
  except AssertionError as error:
    raise ValueError(f"checkpoint {checkpoint_path} does not hold a {model.name!r} under the "
                     f"key {key!r}: {error}") from None
  status.expect_partial()
