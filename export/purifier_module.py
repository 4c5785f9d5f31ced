"""The served model: a `tf.Module` whose `serve()` purifies images with the EBM and classifies them.

Purification is the library's, `ebm_tf.defense.purify` (`purify_chains` on `tile_repeats` of the
request's images, `split_repeats`, `average_repeats`; `purify` itself for `purify_batchable`):
plain Langevin on E/T, x <- x - (eps^2/2) grad(sum E/T) + eps N(0, I), no clamping, noise drawn
statelessly from the request's `seed`, so the same request gives the same answer. With a classifier, each image is purified `num_repeats` times (independent chains) and
the classifier's logits are averaged over the repeats (EOT, as in the paper's defense).

Signatures (all with a `None` batch dimension; H, W, C fixed by the EBM):

| name | inputs | outputs |
|---|---|---|
| `serving_default` | images float32 [B,H,W,C] in [-1,1]; seed int64 [2] = [0,0]; num_steps int32 [] = config default; num_repeats int32 [] = 1 (classifier only) | purified float32 [B,H,W,C]; energies float32 [B]; with a classifier logits float32 [B,N] (mean over repeats), class_ids int64 [B] |
| `purify` | images, seed, num_steps | purified, energies |
| `energy` | images | energies |
| `serving_uint8` | images uint8 [B,H,W,C] in [0,255] (x/127.5 - 1), seed, num_steps, (num_repeats) | as serving_default, plus purified_uint8 uint8 [B,H,W,C] |
| `purify_batchable` | images float32 [B,H,W,C] in [-1,1]; seeds int64 [B,2], one per image (steps and repeats fixed at export: `batchable_num_steps`, `batchable_num_repeats`) | purified [B,H,W,C]; energies [B]; with a classifier logits [B,N], class_ids [B] |

`purified` and `energies` are those of the first repeat's chain; `energies` is the raw E (low =
data-like). Inputs with a default may be left out of a gRPC request (SignatureDef defaults).
Without a classifier, `serving_default` is the `purify` signature.

`purify_batchable` is the one purify signature that TF Serving's server-side batching
(`--enable_batching`) can merge: every input and output has the batch as dimension 0. It is
batch-invariant: image i's outputs depend only on images[i] and seeds[i] (its chains use the
sampler's per-chain seeds, `ebm_tf.defense.purify.per_image_chain_seeds`; its energy and logits are
computed image by image, because a batched matmul rounds differently at other batch sizes), so a
request's answer does not depend on the requests it was merged or padded with.

Export note (found with the TF Serving stand-in): a `tf.Module` that holds a Keras 3 model as an
attribute exports a SavedModel that `tf.saved_model.load` runs but TF Serving's Session loader
does not ("Could not find variable ..."): Keras 3 variables export a second, restored copy of
each weight while the functions read the first. This module therefore tracks the networks'
underlying `tf.Variable`s, not the Keras models.
"""

import dataclasses
import json
from typing import Any, Dict, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from ebm_tf.defense import purify as purify_lib
from ebm_tf import models
from export import validation

SERVING_DEFAULT = "serving_default"
PURIFY = "purify"
ENERGY = "energy"
SERVING_UINT8 = "serving_uint8"
PURIFY_BATCHABLE = "purify_batchable"


