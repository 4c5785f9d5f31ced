"""Maximum-likelihood EBM training with Langevin negatives: the loss, the distributed step, the loop.

One training step (per replica, inside `strategy.run`):
  1. negatives' initial states come from the init strategy (fresh generator samples, data, or a
     persistent bank row with rejuvenation);
  2. K Langevin steps of U = E/T [+ ||x||^2 / (2 tau^2)] revise them (`ebm_tf.mcmc.langevin`);
  3. loss = (mean E(x_data + data_epsilon * noise) - mean E(negatives)) / T / replicas, one Adam
     step on the EBM;
  4. cooperative generator step (coop modes): minimise sum ||negatives - G(z)||^2 / B;
  5. the revised states go back to their bank slots (cross-replica, after `strategy.run`).
All randomness is stateless, derived from (seed, global step, replica id), so a run is
reproducible and a resumed run draws the same noise as an uninterrupted one.
"""

import dataclasses
import os
from typing import Dict, NamedTuple, Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from ebm_tf.data import datasets
from ebm_tf.mcmc import init_strategies
from ebm_tf.mcmc import langevin
from ebm_tf import models
from ebm_tf.training import checkpoints
from ebm_tf.training import config as config_lib
from ebm_tf.training import distribute
from ebm_tf.training import runs
from ebm_tf.training import summaries

# Stream ids folded into the run seed: one independent random stream per purpose.
(_DRAW, _DATA_NOISE, _FRESH, _LATENT, _LANGEVIN, _BANK_INIT, _EVAL, _BURN_DRAW, _BURN_FRESH,
 _BURN_LANGEVIN) = range(10)
# Bank slots filled from data ('data_persistent') are drawn through a shuffle of this many
# training examples.
_BANK_INIT_SHUFFLE_BUFFER = 10_000


def ml_loss(data_energies: tf.Tensor, negative_energies: tf.Tensor,
            temperature: float, num_replicas: int = 1) -> tf.Tensor:
  """Maximum-likelihood loss (mean E(data) - mean E(negatives)) / T / num_replicas.

  Args:
    data_energies: [B] float32 energies of the (noise-perturbed) data batch.
    negative_energies: [B] float32 energies of the Langevin negatives.
    temperature: T > 0.
    num_replicas: the loss is divided by it so that the all-reduced (summed) gradient is the
      gradient of the global-batch mean.
  Returns:
    Scalar float32. Its gradient lowers the energy of data and raises that of negatives.
  """
  difference = tf.reduce_mean(data_energies) - tf.reduce_mean(negative_energies)
  return difference / temperature / num_replicas


def uses_generator(mode: str) -> bool:
  """True for the init modes whose negatives start from generator samples."""
  return mode in ("coop", "coop_persistent")


class ScaledPiecewiseConstant(keras.optimizers.schedules.LearningRateSchedule):
  """Piecewise-constant learning rate times a scale variable (lowered by the divergence guard).

  lr(step) = values[i] * scale, where i = number of boundaries <= step.
  """

  def __init__(self, values, boundaries, scale: tf.Variable):
    self.values = [float(v) for v in values]
    self.boundaries = [int(b) for b in boundaries]
    self.scale = scale

  def __call__(self, step):
    index = tf.reduce_sum(tf.cast(tf.cast(step, tf.int64) >= tf.constant(
        self.boundaries, tf.int64, shape=[len(self.boundaries)]), tf.int32))
    return tf.gather(tf.constant(self.values, tf.float32), index) * tf.cast(
        tf.convert_to_tensor(self.scale), tf.float32)

  def get_config(self):
    return {"values": self.values, "boundaries": self.boundaries}


