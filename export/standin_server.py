"""TEST DOUBLE for TF Serving: a loopback stand-in, NOT TensorFlow Serving.

`tensorflow_model_server` cannot be installed on the project's development machines, so the
client and export tests talk to this stand-in instead (and to a real server when
TF_SERVING_GRPC / TF_SERVING_REST point to one). It serves, on 127.0.0.1 only:

- gRPC: the real `tensorflow.serving.PredictionService` (Predict, GetModelMetadata) and
  `tensorflow.serving.ModelService` (GetModelStatus) services, from the servicer base classes
  generated in tensorflow-serving-api, so clients use the official stubs and wire format;
- REST: `POST /v1/models/<name>[/versions/<v>]:predict` (row "instances" and columnar "inputs"
  formats), `GET /v1/models/<name>[/versions/<v>]` (status) and `.../metadata`, with errors as
  `{"error": "..."}`.

What it imitates from TF Serving (read in its sources: predict_util.cc, cc/saved_model/util.cc,
json_tensor.cc): it loads the highest integer version under the model base path with the
TF1 Session loader (tag "serve"), as TF Serving does, and replays
`assets.extra/tf_serving_warmup_requests` before serving (a failed record fails the load);
requests are fed to the signature's tensors by name with no shape check and no dtype
conversion (a wrong dtype is rejected by the executor); missing inputs take the SignatureDef's
default values; graph errors keep their status code (InvalidArgument -> gRPC INVALID_ARGUMENT,
HTTP 400).

What it does NOT test: TF Serving's model loader and file-system polling, version policies
and hot reload, server-side batching, resource limits, monitoring, its REST JSON parser (this
one is a small Python re-implementation), and its performance. Nothing may claim it does.
"""

import concurrent.futures
import http.server
import json
import os
import re
import threading
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import config_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from export import warmup

_DEFAULT_SIGNATURE = "serving_default"
_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
# Error code (tf.errors / google.rpc codes are the same numbers) -> HTTP status, as TF Serving's
# REST handler maps them.
_HTTP_STATUS = {3: 400, 9: 400, 11: 400, 5: 404, 6: 409, 10: 409, 7: 403, 16: 401, 8: 429,
                12: 501, 14: 503, 4: 504, 1: 499}
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


class ServingStatusError(Exception):
  """A failed request: a canonical error code (3 = INVALID_ARGUMENT, ...) and a message."""

  def __init__(self, code: int, message: str):
    super().__init__(message)
    self.code = code
    self.message = message

  @property
  def grpc_code(self) -> grpc.StatusCode:
    return _GRPC_CODES.get(self.code, grpc.StatusCode.UNKNOWN)

  @property
  def http_status(self) -> int:
    return _HTTP_STATUS.get(self.code, 500)


def _invalid(message: str) -> ServingStatusError:
  return ServingStatusError(3, message)


