r"""Trains an EBM from a flagfile preset: shortrun, midrun, or either longrun stage.

  python -m ebm_tf.train --flagfile=flags/shortrun_digits.cfg --model_dir=runs/shortrun_digits

Any preset value can be overridden after the flagfile, e.g. `--train_steps=100`.
"""

from absl import app
from absl import flags
from absl import logging

# Before anything imports TensorFlow: keeps its CPU-machine noise out of the output.
from ebm_tf.internal import tf_noise  # pylint: disable=unused-import

from ebm_tf.training import config as config_lib
from ebm_tf.training import train_lib

config_lib.define_train_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = config_lib.config_from_flags(flags.FLAGS)
  metrics = train_lib.Trainer(config).train()
  logging.info("done: %s", metrics)


if __name__ == "__main__":
  app.run(main)
