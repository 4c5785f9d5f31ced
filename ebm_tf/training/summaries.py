"""What a run shows while it trains: TensorBoard summaries, PNG sample grids and a progress line.

TensorFlow 2.21 does not install TensorBoard, but `tf.summary.scalar/image/histogram` are
implemented by the `tensorboard` package and raise without it; `SummaryWriter` therefore checks for
it when it is created (an enabled writer only), and the hparams dashboard needs it too.
"""

import math
import os
import time
from typing import Any, Callable, Mapping, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from ebm_tf.internal import checks
from ebm_tf.internal import file_io

_TENSORBOARD_HINT = ("TensorBoard is required for summaries but is not installed (TensorFlow "
                     "2.21 no longer depends on it): pip install tensorboard==2.21.0")


def _to_numpy(values, what: str) -> np.ndarray:
  if isinstance(values, (tf.Tensor, tf.Variable)):
    return values.numpy()
  try:
    return np.asarray(values)
  except (TypeError, ValueError) as error:
    raise ValueError(f"{what} must be an array or tensor; got {type(values).__name__}") from error


def _scalar(value, what: str) -> float:
  """`value` (a number, numpy scalar or one-element tensor) as a Python float."""
  array = _to_numpy(value, what)
  if array.size != 1 or array.dtype.kind not in "biuf":
    raise ValueError(f"{what} must be one real number; got shape {list(array.shape)} "
                     f"dtype {array.dtype}")
  return float(array.reshape(()))


