r"""Trains the naturally trained classifier that the EBM purification defense protects.

  python -m ebm_tf.train_classifier --flagfile=flags/classifier_digits.cfg --model_dir=DIR

Any preset value can be overridden after the flagfile, e.g. `--train_steps=100`. Re-running with
the same --model_dir resumes from the newest checkpoint. The layout of DIR (classifier_config.json,
checkpoints/, best/, tensorboard/) is described in `ebm_tf.classifier.classifier_lib`.
"""

from absl import app
from absl import flags
from absl import logging

# Before anything imports TensorFlow: keeps its CPU-machine noise out of the output.
from ebm_tf.internal import tf_noise  # pylint: disable=unused-import

from ebm_tf.classifier import classifier_config
from ebm_tf.classifier import classifier_lib

classifier_config.define_classifier_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = classifier_config.config_from_flags(flags.FLAGS)
  result = classifier_lib.train(config)
  logging.info("done: %s", result)
  print(f"best {config.eval_split} accuracy {result['best_accuracy']:.4f} at step "
        f"{result['best_step']} ({config.model_dir}/{classifier_lib.BEST_DIR})")


if __name__ == "__main__":
  app.run(main)
