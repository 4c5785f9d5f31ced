"""The project's one checkpoint format: the full training state in a `tf.train.Checkpoint`.

A `Checkpointer` bundles every trackable the run needs to resume (networks, optimizers with their
slots, persistent banks, the step variable, RNG state) into one `tf.train.Checkpoint`, and keeps the
newest `max_to_keep` of them with a `tf.train.CheckpointManager` under
`<directory>/ckpt-<step>.{index,data-*}` plus the manager's `<directory>/checkpoint` state file.

How a save becomes visible (read in TF 2.21's `checkpoint/checkpoint_management.py`,
`checkpoint/checkpoint.py` and `checkpoint/functional_saver.py`, and in the C++ tensor-bundle
writer they call, `core/util/tensor_bundle/tensor_bundle.cc`, which the wheel does not ship):

1. `Checkpoint._write` has each shard's `BundleWriter` write `<prefix>_temp/part-*` through
   `.tempstate<random>` files renamed into place, then `MergeV2Checkpoints` renames the data files
   to `<prefix>.data-*` and writes `<prefix>.index`. That final index is written in place, not via
   a rename, so the `ckpt-<step>` files alone are not atomic.
2. Only after that write returns does `CheckpointManager` run its write callback, which records the
   new path in the `checkpoint` state file with TensorFlow's `atomic_write_string_to_file` (a temporary
   file renamed over the old one on file systems with atomic rename: local disks, not GCS/S3).
3. `restore_latest` reads only the paths listed in that state file, so a save that dies before
   step 2 leaves the previous checkpoint as the newest one. Nothing in steps 1-2 fsyncs, so a power
   loss could still leave a listed checkpoint with unwritten bytes: `save` therefore fsyncs the new
   bundle (a write callback that runs before the manager's) and then the state file, and
   `restore_latest` reads every tensor of a candidate (the bundle stores a CRC32C per tensor)
   before restoring it, falling back to an older checkpoint if any read fails.

Re-saving an existing step overwrites its files in place; a crash in the middle leaves a bundle
whose index and data disagree, which the CRC check rejects, so the fallback covers that case too.
"""

import os
import re
from typing import List, Optional

from absl import logging
import tensorflow as tf

from ebm_tf.internal import file_io

CHECKPOINT_NAME = "ckpt"
_STATE_FILE = "checkpoint"  # CheckpointManager's state file name.


class CheckpointMismatchError(ValueError):
  """A readable checkpoint does not fit the objects being restored (the wrong model or config)."""


class UnreadableCheckpointError(RuntimeError):
  """A checkpoint's files are missing, truncated or corrupt (or, for `restore_latest`, all are)."""


