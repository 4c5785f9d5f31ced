"""l_inf PGD on the Langevin-purification defense: BPDA + EOT, full and exact gradient, undefended.

The protocol of Hill et al. (2022) (docs/paper_settings.md section 7.3, reference `attack.py`), for
images X with labels y, radius eps and step eta (both given in /255 units and applied to [-1, 1]
pixels as `to_pixel_units(v) = v * 2 / 255`, so 8/255 acts as 16/255 on [-1, 1]):

1. Natural accuracy: each image is classified by the defense with `eot_defense_reps`
   purifications (logits averaged); a wrong image counts as broken from the start.
2. Random start: X_adv = clip(X + eps * U[-1, 1], -1, 1).
3. For t = 0 .. adv_steps (adv_steps + 1 evaluations): the defense with `eot_attack_reps`
   purifications classifies X_adv; every still-defended image it gets wrong is re-checked with
   `eot_defense_reps` purifications and, if that is also wrong, marked broken PERMANENTLY. Then
   (for t < adv_steps), with the gradient g of CE(mean-over-reps logits, y) from the same
   purifications, X_adv <- clip(Proj_{||. - X||_inf <= eps}(X_adv + eta * sign(g)), -1, 1).
   The sign step and the projection are cleverhans' `optimize_linear` and `clip_eta`.
Robust accuracy = the fraction of images never broken; the curve has adv_steps + 2 entries
(natural, then one per evaluation). After every step this module checks the eps-ball and the
[-1, 1] range itself (`check_perturbation`). When calling cleverhans attacks directly (e.g. with
`BPDAModel`), pass `sanity_checks=False`: cleverhans' own checks crash on numpy >= 1.24.

Attack methods (`ATTACK_METHODS`; `attack_method_settings` checks the settings each needs). All
run in the one loop of `pgd_attack`, so verification, permanent breaks, EOT and BPDA apply to
each; with an undefended classifier each equals the cleverhans.tf2 function named (maximising
softmax cross-entropy on logits, l_inf, clip to [-1, 1]):
- 'pgd': the protocol above (Madry et al.); without a random start it is 'bim'.
- 'bim': no random start (`basic_iterative_method`, i.e. `projected_gradient_descent` with
  rand_init=False); random_start must be False.
- 'fgm': one step of size eps from the clean images (`fast_gradient_method`): adv_steps = 1,
  step_size_255 = eps_255, random_start False.
- 'mim': momentum (`momentum_iterative_method`, Dong et al. 2018) from the clean images:
  g <- mu g + grad / mean(|grad|) (the mean per image over H, W, C, floored at 1e-12;
  mu = `MIM_DECAY_FACTOR` = 1, cleverhans' default), X_adv <- clip(Proj(X_adv + eta sign(g)),
  -1, 1); random_start must be False. The momentum starts at 0 and is updated at every step
  for every image (also broken ones, like the iterate itself).
- 'apgd': APGD's step-size schedule (Croce and Hein 2020, Algorithm 1, l_inf, CE loss), as the
  reference implementation (fra31/auto-attack `APGDAttack`, torchattacks.APGD) computes it;
  step_size_255 must be 2 * eps_255 (the initial step), random_start either. Per image: a
  step size eta (initially 2 eps) and the best point x_max (highest loss so far, initially
  the start point). Step t: z = P(x_t + eta sign(grad)), x_{t+1} = P(x_t + a (z - x_t) +
  (1 - a)(x_t - x_{t-1})) with a = 1 at the first step and `APGD_MOMENTUM` = 0.75 after (P:
  the eps-ball, then [-1, 1]). After the evaluations `apgd_checkpoints(adv_steps)` an image
  halves eta and restarts from x_max (with x_max's gradient) when `apgd_halve` says so. The
  loss is the CE of the logits the attack evaluates (with EOT: of the EOT-averaged logits).
  There is no undefended cleverhans function; ebm_tf/defense/attacks_test.py compares it with
  torchattacks.APGD when that package is installed.

Gradients through the purifier:
- BPDA (`bpda_purify`): forward = Langevin purification, backward = identity, so the gradient
  w.r.t. the input is the classifier's gradient taken at the purified images, summed over the
  EOT repeats (a `tf.custom_gradient`; its grad takes `variables` and returns zeros for the EBM
  weights the purifier reads).
- Full gradient (`full_gradient_purify`): backpropagates through every Langevin step of a short
  chain (at most `max_chain_steps`); memory grows with the chain length. For piecewise-linear
  (ReLU) energies the Hessian vanishes almost everywhere, so this equals BPDA there; it differs
  for smooth energies (softplus, ELU, swish).
- Exact gradient (`exact_gradient_eot_pgd`, module `ebm_tf.defense.exact_gradient`): backpropagates
  through every step of the defense's own (1,000-2,000-step) chain at bounded memory: segment
  checkpoints, recomputation and Hessian-vector products; the same purified values as
  `purify.purify`. It equals BPDA for ReLU energies too.

Seeds are stateless int32 [2] tensors. `pgd_attack(..., seed)` derives: natural evaluation
fold_in(seed, 0) (with a verifier: fold_in(fold_in(seed, 0), c) for chunk c of
`verify_batch_size` images); random start fold_in(seed, 1); attack evaluation and gradient at
step t fold_in(fold_in(seed, 2), t); verification at step t, chunk c
fold_in(fold_in(fold_in(seed, 3), t), c). `BPDAModel` (a cleverhans `model_fn`) uses
fold_in(seed, i) on its i-th call (i = 0, 1, ..., counted by its `calls` variable).
"""

import statistics
from typing import Any, Callable, Dict, List, NamedTuple, Optional

from absl import logging
from cleverhans.tf2 import utils as cleverhans_utils
import numpy as np
import tensorflow as tf

from ebm_tf.defense import exact_gradient
from ebm_tf.defense import purify as purify_lib
from ebm_tf.internal import checks
from ebm_tf.mcmc import langevin

MAX_CHAIN_STEPS = 50

# logits_fn(images float32 [N, H, W, C], seed int32 [2]) -> logits float32 [N, K].
LogitsFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]

_BALL_TOLERANCE = 1e-5  # float32 rounding of x + (x_adv - x) on [-1, 1] pixels

ATTACK_METHODS = ("pgd", "bim", "fgm", "mim", "apgd")
MIM_DECAY_FACTOR = 1.0  # cleverhans' momentum_iterative_method default decay_factor
_MIM_ZERO_DIVISION = 1e-12  # cleverhans' floor on mean |grad|
# APGD (Croce and Hein 2020; the reference implementation's values).
APGD_MOMENTUM = 0.75  # alpha
APGD_RHO = 0.75  # condition 1: the loss increased in at most rho of the steps since the check
APGD_INITIAL_STEP = 2.0  # eta_0 = 2 eps


