r"""Relative difference between the exact and the BPDA input gradient of a purification.

  .venv/bin/python docs/scripts/exact_vs_bpda_gradient.py --ebm_dir=RUN \
      [--classifier_dir=CLF] [--num_images=16] [--purify_steps=1000] [--num_repeats=2] \
      [--step_size=1.25e-2] [--temperature=1e-4]

For the first --num_images test images of the EBM run's dataset (the attack's shuffled order,
shuffle_seed 0), computes d loss / d images through a --purify_steps purification (step
--step_size, temperature --temperature: the defense's settings) with
`exact_gradient.exact_gradient_purify` and with BPDA (`attacks.bpda_purify`), the loss being the
classifier's cross-entropy at the purified images (or, without a classifier, a fixed random
linear functional), and prints
||g_exact - g_bpda|| / ||g_bpda|| and the fraction of gradient signs that differ (what a PGD
step uses). A control on the same images swaps the EBM's ReLUs for softplus (same weights), a
smooth energy whose Hessian does not vanish.
"""

import json

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from ebm_tf.classifier import classifier_lib
from ebm_tf.defense import attacks
from ebm_tf.defense import defense_eval
from ebm_tf.defense import exact_gradient
from ebm_tf import models
from ebm_tf.training import runs

_EBM = flags.DEFINE_string("ebm_dir", "", "an ebm_tf.train run (ebm_small)")
_CLF = flags.DEFINE_string("classifier_dir", "", "an ebm_tf.train_classifier run ('' = none)")
_N = flags.DEFINE_integer("num_images", 16, "images")
_STEPS = flags.DEFINE_integer("purify_steps", 1000, "Langevin steps")
_REPS = flags.DEFINE_integer("num_repeats", 2, "EOT repeats")
_STEP = flags.DEFINE_float("step_size", 1.25e-2, "Langevin step size eps")
_TEMP = flags.DEFINE_float("temperature", 1e-4, "purification temperature T")


def _softplus_copy(model: keras.Model) -> keras.Model:
  """The same network with every ReLU layer replaced by softplus (weights shared)."""
  config = model.get_config()
  for layer in config["layers"]:
    if layer["class_name"] == "ReLU":
      layer["class_name"] = "Activation"
      layer["config"] = {"name": layer["config"]["name"], "activation": "softplus",
                         "trainable": False, "dtype": layer["config"].get("dtype")}
  smooth = keras.Model.from_config(config)
  smooth.set_weights(model.get_weights())
  return smooth


def main(argv):
  del argv
  ebm, config, path = runs.restore_ebm(_EBM.value)
  images, labels, _ = defense_eval.select_images(config.dataset, "test", _N.value)
  x = tf.constant(images)
  if _CLF.value:
    classifier, _ = classifier_lib.load_classifier(_CLF.value, "best")
    loss = lambda p: tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
        np.tile(labels, _REPS.value),
        classifier(tf.reshape(p, [-1, *images.shape[1:]]), training=False)))
  else:
    c = tf.random.stateless_normal([_REPS.value, *x.shape], [2, 3])
    loss = lambda p: tf.reduce_sum(c * p)
  seed = tf.constant([0, 0], tf.int32)
  settings = dict(num_steps=_STEPS.value, step_size=_STEP.value, temperature=_TEMP.value,
                  num_repeats=_REPS.value)
  results = {"ebm_dir": _EBM.value, "checkpoint": path, "classifier_dir": _CLF.value,
             "num_images": _N.value, **settings}
  for name, model in (("ebm (ReLU)", ebm), ("softplus control", _softplus_copy(ebm))):
    energy = models.energy_fn(model)

    @tf.function
    def grads(x):
      with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        exact = loss(exact_gradient.exact_gradient_purify(energy, x, seed, **settings))
        bpda = loss(attacks.bpda_purify(energy, x, seed, **settings))
      return tape.gradient(exact, x), tape.gradient(bpda, x)

    g_exact, g_bpda = (g.numpy() for g in grads(x))
    results[name] = {
        "relative_l2_difference": float(np.linalg.norm(g_exact - g_bpda) /
                                        np.linalg.norm(g_bpda)),
        "sign_mismatch_fraction": float(np.mean(np.sign(g_exact) != np.sign(g_bpda))),
        "bitwise_equal": bool(np.array_equal(g_exact, g_bpda))}
    print(name, results[name], flush=True)
  print(json.dumps(results))


if __name__ == "__main__":
  app.run(main)
