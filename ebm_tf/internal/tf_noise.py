"""Keeps TensorFlow's machine-probing noise out of the binaries' output unless asked for.

On a machine without a GPU every TensorFlow process prints C++ log lines that read like failures
but change nothing: `failed call to cuInit` (the CUDA probe), grappler's `remapper failed:
INVALID_ARGUMENT` for input-gradient graphs of Keras 3 networks (the graph still runs unfused),
CPU-feature notices, and INFO lines of TensorFlow's Python code such as checkpointing's
`Sharding callback duration`.
A binary imports this module before anything imports TensorFlow; then, unless the command line
has `--show_tf_logs`, TensorFlow's C++ logging is limited to FATAL (`TF_CPP_MIN_LOG_LEVEL=3`, only
if the variable is not already set), the lines TensorFlow's import writes before that setting
takes effect (the CUDA-driver probe) are filtered out (all of them are shown if the import
fails), the Python `tensorflow` logger is set to WARNING, and INFO lines that TensorFlow's or
Keras's own files log through absl are dropped. Errors still
reach the user as Python exceptions; ebm-tf's own progress lines (absl logging) are unaffected.
Libraries and tests never import this module, so they keep TensorFlow's defaults.
"""

import logging
import os
import re
import sys
import tempfile

from absl import flags
from absl import logging as absl_logging

SHOW_FLAG = "show_tf_logs"
_SHOW_ARGS = (f"--{SHOW_FLAG}", f"--{SHOW_FLAG}=true", f"--{SHOW_FLAG}=True", f"--{SHOW_FLAG}=1")

flags.DEFINE_bool(SHOW_FLAG, False, "show TensorFlow's C++ log lines (CUDA probing, grappler "
                  "messages) and its INFO lines; give it on the command line, not in a flagfile "
                  "(it must be known before TensorFlow starts)")


def quiet_requested(argv) -> bool:
  """True unless `argv` (a list of command-line strings) asks for --show_tf_logs."""
  return not any(arg in _SHOW_ARGS for arg in argv[1:])


# What TensorFlow's import prints to fd 2 before its C++ logging is initialised (so
# TF_CPP_MIN_LOG_LEVEL cannot hide it) on a machine without CUDA drivers.
# On CPUs where TensorFlow turns oneDNN on by default (e.g. with AVX-512) it also announces
# that here ("oneDNN custom operations are on ...").
_IMPORT_NOISE = re.compile(r"All log messages before absl::InitializeLog\(\) is called|"
                           r"cudart_stub\.cc:\d+\] Could not find cuda drivers|"
                           r"cuda_(driver|diagnostics|executor)\.cc:\d+\]|failed call to cuInit|"
                           r"port\.cc:\d+\] oneDNN custom operations are on")


def _import_tensorflow_filtering_noise() -> None:
  """Imports TensorFlow with fd 2 captured; re-prints what it wrote, less `_IMPORT_NOISE` lines
  (everything, if the import fails)."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    failed = True
    try:
      import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
      failed = False
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      lines = capture.read().decode("utf-8", "replace").splitlines(keepends=True)
      if not failed:
        lines = [line for line in lines if not _IMPORT_NOISE.search(line)]
      sys.stderr.write("".join(lines))
      sys.stderr.flush()


# Library code that logs INFO lines through absl (e.g. checkpointing's "Sharding callback
# duration") is recognised by its source file's path.
_LIBRARY_SOURCE = re.compile(r"[/\\](tensorflow|keras|tf_keras)[/\\]")


class _LibraryInfoFilter(logging.Filter):
  """Drops log records below WARNING that come from TensorFlow's or Keras's own source files."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or not _LIBRARY_SOURCE.search(record.pathname)


if quiet_requested(sys.argv):
  if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _import_tensorflow_filtering_noise()
  logging.getLogger("tensorflow").setLevel(logging.WARNING)
  absl_logging.get_absl_handler().addFilter(_LibraryInfoFilter())