@dataclasses.dataclass(frozen=True)
class PurifierConfig:
  """Settings baked into an export.

  Attributes:
    image_shape: (H, W, C) of the images.
    step_size: Langevin eps > 0 (drift eps^2/2, noise eps).
    temperature: T > 0; the sampler uses E/T.
    default_num_steps: Langevin steps when a request gives none.
    max_num_steps: largest `num_steps` a request may ask for.
    max_batch_size: largest request batch.
    default_num_repeats: EOT repeats when a request gives none (classifier exports).
    max_num_repeats: largest `num_repeats`.
    input_range: "reject" (images outside [-1, 1] are an error) or "clip" (clipped to it).
    batchable_num_steps: Langevin steps of the `purify_batchable` signature (fixed at export;
      None: default_num_steps).
    batchable_num_repeats: EOT repeats of `purify_batchable` (None: default_num_repeats).
    jit_compile: XLA-compile the sampler and classifier (GPU/TPU; slow on CPU). XLA draws other
      noise than TF kernels for the same seed, so outputs differ from a non-XLA export.
  """
  image_shape: Tuple[int, int, int]
  step_size: float
  temperature: float
  default_num_steps: int = 100
  max_num_steps: int = 2000
  max_batch_size: int = 64
  default_num_repeats: int = 1
  max_num_repeats: int = 16
  input_range: str = "reject"
  batchable_num_steps: Optional[int] = None
  batchable_num_repeats: Optional[int] = None
  jit_compile: bool = False

  def __post_init__(self):
    shape = tuple(self.image_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                  for d in shape):
      raise ValueError(f"image_shape must be three positive ints (H, W, C); got {self.image_shape}")
    object.__setattr__(self, "image_shape", shape)
    for name in ("step_size", "temperature"):
      value = getattr(self, name)
      if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be a number > 0; got {value!r}")
    for name, low in (("max_num_steps", 0), ("max_batch_size", 1), ("max_num_repeats", 1)):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
    if not 0 <= self.default_num_steps <= self.max_num_steps:
      raise ValueError(f"default_num_steps must be in [0, max_num_steps={self.max_num_steps}]; "
                       f"got {self.default_num_steps}")
    if not 1 <= self.default_num_repeats <= self.max_num_repeats:
      raise ValueError(f"default_num_repeats must be in [1, max_num_repeats="
                       f"{self.max_num_repeats}]; got {self.default_num_repeats}")
    for name, default, low, high in (
        ("batchable_num_steps", self.default_num_steps, 0, self.max_num_steps),
        ("batchable_num_repeats", self.default_num_repeats, 1, self.max_num_repeats)):
      value = getattr(self, name)
      if value is None:
        object.__setattr__(self, name, default)
      elif isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in [{low}, {high}]; got {value!r}")
    if self.input_range not in validation.INPUT_RANGES:
      raise ValueError(f"input_range must be one of {validation.INPUT_RANGES}; got "
                       f"{self.input_range!r}")

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)


class _Networks:
  """Holds the Keras models without making them tracked dependencies (see module docstring)."""

  def __init__(self, ebm: keras.Model, classifier: Optional[keras.Model]):
    self.ebm = ebm
    self.classifier = classifier


def _tf_variables(model: keras.Model) -> list:
  """The `tf.Variable`s behind a Keras model's weights."""
  out = []
  for v in model.variables:
    value = getattr(v, "value", v)
    if not isinstance(value, tf.Variable):
      raise TypeError(f"expected TensorFlow variables behind {model.name}; got "
                      f"{type(value).__name__} (is the Keras backend TensorFlow?)")
    out.append(value)
  return out


