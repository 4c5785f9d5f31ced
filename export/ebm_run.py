"""Rebuilds a training run's EBM from its `--model_dir` (config.json + checkpoints/)."""

from typing import Optional, Tuple

import keras

from ebm_tf import checkpoints
from ebm_tf import config as config_lib
from ebm_tf import data
from ebm_tf import models

CHECKPOINT_SUBDIR = "checkpoints"


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
    checkpoints.CheckpointMismatchError: the checkpoint does not hold a matching "ebm".
  """
  train_config = config_lib.load_config(model_dir)
  shape = data.image_shape(train_config.dataset, train_config.image_size)
  # float32 even if the run trained with mixed precision: serving computes Langevin gradients
  # in float32 (Keras keeps float32 master weights under mixed policies).
  model = models.build_ebm(train_config.ebm, shape, dtype="float32")
  path = checkpoints.restore_from_run(checkpoint_path or model_dir, ebm=model)
  return model, train_config, path
