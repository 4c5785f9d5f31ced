"""Input pipelines: image datasets as float32 NHWC in [-1, 1], 2-D toy points; no downloads.

Datasets (`name`):
  'digits'         sklearn's bundled 8x8x1 digits (1,797 images, values 0..16 -> x/8 - 1);
                   fixed split: 1,500 'train' / 297 'test'. Needs no data_dir.
  'mnist'          tfds `mnist`, 28x28x1.
  'fashion_mnist'  28x28x1, from this project's offline builder `fashion_mnist_idx`
                   (prepare once with `prepare_fashion_mnist`); a stock tfds `fashion_mnist`
                   prepared in the same data_dir is used as a fallback.
  'cifar10'        tfds `cifar10`, 32x32x3.
  'celeb_a'        tfds `celeb_a` (218x178x3): center crop to 178x178, then bilinear
                   antialiased resize to image_size (default 64). No labels (label 0).
  'imagenet2012'   tfds `imagenet2012`: center crop to a square then resize to image_size
                   (default 128); with random_crop=True, resize the shorter side to image_size
                   then take a random image_size square (the reference's train pipeline).
  'synthetic'      i.i.d. uniform [-1, 1] images of shape [image_size, image_size, 3]
                   (default 32), a pure function of (seed, index); 1,024 'train' / 256 'test'
                   examples; label 0. For smoke tests of the big presets.

  'toy_<name>'     points in R^2 from the exact sampler of `toy_densities.get_toy(<name>)`, for
                   every name in toy_densities.TOY_NAMES (`TOY_DATASETS`: toy_eight_gaussians,
                   toy_two_rings, toy_checkerboard, toy_checkerboard_smooth); 10,000 'train' /
                   2,000 'test' points, each split a fixed pure function of the toy's stateless
                   sampler (the same points in every run, train and test independent); label 0.

Every element is a dict {'image': float32 [H, W, C] in [-1, 1], 'label': int64 scalar}; the label
is 0 for datasets without labels (celeb_a, synthetic, toys). uint8 pixels map to 2 * x / 255 - 1.
The [-1, 1] convention is for images only: a toy element's 'image' is a float32 point [2] in the
toy's own coordinates (about [-3, 3]^2, see `ToyDensity.bounds`), never scaled or clipped, so that
the exact density scores samples in the same coordinates the EBM is trained on.

The tfds datasets are read with `tfds.builder(name, data_dir=data_dir)` from an already
prepared data_dir; when it is not prepared, `DatasetNotPreparedError` is raised at once, with
the command that prepares it.
"""

import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ebm_tf.data import fashion_mnist_idx
from ebm_tf.data import toy_densities

_NATIVE_SHAPES = {
    "digits": (8, 8, 1),
    "mnist": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
}
# Datasets whose images are resized to a square of `image_size` (default given here).
_RESIZED = {"celeb_a": (64, 3), "imagenet2012": (128, 3), "synthetic": (32, 3)}
_NUM_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10,
                "imagenet2012": 1000, "celeb_a": 1, "synthetic": 1}
DATASETS = tuple(sorted(_NUM_CLASSES))  # The image datasets.
_TOY_PREFIX = "toy_"
TOY_DATASETS = tuple(_TOY_PREFIX + name for name in toy_densities.TOY_NAMES)
_RANDOM_CROP_DATASETS = ("cifar10", "imagenet2012")

_DIGITS_NUM_TEST = 297
_DIGITS_SPLIT_SEED = 0
_SYNTHETIC_SIZES = {"train": 1024, "test": 256}
_SYNTHETIC_SALT = {"train": 1, "test": 2}
_CIFAR10_PAD = 4
_TOY_SIZES = {"train": 10_000, "test": 2_000}
# Each toy split is toy.sample([_TOY_CONTENT_SEED, salt], n): fixed data, independent splits.
_TOY_CONTENT_SEED = 20220525
_TOY_SALT = {"train": 1, "test": 2}


class DatasetNotPreparedError(FileNotFoundError):
  """A tfds dataset is not prepared in the given data_dir (ebm-tf never downloads it)."""


def default_data_dir():
  """Returns `$TFDS_DATA_DIR`, or `~/tensorflow_datasets`, with `~` expanded."""
  return os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def _check_name(name):
  if name not in _NUM_CLASSES and name not in TOY_DATASETS:
    raise ValueError(f"dataset name must be one of {list(DATASETS + TOY_DATASETS)}; "
                     f"got {name!r}")


