r"""Continues a finished stability job's chains from its last snapshot and scores the new snapshots.

  python docs/scripts/continue_chains.py --model_dir=runs/s10/corr_b250_g1000_6k \
      --job_dir=runs/s10/stab_g1000_jt1 --from_step=100000 \
      --num_steps=100000 --record_steps=50000 --seed=1 --output_dir=runs/s10/stab_cont \
      --classifier_dir=pretrained/classifier_digits

The chains are Markov: continuing them from the step-`from_step` states with fresh noise (`--seed`
other than the job's, so the first segment's noise is not replayed) samples the same process as
a longer job would. Steps in the output are counted from the continuation's start (step s here =
step from_step + s of the chains). Scores as `ebm_tf.evaluate_stability` does (classifier FD
against the training split, energies relative to the data's), into OUT/stability.json.
Used for docs/results.md (b), session 10, and kept as the record of how those numbers were made.
Since session 11 a finished job continues in place instead: run the same `evaluate_stability`
(or `sample`) command with a larger --num_steps (its noise then continues the job's own seed).
"""

from absl import app
from absl import flags

from ebm_tf.internal import tf_noise  # pylint: disable=unused-import

from ebm_tf.evaluation import sampling
from ebm_tf.evaluation import stability

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "the run (its own sampler settings)",
                                 required=True)
_JOB_DIR = flags.DEFINE_string("job_dir", None, "finished evaluate_stability output", required=True)
_FROM_STEP = flags.DEFINE_integer("from_step", None, "snapshot to continue from", required=True)
_NUM_STEPS = flags.DEFINE_integer("num_steps", 100000, "further Langevin steps")
_RECORD_STEPS = flags.DEFINE_list("record_steps", [], "extra snapshots (continuation steps)")
_SEED = flags.DEFINE_integer("seed", 1, "noise seed of the continuation")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "continuation job directory", required=True)
_CLASSIFIER_DIR = flags.DEFINE_string("classifier_dir", None, "classifier run for the FD",
                                      required=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  model = sampling.load_model(_MODEL_DIR.value)
  initial, _ = sampling.load_snapshot(sampling.snapshot_path(_JOB_DIR.value, _FROM_STEP.value))
  sampling.run_chains(model, initial, num_steps=_NUM_STEPS.value, output_dir=_OUTPUT_DIR.value,
                      seed=_SEED.value, record_steps=[int(s) for s in _RECORD_STEPS.value],
                      segment_steps=5000, batch_size=len(initial),
                      settings=dict(continued_from=_JOB_DIR.value, from_step=_FROM_STEP.value))
  result = stability.score_job(
      _OUTPUT_DIR.value, model,
      stability.MetricsConfig(feature="classifier", classifier_dir=_CLASSIFIER_DIR.value),
      len(initial))
  print(stability.format_table({f"continued from {_FROM_STEP.value}": result}))


if __name__ == "__main__":
  app.run(main)
