"""A keras.applications ImageNet classifier for EBM images (docs/paper_settings.md section 7.1).

The paper's ImageNet defense classifies purified 224x224 EBM images with EfficientNet-B7 at
600x600 on [0, 255] pixels: the reference `attack.py::resize_and_rescale` resizes with
`tf.image.resize` (bilinear, no antialiasing) and rescales `255 * (x + 1) / 2`. `build_classifier`
wraps a keras.applications model the same way, as one float32 Keras model

    logits = app(preprocess_input(255 * (resize(x, [S, S]) + 1) / 2))

taking the EBM's images x [B, H, W, 3] (in [-1, 1]; purified images may lie slightly outside, and
are not clipped, as in the reference) and returning logits [B, 1000] (`classifier_activation=None`:
the EOT defense averages logits and the attack's cross-entropy is taken from logits; see
docs/defense_results.md for the reference's softmax outputs). Resize and rescale are graph ops, so
attack gradients flow through them to the EBM-resolution images. `preprocess_input` is the
application module's own (`keras.applications.<module>.preprocess_input`): keras.applications
models take RGB pixels in [0, 255]; EfficientNet and MobileNetV3 carry their normalisation inside
the model (preprocess_input is the identity), MobileNetV2 maps to [-1, 1] ('tf' mode) and ResNet50
to BGR minus the ImageNet mean ('caffe' mode).

Weights never download: `weights` is a local file (`.h5` / `.hdf5`, the legacy files that
keras.applications itself fetches into `~/.keras/models/`, e.g. `efficientnetb7.h5`;
`.weights.h5` from `model.save_weights`; or a `.keras` archive), or None for random weights
(tests). The string 'imagenet' is never passed to keras.applications.

EfficientNet-B0..B7 trap: keras.applications builds a different graph for `weights='imagenet'`
than for any other value: only then does it add a per-channel `Rescaling(1 / sqrt(stddev))` after
its input `Normalization` (tensorflow/tensorflow#49930: the ImageNet weights store the standard
deviations as the variance). A model built with `weights=None` (or a path) and loaded with those
weights therefore computes other logits (tensorflow/tensorflow#62193). `load_weights` restores the
ImageNet graph's numerics by folding the missing factor into the normalisation variance
(variance * stddev, so that (x - mean) / sqrt(variance * stddev) equals the ImageNet graph's
(x - mean) / sqrt(variance) / sqrt(stddev)); it is applied whenever an EfficientNet-B* weights
file is loaded, i.e. such a file is taken to hold keras.applications' ImageNet weights (or weights
trained in that graph).
"""

import dataclasses
import os
from typing import Dict, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

PREFIX = "keras_app:"
NUM_CLASSES = 1000
MIN_INPUT_SIZE = 32  # keras.applications' smallest accepted input side
WEIGHTS_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")
# keras.applications.efficientnet.IMAGENET_STDDEV_RGB (the factor the 'imagenet' graph adds).
_EFFICIENTNET_IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class AppSpec:
  """One supported keras.applications model: its preprocessing module and default input side."""
  module: str  # keras.applications.<module>.preprocess_input
  default_input_size: int
  pixel_mode: str  # what preprocess_input does to [0, 255] RGB: 'none', 'tf' or 'caffe'


def _specs() -> Dict[str, AppSpec]:
  sizes = (224, 240, 260, 300, 380, 456, 528, 600)
  specs = {f"EfficientNetB{i}": AppSpec("efficientnet", s, "none") for i, s in enumerate(sizes)}
  specs.update({"MobileNetV3Small": AppSpec("mobilenet_v3", 224, "none"),
                "MobileNetV3Large": AppSpec("mobilenet_v3", 224, "none"),
                "MobileNetV2": AppSpec("mobilenet_v2", 224, "tf"),
                "ResNet50": AppSpec("resnet50", 224, "caffe")})
  return specs


APPS = _specs()
NAMES = tuple(APPS)


def is_keras_app(spec: str) -> bool:
  """True for a classifier spec of the form 'keras_app:<Name>'."""
  return isinstance(spec, str) and spec.startswith(PREFIX)


