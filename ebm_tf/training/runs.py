"""Rebuilding a training run's networks from its `--model_dir` (config.json + checkpoints/).

The one place that turns a `TrainConfig` into networks: the trainer, the longrun prior, the
defense evaluation and the exporter all build through here, so architecture settings (such as
`ebm_width`) are honoured everywhere.
"""

from typing import Optional, Tuple

import keras

from ebm_tf.data import datasets
from ebm_tf import models
from ebm_tf.training import checkpoints
from ebm_tf.training import config as config_lib


def build_ebm(config: config_lib.TrainConfig, dtype: Optional[str] = None) -> keras.Model:
  """The run's (untrained) EBM: images [B, H, W, C] float32 in [-1, 1] -> energies [B, 1].

  Args:
    config: the run's TrainConfig (`ebm`, `ebm_width`, `dataset`, `image_size`).
    dtype: Keras dtype policy of the layers, e.g. 'mixed_bfloat16'; None for the default.
  """
  width = {"width": config.ebm_width} if config.ebm_width else {}
  return models.build_ebm(config.ebm, datasets.image_shape(config.dataset, config.image_size),
                          dtype=dtype, **width)


def build_generator(config: config_lib.TrainConfig,
                    dtype: Optional[str] = None) -> keras.Model:
  """The run's (untrained) generator: latents [B, latent_dim] -> images [B, H, W, C] in [-1, 1]."""
  width = {"width": config.gen_width} if config.gen_width else {}
  return models.build_generator(config.generator,
                                datasets.image_shape(config.dataset, config.image_size),
                                latent_dim=config.latent_dim, dtype=dtype, **width)


def restore_ebm(model_dir: str, checkpoint_path: Optional[str] = None, dtype: str = "float32"
                ) -> Tuple[keras.Model, config_lib.TrainConfig, str]:
  """Builds a run's EBM and restores only its weights from a training checkpoint.

  Args:
    model_dir: the training run's `--model_dir` (holds config.json and checkpoints/).
    checkpoint_path: a checkpoint prefix; None for the newest one in `<model_dir>/checkpoints`.
    dtype: layer dtype policy; float32 by default, also for a run trained in mixed precision
      (Keras keeps float32 master weights), so that Langevin gradients are float32.

  Returns:
    (the EBM, the run's TrainConfig, the restored checkpoint prefix).

  Raises:
    FileNotFoundError: no config.json or no checkpoint.
    checkpoints.CheckpointMismatchError: the checkpoint does not hold a matching "ebm".
  """
  config = config_lib.load_config(model_dir)
  model = build_ebm(config, dtype=dtype)
  path = checkpoints.restore_from_run(checkpoint_path or model_dir, ebm=model)
  return model, config, path
