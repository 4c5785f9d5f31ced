"""Tests of the trainer-loop pieces shared by the EBM and classifier trainers."""

import os

import tensorflow as tf

from ebm_tf.training import checkpoints
from ebm_tf.training import loop


class LoopTest(tf.test.TestCase):

  def test_batch_per_replica(self):
    self.assertEqual(loop.batch_per_replica(12, 3), 4)
    with self.assertRaisesRegex(ValueError, r"batch_size \(10\) must be divisible by the number "
                                r"of replicas \(3\)"):
      loop.batch_per_replica(10, 3)

  def test_data_seed_reseeds_only_resumed_iterators(self):
    self.assertEqual(loop.data_seed(5), 5)
    self.assertEqual(loop.data_seed(5, 3), 5 + 7919 * 3)

  def test_iterators_under_the_default_strategy(self):
    strategy = tf.distribute.get_strategy()
    seeds = []

    def dataset_fn(context, seed):
      seeds.append(seed)
      del context
      return tf.data.Dataset.range(4).batch(2)
    iterator = loop.checkpointable_iterator(
        strategy, lambda: loop.make_iterator(strategy, dataset_fn, seed=1, resume_step=2))
    self.assertIsNotNone(iterator)
    self.assertEqual(seeds, [1 + 2 * 7919])
    self.assertAllEqual(next(iterator), [0, 1])
    self.assertIsNone(loop.worker_private_dir("/run", strategy))  # The chief writes the run.

  def test_restore_or_initialize(self):
    directory = os.path.join(self.get_temp_dir(), "ckpt")
    step = tf.Variable(0, dtype=tf.int64)
    checkpointer = checkpoints.Checkpointer(directory, step=step)
    calls = []
    self.assertEqual(loop.restore_or_initialize(checkpointer, step, "/run",
                                                initialize=lambda: calls.append(1)), 0)
    self.assertEqual(calls, [1])
    step.assign(7)
    checkpointer.save(7)
    step.assign(0)
    self.assertEqual(loop.restore_or_initialize(checkpointer, step, "/run",
                                                initialize=lambda: calls.append(2)), 7)
    self.assertEqual(calls, [1])


if __name__ == "__main__":
  tf.test.main()
