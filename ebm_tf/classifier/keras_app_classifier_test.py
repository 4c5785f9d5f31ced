"""Tests of ebm_tf.classifier.keras_app_classifier on small inputs, random weights and synthetic images.

The resize and rescale are checked against an explicit numpy computation (a bilinear
interpolation matrix per axis, half-pixel centres, edges clamped), the gradient against the chain
rule through that matrix, and the EfficientNet ImageNet-weights fix against Keras's own
`weights='imagenet'` graph (its download function replaced by a local file: nothing downloads).
EfficientNetB7 at 600x600 is built only with EBM_SLOW_TESTS=1.
"""

import os
import unittest
from unittest import mock

import h5py
from absl.testing import parameterized
import keras
from keras.src.applications import efficientnet as keras_efficientnet
from keras.src.legacy.saving import legacy_h5_format
import numpy as np
import tensorflow as tf

from ebm_tf.classifier import keras_app_classifier as kac

_SLOW = os.environ.get("EBM_SLOW_TESTS") == "1"


def _interp_matrix(n_in, n_out):
  """[n_out, n_in]: bilinear interpolation with half-pixel centres, edges clamped."""
  matrix = np.zeros((n_out, n_in))
  for i in range(n_out):
    src = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1)
    lo = int(np.floor(src))
    hi = min(lo + 1, n_in - 1)
    matrix[i, lo] += 1.0 - (src - lo)
    matrix[i, hi] += src - lo
  return matrix


def _resize_np(images, size):
  """[B, H, W, C] -> [B, size, size, C] by the interpolation matrices."""
  rows = _interp_matrix(images.shape[1], size)
  cols = _interp_matrix(images.shape[2], size)
  return np.einsum("ih,bhwc,jw->bijc", rows, images, cols)


def _images(shape, seed=0):
  return tf.random.stateless_uniform(shape, seed=[seed, 7], minval=-1.0, maxval=1.0).numpy()


def _save_legacy_h5(model, path):
  """Weights in the legacy .h5 layout of keras.applications' released files."""
  with h5py.File(path, "w") as f:
    legacy_h5_format.save_weights_to_hdf5_group(f, model)
  return path


class SpecTest(parameterized.TestCase):

  def test_parse_and_sizes(self):
    self.assertEqual(kac.parse_spec("keras_app:EfficientNetB7"), "EfficientNetB7")
    self.assertEqual(kac.resolve_input_size("EfficientNetB7"), 600)
    self.assertEqual(kac.resolve_input_size("EfficientNetB7", 0), 600)
    self.assertEqual(kac.resolve_input_size("EfficientNetB0", 64), 64)
    self.assertIn("EfficientNetB7", kac.NAMES)

  @parameterized.named_parameters(
      ("no_prefix", "EfficientNetB7", "classifier must be 'keras_app:<Name>'"),
      ("unknown", "keras_app:EfficientNetB9", "must be one of .*got 'EfficientNetB9'"),
  )
  def test_bad_specs_raise(self, spec, message):
    with self.assertRaisesRegex(ValueError, message):
      kac.parse_spec(spec)

  def test_bad_input_sizes_raise(self):
    for size in (16, -1, 64.0, True):
      with self.assertRaisesRegex(ValueError, "input_size of EfficientNetB0 must be an integer "
                                  ">= 32"):
        kac.resolve_input_size("EfficientNetB0", size)

  def test_weights_paths_are_checked_and_never_downloaded(self):
    missing = os.path.join(self.create_tempdir().full_path, "efficientnetb7.h5")
    with self.assertRaisesRegex(FileNotFoundError,
                                f"classifier weights file '{missing}' does not exist.*never "
                                "downloads"):
      kac.check_weights_path(missing)
    with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
      kac.build_classifier("EfficientNetB0", (16, 16, 3), input_size=32, weights=missing)
    with self.assertRaisesRegex(ValueError, "must end in one of"):
      kac.check_weights_path("imagenet")
    with self.assertRaisesRegex(ValueError, "must be a local file path"):
      kac.check_weights_path("")


class PixelsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      ("EfficientNetB0", "none"), ("MobileNetV3Small", "none"), ("MobileNetV2", "tf"),
      ("ResNet50", "caffe"))
  def test_resize_rescale_and_preprocess_match_an_explicit_computation(self, name, mode):
    self.assertEqual(kac.APPS[name].pixel_mode, mode)
    images = _images([2, 5, 7, 3]) * 1.1  # purified images may leave [-1, 1]: not clipped
    out = kac.classifier_pixels(images, name, 32).numpy()
    pixels = 255.0 * (_resize_np(images, 32) + 1.0) / 2.0
    if mode == "tf":
      pixels = pixels / 127.5 - 1.0
    elif mode == "caffe":
      pixels = pixels[..., ::-1] - np.array([103.939, 116.779, 123.68])
    self.assertEqual(out.shape, (2, 32, 32, 3))
    self.assertAllClose(out, pixels, atol=2e-4)

  def test_same_size_is_not_resized_and_downsizing_works(self):
    images = _images([1, 32, 32, 3])
    self.assertAllClose(kac.classifier_pixels(images, "EfficientNetB0", 32),
                        127.5 * (images + 1.0), atol=1e-4)
    small = kac.classifier_pixels(_images([1, 64, 48, 3]), "EfficientNetB0", 32).numpy()
    self.assertAllClose(small, 127.5 * (_resize_np(_images([1, 64, 48, 3]), 32) + 1.0),
                        atol=2e-4)

  def test_rejects_non_rgb_images(self):
    with self.assertRaisesRegex(ValueError, r"must have shape \[batch, height, width, 3\]"):
      kac.classifier_pixels(np.zeros([1, 8, 8, 1], np.float32), "EfficientNetB0", 32)
    with self.assertRaisesRegex(ValueError, r"image_shape .* must be \(height, width, 3\)"):
      kac.build_classifier("EfficientNetB0", (8, 8, 1), input_size=32)


class ClassifierTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    keras.utils.set_random_seed(0)
    cls.model = kac.build_classifier("EfficientNetB0", (16, 16, 3), input_size=32)

  def test_shapes_logits_and_the_wrapped_application(self):
    model = self.model
    self.assertEqual(model.name, "keras_app_EfficientNetB0")
    self.assertEqual(tuple(model.inputs[0].shape), (None, 16, 16, 3))
    self.assertEqual(tuple(model.outputs[0].shape), (None, 1000))
    images = _images([3, 16, 16, 3])
    logits = model(images, training=False).numpy()
    self.assertEqual(logits.shape, (3, 1000))
    self.assertTrue(np.all(np.isfinite(logits)))
    # Logits, not probabilities (classifier_activation=None): rows do not sum to 1.
    self.assertFalse(np.allclose(logits.sum(axis=1), 1.0))
    app = model.layers[-1]
    self.assertEqual(tuple(app.inputs[0].shape), (None, 32, 32, 3))
    explicit = (127.5 * (_resize_np(images, 32) + 1.0)).astype(np.float32)
    self.assertAllClose(app(explicit, training=False), logits, rtol=1e-4, atol=1e-4)

  def test_gradient_reaches_the_input_through_the_resize(self):
    model, app = self.model, self.model.layers[-1]
    images = tf.constant(_images([2, 16, 16, 3], seed=1))
    with tf.GradientTape() as tape:
      tape.watch(images)
      loss = tf.reduce_sum(model(images, training=False)[:, :10])
    grad = tape.gradient(loss, images).numpy()
    self.assertTrue(np.all(np.isfinite(grad)))
    self.assertGreater(np.abs(grad).max(), 0.0)
    # Chain rule: d/dx = 127.5 * R^T (d/dpixels), R the bilinear resize 16 -> 32 per axis.
    pixels = tf.constant(kac.classifier_pixels(images, "EfficientNetB0", 32))
    with tf.GradientTape() as tape:
      tape.watch(pixels)
      loss = tf.reduce_sum(app(pixels, training=False)[:, :10])
    grad_pixels = tape.gradient(loss, pixels).numpy()
    rows, cols = _interp_matrix(16, 32), _interp_matrix(16, 32)
    expected = 127.5 * np.einsum("ih,bijc,jw->bhwc", rows, grad_pixels, cols)
    self.assertAllClose(grad, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


class WeightsTest(tf.test.TestCase):

  def test_weights_round_trip_in_each_format(self):
    keras.utils.set_random_seed(1)
    source = kac.build_app("MobileNetV3Small", 32)
    pixels = 127.5 * (_images([2, 32, 32, 3], seed=2) + 1.0)
    expected = source(pixels, training=False).numpy()
    root = self.create_tempdir().full_path
    paths = [os.path.join(root, "w.weights.h5"), os.path.join(root, "model.keras")]
    source.save_weights(paths[0])
    source.save(paths[1])
    paths.append(_save_legacy_h5(source, os.path.join(root, "mobilenetv3small.h5")))
    for path in paths:
      keras.utils.set_random_seed(2)  # other random weights before the load
      loaded = kac.build_classifier("MobileNetV3Small", (32, 32, 3), weights=path,
                                    input_size=32)
      self.assertAllClose(loaded.layers[-1](pixels, training=False), expected, atol=1e-5,
                          msg=path)
    with self.assertRaisesRegex(ValueError, "does not fit keras.applications MobileNetV2"):
      kac.build_app("MobileNetV2", 32, weights=paths[0])

  def test_efficientnet_weights_give_the_imagenet_graph_numerics(self):
    # A weights file like keras.applications' efficientnetb0.h5: its input Normalization holds
    # the ImageNet mean and the stddev as the variance (tensorflow/tensorflow#49930).
    keras.utils.set_random_seed(3)
    source = kac.build_app("EfficientNetB0", 224)
    norm = [l for l in source.layers if isinstance(l, keras.layers.Normalization)][0]
    norm.adapt_mean.assign([0.485, 0.456, 0.406])
    norm.adapt_variance.assign([0.229, 0.224, 0.225])
    path = _save_legacy_h5(source, os.path.join(self.create_tempdir().full_path,
                                                "efficientnetb0.h5"))

    def local_file(fname, *unused_args, **unused_kwargs):
      self.assertEqual(fname, "efficientnetb0.h5")
      return path
    # Keras's own weights='imagenet' graph, its download replaced by the local file.
    with mock.patch.object(keras_efficientnet.file_utils, "get_file", side_effect=local_file):
      reference = keras.applications.EfficientNetB0(weights="imagenet",
                                                    classifier_activation=None)
    ours = kac.build_classifier("EfficientNetB0", (224, 224, 3), weights=path)
    images = _images([2, 224, 224, 3], seed=4)
    pixels = 127.5 * (images + 1.0)

    def stem_input(model):  # the first layer after the input normalisation
      return keras.Model(model.inputs, model.get_layer("stem_conv_pad").output)(pixels)
    expected = stem_input(reference).numpy()
    self.assertAllClose(stem_input(ours.layers[-1]), expected, rtol=1e-5, atol=1e-5)
    explicit = (pixels / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224,
                                                                              0.225])
    self.assertAllClose(expected[:, :224, :224], explicit, rtol=1e-4, atol=1e-4)  # pad after
    self.assertAllClose(ours(images, training=False), reference(pixels, training=False),
                        rtol=1e-4, atol=1e-4)
    # Without the fix (the weights loaded into the weights=None graph) the stem input differs.
    naive = kac.build_app("EfficientNetB0", 224)
    naive.load_weights(path)
    self.assertGreater(np.abs(stem_input(naive).numpy() - expected).max(), 0.5)


@unittest.skipUnless(_SLOW, "set EBM_SLOW_TESTS=1 to build EfficientNetB7 at 600x600")
class EfficientNetB7Test(tf.test.TestCase):

  def test_paper_classifier_on_224_images(self):
    keras.utils.set_random_seed(0)
    model = kac.build_classifier("EfficientNetB7", (224, 224, 3), input_size=600)
    self.assertEqual(tuple(model.layers[-1].inputs[0].shape), (None, 600, 600, 3))
    images = tf.constant(_images([1, 224, 224, 3]))
    with tf.GradientTape() as tape:
      tape.watch(images)
      logits = model(images, training=False)
      loss = tf.reduce_sum(logits[:, :10])
    grad = tape.gradient(loss, images).numpy()
    self.assertEqual(logits.shape, (1, 1000))
    self.assertTrue(np.all(np.isfinite(logits.numpy())))
    self.assertTrue(np.all(np.isfinite(grad)))
    self.assertGreater(np.abs(grad).max(), 0.0)


if __name__ == "__main__":
  tf.test.main()
