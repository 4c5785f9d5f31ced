"""Tests for ebm_tf.training.train_lib: the ML loss, the training step for every init mode, the loop."""

import glob
import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from ebm_tf.data import datasets
from ebm_tf.mcmc import init_strategies
from ebm_tf.training import config as config_lib
from ebm_tf.training import train_lib


def _config(model_dir, **overrides):
  values = dict(dataset="digits", ebm="ebm_small", generator="gen_small", latent_dim=4,
                batch_size=8, train_steps=3, mcmc_steps=2, persistent_size=32,
                log_every=1, image_every=2, checkpoint_every=2, num_grid_images=4,
                eval_mcmc_steps=2, model_dir=model_dir)
  values.update(overrides)
  return config_lib.TrainConfig(**values)


def _poison_weights_once(trainer, at_step):
  """Makes `trainer.train_step` set the EBM's first kernel to NaN once, when the trainer's step
  counter is `at_step`; returns a list that holds True once it happened."""
  real_step = trainer.train_step
  injected = []

  def step_with_nan_once(iterator):
    if int(trainer.step.numpy()) == at_step and not injected:
      kernel = trainer.ebm.trainable_variables[0]
      kernel.assign(tf.fill(kernel.shape, float("nan")))
      injected.append(True)
    return real_step(iterator)

  trainer.train_step = step_with_nan_once
  return injected


class MlLossTest(tf.test.TestCase):

  def test_value_and_replica_scaling(self):
    data_e = tf.constant([1.0, 3.0])
    neg_e = tf.constant([5.0, 7.0])
    self.assertAllClose(train_lib.ml_loss(data_e, neg_e, 0.5), (2.0 - 6.0) / 0.5)
    self.assertAllClose(train_lib.ml_loss(data_e, neg_e, 0.5, num_replicas=4), -2.0)

  def test_gradient_step_lowers_data_energy_and_raises_negative_energy(self):
    # Linear energy E(x) = w . x: the loss gradient is mean(x_data) - mean(x_neg) (over T).
    w = tf.Variable([0.0, 0.0])
    x_data = tf.constant([[1.0, 0.0], [1.0, 0.0]])
    x_neg = tf.constant([[0.0, 1.0], [0.0, 1.0]])
    with tf.GradientTape() as tape:
      loss = train_lib.ml_loss(tf.linalg.matvec(x_data, w), tf.linalg.matvec(x_neg, w), 0.1)
    grad = tape.gradient(loss, w)
    self.assertAllClose(grad, [10.0, -10.0])
    w.assign_sub(0.01 * grad)
    self.assertLess(float(tf.reduce_mean(tf.linalg.matvec(x_data, w))), 0.0)
    self.assertGreater(float(tf.reduce_mean(tf.linalg.matvec(x_neg, w))), 0.0)


class TrainerTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters("coop", "data", "persistent", "data_persistent", "coop_persistent")
  def test_every_init_mode_trains(self, mode):
    trainer = train_lib.Trainer(_config(self.create_tempdir().full_path, mcmc_init=mode,
                                        train_steps=2))
    ebm_before = [v.numpy().copy() for v in trainer.ebm.trainable_variables]
    metrics = trainer.train()
    self.assertEqual(int(trainer.step.numpy()), 2)
    for name, value in metrics.items():
      self.assertTrue(np.isfinite(value), f"{name}={value}")
    changed = [not np.allclose(a, b.numpy())
               for a, b in zip(ebm_before, trainer.ebm.trainable_variables)]
    self.assertTrue(all(changed))
    self.assertEqual(metrics["gen_loss"] > 0, init_strategies.InitMode(mode).uses_generator)

  def test_data_persistent_bank_starts_from_shuffled_training_images(self):
    trainer = train_lib.Trainer(_config(self.create_tempdir().full_path,
                                        mcmc_init="data_persistent"))
    trainer.restore_or_initialize()
    bank = trainer.bank.images.numpy()[0]  # [32, 8, 8, 1]
    train_images, _ = datasets.load_array("digits", "train")
    flat_train = train_images.reshape(len(train_images), -1)
    # Each slot holds exactly one training image (no noise, no resize), 32 distinct ones, not
    # the first 32 in file order.
    matches = [np.flatnonzero(np.all(flat_train == slot.reshape(1, -1), axis=1))
               for slot in bank]
    self.assertTrue(all(len(m) >= 1 for m in matches))
    indices = [int(m[0]) for m in matches]
    self.assertLen(set(indices), len(bank))
    self.assertNotEqual(sorted(indices), list(range(len(bank))))
    # Another seed draws another set.
    other = train_lib.Trainer(_config(self.create_tempdir().full_path,
                                      mcmc_init="data_persistent", seed=1))
    other.restore_or_initialize()
    self.assertFalse(np.array_equal(other.bank.images.numpy()[0], bank))

  def test_mixed_bfloat16_networks_with_float32_states(self):
    trainer = train_lib.Trainer(_config(self.create_tempdir().full_path, train_steps=1,
                                        precision="mixed_bfloat16"))
    for model in (trainer.ebm, trainer.generator):
      conv = [l for l in model.layers if type(l).__name__ == "Conv2D"]
      self.assertNotEmpty(conv)
      self.assertEqual(conv[0].compute_dtype, "bfloat16")
    self.assertEqual(trainer.ebm.trainable_variables[0].dtype, "float32")
    metrics = trainer.train()
    self.assertTrue(all(np.isfinite(v) for v in metrics.values()))
    self.assertEqual(trainer.bank.images.dtype, tf.float32)

  def test_bank_is_written_back(self):
    trainer = train_lib.Trainer(_config(self.create_tempdir().full_path,
                                        mcmc_init="persistent", rejuvenation_prob=0.0))
    trainer.restore_or_initialize()
    before = trainer.bank.images.numpy().copy()
    trainer.train_step(trainer.make_iterator())
    after = trainer.bank.images.numpy()
    changed = np.any(before != after, axis=(2, 3, 4))[0]
    # Exactly one batch of slots moved (2 Langevin steps), the others are untouched.
    self.assertEqual(int(changed.sum()), 8)
    self.assertAllEqual(trainer.bank.ages.numpy()[0][changed], np.ones(8))

  def test_loop_writes_checkpoints_grids_events_and_resumes(self):
    model_dir = self.create_tempdir().full_path
    first = train_lib.Trainer(_config(model_dir, train_steps=2))
    first.train()
    self.assertLen(glob.glob(os.path.join(model_dir, "checkpoints", "ckpt-2.index")), 1)
    for name in ("bank", "generator", "samples"):
      self.assertLen(glob.glob(os.path.join(model_dir, "samples", f"{name}_*.png")), 2)
    self.assertNotEmpty(glob.glob(os.path.join(model_dir, "tensorboard", "events.*")))
    bank_at_2 = first.bank.images.numpy()
    ebm_at_2 = [v.numpy() for v in first.ebm.trainable_variables]

    resumed = train_lib.Trainer(_config(model_dir, train_steps=4))
    self.assertEqual(resumed.restore_or_initialize(), 2)
    self.assertAllEqual(resumed.bank.images.numpy(), bank_at_2)
    for a, b in zip(ebm_at_2, resumed.ebm.trainable_variables):
      self.assertAllEqual(a, b.numpy())
    resumed.train()
    self.assertEqual(int(resumed.step.numpy()), 4)
    self.assertLen(glob.glob(os.path.join(model_dir, "checkpoints", "ckpt-4.index")), 1)

  def test_ema_weights_are_checkpointed_and_resume_exactly(self):
    def ema(trainer):
      return [v.numpy() for v in trainer.ebm_optimizer._model_variables_moving_average]  # pylint: disable=protected-access

    straight = train_lib.Trainer(_config(self.create_tempdir().full_path, train_steps=4,
                                         ebm_opt_decay=0.9, gen_opt_decay=0.9))
    straight.train()
    model_dir = self.create_tempdir().full_path
    first = train_lib.Trainer(_config(model_dir, train_steps=2, ebm_opt_decay=0.9,
                                      gen_opt_decay=0.9))
    first.train()
    ema_at_2 = ema(first)
    resumed = train_lib.Trainer(_config(model_dir, train_steps=4, ebm_opt_decay=0.9,
                                        gen_opt_decay=0.9))
    self.assertEqual(resumed.restore_or_initialize(), 2)
    for a, b in zip(ema_at_2, ema(resumed)):
      self.assertAllEqual(a, b)
    resumed.train()
    # The EMA trails the weights (so it is a state of its own), and a resumed run's EMA ends
    # where the uninterrupted run's does.
    weights = [v.numpy() for v in resumed.ebm.trainable_variables]
    self.assertTrue(any(not np.allclose(a, b) for a, b in zip(ema(resumed), weights)))
    for a, b in zip(ema(straight), ema(resumed)):
      self.assertAllEqual(a, b)

  def test_same_seed_same_run(self):
    runs = []
    for _ in range(2):
      trainer = train_lib.Trainer(_config(self.create_tempdir().full_path, train_steps=2))
      trainer.train()
      runs.append([v.numpy() for v in trainer.ebm.trainable_variables])
    for a, b in zip(*runs):
      self.assertAllEqual(a, b)

  def test_midrun_with_a_frozen_pretrained_generator(self):
    shortrun_dir = self.create_tempdir().full_path
    shortrun = train_lib.Trainer(_config(shortrun_dir, train_steps=1))
    shortrun.train()
    trained = [v.numpy() for v in shortrun.generator.variables]
    midrun = train_lib.Trainer(_config(
        self.create_tempdir().full_path, train_steps=2, update_generator=False,
        gen_checkpoint=shortrun_dir, rejuvenation_prob=0.05, max_mcmc_updates=0))
    self.assertIsNone(midrun.gen_optimizer)
    loaded = [v.numpy() for v in midrun.generator.variables]
    for a, b in zip(trained, loaded):
      self.assertAllEqual(a, b)
    metrics = midrun.train()
    self.assertEqual(metrics["gen_loss"], 0.0)
    for a, b in zip(trained, midrun.generator.variables):
      self.assertAllEqual(a, b.numpy())

  def test_frozen_generator_needs_a_checkpoint(self):
    with self.assertRaisesRegex(ValueError, "needs --gen_checkpoint"):
      _config("/tmp/unused", update_generator=False)

  def test_longrun_correction_with_prior_and_burn_in(self):
    prior_dir = self.create_tempdir().full_path
    prior = train_lib.Trainer(_config(prior_dir, mcmc_init="persistent", tau=0.15,
                                      train_steps=1))
    prior.train()
    correction = train_lib.Trainer(_config(
        self.create_tempdir().full_path, mcmc_init="persistent", tau=0.15, train_steps=2,
        prior_model_dir=prior_dir, prior_temp=1e-4, rejuvenation_prob=0.0, burnin_size=16,
        burnin_steps=2, graduation_draws=1))
    for a, b in zip(prior.ebm.variables, correction.prior_ebm.variables):
      self.assertAllEqual(a.numpy(), b.numpy())
    correction.restore_or_initialize()
    counters = correction.burnin_bank.counters.numpy()
    self.assertTrue(np.all((counters >= 0) & (counters < 1)))  # Uniform{0..G-1}, G = 1.
    iterator = correction.make_iterator()
    first = correction.train_step(iterator)
    # Every drawn counter was 0 < G: nothing graduates; the drawn counters become 1.
    self.assertEqual(float(first.graduated), 0.0)
    self.assertEqual(int((correction.burnin_bank.counters.numpy() == 1).sum()), 8)
    update_bank_before = correction.bank.images.numpy().copy()
    second = correction.train_step(iterator)
    self.assertGreater(float(second.graduated), 0.0)
    # Graduated burn-in slots were refilled (counter 0) and their states entered the update
    # bank: some update-bank slot now holds a state that came from the burn-in bank.
    self.assertGreater(int((correction.burnin_bank.counters.numpy() == 0).sum()), 0)
    changed = np.any(correction.bank.images.numpy() != update_bank_before, axis=(2, 3, 4))[0]
    self.assertEqual(int(changed.sum()), 8)
    self.assertTrue(np.all(np.isfinite(correction.bank.images.numpy())))
    # The correction run's checkpoint holds the prior too.
    path = correction.checkpointer.save(2)
    keys = [k for k, _ in tf.train.list_variables(path)]
    self.assertTrue(any(k.startswith("prior_ebm/") for k in keys))

  def test_divergence_guard_restores_and_lowers_lr(self):
    model_dir = self.create_tempdir().full_path
    trainer = train_lib.Trainer(_config(model_dir, train_steps=4, divergence_lr_factor=0.5))
    injected = _poison_weights_once(trainer, at_step=2)
    with self.assertLogs(level="WARNING") as logs:
      metrics = trainer.train()
    self.assertTrue(injected)
    self.assertTrue(any("divergence at step 3" in line and "restored" in line
                        for line in logs.output), logs.output)
    self.assertEqual(int(trainer.step.numpy()), 4)
    self.assertEqual(int(trainer.restarts.numpy()), 1)
    self.assertAllClose(trainer.lr_scale.numpy(), 0.5)
    self.assertAllClose(float(tf.convert_to_tensor(trainer.ebm_optimizer.learning_rate)), 0.5e-4)
    self.assertTrue(all(np.all(np.isfinite(v.numpy())) for v in trainer.ebm.variables))
    self.assertTrue(all(np.isfinite(v) for v in metrics.values()))

  def test_divergence_guard_rewinds_past_logged_steps(self):
    # Steps 4 and 5 are logged (log_every 1) and not checkpointed (every 3): a divergence at
    # step 6 restores ckpt-3, and training must log steps 4 to 6 again instead of failing.
    model_dir = self.create_tempdir().full_path
    trainer = train_lib.Trainer(_config(model_dir, train_steps=6, checkpoint_every=3,
                                        divergence_lr_factor=0.5))
    injected = _poison_weights_once(trainer, at_step=5)
    with self.assertLogs(level="INFO") as logs:
      trainer.train()
    self.assertTrue(injected)
    self.assertTrue(any("divergence at step 6" in line and "(step 3)" in line
                        for line in logs.output), logs.output)
    self.assertEqual(int(trainer.step.numpy()), 6)
    self.assertEqual(int(trainer.restarts.numpy()), 1)
    self.assertTrue(any("step 6/6" in line for line in logs.output), logs.output)

  def test_divergence_guard_stops_after_repeated_failures(self):
    def nan_data(unused_context):
      images = tf.fill([8, 8, 8, 1], float("nan"))
      return tf.data.Dataset.from_tensors({"image": images, "label": tf.zeros([8], tf.int64)}
                                          ).repeat()
    trainer = train_lib.Trainer(
        _config(self.create_tempdir().full_path, max_divergence_restarts=2), dataset_fn=nan_data)
    with self.assertRaisesRegex(FloatingPointError, "diverged at step 1 .*3 times in a row"):
      trainer.train()

  def test_batch_not_divisible_by_replicas(self):
    # The default strategy has one replica: every batch size divides; check the message path
    # with a config error instead.
    with self.assertRaisesRegex(ValueError, "persistent_size"):
      _config("/tmp/unused", persistent_size=4)


if __name__ == "__main__":
  tf.test.main()