def parse_spec(spec: str) -> str:
  """'keras_app:EfficientNetB7' -> 'EfficientNetB7'.

  Raises:
    ValueError: `spec` does not start with 'keras_app:' or names no model of `NAMES`.
  """
  if not is_keras_app(spec):
    raise ValueError(f"classifier must be 'keras_app:<Name>' with <Name> one of {list(NAMES)}; "
                     f"got {spec!r}")
  name = spec[len(PREFIX):]
  if name not in APPS:
    raise ValueError(f"classifier {spec!r}: keras.applications model must be one of "
                     f"{list(NAMES)}; got {name!r}")
  return name


def _check_name(name: str) -> AppSpec:
  if name not in APPS:
    raise ValueError(f"keras.applications model must be one of {list(NAMES)}; got {name!r}")
  return APPS[name]


def resolve_input_size(name: str, input_size: Optional[int] = None) -> int:
  """The classifier's input side: `input_size`, or the model's default for None or 0.

  Raises:
    ValueError: unknown name, or a side that is not an integer >= 32.
  """
  spec = _check_name(name)
  if input_size is None or (not isinstance(input_size, bool) and input_size == 0):
    return spec.default_input_size
  if (isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer))
      or input_size < MIN_INPUT_SIZE):
    raise ValueError(f"input_size of {name} must be an integer >= {MIN_INPUT_SIZE} (0 or None: "
                     f"its default {spec.default_input_size}); got {input_size!r}")
  return int(input_size)


def check_weights_path(path: str) -> str:
  """Returns `path` if it is an existing local weights file of a loadable kind.

  Raises:
    FileNotFoundError: no such file (the message says how to get one; nothing downloads).
    ValueError: an empty path, or a suffix other than `WEIGHTS_SUFFIXES`.
  """
  if not isinstance(path, str) or not path:
    raise ValueError("classifier weights must be a local file path (nothing is downloaded); "
                     f"got {path!r}")
  if not path.endswith(WEIGHTS_SUFFIXES):
    raise ValueError(f"classifier weights file must end in one of {list(WEIGHTS_SUFFIXES)}; "
                     f"got {path!r}")
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"classifier weights file {path!r} does not exist. ebm-tf never downloads weights: "
        "copy the file here first, e.g. the one keras.applications caches in ~/.keras/models/ "
        "(efficientnetb7.h5 for EfficientNetB7) after running it once with weights='imagenet' "
        "on a machine with internet")
  return path


def _preprocess_fn(name: str):
  module = getattr(keras.applications, APPS[name].module)
  return module.preprocess_input


def classifier_pixels(images, name: str, input_size: int) -> tf.Tensor:
  """EBM images -> the input of keras.applications model `name`: resize, rescale, preprocess.

  Args:
    images: float [B, H, W, 3], the EBM's pixel scale [-1, 1] (values outside are kept).
    name: one of `NAMES`.
    input_size: the classifier's input side S (>= 32).

  Returns:
    float32 [B, S, S, 3]: `preprocess_input(255 * (resize(images, [S, S]) + 1) / 2)` with
    `tf.image.resize(..., method='bilinear')` (no antialiasing; skipped when H = W = S), the
    module's own preprocess_input (identity for EfficientNet and MobileNetV3, x / 127.5 - 1 for
    MobileNetV2, BGR minus the ImageNet mean for ResNet50). Differentiable in `images`.
  """
  _check_name(name)
  x = tf.convert_to_tensor(images, tf.float32)
  if x.shape.rank != 4 or x.shape[-1] != 3:
    raise ValueError(f"images for {name} must have shape [batch, height, width, 3]; got "
                     f"{x.shape}")
  if tuple(x.shape[1:3]) != (input_size, input_size):
    x = tf.image.resize(x, [input_size, input_size], method="bilinear")
  x = 127.5 * (x + 1.0)
  return tf.cast(_preprocess_fn(name)(x), tf.float32)


class ClassifierPixels(keras.layers.Layer):
  """The Keras layer of `classifier_pixels`: [B, H, W, 3] in [-1, 1] -> [B, S, S, 3]."""

  def __init__(self, app_name: str, input_size: int, **kwargs):
    super().__init__(**kwargs)
    _check_name(app_name)
    self.app_name = app_name
    self.input_size = int(input_size)

  def call(self, images):
    return classifier_pixels(images, self.app_name, self.input_size)

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.input_size, self.input_size, 3)

  def get_config(self):
    return dict(super().get_config(), app_name=self.app_name, input_size=self.input_size)


def _normalization_layers(model: keras.Model):
  return [layer for layer in model.layers if isinstance(layer, keras.layers.Normalization)]


