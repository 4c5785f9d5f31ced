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

    def test_flag_presets_are_data(self):
        # //:flags is data of every test, at flags/<name>.cfg relative to the workspace root,
        # which is the working directory under Bazel. (Not compared one by one with the live
        # checkout: a preset added while `bazel test` runs reaches the tests on the next run.)
        if not glob.glob(os.path.join(_SOURCE_ROOT, "flags", "*.cfg")):
            self.skipTest("no flags/*.cfg in the checkout yet")
        if _under_bazel():
            self.assertEqual(os.getcwd(), _RUN_ROOT)
        presets = glob.glob(os.path.join(_RUN_ROOT, "flags", "*.cfg"))
        self.assertNotEmpty(presets, msg=f"no flags/*.cfg under {_RUN_ROOT}")
        for cfg in presets:
            self.assertEqual(os.path.realpath(cfg),
                             os.path.join(_SOURCE_ROOT, "flags", os.path.basename(cfg)))

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