def is_toy(name):
  """True for the 2-D toy datasets (`TOY_DATASETS`), whose elements are points [2], not images."""
  return isinstance(name, str) and name in TOY_DATASETS


def toy_density(name):
  """The exact `toy_densities.ToyDensity` behind toy dataset `name` (e.g. 'toy_two_rings').

  Raises:
    ValueError: `name` is not one of `TOY_DATASETS`.
  """
  if not is_toy(name):
    raise ValueError(f"toy dataset name must be one of {list(TOY_DATASETS)}; got {name!r}")
  return toy_densities.get_toy(name[len(_TOY_PREFIX):])


def _check_image_size(image_size):
  if image_size is None:
    return
  if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
    raise ValueError(f"image_size must be a positive int or None; got {image_size!r}")


def image_shape(name, image_size=None):
  """Returns the per-example shape `load_split(name, ..., image_size=image_size)` yields.

  Args:
    name: a dataset name from `DATASETS` or `TOY_DATASETS`.
    image_size: None for the dataset's default (native size, or 64 for celeb_a, 128 for
      imagenet2012, 32 for synthetic); otherwise the side of the square output. For the
      fixed-size datasets (digits, mnist, fashion_mnist, cifar10) a size other than the native
      one resizes the images bilinearly (e.g. 16 for 16x16 digits). Must be None for toys.

  Returns:
    A tuple of Python ints: (H, W, C) for images, (2,) for the 2-D toys.
  """
  _check_name(name)
  _check_image_size(image_size)
  if is_toy(name):
    if image_size is not None:
      raise ValueError(f"image_size must be None for the 2-D toy dataset {name!r} (points of "
                       f"shape [2]); got {image_size!r}")
    return (2,)
  if name in _NATIVE_SHAPES:
    h, w, c = _NATIVE_SHAPES[name]
    return (h, w, c) if image_size is None else (int(image_size), int(image_size), c)
  default_size, c = _RESIZED[name]
  size = default_size if image_size is None else int(image_size)
  return (size, size, c)


def num_classes(name):
  """Returns the number of label classes of `name`; 1 for datasets without labels (label 0)."""
  _check_name(name)
  return 1 if is_toy(name) else _NUM_CLASSES[name]


# ---------------------------------------------------------------------------------------------
# Per-example preprocessing (graph-friendly; each takes one image, no batch axis).

def _check_uint8_image(image, channels=None):
  image = tf.convert_to_tensor(image)
  if image.dtype != tf.uint8 or image.shape.rank != 3 or (
      channels is not None and image.shape[-1] not in (None, channels)):
    want = f"[H, W, {channels}]" if channels else "[H, W, C]"
    raise ValueError(f"image must be a uint8 tensor of shape {want}; got {image.dtype.name} "
                     f"of shape {image.shape}")
  return image


def scale_uint8(image):
  """Maps uint8 pixels to float32 in [-1, 1] by 2 * x / 255 - 1 (any shape)."""
  image = tf.convert_to_tensor(image)
  if image.dtype != tf.uint8:
    raise ValueError(f"image must be uint8 in [0, 255]; got {image.dtype.name}")
  return tf.cast(image, tf.float32) * (2.0 / 255.0) - 1.0


def _resize(image, height, width):
  # Bilinear with antialias averages pixels with non-negative weights; the clip only removes
  # float round-off so the [-1, 1] contract holds exactly.
  image = tf.image.resize(image, [height, width], method="bilinear", antialias=True)
  return tf.clip_by_value(image, -1.0, 1.0)


