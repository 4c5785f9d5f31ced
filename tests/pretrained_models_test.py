"""Every model shipped under pretrained/ loads through the normal API, matches its preset and
does what it is for.

The shipped models are found by glob (pretrained/*/model_card.json), so a new one is covered
without editing this file. For each: its checkpoint holds networks only (no optimizer slots,
banks or iterators); the tools that take a run directory load it (`runs.restore_ebm`,
`sampling.load_model`, `classifier_lib.load_classifier`); its config equals its preset parsed as
the training binary parses it (plus the overrides its card lists; the paths of other runs
excepted); and a sanity check of its purpose holds:
- classifier: its test accuracy, recomputed, equals the recorded best accuracy and is >= 0.9;
- midrun: purifying 64 clean test images with its card's purification settings keeps the
  shipped classifier's accuracy >= 0.9;
- shortrun: 256 samples (its generator + its eval_mcmc_steps Langevin steps) have a lower
  classifier Frechet distance to the test images than uniform noise has;
- longrun prior / correction: 128 chains from test images run for 1,000 steps of its own
  sampler keep a lower Frechet distance to the test images than uniform noise has.
Models of images larger than 8x8 (Fashion-MNIST 28x28: 12x the pixels, twice the width) run
half the chains and, for longrun, a quarter of the steps in the default run, so that each check
stays near a minute of CPU; EBM_SLOW_TESTS=1 (CI) runs the full check for them too.
"""

import dataclasses
import glob
import os

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from ebm_tf.classifier import classifier_config
from ebm_tf.classifier import classifier_lib
from ebm_tf.data import datasets
from ebm_tf.data import fashion_mnist_idx
from ebm_tf.defense import purify
from ebm_tf.evaluation import fid
from ebm_tf.evaluation import sampling
from ebm_tf.mcmc import langevin
from ebm_tf.training import config as config_lib
from ebm_tf.training import runs
from ebm_tf.zoo import pretrained

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PRETRAINED = os.path.join(_ROOT, "pretrained")
_SHIPPED = sorted(os.path.basename(os.path.dirname(p))
                  for p in glob.glob(os.path.join(_PRETRAINED, "*", pretrained.CARD_JSON)))
_MAX_TOTAL_BYTES = 20 * 2**20
# Settings that name other runs: the shipped copy names the shipped ones.
_PATH_FIELDS = ("model_dir", "prior_model_dir", "gen_checkpoint")


def _dir(name):
  return os.path.join(_PRETRAINED, name)


def _preset_config(card):
  """The config the card's preset + overrides give, parsed as the training binary parses it."""
  flag_values = flags.FlagValues()
  is_classifier = os.path.basename(card["preset"]).startswith("classifier_")
  (classifier_config.define_classifier_flags if is_classifier
   else config_lib.define_train_flags)(flag_values)
  args = ["prog", f"--flagfile={os.path.join(_ROOT, card['preset'])}",
          "--model_dir=/unused"] + list(card.get("overrides", []))
  if not is_classifier:
    with open(os.path.join(_ROOT, card["preset"])) as f:
      text = f.read()
    if "--burnin_size" in text and "--prior_model_dir" not in " ".join(args):
      args.append("--prior_model_dir=/unused_prior")
  flag_values(args)
  if is_classifier:
    return classifier_config.config_from_flags(flag_values)
  return config_lib.config_from_flags(flag_values)


def _check_size(image_shape, chains, steps, *, scale_steps):
  """(chains, steps) of a sanity check: as given for images of at most 8x8 pixels or under
  EBM_SLOW_TESTS=1, else half the chains (and a quarter of the steps if `scale_steps`)."""
  if int(np.prod(image_shape[:2])) <= 64 or os.environ.get("EBM_SLOW_TESTS") == "1":
    return chains, steps
  return chains // 2, steps // 4 if scale_steps else steps


def _regime(card):
  name = os.path.basename(card["preset"])
  for regime in ("classifier", "shortrun", "midrun", "longrun_prior", "longrun_correction"):
    if name.startswith(regime + "_"):
      return regime
  raise AssertionError(f"preset {card['preset']!r} is of no known regime")


def _fd_to_test_images(classifier_name, images, dataset):
  extractor = fid.ClassifierFeatures(_dir(classifier_name))
  reference = datasets.load_array(dataset, "test")[0]
  ref_stats = fid.compute_stats(extractor, reference)
  noise = tf.random.stateless_uniform(images.shape, seed=[7, 7], minval=-1.0, maxval=1.0)
  return (fid.frechet_distance(fid.compute_stats(extractor, np.clip(images, -1, 1)), ref_stats),
          fid.frechet_distance(fid.compute_stats(extractor, noise.numpy()), ref_stats))


