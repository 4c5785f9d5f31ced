r"""How much of a stability snapshot's FD is its class mix.

  python docs/scripts/class_mix_fd.py --job_dirs=runs/s12/stab_anneal_9k \
      --classifier_dir=pretrained/classifier_digits --dataset=digits \
      --output_json=docs/results_class_mix_fd_digits_s13.json

For every snapshot (samples_<step>.npz) of an `ebm_tf.evaluate_stability` job: the classifier's
class histogram of the chains (images clipped to [-1, 1], as the FD sees them), the chains' FD
against the first `num_reference` training images (the protocol's reference, so this equals the
job's own FD), and the FD of *real* training images drawn from index `num_reference` on (disjoint
from the reference) with exactly that class histogram, averaged over `draws` draws. The last is
the FD a perfect sampler with the chains' class proportions would score: it separates "the chains
drifted between classes" (mode masses) from "the chains' images are worse within a class".
Used for docs/results.md (b), session 13. Prints one row per snapshot; with --output_json also
writes them (to a temporary file, then renamed).
"""

import json
import os

from absl import app
from absl import flags
import numpy as np

from ebm_tf.internal import tf_noise  # pylint: disable=unused-import

from ebm_tf.classifier import classifier_lib
from ebm_tf.data import datasets
from ebm_tf.evaluation import fid
from ebm_tf.evaluation import sampling

_JOB_DIRS = flags.DEFINE_list("job_dirs", None, "evaluate_stability output directories",
                              required=True)
_CLASSIFIER_DIR = flags.DEFINE_string("classifier_dir", None, "classifier run for the FD",
                                      required=True)
_DATASET = flags.DEFINE_string("dataset", "digits", "the jobs' dataset")
_NUM_REFERENCE = flags.DEFINE_integer("num_reference", 128,
                                      "reference images: the first N of the training split")
_DRAWS = flags.DEFINE_integer("draws", 20, "draws of real images per snapshot")
_SEED = flags.DEFINE_integer("seed", 0, "seed of the draws")
_OUTPUT_JSON = flags.DEFINE_string("output_json", "", "optional JSON of all rows")


def draw_with_histogram(labels: np.ndarray, histogram: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
  """Indices into `labels` (int [N]) with histogram[c] distinct examples of each class c.

  Raises:
    ValueError: a class has fewer examples than the histogram asks for.
  """
  picks = []
  for label, count in enumerate(histogram):
    pool = np.flatnonzero(labels == label)
    if count > len(pool):
      raise ValueError(f"class {label}: {count} examples asked, {len(pool)} in the pool")
    picks.append(rng.choice(pool, int(count), replace=False))
  return np.concatenate(picks)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _DRAWS.value < 1:
    raise ValueError(f"--draws must be >= 1; got {_DRAWS.value}")
  count = _NUM_REFERENCE.value
  classifier, _ = classifier_lib.load_classifier(_CLASSIFIER_DIR.value)
  extractor = fid.make_extractor("classifier", _CLASSIFIER_DIR.value)
  # The protocol's reference (the first `count` training images); the pool is the rest.
  reference = fid.reference_stats(extractor, _DATASET.value, count, split="train")
  images, labels = datasets.load_array(_DATASET.value, "train")
  pool_images, pool_labels = images[count:], labels[count:]
  num_classes = datasets.num_classes(_DATASET.value)
  rows = []
  for job_dir in _JOB_DIRS.value:
    snapshots = sampling.list_snapshots(job_dir)
    if not snapshots:
      raise FileNotFoundError(f"no samples_<step>.npz in {job_dir!r}")
    rng = np.random.default_rng(_SEED.value)
    for step, path in snapshots:
      chains = np.clip(sampling.load_snapshot(path)[0].astype(np.float32), -1.0, 1.0)
      predicted = classifier(chains, training=False).numpy().argmax(-1)
      histogram = np.bincount(predicted, minlength=num_classes)
      chains_fd = fid.frechet_distance(fid.compute_stats(extractor, chains), reference)
      real_fd = [fid.frechet_distance(
          fid.compute_stats(extractor, pool_images[draw_with_histogram(pool_labels, histogram,
                                                                       rng)]), reference)
                 for _ in range(_DRAWS.value)]
      row = dict(job_dir=job_dir, step=step, histogram=histogram.tolist(),
                 chains_fd=float(chains_fd), same_mix_real_fd=float(np.mean(real_fd)),
                 same_mix_real_fd_sd=float(np.std(real_fd)),
                 largest_class_share=float(histogram.max() / histogram.sum()))
      rows.append(row)
      print(f"{job_dir} step {row['step']:>8}: classes {histogram.tolist()} | chains FD "
            f"{chains_fd:6.2f} | real images with that mix {row['same_mix_real_fd']:6.2f} "
            f"+- {row['same_mix_real_fd_sd']:.2f}")
  if _OUTPUT_JSON.value:
    temp = _OUTPUT_JSON.value + ".tmp"
    with open(temp, "w") as f:
      json.dump(dict(classifier_dir=_CLASSIFIER_DIR.value, dataset=_DATASET.value,
                     num_reference=count, draws=_DRAWS.value, seed=_SEED.value, rows=rows), f,
                indent=1)
    os.replace(temp, _OUTPUT_JSON.value)


if __name__ == "__main__":
  app.run(main)
