"""MCMC initialisation strategies: fresh states, persistent chain banks, the longrun burn-in bank.

Five modes (`mcmc_init` in the reference code) decide where the Langevin chains of a training step start:

| mode              | start of the negatives                        | rejuvenation source (prob. p, or age cap)   |
|-------------------|-----------------------------------------------|---------------------------------------------|
| `coop`            | fresh `x = G(z)`, `z ~ N(0, I)` every step    | -                                           |
| `data`            | a fresh data batch every step                 | -                                           |
| `persistent`      | bank slots, initialised `init_scale * U[-1,1]`| `init_scale * U[-1, 1]`                     |
| `data_persistent` | bank slots, initialised with data images      | fresh data images                           |
| `coop_persistent` | bank of `(z, x)` pairs, `x = G(z)` at start   | `z_new ~ N(0, I)`, `x <- G(z_new)`          |

Only the persistent modes keep state between steps (`InitMode.needs_bank`); that state is a
`ChainBank`. `InitMode` owns every predicate on the modes; `fresh_states` is the one path that
starts chains (training, its banks, its sample grids, and `ebm_tf.evaluation.sampling`).
The longrun correction stage (docs/paper_settings.md section 6.4) adds a `BurnInBank` whose
states graduate into the update bank after `graduation_draws` draws.

Banks are per replica (docs/DESIGN.md, "Distribution and banks"): every variable has a leading
local-replica axis `[R, N, ...]` and lives on the host. The train step calls `draw` and `write_back`
in cross-replica context (inside its `tf.function`, outside `strategy.run`); each replica takes its
own row `draw.images[r]` and applies the pure per-row functions `rejuvenate` / `graduate`. Create the
banks outside `strategy.scope()`: a variable created inside the scope would be mirrored onto every
device instead of living once on the host. The variables are tracked attributes of a `tf.Module`, so
`tf.train.Checkpoint(bank=bank)` saves and restores them.

A training step with a chain bank, per replica row `r` (cross-replica parts marked *):
    d = bank.draw(seed, B)                                   # * rows [R, B, ...]
    fresh_x, fresh_z = fresh_states(mode, seed_r, B, ...)    # G(z_new), data batch or noise
    x, z, ages = rejuvenate(d.images[r], d.latents[r], d.ages[r], d.rejuvenate[r], fresh_x, fresh_z)
    x = langevin(x)                                          # K steps, then the network updates
    bank.write_back(d.indices, stack(x), stack(z), stack(ages))   # *
"""

import dataclasses
import math
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import tensorflow as tf

from ebm_tf.internal import checks

MODES = ('coop', 'data', 'persistent', 'data_persistent', 'coop_persistent')
_DEFAULT_DEVICE = '/cpu:0'


# --------------------------------------------------------------------------------------------------
# Modes and argument checks.

@dataclasses.dataclass(frozen=True)
class InitMode:
  """One `mcmc_init` mode, parsed and validated once; owns every predicate on the modes.

  `InitMode(name)` (or `InitMode.parse(mode)`, which also accepts an `InitMode`) raises a
  ValueError listing `MODES` for any other name. `str(mode)` is the name.

  | mode              | uses_generator (= uses_latents) | uses_data | needs_bank |
  |-------------------|---------------------------------|-----------|------------|
  | `coop`            | yes                             | -         | -          |
  | `data`            | -                               | yes       | -          |
  | `persistent`      | -                               | -         | yes        |
  | `data_persistent` | -                               | yes       | yes        |
  | `coop_persistent` | yes                             | -         | yes        |

  Attributes:
    name: str, one of `MODES` (the `mcmc_init` string of the config and the flagfiles).
    uses_generator: bool, chains start (and restart) from `G(z)`, `z ~ N(0, I)`.
    uses_latents: bool, each chain state keeps its generator latent `z` (the same modes as
      `uses_generator`: the cooperative generator step regresses the states on their latents).
    uses_data: bool, chains start (and restart) from data images.
    needs_bank: bool, the persistent modes, which keep a `ChainBank` between training steps;
      `coop` and `data` start fresh chains every step.
  """

  name: str
  uses_generator: bool = dataclasses.field(init=False)
  uses_latents: bool = dataclasses.field(init=False)
  uses_data: bool = dataclasses.field(init=False)
  needs_bank: bool = dataclasses.field(init=False)

  def __post_init__(self):
    name = self.name.name if isinstance(self.name, InitMode) else self.name
    if not isinstance(name, str) or name not in MODES:
      raise ValueError(f'mcmc_init mode must be one of {list(MODES)}; got {name!r}')
    for key, value in dict(name=name, uses_generator=name.startswith('coop'),
                           uses_latents=name.startswith('coop'), uses_data=name.startswith('data'),
                           needs_bank=name.endswith('persistent')).items():
      object.__setattr__(self, key, value)

  @classmethod
  def parse(cls, mode: Union[str, 'InitMode']) -> 'InitMode':
    """`mode` itself if it is an `InitMode`, else `InitMode(mode)` (a ValueError for a bad name)."""
    return mode if isinstance(mode, cls) else cls(mode)

  def latent_dim(self, latent_dim: int) -> int:
    """The latent size `Z` that the mode's chain states keep: `latent_dim` (the generator's,
    an int > 0) when `uses_latents`, else 0."""
    return latent_dim if self.uses_latents else 0

  def __str__(self) -> str:
    return self.name


