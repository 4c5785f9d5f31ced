"""Distributed training: two local MultiWorkerMirroredStrategy workers, and replica equivalence.

Both tests run subprocesses: a worker of MultiWorkerMirroredStrategy must configure collective
ops before TensorFlow initialises, and the replica comparison must split the CPU into 2 logical
devices before TensorFlow initialises its devices.
"""

import json
import os
import socket
import subprocess
import sys
import time

from absl.testing import absltest
import numpy as np
import tensorflow as tf

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TESTS = os.path.dirname(os.path.abspath(__file__))
_TIMEOUT_S = 420  # Two TensorFlow processes on 2 shared cores.


def _free_ports(count: int):
  """`count` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
  sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
  try:
    for s in sockets:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def _wait_all(processes, deadline: float, grace_s: float = 30.0):
  """Waits for every process; returns their exit codes, None for those killed.

  A process still running at `deadline`, or `grace_s` after another one failed (a worker whose
  peer died waits on collectives for ever), is killed.
  """
  failed_at = None
  while True:
    codes = [p.poll() for p in processes]
    now = time.monotonic()
    if all(c is not None for c in codes):
      return codes
    if failed_at is None and any(c not in (None, 0) for c in codes):
      failed_at = now
    if now > deadline or (failed_at is not None and now > failed_at + grace_s):
      break
    time.sleep(0.2)
  for p in processes:
    if p.poll() is None:
      p.kill()
      p.wait()
  return codes


def _read_checkpoint(prefix: str):
  """{key: numpy value} of every non-variant tensor of the checkpoint at `prefix`."""
  reader = tf.train.load_checkpoint(prefix)
  dtypes = reader.get_variable_to_dtype_map()
  return {k: np.asarray(reader.get_tensor(k)) for k in dtypes if dtypes[k] != tf.variant}


class MultiWorkerTest(absltest.TestCase):

  def test_two_local_workers_train_and_the_chief_checkpoints(self):
    model_dir = self.create_tempdir().full_path
    logs = self.create_tempdir().full_path
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    processes, log_paths = [], []
    for index in range(2):
      env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(
          {"cluster": cluster, "task": {"type": "worker", "index": index}}))
      log_paths.append(os.path.join(logs, f"worker{index}.log"))
      with open(log_paths[-1], "w") as log:
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "ebm_tf.train", "--flagfile=flags/shortrun_digits.cfg",
             f"--model_dir={model_dir}", "--strategy=multi_worker", "--train_steps=3",
             "--mcmc_steps=2", "--eval_mcmc_steps=2", "--batch_size=8", "--persistent_size=32",
             "--ebm_width=8", "--gen_width=8", "--latent_dim=4", "--log_every=1",
             "--checkpoint_every=3", "--image_every=3", "--num_grid_images=4"],
            cwd=_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    codes = _wait_all(processes, time.monotonic() + _TIMEOUT_S)
    texts = []
    for path in log_paths:
      with open(path) as f:
        texts.append(f.read())
    tails = "\n".join(f"--- worker {i} ---\n{t[-2500:]}" for i, t in enumerate(texts))
    self.assertEqual(codes, [0, 0], f"exit codes (None: killed after {_TIMEOUT_S} s or after "
                     f"its peer failed):\n{tails}")
    for text in texts:
      self.assertIn("CollectiveAllReduceStrategy: 2 replica(s), 1 local, batch 4 per replica",
                    text)
    # One progress line per run: the chief logs it, the other worker stays quiet.
    self.assertIn("step 3/3", texts[0])
    self.assertNotIn("step 3/3", texts[1])
    chief = _read_checkpoint(os.path.join(model_dir, "checkpoints", "ckpt-3"))
    self.assertEqual(int(chief["step/.ATTRIBUTES/VARIABLE_VALUE"]), 3)
    self.assertTrue(os.path.exists(os.path.join(model_dir, "config.json")))
    # The non-chief saves into a private directory (it resumes from there: its bank is only
    # there). Its copy of the all-reduced networks and optimizers must equal the chief's bitwise.
    worker = _read_checkpoint(os.path.join(model_dir, "worker_tmp", "1", "ckpt-3"))
    self.assertEqual(sorted(worker), sorted(chief))
    synced = [k for k in chief if k.startswith(("ebm_optimizer/", "gen_optimizer/", "generator/"))]
    self.assertNotEmpty(synced)
    for key in synced:
      self.assertEqual(worker[key].tobytes(), chief[key].tobytes(), key)
    # Banks are per replica: the workers' chains must differ from the start (ckpt-0, saved
    # before the first step), not only after their Langevin noise has set them apart.
    for step in (0, 3):
      chief_bank = _read_checkpoint(os.path.join(model_dir, "checkpoints", f"ckpt-{step}"))
      worker_bank = _read_checkpoint(os.path.join(model_dir, "worker_tmp", "1", f"ckpt-{step}"))
      for key in ("bank/images/.ATTRIBUTES/VARIABLE_VALUE",
                  "bank/latents/.ATTRIBUTES/VARIABLE_VALUE"):
        same_slots = np.all(chief_bank[key] == worker_bank[key], axis=tuple(
            range(2, chief_bank[key].ndim)))
        self.assertFalse(np.any(same_slots), f"{key} at step {step}: slots "
                         f"{np.flatnonzero(same_slots)} hold the same chain on both workers")


class ReplicaEquivalenceTest(tf.test.TestCase):

  def test_one_replica_at_batch_2b_equals_two_replicas_at_batch_b(self):
    # tests/replica_equivalence_worker.py builds both trainers (same initial weights, data and
    # negatives; see its docstring) and takes one step with each. oneDNN is off there: on the CI
    # machine its kernels once gave one run's data energy 1e-3 relative off (the negatives' energy,
    # same shapes, agreed to 1e-7), a kernel choice this test is not about; Eigen's are exact
    # repeats.
    out = os.path.join(self.create_tempdir().full_path, "steps.npz")
    result = subprocess.run(
        [sys.executable, os.path.join(_TESTS, "replica_equivalence_worker.py"), out],
        cwd=_ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=_ROOT,
                            TF_ENABLE_ONEDNN_OPTS="0"),
        capture_output=True, text=True, timeout=_TIMEOUT_S)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with np.load(out) as f:
      one = {k[4:]: f[k] for k in f.files if k.startswith("one/")}
      two = {k[4:]: f[k] for k in f.files if k.startswith("two/")}
    self.assertEqual(int(one["replicas"]), 1)
    self.assertEqual(int(two["replicas"]), 2)
    self.assertEqual(sorted(one), sorted(two))
    num_weights = len([k for k in one if k.startswith("ebm_init_")])
    for i in range(num_weights):
      self.assertAllEqual(one[f"ebm_init_{i}"], two[f"ebm_init_{i}"])
    # The same negatives went through: mcmc_steps=0 writes the drawn states back unchanged.
    self.assertAllEqual(one["bank_images"], two["bank_images"])
    self.assertAllEqual(one["bank_ages"], np.ones(8))
    self.assertAllEqual(two["bank_ages"], np.ones(8))
    # Step metrics (replica means of per-replica means = the global-batch means).
    self.assertAllClose(one["metrics"], two["metrics"], rtol=1e-5, atol=1e-6)

    # The gradient: Adam's moments after one step are m = (1 - beta_1) g and v = (1 - beta_2) g^2,
    # so they pin the all-reduced gradient (a wrong replica scaling or data split changes them
    # by O(1)). float32 sums in another order and grouping, with the data and negative terms
    # cancelling, agree to ~1e-5 of each tensor's largest entry.
    self.assertEqual(int(one["iterations"]), 1)
    self.assertEqual(int(two["iterations"]), 1)
    for i in range(num_weights):
      for slot in ("momentum", "velocity"):
        a, b = one[f"{slot}_{i}"], two[f"{slot}_{i}"]
        self.assertGreater(np.abs(a).max(), 0.0)
        self.assertAllClose(a, b, rtol=1e-4, atol=1e-4 * np.abs(a).max(),
                            msg=f"{slot} of weight {i}")

    # The weights: equal wherever the gradient stands clear of float32 noise. Where it is zero
    # up to rounding (dead ReLU units: exactly 0 in one run, ~1e-7 of the tensor's scale in the
    # other) Adam's first step is lr * sign(rounding noise), no property of the distribution.
    compared = total = 0
    for i in range(num_weights):
      m, before = one[f"momentum_{i}"], one[f"ebm_init_{i}"]
      a, b = one[f"ebm_{i}"], two[f"ebm_{i}"]
      live = np.abs(m) > 1e-3 * np.abs(m).max()
      self.assertTrue(np.all(a[live] != before[live]), f"weight {i} did not move")
      self.assertAllClose(a[live], b[live], rtol=0.0, atol=1e-6, msg=f"weight {i}")
      compared += int(live.sum())
      total += a.size
    self.assertGreater(compared, 0.9 * total)

if __name__ == "__main__":
  tf.test.main()
