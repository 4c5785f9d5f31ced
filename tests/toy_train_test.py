"""The 2-D toy presets (flags/shortrun_toy.cfg, flags/longrun_toy.cfg) train through the library.

Each preset is parsed exactly as the binary parses it (absl flagfile -> TrainConfig), shrunk to a
few steps, and trained with `train_lib.Trainer`: rank-1 points [B, 2] go through the data
pipeline, the chain bank, Langevin, checkpoints and the scatter-plot PNGs.
"""

import os

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from ebm_tf.training import config as config_lib
from ebm_tf.training import train_lib

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STEPS = 3
_SHORT = [f"--train_steps={_STEPS}", "--mcmc_steps=3", "--eval_mcmc_steps=3", "--log_every=1",
          f"--image_every={_STEPS}", f"--checkpoint_every={_STEPS}", "--num_grid_images=50",
          "--persistent_size=256", "--batch_size=32"]


def _config(preset, model_dir, *overrides):
  flag_values = flags.FlagValues()
  config_lib.define_train_flags(flag_values)
  flag_values(["prog", f"--flagfile={os.path.join(_ROOT, 'flags', preset + '.cfg')}",
               f"--model_dir={model_dir}", *overrides])
  return config_lib.config_from_flags(flag_values)


class ToyPresetTest(parameterized.TestCase):

  def test_presets_are_the_two_regimes(self):
    short = _config("shortrun_toy", "/x")
    long = _config("longrun_toy", "/x")
    for config in (short, long):
      self.assertEqual((config.dataset, config.ebm), ("toy_eight_gaussians", "ebm_mlp"))
      self.assertEqual(config.strategy, "default")
    # Shortrun: every chain restarts from uniform noise over the toy's window every step and
    # runs K <= 50 steps.
    self.assertEqual((short.mcmc_init, short.rejuvenation_prob), ("persistent", 1.0))
    self.assertGreaterEqual(short.persistent_init_scale, 3.0)
    self.assertLessEqual(short.mcmc_steps, 50)
    # Longrun: data-initialised chains that live for many steps: the expected number of steps
    # between rejuvenations, K / p, is over 100x the shortrun chain length.
    self.assertEqual(long.mcmc_init, "data_persistent")
    self.assertGreater(long.mcmc_steps / long.rejuvenation_prob, 100 * short.mcmc_steps)
    # The longrun step is larger, so that its training chains hop between the modes and the ML
    # gradient sees the modes' relative masses (docs/results.md, section (e)).
    self.assertGreater(long.epsilon, short.epsilon)
    # Same temperature, data noise, batch and initial learning rate; the longrun schedule ends
    # with lower learning rates (the last at most 1/100 of the first), so that the bank can
    # settle and the mode masses stop drifting (docs/results.md, section (e)).
    for name in ("mcmc_temp", "data_epsilon", "batch_size"):
      self.assertEqual(getattr(short, name), getattr(long, name), name)
    self.assertEqual(short.ebm_lr_values[0], long.ebm_lr_values[0])
    self.assertLessEqual(long.ebm_lr_values[-1], long.ebm_lr_values[0] / 100)

  @parameterized.parameters("shortrun_toy", "longrun_toy")
  def test_preset_trains_on_points(self, preset):
    model_dir = self.create_tempdir().full_path
    config = _config(preset, model_dir, *_SHORT)
    trainer = train_lib.Trainer(config)
    self.assertEqual(trainer.image_shape, (2,))
    before = [v.numpy().copy() for v in trainer.ebm.trainable_variables]
    metrics = trainer.train()
    self.assertEqual(int(trainer.step.numpy()), _STEPS)
    for name, value in metrics.items():
      self.assertTrue(np.isfinite(value), f"{name}={value}")
    self.assertTrue(all(not np.allclose(a, b.numpy())
                        for a, b in zip(before, trainer.ebm.trainable_variables)))
    bank = trainer.bank.images.numpy()
    self.assertEqual(bank.shape, (1, 256, 2))
    # Points keep the toy's coordinates (radius-2 modes, or noise on [-3, 3]^2): no [-1, 1] clip.
    self.assertGreater(np.abs(bank).max(), 1.5)
    if preset == "shortrun_toy":
      self.assertEqual(metrics["rejuvenated"], 1.0)
    samples = os.path.join(model_dir, "samples")
    for name in ("samples", "bank"):
      for step in (0, _STEPS):
        path = os.path.join(samples, f"{name}_{step:07d}.png")
        self.assertTrue(os.path.exists(path), path)
        with open(path, "rb") as f:
          self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
    self.assertTrue(os.path.exists(os.path.join(model_dir, "checkpoints",
                                                f"ckpt-{_STEPS}.index")))
    self.assertEqual(config_lib.load_config(model_dir), config)


if __name__ == "__main__":
  absltest.main()
