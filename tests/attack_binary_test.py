"""End-to-end tests of `python -m ebm_tf.attack` on a tiny digits setting.

setUpClass makes a tiny EBM run directory (an untrained ebm_small saved in the layout of
`ebm_tf.train`) and a classifier run fitted for 100 steps by `ebm_tf.classifier.classifier_lib.train`.
"""

import glob
import json
import os
import subprocess
import sys

from absl.testing import absltest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TINY = ["--num_images=6", "--batch_size=4", "--adv_steps=2", "--eot_attack_reps=2",
         "--eot_defense_reps=2", "--purify_steps=3", "--log_every=1"]


def _attack(*args, timeout=600):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-m", "ebm_tf.attack", *args], cwd=_ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def _attack_concurrently(*arg_lists, timeout=1800):
  """Runs one binary per argument list at the same time; returns (returncode, stdout, stderr)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  processes = [subprocess.Popen([sys.executable, "-m", "ebm_tf.attack", *args], cwd=_ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for args in arg_lists]
  results = []
  for process in processes:
    stdout, stderr = process.communicate(timeout=timeout)
    results.append((process.returncode, stdout, stderr))
  return results


def _read(path):
  with open(path) as f:
    return json.load(f)


class AttackBinaryTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    import keras  # pylint: disable=g-import-not-at-top
    from ebm_tf.classifier import classifier_config  # pylint: disable=g-import-not-at-top
    from ebm_tf.classifier import classifier_lib  # pylint: disable=g-import-not-at-top
    from ebm_tf import models  # pylint: disable=g-import-not-at-top
    from ebm_tf.training import checkpoints  # pylint: disable=g-import-not-at-top
    from ebm_tf.training import config as config_lib  # pylint: disable=g-import-not-at-top

    cls.root = absltest.get_default_test_tmpdir()
    cls.ebm_dir = os.path.join(cls.root, "ebm_run")
    config_lib.save_config(config_lib.TrainConfig(dataset="digits", ebm="ebm_small",
                                                  ebm_width=4, model_dir=cls.ebm_dir),
                           cls.ebm_dir)
    keras.utils.set_random_seed(0)
    ebm = models.build_ebm("ebm_small", (8, 8, 1), width=4)
    checkpoints.Checkpointer(os.path.join(cls.ebm_dir, "checkpoints"), ebm=ebm).save(1)
    cls.classifier_dir = os.path.join(cls.root, "classifier_run")
    classifier_lib.train(classifier_config.ClassifierConfig(
        dataset="digits", random_crop=False, classifier="small_cnn", batch_size=64,
        train_steps=100, lr_values=(0.05,), lr_boundaries=(), eval_every=100,
        log_every=100, model_dir=cls.classifier_dir))
    cls.models = [f"--ebm_dir={cls.ebm_dir}", f"--classifier_dir={cls.classifier_dir}"]

  def test_protocol_end_to_end_resumes_by_batch_and_takes_the_worst_seed(self):
    out = self.create_tempdir().full_path
    args = ["--flagfile=flags/defense_digits.cfg", *self.models, f"--output_dir={out}", *_TINY]
    first = _attack(*args)
    self.assertEqual(first.returncode, 0, first.stderr[-3000:])
    self.assertIn("4 batch(es) to run, 0 reused", first.stderr)
    self.assertIn("ETA", first.stderr)
    batch_files = sorted(glob.glob(os.path.join(out, "batches", "seed*_batch*.json")))
    self.assertEqual([os.path.basename(p) for p in batch_files],
                     ["seed0_batch0.json", "seed0_batch1.json", "seed1_batch0.json",
                      "seed1_batch1.json"])
    for name in ("seed0.png", "seed1.png", "accuracy_curve.png"):
      with open(os.path.join(out, name), "rb") as f:
        self.assertEqual(f.read(4), b"\x89PNG", name)

    summary = _read(os.path.join(out, "summary.json"))
    seeds = [_read(os.path.join(out, f"seed{k}.json")) for k in (0, 1)]
    self.assertEqual(summary["num_images"], 6)
    self.assertEqual((summary["defense"], summary["attack"]), ("purify", "bpda_eot"))
    self.assertEqual(summary["settings"]["eps_255"], 48.0)  # from the preset
    self.assertEqual(summary["settings"]["purify_steps"], 3)  # overridden
    self.assertGreater(summary["compute_seconds"], 0)
    robust = [s["robust_accuracy"]["value"] for s in seeds]
    self.assertEqual(summary["worst_case_robust_accuracy"]["value"], min(robust))
    self.assertEqual(summary["worst_case_robust_accuracy"]["seed"], robust.index(min(robust)))
    for s in seeds:
      self.assertEqual(s["num_images"], 6)
      curve = s["accuracy_curve"]
      self.assertLen(curve, 2 + 2)  # natural + adv_steps + 1 evaluations
      self.assertTrue(all(a >= b for a, b in zip(curve, curve[1:])), curve)
      self.assertEqual(curve[0], s["natural_accuracy"]["value"])
      self.assertEqual(curve[-1], s["robust_accuracy"]["value"])
      low, high = s["robust_accuracy"]["ci95"]
      self.assertTrue(0 <= low <= s["robust_accuracy"]["value"] <= high <= 1)
    # The seed's images are the batches' images, in order.
    records = [_read(p) for p in batch_files]
    self.assertEqual(seeds[0]["indices"], records[0]["indices"] + records[1]["indices"])
    self.assertEqual(seeds[0]["indices"], seeds[1]["indices"])

    mtimes = [os.stat(p).st_mtime_ns for p in batch_files]
    second = _attack(*args)
    self.assertEqual(second.returncode, 0, second.stderr[-3000:])
    self.assertIn("0 batch(es) to run, 4 reused", second.stderr)
    self.assertIn("reusing batch 1 of seed 1", second.stderr)
    self.assertEqual([os.stat(p).st_mtime_ns for p in batch_files], mtimes)
    again = _read(os.path.join(out, "summary.json"))
    self.assertEqual(again["per_seed"], summary["per_seed"])
    self.assertEqual(again["batches_reused"], 4)

  def test_two_shards_in_two_processes_merge_to_the_unsharded_result(self):
    # Four binaries (about a minute of CPU here); ebm_tf/defense/defense_eval_test.py checks the same
    # merge in one process in the default tier.
    if os.environ.get("EBM_SLOW_TESTS") != "1":
      self.skipTest("set EBM_SLOW_TESTS=1 for 2 shards in 2 processes against the unsharded run")
    args = ["--flagfile=flags/defense_digits.cfg", *self.models, *_TINY, "--attack_method=apgd",
            "--step_size_255=128"]
    whole, sharded = self.create_tempdir().full_path, self.create_tempdir().full_path
    unsharded = _attack(*args, f"--output_dir={whole}", timeout=1800)
    self.assertEqual(unsharded.returncode, 0, unsharded.stderr[-3000:])
    shards = _attack_concurrently(
        *[[*args, f"--output_dir={sharded}", "--num_shards=2", f"--shard_index={k}"]
          for k in (0, 1)])
    for k, (code, stdout, stderr) in enumerate(shards):
      self.assertEqual(code, 0, stderr[-3000:])
      self.assertIn(f"shard {k} of 2: 2 batches (2 computed, 0 reused)", stdout)
      self.assertFalse(os.path.exists(os.path.join(sharded, "summary.json")))
    merged = _attack(*args, f"--output_dir={sharded}", "--merge_only", timeout=1800)
    self.assertEqual(merged.returncode, 0, merged.stderr[-3000:])
    self.assertIn("0 batch(es) to run, 4 reused", merged.stderr)
    a, b = (_read(os.path.join(d, "summary.json")) for d in (whole, sharded))
    self.assertEqual(b["batches_reused"], 4)
    self.assertEqual(a["attack_method"], "apgd")
    for key in ("per_image_worst_case_robust_accuracy", "worst_case_robust_accuracy",
                "mean_natural_accuracy", "mean_robust_accuracy", "num_images", "attack_method"):
      self.assertEqual(a[key], b[key], key)
    drop_time = lambda s: {k: v for k, v in s.items() if k != "compute_seconds"}
    self.assertEqual([drop_time(s) for s in a["per_seed"]], [drop_time(s) for s in b["per_seed"]])
    not_results = ("output_dir", "merge_only")
    self.assertEqual({k: v for k, v in a["settings"].items() if k not in not_results},
                     {k: v for k, v in b["settings"].items() if k not in not_results})
    self.assertEqual((a["settings"]["merge_only"], b["settings"]["merge_only"]), (False, True))
    for name in sorted(os.listdir(os.path.join(whole, "batches"))):
      record_a, record_b = (_read(os.path.join(d, "batches", name)) for d in (whole, sharded))
      record_a.pop("seconds"), record_b.pop("seconds")
      self.assertEqual(record_a, record_b, name)

  def test_mim_preset_runs_and_refuses_to_resume_with_another_method(self):
    out = self.create_tempdir().full_path
    args = ["--flagfile=flags/defense_digits_mim.cfg", *self.models, f"--output_dir={out}",
            *_TINY, "--num_images=4", "--seeds=0"]
    first = _attack(*args)
    self.assertEqual(first.returncode, 0, first.stderr[-3000:])
    summary = _read(os.path.join(out, "summary.json"))
    self.assertEqual((summary["attack"], summary["attack_method"]), ("bpda_eot", "mim"))
    self.assertEqual(summary["settings"]["attack_method"], "mim")
    self.assertFalse(summary["settings"]["random_start"])
    self.assertEqual(summary["settings"]["eps_255"], 48.0)  # from flags/defense_digits.cfg
    self.assertLen(summary["per_seed"][0]["accuracy_curve"], 2 + 2)
    self.assertIn("method mim", first.stdout)
    other = _attack(*args, "--attack_method=bim")
    self.assertNotEqual(other.returncode, 0)
    self.assertIn("computed with other settings (attack_method: 'mim' -> 'bim'", other.stderr)
    self.assertNotIn("Traceback", other.stderr)

  def test_undefended_classifier_falls_under_the_preset_attack(self):
    out = self.create_tempdir().full_path
    result = _attack("--flagfile=flags/defense_digits.cfg", *self.models, "--defense=none",
                     f"--output_dir={out}", "--num_images=32", "--batch_size=32",
                     "--adv_steps=5", "--eps_255=64", "--step_size_255=16")
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    summary = _read(os.path.join(out, "summary.json"))
    self.assertEqual(summary["attack"], "pgd")
    self.assertNotIn("ebm", summary["models"])
    self.assertGreater(summary["mean_natural_accuracy"], 0.6)  # 100 SGD steps on digits
    # eps 64/255 on 8x8 digits: PGD breaks (nearly) every image of an undefended CNN.
    self.assertLessEqual(summary["worst_case_robust_accuracy"]["value"], 0.1)
    self.assertIn("worst case over seeds", result.stdout)

  def test_presets_hold_their_protocols(self):
    script = (
        "import json, sys\n"
        "from absl import flags\n"
        "from ebm_tf import attack\n"
        "for preset in ('cifar10', 'digits', 'fashion_mnist'):\n"
        "  flags.FLAGS.unparse_flags()\n"
        "  flags.FLAGS(['attack', f'--flagfile=flags/defense_{preset}.cfg', '--ebm_dir=e',\n"
        "               '--classifier_dir=c', '--output_dir=o'])\n"
        "  config = attack.config_from_flags(flags.FLAGS)\n"
        "  print(json.dumps({'preset': preset, **attack.defense_eval.config_as_dict(config)}))\n"
        "flags.FLAGS.unparse_flags()\n"
        "flags.FLAGS(['attack', '--ebm_dir=e', '--classifier_dir=c', '--output_dir=o',\n"
        "             '--mcmc_temp=2e-4'])\n"
        "config = attack.config_from_flags(flags.FLAGS)\n"
        "print(json.dumps({'preset': 'none', **attack.defense_eval.config_as_dict(config)}))\n"
        "flags.FLAGS.unparse_flags()\n"
        "flags.FLAGS(['attack', '--flagfile=flags/defense_digits.cfg', '--ebm_dir=e',\n"
        "             '--classifier_dir=c', '--output_dir=o', '--eps_255=-1'])\n"
        "try:\n"
        "  attack.config_from_flags(flags.FLAGS)\n"
        "except ValueError as error:\n"
        "  print(json.dumps({'preset': 'negative_eps', 'error': str(error)}))\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=_ROOT, capture_output=True,
                            text=True, timeout=600,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    configs = {c["preset"]: c for c in map(json.loads, result.stdout.splitlines())}
    keys = ("dataset", "split", "shuffle", "num_images", "batch_size", "eps_255",
            "step_size_255", "adv_steps", "random_start", "eot_attack_reps",
            "eot_defense_reps", "purify_steps", "epsilon", "mcmc_temp",
            "defense", "attack", "seeds")
    # The paper's CIFAR-10 protocol (docs/paper_settings.md section 7.4).
    self.assertEqual([configs["cifar10"][k] for k in keys],
                     ["cifar10", "test", True, 640, 64, 8.0, 2.0, 50, True, 48, 128, 2000,
                      0.01, 1e-4, "purify", "bpda_eot", [0, 1]])
    self.assertEqual([configs["digits"][k] for k in keys],
                     ["digits", "test", True, 256, 64, 48.0, 12.0, 20, True, 8, 16, 150,
                      1.25e-2, 1e-5, "purify", "bpda_eot", [0, 1]])
    # The measured setting (docs/defense_results.md), not the midrun chain age K/p = 2,000.
    fashion = configs["fashion_mnist"]
    self.assertEqual([fashion[k] for k in ("dataset", "purify_steps", "mcmc_temp", "eps_255")],
                     ["fashion_mnist", 150, 1e-4, 24.0])
    # Without a preset the purifier's Langevin settings are unset (the EBM run's) unless given.
    self.assertEqual((configs["none"]["epsilon"], configs["none"]["mcmc_temp"]), (None, 2e-4))
    self.assertEqual(configs["negative_eps"]["error"],
                     "eps_255 must be a finite number >= 0 (in /255 units); got -1.0")

  def test_bad_flags_fail_with_a_clear_message(self):
    # (A negative eps is checked by config_from_flags in test_presets_hold_their_protocols;
    # the binary turns the same ValueError into this usage error.)
    out = self.create_tempdir().full_path
    missing = _attack("--flagfile=flags/defense_digits.cfg", f"--output_dir={out}",
                      f"--classifier_dir={self.classifier_dir}",
                      f"--ebm_dir={self.root}/no_such_run")
    self.assertNotEqual(missing.returncode, 0)
    self.assertIn(f"ebm_dir '{self.root}/no_such_run' does not exist", missing.stderr)
    self.assertNotIn("Traceback", missing.stderr)
    # The ImageNet preset's keras.applications classifier needs a local weights file.
    no_weights = _attack("--flagfile=flags/defense_imagenet.cfg", f"--output_dir={out}",
                         f"--ebm_dir={self.ebm_dir}",
                         f"--classifier_weights={self.root}/efficientnetb7.h5")
    self.assertNotEqual(no_weights.returncode, 0)
    self.assertIn(f"classifier weights file '{self.root}/efficientnetb7.h5' does not exist. "
                  "ebm-tf never downloads weights", no_weights.stderr)
    self.assertNotIn("Traceback", no_weights.stderr)


if __name__ == "__main__":
  absltest.main()
