r"""Draws samples from a trained EBM run: any init, any number of Langevin steps, resumable.

  python -m ebm_tf.sample --model_dir=RUN --output_dir=OUT [--init=coop|data|noise|bank] \
      [--num_samples=1000] [--num_steps=100000] [--record_steps=1000,10000] [--checkpoint=PREFIX]

A longrun correction run samples its prior + correction energy (the prior is restored from the
run's own checkpoint); `--joint_temperature` > 1 samples slightly hotter, as the paper's longrun
FID (1.005 to 1.01). Chains run in chunks of --batch_size and in segments of --segment_steps;
after each segment the chain states are saved, so re-running the same command after a stop
resumes, and re-running it with a larger --num_steps (and further --record_steps) continues a
finished job, equal to a longer job run at once. OUT receives samples_<step>.npz (images unclipped, energies) and .png grids at each
--record_steps and at the end, trajectory.json (mean energy, drift, saturation per segment) and
sample_settings.json. See `ebm_tf.evaluation.sampling`.
"""

from absl import app
from absl import flags
from absl import logging

# Before anything imports TensorFlow: keeps its CPU-machine noise out of the output.
from ebm_tf.internal import tf_noise  # pylint: disable=unused-import

from ebm_tf.evaluation import sampling
from ebm_tf.internal import flag_config


flag_config.define_flags(sampling.SampleConfig, sampling.FLAG_HELP)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    config = sampling.SampleConfig(
        **flag_config.from_flags(sampling.SampleConfig, flags.FLAGS, {}))
    summary = sampling.sample(config)
  except (ValueError, FileNotFoundError) as error:
    raise app.UsageError(str(error)) from None
  logging.info("done: %s", summary)
  print(f"{summary['num_samples']} chains x {summary['num_steps']} steps "
        f"({summary['init']} init) in {summary['seconds']:.1f} s; snapshots in "
        f"{config.output_dir}")


if __name__ == "__main__":
  app.run(main)