def center_crop_square(image):
  """Crops the largest centered square from `image` [H, W, C] (any dtype).

  The offset is (long side - short side) // 2, as in the reference code.

  Returns:
    [S, S, C] with S = min(H, W).
  """
  shape = tf.shape(image)
  h, w = shape[0], shape[1]
  side = tf.minimum(h, w)
  return tf.image.crop_to_bounding_box(image, (h - side) // 2, (w - side) // 2, side, side)


def preprocess_cifar10(image, random_crop=False, seed=None):
  """CIFAR-10 image -> float32 [32, 32, 3] in [-1, 1].

  Args:
    image: uint8 [32, 32, 3].
    random_crop: the reference classifier augmentation: pad 4 pixels of 0 (after scaling, so
      mid-grey) on each side, take a random 32x32 crop, flip left-right with probability 1/2.
    seed: int tensor [2], the stateless seed; required when random_crop.

  Returns:
    float32 [32, 32, 3] in [-1, 1].
  """
  image = _check_uint8_image(image, channels=3)
  image = scale_uint8(image)
  if random_crop:
    if seed is None:
      raise ValueError("preprocess_cifar10 with random_crop=True needs a stateless seed [2]")
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    p = _CIFAR10_PAD
    image = tf.pad(image, [[p, p], [p, p], [0, 0]])
    image = tf.image.stateless_random_crop(image, [32, 32, 3], seed=crop_seed)
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
  return tf.ensure_shape(image, [32, 32, 3])


def preprocess_celeb_a(image, image_size=64):
  """CelebA image -> float32 [image_size, image_size, 3] in [-1, 1].

  Center crop to a square (218x178 -> rows 20..197), then bilinear antialiased resize.

  Args:
    image: uint8 [H, W, 3] (218x178 for tfds celeb_a).
    image_size: side of the output square.

  Returns:
    float32 [image_size, image_size, 3] in [-1, 1].
  """
  _check_image_size(image_size)
  image = _check_uint8_image(image, channels=3)
  image = scale_uint8(center_crop_square(image))
  return tf.ensure_shape(_resize(image, image_size, image_size), [image_size, image_size, 3])


def preprocess_imagenet(image, image_size=128, random_crop=False, seed=None):
  """ImageNet image of any size -> float32 [image_size, image_size, 3] in [-1, 1].

  Without random_crop (evaluation): center crop to a square, then resize (bilinear,
  antialias). With random_crop (the reference EBM train pipeline, scale and aspect ranges
  [1, 1]): resize so the shorter side is image_size (the longer side to
  max(floor(image_size * long / short), image_size)), then a random image_size square crop.

  Args:
    image: uint8 [H, W, 3].
    image_size: side of the output square (64, 128 or 224 in the reference configs).
    random_crop: see above.
    seed: int tensor [2], the stateless seed; required when random_crop.

  Returns:
    float32 [image_size, image_size, 3] in [-1, 1].
  """
  _check_image_size(image_size)
  image = _check_uint8_image(image, channels=3)
  image = scale_uint8(image)
  if random_crop:
    if seed is None:
      raise ValueError("preprocess_imagenet with random_crop=True needs a stateless seed [2]")
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = float(image_size) / tf.reduce_min(shape)
    new_hw = tf.maximum(tf.cast(scale * shape, tf.int32), image_size)
    image = _resize(image, new_hw[0], new_hw[1])
    image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seed=seed)
  else:
    image = _resize(center_crop_square(image), image_size, image_size)
  return tf.ensure_shape(image, [image_size, image_size, 3])


def _preprocess_mnist(image, native_size, image_size):
  """mnist / fashion_mnist uint8 [28, 28, 1]: scale; resize only for another image_size."""
  image = scale_uint8(image)
  if image_size is not None and image_size != native_size:
    image = _resize(image, image_size, image_size)
  return image


# ---------------------------------------------------------------------------------------------
# Sources: a dataset of raw elements plus a per-element preprocessing function.

def _not_prepared_error(name, data_dir, tfds_name):
  if name == "fashion_mnist":
    how = ("Prepare it once, offline (about a minute), from the original IDX files with: "
           f"python -m ebm_tf.prepare_data --dataset=fashion_mnist --data_dir='{data_dir}' "
           f"(reads {fashion_mnist_idx.DEFAULT_MANUAL_DIR}; Debian/Ubuntu: apt-get install "
           "dataset-fashion-mnist), or from Python: ebm_tf.data.datasets.prepare_fashion_mnist("
           f"'{data_dir}', manual_dir=...)")
  else:
    archives = {"mnist": "*-ubyte.gz", "cifar10": "cifar-10-binary.tar.gz",
                "celeb_a": "img_align_celeba.zip and the list_*.txt files",
                "imagenet2012": "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar"}[name]
    how = ("Prepare it once with: python -c \"import tensorflow_datasets as tfds; "
           f"tfds.builder('{tfds_name}', data_dir='{data_dir}').download_and_prepare()\" on a "
           "machine with internet, or offline from the original archive files "
           f"({archives}) with download_and_prepare(download_config="
           "tfds.download.DownloadConfig(manual_dir=...)), or with python -m "
           f"ebm_tf.prepare_data --dataset={name} --data_dir='{data_dir}' --manual_dir=...")
  return DatasetNotPreparedError(
      f"dataset '{name}' is not prepared in data_dir '{data_dir}'. ebm-tf never downloads at "
      f"run time. {how}")


