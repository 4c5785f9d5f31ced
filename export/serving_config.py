"""TF Serving configuration files written beside the exported model.

- `models.config`: a `tensorflow.serving.ModelServerConfig` text proto for
  `tensorflow_model_server --model_config_file=...`. An existing file is updated in place: the
  entry of the same model name is replaced, other models are kept.
- `batching_parameters.txt`: a `tensorflow.serving.BatchingParameters` text proto for
  `--enable_batching --batching_parameters_file=...` (that proto is not in the pip package; the
  field names follow tensorflow_serving/servables/tensorflow/session_bundle_config.proto).

Server-side batching concatenates every input of a request along dimension 0, so it only works
for signatures whose inputs all have a batch dimension: `purify_batchable` (images [B,H,W,C],
seeds [B,2]; steps and repeats fixed at export) and `energy`. The purifier's `serving_default`,
`purify` and `serving_uint8` take per-request `seed` [2] and scalar `num_steps`/`num_repeats`,
which TF Serving's BatchingSession rejects ("input tensors must have at least one dimension" /
"must have equal 0th-dimension size"), so a batching server answers only the batchable
signatures (see the README). The defaults below are for `purify_batchable`: batches up to the
export's max_batch_size, a 10 ms merge window (under 1% of a 1,000-step purification even at
batch 1), no allowed_batch_sizes (the CPU graph runs any batch size, so nothing is padded; give
powers of two for an XLA export, which compiles once per batch size), and 2 batch threads.
"""

from typing import Optional, Sequence

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

MODELS_CONFIG_FILENAME = "models.config"
BATCHING_FILENAME = "batching_parameters.txt"


def model_config(model_name: str, base_path: str, num_versions: int = 1
                 ) -> model_server_config_pb2.ModelConfig:
  """One model's entry: serve the newest `num_versions` integer versions under `base_path`."""
  if not model_name or "/" in model_name:
    raise ValueError(f"model_name must be a non-empty name without '/'; got {model_name!r}")
  if num_versions < 1:
    raise ValueError(f"num_versions must be >= 1; got {num_versions}")
  config = model_server_config_pb2.ModelConfig(name=model_name, base_path=base_path,
                                               model_platform="tensorflow")
  config.model_version_policy.latest.num_versions = num_versions
  return config


def merged_models_config(existing_text: Optional[str],
                         config: model_server_config_pb2.ModelConfig) -> str:
  """Returns `existing_text` (a ModelServerConfig text proto, or None) with `config` added.

  Raises:
    ValueError: `existing_text` does not parse as a ModelServerConfig with a model_config_list.
  """
  server_config = model_server_config_pb2.ModelServerConfig()
  if existing_text:
    try:
      text_format.Parse(existing_text, server_config)
    except text_format.ParseError as error:
      raise ValueError(f"existing models.config is not a ModelServerConfig text proto: "
                       f"{error}") from None
    if server_config.WhichOneof("config") not in (None, "model_config_list"):
      raise ValueError("existing models.config uses custom_model_config; expected "
                       "model_config_list")
  entries = server_config.model_config_list.config
  kept = [c for c in entries if c.name != config.name]
  del entries[:]
  entries.extend(kept + [config])
  return text_format.MessageToString(server_config)


def batching_parameters_text(max_batch_size: int, batch_timeout_micros: int = 10000,
                             max_enqueued_batches: int = 100, num_batch_threads: int = 2,
                             allowed_batch_sizes: Sequence[int] = ()) -> str:
  """A BatchingParameters text proto (wrapper fields written as `name { value: N }`).

  Raises:
    ValueError: a value < 1 (timeout < 0), or allowed_batch_sizes not increasing or not ending at
      max_batch_size (TF Serving's requirement).
  """
  for name, value, low in (("max_batch_size", max_batch_size, 1),
                           ("batch_timeout_micros", batch_timeout_micros, 0),
                           ("max_enqueued_batches", max_enqueued_batches, 1),
                           ("num_batch_threads", num_batch_threads, 1)):
    if int(value) != value or value < low:
      raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
  sizes = [int(s) for s in allowed_batch_sizes]
  if sizes and (sizes != sorted(set(sizes)) or sizes[-1] != max_batch_size or sizes[0] < 1):
    raise ValueError(f"allowed_batch_sizes must increase and end at max_batch_size="
                     f"{max_batch_size}; got {sizes}")
  lines = ["# tensorflow.serving.BatchingParameters for --enable_batching.",
           "# Only signatures whose inputs all have a batch dimension can be batched: here",
           "# 'purify_batchable' (images [B,H,W,C], seeds [B,2]) and 'energy'; a batching server",
           "# rejects the per-request signatures (scalar inputs). See export/serving_config.py.",
           f"max_batch_size {{ value: {int(max_batch_size)} }}",
           f"batch_timeout_micros {{ value: {int(batch_timeout_micros)} }}",
           f"max_enqueued_batches {{ value: {int(max_enqueued_batches)} }}",
           f"num_batch_threads {{ value: {int(num_batch_threads)} }}"]
  lines += [f"allowed_batch_sizes: {s}" for s in sizes]
  return "\n".join(lines) + "\n"
