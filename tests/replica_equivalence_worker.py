r"""Subprocess for distributed_test: one replica at batch 2B vs two replicas at batch B each.

  python tests/replica_equivalence_worker.py OUT.npz

Splits the CPU into 2 logical devices (before TensorFlow initialises them, hence a process of its
own), then builds two `Trainer`s on the same config: one on the default strategy (1 replica, global
batch 2B) and one on a MirroredStrategy over the 2 logical CPUs (2 replicas, B each). Both get the
same initial EBM weights, the same global data batch (a fixed array fed through `dataset_fn`) and
the same negatives: with mcmc_init='persistent', rejuvenation_prob=0, no age cap and
mcmc_steps=0 a step's negatives are exactly the drawn bank states, and with a bank of exactly one
batch per replica every slot is drawn every step; the 1-replica bank holds the concatenation of
the 2-replica bank's two rows. Draw order within a row differs, which the loss (a mean over the
batch) does not see. data_epsilon=0 makes the positives the data batch itself.

Writes, for prefix `one/` (1 replica) and `two/` (2 replicas), with i indexing the EBM's trainable
variables: `ebm_init_<i>` before and `ebm_<i>` after one training step, Adam's first and second
moments after the step (`momentum_<i>`, `velocity_<i>`) and its iteration count (`iterations`),
the step's metrics (`metrics`, the fields METRIC_NAMES), the bank after the step (`bank_images`
in slot order, `bank_ages`) and `replicas`. The comparison is in distributed_test.
"""

import os
import sys
import tempfile

BATCH = 8  # Global batch 2B: B = 4 per replica under the 2-replica strategy.
METRIC_NAMES = ("loss", "energy_diff", "data_energy", "negative_energy")


def main(out_path: str) -> None:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from ebm_tf.training import config as config_lib  # pylint: disable=g-import-not-at-top
  from ebm_tf.training import distribute  # pylint: disable=g-import-not-at-top
  from ebm_tf.training import train_lib  # pylint: disable=g-import-not-at-top

  distribute.split_cpu(2)
  tf.config.experimental.enable_op_determinism()  # Same sums in the same order on every run.
  rng = np.random.default_rng(1234)
  shape = (8, 8, 1)
  data_images = rng.uniform(-1.0, 1.0, (BATCH,) + shape).astype(np.float32)
  bank_images = rng.uniform(-1.0, 1.0, (BATCH,) + shape).astype(np.float32)

  def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
    # One input pipeline per worker; its consecutive elements go to consecutive local replicas,
    # so 2 replicas see data_images[:4] and data_images[4:], 1 replica sees all 8.
    per_replica = context.get_per_replica_batch_size(BATCH)
    return tf.data.Dataset.from_tensor_slices({"image": data_images}).batch(
        per_replica, drop_remainder=True).repeat()

  results = {}
  init_weights = None
  for prefix, strategy in (("one", tf.distribute.get_strategy()),
                           ("two", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
    config = config_lib.TrainConfig(
        dataset="digits", ebm="ebm_small", ebm_width=8, batch_size=BATCH, train_steps=1,
        mcmc_init="persistent", persistent_size=BATCH, rejuvenation_prob=0.0,
        max_mcmc_updates=0, mcmc_steps=0, data_epsilon=0.0, ebm_lr_values=(1e-3,),
        model_dir=tempfile.mkdtemp(prefix=f"replicas_{prefix}_"))
    trainer = train_lib.Trainer(config, strategy=strategy, dataset_fn=dataset_fn)
    replicas = trainer.num_replicas
    results[f"{prefix}/replicas"] = np.array(replicas)
    weights = trainer.ebm.trainable_variables
    if init_weights is None:
      init_weights = [np.asarray(w) for w in weights]
    else:
      for weight, value in zip(weights, init_weights):
        weight.assign(value)
    rows = trainer.bank.images.shape[0]
    if trainer.bank.slots_per_replica * rows != BATCH or rows != replicas:
      raise AssertionError(f"expected a bank of {replicas} row(s) of {BATCH // replicas} slots; "
                           f"got {trainer.bank.images.shape}")
    trainer.bank.images.assign(bank_images.reshape((rows, BATCH // rows) + shape))
    trainer.bank.ages.assign(tf.zeros_like(trainer.bank.ages))
    for i, weight in enumerate(weights):
      results[f"{prefix}/ebm_init_{i}"] = np.asarray(weight)
    metrics = trainer.train_step(trainer.make_iterator())
    results[f"{prefix}/metrics"] = np.array(
        [float(getattr(metrics, name)) for name in METRIC_NAMES])
    # Keras names an optimizer slot '<variable path with _ for />_<slot name>'.
    slots = {v.name: v for v in trainer.ebm_optimizer.variables}
    results[f"{prefix}/iterations"] = np.asarray(trainer.ebm_optimizer.iterations)
    for i, weight in enumerate(weights):
      results[f"{prefix}/ebm_{i}"] = np.asarray(weight)
      for slot in ("momentum", "velocity"):
        name = f"{weight.path.replace('/', '_')}_{slot}"
        if name not in slots:
          raise AssertionError(f"no Adam slot {name!r} among {sorted(slots)}")
        results[f"{prefix}/{slot}_{i}"] = np.asarray(slots[name])
    results[f"{prefix}/bank_images"] = trainer.bank.images.numpy().reshape((BATCH,) + shape)
    results[f"{prefix}/bank_ages"] = trainer.bank.ages.numpy().reshape([BATCH])
  np.savez(out_path, **results)


if __name__ == "__main__":
  main(sys.argv[1])