def _fold_efficientnet_imagenet_rescaling(app: keras.Model) -> None:
  """Multiplies the input Normalization's variance by ImageNet's stddev (module docstring)."""
  layers = _normalization_layers(app)
  if len(layers) != 1:
    raise ValueError(f"{app.name}: expected one input Normalization layer; got {len(layers)}")
  norm = layers[0]
  stddev = tf.constant(_EFFICIENTNET_IMAGENET_STDDEV_RGB, norm.adapt_variance.dtype)
  norm.adapt_variance.assign(norm.adapt_variance * stddev)
  norm.finalize_state()


def load_weights(app: keras.Model, name: str, weights: str) -> None:
  """Loads a local weights file into keras.applications model `app` (built by `build_app`).

  For EfficientNet-B0..B7 the ImageNet graph's input rescaling is folded in afterwards (module
  docstring).

  Raises:
    FileNotFoundError / ValueError: see `check_weights_path`; ValueError also when the file does
      not hold this architecture (the message names the file and the model).
  """
  check_weights_path(weights)
  try:
    app.load_weights(weights)
  except (ValueError, KeyError) as error:
    raise ValueError(f"classifier weights file {weights!r} does not fit keras.applications "
                     f"{name} with {NUM_CLASSES} classes: {error}") from None
  if APPS[name].module == "efficientnet":
    _fold_efficientnet_imagenet_rescaling(app)


def build_app(name: str, input_size: Optional[int] = None,
              weights: Optional[str] = None) -> keras.Model:
  """The bare keras.applications model (with top, 1000 classes, logits), weights loaded.

  Args:
    name: one of `NAMES`.
    input_size: input side S (None or 0: the model's default, e.g. 600 for EfficientNetB7).
    weights: a local weights file (see `check_weights_path`), or None for random weights.

  Returns:
    A float32 keras.Model mapping [B, S, S, 3] pixels (the module's preprocess_input of RGB in
    [0, 255]) to logits [B, 1000].
  """
  size = resolve_input_size(name, input_size)
  if weights is not None:
    check_weights_path(weights)
  app = getattr(keras.applications, name)(
      include_top=True, weights=None, input_shape=(size, size, 3), classes=NUM_CLASSES,
      classifier_activation=None)
  if weights is not None:
    load_weights(app, name, weights)
  return app


def build_classifier(name: str, image_shape: Sequence[int], *,
                     input_size: Optional[int] = None,
                     weights: Optional[str] = None) -> keras.Model:
  """keras.applications model `name` as a classifier of the EBM's [-1, 1] images.

  Args:
    name: one of `NAMES` (e.g. 'EfficientNetB7').
    image_shape: (H, W, 3), the EBM's image shape (e.g. (224, 224, 3)).
    input_size: the classifier's input side S (None or 0: the model's default).
    weights: a local weights file, or None for random weights (tests only).

  Returns:
    A float32 keras.Model named 'keras_app_<name>' mapping images [B, H, W, 3] in [-1, 1] to
    logits [B, 1000]: `ClassifierPixels` (resize to S, rescale to [0, 255], preprocess_input)
    then the application.

  Raises:
    ValueError: unknown name, a non-RGB image shape, a bad input_size or weights file.
    FileNotFoundError: the weights file does not exist.
  """
  shape = tuple(int(d) for d in image_shape)
  if len(shape) != 3 or shape[-1] != 3 or min(shape) < 1:
    raise ValueError(f"image_shape of a keras.applications classifier must be (height, width, "
                     f"3); got {tuple(image_shape)}")
  size = resolve_input_size(name, input_size)
  app = build_app(name, size, weights)
  inputs = keras.Input(shape, dtype="float32", name="images")
  pixels = ClassifierPixels(name, size, name="classifier_pixels")(inputs)
  return keras.Model(inputs, app(pixels), name=f"keras_app_{name}")


def describe(name: str, input_size: int, weights: Optional[str]) -> Dict[str, object]:
  """A JSON-ready description of the classifier (recorded beside results; part of the resume
  fingerprint)."""
  spec = _check_name(name)
  return {"name": PREFIX + name, "input_size": int(input_size),
          "pixels": f"255 * (bilinear_resize(x) + 1) / 2, then keras.applications."
                    f"{spec.module}.preprocess_input ({spec.pixel_mode})",
          "weights": os.path.realpath(weights) if weights else None,
          "num_classes": NUM_CLASSES}
