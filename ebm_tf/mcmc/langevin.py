"""The project's one Langevin sampler: unadjusted Langevin (ULA) and, for validation, MALA.

The chains target p(x) ∝ exp(-U(x)) with the potential

    U(x) = (E(x)/T + E0(x)/T0) / joint_temperature + ||x||^2 / (2 tau^2)

where E is the energy network (raw output, low = data), T the sampling temperature, E0 an optional
frozen prior energy with its temperature T0 (longrun), and the Gaussian tau term is optional.
One step, with eps the step size and xi ~ N(0, I):

    g  = dU/dx of sum_i U(x_i)                      (optionally clipped per sample)
    x <- x - (eps^2 / 2) * g + eps * xi            (no clamping of pixel values)

This is the reference update of Hill et al. (2022) and equals `tfp.mcmc.UncalibratedLangevin` with
`target_log_prob_fn=-U` and `step_size=eps**2`. With `metropolis=True` each step is a MALA
accept/reject on that proposal (used for validation only; training never uses it).

Noise is stateless: step t draws `tf.random.stateless_normal(shape, seed=stateless_fold_in(seed, t))`
and MALA's uniform uses `stateless_fold_in(step_seed, 1)`, so the same seed gives bitwise the same
samples on the same device and compile mode (XLA's stateless RNG draws other numbers than TF's
kernels for the same seed, so `jit_compile=True` gives a different, equally reproducible stream).

Per-chain seeds (unadjusted Langevin only): with `seed` of shape [B, 2], chain i's noise depends
only on its own seed `seed[i]` and the step, never on the other chains of the batch
(`per_chain_noise` is the definition): chain i draws its noise in blocks of
`CHAIN_NOISE_BLOCK_STEPS` steps, block k = `stateless_normal([CHAIN_NOISE_BLOCK_STEPS, *sample_shape],
seed=stateless_fold_in(seed[i], k))`, and step t uses row t mod CHAIN_NOISE_BLOCK_STEPS of block
t div CHAIN_NOISE_BLOCK_STEPS. Drawing B small tensors one by one costs one RNG kernel per chain,
so doing it every step would cost about as much as a Langevin step of a small network at batch 64;
drawn once per block, it costs ~1/CHAIN_NOISE_BLOCK_STEPS of that (`bench/serving_bench.py`
measures it). A chain's samples then depend only on its own start and seed, provided the energy
network's per-sample gradient does not depend on the batch it is computed in (true of the
project's convolutional EBMs on CPU, checked in export/purifier_module_test.py; a matmul-heavy
network or another device may round differently at other batch sizes).
"""

from typing import Any, Callable, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

from ebm_tf.internal import checks

_DYNAMIC_ARGS = ("num_steps", "step_size", "temperature")
# Steps of per-chain noise drawn at once (part of the per-chain noise definition: changing it
# changes the samples of per-chain-seeded runs).
CHAIN_NOISE_BLOCK_STEPS = 32

_FIXED_ARGS = ("tau", "prior_energy_fn", "prior_temperature", "joint_temperature",
               "grad_clip_norm", "metropolis", "noise_fn")


class LangevinResult(NamedTuple):
  """What `langevin_sample` returns.

  Attributes:
    samples: float32, the shape of `x_init`: the final states of the chains.
    energies: float32 [B]: the raw main energy E(x) (not divided by T) at `samples`.
    drift_norm: float32 scalar: mean over the batch of (eps^2/2) * ||g_i||_2 at the last step,
      with g_i the (clipped) gradient of U for chain i; 0 when `num_steps` is 0.
    acceptance_rate: float32 scalar: fraction of accepted MALA proposals over steps and chains;
      1.0 for unadjusted Langevin (and when `num_steps` is 0).
  """
  samples: tf.Tensor
  energies: tf.Tensor
  drift_norm: tf.Tensor
  acceptance_rate: tf.Tensor


def _static_value(value):
  """The value of a Python number or a tensor whose value is known at trace time, else None."""
  if tf.is_tensor(value):
    return tf.get_static_value(value)
  return value


