"""Every training preset in flags/ starts from its flagfile, builds, and (slow tier) trains.

The presets are found by glob, so a new flags/<regime>_<dataset>.cfg is covered without editing
this file: EBM training presets (`shortrun_*`, `midrun_*`, `longrun_prior_*`,
`longrun_correction_*`, and the 2-D toys' single-stage `longrun_*`, run by `ebm_tf.train`) and
classifier presets (`classifier_*`, run by `ebm_tf.train_classifier`) and defense presets
(`defense_*`, run by `ebm_tf.attack`); a flagfile of any other kind fails the discovery test. Each
is parsed as its binary parses it: a fresh `flags.FlagValues`, `define_*_flags`, `['prog',
'--flagfile=<preset>', <overrides>...]`, `config_from_flags`.

Defense presets (always): each parses into a valid `DefenseEvalConfig` once the model flags it
leaves to the user are given (and fails without them, its comments naming them); the paper's
(`defense_cifar10`, `defense_imagenet`) hold docs/paper_settings.md section 7.4's values; each fits
the midrun preset of its dataset (image shape, temperature). Slow tier: a preset with a
keras.applications classifier attacks one synthetic image with its own networks (the midrun EBM
trained here, the classifier with random weights from a local file), 1 step of everything.

Fast tier (always): every preset parses into a valid config; its dataset matches its file name; its
image shape is the paper's (docs/paper_settings.md section 6) or the dataset's native one; its
networks are known names; networks for images up to 64x64 are built and checked on one zero image
(the 128x128 and 224x224 ones are built by the slow tier, which trains them); a preset that needs a
pretrained generator or a prior run has a preset that trains one of the same shape.

Slow tier (EBM_SLOW_TESTS=1): every preset trains 2 steps (classifiers 1) with its own networks
on tiny data of its image shape: 3-channel presets on 'synthetic' at the preset's image size,
1-channel presets on sklearn digits at their size (digits are bundled, 'synthetic' is RGB only),
toys on their own exact samples; batch 2, 1 Langevin step. Frozen-generator presets load the
generator of the matching shortrun run trained here; correction presets load the prior run of the
matching longrun_prior preset trained here (and its generator). The class prints a table of
per-preset times at the end.
"""

import gc
import glob
import math
import os
import re
import shutil
import tempfile
import time
import unittest

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from ebm_tf.classifier import classifier_config
from ebm_tf.classifier import classifier_lib
from ebm_tf.classifier import keras_app_classifier
from ebm_tf.data import datasets
from ebm_tf.defense import defense_eval
from ebm_tf.internal import flag_config
from ebm_tf.mcmc import init_strategies
from ebm_tf import models
from ebm_tf.training import checkpoints
from ebm_tf.training import config as config_lib
from ebm_tf.training import runs
from ebm_tf.training import train_lib

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FLAGS_DIR = os.path.join(_ROOT, "flags")
_SLOW = os.environ.get("EBM_SLOW_TESTS") == "1"

# 'longrun' is the single-stage longrun of the 2-D toys (flags/longrun_toy.cfg).
_REGIMES = ("shortrun", "midrun", "longrun_prior", "longrun_correction", "longrun")
_PRESET_KINDS = _REGIMES + ("classifier", "defense")
# Dataset part of a preset name -> the ebm_tf.data.datasets dataset name ('toy': any of TOY_DATASETS).
_TOY = "toy"
_DATASET_OF_NAME = {"cifar10": "cifar10", "celeb_a": "celeb_a", "imagenet": "imagenet2012",
                    "digits": "digits", "fashion_mnist": "fashion_mnist", _TOY: _TOY}