def _number(value, name, *, minimum=0.0, strict=False) -> float:
  """`value` as a finite Python float >= minimum (> minimum if strict)."""
  try:
    number = float(np.asarray(value))
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a finite number; got {value!r}") from None
  if isinstance(value, bool) or not np.isfinite(number) or (
      number <= minimum if strict else number < minimum):
    raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {minimum}; got "
                     f"{value!r}")
  return number


def _fold(seed, *data) -> tf.Tensor:
  for d in data:
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(d, tf.int32))
  return tf.cast(seed, tf.int32)


def to_pixel_units(eps_255) -> float:
  """Converts a perturbation size in /255 units of [0, 1] images to [-1, 1] pixel units.

  Args:
    eps_255: finite number >= 0, e.g. 8 for the CIFAR-10 radius 8/255.

  Returns:
    eps_255 * 2 / 255 as a Python float (8 -> 16/255 = 0.0627...).

  Raises:
    ValueError: for a negative or non-finite value.
  """
  return _number(eps_255, "eps_255") * 2.0 / 255.0


def accuracy_with_ci(correct_mask, confidence: float = 0.95):
  """Accuracy with its Wilson score interval.

  Args:
    correct_mask: bool or 0/1 array [N], N >= 1.
    confidence: two-sided level in (0, 1).

  Returns:
    (accuracy, lower, upper) Python floats in [0, 1].

  Raises:
    ValueError: for an empty or non-1-D mask, values other than 0/1, or a bad confidence.
  """
  mask = np.asarray(correct_mask)
  if mask.ndim != 1 or mask.size == 0:
    raise ValueError(f"correct_mask must be a non-empty 1-D array; got shape {mask.shape}")
  if not np.all((mask == 0) | (mask == 1)):
    raise ValueError("correct_mask must hold booleans or 0/1 values")
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
  n = mask.size
  p = float(np.mean(mask.astype(np.float64)))
  z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2.0)
  denominator = 1.0 + z * z / n
  center = (p + z * z / (2.0 * n)) / denominator
  half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denominator
  return p, max(0.0, center - half), min(1.0, center + half)


# ------------------------------------------------------------------------------------------
# Differentiable views of the defense.


def bpda_purify(energy_fn: purify_lib.EnergyFn,
                images,
                seed,
                *,
                num_steps,
                step_size,
                temperature,
                num_repeats=1,
                purifier=None) -> tf.Tensor:
  """Purification with a BPDA (identity) gradient: [B, H, W, C] -> [R, B, H, W, C].

  Forward: `purify.purify` (or `purifier`, e.g. from `purify.make_purifier`, which is faster
  eagerly). Backward: d purified[r, b] / d images[b] = I, so an upstream gradient [R, B, ...]
  becomes its sum over r.

  Args:
    energy_fn, images, seed, num_steps, step_size, temperature, num_repeats: as in
      `purify.purify`.
    purifier: optional `purifier(images, seed, num_steps, step_size, temperature, num_repeats)`
      computing the same as `purify.purify` (e.g. `purify.make_purifier(energy_fn, shape)`).

  Returns:
    float32 [R, B, H, W, C].
  """
  x = purify_lib.check_images(images)
  seed = checks.check_seed(seed, dtype=tf.int32)

  @tf.custom_gradient
  def identity_through_purifier(x, seed):
    if purifier is None:
      purified = purify_lib.purify(energy_fn, x, seed, num_steps=num_steps, step_size=step_size,
                                   temperature=temperature, num_repeats=num_repeats)
    else:
      purified = purifier(x, seed, num_steps, step_size, temperature, num_repeats)

    def grad(upstream, variables=None):
      input_grads = (tf.reduce_sum(upstream, axis=0), None)
      if variables is None:
        return input_grads
      # The purifier reads the EBM's weights; BPDA gives them no gradient.
      return input_grads, [tf.zeros_like(v) for v in variables]

    return purified, grad

  return identity_through_purifier(x, seed)


def bpda_eot_logits(classifier: purify_lib.Classifier,
                    energy_fn: purify_lib.EnergyFn,
                    images,
                    seed,
                    *,
                    num_steps,
                    step_size,
                    temperature,
                    num_repeats,
                    purifier=None) -> tf.Tensor:
  """EOT logits [B, K] (mean over R purifications) whose input gradient is BPDA's.

  The value equals `purify.eot_logits` with the same seed; the gradient w.r.t. `images` is the
  gradient of the classifier taken at the purified images, summed over the R repeats.
  Arguments as in `bpda_purify` plus `classifier` (Keras model or callable -> logits [N, K]).
  """
  purified = bpda_purify(energy_fn, images, seed, num_steps=num_steps, step_size=step_size,
                         temperature=temperature, num_repeats=num_repeats, purifier=purifier)
  return purify_lib.mean_logits(classifier, purified)


class BPDAModel(tf.Module):
  """A cleverhans `model_fn`: images -> BPDA + EOT logits, with a fresh stateless seed per call.

  `model(x)` returns `bpda_eot_logits(classifier, energy_fn, x, fold_in(seed, i), ...)` with i
  the number of earlier calls (the int32 variable `model.calls`, incremented by each call, also
  inside a `tf.function` such as cleverhans' `compute_gradient`). Hence in cleverhans'
  `projected_gradient_descent(model, x, ..., y=labels, nb_iter=n, sanity_checks=False)` each
  iteration sees new purification noise; without `y` the first call labels the clean images.
  Reset with `model.calls.assign(0)`; `model.call_seed(i)` is the seed of call i.

      model = BPDAModel(clf, energy_fn(ebm), [0, 1], num_steps=2000, step_size=0.01,
                        temperature=1e-4, eot_reps=48)
      x_adv = projected_gradient_descent(model, x, eps, eps_iter, 50, np.inf, clip_min=-1.,
                                         clip_max=1., y=y, rand_init=True, sanity_checks=False)
  """

  def __init__(self, classifier, energy_fn, seed, *, num_steps: int, step_size: float,
               temperature: float, eot_reps: int, name: Optional[str] = None):
    """Args: as `bpda_eot_logits`, with `eot_reps` (int >= 1) purifications per image.

    Raises:
      ValueError: for a bad seed, num_steps < 0, step_size or temperature <= 0, eot_reps < 1.
    """
    super().__init__(name=name)
    self._classifier = classifier
    self._energy_fn = energy_fn
    self._seed = checks.check_seed(seed, dtype=tf.int32)
    self.num_steps = checks.check_int(num_steps, "num_steps")
    self.step_size = _number(step_size, "step_size", strict=True)
    self.temperature = _number(temperature, "temperature", strict=True)
    self.eot_reps = checks.check_int(eot_reps, "eot_reps", 1)
    self.calls = tf.Variable(0, dtype=tf.int32, trainable=False, name="calls")
    self._purifiers = {}

  def call_seed(self, index) -> tf.Tensor:
    """The int32 [2] seed of call number `index`."""
    return _fold(self._seed, index)

  def logits(self, images, seed) -> tf.Tensor:
    """BPDA + EOT logits [B, K] of images [B, H, W, C] in [-1, 1] with an explicit seed."""
    x = purify_lib.check_images(images)
    shape = tuple(x.shape[1:].as_list())
    if shape not in self._purifiers:  # a tf.function purifier keeps eager calls fast
      self._purifiers[shape] = purify_lib.make_purifier(self._energy_fn, shape)
    return bpda_eot_logits(self._classifier, self._energy_fn, x, seed, num_steps=self.num_steps,
                           step_size=self.step_size, temperature=self.temperature,
                           num_repeats=self.eot_reps, purifier=self._purifiers[shape])

  def __call__(self, images) -> tf.Tensor:
    index = self.calls.assign_add(1) - 1
    return self.logits(images, self.call_seed(index))