def make_optimizer(values, boundaries, ema_momentum: float, beta_1: float, beta_2: float,
                   lr_scale: tf.Variable) -> keras.optimizers.Adam:
  """Adam on a (scaled) piecewise-constant learning rate; EMA of the weights when
  ema_momentum > 0."""
  return keras.optimizers.Adam(learning_rate=ScaledPiecewiseConstant(values, boundaries, lr_scale),
                               beta_1=beta_1, beta_2=beta_2, use_ema=ema_momentum > 0,
                               ema_momentum=ema_momentum or 0.99)


def _fold(seed: tf.Tensor, *values) -> tf.Tensor:
  for value in values:
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(value, tf.int32))
  return seed


class StepMetrics(NamedTuple):
  """Per-step diagnostics, averaged over replicas (all scalar float32)."""
  loss: tf.Tensor            # (mean E(data+) - mean E(neg)) / T
  energy_diff: tf.Tensor     # mean E(data+) - mean E(neg), raw energies
  data_energy: tf.Tensor
  negative_energy: tf.Tensor
  drift_norm: tf.Tensor      # mean eps^2/2 ||grad U|| at the last Langevin step
  gen_loss: tf.Tensor        # 0 when there is no generator update
  rejuvenated: tf.Tensor     # fraction of drawn bank slots re-initialised (0 without a bank)
  mean_age: tf.Tensor        # mean age of the drawn slots before the draw
  graduated: tf.Tensor       # fraction of drawn burn-in states that graduated (longrun)


