"""Tests for ebm_tf.evaluation.checkpoint_sweep: FD over a real (tiny) run's checkpoints."""

import json
import os

import tensorflow as tf

from ebm_tf.evaluation import checkpoint_sweep
from ebm_tf.evaluation import sampling
from ebm_tf.evaluation import stability
from ebm_tf.testing import fixtures


class CheckpointSweepTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    base = os.path.join(os.environ.get("TEST_TMPDIR", "/tmp"), f"sweep_{os.getpid()}")
    cls.run_dir = fixtures.train_tiny_run(os.path.join(base, "run"), train_steps=4,
                                              checkpoint_every=2)
    cls.classifier_dir = os.path.join(base, "classifier")
    fixtures.write_classifier_run(cls.classifier_dir, epochs=1, seed=0)

  def test_selection(self):
    steps = [s for s, _ in checkpoint_sweep.run_checkpoints(self.run_dir)]
    self.assertEqual(steps, [0, 2, 4])  # The trainer also saves its initial state.
    self.assertEqual([s for s, _ in checkpoint_sweep.select_checkpoints(self.run_dir, "all")],
                     [0, 2, 4])
    self.assertEqual(checkpoint_sweep.select_checkpoints(self.run_dir, "latest")[0][0], 4)
    self.assertEqual(checkpoint_sweep.select_checkpoints(self.run_dir, "2")[0][0], 2)
    with self.assertRaisesRegex(ValueError, r"no checkpoint for steps \[3\].*has steps \[0, 2, 4\]"):
      checkpoint_sweep.select_checkpoints(self.run_dir, "2,3")
    with self.assertRaisesRegex(ValueError, "'all', 'latest' or comma-separated steps"):
      checkpoint_sweep.select_checkpoints(self.run_dir, "best")
    # A relative model_dir (as typed on a command line) finds the same checkpoints.
    cwd = os.getcwd()
    try:
      os.chdir(os.path.dirname(self.run_dir))
      relative = checkpoint_sweep.run_checkpoints(os.path.basename(self.run_dir))
    finally:
      os.chdir(cwd)
    self.assertEqual([s for s, _ in relative], [0, 2, 4])
    self.assertEqual(relative[0][1], os.path.join("run", "checkpoints", "ckpt-0"))
    with self.assertRaisesRegex(FileNotFoundError, "no checkpoints"):
      checkpoint_sweep.run_checkpoints(self.create_tempdir().full_path)

  def test_sweep_scores_each_checkpoint_with_its_own_weights_and_resumes(self):
    out = self.create_tempdir().full_path
    job = sampling.SampleConfig(model_dir=self.run_dir, output_dir=out, num_samples=16,
                                batch_size=16, seed=1)
    metrics = stability.MetricsConfig(feature="classifier", classifier_dir=self.classifier_dir)
    summary = checkpoint_sweep.sweep(job, metrics, "2,4")
    self.assertEqual([r["step"] for r in summary["rows"]], [2, 4])
    self.assertEqual({r["chain_steps"] for r in summary["rows"]}, {3})  # eval_mcmc_steps
    self.assertIn(summary["best_step"], (2, 4))
    self.assertEqual(summary["best_step"],
                     min(summary["rows"], key=lambda r: r["fd"])["step"])
    # Each checkpoint sampled with its own generator and EBM: different initial states.
    x2, _ = sampling.load_snapshot(sampling.snapshot_path(os.path.join(out, "ckpt-2"), 3))
    x4, _ = sampling.load_snapshot(sampling.snapshot_path(os.path.join(out, "ckpt-4"), 3))
    self.assertGreater(abs(x2 - x4).max(), 1e-4)
    with open(os.path.join(out, checkpoint_sweep.SWEEP_FILENAME)) as f:
      self.assertEqual(json.load(f)["rows"], summary["rows"])
    self.assertTrue(os.path.exists(os.path.join(out, checkpoint_sweep.SWEEP_PLOT_FILENAME)))
    self.assertIn("NOT comparable", summary["feature"])
    table = checkpoint_sweep.format_sweep_table(summary)
    self.assertIn("(best)", table)
    # A second sweep reads everything back: same numbers.
    again = checkpoint_sweep.sweep(job, metrics, "2,4")
    self.assertEqual(again["rows"], summary["rows"])


if __name__ == "__main__":
  tf.test.main()
