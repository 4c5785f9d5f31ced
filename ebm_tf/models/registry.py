"""Name -> network registry: the one place the rest of ebm-tf builds networks from.

    ebm = build_ebm("ebm_sngan32", (32, 32, 3))            # images [B,32,32,3] -> [B,1]
    E = energy_fn(ebm)                                      # images -> energies [B] float32
    gen = build_generator("gen_sngan32", (32, 32, 3))      # z [B,128] -> images in [-1,1]
    z = sample_latents(seed, batch, generator_latent_dim(gen))
    clf = build_classifier("wrn28_10", (32, 32, 3), 10)    # images -> logits [B,10]
    feats = feature_model(clf)                              # images -> penultimate features

Every builder takes `dtype` (a Keras dtype policy name such as "mixed_bfloat16", or None for the
global policy); energy, logit and image outputs are float32 under any policy.
"""
from typing import Callable, Optional, Sequence

import keras
import tensorflow as tf

from ebm_tf.models import biggan_ebm
from ebm_tf.models import ebm_sngan
from ebm_tf.models import generators
from ebm_tf.models import mlp
from ebm_tf.models import shapes
from ebm_tf.models import small
from ebm_tf.models import wide_resnet


def _ebm_biggan224(image_shape, dtype=None, **kwargs):
  shape = shapes.check_image_shape("ebm_biggan224", image_shape, size=224)
  return biggan_ebm.ebm_biggan(shape, layout=224, dtype=dtype, name="ebm_biggan224", **kwargs)


def _wrn28_10(image_shape, num_classes, dtype=None, **kwargs):
  fixed = sorted(set(kwargs) & {"depth", "widen_factor"})
  if fixed:
    raise ValueError(f"wrn28_10 has depth 28 and widen_factor 10; got {fixed}: "
                     f"use name 'wrn' to choose them")
  return wide_resnet.wide_resnet(image_shape, num_classes, depth=28, widen_factor=10,
                                 dtype=dtype, name="wrn28_10", **kwargs)


def _wrn(image_shape, num_classes, dtype=None, **kwargs):
  return wide_resnet.wide_resnet(image_shape, num_classes, dtype=dtype, **kwargs)


def _mlp(image_shape, dtype=None, **kwargs):
  return mlp.ebm_mlp(image_shape, dtype=dtype, **kwargs)


_EBMS = {
    "ebm_sngan32": ebm_sngan.ebm_sngan32,
    "ebm_sngan64": ebm_sngan.ebm_sngan64,
    "ebm_sngan128": ebm_sngan.ebm_sngan128,
    "ebm_biggan224": _ebm_biggan224,
    "ebm_small": small.ebm_small,
    "ebm_mlp": _mlp,
}
_GENERATORS = {
    "gen_sngan32": generators.gen_sngan32,
    "gen_sngan64": generators.gen_sngan64,
    "gen_sngan128": generators.gen_sngan128,
    "gen_small": small.gen_small,
}
_CLASSIFIERS = {
    "wrn28_10": _wrn28_10,
    "wrn": _wrn,
    "small_cnn": small.small_cnn,
}
EBM_NAMES = tuple(_EBMS)
GENERATOR_NAMES = tuple(_GENERATORS)
CLASSIFIER_NAMES = tuple(_CLASSIFIERS)


def _lookup(kind: str, table: dict, name: str):
  if name not in table:
    raise ValueError(f"unknown {kind} name {name!r}; valid names: {', '.join(table)}")
  return table[name]


def build_ebm(name: str, image_shape: Sequence[int], *, dtype: Optional[str] = None,
              **kwargs) -> keras.Model:
  """Builds an energy network.

  Args:
    name: one of EBM_NAMES: 'ebm_sngan32' (32x32xC), 'ebm_sngan64' (64x64xC), 'ebm_sngan128'
      (128x128xC), 'ebm_biggan224' (224x224xC, spectral norm), 'ebm_small' (HxWxC with H, W
      divisible by 4), 'ebm_mlp' (vectors, image_shape = (D,)).
    image_shape: per-example input shape without the batch axis.
    dtype: Keras dtype policy for the layers (None: global policy); the energy is float32.
    **kwargs: architecture options of the builder (e.g. `ngf`, `width`, `hidden_units`).

  Returns:
    keras.Model mapping inputs [B, *image_shape] float32 (images in [-1, 1]) to energies [B, 1]
    float32; use `energy_fn(model)` for [B].

  Raises:
    ValueError: for an unknown name or an image_shape the architecture cannot take.
  """
  return _lookup("EBM", _EBMS, name)(image_shape, dtype=dtype, **kwargs)