def full_gradient_purify(energy_fn: purify_lib.EnergyFn,
                         images,
                         seed,
                         *,
                         num_steps,
                         step_size,
                         temperature,
                         num_repeats=1,
                         max_chain_steps: int = MAX_CHAIN_STEPS) -> tf.Tensor:
  """Purification that is differentiable through every Langevin step: [B,H,W,C] -> [R,B,H,W,C].

  Same values as `purify.purify` with the same seed: each step is one call of
  `langevin.langevin_sample` with num_steps=1, fed the noise that step t of a K-step chain with
  `seed` draws. The sampler stops gradients, so each step's output is given the gradient of
  its drift d(x) = x - (eps^2/2) grad(sum E(x)/T) (the noise does not depend on x):
      x_{t+1} = sample_t + (d(x_t) - stop_gradient(d(x_t))),
  whose value is exactly sample_t and whose Jacobian is I - (eps^2/2) Hessian(sum E/T).
  Per step this costs about two energy gradients plus second-order backprop, and the backward
  pass keeps every step's activations: chains are limited to `max_chain_steps`.

  Args:
    energy_fn, images, seed, step_size, temperature, num_repeats: as in `purify.purify`.
    num_steps: int (or int32 scalar tensor) in [0, max_chain_steps].
    max_chain_steps: the memory cap on num_steps (a Python int >= 1).

  Returns:
    float32 [R, B, H, W, C], differentiable w.r.t. images.

  Raises:
    ValueError: for num_steps above max_chain_steps (use BPDA for long chains) and the errors
      of `purify.purify`. A run-time num_steps out of range fails a graph assertion.
  """
  max_chain_steps = checks.check_int(max_chain_steps, "max_chain_steps", 1)
  if tf.is_tensor(num_steps) and tf.get_static_value(num_steps) is None:
    if not num_steps.dtype.is_integer:
      raise ValueError(f"num_steps must be an integer; got dtype {num_steps.dtype.name}")
    steps = tf.cast(num_steps, tf.int32)
    in_range = tf.logical_and(steps >= 0, steps <= max_chain_steps)
    with tf.control_dependencies([tf.debugging.Assert(in_range, [
        f"num_steps must be in [0, max_chain_steps={max_chain_steps}]; got", steps])]):
      steps = tf.identity(steps)
  else:
    static = num_steps if not tf.is_tensor(num_steps) else tf.get_static_value(num_steps)
    if isinstance(static, np.ndarray) and static.shape == ():
      static = static.item()
    static = checks.check_int(static, "num_steps")
    if static > max_chain_steps:
      raise ValueError(f"full-gradient purification keeps the activations of every Langevin "
                       f"step: num_steps must be <= max_chain_steps={max_chain_steps}; got "
                       f"{static} (use BPDA for long chains)")
    steps = tf.constant(static, tf.int32)
  x = purify_lib.check_images(images)
  reps = purify_lib.check_num_repeats(num_repeats)
  seed = checks.check_seed(seed, dtype=tf.int32)
  eps = tf.cast(step_size, tf.float32)
  temperature = tf.cast(temperature, tf.float32)

  def body(t, chains):
    step_seed = _fold(seed, t)  # the seed step t of langevin_sample(..., seed) draws from

    def noise_fn(unused_index, shape, dtype):
      return tf.random.stateless_normal(shape, seed=step_seed, dtype=dtype)

    sample = langevin.langevin_sample(energy_fn, chains, seed, num_steps=1, step_size=eps,
                                      temperature=temperature, noise_fn=noise_fn).samples
    with tf.GradientTape() as tape:
      tape.watch(chains)
      potential = tf.reduce_sum(tf.cast(energy_fn(chains), tf.float32)) / temperature
    drift = chains - 0.5 * tf.square(eps) * tape.gradient(potential, chains)
    return t + 1, sample + (drift - tf.stop_gradient(drift))

  chains = purify_lib.tile_repeats(x, reps)
  _, chains = tf.while_loop(lambda t, _: t < steps, body, (tf.constant(0, tf.int32), chains),
                            maximum_iterations=max_chain_steps)
  return purify_lib.split_repeats(chains, x, reps)


def full_gradient_eot_logits(classifier: purify_lib.Classifier,
                             energy_fn: purify_lib.EnergyFn,
                             images,
                             seed,
                             *,
                             num_steps: int,
                             step_size,
                             temperature,
                             num_repeats,
                             max_chain_steps: int = MAX_CHAIN_STEPS) -> tf.Tensor:
  """EOT logits [B, K] differentiable through the whole (short) chain; see
  `full_gradient_purify` for the arguments."""
  purified = full_gradient_purify(energy_fn, images, seed, num_steps=num_steps,
                                  step_size=step_size, temperature=temperature,
                                  num_repeats=num_repeats, max_chain_steps=max_chain_steps)
  return purify_lib.mean_logits(classifier, purified)


# ------------------------------------------------------------------------------------------
# The attack protocol.


class AttackResult(NamedTuple):
  """What the PGD attacks return (numpy arrays; B images, adv_steps + 1 evaluations).

  Attributes:
    accuracy_curve: float64 [adv_steps + 2]: natural accuracy, then after each evaluation the
      fraction of images not (yet) broken; non-increasing.
    natural_correct: bool [B]: the defense classified the clean image correctly.
    robust_correct: bool [B]: naturally correct and never broken (mean = robust accuracy).
    broken: bool [B]: naturally correct but broken at some evaluation.
    broken_at: int64 [B]: the evaluation index t (0 .. adv_steps) of the break; -1 otherwise.
    adversarial_images: float32 [B, H, W, C]: the image at the break for broken images, the
      clean image for naturally wrong ones, the last evaluated X_adv for the others.
    eps: the radius in [-1, 1] pixel units.
    step_size: the PGD step in [-1, 1] pixel units.
    trajectory: float32 [adv_steps + 1, B, H, W, C]: every evaluated X_adv, or None.
  """
  accuracy_curve: np.ndarray
  natural_correct: np.ndarray
  robust_correct: np.ndarray
  broken: np.ndarray
  broken_at: np.ndarray
  adversarial_images: np.ndarray
  eps: float
  step_size: float
  trajectory: Optional[np.ndarray]

  @property
  def natural_accuracy(self) -> float:
    return float(self.accuracy_curve[0])

  @property
  def robust_accuracy(self) -> float:
    return float(self.accuracy_curve[-1])


