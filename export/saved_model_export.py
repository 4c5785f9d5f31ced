"""Writes a versioned SavedModel for TF Serving without ever exposing a half-written version.

Layout written under `export_base`:

    <export_base>/models.config                 ModelServerConfig (this model's entry updated)
    <export_base>/batching_parameters.txt        BatchingParameters
    <export_base>/<model_name>/<version>/        saved_model.pb, variables/, assets.extra/
        assets.extra/tf_serving_warmup_requests  PredictionLog TFRecords
        assets.extra/export_info.json            what was exported (config, checkpoints)

The version is written into `<model_name>/.tmp-export-<random>/` (TF Serving only watches
directories whose name is an integer), synced to disk, and then renamed to `<version>` in one
`os.rename` on the same file system, so a version directory either does not exist or is
complete. A crash leaves only the hidden temporary directory, which the next export ignores.
Versions increase monotonically: a new export gets the highest existing version + 1.
"""

import dataclasses
import errno
import json
import os
import shutil
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from ebm_tf.internal import file_io
from export import purifier_module
from export import serving_config
from export import warmup

TEMP_PREFIX = ".tmp-export-"
EXPORT_INFO_FILENAME = "export_info.json"


@dataclasses.dataclass(frozen=True)
class ExportResult:
  """Where an export went: `version_dir` = `<model_dir>/<version>`."""
  version: int
  version_dir: str
  model_dir: str
  models_config_path: str
  batching_parameters_path: str


def list_versions(model_dir: str) -> List[int]:
  """The integer version directories under `model_dir`, ascending (what TF Serving sees)."""
  if not os.path.isdir(model_dir):
    return []
  return sorted(int(name) for name in os.listdir(model_dir)
                if name.isdigit() and os.path.isdir(os.path.join(model_dir, name)))


def warmup_requests(module: purifier_module.PurifierModule, model_name: str,
                    batch_sizes: Sequence[int] = (1,), num_steps: int = 1) -> list:
  """PredictRequests for every signature at each batch size (zero images, seed [0, 0]).

  `num_steps` is small on purpose: the graph (and, with XLA, the compiled program for a batch
  size) is the same for any step count, and warmup runs while the server loads. The
  `purify_batchable` signature runs its export-time `batchable_num_steps` (it has no step input).
  """
  h, w, c = module.config.image_shape
  requests = []
  for batch in batch_sizes:
    if not 1 <= batch <= module.config.max_batch_size:
      raise ValueError(f"warmup batch size must be in [1, {module.config.max_batch_size}]; "
                       f"got {batch}")
    values = {"seed": np.zeros([2], np.int64), "num_steps": np.int32(num_steps),
              "num_repeats": np.int32(1)}
    values["seeds"] = np.zeros([batch, 2], np.int64)
    for signature, names in module.signature_input_names().items():
      images = (np.full([batch, h, w, c], 128, np.uint8)
                if signature == purifier_module.SERVING_UINT8
                else np.zeros([batch, h, w, c], np.float32))
      inputs = {name: (images if name == "images" else values[name]) for name in names}
      requests.append(warmup.make_predict_request(model_name, signature, inputs))
  return requests


