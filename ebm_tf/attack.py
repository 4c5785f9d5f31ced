r"""Robust accuracy of a classifier defended by EBM Langevin purification (BPDA + EOT PGD).

  python -m ebm_tf.attack --flagfile=flags/defense_digits.cfg --ebm_dir=RUN \
      --classifier_dir=CLF --output_dir=OUT [--defense=purify|none] \
      [--attack=bpda_eot|full_gradient|exact_gradient|none] [--attack_method=pgd|bim|fgm|mim] \
      [--seeds=0,1] [--num_images=N]

RUN is the --model_dir of an `ebm_tf.train` run (a midrun EBM), CLF that of an
`ebm_tf.train_classifier` run. Instead of --classifier_dir, a keras.applications ImageNet model
runs behind the EBM's images with `--classifier=keras_app:EfficientNetB7
--classifier_weights=efficientnetb7.h5 --classifier_input_size=600` (resized and rescaled in its
graph; the weights are a local file: nothing downloads). The presets flags/defense_*.cfg hold
the protocols (flags/defense_cifar10.cfg and flags/defense_imagenet.cfg are the paper's).
Perturbations are in /255 units of [0, 1] images. The purification's Langevin step size and
temperature are `--epsilon` and `--mcmc_temp`, named as in training; unset, they are the EBM
run's (its config.json), as in the exporter.
`--defense=none` attacks the classifier alone with the same PGD (the undefended baseline).
`--attack=exact_gradient` backpropagates through every step of the defense's own chain, the
noise fixed per EOT repeat, keeping ceil(purify_steps / k) + k chain states (k =
`--segment_length`, default sqrt(purify_steps)); `full_gradient` through a short chain only.
`--attack_method` picks the cleverhans.tf2 method run with those gradients, EOT and
verification: pgd (default), bim (no random start), fgm (one step of size eps) or mim
(momentum, Dong et al. 2018); bim, fgm and mim need --random_start=false, and fgm also
--adv_steps=1 --step_size_255=<eps_255> (flags/defense_digits_mim.cfg is a MIM preset);
--attack_method=apgd is APGD's step-size schedule (Croce and Hein 2020) and needs
--step_size_255=<2 * eps_255>, its initial step.

OUT receives per-seed JSON and PNG curves, summary.json (natural and robust accuracy with 95%
CIs, the worst case over seeds, settings, compute time) and batches/, one file per finished
batch: re-running the same command resumes, skipping finished batches. See
`ebm_tf.defense.defense_eval` for the layout.

Sharded (N machines or GPUs, one output directory on shared storage, or copied together):

  python -m ebm_tf.attack <same flags> --num_shards=N --shard_index=k   # k = 0 .. N-1
  python -m ebm_tf.attack <same flags> --merge_only                     # writes summary.json

Each shard computes every N-th batch of the (seed, batch) plan; the merge reuses them all (it
fails naming the missing batches, or the differing settings of a shard run otherwise).
"""


from absl import app
from absl import flags
from absl import logging

from ebm_tf.classifier import keras_app_classifier
from ebm_tf.defense import defense_eval
from ebm_tf.internal import flag_config