def _positive_scalar(value, name, asserts):
  """Returns `value` as a float32 scalar tensor; checks it is finite and > 0."""
  static = _static_value(value)
  if static is not None:
    static = np.asarray(static)
    if static.shape != () or not np.issubdtype(static.dtype, np.number):
      raise ValueError(f"{name} must be a positive scalar; got {static!r}")
    if not (np.isfinite(static) and static > 0):
      raise ValueError(f"{name} must be a finite number > 0; got {static}")
  tensor = tf.cast(value, tf.float32)
  if tensor.shape.rank not in (None, 0):
    raise ValueError(f"{name} must be a positive scalar; got shape {tensor.shape}")
  if static is None:
    asserts.append(tf.debugging.Assert(
        tf.logical_and(tensor > 0, tf.math.is_finite(tensor)),
        [f"{name} must be a finite number > 0; got", tensor]))
  return tensor


def _num_steps(value, asserts):
  """Returns `value` as an int32 scalar tensor; checks it is an integer >= 0."""
  if isinstance(value, bool) or (not tf.is_tensor(value) and
                                 not isinstance(value, (int, np.integer))):
    raise ValueError(f"num_steps must be an integer >= 0; got {value!r}")
  if tf.is_tensor(value) and not value.dtype.is_integer:
    raise ValueError(f"num_steps must be an integer >= 0; got dtype {value.dtype.name}")
  static = _static_value(value)
  if static is not None and (np.asarray(static).shape != () or static < 0):
    raise ValueError(f"num_steps must be an integer >= 0; got {static}")
  tensor = tf.cast(value, tf.int32)
  if static is None:
    asserts.append(tf.debugging.Assert(
        tensor >= 0, ["num_steps must be an integer >= 0; got", tensor]))
  return tensor


def _energy_vector(energies, name):
  """Squeezes energies of shape [B] or [B, 1] to a float32 [B] vector."""
  energies = tf.convert_to_tensor(energies)
  if energies.shape.rank is None:
    energies = tf.reshape(energies, [-1])
  elif energies.shape.rank == 2 and energies.shape[1] == 1:
    energies = energies[:, 0]
  elif energies.shape.rank != 1:
    raise ValueError(f"{name} must return energies of shape [batch] or [batch, 1]; "
                     f"got {energies.shape}")
  return tf.cast(energies, tf.float32)


def _check_x_init(x_init):
  """Converts `x_init` to float32 and checks dtype, rank and finiteness."""
  if not tf.is_tensor(x_init):
    x_init = np.asarray(x_init)
  dtype = tf.as_dtype(x_init.dtype)
  if not dtype.is_floating:
    raise ValueError(f"x_init must be float32 images in [-1, 1]; got dtype {dtype.name}")
  x = tf.cast(x_init, tf.float32)
  if x.shape.rank is None or x.shape.rank < 2:
    raise ValueError(f"x_init must have shape [batch, ...] (rank >= 2); got shape {x.shape}")
  finite = tf.reduce_all(tf.math.is_finite(x))
  if tf.executing_eagerly():
    if not bool(finite):
      raise ValueError("x_init must be finite; got NaN or Inf values")
    return x, []
  return x, [tf.debugging.Assert(finite, ["x_init must be finite; got NaN or Inf values"])]