def _check_int(name: str, value, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f'{name} must be an int >= {minimum}; got {value!r}')
  return value


def _check_image_shape(image_shape) -> Tuple[int, ...]:
  try:
    shape = tuple(image_shape)
  except TypeError:
    shape = None
  if (not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape)):
    raise ValueError('image_shape must be a non-empty sequence of positive ints, e.g. (32, 32, 3); '
                     f'got {image_shape!r}')
  return shape


def _check_latent_dim(mode: InitMode, latent_dim) -> int:
  latent_dim = _check_int('latent_dim', latent_dim, 0)
  if mode.uses_latents and latent_dim == 0:
    raise ValueError(f'mode {mode.name!r} keeps generator latents: latent_dim must be > 0; got 0')
  if not mode.uses_latents and latent_dim != 0:
    raise ValueError(f'latent_dim is only used by the coop modes; mode {mode.name!r} needs '
                     f'latent_dim=0, got {latent_dim}')
  return latent_dim


def _check_init_scale(init_scale) -> float:
  if (isinstance(init_scale, bool) or not isinstance(init_scale, (int, float))
      or not math.isfinite(init_scale) or init_scale <= 0):
    raise ValueError(f'init_scale must be a finite float > 0; got {init_scale!r}')
  return float(init_scale)


def _check_prob(p) -> float:
  if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
    raise ValueError(f'rejuvenation_prob must be a float in [0, 1]; got {p!r}')
  return float(p)


def _as_tensor(name: str, value, dtype: tf.DType, expected_shape: Sequence[Optional[int]]) -> tf.Tensor:
  """Converts `value` to `dtype` and checks its (static) shape against `expected_shape`."""
  if isinstance(value, tf.Tensor) and value.dtype != dtype:
    raise ValueError(f'{name} must have dtype {dtype.name}; got {value.dtype.name}')
  value = tf.convert_to_tensor(value, dtype=dtype)
  if not value.shape.is_compatible_with(expected_shape):
    shown = [('batch' if d is None else d) for d in expected_shape]
    raise ValueError(f'{name} must have shape {shown}; got {value.shape}')
  return value


def _expand_mask(mask: tf.Tensor, rank: int) -> tf.Tensor:
  """Appends unit axes to `mask` so that it broadcasts against a tensor of rank `rank`."""
  return tf.reshape(mask, tf.concat([tf.shape(mask), tf.ones([rank - mask.shape.rank], tf.int32)], 0))


# --------------------------------------------------------------------------------------------------
# Fresh states and the pure per-row bookkeeping.

