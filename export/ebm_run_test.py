"""Tests of rebuilding a training run's EBM."""

import os

import keras
import tensorflow as tf

from ebm_tf import checkpoints
from ebm_tf import config as config_lib
from ebm_tf import models
from export import ebm_run
from export import testing_utils


class EbmRunTest(tf.test.TestCase):

  def test_restores_the_saved_weights(self):
    run_dir = self.create_tempdir().full_path
    saved = testing_utils.make_ebm_run(run_dir)
    restored, config, path = ebm_run.restore_ebm(run_dir)
    self.assertEqual(config.ebm, "ebm_small")
    self.assertEqual(path, os.path.join(run_dir, "checkpoints", "ckpt-1"))
    x = testing_utils.images(4)
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
    restored, _, path = ebm_run.restore_ebm(run_dir)
    self.assertTrue(path.endswith("ckpt-7"))
    x = testing_utils.images(2)
    self.assertAllClose(restored(x), model(x), rtol=0, atol=0)

  def test_missing_checkpoint(self):
    run_dir = self.create_tempdir().full_path
    config_lib.save_config(config_lib.TrainConfig(dataset="digits", model_dir=run_dir), run_dir)
    with self.assertRaisesRegex(FileNotFoundError, "no checkpoint found"):
      ebm_run.restore_ebm(run_dir)
    with self.assertRaisesRegex(FileNotFoundError, "no config.json"):
      ebm_run.restore_ebm(self.create_tempdir().full_path)


  def test_checkpoint_of_another_network_is_rejected(self):
    run_dir = self.create_tempdir().full_path
    config_lib.save_config(config_lib.TrainConfig(dataset="digits", ebm="ebm_small",
                                                  model_dir=run_dir), run_dir)
    other = models.build_ebm("ebm_small", (8, 8, 1), width=8)
    checkpoints.Checkpointer(os.path.join(run_dir, "checkpoints"), ebm=other).save(1)
    with self.assertRaises(checkpoints.CheckpointMismatchError):
      ebm_run.restore_ebm(run_dir)


if __name__ == "__main__":
  tf.test.main()
