"""Tests for ebm_tf.evaluation.sampling: restoring a run's sampling energy, init sources, resumable chains."""

import dataclasses
import functools
import json
import os
import tempfile
from unittest import mock

import numpy as np
import tensorflow as tf

from ebm_tf.data import datasets
from ebm_tf.evaluation import sampling
from ebm_tf import models
from ebm_tf.testing import fixtures
from ebm_tf.training import summaries

@functools.lru_cache(maxsize=None)
def _tiny_runs():
  """Three run directories (untrained networks, real layout): shortrun (coop_persistent, with a
  generator and a bank), longrun prior and longrun correction (data_persistent, tau)."""
  base = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
  shortrun = fixtures.write_run(os.path.join(base, "shortrun"))
  prior = fixtures.write_run(os.path.join(base, "prior"), seed=1,
                                 mcmc_init="data_persistent", tau=0.15, epsilon=1e-2)
  correction = fixtures.write_run(os.path.join(base, "correction"), seed=2,
                                      mcmc_init="data_persistent", tau=0.15, epsilon=1e-2,
                                      prior_model_dir=prior, prior_temp=2e-4)
  return shortrun, prior, correction


class _Runs(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.shortrun, self.prior, self.correction = _tiny_runs()


class LoadModelTest(_Runs):

  def test_longrun_energy_is_prior_plus_correction_plus_tau(self):
    # One Langevin step x1 = x0 - (eps^2/2) grad U(x0) + eps xi with U computed here from the
    # restored networks: the residual xi must look like N(0, 1) noise. A missing prior (T0 = 2e-4)
    # or tau term would leave a residual far from that.
    model = sampling.load_model(self.correction)
    self.assertIn("prior_energy_fn", model.langevin_kwargs)
    self.assertEqual(model.langevin_kwargs["tau"], 0.15)
    self.assertEqual(model.langevin_kwargs["prior_temperature"], 2e-4)
    prior = models.build_ebm("ebm_small", (8, 8, 1), width=4)
    ebm = models.build_ebm("ebm_small", (8, 8, 1), width=4)
    from ebm_tf.training import checkpoints  # pylint: disable=g-import-not-at-top
    checkpoints.restore_from_run(model.checkpoint_path, ebm=ebm, prior_ebm=prior)
    x0 = datasets.load_array("digits", "train", max_examples=64)[0]
    out = self.create_tempdir().full_path
    sampling.run_chains(model, x0, num_steps=1, output_dir=out, seed=3, batch_size=64)
    x1, _ = sampling.load_snapshot(sampling.snapshot_path(out, 1))
    x = tf.constant(x0)
    with tf.GradientTape() as tape:
      tape.watch(x)
      u = (tf.reduce_sum(ebm(x)) / model.temperature + tf.reduce_sum(prior(x)) / 2e-4
           + tf.reduce_sum(tf.square(x)) / (2 * 0.15 ** 2))
    grad = tape.gradient(u, x).numpy()
    eps = model.step_size
    residual = (x1 - x0 + 0.5 * eps ** 2 * grad) / eps
    self.assertAllClose(np.mean(residual), 0.0, atol=0.06)  # 4096 values: 4 sigma = 0.06
    self.assertAllClose(np.std(residual), 1.0, atol=0.05)

  def test_overrides_and_run_values(self):
    model = sampling.load_model(self.shortrun)
    self.assertEqual((model.step_size, model.temperature), (5e-3, 1e-4))
    self.assertNotIn("prior_energy_fn", model.langevin_kwargs)
    self.assertIsNotNone(model.generator)
    self.assertFalse(model.generator.trainable)
    model = sampling.load_model(self.correction, step_size=0.02, temperature=1e-3, tau=0.0,
                                joint_temperature=1.01)
    self.assertEqual((model.step_size, model.temperature), (0.02, 1e-3))
    self.assertNotIn("tau", model.langevin_kwargs)
    self.assertEqual(model.langevin_kwargs["joint_temperature"], 1.01)
    self.assertIsNone(model.generator)

  def test_missing_generator_and_checkpoint(self):
    with self.assertRaisesRegex(ValueError, "needs a generator.*--generator_dir"):
      sampling.load_model(self.prior, need_generator=True)
    with self.assertRaisesRegex(FileNotFoundError, "no checkpoint"):
      sampling.load_model(self.prior, os.path.join(self.prior, "checkpoints", "ckpt-99"))
    # Another run's generator for a run without one (the longrun protocol: coop from a frozen
    # pretrained generator).
    model = sampling.load_model(self.correction, generator_dir=self.shortrun)
    self.assertIsNotNone(model.generator)


class InitialStatesTest(_Runs):

  def test_sources(self):
    model = sampling.load_model(self.shortrun)
    coop = sampling.initial_states(model, "coop", 10, seed=1)
    latents = models.sample_latents(
        tf.random.experimental.stateless_fold_in(tf.constant([1, 0x5A3]), 0), 10, 4)
    self.assertAllClose(coop, model.generator(latents, training=False), atol=1e-6)
    self.assertEqual(coop.shape, (10, 8, 8, 1))
    noise = sampling.initial_states(model, "noise", 10, seed=1)
    self.assertBetween(float(np.abs(noise).max()), 0.5, 1.0)
    bank = sampling.initial_states(model, "bank", 5, seed=0)
    stored = tf.train.load_checkpoint(model.checkpoint_path).get_tensor(
        "bank/images/.ATTRIBUTES/VARIABLE_VALUE")
    self.assertAllEqual(bank, stored.reshape([-1, 8, 8, 1])[:5])
    images = sampling.initial_states(model, "data", 6, seed=2, split="test")
    test_set = datasets.load_array("digits", "test")[0]
    for image in images:  # Every init image is a real test image.
      self.assertTrue(np.any(np.all(test_set == image, axis=(1, 2, 3))))
    self.assertEqual(sampling.resolve_init("auto", model), "coop")
    self.assertEqual(sampling.resolve_init("auto", sampling.load_model(self.prior)), "data")

  def test_bad_requests(self):
    model = sampling.load_model(self.shortrun)
    with self.assertRaisesRegex(ValueError, "the bank has 16 states; --num_samples is 17"):
      sampling.initial_states(model, "bank", 17, seed=0)
    with self.assertRaisesRegex(ValueError, "has 297 images; --num_samples is 300"):
      sampling.initial_states(model, "data", 300, seed=0, split="test")
    with self.assertRaisesRegex(ValueError, "init must be one of"):
      sampling.initial_states(model, "gan", 3, seed=0)


class RunChainsTest(_Runs):

  def _job(self, out, **overrides):
    values = dict(model_dir=self.shortrun, output_dir=out, num_samples=10, batch_size=4,
                  num_steps=7, record_steps=(0, 2), segment_steps=3, seed=5)
    values.update(overrides)
    return sampling.SampleConfig(**values)

  def test_killed_job_resumes_bitwise_equal(self):
    full = self.create_tempdir().full_path
    summary = sampling.sample(self._job(full))
    self.assertEqual(summary["init"], "coop")
    self.assertEqual([s for s, _ in sampling.list_snapshots(full)], [0, 2, 7])
    self.assertEqual(sampling.segment_ends(7, (0, 2), 3), [2, 3, 6, 7])
    # Kill after the second segment (the state is saved before the progress line).
    killed = self.create_tempdir().full_path
    real_update = summaries.Progress.update
    calls = []

    def dying_update(progress, step, **metrics):
      calls.append(step)
      if len(calls) == 2:
        raise KeyboardInterrupt
      return real_update(progress, step, **metrics)

    with mock.patch.object(summaries.Progress, "update", dying_update):
      with self.assertRaises(KeyboardInterrupt):
        sampling.sample(self._job(killed))
    self.assertEqual([s for s, _ in sampling.list_snapshots(killed)], [0, 2])
    resumed = sampling.sample(self._job(killed))
    self.assertEqual(resumed["resumed_from"], 3)
    for step in (0, 2, 7):
      a, ea = sampling.load_snapshot(sampling.snapshot_path(full, step))
      b, eb = sampling.load_snapshot(sampling.snapshot_path(killed, step))
      self.assertAllEqual(a, b)
      self.assertAllEqual(ea, eb)
    self.assertTrue(os.path.exists(os.path.join(killed, "samples_000000007.png")))
    self.assertFalse([f for f in os.listdir(killed) if ".tmp" in f])
    # The chains moved, and the snapshot energies are the run's E at the stored states.
    x0, _ = sampling.load_snapshot(sampling.snapshot_path(full, 0))
    x7, e7 = sampling.load_snapshot(sampling.snapshot_path(full, 7))
    self.assertGreater(np.abs(x7 - x0).max(), 1e-3)
    model = sampling.load_model(self.shortrun)
    self.assertAllClose(e7, model.energy_fn(tf.constant(x7)), rtol=1e-4, atol=1e-5)

  def test_other_settings_do_not_resume(self):
    out = self.create_tempdir().full_path
    sampling.sample(self._job(out, num_steps=3, record_steps=()))
    with self.assertRaisesRegex(ValueError, "computed with other settings.*step_size"):
      sampling.sample(self._job(out, num_steps=3, record_steps=(), step_size=0.02))

  def test_finished_job_continues_bitwise_equal_to_a_longer_job(self):
    at_once = self.create_tempdir().full_path
    sampling.sample(self._job(at_once, num_steps=13, record_steps=(0, 2, 7, 10)))
    continued = self.create_tempdir().full_path
    sampling.sample(self._job(continued, num_steps=7, record_steps=(0, 2)))
    summary = sampling.sample(self._job(continued, num_steps=13, record_steps=(0, 2, 7, 10)))
    self.assertEqual(summary["resumed_from"], 7)
    self.assertEqual([s for s, _ in sampling.list_snapshots(continued)], [0, 2, 7, 10, 13])
    for step in (7, 10, 13):
      a, ea = sampling.load_snapshot(sampling.snapshot_path(at_once, step))
      b, eb = sampling.load_snapshot(sampling.snapshot_path(continued, step))
      self.assertAllEqual(a, b)
      self.assertAllEqual(ea, eb)
    with open(os.path.join(continued, sampling.TRAJECTORY_FILENAME)) as f:
      self.assertEqual([row["end"] for row in json.load(f)["segments"]], [2, 3, 6, 7, 9, 10, 12, 13])

  def test_chains_saved_without_their_job_are_checked_against_the_settings_file(self):
    # Jobs written before the job was stored in chains.npz: sample_settings.json stands in.
    out = self.create_tempdir().full_path
    sampling.sample(self._job(out, num_steps=6, record_steps=()))
    state = os.path.join(out, sampling.STATE_FILENAME)
    with np.load(state) as f:
      images, done, fingerprint = f["images"], f["steps_done"], f["fingerprint"]
    np.savez(state, images=images, steps_done=done, fingerprint=fingerprint)
    self.assertEqual(sampling.sample(self._job(out, num_steps=9, record_steps=()))
                     ["resumed_from"], 6)
    np.savez(state, images=images, steps_done=done, fingerprint=np.str_("0" * 16))
    with self.assertRaisesRegex(ValueError, "settings are unknown"):
      sampling.sample(self._job(out, num_steps=9, record_steps=()))

  def test_continuation_refuses_what_would_change_the_steps_already_run(self):
    out = self.create_tempdir().full_path
    sampling.sample(self._job(out, num_steps=7, record_steps=(0, 2)))
    with self.assertRaisesRegex(ValueError, "has run 7 steps already, more than the 5"):
      sampling.sample(self._job(out, num_steps=5, record_steps=(0, 2)))
    with self.assertRaisesRegex(ValueError, r"ending at \[2, 3, 6, 7\].*cuts them at \[3, 6\].*must be \[2, 7\]"):
      sampling.sample(self._job(out, num_steps=13, record_steps=(0,)))
    with self.assertRaisesRegex(ValueError, r"record steps \[6\] were passed without a snapshot"):
      sampling.sample(self._job(out, num_steps=13, record_steps=(0, 2, 6, 7)))
    # Nothing was changed by the refusals: the job still continues.
    self.assertEqual(sampling.sample(self._job(out, num_steps=9, record_steps=(0, 2, 7)))
                     ["resumed_from"], 7)

  def test_chunking_does_not_change_the_chains_of_the_first_chunk(self):
    # Chunk 0 sees the same seeds whatever the number of chains.
    a_dir, b_dir = self.create_tempdir().full_path, self.create_tempdir().full_path
    sampling.sample(self._job(a_dir, num_samples=4, record_steps=()))
    sampling.sample(self._job(b_dir, num_samples=8, record_steps=()))
    a, _ = sampling.load_snapshot(sampling.snapshot_path(a_dir, 7))
    b, _ = sampling.load_snapshot(sampling.snapshot_path(b_dir, 7))
    self.assertAllEqual(a, b[:4])

  def test_non_finite_chains_stop_with_a_clear_error(self):
    model = sampling.load_model(self.shortrun)
    model = dataclasses.replace(  # An energy whose gradient is NaN.
        model, energy_fn=lambda x: tf.reduce_sum(tf.sqrt(x - 2.0), axis=[1, 2, 3]))
    x0 = sampling.initial_states(model, "noise", 4, seed=0)
    with self.assertRaisesRegex(FloatingPointError, "non-finite between steps 0 and"):
      sampling.run_chains(model, x0, num_steps=50, output_dir=self.create_tempdir().full_path,
                          seed=0, segment_steps=50)


class SampleConfigTest(tf.test.TestCase):

  def test_bad_settings(self):
    base = dict(model_dir="m", output_dir="o")
    for overrides, message in [
        (dict(model_dir=""), "--model_dir is required"),
        (dict(output_dir=""), "--output_dir is required"),
        (dict(init="gan"), "--init must be one of"),
        (dict(num_samples=0), "--num_samples must be an int >= 1; got 0"),
        (dict(num_steps=-1), "--num_steps must be an int >= 0"),
        (dict(record_steps=(5, 2)), "--record_steps must be increasing"),
        (dict(num_steps=10, record_steps=(20,)), "go beyond --num_steps 10"),
        (dict(step_size=-1.0), "--step_size must be > 0, or 0"),
        (dict(joint_temperature=0.0), "--joint_temperature must be > 0"),
    ]:
      with self.assertRaisesRegex(ValueError, message):
        sampling.SampleConfig(**dict(base, **overrides))


if __name__ == "__main__":
  tf.test.main()
