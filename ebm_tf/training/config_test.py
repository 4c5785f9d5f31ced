"""Tests for ebm_tf.training.config: flagfile presets -> validated TrainConfig."""

import glob
import os

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized

from ebm_tf.training import config as config_lib

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PRESETS = sorted(path for regime in ("shortrun", "midrun", "longrun_prior", "longrun_correction")
                  for path in glob.glob(os.path.join(_ROOT, "flags", f"{regime}_*.cfg")))


def _parse(args):
  flag_values = flags.FlagValues()
  config_lib.define_train_flags(flag_values)
  flag_values(["prog", *args])
  return flag_values


class ConfigTest(parameterized.TestCase):

  def test_defaults_need_model_dir(self):
    with self.assertRaisesRegex(ValueError, "--model_dir is required"):
      config_lib.config_from_flags(_parse([]))

  def test_lists_parse_to_numbers(self):
    config = config_lib.config_from_flags(_parse(
        ["--model_dir=/tmp/x", "--ebm_lr_values=1e-4,1e-5,1e-6",
         "--ebm_lr_boundaries=50000,75000"]))
    self.assertEqual(config.ebm_lr_values, (1e-4, 1e-5, 1e-6))
    self.assertEqual(config.ebm_lr_boundaries, (50000, 75000))

  @parameterized.parameters(
      ("--epsilon=0", "epsilon"),
      ("--mcmc_temp=-1", "mcmc_temp"),
      ("--rejuvenation_prob=1.5", "rejuvenation_prob"),
      ("--mcmc_init=warm", "mcmc_init"),
      ("--strategy=gpu", "strategy"),
      ("--ebm_lr_boundaries=100", "ebm_lr_values needs exactly one more"),
      ("--ebm_lr_values=abc", "ebm_lr_values must be a comma-separated"),
      ("--persistent_size=10", "persistent_size"),
      ("--burnin_size=64", r"burnin_size=64 > 0\) needs --prior_model_dir"),
  )
  def test_bad_flag_names_the_value(self, arg, message):
    with self.assertRaisesRegex(ValueError, message):
      config_lib.config_from_flags(_parse(["--model_dir=/tmp/x", arg]))

  def test_every_preset_parses(self):
    names = {os.path.basename(p) for p in _PRESETS}
    for regime in ("shortrun", "midrun", "longrun_prior", "longrun_correction"):
      for dataset in ("cifar10", "imagenet", "digits"):
        self.assertIn(f"{regime}_{dataset}.cfg", names)
    for path in _PRESETS:
      with self.subTest(path=os.path.basename(path)):
        # Presets with a frozen generator name the pretrained one on the command line.
        config = config_lib.config_from_flags(_parse(
            [f"--flagfile={path}", "--model_dir=/x", "--gen_checkpoint=/pretrained",
             "--prior_model_dir=/prior"]))
        self.assertGreater(config.train_steps, 0)
        regime = os.path.basename(path).split("_")[0]
        self.assertEqual(config.burnin_size > 0, "correction" in path)
        self.assertEqual(config.tau > 0, regime == "longrun")

  def test_midrun_and_longrun_paper_values(self):
    midrun = config_lib.config_from_flags(_parse(
        [f"--flagfile={_ROOT}/flags/midrun_cifar10.cfg", "--model_dir=/x",
         "--gen_checkpoint=/g"]))
    self.assertEqual(
        (midrun.epsilon, midrun.data_epsilon, midrun.persistent_size, midrun.rejuvenation_prob,
         midrun.max_mcmc_updates, midrun.update_generator, midrun.ebm_lr_values,
         midrun.ebm_lr_boundaries),
        (1.25e-2, 2.5e-2, 25000, 0.05, 0, False, (1e-4, 1e-5, 1e-6, 1e-7, 1e-8),
         (50000, 75000, 100000, 125000)))
    correction = config_lib.config_from_flags(_parse(
        [f"--flagfile={_ROOT}/flags/longrun_correction_cifar10.cfg", "--model_dir=/x",
         "--gen_checkpoint=/g", "--prior_model_dir=/prior"]))
    self.assertEqual(
        (correction.ebm_lr_values[0], correction.train_steps, correction.burnin_size,
         correction.burnin_steps, correction.graduation_draws, correction.tau,
         correction.prior_temp, correction.persistent_size),
        (2.5e-5, 250000, 1000, 100, 750, 0.15, 1e-4, 10000))
    prior = config_lib.config_from_flags(_parse(
        [f"--flagfile={_ROOT}/flags/longrun_prior_cifar10.cfg", "--model_dir=/x",
         "--gen_checkpoint=/g"]))
    self.assertEqual((prior.mcmc_steps, prior.rejuvenation_prob, prior.tau),
                     (50, 0.2, 0.15))

  def test_cifar10_preset_has_the_paper_values(self):
    config = config_lib.config_from_flags(_parse(
        [f"--flagfile={_ROOT}/flags/shortrun_cifar10.cfg", "--model_dir=/x"]))
    self.assertEqual(
        (config.epsilon, config.mcmc_steps, config.mcmc_temp, config.data_epsilon,
         config.persistent_size, config.rejuvenation_prob, config.max_mcmc_updates,
         config.batch_size, config.train_steps, config.ebm, config.mcmc_init),
        (5e-3, 100, 1e-4, 1e-2, 10000, 0.5, 2, 128, 150000, "ebm_sngan32", "coop_persistent"))

  def test_flags_override_the_preset(self):
    config = config_lib.config_from_flags(_parse(
        [f"--flagfile={_ROOT}/flags/shortrun_digits.cfg", "--train_steps=7", "--model_dir=/x"]))
    self.assertEqual(config.train_steps, 7)

  def test_save_and_load_round_trip(self):
    model_dir = self.create_tempdir().full_path
    config = config_lib.TrainConfig(model_dir=model_dir, ebm_lr_values=(1e-4, 1e-5),
                                    ebm_lr_boundaries=(10,), tau=0.15)
    config_lib.save_config(config, model_dir)
    self.assertEqual(config_lib.load_config(model_dir), config)
    self.assertEqual(config_lib.load_config(model_dir, train_steps=9).train_steps, 9)

  def test_load_config_missing_file(self):
    with self.assertRaisesRegex(FileNotFoundError, "no config.json in"):
      config_lib.load_config(self.create_tempdir().full_path)


if __name__ == "__main__":
  absltest.main()