# The paper's (EBM, image side) per regime and dataset: docs/paper_settings.md sections 6.1-6.4.
_PAPER_ARCHITECTURE = {
    ("shortrun", "cifar10"): ("ebm_sngan32", 32),
    ("shortrun", "celeb_a"): ("ebm_sngan64", 64),
    ("shortrun", "imagenet2012"): ("ebm_sngan128", 128),
    ("midrun", "cifar10"): ("ebm_sngan32", 32),
    ("midrun", "imagenet2012"): ("ebm_biggan224", 224),
    ("longrun_prior", "cifar10"): ("ebm_sngan32", 32),
    ("longrun_prior", "celeb_a"): ("ebm_sngan64", 64),
    ("longrun_prior", "imagenet2012"): ("ebm_sngan64", 64),
    ("longrun_correction", "cifar10"): ("ebm_sngan32", 32),
    ("longrun_correction", "celeb_a"): ("ebm_sngan64", 64),
    ("longrun_correction", "imagenet2012"): ("ebm_sngan64", 64),
}
# Native image sides (ebm_tf.data.datasets docstring): the CPU-scale presets and the classifiers use them.
_NATIVE_SIDE = {"digits": 8, "fashion_mnist": 28, "cifar10": 32}
# Networks for larger images are built (and trained) by the slow tier only.
_FAST_BUILD_MAX_SIDE = 64
_UNUSED_DIR = "/nonexistent/presets_test_model_dir"


def _presets(prefix):
  """Preset names (file names without .cfg) starting with `prefix`_, sorted."""
  paths = glob.glob(os.path.join(_FLAGS_DIR, f"{prefix}_*.cfg"))
  return sorted(os.path.basename(p)[:-len(".cfg")] for p in paths)


def _regime(name):
  # Longest prefix first: 'longrun_prior' before a hypothetical 'longrun'.
  for regime in sorted(_PRESET_KINDS, key=len, reverse=True):
    if name.startswith(regime + "_"):
      return regime
  return None


def _name_dataset(name):
  """The dataset a preset's file name names: shortrun_imagenet -> imagenet2012."""
  rest = name[len(_regime(name)) + 1:]
  for part, dataset in _DATASET_OF_NAME.items():
    if rest == part or rest.startswith(part + "_"):
      return dataset
  raise AssertionError(f"preset {name!r}: no known dataset in {rest!r}")


_TRAIN_PRESETS = [p for regime in _REGIMES for p in _presets(regime)
                  if _regime(p) == regime]
_CLASSIFIER_PRESETS = _presets("classifier")
_DEFENSE_PRESETS = _presets("defense")
# Defense presets whose classifier is a keras.applications model (no classifier run to train).
def _sets_keras_app_classifier(name):
  with open(os.path.join(_FLAGS_DIR, f"{name}.cfg")) as f:
    return any(line.startswith("--classifier=keras_app:") for line in f)


_KERAS_APP_DEFENSE_PRESETS = [p for p in _DEFENSE_PRESETS if _sets_keras_app_classifier(p)]


def _path(name):
  return os.path.join(_FLAGS_DIR, f"{name}.cfg")


def _parse(define, name, overrides):
  """Parses preset `name` then `overrides` as its binary does; returns the FlagValues."""
  flag_values = flags.FlagValues()
  define(flag_values)
  flag_values(["prog", f"--flagfile={_path(name)}", *overrides])
  return flag_values


def _needs_gen_checkpoint(flag_values):
  """A frozen generator initialises the chains: the run needs --gen_checkpoint."""
  return (init_strategies.InitMode(flag_values["mcmc_init"].value).uses_generator
          and not flag_values["update_generator"].value
          and not flag_values["gen_checkpoint"].value)


def _needs_prior_model_dir(flag_values):
  """A burn-in bank means a longrun correction stage: the run needs --prior_model_dir."""
  return flag_values["burnin_size"].value > 0 and not flag_values["prior_model_dir"].value


