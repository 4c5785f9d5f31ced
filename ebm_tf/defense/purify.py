"""Langevin purification of images and the EOT (expectation over transformation) classifier.

The defense of Hill et al. (2022), docs/paper_settings.md section 7.2: an (adversarial) image X is
purified by plain Langevin on E/T started at X -- no tau term, no prior, no pixel clipping --

    X <- X - (eps^2 / 2) * grad(sum E(X) / T) + eps * N(0, I)     (num_steps times)

and the stochastic classifier averages the classifier's LOGITS (not probabilities) over R
independent purifications of the same image:

    eot_logits(X) = (1/R) sum_r f(purify_r(X)),    eot_predict(X) = argmax eot_logits(X).

All Langevin steps are run by `ebm_tf.mcmc.langevin.langevin_sample` (the project's one sampler).
The R repeats of a batch of B images are one chain batch of R*B chains ([R*B, H, W, C], repeat r
holds rows r*B .. r*B + B - 1), so one stateless seed gives all R*B independent noise streams.
With per-image seeds ([B, 2], `per_image_chain_seeds`), repeat r of image i is the chain seeded
`stateless_fold_in(seeds[i], r)` (the sampler's per-chain seeds), so an image's purifications
depend only on its own pixels and seed, not on the other images of the batch.

Eagerly, `purify` and `eot_logits` run the sampler's loop op by op; for speed use
`make_purifier` / `make_eot_logits`, which return `tf.function`s with a `None` batch dimension
whose step settings and repeat count are tensors (new values do not retrace).
"""

from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from ebm_tf.internal import checks
from ebm_tf.mcmc import langevin

EnergyFn = Callable[[tf.Tensor], tf.Tensor]
Classifier = Callable[[tf.Tensor], tf.Tensor]


def check_images(images, name: str = "images") -> tf.Tensor:
  """Returns `images` as a float32 [B, H, W, C] tensor after checking rank, finiteness and range.

  `ebm_tf.internal.checks.check_images` as a tensor, no values clipped.

  Args:
    images: float array or tensor [B, H, W, C] with values in [-1, 1].
    name: the argument name used in error messages.

  Returns:
    float32 [B, H, W, C]. Inside a `tf.function` the value checks are graph assertions
    (tf.errors.InvalidArgumentError) attached to the returned tensor.

  Raises:
    ValueError: for a non-float dtype, a rank other than 4, or (eagerly) NaN/Inf or values
      outside [-1, 1].
  """
  return checks.check_images(images, name)


def check_num_repeats(num_repeats, name: str = "num_repeats") -> tf.Tensor:
  """Returns `num_repeats` as an int32 scalar tensor; checks it is an integer >= 1.

  Raises:
    ValueError: for a non-integer, or a value < 1 known at trace time (a run-time value < 1
      fails a graph assertion).
  """
  if isinstance(num_repeats, bool) or (not tf.is_tensor(num_repeats) and
                                       not isinstance(num_repeats, (int, np.integer))):
    raise ValueError(f"{name} must be an integer >= 1; got {num_repeats!r}")
  if tf.is_tensor(num_repeats) and not num_repeats.dtype.is_integer:
    raise ValueError(f"{name} must be an integer >= 1; got dtype {num_repeats.dtype.name}")
  static = tf.get_static_value(num_repeats) if tf.is_tensor(num_repeats) else num_repeats
  if static is not None and (np.asarray(static).shape != () or static < 1):
    raise ValueError(f"{name} must be an integer >= 1; got {static}")
  reps = tf.cast(num_repeats, tf.int32)
  if static is None:
    with tf.control_dependencies([tf.debugging.Assert(reps >= 1, [f"{name} must be >= 1; got",
                                                                  reps])]):
      reps = tf.identity(reps)
  return reps


def classify(classifier: Classifier, images: tf.Tensor) -> tf.Tensor:
  """Logits of `classifier` on images: a Keras model is called with `training=False`.

  Args:
    classifier: a Keras model or any callable mapping images [N, H, W, C] to logits [N, K].
    images: float32 [N, H, W, C] (purified images may lie outside [-1, 1]).

  Returns:
    float32 logits [N, K].

  Raises:
    ValueError: if the classifier's output is not of rank 2.
  """
  if isinstance(classifier, keras.layers.Layer):
    logits = classifier(images, training=False)
  else:
    logits = classifier(images)
  logits = tf.convert_to_tensor(logits)
  if logits.shape.rank != 2:
    raise ValueError(f"classifier must return logits of shape [batch, num_classes]; got "
                     f"{logits.shape}")
  return tf.cast(logits, tf.float32)