_HELP = {
    "ebm_dir": "model_dir of the ebm_tf.train run whose EBM purifies (defense 'purify')",
    "classifier_dir": "model_dir of the ebm_tf.train_classifier run",
    "classifier_which": "'best' (best test-accuracy weights) or 'latest' checkpoint",
    "classifier": "instead of --classifier_dir: 'keras_app:<Name>', a keras.applications "
                  f"ImageNet model (Name one of {', '.join(keras_app_classifier.NAMES)}) that "
                  "resizes and rescales the EBM's [-1, 1] images in its graph",
    "classifier_weights": "with --classifier=keras_app:<Name>: the local weights file (.h5 as "
                          "keras.applications caches it, .weights.h5 or .keras); nothing is "
                          "downloaded",
    "classifier_input_size": "with --classifier=keras_app:<Name>: its input side (0 = the "
                             "model's default, e.g. 600 for EfficientNetB7)",
    "dataset": "dataset of the evaluation images ('' = the classifier's)",
    "data_dir": "tensorflow-datasets data_dir (prepared offline)",
    "image_size": "image size (unset = the classifier's)",
    "split": "split the images come from",
    "shuffle": "shuffle the split with --shuffle_seed before taking --num_images",
    "shuffle_seed": "seed of the split permutation",
    "num_images": "number of images attacked",
    "batch_size": "images per batch (the unit of resumption)",
    "defense": f"one of {defense_eval.DEFENSES}",
    "attack": f"one of {defense_eval.ATTACKS}; with --defense=none every attack is plain PGD",
    "attack_method": f"one of {defense_eval.ATTACK_METHODS} (cleverhans' PGD, BIM, FGM, MIM; "
                     "APGD): bim, fgm and mim need --random_start=false; fgm also "
                     "--adv_steps=1 and --step_size_255 equal to --eps_255; apgd "
                     "--step_size_255 equal to 2 * --eps_255",
    "eps_255": "l_inf radius in /255 units of [0, 1] images (8 = 8/255)",
    "step_size_255": "PGD step in /255 units",
    "adv_steps": "PGD steps (adv_steps + 1 evaluations after the random start)",
    "random_start": "start PGD from a uniform point of the eps-ball (attack_method pgd only)",
    "eot_attack_reps": "purifications averaged per attack evaluation and gradient",
    "eot_defense_reps": "purifications averaged for natural accuracy and to confirm a break",
    "purify_steps": "Langevin steps of the purification",
    "epsilon": "Langevin step size eps of the purification (unset: the EBM run's epsilon, "
               "as in training)",
    "mcmc_temp": "temperature T of the purification (unset: the EBM run's mcmc_temp, as in "
                 "training)",
    "attack_purify_steps": "full_gradient: Langevin steps differentiated (0 = purify_steps)",
    "max_chain_steps": "full_gradient: memory cap on attack_purify_steps",
    "segment_length": "exact_gradient: Langevin steps per recomputed segment; the backward pass "
                      "keeps ceil(purify_steps / k) + k chain states (0 = round(sqrt("
                      "purify_steps)))",
    "verify_batch_size": "images per verification call (0 = the whole batch)",
    "seeds": "attack seeds; the worst case over them is reported",
    "output_dir": "where results go (re-run with the same one to resume)",
    "log_every": "attack evaluations between progress lines inside a batch (0 = none)",
    "num_shards": "split the (seed, batch) plan into this many shards (N machines or GPUs); "
                  "merge: the same command without --num_shards/--shard_index",
    "shard_index": "the shard this process computes, in [0, num_shards)",
    "merge_only": "compute nothing: write summary.json from the shards' batches in "
                  "--output_dir, failing if any is missing",
}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """One flag per `DefenseEvalConfig` field, with its default."""
  flag_config.define_flags(defense_eval.DefenseEvalConfig, _HELP, flag_values)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS
                      ) -> defense_eval.DefenseEvalConfig:
  """The validated config of the parsed flags (ValueError names a bad flag)."""
  return defense_eval.DefenseEvalConfig(
      **flag_config.from_flags(defense_eval.DefenseEvalConfig, flag_values, {}))


define_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    config = config_from_flags(flags.FLAGS)
    setup = defense_eval.prepare(config)
  except (ValueError, FileNotFoundError) as error:
    raise app.UsageError(str(error)) from None
  logging.info("settings: %s", defense_eval.config_as_dict(config))
  try:
    summary = defense_eval.evaluate(setup)
  except ValueError as error:
    if "computed with other settings" not in str(error) and "merge_only" not in str(error):
      raise
    raise app.UsageError(str(error)) from None
  if config.num_shards > 1:
    print(defense_eval.format_shard_report(summary))
    return
  print(defense_eval.format_summary(summary))
  print(f"wrote {config.output_dir}/{defense_eval.SUMMARY_FILENAME}")


if __name__ == "__main__":
  app.run(main)
