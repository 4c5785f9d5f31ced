r"""FID of a run's samples, one checkpoint or a sweep over all (docs/paper_settings.md section 8.1).

  python -m ebm_tf.evaluate_fid --model_dir=RUN --output_dir=OUT --num_samples=1000 \
      [--checkpoints=all|latest|1000,2000] [--feature=inception|classifier --classifier_dir=CLF]

Defaults follow the paper's protocol: fresh chains from the generator (`--init=auto`: coop when
the run has a generator, else data) run for the run's `eval_mcmc_steps`; the reference set is
the training split with as many images as samples. Every FD is printed with its sample count.
OUT receives one sampling directory per checkpoint, sweep.json and sweep.png; re-running resumes.
"""

from absl import app
from absl import flags

# Before anything imports TensorFlow: keeps its CPU-machine noise out of the output.
from ebm_tf.internal import tf_noise  # pylint: disable=unused-import

from ebm_tf.evaluation import checkpoint_sweep
from ebm_tf.evaluation import stability

stability.define_flags()
flags.DEFINE_string("checkpoints", "latest",
                    "'all', 'latest' or comma-separated training steps of the checkpoints")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    sample_config, metrics = stability.configs_from_flags(flags.FLAGS)
    summary = checkpoint_sweep.sweep(sample_config, metrics, flags.FLAGS.checkpoints)
  except (ValueError, FileNotFoundError) as error:
    raise app.UsageError(str(error)) from None
  print(checkpoint_sweep.format_sweep_table(summary))
  print(f"wrote {sample_config.output_dir}/{checkpoint_sweep.SWEEP_FILENAME}")


if __name__ == "__main__":
  app.run(main)