def _prepared_builder(name, data_dir):
  """Returns a prepared tfds builder for `name`, or raises DatasetNotPreparedError at once."""
  if name == "fashion_mnist":
    builder = fashion_mnist_idx.FashionMnistIdx(data_dir=data_dir)
    if builder.is_prepared():
      return builder
    stock = tfds.builder("fashion_mnist", data_dir=data_dir)
    if stock.is_prepared():
      return stock
    raise _not_prepared_error(name, data_dir, "fashion_mnist_idx")
  builder = tfds.builder(name, data_dir=data_dir)
  if not builder.is_prepared():
    raise _not_prepared_error(name, data_dir, name)
  return builder


def _load_digits_arrays(split):
  """sklearn digits -> (float32 [N, 8, 8, 1] in [-1, 1], int64 [N]) for 'train' or 'test'."""
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
  digits = sk_datasets.load_digits()
  images = (digits.images.astype(np.float32) / 8.0 - 1.0)[..., None]
  labels = digits.target.astype(np.int64)
  perm = np.random.RandomState(_DIGITS_SPLIT_SEED).permutation(len(labels))
  idx = perm[:_DIGITS_NUM_TEST] if split == "test" else perm[_DIGITS_NUM_TEST:]
  return images[idx], labels[idx]


def _check_split(name, split, allowed):
  if split not in allowed:
    raise ValueError(f"split for dataset '{name}' must be one of {list(allowed)}; got {split!r}")


def _make_source(name, split, data_dir, image_size, random_crop, seed):
  """Returns (raw tf.data.Dataset, preprocess(raw_element, element_seed [2]) -> element)."""
  _check_name(name)
  _check_image_size(image_size)
  if random_crop and name not in _RANDOM_CROP_DATASETS:
    raise ValueError(f"random_crop=True is defined for {list(_RANDOM_CROP_DATASETS)}; "
                     f"got dataset {name!r}")
  out_shape = image_shape(name, image_size)
  label0 = tf.constant(0, tf.int64)

  if is_toy(name):
    _check_split(name, split, tuple(_TOY_SIZES))
    points = toy_density(name).sample(tf.constant([_TOY_CONTENT_SEED, _TOY_SALT[split]],
                                                  tf.int64), _TOY_SIZES[split])
    raw = tf.data.Dataset.from_tensor_slices(
        {"image": points, "label": tf.zeros([_TOY_SIZES[split]], tf.int64)})
    return raw, lambda ex, unused_seed: ex

  if name == "digits":
    _check_split(name, split, ("train", "test"))
    images, labels = _load_digits_arrays(split)
    raw = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})

    def preprocess_digits(ex, unused_seed):
      image = ex["image"]
      if out_shape[0] != 8:
        image = _resize(image, out_shape[0], out_shape[1])
      return {"image": image, "label": ex["label"]}
    return raw, preprocess_digits

  if name == "synthetic":
    _check_split(name, split, tuple(_SYNTHETIC_SIZES))
    content_seed = tf.constant([0 if seed is None else seed, _SYNTHETIC_SALT[split]], tf.int64)
    raw = tf.data.Dataset.range(_SYNTHETIC_SIZES[split])

    def preprocess_synthetic(index, unused_seed):
      s = tf.random.experimental.stateless_fold_in(content_seed, index)
      image = tf.random.stateless_uniform(out_shape, seed=s, minval=-1.0, maxval=1.0)
      return {"image": image, "label": label0}
    return raw, preprocess_synthetic

  data_dir = default_data_dir() if data_dir is None else os.path.expanduser(os.fspath(data_dir))
  builder = _prepared_builder(name, data_dir)
  image_feature = builder.info.features["image"]
  has_label = "label" in builder.info.features
  # Images stay encoded through sharding and shuffling; they are decoded in `preprocess`.
  raw = builder.as_dataset(split=split, shuffle_files=False,
                           decoders={"image": tfds.decode.SkipDecoding()})
  raw = raw.map(lambda ex: {"image": ex["image"],
                            "label": tf.cast(ex["label"], tf.int64) if has_label else label0})

  def preprocess_tfds(ex, element_seed):
    image = image_feature.decode_example(ex["image"])
    if name == "cifar10":
      image = preprocess_cifar10(image, random_crop, element_seed)
      if out_shape[0] != 32:
        image = _resize(image, out_shape[0], out_shape[1])
    elif name == "celeb_a":
      image = preprocess_celeb_a(image, out_shape[0])
    elif name == "imagenet2012":
      image = preprocess_imagenet(image, out_shape[0], random_crop, element_seed)
    else:  # mnist, fashion_mnist
      image = _preprocess_mnist(image, 28, out_shape[0])
    return {"image": tf.ensure_shape(image, out_shape), "label": ex["label"]}
  return raw, preprocess_tfds


