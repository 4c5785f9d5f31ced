"""Clients of a served purifier: gRPC (official PredictionServiceStub) and REST (JSON).

    with connect("grpc://127.0.0.1:8500", "purifier") as client:     # or "http://...:8501"
      out = client.purify(images, seed=[0, 7], num_steps=100, num_repeats=4)
      out["purified"], out["logits"], out["class_ids"], out["energies"]

Both clients have the same methods and return numpy arrays in the signature's dtypes. Failed
requests raise `ServingError` with the server's canonical code ("INVALID_ARGUMENT", ...), the
HTTP status for REST, and the server's message. Requests are retried with exponential backoff on
transient failures (server unavailable or overloaded, connection refused/reset); a prediction
with a fixed seed is deterministic, so a retry cannot change the answer. Timeouts are not
retried (the server may still be working on the request).
"""

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from export import warmup

DEFAULT_SIGNATURE = "serving_default"
_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_HTTP_TO_CODE = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED",
                 499: "CANCELLED", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE",
                 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_RETRYABLE_CODES = ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "ABORTED")


class ServingError(Exception):
  """A failed request.

  Attributes:
    code: canonical status name, e.g. "INVALID_ARGUMENT" (bad input), "NOT_FOUND",
      "UNAVAILABLE", "DEADLINE_EXCEEDED".
    message: the server's message (for bad input it names the input and the expectation).
    http_status: the HTTP status for REST requests, else None.
  """

  def __init__(self, code: str, message: str, http_status: Optional[int] = None):
    super().__init__(f"{code}: {message}")
    self.code = code
    self.message = message
    self.http_status = http_status


def _retrying(call: Callable[[], object], max_attempts: int, backoff_s: float):
  """Runs `call`, retrying ServingErrors with a retryable code; at most `max_attempts` calls."""
  for attempt in range(max_attempts):
    try:
      return call()
    except ServingError as error:
      if error.code not in _RETRYABLE_CODES or attempt == max_attempts - 1:
        raise
      time.sleep(min(backoff_s * 2 ** attempt, 5.0))
  raise AssertionError("unreachable")


def _control_inputs(images, seed, num_steps, num_repeats, signature_name
                    ) -> Dict[str, np.ndarray]:
  """Request inputs for the purify signatures; controls left as None are not sent."""
  images = np.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"images must have shape [batch, H, W, C]; got {images.shape}")
  dtype = np.uint8 if signature_name == "serving_uint8" else np.float32
  if signature_name == "serving_uint8" and images.dtype != np.uint8:
    raise ValueError(f"serving_uint8 takes uint8 images in [0, 255]; got {images.dtype}")
  inputs = {"images": images.astype(dtype, copy=False)}
  if seed is not None:
    seed = np.asarray(seed, dtype=np.int64)
    if seed.shape != (2,):
      raise ValueError(f"seed must be two integers; got {seed.tolist()}")
    inputs["seed"] = seed
  if num_steps is not None:
    inputs["num_steps"] = np.int32(num_steps)
  if num_repeats is not None:
    inputs["num_repeats"] = np.int32(num_repeats)
  return inputs


