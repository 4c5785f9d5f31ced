"""Tests for ebm_tf.data.datasets.

The tfds paths (mnist, cifar10, celeb_a, imagenet2012) run on tfds's mocked data of the real
feature shapes (no files, no network); the per-example preprocessing is checked on generated
images whose pixels encode their coordinates.
"""

import contextlib
import gzip
import os
import shutil
import struct
import tempfile
import time
from unittest import mock

from absl.testing import parameterized
import numpy as np
from sklearn import datasets as sk_datasets
import tensorflow as tf
import tensorflow_datasets as tfds

from ebm_tf.data import datasets
from ebm_tf.data import fashion_mnist_idx
from ebm_tf.data import toy_densities


def _tmpdir(test_case):
  path = tempfile.mkdtemp()
  test_case.addCleanup(shutil.rmtree, path, ignore_errors=True)
  return path


@contextlib.contextmanager
def _mock_tfds(num_examples):
  """tfds builders yield `num_examples` random examples of their real features."""
  with tfds.testing.mock_data(num_examples=num_examples,
                              policy=tfds.testing.MockPolicy.USE_CODE), \
      mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True):
    yield


def _multiset(images, labels):
  return sorted((int(l), np.asarray(im).tobytes()) for im, l in zip(images, labels))


def _index_image(height, width, axis):
  """uint8 [H, W, 3] whose pixels hold their row (axis 0) or column (axis 1) index."""
  idx = np.arange(height if axis == 0 else width, dtype=np.uint8)
  grid = idx[:, None] * np.ones((1, width), np.uint8) if axis == 0 else (
      np.ones((height, 1), np.uint8) * idx[None, :])
  return np.repeat(grid[..., None], 3, axis=2)


def _scaled(x):
  return 2.0 * np.asarray(x, np.float64) / 255.0 - 1.0


class ShapesTest(tf.test.TestCase):

  def test_image_shape_and_num_classes(self):
    self.assertEqual(datasets.image_shape("digits"), (8, 8, 1))
    self.assertEqual(datasets.image_shape("digits", 16), (16, 16, 1))
    self.assertEqual(datasets.image_shape("mnist"), (28, 28, 1))
    self.assertEqual(datasets.image_shape("fashion_mnist"), (28, 28, 1))
    self.assertEqual(datasets.image_shape("cifar10"), (32, 32, 3))
    self.assertEqual(datasets.image_shape("celeb_a"), (64, 64, 3))
    self.assertEqual(datasets.image_shape("imagenet2012"), (128, 128, 3))
    self.assertEqual(datasets.image_shape("imagenet2012", 224), (224, 224, 3))
    self.assertEqual(datasets.image_shape("synthetic", 64), (64, 64, 3))
    self.assertEqual([datasets.num_classes(n) for n in ("digits", "cifar10", "imagenet2012",
                                                     "celeb_a", "synthetic")],
                     [10, 10, 1000, 1, 1])

  def test_bad_names_and_sizes(self):
    with self.assertRaisesRegex(ValueError, "dataset name must be one of.*got 'svhn'"):
      datasets.image_shape("svhn")
    with self.assertRaisesRegex(ValueError, "image_size must be a positive int"):
      datasets.image_shape("celeb_a", 0)
    with self.assertRaisesRegex(ValueError, "image_size must be a positive int"):
      datasets.load_split("digits", "train", image_size=16.0)
    with self.assertRaisesRegex(ValueError, r"split for dataset 'digits' must be one of"):
      datasets.load_split("digits", "validation")
    with self.assertRaisesRegex(ValueError, "random_crop=True is defined for"):
      datasets.load_split("digits", "train", random_crop=True, seed=0)
    with self.assertRaisesRegex(ValueError, "needs an int seed"):
      datasets.load_split("cifar10", "train", random_crop=True)
    with self.assertRaisesRegex(ValueError, "batch_size_per_replica must be a positive int"):
      datasets.make_train_dataset("digits", batch_size_per_replica=0)
    with self.assertRaisesRegex(ValueError, "max_examples"):
      datasets.load_array("digits", "test", max_examples=-1)