class Checkpointer:
  """Saves and restores the full training state; keeps the newest `max_to_keep` checkpoints.

  Under a `tf.distribute` strategy, construct the Checkpointer (and build the models and optimizer
  slots it tracks) inside `strategy.scope()`, and call `restore_latest` there too, so restored
  values land in the distributed variables. Under MultiWorkerMirroredStrategy every worker must
  call `save` (the save reads distributed variables collectively); non-chief workers should give
  a private `directory` they delete afterwards.

  Build every network (call it once) and every optimizer (`optimizer.build(variables)`) before
  `restore_latest`: objects created later are restored lazily when they are created, and the
  structure check below only covers objects that exist at restore time.
  """

  def __init__(self, directory: str, max_to_keep: Optional[int] = 5, **trackables):
    """Tracks `trackables` in one checkpoint stored under `directory`.

    Args:
      directory: checkpoint directory (created on the first save); local path or a `gs://` URL.
      max_to_keep: number of newest checkpoints kept on disk, a positive int, or None to keep all.
      **trackables: the state to save, by name: Keras models, optimizers, `tf.Module`s (banks),
        `tf.Variable`s (the step counter), `tf.random.Generator`s, any `tf.train.Checkpoint`-able
        object. The names are part of the format: restoring needs the same names.

    Raises:
      ValueError: `directory` empty, `max_to_keep` not a positive int or None, no trackables, or a
        value that is not trackable.
    """
    if not directory or not isinstance(directory, (str, os.PathLike)):
      raise ValueError(f"directory must be a non-empty path; got {directory!r}")
    if max_to_keep is not None and (isinstance(max_to_keep, bool) or
                                    not isinstance(max_to_keep, int) or max_to_keep < 1):
      raise ValueError(f"max_to_keep must be a positive int or None; got {max_to_keep!r}")
    if not trackables:
      raise ValueError("Checkpointer needs at least one trackable object (model, optimizer, "
                       "variable, ...) passed by keyword; got none")
    for name, value in trackables.items():
      if not isinstance(value, tf.__internal__.tracking.Trackable):
        raise ValueError(f"trackable {name!r} must be a tf.Variable, tf.Module, Keras model or "
                         f"optimizer or another trackable object; got {type(value).__name__}")
    self._directory = os.fspath(directory)
    self._names = tuple(sorted(trackables))
    self._checkpoint = tf.train.Checkpoint(**trackables)
    self._manager = tf.train.CheckpointManager(
        self._checkpoint, self._directory, max_to_keep=max_to_keep,
        checkpoint_name=CHECKPOINT_NAME)

  @property
  def checkpoint(self) -> tf.train.Checkpoint:
    """The underlying `tf.train.Checkpoint`."""
    return self._checkpoint

  @property
  def directory(self) -> str:
    return self._directory

  @property
  def latest_path(self) -> Optional[str]:
    """Prefix of the newest checkpoint recorded in the state file (may be unreadable), or None."""
    return self._manager.latest_checkpoint

  @property
  def all_paths(self) -> List[str]:
    """Prefixes of the kept checkpoints, oldest first, as recorded in the state file."""
    return self._manager.checkpoints

  def path_for_step(self, step: int) -> str:
    """The prefix `save(step)` writes: `<directory>/ckpt-<step>`."""
    return os.path.join(self._directory, f"{CHECKPOINT_NAME}-{_as_step(step)}")

  def save(self, step: int) -> str:
    """Writes the tracked state as the checkpoint for `step` and returns its prefix.

    The checkpoint becomes visible to `restore_latest` only once its files are complete and synced
    to disk (see the module docstring); then the state file is updated atomically and checkpoints
    beyond `max_to_keep` are deleted. Saving a step that already has a checkpoint overwrites it.

    Args:
      step: the training step, an int >= 0 (or an integer scalar tensor / variable).

    Returns:
      The checkpoint prefix, `<directory>/ckpt-<step>`.

    Raises:
      ValueError: `step` is not a non-negative integer.
      tf.errors.OpError: the write failed; the previously saved checkpoints are unchanged.
    """
    step = _as_step(step)
    options = tf.train.CheckpointOptions(experimental_write_callbacks=[_fsync_bundle])
    path = self._manager.save(checkpoint_number=step, options=options)
    file_io.fsync_paths([os.path.join(self._directory, _STATE_FILE)])
    return path

  def restore(self, path: str, expect_partial: bool = False) -> str:
    """Restores the checkpoint at prefix `path` (e.g. `path_for_step(5000)`); returns `path`.

    Every tensor is read and checksummed first, so a damaged checkpoint changes nothing. Every
    object tracked by this Checkpointer that exists now must then find its value in the
    checkpoint with the same shape (`assert_existing_objects_matched`). Values in the checkpoint
    with no object here (e.g. loading only the EBM from a full training checkpoint) are allowed;
    `expect_partial=True` silences TensorFlow's warnings about them.

    Raises:
      UnreadableCheckpointError: a file of the checkpoint is missing, truncated or corrupt.
      CheckpointMismatchError: the checkpoint is readable but does not fit the tracked objects.
    """
    try:
      _read_all_tensors(path)
    except Exception as error:  # pylint: disable=broad-except
      raise UnreadableCheckpointError(
          f"checkpoint {path} cannot be read: {type(error).__name__}: {_one_line(error)}"
      ) from error
    return self._restore_readable(path, expect_partial)

  def _restore_readable(self, path: str, expect_partial: bool = False) -> str:
    try:
      status = self._checkpoint.restore(path)
      status.assert_existing_objects_matched()
    except (AssertionError, ValueError, TypeError, tf.errors.OpError) as error:
      raise CheckpointMismatchError(
          f"checkpoint {path} does not match the objects being restored "
          f"({', '.join(self._names)}): {error}. Is it from another model, dataset or "
          f"config? Use another directory for a fresh run.") from error
    if expect_partial:
      status.expect_partial()
    return path

  def restore_latest(self) -> Optional[str]:
    """Restores the newest checkpoint that reads back cleanly.

    Candidates are the checkpoints listed in the state file, newest first. A candidate whose files
    are missing, truncated or corrupt (any tensor fails to read or its checksum) is skipped with a
    WARNING naming it and the error, and the previous one is tried. A readable checkpoint that
    does not fit the tracked objects raises instead of falling back.

    Returns:
      The restored checkpoint prefix, or None when the directory holds no checkpoint (a fresh
      start).

    Raises:
      CheckpointMismatchError: the newest readable checkpoint is of another model or config.
      UnreadableCheckpointError: checkpoints are listed but none of them is readable.
    """
    candidates = self._candidates()
    failures = []
    for path in reversed(candidates):
      try:
        _read_all_tensors(path)
      except Exception as error:  # pylint: disable=broad-except
        # Any failure while only reading the files means this checkpoint is unusable.
        logging.warning("checkpoint %s is unreadable (%s: %s); trying the previous one", path,
                        type(error).__name__, _one_line(error))
        failures.append(f"{path}: {type(error).__name__}: {_one_line(error)}")
        continue
      return self._restore_readable(path)
    if failures:
      raise UnreadableCheckpointError(
          f"none of the {len(failures)} checkpoints in {self._directory} can be read: "
          + "; ".join(failures) + ". Move the directory aside to start afresh.")
    return None

  def _candidates(self) -> List[str]:
    """Checkpoint prefixes to try, oldest first."""
    paths = list(self._manager.checkpoints)
    latest = self._manager.latest_checkpoint
    if latest and latest not in paths:
      paths.append(latest)
    if paths:
      return paths
    # No (readable) state file: checkpoints saved here would otherwise be silently ignored and
    # later overwritten, so fall back to the files on disk, ordered by step.
    found = []
    if tf.io.gfile.isdir(self._directory):
      for name in tf.io.gfile.listdir(self._directory):
        match = re.fullmatch(rf"{CHECKPOINT_NAME}-(\d+)\.index", name)
        if match:
          found.append((int(match.group(1)), os.path.join(self._directory, name[:-len(".index")])))
    if found:
      logging.warning("no usable '%s' state file in %s, but %d checkpoint(s) on disk; trying "
                      "them newest step first", _STATE_FILE, self._directory, len(found))
    return [path for _, path in sorted(found)]