class _ClientBase:
  """Shared `purify` and context-manager plumbing."""

  def predict(self, inputs: Mapping[str, np.ndarray], signature_name: str = DEFAULT_SIGNATURE,
              version: Optional[int] = None, output_filter: Sequence[str] = ()
              ) -> Dict[str, np.ndarray]:
    raise NotImplementedError

  def purify(self, images, *, seed=None, num_steps: Optional[int] = None,
             num_repeats: Optional[int] = None, signature_name: str = DEFAULT_SIGNATURE,
             version: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Purifies (and, for classifier exports, classifies) a batch of images.

    Args:
      images: [B, H, W, C] float in [-1, 1] (uint8 in [0, 255] for "serving_uint8").
      seed: two ints, the stateless seed (None: the signature default [0, 0]).
      num_steps: Langevin steps (None: the export's default).
      num_repeats: EOT repeats whose logits are averaged (None: the export's default).
      signature_name: "serving_default", "purify" or "serving_uint8".
      version: a model version (None: the newest served).

    Returns:
      The signature's outputs, e.g. purified [B,H,W,C] float32, energies [B] float32, logits
      [B,N] float32, class_ids [B] int64 (see export/purifier_module.py).

    Raises:
      ServingError: the server rejected or failed the request.
      ValueError: images not of rank 4, or a seed that is not two integers.
    """
    inputs = _control_inputs(images, seed, num_steps, num_repeats, signature_name)
    return self.predict(inputs, signature_name, version)

  def purify_batchable(self, images, seeds, version: Optional[int] = None
                       ) -> Dict[str, np.ndarray]:
    """Purifies images with one seed per image (the `purify_batchable` signature).

    Steps and repeats are the export's (`batchable_num_steps`, `batchable_num_repeats`). Image
    i's answer depends only on images[i] and seeds[i], so a server with `--enable_batching` may
    merge this request with others without changing it.

    Args:
      images: [B, H, W, C] float in [-1, 1].
      seeds: [B, 2] integers, one stateless seed per image.
      version: a model version (None: the newest served).

    Returns:
      purified [B,H,W,C] float32, energies [B] float32, and for classifier exports logits [B,N]
      float32 and class_ids [B] int64.

    Raises:
      ServingError: the server rejected or failed the request.
      ValueError: images not of rank 4, or seeds not of shape [B, 2].
    """
    images = np.asarray(images, np.float32)
    seeds = np.asarray(seeds, np.int64)
    if images.ndim != 4:
      raise ValueError(f"images must have shape [batch, H, W, C]; got {images.shape}")
    if seeds.shape != (images.shape[0], 2):
      raise ValueError(f"seeds must have shape [batch, 2] = [{images.shape[0]}, 2]; got "
                       f"{seeds.shape}")
    return self.predict({"images": images, "seeds": seeds}, "purify_batchable", version)

  def energy(self, images, version: Optional[int] = None) -> np.ndarray:
    """Energies [B] float32 of images [B,H,W,C] in [-1, 1] (the "energy" signature)."""
    return self.predict({"images": np.asarray(images, np.float32)}, "energy", version)["energies"]

  def close(self) -> None:
    pass

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


class GrpcPurifierClient(_ClientBase):
  """gRPC client using the official `PredictionServiceStub` and `ModelServiceStub`."""

  def __init__(self, target: str, model_name: str = "purifier", *, timeout_s: float = 60.0,
               max_attempts: int = 3, backoff_s: float = 0.2):
    """Opens an insecure channel to `target` ("host:port").

    Args:
      target: the server's gRPC address, e.g. "127.0.0.1:8500".
      model_name: the served model name.
      timeout_s: deadline of each call.
      max_attempts: calls per request, >= 1 (retries only on transient failures).
      backoff_s: first retry delay; doubles per retry (capped at 5 s).
    """
    if max_attempts < 1:
      raise ValueError(f"max_attempts must be >= 1; got {max_attempts}")
    self.model_name = model_name
    self.timeout_s = timeout_s
    self._attempts, self._backoff = max_attempts, backoff_s
    self._channel = grpc.insecure_channel(target, options=[
        ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES)])
    self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
    self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

  def _call(self, method, request):
    def once():
      try:
        return method(request, timeout=self.timeout_s)
      except grpc.RpcError as error:
        raise ServingError(error.code().name, error.details() or "") from None
    return _retrying(once, self._attempts, self._backoff)

  def predict(self, inputs, signature_name=DEFAULT_SIGNATURE, version=None, output_filter=()):
    """Sends a PredictRequest; returns {output name: array}. Raises ServingError."""
    request = warmup.make_predict_request(self.model_name, signature_name, inputs, version)
    request.output_filter.extend(output_filter)
    response = self._call(self._predictions.Predict, request)
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

  def metadata(self, version: Optional[int] = None) -> Dict[str, object]:
    """The served SignatureDefs by name (GetModelMetadata with metadata_field signature_def)."""
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = self.model_name
    if version is not None:
      request.model_spec.version.value = version
    response = self._call(self._predictions.GetModelMetadata, request)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return dict(signature_map.signature_def)

  def status(self, version: Optional[int] = None) -> List[Tuple[int, str]]:
    """[(version, state name)] from ModelService.GetModelStatus, e.g. [(3, "AVAILABLE")]."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = self.model_name
    if version is not None:
      request.model_spec.version.value = version
    response = self._call(self._models.GetModelStatus, request)
    state_name = get_model_status_pb2.ModelVersionStatus.State.Name
    return [(s.version, state_name(s.state)) for s in response.model_version_status]

  def close(self) -> None:
    self._channel.close()


class RestPurifierClient(_ClientBase):
  """REST client (stdlib urllib): columnar "inputs" requests, dtypes from the model metadata.

  Controls left as None are filled in from the SignatureDef defaults (read once from
  /metadata), because TF Serving's REST API expects every named input in an "inputs" object.
  """

  def __init__(self, base_url: str, model_name: str = "purifier", *, timeout_s: float = 60.0,
               max_attempts: int = 3, backoff_s: float = 0.2):
    """`base_url` is e.g. "http://127.0.0.1:8501"; other arguments as GrpcPurifierClient."""
    if max_attempts < 1:
      raise ValueError(f"max_attempts must be >= 1; got {max_attempts}")
    self.base_url = base_url.rstrip("/")
    self.model_name = model_name
    self.timeout_s = timeout_s
    self._attempts, self._backoff = max_attempts, backoff_s
    self._signatures = None

  def _url(self, version: Optional[int], suffix: str = "") -> str:
    path = f"{self.base_url}/v1/models/{self.model_name}"
    if version is not None:
      path += f"/versions/{int(version)}"
    return path + suffix

  def _request(self, url: str, body: Optional[dict] = None) -> dict:
    data = None if body is None else json.dumps(body).encode()

    def once():
      request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                       headers={"Content-Type": "application/json"})
      try:
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
          return json.loads(response.read())
      except urllib.error.HTTPError as error:
        try:
          message = json.loads(error.read()).get("error", "")
        except ValueError:
          message = str(error)
        raise ServingError(_HTTP_TO_CODE.get(error.code, "UNKNOWN"), message,
                           error.code) from None
      except (socket.timeout, TimeoutError) as error:
        raise ServingError("DEADLINE_EXCEEDED", f"no answer within {self.timeout_s} s: "
                           f"{error}") from None
      except (urllib.error.URLError, ConnectionError) as error:
        raise ServingError("UNAVAILABLE", f"cannot reach {url}: {error}") from None
    return _retrying(once, self._attempts, self._backoff)

  def metadata(self, version: Optional[int] = None) -> Dict[str, object]:
    """The served SignatureDefs by name (GET /v1/models/<name>/metadata)."""
    body = self._request(self._url(version, "/metadata"))
    signature_map = json_format.ParseDict(body["metadata"]["signature_def"],
                                          get_model_metadata_pb2.SignatureDefMap(),
                                          ignore_unknown_fields=True)
    return dict(signature_map.signature_def)

  def status(self, version: Optional[int] = None) -> List[Tuple[int, str]]:
    """[(version, state name)] from GET /v1/models/<name>[/versions/<v>]."""
    body = self._request(self._url(version))
    return [(int(s["version"]), s["state"]) for s in body["model_version_status"]]

  def _signature(self, name: str):
    if self._signatures is None:
      self._signatures = self.metadata()
    if name not in self._signatures:
      raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{name}" not found; '
                         f"served: {sorted(self._signatures)}", 400)
    return self._signatures[name]

  def predict(self, inputs, signature_name=DEFAULT_SIGNATURE, version=None, output_filter=()):
    """POSTs a columnar request; returns {output name: array}. Raises ServingError."""
    signature = self._signature(signature_name)
    values = dict(inputs)
    for name in signature.inputs:
      if name not in values:
        if name not in signature.defaults:
          raise ValueError(f"signature {signature_name!r} needs input {name!r} (no default)")
        values[name] = tf.make_ndarray(signature.defaults[name])
    body = {"signature_name": signature_name,
            "inputs": {k: np.asarray(v).tolist() for k, v in values.items()}}
    outputs = self._request(self._url(version, ":predict"), body)["outputs"]
    names = sorted(signature.outputs)
    if not isinstance(outputs, dict):
      outputs = {names[0]: outputs}
    result = {}
    for name, value in outputs.items():
      dtype = tf.dtypes.as_dtype(signature.outputs[name].dtype).as_numpy_dtype
      result[name] = np.asarray(value, dtype=dtype)
    if output_filter:
      result = {k: result[k] for k in output_filter}
    return result


def connect(url: str, model_name: str = "purifier", **kwargs) -> _ClientBase:
  """A client for `url`: "grpc://host:port" or "host:port" (gRPC), "http(s)://host:port" (REST).

  `kwargs` go to the client (timeout_s, max_attempts, backoff_s).
  """
  if url.startswith(("http://", "https://")):
    return RestPurifierClient(url, model_name, **kwargs)
  target = url[len("grpc://"):] if url.startswith("grpc://") else url
  if not target or "/" in target:
    raise ValueError(f"expected grpc://host:port, host:port or http(s)://host:port; got {url!r}")
  return GrpcPurifierClient(target, model_name, **kwargs)