class DigitsTest(tf.test.TestCase):

  def test_split_is_a_fixed_partition_of_sklearn_digits(self):
    train_x, train_y = datasets.load_array("digits", "train")
    test_x, test_y = datasets.load_array("digits", "test")
    self.assertEqual(train_x.shape, (1500, 8, 8, 1))
    self.assertEqual(test_x.shape, (297, 8, 8, 1))
    self.assertEqual((train_x.dtype, train_y.dtype), (np.float32, np.int64))
    self.assertEqual(train_x.min(), -1.0)
    self.assertEqual(train_x.max(), 1.0)
    digits = sk_datasets.load_digits()
    expected = (digits.images / 8.0 - 1.0).astype(np.float32)[..., None]
    self.assertEqual(
        _multiset(np.concatenate([train_x, test_x]), np.concatenate([train_y, test_y])),
        _multiset(expected, digits.target))
    # The same split every call, and every class is in the test split.
    again_x, again_y = datasets.load_array("digits", "test")
    self.assertAllEqual(again_x, test_x)
    self.assertAllEqual(again_y, test_y)
    self.assertEqual(len(set(test_y.tolist())), 10)

  def test_max_examples_and_upsampling(self):
    x, y = datasets.load_array("digits", "test", max_examples=5)
    self.assertEqual(x.shape, (5, 8, 8, 1))
    big, big_y = datasets.load_array("digits", "test", max_examples=5, image_size=16)
    self.assertEqual(big.shape, (5, 16, 16, 1))
    self.assertAllEqual(big_y, y)
    self.assertLessEqual(np.abs(big).max(), 1.0)
    # Bilinear 2x upsampling keeps the image mean (up to the border).
    self.assertAllClose(big.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)), atol=0.05)

  def test_train_dataset_epochs_shuffle_and_determinism(self):
    train_x, train_y = datasets.load_array("digits", "train")
    ds = datasets.make_train_dataset("digits", batch_size_per_replica=50, seed=3)
    self.assertEqual(ds.element_spec["image"].shape, (50, 8, 8, 1))
    self.assertEqual(ds.element_spec["label"].dtype, tf.int64)
    batches = list(ds.take(35).as_numpy_iterator())  # 30 batches = one epoch, then more
    epoch_x = np.concatenate([b["image"] for b in batches[:30]])
    epoch_y = np.concatenate([b["label"] for b in batches[:30]])
    self.assertEqual(_multiset(epoch_x, epoch_y), _multiset(train_x, train_y))
    self.assertNotAllEqual(epoch_y, train_y)  # shuffled
    same = next(iter(datasets.make_train_dataset("digits", batch_size_per_replica=50, seed=3)))
    other = next(iter(datasets.make_train_dataset("digits", batch_size_per_replica=50, seed=4)))
    self.assertAllEqual(same["image"], batches[0]["image"])
    self.assertNotAllEqual(other["label"], batches[0]["label"])
    # The second epoch is reshuffled.
    second = np.concatenate([b["label"] for b in batches[30:35]])
    self.assertNotAllEqual(second, epoch_y[:250])

  def test_input_context_shards_by_pipeline(self):
    train_x, train_y = datasets.load_array("digits", "train")
    for pipeline_id in (0, 1):
      context = tf.distribute.InputContext(num_input_pipelines=2,
                                           input_pipeline_id=pipeline_id,
                                           num_replicas_in_sync=2)
      ds = datasets.make_train_dataset("digits", batch_size_per_replica=25, input_context=context)
      epoch = list(ds.take(30).as_numpy_iterator())  # 750 examples = one epoch of the shard
      self.assertEqual(
          _multiset(np.concatenate([b["image"] for b in epoch]),
                    np.concatenate([b["label"] for b in epoch])),
          _multiset(train_x[pipeline_id::2], train_y[pipeline_id::2]))

  def test_distribute_datasets_from_function(self):
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: datasets.make_train_dataset(
            "digits", batch_size_per_replica=ctx.get_per_replica_batch_size(16),
            input_context=ctx))
    batch = next(iter(dist))
    self.assertEqual(batch["image"].shape, (16, 8, 8, 1))


class SyntheticTest(tf.test.TestCase):

  def test_uniform_images_from_a_seed(self):
    x, y = datasets.load_array("synthetic", "test", image_size=16)
    self.assertEqual(x.shape, (256, 16, 16, 3))
    self.assertAllEqual(y, np.zeros(256))
    self.assertBetween(x.min(), -1.0, -0.99)
    self.assertBetween(x.max(), 0.99, 1.0)
    self.assertAllClose(x.mean(), 0.0, atol=0.01)
    self.assertAllClose(x.var(), 1.0 / 3.0, atol=0.01)
    again, _ = datasets.load_array("synthetic", "test", image_size=16)
    self.assertAllEqual(again, x)
    train, _ = datasets.load_array("synthetic", "train", image_size=16, max_examples=256)
    self.assertNotAllClose(train, x)
    reseeded = next(iter(datasets.load_split("synthetic", "test", image_size=16, seed=5)))
    self.assertNotAllClose(reseeded["image"], x[0])
    ds = datasets.make_train_dataset("synthetic", batch_size_per_replica=8, image_size=64)
    self.assertEqual(next(iter(ds))["image"].shape, (8, 64, 64, 3))