def check_perturbation(x_adv, images, eps: float, what: str = "x_adv") -> None:
  """Raises AssertionError unless |x_adv - images|_inf <= eps and x_adv is in [-1, 1]."""
  x_adv = np.asarray(x_adv)
  distance = float(np.max(np.abs(x_adv - np.asarray(images)))) if x_adv.size else 0.0
  if distance > eps + _BALL_TOLERANCE:
    raise AssertionError(f"{what} left the eps-ball: max |x_adv - x| = {distance:.6g} > "
                         f"eps = {eps:.6g}")
  if x_adv.size and (x_adv.min() < -1.0 or x_adv.max() > 1.0):
    raise AssertionError(f"{what} left [-1, 1]: values in [{x_adv.min():.6g}, "
                         f"{x_adv.max():.6g}]")


def _check_labels(labels, batch):
  labels = np.asarray(labels)
  if labels.shape != (batch,) or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integers of shape [{batch}]; got {labels.dtype} "
                     f"{labels.shape}")
  if labels.size and labels.min() < 0:
    raise ValueError(f"labels must be >= 0; got {labels.min()}")
  return labels.astype(np.int64)


def _logits_of(logits_fn, images, seed, batch_name):
  logits = tf.convert_to_tensor(logits_fn(images, seed))
  if logits.shape.rank != 2:
    raise ValueError(f"{batch_name} must return logits of shape [batch, num_classes]; got "
                     f"{logits.shape}")
  return tf.cast(logits, tf.float32)


def attack_method_settings(attack_method: str, *, eps_255, step_size_255, adv_steps,
                           random_start: bool) -> Dict[str, Any]:
  """Checks that the attack settings fit `attack_method`; returns its `pgd_attack` arguments.

  Args:
    attack_method: one of `ATTACK_METHODS` ('pgd', 'bim', 'fgm', 'mim', 'apgd'; module
      docstring).
    eps_255, step_size_255: the l_inf radius and step in /255 units.
    adv_steps: attack steps.
    random_start: whether the attack starts from a random point of the eps-ball.

  Returns:
    {"momentum_decay": `MIM_DECAY_FACTOR` for 'mim', else None; "apgd": True for 'apgd'}, to
    pass to `pgd_attack` as keyword arguments.

  Raises:
    ValueError: an unknown method; random_start with 'bim', 'fgm' or 'mim' (they start from
      the clean images); 'fgm' with adv_steps != 1 or step_size_255 != eps_255; 'apgd' with
      step_size_255 != 2 * eps_255 (its initial step).
  """
  if not isinstance(attack_method, str) or attack_method not in ATTACK_METHODS:
    raise ValueError(f"attack_method must be one of {ATTACK_METHODS}; got {attack_method!r}")
  if attack_method not in ("pgd", "apgd") and random_start:
    raise ValueError(f"attack_method {attack_method!r} starts from the clean images (as "
                     f"cleverhans' version does): set random_start=False (--random_start=false), "
                     f"or use attack_method 'pgd' for a random start; got random_start=True")
  if attack_method == "fgm" and (adv_steps != 1 or step_size_255 != eps_255):
    raise ValueError(f"attack_method 'fgm' is one step of size eps: it needs adv_steps=1 and "
                     f"step_size_255 = eps_255 = {eps_255!r}; got adv_steps={adv_steps!r}, "
                     f"step_size_255={step_size_255!r}")
  if attack_method == "apgd" and step_size_255 != APGD_INITIAL_STEP * eps_255:
    raise ValueError(f"attack_method 'apgd' starts with the step 2 * eps and then sets it "
                     f"itself: it needs step_size_255 = 2 * eps_255 = "
                     f"{APGD_INITIAL_STEP * eps_255!r} (--step_size_255); got "
                     f"step_size_255={step_size_255!r}")
  return {"momentum_decay": MIM_DECAY_FACTOR if attack_method == "mim" else None,
          "apgd": attack_method == "apgd"}


def apgd_checkpoints(n_iter: int) -> List[int]:
  """The evaluations after which APGD checks (and may halve) each image's step size.

  As the reference implementation (fra31/auto-attack `APGDAttack`, torchattacks.APGD): the
  first check after h_0 = max(floor(0.22 n), 1) steps, then every h_{j+1} = max(h_j -
  max(floor(0.03 n), 1), max(floor(0.06 n), 1)) steps, while <= n. This is Croce and Hein's
  w_j = ceil(p_j n), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), with
  every increment rounded down instead: identical for n = 100 (22, 41, 57, 70, 80, 87, 93, 99),
  fewer checks for n = 50 (11, 21, 30, 38, 45 against the paper's 11, 21, 29, 35, 40, 44, 47,
  50).

  Args:
    n_iter: int >= 0, the attack steps (adv_steps).

  Returns:
    The increasing evaluation indices t in [1, n_iter] (evaluation t = the iterate after t
    steps); [] for n_iter = 0.
  """
  n_iter = checks.check_int(n_iter, "n_iter")
  if n_iter == 0:
    return []
  h = max(int(0.22 * n_iter), 1)
  decrease, minimum = max(int(0.03 * n_iter), 1), max(int(0.06 * n_iter), 1)
  at, t = [], h
  while t <= n_iter:
    at.append(t)
    h = max(h - decrease, minimum)
    t += h
  return at


