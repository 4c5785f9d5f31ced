"""Rebuilds a training run's EBM from its `--model_dir` (config.json + checkpoints/)."""

import os
from typing import Optional, Tuple

import keras
import tensorflow as tf

from ebm_tf import config as config_lib
from ebm_tf import data
from ebm_tf import models
from export import classifier_run

CHECKPOINT_SUBDIR = "checkpoints"
CHECKPOINT_KEY = "ebm"


def restore_ebm(model_dir: str, checkpoint_path: Optional[str] = None
                ) -> Tuple[keras.Model, config_lib.TrainConfig, str]:
  """Builds the run's EBM (float32) and restores only its weights from a training checkpoint.

  Args:
    model_dir: the training run's `--model_dir` (holds config.json and checkpoints/).
    checkpoint_path: a checkpoint prefix; None for the newest one in `<model_dir>/checkpoints`.

  Returns:
    (EBM mapping images [B, H, W, C] float32 in [-1, 1] to energies [B, 1], the run's
     TrainConfig, the restored checkpoint prefix).

  Raises:
    FileNotFoundError: no config.json or no checkpoint.
    ValueError: the checkpoint does not hold a matching "ebm".
  """
  train_config = config_lib.load_config(model_dir)
  if checkpoint_path is None:
    checkpoint_path = tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_SUBDIR))
    if checkpoint_path is None:
      raise FileNotFoundError(f"no checkpoint in {os.path.join(model_dir, CHECKPOINT_SUBDIR)}: "
                              "has the run saved one yet?")
  shape = data.image_shape(train_config.dataset, train_config.image_size)
  # float32 even if the run trained with mixed precision: serving computes Langevin gradients
  # in float32 (Keras keeps float32 master weights under mixed policies).
  model = models.build_ebm(train_config.ebm, shape, dtype="float32")
  classifier_run.restore_keras_model(model, CHECKPOINT_KEY, checkpoint_path)
  return model, train_config, checkpoint_path
