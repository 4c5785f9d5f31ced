"""Choosing and configuring the tf.distribute strategy a run uses."""

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")


def split_cpu(num_devices: int) -> None:
  """Splits the first physical CPU into `num_devices` logical devices (a stand-in for GPUs).

  Must run before TensorFlow initialises its devices; a second call with the same count is a
  no-op. `num_devices` <= 1 leaves the CPU as it is.
  """
  if num_devices <= 1:
    return
  cpu = tf.config.list_physical_devices("CPU")[0]
  current = tf.config.get_logical_device_configuration(cpu)
  if current is not None and len(current) == num_devices:
    return
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])
  except RuntimeError as error:
    raise RuntimeError(
        f"cannot split the CPU into {num_devices} logical devices: TensorFlow's devices are "
        f"already initialised ({error}); set --num_cpu_devices before any TF op runs") from None


def make_strategy(name: str = "default", *, num_cpu_devices: int = 0,
                  tpu: str = "") -> tf.distribute.Strategy:
  """Returns the strategy `name` (see STRATEGIES).

  default: `tf.distribute.get_strategy()` (one device, no replica split); one_device: the first
  GPU, else CPU:0; mirrored: all local GPUs, or the logical CPUs made by `num_cpu_devices`;
  multi_worker: MultiWorkerMirroredStrategy configured from the TF_CONFIG environment variable
  (each worker uses its local GPUs, or its `num_cpu_devices` logical CPUs); tpu: TPUStrategy on
  the TPU at `tpu` ('' = 'local', a TPU VM).
  """
  if name not in STRATEGIES:
    raise ValueError(f"strategy must be one of {STRATEGIES}; got {name!r}")
  split_cpu(num_cpu_devices)
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "multi_worker":
    # Before anything initialises TF's runtime (listing logical devices does): collective ops
    # must be configured at program start-up.
    if "TF_CONFIG" not in os.environ:
      raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                       "(cluster spec and this worker's task)")
    json.loads(os.environ["TF_CONFIG"])  # Fail early on malformed JSON.
    implementation = (tf.distribute.experimental.CommunicationImplementation.NCCL
                      if tf.config.list_physical_devices("GPU")
                      else tf.distribute.experimental.CommunicationImplementation.RING)
    options = tf.distribute.experimental.CommunicationOptions(implementation=implementation)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
  gpus = tf.config.list_logical_devices("GPU")
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
  if name == "mirrored":
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)
  address = tpu or "local"
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except (tf.errors.OpError, ValueError, RuntimeError) as error:
    reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else repr(error)
    raise RuntimeError(
        f"--strategy=tpu: no usable TPU at --tpu={address!r} ({type(error).__name__}: {reason}). "
        "On a TPU VM use --tpu=local; elsewhere pass the TPU's name or grpc:// address, or pick "
        f"another --strategy from {STRATEGIES}") from error
  return tf.distribute.TPUStrategy(resolver)


def is_default_strategy(strategy: tf.distribute.Strategy) -> bool:
  """True for TensorFlow's default (no-op) strategy: one replica, plain tf.data iterators."""
  return not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy()


def num_local_replicas(strategy: tf.distribute.Strategy) -> int:
  """Number of replicas that run in this process (all of them except under multi-worker)."""
  if is_default_strategy(strategy):
    return 1  # The default strategy has no worker_devices to ask.
  return len(strategy.extended.worker_devices)


def worker_index(strategy: tf.distribute.Strategy) -> int:
  """This process's index among the workers (0 without a cluster; chief tasks come first)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return 0
  cluster = resolver.cluster_spec().as_dict()
  if resolver.task_type == "worker":
    return len(cluster.get("chief", [])) + int(resolver.task_id)
  return int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True on the worker that writes summaries, sample grids and the main checkpoint."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0
                                                       and "chief" not in
                                                       resolver.cluster_spec().as_dict())