def _apply_preprocess(raw, preprocess, base_seed, deterministic=True):
  """Maps `preprocess` over `raw` with a distinct stateless seed per element position."""
  base_seed = tf.constant(base_seed, tf.int64)

  def fn(position, ex):
    return preprocess(ex, tf.random.experimental.stateless_fold_in(base_seed, position))
  return raw.enumerate().map(fn, num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=deterministic)


def load_split(name, split, *, data_dir=None, image_size=None, random_crop=False, seed=None):
  """One split as a tf.data.Dataset of unbatched elements, in a fixed order, not repeated.

  Args:
    name: a dataset name from `DATASETS` or `TOY_DATASETS`.
    split: 'train' or 'test' for digits, synthetic, the toys (and fashion_mnist); any tfds split
      string of the dataset otherwise (e.g. 'validation', 'train[:10%]').
    data_dir: tfds data directory (default `default_data_dir()`); unused by digits, synthetic
      and the toys.
    image_size: see `image_shape`.
    random_crop: random-crop augmentation (cifar10: pad-4 crop + flip; imagenet2012: shorter
      side resize + random square crop); needs `seed`.
    seed: int; the stateless seed of the random crops, and the content seed of 'synthetic'
      (None: 0).

  Returns:
    tf.data.Dataset of {'image': float32 [H, W, C] in [-1, 1], 'label': int64 []}, with
    (H, W, C) = image_shape(name, image_size); for a toy, 'image' is a float32 point [2] in the
    toy's coordinates (not scaled to [-1, 1]) and the label 0.

  Raises:
    ValueError: unknown name or split, bad image_size, random_crop without a seed or for a
      dataset without a random-crop pipeline.
    DatasetNotPreparedError: the tfds dataset is not prepared in data_dir (raised at once).
  """
  if random_crop and seed is None:
    raise ValueError("load_split with random_crop=True needs an int seed; got seed=None")
  raw, preprocess = _make_source(name, split, data_dir, image_size, random_crop, seed)
  return _apply_preprocess(raw, preprocess, [0 if seed is None else seed, 0])