def _train_config(name, *overrides, model_dir=_UNUSED_DIR):
  """The TrainConfig of preset `name` + overrides, as `python -m ebm_tf.train` builds it.

  A preset with a frozen generator (or a frozen prior) gets a placeholder --gen_checkpoint (or
  --prior_model_dir) unless the overrides name one (both are only read when a Trainer is built).
  """
  overrides = [f"--model_dir={model_dir}", *overrides]
  flag_values = _parse(config_lib.define_train_flags, name, overrides)
  placeholders = []
  if _needs_gen_checkpoint(flag_values):
    placeholders.append(f"--gen_checkpoint={_UNUSED_DIR}")
  if _needs_prior_model_dir(flag_values):
    placeholders.append(f"--prior_model_dir={_UNUSED_DIR}")
  if placeholders:
    flag_values = _parse(config_lib.define_train_flags, name, [*overrides, *placeholders])
  return config_lib.config_from_flags(flag_values)


def _classifier_config(name, *overrides, model_dir=_UNUSED_DIR):
  flag_values = _parse(classifier_config.define_classifier_flags, name,
                       [f"--model_dir={model_dir}", *overrides])
  return classifier_config.config_from_flags(flag_values)


def _shape(config):
  return tuple(datasets.image_shape(config.dataset, config.image_size))


def _generator_preset(name):
  """The shortrun preset whose run is the pretrained generator of frozen-generator preset `name`:
  the one shortrun preset of the same dataset."""
  sources = [p for p in _TRAIN_PRESETS
             if _regime(p) == "shortrun" and _name_dataset(p) == _name_dataset(name)]
  if len(sources) != 1:
    raise AssertionError(f"{name}: want one shortrun preset of its dataset; got {sources}")
  return sources[0]


def _prior_preset(name):
  """The longrun_prior preset whose run is the frozen prior of correction preset `name`."""
  return "longrun_prior_" + name[len("longrun_correction_"):]


def _named(names):
  return [dict(testcase_name=n, name=n) for n in names]


def _comments(name):
  with open(_path(name)) as f:
    return "".join(line for line in f if line.lstrip().startswith("#"))


class PresetDiscoveryTest(absltest.TestCase):

  def test_every_flagfile_is_a_known_kind_and_every_regime_has_presets(self):
    names = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(_FLAGS_DIR, "*.cfg")))
    self.assertNotEmpty(names)
    unknown = [n for n in names if _regime(n) is None]
    self.assertEmpty(unknown, f"flags/ holds presets of no known kind {_PRESET_KINDS}")
    for regime in _REGIMES:
      self.assertNotEmpty([p for p in _TRAIN_PRESETS if _regime(p) == regime], regime)
    self.assertNotEmpty(_CLASSIFIER_PRESETS)
    self.assertCountEqual(_TRAIN_PRESETS + _CLASSIFIER_PRESETS + _DEFENSE_PRESETS, names)