def per_chain_noise(chain_seeds, block_index, sample_shape) -> tf.Tensor:
  """The noise of `CHAIN_NOISE_BLOCK_STEPS` consecutive steps of each chain (per-chain seeds).

  Block k of chain i is `tf.random.stateless_normal([CHAIN_NOISE_BLOCK_STEPS, *sample_shape],
  seed=stateless_fold_in(chain_seeds[i], k))`: it depends on chain i's seed only. One RNG op per
  chain (a `tf.map_fn` over the chains).

  Args:
    chain_seeds: int32/int64 [B, 2], one stateless seed per chain.
    block_index: int32 scalar k; block k covers steps k*S .. k*S + S - 1, S =
      CHAIN_NOISE_BLOCK_STEPS.
    sample_shape: int32 [rank - 1] tensor or list, the non-batch shape of a chain's state.

  Returns:
    float32 [CHAIN_NOISE_BLOCK_STEPS, B, *sample_shape]: row j is the noise of step k*S + j.
  """
  shape = tf.concat([[CHAIN_NOISE_BLOCK_STEPS], tf.cast(sample_shape, tf.int32)], 0)

  def one_chain(chain_seed):
    return tf.random.stateless_normal(
        shape, seed=tf.random.experimental.stateless_fold_in(chain_seed, block_index),
        dtype=tf.float32)

  draws = tf.map_fn(one_chain, chain_seeds, fn_output_signature=tf.float32)  # [B, S, ...]
  rank = tf.rank(draws)
  return tf.transpose(draws, tf.concat([[1, 0], tf.range(2, rank)], 0))


def langevin_sample(energy_fn: Callable[[tf.Tensor], tf.Tensor],
                    x_init,
                    seed,
                    *,
                    num_steps,
                    step_size,
                    temperature=1.0,
                    tau=None,
                    prior_energy_fn: Optional[Callable[[tf.Tensor], tf.Tensor]] = None,
                    prior_temperature=1.0,
                    joint_temperature=1.0,
                    grad_clip_norm=None,
                    metropolis: bool = False,
                    noise_fn: Optional[Callable[[tf.Tensor, tf.Tensor, tf.DType],
                                                tf.Tensor]] = None) -> LangevinResult:
  """Runs `num_steps` Langevin steps of U (see the module docstring) from `x_init`.

  Works eagerly and inside a `tf.function` (also in a replica context): the loop is a
  `tf.while_loop`, and `num_steps`, `step_size`, `temperature` may be Python numbers or scalar
  tensors. Call it outside any `GradientTape` that watches the networks: the sampler is not
  differentiable and its outputs are wrapped in `tf.stop_gradient`. Eagerly the loop runs op by op:
  wrap the call in a `tf.function` or use `make_sampler` for speed. Cost: `num_steps` gradient
  evaluations plus one forward pass for the final energies (MALA: `num_steps + 1` gradients).

  Args:
    energy_fn: maps x (float32 [B, ...]) to energies [B] or [B, 1] (e.g. a Keras EBM called with
      `training=False`); low energy = data.
    x_init: float [B, ...] (rank >= 2), e.g. NHWC images in [-1, 1]; cast to float32. Must be
      finite.
    seed: int32/int64 [2] stateless seed, or [B, 2] one seed per chain (unadjusted Langevin
      only, not with `noise_fn`): chain i's noise is then `per_chain_noise` of `seed[i]`, so its
      result does not depend on the other chains in the batch (see the module docstring).
    num_steps: int >= 0, number of Langevin steps K.
    step_size: eps > 0; the drift is (eps^2/2) * grad U and the noise scale is eps.
    temperature: T > 0; E enters U as E/T.
    tau: std of the Gaussian term ||x||^2/(2 tau^2); None or 0 turns it off.
    prior_energy_fn: optional frozen prior energy E0 with the same signature as `energy_fn`.
    prior_temperature: T0 > 0; E0 enters U as E0/T0.
    joint_temperature: > 0; divides E/T + E0/T0 (not the tau term), as in longrun evaluation.
    grad_clip_norm: if set (> 0), each chain's gradient is clipped by global norm over its
      non-batch axes to `grad_clip_norm / (eps^2/2)`, so its drift norm is at most this value.
    metropolis: Python bool; if True, each proposal is accepted or rejected by MALA's
      Metropolis-Hastings test with proposal density q(x'|x) = N(x - (eps^2/2) g(x), eps^2 I).
    noise_fn: optional `noise_fn(step_index, shape, dtype) -> xi` replacing the default stateless
      normal noise (for tests and oracles); `step_index` is an int32 scalar tensor, `shape` an
      int32 tensor equal to `tf.shape(x_init)`.

  Returns:
    A `LangevinResult` (samples, energies, drift_norm, acceptance_rate); see its docstring.

  Raises:
    ValueError: for a non-float or rank < 2 `x_init`, NaN/Inf in an eager `x_init`, a bad seed,
      `num_steps` < 0 or not an integer, and non-positive `step_size`, `temperature`,
      `prior_temperature`, `joint_temperature` or `grad_clip_norm` known at trace time.
      Values only known at run time are checked by graph assertions
      (`tf.errors.InvalidArgumentError`; they are no-ops under XLA).
  """
  x, seed, per_chain, num_steps, potential, asserts = _check_arguments(
      energy_fn, x_init, seed, num_steps=num_steps, step_size=step_size, temperature=temperature,
      tau=tau, prior_energy_fn=prior_energy_fn, prior_temperature=prior_temperature,
      joint_temperature=joint_temperature, grad_clip_norm=grad_clip_norm, metropolis=metropolis,
      noise_fn=noise_fn)
  with tf.control_dependencies(asserts):
    x = tf.identity(x)
  if metropolis:
    x, energies, drift_norm, acceptance = _mala_chain(potential, x, seed, num_steps)
  else:
    x, energies, drift_norm, acceptance = _ula_chain(potential, x, seed, per_chain, num_steps)
  return LangevinResult(samples=tf.stop_gradient(x), energies=tf.stop_gradient(energies),
                        drift_norm=tf.stop_gradient(drift_norm),
                        acceptance_rate=tf.stop_gradient(acceptance))