def export_saved_model(module: purifier_module.PurifierModule, export_base: str,
                       model_name: str, *, version: Optional[int] = None,
                       warmup_batch_sizes: Sequence[int] = (1,),
                       serving_base_path: Optional[str] = None,
                       export_info: Optional[Mapping[str, Any]] = None,
                       batching_kwargs: Optional[Mapping[str, Any]] = None) -> ExportResult:
  """Saves `module` as `<export_base>/<model_name>/<version>/` and writes the serving configs.

  Args:
    module: the servable (its `signatures()` become the SavedModel signatures, tag "serve").
    export_base: directory holding one subdirectory per model name.
    model_name: the TF Serving model name (the REST path /v1/models/<model_name>).
    version: an explicit version (> every existing one); None for highest existing + 1.
    warmup_batch_sizes: batch sizes of the warmup requests (each signature at each size).
    serving_base_path: the model's base_path as the server sees it (e.g. /models/purifier in a
      container); None for the absolute local path of `<export_base>/<model_name>`.
    export_info: extra JSON-able facts stored in assets.extra/export_info.json.
    batching_kwargs: keyword arguments of `serving_config.batching_parameters_text` other than
      max_batch_size (which is the module's).

  Returns:
    An ExportResult.

  Raises:
    ValueError: `version` is not greater than every existing version, or a bad argument.
    OSError / tf.errors.OpError: writing failed (nothing is published then).
  """
  if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                              or version < 1):
    raise ValueError(f"version must be a positive int or None; got {version!r}")
  model_dir = os.path.join(os.path.abspath(export_base), model_name)
  os.makedirs(model_dir, exist_ok=True)
  existing = list_versions(model_dir)
  if version is not None and existing and version <= existing[-1]:
    raise ValueError(f"version {version} must be greater than the newest existing version "
                     f"{existing[-1]} in {model_dir} (versions only increase)")

  temp_dir = os.path.join(model_dir, f"{TEMP_PREFIX}{uuid.uuid4().hex}")
  try:
    tf.saved_model.save(module, temp_dir, signatures=module.signatures())
    requests = warmup_requests(module, model_name, warmup_batch_sizes)
    warmup.write_warmup_file(warmup.warmup_path(temp_dir), warmup.make_warmup_logs(requests))
    info = {"model_name": model_name, "purifier_config": json.loads(module.config.to_json()),
            "has_classifier": module.has_classifier, "num_classes": module.num_classes,
            "signatures": {k: list(v) for k, v in module.signature_input_names().items()}}
    info.update(export_info or {})
    with open(os.path.join(temp_dir, warmup.ASSETS_EXTRA, EXPORT_INFO_FILENAME), "w") as f:
      json.dump(info, f, indent=2, sort_keys=True)
    file_io.fsync_tree(temp_dir)
    version_dir, version = _publish(temp_dir, model_dir, version)
  except BaseException:
    shutil.rmtree(temp_dir, ignore_errors=True)
    raise

  export_base = os.path.dirname(model_dir)
  models_config_path = os.path.join(export_base, serving_config.MODELS_CONFIG_FILENAME)
  existing_text = None
  if os.path.exists(models_config_path):
    with open(models_config_path) as f:
      existing_text = f.read()
  file_io.write_text_atomic(models_config_path, serving_config.merged_models_config(
      existing_text, serving_config.model_config(model_name, serving_base_path or model_dir)))
  batching_path = os.path.join(export_base, serving_config.BATCHING_FILENAME)
  file_io.write_text_atomic(batching_path, serving_config.batching_parameters_text(
      module.config.max_batch_size, **dict(batching_kwargs or {})))
  return ExportResult(version=version, version_dir=version_dir, model_dir=model_dir,
                      models_config_path=models_config_path,
                      batching_parameters_path=batching_path)


def _publish(temp_dir: str, model_dir: str, version: Optional[int]):
  """Renames `temp_dir` to the next free version directory; returns (path, version)."""
  for _ in range(100):
    existing = list_versions(model_dir)
    candidate = version if version is not None else (existing[-1] + 1 if existing else 1)
    target = os.path.join(model_dir, str(candidate))
    if os.path.exists(target):
      if version is not None:
        raise ValueError(f"version directory {target} appeared during the export")
      continue  # Another exporter published meanwhile; take the next number.
    try:
      os.rename(temp_dir, target)
    except OSError as error:
      if error.errno in (errno.EEXIST, errno.ENOTEMPTY) and version is None:
        continue
      raise
    file_io.fsync_directory(model_dir)
    return target, candidate
  raise RuntimeError(f"could not find a free version directory in {model_dir}")


def read_export_info(version_dir: str) -> Dict[str, Any]:
  """The export_info.json of an exported version."""
  with open(os.path.join(version_dir, warmup.ASSETS_EXTRA, EXPORT_INFO_FILENAME)) as f:
    return json.load(f)
