r"""The longrun stability test: sample far beyond the training trajectory and score the chains.

  python -m ebm_tf.evaluate_stability --model_dir=RUN --output_dir=OUT \
      --num_samples=256 --num_steps=50000 --record_steps=0,100,1000,10000 \
      [--init=coop --generator_dir=GEN_RUN] [--feature=classifier --classifier_dir=CLF]

Runs `ebm_tf.sample` (resumable; same flags) and then scores every snapshot: Frechet distance
to the training split (the project classifier's features, or `--feature=inception` for Inception
FID), energies relative to the data energies, and pixel saturation (see `ebm_tf.evaluation.stability`).
OUT receives the samples, stability.json and stability.png. A longrun model keeps these flat at
10-100x its training trajectory; a shortrun model's samples degrade.
"""

from absl import app
from absl import flags

# Before anything imports TensorFlow: keeps its CPU-machine noise out of the output.
from ebm_tf.internal import tf_noise  # pylint: disable=unused-import

from ebm_tf.evaluation import stability


stability.define_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    sample_config, metrics = stability.configs_from_flags(flags.FLAGS)
    result = stability.evaluate(sample_config, metrics)
  except (ValueError, FileNotFoundError) as error:
    raise app.UsageError(str(error)) from None
  print(stability.format_table({sample_config.model_dir: result}))
  print(f"wrote {sample_config.output_dir}/{stability.METRICS_FILENAME} and "
        f"{stability.PLOT_FILENAME}")


if __name__ == "__main__":
  app.run(main)