def fresh_states(mode: Union[str, InitMode],
                 seed,
                 batch_shape,
                 image_shape: Sequence[int],
                 *,
                 latent_dim: int = 0,
                 init_scale: float = 1.0,
                 data_images=None,
                 generator_fn=None,
                 generator_batch_size: Optional[int] = None) -> Tuple[tf.Tensor, tf.Tensor]:
  """New chain starts for `mode`: the one chain-initialisation path of training and sampling.

  The init of `coop`/`data` every training step, the rejuvenation source and the initial contents
  of the banks, the chains of the training grids and of `ebm_tf.evaluation.sampling`:
  - `coop`, `coop_persistent`: `z ~ N(0, I)` of shape `[*batch_shape, latent_dim]` from `seed`, and
    `images = generator_fn(z)` (called on `z` flattened to `[prod(batch_shape), latent_dim]`, in
    consecutive chunks of at most `generator_batch_size` rows when that is set).
  - `data`, `data_persistent`: `images = data_images` (a data batch in [-1, 1]); `seed` is unused.
  - `persistent`: `images = init_scale * U[-1, 1]` from `seed`. (The reference `train.py` rejuvenates
    with plain `U[-1, 1]` and `train_longrun.py` with the scaled noise: the two agree at the default
    `init_scale=1`.)

  Args:
    mode: one of `MODES`, or an `InitMode`.
    seed: stateless seed, int32/int64 `[2]`.
    batch_shape: int `B` or a tuple such as `(R, B)`, each entry a Python int >= 1 or (inside a
      `tf.function`, for a batch only known at run time) a scalar int32 tensor.
    image_shape: the per-state shape, e.g. `(32, 32, 3)`, or `(2,)` for the 2-D toys.
    latent_dim: `Z` for the coop modes (> 0), 0 otherwise.
    init_scale: scale of the uniform noise (`persistent` only), > 0.
    data_images: float32 `[*batch_shape, *image_shape]`, required by the data modes.
    generator_fn: callable `[n, Z] float32 -> [n, *image_shape] float32`, required by the coop modes,
      e.g. `lambda z: gen(z, training=gen_batch_norm)`.
    generator_batch_size: None (one call), or an int >= 1: the most latents per `generator_fn` call
      (needs a static `batch_shape`); the result does not depend on it.

  Returns:
    `(images, latents)`: float32 `[*batch_shape, *image_shape]` and float32
    `[*batch_shape, latent_dim]` (`[*batch_shape, 0]` for the non-coop modes).
  """
  mode = InitMode.parse(mode)
  image_shape = _check_image_shape(image_shape)
  latent_dim = _check_latent_dim(mode, latent_dim)
  batch_shape = _check_batch_shape(batch_shape)
  empty_latents = tf.zeros(batch_shape + (0,), tf.float32)
  if mode.name == 'persistent':
    seed = checks.check_seed(seed, static_shape=False)
    init_scale = _check_init_scale(init_scale)
    noise = tf.random.stateless_uniform(batch_shape + image_shape, seed, minval=-1.0, maxval=1.0)
    return init_scale * noise, empty_latents
  static_shape = tuple(d if isinstance(d, int) else None for d in batch_shape) + image_shape
  if mode.uses_data:
    if data_images is None:
      raise ValueError(f'mode {mode.name!r} rejuvenates from data: data_images of shape '
                       f'{list(static_shape)} is required')
    return _as_tensor('data_images', data_images, tf.float32, static_shape), empty_latents
  if generator_fn is None:
    raise ValueError(f'mode {mode.name!r} starts chains from a generator: generator_fn is required')
  seed = checks.check_seed(seed, static_shape=False)
  latents = tf.random.stateless_normal(batch_shape + (latent_dim,), seed)
  images = _generate_in_chunks(generator_fn, tf.reshape(latents, [-1, latent_dim]), image_shape,
                               generator_batch_size)
  return tf.reshape(images, batch_shape + image_shape), latents


def _check_batch_shape(batch_shape) -> Tuple:
  batch_shape = (batch_shape,) if not isinstance(batch_shape, (tuple, list)) else tuple(batch_shape)
  for d in batch_shape:
    if not (isinstance(d, tf.Tensor) and d.dtype.is_integer and d.shape.rank == 0):
      _check_int('batch_shape entries', d, 1)
  return batch_shape


