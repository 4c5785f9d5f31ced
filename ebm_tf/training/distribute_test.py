"""Tests for ebm_tf.training.distribute: strategy choice and its errors, worker roles from TF_CONFIG.

The strategies that need devices set up before TF starts (mirrored on logical CPUs, multi-worker)
are exercised end to end in tests/distributed_test.py (subprocesses); here only what is safe
inside a shared test process.
"""

import json
import os
from unittest import mock

from absl.testing import absltest
import tensorflow as tf

from ebm_tf.training import distribute


class MakeStrategyTest(absltest.TestCase):

  def test_default_is_the_default_strategy(self):
    strategy = distribute.make_strategy("default")
    self.assertTrue(distribute.is_default_strategy(strategy))
    self.assertEqual(distribute.num_local_replicas(strategy), 1)
    self.assertEqual(distribute.worker_index(strategy), 0)
    self.assertTrue(distribute.is_chief(strategy))

  def test_one_device_uses_the_cpu_without_gpus(self):
    strategy = distribute.make_strategy("one_device")
    self.assertFalse(distribute.is_default_strategy(strategy))
    self.assertEqual(strategy.num_replicas_in_sync, 1)
    self.assertEqual(distribute.num_local_replicas(strategy), 1)
    if not tf.config.list_physical_devices("GPU"):
      self.assertIn("CPU:0", strategy.extended.worker_devices[0].upper())

  def test_unknown_strategy_names_the_choices(self):
    with self.assertRaisesRegex(ValueError, r"strategy must be one of .*'mirrored'.*got 'gpu'"):
      distribute.make_strategy("gpu")

  def test_multi_worker_needs_tf_config(self):
    with mock.patch.dict(os.environ, {}, clear=False):
      os.environ.pop("TF_CONFIG", None)
      with self.assertRaisesRegex(ValueError, "needs the TF_CONFIG environment variable"):
        distribute.make_strategy("multi_worker")

  def test_multi_worker_rejects_malformed_tf_config(self):
    with mock.patch.dict(os.environ, {"TF_CONFIG": "{cluster: not json"}):
      with self.assertRaises(json.JSONDecodeError):
        distribute.make_strategy("multi_worker")

  def test_tpu_without_a_tpu_fails_naming_the_flag(self):
    if tf.config.list_logical_devices("TPU"):
      self.skipTest("this machine has a TPU")
    with self.assertRaisesRegex(RuntimeError,
                                r"--strategy=tpu: no usable TPU at --tpu='local'.*--tpu=local"):
      distribute.make_strategy("tpu")


class _Resolver:
  """The parts of a cluster resolver that worker_index / is_chief read."""

  def __init__(self, cluster, task_type, task_id):
    self._cluster = tf.train.ClusterSpec(cluster)
    self.task_type, self.task_id = task_type, task_id

  def cluster_spec(self):
    return self._cluster


class _Strategy:

  def __init__(self, resolver):
    self.cluster_resolver = resolver


class WorkerRoleTest(absltest.TestCase):

  def test_worker_zero_is_chief_without_a_chief_task(self):
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    roles = [(distribute.worker_index(_Strategy(_Resolver(cluster, "worker", i))),
              distribute.is_chief(_Strategy(_Resolver(cluster, "worker", i)))) for i in (0, 1)]
    self.assertEqual(roles, [(0, True), (1, False)])

  def test_a_chief_task_comes_first_and_is_the_only_chief(self):
    cluster = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2", "127.0.0.1:3"]}
    chief = _Strategy(_Resolver(cluster, "chief", 0))
    workers = [_Strategy(_Resolver(cluster, "worker", i)) for i in (0, 1)]
    self.assertEqual((distribute.worker_index(chief), distribute.is_chief(chief)), (0, True))
    self.assertEqual([distribute.worker_index(w) for w in workers], [1, 2])
    self.assertEqual([distribute.is_chief(w) for w in workers], [False, False])


if __name__ == "__main__":
  absltest.main()
