r"""Scores a longrun training checkpoint's chain banks (its training negatives) like a stability snapshot.

  python docs/scripts/bank_fd.py --model_dir=runs/s12/corr_g1000_anneal --checkpoints=6000,9000 \
      --classifier_dir=pretrained/classifier_digits --num_samples=128

The update bank holds the negatives the correction EBM is trained on (chains 50K-150K steps old
with graduation after 1,000 draws of 50 steps); the burn-in bank the younger chains that feed it.
During training these chains move under a model that keeps changing. Scoring them with the same
metrics as `ebm_tf.evaluate_stability` (classifier FD against the first `num_samples` training
images, energies relative to the data's) and comparing with chains of the same age run on the
frozen checkpoint separates "the negatives are good" from "the model's own law is good".
Used for docs/results.md (b), session 12. Prints one row per checkpoint and bank; with
--output_json also writes them (written to a temporary file, then renamed).
"""

import json
import os

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from ebm_tf.internal import tf_noise  # pylint: disable=unused-import

from ebm_tf.data import datasets
from ebm_tf.evaluation import fid
from ebm_tf.evaluation import sampling
from ebm_tf.evaluation import stability
from ebm_tf.training import config as config_lib

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "a longrun correction training run",
                                 required=True)
_CHECKPOINTS = flags.DEFINE_list("checkpoints", None, "checkpoint numbers (ckpt-N) to score",
                                 required=True)
_CLASSIFIER_DIR = flags.DEFINE_string("classifier_dir", None, "classifier run for the FD",
                                      required=True)
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 128,
                                    "bank states scored (the first N) and reference images")
_OUTPUT_JSON = flags.DEFINE_string("output_json", "", "optional JSON of all rows")

_BANKS = ("bank", "burnin_bank")


def bank_images(checkpoint_prefix: str, bank: str) -> np.ndarray:
  """The images of one bank in a training checkpoint: float32 [slots, H, W, C] (replica rows
  flattened), unclipped chain states."""
  reader = tf.train.load_checkpoint(checkpoint_prefix)
  key = f"{bank}/images/.ATTRIBUTES/VARIABLE_VALUE"
  if not reader.has_tensor(key):
    raise ValueError(f"{checkpoint_prefix} has no {bank!r} (not a longrun correction run?)")
  images = reader.get_tensor(key)
  return images.reshape((-1,) + images.shape[2:])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  model_dir, count = _MODEL_DIR.value, _NUM_SAMPLES.value
  prefixes = [os.path.join(model_dir, "checkpoints", f"ckpt-{int(n)}") for n in _CHECKPOINTS.value]
  missing = [p for p in prefixes if not tf.io.gfile.exists(p + ".index")]
  if missing:
    raise FileNotFoundError(f"no such checkpoints: {missing} (the run keeps only its newest few)")
  c = config_lib.load_config(model_dir)
  extractor = fid.make_extractor("classifier", _CLASSIFIER_DIR.value)
  reference = fid.reference_stats(extractor, c.dataset, count, split="train",
                                  data_dir=c.data_dir, image_size=c.image_size)
  data_images = datasets.load_array(c.dataset, "train", max_examples=count, data_dir=c.data_dir,
                                    image_size=c.image_size)[0]
  rows = []
  for number, prefix in zip(_CHECKPOINTS.value, prefixes):
    # The energies of the checkpoint the banks belong to, not of the newest one.
    scored = sampling.load_model(model_dir, checkpoint=prefix)
    data_energy = stability.energy_reference(sampling.batched_energies(scored.energy_fn,
                                                                       data_images))
    for bank in _BANKS:
      images = bank_images(prefix, bank)
      if len(images) < count:
        raise ValueError(f"{prefix} {bank} holds {len(images)} states; --num_samples={count}")
      images = images[:count]
      metrics = stability.snapshot_metrics(
          images, sampling.batched_energies(scored.energy_fn, images), extractor=extractor,
          reference=reference, data_energy=data_energy)
      row = {"checkpoint": int(number), "bank": bank,
             **{k: float(v) for k, v in metrics.items()}}
      rows.append(row)
      print(f"ckpt-{row['checkpoint']:<6d} {bank:<12s} FD {row['fd']:7.2f}  "
            f"energy_z {row['energy_z']:+7.2f}  out_of_range {row['out_of_range']:.2f}")
  if _OUTPUT_JSON.value:
    tmp = _OUTPUT_JSON.value + ".tmp"
    with open(tmp, "w") as f:
      json.dump({"model_dir": model_dir, "num_samples": count, "rows": rows}, f, indent=1)
    os.replace(tmp, _OUTPUT_JSON.value)


if __name__ == "__main__":
  app.run(main)
