"""Tests of ebm_tf.zoo.pretrained: shipped directories hold only weights and load like run dirs."""

import json
import os

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from ebm_tf.classifier import classifier_lib
from ebm_tf.evaluation import sampling
from ebm_tf.testing import fixtures
from ebm_tf.training import config as config_lib
from ebm_tf.training import runs
from ebm_tf.zoo import pretrained

_CARD = dict(data="digits", preset="flags/x.cfg", compute="none", headline="test",
             how_made="testing_runs")


def _weights(model):
  return [w.numpy() for w in model.weights]


class ShipRunTest(tf.test.TestCase):

  def test_ebm_run_ships_weights_only_and_restores_the_same_networks(self):
    root = self.create_tempdir().full_path
    run = fixtures.write_run(os.path.join(root, "run"), mcmc_init="coop_persistent")
    out = os.path.join(root, "pretrained", "shortrun_tiny")
    card = pretrained.ship_run(run, out, _CARD)
    self.assertEqual(card["iterations"], 1)
    self.assertEqual(card["networks"], ["ebm", "generator"])
    # The source holds the bank too; the shipped checkpoint holds only the networks.
    self.assertIn("bank", {n.split("/")[0] for n, _ in tf.train.list_variables(
        tf.train.latest_checkpoint(os.path.join(run, "checkpoints")))})
    self.assertEqual(pretrained.checkpoint_keys(out), {"ebm", "generator"})
    source_ebm, _, _ = runs.restore_ebm(run)
    shipped_ebm, shipped_config, _ = runs.restore_ebm(out)
    for a, b in zip(_weights(source_ebm), _weights(shipped_ebm)):
      np.testing.assert_array_equal(a, b)
    self.assertEqual(shipped_config.model_dir, "shortrun_tiny")
    self.assertEqual(pretrained.read_card(out)["preset"], "flags/x.cfg")
    with open(os.path.join(out, pretrained.CARD_MARKDOWN)) as f:
      self.assertIn("# shortrun_tiny", f.read())
    model = sampling.load_model(out, need_generator=True)
    self.assertIsNotNone(model)

  def test_correction_run_finds_its_shipped_prior_from_any_directory(self):
    root = self.create_tempdir().full_path
    prior = fixtures.write_run(os.path.join(root, "prior"), mcmc_init="data_persistent",
                                   tau=0.15)
    correction = fixtures.write_run(os.path.join(root, "corr"), mcmc_init="data_persistent",
                                        prior_model_dir=prior, burnin_size=8, tau=0.15)
    shipped = os.path.join(root, "pretrained")
    pretrained.ship_run(prior, os.path.join(shipped, "prior_tiny"), _CARD)
    with self.assertRaisesRegex(ValueError, "give prior_name"):
      pretrained.ship_run(correction, os.path.join(shipped, "corr_tiny"), _CARD)
    pretrained.ship_run(correction, os.path.join(shipped, "corr_tiny"), _CARD,
                        prior_name="prior_tiny")
    with open(os.path.join(shipped, "corr_tiny", config_lib.CONFIG_FILENAME)) as f:
      self.assertEqual(json.load(f)["prior_model_dir"], os.path.join("..", "prior_tiny"))
    tf.io.gfile.rmtree(prior)  # The shipped copy must not need the source runs.
    tf.io.gfile.rmtree(correction)
    cwd = os.getcwd()
    try:
      os.chdir(self.create_tempdir().full_path)
      config = config_lib.load_config(os.path.join(shipped, "corr_tiny"))
      self.assertEqual(config.prior_model_dir, os.path.join(shipped, "prior_tiny"))
      model = sampling.load_model(os.path.join(shipped, "corr_tiny"))
      self.assertIsNotNone(model)
    finally:
      os.chdir(cwd)
    self.assertEqual(pretrained.checkpoint_keys(os.path.join(shipped, "corr_tiny")),
                     {"ebm", "prior_ebm"})

  def test_classifier_run_ships_best_weights(self):
    root = self.create_tempdir().full_path
    run = os.path.join(root, "clf")
    model = fixtures.write_classifier_run(run, epochs=0, seed=3)
    classifier_lib.file_io.write_json_atomic(
        os.path.join(run, classifier_lib.BEST_DIR, classifier_lib.BEST_FILENAME),
        {"step": 0, "accuracy": 0.1, "split": "test", "num_examples": 297})
    out = os.path.join(root, "pretrained", "classifier_tiny")
    card = pretrained.ship_run(run, out, _CARD)
    self.assertEqual(card["kind"], "classifier")
    self.assertEqual(pretrained.checkpoint_keys(out), {"classifier"})
    shipped, _ = classifier_lib.load_classifier(out, "best")
    for a, b in zip(_weights(model), _weights(shipped)):
      np.testing.assert_array_equal(a, b)
    self.assertEqual(classifier_lib.read_best(out)["accuracy"], 0.1)

  def test_bad_input_is_refused_and_nothing_is_overwritten(self):
    root = self.create_tempdir().full_path
    run = fixtures.write_run(os.path.join(root, "run"), mcmc_init="data_persistent")
    out = os.path.join(root, "shipped")
    with self.assertRaisesRegex(ValueError, r"lacks \['how_made'\]"):
      pretrained.ship_run(run, out, {k: v for k, v in _CARD.items() if k != "how_made"})
    self.assertFalse(os.path.exists(out))
    with self.assertRaisesRegex(FileNotFoundError, "not a run directory"):
      pretrained.ship_run(root, out, _CARD)
    pretrained.ship_run(run, out, dict(_CARD, headline="first"))
    with self.assertRaisesRegex(ValueError, "exists; pass overwrite"):
      pretrained.ship_run(run, out, dict(_CARD, headline="second"))
    self.assertEqual(pretrained.read_card(out)["headline"], "first")
    pretrained.ship_run(run, out, dict(_CARD, headline="second"), overwrite=True)
    self.assertEqual(pretrained.read_card(out)["headline"], "second")
    self.assertEqual(sorted(n for n in os.listdir(root) if n.startswith(".")), [])


class ResolveRunPathTest(absltest.TestCase):

  def test_relative_to_the_run_only_when_missing_from_here(self):
    root = self.create_tempdir().full_path
    os.makedirs(os.path.join(root, "a", "run"))
    os.makedirs(os.path.join(root, "a", "prior"))
    run = os.path.join(root, "a", "run")
    self.assertEqual(config_lib.resolve_run_path(run, "../prior"),
                     os.path.join(root, "a", "prior"))
    self.assertEqual(config_lib.resolve_run_path(run, root), root)  # absolute
    self.assertEqual(config_lib.resolve_run_path(run, "../nowhere"), "../nowhere")
    self.assertIsNone(config_lib.resolve_run_path(run, None))


if __name__ == "__main__":
  absltest.main()