class ToyTest(tf.test.TestCase, parameterized.TestCase):
  """The 2-D toys as datasets: points [2] from the exact samplers, unscaled, fixed splits."""

  def test_names_shapes_and_errors(self):
    self.assertEqual(datasets.TOY_DATASETS,
                     tuple("toy_" + name for name in toy_densities.TOY_NAMES))
    self.assertIn("toy_eight_gaussians", datasets.TOY_DATASETS)
    self.assertNotIn("toy_eight_gaussians", datasets.DATASETS)  # DATASETS lists the image datasets.
    self.assertEqual(datasets.image_shape("toy_two_rings"), (2,))
    self.assertEqual(datasets.num_classes("toy_checkerboard"), 1)
    self.assertTrue(datasets.is_toy("toy_checkerboard") and not datasets.is_toy("digits"))
    self.assertEqual(datasets.toy_density("toy_two_rings").name, "two_rings")
    self.assertIsNone(datasets.prepare_dataset("toy_eight_gaussians"))
    with self.assertRaisesRegex(ValueError, "image_size must be None.*toy_two_rings.*got 16"):
      datasets.image_shape("toy_two_rings", 16)
    with self.assertRaisesRegex(ValueError, "split for dataset 'toy_two_rings' must be one of "
                                r"\['train', 'test'\]; got 'validation'"):
      datasets.load_split("toy_two_rings", "validation")
    with self.assertRaisesRegex(ValueError, "dataset name must be one of.*toy_two_rings.*"
                                "got 'toy_moons'"):
      datasets.image_shape("toy_moons")
    with self.assertRaisesRegex(ValueError, "toy dataset name must be one of.*got 'digits'"):
      datasets.toy_density("digits")
    with self.assertRaisesRegex(ValueError, "random_crop=True is defined for"):
      datasets.load_split("toy_two_rings", "train", random_crop=True, seed=0)

  def test_elements_sizes_and_fixed_independent_splits(self):
    ds = datasets.load_split("toy_eight_gaussians", "train")
    self.assertEqual(ds.element_spec["image"], tf.TensorSpec([2], tf.float32))
    self.assertEqual(ds.element_spec["label"], tf.TensorSpec([], tf.int64))
    x, y = datasets.load_array("toy_eight_gaussians", "train")
    test, test_y = datasets.load_array("toy_eight_gaussians", "test")
    self.assertEqual((x.shape, x.dtype, y.dtype), ((10_000, 2), np.float32, np.int64))
    self.assertEqual(test.shape, (2_000, 2))
    self.assertAllEqual(y, np.zeros(10_000))
    self.assertAllEqual(test_y, np.zeros(2_000))
    self.assertAllEqual(datasets.load_array("toy_eight_gaussians", "train")[0], x)  # Fixed data.
    self.assertAllEqual(datasets.load_array("toy_eight_gaussians", "test", max_examples=7)[0],
                        test[:7])
    # Train and test are independent draws: no point is shared.
    shared = set(map(tuple, x.tolist())) & set(map(tuple, test.tolist()))
    self.assertEmpty(shared)

  def test_points_follow_the_toy_and_are_not_scaled(self):
    # Eight Gaussians (radius 2, std 0.2): the distance to the nearest centre is Rayleigh(0.2),
    # mean 0.2 sqrt(pi / 2); each centre holds 1/8 of the points; nothing is clipped to [-1, 1].
    x, _ = datasets.load_array("toy_eight_gaussians", "train")
    angles = 2.0 * np.pi * np.arange(8) / 8.0
    centers = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    dist = np.linalg.norm(x[:, None, :] - centers[None], axis=-1)
    nearest = dist.argmin(axis=1)
    rayleigh_sd = 0.2 * np.sqrt((4.0 - np.pi) / 2.0)
    self.assertAllClose(dist.min(axis=1).mean(), 0.2 * np.sqrt(np.pi / 2.0),
                        atol=5 * rayleigh_sd / np.sqrt(len(x)))
    freq = np.bincount(nearest, minlength=8) / len(x)
    self.assertAllClose(freq, np.full(8, 1 / 8), atol=5 * np.sqrt(1 / 8 * 7 / 8 / len(x)))
    self.assertGreater(np.abs(x).max(), 2.2)
    # Two rings (radii 1 and 2, std 0.1, equal weights).
    r = np.linalg.norm(datasets.load_array("toy_two_rings", "test")[0], axis=1)
    inner = r < 1.5
    self.assertAllClose(inner.mean(), 0.5, atol=5 * np.sqrt(0.25 / len(r)))
    self.assertAllClose(r[inner].mean(), 1.0, atol=0.02)
    self.assertAllClose(r[~inner].mean(), 2.0, atol=0.02)
    # Checkerboard: every point lies on a black square (finite exact log-density).
    board = datasets.load_array("toy_checkerboard", "test")[0]
    cells = np.floor(board + 2.0)
    self.assertTrue(np.all((cells >= 0) & (cells <= 3)))
    self.assertTrue(np.all(cells.sum(axis=1) % 2 == 0))

  def test_train_dataset_batches_points(self):
    ds = datasets.make_train_dataset("toy_two_rings", batch_size_per_replica=64, seed=3)
    batches = [b["image"].numpy() for b in ds.take(3)]
    self.assertEqual(batches[0].shape, (64, 2))
    self.assertEqual(next(iter(ds))["label"].dtype, tf.int64)
    again = next(iter(datasets.make_train_dataset("toy_two_rings", batch_size_per_replica=64,
                                              seed=3)))
    self.assertAllEqual(again["image"], batches[0])
    train = set(map(tuple, datasets.load_array("toy_two_rings", "train")[0].tolist()))
    self.assertTrue(all(tuple(p) in train for b in batches for p in b.tolist()))
    self.assertGreater(max(np.abs(b).max() for b in batches), 1.5)


class NotPreparedTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters("mnist", "fashion_mnist", "cifar10", "celeb_a", "imagenet2012")
  def test_fails_fast_with_instructions(self, name):
    data_dir = _tmpdir(self)
    start = time.monotonic()
    with self.assertRaises(datasets.DatasetNotPreparedError) as ctx:
      datasets.load_split(name, "train", data_dir=data_dir)
    # A download attempt retries for 3-5 minutes; the first tfds builder call of a process can
    # take a few seconds on a busy machine, so the bound only separates "at once" from that.
    self.assertLess(time.monotonic() - start, 60.0)
    message = str(ctx.exception)
    self.assertIn(f"dataset '{name}'", message)
    self.assertIn(data_dir, message)
    self.assertIn("never downloads", message)
    self.assertIn("prepare", message.lower())
    with self.assertRaises(datasets.DatasetNotPreparedError):
      datasets.make_train_dataset(name, batch_size_per_replica=4, data_dir=data_dir)
    self.assertEqual(os.listdir(data_dir), [])  # nothing was written, nothing downloaded

  def test_default_data_dir_from_environment(self):
    with mock.patch.dict(os.environ, {"TFDS_DATA_DIR": "~/some_tfds"}):
      self.assertEqual(datasets.default_data_dir(), os.path.expanduser("~/some_tfds"))
    with mock.patch.dict(os.environ, clear=True):
      os.environ.pop("TFDS_DATA_DIR", None)
      self.assertEqual(datasets.default_data_dir(), os.path.expanduser("~/tensorflow_datasets"))


