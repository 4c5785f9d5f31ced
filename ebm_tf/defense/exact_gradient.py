"""The exact input gradient through a whole Langevin purification, at bounded memory.

The purification of `ebm_tf.defense.purify` runs L steps of

    x_{t+1} = x_t - h * g(x_t) + eps * xi_t,    g = grad U,  U(x) = sum_i E(x_i) / T,  h = eps^2/2,

with the noise xi_t fixed by the seed (step t draws `stateless_normal(seed=fold_in(seed, t))`,
the one sampler's stream). For a loss l of the purified images x_L, the chain rule through every
step is

    dl/dx_t = J_t^T dl/dx_{t+1},    J_t = d x_{t+1} / d x_t = I - h * Hessian(U)(x_t),

and the Hessian is symmetric, so each backward step is one Hessian-vector product:
v <- v - h * H(x_t) v. Plain backprop through the unrolled chain keeps every step's activations
(memory O(L) states plus O(L) network activations). Here the forward pass runs the chain in
segments of k steps through `langevin.langevin_sample` (the project's one sampler: the same ops
and the same noise, so the purified images are bitwise those of `purify.purify` with the same
seed) and keeps only the state at the start of each segment. The backward pass (a
`tf.custom_gradient`) visits the segments last to first: it recomputes the segment's k states
from its kept state (one sampler step at a time), then applies the k transposed step Jacobians
in reverse with a double-tape Hessian-vector product. Memory: ceil(L/k) + k states plus the
activations of one Hessian-vector product, minimal near k = sqrt(L); compute: L energy
gradients forward, L more to recompute and L Hessian-vector products (about 2-3 energy
gradients each).

ReLU energies (`ebm_small`, `EBMSNGAN32`, every EBM this project trains on images) are piecewise
linear: their input Hessian is zero almost everywhere, so J_t = I and the exact gradient equals
BPDA's (`attacks.bpda_purify`). It differs for smooth energies (swish, softplus, ELU).
"""

import math
from typing import Callable, List, Optional

import tensorflow as tf

from ebm_tf.defense import purify as purify_lib
from ebm_tf.internal import checks
from ebm_tf.mcmc import langevin

EnergyFn = Callable[[tf.Tensor], tf.Tensor]
_PYTHON_INT = "a Python integer"  # how the count arguments are named in errors


def default_segment_length(num_steps: int) -> int:
  """The segment length k that minimises ceil(L/k) + k kept states: round(sqrt(L)), at least 1.

  Args:
    num_steps: L, an integer >= 0.

  Returns:
    A Python int >= 1 (1000 -> 32, 2000 -> 45, 20 -> 4, 0 -> 1).
  """
  num_steps = checks.check_int(num_steps, "num_steps", 0, kind=_PYTHON_INT)
  return max(1, int(round(math.sqrt(num_steps))))


def segment_starts(num_steps: int, segment_length: int) -> List[int]:
  """The chain steps whose states the forward pass keeps: [0, k, 2k, ...] below L.

  Args:
    num_steps: L >= 0.
    segment_length: k >= 1.

  Returns:
    A list of ceil(L / k) ints (empty for L = 0); segment s covers steps
    [s k, min((s + 1) k, L)).
  """
  num_steps = checks.check_int(num_steps, "num_steps", 0, kind=_PYTHON_INT)
  segment_length = checks.check_int(segment_length, "segment_length", 1, kind=_PYTHON_INT)
  return list(range(0, num_steps, segment_length))


def kept_states(num_steps: int, segment_length: int) -> int:
  """The most chain states [N, H, W, C] held at once: ceil(L/k) kept + min(k, L) recomputed."""
  return len(segment_starts(num_steps, segment_length)) + min(segment_length, num_steps)


def hessian_vector_product(energy_fn: EnergyFn, x: tf.Tensor, v: tf.Tensor,
                           temperature) -> tf.Tensor:
  """H(x) v for U(x) = sum_i E(x_i) / T, by a double GradientTape (reverse over reverse).

  Args:
    energy_fn: x float32 [N, ...] -> energies [N] or [N, 1].
    x: float32 [N, ...], the point.
    v: float32, the shape of x, the vector.
    temperature: T > 0 (float or float32 scalar tensor).

  Returns:
    float32, the shape of x: d/dx <grad U(x), v> (per chain, since U is a sum over chains).
    Exactly 0 for piecewise-linear (ReLU) energies wherever no ReLU input is exactly 0.
  """
  zero = tf.UnconnectedGradients.ZERO
  with tf.GradientTape() as outer:
    outer.watch(x)
    with tf.GradientTape() as inner:
      inner.watch(x)
      potential = tf.reduce_sum(langevin._energy_vector(energy_fn(x), "energy_fn")) / (  # pylint: disable=protected-access
          temperature)
    grad = inner.gradient(potential, x, unconnected_gradients=zero)
  return outer.gradient(grad, x, output_gradients=v, unconnected_gradients=zero)


