"""Tests for ebm_tf.data.fashion_mnist_idx: the IDX parser and the offline tfds builder.

The builder test on the real Debian files (70,000 images, about a minute) runs only with
EBM_SLOW_TESTS=1.
"""

import gzip
import os
import shutil
import struct
import tempfile

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ebm_tf.data import fashion_mnist_idx

_REAL_DIR = fashion_mnist_idx.DEFAULT_MANUAL_DIR


def _idx_bytes(array, type_byte=0x08):
  """The IDX encoding of a uint8 array, written from the format description."""
  header = bytes([0, 0, type_byte, array.ndim]) + b"".join(
      struct.pack(">I", d) for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


def _write(path, payload, compress=True):
  with open(path, "wb") as f:
    f.write(gzip.compress(payload) if compress else payload)
  return path


def _write_manual_dir(root, num_train=20, num_test=10, seed=0):
  """Writes the four gzip IDX files of a tiny Fashion-MNIST; returns the arrays per split."""
  rng = np.random.default_rng(seed)
  arrays = {}
  for split, n in (("train", num_train), ("test", num_test)):
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
    images_name, labels_name = fashion_mnist_idx.SPLIT_FILES[split]
    _write(os.path.join(root, images_name), _idx_bytes(images))
    _write(os.path.join(root, labels_name), _idx_bytes(labels))
    arrays[split] = (images, labels)
  return arrays


def _tmpdir(test_case):
  """A fresh directory removed after the test (absltest's create_tempdir needs parsed flags)."""
  path = tempfile.mkdtemp()
  test_case.addCleanup(shutil.rmtree, path, ignore_errors=True)
  return path


def _as_multiset(images, labels):
  return sorted((int(l), im.tobytes()) for im, l in zip(images, labels))


class ReadIdxTest(tf.test.TestCase):

  def test_round_trip_gzip_and_raw(self):
    tmp = _tmpdir(self)
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    labels = np.array([3, 0, 9], np.uint8)
    got = fashion_mnist_idx.read_idx(_write(os.path.join(tmp, "i.gz"), _idx_bytes(images)),
                                     expected_ndim=3)
    self.assertEqual(got.dtype, np.uint8)
    self.assertAllEqual(got, images)
    got = fashion_mnist_idx.read_idx(
        _write(os.path.join(tmp, "l"), _idx_bytes(labels), compress=False), expected_ndim=1)
    self.assertAllEqual(got, labels)

  def test_corrupt_files_raise_clear_errors(self):
    tmp = _tmpdir(self)
    good = _idx_bytes(np.zeros((2, 28, 28), np.uint8))
    cases = {
        "bad_type": (_idx_bytes(np.zeros((2, 28, 28), np.uint8), type_byte=0x0D), "magic"),
        "bad_zero": (b"\x01" + good[1:], "magic"),
        "truncated_data": (good[:-5], "holds"),
        "trailing_data": (good + b"\x00", "holds"),
        "truncated_header": (good[:9], "truncated inside its header"),
        "tiny": (b"\x00\x00", "too short"),
    }
    for name, (payload, pattern) in cases.items():
      path = _write(os.path.join(tmp, name + ".gz"), payload)
      with self.assertRaisesRegex(ValueError, pattern, msg=name):
        fashion_mnist_idx.read_idx(path, expected_ndim=3)
    # Wrong number of dimensions (a labels file where images are expected).
    path = _write(os.path.join(tmp, "labels.gz"), _idx_bytes(np.zeros((4,), np.uint8)))
    with self.assertRaisesRegex(ValueError, "declares 1 dimensions; expected 3"):
      fashion_mnist_idx.read_idx(path, expected_ndim=3)
    # A damaged gzip stream: the error names the file.
    compressed = gzip.compress(good)
    path = os.path.join(tmp, "broken.gz")
    _write(path, compressed[:len(compressed) // 2], compress=False)
    with self.assertRaisesRegex(ValueError, "broken.gz.*not a valid gzip stream"):
      fashion_mnist_idx.read_idx(path)

  def test_read_split_cross_checks(self):
    tmp = _tmpdir(self)
    arrays = _write_manual_dir(tmp, num_train=6, num_test=4)
    images, labels = fashion_mnist_idx.read_split(tmp, "test")
    self.assertAllEqual(images, arrays["test"][0])
    self.assertAllEqual(labels, arrays["test"][1])
    images_name, labels_name = fashion_mnist_idx.SPLIT_FILES["train"]
    _write(os.path.join(tmp, labels_name), _idx_bytes(np.zeros((5,), np.uint8)))
    with self.assertRaisesRegex(ValueError, "6 images but .* 5 labels"):
      fashion_mnist_idx.read_split(tmp, "train")
    _write(os.path.join(tmp, labels_name), _idx_bytes(np.array([0, 1, 2, 3, 4, 10], np.uint8)))
    with self.assertRaisesRegex(ValueError, "label 10"):
      fashion_mnist_idx.read_split(tmp, "train")
    _write(os.path.join(tmp, images_name), _idx_bytes(np.zeros((6, 27, 28), np.uint8)))
    with self.assertRaisesRegex(ValueError, r"shape \(27, 28\); expected \(28, 28\)"):
      fashion_mnist_idx.read_split(tmp, "train")
    os.remove(os.path.join(tmp, images_name))
    with self.assertRaisesRegex(FileNotFoundError, "train-images-idx3-ubyte.gz"):
      fashion_mnist_idx.read_split(tmp, "train")
    with self.assertRaisesRegex(ValueError, "split must be one of"):
      fashion_mnist_idx.read_split(tmp, "validation")

  def test_real_debian_files_parse(self):
    if not os.path.isdir(_REAL_DIR):
      self.skipTest(f"{_REAL_DIR} not installed (apt-get install dataset-fashion-mnist)")
    for split, n in (("train", 60000), ("test", 10000)):
      images, labels = fashion_mnist_idx.read_split(_REAL_DIR, split)
      self.assertEqual(images.shape, (n, 28, 28))
      # Fashion-MNIST is exactly class balanced.
      self.assertAllEqual(np.bincount(labels, minlength=10), [n // 10] * 10)


class FashionMnistIdxBuilderTest(tf.test.TestCase):

  def test_prepares_and_loads_tiny_manual_dir(self):
    manual_dir = _tmpdir(self)
    data_dir = _tmpdir(self)
    arrays = _write_manual_dir(manual_dir)
    builder = fashion_mnist_idx.prepare(data_dir, manual_dir)
    self.assertTrue(builder.is_prepared())
    self.assertEqual(builder.info.splits["train"].num_examples, 20)
    self.assertEqual(builder.info.splits["test"].num_examples, 10)
    self.assertEqual(builder.info.supervised_keys, ("image", "label"))
    self.assertEqual(builder.info.features["image"].shape, (28, 28, 1))
    self.assertEqual(builder.info.features["label"].num_classes, 10)
    # A fresh builder, by registered name, in the same data_dir reads it back, no network.
    reloaded = tfds.builder("fashion_mnist_idx", data_dir=data_dir)
    self.assertTrue(reloaded.is_prepared())
    for split in ("train", "test"):
      got = list(reloaded.as_dataset(split=split).as_numpy_iterator())
      got_images = np.stack([ex["image"] for ex in got])
      self.assertEqual(got_images.shape[1:], (28, 28, 1))
      self.assertEqual(_as_multiset(got_images[..., 0], [ex["label"] for ex in got]),
                       _as_multiset(*arrays[split]))
    # Preparing again is a no-op on the prepared data.
    fashion_mnist_idx.prepare(data_dir, manual_dir)

  def test_bad_manual_dir(self):
    data_dir = _tmpdir(self)
    with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
      fashion_mnist_idx.prepare(data_dir, os.path.join(data_dir, "missing"))
    manual_dir = _tmpdir(self)
    _write_manual_dir(manual_dir)
    images_name, _ = fashion_mnist_idx.SPLIT_FILES["test"]
    _write(os.path.join(manual_dir, images_name), b"\x00\x00\x08\x03garbage")
    with self.assertRaisesRegex(ValueError, "t10k-images-idx3-ubyte.gz"):
      fashion_mnist_idx.prepare(data_dir, manual_dir)
    self.assertFalse(fashion_mnist_idx.FashionMnistIdx(data_dir=data_dir).is_prepared())

  def test_prepares_real_debian_files(self):
    if os.environ.get("EBM_SLOW_TESTS") != "1":
      self.skipTest("prepares 70,000 images (about a minute); set EBM_SLOW_TESTS=1 to run")
    if not os.path.isdir(_REAL_DIR):
      self.skipTest(f"{_REAL_DIR} not installed (apt-get install dataset-fashion-mnist)")
    data_dir = _tmpdir(self)
    builder = fashion_mnist_idx.prepare(data_dir)
    self.assertEqual(builder.info.splits["train"].num_examples, 60000)
    self.assertEqual(builder.info.splits["test"].num_examples, 10000)
    labels = np.concatenate([b["label"] for b in builder.as_dataset(
        split="test", batch_size=2500).as_numpy_iterator()])
    self.assertAllEqual(np.bincount(labels, minlength=10), [1000] * 10)


if __name__ == "__main__":
  tf.test.main()