class PreprocessTest(tf.test.TestCase):

  def test_scale_uint8(self):
    x = np.array([0, 1, 127, 128, 255], np.uint8)
    self.assertAllClose(datasets.scale_uint8(x), _scaled(x), atol=1e-7)
    with self.assertRaisesRegex(ValueError, "uint8"):
      datasets.scale_uint8(np.zeros(3, np.float32))

  def test_celeb_a_center_crop_geometry(self):
    image = _index_image(218, 178, axis=0)  # rows hold their index
    out = datasets.preprocess_celeb_a(image, image_size=178)  # crop only, no rescaling
    self.assertEqual(out.shape, (178, 178, 3))
    self.assertAllClose(out[:, :, 0], _scaled(np.arange(20, 198))[:, None] * np.ones((1, 178)),
                        atol=1e-6)
    out64 = datasets.preprocess_celeb_a(image, image_size=64)
    self.assertEqual((out64.shape, out64.dtype), ((64, 64, 3), tf.float32))
    # Downscaling averages rows 20..197: first/last output rows near the crop's ends.
    self.assertAllClose(np.mean(out64), _scaled(np.arange(20, 198)).mean(), atol=1e-3)
    self.assertBetween(float(out64[0, 0, 0]), _scaled(20), _scaled(24))
    self.assertBetween(float(out64[-1, 0, 0]), _scaled(193), _scaled(197))
    random = tf.random.stateless_uniform([218, 178, 3], [1, 2], maxval=256, dtype=tf.int32)
    out = datasets.preprocess_celeb_a(tf.cast(random, tf.uint8), 64)
    self.assertBetween(float(tf.reduce_min(out)), -1.0, 1.0)
    self.assertBetween(float(tf.reduce_max(out)), -1.0, 1.0)

  def test_imagenet_center_crop_wide_image(self):
    image = _index_image(100, 160, axis=1)  # columns hold their index
    out = datasets.preprocess_imagenet(image, image_size=100)
    self.assertEqual(out.shape, (100, 100, 3))
    self.assertAllClose(out[0, :, 1], _scaled(np.arange(30, 130)), atol=1e-6)
    out = datasets.preprocess_imagenet(image, image_size=50)
    self.assertEqual(out.shape, (50, 50, 3))
    self.assertAllClose(np.mean(out), _scaled(np.arange(30, 130)).mean(), atol=1e-3)

  def test_imagenet_random_crop_is_a_window_of_the_resized_image(self):
    image = tf.cast(tf.random.stateless_uniform([90, 150, 3], [3, 4], maxval=256,
                                                dtype=tf.int32), tf.uint8)
    # Shorter side 90 -> 45, longer side 150 -> 75; a 45x45 window at some column offset.
    resized = tf.image.resize(_scaled(image.numpy()).astype(np.float32), [45, 75],
                              antialias=True).numpy()
    offsets = set()
    for s in range(8):
      out = datasets.preprocess_imagenet(image, 45, random_crop=True, seed=tf.constant([s, 0]))
      self.assertEqual(out.shape, (45, 45, 3))
      matches = [dx for dx in range(31)
                 if np.allclose(out.numpy(), resized[:, dx:dx + 45], atol=1e-5)]
      self.assertLen(matches, 1)
      offsets.add(matches[0])
    self.assertGreater(len(offsets), 3)
    again = datasets.preprocess_imagenet(image, 45, random_crop=True, seed=tf.constant([0, 0]))
    first = datasets.preprocess_imagenet(image, 45, random_crop=True, seed=tf.constant([0, 0]))
    self.assertAllEqual(again, first)
    with self.assertRaisesRegex(ValueError, "needs a stateless seed"):
      datasets.preprocess_imagenet(image, 45, random_crop=True)

  def test_cifar10_random_crop_is_a_padded_window_maybe_flipped(self):
    image = tf.cast(tf.random.stateless_uniform([32, 32, 3], [5, 6], maxval=256,
                                                dtype=tf.int32), tf.uint8)
    plain = datasets.preprocess_cifar10(image)
    self.assertAllClose(plain, _scaled(image.numpy()), atol=1e-6)
    padded = np.pad(_scaled(image.numpy()), [(4, 4), (4, 4), (0, 0)])  # 0 = mid-grey
    seen = set()
    for s in range(12):
      out = datasets.preprocess_cifar10(image, random_crop=True, seed=tf.constant([s, 1])).numpy()
      found = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
               if np.allclose(out, (padded[dy:dy + 32, dx:dx + 32][:, ::-1] if flip else
                                    padded[dy:dy + 32, dx:dx + 32]), atol=1e-6)]
      self.assertLen(found, 1)
      seen.add(found[0])
    self.assertGreater(len(seen), 6)
    self.assertEqual({flip for _, _, flip in seen}, {False, True})

  def test_preprocess_rejects_bad_images(self):
    with self.assertRaisesRegex(ValueError, r"uint8 tensor of shape \[H, W, 3\]"):
      datasets.preprocess_celeb_a(np.zeros((218, 178, 3), np.float32))
    with self.assertRaisesRegex(ValueError, r"uint8 tensor of shape \[H, W, 3\]"):
      datasets.preprocess_imagenet(np.zeros((10, 10, 1), np.uint8), 8)
    with self.assertRaisesRegex(ValueError, r"uint8 tensor of shape \[H, W, 3\]"):
      datasets.preprocess_cifar10(np.zeros((4, 32, 32, 3), np.uint8))