class TrainPresetFastTest(parameterized.TestCase):

  _checked = set()  # Architecture and shape keys already built and checked.

  def tearDown(self):
    keras.backend.clear_session()
    super().tearDown()

  @parameterized.named_parameters(*_named(_TRAIN_PRESETS))
  def test_parses_into_a_config_of_the_right_dataset_and_shape(self, name):
    config = _train_config(name)
    regime, dataset = _regime(name), _name_dataset(name)
    self.assertIn(config.ebm, models.EBM_NAMES)
    if config.init_mode.uses_generator:
      self.assertIn(config.generator, models.GENERATOR_NAMES)
    if dataset == _TOY:
      self.assertIn(config.dataset, datasets.TOY_DATASETS)
      self.assertEqual(_shape(config), (2,))
      self.assertIsNone(config.image_size)
      return
    self.assertEqual(config.dataset, dataset)
    h, w, _ = _shape(config)
    self.assertEqual(h, w)
    if (regime, dataset) in _PAPER_ARCHITECTURE:
      self.assertEqual((config.ebm, h), _PAPER_ARCHITECTURE[(regime, dataset)])
    else:
      self.assertEqual(h, _NATIVE_SIDE[dataset])
    # An architecture named for a side (ebm_sngan64, gen_sngan128, ebm_biggan224) takes exactly
    # that side; this is all the fast tier checks of the networks it does not build.
    for net in (config.ebm,) + ((config.generator,) if config.init_mode.uses_generator else ()):
      side = re.search(r"(\d+)$", net)
      if side:
        self.assertEqual(int(side.group(1)), h, f"{net} on {h}x{w} images")

  @parameterized.named_parameters(*_named(_TRAIN_PRESETS))
  def test_networks_build_for_the_preset_image_shape(self, name):
    config = _train_config(name)
    shape = _shape(config)
    if shape[0] > _FAST_BUILD_MAX_SIDE:
      self.skipTest(f"{shape[0]}x{shape[1]} networks are built by the slow tier")
    # Presets sharing an architecture and shape share one check (building is most of the cost).
    ebm_key = (config.ebm, config.ebm_width, shape)
    if ebm_key not in self._checked:
      ebm = runs.build_ebm(config)
      self.assertEqual(tuple(ebm.inputs[0].shape[1:]), shape)
      energy = ebm(tf.zeros([1, *shape]))
      self.assertEqual(energy.shape, (1, 1))
      self.assertTrue(np.all(np.isfinite(energy.numpy())))
      self._checked.add(ebm_key)
    gen_key = (config.generator, config.gen_width, config.latent_dim, shape)
    if config.init_mode.uses_generator and gen_key not in self._checked:
      generator = runs.build_generator(config)
      self.assertEqual(models.generator_latent_dim(generator), config.latent_dim)
      images = generator(tf.zeros([1, config.latent_dim]), training=False)
      self.assertEqual(tuple(images.shape), (1, *shape))
      self.assertTrue(np.all(np.abs(images.numpy()) <= 1.0))
      self._checked.add(gen_key)

  @parameterized.named_parameters(*_named(_TRAIN_PRESETS))
  def test_pretrained_inputs_have_a_preset_that_trains_them(self, name):
    flag_values = _parse(config_lib.define_train_flags, name, [f"--model_dir={_UNUSED_DIR}"])
    config = _train_config(name)
    if _needs_prior_model_dir(flag_values):
      # Checked below; here the gen_checkpoint check alone.
      flag_values = _parse(config_lib.define_train_flags, name,
                           [f"--model_dir={_UNUSED_DIR}", f"--prior_model_dir={_UNUSED_DIR}"])
    if _needs_gen_checkpoint(flag_values):
      # Without --gen_checkpoint the preset cannot start: its comments must say so, and the
      # matching shortrun preset must train a generator of the same architecture and shape.
      with self.assertRaisesRegex(ValueError, "needs --gen_checkpoint"):
        config_lib.config_from_flags(flag_values)
      self.assertIn("--gen_checkpoint", _comments(name))
      source = _train_config(_generator_preset(name))
      self.assertTrue(source.update_generator)
      for field in ("generator", "gen_width", "latent_dim"):
        self.assertEqual(getattr(source, field), getattr(config, field), field)
      self.assertEqual(_shape(source), _shape(config))
    if _regime(name) == "longrun_correction":
      # Without --prior_model_dir the preset cannot start (it would train a correction of
      # nothing).
      without_prior = _parse(config_lib.define_train_flags, name,
                             [f"--model_dir={_UNUSED_DIR}", f"--gen_checkpoint={_UNUSED_DIR}"])
      self.assertTrue(_needs_prior_model_dir(without_prior))
      with self.assertRaisesRegex(ValueError, "needs --prior_model_dir"):
        config_lib.config_from_flags(without_prior)
      # Stage B samples U = E/T + E0/T0 + ||x||^2/(2 tau^2) with the stage-A prior E0 at its own
      # temperature and tau, and the same step size (docs/paper_settings.md section 6.4).
      self.assertIn("--prior_model_dir", _comments(name))
      prior = _train_config(_prior_preset(name))
      self.assertEqual(_shape(prior), _shape(config))
      self.assertEqual((prior.ebm, prior.ebm_width), (config.ebm, config.ebm_width))
      self.assertEqual(config.prior_temp, prior.mcmc_temp)
      self.assertEqual(config.tau, prior.tau)
      self.assertEqual(config.epsilon, prior.epsilon)
      self.assertGreater(config.tau, 0)
      self.assertGreater(config.burnin_size, 0)
      self.assertTrue(config.init_mode.needs_bank)
    elif _regime(name) == "longrun_prior":
      self.assertGreater(config.tau, 0)
      self.assertEqual(config.burnin_size, 0)
    else:
      self.assertEqual((config.tau, config.burnin_size), (0.0, 0))


