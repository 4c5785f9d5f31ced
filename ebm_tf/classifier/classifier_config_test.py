"""Tests for ebm_tf.classifier.classifier_config: defaults, validation, flags and presets, the JSON file."""

import dataclasses
import json
import os

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized

from ebm_tf.classifier import classifier_config

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ClassifierConfig = classifier_config.ClassifierConfig


def _parse(*args):
  flag_values = flags.FlagValues()
  classifier_config.define_classifier_flags(flag_values)
  flag_values(["prog", *args])
  return flag_values


class DefaultsTest(absltest.TestCase):

  def test_defaults_are_the_reference_recipe_in_steps(self):
    c = ClassifierConfig()
    epoch = 499  # configs_clf/cifar10_wrn.py: epoch_steps_tr
    self.assertEqual((c.dataset, c.classifier, c.random_crop), ("cifar10", "wrn28_10", True))
    self.assertEqual(c.batch_size, 96)
    self.assertEqual(c.train_steps, 100 * epoch)
    self.assertEqual(c.lr_values, (0.1, 0.01, 0.001))
    self.assertEqual(c.lr_boundaries, (40 * epoch, 60 * epoch))
    self.assertEqual((c.momentum, c.nesterov, c.weight_decay), (0.9, False, 5e-4))
    self.assertEqual(c.eval_every, 5 * epoch)
    self.assertEqual((c.image_shape, c.num_classes), ((32, 32, 3), 10))

  def test_model_kwargs_only_for_wrn(self):
    self.assertEqual(ClassifierConfig(classifier="wrn", wrn_depth=10,
                                      wrn_widen_factor=2).model_kwargs,
                     {"depth": 10, "widen_factor": 2})
    self.assertEqual(ClassifierConfig(classifier="wrn28_10", wrn_depth=10).model_kwargs, {})


class ValidateTest(parameterized.TestCase):

  @parameterized.parameters(
      (dict(classifier="resnet50"), "classifier must be one of .*'small_cnn'.*; got 'resnet50'"),
      (dict(dataset="svhn"), "dataset must be one of .*; got 'svhn'"),
      (dict(wrn_depth=12), r"wrn_depth must be 6n\+4 .*; got 12"),
      (dict(wrn_widen_factor=0), "wrn_widen_factor must be >= 1; got 0"),
      (dict(lr_values=(0.1,)), r"lr_values needs exactly one more entry than lr_boundaries; "
                               r"got 1 values \[0.1\] and 2 boundaries \[19960, 29940\]"),
      (dict(lr_boundaries=(5, 3)), r"strictly increasing positive steps; got \[5, 3\]"),
      (dict(lr_values=(0.1, 0.0, 0.1)), r"lr_values must be > 0; got \[0.1, 0.0, 0.1\]"),
      (dict(momentum=1.0), r"momentum must be in \[0, 1\); got 1.0"),
      (dict(weight_decay=-1e-4), "weight_decay must be >= 0 .*; got -0.0001"),
      (dict(batch_size=0), "batch_size must be > 0; got 0"),
      (dict(train_steps=0), "train_steps must be >= 1; got 0"),
      (dict(eval_every=0), "eval_every must be > 0; got 0"),
      (dict(eval_examples=-1), "eval_examples must be >= 0 .*; got -1"),
      (dict(strategy="horovod"), "strategy must be one of .*; got 'horovod'"),
      (dict(precision="float16"), "precision must be one of .*; got 'float16'"),
      (dict(image_size=0), "image_size must be a positive int or None .*; got 0"),
  )
  def test_bad_value_names_itself(self, overrides, message):
    with self.assertRaisesRegex(ValueError, message):
      ClassifierConfig(**overrides)


