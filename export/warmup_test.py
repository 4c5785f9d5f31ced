"""Tests of warmup record writing and parsing."""

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from export import warmup


class WarmupTest(tf.test.TestCase):

  def test_round_trip_keeps_inputs_and_dtypes(self):
    images = np.arange(8, dtype=np.float32).reshape(2, 2, 2, 1)
    requests = [warmup.make_predict_request("m", "purify", {
        "images": images, "seed": np.array([3, 4], np.int64), "num_steps": np.int32(5)}),
                warmup.make_predict_request("m", "energy", {"images": images}, version=7)]
    path = warmup.warmup_path(self.create_tempdir().full_path)
    warmup.write_warmup_file(path, warmup.make_warmup_logs(requests))
    logs = warmup.read_warmup_file(path)
    self.assertLen(logs, 2)
    self.assertTrue(path.endswith("assets.extra/tf_serving_warmup_requests"))
    first = logs[0].predict_log.request
    self.assertEqual(first.model_spec.name, "m")
    self.assertEqual(first.model_spec.signature_name, "purify")
    self.assertAllEqual(tf.make_ndarray(first.inputs["images"]), images)
    self.assertEqual(tf.make_ndarray(first.inputs["seed"]).dtype, np.int64)
    self.assertEqual(tf.make_ndarray(first.inputs["num_steps"]).dtype, np.int32)
    self.assertEqual(tf.make_ndarray(first.inputs["num_steps"]).shape, ())
    self.assertEqual(logs[1].predict_log.request.model_spec.version.value, 7)

  def test_records_are_prediction_logs(self):
    # Independent parse: raw TFRecord bytes -> PredictionLog.
    path = warmup.warmup_path(self.create_tempdir().full_path)
    request = warmup.make_predict_request("m", "energy", {"images": np.zeros([1, 2], np.float32)})
    warmup.write_warmup_file(path, warmup.make_warmup_logs([request]))
    (record,) = list(tf.compat.v1.io.tf_record_iterator(path))
    log = prediction_log_pb2.PredictionLog.FromString(record)
    self.assertEqual(log.WhichOneof("log_type"), "predict_log")

  def test_tensor_proto_matches_tf_make_tensor_proto(self):
    for value in [np.arange(6, dtype=np.float32).reshape(2, 3, 1), np.array([3, 4], np.int64),
                  np.int32(7), np.array([[True, False]]), np.arange(4, dtype=np.uint8),
                  np.zeros([0, 2], np.float64), np.asfortranarray(np.ones([2, 3], np.float32)),
                  np.array([b"ab", b"c"])]:
      with self.subTest(dtype=str(value.dtype), shape=np.shape(value)):
        proto = warmup.tensor_proto(value)
        reference = tf.make_tensor_proto(value)
        self.assertEqual(proto.dtype, reference.dtype)
        self.assertEqual(proto.tensor_shape, reference.tensor_shape)
        decoded = tf.make_ndarray(proto)
        if np.asarray(value).dtype.kind != "S":  # Strings decode as objects.
          self.assertEqual(decoded.dtype, np.asarray(value).dtype)
        self.assertEqual(decoded.tolist(), np.asarray(value).tolist())

  def test_record_count_limits(self):
    request = warmup.make_predict_request("m", "energy", {"images": np.zeros([1], np.float32)})
    with self.assertRaisesRegex(ValueError, "between 1 and 1000"):
      warmup.make_warmup_logs([])
    with self.assertRaisesRegex(ValueError, "got 1001"):
      warmup.make_warmup_logs([request] * 1001)


if __name__ == "__main__":
  tf.test.main()