class ClassifierPresetFastTest(parameterized.TestCase):

  def tearDown(self):
    keras.backend.clear_session()
    super().tearDown()

  @parameterized.named_parameters(*_named(_CLASSIFIER_PRESETS))
  def test_parses_and_builds(self, name):
    config = _classifier_config(name)
    self.assertEqual(config.dataset, _name_dataset(name))
    self.assertIn(config.classifier, models.CLASSIFIER_NAMES)
    self.assertEqual(config.num_classes, 10)
    shape = tuple(config.image_shape)
    self.assertEqual(shape[:2], (_NATIVE_SIDE[config.dataset],) * 2)
    if config.classifier == "wrn28_10":
      self.skipTest("WRN-28-10 (36M parameters) is built by the slow tier")
    model = classifier_lib.build_model(config)
    logits = model(tf.zeros([1, *shape]), training=False)
    self.assertEqual(logits.shape, (1, config.num_classes))


def _define_attack_flags(flag_values):
  # What `python -m ebm_tf.attack` defines (attack.define_flags), without importing the binary
  # (it defines its flags on the global FLAGS at import).
  flag_config.define_flags(defense_eval.DefenseEvalConfig, {}, flag_values)


def _defense_config(name, *overrides):
  """The DefenseEvalConfig of defense preset `name` as the attack binary builds it, with
  placeholder model paths (the presets leave them to the user)."""
  flag_values = _parse(_define_attack_flags, name, [])
  models_flags = [f"--ebm_dir={_UNUSED_DIR}", f"--output_dir={_UNUSED_DIR}"]
  if keras_app_classifier.is_keras_app(flag_values["classifier"].value):
    models_flags.append(f"--classifier_weights={_UNUSED_DIR}/weights.h5")
  else:
    models_flags.append(f"--classifier_dir={_UNUSED_DIR}")
  flag_values = _parse(_define_attack_flags, name, [*models_flags, *overrides])
  return defense_eval.DefenseEvalConfig(
      **flag_config.from_flags(defense_eval.DefenseEvalConfig, flag_values, {}))


# The paper's defense protocols, docs/paper_settings.md section 7.4 (reference configs_attack/*.py).
_PAPER_DEFENSE = {
    "defense_cifar10": dict(
        dataset="cifar10", split="test", shuffle=True, num_images=640, batch_size=64,
        eps_255=8.0, step_size_255=2.0, adv_steps=50, random_start=True, eot_attack_reps=48,
        eot_defense_reps=128, purify_steps=2000, epsilon=0.01,
        mcmc_temp=1e-4, defense="purify", attack="bpda_eot", attack_method="pgd"),
    "defense_imagenet": dict(
        dataset="imagenet2012", split="validation", shuffle=True, num_images=800, batch_size=8,
        image_size=224, classifier="keras_app:EfficientNetB7", classifier_input_size=600,
        eps_255=2.0, step_size_255=1.0, adv_steps=50, random_start=True, eot_attack_reps=24,
        eot_defense_reps=64, purify_steps=200, epsilon=2e-2, mcmc_temp=1e-5,
        defense="purify", attack="bpda_eot", attack_method="pgd"),
}


# Defense presets that purify colder than their midrun EBM trained, each measured:
# digits, 1e-5 against 1e-4 (docs/defense_results.md, "Current result"; the MIM preset includes it).
_COLDER_PURIFICATION = {"defense_digits": 1e-5, "defense_digits_mim": 1e-5}


