"""Writing files so that a reader never sees half of one: temp file + fsync + rename.

Everything ebm-tf writes besides TF checkpoints (configs, results, statistics, samples, plots,
serving configs) goes through `atomic_file`: the bytes go to a hidden temporary file in the
destination's directory, are flushed to disk, and the temp file is renamed over the destination
(atomic on POSIX file systems); on any error the temp file is removed and an existing
destination is left as it was. Remote paths (`gs://...`) are written through `tf.io.gfile`,
whose rename is the best that file system offers (TensorFlow is imported only for them).
"""

import contextlib
import json
import os
import shutil
import uuid
from typing import Any, Iterator, List, Mapping

import numpy as np


def is_local(path: str) -> bool:
  """True for a local file path, False for a URL such as gs://bucket/x."""
  return "://" not in os.fspath(path)


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w") -> Iterator[Any]:
  """Opens a temporary file that replaces `path` when the `with` block ends without error.

  Args:
    path: destination (local or gs://); its parent directories are created.
    mode: 'w' (text) or 'wb' (binary).

  Yields:
    A writable file object.
  """
  if mode not in ("w", "wb"):
    raise ValueError(f"mode must be 'w' or 'wb'; got {mode!r}")
  path = os.fspath(path)
  directory = os.path.dirname(path)
  temp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
  if not is_local(path):
    yield from _remote_atomic_file(path, temp, mode)
    return
  if directory:
    os.makedirs(directory, exist_ok=True)
  try:
    with open(temp, mode) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(temp, path)
    fsync_paths([path], files=False)
  except BaseException:
    if os.path.exists(temp):
      os.remove(temp)
    raise


def _remote_atomic_file(path: str, temp: str, mode: str) -> Iterator[Any]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  directory = os.path.dirname(path)
  if directory:
    tf.io.gfile.makedirs(directory)
  try:
    with tf.io.gfile.GFile(temp, mode) as f:
      yield f
    tf.io.gfile.rename(temp, path, overwrite=True)
  except BaseException:
    if tf.io.gfile.exists(temp):
      tf.io.gfile.remove(temp)
    raise


def write_text_atomic(path: str, text: str) -> str:
  """Writes `text` to `path` atomically; returns `path`."""
  with atomic_file(path, "w") as f:
    f.write(text)
  return path


def write_json_atomic(path: str, values: Mapping[str, Any]) -> str:
  """Writes `values` as indented, key-sorted JSON to `path` atomically; returns `path`."""
  with atomic_file(path, "w") as f:
    json.dump(values, f, indent=2, sort_keys=True)
  return path


def save_npz_atomic(path: str, **arrays) -> str:
  """`np.savez(path, **arrays)` atomically (`path` is used as given); returns `path`."""
  with atomic_file(path, "wb") as f:
    np.savez(f, **arrays)
  return path


def save_figure_atomic(figure, path: str, dpi: int = 110) -> str:
  """Saves a matplotlib figure as PNG at `path` atomically; returns `path`."""
  with atomic_file(path, "wb") as f:
    figure.savefig(f, format="png", dpi=dpi)
  return path


def fsync_paths(paths: List[str], files: bool = True) -> None:
  """fsyncs the local files `paths` (if `files`), then their directories.

  Directory fsync is best effort: some platforms cannot open or fsync a directory. Remote paths
  are left to their file system.
  """
  paths = [p for p in paths if is_local(p)]
  if files:
    for path in paths:
      fd = os.open(path, os.O_RDONLY)
      try:
        os.fsync(fd)
      finally:
        os.close(fd)
  for directory in sorted({os.path.dirname(p) or "." for p in paths}):
    fsync_directory(directory)


def fsync_tree(root: str) -> None:
  """fsyncs every file under the local directory `root`, then every directory, deepest first."""
  directories = []
  for dirpath, _, filenames in os.walk(root):
    directories.append(dirpath)
    fsync_paths([os.path.join(dirpath, name) for name in filenames])
  for dirpath in reversed(directories):
    fsync_directory(dirpath)


def fsync_directory(path: str) -> None:
  """fsyncs the local directory `path` (best effort: see `fsync_paths`)."""
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return  # Directories cannot be opened on some platforms.
  try:
    os.fsync(fd)
  except OSError:
    pass  # Not every file system supports fsync on a directory.
  finally:
    os.close(fd)


def replace_directory(temp_dir: str, target: str) -> str:
  """Moves the finished local directory `temp_dir` to `target`, replacing any old `target`.

  `temp_dir` is synced to disk first and must be on the same file system as `target` (e.g. a
  hidden sibling). An existing `target` is first renamed aside and deleted only after the new one
  is in place, so at every moment `target` is either the old complete directory, absent for the
  instant between the two renames, or the new complete one.

  Returns:
    `target`.
  """
  if not (is_local(temp_dir) and is_local(target)):
    raise ValueError(f"replace_directory works on local paths only; got {temp_dir!r} -> "
                     f"{target!r}")
  fsync_tree(temp_dir)
  old = None
  if os.path.exists(target):
    old = os.path.join(os.path.dirname(target) or ".",
                       f".{os.path.basename(target)}.old-{uuid.uuid4().hex}")
    os.rename(target, old)
  os.rename(temp_dir, target)
  fsync_directory(os.path.dirname(target) or ".")
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)
  return target