def image_grid(images, num_rows: Optional[int] = None, *, padding: int = 1,
               pad_value: int = 128) -> np.ndarray:
  """Tiles a batch of images into one uint8 image for display.

  Args:
    images: [N, H, W, C] float array or tensor, C in {1, 3}, nominally in [-1, 1]; values outside
      are clipped (Langevin samples can leave the range). Must be finite.
    num_rows: rows of the grid; default ceil(N / ceil(sqrt(N))), i.e. about square with
      ceil(sqrt(N)) columns. Columns = ceil(N / num_rows). Cells beyond N are left as padding.
    padding: pixels of `pad_value` around and between the images, >= 0.
    pad_value: uint8 value of the padding (default mid grey: visible on black and white digits).

  Returns:
    uint8 array [rows * H + (rows + 1) * padding, cols * W + (cols + 1) * padding, C]; pixel
    x maps to round((clip(x, -1, 1) + 1) * 127.5), so -1 -> 0 and 1 -> 255. Images fill the grid
    row by row.

  Raises:
    ValueError: wrong rank, channels, empty batch, non-float or non-finite values, bad num_rows.
  """
  array = _to_numpy(images, "images")
  if array.ndim != 4 or array.shape[0] < 1 or array.shape[-1] not in (1, 3):
    raise ValueError("images must have shape [batch, height, width, 1 or 3] with batch >= 1, "
                     f"values in [-1, 1]; got {list(array.shape)}")
  if not np.issubdtype(array.dtype, np.floating):
    raise ValueError(f"images must be floats in [-1, 1]; got dtype {array.dtype}")
  bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
  if bad:
    raise ValueError(f"images must be finite (in [-1, 1]); got {bad} NaN/inf values")
  if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
    raise ValueError(f"padding must be an int >= 0; got {padding!r}")
  if not 0 <= int(pad_value) <= 255:
    raise ValueError(f"pad_value must be in [0, 255]; got {pad_value!r}")
  n, h, w, c = array.shape
  if num_rows is None:
    num_rows = math.ceil(n / math.ceil(math.sqrt(n)))
  if isinstance(num_rows, bool) or not isinstance(num_rows, int) or not 1 <= num_rows <= n:
    raise ValueError(f"num_rows must be an int in [1, {n}] (the number of images); "
                     f"got {num_rows!r}")
  num_cols = math.ceil(n / num_rows)
  pixels = np.round((np.clip(array.astype(np.float64), -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
  grid = np.full((num_rows * h + (num_rows + 1) * padding,
                  num_cols * w + (num_cols + 1) * padding, c), pad_value, np.uint8)
  for i in range(n):
    row, col = divmod(i, num_cols)
    top = padding + row * (h + padding)
    left = padding + col * (w + padding)
    grid[top:top + h, left:left + w] = pixels[i]
  return grid


# Grids written for people (PNG files, TensorBoard) are upscaled to at least this many pixels
# wide: an 8x8 digit grid is otherwise a 73-pixel thumbnail.
DISPLAY_MIN_WIDTH = 256


def upscale_for_display(grid: np.ndarray, min_width: int = DISPLAY_MIN_WIDTH) -> np.ndarray:
  """Nearest-neighbour upscaling of a uint8 grid [H, W, C] by the smallest integer factor f
  with f * W >= min_width (f = 1 when W is already wide enough): each pixel becomes an f x f
  block, so no value is interpolated. Returns uint8 [f * H, f * W, C].

  Raises:
    ValueError: a grid that is not rank 3 or a min_width < 0.
  """
  grid = np.asarray(grid)
  if grid.ndim != 3:
    raise ValueError(f"grid must have shape [height, width, channels]; got {list(grid.shape)}")
  if isinstance(min_width, bool) or not isinstance(min_width, int) or min_width < 0:
    raise ValueError(f"min_width must be an int >= 0; got {min_width!r}")
  factor = max(1, math.ceil(min_width / grid.shape[1]))
  if factor == 1:
    return grid
  return np.repeat(np.repeat(grid, factor, axis=0), factor, axis=1)


def save_image_grid(images, path: str, num_rows: Optional[int] = None, *,
                    min_width: int = DISPLAY_MIN_WIDTH) -> str:
  """Writes `image_grid(images, num_rows)`, upscaled by `upscale_for_display(.., min_width)`,
  as a PNG file at `path`; returns `path`.

  The file appears complete or not at all: the PNG goes to a temporary file in the same directory
  that is then renamed over `path` (atomic on local file systems). Parent directories are created.

  Args:
    images: [N, H, W, C] floats in [-1, 1], C in {1, 3} (see `image_grid`).
    path: destination ending in `.png`; local path or a `gs://` URL.
    num_rows: rows of the grid (see `image_grid`).
    min_width: the PNG is at least this many pixels wide (nearest-neighbour); 0 keeps one
      pixel per image pixel.

  Raises:
    ValueError: bad images or a path that does not end in `.png`.
  """
  path = os.fspath(path)
  if not path.lower().endswith(".png"):
    raise ValueError(f"path must end with .png; got {path!r}")
  png = tf.io.encode_png(upscale_for_display(image_grid(images, num_rows), min_width)).numpy()
  with file_io.atomic_file(path, "wb") as f:
    f.write(png)
  return path


def _as_step(step) -> int:
  if isinstance(step, (tf.Tensor, tf.Variable, np.ndarray, np.generic)):
    step = _to_numpy(step, "step")
    if step.ndim != 0 or step.dtype.kind not in "iu":
      raise ValueError(f"step must be an integer scalar; got {step!r}")
    step = int(step)
  if isinstance(step, bool) or not isinstance(step, int) or step < 0:
    raise ValueError(f"step must be an int >= 0; got {step!r}")
  return step


def _check_name(name) -> str:
  if not isinstance(name, str) or not name:
    raise ValueError(f"summary names must be non-empty strings; got {name!r}")
  return name


class SummaryWriter:
  """TensorBoard event writer for one run; a no-op when disabled (non-chief workers).

  Call its methods eagerly (from the Python training loop, not inside a `tf.function`).
  """

  def __init__(self, logdir: str, enabled: bool = True):
    """Opens (creates) an event file under `logdir` if `enabled`; otherwise writes nothing.

    Raises:
      ImportError: enabled but the `tensorboard` package is missing.
      ValueError: `logdir` empty.
    """
    if not logdir:
      raise ValueError(f"logdir must be a non-empty path; got {logdir!r}")
    self._logdir = os.fspath(logdir)
    self._enabled = bool(enabled)
    self._hparams_written = False
    self._writer = None
    if self._enabled:
      try:
        import tensorboard  # pylint: disable=g-import-not-at-top,unused-import
      except ImportError as error:
        raise ImportError(_TENSORBOARD_HINT) from error
      self._writer = tf.summary.create_file_writer(self._logdir)

  @property
  def enabled(self) -> bool:
    return self._enabled

  @property
  def logdir(self) -> str:
    return self._logdir

  def scalars(self, step: int, values: Mapping[str, Any]) -> None:
    """Writes one scalar per entry of `values` ({name: Python/numpy number or 0-d tensor}).

    NaN and inf are written as they are (a diverging run should show it).
    """
    step = _as_step(step)
    checked = {_check_name(name): _scalar(value, f"scalar {name!r}")
               for name, value in values.items()}
    if not self._enabled:
      return
    with self._writer.as_default():
      for name, value in checked.items():
        tf.summary.scalar(name, value, step=step)

  def images(self, step: int, name: str, images, num_rows: Optional[int] = None) -> None:
    """Writes `images` ([N, H, W, C] floats in [-1, 1], C in {1, 3}) as one grid image,
    upscaled to at least DISPLAY_MIN_WIDTH pixels wide (nearest-neighbour)."""
    step = _as_step(step)
    name = _check_name(name)
    grid = upscale_for_display(image_grid(images, num_rows))
    if not self._enabled:
      return
    with self._writer.as_default():
      tf.summary.image(name, grid[None], step=step, max_outputs=1)

  def histogram(self, step: int, name: str, values, buckets: Optional[int] = None) -> None:
    """Writes a histogram of `values` (any shape, real, finite) with `buckets` bins (TB default)."""
    step = _as_step(step)
    name = _check_name(name)
    array = _to_numpy(values, f"histogram {name!r}")
    if array.dtype.kind not in "biuf":
      raise ValueError(f"histogram {name!r} must be real numbers; got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
      raise ValueError(f"histogram {name!r} must be finite; got "
                       f"{int(np.sum(~np.isfinite(array)))} NaN/inf values")
    if not self._enabled:
      return
    with self._writer.as_default():
      tf.summary.histogram(name, array, step=step, buckets=buckets)

  def hparams(self, hparams: Mapping[str, Any]) -> None:
    """Records the run's hyperparameters for TensorBoard's HParams dashboard, once per writer.

    Values that are not bool/int/float/str (None, tuples, enums) are recorded as their str().
    A second call logs a warning and writes nothing.
    """
    if not isinstance(hparams, Mapping) or not hparams:
      raise ValueError(f"hparams must be a non-empty dict of name -> value; got {hparams!r}")
    clean = {_check_name(k): (v if isinstance(v, (bool, int, float, str)) else str(v))
             for k, v in hparams.items()}
    if self._hparams_written:
      logging.warning("hparams were already recorded in %s; ignoring the second call",
                      self._logdir)
      return
    self._hparams_written = True
    if not self._enabled:
      return
    from tensorboard.plugins.hparams import api as hp  # pylint: disable=g-import-not-at-top
    with self._writer.as_default():
      hp.hparams(clean)

  def flush(self) -> None:
    if self._enabled:
      self._writer.flush()

  def close(self) -> None:
    if self._enabled:
      self._writer.close()

  def __enter__(self) -> "SummaryWriter":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def format_duration(seconds: float) -> str:
  """Formats a non-negative duration as e.g. '45s', '9m22s', '3h05m10s' (rounded to seconds)."""
  total = int(round(seconds))
  hours, rest = divmod(total, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m{secs:02d}s"
  if minutes:
    return f"{minutes}m{secs:02d}s"
  return f"{secs}s"


class Progress:
  """A rate-limited progress line with speed and ETA.

  Call `update(step, **metrics)` as often as every step; it returns (and logs with
  `absl.logging.info`) a line such as

      step 1200/3000 (40.0%) | 3.2 steps/s | ETA 9m22s | energy_diff -0.012 drift 0.0031

  when one is due: when `step` reaches a multiple of `every_n_steps`, when `every_seconds` have
  passed since the last line, and at `total_steps`; otherwise it returns None.

  Speed is measured over the interval since the previous line, so it tracks the current rate.
  The first step after `start_step` pays for tracing/compilation: when the first update is for
  step `start_step + 1` it only starts the clock; when the first update comes later, that first
  line's speed includes the startup and is marked "(incl. startup)".
  """

  def __init__(self, total_steps: int, start_step: int = 0,
               every_n_steps: Optional[int] = 100, every_seconds: Optional[float] = None,
               clock: Callable[[], float] = time.monotonic, log: bool = True):
    """Sets the run's extent and when lines are due.

    Args:
      total_steps: the step training ends at, >= 1.
      start_step: the step training (re)starts from, 0 <= start_step <= total_steps.
      every_n_steps: emit at multiples of this (None: no step trigger).
      every_seconds: also emit when this many seconds passed since the last line (None: never).
      clock: seconds, monotonic; injectable for tests.
      log: whether due lines are also logged (False on non-chief workers of a multi-worker
        run: one progress line per run, not one per worker); they are returned either way.
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
      raise ValueError(f"total_steps must be an int >= 1; got {total_steps!r}")
    if (isinstance(start_step, bool) or not isinstance(start_step, int)
        or not 0 <= start_step <= total_steps):
      raise ValueError(f"start_step must be an int in [0, total_steps={total_steps}]; "
                       f"got {start_step!r}")
    if every_n_steps is not None and (isinstance(every_n_steps, bool) or
                                      not isinstance(every_n_steps, int) or every_n_steps < 1):
      raise ValueError(f"every_n_steps must be an int >= 1 or None; got {every_n_steps!r}")
    if every_seconds is not None and not every_seconds > 0:
      raise ValueError(f"every_seconds must be > 0 or None; got {every_seconds!r}")
    self._total = total_steps
    self._start = start_step
    self._every_n = every_n_steps
    self._every_s = every_seconds
    self._clock = clock
    self._log = log
    self._reported = start_step  # The latest step passed to update().
    self._last_step = start_step  # Step and time of the latest line (or of the clock start).
    self._last_time = clock()
    self._started = False  # Whether update() was called yet.
    self._steps_per_sec = None

  @property
  def steps_per_sec(self) -> Optional[float]:
    """Speed over the interval before the latest line; None before the first line."""
    return self._steps_per_sec

  def update(self, step: int, **metrics) -> Optional[str]:
    """Reports that `step` (start_step < step <= total_steps) finished; returns a line if due.

    Args:
      step: the number of finished training steps.
      **metrics: name -> number or scalar tensor, shown in the order given with 4 significant
        digits.
    """
    step = _as_step(step)
    if not self._reported <= step <= self._total:
      raise ValueError(f"step must be in [{self._reported}, {self._total}] (the last reported "
                       f"step .. total_steps); got {step}")
    values = {name: _scalar(value, f"metric {name!r}") for name, value in metrics.items()}
    self._reported = step
    now = self._clock()
    first = not self._started
    self._started = True
    if first and step == self._start + 1 and step < self._total:
      self._last_step, self._last_time = step, now  # Exclude the compile step from the speed.
      return None
    due = step == self._total
    if self._every_n is not None:
      due = due or step // self._every_n > self._last_step // self._every_n
    if self._every_s is not None:
      due = due or now - self._last_time >= self._every_s
    if not due:
      return None

    elapsed = now - self._last_time
    done = step - self._last_step
    if elapsed > 0 and done > 0:
      self._steps_per_sec = done / elapsed
    parts = [f"step {step}/{self._total} ({100.0 * step / self._total:.1f}%)"]
    if self._steps_per_sec is None:
      parts.append("-- steps/s")
    else:
      rate = self._steps_per_sec
      parts.append((f"{rate:.1f}" if rate >= 1 else f"{rate:.3g}") + " steps/s" +
                   (" (incl. startup)" if first else ""))
    if step == self._total:
      parts.append("done")
    elif self._steps_per_sec:
      parts.append("ETA " + format_duration((self._total - step) / self._steps_per_sec))
    else:
      parts.append("ETA --")
    if values:
      parts.append(" ".join(f"{name} {value:.4g}" for name, value in values.items()))
    line = " | ".join(parts)
    self._last_step, self._last_time = step, now
    if self._log:
      logging.info("%s", line)
    return line


def check_png_path(path) -> str:
  """Returns `path` as a str; ValueError unless it ends with .png."""
  path = os.fspath(path)
  if not path.lower().endswith(".png"):
    raise ValueError(f"path must end with .png; got {path!r}")
  return path


def agg_figure(width: float, height: float, ncols: int = 1):
  """A matplotlib Figure of `width` x `height` inches at 100 dpi with `ncols` axes in one row.

  Returns (figure, [axes]); drawn on the object-oriented Agg canvas (no pyplot state).
  """
  # The object-oriented Agg canvas: no pyplot, no global backend switch.
  from matplotlib.backends import backend_agg  # pylint: disable=g-import-not-at-top
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  fig = mpl_figure.Figure(figsize=(width, height), dpi=100)
  backend_agg.FigureCanvasAgg(fig)
  axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
  return fig, axes


def save_scatter_plot(points, path: str, *, bounds=None, title: Optional[str] = None) -> str:
  """Writes a scatter plot of 2-D points as a PNG (the rank-1 counterpart of an image grid).

  Args:
    points: float [N, 2] array or tensor (N >= 1). Non-finite rows are not drawn; their number
      is added to the title, as is the number of finite points outside `bounds`.
    path: destination ending in .png (parent directories are created).
    bounds: optional axis window ((x_min, x_max), (y_min, y_max)), e.g. `toy.bounds`; default
      the points' range.
    title: optional title.

  Returns:
    `path`.
  """
  path = check_png_path(path)
  points = checks.check_points_2d(points, "points").astype(np.float64)
  finite = np.all(np.isfinite(points), axis=1)
  shown = points[finite]
  notes = []
  fig, (ax,) = agg_figure(4.5, 4.5)
  if bounds is not None:
    b = np.asarray(bounds, np.float64)
    if b.shape != (2, 2) or not np.all(np.isfinite(b)) or not np.all(b[:, 1] > b[:, 0]):
      raise ValueError(f"bounds must be ((x_min, x_max), (y_min, y_max)) with min < max; got "
                       f"{bounds!r}")
    ax.set_xlim(*b[0])
    ax.set_ylim(*b[1])
    outside = int(np.sum(~np.all((shown >= b[:, 0]) & (shown <= b[:, 1]), axis=1)))
    if outside:
      notes.append(f"{outside} outside")
  if not finite.all():
    notes.append(f"{int((~finite).sum())} non-finite")
  ax.scatter(shown[:, 0], shown[:, 1], s=3, alpha=0.5, linewidths=0)
  ax.set_aspect("equal")
  label = f"{title or ''} (n={len(points)}{', ' if notes else ''}{', '.join(notes)})"
  ax.set_title(label.strip(), fontsize=9)
  fig.tight_layout()
  return file_io.save_figure_atomic(fig, path, dpi=100)