def apgd_halve(losses, best_loss, best_loss_at_last_check, reduced_at_last_check,
               rho: float = APGD_RHO) -> np.ndarray:
  """APGD's rule at a checkpoint: which images halve their step size (and restart from x_max).

  Args:
    losses: float [h + 1, B]: row 0 the loss at the previous checkpoint's evaluation, rows
      1..h the losses at the h evaluations since (the last one is this checkpoint's). At the
      first checkpoint the reference implementations compare with 0 (their loss array wraps
      around to a row not yet written), not with the start point's loss: `pgd_attack` passes
      0 there too.
    best_loss: float [B], the highest loss so far (this checkpoint included).
    best_loss_at_last_check: float [B], the highest loss at the previous checkpoint (at the
      first: the start point's loss).
    reduced_at_last_check: bool [B], whether the step was halved at the previous checkpoint
      (all True at the first checkpoint: condition 2 starts at the second).
    rho: the fraction of condition 1, in [0, 1].

  Returns:
    bool [B]: condition 1, the loss increased (strictly) in at most rho * h of the h steps
    (the reference's <=; Algorithm 1 writes <); or condition 2, the step was not halved at the
    previous checkpoint and the best loss did not increase since.
  """
  losses = np.asarray(losses)
  if losses.ndim != 2 or losses.shape[0] < 2:
    raise ValueError(f"losses must have shape [h + 1, B] with h >= 1; got {losses.shape}")
  rho = _number(rho, "rho")
  h = losses.shape[0] - 1
  increases = np.sum(losses[1:] > losses[:-1], axis=0)
  oscillating = increases <= h * rho
  stalled = ~np.asarray(reduced_at_last_check, bool) & (
      np.asarray(best_loss_at_last_check) >= np.asarray(best_loss))
  return oscillating | stalled


