"""The trainer-loop pieces shared by the EBM trainer (`train_lib`) and the classifier trainer.

Both trainers run the same outer loop under a `tf.distribute` strategy: split the global batch over
the replicas, build a data iterator whose shuffle is reseeded when a distributed run resumes, keep
the iterator in the checkpoint where TF can save it (the default strategy only), restore the newest
checkpoint or initialise a fresh run, and give every non-chief worker of a multi-worker run a
private directory for its part of each save. Those rules live here, once.
"""

import os
from typing import Callable, Iterator, Optional

from absl import logging
import tensorflow as tf

from ebm_tf.training import checkpoints
from ebm_tf.training import distribute

# A resumed distributed iterator reshuffles with seed + RESEED_STRIDE * resume_step.
RESEED_STRIDE = 7919
WORKER_TMP_DIR = "worker_tmp"


def make_strategy(config, strategy: Optional[tf.distribute.Strategy] = None
                  ) -> tf.distribute.Strategy:
  """`strategy`, or the one `config` names (`config.strategy`, `.num_cpu_devices`, `.tpu`: the
  fields of `TrainConfig` and `ClassifierConfig`) from `distribute.make_strategy`."""
  return strategy or distribute.make_strategy(
      config.strategy, num_cpu_devices=config.num_cpu_devices, tpu=config.tpu)


def batch_per_replica(batch_size: int, num_replicas: int) -> int:
  """The per-replica batch `batch_size // num_replicas` (ints >= 1).

  Raises:
    ValueError: `batch_size` is not divisible by `num_replicas`.
  """
  if batch_size % num_replicas:
    raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of "
                     f"replicas ({num_replicas})")
  return batch_size // num_replicas


def data_seed(seed: int, resume_step: int = 0) -> int:
  """The shuffle (and augmentation) seed of a data iterator started at `resume_step` (int >= 0):
  `seed` at a fresh start, `seed + 7919 * resume_step` for a resumed one (a documented reseed: TF
  cannot checkpoint a distributed iterator's position)."""
  return seed + RESEED_STRIDE * resume_step


def make_iterator(strategy: tf.distribute.Strategy,
                  dataset_fn: Callable[[tf.distribute.InputContext, int], tf.data.Dataset],
                  seed: int, resume_step: int = 0) -> Iterator:
  """An iterator over the per-replica batches of `dataset_fn(input_context, data_seed)`.

  Args:
    strategy: the run's strategy (`distribute_datasets_from_function` splits the input over it).
    dataset_fn: builds one input pipeline of per-replica batches from an input context and an int
      shuffle seed (`data_seed(seed, resume_step)`).
    seed: the run's int seed.
    resume_step: the step the iterator starts at, int >= 0 (0 for a fresh run).
  """
  shuffle_seed = data_seed(seed, resume_step)
  return iter(strategy.distribute_datasets_from_function(
      lambda context: dataset_fn(context, shuffle_seed)))


def checkpointable_iterator(strategy: tf.distribute.Strategy,
                            make: Callable[[], Iterator]) -> Optional[Iterator]:
  """`make()` under the default strategy, whose single-device iterator TF can checkpoint (a resumed
  run then sees the batches an uninterrupted one would); None under a distributed strategy, whose
  iterator cannot be checkpointed (the run reseeds its shuffle at resume, see `data_seed`)."""
  return make() if distribute.is_default_strategy(strategy) else None


def worker_private_dir(model_dir: str, strategy: tf.distribute.Strategy) -> Optional[str]:
  """None on the chief; `<model_dir>/worker_tmp/<task id>` on a non-chief worker, the private place
  where it writes its part of each multi-worker save (the chief's files are the run's)."""
  if distribute.is_chief(strategy):
    return None
  return os.path.join(model_dir, WORKER_TMP_DIR, str(strategy.cluster_resolver.task_id))


def restore_or_initialize(checkpointer: checkpoints.Checkpointer, step: tf.Variable,
                          model_dir: str, initialize: Optional[Callable[[], None]] = None) -> int:
  """Restores the newest readable checkpoint of `checkpointer`, or, when there is none, calls
  `initialize()` (e.g. filling the chain banks) for a fresh start; logs which and returns the
  step (int >= 0, the value of the int64 variable `step` after the restore)."""
  path = checkpointer.restore_latest()
  if path is None:
    if initialize is not None:
      initialize()
    logging.info("fresh start in %s", model_dir)
  else:
    logging.info("resumed from %s at step %d", path, int(step.numpy()))
  return int(step.numpy())