def make_train_dataset(name, *, batch_size_per_replica, data_dir=None, image_size=None,
                       random_crop=False, shuffle_buffer=2500, seed=0, input_context=None,
                       split="train"):
  """The training input pipeline: shard, shuffle, repeat, preprocess, batch, prefetch.

  Use directly, or as the dataset_fn of `strategy.distribute_datasets_from_function`, which
  passes `input_context`; each input pipeline then reads every
  `input_context.num_input_pipelines`-th example starting at its `input_pipeline_id`.
  The example order is reshuffled every epoch; everything is a function of `seed`.

  Args:
    name: a dataset name from `DATASETS` or `TOY_DATASETS`.
    batch_size_per_replica: positive int; batches are of exactly this size
      (drop_remainder=True, so the batch dimension is static).
    data_dir, image_size, random_crop, split: as in `load_split`.
    shuffle_buffer: positive int, the tf.data shuffle buffer (2500 in the reference).
    seed: int; seeds the shuffle and the per-example random crops.
    input_context: optional `tf.distribute.InputContext`.

  Returns:
    An infinite tf.data.Dataset of {'image': float32 [batch_size_per_replica, H, W, C] in
    [-1, 1] (toys: [batch_size_per_replica, 2] points, unscaled), 'label': int64
    [batch_size_per_replica]}.

  Raises:
    ValueError: bad arguments, or a shard with no examples.
    DatasetNotPreparedError: the tfds dataset is not prepared in data_dir (raised at once).
  """
  for arg_name, value in (("batch_size_per_replica", batch_size_per_replica),
                          ("shuffle_buffer", shuffle_buffer)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{arg_name} must be a positive int; got {value!r}")
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
    raise ValueError(f"seed must be an int; got {seed!r}")
  raw, preprocess = _make_source(name, split, data_dir, image_size, random_crop, seed)
  pipeline_id = 0
  if input_context is not None:
    pipeline_id = input_context.input_pipeline_id
    raw = raw.shard(input_context.num_input_pipelines, pipeline_id)
  if tf.get_static_value(raw.cardinality()) == 0:
    raise ValueError(f"dataset '{name}' split {split!r} has no examples for input pipeline "
                     f"{pipeline_id}")
  ds = raw.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
  ds = _apply_preprocess(ds, preprocess, [seed, 1 + pipeline_id])
  ds = ds.batch(batch_size_per_replica, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def load_array(name, split, *, max_examples=None, data_dir=None, image_size=None):
  """A small evaluation split in memory (no random crop), in `load_split` order.

  Args:
    name, split, data_dir, image_size: as in `load_split`.
    max_examples: keep the first max_examples elements (None: all).

  Returns:
    (images np.float32 [N, H, W, C] in [-1, 1] (toys: points [N, 2], unscaled), labels np.int64
    [N]).
  """
  if max_examples is not None and (isinstance(max_examples, bool) or
                                   not isinstance(max_examples, (int, np.integer)) or
                                   max_examples < 0):
    raise ValueError(f"max_examples must be a non-negative int or None; got {max_examples!r}")
  ds = load_split(name, split, data_dir=data_dir, image_size=image_size)
  if max_examples is not None:
    ds = ds.take(max_examples)
  images, labels = [], []
  for batch in ds.batch(1024).as_numpy_iterator():
    images.append(batch["image"])
    labels.append(batch["label"])
  shape = image_shape(name, image_size)
  if not images:
    return np.zeros((0,) + shape, np.float32), np.zeros((0,), np.int64)
  return np.concatenate(images).astype(np.float32), np.concatenate(labels).astype(np.int64)


def prepare_fashion_mnist(data_dir=None, manual_dir=fashion_mnist_idx.DEFAULT_MANUAL_DIR):
  """Prepares 'fashion_mnist' offline from the original IDX files (once; about a minute).

  Args:
    data_dir: tfds data directory (default `default_data_dir()`).
    manual_dir: folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (the Debian
      package dataset-fashion-mnist installs them in /usr/share/datasets/fashion-mnist).

  Returns:
    The prepared tfds builder (`fashion_mnist_idx`).
  """
  data_dir = default_data_dir() if data_dir is None else data_dir
  return fashion_mnist_idx.prepare(data_dir, manual_dir)


def prepare_dataset(name, *, data_dir=None, manual_dir=None):
  """Prepares `name` in data_dir once, explicitly (the only place ebm-tf may download).

  fashion_mnist: offline from IDX files (manual_dir default: the Debian package's folder).
  mnist, cifar10, celeb_a, imagenet2012: the stock tfds builder; with manual_dir it reads the
  original archive files from there, otherwise it downloads them (needs internet).
  digits, synthetic and the toys: nothing to prepare.

  Returns:
    The prepared tfds builder, or None for digits/synthetic/toys.
  """
  _check_name(name)
  data_dir = default_data_dir() if data_dir is None else os.path.expanduser(data_dir)
  if name in ("digits", "synthetic") or is_toy(name):
    return None
  if name == "fashion_mnist":
    return prepare_fashion_mnist(data_dir, manual_dir or fashion_mnist_idx.DEFAULT_MANUAL_DIR)
  builder = tfds.builder(name, data_dir=data_dir)
  config = None
  if manual_dir is not None:
    config = tfds.download.DownloadConfig(manual_dir=os.path.expanduser(manual_dir))
  builder.download_and_prepare(download_config=config)
  return builder