class Trainer:
  """Builds the networks, optimizers, banks and checkpoint of one run, and trains them.

  Args:
    config: the run's `TrainConfig`.
    strategy: a tf.distribute strategy; default `distribute.make_strategy(config.strategy, ...)`.
    dataset_fn: optional `fn(input_context) -> tf.data.Dataset` of per-replica batches of
      `{'image': [B, H, W, C] float32 in [-1, 1], ...}`, replacing the config's dataset (tests).

  Rank-1 data (the 2-D toys, `{'image': [B, 2]}` in the toy's own coordinates) trains through
  the same step; only the sample pictures differ (`_write_points`: scatter plots, no
  TensorBoard image). Nothing on the training path clips states to [-1, 1].
  """

  def __init__(self, config: config_lib.TrainConfig,
               strategy: Optional[tf.distribute.Strategy] = None, dataset_fn=None):
    self.config = config
    self.strategy = strategy or distribute.make_strategy(
        config.strategy, num_cpu_devices=config.num_cpu_devices, tpu=config.tpu)
    self.num_replicas = self.strategy.num_replicas_in_sync
    self.num_local_replicas = distribute.num_local_replicas(self.strategy)
    if config.batch_size % self.num_replicas:
      raise ValueError(f"batch_size ({config.batch_size}) must be divisible by the number of "
                       f"replicas ({self.num_replicas})")
    self.batch_per_replica = config.batch_size // self.num_replicas
    logging.info("strategy %s: %d replica(s), %d local, batch %d per replica",
                 type(self.strategy).__name__, self.num_replicas, self.num_local_replicas,
                 self.batch_per_replica)
    self.image_shape = tuple(datasets.image_shape(config.dataset, config.image_size))
    self.is_chief = distribute.is_chief(self.strategy)
    self._worker = distribute.worker_index(self.strategy)
    # Networks compute in bfloat16 under mixed precision; energies, images and the Langevin
    # states stay float32. A per-model dtype policy, not Keras' global one.
    net_dtype = "mixed_bfloat16" if config.precision == "mixed_bfloat16" else None
    self._seed = tf.constant([config.seed, 0x5EB], tf.int32)
    # Keras initialisers draw from the global seed: fix it so a run's initial weights (and so
    # the whole run) are a function of config.seed.
    keras.utils.set_random_seed(config.seed)
    with self.strategy.scope():
      self.ebm = runs.build_ebm(config, dtype=net_dtype)
      self._energy = models.energy_fn(self.ebm)
      # Global step, lr scale (lowered by the divergence guard) and the restart count (folded
      # into every seed, so a retried stretch of steps draws new noise) are checkpointed.
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      self.lr_scale = tf.Variable(1.0, trainable=False, name="lr_scale",
                                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      self.restarts = tf.Variable(0, dtype=tf.int64, trainable=False, name="restarts",
                                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      self.ebm_optimizer = make_optimizer(config.ebm_lr_values, config.ebm_lr_boundaries,
                                          config.ebm_opt_decay, config.beta_1, config.beta_2,
                                          self.lr_scale)
      self.ebm_optimizer.build(self.ebm.trainable_variables)
      self.generator = None
      self.gen_optimizer = None
      if uses_generator(config.mcmc_init):
        self.generator = runs.build_generator(config, dtype=net_dtype)
        if config.gen_checkpoint:
          path = checkpoints.restore_from_run(config.gen_checkpoint, generator=self.generator)
          logging.info("generator loaded from %s", path)
        if config.update_generator:
          self.gen_optimizer = make_optimizer(config.gen_lr_values, config.gen_lr_boundaries,
                                              config.gen_opt_decay, config.beta_1,
                                              config.beta_2, self.lr_scale)
          self.gen_optimizer.build(self.generator.trainable_variables)
        else:
          self.generator.trainable = False
      self.prior_ebm = None
      if config.prior_model_dir:
        self.prior_ebm, prior_config, path = runs.restore_ebm(config.prior_model_dir,
                                                              dtype=net_dtype)
        if datasets.image_shape(prior_config.dataset, prior_config.image_size) != self.image_shape:
          raise ValueError(f"the prior run {config.prior_model_dir!r} models images of shape "
                           f"{datasets.image_shape(prior_config.dataset, prior_config.image_size)}; "
                           f"this run's are {self.image_shape}")
        self.prior_ebm.trainable = False
        logging.info("prior EBM (%s) loaded from %s", prior_config.ebm, path)
    self.bank = None
    if init_strategies.needs_bank(config.mcmc_init):
      # As the reference: the bank is split evenly over replicas, rounded down to a multiple
      # of the per-replica batch.
      slots = config.persistent_size // self.num_replicas
      slots = max(slots - slots % self.batch_per_replica, self.batch_per_replica)
      self.bank = init_strategies.ChainBank(
          config.mcmc_init, num_replicas=self.num_local_replicas, slots_per_replica=slots,
          image_shape=self.image_shape,
          latent_dim=config.latent_dim if uses_generator(config.mcmc_init) else 0,
          rejuvenation_prob=config.rejuvenation_prob, max_mcmc_updates=config.max_mcmc_updates,
          init_scale=config.persistent_init_scale)
    self.burnin_bank = None
    if config.burnin_size:
      slots = config.burnin_size // self.num_replicas
      self.burnin_bank = init_strategies.BurnInBank(
          config.mcmc_init, num_replicas=self.num_local_replicas,
          slots_per_replica=max(slots - slots % self.batch_per_replica, self.batch_per_replica),
          image_shape=self.image_shape, graduation_draws=config.graduation_draws,
          latent_dim=config.latent_dim if uses_generator(config.mcmc_init) else 0,
          init_scale=config.persistent_init_scale)
    self._dataset_fn = dataset_fn or self._default_dataset_fn
    trackables = dict(ebm=self.ebm, ebm_optimizer=self.ebm_optimizer, step=self.step,
                      lr_scale=self.lr_scale, restarts=self.restarts)
    if self.generator is not None:
      trackables["generator"] = self.generator
    if self.gen_optimizer is not None:
      trackables["gen_optimizer"] = self.gen_optimizer
    if self.prior_ebm is not None:
      trackables["prior_ebm"] = self.prior_ebm  # So that the run's checkpoint stands alone.
    if self.bank is not None:
      trackables["bank"] = self.bank
    if self.burnin_bank is not None:
      trackables["burnin_bank"] = self.burnin_bank
    # The data position: TF can checkpoint the iterator of a single-device pipeline; a
    # distributed iterator (MirroredStrategy and up) cannot be, so there a resumed run reseeds
    # the shuffle with the resume step (see make_iterator).
    self._iterator = None
    if distribute.is_default_strategy(self.strategy):
      self._iterator = self.make_iterator()
      trackables["data_iterator"] = self._iterator
    checkpoint_dir = os.path.join(config.model_dir, "checkpoints")
    if not self.is_chief:
      # Non-chief workers must write their part of a multi-worker save, to a private place.
      checkpoint_dir = os.path.join(config.model_dir, "worker_tmp",
                                    str(self.strategy.cluster_resolver.task_id))
    with self.strategy.scope():
      self.checkpointer = checkpoints.Checkpointer(checkpoint_dir,
                                                   max_to_keep=config.max_to_keep, **trackables)
    self._train_step = tf.function(self._train_step_body)
    self._langevin_kwargs = dict(num_steps=config.mcmc_steps, step_size=config.epsilon,
                                 temperature=config.mcmc_temp, tau=config.tau or None,
                                 grad_clip_norm=config.max_langevin_norm or None)
    if self.prior_ebm is not None:
      self._langevin_kwargs.update(prior_energy_fn=models.energy_fn(self.prior_ebm),
                                   prior_temperature=config.prior_temp)

  def _worker_seed(self, seed: tf.Tensor) -> tf.Tensor:
    """Folds the worker index into a seed of per-worker state (banks): each worker keeps its
    own chains. Worker 0 (and every single-host run) keeps the seed unchanged."""
    return _fold(seed, self._worker) if self._worker else seed

  # -- data ---------------------------------------------------------------------------------
  def _default_dataset_fn(self, input_context: tf.distribute.InputContext,
                          data_seed: int) -> tf.data.Dataset:
    c = self.config
    return datasets.make_train_dataset(
        c.dataset, batch_size_per_replica=self.batch_per_replica, data_dir=c.data_dir,
        image_size=c.image_size, random_crop=c.random_crop, seed=data_seed,
        input_context=input_context)

  def make_iterator(self, resume_step: int = 0):
    """An iterator over per-replica data batches.

    The shuffle seed is `config.seed`, or, for a distributed iterator resumed at
    `resume_step` > 0, `config.seed + 7919 * resume_step` (a documented reseed: TF cannot
    checkpoint a distributed iterator's position).
    """
    data_seed = self.config.seed + 7919 * resume_step
    if self._dataset_fn == self._default_dataset_fn:
      dataset_fn = lambda context: self._default_dataset_fn(context, data_seed)
    else:
      dataset_fn = self._dataset_fn
    return iter(self.strategy.distribute_datasets_from_function(dataset_fn))

  # -- negatives ----------------------------------------------------------------------------
  def _generate(self, latents: tf.Tensor, training: bool) -> tf.Tensor:
    return tf.cast(self.generator(latents, training=training), tf.float32)

  def _latents(self, seed: tf.Tensor, batch: int) -> tf.Tensor:
    return tf.random.stateless_normal([batch, self.config.latent_dim], seed=seed)

  def _fresh_states(self, seed: tf.Tensor, data_images: tf.Tensor):
    """Fresh initial states [B, H, W, C] (and latents [B, Z]) from the mode's init source."""
    c = self.config
    batch = tf.shape(data_images)[0]
    latents = tf.zeros([batch, 0])
    if uses_generator(c.mcmc_init):
      latents = self._latents(seed, batch)
      images = self._generate(latents, training=c.gen_batch_norm)
    elif c.mcmc_init in ("data", "data_persistent"):
      images = data_images
    else:
      images = c.persistent_init_scale * tf.random.stateless_uniform(
          tf.shape(data_images), seed=seed, minval=-1.0, maxval=1.0)
    return images, latents

  def _initial_states(self, slots: int, seed: tf.Tensor):
    """Initial bank contents [R, slots, ...] from the init source: (images, latents) or, for
    'persistent', (None, None) (the bank draws its own uniform noise)."""
    c = self.config
    rows = self.num_local_replicas
    if c.mcmc_init == "persistent":
      return None, None
    if c.mcmc_init == "data_persistent":
      # The training pipeline shuffles the still-encoded examples and decodes only the
      # rows * slots it hands out (a buffer of 10,000 decoded 224x224 images would be 6 GB).
      images = datasets.make_train_dataset(
          c.dataset, batch_size_per_replica=slots, data_dir=c.data_dir,
          image_size=c.image_size, shuffle_buffer=_BANK_INIT_SHUFFLE_BUFFER,
          seed=int(seed[0])).take(rows)
      return tf.stack([batch["image"] for batch in images]), None
    latents = tf.random.stateless_normal([rows, slots, c.latent_dim], seed=seed)
    chunks = [self._generate(chunk, training=False)
              for chunk in tf.split(tf.reshape(latents, [rows * slots, -1]),
                                    _even_chunks(rows * slots, 512))]
    return tf.reshape(tf.concat(chunks, 0), [rows, slots, *self.image_shape]), latents

  def initialize_bank(self) -> None:
    """Fills every bank slot from the init source (run once, at a fresh start)."""
    if self.bank is None:
      return
    seed = self._worker_seed(_fold(self._seed, _BANK_INIT))
    images, latents = self._initial_states(self.bank.slots_per_replica, seed)
    self.bank.initialize(images=images, latents=latents, seed=seed)
    if self.burnin_bank is not None:
      seed = _fold(seed, _BURN_DRAW)
      images, latents = self._initial_states(self.burnin_bank.slots_per_replica, seed)
      self.burnin_bank.initialize(seed, images=images, latents=latents)

  # -- the training step --------------------------------------------------------------------
  def _replica_step(self, batch, draw, burn_draw, step_seed):
    c = self.config
    context = tf.distribute.get_replica_context()
    replica_id = context.replica_id_in_sync_group
    seed = _fold(step_seed, replica_id)
    data_images = tf.cast(batch["image"], tf.float32)
    positives = data_images + c.data_epsilon * tf.random.stateless_normal(
        tf.shape(data_images), seed=_fold(seed, _DATA_NOISE))
    fresh_images, fresh_latents = self._fresh_states(_fold(seed, _FRESH), data_images)
    rejuvenated = tf.constant(0.0)
    mean_age = tf.constant(0.0)
    ages = None
    if self.bank is None:
      initial, latents = fresh_images, fresh_latents
    else:
      row = replica_id % self.num_local_replicas
      mask = draw.rejuvenate[row]
      initial, latents, ages = init_strategies.rejuvenate(
          draw.images[row], draw.latents[row], draw.ages[row], mask, fresh_images,
          fresh_latents if uses_generator(c.mcmc_init) else None)
      rejuvenated = tf.reduce_mean(tf.cast(mask, tf.float32))
      mean_age = tf.reduce_mean(tf.cast(draw.ages[row], tf.float32))

    result = langevin.langevin_sample(self._energy, initial, _fold(seed, _LANGEVIN),
                                      **self._langevin_kwargs)
    negatives = tf.stop_gradient(result.samples)
    graduated = tf.constant(0.0)
    burn_states = ()
    if self.burnin_bank is not None:
      row = replica_id % self.num_local_replicas
      burn_kwargs = dict(self._langevin_kwargs, num_steps=c.burnin_steps or c.mcmc_steps)
      burned = langevin.langevin_sample(self._energy, burn_draw.images[row],
                                        _fold(seed, _BURN_LANGEVIN), **burn_kwargs).samples
      refill_images, refill_latents = self._fresh_states(_fold(seed, _BURN_FRESH), data_images)
      has_latents = uses_generator(c.mcmc_init)
      mask, burn_images, burn_latents, counters = init_strategies.graduate(
          burned, burn_draw.latents[row], burn_draw.counters[row], c.graduation_draws,
          refill_images, refill_latents if has_latents else None)
      burn_states = (burn_images, burn_latents, counters)
      graduated = tf.reduce_mean(tf.cast(mask, tf.float32))

    with tf.GradientTape() as tape:
      data_energies = self._energy(positives)
      negative_energies = self._energy(negatives)
      loss = ml_loss(data_energies, negative_energies, c.mcmc_temp, self.num_replicas)
    grads = tape.gradient(loss, self.ebm.trainable_variables)
    if c.clip_ebm_grad > 0:
      grads = [tf.clip_by_norm(g, c.clip_ebm_grad) for g in grads]
    self.ebm_optimizer.apply_gradients(zip(grads, self.ebm.trainable_variables))

    gen_loss = tf.constant(0.0)
    if self.generator is not None and c.update_generator:
      with tf.GradientTape() as tape:
        reconstruction = self._generate(latents, training=c.gen_batch_norm)
        gen_loss = tf.reduce_sum(tf.square(negatives - reconstruction)) / tf.cast(
            tf.shape(negatives)[0], tf.float32)
        scaled = gen_loss / self.num_replicas
      gen_vars = self.generator.trainable_variables
      gen_grads = tape.gradient(scaled, gen_vars)
      if c.clip_gen_grad > 0:
        gen_grads = [tf.clip_by_norm(g, c.clip_gen_grad) for g in gen_grads]
      self.gen_optimizer.apply_gradients(zip(gen_grads, gen_vars))

    data_energy = tf.reduce_mean(data_energies)
    negative_energy = tf.reduce_mean(negative_energies)
    metrics = StepMetrics(
        loss=loss * self.num_replicas, energy_diff=data_energy - negative_energy,
        data_energy=data_energy, negative_energy=negative_energy,
        drift_norm=result.drift_norm, gen_loss=gen_loss, rejuvenated=rejuvenated,
        mean_age=mean_age, graduated=graduated)
    states = ()
    if self.bank is not None:
      states = (negatives, latents, ages)
      if self.burnin_bank is not None:
        # Graduates replace the just-updated states in the update bank, as fresh chains.
        states = (tf.where(_expand(mask, negatives), burned, negatives),
                  tf.where(_expand(mask, latents), burn_draw.latents[row], latents),
                  tf.where(mask, tf.zeros_like(ages), ages))
    return metrics, (states, burn_states)

  def _train_step_body(self, iterator) -> StepMetrics:
    step_seed = _fold(self._seed, self.step, self.restarts)
    draw = burn_draw = None
    if self.bank is not None:
      draw = self.bank.draw(self._worker_seed(_fold(step_seed, _DRAW)),
                            self.batch_per_replica)
    if self.burnin_bank is not None:
      burn_draw = self.burnin_bank.draw(self._worker_seed(_fold(step_seed, _BURN_DRAW)),
                                        self.batch_per_replica)
    batch = next(iterator)
    metrics, (states, burn_states) = self.strategy.run(
        self._replica_step, args=(batch, draw, burn_draw, step_seed))
    local = lambda value: tf.stack(self.strategy.experimental_local_results(value))
    if self.bank is not None:
      self.bank.write_back(draw.indices, *(local(s) for s in states))
    if self.burnin_bank is not None:
      self.burnin_bank.write_back(burn_draw.indices, *(local(s) for s in burn_states))
    self.step.assign_add(1)
    return StepMetrics(*(self.strategy.reduce(tf.distribute.ReduceOp.MEAN, m, axis=None)
                         for m in metrics))

  def train_step(self, iterator) -> StepMetrics:
    """Runs one distributed training step; returns replica-averaged diagnostics."""
    return self._train_step(iterator)

  # -- samples for grids --------------------------------------------------------------------
  def sample_grids(self, num_images: int) -> Dict[str, np.ndarray]:
    """Images for the grids: bank states, raw generator samples, and fresh chains run
    `eval_mcmc_steps` (default mcmc_steps) from the init source. Each [N, H, W, C] in R
    ([N, D] for rank-1 data)."""
    c = self.config
    grids = {}
    seed = _fold(self._seed, _EVAL, self.step)
    if self.bank is not None:
      grids["bank"] = self.bank.images[0, :num_images].numpy()
    if self.generator is not None:
      latents = self._latents(_fold(seed, _LATENT), num_images)
      initial = self._generate(latents, training=False)
      grids["generator"] = initial.numpy()
    elif c.mcmc_init in ("data", "data_persistent"):
      initial = next(iter(datasets.load_split(c.dataset, "train", data_dir=c.data_dir,
                                          image_size=c.image_size)
                          .map(lambda e: e["image"]).batch(num_images)))
    else:
      initial = c.persistent_init_scale * tf.random.stateless_uniform(
          [num_images, *self.image_shape], seed=_fold(seed, _FRESH), minval=-1.0, maxval=1.0)
    grids["samples"] = self._eval_chains(tf.convert_to_tensor(initial),
                                         _fold(seed, _LANGEVIN)).numpy()
    return grids

  @tf.function
  def _eval_chains(self, initial: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    kwargs = dict(self._langevin_kwargs,
                  num_steps=self.config.eval_mcmc_steps or self.config.mcmc_steps)
    return langevin.langevin_sample(self._energy, initial, seed, **kwargs).samples

  # -- the loop -----------------------------------------------------------------------------
  def restore_or_initialize(self) -> int:
    """Restores the newest readable checkpoint, or initialises the bank; returns the step."""
    path = self.checkpointer.restore_latest()
    if path is None:
      self.initialize_bank()
      logging.info("fresh start in %s", self.config.model_dir)
    else:
      logging.info("resumed from %s at step %d", path, int(self.step.numpy()))
    return int(self.step.numpy())

  def train(self) -> Dict[str, float]:
    """Trains to `config.train_steps`, writing checkpoints, TensorBoard events, PNG grids and a
    progress line; resumes from the newest checkpoint in model_dir; guards against divergence
    (see `_divergence`). Returns the metrics of the last step."""
    c = self.config
    start = self.restore_or_initialize()
    if self.is_chief:
      config_lib.save_config(c, c.model_dir)
    if self.checkpointer.latest_path is None:
      self.checkpointer.save(start)  # A good state for the divergence guard to return to.
    writer = summaries.SummaryWriter(os.path.join(c.model_dir, "tensorboard"),
                                     enabled=self.is_chief)
    if start == 0:
      writer.hparams({k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                      for k, v in dataclasses.asdict(c).items()})
      self._write_grids(writer, start)
    progress = summaries.Progress(c.train_steps, start_step=start, every_n_steps=c.log_every,
                                  log=self.is_chief)
    iterator = self._iterator or self.make_iterator(resume_step=start)
    failures = 0
    last = {}
    step = start
    while step < c.train_steps:
      metrics = {k: float(v) for k, v in self.train_step(iterator)._asdict().items()}
      problem = self._divergence(metrics)
      if problem:
        failures += 1
        if failures > c.max_divergence_restarts:
          raise FloatingPointError(
              f"training diverged at step {step + 1} ({problem}) {failures} times in a row; "
              f"stopping. The last good checkpoint is {self.checkpointer.latest_path}; lower "
              "the learning rate or epsilon, or raise --max_divergence_restarts")
        step = self._recover(problem, step + 1, writer)
        continue
      step += 1
      last = metrics
      if step % c.log_every == 0 or step == c.train_steps:
        progress.update(step, energy_diff=metrics["energy_diff"], drift=metrics["drift_norm"])
        scalars = dict(metrics, lr=float(tf.convert_to_tensor(self.ebm_optimizer.learning_rate)))
        if progress.steps_per_sec:
          scalars["steps_per_sec"] = progress.steps_per_sec
        writer.scalars(step, scalars)
        if self.bank is not None:
          writer.histogram(step, "bank/age", self.bank.ages[0])
      if step % c.image_every == 0 or step == c.train_steps:
        self._write_grids(writer, step)
      if step % c.checkpoint_every == 0 or step == c.train_steps:
        self.checkpointer.save(step)
        failures = 0
    writer.flush()
    writer.close()
    return last

  def _divergence(self, metrics: Dict[str, float]) -> Optional[str]:
    """What is wrong with a step's metrics (non-finite, or |energy| above --max_abs_energy),
    or None."""
    bad = sorted(k for k, v in metrics.items() if not np.isfinite(v))
    if bad:
      return "non-finite " + ", ".join(f"{k}={metrics[k]}" for k in bad)
    # The weights too: on CPUs where oneDNN fuses Conv2D+ReLU, NaN inputs or weights can come
    # out of the fused forward as energy 0 (finite metrics) while the update made them NaN.
    if not all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in self.ebm.trainable_variables):
      return "non-finite EBM weights after the update"
    limit = self.config.max_abs_energy
    if limit > 0:
      worst = max(abs(metrics["data_energy"]), abs(metrics["negative_energy"]))
      if worst > limit:
        return f"|energy| {worst:.4g} > max_abs_energy {limit:g}"
    return None

  def _recover(self, problem: str, failed_step: int, writer) -> int:
    """Restores the last good checkpoint, lowers the lr by --divergence_lr_factor and bumps the
    restart count (so the retried steps draw new noise). Returns the restored step."""
    restarts = int(self.restarts.numpy()) + 1
    path = self.checkpointer.restore_latest()
    if path is None:
      raise FloatingPointError(f"training diverged at step {failed_step} ({problem}) and there "
                               "is no checkpoint to return to")
    self.restarts.assign(restarts)
    self.lr_scale.assign(self.lr_scale * self.config.divergence_lr_factor)
    step = int(self.step.numpy())
    logging.warning("divergence at step %d (%s): restored %s (step %d), lr scale now %g, "
                    "restart %d", failed_step, problem, path, step, float(self.lr_scale.numpy()),
                    restarts)
    writer.scalars(failed_step, {"divergence/restarts": restarts,
                                 "divergence/lr_scale": float(self.lr_scale.numpy())})
    return step

  def _write_grids(self, writer, step: int) -> None:
    if not self.is_chief:
      return
    grids = self.sample_grids(self.config.num_grid_images)
    for name, images in grids.items():
      path = os.path.join(self.config.model_dir, "samples", f"{name}_{step:07d}.png")
      if len(self.image_shape) == 1:
        self._write_points(images, path, f"{name}, step {step}")
        continue
      writer.images(step, f"images/{name}", images)
      summaries.save_image_grid(images, path)

  # -- rank-1 (non-image) data, e.g. the 2-D toys ---------------------------------------------
  def _write_points(self, points: np.ndarray, path: str, title: str) -> None:
    """Rank-1 samples [N, D]: a scatter plot PNG of the first two coordinates instead of an
    image grid, and no TensorBoard image."""
    c = self.config
    bounds = datasets.toy_density(c.dataset).bounds if datasets.is_toy(c.dataset) else None
    summaries.save_scatter_plot(points[:, :2], path, bounds=bounds, title=title)


def _expand(mask: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
  """[B] bool mask broadcastable against `like` [B, ...]."""
  return tf.reshape(mask, [-1] + [1] * (like.shape.rank - 1))


def _even_chunks(total: int, chunk: int):
  sizes = [chunk] * (total // chunk)
  if total % chunk:
    sizes.append(total % chunk)
  return sizes
