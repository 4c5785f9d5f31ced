r"""The purifier alone: does Langevin purification bring images back to their class?

  .venv/bin/python docs/scripts/purify_diagnostic.py --ebm_dir=RUN [--checkpoint=PREFIX] \
      --classifier_dir=CLF --output=OUT.json [--num_images=64 --eps_255=48 --repeats=8 \
      --record_steps=0,100,250,500,1000,2000 --epsilon=1.25e-2 --mcmc_temp=1e-4]

No attack through the defense: three fixed inputs are purified and classified along the chain
(docs/defense_results.md, "Experiments"):
  clean     the test images;
  random    clean + uniform noise in the l_inf eps ball (the PGD random start), clipped to
            [-1, 1];
  transfer  PGD adversarial images of the undefended classifier (20 steps of eps/4, random
            start): what a purifier must undo, without adapting to it.
For each input and each recorded chain length it writes the per-chain accuracy (mean over
`repeats` chains per image), the EOT accuracy (logits averaged over the chains, as the defense
does), the mean per-pixel l_inf and RMS distance to the clean image, and the mean energy.
The chain is run in segments between recorded lengths (segment j with a seed folded from
--seed and j: the same Markov chain as one run). Output: one JSON file (ebm_tf.internal.file_io).
"""

import json
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from ebm_tf.classifier import classifier_lib
from ebm_tf.defense import attacks
from ebm_tf.defense import defense_eval
from ebm_tf.defense import purify as purify_lib
from ebm_tf.internal import file_io
from ebm_tf.mcmc import langevin
from ebm_tf import models
from ebm_tf.training import runs

_EBM_DIR = flags.DEFINE_string("ebm_dir", None, "ebm_tf.train model_dir", required=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "checkpoint prefix (default: newest)")
_CLF_DIR = flags.DEFINE_string("classifier_dir", "runs/classifier_digits", "classifier run")
_OUTPUT = flags.DEFINE_string("output", None, "JSON file written", required=True)
_NUM_IMAGES = flags.DEFINE_integer("num_images", 64, "test images (shuffle seed 0)")
_EPS = flags.DEFINE_float("eps_255", 48.0, "l_inf radius in /255 units of [0, 1] images")
_REPEATS = flags.DEFINE_integer("repeats", 8, "chains per image")
_RECORD = flags.DEFINE_list("record_steps", ["0", "100", "250", "500", "1000", "2000"],
                            "chain lengths recorded (increasing)")
_STEP = flags.DEFINE_float("epsilon", 1.25e-2, "purification Langevin step size (the EBM run's epsilon)")
_TEMP = flags.DEFINE_float("mcmc_temp", 1e-4, "purification temperature (the EBM run's mcmc_temp)")
_SEED = flags.DEFINE_integer("seed", 0, "stateless seed")


def main(argv):
  del argv
  began = time.perf_counter()
  classifier, clf_config = classifier_lib.load_classifier(_CLF_DIR.value, "best")
  ebm, train_config, path = runs.restore_ebm(_EBM_DIR.value, _CHECKPOINT.value)
  energy = models.energy_fn(ebm)
  images, labels, _ = defense_eval.select_images(clf_config.dataset, "test", _NUM_IMAGES.value)
  shape = images.shape[1:]
  seed = tf.constant([_SEED.value, 0], tf.int32)
  eps = attacks.to_pixel_units(_EPS.value)
  noise = tf.random.stateless_uniform(images.shape, tf.random.experimental.stateless_fold_in(
      seed, 1), -eps, eps).numpy()
  transfer = attacks.undefended_pgd(classifier, images, labels, seed, eps_255=_EPS.value,
                                    step_size_255=_EPS.value / 4, adv_steps=20)
  inputs = {"clean": images, "random": np.clip(images + noise, -1.0, 1.0),
            "transfer": np.asarray(transfer.adversarial_images, np.float32)}
  sampler = langevin.make_sampler(energy, shape)  # the purification chain (purify.purify)
  record = sorted({int(s) for s in _RECORD.value})
  reps = _REPEATS.value
  out = {"ebm_dir": _EBM_DIR.value, "checkpoint": path, "ebm": train_config.ebm,
         "ebm_width": train_config.ebm_width, "mcmc_init": train_config.mcmc_init,
         "train_steps": train_config.train_steps, "num_images": int(len(labels)),
         "eps_255": _EPS.value, "repeats": reps, "step_size": _STEP.value,
         "temperature": _TEMP.value, "results": {}}
  for k, (name, x0) in enumerate(inputs.items()):
    chains = np.tile(x0[None], [reps, 1, 1, 1, 1]).reshape((-1,) + shape)
    done, rows = 0, []
    for j, steps in enumerate(record):
      if steps > done:
        chains = sampler(tf.constant(chains, tf.float32),
                         tf.random.experimental.stateless_fold_in(seed, 100 * (k + 1) + j),
                         steps - done, _STEP.value, _TEMP.value).samples.numpy()
        done = steps
      logits = purify_lib.classify(classifier, tf.constant(chains)).numpy().reshape(
          reps, len(labels), -1)
      per_chain = np.mean(np.argmax(logits, -1) == labels[None])
      eot = np.mean(np.argmax(logits.mean(0), -1) == labels)
      diff = chains.reshape((reps,) + images.shape) - images[None]
      rows.append({"steps": steps, "chain_accuracy": float(per_chain),
                   "eot_accuracy": float(eot),
                   "linf_to_clean": float(np.abs(diff).max(axis=(2, 3, 4)).mean()),
                   "rms_to_clean": float(np.sqrt((diff ** 2).mean(axis=(2, 3, 4))).mean()),
                   "energy": float(tf.reduce_mean(energy(tf.constant(chains))))})
      print(f"{name:9s} steps {steps:5d}  chain acc {per_chain:.3f}  EOT acc {eot:.3f}  "
            f"linf {rows[-1]['linf_to_clean']:.3f}  rms {rows[-1]['rms_to_clean']:.3f}  "
            f"E {rows[-1]['energy']:.4g}", flush=True)
    out["results"][name] = rows
  out["seconds"] = time.perf_counter() - began
  file_io.write_json_atomic(_OUTPUT.value, out)
  print(f"wrote {_OUTPUT.value} ({out['seconds']:.0f} s)")


if __name__ == "__main__":
  app.run(main)