class FlagsTest(parameterized.TestCase):

  def test_every_field_is_a_flag_and_defaults_round_trip(self):
    flag_values = _parse("--model_dir=/tmp/x")
    config = classifier_config.config_from_flags(flag_values)
    self.assertEqual(config, ClassifierConfig(model_dir="/tmp/x"))

  def test_lists_and_overrides(self):
    flag_values = _parse("--model_dir=/tmp/x", "--lr_values=0.2,0.02", "--lr_boundaries=7",
                         "--classifier=wrn", "--wrn_depth=10", "--image_size=16")
    config = classifier_config.config_from_flags(flag_values, seed=3)
    self.assertEqual((config.lr_values, config.lr_boundaries), ((0.2, 0.02), (7,)))
    self.assertEqual((config.classifier, config.wrn_depth, config.seed), ("wrn", 10, 3))
    self.assertEqual(config.image_shape, (16, 16, 3))

  def test_bad_list_and_missing_model_dir(self):
    with self.assertRaisesRegex(ValueError, "--lr_boundaries must be a comma-separated list of "
                                "int values; got '1.5'"):
      classifier_config.config_from_flags(_parse("--model_dir=/x", "--lr_boundaries=1.5",
                                                 "--lr_values=1,2"))
    with self.assertRaisesRegex(ValueError, "--model_dir is required"):
      classifier_config.config_from_flags(_parse())

  @parameterized.parameters(
      ("classifier_cifar10_wrn", "cifar10", "wrn28_10"),
      ("classifier_fashion_mnist", "fashion_mnist", "small_cnn"),
      ("classifier_digits", "digits", "small_cnn"),
  )
  def test_presets_parse(self, preset, dataset, classifier):
    path = os.path.join(_ROOT, "flags", f"{preset}.cfg")
    config = classifier_config.config_from_flags(_parse(f"--flagfile={path}",
                                                        "--model_dir=/tmp/x"))
    self.assertEqual((config.dataset, config.classifier), (dataset, classifier))
    self.assertLessEqual(max(config.lr_boundaries), config.train_steps)
    self.assertEqual(config.momentum, 0.9)
    self.assertEqual(config.weight_decay, 5e-4)

  def test_cifar10_preset_is_the_default_recipe(self):
    path = os.path.join(_ROOT, "flags", "classifier_cifar10_wrn.cfg")
    config = classifier_config.config_from_flags(_parse(f"--flagfile={path}",
                                                        "--model_dir=/tmp/x"))
    runtime = ("strategy", "log_every", "model_dir")
    for field in dataclasses.fields(ClassifierConfig):
      if field.name not in runtime:
        self.assertEqual(getattr(config, field.name), field.default, field.name)


class JsonTest(absltest.TestCase):

  def test_save_and_load_round_trip(self):
    model_dir = self.create_tempdir().full_path
    config = ClassifierConfig(dataset="digits", classifier="wrn", wrn_depth=10,
                              random_crop=False, lr_values=(0.5,), lr_boundaries=(),
                              model_dir=model_dir)
    path = classifier_config.save_config(config, model_dir)
    self.assertEqual(path, os.path.join(model_dir, "classifier_config.json"))
    with open(path) as f:
      saved = json.load(f)
    self.assertEqual(saved["classifier"], "wrn")
    self.assertEqual(saved["dataset"], "digits")
    self.assertIsNone(saved["image_size"])
    self.assertEqual(saved["num_classes"], 10)
    self.assertEqual(saved["image_shape"], [8, 8, 1])
    self.assertEqual(classifier_config.load_config(model_dir), config)
    self.assertEqual(classifier_config.load_config(model_dir, seed=5).seed, 5)

  def test_unknown_setting_and_missing_file(self):
    model_dir = self.create_tempdir().full_path
    with self.assertRaisesRegex(FileNotFoundError, "no classifier_config.json in"):
      classifier_config.load_config(model_dir)
    with open(os.path.join(model_dir, "classifier_config.json"), "w") as f:
      json.dump({"dataset": "digits", "dropout": 0.3}, f)
    with self.assertRaisesRegex(ValueError, r"does not know: \['dropout'\]"):
      classifier_config.load_config(model_dir)


if __name__ == "__main__":
  absltest.main()
