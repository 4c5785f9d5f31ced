"""Client tests through the official gRPC stub and REST JSON.

By default they run against the loopback TF Serving stand-in (export/standin_server.py, a test
double) serving a tiny export. To run them against a real TF Serving, export a model, serve it,
and set
  TF_SERVING_GRPC=host:8500  TF_SERVING_REST=http://host:8501
  TF_SERVING_MODEL_DIR=<export_base>/<model_name>   (the directory the server serves)
  TF_SERVING_MODEL_NAME=purifier                     (optional)
The real-server tests compare the server's answers with the same version loaded locally by
`tf.saved_model.load` (an export with a classifier, served with the default version policy);
they are skipped when these variables are not set.
"""

import concurrent.futures
import os
import socket
import time
import unittest
from unittest import mock
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from export import client
from export import saved_model_export
from export import standin_server
from export import testing_utils

_REAL_ENV = ("TF_SERVING_GRPC", "TF_SERVING_REST", "TF_SERVING_MODEL_DIR")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class _ClientTests:
  """Tests shared by the stand-in and the real-server variants.

  Subclasses set in setUpClass: cls.grpc_target, cls.rest_url, cls.model_name, cls.limits
  (the export's purifier_config dict) and cls.expected(images, seed, num_steps, num_repeats).
  """

  def images(self, batch, seed, low=-1.0, high=1.0):
    return testing_utils.images(batch, seed=seed, low=low, high=high,
                                shape=tuple(self.limits["image_shape"]))

  def clients(self):
    return [client.connect("grpc://" + self.grpc_target, self.model_name, timeout_s=60),
            client.connect(self.rest_url, self.model_name, timeout_s=60)]

  def test_purify_matches_the_model(self):
    x = self.images(3, 1, low=-0.8, high=0.8)
    expected = self.expected(x, [1, 2], 3, 2)
    for c in self.clients():
      with self.subTest(client=type(c).__name__), c:
        out = c.purify(x, seed=[1, 2], num_steps=3, num_repeats=2)
        self.assertEqual(sorted(out), sorted(expected))
        for name in expected:
          self.assertEqual(out[name].dtype, expected[name].dtype, name)
          self.assertAllClose(out[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)

  def test_omitted_controls_take_the_export_defaults(self):
    x = self.images(2, 2)
    expected = self.expected(x, [0, 0], self.limits["default_num_steps"],
                             self.limits["default_num_repeats"])
    for c in self.clients():
      with self.subTest(client=type(c).__name__), c:
        self.assertAllClose(c.purify(x)["purified"], expected["purified"], rtol=1e-5, atol=1e-6)

  def test_energy_uint8_status_and_metadata(self):
    x = self.images(2, 3)
    u8 = np.round((x + 1) * 127.5).astype(np.uint8)
    for c in self.clients():
      with self.subTest(client=type(c).__name__), c:
        energies = c.energy(x)
        self.assertEqual(energies.shape, (2,))
        out = c.purify(u8, seed=[3, 3], num_steps=1, signature_name="serving_uint8")
        self.assertEqual(out["purified_uint8"].dtype, np.uint8)
        self.assertEqual(len(c.status()), 1)
        self.assertEqual(c.status()[0][1], "AVAILABLE")
        self.assertContainsSubset(["serving_default", "purify", "energy", "serving_uint8"],
                                  list(c.metadata()))

  def test_bad_inputs_are_rejected_with_clear_errors_and_serving_continues(self):
    x = self.images(2, 4)
    h, w, c_ = self.limits["image_shape"]
    max_batch, max_steps = self.limits["max_batch_size"], self.limits["max_num_steps"]
    cases = [
        (dict(images=x * 4), r"images must be in \[-1, 1\]"),
        (dict(images=np.where(x > 0, np.nan, x)), "images must be finite"),
        (dict(images=np.where(x > 0, np.inf, x)), "images must be finite"),
        (dict(images=x[:, :h - 1]), rf"images must have shape \[batch, {h}, {w}, {c_}\]"),
        (dict(images=np.zeros([max_batch + 1, h, w, c_], np.float32)),
         rf"batch size must be between 1 and {max_batch}"),
        (dict(images=x, num_steps=max_steps + 1), rf"num_steps must be in \[0, {max_steps}\]"),
        (dict(images=x, num_steps=-1), "num_steps must be in"),
        (dict(images=x, num_repeats=0), "num_repeats must be in"),
    ]
    for c in self.clients():
      with c:
        for kwargs, pattern in cases:
          with self.subTest(client=type(c).__name__, pattern=pattern):
            with self.assertRaisesRegex(client.ServingError, pattern) as caught:
              c.purify(**kwargs)
            self.assertEqual(caught.exception.code, "INVALID_ARGUMENT")
            if isinstance(c, client.RestPurifierClient):
              self.assertEqual(caught.exception.http_status, 400)
        with self.assertRaises(client.ServingError) as caught:  # Wrong seed shape.
          c.predict({"images": x, "seed": np.array([1, 2, 3], np.int64)}, "purify")
        self.assertEqual(caught.exception.code, "INVALID_ARGUMENT")
        self.assertRegex(caught.exception.message, r"seed must be|shape|size")
        # Still serving.
        self.assertEqual(c.purify(x, num_steps=1)["purified"].shape, x.shape)
    with client.connect("grpc://" + self.grpc_target, self.model_name) as c:
      with self.assertRaisesRegex(client.ServingError, "Type mismatch|type|float") as caught:
        c.predict({"images": x.astype(np.int32)}, "energy")
      self.assertEqual(caught.exception.code, "INVALID_ARGUMENT")

  def test_deadline_exceeded_is_reported(self):
    x = self.images(1, 6)
    with client.GrpcPurifierClient(self.grpc_target, self.model_name, timeout_s=1e-4) as c:
      with self.assertRaises(client.ServingError) as caught:
        c.purify(x, num_steps=self.limits["max_num_steps"])
    self.assertEqual(caught.exception.code, "DEADLINE_EXCEEDED")

  def test_unknown_model_and_signature(self):
    for c in [client.connect("grpc://" + self.grpc_target, "no_such_model"),
              client.connect(self.rest_url, "no_such_model")]:
      with c, self.assertRaises(client.ServingError) as caught:
        c.status()
      self.assertEqual(caught.exception.code, "NOT_FOUND")
    with client.connect("grpc://" + self.grpc_target, self.model_name) as c:
      with self.assertRaisesRegex(client.ServingError, 'signature key "nope" not found'):
        c.predict({"images": self.images(1, 0)}, "nope")

  def test_concurrent_clients_get_their_own_answers(self):
    x = self.images(2, 5, low=-0.5, high=0.5)
    jobs = [(kind, seed) for kind in ("grpc", "rest") for seed in range(4)]
    expected = {seed: self.expected(x, [seed, 1], 2, 1)["purified"] for _, seed in jobs}

    def work(kind, seed):
      url = "grpc://" + self.grpc_target if kind == "grpc" else self.rest_url
      with client.connect(url, self.model_name, timeout_s=60) as c:
        results = [c.purify(x, seed=[seed, 1], num_steps=2, num_repeats=1)["purified"]
                   for _ in range(2)]
      return seed, results

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
      futures = [pool.submit(work, kind, seed) for kind, seed in jobs]
      done, not_done = concurrent.futures.wait(futures, timeout=180)
    self.assertFalse(not_done, "some clients did not finish within 180 s")
    for future in done:
      seed, results = future.result()
      for result in results:
        self.assertAllClose(result, expected[seed], rtol=1e-5, atol=1e-6)
    self.assertGreater(np.abs(expected[0] - expected[1]).max(), 1e-4)


class StandinClientTest(_ClientTests, tf.test.TestCase):
  """Client tests against the stand-in (a test double, not TF Serving)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    module, result = testing_utils.shared_tiny_export(with_classifier=True)
    cls.server = standin_server.StandinModelServer(result.model_dir, "purifier").start()
    cls.grpc_target, cls.rest_url, cls.model_name = (cls.server.grpc_target,
                                                     cls.server.rest_url, "purifier")
    cls.limits = saved_model_export.read_export_info(result.version_dir)["purifier_config"]

    def expected(images, seed, num_steps, num_repeats):
      out = module.serve(tf.constant(images), tf.constant(seed, tf.int64),
                         tf.constant(num_steps), tf.constant(num_repeats))
      return {k: v.numpy() for k, v in out.items()}
    cls.expected = staticmethod(expected)

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()
    super().tearDownClass()

  def test_purify_batchable_over_grpc_and_rest(self):
    module, _ = testing_utils.shared_tiny_export(with_classifier=True)
    x = self.images(3, 7, low=-0.8, high=0.8)
    seeds = np.array([[1, 2], [3, 4], [5, 6]], np.int64)
    expected = {k: v.numpy() for k, v in module.purify_batchable(x, seeds).items()}
    for c in self.clients():
      with self.subTest(client=type(c).__name__), c:
        out = c.purify_batchable(x, seeds)
        self.assertEqual(sorted(out), sorted(expected))
        for name in expected:
          self.assertEqual(out[name].dtype, expected[name].dtype, name)
          self.assertAllClose(out[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
        with self.assertRaisesRegex(ValueError, r"seeds must have shape \[batch, 2\]"):
          c.purify_batchable(x, seeds[:2])


class RealServerClientTest(_ClientTests, tf.test.TestCase):
  """The same tests against a real TF Serving (skipped unless TF_SERVING_* are set)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    missing = [name for name in _REAL_ENV if not os.environ.get(name)]
    if missing:
      raise unittest.SkipTest(f"no real TF Serving: set {', '.join(missing)}")
    cls.grpc_target = os.environ["TF_SERVING_GRPC"].replace("grpc://", "")
    cls.rest_url = os.environ["TF_SERVING_REST"]
    cls.model_name = os.environ.get("TF_SERVING_MODEL_NAME", "purifier")
    version_dir = standin_server.latest_version_dir(os.environ["TF_SERVING_MODEL_DIR"])
    info = saved_model_export.read_export_info(version_dir)
    if not info["has_classifier"]:
      raise unittest.SkipTest("the real-server tests need an export with a classifier")
    cls.limits = info["purifier_config"]
    loaded = tf.saved_model.load(version_dir)

    def expected(images, seed, num_steps, num_repeats):
      out = loaded.signatures["serving_default"](
          images=tf.constant(images), seed=tf.constant(seed, tf.int64),
          num_steps=tf.constant(num_steps, tf.int32),
          num_repeats=tf.constant(num_repeats, tf.int32))
      return {k: v.numpy() for k, v in out.items()}
    cls.expected = staticmethod(expected)


class RetryTest(tf.test.TestCase):
  """Client retry and timeout behaviour (no server needed)."""

  def test_grpc_retries_transient_errors_then_succeeds(self):
    class Unavailable(grpc.RpcError):
      def code(self):
        return grpc.StatusCode.UNAVAILABLE

      def details(self):
        return "server restarting"

    response = tf.make_tensor_proto(np.ones([1], np.float32))
    calls = []

    def predict(request, timeout):
      calls.append(timeout)
      if len(calls) < 3:
        raise Unavailable()
      out = predict_pb2.PredictResponse()
      out.outputs["energies"].CopyFrom(response)
      return out

    c = client.GrpcPurifierClient(f"127.0.0.1:{_free_port()}", timeout_s=7, max_attempts=3,
                                  backoff_s=0.01)
    stub = c._predictions  # pylint: disable=protected-access
    with c, mock.patch.object(stub, "Predict", side_effect=predict):
      self.assertAllEqual(c.energy(np.zeros([1, 8, 8, 1])), [1.0])
    self.assertEqual(calls, [7, 7, 7])

  def test_grpc_gives_up_after_max_attempts_on_a_dead_server(self):
    with client.GrpcPurifierClient(f"127.0.0.1:{_free_port()}", timeout_s=5, max_attempts=2,
                                   backoff_s=0.05) as c:
      start = time.monotonic()
      with self.assertRaises(client.ServingError) as caught:
        c.energy(np.zeros([1, 8, 8, 1]))
      self.assertEqual(caught.exception.code, "UNAVAILABLE")
      self.assertGreaterEqual(time.monotonic() - start, 0.05)  # It waited before retrying.

  def test_rest_retries_connection_refused_and_not_bad_requests(self):
    c = client.RestPurifierClient(f"http://127.0.0.1:{_free_port()}", max_attempts=3,
                                  backoff_s=0.01)
    with mock.patch("urllib.request.urlopen", wraps=urllib.request.urlopen) as urlopen:
      with self.assertRaises(client.ServingError) as caught:
        c.status()
    self.assertEqual(caught.exception.code, "UNAVAILABLE")
    self.assertEqual(urlopen.call_count, 3)

  def test_invalid_argument_is_not_retried(self):
    calls = []

    def failing():
      calls.append(1)
      raise client.ServingError("INVALID_ARGUMENT", "bad")

    with self.assertRaises(client.ServingError):
      client._retrying(failing, 5, 0.0)  # pylint: disable=protected-access
    self.assertLen(calls, 1)

  def test_connect_parses_urls(self):
    self.assertIsInstance(client.connect("http://127.0.0.1:1"), client.RestPurifierClient)
    with client.connect("grpc://127.0.0.1:1") as c:
      self.assertIsInstance(c, client.GrpcPurifierClient)
    with self.assertRaisesRegex(ValueError, "expected grpc://host:port"):
      client.connect("grpc://host/path")


if __name__ == "__main__":
  tf.test.main()