class DefensePresetFastTest(parameterized.TestCase):

  def test_paper_presets_are_present(self):
    self.assertContainsSubset(list(_PAPER_DEFENSE), _DEFENSE_PRESETS)

  @parameterized.named_parameters(*_named(_DEFENSE_PRESETS))
  def test_parses_with_the_models_left_to_the_user(self, name):
    config = _defense_config(name)
    self.assertEqual(config.dataset, _name_dataset(name))
    for field, value in _PAPER_DEFENSE.get(name, {}).items():
      self.assertEqual(getattr(config, field), value, field)
    # Without the model flags the preset cannot start, and its comments name them.
    flag_values = _parse(_define_attack_flags, name, [f"--output_dir={_UNUSED_DIR}"])
    with self.assertRaisesRegex(ValueError, "is required"):
      defense_eval.DefenseEvalConfig(
          **flag_config.from_flags(defense_eval.DefenseEvalConfig, flag_values, {}))
    comments = _comments(name)
    self.assertIn("--ebm_dir", comments)
    if config.classifier:
      self.assertIn("--classifier_weights", comments)
      self.assertEqual(config.classifier_dir, "")
    else:
      self.assertIn("--classifier_dir", comments)

  @parameterized.named_parameters(*_named(_DEFENSE_PRESETS))
  def test_matches_the_midrun_preset_of_its_dataset(self, name):
    """The EBM a defense preset purifies with is trained by the midrun preset of its dataset:
    same image shape (a keras.applications classifier takes the EBM's images), and it purifies at
    the training temperature unless _COLDER_PURIFICATION names a measured colder one."""
    config = _defense_config(name)
    part = [k for k, v in _DATASET_OF_NAME.items() if v == config.dataset][0]
    midrun = _train_config(f"midrun_{part}")
    self.assertEqual(midrun.dataset, config.dataset)
    image_size = config.image_size if config.image_size is not None else midrun.image_size
    self.assertEqual(datasets.image_shape(config.dataset, image_size), _shape(midrun))
    expected = _COLDER_PURIFICATION.get(name, midrun.mcmc_temp)
    self.assertLessEqual(expected, midrun.mcmc_temp)
    self.assertEqual(config.mcmc_temp, expected)
    if config.classifier:
      name = keras_app_classifier.parse_spec(config.classifier)
      self.assertEqual(_shape(midrun)[-1], 3)
      self.assertGreaterEqual(
          keras_app_classifier.resolve_input_size(name, config.classifier_input_size),
          keras_app_classifier.MIN_INPUT_SIZE)


# ---------------------------------------------------------------------------------------------
# Slow tier.

_TRAIN_STEPS = 2


def _tiny_data_flags(config):
  """Overrides that feed tiny data of `config`'s image shape (the networks stay the preset's)."""
  if config.dataset == "digits" or datasets.is_toy(config.dataset):
    return []  # Already tiny, bundled with sklearn or sampled exactly.
  h, _, c = _shape(config)
  if c == 3:
    return ["--dataset=synthetic", f"--image_size={h}", "--random_crop=false"]
  # 'synthetic' is RGB only: 1-channel presets train on digits resized to their side.
  return ["--dataset=digits", f"--image_size={h}", "--random_crop=false"]


def _restored_weights(run_dir, key, model):
  """`model`'s weights (numpy) as restored from key `key` of run_dir's newest checkpoint.

  Trainable weights are stored under their optimizer's path, so they are compared after a restore
  through the object graph, not by checkpoint variable names.
  """
  checkpoints.restore_from_run(run_dir, **{key: model})
  return [w.numpy() for w in model.weights]


