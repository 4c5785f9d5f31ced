r"""Exports a trained EBM (and optionally a classifier) as a TF Serving purifier model.

    python -m export.export_purifier --checkpoint_dir=runs/digits_midrun \
        [--classifier_dir=runs/digits_clf] --export_base=exports --model_name=purifier

writes `exports/purifier/<version>/` (SavedModel + warmup records), `exports/models.config` and
`exports/batching_parameters.txt`; see export/saved_model_export.py for the layout and
export/purifier_module.py for the signatures. The Langevin step size and temperature default to
the training run's `epsilon` and `mcmc_temp` (the paper purifies CIFAR-10 with eps 0.01 and T
1e-4 for 2,000 steps: pass them explicitly to match).
"""

import os
from typing import Optional

from absl import app
from absl import flags
from absl import logging

from export import classifier_run
from export import ebm_run
from export import purifier_module
from export import saved_model_export

_CHECKPOINT_DIR = flags.DEFINE_string(
    "checkpoint_dir", None, "the EBM training run's --model_dir (config.json + checkpoints/)")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "a specific EBM checkpoint prefix (default: the newest in "
    "<checkpoint_dir>/checkpoints)")
_CLASSIFIER_DIR = flags.DEFINE_string(
    "classifier_dir", None, "optional classifier run (classifier_config.json + checkpoints/ "
    "with key 'classifier'); without it the model only purifies")
_EXPORT_BASE = flags.DEFINE_string("export_base", None, "directory of served models")
_MODEL_NAME = flags.DEFINE_string("model_name", "purifier", "TF Serving model name")
_VERSION = flags.DEFINE_integer("version", None, "explicit version (default: newest + 1)")
_STEP_SIZE = flags.DEFINE_float("step_size", None, "Langevin eps (default: the run's epsilon)")
_TEMPERATURE = flags.DEFINE_float("temperature", None,
                                  "Langevin temperature T (default: the run's mcmc_temp)")
_NUM_STEPS = flags.DEFINE_integer("num_steps", 100, "default purification steps of a request")
_MAX_NUM_STEPS = flags.DEFINE_integer("max_num_steps", 2000, "largest num_steps accepted")
_MAX_BATCH_SIZE = flags.DEFINE_integer("max_batch_size", 64, "largest request batch accepted")
_NUM_REPEATS = flags.DEFINE_integer("num_repeats", 1, "default EOT repeats of a request")
_MAX_NUM_REPEATS = flags.DEFINE_integer("max_num_repeats", 16, "largest num_repeats accepted")
_INPUT_RANGE = flags.DEFINE_enum("input_range", "reject", ["reject", "clip"],
                                 "images outside [-1, 1]: reject the request or clip them")
_JIT_COMPILE = flags.DEFINE_bool("jit_compile", False,
                                 "XLA-compile sampler and classifier (GPU/TPU; slow on CPU)")
_WARMUP_BATCH_SIZES = flags.DEFINE_list("warmup_batch_sizes", ["1"],
                                        "batch sizes of the warmup requests")
_SERVING_BASE_PATH = flags.DEFINE_string(
    "serving_base_path", None, "base_path written to models.config (default: the absolute "
    "local path of <export_base>/<model_name>; use e.g. /models/purifier for a container)")


def export(checkpoint_dir: str, export_base: str, model_name: str = "purifier", *,
           classifier_dir: Optional[str] = None, checkpoint: Optional[str] = None,
           version: Optional[int] = None, step_size: Optional[float] = None,
           temperature: Optional[float] = None, warmup_batch_sizes=(1,),
           serving_base_path: Optional[str] = None, **config_kwargs
           ) -> saved_model_export.ExportResult:
  """Restores the networks of a run and exports them; returns the ExportResult.

  `config_kwargs` are PurifierConfig fields (default_num_steps, max_num_steps, max_batch_size,
  default_num_repeats, max_num_repeats, input_range, jit_compile).

  Raises:
    FileNotFoundError / ValueError: missing runs or checkpoints, mismatched image shapes, bad
      settings.
  """
  ebm, train_config, ebm_checkpoint = ebm_run.restore_ebm(checkpoint_dir, checkpoint)
  image_shape = tuple(int(d) for d in ebm.inputs[0].shape[1:])
  classifier, classifier_checkpoint = None, None
  if classifier_dir:
    classifier, classifier_config, classifier_checkpoint = classifier_run.restore_classifier(
        classifier_dir)
    if classifier_config.image_shape != image_shape:
      raise ValueError(f"the classifier takes images of shape {classifier_config.image_shape} "
                       f"but the EBM takes {image_shape}")
  config = purifier_module.PurifierConfig(
      image_shape=image_shape,
      step_size=float(step_size if step_size is not None else train_config.epsilon),
      temperature=float(temperature if temperature is not None else train_config.mcmc_temp),
      **config_kwargs)
  module = purifier_module.PurifierModule(ebm, config, classifier)
  info = {"ebm": train_config.ebm, "dataset": train_config.dataset,
          "ebm_checkpoint": os.path.abspath(ebm_checkpoint),
          "classifier_checkpoint": (os.path.abspath(classifier_checkpoint)
                                    if classifier_checkpoint else None)}
  return saved_model_export.export_saved_model(
      module, export_base, model_name, version=version, warmup_batch_sizes=warmup_batch_sizes,
      serving_base_path=serving_base_path, export_info=info)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  result = export(
      _CHECKPOINT_DIR.value, _EXPORT_BASE.value, _MODEL_NAME.value,
      classifier_dir=_CLASSIFIER_DIR.value, checkpoint=_CHECKPOINT.value,
      version=_VERSION.value, step_size=_STEP_SIZE.value, temperature=_TEMPERATURE.value,
      warmup_batch_sizes=[int(b) for b in _WARMUP_BATCH_SIZES.value],
      serving_base_path=_SERVING_BASE_PATH.value,
      default_num_steps=_NUM_STEPS.value, max_num_steps=_MAX_NUM_STEPS.value,
      max_batch_size=_MAX_BATCH_SIZE.value, default_num_repeats=_NUM_REPEATS.value,
      max_num_repeats=_MAX_NUM_REPEATS.value, input_range=_INPUT_RANGE.value,
      jit_compile=_JIT_COMPILE.value)
  logging.info("exported version %d to %s", result.version, result.version_dir)
  print(f"exported {result.version_dir}\nmodels config: {result.models_config_path}\n"
        f"batching parameters: {result.batching_parameters_path}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["checkpoint_dir", "export_base"])
  app.run(main)
