"""End-to-end tests of the exporter binary: training-run dirs -> served SavedModel.

The export runs in-process through the binary's `main` (watched from a thread while it runs);
two subprocesses run beside it: a second export by the binary that is killed mid-export, and
then a fresh Python that reloads the export without importing ebm_tf or export and runs
`saved_model_cli show --all` (its console-script entry point).
"""

import contextlib
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

from absl import flags
import numpy as np
import tensorflow as tf

from ebm_tf.classifier import classifier_config
from ebm_tf.classifier import classifier_lib
from ebm_tf import models
from ebm_tf.training import checkpoints
from ebm_tf.training import runs
from export import export_purifier
from export import purifier_module
from export import saved_model_export
from export import testing_utils

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIMIT_FLAGS = ["--num_steps=3", "--max_num_steps=20", "--max_batch_size=8",
                "--max_num_repeats=4"]

_FRESH_PROCESS_SCRIPT = textwrap.dedent("""
    import importlib.abc, sys

    class _Forbid(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ebm_tf", "export"):
          raise ImportError(f"the export must load without {name}")
        return None

    sys.meta_path.insert(0, _Forbid())
    import numpy as np
    import tensorflow as tf

    version_dir, inputs_path, outputs_path = sys.argv[1:4]
    data = np.load(inputs_path)
    loaded = tf.saved_model.load(version_dir)
    sig = loaded.signatures
    outputs = {}
    out = sig["serving_default"](images=tf.constant(data["x"]), seed=tf.constant(data["seed"]),
                                 num_steps=tf.constant(5), num_repeats=tf.constant(2))
    outputs.update({"default/" + k: v.numpy() for k, v in out.items()})
    out = sig["purify"](images=tf.constant(data["x"]), seed=tf.constant(data["seed"]),
                        num_steps=tf.constant(4))
    outputs.update({"purify/" + k: v.numpy() for k, v in out.items()})
    outputs["energy/energies"] = sig["energy"](images=tf.constant(data["x"]))["energies"].numpy()
    out = sig["serving_uint8"](images=tf.constant(data["u8"]), seed=tf.constant(data["seed"]),
                               num_steps=tf.constant(2), num_repeats=tf.constant(1))
    outputs.update({"uint8/" + k: v.numpy() for k, v in out.items()})
    np.savez(outputs_path, **outputs)
    bad = sorted(m for m in sys.modules if m.split(".")[0] in ("ebm_tf", "export"))
    assert not bad, bad
    print("FRESH_OK", flush=True)

    # The saved_model_cli console script's entry point, in this fresh process.
    from tensorflow.python.tools import saved_model_cli
    sys.argv = ["saved_model_cli", "show", "--dir", version_dir, "--all"]
    try:
      saved_model_cli.main()
    except SystemExit as exit_status:
      assert not exit_status.code, exit_status.code
""")