class _ApgdState:
  """APGD's per-image step sizes, best points and momentum step (numpy, float32)."""

  def __init__(self, images: np.ndarray, eps: float, initial_step: float, adv_steps: int):
    self._low = images - np.float32(eps)
    self._high = images + np.float32(eps)
    self._shape = (-1,) + (1,) * (images.ndim - 1)
    self.step_size = np.full(images.shape[0], initial_step, np.float32)
    self._checkpoints = apgd_checkpoints(adv_steps)
    self._last_check = 0

  def step(self, t: int, x_adv: np.ndarray, loss: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """The iterate after step t from evaluation t (x_adv, its loss [B] and gradient)."""
    x_adv, grad = x_adv.copy(), grad.copy()
    if t == 0:
      self.x_best, self.grad_best, self.loss_best = x_adv.copy(), grad.copy(), loss.copy()
      self._best_at_check = loss.copy()
      self._reduced = np.ones(loss.shape, bool)
      self._losses = [np.zeros_like(loss)]  # row t: the loss at evaluation t (row 0: see above)
      self._x_old = x_adv.copy()
    else:
      self._losses.append(loss)
      better = loss > self.loss_best
      self.x_best[better], self.grad_best[better] = x_adv[better], grad[better]
      self.loss_best[better] = loss[better]
      if t in self._checkpoints:
        halve = apgd_halve(np.stack(self._losses[self._last_check:t + 1]), self.loss_best,
                           self._best_at_check, self._reduced)
        self._reduced, self._best_at_check = halve, self.loss_best.copy()
        self._last_check = t
        self.step_size[halve] /= 2.0
        x_adv[halve], grad[halve] = self.x_best[halve], self.grad_best[halve]
    a = 1.0 if t == 0 else APGD_MOMENTUM
    previous_step = x_adv - self._x_old
    self._x_old = x_adv.copy()
    z = x_adv + self.step_size.reshape(self._shape) * np.sign(grad)
    z = np.clip(np.minimum(np.maximum(z, self._low), self._high), -1.0, 1.0)
    x_new = x_adv + (z - x_adv) * a + previous_step * (1.0 - a)
    return np.clip(np.minimum(np.maximum(x_new, self._low), self._high), -1.0, 1.0)


def pgd_attack(attack_logits_fn: LogitsFn,
               images,
               labels,
               seed,
               *,
               eps_255,
               step_size_255,
               adv_steps: int,
               verify_logits_fn: Optional[LogitsFn] = None,
               verify_all: bool = False,
               verify_batch_size: Optional[int] = None,
               random_start: bool = True,
               momentum_decay: Optional[float] = None,
               apgd: bool = False,
               loss_fn=None,
               return_trajectory: bool = False,
               log_every: int = 0) -> AttackResult:
  """l_inf PGD with permanent-break bookkeeping (the protocol in the module docstring).

  The one attack loop of this module: BIM is PGD without a random start, FGM one step of size
  eps without one, MIM adds `momentum_decay` and APGD (`apgd`) sets each image's step itself
  (see `attack_method_settings`).

  Args:
    attack_logits_fn: `(images [N, H, W, C], seed int32 [2]) -> logits [N, K]`, differentiable
      w.r.t. images; its gradient drives the attack (BPDA, full gradient or plain) and its
      predictions are the per-step evaluation. Called inside a `tf.function`.
    images: float [B, H, W, C] in [-1, 1], the clean images X.
    labels: int [B], the true classes y.
    seed: int32/int64 [2] stateless seed (derived seeds: module docstring).
    eps_255: l_inf radius in /255 units (>= 0); acts as eps_255 * 2/255 on [-1, 1] pixels.
    step_size_255: PGD step eta in /255 units (>= 0).
    adv_steps: int >= 0, PGD steps; adv_steps + 1 evaluations.
    verify_logits_fn: optional `(images, seed) -> logits` for the natural evaluation and to
      re-check wrong predictions (e.g. EOT with more repeats); None: a wrong attack prediction
      breaks the image at once and the natural evaluation uses attack_logits_fn.
    verify_all: re-check every still-defended image at every evaluation, not only those the
      attack evaluation gets wrong (for attacks whose own evaluation is not the defense).
    verify_batch_size: at most this many images per verification call (memory: each image
      becomes eot_defense_reps chains); None: all at once.
    random_start: start from clip(X + eps U[-1, 1], -1, 1), else from X.
    momentum_decay: None: step along sign(grad). A number mu >= 0: the momentum iterative
      method, g <- mu g + grad / max(mean |grad|, 1e-12) (mean per image), step along
      sign(g), g starting at 0 (cleverhans' `momentum_iterative_method` with decay_factor=mu).
    apgd: APGD's step-size schedule and momentum (module docstring) with initial step
      step_size_255 (2 * eps_255 for APGD proper); not with momentum_decay.
    loss_fn: `loss_fn(labels=, logits=) -> [N]` maximised by the attack (cleverhans'
      convention); default softmax cross-entropy.
    return_trajectory: keep every evaluated X_adv in the result.
    log_every: log progress with absl.logging every this many steps (0: never).

  Returns:
    An `AttackResult`.

  Raises:
    ValueError: for bad images (rank, range, NaN), labels, eps/step < 0, adv_steps < 0, a
      logits function whose output does not depend on the images, or labels >= num_classes.
    AssertionError: if an iterate leaves the eps-ball or [-1, 1] (a bug, checked every step).
  """
  if not tf.executing_eagerly():
    raise ValueError("pgd_attack runs its Python loop eagerly; call it outside tf.function")
  x = purify_lib.check_images(images)
  y = _check_labels(labels, x.shape[0])
  seed = checks.check_seed(seed, dtype=tf.int32)
  eps = to_pixel_units(_number(eps_255, "eps_255"))
  eta = to_pixel_units(_number(step_size_255, "step_size_255"))
  adv_steps = checks.check_int(adv_steps, "adv_steps")
  log_every = checks.check_int(log_every, "log_every")
  verify_batch_size, momentum_decay = _check_pgd_options(
      verify_logits_fn, verify_all, verify_batch_size, momentum_decay, apgd)
  if loss_fn is None:
    loss_fn = tf.nn.sparse_softmax_cross_entropy_with_logits
  # One traced function serves every evaluation (the last one's step is discarded): a
  # second trace of the purifier would cost more than one classifier backward pass.
  attack_step = _make_attack_step(attack_logits_fn, x.shape[1:], loss_fn, momentum_decay)
  verified_wrong = None
  if verify_logits_fn is not None:
    verified_wrong = _make_verifier(verify_logits_fn, x.shape[1:], y, verify_batch_size)
  natural_correct = _natural_correct(attack_step, verified_wrong, x, y, seed, eps, eta)
  return _attack_loop(attack_step, verified_wrong, x, y, seed, eps, eta, natural_correct,
                      adv_steps=adv_steps, random_start=random_start, verify_all=verify_all,
                      apgd=apgd, return_trajectory=return_trajectory, log_every=log_every)


def _check_pgd_options(verify_logits_fn, verify_all, verify_batch_size, momentum_decay, apgd):
  """`pgd_attack`'s verification and step options: (verify_batch_size, momentum_decay)."""
  if verify_batch_size is not None:
    verify_batch_size = checks.check_int(verify_batch_size, "verify_batch_size", 1)
  if verify_all and verify_logits_fn is None:
    raise ValueError("verify_all=True needs a verify_logits_fn")
  if momentum_decay is not None:
    momentum_decay = _number(momentum_decay, "momentum_decay")
  if not isinstance(apgd, (bool, np.bool_)):
    raise ValueError(f"apgd must be True or False; got {apgd!r}")
  if apgd and momentum_decay is not None:
    raise ValueError(f"apgd has its own momentum: momentum_decay must be None; got "
                     f"{momentum_decay!r}")
  return verify_batch_size, momentum_decay


def _make_attack_step(attack_logits_fn: LogitsFn, sample_shape, loss_fn, momentum_decay):
  """The traced attack step: (x_adv, x_orig, y, step_seed, eps, eta, momentum) -> (logits at
  x_adv, the next iterate, the next momentum, the loss [N], its gradient)."""
  image_spec = tf.TensorSpec([None, *sample_shape], tf.float32)

  @tf.function(input_signature=[image_spec, image_spec, tf.TensorSpec([None], tf.int64),
                                tf.TensorSpec([2], tf.int32), tf.TensorSpec([], tf.float32),
                                tf.TensorSpec([], tf.float32), image_spec])
  def attack_step(x_adv, x_orig, y, step_seed, eps, eta, momentum):
    with tf.GradientTape() as tape:
      tape.watch(x_adv)
      logits = _logits_of(attack_logits_fn, x_adv, step_seed, "attack_logits_fn")
      with tf.control_dependencies([tf.debugging.assert_less(
          y, tf.shape(logits, out_type=tf.int64)[-1],
          message="labels must be < num_classes (the logits' last dimension)")]):
        loss = loss_fn(labels=y, logits=logits)
    grad = tape.gradient(loss, x_adv)
    if grad is None:
      raise ValueError("attack_logits_fn's logits do not depend on the images: no gradient")
    direction = grad
    if momentum_decay is not None:  # as cleverhans' momentum_iterative_method
      per_image = list(range(1, grad.shape.rank))
      grad = grad / tf.maximum(tf.cast(_MIM_ZERO_DIVISION, grad.dtype),
                               tf.reduce_mean(tf.abs(grad), per_image, keepdims=True))
      momentum = momentum_decay * momentum + grad
      direction = momentum
    x_new = x_adv + cleverhans_utils.optimize_linear(direction, eta, np.inf)
    x_new = x_orig + cleverhans_utils.clip_eta(x_new - x_orig, np.inf, eps)
    return logits, tf.clip_by_value(x_new, -1.0, 1.0), momentum, loss, grad

  return attack_step


def _check_num_classes(y: np.ndarray, logits) -> None:
  if y.size and y.max() >= logits.shape[-1]:
    raise ValueError(f"labels must be < num_classes = {logits.shape[-1]}; got {y.max()}")


def _make_verifier(verify_logits_fn: LogitsFn, sample_shape, y: np.ndarray, verify_batch_size):
  """`verified_wrong(x_adv, index, step_seed)`: the subset of `index` whose verification
  prediction is wrong (at most verify_batch_size images per call)."""
  image_spec = tf.TensorSpec([None, *sample_shape], tf.float32)

  @tf.function(input_signature=[image_spec, tf.TensorSpec([2], tf.int32)])
  def verify(x_check, check_seed):
    return _logits_of(verify_logits_fn, x_check, check_seed, "verify_logits_fn")

  def verified_wrong(x_adv, index, step_seed):
    chunk = verify_batch_size or max(len(index), 1)
    wrong = []
    for c, start in enumerate(range(0, len(index), chunk)):
      part = index[start:start + chunk]
      logits = verify(tf.gather(x_adv, part), _fold(step_seed, c)).numpy()
      _check_num_classes(y, logits)
      wrong.append(part[np.argmax(logits, axis=-1) != y[part]])
    return np.concatenate(wrong) if wrong else index[:0]

  return verified_wrong


def _natural_correct(attack_step, verified_wrong, x, y, seed, eps, eta) -> np.ndarray:
  """Which clean images the defense (the verifier, else the attack evaluation) gets right."""
  # Tracing gives the number of classes: bad labels fail here, before any attack work.
  num_classes = attack_step.get_concrete_function().structured_outputs[0].shape[-1]
  if num_classes is not None:
    _check_num_classes(y, np.zeros([0, num_classes]))
  natural_correct = np.ones(y.shape, bool)
  if verified_wrong is not None:
    natural_correct[verified_wrong(x, np.arange(y.size), _fold(seed, 0))] = False
    return natural_correct
  natural_logits = attack_step(x, x, y, _fold(seed, 0), eps, eta, tf.zeros_like(x))[0].numpy()
  _check_num_classes(y, natural_logits)
  return np.argmax(natural_logits, axis=-1) == y


def _start_point(x, seed, eps, random_start: bool):
  """The first iterate: clip(X + eps U[-1, 1], -1, 1) with a random start, else X."""
  if not random_start:
    return x
  noise = tf.random.stateless_uniform(tf.shape(x), _fold(seed, 1), minval=-1.0, maxval=1.0)
  return tf.clip_by_value(x + eps * noise, -1.0, 1.0)


def _attack_loop(attack_step, verified_wrong, x, y, seed, eps, eta, natural_correct, *,
                 adv_steps, random_start, verify_all, apgd, return_trajectory,
                 log_every) -> AttackResult:
  """The adv_steps + 1 evaluations and steps of `pgd_attack`, with permanent-break bookkeeping."""
  x_np = x.numpy()
  defended = natural_correct.copy()
  broken_at = np.full(y.shape, -1, np.int64)
  adversarial = x_np.copy()
  curve = [float(np.mean(defended))] if y.size else [0.0]
  x_adv = _start_point(x, seed, eps, random_start)
  check_perturbation(x_adv, x_np, eps, "the random start")
  momentum = tf.zeros_like(x)  # MIM's accumulated gradient (unused without momentum_decay)
  apgd_state = _ApgdState(x_np, eps, eta, adv_steps) if apgd else None
  trajectory = []
  attack_seed = _fold(seed, 2)
  verify_seed = _fold(seed, 3)
  for t in range(adv_steps + 1):
    step_seed = _fold(attack_seed, t)
    logits, x_next, next_momentum, loss, grad = attack_step(x_adv, x, y, step_seed, eps, eta,
                                                            momentum)
    if t == adv_steps:
      x_next = None
    elif apgd_state is not None:
      x_next = tf.constant(apgd_state.step(t, x_adv.numpy(), loss.numpy(), grad.numpy()))
    logits = logits.numpy()
    _check_num_classes(y, logits)
    wrong = np.argmax(logits, axis=-1) != y
    candidates = np.flatnonzero(defended & (wrong | verify_all))
    if verified_wrong is not None and candidates.size:
      newly_broken = verified_wrong(x_adv, candidates, _fold(verify_seed, t))
    else:
      newly_broken = candidates
    x_adv_np = x_adv.numpy()
    defended[newly_broken] = False
    broken_at[newly_broken] = t
    adversarial[newly_broken] = x_adv_np[newly_broken]
    curve.append(float(np.mean(defended)) if y.size else 0.0)
    if return_trajectory:
      trajectory.append(x_adv_np)
    if log_every and (t % log_every == 0 or t == adv_steps):
      logging.info("attack evaluation %d/%d: defended %d of %d (attack-eval accuracy %.3f)", t,
                   adv_steps, int(defended.sum()), y.size, float(np.mean(~wrong)))
    if x_next is not None:
      check_perturbation(x_next, x_np, eps, f"x_adv after step {t + 1}")
      x_adv, momentum = x_next, next_momentum
  adversarial[defended] = x_adv.numpy()[defended]
  return AttackResult(
      accuracy_curve=np.asarray(curve, np.float64),
      natural_correct=natural_correct,
      robust_correct=defended,
      broken=natural_correct & ~defended,
      broken_at=broken_at,
      adversarial_images=adversarial,
      eps=eps,
      step_size=eta,
      trajectory=np.stack(trajectory) if return_trajectory else None)


def _purify_settings(purify_steps, purify_step_size, purify_temperature):
  return dict(num_steps=checks.check_int(purify_steps, "purify_steps"),
              step_size=_number(purify_step_size, "purify_step_size", strict=True),
              temperature=_number(purify_temperature, "purify_temperature", strict=True))


def _eot_verifier(classifier, energy_fn, settings, eot_defense_reps):
  def verify(x, seed):
    return purify_lib.eot_logits(classifier, energy_fn, x, seed, num_repeats=eot_defense_reps,
                                 **settings)
  return verify


# The adaptive attacks on the purifier, by the gradient their attack logits give (the names of
# `ebm_tf.defense.defense_eval.ATTACKS`).
EOT_ATTACKS = ("bpda_eot", "full_gradient", "exact_gradient")


def _bpda_attack_logits(classifier, energy_fn, settings, eot_attack_reps, **unused):
  """BPDA + EOT: the classifier's gradient at the purified images (`bpda_eot_logits`)."""
  def attack_logits(x, seed):
    return bpda_eot_logits(classifier, energy_fn, x, seed, num_repeats=eot_attack_reps,
                           **settings)
  return attack_logits, False


def _full_gradient_attack_logits(classifier, energy_fn, settings, eot_attack_reps, *,
                                 attack_purify_steps, max_chain_steps, **unused):
  """Backpropagation through a chain of attack_purify_steps (`full_gradient_eot_logits`); a
  chain shorter than the defense's verifies every still-defended image (`verify_all`)."""
  max_chain_steps = checks.check_int(max_chain_steps, "max_chain_steps", 1)
  chain = settings["num_steps"] if attack_purify_steps is None else checks.check_int(
      attack_purify_steps, "attack_purify_steps")
  if chain > max_chain_steps:
    raise ValueError(f"the full-gradient attack chain must have <= max_chain_steps="
                     f"{max_chain_steps} steps; got {chain} (set attack_purify_steps)")

  def attack_logits(x, seed):
    return full_gradient_eot_logits(classifier, energy_fn, x, seed, num_steps=chain,
                                    step_size=settings["step_size"],
                                    temperature=settings["temperature"],
                                    num_repeats=eot_attack_reps, max_chain_steps=max_chain_steps)
  return attack_logits, chain != settings["num_steps"]


def _exact_gradient_attack_logits(classifier, energy_fn, settings, eot_attack_reps, *,
                                  segment_length, **unused):
  """The exact gradient through the defense's whole chain
  (`exact_gradient.exact_gradient_eot_logits`)."""
  if segment_length is None:
    segment_length = exact_gradient.default_segment_length(settings["num_steps"])
  segment_length = checks.check_int(segment_length, "segment_length", 1)

  def attack_logits(x, seed):
    return exact_gradient.exact_gradient_eot_logits(
        classifier, energy_fn, x, seed, num_repeats=eot_attack_reps,
        segment_length=segment_length, **settings)
  return attack_logits, False


_ATTACK_LOGITS = {"bpda_eot": _bpda_attack_logits,
                  "full_gradient": _full_gradient_attack_logits,
                  "exact_gradient": _exact_gradient_attack_logits}
# The arguments that only one attack takes, and that attack.
_ATTACK_ONLY = {"attack_purify_steps": "full_gradient", "segment_length": "exact_gradient"}


def eot_pgd(attack: str,
            classifier: purify_lib.Classifier,
            energy_fn: purify_lib.EnergyFn,
            images,
            labels,
            seed,
            *,
            eps_255,
            step_size_255,
            adv_steps: int,
            purify_steps: int,
            purify_step_size: float,
            purify_temperature: float,
            eot_attack_reps: int,
            eot_defense_reps: int,
            attack_purify_steps: Optional[int] = None,
            max_chain_steps: int = MAX_CHAIN_STEPS,
            segment_length: Optional[int] = None,
            random_start: bool = True,
            attack_method: str = "pgd",
            verify_batch_size: Optional[int] = None,
            return_trajectory: bool = False,
            log_every: int = 0) -> AttackResult:
  """An adaptive EOT attack on the purified classifier, with EOT-defense verification.

  The attack evaluation and gradient use the attack logits of `attack` with `eot_attack_reps`
  purifications; natural accuracy and the re-check of wrong predictions use `purify.eot_logits`
  with `eot_defense_reps` (the defense under attack). One `pgd_attack` loop for all of them:

    'bpda_eot'        the paper's BPDA + EOT (docs/paper_settings.md 7.3): the classifier's
                      gradient at the purified images (`bpda_eot_logits`). CIFAR-10 reference:
                      eps_255=8, step_size_255=2, adv_steps=50, purify_steps=2000,
                      purify_step_size=0.01, purify_temperature=1e-4, eot_attack_reps=48,
                      eot_defense_reps=128.
    'full_gradient'   backpropagates through a Langevin chain of `attack_purify_steps`
                      (default `purify_steps`; at most `max_chain_steps`). When it is shorter
                      than the defense's chain its own predictions are not the defense's, so
                      every still-defended image is verified at every evaluation.
    'exact_gradient'  exact through the defense's whole purification: values bitwise
                      `purify.eot_logits` with the same seed, the gradient backpropagated
                      through every Langevin step, the noise fixed per EOT repeat, keeping
                      ceil(L/k) + k chain states (k = `segment_length`, default
                      round(sqrt(L))). For ReLU energies it equals BPDA's (module docstring of
                      `ebm_tf.defense.exact_gradient`); each gradient costs about 4-5x BPDA's
                      purification (chain, recomputation, Hessian-vector products).

  Args:
    attack: one of EOT_ATTACKS.
    classifier: Keras model (called with training=False) or callable, images -> logits [N, K].
    energy_fn: the EBM's energy, images [N, H, W, C] -> [N].
    images, labels, seed, eps_255, step_size_255, adv_steps, random_start, verify_batch_size,
      return_trajectory, log_every: as in `pgd_attack`.
    purify_steps, purify_step_size, purify_temperature: the defense's Langevin K, eps, T.
    eot_attack_reps, eot_defense_reps: purifications per image for the attack and for
      verification (ints >= 1).
    attack_purify_steps, max_chain_steps: 'full_gradient' only: the attack chain's steps (None:
      purify_steps) and their memory cap.
    segment_length: 'exact_gradient' only: chain steps per recomputed segment (int >= 1; None:
      round(sqrt(purify_steps))).
    attack_method: 'pgd', 'bim', 'fgm', 'mim' or 'apgd' (module docstring), with the same
      gradients, EOT and verification; see `attack_method_settings` for the settings each
      needs.

  Returns:
    An `AttackResult`.

  Raises:
    ValueError: for any bad argument (see `pgd_attack`; purify settings, reps < 1, settings
      that do not fit attack_method, a full-gradient chain longer than max_chain_steps, a
      segment_length that is not an int >= 1, an argument of another attack).
  """
  if attack not in _ATTACK_LOGITS:
    raise ValueError(f"attack must be one of {EOT_ATTACKS}; got {attack!r}")
  for name, value in (("attack_purify_steps", attack_purify_steps),
                      ("segment_length", segment_length)):
    if value is not None and _ATTACK_ONLY[name] != attack:
      raise ValueError(f"{name} is an argument of the {_ATTACK_ONLY[name]} attack, not of "
                       f"{attack}; got {name}={value!r}")
  method = attack_method_settings(attack_method, eps_255=eps_255, step_size_255=step_size_255,
                                  adv_steps=adv_steps, random_start=random_start)
  settings = _purify_settings(purify_steps, purify_step_size, purify_temperature)
  eot_attack_reps = checks.check_int(eot_attack_reps, "eot_attack_reps", 1)
  eot_defense_reps = checks.check_int(eot_defense_reps, "eot_defense_reps", 1)
  attack_logits, verify_all = _ATTACK_LOGITS[attack](
      classifier, energy_fn, settings, eot_attack_reps, attack_purify_steps=attack_purify_steps,
      max_chain_steps=max_chain_steps, segment_length=segment_length)
  return pgd_attack(attack_logits, images, labels, seed, eps_255=eps_255,
                    step_size_255=step_size_255, adv_steps=adv_steps,
                    verify_logits_fn=_eot_verifier(classifier, energy_fn, settings,
                                                   eot_defense_reps),
                    verify_all=verify_all, verify_batch_size=verify_batch_size,
                    random_start=random_start, return_trajectory=return_trajectory,
                    log_every=log_every, **method)


def bpda_eot_pgd(classifier, energy_fn, images, labels, seed, **kwargs) -> AttackResult:
  """`eot_pgd('bpda_eot', ...)`: the paper's BPDA + EOT l_inf PGD (same arguments)."""
  return eot_pgd("bpda_eot", classifier, energy_fn, images, labels, seed, **kwargs)


def full_gradient_eot_pgd(classifier, energy_fn, images, labels, seed, **kwargs
                          ) -> AttackResult:
  """`eot_pgd('full_gradient', ...)`: PGD whose gradient backpropagates through a short
  Langevin chain (same arguments)."""
  return eot_pgd("full_gradient", classifier, energy_fn, images, labels, seed, **kwargs)


def exact_gradient_eot_pgd(classifier, energy_fn, images, labels, seed, **kwargs
                           ) -> AttackResult:
  """`eot_pgd('exact_gradient', ...)`: PGD whose gradient is exact through the defense's whole
  purification (same arguments)."""
  return eot_pgd("exact_gradient", classifier, energy_fn, images, labels, seed, **kwargs)


def undefended_pgd(classifier: purify_lib.Classifier,
                   images,
                   labels,
                   seed,
                   *,
                   eps_255,
                   step_size_255,
                   adv_steps: int,
                   random_start: bool = True,
                   attack_method: str = "pgd",
                   return_trajectory: bool = False,
                   log_every: int = 0) -> AttackResult:
  """The same l_inf attack on the classifier alone (no purification): the undefended baseline.

  Arguments as in `pgd_attack`, and attack_method as in `bpda_eot_pgd`; `classifier` is a
  Keras model (training=False) or a callable images -> logits [N, K]. The seed only draws the
  random start. Here each method equals its cleverhans.tf2 function, and 'apgd' (without a
  random start) torchattacks.APGD's iterates (module docstring).
  """
  method = attack_method_settings(attack_method, eps_255=eps_255, step_size_255=step_size_255,
                                  adv_steps=adv_steps, random_start=random_start)

  def logits(x, unused_seed):
    return purify_lib.classify(classifier, x)

  return pgd_attack(logits, images, labels, seed, eps_255=eps_255, step_size_255=step_size_255,
                    adv_steps=adv_steps, random_start=random_start,
                    return_trajectory=return_trajectory, log_every=log_every, **method)
