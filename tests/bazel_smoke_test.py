"""Smoke test of the test plumbing: interpreter, import path, TensorFlow and data files.

Runs under Bazel (`bazel test //tests:bazel_smoke_test`) and under pytest. Under Bazel it also
checks that the interpreter is the one WORKSPACE configured (<workspace>/.venv or $EBM_PYTHON).
"""
import glob
import os
import sys

from absl.testing import absltest

# The tree the test runs from: the Bazel runfiles tree, or the checkout under pytest.
_RUN_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The checkout itself (runfiles entries are symlinks to the source files).
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def _under_bazel():
    return "TEST_SRCDIR" in os.environ and "TEST_WORKSPACE" in os.environ


def _source_files(pattern):
    """Source files matching `pattern` that existed when Bazel built this test's runfiles.

    Files created since (others editing the checkout during a run) are left out: Bazel has not
    seen them yet, and the next run picks them up.
    """
    paths = glob.glob(os.path.join(_SOURCE_ROOT, pattern))
    manifest = os.path.join(os.environ.get("RUNFILES_DIR", ""), "MANIFEST")
    if _under_bazel() and os.path.exists(manifest):
        built = os.path.getmtime(manifest) - 60.0  # analysis runs shortly before the manifest
        paths = [p for p in paths if os.path.getctime(p) < built]
    return paths


class BazelSmokeTest(absltest.TestCase):

    def test_interpreter_is_the_configured_one(self):
        if not _under_bazel():
            self.skipTest("only meaningful under `bazel test`")
        path_file = os.path.join(os.environ["TEST_SRCDIR"], "venv_python", "interpreter_path.txt")
        with open(path_file) as f:
            expected = f.read().strip()
        self.assertEqual(sys.executable, expected)
        if expected.endswith("/.venv/bin/python3"):
            # Running in the venv, so its site-packages are used, not the base interpreter's.
            venv_dir = os.path.dirname(os.path.dirname(expected))
            self.assertEqual(os.path.realpath(sys.prefix), os.path.realpath(venv_dir))
            self.assertNotEqual(sys.prefix, sys.base_prefix)

    def test_packages_import_from_this_tree(self):
        import ebm_tf
        import ebm_tf.models
        import export

        # From the tree under test, not from an installed copy in site-packages.
        for module, rel in ((ebm_tf, "ebm_tf"), (ebm_tf.models, "ebm_tf/models"),
                            (export, "export")):
            self.assertEqual(os.path.dirname(os.path.abspath(module.__file__)),
                             os.path.join(_RUN_ROOT, rel), msg=module.__name__)

    def test_new_source_files_are_picked_up(self):
        # Every library module ebm_tf/<name>.py must reach the tests without editing a BUILD file
        # (a *_test.py is only in its own test's runfiles).
        for package in ("ebm_tf", "ebm_tf/models", "export"):
            for src in _source_files(os.path.join(package, "*.py")):
                name = os.path.basename(src)
                if name.endswith("_test.py"):
                    continue
                self.assertTrue(os.path.exists(os.path.join(_RUN_ROOT, package, name)),
                                msg=f"{package}/{name} missing from {_RUN_ROOT}")

    def test_flag_presets_are_data(self):
        for cfg in _source_files(os.path.join("flags", "*.cfg")):
            name = os.path.basename(cfg)
            self.assertTrue(os.path.isfile(os.path.join(_RUN_ROOT, "flags", name)),
                            msg=f"flags/{name} missing from {_RUN_ROOT}")

    def test_tensorflow_and_keras_run(self):
        import keras
        import tensorflow as tf

        self.assertTrue(tf.__version__.startswith("2."), msg=tf.__version__)
        self.assertTrue(keras.__version__.startswith("3."), msg=keras.__version__)

        @tf.function
        def grad_of_quadratic(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                energy = 0.5 * tf.reduce_sum(x * x)
            return tape.gradient(energy, x)

        # The gradient of |x|^2 / 2 is x.
        grad = grad_of_quadratic(tf.constant([1.0, -2.0, 3.0]))
        self.assertSequenceAlmostEqual(grad.numpy().tolist(), [1.0, -2.0, 3.0])


if __name__ == "__main__":
    absltest.main()