def _binary(run_dir, classifier_dir, export_base, *extra):
  return subprocess.Popen(
      [sys.executable, "-m", "export.export_purifier", f"--checkpoint_dir={run_dir}",
       f"--classifier_dir={classifier_dir}", f"--export_base={export_base}"] + _LIMIT_FLAGS
      + list(extra), cwd=_REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class ExportPurifierTest(tf.test.TestCase):

  def test_end_to_end(self):
    run_dir = self.create_tempdir("ebm_run").full_path
    classifier_dir = self.create_tempdir("classifier_run").full_path
    testing_utils.make_ebm_run(run_dir)
    testing_utils.make_classifier_run(classifier_dir)
    export_base = self.create_tempdir("exports").full_path
    killed_base = self.create_tempdir("killed").full_path
    model_dir = os.path.join(export_base, "purifier")
    killed_dir = os.path.join(killed_base, "purifier")

    doomed = _binary(run_dir, classifier_dir, killed_base)
    watch = {"in_progress": False, "visible_while_in_progress": [], "killed": False}
    stop = threading.Event()

    def watcher():
      # While an export's temporary directory exists, no version may be visible; kill the
      # second exporter as soon as its SavedModel is being written.
      deadline = time.monotonic() + 300
      while not stop.is_set() and time.monotonic() < deadline:
        if os.path.isdir(model_dir):
          names = os.listdir(model_dir)
          if any(n.startswith(saved_model_export.TEMP_PREFIX) for n in names):
            watch["in_progress"] = True
            watch["visible_while_in_progress"] += [n for n in names if n.isdigit()]
        if not watch["killed"] and os.path.isdir(killed_dir) and any(
            n.startswith(saved_model_export.TEMP_PREFIX) for n in os.listdir(killed_dir)):
          doomed.send_signal(signal.SIGKILL)
          watch["killed"] = True
        if watch["killed"] and stop.is_set():
          return
        time.sleep(0.01)

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    flag_values = flags.FlagValues()
    export_purifier.define_flags(flag_values)
    argv = flag_values(["export_purifier", f"--checkpoint_dir={run_dir}",
                        f"--classifier_dir={classifier_dir}", f"--export_base={export_base}"]
                       + _LIMIT_FLAGS)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      export_purifier.main(argv, flag_values)
    output = out.getvalue()
    doomed_output, _ = doomed.communicate(timeout=300)
    stop.set()
    thread.join(timeout=30)
    self.assertTrue(watch["in_progress"])
    self.assertEqual(watch["visible_while_in_progress"], [])
    self.assertTrue(watch["killed"], f"the second exporter finished first: {doomed_output}")
    self.assertEqual(doomed.returncode, -signal.SIGKILL)

    # The interrupted export left only its hidden temporary directory: no visible version.
    self.assertEqual(saved_model_export.list_versions(killed_dir), [])
    self.assertTrue(all(n.startswith(saved_model_export.TEMP_PREFIX)
                        for n in os.listdir(killed_dir)))

    version_dir = os.path.join(model_dir, "1")
    self.assertIn(f"exported {version_dir}", output)
    info = saved_model_export.read_export_info(version_dir)
    self.assertEqual(info["ebm_checkpoint"], os.path.join(run_dir, "checkpoints", "ckpt-1"))
    self.assertTrue(info["has_classifier"])

    # A fresh process without ebm_tf reloads it; `saved_model_cli show` lists the signatures.
    scratch = self.create_tempdir("scratch").full_path
    x = testing_utils.images(3, seed=21, low=-0.9, high=0.9)
    u8 = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 1)).astype(np.uint8)
    seed = np.array([3, 4], np.int64)
    inputs_path, outputs_path = (os.path.join(scratch, "in.npz"),
                                 os.path.join(scratch, "out.npz"))
    np.savez(inputs_path, x=x, u8=u8, seed=seed)
    script = os.path.join(scratch, "reload.py")
    with open(script, "w") as f:
      f.write(_FRESH_PROCESS_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    fresh = subprocess.Popen([sys.executable, script, version_dir, inputs_path, outputs_path],
                             cwd=scratch, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)

    # Meanwhile, the in-process model from the same runs and settings.
    ebm, train_config, _ = runs.restore_ebm(run_dir)
    classifier, _ = classifier_lib.load_classifier(classifier_dir)
    module = purifier_module.PurifierModule(ebm, purifier_module.PurifierConfig(
        image_shape=(8, 8, 1), step_size=train_config.epsilon,
        temperature=train_config.mcmc_temp, default_num_steps=3, max_num_steps=20,
        max_batch_size=8, max_num_repeats=4), classifier)
    expected = {}
    expected.update({"default/" + k: v.numpy() for k, v in module.serve(
        x, tf.constant(seed), tf.constant(5), tf.constant(2)).items()})
    expected.update({"purify/" + k: v.numpy() for k, v in module.purify(
        x, tf.constant(seed), tf.constant(4)).items()})
    expected["energy/energies"] = module.energy(x)["energies"].numpy()
    expected.update({"uint8/" + k: v.numpy() for k, v in module.serve_uint8(
        u8, tf.constant(seed), tf.constant(2), tf.constant(1)).items()})

    fresh_output, _ = fresh.communicate(timeout=300)
    self.assertEqual(fresh.returncode, 0, fresh_output)
    self.assertIn("FRESH_OK", fresh_output)
    reloaded = dict(np.load(outputs_path))
    self.assertEqual(sorted(reloaded), sorted(expected))
    for name, value in expected.items():
      self.assertEqual(reloaded[name].dtype, value.dtype, name)
      self.assertAllClose(reloaded[name], value, rtol=1e-6, atol=1e-6, msg=name)
    self.assertGreater(np.abs(expected["default/purified"] - x).max(), 1e-3)  # It did purify.

    show_output = fresh_output.split("FRESH_OK", 1)[1]
    for name in ("serving_default", "purify", "energy", "serving_uint8"):
      self.assertIn(f"signature_def['{name}']:", show_output)
    self.assertIn("inputs['num_repeats'] tensor_info:", show_output)
    self.assertIn("outputs['class_ids'] tensor_info:", show_output)
    self.assertIn("Method name is: tensorflow/serving/predict", show_output)
    self.assertIn("shape: (-1, 8, 8, 1)", show_output)

  def test_classifier_for_other_images_is_rejected(self):
    run_dir = self.create_tempdir("ebm_run").full_path
    classifier_dir = self.create_tempdir("classifier_run").full_path
    testing_utils.make_ebm_run(run_dir)
    classifier_config.save_config(classifier_config.ClassifierConfig(
        dataset="digits", image_size=16, classifier="small_cnn", model_dir=classifier_dir),
                                  classifier_dir)
    classifier = models.build_classifier("small_cnn", (16, 16, 1), 10)
    checkpoints.Checkpointer(os.path.join(classifier_dir, classifier_lib.BEST_DIR),
                             classifier=classifier).save(1)
    with self.assertRaisesRegex(ValueError, r"classifier takes images of shape \(16, 16, 1\) "
                                r"but the EBM takes \(8, 8, 1\)"):
      export_purifier.export(run_dir, self.create_tempdir().full_path,
                             classifier_dir=classifier_dir)

  def test_flags(self):
    flag_values = flags.FlagValues()
    export_purifier.define_flags(flag_values)
    flag_values(["export_purifier", "--checkpoint_dir=/a", "--export_base=/b", "--jit_compile",
                 "--input_range=clip", "--warmup_batch_sizes=1,4"])
    self.assertTrue(flag_values.jit_compile)
    self.assertEqual(flag_values.warmup_batch_sizes, ["1", "4"])
    with self.assertRaisesRegex(Exception, "unexpected arguments"):
      export_purifier.main(["export_purifier", "extra"], flag_values)


if __name__ == "__main__":
  tf.test.main()