def mean_logits(classifier: Classifier, purified: tf.Tensor) -> tf.Tensor:
  """Mean over repeats of the classifier's logits: [R, B, H, W, C] -> [B, K].

  The R * B images are classified in one batch. Logits, not probabilities, are averaged
  (the reference `eot_prediction`).
  """
  purified = tf.convert_to_tensor(purified)
  if purified.shape.rank != 5:
    raise ValueError("purified must have shape [repeats, batch, height, width, channels]; got "
                     f"{purified.shape}")
  shape = tf.shape(purified)
  logits = classify(classifier, tf.reshape(purified, tf.concat([[-1], shape[2:]], 0)))
  return average_repeats(logits, shape[0], shape[1])


def average_repeats(logits: tf.Tensor, num_repeats, batch) -> tf.Tensor:
  """Mean over the R repeats of per-chain logits [R*B, K] laid out as `tile_repeats` makes the
  chains (chain r*B + i is repeat r of image i): returns [B, K]."""
  logits = tf.reshape(logits, tf.stack([num_repeats, batch, tf.shape(logits)[-1]]))
  return tf.reduce_mean(logits, axis=0)


def per_image_chain_seeds(seeds, num_repeats) -> tf.Tensor:
  """The per-chain seeds of R repeats of B images: chain r*B + i gets fold_in(seeds[i], r).

  Args:
    seeds: int32/int64 [B, 2], one stateless seed per image.
    num_repeats: int >= 1 (Python int or int scalar tensor), R.

  Returns:
    int64 [R*B, 2] seeds, repeat-major like the chains of `purify`.

  Raises:
    ValueError: seeds not an integer [B, 2] tensor, or num_repeats < 1.
  """
  seeds = tf.convert_to_tensor(seeds)
  if not seeds.dtype.is_integer or seeds.shape.rank != 2 or seeds.shape[1] != 2:
    raise ValueError(f"per-image seeds must be an int32/int64 tensor of shape [batch, 2]; got "
                     f"{seeds.dtype.name} {seeds.shape}")
  seeds = tf.cast(seeds, tf.int64)
  reps = check_num_repeats(num_repeats)
  tiled = tf.tile(seeds, tf.stack([reps, 1]))
  repeat_ids = tf.repeat(tf.range(reps), tf.shape(seeds)[0])
  return tf.map_fn(
      lambda pair: tf.cast(tf.random.experimental.stateless_fold_in(pair[0], pair[1]), tf.int64),
      (tiled, repeat_ids), fn_output_signature=tf.int64)


def purify(energy_fn: EnergyFn,
           images,
           seed,
           *,
           num_steps,
           step_size,
           temperature,
           num_repeats=1) -> tf.Tensor:
  """R independent Langevin purifications of a batch of images.

  Tiles the batch to R*B chains and runs `langevin.langevin_sample` once (tau, prior and
  gradient clipping off; no pixel clipping). Works eagerly and in a `tf.function`; the result
  carries no gradient (the sampler stops it): see `ebm_tf.defense.attacks` for BPDA.

  Args:
    energy_fn: maps x float32 [N, H, W, C] to energies [N] or [N, 1]; low energy = data.
    images: float [B, H, W, C] in [-1, 1].
    seed: int32/int64 [2] stateless seed; the same seed gives the same purifications. Or
      [B, 2], one seed per image (`per_image_chain_seeds`): image i's purifications then depend
      only on images[i] and seed[i], whatever else is in the batch.
    num_steps: int >= 0, Langevin steps K (reference: 2000 on CIFAR-10).
    step_size: eps > 0 (reference: 0.01).
    temperature: T > 0 (reference: 1e-4).
    num_repeats: int >= 1, R independent purifications per image.

  Returns:
    float32 [R, B, H, W, C]: purified images (unclipped; they may leave [-1, 1]).

  Raises:
    ValueError: for bad images (see `check_images`), num_repeats < 1, or the sampler's errors
      (negative num_steps, non-positive step_size or temperature, bad seed).
  """
  x = check_images(images)
  reps = check_num_repeats(num_repeats)
  if tf.convert_to_tensor(seed).shape.rank == 2:
    seed = per_image_chain_seeds(seed, reps)
  result = purify_chains(energy_fn, tile_repeats(x, reps), seed, num_steps=num_steps,
                         step_size=step_size, temperature=temperature)
  return split_repeats(result.samples, x, reps)


def purify_chains(energy_fn: EnergyFn, chains: tf.Tensor, seed, *, num_steps, step_size,
                  temperature) -> langevin.LangevinResult:
  """The purification chains: `langevin.langevin_sample` from `chains` [M, H, W, C] with the
  defense's settings (tau, prior and gradient clipping off; no pixel clipping). `purify` runs
  it on `tile_repeats` of its images; the served purifier (export/purifier_module.py) inside
  its optionally XLA-compiled function."""
  return langevin.langevin_sample(energy_fn, chains, seed, num_steps=num_steps,
                                  step_size=step_size, temperature=temperature)


def tile_repeats(images: tf.Tensor, num_repeats: tf.Tensor) -> tf.Tensor:
  """The R*B chains of R purifications of images [B, H, W, C]: R copies of the batch stacked
  (chain r*B + i starts at image i). Returns float32 [R*B, H, W, C]."""
  return tf.tile(images, tf.stack([num_repeats, 1, 1, 1]))


