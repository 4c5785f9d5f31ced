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
from ebm_tf.training import loop
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
    self.mode = config.init_mode
    self.strategy = loop.make_strategy(config, strategy)
    self.num_replicas = self.strategy.num_replicas_in_sync
    self.num_local_replicas = distribute.num_local_replicas(self.strategy)
    self.batch_per_replica = loop.batch_per_replica(config.batch_size, self.num_replicas)
    logging.info("strategy %s: %d replica(s), %d local, batch %d per replica",
                 type(self.strategy).__name__, self.num_replicas, self.num_local_replicas,
                 self.batch_per_replica)
    self.image_shape = tuple(datasets.image_shape(config.dataset, config.image_size))
    self.is_chief = distribute.is_chief(self.strategy)
    self._worker = distribute.worker_index(self.strategy)
    self._seed = tf.constant([config.seed, 0x5EB], tf.int32)
    # Keras initialisers draw from the global seed: fix it so a run's initial weights (and so
    # the whole run) are a function of config.seed.
    keras.utils.set_random_seed(config.seed)
    # Networks compute in bfloat16 under mixed precision; energies, images and the Langevin
    # states stay float32. A per-model dtype policy, not Keras' global one.
    net_dtype = "mixed_bfloat16" if config.precision == "mixed_bfloat16" else None
    with self.strategy.scope():
      self._build_ebm_and_counters(net_dtype)
      self._build_generator(net_dtype)
      self._restore_prior(net_dtype)
    self.bank, self.burnin_bank = self._build_banks()
    if dataset_fn is None:
      self._dataset_fn = self._default_dataset_fn
    else:
      self._dataset_fn = lambda input_context, _: dataset_fn(input_context)
    self.checkpointer = self._build_checkpointer()
    self._train_step = tf.function(self._train_step_body)
    self._langevin_kwargs = self._langevin_settings()

  # -- construction (in this order: Keras draws the initial weights from the global seed) --------
  def _build_ebm_and_counters(self, net_dtype: Optional[str]) -> None:
    """The EBM, its optimizer and the checkpointed counters (call inside `strategy.scope()`)."""
    c = self.config
    self.ebm = runs.build_ebm(c, dtype=net_dtype)
    self._energy = models.energy_fn(self.ebm)
    # Global step, lr scale (lowered by the divergence guard) and the restart count (folded
    # into every seed, so a retried stretch of steps draws new noise) are checkpointed.
    first = tf.VariableAggregation.ONLY_FIRST_REPLICA
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                            aggregation=first)
    self.lr_scale = tf.Variable(1.0, trainable=False, name="lr_scale", aggregation=first)
    self.restarts = tf.Variable(0, dtype=tf.int64, trainable=False, name="restarts",
                                aggregation=first)
    self.ebm_optimizer = make_optimizer(c.ebm_lr_values, c.ebm_lr_boundaries, c.ebm_opt_decay,
                                        c.beta_1, c.beta_2, self.lr_scale)
    self.ebm_optimizer.build(self.ebm.trainable_variables)

  def _build_generator(self, net_dtype: Optional[str]) -> None:
    """The cooperative generator of the coop modes (restored from `gen_checkpoint` if set) and its
    optimizer when it is updated; both None for the other modes (inside `strategy.scope()`)."""
    c = self.config
    self.generator = None
    self.gen_optimizer = None
    if not self.mode.uses_generator:
      return
    self.generator = runs.build_generator(c, dtype=net_dtype)
    if c.gen_checkpoint:
      path = checkpoints.restore_from_run(c.gen_checkpoint, generator=self.generator)
      logging.info("generator loaded from %s", path)
    if c.update_generator:
      self.gen_optimizer = make_optimizer(c.gen_lr_values, c.gen_lr_boundaries, c.gen_opt_decay,
                                          c.beta_1, c.beta_2, self.lr_scale)
      self.gen_optimizer.build(self.generator.trainable_variables)
    else:
      self.generator.trainable = False

  def _restore_prior(self, net_dtype: Optional[str]) -> None:
    """The frozen prior EBM of a longrun correction run (`prior_model_dir`), else None."""
    c = self.config
    self.prior_ebm = None
    if not c.prior_model_dir:
      return
    self.prior_ebm, prior_config, path = runs.restore_ebm(c.prior_model_dir, dtype=net_dtype)
    prior_shape = datasets.image_shape(prior_config.dataset, prior_config.image_size)
    if prior_shape != self.image_shape:
      raise ValueError(f"the prior run {c.prior_model_dir!r} models images of shape "
                       f"{prior_shape}; this run's are {self.image_shape}")
    self.prior_ebm.trainable = False
    logging.info("prior EBM (%s) loaded from %s", prior_config.ebm, path)

  def _slots_per_replica(self, size: int) -> int:
    """As the reference: a bank of `size` slots is split evenly over the replicas, rounded down to
    a multiple of the per-replica batch (at least one batch)."""
    slots = size // self.num_replicas
    return max(slots - slots % self.batch_per_replica, self.batch_per_replica)

  def _build_banks(self):
    """(ChainBank or None, BurnInBank or None): the persistent modes' bank and the longrun burn-in
    bank (`burnin_size` > 0), created outside `strategy.scope()` (host-side variables)."""
    c = self.config
    bank = burnin_bank = None
    latent_dim = self.mode.latent_dim(c.latent_dim)
    if self.mode.needs_bank:
      bank = init_strategies.ChainBank(
          self.mode, num_replicas=self.num_local_replicas,
          slots_per_replica=self._slots_per_replica(c.persistent_size),
          image_shape=self.image_shape, latent_dim=latent_dim,
          rejuvenation_prob=c.rejuvenation_prob, max_mcmc_updates=c.max_mcmc_updates,
          init_scale=c.persistent_init_scale)
    if c.burnin_size:
      burnin_bank = init_strategies.BurnInBank(
          self.mode, num_replicas=self.num_local_replicas,
          slots_per_replica=self._slots_per_replica(c.burnin_size),
          image_shape=self.image_shape, graduation_draws=c.graduation_draws,
          latent_dim=latent_dim, init_scale=c.persistent_init_scale)
    return bank, burnin_bank

  def _build_checkpointer(self) -> checkpoints.Checkpointer:
    """The run's full-state Checkpointer: networks, optimizers, counters, banks and, under the
    default strategy, the data iterator (`loop.checkpointable_iterator`)."""
    trackables = dict(ebm=self.ebm, ebm_optimizer=self.ebm_optimizer, step=self.step,
                      lr_scale=self.lr_scale, restarts=self.restarts)
    optional = dict(generator=self.generator, gen_optimizer=self.gen_optimizer,
                    prior_ebm=self.prior_ebm,  # So that the run's checkpoint stands alone.
                    bank=self.bank, burnin_bank=self.burnin_bank)
    trackables.update({k: v for k, v in optional.items() if v is not None})
    # The data position: TF can checkpoint the iterator of a single-device pipeline; a
    # distributed iterator (MirroredStrategy and up) cannot be, so there a resumed run reseeds
    # the shuffle with the resume step (see make_iterator).
    self._iterator = loop.checkpointable_iterator(self.strategy, self.make_iterator)
    if self._iterator is not None:
      trackables["data_iterator"] = self._iterator
    # Non-chief workers must write their part of a multi-worker save, to a private place.
    checkpoint_dir = (loop.worker_private_dir(self.config.model_dir, self.strategy)
                      or os.path.join(self.config.model_dir, "checkpoints"))
    with self.strategy.scope():
      return checkpoints.Checkpointer(checkpoint_dir, max_to_keep=self.config.max_to_keep,
                                      **trackables)

  def _langevin_settings(self) -> Dict:
    """The fixed kwargs of `langevin.langevin_sample` for this run's negatives."""
    c = self.config
    kwargs = dict(num_steps=c.mcmc_steps, step_size=c.epsilon, temperature=c.mcmc_temp,
                  tau=c.tau or None, grad_clip_norm=c.max_langevin_norm or None)
    if self.prior_ebm is not None:
      kwargs.update(prior_energy_fn=models.energy_fn(self.prior_ebm),
                    prior_temperature=c.prior_temp)
    return kwargs

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
    `resume_step` > 0, `config.seed + 7919 * resume_step` (`loop.data_seed`, a documented
    reseed: TF cannot checkpoint a distributed iterator's position). A `dataset_fn` given to the
    constructor is used as it is.
    """
    return loop.make_iterator(self.strategy, self._dataset_fn, self.config.seed, resume_step)

  # -- negatives ----------------------------------------------------------------------------
  def _generate(self, latents: tf.Tensor, training: bool) -> tf.Tensor:
    return tf.cast(self.generator(latents, training=training), tf.float32)

  def _chain_starts(self, seed: tf.Tensor, batch_shape, data_images=None, *,
                    training: bool = False, generator_batch_size: Optional[int] = None):
    """This run's `init_strategies.fresh_states`: (images float32 [*batch_shape, *image_shape],
    latents float32 [*batch_shape, Z]) from the mode's init source (`Z = 0` without a generator;
    `training` is the generator's batch-norm mode)."""
    c = self.config
    generator_fn = None
    if self.generator is not None:
      generator_fn = lambda z: self._generate(z, training=training)
    return init_strategies.fresh_states(
        self.mode, seed, batch_shape, self.image_shape,
        latent_dim=self.mode.latent_dim(c.latent_dim), init_scale=c.persistent_init_scale,
        data_images=data_images, generator_fn=generator_fn,
        generator_batch_size=generator_batch_size)

  def _fresh_states(self, seed: tf.Tensor, data_images: tf.Tensor):
    """Fresh initial states [B, H, W, C] (and latents [B, Z]) from the mode's init source."""
    batch = data_images.shape[0]
    if batch is None:
      batch = tf.shape(data_images)[0]
    return self._chain_starts(seed, batch, data_images, training=self.config.gen_batch_norm)

  def _initial_states(self, slots: int, seed: tf.Tensor):
    """Initial bank contents [R, slots, ...] from the init source: (images, latents) or, for
    'persistent', (None, None) (the bank draws its own uniform noise)."""
    c = self.config
    rows = self.num_local_replicas
    if not (self.mode.uses_data or self.mode.uses_generator):
      return None, None
    data_images = None
    if self.mode.uses_data:
      # The training pipeline shuffles the still-encoded examples and decodes only the
      # rows * slots it hands out (a buffer of 10,000 decoded 224x224 images would be 6 GB).
      images = datasets.make_train_dataset(
          c.dataset, batch_size_per_replica=slots, data_dir=c.data_dir,
          image_size=c.image_size, shuffle_buffer=_BANK_INIT_SHUFFLE_BUFFER,
          seed=int(seed[0])).take(rows)
      data_images = tf.stack([batch["image"] for batch in images])
    images, latents = self._chain_starts(seed, (rows, slots), data_images,
                                         generator_batch_size=512)
    return images, (latents if self.mode.uses_latents else None)

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
          fresh_latents if self.mode.uses_latents else None)
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
      mask, burn_images, burn_latents, counters = init_strategies.graduate(
          burned, burn_draw.latents[row], burn_draw.counters[row], c.graduation_draws,
          refill_images, refill_latents if self.mode.uses_latents else None)
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
    data_images = None
    if self.mode.uses_data:
      data_images = next(iter(datasets.load_split(c.dataset, "train", data_dir=c.data_dir,
                                                  image_size=c.image_size)
                              .map(lambda e: e["image"]).batch(num_images)))
    start_seed = _fold(seed, _LATENT if self.mode.uses_generator else _FRESH)
    batch = num_images if data_images is None else int(data_images.shape[0])
    initial, _ = self._chain_starts(start_seed, batch, data_images)
    if self.generator is not None:
      grids["generator"] = initial.numpy()
    grids["samples"] = self._eval_chains(initial, _fold(seed, _LANGEVIN)).numpy()
    return grids

  @tf.function
  def _eval_chains(self, initial: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    kwargs = dict(self._langevin_kwargs,
                  num_steps=self.config.eval_mcmc_steps or self.config.mcmc_steps)
    return langevin.langevin_sample(self._energy, initial, seed, **kwargs).samples

  # -- the loop -----------------------------------------------------------------------------
  def restore_or_initialize(self) -> int:
    """Restores the newest readable checkpoint, or initialises the bank; returns the step."""
    return loop.restore_or_initialize(self.checkpointer, self.step, self.config.model_dir,
                                      initialize=self.initialize_bank)

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
    def new_progress(first_step):
      return summaries.Progress(c.train_steps, start_step=first_step, every_n_steps=c.log_every,
                                log=self.is_chief)

    progress = new_progress(start)
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
        progress = new_progress(step)  # Steps after the restored one run (and log) again.
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