def _generate_in_chunks(generator_fn, latents: tf.Tensor, image_shape: Tuple[int, ...],
                        chunk_size: Optional[int]) -> tf.Tensor:
  """`generator_fn` on latents `[n, Z]` (in chunks of at most `chunk_size`) -> float32 `[n, ...]`."""
  if chunk_size is None:
    parts = [latents]
  else:
    chunk_size = _check_int('generator_batch_size', chunk_size, 1)
    total = latents.shape[0]
    if total is None:
      raise ValueError('generator_batch_size needs a static batch_shape (Python ints)')
    sizes = [chunk_size] * (total // chunk_size) + ([total % chunk_size] if total % chunk_size else [])
    parts = tf.split(latents, sizes) if len(sizes) > 1 else [latents]
  outputs = []
  for part in parts:
    images = tf.convert_to_tensor(generator_fn(part), tf.float32)
    if images.shape[1:] != image_shape:
      raise ValueError(f'generator_fn must return [n, {", ".join(map(str, image_shape))}] images; '
                       f'got {images.shape}')
    outputs.append(images)
  return outputs[0] if len(outputs) == 1 else tf.concat(outputs, 0)


def rejuvenate(images, latents, ages, mask, fresh_images,
               fresh_latents=None) -> Tuple[tf.Tensor, Optional[tf.Tensor], tf.Tensor]:
  """Restarts the masked chains of one replica's batch and ages the others (the reference bookkeeping).

  Where `mask`: state <- fresh state, latent <- fresh latent, age <- 0. Elsewhere the state and the
  latent are kept and age <- age + 1. The age therefore counts the draws since the last rejuvenation;
  the cap test in `ChainBank.draw` (`age > max_mcmc_updates`) reads the age stored before the draw, so
  with cap 2 a chain serves at most 4 consecutive K-step segments (the rejuvenating one and the draws
  at ages 0, 1, 2) before it is restarted.

  Args:
    images: float32 `[B, *image_shape]`, the drawn states (any leading shape equal to `ages`' works).
    latents: float32 `[B, Z]`, or None / a `[B, 0]` tensor when the mode keeps no latents.
    ages: int32 `[B]`, ages before this draw.
    mask: bool `[B]`, True where the chain restarts (`BankDraw.rejuvenate`).
    fresh_images: float32 `[B, *image_shape]`, from `fresh_states`.
    fresh_latents: float32 `[B, Z]`, required when `latents` has `Z > 0`.

  Returns:
    `(images, latents, new_ages)` with the shapes and dtypes of the inputs (`latents` as given when
    it is None or has `Z = 0`).
  """
  images = tf.convert_to_tensor(images, tf.float32)
  ages = tf.convert_to_tensor(ages, tf.int32)
  mask = tf.convert_to_tensor(mask, tf.bool)
  fresh_images = tf.convert_to_tensor(fresh_images, tf.float32)
  if not mask.shape.is_compatible_with(ages.shape):
    raise ValueError(f'mask must have the shape of ages {ages.shape}; got {mask.shape}')
  if not fresh_images.shape.is_compatible_with(images.shape):
    raise ValueError(f'fresh_images must have the shape of images {images.shape}; got {fresh_images.shape}')
  new_images = tf.where(_expand_mask(mask, images.shape.rank), fresh_images, images)
  new_ages = tf.where(mask, tf.zeros_like(ages), ages + 1)
  if latents is None:
    return new_images, None, new_ages
  latents = tf.convert_to_tensor(latents, tf.float32)
  if latents.shape[-1] == 0:
    return new_images, latents, new_ages
  if fresh_latents is None:
    raise ValueError(f'latents have Z={latents.shape[-1]} > 0, so fresh_latents of shape '
                     f'{latents.shape} are required')
  fresh_latents = tf.convert_to_tensor(fresh_latents, tf.float32)
  if not fresh_latents.shape.is_compatible_with(latents.shape):
    raise ValueError(f'fresh_latents must have the shape of latents {latents.shape}; got {fresh_latents.shape}')
  new_latents = tf.where(_expand_mask(mask, latents.shape.rank), fresh_latents, latents)
  return new_images, new_latents, new_ages


def graduate(burn_images, burn_latents, counters, graduation_draws: int, fresh_images,
             fresh_latents=None) -> Tuple[tf.Tensor, tf.Tensor, Optional[tf.Tensor], tf.Tensor]:
  """Longrun burn-in bookkeeping for one replica's batch (docs/paper_settings.md 6.4, step 3).

  A drawn burn-in state whose counter (read at the draw) is `>= graduation_draws` graduates: the caller
  copies it (the `burn_images` passed in, after their burn-in Langevin steps) into the update-bank batch
  at the same batch positions, e.g. `tf.where(mask[:, None, None, None], burn_images, update_images)`.
  Its burn-in slot is refilled with the fresh state and its counter reset to 0; every other counter
  goes up by 1.

  Args:
    burn_images: float32 `[B, *image_shape]`, drawn burn-in states after their Langevin steps.
    burn_latents: float32 `[B, Z]` or None / `[B, 0]` when no latents are kept.
    counters: int32 `[B]`, the counters returned by `BurnInBank.draw`.
    graduation_draws: int >= 1, the threshold `G` (750 in the CIFAR-10 config).
    fresh_images: float32 `[B, *image_shape]`, refills for graduated slots (`fresh_states`).
    fresh_latents: float32 `[B, Z]`, required when `burn_latents` has `Z > 0`.

  Returns:
    `(graduated_mask, new_burn_images, new_burn_latents, new_counters)`: bool `[B]`, the burn-in batch
    to write back (refilled where graduated), its latents, int32 `[B]` counters.
  """
  graduation_draws = _check_int('graduation_draws', graduation_draws, 1)
  counters = tf.convert_to_tensor(counters, tf.int32)
  mask = counters >= graduation_draws
  # Same update as `rejuvenate`: refill and reset where graduated, otherwise count one more draw.
  new_images, new_latents, new_counters = rejuvenate(
      burn_images, burn_latents, counters, mask, fresh_images, fresh_latents)
  return mask, new_images, new_latents, new_counters


# --------------------------------------------------------------------------------------------------
# Banks.

class BankDraw(NamedTuple):
  """One draw from a `ChainBank`, one row per local replica.

  Attributes:
    indices: int32 `[R, B]`, slot indices, distinct within a row (drawn without replacement).
    images: float32 `[R, B, *image_shape]`, the current states of those slots.
    latents: float32 `[R, B, Z]` (`coop_persistent`), or a `[R, B, 0]` tensor otherwise.
    ages: int32 `[R, B]`, consecutive uses since the last rejuvenation, as stored before this draw.
    rejuvenate: bool `[R, B]`, `uniform < p` or (`max_mcmc_updates > 0` and `ages > max_mcmc_updates`).
  """
  indices: tf.Tensor
  images: tf.Tensor
  latents: tf.Tensor
  ages: tf.Tensor
  rejuvenate: tf.Tensor


class BurnInDraw(NamedTuple):
  """One draw from a `BurnInBank` (a tuple: `indices, images, latents, counters = bank.draw(...)`).

  Attributes:
    indices: int32 `[R, B]`, distinct within a row.
    images: float32 `[R, B, *image_shape]`.
    latents: float32 `[R, B, Z]`, or `[R, B, 0]`.
    counters: int32 `[R, B]`, draws since the slot was (re)filled, as stored before this draw.
  """
  indices: tf.Tensor
  images: tf.Tensor
  latents: tf.Tensor
  counters: tf.Tensor


class _SlotBank(tf.Module):
  """Shared storage of `ChainBank` and `BurnInBank`: images, latents and an int32 counter per slot."""

  def __init__(self, mode, num_replicas, slots_per_replica, image_shape, latent_dim, init_scale,
               device, counter_name, name):
    super().__init__(name=name)
    mode = InitMode.parse(mode)
    if not mode.needs_bank:
      raise ValueError(f'{type(self).__name__} is only for the persistent modes '
                       f'{[m for m in MODES if InitMode(m).needs_bank]}; mode {mode.name!r} starts '
                       'fresh chains every step (use fresh_states)')
    self._mode = mode
    self._num_replicas = _check_int('num_replicas', num_replicas, 1)
    self._slots = _check_int('slots_per_replica', slots_per_replica, 1)
    self._image_shape = _check_image_shape(image_shape)
    self._latent_dim = _check_latent_dim(mode, latent_dim)
    self._init_scale = _check_init_scale(init_scale)
    self._device = device
    if tf.distribute.has_strategy():
      raise ValueError(f'{type(self).__name__} must be created outside strategy.scope() so that its '
                       'variables are single host-side copies; got it inside '
                       f'{type(tf.distribute.get_strategy()).__name__}.scope()')
    r, n = self._num_replicas, self._slots
    with tf.device(device), self.name_scope:
      self.images = tf.Variable(tf.zeros((r, n) + self._image_shape), trainable=False, name='images')
      self.latents = tf.Variable(tf.zeros((r, n, self._latent_dim)), trainable=False, name='latents')
      setattr(self, counter_name,
              tf.Variable(tf.zeros((r, n), tf.int32), trainable=False, name=counter_name))
    self._counter_name = counter_name

  def _counter_var(self) -> tf.Variable:
    return getattr(self, self._counter_name)

  @property
  def mode(self) -> str:
    """The bank's `mcmc_init` mode name, one of the persistent `MODES`."""
    return self._mode.name

  @property
  def num_replicas(self) -> int:
    return self._num_replicas

  @property
  def slots_per_replica(self) -> int:
    return self._slots

  @property
  def image_shape(self) -> Tuple[int, ...]:
    return self._image_shape

  @property
  def latent_dim(self) -> int:
    return self._latent_dim

  @property
  def init_scale(self) -> float:
    return self._init_scale

  def _state_shape(self, batch: Optional[int]) -> Tuple[Optional[int], ...]:
    return (self._num_replicas, batch) + self._image_shape

  def _assign_states(self, images, latents, seed) -> None:
    """Fills every slot: `persistent` from `seed`, the other modes from the given arrays."""
    full = self._state_shape(self._slots)
    latent_shape = (self._num_replicas, self._slots, self._latent_dim)
    if self._mode.name == 'persistent':
      if images is not None or latents is not None:
        raise ValueError("mode 'persistent' fills the bank with init_scale * U[-1, 1] from seed; "
                         'images and latents must be None')
      images, _ = fresh_states('persistent', seed, full[:2], self._image_shape,
                               init_scale=self._init_scale)
    else:
      if images is None:
        raise ValueError(f'mode {self._mode.name!r} needs initial images of shape {list(full)}')
      images = _as_tensor('images', images, tf.float32, full)
      if self._mode.uses_latents:
        if latents is None:
          raise ValueError(f"mode 'coop_persistent' needs the latents of the initial images, shape "
                           f'{list(latent_shape)}')
        self.latents.assign(_as_tensor('latents', latents, tf.float32, latent_shape))
      elif latents is not None:
        raise ValueError(f'mode {self._mode.name!r} keeps no latents; latents must be None')
    self.images.assign(images)

  def _draw_rows(self, seed, batch_size_per_replica):
    """Draws B distinct slots per row; returns (indices [R, B], nd-indices [R, B, 2])."""
    b = _check_int('batch_size_per_replica', batch_size_per_replica, 1)
    if b > self._slots:
      raise ValueError(f'batch_size_per_replica must be <= slots_per_replica={self._slots}; got {b}')
    seed = checks.check_seed(seed, static_shape=False)
    u = tf.random.stateless_uniform([self._num_replicas, self._slots],
                                    tf.random.experimental.stateless_fold_in(seed, 0))
    # The B largest of N iid uniforms are a uniformly random ordered subset (a partial shuffle).
    indices = tf.math.top_k(u, k=b, sorted=True).indices
    return indices, self._nd_indices(indices)

  def _nd_indices(self, indices: tf.Tensor) -> tf.Tensor:
    rows = tf.broadcast_to(tf.range(self._num_replicas, dtype=indices.dtype)[:, None], tf.shape(indices))
    return tf.stack([rows, indices], axis=-1)

  def _gather(self, nd):
    images = self.images.gather_nd(nd)
    if self._latent_dim:
      latents = self.latents.gather_nd(nd)
    else:  # ResourceGatherNd rejects empty params.
      latents = tf.zeros(tf.concat([tf.shape(nd)[:2], [0]], 0), tf.float32)
    return images, latents, self._counter_var().gather_nd(nd)

  def _write_back(self, indices, images, latents, counters, counters_name) -> None:
    indices = _as_tensor('indices', indices, tf.int32, (self._num_replicas, None))
    b = indices.shape[1]
    images = _as_tensor('images', images, tf.float32, self._state_shape(b))
    counters = _as_tensor(counters_name, counters, tf.int32, (self._num_replicas, b))
    if self._latent_dim:
      if latents is None:
        raise ValueError(f'mode {self._mode.name!r} keeps latents: write_back needs latents of shape '
                         f'{[self._num_replicas, b, self._latent_dim]}')
      latents = _as_tensor('latents', latents, tf.float32, (self._num_replicas, b, self._latent_dim))
    with tf.device(self._device):
      nd = self._nd_indices(indices)
      self.images.scatter_nd_update(nd, images)
      self._counter_var().scatter_nd_update(nd, counters)
      if self._latent_dim:
        self.latents.scatter_nd_update(nd, latents)


class ChainBank(_SlotBank):
  """Per-replica persistent chain states for the modes `persistent`, `data_persistent`, `coop_persistent`.

  Only the persistent modes have a bank (`InitMode.needs_bank`); `coop` and `data` start every step from
  `fresh_states`. Variables (not trainable; on `device`, the host by default; create the bank outside
  `strategy.scope()`):
    images: float32 `[R, N, *image_shape]`, the chain states.
    latents: float32 `[R, N, Z]`, the generator latent of each state (`Z = 0` unless `coop_persistent`).
    ages: int32 `[R, N]`, draws since the last rejuvenation.

  Reference settings: shortrun N=10K, p=0.5, cap 2; midrun N=25K, p=0.05, no cap; longrun update bank
  p=0 (its states are replaced by graduating burn-in states instead).
  """

  def __init__(self, mode: str, *, num_replicas: int, slots_per_replica: int,
               image_shape: Sequence[int], latent_dim: int = 0, rejuvenation_prob: float,
               max_mcmc_updates: int = 0, init_scale: float = 1.0,
               device: Optional[str] = _DEFAULT_DEVICE, name: Optional[str] = None):
    """Creates the (zero-filled) bank; call `initialize` before the first draw.

    Args:
      mode: one of `persistent`, `data_persistent`, `coop_persistent`.
      num_replicas: R, local replicas (`strategy.num_replicas_in_sync` on one host), >= 1.
      slots_per_replica: N, slots per replica, >= 1 (the reference uses bank_size // R, rounded down
        to a multiple of the per-replica batch).
      image_shape: per-state shape, e.g. `(32, 32, 3)`.
      latent_dim: Z > 0 for `coop_persistent`, 0 otherwise.
      rejuvenation_prob: p in [0, 1], the chance that a drawn slot restarts from a fresh state.
      max_mcmc_updates: age cap, int >= 0; 0 means no cap.
      init_scale: scale of the `persistent` uniform initial noise, > 0.
      device: where the variables live; None for the enclosing device scope.
      name: module name.
    """
    rejuvenation_prob = _check_prob(rejuvenation_prob)
    max_mcmc_updates = _check_int('max_mcmc_updates', max_mcmc_updates, 0)
    super().__init__(mode, num_replicas, slots_per_replica, image_shape, latent_dim, init_scale,
                     device, 'ages', name)
    self._rejuvenation_prob = rejuvenation_prob
    self._max_mcmc_updates = max_mcmc_updates

  @property
  def rejuvenation_prob(self) -> float:
    return self._rejuvenation_prob

  @property
  def max_mcmc_updates(self) -> int:
    return self._max_mcmc_updates

  def initialize(self, images=None, latents=None, seed=None) -> None:
    """Fills every slot and sets every age to 0.

    Args:
      images: float32 `[R, N, *image_shape]`: data images (`data_persistent`) or `G(latents)`
        (`coop_persistent`); must be None for `persistent`.
      latents: float32 `[R, N, Z]`, required by `coop_persistent` only.
      seed: stateless seed `[2]`, required by `persistent` (states `init_scale * U[-1, 1]`).
    """
    with tf.device(self._device):
      self._assign_states(images, latents, seed)
      self.ages.assign(tf.zeros_like(self.ages))

  def draw(self, seed, batch_size_per_replica: int, *, rejuvenation_prob=None) -> BankDraw:
    """Draws B distinct slots per replica row and decides which of them restart (cross-replica).

    Args:
      seed: stateless seed, int32/int64 `[2]`.
      batch_size_per_replica: B, a Python int in [1, N].
      rejuvenation_prob: optional override of p (float or scalar float32 tensor, e.g. from a
        schedule); the constructor's p when None.

    Returns:
      A `BankDraw` of `[R, B, ...]` tensors; `rejuvenate` is `U < p` or, when `max_mcmc_updates > 0`,
      `ages > max_mcmc_updates`.
    """
    if rejuvenation_prob is None:
      p = self._rejuvenation_prob
    elif isinstance(rejuvenation_prob, (int, float)):
      p = _check_prob(rejuvenation_prob)
    else:
      p = rejuvenation_prob
    with tf.device(self._device):
      indices, nd = self._draw_rows(seed, batch_size_per_replica)
      images, latents, ages = self._gather(nd)
      u = tf.random.stateless_uniform(tf.shape(indices),
                                      tf.random.experimental.stateless_fold_in(seed, 1))
      mask = u < tf.cast(p, tf.float32)
      if self._max_mcmc_updates > 0:
        mask = tf.logical_or(mask, ages > self._max_mcmc_updates)
    return BankDraw(indices=indices, images=images, latents=latents, ages=ages, rejuvenate=mask)

  def write_back(self, indices, images, latents, ages) -> None:
    """Scatters the step's final states into the slots they were drawn from (cross-replica).

    Args:
      indices: int32 `[R, B]`, `BankDraw.indices` (distinct within a row).
      images: float32 `[R, B, *image_shape]`, states after rejuvenation and Langevin.
      latents: float32 `[R, B, Z]` (`coop_persistent`, after rejuvenation); None or `[R, B, 0]` otherwise.
      ages: int32 `[R, B]`, the new ages from `rejuvenate`.
    """
    self._write_back(indices, images, latents, ages, 'ages')


class BurnInBank(_SlotBank):
  """Per-replica burn-in bank of the longrun correction stage (docs/paper_settings.md 6.4).

  States are burned in for `graduation_draws` draws before they enter the update bank (`graduate`).
  Variables (not trainable, on `device`, the host by default; create outside `strategy.scope()`):
    images: float32 `[R, N_burn, *image_shape]`.
    latents: float32 `[R, N_burn, Z]` (`Z = 0` unless `coop_persistent`).
    counters: int32 `[R, N_burn]`, draws since the slot was (re)filled; initialised
      Uniform{0, ..., graduation_draws - 1} so that graduation is a steady stream.
  Reference: N_burn = 1,000, graduation_draws = 750 (about 75K Langevin steps of burn-in at K = 100).
  """

  def __init__(self, mode: str, *, num_replicas: int, slots_per_replica: int,
               image_shape: Sequence[int], graduation_draws: int, latent_dim: int = 0,
               init_scale: float = 1.0, device: Optional[str] = _DEFAULT_DEVICE,
               name: Optional[str] = None):
    """Creates the (zero-filled) bank; call `initialize` before the first draw.

    Args:
      mode: the refill source, one of `persistent`, `data_persistent`, `coop_persistent`.
      num_replicas: R >= 1.
      slots_per_replica: N_burn >= 1.
      image_shape: per-state shape, e.g. `(32, 32, 3)`.
      graduation_draws: G >= 1; a drawn state with counter >= G graduates.
      latent_dim: Z > 0 for `coop_persistent`, 0 otherwise.
      init_scale: scale of the `persistent` uniform initial noise, > 0.
      device: where the variables live; None for the enclosing device scope.
      name: module name.
    """
    graduation_draws = _check_int('graduation_draws', graduation_draws, 1)
    super().__init__(mode, num_replicas, slots_per_replica, image_shape, latent_dim, init_scale,
                     device, 'counters', name)
    self._graduation_draws = graduation_draws

  @property
  def graduation_draws(self) -> int:
    return self._graduation_draws

  def initialize(self, seed, images=None, latents=None) -> None:
    """Fills every slot and draws the counters Uniform{0, ..., G - 1}.

    Args:
      seed: stateless seed `[2]` (counters; also the states in mode `persistent`).
      images: float32 `[R, N_burn, *image_shape]` (data or `G(latents)`); None for `persistent`.
      latents: float32 `[R, N_burn, Z]`, `coop_persistent` only.
    """
    seed = checks.check_seed(seed, static_shape=False)
    with tf.device(self._device):
      self._assign_states(images, latents, tf.random.experimental.stateless_fold_in(seed, 1))
    self.randomize_counters(tf.random.experimental.stateless_fold_in(seed, 2))

  def randomize_counters(self, seed) -> None:
    """Sets every counter to an independent Uniform{0, ..., G - 1} draw from `seed` (the reference
    does this at the start and whenever the MCMC schedule changes)."""
    seed = checks.check_seed(seed, static_shape=False)
    with tf.device(self._device):
      self.counters.assign(tf.random.stateless_uniform(
          [self._num_replicas, self._slots], seed, minval=0, maxval=self._graduation_draws,
          dtype=tf.int32))

  def draw(self, seed, batch_size_per_replica: int) -> BurnInDraw:
    """Draws B distinct burn-in slots per replica row (cross-replica).

    Args:
      seed: stateless seed, int32/int64 `[2]`.
      batch_size_per_replica: B, a Python int in [1, N_burn].

    Returns:
      `BurnInDraw(indices, images, latents, counters)` of `[R, B, ...]` tensors.
    """
    with tf.device(self._device):
      indices, nd = self._draw_rows(seed, batch_size_per_replica)
      images, latents, counters = self._gather(nd)
    return BurnInDraw(indices=indices, images=images, latents=latents, counters=counters)

  def write_back(self, indices, images, latents, counters) -> None:
    """Scatters the burn-in batch (refilled where graduated) back into its slots (cross-replica).

    Args:
      indices: int32 `[R, B]`, `BurnInDraw.indices`.
      images: float32 `[R, B, *image_shape]`, `new_burn_images` of `graduate`, stacked over replicas.
      latents: float32 `[R, B, Z]` (`coop_persistent`); None or `[R, B, 0]` otherwise.
      counters: int32 `[R, B]`, `new_counters` of `graduate`.
    """
    self._write_back(indices, images, latents, counters, 'counters')