class ShippedModelsTest(parameterized.TestCase):

  def test_models_are_shipped_within_the_size_budget(self):
    self.assertNotEmpty(_SHIPPED, "pretrained/ holds no shipped model (model_card.json)")
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(_PRETRAINED, "**", "*"),
                                                      recursive=True) if os.path.isfile(p))
    self.assertLessEqual(total, _MAX_TOTAL_BYTES, f"pretrained/ is {total / 2**20:.1f} MB")

  @parameterized.named_parameters(*[(n, n) for n in _SHIPPED])
  def test_weights_only_and_loads_through_the_normal_api(self, name):
    card = pretrained.read_card(_dir(name))
    for field in pretrained.REQUIRED_CARD_FIELDS:
      self.assertTrue(card.get(field), f"{name}: model card lacks {field!r}")
    self.assertTrue(os.path.exists(os.path.join(_dir(name), pretrained.CARD_MARKDOWN)))
    keys = pretrained.checkpoint_keys(_dir(name))
    self.assertEmpty(keys - {"ebm", "generator", "prior_ebm", "classifier"},
                     f"{name}: the checkpoint holds more than networks: {sorted(keys)}")
    if pretrained.run_kind(_dir(name)) == "classifier":
      model, _ = classifier_lib.load_classifier(_dir(name), "best")
      self.assertEqual(keys, {"classifier"})
    else:
      model, config, _ = runs.restore_ebm(_dir(name))
      self.assertIsNotNone(sampling.load_model(_dir(name)))
      if config.prior_model_dir:
        self.assertTrue(os.path.isdir(config.prior_model_dir), config.prior_model_dir)
    self.assertGreater(sum(int(np.prod(w.shape)) for w in model.weights), 0)

  @parameterized.named_parameters(*[(n, n) for n in _SHIPPED])
  def test_config_matches_its_preset(self, name):
    card = pretrained.read_card(_dir(name))
    expected = dataclasses.asdict(_preset_config(card))
    if pretrained.run_kind(_dir(name)) == "classifier":
      shipped = classifier_config.config_dict(classifier_config.load_config(_dir(name)))
      expected = classifier_config.config_dict(_preset_config(card))
    else:
      shipped = dataclasses.asdict(config_lib.load_config(_dir(name)))
    for field in _PATH_FIELDS:
      shipped.pop(field, None)
      expected.pop(field, None)
    self.assertEqual(shipped, expected)

  def _load_array(self, dataset, split):
    """The split from the default data_dir; Fashion-MNIST is prepared into the test's temp dir
    from the local IDX files where the default has none (Bazel's sandbox has no ~)."""
    try:
      return datasets.load_array(dataset, split)
    except datasets.DatasetNotPreparedError:
      if dataset != "fashion_mnist":
        raise
      data_dir = self.create_tempdir().full_path
      fashion_mnist_idx.prepare(data_dir)
      return datasets.load_array(dataset, split, data_dir=data_dir)

  @parameterized.named_parameters(*[(n, n) for n in _SHIPPED])
  def test_does_what_it_is_for(self, name):
    card = pretrained.read_card(_dir(name))
    regime = _regime(card)
    if regime == "classifier":
      model, config = classifier_lib.load_classifier(_dir(name), "best")
      best = classifier_lib.read_best(_dir(name))
      images, labels = self._load_array(config.dataset, best["split"])
      accuracy = classifier_lib.evaluate(model, images, labels)
      self.assertAlmostEqual(accuracy, best["accuracy"], places=5)
      self.assertGreaterEqual(accuracy, 0.9)
      return
    ebm, config, _ = runs.restore_ebm(_dir(name))
    classifier_name = card["classifier"]
    if regime == "midrun":
      settings = card["purification"]
      classifier, _ = classifier_lib.load_classifier(_dir(classifier_name), "best")
      images, labels = datasets.load_array(config.dataset, "test", max_examples=64)
      energy_fn = lambda x: ebm(x, training=False)
      purify_fn = tf.function(lambda x: purify.purify(
          energy_fn, x, tf.constant([0, 1]), num_steps=settings["steps"],
          step_size=settings["step_size"], temperature=settings["temperature"])[0])
      purified = purify_fn(tf.constant(images))
      predictions = np.argmax(classifier(purified, training=False).numpy(), axis=-1)
      self.assertGreaterEqual(float(np.mean(predictions == labels)), 0.9)
      return
    model = sampling.load_model(_dir(name))
    if regime == "shortrun":
      chains, steps = _check_size(model.image_shape, 256, config.eval_mcmc_steps,
                                  scale_steps=False)
      samples = sampling.initial_states(model, "coop", chains, seed=0)
    else:
      chains, steps = _check_size(model.image_shape, 128, 1000, scale_steps=True)
      samples = self._load_array(config.dataset, "test")[0][:chains]
    sampler = langevin.make_sampler(model.energy_fn, model.image_shape, **model.langevin_kwargs)
    samples = sampler(tf.constant(samples), tf.constant([0, 2]), steps, model.step_size,
                      model.temperature).samples.numpy()
    model_fd, noise_fd = _fd_to_test_images(classifier_name, samples, config.dataset)
    self.assertLess(model_fd, noise_fd, f"{name}: samples FD {model_fd:.2f} vs noise "
                    f"{noise_fd:.2f}")


if __name__ == "__main__":
  absltest.main()