class _Potential:
  """U of the module docstring with checked settings: its gradients, the noise, the drift norm.

  All tensors are float32 scalars except the callables; `sample_axes` are the non-batch axes.
  """

  def __init__(self, energy_fn, rank, eps, temperature, prior_energy_fn, prior_temperature,
               joint_temperature, clip, inv_tau2, noise_fn):
    self.energy_fn, self.eps, self.temperature = energy_fn, eps, temperature
    self.prior_energy_fn, self.prior_temperature = prior_energy_fn, prior_temperature
    self.joint_temperature, self.clip, self.inv_tau2 = joint_temperature, clip, inv_tau2
    self.noise_fn = noise_fn
    self.half_eps2 = 0.5 * tf.square(eps)
    self.sample_axes = list(range(1, rank))
    self._divide_by_joint = _static_value(joint_temperature) != 1.0  # Skip a no-op divide.

  def sq_norm(self, t):
    """[B, ...] -> [B]: squared norm of each chain's tensor."""
    return tf.reduce_sum(tf.square(t), axis=self.sample_axes)

  def potential_and_grad(self, x):
    """Returns (U [B], E [B], clipped dU/dx) at x."""
    with tf.GradientTape() as tape:
      tape.watch(x)
      energy = _energy_vector(self.energy_fn(x), "energy_fn")
      u = energy / self.temperature
      if self.prior_energy_fn is not None:
        u += _energy_vector(self.prior_energy_fn(x), "prior_energy_fn") / self.prior_temperature
      if self._divide_by_joint:
        u /= self.joint_temperature
      if self.inv_tau2 is not None:
        u += 0.5 * self.inv_tau2 * self.sq_norm(x)
      total = tf.reduce_sum(u)
    return u, energy, self._clipped_gradient(tape, total, x)

  def grad(self, x):
    """dU/dx at x (clipped), as `potential_and_grad` without the per-chain U.

    The energies are summed before dividing by the temperatures: bitwise the same gradient (each
    chain's energy gets the upstream value 1/T either way), without the backward pass of a
    [batch] / scalar broadcast (whose shape bookkeeping is dynamic when the batch size is not
    known at trace time, as in `make_sampler`; docs/benchmarks.md).
    """
    with tf.GradientTape() as tape:
      tape.watch(x)
      total = tf.reduce_sum(_energy_vector(self.energy_fn(x), "energy_fn")) / self.temperature
      if self.prior_energy_fn is not None:
        total += (tf.reduce_sum(_energy_vector(self.prior_energy_fn(x), "prior_energy_fn")) /
                  self.prior_temperature)
      if self._divide_by_joint:
        total /= self.joint_temperature
      if self.inv_tau2 is not None:
        total += 0.5 * self.inv_tau2 * tf.reduce_sum(tf.square(x))
    return self._clipped_gradient(tape, total, x)

  def _clipped_gradient(self, tape, total, x):
    grad = tape.gradient(total, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    if self.clip is not None:
      grad = tf.clip_by_norm(grad, self.clip / self.half_eps2, axes=self.sample_axes)
    return grad

  def noise(self, t, step_seed, shape):
    """xi ~ N(0, I) of `shape` for step t: `noise_fn` if given, else stateless from step_seed."""
    if self.noise_fn is not None:
      return tf.cast(self.noise_fn(t, shape, tf.float32), tf.float32)
    return tf.random.stateless_normal(shape, seed=step_seed, dtype=tf.float32)

  def drift_norm_of(self, grad):
    """(eps^2/2) * mean over chains of ||grad_i||: float32 scalar."""
    return self.half_eps2 * tf.reduce_mean(tf.sqrt(self.sq_norm(grad)))


def _check_arguments(energy_fn, x_init, seed, *, num_steps, step_size, temperature, tau,
                     prior_energy_fn, prior_temperature, joint_temperature, grad_clip_norm,
                     metropolis, noise_fn):
  """Checks `langevin_sample`'s arguments (see its Raises).

  Returns:
    (x float32 [B, ...], seed [2] or [B, 2], per_chain bool, num_steps int32 scalar,
    a `_Potential`, the list of graph assertions for values only known at run time).
  """
  if not isinstance(metropolis, bool):
    raise ValueError(f"metropolis must be a Python bool; got {metropolis!r}")
  x, asserts = _check_x_init(x_init)
  seed = checks.check_seed(seed, per_chain_like=x, asserts=asserts)
  per_chain = seed.shape.rank == 2
  if per_chain and (metropolis or noise_fn is not None):
    raise ValueError("per-chain seeds (seed of shape [batch, 2]) work with unadjusted Langevin "
                     "and the default noise only; got "
                     + ("metropolis=True" if metropolis else "a noise_fn"))
  num_steps = _num_steps(num_steps, asserts)
  eps = _positive_scalar(step_size, "step_size", asserts)
  temperature = _positive_scalar(temperature, "temperature", asserts)
  if prior_energy_fn is not None:
    prior_temperature = _positive_scalar(prior_temperature, "prior_temperature", asserts)
  joint_temperature = _positive_scalar(joint_temperature, "joint_temperature", asserts)
  clip = (None if grad_clip_norm is None else
          _positive_scalar(grad_clip_norm, "grad_clip_norm", asserts))
  inv_tau2 = None
  if tau is not None:
    static_tau = _static_value(tau)
    if static_tau is not None and static_tau < 0:
      raise ValueError(f"tau must be None or >= 0; got {static_tau}")
    if static_tau is None or static_tau > 0:
      tau = tf.cast(tau, tf.float32)
      inv_tau2 = tf.where(tau > 0, 1.0 / tf.square(tau), 0.0)  # A run-time 0 also means off.
  potential = _Potential(energy_fn, x.shape.rank, eps, temperature, prior_energy_fn,
                         prior_temperature, joint_temperature, clip, inv_tau2, noise_fn)
  return x, seed, per_chain, num_steps, potential, asserts


def _ula_chain(p: "_Potential", x, seed, per_chain: bool, num_steps):
  """Unadjusted Langevin: (samples, energies [B], drift norm of the last step, acceptance 1.0)."""
  if not per_chain and p.noise_fn is None:
    # stateless_fold_in(seed, t) is stack([r, t]) with r drawn from `seed` alone: drawn once
    # here instead of once per step (the same seeds, one random op fewer per step).
    fold_base = tf.random.stateless_uniform([], seed=seed, dtype=tf.int32, minval=None,
                                            maxval=None)

  def ula_body(t, x, _, *block):
    if per_chain:  # The loop also carries the current block of per-chain noise.
      offset = t % CHAIN_NOISE_BLOCK_STEPS
      (block,) = block
      def next_block(block=block):
        drawn = per_chain_noise(seed, t // CHAIN_NOISE_BLOCK_STEPS, tf.shape(x)[1:])
        drawn.set_shape(block.shape)
        return drawn

      block = tf.cond(tf.equal(offset, 0), next_block, lambda: block)
      xi, block = block[offset], (block,)
    else:
      step_seed = None if p.noise_fn is not None else tf.stack([fold_base, t])
      xi = p.noise(t, step_seed, tf.shape(x))
    grad = p.grad(x)
    x = x - p.half_eps2 * grad + p.eps * xi
    return (t + 1, x, grad) + block  # The drift norm is taken of the last grad only.

  block = ()
  if per_chain:
    block = (tf.zeros(tf.concat([[CHAIN_NOISE_BLOCK_STEPS], tf.shape(x)], 0)),)
  _, x, last_grad, *_ = tf.while_loop(
      lambda t, *_: t < num_steps, ula_body,
      (tf.constant(0, tf.int32), x, tf.zeros_like(x)) + block)
  drift_norm = p.drift_norm_of(last_grad)  # 0 when num_steps is 0.
  energies = _energy_vector(p.energy_fn(x), "energy_fn")
  return x, energies, drift_norm, tf.constant(1.0)


def _mala_chain(p: "_Potential", x, seed, num_steps):
  """MALA: (samples, energies [B], drift norm of the last step, acceptance rate)."""
  sample_axes = p.sample_axes

  def mala_body(t, x, u, energy, grad, _, accepted):
    step_seed = tf.random.experimental.stateless_fold_in(seed, t)
    xi = p.noise(t, step_seed, tf.shape(x))
    proposal = x - p.half_eps2 * grad + p.eps * xi
    u_new, energy_new, grad_new = p.potential_and_grad(proposal)
    # log q(x | x') - log q(x' | x), with x' - x + half_eps2 * g(x) = eps * xi.
    log_q_reverse = -p.sq_norm(x - proposal + p.half_eps2 * grad_new) / (2.0 * tf.square(p.eps))
    log_q_forward = -0.5 * p.sq_norm(xi)
    log_ratio = (u - u_new) + log_q_reverse - log_q_forward
    log_uniform = tf.math.log(tf.random.stateless_uniform(
        tf.shape(u), seed=tf.random.experimental.stateless_fold_in(step_seed, 1)))
    accept = log_uniform < log_ratio  # NaN proposals are rejected.
    mask = tf.reshape(accept, [-1] + [1] * len(sample_axes))
    drift_norm = p.drift_norm_of(grad)
    return (t + 1, tf.where(mask, proposal, x), tf.where(accept, u_new, u),
            tf.where(accept, energy_new, energy), tf.where(mask, grad_new, grad),
            drift_norm, accepted + tf.reduce_sum(tf.cast(accept, tf.float32)))

  u0, energy0, grad0 = p.potential_and_grad(x)
  _, x, _, energies, _, drift_norm, accepted = tf.while_loop(
      lambda t, *_: t < num_steps, mala_body,
      (tf.constant(0, tf.int32), x, u0, energy0, grad0, tf.constant(0.0), tf.constant(0.0)))
  proposals = tf.cast(num_steps, tf.float32) * tf.cast(tf.shape(x)[0], tf.float32)
  acceptance = tf.where(proposals > 0, accepted / tf.maximum(proposals, 1.0), 1.0)
  return x, energies, drift_norm, acceptance


def make_sampler(energy_fn: Callable[[tf.Tensor], tf.Tensor],
                 sample_shape: Sequence[int],
                 *,
                 jit_compile: bool = False,
                 static_batch: bool = False,
                 **fixed_kwargs: Any):
  """Returns a `tf.function` sampler that does not retrace for new step settings.

  The returned function is
  `sampler(x_init, seed, num_steps, step_size, temperature) -> LangevinResult` with
  x_init float32 [B, *sample_shape], seed int32 [2], num_steps int32 [], step_size float32 [],
  temperature float32 [] (Python numbers are converted).
  `sampler.experimental_get_tracing_count()` counts its traces.

  With `static_batch=False` (the default) the input signature has batch None: one trace serves
  every batch size (what an exported SavedModel signature needs). With `static_batch=True` it
  traces once per batch size B and each trace knows B, so the network's backward pass has no
  run-time shape ops (`Shape`, `BroadcastGradientArgs`, `DynamicStitch`, ... in every step); the
  step settings stay tensors, so new values do not retrace. Measured on 2 CPU cores
  (docs/benchmarks.md, "Paired ratios"), from batch 8 up: the dynamic-batch sampler ran at
  0.85-0.92x the speed of the paper's loop, `static_batch=True` at 0.92-0.97x. Both give bitwise
  the same samples.

  Args:
    energy_fn: as in `langevin_sample`.
    sample_shape: the non-batch shape of a sample, e.g. (H, W, C) for NHWC images.
    jit_compile: compile with XLA (fast on GPU/TPU, slow on CPU for conv gradients).
    static_batch: trace once per batch size (for in-process callers with a few fixed batch
      sizes) instead of once for all (bool).
    **fixed_kwargs: keyword arguments of `langevin_sample` baked into the function: any of
      tau, prior_energy_fn, prior_temperature, joint_temperature, grad_clip_norm, metropolis,
      noise_fn.

  Raises:
    ValueError: for a bad `sample_shape` or an unknown or non-fixable keyword argument.
  """
  for name in fixed_kwargs:
    if name not in _FIXED_ARGS:
      hint = " (it is an argument of the returned function)" if name in _DYNAMIC_ARGS else ""
      raise ValueError(f"make_sampler got an unexpected keyword argument {name!r}{hint}; "
                       f"expected some of {_FIXED_ARGS}")
  sample_shape = tuple(sample_shape)
  if not sample_shape or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                                 and d > 0 for d in sample_shape):
    raise ValueError(f"sample_shape must be a non-empty tuple of positive ints; got {sample_shape}")

  if not isinstance(static_batch, bool):
    raise ValueError(f"static_batch must be a bool; got {static_batch!r}")
  signature = [
      tf.TensorSpec([None, *sample_shape], tf.float32, name="x_init"),
      tf.TensorSpec([2], tf.int32, name="seed"),
      tf.TensorSpec([], tf.int32, name="num_steps"),
      tf.TensorSpec([], tf.float32, name="step_size"),
      tf.TensorSpec([], tf.float32, name="temperature"),
  ]

  def sample(x_init, seed, num_steps, step_size, temperature):
    return langevin_sample(energy_fn, x_init, seed, num_steps=num_steps, step_size=step_size,
                           temperature=temperature, **fixed_kwargs)

  if not static_batch:
    return tf.function(sample, jit_compile=jit_compile, input_signature=signature)
  traced = tf.function(sample, jit_compile=jit_compile)

  def sampler(x_init, seed, num_steps, step_size, temperature):
    # Tensors of a fixed dtype: tf.function then retraces on the batch size only (its shape).
    x_init = tf.convert_to_tensor(x_init, tf.float32)
    if x_init.shape.rank != 1 + len(sample_shape) or tuple(x_init.shape[1:]) != sample_shape:
      raise ValueError(f"x_init must have shape [B, {', '.join(map(str, sample_shape))}]; got "
                       f"{x_init.shape}")
    return traced(x_init, *(tf.convert_to_tensor(value, spec.dtype) for value, spec in
                            zip((seed, num_steps, step_size, temperature), signature[1:])))

  sampler.experimental_get_tracing_count = traced.experimental_get_tracing_count
  return sampler
