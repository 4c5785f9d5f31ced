r"""Writes a trained run as a shipped model: weights only, its config and a model card.

  python -m ebm_tf.ship_pretrained --model_dir=runs/midrun_digits \
      --output_dir=pretrained/midrun_digits --card=card.json [--prior_name=NAME] [--overwrite]

--card names a JSON file with the model card's values (at least data, preset, compute, headline,
how_made); the iterations, networks and parameter count are read from the checkpoint. The layout
of the output and what tools accept it are described in `ebm_tf.zoo.pretrained`.
"""

import json

from absl import app
from absl import flags

# Before anything imports TensorFlow: keeps its CPU-machine noise out of the output.
from ebm_tf.internal import tf_noise  # pylint: disable=unused-import

from ebm_tf.zoo import pretrained

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "the run directory to ship", required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "the shipped directory, e.g. "
                                  "pretrained/<name>", required=True)
_CARD = flags.DEFINE_string("card", None, "JSON file with the model card's values",
                            required=True)
_PRIOR_NAME = flags.DEFINE_string("prior_name", None, "longrun correction runs: the name of the "
                                  "shipped prior directory beside --output_dir")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "replace an existing --output_dir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    with open(_CARD.value) as f:
      card = json.load(f)
  except FileNotFoundError:
    raise app.UsageError(f"--card={_CARD.value!r}: no such file") from None
  except json.JSONDecodeError as error:
    raise app.UsageError(f"--card={_CARD.value!r} is not valid JSON: {error}") from None
  full = pretrained.ship_run(_MODEL_DIR.value, _OUTPUT_DIR.value, card,
                             prior_name=_PRIOR_NAME.value, overwrite=_OVERWRITE.value)
  print(f"shipped {_MODEL_DIR.value} -> {_OUTPUT_DIR.value} ({full['kind']}, step "
        f"{full['iterations']}, {full['parameters']} parameters)")


if __name__ == "__main__":
  app.run(main)
