"""Tests for ebm_tf.training.runs: rebuilding a training run's networks."""

import os

import keras
import tensorflow as tf

from ebm_tf import models
from ebm_tf.training import checkpoints
from ebm_tf.training import config as config_lib
from ebm_tf.training import runs


class RunsTest(tf.test.TestCase):

  def test_restores_the_saved_weights(self):
    run_dir = self.create_tempdir().full_path
    config_lib.save_config(config_lib.TrainConfig(dataset="digits", ebm="ebm_small",
                                                  ebm_width=8, model_dir=run_dir), run_dir)
    saved = models.build_ebm("ebm_small", (8, 8, 1), width=8)
    checkpoints.Checkpointer(os.path.join(run_dir, "checkpoints"), ebm=saved).save(1)
    restored, config, path = runs.restore_ebm(run_dir)
    self.assertEqual((config.ebm, config.ebm_width), ("ebm_small", 8))
    self.assertEqual(path, os.path.join(run_dir, "checkpoints", "ckpt-1"))
    x = tf.random.stateless_uniform([4, 8, 8, 1], [1, 2], -1.0, 1.0)
    self.assertAllClose(restored(x), saved(x), rtol=0, atol=0)

  def test_restores_from_a_full_training_checkpoint(self):
    # A training checkpoint also holds the optimizer and step; only the EBM is read.
    run_dir = self.create_tempdir().full_path
    config_lib.save_config(config_lib.TrainConfig(dataset="digits", ebm="ebm_small",
                                                  model_dir=run_dir), run_dir)
    model = models.build_ebm("ebm_small", (8, 8, 1))
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    step = tf.Variable(7, dtype=tf.int64)
    checkpoints.Checkpointer(os.path.join(run_dir, "checkpoints"), ebm=model,
                             ebm_optimizer=optimizer, step=step).save(7)
    restored, _, path = runs.restore_ebm(run_dir)
    self.assertTrue(path.endswith("ckpt-7"))
    x = tf.random.stateless_uniform([2, 8, 8, 1], [3, 4], -1.0, 1.0)
    self.assertAllClose(restored(x), model(x), rtol=0, atol=0)

  def test_missing_checkpoint(self):
    run_dir = self.create_tempdir().full_path
    config_lib.save_config(config_lib.TrainConfig(dataset="digits", model_dir=run_dir), run_dir)
    with self.assertRaisesRegex(FileNotFoundError, "no checkpoint found"):
      runs.restore_ebm(run_dir)
    with self.assertRaisesRegex(FileNotFoundError, "no config.json"):
      runs.restore_ebm(self.create_tempdir().full_path)


  def test_checkpoint_of_another_network_is_rejected(self):
    run_dir = self.create_tempdir().full_path
    config_lib.save_config(config_lib.TrainConfig(dataset="digits", ebm="ebm_small",
                                                  model_dir=run_dir), run_dir)
    other = models.build_ebm("ebm_small", (8, 8, 1), width=8)  # config.json says width 32.
    checkpoints.Checkpointer(os.path.join(run_dir, "checkpoints"), ebm=other).save(1)
    with self.assertRaises(checkpoints.CheckpointMismatchError):
      runs.restore_ebm(run_dir)


if __name__ == "__main__":
  tf.test.main()