def build_generator(name: str, image_shape: Sequence[int], latent_dim: Optional[int] = None, *,
                    dtype: Optional[str] = None, **kwargs) -> keras.Model:
  """Builds an MCMC-initialising generator.

  Args:
    name: one of GENERATOR_NAMES: 'gen_sngan32', 'gen_sngan64', 'gen_sngan128' (latent 128 by
      default), 'gen_small' (HxWxC with H, W divisible by 4; latent 16 by default).
    image_shape: (H, W, C) of the generated images.
    latent_dim: size of z (None: the architecture's default). Read it back from a model with
      `generator_latent_dim(model)`.
    dtype: Keras dtype policy for the layers (None: global policy); images are float32.
    **kwargs: architecture options of the builder (e.g. `ngf`, `width`).

  Returns:
    keras.Model mapping z [B, latent_dim] float32 to images [B, H, W, C] float32 in [-1, 1]
    (tanh). Batch norm uses batch statistics only when called with training=True.

  Raises:
    ValueError: for an unknown name or an image_shape the architecture cannot produce.
  """
  builder = _lookup("generator", _GENERATORS, name)
  if latent_dim is not None:
    if int(latent_dim) != latent_dim or latent_dim < 1:
      raise ValueError(f"latent_dim must be a positive int; got {latent_dim!r}")
    kwargs["latent_dim"] = int(latent_dim)
  return builder(image_shape, dtype=dtype, **kwargs)


def build_classifier(name: str, image_shape: Sequence[int], num_classes: int, *,
                     dtype: Optional[str] = None, **kwargs) -> keras.Model:
  """Builds an image classifier.

  Args:
    name: one of CLASSIFIER_NAMES: 'wrn28_10' (WRN-28-10), 'wrn' (kwargs `depth`,
      `widen_factor`, default 28 and 10), 'small_cnn'. All take `bn_momentum`-style options of
      their builder as kwargs (see wide_resnet.wide_resnet, small.small_cnn).
    image_shape: (H, W, C), H and W divisible by 4.
    num_classes: number of logits.
    dtype: Keras dtype policy for the layers (None: global policy); logits are float32.

  Returns:
    keras.Model mapping images [B, H, W, C] float32 in [-1, 1] to logits [B, num_classes]
    float32. Its layer named "features" gives the penultimate features (`feature_model`).

  Raises:
    ValueError: for an unknown name or an image_shape the architecture cannot take.
  """
  return _lookup("classifier", _CLASSIFIERS, name)(image_shape, num_classes, dtype=dtype,
                                                   **kwargs)


def feature_model(classifier: keras.Model) -> keras.Model:
  """Returns a model sharing `classifier`'s weights that outputs its penultimate features.

  Args:
    classifier: a model from `build_classifier` (it has a layer named "features").

  Returns:
    keras.Model mapping the classifier's inputs to features [B, F] (F = 128 for small_cnn,
    64 * widen_factor for WRNs), in the classifier's compute dtype.

  Raises:
    ValueError: if the model has no layer named "features".
  """
  try:
    layer = classifier.get_layer("features")
  except ValueError:
    raise ValueError(f"model {classifier.name!r} has no layer named 'features'; build it with "
                     f"build_classifier") from None
  return keras.Model(classifier.input, layer.output, name=f"{classifier.name}_features")


def energy_fn(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
  """Wraps an energy network as x -> E(x) of shape [B].

  The returned callable calls `model(x, training=False)` (the EBM is never in training mode in
  Langevin sampling or in the loss) and squeezes the last axis. A statically known input shape
  that does not match the model raises at trace time, not inside the sampler.

  Args:
    model: a model from `build_ebm` with output [B, 1].

  Returns:
    A callable mapping x [B, *image_shape] float32 to energies [B] float32.
  """
  expected = tf.TensorShape(model.inputs[0].shape[1:])

  def energy(x):
    x = tf.convert_to_tensor(x, dtype_hint=tf.float32)
    if x.shape.rank is not None and (x.shape.rank != len(expected) + 1 or
                                     not x.shape[1:].is_compatible_with(expected)):
      raise ValueError(f"{model.name} expects inputs of shape [batch, "
                       f"{', '.join(str(d) for d in expected)}]; got {x.shape.as_list()}")
    return tf.cast(tf.squeeze(model(x, training=False), axis=-1), tf.float32)

  return energy


generator_latent_dim = generators.generator_latent_dim
sample_latents = generators.sample_latents
