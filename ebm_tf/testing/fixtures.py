"""Tiny real run directories for tests: EBM training runs and classifier runs.

Laid out exactly as `ebm_tf.train` and `ebm_tf.train_classifier` write them. Test support only
(seconds to build).
"""

import os

import keras
import tensorflow as tf

from ebm_tf.classifier import classifier_config
from ebm_tf.classifier import classifier_lib
from ebm_tf.data import datasets
from ebm_tf.mcmc import init_strategies
from ebm_tf.training import checkpoints
from ebm_tf.training import config as config_lib
from ebm_tf.training import runs
from ebm_tf.training import train_lib

# A shortrun (coop_persistent) digits run small enough to train 2 steps in seconds.
TINY_TRAIN = dict(dataset="digits", ebm="ebm_small", ebm_width=4, generator="gen_small",
                  gen_width=4, latent_dim=4, batch_size=8, train_steps=2, mcmc_steps=2,
                  persistent_size=16, checkpoint_every=2, image_every=100, log_every=1,
                  num_grid_images=4, eval_mcmc_steps=3)


def train_tiny_run(model_dir: str, **overrides) -> str:
  """Trains `TINY_TRAIN` (with `overrides`) into `model_dir` through `train_lib.Trainer`;
  returns `model_dir` (config.json, checkpoints/ckpt-<step>, tensorboard/, samples/)."""
  config = config_lib.TrainConfig(**dict(TINY_TRAIN, model_dir=model_dir, **overrides))
  train_lib.Trainer(config).train()
  return model_dir


def write_classifier_run(model_dir: str, epochs: int, seed: int) -> keras.Model:
  """A small_cnn digits classifier run (classifier_config.json + best/ checkpoint) after
  `epochs` epochs of Adam on the digits train split (0: untrained); returns the model."""
  config = classifier_config.ClassifierConfig(dataset="digits", classifier="small_cnn",
                                              random_crop=False, model_dir=model_dir, seed=seed)
  classifier_config.save_config(config, model_dir)
  keras.utils.set_random_seed(seed)
  model = classifier_lib.build_model(config)
  if epochs:
    images, labels = datasets.load_array("digits", "train")
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, batch_size=100, epochs=epochs, verbose=0, shuffle=False)
  checkpoints.Checkpointer(os.path.join(model_dir, classifier_lib.BEST_DIR), max_to_keep=1,
                           classifier=model).save(epochs)
  return model


def write_run(model_dir: str, *, seed: int = 0, bank_slots: int = 16, **overrides) -> str:
  """A run directory as `ebm_tf.train` leaves it, without training: config.json and one
  checkpoint `ckpt-1` holding freshly initialised networks ("ebm"; "generator" for coop modes;
  "prior_ebm" when `prior_model_dir` is set, built from that run's config) and, for persistent
  modes, a "bank" of `bank_slots` states filled with uniform noise. Returns `model_dir`.
  Seconds to build, where `train_tiny_run` traces a whole training step."""
  config = config_lib.TrainConfig(**dict(TINY_TRAIN, model_dir=model_dir, **overrides))
  config_lib.save_config(config, model_dir)
  keras.utils.set_random_seed(seed)
  trackables = dict(ebm=runs.build_ebm(config))
  if config.init_mode.uses_generator:
    trackables["generator"] = runs.build_generator(config)
  if config.prior_model_dir:
    trackables["prior_ebm"] = runs.build_ebm(config_lib.load_config(config.prior_model_dir))
  image_shape = datasets.image_shape(config.dataset, config.image_size)
  if config.init_mode.needs_bank:
    bank = init_strategies.ChainBank(
        config.init_mode, num_replicas=1, slots_per_replica=bank_slots, image_shape=image_shape,
        latent_dim=config.init_mode.latent_dim(config.latent_dim),
        rejuvenation_prob=config.rejuvenation_prob)
    bank.images.assign(tf.random.stateless_uniform(bank.images.shape, [seed, 1], -1.0, 1.0))
    trackables["bank"] = bank
  checkpoints.Checkpointer(os.path.join(model_dir, "checkpoints"), **trackables).save(1)
  return model_dir