def split_repeats(chains: tf.Tensor, images: tf.Tensor, num_repeats: tf.Tensor) -> tf.Tensor:
  """Chains [R*B, H, W, C] laid out as `tile_repeats` makes them, as [R, B, H, W, C] (with the
  static shape of `images` and of R where known)."""
  out = tf.reshape(chains, tf.concat([[num_repeats], tf.shape(images)], 0))
  out.set_shape([tf.get_static_value(num_repeats)] + images.shape.as_list())
  return out


def eot_logits(classifier: Classifier,
               energy_fn: EnergyFn,
               images,
               seed,
               *,
               num_steps,
               step_size,
               temperature,
               num_repeats) -> tf.Tensor:
  """The EOT-defended logits: mean over R purifications of the classifier's logits.

  Args:
    classifier: Keras model (called with training=False) or callable, images -> logits [N, K].
    energy_fn, images, seed, num_steps, step_size, temperature, num_repeats: as in `purify`.

  Returns:
    float32 [B, K]: (1/R) sum_r classifier(purify_r(images)), logits averaged (not softmax).

  Raises:
    ValueError: as `purify`, or for a classifier output that is not [N, K].
  """
  purified = purify(energy_fn, images, seed, num_steps=num_steps, step_size=step_size,
                    temperature=temperature, num_repeats=num_repeats)
  return mean_logits(classifier, purified)


def eot_predict(classifier: Classifier,
                energy_fn: EnergyFn,
                images,
                seed,
                *,
                num_steps,
                step_size,
                temperature,
                num_repeats) -> tf.Tensor:
  """Class ids int64 [B] = argmax of `eot_logits` (same arguments)."""
  return tf.argmax(eot_logits(classifier, energy_fn, images, seed, num_steps=num_steps,
                              step_size=step_size, temperature=temperature,
                              num_repeats=num_repeats), axis=-1)


def _check_image_shape(image_shape) -> tuple:
  image_shape = tuple(image_shape)
  if len(image_shape) != 3 or not all(
      isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
      for d in image_shape):
    raise ValueError(f"image_shape must be (height, width, channels) of positive ints; got "
                     f"{image_shape}")
  return tuple(int(d) for d in image_shape)


def _signature(image_shape):
  return [
      tf.TensorSpec([None, *image_shape], tf.float32, name="images"),
      tf.TensorSpec([2], tf.int32, name="seed"),
      tf.TensorSpec([], tf.int32, name="num_steps"),
      tf.TensorSpec([], tf.float32, name="step_size"),
      tf.TensorSpec([], tf.float32, name="temperature"),
      tf.TensorSpec([], tf.int32, name="num_repeats"),
  ]


def make_purifier(energy_fn: EnergyFn, image_shape: Sequence[int], *, jit_compile=False):
  """Returns `purifier(images, seed, num_steps, step_size, temperature, num_repeats)`.

  A `tf.function` over `purify` with the input signature images float32 [None, H, W, C],
  seed int32 [2], num_steps int32 [], step_size float32 [], temperature float32 [],
  num_repeats int32 [] (Python numbers are converted), returning float32 [R, B, H, W, C].
  It traces once for all batch sizes and settings. Graph-side checks raise
  tf.errors.InvalidArgumentError.

  Args:
    energy_fn: as in `purify`.
    image_shape: (H, W, C).
    jit_compile: compile with XLA (off on CPU, where it is slower for conv gradients).

  Raises:
    ValueError: for a bad image_shape.
  """
  image_shape = _check_image_shape(image_shape)

  @tf.function(jit_compile=jit_compile, input_signature=_signature(image_shape))
  def purifier(images, seed, num_steps, step_size, temperature, num_repeats):
    return purify(energy_fn, images, seed, num_steps=num_steps, step_size=step_size,
                  temperature=temperature, num_repeats=num_repeats)

  return purifier


def make_eot_logits(classifier: Classifier, energy_fn: EnergyFn, image_shape: Sequence[int], *,
                    jit_compile=False):
  """Returns `logits_fn(images, seed, num_steps, step_size, temperature, num_repeats) -> [B, K]`.

  A `tf.function` over `eot_logits` with the input signature of `make_purifier` (a `None`
  batch dimension, settings as tensors: one trace for all of them). Take `tf.argmax(..., -1)`
  of its output for `eot_predict`.

  Raises:
    ValueError: for a bad image_shape.
  """
  image_shape = _check_image_shape(image_shape)

  @tf.function(jit_compile=jit_compile, input_signature=_signature(image_shape))
  def logits_fn(images, seed, num_steps, step_size, temperature, num_repeats):
    return eot_logits(classifier, energy_fn, images, seed, num_steps=num_steps,
                      step_size=step_size, temperature=temperature, num_repeats=num_repeats)

  return logits_fn