class TfdsPipelineTest(tf.test.TestCase, parameterized.TestCase):
  """The real tfds code paths on tfds's mocked examples of the real features."""

  @parameterized.parameters(
      ("mnist", {}, (28, 28, 1)),
      ("cifar10", {}, (32, 32, 3)),
      ("celeb_a", {}, (64, 64, 3)),
      ("imagenet2012", {"image_size": 32}, (32, 32, 3)),
      ("imagenet2012", {"image_size": 24, "random_crop": True, "seed": 2}, (24, 24, 3)),
  )
  def test_load_split_shapes_and_ranges(self, name, kwargs, shape):
    with _mock_tfds(num_examples=3):
      elements = list(datasets.load_split(name, "train", data_dir="/unused", **kwargs)
                      .as_numpy_iterator())
      # The mock draws encoded and decoded examples differently: read them encoded, as
      # load_split does, and decode them here.
      builder = tfds.builder(name, data_dir="/unused")
      raw = list(builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()})
                 .as_numpy_iterator())
      for ex in raw:
        ex["image"] = tf.io.decode_image(ex["image"]).numpy()
    self.assertLen(elements, 3)
    for element, raw_element in zip(elements, raw):
      self.assertEqual(element["image"].shape, shape)
      self.assertEqual(element["image"].dtype, np.float32)
      self.assertBetween(element["image"].min(), -1.0, 1.0)
      self.assertBetween(element["image"].max(), -1.0, 1.0)
      self.assertEqual(element["label"].dtype, np.int64)
      self.assertEqual(element["label"], raw_element.get("label", 0))
      if name in ("mnist", "cifar10") and not kwargs:
        self.assertAllClose(element["image"], _scaled(raw_element["image"]), atol=1e-6)
      if name == "celeb_a":  # 218x178 -> rows 20..197 -> 64x64
        crop = _scaled(raw_element["image"][20:198]).astype(np.float32)
        self.assertAllClose(element["image"],
                            tf.image.resize(crop, [64, 64], antialias=True), atol=1e-5)

  def test_make_train_dataset_on_tfds(self):
    with _mock_tfds(num_examples=10):
      context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                           num_replicas_in_sync=2)
      ds = datasets.make_train_dataset("imagenet2012", batch_size_per_replica=3, image_size=16,
                                   random_crop=True, data_dir="/unused", input_context=context)
      batches = list(ds.take(4).as_numpy_iterator())  # 12 examples > the shard's 5
      ds = datasets.make_train_dataset("cifar10", batch_size_per_replica=4, data_dir="/unused")
      cifar = next(iter(ds))
    self.assertEqual(batches[0]["image"].shape, (3, 16, 16, 3))
    self.assertEqual(batches[0]["label"].shape, (3,))
    self.assertEqual(cifar["image"].shape, (4, 32, 32, 3))


def _idx_gz(path, array):
  header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.tobytes())


class FashionMnistTest(tf.test.TestCase):

  def test_prepare_then_load_offline(self):
    manual_dir, data_dir = _tmpdir(self), _tmpdir(self)
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", 12), ("test", 6)):
      images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
      labels = rng.integers(0, 10, (n,), dtype=np.uint8)
      images_name, labels_name = fashion_mnist_idx.SPLIT_FILES[split]
      _idx_gz(os.path.join(manual_dir, images_name), images)
      _idx_gz(os.path.join(manual_dir, labels_name), labels)
      arrays[split] = (images, labels)
    with self.assertRaises(datasets.DatasetNotPreparedError):
      datasets.load_split("fashion_mnist", "test", data_dir=data_dir)
    datasets.prepare_fashion_mnist(data_dir, manual_dir=manual_dir)
    x, y = datasets.load_array("fashion_mnist", "test", data_dir=data_dir)
    self.assertEqual((x.shape, x.dtype, y.dtype), ((6, 28, 28, 1), np.float32, np.int64))
    images, labels = arrays["test"]
    self.assertAllClose(x, np.clip(x, -1.0, 1.0))
    as_uint8 = np.round((x + 1.0) * 127.5).astype(np.uint8)  # invert 2 x / 255 - 1
    self.assertAllClose(x, _scaled(as_uint8), atol=1e-6)
    self.assertEqual(_multiset(as_uint8, y), _multiset(images[..., None], labels))
    ds = datasets.make_train_dataset("fashion_mnist", batch_size_per_replica=5, data_dir=data_dir)
    self.assertEqual(next(iter(ds))["image"].shape, (5, 28, 28, 1))


if __name__ == "__main__":
  tf.test.main()