def exact_gradient_purify(energy_fn: EnergyFn,
                          images,
                          seed,
                          *,
                          num_steps: int,
                          step_size,
                          temperature,
                          num_repeats=1,
                          segment_length: Optional[int] = None) -> tf.Tensor:
  """R Langevin purifications whose input gradient is exact through all L steps.

  Forward: the same values as `purify.purify(energy_fn, images, seed, ...)` (bitwise, on the
  same device and compile mode). Backward: d purified / d images through every step, the
  chain's noise held fixed (see the module docstring), with ceil(L/k) + k chain states kept.
  The EBM's weights get a zero gradient. Use it inside a `tf.function` (eagerly the sampler's
  loops run op by op).

  Args:
    energy_fn: x float32 [N, H, W, C] -> energies [N] or [N, 1]; low energy = data.
    images: float [B, H, W, C] in [-1, 1].
    seed: int32/int64 [2] stateless seed (the same as `purify.purify`'s).
    num_steps: L, a Python int >= 0 (the defense's own purification length; 0 = identity).
    step_size: eps > 0.
    temperature: T > 0.
    num_repeats: int >= 1, R purifications per image (rows r*B .. r*B + B - 1, as `purify`).
    segment_length: k, a Python int >= 1 (default `default_segment_length(L)` = round(sqrt L)).

  Returns:
    float32 [R, B, H, W, C], differentiable w.r.t. images.

  Raises:
    ValueError: for a num_steps or segment_length that is not a Python int in range, and the
      errors of `purify.purify` (bad images, repeats, seed, step size, temperature).
  """
  num_steps = checks.check_int(num_steps, "num_steps", 0, kind=_PYTHON_INT)
  if segment_length is None:
    segment_length = default_segment_length(num_steps)
  segment_length = checks.check_int(segment_length, "segment_length", 1, kind=_PYTHON_INT)
  x = purify_lib.check_images(images)
  reps = purify_lib.check_num_repeats(num_repeats)
  seed = checks.check_seed(seed)
  # step_size and temperature are checked by the sampler (at trace time when they are known).
  chain = _checkpointed_chain(energy_fn, seed, num_steps, segment_length,
                              tf.cast(step_size, tf.float32), tf.cast(temperature, tf.float32))
  return purify_lib.split_repeats(chain(purify_lib.tile_repeats(x, reps)), x, reps)


def _checkpointed_chain(energy_fn: EnergyFn, seed, num_steps: int, segment_length: int, eps,
                        temperature):
  """The L-step purification chain as a `tf.custom_gradient` function, chains -> final chains.

  Forward: the sampler's steps, segment by segment, keeping the state at each segment start.
  Backward: each segment's states recomputed from its kept state (last segment first), then
  the transposed step Jacobians J_t^T v = v - (eps^2 / 2) H(x_t) v applied (module docstring).
  """
  half_eps2 = 0.5 * tf.square(eps)
  num_segments = len(segment_starts(num_steps, segment_length))

  def run_steps(chains, first_step, length):
    """`length` sampler steps from `chains`, drawing the noise of steps first_step, ... ."""
    def noise_fn(t, shape, dtype):
      step_seed = tf.random.experimental.stateless_fold_in(seed, first_step + t)
      return tf.random.stateless_normal(shape, seed=step_seed, dtype=dtype)
    return langevin.langevin_sample(energy_fn, chains, seed, num_steps=length,
                                    step_size=eps, temperature=temperature,
                                    noise_fn=noise_fn).samples

  def segment(s):
    """(first step, length) of segment s (int32 scalars)."""
    first = s * segment_length
    return first, tf.minimum(segment_length, num_steps - first)

  @tf.custom_gradient
  def chain(chains):
    kept = tf.TensorArray(tf.float32, size=num_segments, element_shape=chains.shape,
                          clear_after_read=False)

    def forward(s, chains, kept):
      first, length = segment(s)
      return s + 1, run_steps(chains, first, length), kept.write(s, chains)

    _, final, kept = tf.while_loop(lambda s, *_: s < num_segments, forward,
                                   (tf.constant(0, tf.int32), chains, kept))

    def grad(upstream, variables=None):
      def backward(s, v):
        first, length = segment(s)
        states = tf.TensorArray(tf.float32, size=length, element_shape=chains.shape,
                                clear_after_read=True)
        states = states.write(0, kept.read(s))

        def recompute(t, state, states):  # states[t] = x_{first + t}
          state = run_steps(state, first + t - 1, 1)
          return t + 1, state, states.write(t, state)

        _, _, states = tf.while_loop(lambda t, *_: t < length, recompute,
                                     (tf.constant(1, tf.int32), kept.read(s), states))

        def transpose_step(t, v):  # v <- J_t^T v, last step of the segment first
          return t - 1, v - half_eps2 * hessian_vector_product(energy_fn, states.read(t), v,
                                                               temperature)

        _, v = tf.while_loop(lambda t, _: t >= 0, transpose_step, (length - 1, v))
        return s - 1, v

      _, v = tf.while_loop(lambda s, _: s >= 0, backward,
                           (tf.constant(num_segments - 1, tf.int32), upstream))
      if variables is None:
        return v
      # The purifier reads the EBM's weights; the attack needs no gradient for them.
      return v, [tf.zeros_like(var) for var in variables]

    return final, grad

  return chain


def exact_gradient_eot_logits(classifier: purify_lib.Classifier,
                              energy_fn: EnergyFn,
                              images,
                              seed,
                              *,
                              num_steps: int,
                              step_size,
                              temperature,
                              num_repeats,
                              segment_length: Optional[int] = None) -> tf.Tensor:
  """EOT logits [B, K] (mean over R purifications) with the exact gradient through the chain.

  The value equals `purify.eot_logits` with the same seed. Arguments as in
  `exact_gradient_purify`, plus `classifier` (Keras model or callable -> logits [N, K]).
  """
  purified = exact_gradient_purify(energy_fn, images, seed, num_steps=num_steps,
                                   step_size=step_size, temperature=temperature,
                                   num_repeats=num_repeats, segment_length=segment_length)
  return purify_lib.mean_logits(classifier, purified)
