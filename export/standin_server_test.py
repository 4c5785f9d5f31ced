"""Tests of the TF Serving stand-in (a test double) itself: loading, warmup, protocol details.

The behaviour clients rely on (results, errors, concurrency) is tested in client_test.py, which
can also run against a real TF Serving.
"""

import json
import os
import shutil
import socket
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from export import saved_model_export
from export import standin_server
from export import testing_utils
from export import warmup


def _post(url, body, raw=None):
  data = raw if raw is not None else json.dumps(body).encode()
  request = urllib.request.Request(url, data=data, method="POST")
  try:
    with urllib.request.urlopen(request, timeout=60) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as error:
    return error.code, json.loads(error.read())


def _get(url):
  try:
    with urllib.request.urlopen(url, timeout=60) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as error:
    return error.code, json.loads(error.read())


class StandinServerTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.module, cls.result = testing_utils.shared_tiny_export(with_classifier=True)
    cls.server = standin_server.StandinModelServer(cls.result.model_dir, "purifier").start()
    cls.url = f"{cls.server.rest_url}/v1/models/purifier"
    cls.channel = grpc.insecure_channel(cls.server.grpc_target)
    cls.stub = prediction_service_pb2_grpc.PredictionServiceStub(cls.channel)
    cls.x = testing_utils.images(2, seed=9)

  @classmethod
  def tearDownClass(cls):
    cls.channel.close()
    cls.server.stop()
    super().tearDownClass()

  def test_loads_newest_version_and_replays_warmup(self):
    self.assertEqual(self.server.version, 1)
    self.assertEqual(self.server.warmup_replayed, 5)
    self.assertEqual(self.server.signature_names,
                     ["energy", "purify", "purify_batchable", "serving_default", "serving_uint8"])

  def test_ignores_temporary_and_non_integer_directories(self):
    base = self.create_tempdir().full_path
    shutil.copytree(self.result.version_dir, os.path.join(base, "3"))
    for name in (saved_model_export.TEMP_PREFIX + "x", "17a", "backup"):
      shutil.copytree(self.result.version_dir, os.path.join(base, name))
    self.assertEqual(standin_server.latest_version_dir(base), os.path.join(base, "3"))
    self.assertIsNone(standin_server.latest_version_dir(self.create_tempdir().full_path))
    with self.assertRaisesRegex(FileNotFoundError, "no integer version directory"):
      standin_server.StandinModelServer(self.create_tempdir().full_path, "purifier")

  def test_failing_warmup_record_fails_the_load(self):
    base = self.create_tempdir().full_path
    version_dir = os.path.join(base, "1")
    shutil.copytree(self.result.version_dir, version_dir)
    bad = warmup.make_predict_request("purifier", "energy", {
        "images": np.full([1, 8, 8, 1], 2.0, np.float32)})
    warmup.write_warmup_file(warmup.warmup_path(version_dir), warmup.make_warmup_logs([bad]))
    with self.assertRaisesRegex(standin_server.ServingStatusError, r"must be in \[-1, 1\]"):
      standin_server.StandinModelServer(base, "purifier")

  def test_grpc_specific_version_output_filter_and_extra_inputs(self):
    request = warmup.make_predict_request("purifier", "purify", {
        "images": self.x, "seed": np.array([1, 1], np.int64)}, version=1)
    request.output_filter.append("energies")
    response = self.stub.Predict(request, timeout=60)
    self.assertEqual(sorted(response.outputs), ["energies"])
    self.assertEqual(response.model_spec.version.value, 1)
    self.assertEqual(response.model_spec.signature_name, "purify")
    expected = self.module.purify(self.x, tf.constant([1, 1], tf.int64))["energies"]
    self.assertAllClose(tf.make_ndarray(response.outputs["energies"]), expected, rtol=1e-6,
                        atol=1e-6)

    request.model_spec.version.value = 2
    with self.assertRaises(grpc.RpcError) as caught:
      self.stub.Predict(request, timeout=60)
    self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)

    extra = warmup.make_predict_request("purifier", "energy", {
        "images": self.x, "seed": np.array([1, 1], np.int64)})
    with self.assertRaises(grpc.RpcError) as caught:
      self.stub.Predict(extra, timeout=60)
    self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
    self.assertIn("Sent extra: {seed}", caught.exception.details())

    missing = predict_pb2.PredictRequest()
    missing.model_spec.name = "purifier"
    with self.assertRaises(grpc.RpcError) as caught:
      self.stub.Predict(missing, timeout=60)
    self.assertIn("Signature input alias: images", caught.exception.details())

  def test_grpc_metadata_needs_signature_def_field(self):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "purifier"
    with self.assertRaises(grpc.RpcError) as caught:
      self.stub.GetModelMetadata(request, timeout=60)
    self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

  def test_rest_row_and_columnar_formats(self):
    expected = self.module.energy(self.x)["energies"].numpy()
    status, body = _post(f"{self.url}:predict",
                         {"signature_name": "energy", "instances": self.x.tolist()})
    self.assertEqual(status, 200)
    self.assertAllClose(body["predictions"], expected, rtol=1e-6, atol=1e-7)
    status, body = _post(f"{self.url}/versions/1:predict",
                         {"signature_name": "energy", "inputs": self.x.tolist()})
    self.assertEqual(status, 200)
    self.assertAllClose(body["outputs"], expected, rtol=1e-6, atol=1e-7)
    status, body = _post(f"{self.url}:predict", {"signature_name": "energy",
                                                  "instances": [{"images": self.x[0].tolist()}]})
    self.assertEqual(status, 200)
    self.assertAllClose(body["predictions"], expected[:1], rtol=1e-6, atol=1e-7)

  def test_rest_multi_output_row_format(self):
    status, body = _post(f"{self.url}:predict", {"signature_name": "purify", "inputs": {
        "images": self.x.tolist(), "seed": [4, 4], "num_steps": 2}})
    self.assertEqual(status, 200)
    self.assertEqual(sorted(body["outputs"]), ["energies", "purified"])
    expected = self.module.purify(self.x, tf.constant([4, 4], tf.int64), tf.constant(2))
    self.assertAllClose(body["outputs"]["purified"], expected["purified"], rtol=1e-6, atol=1e-6)

  def test_rest_errors(self):
    cases = [
        (f"{self.url}:predict", None, b"{not json", 400, "JSON Parse error"),
        (f"{self.url}:predict", {"inputs": 1, "instances": [1]}, None, 400, "only one of"),
        (f"{self.url}:predict", {"signature_name": "nope", "inputs": {}}, None, 400,
         'signature key "nope" not found'),
        (f"{self.url}:predict", {"signature_name": "purify", "inputs": {
            "images": self.x.tolist()}}, None, 400, "Missing named input: num_steps"),
        (f"{self.url}:predict", {"signature_name": "purify", "instances": self.x.tolist()},
         None, 400, "instances is a plain list"),
        (f"{self.url}:predict", {"signature_name": "energy", "inputs": [[1, 2], [3]]}, None, 400,
         "unexpected size"),
        (f"{self.url}:predict", {"signature_name": "energy", "inputs": "abc"}, None, 400,
         "not numbers"),
        (f"{self.server.rest_url}/v1/models/other:predict", {"inputs": [1.0]}, None, 404,
         "Servable not found"),
        (f"{self.url}/versions/9:predict", {"inputs": [1.0]}, None, 404, "Specific(purifier, 9)"),
        (f"{self.url}:explode", {"inputs": [1.0]}, None, 400, "Malformed request"),
    ]
    for url, body, raw, code, text in cases:
      with self.subTest(text=text):
        status, reply = _post(url, body, raw)
        self.assertEqual(status, code)
        self.assertIn(text, reply["error"])
    status, reply = _get(f"{self.server.rest_url}/v1/models/other")
    self.assertEqual((status, "error" in reply), (404, True))

  def test_rest_status_and_metadata(self):
    status, body = _get(self.url)
    self.assertEqual(status, 200)
    self.assertEqual(body, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": ""}}]})
    status, body = _get(f"{self.url}/metadata")
    self.assertEqual(status, 200)
    self.assertEqual(body["model_spec"]["version"], "1")
    signatures = body["metadata"]["signature_def"]["signature_def"]
    self.assertEqual(signatures["energy"]["method_name"], "tensorflow/serving/predict")

  def test_stop_closes_ports_and_joins_threads(self):
    server = standin_server.StandinModelServer(self.result.model_dir, "purifier").start()
    port = int(server.rest_url.rsplit(":", 1)[1])
    _get(f"{server.rest_url}/v1/models/purifier")
    server.stop()
    with self.assertRaises(OSError):
      socket.create_connection(("127.0.0.1", port), timeout=5).close()
    names = [t.name for t in threading.enumerate()]
    self.assertFalse([n for n in names if n.startswith(server.thread_name_prefix)], names)


if __name__ == "__main__":
  tf.test.main()
