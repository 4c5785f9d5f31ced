"""Console scripts (`ebm-tf-train`, ...) for the binaries, beside `python -m <module>`.

`SCRIPTS` maps each installed command to the binary module it runs; setup.py installs one
command per entry (a test keeps the two lists equal). Each command imports its module only when
run, so the module's own first import (`ebm_tf.internal.tf_noise`, before TensorFlow) still comes first,
and then runs `absl.app.run(module.main)` exactly as `python -m <module>` does.
"""

import importlib
from typing import Callable, Dict

SCRIPTS: Dict[str, str] = {
    "ebm-tf-train": "ebm_tf.train",
    "ebm-tf-train-classifier": "ebm_tf.train_classifier",
    "ebm-tf-sample": "ebm_tf.sample",
    "ebm-tf-attack": "ebm_tf.attack",
    "ebm-tf-evaluate-fid": "ebm_tf.evaluate_fid",
    "ebm-tf-evaluate-stability": "ebm_tf.evaluate_stability",
    "ebm-tf-prepare-data": "ebm_tf.prepare_data",
    "ebm-tf-ship-pretrained": "ebm_tf.ship_pretrained",
    "ebm-tf-export-purifier": "export.export_purifier",
    "ebm-tf-standin-server": "export.standin_main",
    "ebm-tf-purify": "export.purify_main",
}


def entry_point_name(command: str) -> str:
  """The function of this module that setup.py's console script `command` calls."""
  return command.replace("ebm-tf-", "").replace("-", "_")


def _runner(module_name: str) -> Callable[[], None]:
  def run() -> None:
    from absl import app  # pylint: disable=g-import-not-at-top
    module = importlib.import_module(module_name)
    app.run(module.main)
  run.__doc__ = f"Runs `python -m {module_name}` with the command line's flags."
  return run


for _command, _module in SCRIPTS.items():
  globals()[entry_point_name(_command)] = _runner(_module)