class _LoadedVersion:
  """One SavedModel version loaded in a TF1 Session, as TF Serving's SavedModelBundle."""

  def __init__(self, version_dir: str, version: int):
    self.version = version
    self.version_dir = version_dir
    self._graph = tf.Graph()
    with self._graph.as_default():
      self._session = tf.compat.v1.Session(graph=self._graph)
      meta_graph = tf.compat.v1.saved_model.loader.load(self._session, ["serve"], version_dir)
    self.signatures = {name: sig for name, sig in meta_graph.signature_def.items()
                       if not name.startswith("__")}
    self._callables = {}
    self._lock = threading.Lock()

  def close(self):
    self._session.close()

  def run(self, signature_name: str, inputs: Mapping[str, np.ndarray],
          output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
    """Runs a signature like TF Serving's RunPredict; raises ServingStatusError."""
    name = signature_name or _DEFAULT_SIGNATURE
    signature = self.signatures.get(name)
    if signature is None:
      raise ServingStatusError(9, f'Serving signature key "{name}" not found.')
    extra = sorted(set(inputs) - set(signature.inputs))
    if extra:
      raise _invalid(f"input size does not match signature: {len(inputs)}!="
                     f"{len(signature.inputs)} len({{{','.join(sorted(inputs))}}}) != "
                     f"len({{{','.join(sorted(signature.inputs))}}}). Sent extra: "
                     f"{{{','.join(extra)}}}.")
    feeds, values = [], []
    for alias in sorted(signature.inputs):
      info = signature.inputs[alias]
      if alias in inputs:
        value = inputs[alias]
      elif alias in signature.defaults:
        value = tf.make_ndarray(signature.defaults[alias])
      else:
        raise _invalid(f"Signature input alias: {alias}(feed name: {info.name}) not found in "
                       f"request and no default value provided. Inputs expected to be in the "
                       f"request {{{','.join(sorted(inputs))}}}, or default input alias set: "
                       f"{','.join(sorted(signature.defaults))}")
      feeds.append(info.name)
      values.append(value)
    aliases = list(output_filter) or sorted(signature.outputs)
    for alias in aliases:
      if alias not in signature.outputs:
        raise _invalid(f"output tensor alias not found in signature: {alias} Outputs expected "
                       f"to be in the set {{{','.join(sorted(signature.outputs))}}}.")
    fetches = [signature.outputs[a].name for a in aliases]
    run = self._callable(tuple(feeds), tuple(fetches))
    try:
      outputs = run(*values)
    except tf.errors.OpError as error:
      raise ServingStatusError(error.error_code, error.message) from None
    return dict(zip(aliases, outputs))

  def _callable(self, feeds: Tuple[str, ...], fetches: Tuple[str, ...]):
    # A Session callable feeds arrays as they are (no Python-side shape check or dtype
    # conversion, unlike Session.run), which is what TF Serving's C++ Session::Run does.
    key = (feeds, fetches)
    with self._lock:
      if key not in self._callables:
        options = config_pb2.CallableOptions(feed=list(feeds), fetch=list(fetches))
        make = self._session._make_callable_from_options  # pylint: disable=protected-access
        self._callables[key] = make(options)
      return self._callables[key]


class StandinModelServer:
  """TEST DOUBLE, not TF Serving: serves one model's newest version over loopback gRPC + REST.

  Usage:
    with StandinModelServer("/exports/purifier", "purifier") as server:
      client = GrpcPurifierClient(server.grpc_target, "purifier")
      ...
  """

  def __init__(self, model_base_path: str, model_name: str, *, grpc_port: int = 0,
               rest_port: int = 0, max_workers: int = 8):
    """Loads the newest integer version under `model_base_path` and replays its warmup file.

    Call `start()` (or use it as a context manager) to open the ports; port 0 lets the OS pick.

    Raises:
      FileNotFoundError: no integer version directory under `model_base_path`.
      ServingStatusError: a warmup record failed (the version is not served, as in TF Serving).
    """
    self.model_name = model_name
    self.model_base_path = model_base_path
    self._grpc_port, self._rest_port = grpc_port, rest_port
    self._max_workers = max_workers
    self._grpc_server = None
    self._executor = None
    self._http_server = None
    self._http_thread = None
    self.thread_name_prefix = f"standin-{id(self):x}"  # Names of the threads this server starts.
    self.warmup_replayed = 0
    self._model = self._load_newest()

  # --- model ----------------------------------------------------------------------------------

  def _load_newest(self) -> _LoadedVersion:
    version_dir = latest_version_dir(self.model_base_path)
    if version_dir is None:
      raise FileNotFoundError(f"no integer version directory under {self.model_base_path}")
    model = _LoadedVersion(version_dir, int(os.path.basename(version_dir)))
    path = warmup.warmup_path(version_dir)
    if os.path.exists(path):
      for log in warmup.read_warmup_file(path):
        request = log.predict_log.request
        model.run(request.model_spec.signature_name, _inputs_from_protos(request.inputs),
                  request.output_filter)
        self.warmup_replayed += 1
    return model

  @property
  def version(self) -> int:
    """The served version."""
    return self._model.version

  @property
  def signature_names(self) -> List[str]:
    """The served signature names."""
    return sorted(self._model.signatures)

  def model_for(self, name: str, version: Optional[int]) -> _LoadedVersion:
    if name != self.model_name:
      raise ServingStatusError(5, f"Servable not found for request: Latest({name})")
    if version is not None and version != self._model.version:
      raise ServingStatusError(5, f"Servable not found for request: Specific({name}, {version})")
    return self._model

  def predict(self, name: str, signature_name: str, inputs: Mapping[str, np.ndarray],
              version: Optional[int] = None, output_filter: Sequence[str] = ()
              ) -> Dict[str, np.ndarray]:
    """Runs a prediction in-process (what both front ends call)."""
    return self.model_for(name, version).run(signature_name, inputs, output_filter)

  def status(self, name: str, version: Optional[int] = None
             ) -> get_model_status_pb2.GetModelStatusResponse:
    if name != self.model_name:
      raise ServingStatusError(5, f"Could not find any versions of model {name}")
    model = self.model_for(name, version)
    response = get_model_status_pb2.GetModelStatusResponse()
    status = response.model_version_status.add()
    status.version = model.version
    status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    return response

  def metadata(self, name: str, version: Optional[int] = None,
               fields: Sequence[str] = ("signature_def",)
               ) -> get_model_metadata_pb2.GetModelMetadataResponse:
    if not fields:
      raise _invalid("GetModelMetadataRequest must specify at least one metadata_field")
    unsupported = [f for f in fields if f != "signature_def"]
    if unsupported:
      raise _invalid(f"Metadata field {unsupported[0]} is not supported")
    model = self.model_for(name, version)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = name
    response.model_spec.version.value = model.version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in model.signatures.items():
      signature_map.signature_def[key].CopyFrom(signature)
    response.metadata["signature_def"].Pack(signature_map)
    return response

  # --- lifecycle ------------------------------------------------------------------------------

  @property
  def grpc_target(self) -> str:
    return f"127.0.0.1:{self._grpc_port}"

  @property
  def rest_url(self) -> str:
    return f"http://127.0.0.1:{self._rest_port}"

  def start(self) -> "StandinModelServer":
    """Opens the gRPC and REST ports on 127.0.0.1 and starts serving."""
    options = [("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
               ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
               ("grpc.so_reuseport", 0)]
    self._executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=self._max_workers, thread_name_prefix=f"{self.thread_name_prefix}-grpc")
    self._grpc_server = grpc.server(self._executor, options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _PredictionServicer(self), self._grpc_server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelServicer(self),
                                                              self._grpc_server)
    self._grpc_port = self._grpc_server.add_insecure_port(f"127.0.0.1:{self._grpc_port}")
    self._grpc_server.start()

    handler = type("Handler", (_RestHandler,), {"server_ref": self})
    self._http_server = http.server.ThreadingHTTPServer(("127.0.0.1", self._rest_port), handler)
    self._http_server.daemon_threads = False
    self._http_server.block_on_close = True  # server_close() joins the request threads.
    self._rest_port = self._http_server.server_address[1]
    self._http_thread = threading.Thread(target=self._http_server.serve_forever,
                                         kwargs={"poll_interval": 0.05},
                                         name=f"{self.thread_name_prefix}-rest", daemon=True)
    self._http_thread.start()
    return self

  def stop(self, grace_s: float = 1.0) -> None:
    """Stops both front ends, joins their threads and closes the Session."""
    if self._grpc_server is not None:
      self._grpc_server.stop(grace_s).wait(timeout=grace_s + 5)
      self._grpc_server = None
      self._executor.shutdown(wait=True)
    if self._http_server is not None:
      self._http_server.shutdown()
      self._http_server.server_close()
      self._http_thread.join(timeout=grace_s + 5)
      self._http_server = None
    self._model.close()

  def __enter__(self):
    return self.start()

  def __exit__(self, *exc):
    self.stop()


def _inputs_from_protos(protos) -> Dict[str, np.ndarray]:
  try:
    return {name: tf.make_ndarray(proto) for name, proto in protos.items()}
  except Exception as error:  # pylint: disable=broad-except
    raise _invalid(f"tensor parsing error: {error}") from None


def _version_of(model_spec) -> Optional[int]:
  if model_spec.HasField("version_label"):
    raise _invalid("version_label is not supported by the stand-in")
  return model_spec.version.value if model_spec.HasField("version") else None


class _PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """tensorflow.serving.PredictionService over the stand-in (Predict, GetModelMetadata)."""

  def __init__(self, server: StandinModelServer):
    self._server = server

  def Predict(self, request, context):  # pylint: disable=invalid-name
    try:
      version = _version_of(request.model_spec)
      outputs = self._server.predict(request.model_spec.name, request.model_spec.signature_name,
                                     _inputs_from_protos(request.inputs), version,
                                     list(request.output_filter))
    except ServingStatusError as error:
      context.abort(error.grpc_code, error.message)
    response = predict_pb2.PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = self._server.version
    response.model_spec.signature_name = request.model_spec.signature_name or _DEFAULT_SIGNATURE
    for name, value in outputs.items():
      response.outputs[name].CopyFrom(warmup.tensor_proto(value))
    return response

  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    try:
      return self._server.metadata(request.model_spec.name, _version_of(request.model_spec),
                                   list(request.metadata_field))
    except ServingStatusError as error:
      context.abort(error.grpc_code, error.message)


class _ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
  """tensorflow.serving.ModelService over the stand-in (GetModelStatus only)."""

  def __init__(self, server: StandinModelServer):
    self._server = server

  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    try:
      return self._server.status(request.model_spec.name, _version_of(request.model_spec))
    except ServingStatusError as error:
      context.abort(error.grpc_code, error.message)


_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?"
                   r"(?P<suffix>/metadata|:predict)?$")