@unittest.skipUnless(_SLOW, "set EBM_SLOW_TESTS=1 to train every preset for a few steps")
class PresetTrainingTest(parameterized.TestCase):
  """Trains each preset; prerequisite runs (generators, priors) are trained once and shared."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._root = tempfile.mkdtemp(prefix="presets_test_")
    cls._runs = {}
    cls._metrics = {}
    cls._times = {}

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls._root, ignore_errors=True)
    rows = [f"{'preset':34} {'wall s':>8} {'cpu s':>8}  result"]
    for name, (wall, cpu, result) in sorted(cls._times.items()):
      rows.append(f"{name:34} {wall:8.1f} {cpu:8.1f}  {result}")
    print("\nper-preset training times (EBM presets: "
          f"{_TRAIN_STEPS} steps; classifiers: 1 step + eval)\n" + "\n".join(rows), flush=True)
    super().tearDownClass()

  @classmethod
  def _timed(cls, name, fn):
    wall, cpu = time.time(), time.process_time()
    try:
      result = fn()
    except BaseException as e:
      cls._times[name] = (time.time() - wall, time.process_time() - cpu,
                          f"FAILED {type(e).__name__}: {str(e)[:120]}")
      raise
    cls._times[name] = (time.time() - wall, time.process_time() - cpu, "ok")
    return result

  @classmethod
  def _trained(cls, name):
    """Trains preset `name` on tiny data once; returns (model_dir, its TrainConfig)."""
    if name in cls._runs:
      if cls._runs[name] is None:
        raise unittest.SkipTest(f"prerequisite preset {name} failed to train")
      return cls._runs[name]
    cls._runs[name] = None
    preset = _train_config(name)
    extra = []
    if _regime(name) == "longrun_correction":
      prior_dir, _ = cls._trained(_prior_preset(name))
      extra.append(f"--prior_model_dir={prior_dir}")
      if preset.init_mode.uses_generator and not preset.update_generator:
        extra.append(f"--gen_checkpoint={prior_dir}")  # The prior run holds its generator.
    elif preset.init_mode.uses_generator and not preset.update_generator:
      gen_dir, _ = cls._trained(_generator_preset(name))
      extra.append(f"--gen_checkpoint={gen_dir}")
    if preset.burnin_size:
      extra += ["--burnin_size=2", "--burnin_steps=1", "--graduation_draws=1"]
    model_dir = os.path.join(cls._root, name)
    config = _train_config(
        name, *_tiny_data_flags(preset), "--batch_size=2", "--persistent_size=4",
        "--mcmc_steps=1", "--eval_mcmc_steps=1", "--num_grid_images=2",
        f"--train_steps={_TRAIN_STEPS}", "--checkpoint_every=1", "--log_every=1",
        "--image_every=1000000", "--strategy=default", "--num_cpu_devices=0", *extra,
        model_dir=model_dir)

    def train():
      metrics = train_lib.Trainer(config).train()
      keras.backend.clear_session()
      gc.collect()
      return metrics
    cls._metrics[name] = cls._timed(name, train)
    cls._runs[name] = (model_dir, config)
    return cls._runs[name]

  @parameterized.named_parameters(*_named(_TRAIN_PRESETS))
  def test_trains_with_its_own_networks(self, name):
    model_dir, config = self._trained(name)
    metrics = self._metrics[name]
    preset = _train_config(name)
    self.assertTrue(os.path.exists(
        os.path.join(model_dir, "checkpoints", f"ckpt-{_TRAIN_STEPS}.index")))
    self.assertNotEmpty(metrics)
    for key, value in metrics.items():
      self.assertTrue(math.isfinite(value), f"{key} = {value}")
    saved = config_lib.load_config(model_dir)
    for field in ("ebm", "ebm_width", "mcmc_init", "epsilon", "mcmc_temp", "tau"):
      self.assertEqual(getattr(saved, field), getattr(preset, field), field)
    if preset.init_mode.uses_generator:
      for field in ("generator", "gen_width", "latent_dim", "update_generator"):
        self.assertEqual(getattr(saved, field), getattr(preset, field), field)
    self.assertEqual(_shape(saved), _shape(preset))
    if preset.init_mode.uses_generator and not preset.update_generator:
      # The frozen generator is the pretrained one, unchanged by training.
      frozen = _restored_weights(model_dir, "generator", runs.build_generator(saved))
      pretrained = _restored_weights(saved.gen_checkpoint, "generator",
                                     runs.build_generator(saved))
      self.assertLen(frozen, len(pretrained))
      for a, b in zip(frozen, pretrained):
        np.testing.assert_array_equal(a, b)
    if _regime(name) == "longrun_correction":
      # The run's checkpoint holds the prior EBM exactly as its own run left it.
      stored = _restored_weights(model_dir, "prior_ebm", runs.build_ebm(saved))
      prior = _restored_weights(saved.prior_model_dir, "ebm", runs.build_ebm(saved))
      self.assertLen(stored, len(prior))
      for a, b in zip(stored, prior):
        np.testing.assert_array_equal(a, b)
      self.assertGreater(metrics["graduated"], 0.0)

  @parameterized.named_parameters(*_named(_KERAS_APP_DEFENSE_PRESETS))
  def test_keras_app_defense_attacks_one_image_with_its_own_networks(self, name):
    preset = _defense_config(name)
    part = [k for k, v in _DATASET_OF_NAME.items() if v == preset.dataset][0]
    ebm_dir, ebm_config = self._trained(f"midrun_{part}")
    app_name = keras_app_classifier.parse_spec(preset.classifier)
    size = keras_app_classifier.resolve_input_size(app_name, preset.classifier_input_size)
    weights = os.path.join(self._root, f"{app_name}_{size}.weights.h5")
    keras.utils.set_random_seed(0)
    keras_app_classifier.build_app(app_name, size).save_weights(weights)
    keras.backend.clear_session()
    out = os.path.join(self._root, name)
    config = _defense_config(
        name, f"--dataset={ebm_config.dataset}", "--split=test", f"--ebm_dir={ebm_dir}",
        f"--classifier_weights={weights}", f"--output_dir={out}", "--num_images=1",
        "--batch_size=1", "--adv_steps=1", "--eot_attack_reps=1", "--eot_defense_reps=1",
        "--purify_steps=1", "--seeds=0", "--log_every=0")

    def attack():
      summary = defense_eval.evaluate(defense_eval.prepare(config))
      keras.backend.clear_session()
      gc.collect()
      return summary
    summary = self._timed(name, attack)
    self.assertEqual(summary["models"]["classifier"]["input_size"], size)
    self.assertEqual(summary["models"]["ebm"]["name"], ebm_config.ebm)
    self.assertEqual(summary["models"]["data"]["image_shape"], list(_shape(ebm_config)))
    self.assertLen(summary["per_seed"][0]["accuracy_curve"], 3)
    for field in ("eps_255", "step_size_255", "epsilon", "mcmc_temp"):
      self.assertEqual(summary["settings"][field], getattr(preset, field), field)

  @parameterized.named_parameters(*_named(_CLASSIFIER_PRESETS))
  def test_classifier_trains_one_step(self, name):
    preset = _classifier_config(name)
    h, _, c = preset.image_shape
    if preset.dataset == "digits":
      data_flags = []
    elif c == 3:
      # 'synthetic' has one class: the WRN's head has 1 logit here instead of 10.
      data_flags = ["--dataset=synthetic", f"--image_size={h}", "--random_crop=false"]
    else:
      data_flags = ["--dataset=digits", f"--image_size={h}", "--random_crop=false"]
    model_dir = os.path.join(self._root, name)
    config = _classifier_config(
        name, *data_flags, "--batch_size=2", "--train_steps=1", "--eval_every=1",
        "--log_every=1", "--eval_examples=4", "--eval_batch_size=4", "--strategy=default",
        "--num_cpu_devices=0", model_dir=model_dir)

    def train():
      result = classifier_lib.train(config)
      keras.backend.clear_session()
      gc.collect()
      return result
    result = self._timed(name, train)
    self.assertTrue(os.path.exists(os.path.join(model_dir, "checkpoints", "ckpt-1.index")))
    self.assertTrue(os.path.exists(os.path.join(model_dir, "best", "best.json")))
    self.assertTrue(math.isfinite(result["loss"]))
    self.assertBetween(result["test_accuracy"], 0.0, 1.0)
    self.assertEqual(classifier_config.load_config(model_dir).classifier, preset.classifier)


if __name__ == "__main__":
  tf.test.main()
