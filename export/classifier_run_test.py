"""Tests of the classifier run layout (classifier_config.json + checkpoints/ key "classifier")."""

import json
import os

import tensorflow as tf

from ebm_tf import checkpoints
from ebm_tf import models
from export import classifier_run
from export import testing_utils


class ClassifierRunTest(tf.test.TestCase):

  def test_restore_gives_the_saved_weights(self):
    run_dir = self.create_tempdir().full_path
    saved = testing_utils.make_classifier_run(run_dir)
    restored, config, path = classifier_run.restore_classifier(run_dir)
    self.assertEqual(config.classifier, "small_cnn")
    self.assertEqual(config.num_classes, testing_utils.NUM_CLASSES)
    self.assertEqual(config.image_shape, (8, 8, 1))
    self.assertTrue(path.startswith(os.path.join(run_dir, "checkpoints")))
    x = testing_utils.images(3)
    self.assertAllClose(restored(x), saved(x), rtol=0, atol=0)

  def test_config_file_has_the_agreed_keys_and_keeps_extras(self):
    run_dir = self.create_tempdir().full_path
    config = classifier_run.ClassifierRunConfig("small_cnn", "digits", None, 10,
                                                extra={"epochs": 3})
    path = classifier_run.save_classifier_config(config, run_dir)
    with open(path) as f:
      values = json.load(f)
    self.assertEqual(values, {"classifier": "small_cnn", "dataset": "digits",
                              "image_size": None, "num_classes": 10, "epochs": 3})
    self.assertEqual(classifier_run.load_classifier_config(run_dir), config)

  def test_errors(self):
    run_dir = self.create_tempdir().full_path
    with self.assertRaisesRegex(FileNotFoundError, "no classifier_config.json"):
      classifier_run.load_classifier_config(run_dir)
    with open(os.path.join(run_dir, classifier_run.CONFIG_FILENAME), "w") as f:
      json.dump({"classifier": "small_cnn", "dataset": "digits"}, f)
    with self.assertRaisesRegex(ValueError, r"lacks required keys \['num_classes'\]"):
      classifier_run.load_classifier_config(run_dir)
    with self.assertRaisesRegex(ValueError, "classifier must be one of"):
      classifier_run.ClassifierRunConfig("nope", "digits", None, 10)
    with self.assertRaisesRegex(ValueError, "num_classes must be an int >= 1"):
      classifier_run.ClassifierRunConfig("small_cnn", "digits", None, 0)
    classifier_run.save_classifier_config(
        classifier_run.ClassifierRunConfig("small_cnn", "digits", None, 10), run_dir)
    with self.assertRaisesRegex(FileNotFoundError, "no checkpoint"):
      classifier_run.restore_classifier(run_dir)

  def test_checkpoint_under_another_key_is_rejected(self):
    run_dir = self.create_tempdir().full_path
    classifier_run.save_classifier_config(
        classifier_run.ClassifierRunConfig("small_cnn", "digits", None, 10), run_dir)
    model = models.build_classifier("small_cnn", (8, 8, 1), 10)
    checkpoints.Checkpointer(os.path.join(run_dir, "checkpoints"), model=model).save(1)
    with self.assertRaisesRegex(ValueError, "under the key 'classifier'"):
      classifier_run.restore_classifier(run_dir)


if __name__ == "__main__":
  tf.test.main()
