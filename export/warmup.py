"""TF Serving warmup records: `assets.extra/tf_serving_warmup_requests`.

TF Serving replays these `tensorflow.serving.PredictionLog` records (a TFRecord file, at most
1,000 records) when it loads a version, before marking it AVAILABLE, so the first real request
does not pay for graph optimisation or XLA compilation. A failing record fails the load.
"""

import os
from typing import Iterable, List, Mapping, Optional

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

ASSETS_EXTRA = "assets.extra"
WARMUP_FILENAME = "tf_serving_warmup_requests"
MAX_RECORDS = 1000  # TF Serving reads at most this many.


def warmup_path(version_dir: str) -> str:
  """`<version_dir>/assets.extra/tf_serving_warmup_requests`."""
  return os.path.join(version_dir, ASSETS_EXTRA, WARMUP_FILENAME)


def tensor_proto(value) -> tensor_pb2.TensorProto:
  """A TensorProto of `value` (numpy dtype and shape kept).

  Numeric and bool arrays are written as raw `tensor_content` (what `tf.make_tensor_proto`
  produces for them, several times faster for small requests); other dtypes use
  `tf.make_tensor_proto`.
  """
  array = np.asarray(value)
  if array.dtype.kind not in "biuf" or array.dtype.byteorder == ">":
    return tf.make_tensor_proto(array)
  shape = tensor_shape_pb2.TensorShapeProto(
      dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape])
  return tensor_pb2.TensorProto(dtype=tf.as_dtype(array.dtype).as_datatype_enum,
                                tensor_shape=shape,
                                tensor_content=np.ascontiguousarray(array).tobytes())


def make_predict_request(model_name: str, signature_name: str,
                         inputs: Mapping[str, np.ndarray],
                         version: Optional[int] = None) -> predict_pb2.PredictRequest:
  """A `PredictRequest` for `signature_name` with `inputs` as TensorProtos (dtypes kept)."""
  request = predict_pb2.PredictRequest(
      model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name))
  if version is not None:
    request.model_spec.version.value = int(version)
  for name, value in inputs.items():
    request.inputs[name].CopyFrom(tensor_proto(value))
  return request


def make_warmup_logs(requests: Iterable[predict_pb2.PredictRequest]
                     ) -> List[prediction_log_pb2.PredictionLog]:
  """Wraps requests as `PredictionLog(predict_log=PredictLog(request=...))`."""
  logs = [prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=r))
          for r in requests]
  if not logs or len(logs) > MAX_RECORDS:
    raise ValueError(f"need between 1 and {MAX_RECORDS} warmup requests; got {len(logs)}")
  return logs


def write_warmup_file(path: str, logs: Iterable[prediction_log_pb2.PredictionLog]) -> str:
  """Writes `logs` as a TFRecord file at `path` (creating its directory); returns `path`."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as writer:
    for log in logs:
      writer.write(log.SerializeToString())
  return path


def read_warmup_file(path: str) -> List[prediction_log_pb2.PredictionLog]:
  """Parses every record of a warmup file (raises on a corrupt record)."""
  logs = []
  for record in tf.data.TFRecordDataset(path):
    log = prediction_log_pb2.PredictionLog()
    log.ParseFromString(record.numpy())
    logs.append(log)
  return logs