class PurifierModule(tf.Module):
  """EBM purification (+ optional EOT classification) as a servable `tf.Module`.

  Call `serve`, `purify`, `energy`, `serve_uint8`, `purify_batchable` in-process (tf.functions with the signatures'
  input specs; `serve` has defaults for seed/num_steps/num_repeats), and pass `signatures()` to
  `tf.saved_model.save`.
  """

  def __init__(self, ebm: keras.Model, config: PurifierConfig,
               classifier: Optional[keras.Model] = None, name: str = "purifier"):
    """Wraps `ebm` (images -> energies [B, 1]) and an optional classifier (-> logits [B, N]).

    Raises:
      ValueError: a network's input shape differs from `config.image_shape`, or the classifier
        does not output [B, N] logits.
    """
    super().__init__(name=name)
    for label, net in (("ebm", ebm), ("classifier", classifier)):
      if net is not None and tuple(net.inputs[0].shape[1:]) != config.image_shape:
        raise ValueError(f"{label} {net.name} takes images of shape "
                         f"{tuple(net.inputs[0].shape[1:])}; the config says {config.image_shape}")
    self.num_classes = None
    if classifier is not None:
      out_shape = tuple(classifier.outputs[0].shape)
      if len(out_shape) != 2 or out_shape[1] is None:
        raise ValueError(f"classifier {classifier.name} must output logits [batch, num_classes]; "
                         f"got {out_shape}")
      self.num_classes = int(out_shape[1])
    self.config = config
    self._nets = _Networks(ebm, classifier)
    self.ebm_variables = _tf_variables(ebm)
    self.classifier_variables = _tf_variables(classifier) if classifier is not None else []
    self._energy_of = models.energy_fn(ebm)
    self._run_chains = tf.function(self._run_chains_impl, jit_compile=config.jit_compile,
                                   autograph=False)
    self._energies = tf.function(self._energy_of, jit_compile=config.jit_compile,
                                 autograph=False)
    self._run_batchable = tf.function(self._run_batchable_impl, jit_compile=config.jit_compile,
                                      autograph=False)
    self._build_signature_functions()

  @property
  def has_classifier(self) -> bool:
    return self._nets.classifier is not None

  # --- computation --------------------------------------------------------------------------

  def _run_chains_impl(self, chains, seed, num_steps):
    """Langevin from `chains` [M,H,W,C]; returns samples, energies [M] and (classifier) logits."""
    result = purify_lib.purify_chains(self._energy_of, chains, seed, num_steps=num_steps,
                                      step_size=self.config.step_size,
                                      temperature=self.config.temperature)
    outputs = {"samples": result.samples, "energies": result.energies}
    if self.has_classifier:
      outputs["logits"] = tf.cast(self._nets.classifier(result.samples, training=False),
                                  tf.float32)
    return outputs

  def _run_batchable_impl(self, images, seeds):
    """Batch-invariant purification: images [B,H,W,C], seeds [B,2] -> dict of [B, ...] outputs."""
    reps = self.config.batchable_num_repeats
    purified = purify_lib.purify(self._energy_of, images, seeds,
                                 num_steps=self.config.batchable_num_steps,
                                 step_size=self.config.step_size,
                                 temperature=self.config.temperature, num_repeats=reps)
    first = purified[0]
    # Forward passes image by image (a [1, ...] batch each, R for the classifier): a batched
    # matmul's rounding depends on the batch size, the per-image passes' does not.
    energies = tf.map_fn(lambda image: self._energy_of(image[None])[0], first,
                         fn_output_signature=tf.float32)
    outputs = {"purified": first, "energies": energies}
    if self.has_classifier:
      per_image = tf.transpose(purified, [1, 0, 2, 3, 4])  # [B, R, H, W, C]
      logits = tf.map_fn(
          lambda repeats: purify_lib.mean_logits(self._nets.classifier, repeats[:, None])[0],
          per_image, fn_output_signature=tf.TensorSpec([self.num_classes], tf.float32))
      outputs["logits"] = logits
      outputs["class_ids"] = tf.argmax(logits, axis=-1, output_type=tf.int64)
    return outputs

  def _purify_and_classify(self, images, seed, num_steps, num_repeats):
    """Validated images [B,H,W,C] -> dict of outputs (see the module docstring)."""
    batch = tf.shape(images)[0]
    # The library's repeat-major chains (chain r * B + i is repeat r of image i). Tiling
    # happens outside the (optionally XLA-compiled) sampler because XLA needs constant tile
    # multiples; the classifier runs inside it, on every chain.
    chains = purify_lib.tile_repeats(images, num_repeats)
    run = self._run_chains(chains, seed, num_steps)
    outputs = {"purified": purify_lib.split_repeats(run["samples"], images, num_repeats)[0],
               "energies": run["energies"][:batch]}  # the first repeat's chains
    if self.has_classifier:
      logits = purify_lib.average_repeats(run["logits"], num_repeats, batch)
      outputs["logits"] = logits
      outputs["class_ids"] = tf.argmax(logits, axis=-1, output_type=tf.int64)
    return outputs

  # --- request validation -------------------------------------------------------------------

  def _float_image_checks(self, images):
    return validation.image_checks(images, self.config.image_shape, self.config.max_batch_size,
                                   check_values=True,
                                   reject_out_of_range=self.config.input_range == "reject")

  def _control_checks(self, seed, num_steps, num_repeats=None):
    checks = validation.seed_checks(seed)
    checks += validation.scalar_range_checks(num_steps, "num_steps", 0, self.config.max_num_steps)
    if num_repeats is not None:
      checks += validation.scalar_range_checks(num_repeats, "num_repeats", 1,
                                               self.config.max_num_repeats)
    return checks

  def _prepare_float(self, images):
    if self.config.input_range == "clip":
      images = tf.clip_by_value(images, -1.0, 1.0)
    return images

  # --- signatures ---------------------------------------------------------------------------

  def _build_signature_functions(self):
    """Creates the tf.functions behind the signatures (defaults are tensors, made here)."""
    h, w, c = self.config.image_shape
    float_images = tf.TensorSpec([None, h, w, c], tf.float32, name="images")
    uint8_images = tf.TensorSpec([None, h, w, c], tf.uint8, name="images")
    seed_spec = tf.TensorSpec([2], tf.int64, name="seed")
    steps_spec = tf.TensorSpec([], tf.int32, name="num_steps")
    repeats_spec = tf.TensorSpec([], tf.int32, name="num_repeats")
    default_seed = tf.constant([0, 0], tf.int64)
    default_steps = tf.constant(self.config.default_num_steps, tf.int32)
    default_repeats = tf.constant(self.config.default_num_repeats, tf.int32)

    def purify(images, seed=default_seed, num_steps=default_steps):
      images, seed, num_steps = validation.gate(
          [images, seed, num_steps],
          self._float_image_checks(images) + self._control_checks(seed, num_steps))
      outputs = self._purify_and_classify(self._prepare_float(images), seed, num_steps,
                                          tf.constant(1, tf.int32))
      return {"purified": outputs["purified"], "energies": outputs["energies"]}

    def energy(images):
      (images,) = validation.gate([images], self._float_image_checks(images))
      return {"energies": self._energies(self._prepare_float(images))}

    def purify_batchable(images, seeds):
      images, seeds = validation.gate(
          [images, seeds],
          self._float_image_checks(images) + validation.per_image_seed_checks(seeds, images))
      return self._run_batchable(self._prepare_float(images), seeds)

    self.purify = tf.function(purify, input_signature=[float_images, seed_spec, steps_spec])
    self.energy = tf.function(energy, input_signature=[float_images])
    self.purify_batchable = tf.function(
        purify_batchable,
        input_signature=[float_images, tf.TensorSpec([None, 2], tf.int64, name="seeds")])

    if not self.has_classifier:
      def serve_uint8(images, seed=default_seed, num_steps=default_steps):
        (images_u8, seed, num_steps) = validation.gate(
            [images, seed, num_steps],
            validation.image_checks(images, self.config.image_shape, self.config.max_batch_size,
                                    check_values=False) + self._control_checks(seed, num_steps))
        outputs = self._purify_and_classify(_from_uint8(images_u8), seed, num_steps,
                                            tf.constant(1, tf.int32))
        outputs["purified_uint8"] = _to_uint8(outputs["purified"])
        return outputs

      self.serve = self.purify
      self.serve_uint8 = tf.function(serve_uint8,
                                     input_signature=[uint8_images, seed_spec, steps_spec])
      return

    def serve(images, seed=default_seed, num_steps=default_steps, num_repeats=default_repeats):
      images, seed, num_steps, num_repeats = validation.gate(
          [images, seed, num_steps, num_repeats],
          self._float_image_checks(images) + self._control_checks(seed, num_steps, num_repeats))
      return self._purify_and_classify(self._prepare_float(images), seed, num_steps,
                                       num_repeats)

    def serve_uint8(images, seed=default_seed, num_steps=default_steps,
                    num_repeats=default_repeats):
      images_u8, seed, num_steps, num_repeats = validation.gate(
          [images, seed, num_steps, num_repeats],
          validation.image_checks(images, self.config.image_shape, self.config.max_batch_size,
                                  check_values=False)
          + self._control_checks(seed, num_steps, num_repeats))
      outputs = self._purify_and_classify(_from_uint8(images_u8), seed, num_steps, num_repeats)
      outputs["purified_uint8"] = _to_uint8(outputs["purified"])
      return outputs

    self.serve = tf.function(serve, input_signature=[float_images, seed_spec, steps_spec,
                                                     repeats_spec])
    self.serve_uint8 = tf.function(serve_uint8, input_signature=[uint8_images, seed_spec,
                                                                 steps_spec, repeats_spec])

  def signatures(self) -> Dict[str, Any]:
    """The signature map for `tf.saved_model.save(module, dir, signatures=...)`."""
    return {SERVING_DEFAULT: self.serve, PURIFY: self.purify, ENERGY: self.energy,
            SERVING_UINT8: self.serve_uint8, PURIFY_BATCHABLE: self.purify_batchable}

  def signature_input_names(self) -> Dict[str, Sequence[str]]:
    """Input names per signature, e.g. {'energy': ('images',), ...}."""
    controls = ("seed", "num_steps") + (("num_repeats",) if self.has_classifier else ())
    return {SERVING_DEFAULT: ("images",) + controls, PURIFY: ("images", "seed", "num_steps"),
            ENERGY: ("images",), SERVING_UINT8: ("images",) + controls,
            PURIFY_BATCHABLE: ("images", "seeds")}


def _from_uint8(images):
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return tf.cast(images, tf.float32) / 127.5 - 1.0


def _to_uint8(images):
  """float32 (any range) -> uint8 [0, 255], clipped to [-1, 1] first and rounded."""
  return tf.cast(tf.round((tf.clip_by_value(images, -1.0, 1.0) + 1.0) * 127.5), tf.uint8)
