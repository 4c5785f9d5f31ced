"""Prepares a dataset once into a tfds data_dir, so that training never downloads.

  python -m ebm_tf.prepare_data --dataset=fashion_mnist --data_dir=~/tensorflow_datasets

fashion_mnist is prepared offline from the IDX files of the Debian package
dataset-fashion-mnist (or --manual_dir). mnist, cifar10, celeb_a and imagenet2012 use the stock
tfds builders: from the original archive files in --manual_dir, or by downloading them.
"""

from absl import app
from absl import flags
from absl import logging

# Before anything imports TensorFlow: keeps its CPU-machine noise out of the output.
from ebm_tf.internal import tf_noise  # pylint: disable=unused-import

from ebm_tf.data import datasets

_DATASET = flags.DEFINE_enum(
    "dataset", None, [n for n in datasets.DATASETS if n not in ("digits", "synthetic")],
    "Dataset to prepare.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "tfds data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).")
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None,
    "Folder with the original files (fashion_mnist default: /usr/share/datasets/fashion-mnist).")
flags.mark_flag_as_required("dataset")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  builder = datasets.prepare_dataset(_DATASET.value, data_dir=_DATA_DIR.value,
                                 manual_dir=_MANUAL_DIR.value)
  logging.info("Prepared %s in %s: %s", _DATASET.value, builder.data_dir, builder.info.splits)
  print(f"Prepared {builder.info.full_name} in {builder.data_dir}")


if __name__ == "__main__":
  app.run(main)
