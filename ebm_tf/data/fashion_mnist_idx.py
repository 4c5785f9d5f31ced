"""Offline tfds builder for Fashion-MNIST from the original IDX files.

tfds 4.9.10's stock `fashion_mnist` builder verifies the checksums of manually provided files and
rejects the Debian package `dataset-fashion-mnist` (same content, re-compressed bytes). This
builder reads the four IDX files itself, so preparing needs no network:

    builder = FashionMnistIdx(data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir='/usr/share/datasets/fashion-mnist', try_download_gcs=False))

or simply `prepare(data_dir)`. The prepared dataset has the stock features
(`image`: uint8 [28, 28, 1], `label`: int64 in [0, 10)) and splits `train` (60,000) and
`test` (10,000) for the real files.
"""

import gzip
import os

import numpy as np
import tensorflow_datasets as tfds

DEFAULT_MANUAL_DIR = "/usr/share/datasets/fashion-mnist"

# The four IDX files per split, as named by Zalando and by the Debian package.
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

_IDX_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path, expected_ndim=None):
  """Reads one unsigned-byte IDX file (gzip-compressed or raw) into a numpy array.

  IDX layout: two zero bytes, a type byte (0x08 = unsigned byte, the only type used by
  MNIST-style datasets), a byte giving the number of dimensions `d`, then `d` big-endian
  uint32 sizes, then the data in C order.

  Args:
    path: path of the file; compressed if it starts with the gzip magic bytes.
    expected_ndim: if given, the number of dimensions the file must declare
      (3 for images, 1 for labels).

  Returns:
    np.uint8 array whose shape is the declared dimensions.

  Raises:
    ValueError: the file is not a valid unsigned-byte IDX file (bad magic, wrong number of
      dimensions, truncated or trailing data, corrupt gzip stream).
  """
  with open(path, "rb") as f:
    raw = f.read()
  if raw[:2] == _GZIP_MAGIC:
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError.
      raise ValueError(f"IDX file {path!r} is not a valid gzip stream: {e}") from e
  if len(raw) < 4:
    raise ValueError(f"IDX file {path!r} is too short ({len(raw)} bytes) to hold a header")
  if raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE:
    raise ValueError(
        f"IDX file {path!r} has magic number {raw[:4].hex()}; expected 0000 08 followed by "
        "the number of dimensions (unsigned-byte IDX, e.g. 00000803 images, 00000801 labels)")
  ndim = raw[3]
  if expected_ndim is not None and ndim != expected_ndim:
    raise ValueError(
        f"IDX file {path!r} declares {ndim} dimensions; expected {expected_ndim}")
  header_len = 4 + 4 * ndim
  if len(raw) < header_len:
    raise ValueError(f"IDX file {path!r} is truncated inside its header")
  dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
  expected_len = header_len + int(np.prod(dims, dtype=np.int64))
  if len(raw) != expected_len:
    raise ValueError(
        f"IDX file {path!r} declares dims {dims} ({expected_len - header_len} data bytes) but "
        f"holds {len(raw) - header_len} data bytes")
  return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def read_split(manual_dir, split):
  """Reads and cross-checks the images and labels of one split from `manual_dir`.

  Args:
    manual_dir: folder holding the IDX files named in `SPLIT_FILES`.
    split: 'train' or 'test'.

  Returns:
    (images np.uint8 [N, 28, 28], labels np.uint8 [N] in [0, 10)).

  Raises:
    ValueError: bad split name, invalid file, wrong image size, mismatched counts or labels
      outside [0, 10).
    FileNotFoundError: a file is missing.
  """
  if split not in SPLIT_FILES:
    raise ValueError(f"split must be one of {sorted(SPLIT_FILES)}; got {split!r}")
  images_name, labels_name = SPLIT_FILES[split]
  images_path = os.path.join(manual_dir, images_name)
  labels_path = os.path.join(manual_dir, labels_name)
  for path in (images_path, labels_path):
    if not os.path.isfile(path):
      raise FileNotFoundError(
          f"Fashion-MNIST file {path!r} not found. Put the original IDX files "
          f"{sorted(n for pair in SPLIT_FILES.values() for n in pair)} in manual_dir "
          "(Debian/Ubuntu: apt-get install dataset-fashion-mnist puts them in "
          f"{DEFAULT_MANUAL_DIR})")
  images = read_idx(images_path, expected_ndim=3)
  labels = read_idx(labels_path, expected_ndim=1)
  if images.shape[1:] != (28, 28):
    raise ValueError(f"{images_path!r} holds images of shape {images.shape[1:]}; expected (28, 28)")
  if images.shape[0] != labels.shape[0]:
    raise ValueError(
        f"{images_path!r} holds {images.shape[0]} images but {labels_path!r} holds "
        f"{labels.shape[0]} labels")
  if labels.size and labels.max() >= 10:
    raise ValueError(f"{labels_path!r} holds label {labels.max()}; expected labels in [0, 10)")
  return images, labels


class FashionMnistIdx(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST (Xiao et al. 2017, MIT licence) read from the original IDX files."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Reads the original IDX files from manual_dir; no download."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Place {sorted(n for pair in SPLIT_FILES.values() for n in pair)} in manual_dir. "
      f"Debian/Ubuntu: apt-get install dataset-fashion-mnist puts them in {DEFAULT_MANUAL_DIR}.")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="Fashion-MNIST 28x28 grayscale images of 10 clothing classes.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(28, 28, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    )

  def _split_generators(self, dl_manager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    return {split: self._generate_examples(manual_dir, split) for split in SPLIT_FILES}

  def _generate_examples(self, manual_dir, split):
    images, labels = read_split(manual_dir, split)
    for i in range(images.shape[0]):
      yield i, {"image": images[i][..., None], "label": int(labels[i])}


def prepare(data_dir, manual_dir=DEFAULT_MANUAL_DIR):
  """Prepares `fashion_mnist_idx` into `data_dir` from the IDX files in `manual_dir`, offline.

  About a minute for the full 70,000 images on 2 CPU cores; a no-op when already prepared.

  Args:
    data_dir: tfds data directory (the dataset lands in `data_dir/fashion_mnist_idx/1.0.0`).
    manual_dir: folder holding the four `*-ubyte.gz` IDX files.

  Returns:
    The prepared `FashionMnistIdx` builder.

  Raises:
    FileNotFoundError: `manual_dir` or one of its files is missing.
    ValueError: a file is not a valid IDX file (see `read_idx`).
  """
  manual_dir = os.path.expanduser(manual_dir)
  if not os.path.isdir(manual_dir):
    raise FileNotFoundError(
        f"manual_dir {manual_dir!r} does not exist. {FashionMnistIdx.MANUAL_DOWNLOAD_INSTRUCTIONS}")
  builder = FashionMnistIdx(data_dir=os.path.expanduser(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir, try_download_gcs=False))
  return builder