class _RestHandler(http.server.BaseHTTPRequestHandler):
  """The REST subset of TF Serving: predict (row and columnar), status, metadata."""

  server_ref: StandinModelServer = None
  # One request per connection, and a socket timeout, so `stop()` can join every handler thread.
  protocol_version = "HTTP/1.0"
  timeout = 30

  def log_message(self, *args):  # Quiet: tests run many requests.
    del args

  def _reply(self, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def _route(self, method: str):
    match = _PATH.match(self.path)
    suffix = match.group("suffix") if match else None
    if (not match or (method == "GET" and suffix == ":predict")
        or (method == "POST" and suffix != ":predict")):
      raise ServingStatusError(
          5 if method == "GET" else 3, f"Malformed request: {method} {self.path}")
    version = int(match.group("version")) if match.group("version") else None
    return match.group("name"), version, suffix

  def do_GET(self):  # pylint: disable=invalid-name
    try:
      name, version, suffix = self._route("GET")
      if suffix == "/metadata":
        response = self.server_ref.metadata(name, version)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        body = {"model_spec": {"name": name, "signature_name": "",
                               "version": str(response.model_spec.version.value)},
                "metadata": {"signature_def": json_format.MessageToDict(
                    signature_map, preserving_proto_field_name=True)}}
      else:
        response = self.server_ref.status(name, version)
        body = {"model_version_status": [
            {"version": str(s.version), "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}}
            for s in response.model_version_status]}
      self._reply(200, body)
    except ServingStatusError as error:
      self._reply(error.http_status, {"error": error.message})

  def do_POST(self):  # pylint: disable=invalid-name
    try:
      name, version, _ = self._route("POST")
      length = int(self.headers.get("Content-Length") or 0)
      try:
        body = json.loads(self.rfile.read(length) or b"")
      except ValueError as error:
        raise _invalid(f"JSON Parse error: {error}") from None
      if not isinstance(body, dict):
        raise _invalid("JSON Value: request body is not an object")
      signature_name = body.get("signature_name", "") or _DEFAULT_SIGNATURE
      if not isinstance(signature_name, str):
        raise _invalid("'signature_name' must be a string")
      model = self.server_ref.model_for(name, version)
      signature = model.signatures.get(signature_name)
      if signature is None:
        raise ServingStatusError(9, f'Serving signature key "{signature_name}" not found.')
      inputs, row_format = _json_to_inputs(body, signature)
      outputs = model.run(signature_name, inputs)
      self._reply(200, _outputs_to_json(outputs, row_format))
    except ServingStatusError as error:
      self._reply(error.http_status, {"error": error.message})


def _to_array(value, name: str, info) -> np.ndarray:
  dtype = tf.dtypes.as_dtype(info.dtype).as_numpy_dtype
  try:
    raw = np.asarray(value)
  except ValueError:
    raise _invalid(f"Encountered list at unexpected size for input '{name}'") from None
  if raw.dtype == object:
    raise _invalid(f"Encountered list at unexpected size or a non-number for input '{name}'")
  if np.issubdtype(dtype, np.integer) and raw.size and not np.issubdtype(raw.dtype, np.integer):
    raise _invalid(f"input '{name}': JSON value(s) of type {raw.dtype} are not of expected "
                   f"type {np.dtype(dtype).name}")
  if raw.size and not (np.issubdtype(raw.dtype, np.number) or raw.dtype == bool):
    raise _invalid(f"input '{name}': JSON values are not numbers")
  return raw.astype(dtype)


def _json_to_inputs(body: dict, signature) -> Tuple[Dict[str, np.ndarray], bool]:
  """Request JSON -> (named arrays in the signature's dtypes, whether it used row format)."""
  has_instances, has_inputs = "instances" in body, "inputs" in body
  if has_instances == has_inputs:
    raise _invalid("Missing 'inputs' or 'instances' key" if not has_instances else
                   "Not formatted correctly expecting only one of 'inputs' or 'instances' "
                   "keys to exist")
  names = sorted(signature.inputs)
  if has_instances:
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
      raise _invalid("'instances' must be a non-empty list")
    if isinstance(instances[0], dict):
      for i, item in enumerate(instances):
        if not isinstance(item, dict) or sorted(item) != names:
          raise _invalid(f"Failed to process element: {i} of 'instances' list. JSON object "
                         f"keys must be equal to: {','.join(names)}")
      return {n: _to_array([item[n] for item in instances], n, signature.inputs[n])
              for n in names}, True
    if len(names) != 1:
      raise _invalid("instances is a plain list, but expecting list of objects as multiple "
                     "input tensors required as per tensorinfo_map")
    return {names[0]: _to_array(instances, names[0], signature.inputs[names[0]])}, True
  inputs = body["inputs"]
  if not isinstance(inputs, dict):
    if len(names) != 1:
      raise _invalid("inputs is a plain value/list, but expecting an object as multiple input "
                     "tensors required as per tensorinfo_map")
    return {names[0]: _to_array(inputs, names[0], signature.inputs[names[0]])}, False
  unknown = sorted(set(inputs) - set(names))
  if unknown:
    raise _invalid(f"JSON object: does not have named input: {unknown[0]}")
  missing = [n for n in names if n not in inputs]
  if missing:
    raise _invalid(f"Missing named input: {missing[0]} in 'inputs' object.")
  return {n: _to_array(inputs[n], n, signature.inputs[n]) for n in names}, False


def _outputs_to_json(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict:
  if not row_format:
    if len(outputs) == 1:
      return {"outputs": next(iter(outputs.values())).tolist()}
    return {"outputs": {k: v.tolist() for k, v in outputs.items()}}
  sizes = {k: (v.shape[0] if v.ndim else None) for k, v in outputs.items()}
  batch = next(iter(sizes.values()))
  if any(s is None or s != batch for s in sizes.values()):
    raise _invalid(f"Tensors in the output have inconsistent batch sizes {sizes}; use the "
                   "columnar 'inputs' format")
  if len(outputs) == 1:
    return {"predictions": next(iter(outputs.values())).tolist()}
  lists = {k: v.tolist() for k, v in outputs.items()}
  return {"predictions": [{k: lists[k][i] for k in lists} for i in range(batch)]}


def latest_version_dir(model_base_path: str) -> Optional[str]:
  """The directory the stand-in (and TF Serving's default policy) would serve, or None.

  Only directories named by an integer count; hidden temporary export directories do not.
  """
  if not os.path.isdir(model_base_path):
    return None
  versions = sorted(int(n) for n in os.listdir(model_base_path)
                    if n.isdigit() and os.path.isdir(os.path.join(model_base_path, n)))
  return os.path.join(model_base_path, str(versions[-1])) if versions else None

