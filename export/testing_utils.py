"""Test helpers for export/: tiny training-run directories and tiny exports (8x8x1 digits).

Not used by the library itself. The run directories have the layouts the training binaries
write: an EBM run (ebm_tf.training.config: config.json + checkpoints/ with key "ebm") and a classifier
run (ebm_tf.classifier.classifier_lib: classifier_config.json + best/ and checkpoints/ with key
"classifier").
"""

import atexit
import functools
import os
import shutil
import tempfile
from typing import Optional, Tuple

import keras
import numpy as np

from ebm_tf.classifier import classifier_config
from ebm_tf.classifier import classifier_lib
from ebm_tf import models
from ebm_tf.training import checkpoints
from ebm_tf.training import config as config_lib
from export import purifier_module
from export import saved_model_export

IMAGE_SHAPE = (8, 8, 1)
NUM_CLASSES = 10


def make_ebm_run(model_dir: str, seed: int = 0) -> keras.Model:
  """Writes a tiny `ebm_small` digits run (config.json + a checkpoint); returns the EBM."""
  keras.utils.set_random_seed(seed)
  config = config_lib.TrainConfig(dataset="digits", ebm="ebm_small", model_dir=model_dir)
  config_lib.save_config(config, model_dir)
  model = models.build_ebm("ebm_small", IMAGE_SHAPE)
  checkpoints.Checkpointer(os.path.join(model_dir, "checkpoints"), ebm=model).save(1)
  return model


def make_classifier_run(classifier_dir: str, seed: int = 1) -> keras.Model:
  """Writes a tiny `small_cnn` digits classifier run (config, best/, checkpoints/).

  Returns the classifier.
  """
  keras.utils.set_random_seed(seed)
  classifier_config.save_config(classifier_config.ClassifierConfig(
      dataset="digits", classifier="small_cnn", model_dir=classifier_dir), classifier_dir)
  model = _small_classifier()
  for subdir in (classifier_lib.BEST_DIR, classifier_lib.CHECKPOINT_DIR):
    checkpoints.Checkpointer(os.path.join(classifier_dir, subdir), classifier=model).save(1)
  return model


def _small_classifier() -> keras.Model:
  # The registry's default small_cnn, so `restore_classifier` rebuilds the same architecture.
  return models.build_classifier("small_cnn", IMAGE_SHAPE, NUM_CLASSES)


def tiny_config(**overrides) -> purifier_module.PurifierConfig:
  """A PurifierConfig for 8x8x1 images with small limits (fast tests)."""
  values = dict(image_shape=IMAGE_SHAPE, step_size=0.01, temperature=1e-2, default_num_steps=3,
                max_num_steps=20, max_batch_size=8, default_num_repeats=1, max_num_repeats=4)
  values.update(overrides)
  return purifier_module.PurifierConfig(**values)


def tiny_module(with_classifier: bool = True, seed: int = 0,
                **config_overrides) -> purifier_module.PurifierModule:
  """A PurifierModule over freshly initialised tiny networks."""
  keras.utils.set_random_seed(seed)
  ebm = models.build_ebm("ebm_small", IMAGE_SHAPE)
  classifier = _small_classifier() if with_classifier else None
  return purifier_module.PurifierModule(ebm, tiny_config(**config_overrides), classifier)


def tiny_export(export_base: str, model_name: str = "purifier", with_classifier: bool = True,
                **config_overrides) -> Tuple[purifier_module.PurifierModule,
                                             saved_model_export.ExportResult]:
  """Exports `tiny_module(...)`; returns (module, ExportResult)."""
  module = tiny_module(with_classifier, **config_overrides)
  result = saved_model_export.export_saved_model(module, export_base, model_name)
  return module, result


@functools.lru_cache(maxsize=None)
def shared_tiny_export(with_classifier: bool = True) -> Tuple[purifier_module.PurifierModule,
                                                              saved_model_export.ExportResult]:
  """One tiny export per process and kind, shared by tests that only read it (removed at exit).

  Tests must not modify it; tests that write exports use `tiny_export` in their own temp dir.
  """
  base = tempfile.mkdtemp(prefix="shared_tiny_export_")
  atexit.register(shutil.rmtree, base, True)
  return tiny_export(base, with_classifier=with_classifier)


def images(batch: int, seed: int = 0, low: float = -1.0, high: float = 1.0,
           shape: Optional[Tuple[int, int, int]] = None) -> np.ndarray:
  """Uniform float32 images [batch, 8, 8, 1] in [low, high]."""
  rng = np.random.default_rng(seed)
  return rng.uniform(low, high, (batch,) + (shape or IMAGE_SHAPE)).astype(np.float32)