def _as_step(step) -> int:
  """`step` as a Python int >= 0; accepts ints, numpy integers and integer scalar tensors."""
  if isinstance(step, (tf.Tensor, tf.Variable)):
    if not step.dtype.is_integer or step.shape.rank != 0:
      raise ValueError(f"step must be an integer scalar; got a {step.dtype.name} tensor of shape "
                       f"{step.shape}")
    step = int(step.numpy())
  elif hasattr(step, "dtype") and hasattr(step, "item"):  # numpy scalar
    if getattr(step, "ndim", 0) != 0 or step.dtype.kind not in "iu":
      raise ValueError(f"step must be an integer scalar; got {step!r}")
    step = int(step.item())
  if isinstance(step, bool) or not isinstance(step, int) or step < 0:
    raise ValueError(f"step must be an int >= 0; got {step!r}")
  return step


def _read_all_tensors(path: str) -> None:
  """Reads every tensor of the checkpoint at `path`; raises if any file is missing or corrupt."""
  reader = tf.train.load_checkpoint(path)
  dtypes = reader.get_variable_to_dtype_map()
  for key in reader.get_variable_to_shape_map():
    # Variant tensors (e.g. a tf.data iterator's state) have no numpy form; their bytes are
    # still checksummed when the restore itself reads them.
    if dtypes[key] != tf.variant:
      reader.get_tensor(key)


def _one_line(error: BaseException) -> str:
  text = " ".join(str(error).split())
  return text if len(text) <= 300 else text[:297] + "..."


def _fsync_bundle(save_path: str) -> None:
  """Flushes the files of the checkpoint at prefix `save_path` (and their directory) to disk.

  Runs as a write callback before CheckpointManager's own, so an I/O error here fails the save
  before the state file names the new checkpoint.
  """
  if not file_io.is_local(save_path):
    return
  directory, base = os.path.split(save_path)
  names = os.listdir(directory or ".")
  files = [os.path.join(directory, n) for n in names
           if n == base + ".index" or n.startswith(base + ".data-")]
  file_io.fsync_paths(files)


def restore_from_run(run_dir_or_prefix: str, **trackables) -> str:
  """Restores only `trackables` (e.g. `generator=model`) from another run's checkpoint.

  Args:
    run_dir_or_prefix: a training run's model_dir (its newest checkpoint in `checkpoints/` is
      used), a checkpoint directory, or a checkpoint prefix such as `.../ckpt-5000`.
    **trackables: objects to restore, under the keys the run saved them with.

  Returns:
    The checkpoint prefix restored.

  Raises:
    FileNotFoundError: no checkpoint there.
    CheckpointMismatchError: the checkpoint lacks one of the objects or their shapes differ.
  """
  path = run_dir_or_prefix
  if tf.io.gfile.isdir(path):
    subdir = os.path.join(path, "checkpoints")
    path = tf.train.latest_checkpoint(subdir if tf.io.gfile.isdir(subdir) else path)
  if not path or not tf.io.gfile.exists(path + ".index"):
    raise FileNotFoundError(f"no checkpoint found at {run_dir_or_prefix!r} (expected a run's "
                            "model_dir, a checkpoint directory, or a prefix like .../ckpt-5000)")
  try:
    tf.train.Checkpoint(**trackables).restore(path).expect_partial(
    ).assert_existing_objects_matched()
  except (AssertionError, ValueError) as error:
    raise CheckpointMismatchError(
        f"checkpoint {path} does not hold {sorted(trackables)} as built here: "
        f"{_one_line(error)}") from None
  return path
