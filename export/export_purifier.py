r"""Exports a trained EBM (and optionally a classifier) as a TF Serving purifier model.

    python -m export.export_purifier --checkpoint_dir=runs/digits_midrun \
        [--classifier_dir=runs/digits_clf] --export_base=exports --model_name=purifier

writes `exports/purifier/<version>/` (SavedModel + warmup records), `exports/models.config` and
`exports/batching_parameters.txt`; see export/saved_model_export.py for the layout and
export/purifier_module.py for the signatures. The Langevin step size and temperature are
`--epsilon` and `--mcmc_temp`, named as in training and in `ebm_tf.attack`, and default to the
training run's (the paper purifies CIFAR-10 with eps 0.01 and T 1e-4 for 2,000 steps: pass them
explicitly to match). The export's metadata keeps the names `step_size` and `temperature`.
"""

import os
from typing import Optional

from absl import app
from absl import flags
from absl import logging

from ebm_tf.classifier import classifier_lib
from ebm_tf.training import runs
from export import purifier_module
from export import saved_model_export


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the exporter's flags on `flag_values` (binaries only; library code defines none)."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_string("checkpoint_dir", None,
                      "the EBM training run's --model_dir (config.json + checkpoints/)", **fv)
  flags.DEFINE_string("checkpoint", None, "a specific EBM checkpoint prefix (default: the "
                      "newest in <checkpoint_dir>/checkpoints)", **fv)
  flags.DEFINE_string("classifier_dir", None, "optional ebm_tf.train_classifier run "
                      "(its --model_dir); without it the model only purifies", **fv)
  flags.DEFINE_enum("classifier_checkpoint", "best", ["best", "latest"],
                    "the classifier's best-accuracy weights or its newest checkpoint", **fv)
  flags.DEFINE_string("export_base", None, "directory of served models", **fv)
  flags.DEFINE_string("model_name", "purifier", "TF Serving model name", **fv)
  flags.DEFINE_integer("version", None, "explicit version (default: newest + 1)", **fv)
  flags.DEFINE_float("epsilon", None, "Langevin step size eps, named as in training (default: "
                     "the run's epsilon)", **fv)
  flags.DEFINE_float("mcmc_temp", None, "Langevin temperature T, named as in training "
                     "(default: the run's mcmc_temp)", **fv)
  flags.DEFINE_integer("num_steps", 100, "default purification steps of a request", **fv)
  flags.DEFINE_integer("max_num_steps", 2000, "largest num_steps accepted", **fv)
  flags.DEFINE_integer("max_batch_size", 64, "largest request batch accepted", **fv)
  flags.DEFINE_integer("num_repeats", 1, "default EOT repeats of a request", **fv)
  flags.DEFINE_integer("max_num_repeats", 16, "largest num_repeats accepted", **fv)
  flags.DEFINE_integer("batchable_num_steps", None, "Langevin steps of the purify_batchable "
                       "signature, fixed at export (default: --num_steps)", **fv)
  flags.DEFINE_integer("batchable_num_repeats", None, "EOT repeats of purify_batchable, fixed at "
                       "export (default: --num_repeats)", **fv)
  flags.DEFINE_enum("input_range", "reject", ["reject", "clip"],
                    "images outside [-1, 1]: reject the request or clip them", **fv)
  flags.DEFINE_bool("jit_compile", False,
                    "XLA-compile sampler and classifier (GPU/TPU; slow on CPU)", **fv)
  flags.DEFINE_list("warmup_batch_sizes", ["1"], "batch sizes of the warmup requests", **fv)
  flags.DEFINE_string("serving_base_path", None, "base_path written to models.config "
                      "(default: the absolute local path of <export_base>/<model_name>; use e.g. "
                      "/models/purifier for a container)", **fv)


def export(checkpoint_dir: str, export_base: str, model_name: str = "purifier", *,
           classifier_dir: Optional[str] = None, classifier_checkpoint: str = "best",
           checkpoint: Optional[str] = None, version: Optional[int] = None,
           epsilon: Optional[float] = None,
           mcmc_temp: Optional[float] = None, warmup_batch_sizes=(1,),
           serving_base_path: Optional[str] = None, **config_kwargs
           ) -> saved_model_export.ExportResult:
  """Restores the networks of a run and exports them; returns the ExportResult.

  The classifier (an `ebm_tf.train_classifier` run) is loaded with
  `ebm_tf.classifier.classifier_lib.load_classifier(classifier_dir, classifier_checkpoint)` ("best" or
  "latest"). `epsilon` and `mcmc_temp` (None: the run's) become the PurifierConfig's step_size
  and temperature. `config_kwargs` are PurifierConfig fields (default_num_steps, max_num_steps,
  max_batch_size, default_num_repeats, max_num_repeats, input_range, batchable_num_steps,
  batchable_num_repeats, jit_compile).

  Raises:
    FileNotFoundError / ValueError: missing runs or checkpoints, mismatched image shapes, bad
      settings.
  """
  ebm, train_config, ebm_checkpoint = runs.restore_ebm(checkpoint_dir, checkpoint)
  image_shape = tuple(int(d) for d in ebm.inputs[0].shape[1:])
  classifier = None
  if classifier_dir:
    classifier, classifier_config = classifier_lib.load_classifier(classifier_dir,
                                                                   classifier_checkpoint)
    if tuple(classifier_config.image_shape) != image_shape:
      raise ValueError(f"the classifier takes images of shape "
                       f"{tuple(classifier_config.image_shape)} but the EBM takes {image_shape}")
  config = purifier_module.PurifierConfig(
      image_shape=image_shape,
      step_size=float(epsilon if epsilon is not None else train_config.epsilon),
      temperature=float(mcmc_temp if mcmc_temp is not None else train_config.mcmc_temp),
      **config_kwargs)
  module = purifier_module.PurifierModule(ebm, config, classifier)
  info = {"ebm": train_config.ebm, "dataset": train_config.dataset,
          "ebm_checkpoint": os.path.abspath(ebm_checkpoint),
          "classifier_dir": os.path.abspath(classifier_dir) if classifier_dir else None,
          "classifier_checkpoint": classifier_checkpoint if classifier_dir else None}
  return saved_model_export.export_saved_model(
      module, export_base, model_name, version=version, warmup_batch_sizes=warmup_batch_sizes,
      serving_base_path=serving_base_path, export_info=info)


def main(argv, flag_values: flags.FlagValues = flags.FLAGS):
  f = flag_values
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not f.checkpoint_dir or not f.export_base:
    raise app.UsageError("--checkpoint_dir and --export_base are required")
  result = export(
      f.checkpoint_dir, f.export_base, f.model_name, classifier_dir=f.classifier_dir,
      classifier_checkpoint=f.classifier_checkpoint, checkpoint=f.checkpoint,
      version=f.version, epsilon=f.epsilon, mcmc_temp=f.mcmc_temp,
      warmup_batch_sizes=[int(b) for b in f.warmup_batch_sizes],
      serving_base_path=f.serving_base_path, default_num_steps=f.num_steps,
      max_num_steps=f.max_num_steps, max_batch_size=f.max_batch_size,
      default_num_repeats=f.num_repeats, max_num_repeats=f.max_num_repeats,
      input_range=f.input_range, batchable_num_steps=f.batchable_num_steps,
      batchable_num_repeats=f.batchable_num_repeats, jit_compile=f.jit_compile)
  logging.info("exported version %d to %s", result.version, result.version_dir)
  print(f"exported {result.version_dir}\nmodels config: {result.models_config_path}\n"
        f"batching parameters: {result.batching_parameters_path}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
